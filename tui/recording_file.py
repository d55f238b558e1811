"""Reading a recording for replay (no Textual here): its lines in chunks (core's stream_lines: each line
with a length limit), and its records kept compact. The panels keep only bounded, downsampled series; what a
replay must keep is the records themselves, to play and seek through. Each record is kept without its
vectors or sums (the panels read its diagnoses), in pickled, compressed blocks (about 300 bytes a record)
unpacked when played: a 150 MB recording of 200,000 steps replays in 165 MB at most, where its records as
objects took 815 MB."""
from __future__ import annotations

import gc
import os
import pickle
import zlib
from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

from ..core import BiasmonError, Event, StepRecord, StreamError, StreamReader, line_chunks, stream_lines

CHUNK_LINES = 256       # lines fed to the reader at once (its block)
LEAN = dict.fromkeys(("biases", "bias_grads", "bias_updates", "weights", "weight_grads", "weight_updates",
                      "bias_sums", "weight_sums"))  # what a record read back carries that no panel shows


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
    lines = stream_lines(path)
    try:
        for text in lines:
            if any(type(r) is StepRecord for r in reader.feed(text)):
                return
    finally:
        lines.close()
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
    """Append every record of the recording at `path` to `records`; `progress(lines, characters read, bytes
    in all)` after each chunk. False if `cancelled()` turned true first. StreamError as for read_all (what
    was read before it is kept)."""
    size = os.path.getsize(path) if path != "-" else 0
    lines = stream_lines(path)
    read = chars = 0
    try:
        for chunk in line_chunks(lines, CHUNK_LINES):
            if cancelled():
                return False
            try:
                records.append(reader.feed_lines(chunk))
            except StreamError as exc:   # the lines before the one that stopped the reading are kept
                records.append(exc.records + reader.finish())
                raise
            read += len(chunk)
            chars += sum(map(len, chunk))
            progress(read, chars, size)
    finally:
        lines.close()
    records.append(reader.finish())
    return True
