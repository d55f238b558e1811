"""Parsing one step line of a stream into a typed `StepLine`, checked for types (not against the stream
so far: core/reader.py does that). `prepare_lines` does the parsing ahead, e.g. in a second process."""
from __future__ import annotations

import io
import json
import math
import os
import stat
import sys
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np

from .errors import StreamError
from .layout import Layout
from .records import new_tuple as _new


class Vectors(NamedTuple):
    """One key's vectors: layer names and sizes, and the layers' entries end to end, flat (n,) float64."""

    names: tuple[str, ...]
    sizes: tuple[int, ...]
    flat: np.ndarray

    @property
    def layout(self) -> Layout:
        return Layout(self.names, self.sizes)


def _pack(v: Vectors | None) -> tuple | None:
    return None if v is None else (v.names, v.sizes, v.flat.tobytes())


def _unpack(packed: tuple | None) -> Vectors | None:
    if packed is None:
        return None
    return _new(Vectors, (packed[0], packed[1], np.frombuffer(packed[2], dtype=np.float64)))


def _step_line(step, loss, val_loss, biases, grads, updates, trained, diag, loss_change, unreached,
               grad_steps) -> "StepLine":
    return _new(StepLine, (step, loss, val_loss, _unpack(biases), _unpack(grads), _unpack(updates), trained, diag,
                           loss_change, unreached, grad_steps))


class StepLine(NamedTuple):
    """A step line's fields. diag and loss_change are what the line carried (unchecked JSON values).
    unreached: per layer, True where `bias_grads` held null (no gradient reached it; grads holds zeros
    there), or None if no layer was null. grad_steps: the steps `bias_grads` sums (1 unless the line says)."""

    step: int
    loss: float
    val_loss: float | None
    biases: Vectors
    grads: Vectors | None
    updates: Vectors | None
    trained: bool
    diag: Any = None
    loss_change: Any = None
    unreached: tuple[bool, ...] | None = None
    grad_steps: int = 1

    def __reduce__(self):  # cheap to pass between processes: plain values, the vectors as raw bytes
        return _step_line, (self.step, self.loss, self.val_loss, _pack(self.biases), _pack(self.grads),
                            _pack(self.updates), self.trained, self.diag, self.loss_change, self.unreached,
                            self.grad_steps)


