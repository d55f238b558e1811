"""The records a run produces: one StepRecord per step, and Events (diverged, verdict, ...).

One typed shape per concept, from the trainer or a stream reader to the panels and `check`:
`StepRecord` (a step), `LayerDiagnosis` (one layer's diagnostics at a step), `LossChange`, `Event`.
`to_json()` gives the stream line (docs/stream-format.md). Records are immutable: typed named tuples (a
frozen dataclass costs a microsecond more to make, and a run makes tens of thousands a second); arrays
inside are read-only.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .layout import Layout


new_tuple = tuple.__new__  # a named tuple from all its fields at once, without its Python-level __new__ (faster)


class LayerVectors(Mapping):
    """{layer name: (n_l,) read-only view} over one flat (n,) vector, sliced only when read."""

    __slots__ = ("flat", "layout")

    def __init__(self, flat: np.ndarray, layout: Layout) -> None:
        flat.flags.writeable = False
        self.flat, self.layout = flat, layout

    def __getitem__(self, name: str) -> np.ndarray:
        i = self.layout.names.index(name)
        start = sum(self.layout.sizes[:i])
        return self.flat[start:start + self.layout.sizes[i]]

    def __iter__(self) -> Iterator[str]:
        return iter(self.layout.names)

    def __len__(self) -> int:
        return len(self.layout.names)

    def items(self):
        return self.layout.split(self.flat).items()

    def values(self):
        return self.layout.split(self.flat).values()


def json_number(x: Any) -> float | None:
    """A float for JSON: non-finite values become None (JSON has no NaN; a reader takes null as non-finite)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _vectors(d: Mapping) -> dict:
    """{layer: vector} for JSON, non-finite entries as null."""
    isfinite = math.isfinite
    return {name: [v if isfinite(v) else None for v in arr.tolist()] for name, arr in d.items()}


def _optional_float(value: Any) -> float | None:
    """A number read from a stored line as a float; anything else (null, text, true) as None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


class LayerDiagnosis(NamedTuple):
    """One layer's diagnostics at one step (None: not known at this step). Norms are Euclidean over the
    layer's entries; cos is cos(u, -g); sign_agree the share of significant entries where u opposes g."""

    b_norm: float | None
    g_norm: float | None
    u_norm: float | None
    ratio: float | None          # u_norm / b_norm
    cos: float | None
    sign_agree: float | None
    pred_dloss: float | None     # g . u, this layer's first-order loss change
    fd_error: float | None       # the last gradient check's largest relative error
    verdict: str
    cause: str
    since: int                   # the step this verdict began

    def to_json(self) -> dict:
        return {"b_norm": json_number(self.b_norm), "g_norm": json_number(self.g_norm),
                "u_norm": json_number(self.u_norm), "ratio": json_number(self.ratio), "cos": json_number(self.cos),
                "sign_agree": json_number(self.sign_agree), "pred_dloss": json_number(self.pred_dloss),
                "fd_error": json_number(self.fd_error), "verdict": self.verdict, "cause": self.cause,
                "since": self.since}

    @classmethod
    def from_json(cls, d: Any, step: int) -> "LayerDiagnosis | None":
        """A stored line's diagnosis of one layer (what is missing or mistyped reads as None); None if
        `d` is not an object."""
        if type(d) is not dict:
            return None
        since = d.get("since")
        verdict, cause = d.get("verdict"), d.get("cause")
        return cls(*(_optional_float(d.get(key)) for key in _NUMBERS),
                   verdict=verdict if isinstance(verdict, str) else "-",
                   cause=cause if isinstance(cause, str) else "",
                   since=since if type(since) is int else step)


_NUMBERS = ("b_norm", "g_norm", "u_norm", "ratio", "cos", "sign_agree", "pred_dloss", "fd_error")


class LossChange(NamedTuple):
    """The loss change the last update predicted to first order (sum of g . u over all parameters) and
    the change then seen."""

    predicted: float | None
    actual: float | None

    def to_json(self) -> dict:
        return {"predicted": json_number(self.predicted), "actual": json_number(self.actual)}

    @classmethod
    def from_json(cls, d: Any) -> "LossChange | None":
        if type(d) is not dict:
            return None
        return cls(_optional_float(d.get("predicted")), _optional_float(d.get("actual")))


