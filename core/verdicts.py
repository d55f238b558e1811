"""Verdicts: small named rules over one layer's measures, tried in order; the first that holds names it.

`judge` keeps each layer's running state (descent cosines over a window, recent bias norms, counters)
and returns the verdict for the step. Every threshold is a `Thresholds` field (a `check` option).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, fields

VERDICTS = ("ok", "uphill", "gradient mismatch", "frozen", "exploding", "vanishing", "unrelated",
            "off", "pending", "no gradients")
PROBLEMS = ("uphill", "gradient mismatch", "frozen", "exploding", "vanishing", "unrelated")
CAUSES = {
    "ok": "update points down the gradient",
    "uphill": "update points up the gradient: sign flipped?",
    "gradient mismatch": "analytic gradient disagrees with finite differences",
    "frozen": "gradient is non-zero but the bias does not move",
    "exploding": "bias norm is blowing up",
    "vanishing": "gradient has vanished while the loss is still high",
    "unrelated": "update is unrelated to the gradient (cosine near 0)",
    "pending": "not enough steps yet",
}


@dataclass(frozen=True)
class Thresholds:
    """When a verdict is called; each rule's docstring names the fields it uses. docs/stream-format.md says
    why each default."""

    window: int = 20            # steps over which the descent cosine is averaged
    min_steps: int = 5          # defined cosines needed before uphill can be called
    uphill_cos: float = -0.2    # mean cos(u, -d) over the window, d the direction u follows most: below this, uphill
    unrelated_cos: float = 0.1  # best |mean cos| below this over unrelated_steps steps (and 2x this over the window) ...
    unrelated_steps: int = 200  # ... (a full window of them): update unrelated to the gradient
    frozen_steps: int = 10      # steps in a row with u = 0 while g != 0: frozen
    quiet_grad_frac: float = 1e-3  # rms(g) below this times the layer's largest rms(g): converged, no frozen ...
    quiet_uphill_cos: float = -0.9  # ... and uphill only when the window's mean cos(u, -g) is below this
    grad_eps: float = 1e-10     # rms(g) at or below this is a zero gradient
    explode_norm: float = 1e3   # |b| above this times max(1, first |b|), the loss not falling: exploding
    explode_growth: float = 10.0  # or |b| > 10 and grown this factor within one window, the loss not falling
    vanish_grad: float = 1e-8   # rms(g) below this while the loss is above converged_loss ...
    vanish_ratio: float = 1e-4  # ... and never above this times the largest layer's rms(g) now: vanishing
    converged_loss: float = 1e-6
    fd_tolerance: float = 1e-3  # largest relative finite-difference error above this: gradient mismatch
    momentum_betas: tuple = (0.9, 0.99)  # the update may follow these running averages of g too
    diverge_loss: float = 1e6   # a loss above this times max(1, first loss) is divergence

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def loss_diverged(loss: float, first_loss: float, th: Thresholds) -> bool:
    """The one divergence rule: a non-finite loss, or one above diverge_loss times max(1, the first)."""
    return not math.isfinite(loss) or loss > th.diverge_loss * max(1.0, first_loss)


class Running:
    """Running means of the last k values, for any k up to `keep`, from the last keep + 1 cumulative sums
    (O(1) each)."""

    __slots__ = ("cum", "sums", "n", "keep")

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.clear()

    def add(self, x: float) -> None:
        self.cum += x
        self.sums.append(self.cum)
        self.n += 1

    def mean(self, k: int) -> float:
        """Mean of the last min(k, n) values (NaN if none)."""
        m = k if k < self.n else self.n
        return (self.sums[-1] - self.sums[-1 - m]) / m if m else math.nan

    def clear(self) -> None:
        self.cum = 0.0
        self.sums = deque([0.0], maxlen=self.keep + 1)
        self.n = 0


@dataclass(slots=True)
class StepFacts:
    """What one step tells every layer: its loss, whether the loss has not fallen over the last window,
    and whether g and u are known and the biases were trained."""

    loss: float
    rising: bool
    has_g: bool
    has_u: bool
    trained: bool


class LayerState:
    """One layer: this step's measures (from its sums: |b|, rms(g), the largest rms(g) of any layer, |u|,
    and cos(u, -g) then cos(u, -a) for each running average a of g, NaN where undefined), and its history:
    descent cosines over a window, recent bias norms, the largest rms(g) seen, the run of frozen steps,
    the last gradient check, the verdict and the step it began."""

    __slots__ = ("b_norm", "g_rms", "g_rms_max", "u_norm", "cosines",
                 "cos", "norms", "first_norm", "max_g_rms", "frozen_run", "gradient_on", "best_window",
                 "fd_error", "verdict", "since")

    def __init__(self, th: Thresholds) -> None:
        self.b_norm = self.g_rms = self.g_rms_max = self.u_norm = math.nan
        self.cosines = (math.nan,)
        self.cos = [Running(max(th.window, th.unrelated_steps)) for _ in range(1 + len(th.momentum_betas))]
        self.norms = deque(maxlen=th.window)
        self.first_norm = None
        self.max_g_rms = 0.0
        self.frozen_run = 0
        self.gradient_on = False
        self.best_window = math.nan
        self.fd_error = None
        self.verdict = "pending"
        self.since = 0

    def observe(self, th: Thresholds) -> None:
        """Take this step's measures into the history (a step with a known, finite gradient)."""
        cos = self.cos
        for running, c in zip(cos, self.cosines):
            if c == c:  # defined (not NaN)
                running.add(c)
        g_rms, b_norm = self.g_rms, self.b_norm
        if g_rms > self.max_g_rms:
            self.max_g_rms = g_rms
        on = self.gradient_on = g_rms > th.grad_eps and g_rms >= th.quiet_grad_frac * self.max_g_rms
        moving = self.u_norm > 1e-12 * (b_norm if b_norm > 1.0 else 1.0)
        self.frozen_run = 0 if (moving or not on) else self.frozen_run + 1
        raw = cos[0]
        if raw.n < th.min_steps:
            self.best_window = math.nan
        else:
            self.best_window = best_mean(cos, th.window) if len(cos) > 1 else raw.mean(th.window)


