"""Reading a recording for replay (no Textual here): its lines in chunks, each line with a length limit, and
its records kept compact. The panels keep only bounded, downsampled series; what a replay must keep is the
records themselves, to play and seek through. Each record is kept without its vectors or sums (the panels
read its diagnoses), in pickled, compressed blocks (about 300 bytes a record) unpacked when played: a
150 MB recording of 200,000 steps replays in 165 MB at most, where its records as objects took 815 MB."""
from __future__ import annotations

import gc
import os
import pickle
import stat
import zlib
from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Callable, Iterator

from ..core import MAX_LINE_CHARS, OVERLONG_LINE, BiasmonError, Event, StepRecord, StreamError, StreamReader

CHUNK_LINES = 256       # lines fed to the reader at once (its block)
CHUNK_CHARS = 8 << 20   # or fewer, once they hold this many characters
LEAN = dict.fromkeys(("biases", "bias_grads", "bias_updates", "weights", "weight_grads", "weight_updates",
                      "bias_sums", "weight_sums"))  # what a record read back carries that no panel shows


def open_recording(path: str | Path) -> IO[str]:
    """The recording, open for reading; BiasmonError (one line, naming it) if it cannot be."""
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):  # a FIFO would block, /dev/zero never ends
            raise StreamError(f"{path}: not a regular file (a pipe or a device): give a recording; "
                              "follow a pipe with ... | biasmon watch -")
        return open(path, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise StreamError(f"{path}: cannot read ({exc.strerror or exc})") from None


def line_chunks(handle: IO[str]) -> Iterator[list[str]]:
    """The lines of an open file in chunks of CHUNK_LINES (fewer once CHUNK_CHARS); a line past
    MAX_LINE_CHARS comes as OVERLONG_LINE, read past in pieces and never held whole."""
    chunk, chars = [], 0
    while True:
        line = handle.readline(MAX_LINE_CHARS + 1)
        if not line:
            break
        if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
            while line and not line.endswith("\n"):
                line = handle.readline(1 << 20)
            line = OVERLONG_LINE
        chunk.append(line)
        chars += len(line)
        if len(chunk) == CHUNK_LINES or chars >= CHUNK_CHARS:
            yield chunk
            chunk, chars = [], 0
    if chunk:
        yield chunk


def lean(record: StepRecord | Event) -> StepRecord | Event:
    """The record as the panels read it: a step's vectors and sums left out when it has its diagnoses."""
    if type(record) is StepRecord and record.diag is not None and (record.biases is not None or
                                                                   record.bias_sums is not None):
        return record._replace(**LEAN)
    return record


def check_replayable(path: str | Path) -> None:
    """Raise BiasmonError (one line) unless the recording has a step to replay: it is read up to its first
    step record (the whole file only if it has none)."""
    reader = StreamReader(source=str(path))
    with open_recording(path) as handle:
        for chunk in line_chunks(handle):
            for text in chunk:
                if any(type(r) is StepRecord for r in reader.feed(text)):
                    return
        if any(type(r) is StepRecord for r in reader.finish()):
            return
    problems = (f" ({len(reader.problems)} unreadable line(s), first: {reader.problems[0]})"
                if reader.problems else "")
    raise BiasmonError(f"{path}: no step records to replay{problems}")


class RecordBlocks(Sequence):
    """Records, in order, kept compact: each block appended is pickled and compressed, and unpacked again
    when read (the last block read is kept unpacked, for a replay stepping through it)."""

    def __init__(self) -> None:
        self.blocks: list[bytes] = []
        self.starts: list[int] = []   # the index of each block's first record
        self.count = 0
        self.nbytes = 0
        self._unpacked: tuple[int, list] = (-1, [])

    def append(self, records: list) -> None:
        """Keep these records, after those kept so far."""
        if not records:
            return
        block = zlib.compress(pickle.dumps([lean(r) for r in records], protocol=pickle.HIGHEST_PROTOCOL), 1)
        self.starts.append(self.count)
        self.blocks.append(block)
        self.count += len(records)
        self.nbytes += len(block)

    def _block(self, i: int) -> list:
        if self._unpacked[0] != i:
            collecting = gc.isenabled()
            gc.disable()  # thousands of tuples at once: the collector would run through them several times
            try:
                self._unpacked = (i, pickle.loads(zlib.decompress(self.blocks[i])))
            finally:
                if collecting:
                    gc.enable()
        return self._unpacked[1]

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(self.count)
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            out, i = [], bisect_right(self.starts, start) - 1
            while start < stop:
                records = self._block(i)
                taken = records[start - self.starts[i]:stop - self.starts[i]]
                out.extend(taken)
                start += len(taken)
                i += 1
            return out
        if index < 0:
            index += self.count
        if not 0 <= index < self.count:
            raise IndexError("record index out of range")
        i = bisect_right(self.starts, index) - 1
        return self._block(i)[index - self.starts[i]]


def read_recording(path: str | Path, reader: StreamReader, records: RecordBlocks,
                   progress: Callable[[int, int, int], None], cancelled: Callable[[], bool]) -> bool:
    """Append every record of the recording at `path` to `records`; `progress(lines, bytes read, bytes in
    all)` after each chunk. False if `cancelled()` turned true first. StreamError as for read_all (what
    was read before it is kept)."""
    with open_recording(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        lines = 0
        for chunk in line_chunks(handle):
            if cancelled():
                return False
            records.append(reader.feed_lines(chunk))
            lines += len(chunk)
            progress(lines, handle.buffer.tell(), size)
        records.append(reader.finish())
    return True
