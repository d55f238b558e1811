"""Parsing one step line of a stream into a typed `StepLine`, checked for types (not against the stream
so far: core/reader.py does that). `prepare_lines` does the parsing ahead, e.g. in a second process.
core/readlines.py reads the lines themselves."""
from __future__ import annotations

import json
import math
from itertools import chain
from operator import gt, itemgetter
from typing import Any, NamedTuple

import numpy as np

from .diagnoser import Diagnosis
from .layout import Layout
from .records import LayerDiagnosis, LossChange, new_tuple as _new

MAX_LAYERS = 1000          # bias layers in one step line: more is a malformed line
MAX_AVERAGES = 8           # running averages in a summary-form row
MAX_ENTRIES = 2 ** 53      # entries of one layer in a summary-form row (a float counts them exactly)


try:   # orjson parses a line 3-5 times faster than the standard library, to the same values
    from orjson import loads as _fast_loads
except ImportError:   # installed without it (pip --no-deps, a platform with no wheel): the standard library
    _fast_loads = None
FAST_PARSER = _fast_loads is not None


def load_line(text: str) -> Any:
    """The JSON value of a line, with what it cannot take (bad JSON, nesting past the recursion limit,
    integers of more than 4300 digits) as a ValueError saying so. orjson reads it if it can; the standard
    library reads what orjson refuses (the NaN and Infinity literals, numbers past a float's range,
    errors) and a line whose step orjson read as a float of 2**63 or more (an integer past 64 bits, which
    the standard library keeps whole; elsewhere on a line such an integer is read as the float it is
    closest to: a number, or a layer's n, which is refused past 2**53 either way)."""
    if _fast_loads is not None:
        try:
            obj = _fast_loads(text)
        except ValueError:
            obj = None
        step = obj.get("step") if type(obj) is dict else None
        if obj is not None and not (type(step) is float and step >= 2.0 ** 63):
            return obj
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ValueError("not JSON (truncated or malformed line)") from None
    except RecursionError:
        raise ValueError("not JSON that can be read (nested too deeply)") from None
    except ValueError:
        raise ValueError("not JSON that can be read (an integer of more than 4300 digits)") from None


def _flat_values(value: Any) -> Any:
    """A diag or loss_change object as its reader uses it (stored_diagnosis gives the same from either):
    plain values one level down, anything nested (which only a damaged or hostile line holds) dropped, so
    a line parsed in another process can be sent back (a diag nested 960 deep could not be pickled)."""
    if type(value) is not dict:
        return None
    return {key: (v if type(v) is not dict else
                  {k: x for k, x in v.items() if not isinstance(x, (dict, list))})
            for key, v in value.items() if not isinstance(v, list)}


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


class Sums(NamedTuple):
    """One key's per-layer sums (the summary form): layer names, each layer's entries, and the rows as
    read, checked: lists of 7 + 2k numbers (None for null), columns records.SUM_COLUMNS then |a_j|^2 and
    a_j . u for each of k running averages. A block of them becomes one array when it is diagnosed."""

    names: tuple[str, ...]
    sizes: tuple[int, ...]
    rows: list

    @property
    def width(self) -> int:
        return len(self.rows[0])


def _pack_sums(s: Sums | None) -> tuple | None:
    return None if s is None else tuple(s)


def _unpack_sums(packed: tuple | None) -> Sums | None:
    return None if packed is None else _new(Sums, packed)


def _step_line(step, loss, val_loss, biases, grads, updates, trained, diag, loss_change, unreached,
               grad_steps, weights, weight_grads, weight_updates, weight_unreached, bias_sums,
               weight_sums, weight_diag) -> "StepLine":
    return _new(StepLine, (step, loss, val_loss, _unpack(biases), _unpack(grads), _unpack(updates), trained, diag,
                           loss_change, unreached, grad_steps, _unpack(weights), _unpack(weight_grads),
                           _unpack(weight_updates), weight_unreached, _unpack_sums(bias_sums),
                           _unpack_sums(weight_sums), weight_diag))


