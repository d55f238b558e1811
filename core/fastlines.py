"""Reading a run of regular step lines as one block: each line is parsed and its numbers gathered, and
they become arrays once per block, where core/lines.py parse_step converts and checks each line alone
(what costs most in `check` of a long stream).

A line is regular if orjson parses it, it has the keys, layers and sizes of the run's `Shape` (taken from
a step line read line by line), whole-number steps, numbers for losses (val_loss may be null) and entries
(no null, true, false or text among them), and a loss below the divergence limit. The scan stops at the
first line that is not; the reader reads that one line by line, as ever, from the object parsed here. A
block's sums are checked as parse_step checks them (`bad_rows`); the records are the same either way
(tests/unit/test_fast_lines.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain
from typing import Any, NamedTuple

import numpy as np

from .lines import StepLine
from .readlines import MAX_LINE_CHARS

try:
    from orjson import loads as _loads
except ImportError:   # without orjson every line is read line by line
    _loads = None

VECTOR_KEYS = ("biases", "bias_grads", "bias_updates", "weights", "weight_grads", "weight_updates")
SUM_KEYS = ("bias_sums", "weight_sums")
# every key a line-by-line read looks at: a line must have the same of these as the run's shape
READ_KEYS = frozenset(("step", "loss", "val_loss", "format", "event", "bias_trained", "grad_steps",
                       "diag", "loss_change", "weight_diag") + VECTOR_KEYS + SUM_KEYS)
STORED_KEYS = frozenset(("diag", "loss_change", "weight_diag"))   # ignored when the reader recomputes
_NUMBERS = frozenset((int, float))
_BIG = 2.0 ** 1000   # as lines._BIG: a number past it is read the careful way


@dataclass(frozen=True)
class Shape:
    """What a run's regular lines hold: their keys (of READ_KEYS), and per vector or sum key its layer
    names, each layer's entries and the lists' lengths (the entries again for vectors; the row length
    7 + 2k for sums, whose rows begin with the layer's entries)."""

    keys: frozenset[str]
    layers: tuple[tuple[str, list[str], tuple[list[int], list[int]]], ...]   # (key, names, (sizes, lengths))
    summary: bool

    lengths: list[int] = field(init=False, compare=False)   # every list's length in a line, key after key
    counts: list[int] = field(init=False, compare=False)    # sums: every row's n (its layer's entries)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lengths", [n for _, _, (_, lengths) in self.layers for n in lengths])
        object.__setattr__(self, "counts", [n for _, _, (sizes, _) in self.layers for n in sizes])

    @property
    def derives(self) -> bool:
        """Whether each line's update is derived from the next line's values (its steps must rise)."""
        return not self.summary and ("bias_updates" not in self.keys or
                                     ("weights" in self.keys and "weight_updates" not in self.keys))

    @staticmethod
    def of(obj: dict, line: StepLine, recompute: bool) -> "Shape | None":
        """The shape of a step line read line by line (obj: its JSON object), or None if lines like it
        are not read in blocks (no orjson; stored diagnoses, unless recomputed; a gradient that did not
        reach a layer; a vector or sums key that is null)."""
        keys = frozenset(obj.keys() & READ_KEYS)
        if _loads is None or (keys & STORED_KEYS and not recompute) \
                or line.unreached is not None or line.weight_unreached is not None \
                or any(obj[key] is None for key in keys.intersection(VECTOR_KEYS + SUM_KEYS)):   # null: as absent
            return None
        summary = line.biases is None
        layers = []
        if summary:
            for key, sums in (("bias_sums", line.bias_sums), ("weight_sums", line.weight_sums)):
                if sums is not None:   # (each row's n, the rows' lengths)
                    layers.append((key, list(sums.names), (list(sums.sizes), [sums.width] * len(sums.names))))
        else:
            for key, vecs in zip(VECTOR_KEYS, (line.biases, line.grads, line.updates, line.weights,
                                               line.weight_grads, line.weight_updates)):
                if vecs is not None:   # (each layer's entries, twice: the vectors' lengths)
                    layers.append((key, list(vecs.names), (list(vecs.sizes), list(vecs.sizes))))
        return Shape(keys, tuple(layers), summary)


class Block(NamedTuple):
    """Consecutive regular lines: steps, losses, val_loss (None if the lines have none), bias_trained and
    grad_steps (None if absent), and per key of the shape its vectors (m, n) or sums (m, L, 7 + 2k),
    float64, read-only."""

    steps: list[int]
    loss: list[float]
    val_loss: list[float] | None
    trained: list[bool] | None
    grad_steps: list[int] | None
    arrays: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.steps)

    def head(self, k: int) -> "Block | None":
        """Its first k lines (None if k is 0)."""
        if k == 0:
            return None
        cut = [None if v is None else v[:k] for v in (self.val_loss, self.trained, self.grad_steps)]
        return Block(self.steps[:k], self.loss[:k], *cut, {key: a[:k] for key, a in self.arrays.items()})


