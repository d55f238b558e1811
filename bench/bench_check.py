"""How fast `biasmon check` reads a long stream: 100,000 steps of a 2-16-16-1 net (biases 16, 16, 1).

    python bench/bench_check.py [--steps N] [--keep FILE]

The stream is synthetic but shaped like a real one: each layer's biases descend a noisy quadratic with
SGD (so every line has loss, val_loss, biases and bias_grads with realistic, changing values). It is
timed in-process (biasmon.core.check.check_stream: as `check` chooses, in one process, and with the JSON
parsed in a second process) and through the CLI as a subprocess (python -m biasmon check FILE), which
adds interpreter start-up and imports. Target: under 5 s.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

LAYERS = {"hidden1": 16, "hidden2": 16, "output": 1}


def write_stream(path, steps, seed=0):
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--keep", metavar="FILE", help="write the stream here (and keep it) instead of a temp file")
    args = p.parse_args(argv)
    from biasmon.core.check import check_stream

    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or os.path.join(tmp, "bench.jsonl")
        started = time.perf_counter()
        write_stream(path, args.steps)
        size = os.path.getsize(path) / 1e6
        print(f"wrote {args.steps:,} steps ({size:.1f} MB) in {time.perf_counter() - started:.2f} s -> {path}")

        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        for label, parallel in (("auto", None), ("one process", False), ("JSON parsed in a 2nd process", True)):
            started = time.perf_counter()
            result = check_stream(path, parallel=parallel).to_json()
            in_process = time.perf_counter() - started
            verdicts = ", ".join(f"{k} {v['verdict']}" for k, v in result["layers"].items())
            print(f"check in-process, {label}: {in_process:.2f} s ({args.steps / in_process:,.0f} steps/s); "
                  f"{verdicts}; exit {result['exit']}")

        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "biasmon", "check", path], capture_output=True, text=True)
        via_cli = time.perf_counter() - started
        print(f"check via CLI:    {via_cli:.2f} s (exit {proc.returncode})")
        if proc.returncode != result["exit"]:
            print(proc.stdout + proc.stderr, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