class StepLine(NamedTuple):
    """A step line's fields. diag and loss_change are what the line carried (unchecked JSON values).
    unreached: per layer, True where `bias_grads` held null (no gradient reached it; grads holds zeros
    there), or None if no layer was null. grad_steps: the steps `bias_grads` sums (1 unless the line says).
    The weights' fields are the same for each layer's weights. A line in the summary form has bias_sums
    (and weight_sums) and no vectors: biases is None."""

    step: int
    loss: float
    val_loss: float | None
    biases: Vectors | None
    grads: Vectors | None
    updates: Vectors | None
    trained: bool
    diag: Any = None
    loss_change: Any = None
    unreached: tuple[bool, ...] | None = None
    grad_steps: int = 1
    weights: Vectors | None = None
    weight_grads: Vectors | None = None
    weight_updates: Vectors | None = None
    weight_unreached: tuple[bool, ...] | None = None
    bias_sums: Sums | None = None
    weight_sums: Sums | None = None
    weight_diag: Any = None

    def __reduce__(self):  # cheap to pass between processes: plain values, the vectors as raw bytes
        return _step_line, (self.step, self.loss, self.val_loss, _pack(self.biases), _pack(self.grads),
                            _pack(self.updates), self.trained, _flat_values(self.diag),
                            _flat_values(self.loss_change), self.unreached, self.grad_steps, _pack(self.weights),
                            _pack(self.weight_grads), _pack(self.weight_updates), self.weight_unreached,
                            _pack_sums(self.bias_sums), _pack_sums(self.weight_sums), _flat_values(self.weight_diag))


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
    if len(value) > MAX_LAYERS:
        raise ValueError(f"'{key}' has {len(value):,} layers; at most {MAX_LAYERS:,}")
    flat, sizes = [], []
    for name, vec in value.items():
        if type(vec) is not list:
            raise ValueError(f"'{key}.{_short(name)}' must be a list of numbers, got {type(vec).__name__}")
        if not vec:
            raise ValueError(f"'{key}.{_short(name)}' is empty: a layer needs at least one bias")
        flat += vec
        sizes.append(len(vec))
    arr = None
    if not strict_types:
        try:
            arr = np.array(flat)
        except (ValueError, TypeError, OverflowError):
            arr = None
    if arr is None or arr.dtype.kind != "f" or arr.ndim != 1:
        arr = np.asarray([as_float(v, f"{key}.{_short(name)}[{i}]")
                          for name, vec in value.items() for i, v in enumerate(vec)],
                         dtype=np.float64)
    arr.flags.writeable = False
    return Vectors(tuple(value), tuple(sizes), arr)


def _grad_vectors(obj: dict, values: Vectors, strict_types: bool, key: str = "bias_grads",
                  values_key: str = "biases") -> tuple[Vectors | None, tuple | None]:
    """obj[key] (bias_grads or weight_grads) as Vectors, and which layers were null (no gradient reached
    them: zeros here, sized as in `values`), or None if none was."""
    value = obj.get(key)
    if type(value) is not dict or None not in value.values():
        return _vectors(obj, key, strict_types), None
    sizes = dict(zip(values.names, values.sizes))
    filled = {}
    for name, vec in value.items():
        if vec is None and name not in sizes:
            raise ValueError(f"'{key}.{name}' is null but '{values_key}' has no layer {name!r}")
        filled[name] = [0.0] * sizes[name] if vec is None else vec
    return _vectors({key: filled}, key, strict_types), tuple(v is None for v in value.values())


def _sums(obj: dict, key: str, strict_types: bool = False) -> Sums | None:
    """obj[key] (bias_sums or weight_sums) as Sums, or None if absent: {layer: [n, |p|^2, |g|^2, |u|^2,
    u.g, significant, opposing, |a_j|^2..., a_j.u...]}, n a whole number >= 1, null for unknown."""
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not dict:
        raise ValueError(f"'{key}' must be an object of layer name -> list of sums")
    if not 0 < len(value) <= MAX_LAYERS:
        raise ValueError(f"'{key}' has {len(value):,} layers; from 1 to {MAX_LAYERS:,} are allowed")
    rows = list(value.values())
    if not strict_types and _plain_rows(rows):
        return Sums(tuple(value), tuple(row[0] for row in rows), rows)
    width = len(rows[0]) if type(rows[0]) is list else 0
    checked = [_checked_row(key, name, row, width, strict_types) for name, row in value.items()]
    return Sums(tuple(value), tuple(row[0] for row in checked), checked)


def _plain_rows(rows: list) -> bool:
    """Whether every row is a list of one allowed length (7 + 2k), starting with a whole number >= 1, of
    numbers only (no null, text or list: these cannot be compared with a number, nor true or false:
    the caller says so), none too big for a float, with |p|^2, |g|^2, |u|^2 and the counts >= 0 and
    agree <= sig. Each test runs over all rows at once, at C speed (a 10-layer line in a few microseconds)."""
    widths = set(map(len, rows)) if set(map(type, rows)) == {list} else ()
    if len(widths) != 1 or next(iter(widths)) not in _WIDTHS:
        return False
    counts = list(map(_FIRST, rows))
    if set(map(type, counts)) != {int} or min(counts) < 1 or max(counts) > MAX_ENTRIES:
        return False
    values = list(chain.from_iterable(rows))
    try:
        if not (-_BIG < min(values) and max(values) < _BIG):
            return False
    except TypeError:
        return False
    return min(chain.from_iterable(map(_NON_NEGATIVE, rows))) >= 0 and \
        not any(map(gt, map(_AGREE, rows), map(_SIG, rows)))


