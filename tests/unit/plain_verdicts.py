"""A plain, step-by-step reference for the verdicts: each layer's running state kept in Python objects
and judged one step at a time, as biasmon did before it judged blocks in NumPy (core/history.py,
core/verdicts.py). tests/unit/test_verdict_reference.py drives both with the same steps.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from biasmon.core import Thresholds


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
    rounding: float = 0.0   # the unit of rounding of the step's gradients
    top: float = 0.0        # the largest rms(g) any layer has had (judged steps, this one included)
    any_gradient: bool = True   # some layer's rms(g) is above 0 at this step


class LayerState:
    """One layer: this step's measures (from its sums: |b|, rms(g), the largest rms(g) of any layer, |u|,
    and cos(u, -g) then cos(u, -a) for each running average a of g, NaN where undefined), and its history:
    descent cosines over a window, recent bias norms, the largest rms(g) seen, the run of frozen steps,
    the last gradient check, the verdict and the step it began."""

    __slots__ = ("b_norm", "g_rms", "g_rms_max", "u_norm", "cosines",
                 "cos", "norms", "first_norm", "max_g_rms", "frozen_run", "gradient_on", "best_window",
                 "fd_error", "verdict", "since", "unreached_run", "rounding_run", "zero_run", "dead_run", "last_on", "recovered")

    def __init__(self, th: Thresholds) -> None:
        self.b_norm = self.g_rms = self.g_rms_max = self.u_norm = math.nan
        self.cosines = (math.nan,)
        self.cos = [Running(max(th.window, th.unrelated_steps)) for _ in range(1 + len(th.momentum_betas))]
        self.norms = deque(maxlen=th.window)
        self.first_norm = None
        self.max_g_rms = 0.0
        self.frozen_run = 0
        self.unreached_run = 0
        self.rounding_run = 0
        self.zero_run = 0
        self.dead_run = 0
        self.last_on = False   # the last step with rms(g) > 0 had its gradient on
        self.recovered = False  # a gradient came back after frozen_steps of exact zeros: not dead units
        self.gradient_on = False
        self.best_window = math.nan
        self.fd_error = None
        self.verdict = "pending"
        self.since = 0

    def observe(self, th: Thresholds, f: StepFacts) -> None:
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
        zero = self.max_g_rms == 0 and (f.any_gradient or f.loss > th.converged_loss)   # exactly zero from the start
        self.zero_run = self.zero_run + 1 if zero else 0
        noise = self.max_g_rms < th.redundant_ulps * f.rounding * f.top and not zero
        self.rounding_run = self.rounding_run + 1 if noise else 0
        if g_rms > 0 and self.dead_run >= th.frozen_steps:
            self.recovered = True
        dead = g_rms == 0 and self.last_on and not noise and f.loss > th.converged_loss and not self.recovered
        self.dead_run = self.dead_run + 1 if dead else 0
        if g_rms > 0:
            self.last_on = on
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


def redundant(s: LayerState, f: StepFacts, th: Thresholds) -> bool:
    """The layer's largest rms(g) has stayed at the rounding level of the largest any layer has had."""
    return s.rounding_run >= th.min_steps


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


def zero_gradient(s: LayerState, f: StepFacts, th: Thresholds) -> bool:
    """The gradient has been exactly zero from the start, while another layer's was not (or the loss was
    above converged), for th.frozen_steps steps in a row."""
    return s.zero_run >= th.frozen_steps


def frozen(s: LayerState, f: StepFacts, th: Thresholds) -> bool:
    """th.frozen_steps steps in a row with a zero update and a non-quiet gradient."""
    return s.frozen_run >= th.frozen_steps


def vanishing(s: LayerState, f: StepFacts, th: Thresholds) -> bool:
    """rms(g) below th.vanish_grad, the loss above th.converged_loss, and this layer's rms(g) never above
    th.vanish_ratio times the largest layer's now (a layer that converged first is not vanishing); or exactly
    zero for th.frozen_steps steps in a row straight after a gradient that was on (the units died), the loss
    above converged."""
    if s.dead_run >= th.frozen_steps:
        return True
    return 0 < s.g_rms < th.vanish_grad and s.max_g_rms < th.vanish_ratio * s.g_rms_max and f.loss > th.converged_loss


