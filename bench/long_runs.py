"""Long runs of every shipped preset that trains its biases correctly: does any verdict cry wolf?

    python bench/long_runs.py [--steps N] [--preset NAME ...]

Each preset trains N steps (default 200,000) headless, diagnosed as `record` diagnoses (blocks of
BLOCK_STEPS), and its records are judged as `biasmon check` judges a stream: the final verdicts, every
problem verdict seen (first step, longest stretch), and the exit status check would give. Nothing is
written to disk. The story presets (the sign bug) and `frozen` are wrong on purpose and left out.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

try:
    import biasmon  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from biasmon.commands import BLOCK_STEPS
from biasmon.core import Thresholds, presets
from biasmon.core.check import Check
from biasmon.core.trainer import Trainer

CORRECT = ("gradient", "scaled", "error_scaled", "inverse_error", "gap_scaled", "lr_mult")


def judge(name: str, steps: int) -> tuple[str, float]:
    """One preset's line of the report, and the seconds it took."""
    started = time.perf_counter()
    trainer = Trainer(presets.resolve(name), steps=steps)
    check = Check(Thresholds(), source=name)
    while not trainer.done:
        check.add(trainer.advance(trainer.block_steps(BLOCK_STEPS)))
    result = check.result()
    final = " ".join(f"{layer}={r.verdict}" for layer, r in result.layers.items())
    seen = " ".join(f"{layer}:{p.verdict}@{p.first_step}/{p.longest_steps}" for layer, r in result.layers.items()
                    for p in r.problems) or "-"
    line = f"{name:<14} {result.last_step + 1:>8} steps  exit {result.exit}  {final}  problems seen: {seen}"
    return line, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--preset", nargs="*", default=list(CORRECT))
    args = parser.parse_args(argv)
    failed = 0
    for name in args.preset:
        line, seconds = judge(name, args.steps)
        print(f"{line}  ({seconds:.0f} s)", flush=True)
        failed += " exit 0 " not in line
    print(f"{len(args.preset) - failed} of {len(args.preset)} presets raised no alarm over {args.steps:,} steps")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
