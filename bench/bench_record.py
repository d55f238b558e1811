"""What writing the record stream costs: `biasmon record` against training alone, and bytes per step.

    python bench/bench_record.py [--steps N] [--repeats R] [--preset NAME]

Trains the preset (default `gradient`, the default net, diagnostics on, weights included) as `record`
does (Trainer.advance(BLOCK_STEPS)), once writing nothing and once writing every record to a file, in
each form (sums: the default; vectors: every bias and weight). The three runs alternate, R times each;
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


def run(preset, steps: int, path: str | None, form: str) -> float:
    """Seconds to train `steps` steps, writing every record to `path` in `form` (None: not writing)."""
    trainer = Trainer(preset, steps=steps)
    handle = open(path, "w", encoding="utf-8") if path else None
    start = time.perf_counter()
    writer = RecordWriter(handle, form) if handle else None
    if writer:
        writer.write_json(trainer.header(form))
    while not trainer.done:
        records = trainer.advance(BLOCK_STEPS)
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
    times: dict[str, list[float]] = {"train": [], "sums": [], "vectors": []}
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {}
        for _ in range(args.repeats):
            times["train"].append(run(preset, args.steps, None, "sums"))
            for form in ("sums", "vectors"):
                path = os.path.join(tmp, f"{form}.jsonl")
                times[form].append(run(preset, args.steps, path, form))
                sizes[form] = os.path.getsize(path)
    train = statistics.median(times["train"])
    print(f"record {preset.name}, {args.steps:,} steps, medians of {args.repeats} alternating runs "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores):")
    print(f"  training alone: {train / args.steps * 1e6:.0f} us/step")
    for form in ("sums", "vectors"):
        spent = statistics.median(times[form])
        per_step = sizes[form] / args.steps
        print(f"  writing, {form:7s}: {(spent - train) / train:.2f}x training; {per_step:,.0f} bytes/step "
              f"(1,000,000 steps: {per_step * 1e6 / 1e9:.2f} GB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
