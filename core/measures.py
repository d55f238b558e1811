"""The per-layer sums every diagnostic is made of, from flat vectors, for one step or a block of steps.

Each sum adds up across a layer's entries (and so across shards of a layer, or from a trainer that
reduces them itself): |b|^2, |g|^2, |u|^2, u.g, the significant gradient entries and those where u
opposes g, and |a|^2, a.u for running averages a of g (the directions momentum and Adam follow).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIGNIFICANT = 1e-16  # an entry with g^2 above this times the step's largest g^2 counts in the sign agreement


@dataclass(frozen=True, slots=True)
class LayerSums:
    """One step's sums, one value per layer in each list. aa and au: one list per running average of g
    (None where no average applies to the step)."""

    bb: list[float]             # |b|^2
    gg: list[float]             # |g|^2
    uu: list[float]             # |u|^2
    ug: list[float]             # u . g
    n_sig: list[float]          # entries with a significant gradient
    n_agree: list[float]        # ... of which u and g have opposite signs (u points downhill there)
    aa: list[list[float]] | None = None   # |a|^2 per average
    au: list[list[float]] | None = None   # a . u per average


def block_sums(vec: np.ndarray, avg: np.ndarray | None, starts: np.ndarray) -> np.ndarray:
    """Per-layer sums of per-entry terms. vec: (3, m, n) b, g, u of m steps; avg: (k, m, n) running
    averages of g, or None; starts: (layers,) each layer's first entry. Returns (6 + 2k, m, layers) in
    LayerSums order. Sums run along contiguous rows: a block gives, bit for bit, its steps' sums alone."""
    k = 0 if avg is None else len(avg)
    terms = np.empty((6 + 2 * k,) + vec.shape[1:])
    np.multiply(vec, vec, out=terms[:3])
    np.multiply(vec[2], vec[1], out=terms[3])
    top = np.maximum.reduce(terms[1], axis=-1, keepdims=True)
    np.greater(terms[1], top * SIGNIFICANT + 1e-300, out=terms[4])
    np.less(terms[3], 0.0, out=terms[5])
    terms[5] *= terms[4]
    if k:
        np.multiply(avg, avg, out=terms[6:6 + k])
        np.multiply(avg, vec[2], out=terms[6 + k:])
    return np.add.reduceat(terms, starts, axis=-1)


def step_sums(sums: np.ndarray, with_averages: list[bool]) -> list[LayerSums]:
    """block_sums' (R, m, layers) array as one LayerSums per step; a step's averages only where
    with_averages says so."""
    rows = sums.tolist()
    k = (len(rows) - 6) // 2
    bb, gg, uu, ug, n_sig, n_agree = rows[:6]
    out = []
    for i, use in enumerate(with_averages):
        if k and use:
            out.append(LayerSums(bb[i], gg[i], uu[i], ug[i], n_sig[i], n_agree[i],
                                 [rows[6 + j][i] for j in range(k)], [rows[6 + k + j][i] for j in range(k)]))
        else:
            out.append(LayerSums(bb[i], gg[i], uu[i], ug[i], n_sig[i], n_agree[i]))
    return out


class GradientAverages:
    """Running averages a_j <- beta_j a_j + (1 - beta_j) g of the gradients of trained steps, one per
    beta; they start again from 0 after a step whose biases were not trained."""

    def __init__(self, betas: tuple[float, ...], n: int) -> None:
        self.betas = np.asarray(tuple(float(b) for b in betas), dtype=np.float64)
        self.avg = np.zeros((len(self.betas), n))   # (k, n)
        self.on = False

    def block(self, g: np.ndarray, has_g: list[bool], trained: list[bool]) -> tuple[np.ndarray | None, list[bool]]:
        """Advance over m steps. g: (m, n) gradients (rows where has_g is False are ignored). Returns the
        averages after each step, (k, m, n) (None if no step has them), and which steps have them."""
        m, k = len(trained), len(self.betas)
        used = [False] * m
        out = None
        avg = self.avg
        for i in range(m) if k else ():
            if not trained[i]:
                self.on = False
                continue
            if not has_g[i]:
                continue
            if out is None:
                out = np.zeros((k, m, g.shape[-1]))
            if not self.on:
                avg[:] = 0.0
                self.on = True
            avg *= self.betas[:, None]
            avg += np.multiply.outer(1.0 - self.betas, g[i])
            out[:, i] = avg
            used[i] = True
        return out, used