class Stop(NamedTuple):
    """Where a scan stopped: the index of the line, and its JSON value if it was parsed (else None:
    read it from its text)."""

    index: int
    obj: Any


NOT_NUMBERS = Stop(-1, None)   # a scan's lines hold entries NumPy does not read as numbers


def scan(texts: list, start: int, shape: Shape, after: int | None, loss_limit: float) -> tuple[Block | None, Stop | None]:
    """The regular lines of texts[start:] as a Block (None if the first is not), and where it stopped
    (None: at the end). after: each step must be greater than this and than the line before (None: no
    order required: no step is pending, and no line's update is derived from the next); a loss above
    loss_limit ends the block (the reader reads a divergence line by line)."""
    keys = shape.keys
    steps, losses = [], []
    vals = [] if "val_loss" in keys else None
    trained = [] if "bias_trained" in keys else None
    spans = [] if "grad_steps" in keys else None
    entries: list = []   # every line's entries, key after key in the shape's order
    stop = None
    for index in range(start, len(texts)):
        text = texts[index]
        if type(text) is not str or len(text) > MAX_LINE_CHARS + 1:
            stop = Stop(index, None)
            break
        try:
            obj = _loads(text)
        except ValueError:
            stop = Stop(index, None)
            break
        if not _regular(obj, shape, after, loss_limit, entries):
            step = obj.get("step") if type(obj) is dict else None   # past 64 bits: lines.load_line reads it again
            stop = Stop(index, None if type(step) is float and step >= 2.0 ** 63 else obj)
            break
        step = obj["step"]
        if after is not None:
            after = step
        steps.append(step)
        losses.append(obj["loss"])
        if vals is not None:
            vals.append(obj["val_loss"])
        if trained is not None:
            trained.append(obj["bias_trained"])
        if spans is not None:
            spans.append(obj["grad_steps"])
    if not steps:
        return None, stop
    arrays = _arrays(entries, len(steps), shape)
    if arrays is None:
        return None, NOT_NUMBERS
    return Block(steps, losses, vals, trained, spans, arrays), stop


def _regular(obj: Any, shape: Shape, after: int | None, loss_limit: float, entries: list) -> bool:
    """Whether obj (a parsed line) is a regular line of the shape; if so its entries are added to `entries`
    (each key's rows in the shape's order)."""
    keys = shape.keys
    if type(obj) is not dict or (obj.keys() & READ_KEYS) != keys:
        return False
    step, loss = obj["step"], obj["loss"]
    if type(step) is not int or step < 0 or (after is not None and step <= after):
        return False
    if type(loss) not in _NUMBERS or not loss <= loss_limit:
        return False
    if "val_loss" in keys and type(obj["val_loss"]) not in _NUMBERS and obj["val_loss"] is not None:
        return False
    if "grad_steps" in keys and (type(obj["grad_steps"]) is not int or obj["grad_steps"] < 1):
        return False
    if "bias_trained" in keys and type(obj["bias_trained"]) is not bool:
        return False
    rows: list = []
    for key, names, _ in shape.layers:
        value = obj[key]
        if type(value) is not dict or list(value) != names:
            return False
        rows += value.values()
    try:   # each a list of the layer's size (or of the rows' length); text has a length too: see below
        if list(map(len, rows)) != shape.lengths:
            return False
    except TypeError:
        return False
    line = list(chain.from_iterable(rows))
    if not _NUMBERS.issuperset(map(type, line)):   # no null, true, false, text or nested value
        return False
    if shape.summary and line:   # each row's n (a run's rows are of one width), as in its first line, whole
        counts = line[::shape.lengths[0]]
        if counts != shape.counts or float in set(map(type, counts)):
            return False
    entries += line
    return True


def _arrays(entries: list, m: int, shape: Shape) -> dict[str, np.ndarray] | None:
    """Each key's entries (ints and floats: _regular checked their types) as float64 (m, n) or
    (m, L, width), read-only, or None if one is too big for a float (an integer past 1e308)."""
    try:
        flat = np.fromiter(entries, np.float64, len(entries)).reshape(m, -1)   # each as float() reads it
    except (ValueError, TypeError, OverflowError):
        return None
    arrays, at = {}, 0
    for key, names, (_, lengths) in shape.layers:
        width = sum(lengths)
        arr = flat[:, at:at + width]
        at += width
        arr = arr.reshape((m, len(names), lengths[0])) if shape.summary else arr
        arr.flags.writeable = False
        arrays[key] = arr
    return arrays


def bad_rows(sums: np.ndarray) -> np.ndarray:
    """(m,) which lines' sums (m, L, width) parse_step would not take as they are (its n were checked
    in the scan): a number past 2**1000, a negative |p|^2, |g|^2, |u|^2 or count, or agree above sig."""
    bad = ~(np.abs(sums) < _BIG).all(axis=2)
    bad |= (sums[:, :, [1, 2, 3, 5, 6]] < 0).any(axis=2) | (sums[:, :, 6] > sums[:, :, 5])
    return bad.any(axis=1)
