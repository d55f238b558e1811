"""The record stream: JSON Lines, one header line (optional), step lines and event lines.

Written line by line and flushed, so a file cut off anywhere loses at most its last line.
docs/stream-format.md describes the format; core/reader.py reads it back.
"""
from __future__ import annotations

import json
import os
from typing import IO, Any

from . import __version__
from .errors import BiasmonError
from .layout import Layout
from .readlines import MAX_LINE_CHARS

FORMAT = "biasmon-stream"
VERSION = 2               # 2: weights, and the summary form (per-layer sums); docs/stream-format.md
READ_VERSIONS = (1, 2)    # a version 1 stream is a version 2 stream with neither
RESET_EVENTS = ("preset_switched", "restarted")  # events that end one run in a stream and begin the next


def header(run_id: str, version: int = VERSION, **fields) -> dict:
    """A stream's first line: the format, its version, the run id, then `fields` in their order. A writer
    names the lowest version its lines need (1: bias vectors only), so that older readers read it too."""
    return {"format": FORMAT, "version": version, "run_id": run_id, **fields}


def sums_header(run_id: str, writer: str, biases: Layout, weights: Layout, average: str | None, float32: bool,
                every: int, meta: dict | None) -> dict:
    """The header of a summary-form stream a framework helper writes: its layers (weights if any), the
    running average its rows carry (the optimizer's field, or none), float32 gradients, `every`, meta."""
    fields: dict[str, Any] = {"biasmon": __version__, "writer": writer, "layers": biases.to_json()}
    if weights.names:
        fields["weights"] = weights.to_json()
    fields["form"] = "sums"
    fields["averages"] = [average] if average else []
    if float32:
        fields["grad_dtype"] = "float32"
    fields["every"] = every
    if meta:
        fields["meta"] = meta
    return header(run_id, 2, **fields)


def open_target(target: Any, who: str) -> tuple[IO[str], bool]:
    """A stream's target as an open text file, and whether it was opened here (a path: created, or
    emptied) rather than given open; a one-line BiasmonError otherwise (`who` names the writer)."""
    if isinstance(target, (str, os.PathLike)):
        try:
            return open(target, "w", encoding="utf-8"), True
        except OSError as exc:
            raise BiasmonError(f"{target}: cannot write the stream ({exc.strerror or exc})") from None
    if target is None or not hasattr(target, "write"):
        raise BiasmonError(f"{who}: the stream's target must be a file path or an open text file, "
                           f"got {type(target).__name__}")
    return target, False


def too_long(obj: dict, chars: int) -> str:
    """Why a line of `chars` characters is not written, and what to log instead."""
    what = f"step {obj['step']}'s line" if isinstance(obj.get("step"), int) else "a line"
    return (f"{what} would be {chars:,} characters, past the {MAX_LINE_CHARS:,} a reader takes (check, replay "
            "and watch skip a longer line), so it was not written: log a model this big in the summary form "
            "(per-layer sums: record --form sums, the default; StreamWriter(form=\"sums\"); TorchMonitor)")


class RecordWriter:
    """Writes records to an open text file, one flushed line each. form "sums": step records in the
    summary form (per-layer sums, no vectors, no stored diagnoses); "vectors": whole vectors."""

    def __init__(self, handle: IO[str], form: str = "vectors") -> None:
        self.handle = handle
        self.summary = form == "sums"

    def write_json(self, obj: dict, allow_nan: bool = False) -> None:
        """One line. allow_nan: a summary-form line, whose non-finite sums are the literals NaN and
        Infinity (null there means unknown). A line longer than a reader takes (MAX_LINE_CHARS: a big
        model's vectors) is not written: a BiasmonError says so (check, replay and watch would skip it)."""
        line = json.dumps(obj, separators=(",", ":"), allow_nan=allow_nan)
        if len(line) > MAX_LINE_CHARS:
            raise BiasmonError(too_long(obj, len(line)))
        self.handle.write(line + "\n")
        self.handle.flush()

    def write(self, record) -> None:
        """A StepRecord or Event."""
        if self.summary and hasattr(record, "summary_json"):
            self.write_json(record.summary_json(), allow_nan=True)
        else:
            self.write_json(record.to_json())
