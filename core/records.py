"""The records a run produces: one StepRecord per step, and Events (diverged, verdict, ...).

`to_json()` gives the stream line (docs/stream-format.md); arrays inside records are read-only.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field


class LayerVectors(Mapping):
    """{layer name: (n_l,) read-only view} over one flat vector, sliced only when read."""

    __slots__ = ("flat", "layout")

    def __init__(self, flat, layout):
        flat.flags.writeable = False
        self.flat, self.layout = flat, layout

    def __getitem__(self, name):
        i = self.layout.names.index(name)
        start = sum(self.layout.sizes[:i])
        return self.flat[start:start + self.layout.sizes[i]]

    def __iter__(self):
        return iter(self.layout.names)

    def __len__(self):
        return len(self.layout.names)

    def items(self):
        return self.layout.split(self.flat).items()

    def values(self):
        return self.layout.split(self.flat).values()


def json_number(x):
    """A float for JSON: non-finite values become None (JSON has no NaN; a reader takes null as non-finite)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _vectors(d):
    """{layer: vector} for JSON, non-finite entries as null."""
    isfinite = math.isfinite
    return {name: [v if isfinite(v) else None for v in arr.tolist()] for name, arr in d.items()}


@dataclass(frozen=True)
class StepRecord:
    """One step: loss, val_loss and bias_grads are taken at `biases` (before this step's update);
    bias_updates is what the step then added to the biases. diag is per layer (see diagnostics)."""

    step: int
    loss: float
    val_loss: float | None
    biases: dict            # layer -> (n_l,) read-only array
    bias_grads: dict | None
    bias_updates: dict | None
    diag: dict | None = None
    loss_change: dict | None = None
    bias_trained: bool = True
    span: int = 1           # steps the update spans (sparse logging)

    def to_json(self) -> dict:
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
        if self.diag is not None:
            line["diag"] = {name: {k: (json_number(v) if isinstance(v, float) else v) for k, v in d.items()}
                            for name, d in self.diag.items()}
        if self.loss_change is not None:
            line["loss_change"] = {k: json_number(v) for k, v in self.loss_change.items()}
        return line


@dataclass(frozen=True)
class Event:
    """Something that happened at a step: kind is diverged, verdict, gradient_check, flip_sign,
    bias_lr_scale, preset_switched, run_started."""

    kind: str
    step: int
    data: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"event": self.kind, "step": self.step, **self.data}

    @classmethod
    def from_json(cls, line: dict) -> "Event":
        """The Event of an event line {"event": kind, "step": N, ...data} (to_json's inverse)."""
        return cls(line["event"], line["step"], {k: v for k, v in line.items() if k not in ("event", "step")})
