"""The per-layer sums every diagnostic is made of, from flat vectors, for one step or a block of steps.

Each sum adds up across a layer's entries (and so across shards of a layer, or from a trainer that
reduces them itself): |b|^2, |g|^2, |u|^2, u.g, the significant gradient entries and those where u
opposes g, and |a|^2, a.u for running averages a of g (the directions momentum and Adam follow).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .records import new_tuple

SMALL_TERMS = 1 << 14   # block_sums: up to this many terms (a small block) summed in one reduceat
SIGNIFICANT = 1e-16  # an entry with g^2 above this times the step's largest g^2 counts in the sign agreement


class StepMeasures(NamedTuple):
    """One step's measures, one value per layer in each list (NaN where undefined)."""

    b_norm: list[float]
    g_norm: list[float]
    u_norm: list[float]
    g_rms: list[float]           # |g| / sqrt(entries)
    ug: list[float]              # u . g: the layer's first-order loss change
    cos: list[float]             # cos(u, -g): +1 is straight downhill
    sign_agree: list[float]      # share of the significant gradient entries where u opposes g
    ratio: list[float]           # |u| / |b|


def block_sums(vec: np.ndarray, avg: np.ndarray | None, starts: np.ndarray,
               scratch: np.ndarray | None = None) -> np.ndarray:
    """Per-layer sums of per-entry terms. vec: (3, m, n) b, g, u of m steps; avg: (k, m, n) running
    averages of g, or None; starts: (layers,) each layer's first entry. Returns (6 + 2k, m, layers) in
    this order: |b|^2, |g|^2, |u|^2, u.g, the entries with a significant gradient, those
    where u opposes g; then |a|^2 for each running average a of g, then a.u for each. Sums run along
    contiguous rows: a block gives, bit for bit, its steps' sums alone. Small inputs (SMALL_TERMS) are
    summed in one reduceat of all their terms; bigger ones term by term through one (m, n) scratch array
    (scratch, overwritten, if given), so that a caller passing a few steps at a time (Diagnoser does)
    keeps the work in cache. The counts are exact either way."""
    k = 0 if avg is None else len(avg)
    small = (6 + 2 * k) * vec[0].size <= SMALL_TERMS
    if small:
        terms = np.empty((6 + 2 * k,) + vec.shape[1:])
    else:
        out = np.empty((6 + 2 * k,) + vec.shape[1:-1] + (len(starts),))
        scratch = np.empty(vec.shape[1:]) if scratch is None else scratch

    def product(i: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:   # term i, x * y
        t = terms[i] if small else scratch
        np.multiply(x, y, out=t)
        if not small:
            out[i] = np.add.reduceat(t, starts, axis=-1)
        return t

    product(0, vec[0], vec[0])
    product(2, vec[2], vec[2])
    gg = product(1, vec[1], vec[1])
    top = np.maximum.reduce(gg, axis=-1, keepdims=True)
    significant = np.greater(gg, top * SIGNIFICANT + 1e-300)
    opposing = np.less(product(3, vec[2], vec[1]), 0.0)
    opposing &= significant
    if small:
        terms[4], terms[5] = significant, opposing
    else:
        out[4], out[5] = _counts(significant, starts), _counts(opposing, starts)
    for j in range(k):
        product(6 + j, avg[j], avg[j])
        product(6 + k + j, avg[j], vec[2])
    return np.add.reduceat(terms, starts, axis=-1) if small else out


def _counts(mask: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """(m, layers) the True entries of each row's layers, as floats. mask: (m, n). Counts are exact in any
    order: a few long rows are counted slice by slice (a byte each), many short ones in one reduceat."""
    rows, n = mask.shape
    if rows * len(starts) > 64:
        return np.add.reduceat(mask, starts, axis=-1, dtype=np.float64)
    ends = starts.tolist()[1:] + [n]
    return np.array([[np.count_nonzero(row[s:e]) for s, e in zip(starts.tolist(), ends)] for row in mask],
                    dtype=np.float64)


class BlockMeasures(NamedTuple):
    """A block's measures, as arrays (for the verdicts), and per step (for its records)."""

    table: np.ndarray      # (m, 8, L): the fields of StepMeasures, in order
    cosines: np.ndarray    # (m, L, 1 + k): cos(u, -g), then cos(u, -a) for each running average a (NaN: none)

    def column(self, field: str) -> np.ndarray:
        """(m, L) one field of StepMeasures for every step and layer, e.g. column("g_rms")."""
        return self.table[:, StepMeasures._fields.index(field)]

    def step(self, i: int) -> StepMeasures:
        """Step i's measures, as Python floats."""
        return new_tuple(StepMeasures, self.table[i].tolist())


def measures(sums: np.ndarray, sizes: np.ndarray, with_averages: list[bool]) -> BlockMeasures:
    """Each step's measures from its sums. sums: (6 + 2k, m, layers) as block_sums gives (or as a trainer
    that reduces them itself would send); sizes: (layers,) entries per layer; with_averages: which steps
    have running averages (NaN in `cosines` without them)."""
    with np.errstate(all="ignore"):
        bb, gg, uu, ug, n_sig, n_agree = sums[:6]
        b, g, u = np.sqrt(bb), np.sqrt(gg), np.sqrt(uu)
        ug_norms = u * g
        table = np.stack((b, g, u, g / np.sqrt(sizes), ug, -ug / ug_norms, n_agree / n_sig, u / b), axis=1)  # (m, 8, L)
        table[:, 5][~(ug_norms > 0)] = np.nan   # cos(u, -g): undefined where u or g is 0
        table[:, 6][~((n_sig > 0) & (u > 0))] = np.nan   # sign agreement
        table[:, 7][~(b > 0)] = np.nan   # |u| / |b|
        k = (len(sums) - 6) // 2
        aa, au = sums[6:6 + k], sums[6 + k:]
        cos_avg = np.where((u > 0) & (aa > 0) & np.asarray(with_averages)[:, None], -au / (u * np.sqrt(aa)), np.nan)
        cosines = np.concatenate([table[:, 5][None], cos_avg]).transpose(1, 2, 0)  # (m, L, 1 + k)
    return BlockMeasures(table, cosines)


class GradientAverages:
    """Running averages a_j <- beta_j a_j + (1 - beta_j) g of the gradients of trained steps, one per
    beta; they start again from 0 after a step whose biases were not trained."""

    def __init__(self, betas: tuple[float, ...], n: int) -> None:
        self.betas = np.asarray(tuple(float(b) for b in betas), dtype=np.float64)
        self.avg = np.zeros((len(self.betas), n))   # (k, n)
        self.on = False

    def block(self, g: np.ndarray, has_g: list[bool], trained: list[bool],
              out: np.ndarray | None = None) -> tuple[np.ndarray | None, list[bool]]:
        """Advance over m steps. g: (m, n) gradients (rows where has_g is False are ignored). Returns the
        averages after each step, (k, m, n) (None if no step has them; zeros in the steps without them),
        and which steps have them. out: an (m, k, n) array to write them in (else a new one)."""
        m, k = len(trained), len(self.betas)
        used = [False] * m
        if not k:
            return None, used
        out = np.empty((m, k, g.shape[-1])) if out is None else out   # each step's (k, n) averages one row
        new = np.empty((k, g.shape[-1]))      # (1 - beta) g of a step
        betas, rest, multiply, add = self.betas[:, None], (1.0 - self.betas)[:, None], np.multiply, np.add
        prev = self.avg if self.on else None   # the averages before the step (None: zeros)
        for i in range(m):
            row = out[i]
            if not trained[i]:
                prev = None
                row.fill(0.0)
                continue
            if not has_g[i]:
                row.fill(0.0)
                continue
            multiply(0.0 if prev is None else prev, betas, out=row)   # beta a (a = 0 after a reset)
            multiply(g[i], rest, out=new)
            add(row, new, out=row)
            prev = row
            used[i] = True
        self.on = prev is not None
        if prev is not None:
            self.avg[:] = prev
        return (out.transpose(1, 0, 2) if any(used) else None), used
