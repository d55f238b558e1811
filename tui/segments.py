"""Runs in a flow of records (no Textual here). A source hands the app segments: each is a batch of one
run's steps, and the first segment of a run says how the run began."""
from __future__ import annotations

from dataclasses import dataclass

from ..core import RESET_EVENTS, Event, StreamReader
from .history import Batch, BatchBuilder


@dataclass(frozen=True)
class RunStart:
    """A run begins: the one on screen becomes the faint previous run (if it has steps, or always when
    `keep_empty`) and `note`, if any, marks the switch in the events log."""

    run_id: str
    label: str
    note: str | None = None
    keep_empty: bool = False


@dataclass
class Segment:
    """A batch of one run's steps and events; `start` is set when the run begins with this batch."""

    batch: Batch
    start: RunStart | None = None


@dataclass
class Divergence:
    """The first divergence of the run being shown, followed across segments."""

    step: int | None = None

    def follow(self, segments: list[Segment]) -> int | None:
        """The step the current run diverged at (None: it has not), after these segments."""
        for segment in segments:
            if segment.start is not None:
                self.step = None
            if self.step is None:
                self.step = next((e.step for e in segment.batch.events if e.kind == "diverged"), None)
        return self.step


def header_label(reader: StreamReader | None) -> str:
    """The preset named in a stream's header, or "run"."""
    preset = (reader.header or {}).get("preset") if reader is not None else None
    label = preset.get("name") if isinstance(preset, dict) else None
    return str(label or "run")


class RunSplitter:
    """Cuts the records of a recording or a stream into segments: a preset switch or a restart event
    begins a new run (and belongs to it). The first call begins the stream's first run (`run_id`); with a
    `reason` (a watched file read again from its start), the events log marks it as a new run."""

    def __init__(self, reader: StreamReader | None, run_id: str = "stream", reason: str | None = None) -> None:
        self.reader = reader
        self.first_run_id = run_id
        self.reason = reason
        self.run_id: str | None = None

    def split(self, records: list) -> list[Segment]:
        """Segments for these records, in order (at least one, maybe with no steps)."""
        start = None
        if self.run_id is None:
            self.run_id, label = self.first_run_id, header_label(self.reader)
            note = f"── new run: {label} ({self.reason}) ──" if self.reason else None
            start = RunStart(self.run_id, label, keep_empty=True, note=note)
        segments = []
        builder = BatchBuilder(self.run_id)
        for record in records:
            if isinstance(record, Event) and record.kind in RESET_EVENTS:
                segments.append(Segment(builder.take(), start))
                self.run_id = str(record.data.get("run_id", ""))
                label = str(record.data.get("preset", "run"))
                start = RunStart(self.run_id, label, keep_empty=True, note=f"── new run: {label} "
                                 f"({record.kind.replace('_', ' ')} at step {record.step}) ──")
                builder = BatchBuilder(self.run_id)
            builder.add(record)
        segments.append(Segment(builder.take(), start))
        return segments
