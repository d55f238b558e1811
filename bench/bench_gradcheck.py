"""The finite-difference gradient check's share of training, at the default schedule (every 500 steps).

    python bench/bench_gradcheck.py [--steps N] [--nets NAME ...] [--threads T]

On bench_core's four nets (same data and settings), a trainer runs N steps (default 1500: checks at steps
0, 500 and 1000, so one check per 500 steps, as presets schedule it) with diagnostics on, as `record`
trains. The time inside the checks is measured apart from the rest: share = check time / the rest (the
check's cost over the training it rides on). --threads T limits BLAS to T threads for the whole run (by
default the trainer chooses: core/threads.py). Issue 12's target: <= 5% on every net.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import BLOCK_STEPS, STEPS, Trainer, bench_nets  # noqa: E402

from threadpoolctl import threadpool_limits  # noqa: E402

from biasmon.core.gradcheck import sample_entries  # noqa: E402

EVERY = 500


def check_share(preset, steps: int, threads: int | None = None) -> tuple[float, float, int, int, int]:
    """(check seconds, the rest in seconds, checks run, biases in all, biases checked in each)."""
    preset = replace(preset, diagnostics=dict(preset.diagnostics, grad_check_every=EVERY))
    spent = []
    with threadpool_limits(threads) if threads else nullcontext():
        trainer = Trainer(preset, steps=steps)
        original = trainer._gradient_check

        def timed(step):
            start = time.perf_counter()
            original(step)
            spent.append(time.perf_counter() - start)
        trainer._gradient_check = timed
        start = time.perf_counter()
        while not trainer.done:
            trainer.advance(trainer.block_steps(BLOCK_STEPS))
        total = time.perf_counter() - start
    assert trainer.step_index == steps, "the run diverged; the benchmark needs a full run"
    sample = sample_entries(trainer.layout)
    biases = sum(trainer.layout.sizes)
    return sum(spent), total - sum(spent), len(spent), biases, biases if sample is None else len(sample)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3 * EVERY)
    parser.add_argument("--nets", nargs="*", choices=list(STEPS), default=list(STEPS))
    parser.add_argument("--threads", type=int, default=None, help="limit BLAS to this many threads")
    args = parser.parse_args(argv)
    print(f"gradient check every {EVERY} steps, {args.steps} steps per net, BLAS threads "
          f"{args.threads or 'chosen by the trainer'}; load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for name, preset in bench_nets(folder).items():
            if name not in args.nets:
                continue
            check, rest, count, biases, checked = check_share(preset, args.steps, args.threads)
            share = check / rest
            print(f"gradient check share {name:<17} {share:6.1%}  ({count} checks of {checked} of {biases} biases, "
                  f"{check / count:7.3f} s each; training {rest / args.steps * 1e3:7.3f} ms/step; "
                  f"target <= 5%: {'met' if share <= 0.05 else 'MISSED'})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
