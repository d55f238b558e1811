"""Parsing one step line of a stream into a typed `StepLine`, checked for types (not against the stream
so far: core/reader.py does that). `prepare_lines` does the parsing ahead, e.g. in a second process.
core/readlines.py reads the lines themselves."""
from __future__ import annotations

import json
import math
from typing import Any, NamedTuple

import numpy as np

from .diagnoser import Diagnosis
from .layout import Layout
from .records import LayerDiagnosis, LossChange, new_tuple as _new

MAX_LAYERS = 1000          # bias layers in one step line: more is a malformed line


def load_line(text: str) -> Any:
    """json.loads, with what it cannot take (bad JSON, nesting past the recursion limit, integers of more than
    4300 digits) as a ValueError saying so."""
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
                            _pack(self.updates), self.trained, _flat_values(self.diag),
                            _flat_values(self.loss_change), self.unreached, self.grad_steps)


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


def stored_diagnosis(line: StepLine) -> Diagnosis | None:
    """The diagnosis a line carried (its verdict changes are event lines of their own), or None."""
    if type(line.diag) is not dict:
        return None
    layers = {str(name): LayerDiagnosis.from_json(d, line.step) for name, d in line.diag.items()}
    return Diagnosis({k: v for k, v in layers.items() if v is not None}, LossChange.from_json(line.loss_change), [])


def check_errors(errors: dict) -> dict:
    """A gradient_check event's numbers as floats (an integer too big for a float as inf); what is not a
    number (null included) is passed on as it was, for the diagnoser to ignore."""
    return {name: as_float(value, "errors") if isinstance(value, int) and not isinstance(value, bool) else value
            for name, value in errors.items()}
