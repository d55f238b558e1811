"""Every benchmark, one after another, each printing its rows: `python bench/all.py [--quick]`.

The rows of issue 12's table and issue 11's speed targets, one script each (see its docstring):
  bench_core.py        core vs PyTorch CPU on four nets; default threads vs one, idle and busy
  bench_gradcheck.py   the gradient check's share of training on each net
  bench_record.py      writing the record stream vs training, bytes a step
  bench_check.py       check of a 100,000-step vector stream; of a 1,000,000-step 10-layer summary stream
  bench_watch.py       watch: lines/s and lag
  bench_launch.py      TUI launch to first frame
  bench_tui.py         the live TUI vs headless training, key latency, memory
  bench_frameworks.py  the PyTorch helpers' overhead per model (if torch is installed)
--quick runs smaller versions (fewer steps, the 1,000,000-step check at 100,000) for a first look; the
figures to quote come from a full run. The machine is shared: each script interleaves what it compares
and takes medians; the load average is printed before each.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def runs(quick: bool) -> list[list[str]]:
    sums_steps = "100000" if quick else "1000000"
    return [
        ["bench_core.py"] + (["--rounds", "3", "--thread-rounds", "1"] if quick else []),
        ["bench_gradcheck.py"],
        ["bench_record.py"] + (["--repeats", "3"] if quick else []),
        ["bench_check.py", "--form", "vectors", "--steps", "100000"],
        ["bench_check.py", "--form", "sums", "--layers", "10", "--steps", sums_steps, "--repeats", "1"],
        ["bench_watch.py"],
        ["bench_launch.py"],
        ["bench_tui.py"] + (["--quick"] if quick else []),
        ["bench_frameworks.py"] + (["--reps", "3"] if quick else []),
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    failed = []
    for command in runs(args.quick):
        script = HERE / command[0]
        if not script.exists():
            print(f"== {command[0]}: not here, skipped", flush=True)
            continue
        print(f"== {' '.join(command)}  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, str(script), *command[1:]])
        print(f"== {command[0]}: exit {code}, {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failed.append(command[0])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