def _checked_row(key: str, name: str, row: Any, width: int, strict_types: bool) -> list:
    """One row, checked entry by entry (what _plain_rows did not pass): the ValueError names the key."""
    where = f"{key}.{_short(name)}"
    if type(row) is not list or len(row) not in _WIDTHS:
        raise ValueError(f"'{where}' must be a list [n, pp, gg, uu, ug, sig, agree, then |a|^2 "
                         f"and a.u for each of up to {MAX_AVERAGES} running averages] (7 + 2k numbers)")
    if len(row) != width:
        raise ValueError(f"'{key}': every layer needs the same running averages (rows of one length)")
    if type(row[0]) is not int or not 1 <= row[0] <= MAX_ENTRIES:
        raise ValueError(f"'{where}[0]' (n, the layer's entries) must be a whole number from 1 to 2**53")
    row = [row[0]] + [None if v is None else as_float(v, f"{where}[{i}]") for i, v in enumerate(row) if i]
    pp, gg, uu, ug, sig, agree = row[1:7]
    if _negative(pp) or _negative(gg) or _negative(uu) or _negative(sig) or _negative(agree) or \
            (agree is not None and sig is not None and agree > sig):
        raise ValueError(_NEGATIVE.format(key, _short(name)))
    return row


_WIDTHS = frozenset(range(7, 8 + 2 * MAX_AVERAGES, 2))
_FIRST, _SIG, _AGREE = itemgetter(0), itemgetter(5), itemgetter(6)
_NON_NEGATIVE = itemgetter(1, 2, 3, 5, 6)
_BIG = 2 ** 1000   # an integer past this may overflow a float: read it the careful way
_NEGATIVE = "'{}.{}': |p|^2, |g|^2, |u|^2 and the counts are >= 0, and agree <= sig"


def _negative(v: float | None) -> bool:
    return v is not None and v < 0


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
    trained = obj.get("bias_trained", True)
    if type(trained) is not bool:
        raise ValueError(f"'bias_trained' must be true or false, got {json.dumps(trained)[:40]}")
    grad_steps = _grad_steps(obj) if "grad_steps" in obj else 1
    if "bias_sums" in obj or "weight_sums" in obj:
        if "biases" in obj or "weights" in obj:
            raise ValueError("a line has vectors ('biases', 'weights') or sums ('bias_sums', 'weight_sums'), not both")
        bias_sums, weight_sums = _sums(obj, "bias_sums", strict_types), _sums(obj, "weight_sums", strict_types)
        if bias_sums is None and weight_sums is None:
            raise ValueError("'bias_sums' or 'weight_sums' must be an object of layer name -> list of sums")
        return _new(StepLine, (step, loss, val_loss, None, None, None, trained, None, None, None, grad_steps,
                               None, None, None, None, bias_sums, weight_sums, None))
    biases = _vectors(obj, "biases", strict_types)
    if biases is None:
        raise ValueError("'biases' is missing (an object of layer name -> list of numbers; "
                         "or 'bias_sums' in the summary form)")
    grads, unreached = _grad_vectors(obj, biases, strict_types)
    updates = _vectors(obj, "bias_updates", strict_types)
    weights = _vectors(obj, "weights", strict_types)
    w_grads = w_updates = w_unreached = None
    if weights is not None:
        w_grads, w_unreached = _grad_vectors(obj, weights, strict_types, "weight_grads", "weights")
        w_updates = _vectors(obj, "weight_updates", strict_types)
    return _new(StepLine, (step, loss, val_loss, biases, grads, updates, trained, obj.get("diag"),
                           obj.get("loss_change"), unreached, grad_steps, weights, w_grads, w_updates, w_unreached,
                           None, None, obj.get("weight_diag")))


def _short(name: str) -> str:
    return name if len(name) <= 30 else name[:30] + "..."


def prepare_lines(lines: list[str]) -> list[StepLine | str]:
    """Parse lines ahead of a StreamReader, e.g. in another process: a StepLine for each well-formed step
    line, and the text itself for anything else (header, event, blank or bad line), which the reader
    then reads itself (StreamReader.feed_prepared)."""
    out = []
    for text in lines:
        stripped = text.strip()
        try:
            obj = load_line(stripped) if stripped.startswith("{") and type(text) is str else None
        except ValueError:
            obj = None
        if type(obj) is not dict or "format" in obj or "event" in obj:
            out.append(text)
            continue
        try:
            out.append(parse_step(obj, "true" in stripped or "false" in stripped))
        except ValueError:
            out.append(text)
    return out


def stored_diagnosis(line: StepLine, key: str = "diag") -> Diagnosis | None:
    """The diagnosis a line carried in `key` (diag: the biases', weight_diag: the weights'; its verdict
    changes are event lines of their own), or None."""
    diag = line.diag if key == "diag" else line.weight_diag
    if type(diag) is not dict:
        return None
    layers = {str(name): LayerDiagnosis.from_json(d, line.step) for name, d in diag.items()}
    return Diagnosis({k: v for k, v in layers.items() if v is not None}, LossChange.from_json(line.loss_change), [])


def check_errors(errors: dict) -> dict:
    """A gradient_check event's numbers as floats (an integer too big for a float as inf); what is not a
    number (null included) is passed on as it was, for the diagnoser to ignore."""
    return {name: as_float(value, "errors") if isinstance(value, int) and not isinstance(value, bool) else value
            for name, value in errors.items()}
