"""Watching a stream another process writes: a file as it grows (like tail -F: one not created yet is waited
for) or a pipe until it closes.
A thread worker (a thin loop over `follow`) posts what it read four times a second; paused, the view
holds what arrives and catches up when it is resumed."""
from __future__ import annotations

import dataclasses
import os
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from textual.worker import get_current_worker

from ..core import MAX_LINE_CHARS, OVERLONG_LINE, BiasmonError, Event, StreamError, StreamReader
from .messages import Note, Progress, SourceFailed
from .segments import RunSplitter, Segment
from .source import BATCH_SECONDS, Source
from .state import RunState

POLL_SECONDS = 0.05  # a file with nothing new is read again after this long
READ_BLOCK = 4096    # steps diagnosed together at most; what was read is diagnosed at each post anyway


class PipeStream:
    """Standard input handed over by `watch -`, read from a duplicated descriptor."""

    is_pipe = True

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle

    def readline(self, size: int = -1) -> str:
        """The next line (at most `size` characters of it), "" once the pipe is closed."""
        return self.handle.readline(size)


class WaitingFile:
    """A file `watch` started on before the trainer created it: read as empty until it appears (the
    status line says so), then followed from its first line."""

    is_pipe = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: IO[str] | None = None

    @property
    def waiting(self) -> bool:
        """Whether the file has not appeared yet."""
        return self.handle is None

    def readline(self, size: int = -1) -> str:
        """The next line of the file (at most `size` characters of it), "" while there is none or no file yet."""
        if self.handle is None:
            if not self.path.exists():
                return ""
            if not self.path.is_file():
                raise StreamError(f"{self.path}: appeared, but is not a regular file to watch")
            self.handle = open(self.path, encoding="utf-8", errors="replace")
        return self.handle.readline(size)


def open_stream(source: str) -> tuple[IO[str] | PipeStream, str]:
    """The stream `biasmon watch SOURCE` follows and its name; `-` is standard input, and the keys are
    then read from /dev/tty."""
    if source == "-":
        if sys.stdin.isatty():
            raise BiasmonError("watch -: standard input is a terminal; pipe a trainer into it "
                               "(./my_trainer | biasmon watch -)")
        pipe = os.fdopen(os.dup(0), "r", encoding="utf-8", errors="replace")
        try:
            tty = os.open("/dev/tty", os.O_RDONLY)
        except OSError:
            raise BiasmonError("watch -: no terminal to read keys from (/dev/tty)") from None
        os.dup2(tty, 0)
        os.close(tty)
        return PipeStream(pipe), "stdin"
    path = Path(source)
    if not path.exists() and not path.is_symlink():  # like tail -F: the trainer may not have created it yet
        return WaitingFile(path), str(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise BiasmonError(f"{path}: no such file to watch") from None
    except OSError as exc:
        raise BiasmonError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "a pipe or a device"
        raise BiasmonError(f"{path}: not a regular file ({what}); watch a stream file, or pipe the stream in: "
                           "... | biasmon watch -")
    return open(path, encoding="utf-8", errors="replace"), str(path)


@dataclass
class Read:
    """What `follow` read since its last Read: records, newly skipped lines, steps per second."""

    records: list
    problems: list
    rate: float
    ended: bool


def follow(stream: IO[str] | PipeStream, reader: StreamReader) -> Iterator[Read | None]:
    """Read the stream as it grows, yielding a Read every BATCH_SECONDS (and at the end of a pipe), None
    between them. A line is fed only once complete, so a trainer that dies mid-line costs that line; a line
    past MAX_LINE_CHARS is skipped (and counted) as it grows, never held whole."""
    pending, partial, reported, steps, skipping = [], "", 0, 0, False
    last_post = time.monotonic()
    while True:
        text, ended = stream.readline(MAX_LINE_CHARS + 1 - len(partial)), False
        if text and skipping:
            skipping = not text.endswith("\n")
        elif text:
            partial += text
            if partial.endswith("\n") or len(partial) > MAX_LINE_CHARS:
                skipping = not partial.endswith("\n")
                records, partial = reader.feed(OVERLONG_LINE if skipping else partial), ""
                pending.extend(records)
                steps += sum(1 for r in records if not isinstance(r, Event))
        elif getattr(stream, "is_pipe", False):
            pending.extend(reader.feed(partial) if partial else [])
            pending.extend(reader.finish())
            ended = True
        else:
            time.sleep(POLL_SECONDS)
        now = time.monotonic()
        if not (ended or now - last_post >= BATCH_SECONDS):
            yield None
            continue
        drained = reader.drain()  # the steps read since the last Read, diagnosed as one block
        pending.extend(drained)
        steps += sum(1 for r in drained if not isinstance(r, Event))
        yield Read(pending, reader.problems[reported:], steps / (now - last_post), ended)
        reported = len(reader.problems)
        pending, steps, last_post = [], 0, now
        if ended:
            return


class WatchSource(Source):
    """Follows `stream` in a thread worker; pause holds the view still (the status line says "paused")."""

    mode = "WATCH"
    going, halted = RunState.FOLLOWING, RunState.PAUSED

    def __init__(self, stream: IO[str] | PipeStream | WaitingFile, name: str) -> None:
        super().__init__(name)
        self.stream = stream
        self.held: list[Segment] = []  # read while paused
        if getattr(stream, "waiting", False):
            self.state = RunState.WAITING

    def start(self) -> None:
        super().start()
        self.app.run_worker(self._follow, name="follow", group="watch", exclusive=True, thread=True)
        waiting = self.state is RunState.WAITING
        self.post(Progress(notes=[Note(f"waiting for {self.name} to be created: it is followed once it appears "
                                       "(start the trainer)", "bold")] if waiting else [], panels=False))

    def _follow(self) -> None:
        """The worker: posts each Read of `follow`, its records cut into runs (in the worker's thread)."""
        worker = get_current_worker()
        reader = StreamReader(source=self.name, block=READ_BLOCK)
        splitter = RunSplitter(reader)
        try:
            for read in follow(self.stream, reader):
                if worker.is_cancelled:
                    return
                if read is not None:
                    notes = [Note(f"{self.name}: skipped {p}", "yellow") for p in read.problems]
                    self.post(Progress(splitter.split(read.records), notes, rate=read.rate, done=read.ended))
        except StreamError as exc:
            self.post(SourceFailed(str(exc)))
        except Exception as exc:  # never a traceback: say what stopped, keep what was shown
            self.post(SourceFailed(f"{self.name}: reading stopped: {type(exc).__name__}: {exc}"))

    def receive(self, progress: Progress) -> Progress | None:
        """Paused: hold the runs read (log what was skipped); else show them with all held before."""
        if progress.rate is not None:
            self.rate = progress.rate
        if self.state is RunState.WAITING and not self.stream.waiting:
            self.state = self.halted if self.paused else self.going
            progress = dataclasses.replace(progress, notes=[Note(f"{self.name} appeared: following it"),
                                                            *progress.notes])
        self.held.extend(progress.segments)
        segments = []
        if not self.paused:
            segments, self.held = self.held, []
            self.note_divergence(segments)
        if progress.done:
            self.state = RunState.END_OF_STREAM
        return dataclasses.replace(progress, segments=segments)