def unrelated(s: LayerState, f: StepFacts, th: Thresholds) -> bool:
    """|mean cos| below th.unrelated_cos over th.unrelated_steps steps and below twice that over the window
    (an update switching between following and climbing the gradient averages 0 too, not in every window)."""
    return (s.cos[0].n >= th.unrelated_steps and abs(s.best_window) < 2 * th.unrelated_cos
            and abs(best_mean(s.cos, th.unrelated_steps)) < th.unrelated_cos)


PLAIN_RULES = (("gradient mismatch", gradient_mismatch), ("uphill", uphill), ("exploding", exploding),
               ("detached", zero_gradient), ("redundant", redundant), ("frozen", frozen), ("vanishing", vanishing),
               ("unrelated", unrelated))


def judge(s: LayerState, f: StepFacts, th: Thresholds, b_norm: float, g_rms: float, g_rms_max: float,
          u_norm: float, cosines: tuple | list, unreached: bool = False) -> str:
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
        s.frozen_run = s.unreached_run = s.rounding_run = s.zero_run = s.dead_run = 0
        return "off"
    s.unreached_run = s.unreached_run + 1 if unreached else 0
    if not f.has_u:
        return s.verdict
    finite = b_norm < math.inf and g_rms < math.inf and u_norm < math.inf
    if not f.has_g or not finite or unreached:  # without a gradient, or a non-finite step (divergence)
        if exploding(s, f, th):
            return "exploding"
        if s.unreached_run >= th.frozen_steps:
            return "detached"
        return "no gradients" if not f.has_g else s.verdict
    s.observe(th, f)
    for verdict, rule in PLAIN_RULES:
        if rule(s, f, th):
            return verdict
    if s.cos[0].n >= th.min_steps or (s.verdict not in ("pending", "off") and s.cos[0].n):
        return "ok"
    return s.verdict if s.verdict != "off" else "pending"


class PlainJudge:
    """Each layer's verdict, one step at a time, from that step's measures (core.measures, for one step)."""

    def __init__(self, names: tuple[str, ...], th: Thresholds, always_trained: bool = False) -> None:
        self.names, self.th, self.always_trained = names, th, always_trained
        self.layers = [LayerState(th) for _ in names]
        self.losses = deque(maxlen=th.window)
        self.top = 0.0

    def step(self, loss: float, has_g: bool, has_u: bool, trained: bool, measures, cosines,
             unreached: tuple | None = None, rounding: float = 0.0) -> list[str]:
        """measures: the step's StepMeasures; cosines: per layer [cos(u,-g), cos(u,-a)...], or None;
        unreached: per layer, no gradient reached it; rounding: the unit of rounding of the gradients."""
        self.losses.append(loss)
        rising = self.losses[-1] >= self.losses[0] or not math.isfinite(loss)
        unreached = unreached or (False,) * len(self.layers)
        trained = trained or self.always_trained
        for i, g in enumerate(measures.g_rms):
            judged = trained and has_g and has_u and not unreached[i] and \
                measures.b_norm[i] < math.inf and g < math.inf and measures.u_norm[i] < math.inf
            if judged and g > self.top:
                self.top = g
        facts = StepFacts(loss, rising, has_g, has_u, trained, rounding, self.top, any(g > 0 for g in measures.g_rms))
        top = max(measures.g_rms)
        out = []
        for i, state in enumerate(self.layers):
            mine = (measures.cos[i],) if cosines is None or not (has_g and has_u) else cosines[i]
            verdict = judge(state, facts, self.th, measures.b_norm[i], measures.g_rms[i], top, measures.u_norm[i], mine,
                            unreached[i])
            state.verdict = verdict
            out.append(verdict)
        return out
