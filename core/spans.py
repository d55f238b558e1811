"""What one stream line holds of a kind of parameter (biases or weights), and the steps one line sums
when a StreamWriter logs every k steps (StreamWriter(every=k))."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Logged:
    """One kind's vectors at a step, {layer: (n_l,)}: the values, their gradients and updates (None: not
    given), and which layers no gradient reached (None: all were reached)."""

    values: dict
    grads: dict | None
    updates: dict | None
    unreached: tuple | None

    def add(self, other: "Logged") -> None:
        """Sum another step into this one (a span): gradients and updates summed (None if either had
        none), a layer unreached only if it was at every step; the values stay the first step's."""
        self.grads = _sum(self.grads, other.grads)
        self.updates = _sum(self.updates, other.updates)
        if self.unreached is not None:
            self.unreached = None if other.unreached is None else \
                tuple(a and b for a, b in zip(self.unreached, other.unreached))


class Span:
    """The steps one line sums: the first step's loss, val_loss and values, and each kind summed."""

    def __init__(self, step: int, loss: float, val_loss: float | None, kinds: dict[str, Logged]) -> None:
        self.step, self.loss, self.val_loss, self.count = step, loss, val_loss, 1
        self.kinds = {k: Logged(v.values, _copy(v.grads), _copy(v.updates), v.unreached) for k, v in kinds.items()}

    def add(self, kinds: dict[str, Logged]) -> None:
        """One more step's vectors, kind by kind."""
        self.count += 1
        for kind, logged in kinds.items():
            self.kinds[kind].add(logged)


def _sum(a: dict | None, b: dict | None) -> dict | None:
    return None if a is None or b is None else {n: v + b[n] for n, v in a.items()}


def _copy(vectors: dict | None) -> dict | None:
    return None if vectors is None else {n: np.array(v, dtype=np.float64) for n, v in vectors.items()}
