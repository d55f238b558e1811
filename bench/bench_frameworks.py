"""What watching a PyTorch model costs: training with and without TorchMonitor, A/B interleaved.

    python bench/bench_frameworks.py [--reps 5] [--threads 1] [--models mlp784,mlp64,transformer]

For each model, each repetition trains `steps` steps (a multiple of the default `every`) with a
TorchMonitor at its default `every`, with a TorchMonitor logging every step (every=1: the cost of one
logged step), and with today's bias-only vector logger (TorchBiasLogger attached to the optimizer, no
gradient check), each run next to a plain run of the same steps (plain first in even repetitions,
second in odd ones). Times are the process's CPU time (time.process_time: on
a machine shared with others, the time spent waiting for a core is left out; with one thread, the
work done). A figure is the median over repetitions of the ratio (time with) / (time without) of a pair
of neighbouring runs, so that a machine whose speed drifts is compared with itself. Prints one line per model and logger:

    overhead torch <model>: <percent>% (...)

and, for the default monitor, the CPU time spent inside its own hooks and step() per step against the plain
step: what it adds to the step itself, free of the noise of comparing two whole runs (it leaves out what
the monitor's reads of the parameters cost the training in caches),

and the memory the monitor keeps (its snapshot of the parameters) against the
parameters themselves, and the peak resident memory (VmHWM) of a fresh process training with the
monitor against one training without it (--no-memory skips those processes).

Models (CPU, float32): mlp784, a 784-512-512-10 ReLU MLP at batch 128, SGD momentum 0.9; mlp64, a
64-64-32-10 MLP at batch 32, SGD momentum 0.9; transformer, nn.TransformerEncoder (d_model 512, 8 heads,
feed-forward 2048, 3 layers: 9.5M parameters) on a batch of 8 sequences of 32 tokens, AdamW.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import biasmon  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

import torch

from biasmon.torch_logger import TorchBiasLogger
from biasmon.torch_monitor import DEFAULT_EVERY, TorchMonitor


def mlp(sizes: list[int]) -> torch.nn.Module:
    layers: list[torch.nn.Module] = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def make(name: str):
    """(model, optimizer, batch (x, y), loss function, steps per timed run) of a benchmark model."""
    torch.manual_seed(0)
    ce = torch.nn.functional.cross_entropy
    if name == "mlp784":
        net = mlp([784, 512, 512, 10])
        return net, torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9), \
            (torch.randn(128, 784), torch.randint(0, 10, (128,))), ce, 320
    if name == "mlp64":
        net = mlp([64, 64, 32, 10])
        return net, torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9), \
            (torch.randn(32, 64), torch.randint(0, 10, (32,))), ce, 2016
    if name == "transformer":
        layer = torch.nn.TransformerEncoderLayer(512, 8, 2048, dropout=0.0, batch_first=True)
        net = torch.nn.TransformerEncoder(layer, 3, enable_nested_tensor=False)
        return net, torch.optim.AdamW(net.parameters(), lr=1e-4), \
            (torch.randn(8, 32, 512), torch.randn(8, 32, 512)), torch.nn.functional.mse_loss, 32
    raise SystemExit(f"unknown model {name!r}: mlp784, mlp64, transformer")


class TimedMonitor(TorchMonitor):
    """TorchMonitor counting the CPU time spent in its hooks and step(): what it adds, without the noise of
    timing two whole runs against each other."""

    own = 0.0   # CPU seconds, summed over every TimedMonitor

    def _pre_step(self, *args) -> None:
        start = time.process_time()
        super()._pre_step(*args)
        TimedMonitor.own += time.process_time() - start

    def _post_step(self, *args) -> None:
        start = time.process_time()
        super()._post_step(*args)
        TimedMonitor.own += time.process_time() - start

    def step(self, *args, **kwargs) -> None:
        start = time.process_time()
        super().step(*args, **kwargs)
        TimedMonitor.own += time.process_time() - start


def attach(kind: str, net, opt, path: str):
    if kind == "plain":
        return None
    if kind == "monitor":
        return TimedMonitor(net, path, opt)
    if kind == "monitor-every1":
        return TorchMonitor(net, path, opt, every=1)
    return TorchBiasLogger(net, path, optimizer=opt, check_every=0)


def timed(kind: str, net, opt, batch, loss_fn, steps: int, path: str) -> float:
    """CPU seconds per training step with `kind` attached (the process's CPU time: on a shared machine the
    time this process waited for a core is not counted)."""
    x, y = batch
    log = attach(kind, net, opt, path)
    start = time.process_time()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        if log is not None:
            log.step(loss)
    elapsed = time.process_time() - start
    if log is not None:
        log.close()
    return elapsed / steps


KINDS = ("monitor", "monitor-every1", "bias-logger")


def bench(name: str, reps: int, folder: str, kinds: tuple[str, ...] = KINDS) -> dict[str, list[float]]:
    """{kind: [(time with) / (time without) - 1 per repetition]}: each run with a logger next to a plain
    run of the same steps, plain first in even repetitions and second in odd ones."""
    net, opt, batch, loss_fn, steps = make(name)
    timed("plain", net, opt, batch, loss_fn, max(2, steps // 10), os.devnull)   # warm up
    ratios: dict[str, list[float]] = {k: [] for k in kinds + ("plain", "own")}
    for rep in range(reps):
        for kind in kinds:
            path = os.path.join(folder, f"{kind}.jsonl")
            pair = ("plain", kind) if rep % 2 == 0 else (kind, "plain")
            own = TimedMonitor.own
            t = {k: timed(k, net, opt, batch, loss_fn, steps, path) for k in pair}
            ratios[kind].append(t[kind] / t["plain"] - 1)
            ratios["plain"].append(t["plain"])
            if kind == "monitor":   # the monitor's own CPU time per step, against the plain step next to it
                ratios["own"].append((TimedMonitor.own - own) / steps / t["plain"])
    return ratios


def report(name: str, ratios: dict[str, list[float]]) -> None:
    print(f"{name}: plain step {statistics.median(ratios['plain']) * 1e3:.3f} ms CPU "
          f"(median of {len(ratios['plain'])} runs)")
    labels = {"monitor": f"TorchMonitor every={DEFAULT_EVERY} (default)", "monitor-every1": "TorchMonitor every=1",
              "bias-logger": "TorchBiasLogger, biases only, no gradient check"}
    for kind, label in labels.items():
        if kind not in ratios:
            continue
        print(f"overhead torch {name}: {100 * statistics.median(ratios[kind]):.1f}% ({label}; "
              f"per pair {', '.join(f'{100 * r:.0f}' for r in ratios[kind])})")
        if kind == "monitor" and ratios["own"]:
            print(f"  of which in the monitor's own code: {100 * statistics.median(ratios['own']):.2f}% (CPU time "
                  f"inside its hooks and step(), per step, against the plain step; per pair "
                  f"{', '.join(f'{100 * r:.2f}' for r in ratios['own'])})")


def memory(name: str, folder: str) -> None:
    """The monitor's own buffers against the parameters; the peak RSS of a fresh process with and without."""
    net, opt, (x, y), loss_fn, _ = make(name)
    params = sum(p.numel() * p.element_size() for p in net.parameters() if p.requires_grad)
    with TorchMonitor(net, os.path.join(folder, "mem.jsonl"), opt) as monitor:
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()   # a logged step
        monitor.step(loss)
        kept = monitor.buffer_bytes
    peaks = {kind: _peak_rss(name, kind, folder) for kind in ("plain", "monitor")}
    print(f"memory torch {name}: parameters {params / 2**20:.2f} MiB; the monitor keeps {kept / 2**20:.2f} MiB "
          f"({kept / params:.2f} x the parameters); peak RSS of a fresh process training {2 * DEFAULT_EVERY} steps: "
          f"{peaks['plain'] / 2**10:.1f} MiB without, {peaks['monitor'] / 2**10:.1f} MiB with "
          f"(+{(peaks['monitor'] - peaks['plain']) / 2**10:.1f} MiB)")


def _peak_rss(name: str, kind: str, folder: str) -> int:
    """VmHWM (KiB) of a fresh process that trains `name` for 2 x every steps with `kind` attached."""
    code = (f"import sys, torch; sys.argv = ['x']; torch.set_num_threads(1)\n"
            f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
            f"import bench_frameworks as b\n"
            f"net, opt, batch, loss_fn, _ = b.make({name!r})\n"
            f"b.timed({kind!r}, net, opt, batch, loss_fn, 2 * b.DEFAULT_EVERY, {os.path.join(folder, 'rss.jsonl')!r})\n"
            f"print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default="mlp784,mlp64,transformer")
    parser.add_argument("--kinds", default=",".join(KINDS), help="of " + ", ".join(KINDS))
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; {args.reps} interleaved repetitions")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            report(name, bench(name, args.reps, folder, tuple(args.kinds.split(","))))
            if not args.no_memory:
                memory(name, folder)


if __name__ == "__main__":
    main()
