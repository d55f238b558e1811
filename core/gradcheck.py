"""The finite-difference gradient check: does the analytic gradient agree with the loss's slopes?

Its cost is two loss evaluations per bias entry checked (more for an entry that fails at first), so past
FULL_CHECK_MAX entries it checks a sample of about SAMPLE entries, spread over the layers in proportion to
their sizes, at least one per layer, drawn afresh (seeded) at each check. What a sample can miss: a
wrong gradient in only a few entries of a large layer is caught only when the sample holds one of them
(each check draws another sample, so a persistent bug is found over a few checks)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .layout import Layout

FULL_CHECK_MAX = 512   # at most this many bias entries: every entry is checked
SAMPLE = 64            # past it, about this many (plus at most one per layer), chosen at random


def sample_entries(layout: Layout, seed: int = 0) -> np.ndarray | None:
    """The flat indices a check covers: None (all) for at most FULL_CHECK_MAX entries, else a seeded sample
    of ceil(SAMPLE * size / total) entries from each layer, in increasing order."""
    total = sum(layout.sizes)
    if total <= FULL_CHECK_MAX:
        return None
    rng = np.random.default_rng(seed)
    picked, start = [], 0
    for size in layout.sizes:
        count = min(size, -(-SAMPLE * size // total))
        picked.append(start + rng.choice(size, size=count, replace=False))
        start += size
    return np.sort(np.concatenate(picked))


def _to_check(n: int, layout: Layout, seed: int) -> np.ndarray:
    """Each entry's relative error so far: inf for an entry to check, 0 for one left out of the sample."""
    sample = sample_entries(layout, seed)
    if sample is None:
        return np.full(n, np.inf)
    rel = np.zeros(n)
    rel[sample] = np.inf
    return rel


class GradientCheck(NamedTuple):
    """A finite-difference check: each layer's largest relative error over the entries it could decide (a
    layer none of whose entries it could decide is left out), and how many entries it could not: failing
    entries whose gradient lies within the span of their own estimates (a kink within the step, or a
    loss at float64's noise floor)."""

    errors: dict[str, float]
    undecided: dict[str, int]


def finite_difference_errors(loss_at, b: np.ndarray, g: np.ndarray, layout: Layout,
                             steps: tuple = (1e-6, 1e-7, 1e-8), tolerance: float = 1e-3, seed: int = 0) -> dict:
    """Each layer's largest relative error between g and finite differences of loss_at (float64), over
    the entries the check could decide (`check_gradient(...).errors`)."""
    return check_gradient(loss_at, b, g, layout, steps, tolerance, seed).errors


def check_gradient(loss_at, b: np.ndarray, g: np.ndarray, layout: Layout,
                   steps: tuple = (1e-6, 1e-7, 1e-8), tolerance: float = 1e-3, seed: int = 0) -> GradientCheck:
    """Relative errors between g and finite differences of loss_at (float64), over every entry or, past
    FULL_CHECK_MAX entries, over the sample `sample_entries(layout, seed)`; and the entries undecided.

    loss_at(b_flat) -> float is the loss at biases b_flat (n_biases,); g is the analytic gradient there.
    An entry that fails with central differences is tried at the smaller step sizes, then one-sided at
    them: ReLU nets drive pre-activations onto the kink (seen within 1e-8 of it), where a central
    difference straddles the kink while the analytic (sub)gradient is one side's slope. The span of an
    entry's estimates is the check's own error bound there: a failing entry whose gradient lies within it
    is undecided, no evidence either way (a long run near a zero loss puts many kinks within every step);
    a gradient outside every estimate (a flipped sign, a wrong factor) is a mismatch."""
    b = np.asarray(b, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    floor = max(1e-6, 1e-4 * float(np.abs(g).max(initial=0.0)))  # below this, differences are FD noise
    rel, low, high = _estimates(loss_at, b, g, _to_check(b.size, layout, seed), floor, steps, tolerance)
    slack = tolerance * np.maximum(np.abs(g), floor)   # g within the estimates' span, give or take this
    undecided = (rel > tolerance) & (low - slack <= g) & (g <= high + slack)
    errors, counts = {}, {}
    for (name, part), out in zip(layout.split(rel).items(), layout.split(undecided).values()):
        decided = part[~out]
        if decided.size or not part.size:   # a layer with every entry undecided says nothing: left out
            errors[name] = float(decided.max()) if decided.size else 0.0
        counts[name] = int(out.sum())
    return GradientCheck(errors, counts)


def _estimates(loss_at, b: np.ndarray, g: np.ndarray, rel: np.ndarray, floor: float, steps: tuple,
               tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each entry's smallest relative error (rel: (n,), inf where still to check) and the span of its
    finite-difference estimates (lowest, highest): central at each step until one passes, then one-sided."""
    low, high = np.full(b.shape, np.inf), np.full(b.shape, -np.inf)
    probe = b.copy()

    def error(numeric, i):
        low[i], high[i] = min(low[i], numeric), max(high[i], numeric)
        return abs(numeric - g[i]) / max(abs(numeric), abs(g[i]), floor)

    def around(i, h):
        step = h * max(1.0, abs(b[i]))
        probe[i] = b[i] + step
        up = loss_at(probe)
        probe[i] = b[i] - step
        down = loss_at(probe)
        probe[i] = b[i]
        return up, down, step

    for h in steps:
        for i in np.flatnonzero(rel > tolerance):
            up, down, step = around(i, h)
            rel[i] = min(rel[i], error((up - down) / (2.0 * step), i))
    failing = np.flatnonzero(rel > tolerance)
    if failing.size:
        centre = loss_at(b)
        for h in reversed(steps):
            for i in failing:
                up, down, step = around(i, h)
                rel[i] = min(rel[i], error((up - centre) / step, i), error((centre - down) / step, i))
    return rel, low, high


ROUNDING_ULPS = 64.0  # a loss evaluation's rounding error, in units of float64 eps times the loss


def differs(first: float, second: float) -> bool:
    """Two evaluations of a loss at the same point differ by more than rounding (ROUNDING_ULPS): the loss
    function is not deterministic (dropout, a different batch), so finite differences of it mean nothing."""
    if first == second:
        return False
    scale = max(abs(first), abs(second))
    return not abs(first - second) <= ROUNDING_ULPS * np.finfo(np.float64).eps * scale
