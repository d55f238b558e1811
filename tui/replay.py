"""Replay of a recording: plays it in fiftieths four times a second, pauses, steps one record and seeks;
seeking back starts over from the first record. A recording given by its path is read in a thread worker
while the screen is up (the status line counts the lines read; q quits at once), its records kept compact
(tui/recording_file.py)."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

from textual.worker import get_current_worker

from ..core import StreamError, StreamReader
from .history import RunHistory
from .messages import Note, Progress, SourceFailed
from .recording_file import CHUNK_LINES, RecordBlocks, read_recording
from .segments import Divergence, RunSplitter
from .source import BATCH_SECONDS, Source
from .state import RunState, Status

LOADING_ACTIONS = frozenset({"step", "seek"})  # nothing to step or seek through before the file is read
SEEK_RECORDS = 8192  # records unpacked and handed to the panels at once when seeking


class ReplaySource(Source):
    """The records of one file: given (`records`), or read from `path` in a worker when the app starts."""

    mode = "REPLAY"
    actions = frozenset({"step", "seek"})
    going = RunState.PLAYING

    def __init__(self, records: Sequence | None, reader: StreamReader | None, name: str,
                 path: str | Path | None = None) -> None:
        super().__init__(name)
        self.records: Sequence = records if records is not None else []
        self.reader = reader
        self.path = path
        self.position = 0  # records shown
        self.splitter = RunSplitter(reader)
        self.read_lines = 0          # while reading: lines read so far, and the share of the file
        self.read_fraction = 0.0
        self._read: tuple[RecordBlocks, StreamReader, str | None] | None = None  # handed over by the worker
        self._seek: tuple[int, int] | None = None  # a seek under way: records handed over, records to show
        self._in_flight: Progress | None = None     # the last part of it posted
        if path is not None and records is None:
            self.state = RunState.READING

    @property
    def reading(self) -> bool:
        """Whether the file is still being read."""
        return self.state is RunState.READING

    def start(self) -> None:
        super().start()
        if self.reading:
            self.post(Progress(notes=[Note(f"reading {self.name}…", "bold")], panels=False))
            self.app.run_worker(self._load, name="read", group="replay", exclusive=True, thread=True)
        else:
            self.post(Progress(notes=self._problems(), panels=False))
        self.app.set_interval(BATCH_SECONDS, self.tick)

    def _load(self) -> None:
        """The worker: reads the file, says how far it got four times a second, then hands the records over
        (in the worker's thread; the UI thread takes them in receive())."""
        worker = get_current_worker()
        reader = StreamReader(source=self.name, block=CHUNK_LINES)
        records, error, began = RecordBlocks(), None, time.monotonic()
        last = began

        def progress(lines: int, done: int, size: int) -> None:
            nonlocal last
            self.read_lines, self.read_fraction = lines, min(1.0, done / size) if size else 1.0
            now = time.monotonic()
            if now - last >= BATCH_SECONDS:
                last = now
                self.post(Progress(panels=False))

        try:
            if not read_recording(self.path, reader, records, progress, lambda: worker.is_cancelled):
                return
        except StreamError as exc:
            error = str(exc)
        except Exception as exc:  # never a traceback: say what stopped, replay what was read
            error = f"{self.name}: reading stopped: {type(exc).__name__}: {exc}"
        self._read = (records, reader, error)
        self.post(Progress(notes=[Note(f"read {self.name}: {len(records):,} records from {self.read_lines:,} lines "
                                       f"in {time.monotonic() - began:.1f} s")], panels=False))

    def _take_read(self) -> list[Note]:
        """On the UI thread: play what the worker read (paused if space was pressed meanwhile); the notes
        to log."""
        records, reader, error = self._read
        self._read = None
        self.records, self.reader, self.splitter = records, reader, RunSplitter(reader)
        self.state = RunState.PAUSED if self.paused else RunState.PLAYING
        if error:
            self.app.post_message(SourceFailed(error))
        return self._problems()

    def _problems(self) -> list[Note]:
        """The lines the reader skipped, as one note."""
        problems = self.reader.problems if self.reader is not None else []
        if not problems:
            return []
        lines = ", ".join(str(p.line) for p in problems[:10])
        more = "" if len(problems) <= 10 else f" and {len(problems) - 10} more"
        return [Note(f"{self.name}: skipped {len(problems)} unreadable line(s): {lines}{more}", "bold yellow")]

    def tick(self) -> None:
        """Play the next fiftieth of the recording, unless paused, at its end, or not read yet."""
        if self.reading or self._seek is not None:
            return
        if self.paused or self.position >= len(self.records):
            if self.position >= len(self.records) and self.state is RunState.PLAYING:
                self.state = RunState.END_OF_RECORDING
                self.post(Progress(panels=False))
            return
        self.seek_to(self.position + max(1, len(self.records) // 50))

    def seek_to(self, position: int) -> None:
        """Show the records up to `position`; going back replays from the first record. The records are
        unpacked and handed to the panels SEEK_RECORDS at a time, the next once the app has taken the one
        before (the panels drawn after the last): a long way back never holds them all at once, and keys
        are read between them."""
        position = max(0, min(len(self.records), position))
        handed = self.shown
        notes, reset = [], position < handed
        if reset:
            self.splitter, self.divergence = RunSplitter(self.reader), Divergence()
            notes, handed = self._problems(), 0
            self.state = RunState.PAUSED if self.paused else RunState.PLAYING
        self.position = position
        self._seek = (handed, position)
        self._hand_over(notes, reset)

    def _hand_over(self, notes: list[Note] | None = None, reset: bool = False) -> None:
        """Post the next SEEK_RECORDS records of the seek under way (if it still is: a seek back in the
        meantime began another)."""
        if self._seek is None:
            return
        start, position = self._seek
        end = min(position, start + SEEK_RECORDS)
        self._seek = None if end == position else (end, position)
        self._in_flight = Progress(self.splitter.split(self.records[start:end]), notes or [], reset=reset,
                                   panels=self._seek is None)
        self.post(self._in_flight)

    def receive(self, progress: Progress) -> Progress | None:
        """The records read, once the worker hands them over; diverged, unless played to the end (and not
        paused)."""
        if self.reading and self._read is not None:
            progress = dataclasses.replace(progress, notes=[*progress.notes, *self._take_read()])
        if progress is self._in_flight and self._seek is not None:
            self.app.call_after_refresh(self._hand_over)  # the next part, once this one is on screen
        if progress.segments:
            self.note_divergence(progress.segments)
            if self.position >= len(self.records) and not self.paused:
                self.state = RunState.END_OF_RECORDING
        return progress

    def status(self, current: RunHistory | None) -> Status:
        label = f" ({current.label})" if current is not None else ""
        return Status(self.mode, f"{self.name}{label}", self.state,
                      step=current.last_step if current else None, diverged_at=self.diverged_at,
                      position=None if self.reading else (self.shown, len(self.records)),
                      read=(self.read_lines, self.read_fraction) if self.reading else None)

    @property
    def shown(self) -> int:
        """The records handed to the panels so far (a seek under way gets to `position` in parts)."""
        return self._seek[0] if self._seek is not None else self.position

    def can(self, action: str) -> bool:
        """Step and seek wait for the file to be read."""
        return not (self.reading and action in LOADING_ACTIONS)

    def step(self) -> None:
        if self.reading:
            return
        if not self.paused:
            self.toggle_pause()
        self.seek_to(self.position + 1)

    def seek(self, fraction: float) -> None:
        if not self.reading:
            self.seek_to(self.position + int(fraction * len(self.records)))
