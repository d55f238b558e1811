"""The record stream: JSON Lines, one header line (optional), step lines and event lines.

Written line by line and flushed, so a file cut off anywhere loses at most its last line.
docs/stream-format.md describes the format; core/reader.py reads it back.
"""
from __future__ import annotations

import json
from typing import IO

FORMAT = "biasmon-stream"
VERSION = 1
RESET_EVENTS = ("preset_switched", "restarted")  # events that end one run in a stream and begin the next


def header(run_id: str, **fields) -> dict:
    """A stream's first line: the format, its version, the run id, then `fields` in their order."""
    return {"format": FORMAT, "version": VERSION, "run_id": run_id, **fields}


class RecordWriter:
    """Writes records to an open text file, one flushed line each."""

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle

    def write_json(self, obj: dict) -> None:
        self.handle.write(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
        self.handle.flush()

    def write(self, record) -> None:
        """A StepRecord or Event."""
        self.write_json(record.to_json())