def as_float(value: Any, where: str) -> float:
    """A JSON value as a float: null reads as NaN, an integer too big for a float as +-inf; anything
    else that is not a number is a ValueError naming `where`."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"'{where}' must be a number (or null for a non-finite value), got {json.dumps(value)[:40]}")
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _number(obj: dict, key: str, required: bool = False) -> float | None:
    """obj[key] as a float; None if absent (or, if required, a ValueError); null reads as NaN."""
    if key not in obj:
        if required:
            raise ValueError(f"'{key}' is missing")
        return None
    return as_float(obj[key], key)


def _vectors(obj: dict, key: str, strict_types: bool = False) -> Vectors | None:
    """obj[key] as Vectors (read-only), or None if absent.

    A null entry stands for a non-finite value (JSON has no NaN) and reads as NaN. The fast path lets
    NumPy convert the numbers; anything it cannot take as plain floats (null, strings, nested lists,
    huge integers, or true/false anywhere on the line: strict_types) goes through the entry-by-entry check."""
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not dict:
        raise ValueError(f"'{key}' must be an object of layer name -> list of numbers")
    flat, sizes = [], []
    for name, vec in value.items():
        if type(vec) is not list:
            raise ValueError(f"'{key}.{name}' must be a list of numbers, got {type(vec).__name__}")
        if not vec:
            raise ValueError(f"'{key}.{name}' is empty: a layer needs at least one bias")
        flat += vec
        sizes.append(len(vec))
    arr = None
    if not strict_types:
        try:
            arr = np.array(flat)
        except (ValueError, TypeError, OverflowError):
            arr = None
    if arr is None or arr.dtype.kind != "f" or arr.ndim != 1:
        arr = np.asarray([as_float(v, f"{key}.{name}[{i}]") for name, vec in value.items() for i, v in enumerate(vec)],
                         dtype=np.float64)
    arr.flags.writeable = False
    return Vectors(tuple(value), tuple(sizes), arr)


def _grad_vectors(obj: dict, biases: Vectors, strict_types: bool) -> tuple[Vectors | None, tuple | None]:
    """obj['bias_grads'] as Vectors, and which layers were null (no gradient reached them: zeros here,
    sized as in `biases`), or None if none was."""
    value = obj.get("bias_grads")
    if type(value) is not dict or None not in value.values():
        return _vectors(obj, "bias_grads", strict_types), None
    sizes = dict(zip(biases.names, biases.sizes))
    filled = {}
    for name, vec in value.items():
        if vec is None and name not in sizes:
            raise ValueError(f"'bias_grads.{name}' is null but 'biases' has no layer {name!r}")
        filled[name] = [0.0] * sizes[name] if vec is None else vec
    return _vectors({"bias_grads": filled}, "bias_grads", strict_types), tuple(v is None for v in value.values())


def _grad_steps(obj: dict) -> int:
    value = obj.get("grad_steps", 1)
    if type(value) is not int or value < 1:
        raise ValueError(f"'grad_steps' must be a whole number >= 1, got {json.dumps(value)[:40]}")
    return value


def parse_step(obj: dict, strict_types: bool = False) -> StepLine:
    """The fields of a step line (a dict). strict_types: check entry by entry (the line holds true/false
    somewhere). Raises ValueError naming the key."""
    step = obj.get("step")
    if type(step) is not int or step < 0:
        raise ValueError(f"'step' must be a whole number >= 0, got {json.dumps(step)[:40]}")
    loss = _number(obj, "loss", required=True)
    val_loss = _number(obj, "val_loss")
    biases = _vectors(obj, "biases", strict_types)
    if biases is None:
        raise ValueError("'biases' is missing (an object of layer name -> list of numbers)")
    grads, unreached = _grad_vectors(obj, biases, strict_types)
    updates = _vectors(obj, "bias_updates", strict_types)
    trained = obj.get("bias_trained", True)
    if type(trained) is not bool:
        raise ValueError(f"'bias_trained' must be true or false, got {json.dumps(trained)[:40]}")
    return StepLine(step, loss, val_loss, biases, grads, updates, trained, obj.get("diag"), obj.get("loss_change"),
                    unreached, _grad_steps(obj) if "grad_steps" in obj else 1)


def prepare_lines(lines: list[str]) -> list[StepLine | str]:
    """Parse lines ahead of a StreamReader, e.g. in another process: a StepLine for each well-formed step
    line, and the text itself for anything else (header, event, blank or bad line), which the reader
    then reads itself (StreamReader.feed_prepared)."""
    out = []
    for text in lines:
        stripped = text.strip()
        try:
            obj = json.loads(stripped) if stripped.startswith("{") else None
        except (json.JSONDecodeError, RecursionError):
            obj = None
        if type(obj) is not dict or "format" in obj or "event" in obj:
            out.append(text)
            continue
        try:
            out.append(parse_step(obj, "true" in stripped or "false" in stripped))
        except ValueError:
            out.append(text)
    return out


def stream_lines(path: str | Path) -> Iterator[str]:
    """The lines of a stream file ('-': standard input), decoding errors replaced (such a line then fails
    as not JSON). A file that cannot be read raises StreamError naming it."""
    if path == "-":
        stdin = sys.stdin
        if hasattr(stdin, "buffer"):
            stdin = io.TextIOWrapper(stdin.buffer, encoding="utf-8", errors="replace")
        yield from stdin
        return
    try:
        mode = os.stat(path).st_mode  # a FIFO would block until a writer comes; /dev/zero never ends
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # (a folder: open() says what is wrong)
            raise StreamError(f"{path}: not a regular file (a pipe or a device): give a file, or pipe the "
                              "stream in: ... | biasmon check -  (or watch -)")
        handle = open(path, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise StreamError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        try:
            yield from handle
        except OSError as exc:
            raise StreamError(f"{path}: cannot read ({exc.strerror or exc})") from None


def chunks(lines: Iterator[str], size: int) -> Iterator[list[str]]:
    """Lines in lists of `size` (the last may be shorter)."""
    chunk = []
    for text in lines:
        chunk.append(text)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
