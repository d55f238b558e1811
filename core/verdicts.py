"""Verdicts: small named rules over one layer's measures, tried in order; the first that holds names it.

Each rule sees a `LayerWindow`: one layer's measures and running history over a block of m steps, as
(m,) arrays (core/history.py keeps the history), and says at which of those steps it holds. Every
threshold is a `Thresholds` field (a `check` option). `verdict_codes` tries the rules in order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

VERDICTS = ("ok", "uphill", "gradient mismatch", "frozen", "exploding", "vanishing", "unrelated",
            "off", "pending", "no gradients", "detached", "redundant")
PROBLEMS = ("uphill", "gradient mismatch", "frozen", "exploding", "vanishing", "unrelated", "detached")
CAUSES = {
    "ok": "update points down the gradient",
    "uphill": "update points up the gradient: sign flipped?",
    "gradient mismatch": "analytic gradient disagrees with finite differences",
    "frozen": "gradient is non-zero but the bias does not move",
    "exploding": "bias norm is blowing up",
    "vanishing": "gradient has vanished while the loss is still high",
    "unrelated": "update is unrelated to the gradient (cosine near 0)",
    "pending": "not enough steps yet",
    "detached": "no gradient reaches this bias (detached from the loss, unused, dead units, or its gradient zeroed): it "
                "never learns",
    "redundant": "gradient is zero up to rounding: a normalisation layer after it cancels it (bias=False)",
}
# an uphill held while no gradient reaches the layer any more (its units died: ReLU), not a live sign bug
HELD_UPHILL = "went up the gradient, then its gradient vanished (dead units?): it does not move now"
# vanishing by a gradient of exact zeros after it had one: the units died (the cause a layer shows then)
DEAD_UNITS = ("gradient became exactly zero while the loss is still high (dead or saturated units? its loss term "
              "weighted 0?): no longer learning")
# detached after the layer had a gradient: it stopped reaching it (frozen mid-run?), for biases and weights
NO_LONGER_REACHED = ("no gradient reaches this bias any more (frozen mid-run: requires_grad=False, .grad set to "
                     "None?, or detached): it learned before, not now",
                     "no gradient reaches these weights any more (frozen mid-run: requires_grad=False, .grad set "
                     "to None?, or detached): they learned before, not now")
WEIGHT_CAUSES = {**CAUSES,   # the same verdicts of a layer's weights, in their words
                 "frozen": "gradient is non-zero but the weights do not move",
                 "exploding": "weight norm is blowing up",
                 "detached": "no gradient reaches these weights (detached from the loss, unused, dead units, or their "
                             "gradient zeroed): they never learn",
                 "redundant": "gradient is zero up to rounding: nothing after these weights depends on them"}


def causes(param: str) -> dict[str, str]:
    """Each verdict's cause, in the words of a layer's biases (param "bias") or its weights ("weight")."""
    return WEIGHT_CAUSES if param == "weight" else CAUSES


@dataclass(frozen=True)
class Thresholds:
    """When a verdict is called; each rule's docstring names the fields it uses. docs/stream-format.md says
    why each default."""

    window: int = 20            # steps over which the descent cosine is averaged
    min_steps: int = 5          # defined cosines needed before uphill can be called
    uphill_cos: float = -0.2    # mean cos(u, -d) over the window, d the direction u follows most: below this, uphill
    unrelated_cos: float = 0.1  # best |mean cos| below this over unrelated_steps steps (and 2x this over the window) ...
    unrelated_steps: int = 200  # ... (a full window of them): update unrelated to the gradient
    frozen_steps: int = 10      # steps in a row with u = 0 while g != 0: frozen (with no gradient at all: detached)
    quiet_grad_frac: float = 1e-3  # rms(g) below this times the layer's largest rms(g): converged, no frozen ...
    quiet_uphill_cos: float = -0.9  # ... and uphill only when the window's mean cos(u, -g) is below this
    grad_eps: float = 1e-10     # rms(g) at or below this is a zero gradient
    explode_norm: float = 1e3   # |b| above this times max(1, first |b|), the loss not falling: exploding
    explode_growth: float = 10.0  # or |b| > 10 and grown this factor within one window, the loss not falling
    vanish_grad: float = 1e-8   # rms(g) below this while the loss is above converged_loss ...
    vanish_ratio: float = 1e-4  # ... and never above this times the largest layer's rms(g) now: vanishing
    converged_loss: float = 1e-6
    redundant_ulps: float = 200.0  # rms(g) below this many units of rounding times the largest layer's: redundant
    fd_tolerance: float = 1e-3  # largest relative finite-difference error above this: gradient mismatch
    momentum_betas: tuple = (0.9, 0.99)  # the update may follow these running averages of g too
    diverge_loss: float = 1e6   # a loss above this times max(1, first loss) is divergence

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def loss_diverged(loss: float, first_loss: float, th: Thresholds) -> bool:
    """The one divergence rule: a non-finite loss, or one above diverge_loss times max(1, the first)."""
    return not math.isfinite(loss) or loss > th.diverge_loss * max(1.0, first_loss)



OK, UPHILL, MISMATCH, FROZEN, EXPLODING, VANISHING, UNRELATED, OFF, PENDING, NO_GRADIENTS, DETACHED, REDUNDANT = \
    range(len(VERDICTS))
_PREVIOUS, _HOLD, _FALLBACK = -1, -2, -3  # a step whose verdict depends on the step before it


@dataclass(slots=True)
class LayerWindow:
    """Every layer over a block of m steps: each field (m, L), or (m, 1) for what all layers share, or
    (L,) for first_norm. The history fields are as they stand after each step: defined cosines counted
    since the biases were last not trained, the window means of the descent cosines, the largest rms(g)
    seen, the run of frozen steps."""

    loss: np.ndarray          # (m, 1) the step's loss
    rising: np.ndarray        # (m, 1) bool: the loss has not fallen over the last window (or is not finite)
    b_norm: np.ndarray        # |b|
    g_rms: np.ndarray         # rms(g)
    g_rms_max: np.ndarray     # (m, 1) the largest rms(g) of any layer at this step
    fd_error: np.ndarray      # the last gradient check's largest relative error (NaN: none yet)
    first_norm: np.ndarray    # (L,) |b| at the first step
    window_full: np.ndarray   # (m, 1) bool: a whole window of bias norms seen
    oldest_norm: np.ndarray   # |b| window - 1 steps ago
    n_cos: np.ndarray         # defined cos(u, -g) seen
    mean_window: np.ndarray   # mean cos(u, -g) over the last window
    best_window: np.ndarray   # of the window means of cos(u, -g) and cos(u, -a), the largest in magnitude
    best_long: np.ndarray     # the same over the last unrelated_steps
    gradient_on: np.ndarray   # bool: rms(g) above grad_eps and above quiet_grad_frac times its largest
    max_g_rms: np.ndarray     # the largest rms(g) this layer has had
    frozen_run: np.ndarray    # steps in a row with a zero update and the gradient on
    unreached_run: np.ndarray  # steps in a row at which no gradient reached the layer
    rounding_run: np.ndarray   # judged steps in a row with the layer's largest rms(g) ever at the rounding
                               # level of the largest any layer has had (its gradient not exactly zero)
    zero_run: np.ndarray       # judged steps in a row with the layer's gradient exactly zero in every entry,
                               # never anything else so far, while another layer's is not (or the loss is
                               # above converged_loss)
    dead_run: np.ndarray       # judged steps in a row with the layer's gradient exactly zero in every entry,
                               # its last non-zero one on (not quiet, not rounding noise), while the loss is
                               # above converged_loss, and no gradient has come back after such a stretch


# --- the rules, in the order they are tried ------------------------------------------------------------
def gradient_mismatch(w: LayerWindow, th: Thresholds) -> np.ndarray:
    """The last finite-difference check's relative error is above th.fd_tolerance."""
    return w.fd_error > th.fd_tolerance


