"""Each layer's running history, advanced a block of steps at a time: the descent cosines (counted since
the biases were last not trained), recent bias norms, the largest rms(g), the run of frozen steps.

`LayerHistory.advance` turns a block's measures into the `LayerWindow` the verdict rules read
(core/verdicts.py). Means over the last k values are differences of cumulative sums, as a per-step
running sum gives them, bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .verdicts import LayerWindow, Thresholds


@dataclass(slots=True)
class BlockSteps:
    """A block of m steps of L layers, as the verdicts need them: per step (m,) and per layer (m, L)."""

    loss: np.ndarray        # (m,)
    rising: np.ndarray      # (m,) bool: the loss has not fallen over the last window (or is not finite)
    trained: np.ndarray     # (m,) bool: the biases were trained (or are judged as if)
    b_norm: np.ndarray      # (m, L)
    g_rms: np.ndarray       # (m, L)
    u_norm: np.ndarray      # (m, L)
    g_rms_max: np.ndarray   # (m,) the largest rms(g) of any layer (as Python's max: a leading NaN wins)
    fd_error: np.ndarray    # (m, L) the last gradient check's largest relative error, NaN if none
    cosines: np.ndarray     # (m, L, series) cos(u, -g) then cos(u, -a) for each running average a; NaN: undefined


class CosineSeries:
    """One descent cosine's defined values since the last clear: their count, and the cumulative sums of
    the last `keep` of them (so the mean of the last k <= keep values is one difference)."""

    __slots__ = ("keep", "cums", "n")

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.clear()

    def clear(self) -> None:
        self.cums = np.zeros(1)   # (min(n, keep) + 1,): the cumulative sums after the last values
        self.n = 0

    def advance(self, values: np.ndarray, ks: tuple[int, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Take in a block's values, (m,) with NaN where undefined (skipped). Returns the count after each
        step, (m,), and for each k the mean of the last min(k, count) values after each step (NaN if none)."""
        defined = values == values
        counts = self.n + np.cumsum(defined)
        sums = np.cumsum(np.concatenate((self.cums[-1:], values[defined])))
        full = np.concatenate((self.cums[:-1], sums))
        at = counts + (len(self.cums) - 1 - self.n)   # where in `full` the sum after each step is
        means = []
        with np.errstate(invalid="ignore"):
            for k in ks:
                last = np.minimum(counts, k)
                means.append((full[at] - full[at - last]) / last)
        if len(counts):
            self.n = int(counts[-1])
            self.cums = full[len(full) - 1 - min(self.n, self.keep):]
        return counts, means


class LayerHistory:
    """One layer's history; `advance` takes a block of steps in and returns the window the rules read."""

    def __init__(self, th: Thresholds, series: int) -> None:
        self.th = th
        self.series = [CosineSeries(max(th.window, th.unrelated_steps)) for _ in range(series)]
        self.norms = np.zeros(0)      # the last window - 1 bias norms
        self.first_norm: float | None = None
        self.max_g_rms = 0.0
        self.frozen_run = 0

    def advance(self, step: BlockSteps, layer: int, judged: np.ndarray) -> LayerWindow:
        """The layer's window over a block: its measures are column `layer` of the block's (m, L) arrays
        and cosines (m, L, series); judged: (m,) the steps that add to the history (trained, with a finite
        gradient and update). A step whose biases are not trained clears the cosines and frozen run."""
        th = self.th
        b, g_rms, u = step.b_norm[:, layer], step.g_rms[:, layer], step.u_norm[:, layer]
        if self.first_norm is None:
            self.first_norm = float(b[0])
        oldest, full, self.norms = oldest_in_window(self.norms, b, th.window)
        max_g = np.maximum.accumulate(np.concatenate(([self.max_g_rms], np.where(judged, g_rms, -np.inf))))[1:]
        self.max_g_rms = float(max_g[-1])
        on = (g_rms > th.grad_eps) & (g_rms >= th.quiet_grad_frac * max_g)
        moving = u > 1e-12 * np.where(b > 1.0, b, 1.0)
        runs = self._frozen_runs(judged & on & ~moving, (judged & (moving | ~on)) | ~step.trained)
        n_cos, (window, long) = self._cosines(np.where(judged[:, None], step.cosines[:, layer], np.nan), step.trained)
        best = np.where(n_cos >= th.min_steps, _best(window), np.nan)
        return LayerWindow(step.loss, step.rising, b, g_rms, step.g_rms_max, step.fd_error[:, layer],
                           self.first_norm, full, oldest, n_cos, window[0], best, _best(long), on, max_g, runs)

    def _frozen_runs(self, frozen: np.ndarray, resets: np.ndarray) -> np.ndarray:
        """The run of frozen steps after each step: +1 on a frozen step, 0 after a reset, else unchanged."""
        counts = np.cumsum(frozen)
        base = np.maximum.accumulate(np.where(resets, counts, -self.frozen_run))
        runs = counts - base
        self.frozen_run = int(runs[-1])
        return runs

    def _cosines(self, cosines: np.ndarray, trained: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Count of raw cosines and the (series, 2, m) means over the window and over unrelated_steps,
        after each step; a step whose biases are not trained clears every series."""
        th, m = self.th, len(cosines)
        counts = np.zeros(m, dtype=np.int64)
        means = np.full((2, len(self.series), m), np.nan)
        cuts = np.flatnonzero(~trained).tolist()
        start = 0
        for stop in cuts + [m]:
            if stop > start:
                for j, series in enumerate(self.series):
                    n, (window, long) = series.advance(cosines[start:stop, j], (th.window, th.unrelated_steps))
                    means[0, j, start:stop], means[1, j, start:stop] = window, long
                    if j == 0:
                        counts[start:stop] = n
            if stop < m:
                for series in self.series:
                    series.clear()
            start = stop + 1
        return counts, means


def oldest_in_window(kept: np.ndarray, new: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A window of the last `window` values, after each of the (m,) new ones: its oldest value, (m,),
    whether it is whole, (m,), and the last window - 1 values to keep for the next block. kept: what the
    previous call returned to keep (all values so far, while fewer than window - 1)."""
    back = window - 1
    values = np.concatenate((kept, new))
    at = np.arange(len(kept), len(values)) - back
    return values[np.maximum(at, 0)], at >= 0, values[max(len(values) - back, 0):] if back > 0 else values[:0]


def _best(means: np.ndarray) -> np.ndarray:
    """(series, m) means: per step the one of largest magnitude (the first of equals; NaN if none)."""
    size = np.where(means == means, np.abs(means), -1.0)
    return np.take_along_axis(means, size.argmax(axis=0)[None], axis=0)[0]
