"""Per-layer bias diagnostics and verdicts, from the biases b, their gradient g and the update u.

All inputs are flat vectors (the layers' biases end to end); `Layout` says where each layer sits.
The same `Diagnoser` serves biasmon's own trainer, recordings and external trainers' streams.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, fields

import numpy as np

VERDICTS = ("ok", "uphill", "gradient mismatch", "frozen", "exploding", "vanishing", "unrelated",
            "off", "pending", "no gradients")
PROBLEMS = ("uphill", "gradient mismatch", "frozen", "exploding", "vanishing", "unrelated")


@dataclass(frozen=True)
class Thresholds:
    """When a verdict is called. Every field is a `check` option; docs/stream-format.md says why."""

    window: int = 20            # steps over which the descent cosine is averaged
    min_steps: int = 5          # defined cosines needed before uphill can be called
    uphill_cos: float = -0.2    # mean cos(u, -g) over the window below this: uphill
    unrelated_cos: float = 0.1  # |mean cos| below this ...
    unrelated_steps: int = 200  # ... for this many steps in a row: unrelated to the gradient
    frozen_steps: int = 10      # steps in a row with u = 0 while g != 0: frozen
    grad_eps: float = 1e-10     # rms(g) at or below this is a zero gradient
    explode_norm: float = 1e3   # |b| above this times max(1, first |b|): exploding
    explode_growth: float = 10.0  # or |b| > 10 and grown this factor within one window
    vanish_grad: float = 1e-8   # rms(g) below this while the loss is above converged_loss: vanishing
    converged_loss: float = 1e-6
    fd_tolerance: float = 1e-3  # largest relative finite-difference error above this: gradient mismatch

    @classmethod
    def names(cls):
        return [f.name for f in fields(cls)]


@dataclass(frozen=True)
class Layout:
    """Layer names and sizes; layer i owns flat[starts[i]:starts[i] + sizes[i]]."""

    names: tuple
    sizes: tuple

    @property
    def starts(self):
        return np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(int)

    def split(self, flat) -> dict:
        out, start = {}, 0
        for name, size in zip(self.names, self.sizes):
            out[name] = flat[start:start + size]
            start += size
        return out


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


def _finite_or_none(value):
    return value if math.isfinite(value) else None


class _LayerState:
    """Running window of one layer's descent cosines and bias norms."""

    def __init__(self, window):
        self.cos = deque(maxlen=window)
        self.norms = deque(maxlen=window)
        self.first_norm = None
        self.frozen_run = 0
        self.unrelated_run = 0
        self.fd_error = None
        self.verdict = "pending"
        self.since = 0


