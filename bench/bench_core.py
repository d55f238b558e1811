"""Speed of biasmon's core, headless, against PyTorch CPU autograd on the same net and data.

    python bench/bench_core.py [--steps N] [--repeats R]

Measures steps per second of the default preset (`gradient`, with samples=200: a 2-16-16-1 ReLU net
on ~150 training samples, full-batch SGD):
  - core, diagnostics off   Trainer(preset, diagnostics=False)
  - core, diagnostics on    per-step diagnostics, finite-difference gradient check on its schedule,
                            trained as `record` and `compare` train: Trainer.advance(BLOCK_STEPS = 256),
                            which diagnoses 256 steps as one block (the TUI at full speed: 64)
  - the same, iterating the trainer (one step at a time, each step diagnosed alone)
  - torch, 1 thread and default threads, if torch is importable: the same initial weights, data, lr
    and loss, nn.Sequential + MSELoss + optim.SGD, float64 like the core, and the same per-step work
    (train forward/backward/update, validation loss, both losses read as Python floats).
Each figure is the best of R runs of N steps. Issue 2's targets: diag-on >= 3x torch, and the
diagnostics cost (t_on - t_off) / t_off <= 30% of the step.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

try:
    import biasmon  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from biasmon.core import presets
from biasmon.commands import BLOCK_STEPS
from biasmon.core.trainer import Trainer, build_network, load_data


def bench_core(preset, steps, repeats, diagnostics, one_by_one=False):
    best = float("inf")
    for _ in range(repeats):
        trainer = Trainer(preset, steps=steps, diagnostics=diagnostics)
        start = time.perf_counter()
        if one_by_one:
            for _rec in trainer:
                pass
        else:
            while not trainer.done:
                trainer.advance(BLOCK_STEPS)
        best = min(best, time.perf_counter() - start)
        assert trainer.step_index == steps, "the run diverged; the benchmark needs a full run"
    return steps / best, best / steps


def bench_torch(torch, preset, steps, repeats, threads):
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        net = build_network(preset)
        data = load_data(preset)
        acts = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
                "identity": torch.nn.Identity}
        x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
        xv, yv = torch.from_numpy(data.x_val), torch.from_numpy(data.y_val)
        lr = preset.train["lr"]
        best = float("inf")
        for _ in range(repeats):
            layers = []
            for w, b, act in zip(net.weights, net.biases, net.activations):
                lin = torch.nn.Linear(w.shape[0], w.shape[1], dtype=torch.float64)
                with torch.no_grad():
                    lin.weight.copy_(torch.from_numpy(w.T.copy()))
                    lin.bias.copy_(torch.from_numpy(b.copy()))
                layers += [lin, acts[act]()]
            model = torch.nn.Sequential(*layers)
            loss_fn = torch.nn.MSELoss()
            opt = torch.optim.SGD(model.parameters(), lr=lr)
            start = time.perf_counter()
            for _step in range(steps):
                opt.zero_grad()
                loss = loss_fn(model(x), y)
                loss.backward()
                with torch.no_grad():
                    val = loss_fn(model(xv), yv)
                opt.step()
                loss.item(), val.item()
            best = min(best, time.perf_counter() - start)
        return steps / best, best / steps, torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def first_losses_agree(torch, preset):
    """The torch set-up trains the same net: its first loss equals the core's."""
    net, data = build_network(preset), load_data(preset)
    a = torch.from_numpy(data.x_train)
    fns = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "identity": lambda v: v}
    for w, b, act in zip(net.weights, net.biases, net.activations):
        a = fns[act](a @ torch.from_numpy(w) + torch.from_numpy(b))
    t_loss = torch.mean((a - torch.from_numpy(data.y_train)) ** 2).item()
    return abs(t_loss - net.gradients(data.x_train, data.y_train).loss) < 1e-12


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preset", default=presets.DEFAULT_PRESET)
    args = parser.parse_args(argv)

    preset = presets.resolve(args.preset).with_overrides(samples=200)
    data = load_data(preset)
    print(f"biasmon core bench: preset '{preset.name}' with samples=200 -> net "
          f"{'-'.join(map(str, preset.network['layers']))} {preset.network['activation']}, "
          f"{len(data.x_train)} train / {len(data.x_val)} val samples, {preset.network['dtype']}, "
          f"lr {preset.train['lr']}, grad check every {preset.diagnostics['grad_check_every']} steps")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs; "
          f"best of {args.repeats} x {args.steps} steps")

    bench_core(preset, min(200, args.steps), 1, True)  # warm-up
    off_rate, t_off = bench_core(preset, args.steps, args.repeats, diagnostics=False)
    on_rate, t_on = bench_core(preset, args.steps, args.repeats, diagnostics=True)
    single_rate, t_single = bench_core(preset, args.steps, args.repeats, diagnostics=True, one_by_one=True)
    cost = (t_on - t_off) / t_off
    print()
    print(f"core, diagnostics off : {off_rate:9,.0f} steps/s  ({t_off * 1e6:7.1f} us/step)")
    print(f"core, diagnostics on  : {on_rate:9,.0f} steps/s  ({t_on * 1e6:7.1f} us/step)")
    print(f"diag cost             : {cost:9.1%} of the step   (target <= 30%: {'met' if cost <= 0.30 else 'MISSED'})")
    print(f"  one step at a time  : {single_rate:9,.0f} steps/s  ({t_single * 1e6:7.1f} us/step, diag cost "
          f"{(t_single - t_off) / t_off:.1%}: iterating the trainer; record, compare and the TUI use blocks)")

    try:
        import torch
    except ImportError:
        print("\ntorch not importable: no PyTorch comparison (pip install torch to get one)")
        return 0
    print(f"\ntorch {torch.__version__} (same initial weights: {'yes' if first_losses_agree(torch, preset) else 'NO'})")
    bench_torch(torch, preset, min(200, args.steps), 1, 1)  # warm-up
    results = {}
    for label, threads in (("1 thread", 1), ("default threads", None)):
        rate, t, n = bench_torch(torch, preset, args.steps, args.repeats, threads)
        results[label] = rate
        print(f"torch, {label:<15}: {rate:9,.0f} steps/s  ({t * 1e6:7.1f} us/step, {n} threads)")
    print()
    for label, rate in results.items():
        print(f"vs torch {label:<15}: diag-on/torch {on_rate / rate:5.2f}x   diag-off/torch {off_rate / rate:5.2f}x"
              f"   (target diag-on >= 3x: {'met' if on_rate / rate >= 3 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
