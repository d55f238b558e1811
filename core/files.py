"""Paths from a user, checked before they are opened: what a path is (a regular file, a folder, missing, or a
pipe or device that would block or never end), and short excerpts of what a file said, for error messages."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

EXCERPT = 40  # characters of a file's content (or of a value) shown in an error message


def kind(path: str | Path) -> str:
    """'file', 'folder', 'missing' or 'special' (a pipe, a device, a socket: reading it could block or never
    end), following symbolic links. A path the system refuses (too long, no permission) raises OSError."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "missing"
        raise
    except ValueError:  # a NUL character in the path
        raise OSError(errno.EINVAL, "the path contains a NUL character") from None
    if stat.S_ISREG(mode):
        return "file"
    return "folder" if stat.S_ISDIR(mode) else "special"


def short(text: object, limit: int = EXCERPT) -> str:
    """str(text), cut to `limit` characters with '...' when longer (callers print it escaped)."""
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."


def short_path(path: str | Path, limit: int = 200) -> str:
    """A path for a message: a very long one keeps its start and its end."""
    text = str(path)
    return text if len(text) <= limit else f"{text[:limit // 2]}...{text[-limit // 2:]} ({len(text)} characters)"
