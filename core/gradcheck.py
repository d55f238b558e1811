"""The finite-difference gradient check: does the analytic gradient agree with the loss's slopes?"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .layout import Layout


class GradientCheck(NamedTuple):
    """A finite-difference check: each layer's largest relative error over the entries it could decide,
    and how many entries it could not (their finite differences disagree among themselves by more than
    with the gradient: a kink within the step, or a loss at float64's noise floor)."""

    errors: dict[str, float]
    undecided: dict[str, int]


def finite_difference_errors(loss_at, b: np.ndarray, g: np.ndarray, layout: Layout,
                             steps: tuple = (1e-6, 1e-7, 1e-8), tolerance: float = 1e-3) -> dict:
    """Each layer's largest relative error between g and finite differences of loss_at (float64), over
    the entries the check could decide (`check_gradient(...).errors`)."""
    return check_gradient(loss_at, b, g, layout, steps, tolerance).errors


def check_gradient(loss_at, b: np.ndarray, g: np.ndarray, layout: Layout,
                   steps: tuple = (1e-6, 1e-7, 1e-8), tolerance: float = 1e-3) -> GradientCheck:
    """Relative errors between g and finite differences of loss_at (float64), and the entries undecided.

    loss_at(b_flat) -> float is the loss at biases b_flat (n_biases,); g is the analytic gradient there.
    An entry that fails with central differences is tried at the smaller step sizes, then one-sided at
    them: ReLU nets drive pre-activations onto the kink (seen within 1e-8 of it), where a central
    difference straddles the kink while the analytic (sub)gradient is one side's slope. The spread of an
    entry's estimates is the check's own error bound there: a failing entry whose error is within it is
    undecided, no evidence either way (a long run near a zero loss puts many kinks within every step)."""
    b = np.asarray(b, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    floor = max(1e-6, 1e-4 * float(np.abs(g).max(initial=0.0)))  # below this, differences are FD noise
    rel = np.full(b.shape, np.inf)
    low, high = np.full(b.shape, np.inf), np.full(b.shape, -np.inf)   # each entry's estimates span
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
    with np.errstate(invalid="ignore"):
        bound = (high - low) / np.maximum(np.abs(g), floor)
    undecided = (rel > tolerance) & (rel <= bound)
    decided = np.where(undecided, 0.0, rel)
    return GradientCheck({name: float(part.max()) if part.size else 0.0 for name, part in layout.split(decided).items()},
                         {name: int(part.sum()) for name, part in layout.split(undecided).items()})

ROUNDING_ULPS = 64.0  # a loss evaluation's rounding error, in units of float64 eps times the loss


def rounding_bound(loss: float, b: np.ndarray, g: np.ndarray, layout: Layout, step: float = 1e-6) -> dict:
    """Each layer's largest relative error that rounding of a float64 loss alone can give a central
    difference at the largest probe step: ROUNDING_ULPS * eps * |loss| / h, relative to max(|g|, floor)
    as in finite_difference_errors (b, g: (n,)). An error within it is no evidence of a wrong gradient."""
    b, g = np.asarray(b, dtype=np.float64), np.asarray(g, dtype=np.float64)
    floor = max(1e-6, 1e-4 * float(np.abs(g).max(initial=0.0)))
    noise = ROUNDING_ULPS * np.finfo(np.float64).eps * abs(float(loss))
    rel = noise / (step * np.maximum(1.0, np.abs(b))) / np.maximum(np.abs(g), floor)
    return {name: float(part.max()) if part.size else 0.0 for name, part in layout.split(rel).items()}


def differs(first: float, second: float) -> bool:
    """Two evaluations of a loss at the same point differ by more than rounding (ROUNDING_ULPS): the loss
    function is not deterministic (dropout, a different batch), so finite differences of it mean nothing."""
    if first == second:
        return False
    scale = max(abs(first), abs(second))
    return not abs(first - second) <= ROUNDING_ULPS * np.finfo(np.float64).eps * scale
