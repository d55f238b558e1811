"""The file `biasmon --record FILE` writes (no Textual here): the first run's header, then every record of
every run in order, a preset switch or restart as an event carrying the old run's last step."""
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

    def open(self) -> str | None:
        """Create the file; the error to show if it cannot be written."""
        if not self.path:
            return None
        try:
            self.handle = open(self.path, "w", encoding="utf-8")
        except OSError as exc:
            return f"biasmon: error: {self.path}: cannot write ({exc.strerror or exc})"
        self.writer = RecordWriter(self.handle)
        return None

    @property
    def on(self) -> bool:
        """Whether records are being written."""
        return self.writer is not None

    def begin(self, trainer: Trainer, reason: str | None, old_step: int) -> None:
        """A run starts: the header for the first, else a `reason` event at the old run's last step."""
        if self.writer is None:
            return
        if reason is None:
            self.writer.write_json(trainer.header())
        else:
            self.write(Event(reason, old_step, {"run_id": trainer.run_id, "preset": trainer.preset.name,
                                                "layers": trainer.header()["layers"]}))

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
