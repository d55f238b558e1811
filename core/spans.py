"""The steps one stream line sums when a StreamWriter logs every k steps (StreamWriter(every=k))."""
from __future__ import annotations

import numpy as np


class Span:
    """The steps one line sums: the first step's biases, loss and val_loss, the
    gradients and updates summed (None if any step had none), a layer unreached only if it was at every step."""

    def __init__(self, step: int, loss: float, val_loss: float | None, b: dict, unreached: tuple | None,
                 g: dict | None, u: dict | None) -> None:
        self.step, self.loss, self.val_loss, self.b, self.count = step, loss, val_loss, b, 1
        self.unreached, self.g, self.u = unreached, _copy(g), _copy(u)

    def add(self, g: dict | None, unreached: tuple | None, u: dict | None) -> None:
        """One more step: its gradients and updates {layer: (n_l,)} (or None), its unreached layers."""
        self.count += 1
        self.g = None if g is None or self.g is None else {n: v + g[n] for n, v in self.g.items()}
        self.u = None if u is None or self.u is None else {n: v + u[n] for n, v in self.u.items()}
        if self.unreached is not None:
            self.unreached = None if unreached is None else tuple(a and b for a, b in zip(self.unreached, unreached))


def _copy(vectors: dict | None) -> dict | None:
    return None if vectors is None else {n: np.array(v, dtype=np.float64) for n, v in vectors.items()}
