"""The finite-difference gradient check: does the analytic gradient agree with the loss's slopes?

Its cost is two loss evaluations per bias entry checked (more for an entry that fails at first). A net
whose layers have at most LAYER_MAX biases each and FULL_CHECK_MAX in all has every entry checked; past
that, each layer has a seeded sample checked, drawn afresh at each check: ceil(SAMPLE * size / total)
entries (at least one), at most LAYER_MAX, so the check costs a few dozen loss evaluations whatever the
width. What a sample can miss: a wrong gradient in only a few entries of a layer wider than LAYER_MAX
is caught only when the sample holds one of them (each check draws another sample, so a persistent bug
is found over some checks); a bug that touches a whole layer (a flipped sign, a wrong factor, a wrong
layer's gradient) is caught by any sample. The trainer evaluates the probes through
Network.probe_losses (and probe_weight_losses for the weights' sample): many at once, the layers below
each probed entry computed once, with the bits loss_at gives one probe at a time."""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .layout import Layout

FULL_CHECK_MAX = 512   # at most this many bias entries (and LAYER_MAX a layer): every entry is checked
SAMPLE = 64            # past it, about this many (plus at most one per layer), chosen at random
LAYER_MAX = 16         # and at most this many of one layer


def sample_entries(layout: Layout, seed: int = 0) -> np.ndarray | None:
    """The flat indices a check covers: None (all) for at most FULL_CHECK_MAX entries and LAYER_MAX a layer,
    else a seeded sample of ceil(SAMPLE * size / total) entries from each layer, at most LAYER_MAX (a layer
    of at most LAYER_MAX entries whole when the total is within FULL_CHECK_MAX), in increasing order."""
    total = sum(layout.sizes)
    if total <= FULL_CHECK_MAX and max(layout.sizes, default=0) <= LAYER_MAX:
        return None
    rng = np.random.default_rng(seed)
    picked, start = [], 0
    for size in layout.sizes:
        count = size if total <= FULL_CHECK_MAX and size <= LAYER_MAX else \
            min(size, LAYER_MAX, -(-SAMPLE * size // total))
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


ProbeLosses = Callable[[np.ndarray, np.ndarray], np.ndarray]


def one_at_a_time(loss_at: Callable[[np.ndarray], float], b: np.ndarray) -> ProbeLosses:
    """probe_losses from loss_at: loss_at called once per probe, in order, on a copy of b (n,)."""
    probe = b.copy()

    def losses(entries: np.ndarray, values: np.ndarray) -> np.ndarray:
        out = np.empty(len(entries))
        for j, (i, value) in enumerate(zip(entries, values)):
            probe[i] = value
            out[j] = loss_at(probe)
            probe[i] = b[i]
        return out
    return losses


def check_gradient(loss_at, b: np.ndarray, g: np.ndarray, layout: Layout,
                   steps: tuple = (1e-6, 1e-7, 1e-8), tolerance: float = 1e-3, seed: int = 0,
                   probe_losses: ProbeLosses | None = None) -> GradientCheck:
    """Relative errors between g and finite differences of loss_at (float64), over every entry or, past
    FULL_CHECK_MAX entries, over the sample `sample_entries(layout, seed)`; and the entries undecided.

    loss_at(b_flat) -> float is the loss at biases b_flat (n_biases,); g is the analytic gradient there.
    probe_losses(entries (k,), values (k,)) -> (k,), if given, is the same loss at b with entries[j] set to
    values[j], one at a time, for many probes in one call (Network.probe_losses); else loss_at is called
    once per probe. An entry that fails with central differences is tried at the smaller step sizes, then
    one-sided at them: ReLU nets drive pre-activations onto the kink (seen within 1e-8 of it), where a
    central difference straddles the kink while the analytic (sub)gradient is one side's slope. The span
    of an entry's estimates is the check's own error bound there: a failing entry whose gradient lies
    within it is undecided, no evidence either way (a long run near a zero loss puts many kinks within
    every step); a gradient outside every estimate (a flipped sign, a wrong factor) is a mismatch."""
    b = np.asarray(b, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    probe_losses = probe_losses or one_at_a_time(loss_at, b)
    floor = max(1e-6, 1e-4 * float(np.abs(g).max(initial=0.0)))  # below this, differences are FD noise
    rel, low, high = _estimates(probe_losses, b, g, _to_check(b.size, layout, seed), floor, steps, tolerance)
    slack = tolerance * np.maximum(np.abs(g), floor)   # g within the estimates' span, give or take this
    undecided = (rel > tolerance) & (low - slack <= g) & (g <= high + slack)
    errors, counts = {}, {}
    for (name, part), out in zip(layout.split(rel).items(), layout.split(undecided).values()):
        decided = part[~out]
        if decided.size or not part.size:   # a layer with every entry undecided says nothing: left out
            errors[name] = float(decided.max()) if decided.size else 0.0
        counts[name] = int(out.sum())
    return GradientCheck(errors, counts)


def _least(first: np.ndarray, *others: np.ndarray) -> np.ndarray:
    """Python's min(first, *others) entry by entry: a later value replaces only if it is smaller (NaN never)."""
    for other in others:
        first = np.where(other < first, other, first)
    return first


def _most(first: np.ndarray, *others: np.ndarray) -> np.ndarray:
    """Python's max(first, *others) entry by entry: a later value replaces only if it is larger (NaN never)."""
    for other in others:
        first = np.where(other > first, other, first)
    return first


def _estimates(probe_losses: ProbeLosses, b: np.ndarray, g: np.ndarray, rel: np.ndarray, floor: float,
               steps: tuple, tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each entry's smallest relative error (rel: (n,), inf where still to check) and the span of its
    finite-difference estimates (lowest, highest): central at each step until one passes, then one-sided.
    Each round probes every entry still failing at once: up and down, in that order for each entry."""
    low, high = np.full(b.shape, np.inf), np.full(b.shape, -np.inf)

    def error(numeric: np.ndarray, i: np.ndarray) -> np.ndarray:
        low[i], high[i] = _least(low[i], numeric), _most(high[i], numeric)
        return np.abs(numeric - g[i]) / _most(np.abs(numeric), np.abs(g[i]), np.float64(floor))

    def around(i: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        step = h * _most(np.float64(1.0), np.abs(b[i]))
        losses = probe_losses(np.repeat(i, 2), np.stack([b[i] + step, b[i] - step], axis=1).ravel())
        return losses[0::2], losses[1::2], step

    for h in steps:
        i = np.flatnonzero(rel > tolerance)
        if i.size:
            up, down, step = around(i, h)
            rel[i] = _least(rel[i], error((up - down) / (2.0 * step), i))
    failing = np.flatnonzero(rel > tolerance)
    if failing.size:
        centre = probe_losses(failing[:1], b[failing[:1]])[0]   # the loss at b itself
        for h in reversed(steps):
            up, down, step = around(failing, h)
            rel[failing] = _least(rel[failing], error((up - centre) / step, failing),
                                  error((centre - down) / step, failing))
    return rel, low, high


ROUNDING_ULPS = 64.0  # a loss evaluation's rounding error, in units of float64 eps times the loss


def differs(first: float, second: float) -> bool:
    """Two evaluations of a loss at the same point differ by more than rounding (ROUNDING_ULPS): the loss
    function is not deterministic (dropout, a different batch), so finite differences of it mean nothing."""
    if first == second:
        return False
    scale = max(abs(first), abs(second))
    return not abs(first - second) <= ROUNDING_ULPS * np.finfo(np.float64).eps * scale
