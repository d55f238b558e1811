"""What writing the record stream costs: `biasmon record` against training alone, and bytes per step.

    python bench/bench_record.py [--steps N] [--repeats R] [--preset NAME]

Trains the preset (default `gradient`, the default net, diagnostics on, weights included) as `record`
does (Trainer.advance of trainer.block_steps(BLOCK_STEPS) steps; in the summary form with
step_detail=False, as `record` trains for it), once writing nothing (every step's diagnoses made) and
once writing every record to a file, in each form (sums: the default; vectors: every bias and weight),
each against training as record trains for it. The three runs alternate, R times each;
medians. Prints the writing's share of training (target: <= 0.5x) and the file's bytes per step (target:
<= 1 KB), and what 1,000,000 steps would take on disk.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    import biasmon  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from biasmon.commands import BLOCK_STEPS
from biasmon.core import presets
from biasmon.core.stream import RecordWriter
from biasmon.core.trainer import Trainer


FORMS = ("sums", "vectors")


def run(preset, steps: int, path: str | None, form: str) -> float:
    """Seconds to train `steps` steps, writing every record to `path` in `form` (None: not writing)."""
    trainer = Trainer(preset, steps=steps, step_detail=form == "vectors")   # as `record` trains for `form`
    handle = open(path, "w", encoding="utf-8") if path else None
    start = time.perf_counter()
    writer = RecordWriter(handle, form) if handle else None
    if writer:
        writer.write_json(trainer.header(form))
    while not trainer.done:
        records = trainer.advance(trainer.block_steps(BLOCK_STEPS))
        if writer:
            for rec in records:
                writer.write(rec)
    seconds = time.perf_counter() - start
    if handle:
        handle.close()
    assert trainer.step_index == steps, "the run ended early; the benchmark needs a full run"
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--preset", default=presets.DEFAULT_PRESET)
    args = p.parse_args(argv)
    preset = presets.resolve(args.preset)
    times: dict[tuple[str, bool], list[float]] = {(form, w): [] for form in FORMS for w in (False, True)}
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {}
        for _ in range(args.repeats):
            for form in FORMS:
                path = os.path.join(tmp, f"{form}.jsonl")
                times[form, False].append(run(preset, args.steps, None, form))
                times[form, True].append(run(preset, args.steps, path, form))
                sizes[form] = os.path.getsize(path)
    print(f"record {preset.name}, {args.steps:,} steps, medians of {args.repeats} alternating runs "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores):")
    for form in FORMS:
        train, spent = statistics.median(times[form, False]), statistics.median(times[form, True])
        per_step = sizes[form] / args.steps
        print(f"  {form:7s}: training alone {train / args.steps * 1e6:.0f} us/step; writing "
              f"{(spent - train) / train:.2f}x training; {per_step:,.0f} bytes/step "
              f"(1,000,000 steps: {per_step * 1e6 / 1e9:.2f} GB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
