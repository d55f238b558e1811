"""Speed of biasmon's core, headless, against PyTorch CPU autograd on the same nets and data.

    python bench/bench_core.py [--rounds R] [--thread-rounds R2] [--nets NAME ...] [--no-torch] [--no-threads]

Four nets, each with full-batch SGD (lr 0.05, momentum 0), float64 on both sides, val_fraction 0.25:
  - 2-16-16-1         the default preset `gradient` (ReLU, He init, mse) on `tiny` with samples=200
  - 2-64-64-1         the same, two wider hidden layers
  - 784-128-10        ReLU, He init, cross_entropy, on 400 synthetic "images": pixels uniform in [0, 1),
                      the label of each the argmax of a fixed random linear map of (pixels - 0.5), one-hot
  - 10-256-256-256-1  ReLU, Xavier init (He diverges at this lr), mse, on 400 samples x ~ N(0, 1)^10,
                      y = sin(2 x.v) for a fixed random v with |v| ~ 1
(the synthetic sets are written as .npz files into a temporary folder and read as a user's data file is).

Rows, each figure the median of R interleaved runs (A, B, B, A, ...; R = 5 in row 1, 3 in row 2; a short
warm-up run of each first):
  1. core vs torch, both 1 thread: steps/s of the core as `record` trains (Trainer.advance of
     trainer.block_steps(BLOCK_STEPS) steps: fewer a call on the big nets), per-step diagnostics on,
     the finite-difference check off: bench/bench_gradcheck.py measures it; in brackets the same with
     diagnostics off, Trainer(diagnostics=False)) over torch's nn.Sequential + loss + optim.SGD with the
     same per-step work (train forward, backward, update, the validation loss, both losses read as Python
     floats), the same initial weights and data.
  2. core at its default threads vs its own 1-thread figure (BLAS limited with threadpoolctl around the
     whole run), idle and with the machine made busy by a busy-loop process this bench starts.
Issue 12's targets: row 1 >= 5x, 1.5x, 1.2x, 1.0x for the four nets; row 2 never below 0.9x.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np

try:
    import biasmon  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from threadpoolctl import threadpool_limits

from biasmon.commands import BLOCK_STEPS
from biasmon.core import presets
from biasmon.core.trainer import Trainer, build_network, load_data

# name -> (steps per run in row 1, in row 2): a run of row 1 takes about 0.3 s here; of row 2, 1.5 to 3.5 s,
# long enough for the trainer to try the other thread count (core/threads.py) and pay for it
STEPS = {"2-16-16-1": (1500, 6000), "2-64-64-1": (400, 2000), "784-128-10": (30, 200),
         "10-256-256-256-1": (30, 200)}
TARGETS = {"2-16-16-1": 5.0, "2-64-64-1": 1.5, "784-128-10": 1.2, "10-256-256-256-1": 1.0}


def bench_nets(folder: str) -> dict:
    """The four nets as presets (name -> Preset), their synthetic data written into folder."""
    base = presets.resolve("gradient").with_overrides(samples=200)
    base = replace(base, diagnostics=dict(base.diagnostics, grad_check_every=0))
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0.0, 1.0, size=(400, 784))
    labels = np.argmax((pixels - 0.5) @ rng.normal(size=(784, 10)), axis=1)
    np.savez(Path(folder) / "images.npz", x=pixels, y=np.eye(10)[labels])
    x = rng.normal(size=(400, 10))
    np.savez(Path(folder) / "wide.npz", x=x, y=np.sin(2.0 * x @ (rng.normal(size=10) / np.sqrt(10)))[:, None])

    def net(layers, **network):
        return replace(base, network=dict(base.network, layers=layers, **network))

    def from_file(preset, name):
        return replace(preset, data=dict(preset.data, set=None, path=str(Path(folder) / name)))

    return {"2-16-16-1": base, "2-64-64-1": net([2, 64, 64, 1]),
            "784-128-10": from_file(net([784, 128, 10], loss="cross_entropy"), "images.npz"),
            "10-256-256-256-1": from_file(net([10, 256, 256, 256, 1], weight_init="xavier"), "wide.npz")}


def time_core(preset, steps: int, threads: int | None, diagnostics: bool = True) -> float:
    """Seconds per step of the core (as `record` trains), BLAS limited to `threads`."""
    with threadpool_limits(threads) if threads else nullcontext():
        trainer = Trainer(preset, steps=steps, diagnostics=diagnostics)
        start = time.perf_counter()
        while not trainer.done:
            trainer.advance(trainer.block_steps(BLOCK_STEPS))
        elapsed = time.perf_counter() - start
    assert trainer.step_index == steps, "the run diverged; the benchmark needs a full run"
    return elapsed / steps


def torch_model(torch, preset):
    """nn.Sequential with the core's initial weights, its loss function, and the data as tensors."""
    net, data = build_network(preset), load_data(preset)
    acts = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid, "identity": torch.nn.Identity}
    layers = []
    for w, b, act in zip(net.weights, net.biases, net.activations):
        lin = torch.nn.Linear(w.shape[0], w.shape[1], dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
            lin.bias.copy_(torch.from_numpy(b.copy()))
        layers += [lin, acts[act]()]
    # cross_entropy: torch takes the one-hot rows as class probabilities, mean over samples, as the core
    loss_fn = torch.nn.MSELoss() if preset.network["loss"] == "mse" else torch.nn.CrossEntropyLoss()
    tensors = [torch.from_numpy(a) for a in (data.x_train, data.y_train, data.x_val, data.y_val)]
    return torch.nn.Sequential(*layers), loss_fn, tensors


def time_torch(torch, preset, steps: int) -> float:
    """Seconds per step of torch (1 thread: set by the caller) doing the core's per-step work."""
    model, loss_fn, (x, y, xv, yv) = torch_model(torch, preset)
    opt = torch.optim.SGD(model.parameters(), lr=preset.train["lr"])
    start = time.perf_counter()
    for _step in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        with torch.no_grad():
            val = loss_fn(model(xv), yv)
        opt.step()
        loss.item(), val.item()
    return (time.perf_counter() - start) / steps


def first_losses_agree(torch, preset) -> bool:
    """The torch set-up trains the same net: its first loss equals the core's."""
    model, loss_fn, (x, y, _, _) = torch_model(torch, preset)
    net, data = build_network(preset), load_data(preset)
    with torch.no_grad():
        t_loss = loss_fn(model(x), y).item()
    return abs(t_loss - net.gradients(data.x_train, data.y_train).loss) <= 1e-12 * max(1.0, abs(t_loss))


def interleaved(rounds: int, **runs) -> dict:
    """{label: median seconds per step} of the timing functions given, run in turn `rounds` times (every
    other round in the reverse order: none always runs first, after a pause or a change of load)."""
    times = {label: [] for label in runs}
    for r in range(rounds):
        for label, run in (runs.items() if r % 2 == 0 else reversed(runs.items())):
            times[label].append(run())
    return {label: statistics.median(t) for label, t in times.items()}


@contextmanager
def busy_machine():
    """A busy-loop process (one core's worth of load) for the duration."""
    load = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        yield
    finally:
        load.kill()
        load.wait()


def row_torch(torch, nets: dict, rounds: int) -> None:
    torch.set_num_threads(1)
    for name, preset in nets.items():
        steps = STEPS[name][0]
        time_core(preset, max(2, steps // 10), 1), time_torch(torch, preset, max(2, steps // 10))  # warm-up
        t = interleaved(rounds, core=lambda: time_core(preset, steps, 1), torch=lambda: time_torch(torch, preset, steps),
                        bare=lambda: time_core(preset, steps, 1, diagnostics=False))
        ratio = t["torch"] / t["core"]
        print(f"core vs torch, 1 thread   {name:<17} {ratio:5.2f}x  (core {t['core'] * 1e3:8.3f} ms/step, torch "
              f"{t['torch'] * 1e3:8.3f} ms/step; target >= {TARGETS[name]}x: {'met' if ratio >= TARGETS[name] else 'MISSED'}; "
              f"diagnostics off: {t['torch'] / t['bare']:5.2f}x)", flush=True)


def row_threads(nets: dict, rounds: int, busy: bool) -> None:
    with busy_machine() if busy else nullcontext():
        for name, preset in nets.items():
            steps = STEPS[name][1]
            time_core(preset, max(2, steps // 10), None), time_core(preset, max(2, steps // 10), 1)   # warm-up
            t = interleaved(rounds, default=lambda: time_core(preset, steps, None), one=lambda: time_core(preset, steps, 1))
            ratio = t["one"] / t["default"]
            print(f"default vs 1 thread, {'busy' if busy else 'idle'} {name:<17} {ratio:5.2f}x  (default "
                  f"{t['default'] * 1e3:8.3f} ms/step, 1 thread {t['one'] * 1e3:8.3f} ms/step; target >= 0.9x: "
                  f"{'met' if ratio >= 0.9 else 'MISSED'})", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs of each in row 1")
    parser.add_argument("--thread-rounds", type=int, default=3, help="runs of each in row 2 (longer runs)")
    parser.add_argument("--nets", nargs="*", choices=list(STEPS), default=list(STEPS))
    parser.add_argument("--no-torch", action="store_true", help="skip row 1")
    parser.add_argument("--no-threads", action="store_true", help="skip row 2")
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}; medians of {args.rounds} (row 2: {args.thread_rounds}) interleaved runs", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        nets = {name: preset for name, preset in bench_nets(folder).items() if name in args.nets}
        torch = None
        if not args.no_torch:
            try:
                import torch
            except ImportError:
                print("torch not importable: no PyTorch comparison (pip install torch to get one)")
        if torch is not None:
            agree = all(first_losses_agree(torch, p) for p in nets.values())
            print(f"torch {torch.__version__} (same initial loss on every net: {'yes' if agree else 'NO'})", flush=True)
            row_torch(torch, nets, args.rounds)
        if not args.no_threads:
            for busy in (False, True):
                row_threads(nets, args.thread_rounds, busy)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
