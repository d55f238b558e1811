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
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class FileChange:
    """What happened to the file at the watched path since it was opened; `new_run`: it is read again
    from its first line, as a new run (it was truncated, or another file is at the path now)."""

    text: str
    new_run: bool


class FollowedFile:
    """The file at a path, followed like tail -F: waited for if it does not exist yet (the status line
    says so), then read from its first line; at the end of what was read, `changed` looks whether the
    path still holds that file, as it was."""

    is_pipe = False

    def __init__(self, path: Path, handle: IO[str] | None = None) -> None:
        self.path = path
        self.handle: IO[str] | None = None
        self.identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file open
        self.removed = False  # the path has held no file since the one open was removed
        if handle is not None:
            self._take(handle)

    @property
    def waiting(self) -> bool:
        """Whether the file has not appeared yet."""
        return self.handle is None

    def _take(self, handle: IO[str]) -> None:
        """Follow `handle` from its first line (the one before, if any, is closed)."""
        if self.handle is not None:
            self.handle.close()
        info = os.fstat(handle.fileno())
        self.handle, self.identity, self.removed = handle, (info.st_dev, info.st_ino), False

    def _open(self) -> bool:
        """Open the file at the path, if there is one now (False: none, or it went again)."""
        try:
            mode = os.stat(self.path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return False
        if not stat.S_ISREG(mode):
            raise StreamError(f"{self.path}: appeared, but is not a regular file to watch")
        try:
            handle = open(self.path, encoding="utf-8-sig", errors="replace")
        except FileNotFoundError:
            return False
        self._take(handle)
        return True

    def readline(self, size: int = -1) -> str:
        """The next line of the file (at most `size` characters of it), "" while there is none or no file yet."""
        if self.handle is None and not self._open():
            return ""
        return self.handle.readline(size)

    def changed(self) -> FileChange | None:
        """Called at the end of what was read: whether the path still holds the file open, as read. Like
        tail -F, a file truncated below what was read is read again from its start, a file replaced (moved
        over, or removed and created again) is left for the new one; while the path holds no file, what
        is open is still read. None: nothing changed (or only what was said already)."""
        if self.handle is None:
            return None
        try:
            info = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            if self.removed:
                return None
            self.removed = True
            return FileChange(f"{self.path} was removed: a new file there will be read from its start",
                              new_run=False)
        except OSError:
            return None
        if self.removed or (info.st_dev, info.st_ino) != self.identity:
            again = self.removed
            if not self._open():
                return None
            return FileChange(f"{self.path} was {'created again' if again else 'replaced'}: "
                              "the new file read from its start", new_run=True)
        if os.fstat(self.handle.fileno()).st_size < self.handle.buffer.tell():
            self.handle.seek(0)
            return FileChange(f"{self.path} was truncated: read again from its start", new_run=True)
        return None


def open_stream(source: str) -> tuple[FollowedFile | PipeStream, str]:
    """The stream `biasmon watch SOURCE` follows and its name; `-` is standard input, and the keys are
    then read from /dev/tty."""
    if source == "-":
        if sys.stdin.isatty():
            raise BiasmonError("watch -: standard input is a terminal; pipe a trainer into it "
                               "(./my_trainer | biasmon watch -)")
        pipe = os.fdopen(os.dup(0), "r", encoding="utf-8-sig", errors="replace")
        try:
            tty = os.open("/dev/tty", os.O_RDONLY)
        except OSError:
            raise BiasmonError("watch -: no terminal to read keys from (/dev/tty)") from None
        os.dup2(tty, 0)
        os.close(tty)
        return PipeStream(pipe), "stdin"
    path = Path(source)
    if not path.exists() and not path.is_symlink():  # like tail -F: the trainer may not have created it yet
        return FollowedFile(path), str(path)
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
    return FollowedFile(path, open(path, encoding="utf-8-sig", errors="replace")), str(path)


@dataclass
class Read:
    """What `follow` read since its last Read: records, newly skipped lines, steps per second; `notes`:
    what happened to the file; `new_reader`: the file is read again from its start (truncated or
    replaced), as a new run, and the Reads after this one come from this fresh reader."""

    records: list
    problems: list
    rate: float
    ended: bool
    notes: list[str] = field(default_factory=list)
    new_reader: StreamReader | None = None
    error: str | None = None   # reading stopped on this (the stream's lines cannot be read on): the last Read


def fresh_reader(reader: StreamReader) -> StreamReader:
    """A reader with `reader`'s settings and none of its state (a new file begins a new stream)."""
    return StreamReader(reader.thresholds, reader.recompute, source=reader.source, block=reader.block,
                        every_step=reader.every_step)


def follow(stream: FollowedFile | PipeStream, reader: StreamReader) -> Iterator[Read | None]:
    """Read the stream as it grows, yielding a Read every BATCH_SECONDS (and at the end of a pipe, and when
    the file changes), None between them. A line is fed only once complete, so a trainer that dies
    mid-line costs that line; a line past MAX_LINE_CHARS is skipped (and counted) as it grows, never held
    whole. A file truncated or replaced (FollowedFile.changed) ends the stream read so far: its last step
    comes out, and what follows is read from the file's start with a fresh reader (Read.new_reader). A line
    that stops the reading (StreamError: the layers changed, an unknown format version) ends it: the steps
    read before it come out in a last Read that carries the error."""
    pending, partial, reported, steps, skipping = [], "", 0, 0, False
    last_post = time.monotonic()
    while True:
        try:
            read = _read_more(stream, reader, partial, skipping)
        except StreamError as exc:   # what was read before the line stays: its steps come out first
            yield Read(pending + exc.records + reader.finish(), reader.problems[reported:], 0.0, False, error=str(exc))
            return
        ended, change, partial, skipping, records = read
        pending.extend(records)
        steps += sum(1 for r in records if not isinstance(r, Event))
        now = time.monotonic()
        if not (ended or change or now - last_post >= BATCH_SECONDS):
            yield None
            continue
        drained = reader.drain()  # the steps read since the last Read, diagnosed as one block
        pending.extend(drained)
        steps += sum(1 for r in drained if not isinstance(r, Event))
        new_reader = fresh_reader(reader) if change is not None and change.new_run else None
        yield Read(pending, reader.problems[reported:], steps / max(now - last_post, BATCH_SECONDS), ended,
                   [change.text] if change is not None else [], new_reader)
        reported = len(reader.problems)
        if new_reader is not None:
            reader, reported = new_reader, 0
        pending, steps, last_post = [], 0, now
        if ended:
            return


def _read_more(stream: FollowedFile | PipeStream, reader: StreamReader, partial: str, skipping: bool) -> tuple:
    """One read of `follow`: (ended, the file's change or None, the partial line after it, whether a line
    past MAX_LINE_CHARS is being skipped, the records it gave). StreamError: a line stops the reading."""
    text, ended, change, records = stream.readline(MAX_LINE_CHARS + 1 - len(partial)), False, None, []
    if text and skipping:
        skipping = not text.endswith("\n")
    elif text:
        partial += text
        if partial.endswith("\n") or len(partial) > MAX_LINE_CHARS:
            skipping = not partial.endswith("\n")
            records, partial = reader.feed(OVERLONG_LINE if skipping else partial), ""
    elif getattr(stream, "is_pipe", False):
        records = (reader.feed(partial) if partial else []) + reader.finish()
        ended = True
    else:
        change = stream.changed() if hasattr(stream, "changed") else None
        if change is None:
            time.sleep(POLL_SECONDS)
        elif change.new_run:  # the old file's torn last line is skipped; its last step comes out
            records = (reader.feed(partial) if partial else []) + reader.finish()
            partial, skipping = "", False
    return ended, change, partial, skipping, records


class WatchSource(Source):
    """Follows `stream` in a thread worker; pause holds the view still (the status line says "paused")."""

    mode = "WATCH"
    going, halted = RunState.FOLLOWING, RunState.PAUSED

    def __init__(self, stream: FollowedFile | PipeStream, name: str) -> None:
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
        """The worker: posts each Read of `follow`, its records cut into runs (in the worker's thread). A
        file read again from its start (truncated or replaced) is a new run, marked in the events log."""
        worker = get_current_worker()
        reader = StreamReader(source=self.name, block=READ_BLOCK)
        splitter, files = RunSplitter(reader), 1
        try:
            for read in follow(self.stream, reader):
                if worker.is_cancelled:
                    return
                if read is None:
                    continue
                notes = [Note(f"{self.name}: skipped {p}", "yellow") for p in read.problems]
                self.post(Progress(splitter.split(read.records), notes, rate=read.rate, done=read.ended))
                if read.error is not None:
                    self._stop(read.error)
                    return
                if read.new_reader is not None:  # its run begins with the next Read (its header read by then)
                    files += 1
                    splitter = RunSplitter(read.new_reader, run_id=f"stream-{files}", reason=read.notes[-1])
                elif read.notes:
                    self.post(Progress(notes=[Note(text, "bold yellow") for text in read.notes], panels=False))
        except StreamError as exc:
            self._stop(str(exc))
        except Exception as exc:  # never a traceback: say what stopped, keep what was shown
            self._stop(f"{self.name}: reading stopped: {type(exc).__name__}: {exc}")

    def _stop(self, error: str) -> None:
        """Reading ended on an error: the status line says stopped, the events log and a toast say why."""
        self.post(Progress(done=True, stopped=True, panels=False))
        self.post(SourceFailed(error))

    def receive(self, progress: Progress) -> Progress | None:
        """Paused: hold the runs read (log what was skipped); else show them with all held before. A run
        that begins is not the one that diverged."""
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
            if not self.note_divergence(segments) and self.state is RunState.DIVERGED and \
                    any(segment.start is not None for segment in segments):
                self.state, self.diverged_at = self.going, None
        if progress.done:
            self.state = RunState.STOPPED if progress.stopped else RunState.END_OF_STREAM
        return dataclasses.replace(progress, segments=segments)
