"""Scanning a stream file's regular lines ahead, in a second process, while `check` diagnoses.

The worker reads the file itself, in the same chunks of lines as the reader, and scans each chunk it is
asked for (core/fastlines.py) with the run's shape as the reader had it when it asked: the blocks come
back as arrays, cheap to send. The reader uses a chunk's blocks only if its lines, shape and state still
match (StreamReader.feed_lines checks), and scans itself otherwise: the result is the same either way.
"""
from __future__ import annotations

from concurrent.futures import Future, ProcessPoolExecutor
from typing import Iterator, NamedTuple

from .fastlines import NOT_NUMBERS, Block, Shape, scan
from .readlines import chunks, stream_lines

AHEAD = 2   # chunks asked for ahead of the one being read


class Segment(NamedTuple):
    """Lines [start, stop) of a chunk read as `block`, and the line at stop (None: the chunk's end) left
    to the reader."""

    start: int
    block: Block | None
    stop: int | None


class Scanned(NamedTuple):
    """A chunk scanned ahead: the shape and divergence limit it was scanned with, its first and last line and
    how many (to tell it is the reader's chunk), and its segments (ending early where NumPy could not read
    a block's numbers: the reader reads the rest)."""

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


_lines: Iterator[list[str]] | None = None   # the worker's chunks of the file
_next = 0                                    # the index of the chunk _lines gives next


def _open(path: str, size: int) -> None:
    global _lines, _next
    _lines, _next = chunks(stream_lines(path), size), 0


def _scan(index: int, shape: Shape, limit: float) -> Scanned | None:
    """In the worker: chunk `index` (asked for in rising order) scanned; None past the file's end."""
    global _next
    for texts in _lines:
        _next += 1
        if _next - 1 == index:
            return scan_chunk(texts, shape, limit)
    return None


class ReadAhead:
    """A worker process scanning the chunks of `path` ahead of the reader: ask(index, shape, limit) for a
    later chunk, result(index) for the one being read (None if it was not asked for, or failed)."""

    def __init__(self, path: str, chunk_lines: int, context) -> None:
        self.pool = ProcessPoolExecutor(1, mp_context=context, initializer=_open, initargs=(path, chunk_lines))
        self.asked: dict[int, Future] = {}
        self.last = -1

    def ask(self, index: int, shape: Shape, limit: float) -> None:
        if index > self.last:
            try:
                self.asked[index] = self.pool.submit(_scan, index, shape, limit)
            except Exception:   # the worker died: nothing more is asked
                self.last = 1 << 62
                return
            self.last = index

    def result(self, index: int) -> Scanned | None:
        future = self.asked.pop(index, None)
        if future is None:
            return None
        try:
            return future.result()
        except Exception:   # a worker that died or failed: the reader scans the chunk itself
            return None

    def close(self) -> None:
        for future in self.asked.values():
            future.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)
