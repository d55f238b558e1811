"""The record stream: JSON Lines, one header line (optional), step lines and event lines.

Written line by line and flushed, so a file cut off anywhere loses at most its last line.
docs/stream-format.md describes the format; core/reader.py reads it back.
"""
from __future__ import annotations

import json
from typing import IO

FORMAT = "biasmon-stream"
VERSION = 2               # 2: weights, and the summary form (per-layer sums); docs/stream-format.md
READ_VERSIONS = (1, 2)    # a version 1 stream is a version 2 stream with neither
RESET_EVENTS = ("preset_switched", "restarted")  # events that end one run in a stream and begin the next


def header(run_id: str, version: int = VERSION, **fields) -> dict:
    """A stream's first line: the format, its version, the run id, then `fields` in their order. A writer
    names the lowest version its lines need (1: bias vectors only), so that older readers read it too."""
    return {"format": FORMAT, "version": version, "run_id": run_id, **fields}


class RecordWriter:
    """Writes records to an open text file, one flushed line each. form "sums": step records in the
    summary form (per-layer sums, no vectors, no stored diagnoses); "vectors": whole vectors."""

    def __init__(self, handle: IO[str], form: str = "vectors") -> None:
        self.handle = handle
        self.summary = form == "sums"

    def write_json(self, obj: dict) -> None:
        self.handle.write(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
        self.handle.flush()

    def write(self, record) -> None:
        """A StepRecord or Event."""
        self.write_json(record.summary_json() if self.summary and hasattr(record, "summary_json") else record.to_json())