class Diagnoser:
    """Feed it one step at a time; it returns that step's per-layer diagnostics and verdict changes."""

    def __init__(self, layout: Layout, thresholds: Thresholds | None = None):
        self.layout = layout
        self.t = thresholds or Thresholds()
        self.starts = layout.starts
        self.sizes = np.asarray(layout.sizes)
        self.layers = [_LayerState(self.t.window) for _ in layout.names]
        self.prev_loss = None
        self.prev_pred = None

    def record_gradient_check(self, errors: dict) -> None:
        """Largest relative finite-difference error per layer name, from a gradient check."""
        for name, state in zip(self.layout.names, self.layers):
            if name in errors and errors[name] is not None:
                state.fd_error = float(errors[name])

    def observe(self, step, loss, b, g, u, trained=True, untrained_cause="", extra_pred=0.0):
        """Diagnostics for one step. b, g, u: flat (n_biases,) arrays or None where unknown
        (g None: no gradients logged; u None: last step, update not yet known).
        Returns (per-layer dict, loss-change dict or None, list of verdict-change events)."""
        if not self.layers:
            return {}, None, []
        zero = np.zeros_like(b)
        gg = zero if g is None else g
        uu = zero if u is None else u
        sig = np.abs(gg) > 1e-8 * (np.abs(gg).max() + 1e-300)
        stacked = np.stack([b * b, gg * gg, uu * uu, uu * gg, sig, sig & (uu * gg < 0)])
        sums = np.add.reduceat(stacked, self.starts, axis=1).T.tolist()
        loss_change = None
        if self.prev_pred is not None and self.prev_loss is not None:
            loss_change = {"predicted": self.prev_pred, "actual": loss - self.prev_loss}
        pred_total = extra_pred
        out, events = {}, []
        for name, size, state, (bb, g2, u2, ug, n_sig, n_agree) in zip(
                self.layout.names, self.layout.sizes, self.layers, sums):
            b_norm, g_norm, u_norm = math.sqrt(bb), math.sqrt(g2), math.sqrt(u2)
            cos = -ug / (u_norm * g_norm) if (g is not None and u is not None and u_norm > 0 and g_norm > 0) else math.nan
            diag = {
                "b_norm": b_norm,
                "g_norm": g_norm if g is not None else None,
                "u_norm": u_norm if u is not None else None,
                "ratio": _finite_or_none(u_norm / b_norm) if (u is not None and b_norm > 0) else None,
                "cos": _finite_or_none(cos),
                "sign_agree": (n_agree / n_sig) if (n_sig and u is not None and u_norm > 0) else None,
                "pred_dloss": ug if (g is not None and u is not None) else None,
                "fd_error": state.fd_error,
            }
            if g is not None and u is not None:
                pred_total += ug
            verdict = self._verdict(state, step, loss, b_norm, g_norm / math.sqrt(size), u_norm, cos,
                                    g is not None, u is not None, trained)
            cause = untrained_cause if verdict == "off" else CAUSES.get(verdict, "")
            if verdict != state.verdict:
                state.verdict, state.since = verdict, step
                events.append({"event": "verdict", "step": step, "layer": name, "verdict": verdict, "cause": cause})
            diag.update(verdict=verdict, cause=cause, since=state.since)
            out[name] = diag
        self.prev_loss = loss
        self.prev_pred = pred_total if u is not None else None
        return out, loss_change, events

    def _verdict(self, s, step, loss, b_norm, g_rms, u_norm, cos, has_g, has_u, trained):
        t = self.t
        if s.first_norm is None:
            s.first_norm = b_norm
        s.norms.append(b_norm)
        if not trained:
            s.cos.clear()
            s.frozen_run = s.unrelated_run = 0
            return "off"
        if not has_u:
            return s.verdict
        if not has_g:
            return self._explodes(s, b_norm) or "no gradients"
        if math.isfinite(cos):
            s.cos.append(cos)
        moving = u_norm > 1e-12 * max(1.0, b_norm)
        s.frozen_run = 0 if (moving or g_rms <= t.grad_eps) else s.frozen_run + 1
        mean_cos = sum(s.cos) / len(s.cos) if s.cos else math.nan
        s.unrelated_run = s.unrelated_run + 1 if (len(s.cos) >= t.min_steps and abs(mean_cos) < t.unrelated_cos) else 0
        if s.fd_error is not None and s.fd_error > t.fd_tolerance:
            return "gradient mismatch"
        if len(s.cos) >= t.min_steps and mean_cos < t.uphill_cos:
            return "uphill"
        exploding = self._explodes(s, b_norm)
        if exploding:
            return exploding
        if s.frozen_run >= t.frozen_steps:
            return "frozen"
        if g_rms < t.vanish_grad and g_rms > 0 and loss > t.converged_loss:
            return "vanishing"
        if s.unrelated_run >= t.unrelated_steps:
            return "unrelated"
        if len(s.cos) >= t.min_steps or (s.verdict not in ("pending", "off") and len(s.cos)):
            return "ok"
        return s.verdict if s.verdict != "off" else "pending"

    def _explodes(self, s, b_norm):
        t = self.t
        if b_norm > t.explode_norm * max(1.0, s.first_norm):
            return "exploding"
        if len(s.norms) == s.norms.maxlen and b_norm > 10 and b_norm > t.explode_growth * max(s.norms[0], 1e-300):
            return "exploding"
        return None

    def verdicts(self) -> dict:
        """Each layer's current verdict: {name: (verdict, cause, since)}."""
        return {name: (s.verdict, CAUSES.get(s.verdict, ""), s.since) for name, s in zip(self.layout.names, self.layers)}


def finite_difference_errors(loss_at, b, g, layout: Layout, steps=(1e-6, 1e-7, 1e-5), tolerance=1e-3) -> dict:
    """Each layer's largest relative error between g and finite differences of loss_at (float64).

    loss_at(b_flat) -> float is the loss at biases b_flat (n_biases,); g is the analytic gradient there.
    An entry that fails with central differences is tried at the other step sizes, then one-sided: at a
    ReLU kink the analytic (sub)gradient equals one side's slope, and that is not a wrong gradient."""
    b = np.asarray(b, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    floor = max(1e-6, 1e-4 * float(np.abs(g).max(initial=0.0)))  # below this, differences are FD noise
    rel = np.full(b.shape, np.inf)
    probe = b.copy()

    def error(numeric, i):
        return abs(numeric - g[i]) / max(abs(numeric), abs(g[i]), floor)

    centre = None
    for h in steps:
        for i in np.flatnonzero(rel > tolerance):
            step = h * max(1.0, abs(b[i]))
            probe[i] = b[i] + step
            up = loss_at(probe)
            probe[i] = b[i] - step
            down = loss_at(probe)
            probe[i] = b[i]
            rel[i] = min(rel[i], error((up - down) / (2.0 * step), i))
            if h == steps[-1] and rel[i] > tolerance:
                centre = loss_at(b) if centre is None else centre
                rel[i] = min(rel[i], error((up - centre) / step, i), error((centre - down) / step, i))
    return {name: float(part.max()) if part.size else 0.0 for name, part in layout.split(rel).items()}
