"""Every layer's running history, advanced a block of steps at a time: the descent cosines (counted since
the biases were last not trained), recent bias norms, the largest rms(g), the run of frozen steps.

`History.advance` turns a block's measures into the `LayerWindow` the verdict rules read
(core/verdicts.py): (m, L) arrays, all layers at once. Means over the last k values are differences of
cumulative sums, as a per-step running sum gives them, bit for bit.
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
    cosines: np.ndarray     # (m, L, S) cos(u, -g) then cos(u, -a) for each running average a; NaN: undefined
    unreached: np.ndarray   # (m, L) bool: no gradient reached the layer (the trainer logged null)
    rounding: np.ndarray    # (m,) the unit of rounding of the step's gradients (float32's or float64's eps)


class Cosines:
    """C columns of descent cosines (layers x series): per column the count of defined values since the
    last clear, and the cumulative sums after the last `keep` of them (the mean of the last k <= keep
    values is one difference)."""

    def __init__(self, columns: int, keep: int) -> None:
        self.keep, self.columns = keep, columns
        self.clear()

    def clear(self) -> None:
        self.sums = np.zeros((1, self.columns))   # (held + 1, C), row r: the sum after count n - held + r,
        self.n = np.zeros(self.columns, dtype=np.int64)   # held = min(largest count, keep): grown as needed

    def advance(self, values: np.ndarray, ks: tuple[int, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Take in a block's values, (m, C) with NaN where undefined (skipped). Returns the count after each
        step, (m, C), and for each k the mean of the last min(k, count) values after each step (NaN if none)."""
        (m, columns), held = values.shape, len(self.sums) - 1
        defined = values == values
        counts = self.n + np.cumsum(defined, axis=0)
        sums = np.cumsum(np.concatenate((self.sums[-1:], np.where(defined, values, 0.0))), axis=0)[1:]
        base = self.n - held   # the count of row 0 of self.sums
        table = np.concatenate((self.sums, sums))   # (held + 1 + m, C): every sum, by row
        columns_at = np.arange(columns)
        if defined.all():   # the count goes up by one a step: a count's sum is in the row of that count
            def sum_at(count: np.ndarray) -> np.ndarray:
                return table[count - base, columns_at]
        else:   # the sum when the count was `count`: the first row at that count, found in one sorted search
            stride = held + 2 + m
            offsets = columns_at * stride
            row_counts = np.concatenate((np.broadcast_to(np.arange(held + 1)[:, None], (held + 1, columns)),
                                         counts - base)) + offsets   # (rows, C), increasing down each column
            flat_counts, flat_sums = row_counts.T.ravel(), table.T.ravel()

            def sum_at(count: np.ndarray) -> np.ndarray:
                return flat_sums[np.searchsorted(flat_counts, count - base + offsets)]

        means = []
        for k in ks:   # (within the Diagnoser's errstate: 0 / 0 is NaN, no mean yet)
            last = np.minimum(counts, k)
            means.append((sums - sum_at(counts - last)) / last)
        if m:
            self.n = counts[-1].copy()
            held = min(int(self.n.max()), self.keep)
            self.sums = sum_at(self.n - held + np.arange(held + 1)[:, None])
        return counts, means