def redundant(w: LayerWindow, th: Thresholds) -> np.ndarray:
    """The gradient is rounding noise next to the other layers': the layer's largest rms(g) ever below
    th.redundant_ulps units of rounding (of float32 if every logged gradient is a float32 number, else of
    float64) times the largest any layer has had, for th.min_steps steps in a row (a layer that had a
    gradient and converged is not redundant). A bias followed by a normalisation layer (BatchNorm subtracts
    the batch mean) has a gradient of exactly zero in exact arithmetic: harmless, not a problem. Tried
    after uphill and exploding (a blow-up elsewhere dwarfs every other gradient)."""
    return w.rounding_run >= th.min_steps


def uphill(w: LayerWindow, th: Thresholds) -> np.ndarray:
    """The update climbs the direction it follows most (window mean below th.uphill_cos). On a quiet
    (converged) gradient momentum and Adam jitter and the averages hold stale signs: only a clear climb
    along the raw gradient counts there (below th.quiet_uphill_cos), as a sign bug gives at any scale.
    (An uphill already called is also held while the gradient stays quiet: `verdict_codes`.)"""
    climbs = np.where(w.gradient_on, w.best_window < th.uphill_cos, w.mean_window < th.quiet_uphill_cos)
    return (w.n_cos >= th.min_steps) & climbs


def exploding(w: LayerWindow, th: Thresholds) -> np.ndarray:
    """The bias norm blows up (above th.explode_norm times max(1, the first norm), or above 10 and grown
    th.explode_growth-fold within a window) while the loss does not fall (a norm growing as the loss
    falls is learning)."""
    b = w.b_norm
    huge = b > th.explode_norm * np.where(w.first_norm > 1.0, w.first_norm, 1.0)
    grown = w.window_full & (b > 10) & (b > th.explode_growth * np.maximum(w.oldest_norm, 1e-300))
    return w.rising & (huge | grown)


def zero_gradient(w: LayerWindow, th: Thresholds) -> np.ndarray:
    """The layer's gradient has been exactly zero in every entry from the start, while another layer's is
    not or the loss is above th.converged_loss (every gradient wiped: zero_grad() before the step), for
    th.frozen_steps steps in a row: no gradient reaches it (zeroed before the optimizer step, or every
    unit dead), called `detached` as a gradient logged as null is. A layer whose gradient reached
    an exact zero after being something else is not (`vanishing` judges units that died mid-run). Tried
    after exploding, before redundant (rounding noise is not an exact zero)."""
    return w.zero_run >= th.frozen_steps