def best_mean(runnings: list[Running], k: int) -> float:
    """Of the running means over the last k values, the one of largest magnitude (the direction the update
    follows most closely); NaN if none is defined."""
    best, size = math.nan, 0.0
    for r in runnings:
        mean = r.mean(k)
        if mean == mean and (best != best or abs(mean) > size):
            best, size = mean, abs(mean)
    return best


# --- the rules, in the order they are tried ------------------------------------------------------------
def gradient_mismatch(s: LayerState, f: StepFacts, th: Thresholds) -> bool:
    """The last finite-difference check's relative error is above th.fd_tolerance."""
    return s.fd_error is not None and s.fd_error > th.fd_tolerance


def uphill(s: LayerState, f: StepFacts, th: Thresholds) -> bool:
    """The update climbs the direction it follows most (window mean below th.uphill_cos). On a quiet
    (converged) gradient momentum and Adam jitter and the averages hold stale signs: only a clear climb
    along the raw gradient counts there (below th.quiet_uphill_cos), as a sign bug gives at any scale;
    and an uphill already called is held while the gradient stays quiet."""
    if s.cos[0].n >= th.min_steps:
        if s.gradient_on:
            if s.best_window < th.uphill_cos:
                return True
        elif s.cos[0].mean(th.window) < th.quiet_uphill_cos:
            return True
    return not s.gradient_on and s.verdict == "uphill"


def exploding(s: LayerState, f: StepFacts, th: Thresholds) -> bool:
    """The bias norm blows up (above th.explode_norm times max(1, the first norm), or above 10 and grown
    th.explode_growth-fold within a window) while the loss does not fall (a norm growing as the loss
    falls is learning)."""
    if not f.rising:
        return False
    if s.b_norm > th.explode_norm * max(1.0, s.first_norm):
        return True
    return len(s.norms) == s.norms.maxlen and s.b_norm > 10 and s.b_norm > th.explode_growth * max(s.norms[0], 1e-300)


def frozen(s: LayerState, f: StepFacts, th: Thresholds) -> bool:
    """th.frozen_steps steps in a row with a zero update and a non-quiet gradient."""
    return s.frozen_run >= th.frozen_steps


def vanishing(s: LayerState, f: StepFacts, th: Thresholds) -> bool:
    """rms(g) below th.vanish_grad, the loss above th.converged_loss, and this layer's rms(g) never above
    th.vanish_ratio times the largest layer's now (a layer that converged first is not vanishing)."""
    return 0 < s.g_rms < th.vanish_grad and s.max_g_rms < th.vanish_ratio * s.g_rms_max and f.loss > th.converged_loss


def unrelated(s: LayerState, f: StepFacts, th: Thresholds) -> bool:
    """|mean cos| below th.unrelated_cos over th.unrelated_steps steps and below twice that over the window
    (an update switching between following and climbing the gradient averages 0 too, not in every window)."""
    return (s.cos[0].n >= th.unrelated_steps and abs(s.best_window) < 2 * th.unrelated_cos
            and abs(best_mean(s.cos, th.unrelated_steps)) < th.unrelated_cos)


RULES = (("gradient mismatch", gradient_mismatch), ("uphill", uphill), ("exploding", exploding),
         ("frozen", frozen), ("vanishing", vanishing), ("unrelated", unrelated))


def judge(s: LayerState, f: StepFacts, th: Thresholds, b_norm: float, g_rms: float, g_rms_max: float,
          u_norm: float, cosines: tuple | list) -> str:
    """This step's verdict for one layer, from its measures: |b|, rms(g), the largest rms(g) of any layer,
    |u|, and cos(u, -g) then cos(u, -a) for each running average a of g (NaN where undefined). The layer's
    history is updated, its verdict is not: the caller records changes."""
    s.b_norm, s.g_rms, s.g_rms_max, s.u_norm, s.cosines = b_norm, g_rms, g_rms_max, u_norm, cosines
    if s.first_norm is None:
        s.first_norm = b_norm
    s.norms.append(b_norm)
    if not f.trained:
        for running in s.cos:
            running.clear()
        s.frozen_run = 0
        return "off"
    if not f.has_u:
        return s.verdict
    finite = b_norm < math.inf and g_rms < math.inf and u_norm < math.inf
    if not f.has_g or not finite:  # without gradients, or a non-finite step (divergence, reported elsewhere)
        return "exploding" if exploding(s, f, th) else ("no gradients" if not f.has_g else s.verdict)
    s.observe(th)
    for verdict, rule in RULES:
        if rule(s, f, th):
            return verdict
    if s.cos[0].n >= th.min_steps or (s.verdict not in ("pending", "off") and s.cos[0].n):
        return "ok"
    return s.verdict if s.verdict != "off" else "pending"
