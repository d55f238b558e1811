"""Replay of a recording: plays it in fiftieths four times a second, pauses, steps one record and seeks;
seeking back starts over from the first record."""
from __future__ import annotations

from ..core import StreamReader
from .history import RunHistory
from .messages import Note, Progress
from .segments import Divergence, RunSplitter
from .source import BATCH_SECONDS, Source
from .state import RunState, Status


class ReplaySource(Source):
    """The records of one file, read whole before the app starts (on the UI thread: no worker)."""

    mode = "REPLAY"
    actions = frozenset({"step", "seek"})
    going = RunState.PLAYING

    def __init__(self, records: list, reader: StreamReader | None, name: str) -> None:
        super().__init__(name)
        self.records = records
        self.reader = reader
        self.position = 0  # records shown
        self.splitter = RunSplitter(reader)

    def start(self) -> None:
        super().start()
        self.post(Progress(notes=self._problems(), panels=False))
        self.app.set_interval(BATCH_SECONDS, self.tick)

    def _problems(self) -> list[Note]:
        """The lines the reader skipped, as one note."""
        problems = self.reader.problems if self.reader is not None else []
        if not problems:
            return []
        lines = ", ".join(str(p.line) for p in problems[:10])
        more = "" if len(problems) <= 10 else f" and {len(problems) - 10} more"
        return [Note(f"{self.name}: skipped {len(problems)} unreadable line(s): {lines}{more}", "bold yellow")]

    def tick(self) -> None:
        """Play the next fiftieth of the recording, unless paused or at its end."""
        if self.paused or self.position >= len(self.records):
            if self.position >= len(self.records) and self.state is RunState.PLAYING:
                self.state = RunState.END_OF_RECORDING
                self.post(Progress(panels=False))
            return
        self.seek_to(self.position + max(1, len(self.records) // 50))

    def seek_to(self, position: int) -> None:
        """Show the records up to `position`; going back replays from the first record."""
        position = max(0, min(len(self.records), position))
        notes, start, reset = [], self.position, position < self.position
        if reset:
            self.splitter, self.divergence = RunSplitter(self.reader), Divergence()
            notes, start = self._problems(), 0
            self.state = RunState.PAUSED if self.paused else RunState.PLAYING
        segments = self.splitter.split(self.records[start:position])
        self.position = position
        self.post(Progress(segments, notes, reset=reset))

    def receive(self, progress: Progress) -> Progress | None:
        """Diverged, unless played to the end (and not paused)."""
        if progress.segments:
            self.note_divergence(progress.segments)
            if self.position >= len(self.records) and not self.paused:
                self.state = RunState.END_OF_RECORDING
        return progress

    def status(self, current: RunHistory | None) -> Status:
        return Status(self.mode, f"{self.name} ({current.label if current else ''})", self.state,
                      step=current.last_step if current else None, diverged_at=self.diverged_at,
                      position=(self.position, len(self.records)))

    def step(self) -> None:
        if not self.paused:
            self.toggle_pause()
        self.seek_to(self.position + 1)

    def seek(self, fraction: float) -> None:
        self.seek_to(self.position + int(fraction * len(self.records)))
