"""How fast `biasmon check` reads a long stream, in either form.

    python bench/bench_check.py [--steps N] [--layers L] [--form vectors|sums] [--keep FILE]
                                [--against PYTHON] [--repeats R]

Rows of the issues' tables:
  - `--form vectors` (default): 100,000 steps of a 2-16-16-1 net's biases (16, 16, 1), every vector:
    each layer's biases descend a noisy quadratic with SGD, so every line has loss, val_loss, biases and
    bias_grads with realistic, changing values. Target: >= 50,000 lines/s, under 2 s.
  - `--form sums --layers 10 --steps 1000000`: a 10-layer model's summary-form stream (bias_sums and
    weight_sums per layer, two running averages), its sums shaped as SGD's on a quadratic (|g|^2
    falling, u = -lr g, so u.g = -lr |g|^2). Target: under 10 s.
It is timed in-process (biasmon.core.check.check_stream: as `check` chooses) and through the CLI as a
subprocess (python -m biasmon check FILE), which adds interpreter start-up and imports. With --against
PYTHON (another checkout's interpreter), the CLI runs alternate between the two, R times each, and the
medians and their ratio are printed (the machine is shared: interleaved runs, medians).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

LAYERS = {"hidden1": 16, "hidden2": 16, "output": 1}


def write_vectors(path: str, steps: int, seed: int = 0) -> None:
    """The vector form: a 2-16-16-1 net's biases and their gradients, SGD on a noisy quadratic."""
    rng = np.random.default_rng(seed)
    n = sum(LAYERS.values())
    curvature = rng.uniform(0.2, 2.0, size=n)
    target = rng.normal(0, 1, size=n)
    b = rng.normal(0, 0.5, size=n)
    lr = 0.05
    starts = np.cumsum([0] + list(LAYERS.values()))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(json.dumps({"format": "biasmon-stream", "version": 1, "run_id": "bench",
                                 "layers": [{"name": k, "size": v} for k, v in LAYERS.items()]}) + "\n")
        for t in range(steps):
            g = curvature * (b - target) + rng.normal(0, 0.05, size=n)
            loss = float(0.5 * np.sum(curvature * (b - target) ** 2)) + 0.01
            line = {"step": t, "loss": loss, "val_loss": loss * 1.1,
                    "biases": {k: b[starts[i]:starts[i + 1]].tolist() for i, k in enumerate(LAYERS)},
                    "bias_grads": {k: g[starts[i]:starts[i + 1]].tolist() for i, k in enumerate(LAYERS)}}
            handle.write(json.dumps(line, separators=(",", ":")) + "\n")
            b = b - lr * g


def write_sums(path: str, steps: int, layers: int, seed: int = 0) -> None:
    """The summary form: `layers` layers of 64 biases and 64x64 weights, rows [n, |p|^2, |g|^2, |u|^2,
    u.g, sig, agree, |a1|^2, |a2|^2, a1.u, a2.u] as SGD with lr 0.01 on a slowly converging problem gives."""
    rng = np.random.default_rng(seed)
    lr = 0.01
    names = [f"layer{i + 1}" for i in range(layers)]
    kinds = {"bias_sums": 64, "weight_sums": 64 * 64}
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(json.dumps({"format": "biasmon-stream", "version": 2, "run_id": "bench", "form": "sums",
                                 "averages": ["ema0.9", "ema0.99"],
                                 "layers": [{"name": n, "size": 64} for n in names],
                                 "weights": [{"name": n, "size": 64 * 64} for n in names]}) + "\n")
        block = 1000
        for start in range(0, steps, block):
            m = min(block, steps - start)
            t = np.arange(start, start + m)[:, None, None]
            decay = 1.0 / (1.0 + t / 5000.0)
            gg = decay * rng.uniform(0.5, 1.5, size=(m, 2, layers))
            pp = 10.0 + rng.uniform(0, 0.1, size=(m, 2, layers))
            loss = 0.5 * decay[:, 0, 0] + 0.01
            for i in range(m):
                line = {"step": start + i, "loss": float(loss[i]), "val_loss": float(loss[i] * 1.1)}
                for k, (key, n) in enumerate(kinds.items()):
                    rows = {}
                    for j, name in enumerate(names):
                        g2 = float(gg[i, k, j])
                        rows[name] = [n, float(pp[i, k, j]), g2, lr * lr * g2, -lr * g2, n, n,
                                      0.9 * g2, 0.8 * g2, -lr * 0.9 * g2, -lr * 0.8 * g2]
                    line[key] = rows
                handle.write(json.dumps(line, separators=(",", ":")) + "\n")


def cli_seconds(python: str, path: str) -> tuple[float, int]:
    started = time.perf_counter()
    proc = subprocess.run([python, "-m", "biasmon", "check", path], capture_output=True, text=True,
                          cwd=tempfile.gettempdir())   # not a checkout: `-m biasmon` is the interpreter's own
    if proc.returncode not in (0, 1):
        print(f"{python}: {proc.stderr[-2000:]}", file=sys.stderr)
    return time.perf_counter() - started, proc.returncode


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--layers", type=int, default=10, help="layers of the summary-form stream")
    p.add_argument("--form", choices=("vectors", "sums"), default="vectors")
    p.add_argument("--keep", metavar="FILE", help="write the stream here (and keep it; reused if it exists)")
    p.add_argument("--against", metavar="PYTHON", help="another checkout's python: CLI runs interleaved with it")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    from biasmon.core.check import check_stream

    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or os.path.join(tmp, "bench.jsonl")
        if not (args.keep and os.path.exists(path)):
            started = time.perf_counter()
            if args.form == "vectors":
                write_vectors(path, args.steps)
            else:
                write_sums(path, args.steps, args.layers)
            print(f"wrote {args.steps:,} steps ({os.path.getsize(path) / 1e6:.1f} MB) in "
                  f"{time.perf_counter() - started:.2f} s -> {path}")
        what = f"{args.steps:,} steps, {args.form}" + (f", {args.layers} layers" if args.form == "sums" else "")
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        started = time.perf_counter()
        result = check_stream(path).to_json()
        in_process = time.perf_counter() - started
        verdicts = ", ".join(f"{k} {v['verdict']}" for k, v in list(result["layers"].items())[:3])
        print(f"check in-process ({what}): {in_process:.2f} s ({args.steps / in_process:,.0f} lines/s); "
              f"{verdicts}; exit {result['exit']}")
        times: dict[str, list[float]] = {"this": [], "against": []}
        for _ in range(args.repeats):
            for label, python in (("this", sys.executable), ("against", args.against)):
                if python is None:
                    continue
                seconds, code = cli_seconds(python, path)
                if code != result["exit"]:
                    print(f"{label}: check exited {code}, in-process {result['exit']}", file=sys.stderr)
                    return 1
                times[label].append(seconds)
        this = statistics.median(times["this"])
        print(f"check via CLI ({what}): median {this:.2f} s ({args.steps / this:,.0f} lines/s) of {times['this']}")
        if times["against"]:
            other = statistics.median(times["against"])
            print(f"  against {args.against}: median {other:.2f} s; ratio this/against {this / other:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