def frozen(w: LayerWindow, th: Thresholds) -> np.ndarray:
    """th.frozen_steps steps in a row with a zero update and a non-quiet gradient."""
    return w.frozen_run >= th.frozen_steps


def detached(w: LayerWindow, th: Thresholds) -> np.ndarray:
    """No gradient reached the layer (the trainer logged null: detached from the loss, or unused; or its
    gradient was exactly zero in every entry while another layer's was not: zeroed, or every unit dead) at
    th.frozen_steps steps in a row. Judged on the steps without a gradient, where the other rules
    cannot be."""
    return w.unreached_run >= th.frozen_steps


def vanishing(w: LayerWindow, th: Thresholds) -> np.ndarray:
    """rms(g) below th.vanish_grad, the loss above th.converged_loss, and this layer's rms(g) never above
    th.vanish_ratio times the largest layer's now (a layer that converged first is not vanishing); or the
    gradient exactly zero in every entry for th.frozen_steps steps in a row straight after a gradient that
    was on (not quiet, not rounding noise), the loss above th.converged_loss: its units (or those around it)
    died, as a ReLU layer whose every unit is inactive passes no gradient. A layer whose gradient faded out
    through quiet values to an exact zero converged exactly; it is not called. Nor, from then on, is a
    layer whose gradient came back after such a stretch: dead units do not come back (a head masked out of
    some batches, an expert no token reached for a while)."""
    g = w.g_rms
    faint = (0 < g) & (g < th.vanish_grad) & (w.max_g_rms < th.vanish_ratio * w.g_rms_max) & (w.loss > th.converged_loss)
    return faint | (w.dead_run >= th.frozen_steps)


def unrelated(w: LayerWindow, th: Thresholds) -> np.ndarray:
    """|mean cos| below th.unrelated_cos over th.unrelated_steps steps and below twice that over the window
    (an update switching between following and climbing the gradient averages 0 too, not in every window)."""
    return ((w.n_cos >= th.unrelated_steps) & (np.abs(w.best_window) < 2 * th.unrelated_cos)
            & (np.abs(w.best_long) < th.unrelated_cos))


RULES = (("gradient mismatch", gradient_mismatch), ("uphill", uphill), ("exploding", exploding),
         ("detached", zero_gradient), ("redundant", redundant), ("frozen", frozen), ("vanishing", vanishing),
         ("unrelated", unrelated))


def verdict_codes(w: LayerWindow, judged: np.ndarray, trained: np.ndarray, has_u: np.ndarray,
                  has_g: np.ndarray, before: list[int], th: Thresholds) -> np.ndarray:
    """(m, L) each step's verdict for each layer (an index into VERDICTS); before: each layer's verdict
    before the block.

    judged: (m, L) bool, the steps with a known, finite gradient and update while trained; the rules
    decide those. The others ((m,) trained, has_u, has_g): `off` while the biases are not trained; the
    verdict stands while the update is not known yet; without a gradient (or on a non-finite step) only
    `exploding` and `detached` are called. Until min_steps cosines are in, `ok` stays `ok` and anything else `pending`."""
    mismatch, climbs, blows, zeroed, cancelled, still, faint, aimless = (rule(w, th) for _, rule in RULES)
    where = np.where
    rest = where(blows, EXPLODING, where(zeroed, DETACHED, where(cancelled, REDUNDANT, where(still, FROZEN, where(
        faint, VANISHING, where(aimless, UNRELATED, where(w.n_cos >= th.min_steps, OK, _FALLBACK)))))))
    on_judged = where(mismatch, MISMATCH, where(climbs, UPHILL, where(w.gradient_on, rest, _HOLD)))
    unjudged = where(blows, EXPLODING, where(detached(w, th), DETACHED, where(has_g[:, None], _PREVIOUS, NO_GRADIENTS)))
    codes = where(trained[:, None], where(has_u[:, None], where(judged, on_judged, unjudged), _PREVIOUS), OFF)
    nothing_held = (np.asarray(before) != UPHILL) & ~(codes == UPHILL).any(axis=0)
    codes = where((codes == _HOLD) & nothing_held, rest, codes)  # no uphill to hold: a quiet step is judged on
    layers, steps = np.nonzero((codes < 0).T)
    for layer, i in zip(layers.tolist(), steps.tolist()):  # the few steps that depend on the one before
        previous = int(codes[i - 1, layer]) if i else before[layer]
        code = int(codes[i, layer])
        if code == _HOLD:
            code = UPHILL if previous == UPHILL else int(rest[i, layer])
        if code == _PREVIOUS:
            code = previous
        elif code == _FALLBACK:
            code = OK if previous not in (PENDING, OFF) and w.n_cos[i, layer] > 0 else (previous if previous != OFF else PENDING)
        codes[i, layer] = code
    return codes
