"""The file `biasmon --record FILE` writes (no Textual here): the first run's header, then every record of
every run in order, a preset switch or restart as an event carrying the step the run it replaces reached."""
from __future__ import annotations

import threading
from typing import Callable, TextIO

from ..core import Event, RecordWriter, StepRecord, Trainer


class Recording:
    """One run at a time writes (hold `lock` around a block of steps); a write error stops the recording
    and is reported once through `failed`. With no path, nothing is written."""

    def __init__(self, path: str | None, failed: Callable[[str], None]) -> None:
        self.path = path
        self.failed = failed
        self.lock = threading.Lock()
        self.writer: RecordWriter | None = None
        self.handle: TextIO | None = None
        self.running: Trainer | None = None  # the last run that began: the one a new run replaces

    def open(self) -> str | None:
        """Create the file; the error to show if it cannot be written."""
        if not self.path:
            return None
        try:
            self.handle = open(self.path, "w", encoding="utf-8")
        except OSError as exc:
            return f"biasmon: error: {self.path}: cannot write ({exc.strerror or exc})"
        self.writer = RecordWriter(self.handle, "sums")
        return None

    @property
    def on(self) -> bool:
        """Whether records are being written."""
        return self.writer is not None

    def begin(self, trainer: Trainer, reason: str | None) -> int:
        """A run starts (hold `lock`): the header for the first, else a `reason` event at the step the run
        it replaces reached, which is returned (0 for the first). That is the last run that began, not the
        last one asked for: in a burst of keys most runs are cancelled before they begin."""
        left = self.running.step_index if self.running is not None else 0
        self.running = trainer
        if self.writer is None:
            return left
        if reason is None:
            self.writer.write_json(trainer.header("sums"))
        else:
            self.write(Event(reason, left, {"run_id": trainer.run_id, "preset": trainer.preset.name,
                                            "layers": trainer.header()["layers"]}))
        return left

    def write(self, record: StepRecord | Event) -> None:
        """Write one StepRecord or Event, if recording."""
        if self.writer is None:
            return
        try:
            self.writer.write(record)
        except (OSError, ValueError) as exc:
            self.writer = None
            self.failed(f"{self.path}: recording stopped ({exc})")

    def close(self) -> None:
        """Close the file (the app has exited)."""
        if self.handle is not None:
            self.handle.close()
