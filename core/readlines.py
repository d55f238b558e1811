"""Reading a stream's lines from a file or standard input, each with a length limit (a longer line is
skipped unread, never held whole), and in chunks for parsing ahead."""
from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path
from typing import IO, Iterator

from .errors import StreamError

MAX_LINE_CHARS = 8 << 20   # characters in one line, its newline not counted: a longer line is skipped, counted
CHUNK_CHARS = 8 << 20      # characters in one chunk of lines parsed ahead


class Overlong(str):
    """Stands for a line longer than MAX_LINE_CHARS, which was skipped without being kept."""


OVERLONG = f"longer than {MAX_LINE_CHARS:,} characters: skipped unread"
OVERLONG_LINE = Overlong("")


def limited_lines(handle: IO[str]) -> Iterator[str]:
    """The lines of an open text file, each read with a length limit: a line longer than MAX_LINE_CHARS
    comes out as OVERLONG_LINE, its text read past in pieces and never held whole (memory stays bounded
    even on an endless line)."""
    while True:
        line = handle.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        if len(line) <= MAX_LINE_CHARS or line.endswith("\n"):
            yield line
            continue
        while line and not line.endswith("\n"):
            line = handle.readline(1 << 20)
        yield OVERLONG_LINE


def stream_lines(path: str | Path) -> Iterator[str]:
    """The lines of a stream file ('-': standard input), UTF-8 (a leading byte order mark dropped), decoding
    errors replaced (such a line then fails as not JSON), a line past MAX_LINE_CHARS as OVERLONG_LINE. A
    file that cannot be read raises StreamError naming it."""
    if path == "-":
        stdin = sys.stdin
        if hasattr(stdin, "buffer"):
            stdin = io.TextIOWrapper(stdin.buffer, encoding="utf-8-sig", errors="replace")
        yield from limited_lines(stdin)
        return
    try:
        mode = os.stat(path).st_mode  # a FIFO would block until a writer comes; /dev/zero never ends
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # (a folder: open() says what is wrong)
            raise StreamError(f"{path}: not a regular file (a pipe or a device): give a file, or pipe the "
                              "stream in: ... | biasmon check -  (or watch -)")
        handle = open(path, encoding="utf-8-sig", errors="replace")   # -sig: a byte order mark is dropped
    except OSError as exc:
        raise StreamError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        try:
            yield from limited_lines(handle)
        except OSError as exc:
            raise StreamError(f"{path}: cannot read ({exc.strerror or exc})") from None


def chunks(lines: Iterator[str], size: int) -> Iterator[list[str]]:
    """Lines in lists of `size`, or fewer once they hold CHUNK_CHARS characters (the last may be shorter)."""
    chunk, chars = [], 0
    for text in lines:
        chunk.append(text)
        chars += len(text)
        if len(chunk) == size or chars >= CHUNK_CHARS:
            yield chunk
            chunk, chars = [], 0
    if chunk:
        yield chunk