class LayerSums(NamedTuple):
    """One kind of parameter's per-layer sums at one step (the summary form of a stream line): each row
    adds up across the layer's entries, and across shards of it. table: (L, 7 + 2k), columns SUM_COLUMNS
    then |a_j|^2 for each of k running averages a_j, then a_j . u for each; NaN where unknown (no
    gradient reached the layer: |g|^2 and what needs g; the update not known: what needs u)."""

    names: tuple[str, ...]
    table: np.ndarray

    def to_json(self) -> dict:
        return {name: [int(v) if i in _COUNTS and v == v else json_number(v) for i, v in enumerate(row)]
                for name, row in zip(self.names, self.table.tolist())}


SUM_COLUMNS = ("n", "pp", "gg", "uu", "ug", "sig", "agree")  # entries, |p|^2, |g|^2, |u|^2, u.g, significant, opposing
_COUNTS = (0, 5, 6)


class StepRecord(NamedTuple):
    """One step: loss, val_loss and bias_grads are taken at `biases` (before this step's update);
    bias_updates is what the step then added to the biases. diag: each layer's diagnosis. The weights'
    fields are the same for each layer's weights (None: not logged). A record read from, or to be
    written in, the summary form has bias_sums / weight_sums, and biases None."""

    step: int
    loss: float
    val_loss: float | None
    biases: Mapping | None               # layer -> (n_l,) read-only array
    bias_grads: Mapping | None
    bias_updates: Mapping | None
    diag: dict[str, LayerDiagnosis] | None = None
    loss_change: LossChange | None = None
    bias_trained: bool = True
    span: int = 1                        # steps the update spans (sparse logging)
    weights: Mapping | None = None       # layer -> (n_l,) its weights, flat
    weight_grads: Mapping | None = None
    weight_updates: Mapping | None = None
    weight_diag: dict[str, LayerDiagnosis] | None = None
    bias_sums: LayerSums | None = None
    weight_sums: LayerSums | None = None

    def to_json(self) -> dict:
        """The vector form's line (the summary form's if there are no vectors)."""
        if self.biases is None:
            return self.summary_json()
        line = {"step": self.step, "loss": json_number(self.loss)}
        if self.val_loss is not None:
            line["val_loss"] = json_number(self.val_loss)
        line["biases"] = _vectors(self.biases)
        if self.bias_grads is not None:
            line["bias_grads"] = _vectors(self.bias_grads)
        if self.bias_updates is not None:
            line["bias_updates"] = _vectors(self.bias_updates)
        if not self.bias_trained:
            line["bias_trained"] = False
        if self.weights is not None:
            line["weights"] = _vectors(self.weights)
            if self.weight_grads is not None:
                line["weight_grads"] = _vectors(self.weight_grads)
            if self.weight_updates is not None:
                line["weight_updates"] = _vectors(self.weight_updates)
        if self.diag is not None:
            line["diag"] = {name: d.to_json() for name, d in self.diag.items()}
        if self.weight_diag is not None:
            line["weight_diag"] = {name: d.to_json() for name, d in self.weight_diag.items()}
        if self.loss_change is not None:
            line["loss_change"] = self.loss_change.to_json()
        return line

    def summary_json(self) -> dict:
        """The summary form's line: per-layer sums instead of vectors (diagnoses left out: a reader
        derives them from the sums)."""
        line = {"step": self.step, "loss": json_number(self.loss)}
        if self.val_loss is not None:
            line["val_loss"] = json_number(self.val_loss)
        if self.bias_sums is not None:
            line["bias_sums"] = self.bias_sums.to_json()
        if self.weight_sums is not None:
            line["weight_sums"] = self.weight_sums.to_json()
        if not self.bias_trained:
            line["bias_trained"] = False
        if self.span > 1:
            line["grad_steps"] = self.span
        return line


@dataclass(frozen=True)
class Event:
    """Something that happened at a step: kind is diverged, verdict, gradient_check, flip_sign,
    bias_lr_scale, preset_switched, restarted."""

    kind: str
    step: int
    data: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"event": self.kind, "step": self.step, **self.data}

    @classmethod
    def from_json(cls, line: dict) -> "Event":
        """The Event of an event line {"event": kind, "step": N, ...data} (to_json's inverse)."""
        return cls(line["event"], line["step"], {k: v for k, v in line.items() if k not in ("event", "step")})

    @classmethod
    def verdict(cls, step: int, layer: str, verdict: str, cause: str, param: str = "bias") -> "Event":
        """A layer's verdict changed at this step (param: "bias", or "weight" for the layer's weights)."""
        data = {"layer": layer, "verdict": verdict, "cause": cause}
        if param != "bias":
            data["param"] = param
        return cls("verdict", step, data)
