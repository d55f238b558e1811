"""Scanning a stream file's regular lines ahead, in a second process, while `check` diagnoses.

The worker reads the file itself, in the same chunks of lines as the reader, and scans each chunk it is
asked for (core/fastlines.py) with the run's shape as the reader had it when it asked: the blocks come
back as arrays, cheap to send. The reader uses a chunk's blocks only where its line count, first and last
line, shape, divergence limit and step order still match (StreamReader.feed_lines), and scans itself
otherwise: the result is the same either way. A worker that dies costs nothing but the time: the reader
scans the rest itself.
"""
from __future__ import annotations

import signal
from typing import NamedTuple

from .fastlines import NOT_NUMBERS, Block, Shape, scan
from .readlines import chunks, stream_lines

AHEAD = 2       # chunks asked for ahead of the one being read
POLL = 0.2      # seconds between looks at whether a silent worker is still alive


class Segment(NamedTuple):
    """Lines [start, stop) of a chunk read as `block`, and the line at stop (None: the chunk's end) left
    to the reader."""

    start: int
    block: Block | None
    stop: int | None


class Scanned(NamedTuple):
    """A chunk scanned ahead: the shape and divergence limit it was scanned with, how many lines and its
    first and last (to tell it is the reader's chunk in a file that grows), and its segments (ending
    early where NumPy could not read a block's numbers: the reader reads the rest)."""

    shape: Shape
    limit: float
    lines: int
    first: str
    last: str
    segments: list[Segment]


def scan_chunk(texts: list[str], shape: Shape, limit: float) -> Scanned:
    """Every regular block of a chunk, between the lines that are not (each step's order is checked within
    a block only: the reader checks its first step against the one before)."""
    segments, i = [], 0
    while i < len(texts):
        block, stop = scan(texts, i, shape, -1 if shape.derives else None, limit)
        if stop is NOT_NUMBERS:
            break
        segments.append(Segment(i, block, None if stop is None else stop.index))
        if stop is None:
            break
        i = stop.index + 1
    return Scanned(shape, limit, len(texts), texts[0], texts[-1], segments)


def _work(path: str, size: int, requests, results, parents: tuple) -> None:
    """The worker: (index, shape, limit) requests in rising index order, each answered (index, Scanned or
    None past the file's end); None ends it. parents: the reader's ends of the pipes, closed here (so
    that either side sees the other's end)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # ^C is the reader's to handle: it ends this process
    for end in parents:
        end.close()
    lines, at = chunks(stream_lines(path), size), 0
    try:
        while (request := requests.recv()) is not None:
            index, shape, limit = request
            scanned = None
            for texts in lines:
                at += 1
                if at - 1 == index:
                    scanned = scan_chunk(texts, shape, limit)
                    break
            results.send((index, scanned))
    except Exception:   # the reader has gone or closed (EOF, a broken pipe), or this failed: the reader scans
        return


class ReadAhead:
    """A worker process scanning the chunks of `path` ahead of the reader: ask(index, shape, limit) for a
    later chunk, result(index) for the one being read (None if it was not asked for, or the worker is
    gone: killed, or dead of a failure)."""

    def __init__(self, path: str, chunk_lines: int, context) -> None:
        requests_in, self.requests = context.Pipe(duplex=False)    # (receiving end, sending end)
        self.results, results_out = context.Pipe(duplex=False)
        self.process = context.Process(target=_work, daemon=True, name="biasmon-read-ahead",
                                       args=(path, chunk_lines, requests_in, results_out,
                                             (self.requests, self.results)))
        self.process.start()
        requests_in.close()
        results_out.close()
        self.asked: list[int] = []   # indices asked for and not yet answered, in order
        self.last = -1
        self.gone = False

    def ask(self, index: int, shape: Shape, limit: float) -> None:
        if self.gone or index <= self.last:
            return
        try:
            self.requests.send((index, shape, limit))
        except (OSError, ValueError):
            self.gone = True
            return
        self.asked.append(index)
        self.last = index

    def result(self, index: int) -> Scanned | None:
        if self.gone or index not in self.asked:
            return None
        while self.asked and self.asked[0] <= index:
            answer = self._receive()
            if answer is None:
                return None
            done, scanned = answer
            self.asked.pop(0)
            if done == index:
                return scanned
        return None

    def _receive(self) -> tuple | None:
        """The worker's next answer; None (and gone) if it died: its end of the pipe then closes, so a
        message it was writing ends in EOFError rather than a wait."""
        try:
            while not self.results.poll(POLL):
                if not self.process.is_alive():
                    raise EOFError
            return self.results.recv()
        except (EOFError, OSError, ValueError):
            self.gone = True
            return None

    def close(self) -> None:
        try:
            self.requests.send(None)
        except (OSError, ValueError):
            pass
        self.requests.close()
        self.results.close()
        self.process.join(1.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