class History:
    """Every layer's history; `advance` takes a block of steps in and returns the window the rules read."""

    def __init__(self, th: Thresholds, layers: int, series: int) -> None:
        self.th, self.layers, self.series = th, layers, series
        self.cosines = Cosines(layers * series, max(th.window, th.unrelated_steps))
        self.norms = np.zeros((0, layers))   # the last window - 1 bias norms
        self.first_norm: np.ndarray | None = None
        self.max_g_rms = np.zeros(layers)
        # frozen, unreached, rounding-noise, zero-from-the-start and zero-later (dead) steps in a row
        self.runs = np.zeros((5, layers), dtype=np.int64)
        self.last_on = np.zeros(layers, dtype=bool)   # the last judged step with rms(g) > 0 had its gradient on
        self.recovered = np.zeros(layers, dtype=bool)  # a gradient came back after frozen_steps of exact zeros

    def advance(self, step: BlockSteps, judged: np.ndarray) -> LayerWindow:
        """The layers' window over a block. judged: (m, L) the steps that add to a layer's history (trained,
        with a finite gradient and update). A step whose biases are not trained clears the cosines and
        frozen runs."""
        th, b, g_rms, u = self.th, step.b_norm, step.g_rms, step.u_norm
        if self.first_norm is None:
            self.first_norm = b[0].copy()
        oldest, full, self.norms = oldest_in_window(self.norms, b, th.window)
        judged_g = np.where(judged, g_rms, -np.inf)
        max_g = np.maximum.accumulate(np.concatenate((self.max_g_rms[None], judged_g)))[1:]
        top = max_g.max(axis=1)   # the largest rms(g) any layer has had
        self.max_g_rms = max_g[-1]
        on = (g_rms > th.grad_eps) & (g_rms >= th.quiet_grad_frac * max_g)
        moving = u > 1e-12 * np.where(b > 1.0, b, 1.0)
        off = ~step.trained[:, None]
        noise = max_g < (th.redundant_ulps * step.rounding * top)[:, None]
        # exactly zero, and never anything else yet (not a converged layer), while another layer's is not or
        # the loss is above converged (no layer learns)
        zero = (g_rms == 0) & (max_g <= 0) & ((g_rms > 0).any(axis=1) | (step.loss > th.converged_loss))[:, None]
        # exactly zero straight after a gradient that was on (not one that faded out: a layer that converged
        # exactly), while the loss is above converged: its units died (ReLU), or a bug wipes its gradient
        live = np.where(judged & (g_rms > 0), np.arange(len(b))[:, None], -1)
        last = np.maximum.accumulate(live, axis=0)   # each layer's last judged step with rms(g) > 0 (-1: before)
        was_on = np.where(last >= 0, np.take_along_axis(on, np.maximum(last, 0), axis=0), self.last_on)
        self.last_on = was_on[-1]
        dead = (g_rms == 0) & was_on & ~noise & (step.loss > th.converged_loss)[:, None]
        noise &= ~zero                    # no rounding noise: the zero-gradient run counts it
        hits = np.stack((judged & on & ~moving, step.unreached & ~off, judged & noise, judged & zero, judged & dead))
        resets = np.stack((judged & (moving | ~on), ~step.unreached, judged & ~noise, judged & ~zero,
                           judged & ~dead)) | off
        runs = _runs(hits, resets, self.runs)
        # a gradient back after frozen_steps of exact zeros: the units were not dead (a head masked out of some
        # batches, an expert no token reached): the layer's exact zeros are not called dead from then on
        back = judged & (g_rms > 0) & (np.concatenate((self.runs[4][None], runs[4, :-1])) >= th.frozen_steps)
        if back.any() or self.recovered.any():
            recovered = self.recovered | np.logical_or.accumulate(back, axis=0)
            runs[4] = _runs(hits[4:] & ~recovered, resets[4:] | recovered, self.runs[4:])[0]
            self.recovered = recovered[-1]
        self.runs = runs[:, -1]
        cosines = np.where(judged[:, :, None], step.cosines, np.nan)
        n_cos, means = self._cosines(cosines.reshape(len(b), -1), step.trained)
        best_window, best_long = _best(means)
        frozen_run, unreached_run, rounding_run, zero_run, dead_run = runs
        return LayerWindow(loss=step.loss[:, None], rising=step.rising[:, None], b_norm=b, g_rms=g_rms,
                           g_rms_max=step.g_rms_max[:, None], fd_error=step.fd_error, first_norm=self.first_norm,
                           window_full=full, oldest_norm=oldest, n_cos=n_cos, mean_window=means[0, ..., 0],
                           best_window=np.where(n_cos >= th.min_steps, best_window, np.nan), best_long=best_long,
                           gradient_on=on, max_g_rms=max_g, frozen_run=frozen_run, unreached_run=unreached_run,
                           rounding_run=rounding_run, zero_run=zero_run, dead_run=dead_run)

    def _cosines(self, cosines: np.ndarray, trained: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(m, L) count of cos(u, -g), and (2, m, L, S) the means over the window and over unrelated_steps,
        after each step; a step whose biases are not trained clears every series."""
        th, m, shape = self.th, len(cosines), (len(cosines), self.layers, self.series)
        ks = (th.window, th.unrelated_steps)
        if trained.all():
            counts, means = self.cosines.advance(cosines, ks)
            return counts.reshape(shape)[..., 0], np.stack(means).reshape((2,) + shape)
        counts, means = np.zeros((m, self.layers * self.series), dtype=np.int64), np.full((2, m, cosines.shape[1]), np.nan)
        start = 0
        for stop in np.flatnonzero(~trained).tolist() + [m]:
            if stop > start:
                counts[start:stop], (means[0, start:stop], means[1, start:stop]) = \
                    self.cosines.advance(cosines[start:stop], ks)
            if stop < m:
                self.cosines.clear()
            start = stop + 1
        return counts.reshape(shape)[..., 0], means.reshape((2,) + shape)


def _runs(hits: np.ndarray, resets: np.ndarray, before: np.ndarray) -> np.ndarray:
    """(k, m, L) each of k runs' length after each step of a block, from its length before the block
    (before: (k, L)): +1 at a hit, 0 at a reset, else as it was."""
    counts = np.cumsum(hits, axis=1)
    return counts - np.maximum.accumulate(np.where(resets, counts, -before[:, None]), axis=1)


def oldest_in_window(kept: np.ndarray, new: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A window of the last `window` rows, after each of the new rows, (m, ...): its oldest row, whether it
    is whole, (m,), and the last window - 1 rows to keep for the next block. kept: what the previous call
    returned to keep (all rows so far, while fewer than window - 1)."""
    back = window - 1
    values = np.concatenate((kept, new))
    at = np.arange(len(kept), len(values)) - back
    full = (at >= 0).reshape((-1,) + (1,) * (new.ndim - 1))
    return values[np.maximum(at, 0)], full, values[max(len(values) - back, 0):] if back > 0 else values[:0]


def _best(means: np.ndarray) -> np.ndarray:
    """(..., S) means: the one of largest magnitude (the first of equals; NaN if none), (...)."""
    best = means[..., 0]
    size = np.where(best == best, np.abs(best), -1.0)
    for j in range(1, means.shape[-1]):
        other = means[..., j]
        other_size = np.where(other == other, np.abs(other), -1.0)
        better = other_size > size
        best, size = np.where(better, other, best), np.where(better, other_size, size)
    return best
