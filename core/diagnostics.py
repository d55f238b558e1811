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
    diverge_loss: float = 1e6   # a loss above this times max(1, first loss) is divergence (as the trainer's)

    @classmethod
    def names(cls):
        return [f.name for f in fields(cls)]


HELP = {
    "window": "steps over which the descent cosine is averaged for 'uphill'",
    "min_steps": "steps with a defined cosine needed before 'uphill' can be called",
    "uphill_cos": "'uphill' when the window's mean cos(update, -d) is below this, d the gradient or the "
                  "running average of it that the update follows most closely",
    "unrelated_cos": "'unrelated' when |mean cos| is below this over the last unrelated-steps steps and below twice "
                     "this over the last window (an update that switched between following and climbing the "
                     "gradient averages to 0 too, but not in every window)",
    "unrelated_steps": "length of the stretch (steps with a defined cosine) that 'unrelated' needs",
    "frozen_steps": "'frozen' after this many steps in a row with a zero update and a non-zero gradient",
    "quiet_grad_frac": "a layer whose rms(g) fell below this times its largest rms(g) has converged: its "
                       "tiny steps may round away or jitter, so neither 'frozen' nor 'uphill' is called "
                       "(an 'uphill' already called is held)",
    "quiet_uphill_cos": "on a quiet (converged) gradient, 'uphill' only when the window's mean cos(update, -g) is "
                        "below this "
                        "(a clear climb, as a sign bug gives at any scale; Adam's jitter near a minimum does not)",
    "grad_eps": "rms(g) at or below this is a zero gradient",
    "explode_norm": "'exploding' when |b| exceeds this times max(1, first |b|) and the loss has not fallen",
    "explode_growth": "... or when |b| > 10 grew by this factor within one window and the loss has not fallen",
    "vanish_grad": "'vanishing' when rms(g) is below this, the loss above converged-loss ...",
    "vanish_ratio": "... and the layer's rms(g) has never been above this times the largest layer's rms(g) now "
                    "(a layer that converged first is not vanishing)",
    "converged_loss": "a loss at or below this counts as converged (no 'vanishing')",
    "fd_tolerance": "'gradient mismatch' when a finite-difference check's relative error exceeds this",
    "momentum_betas": "running averages (momentum factors) of the gradient that the update may follow "
                      "(comma-separated; empty: only the raw gradient)",
    "diverge_loss": "a loss above this times max(1, the first loss) counts as divergence",
}


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


class _Running:
    """Running means of the last k values, for any k up to `keep`, from the last keep + 1 cumulative sums
    (O(1) each)."""

    __slots__ = ("cum", "sums", "n", "keep")

    def __init__(self, keep):
        self.keep = keep
        self.clear()

    def add(self, x):
        self.cum += x
        self.sums.append(self.cum)
        self.n += 1

    def mean(self, k):
        """Mean of the last min(k, n) values (NaN if none)."""
        m = k if k < self.n else self.n
        return (self.sums[-1] - self.sums[-1 - m]) / m if m else math.nan

    def clear(self):
        self.cum = 0.0
        self.sums = deque([0.0], maxlen=self.keep + 1)
        self.n = 0


class _LayerState:
    """One layer's descent cosines (against g and each running average of g), recent bias norms, counters."""

    __slots__ = ("cos", "norms", "first_norm", "max_g_rms", "frozen_run", "fd_error", "verdict", "since")

    def __init__(self, window, long_window, n_directions):
        self.cos = [_Running(max(window, long_window)) for _ in range(n_directions)]
        self.norms = deque(maxlen=window)
        self.first_norm = None
        self.max_g_rms = 0.0
        self.frozen_run = 0
        self.fd_error = None
        self.verdict = "pending"
        self.since = 0

    def clear_cos(self):
        for r in self.cos:
            r.clear()


class Diagnoser:
    """Feed it one step at a time; it returns that step's per-layer diagnostics and verdict changes.

    The descent cosine of a layer is cos(u, -d) for d the gradient g and for running averages of g
    (momentum_betas): SGD follows g, heavy-ball momentum and Adam follow a running average of it, and a
    positive factor (learning rate, loss, schedule) or Adam's per-coordinate scaling changes neither sign.
    Over a window, the direction the update follows most closely (largest |mean cosine|) decides: uphill
    when the update climbs along it, unrelated when it follows none of them."""

    def __init__(self, layout: Layout, thresholds: Thresholds | None = None):
        self.layout = layout
        self.t = thresholds or Thresholds()
        self.starts = layout.starts
        self.sizes = np.asarray(layout.sizes)
        self.betas = np.asarray(tuple(float(b) for b in self.t.momentum_betas), dtype=np.float64)
        n_dir = 1 + len(self.betas)
        self.layers = [_LayerState(self.t.window, self.t.unrelated_steps, n_dir) for _ in layout.names]
        self.losses = deque(maxlen=self.t.window)  # the last window's losses (all layers share them)
        self.prev_loss = None
        self.prev_pred = None
        n, k = int(sum(layout.sizes)), len(self.betas)
        self._avg = np.zeros((k, n))          # running averages of g, one row per beta
        self._avg_on = False
        self._vec = np.zeros((3, n))          # b, g, u of the step
        self._terms = np.zeros((6 + 2 * k, n))  # its per-entry terms (see _sums)
        self._sqrt_sizes = [math.sqrt(size) for size in layout.sizes]

    def record_gradient_check(self, errors: dict) -> None:
        """Largest relative finite-difference error per layer name, from a gradient check."""
        for name, state in zip(self.layout.names, self.layers):
            value = errors.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                state.fd_error = float(value) if math.isfinite(value) else math.inf

    def observe(self, step, loss, b, g, u, trained=True, untrained_cause="", extra_pred=0.0, fd_errors=None):
        """Diagnostics for one step. b, g, u: flat (n_biases,) arrays or None where unknown
        (g None: no gradients logged; u None: last step, update not yet known); fd_errors: a gradient
        check taken at this step, or None. extra_pred: the weights' part of the predicted loss change.
        Returns (per-layer dict, loss-change dict or None, list of verdict-change events)."""
        if fd_errors is not None:
            self.record_gradient_check(fd_errors)
        if not self.layers:
            return {}, None, []
        with np.errstate(all="ignore"):  # huge (finite) values must not print overflow warnings
            sums = self._layer_sums(b, g, u, trained)
        return self._judge(step, loss, sums, g is not None, u is not None, trained, untrained_cause, extra_pred)

    def _layer_sums(self, b, g, u, trained):
        """One step's per-layer sums (see _sums) as a list per layer (g or u None count as zeros)."""
        vec, k = self._vec, len(self.betas)
        vec[0] = b
        vec[1] = 0.0 if g is None else g
        vec[2] = 0.0 if u is None else u
        avg = None
        if g is not None and trained and k:
            avg = self._avg
            if not self._avg_on:
                avg[:] = 0.0
                self._avg_on = True
            avg *= self.betas[:, None]
            avg += np.multiply.outer(1.0 - self.betas, vec[1])
        elif not trained:
            self._avg_on = False
        return self._sums(vec, avg, self._terms if avg is not None else self._terms[:6]).T.tolist()

    def _sums(self, vec, avg, terms=None):
        """Per-layer sums of per-entry terms, for one step or a block alike. vec: (3, ..., n) b, g, u;
        avg: (k, ..., n) running averages of g, or None. Returns (R, ..., layers), the R rows being
        |b|^2, |g|^2, |u|^2, u.g, #significant g (|g| > 1e-8 max|g|), #agreeing signs, then with avg
        |avg|^2 and avg.u for each average. Sums run along contiguous rows: a block gives bit for bit
        the sums of its steps one at a time."""
        k = 0 if avg is None else len(avg)
        if terms is None:
            terms = np.empty((6 + 2 * k,) + vec.shape[1:])
        np.multiply(vec, vec, out=terms[:3])
        np.multiply(vec[2], vec[1], out=terms[3])
        top = np.maximum.reduce(terms[1], axis=-1, keepdims=True)
        np.greater(terms[1], top * 1e-16 + 1e-300, out=terms[4])
        np.less(terms[3], 0.0, out=terms[5])
        terms[5] *= terms[4]
        if k:
            np.multiply(avg, avg, out=terms[6:6 + k])
            np.multiply(avg, vec[2], out=terms[6 + k:])
        return np.add.reduceat(terms, self.starts, axis=-1)

    def observe_block(self, rows) -> list:
        """observe() for many consecutive steps at once, with the same results: the per-entry sums of the
        whole block are taken in a few NumPy calls. rows: (step, loss, b, g, u, trained, untrained_cause,
        fd_errors, extra_pred) with u known (not None) and g given in every row or in none; fd_errors (or
        None) is a gradient check to record just before that row. Returns one observe() result per row."""
        if not rows:
            return []
        if not self.layers:
            return [({}, None, [])] * len(rows)
        if len(rows) == 1:  # one step: observe() has less set-up than a block
            step, loss, b, g, u, trained, cause, fd_errors, extra_pred = rows[0]
            return [self.observe(step, loss, b, g, u, trained, cause, extra_pred, fd_errors)]
        has_g = rows[0][3] is not None
        m, k = len(rows), len(self.betas)
        with np.errstate(all="ignore"):
            gs = [r[3] for r in rows] if has_g else [np.zeros(self._vec.shape[1])] * m
            vec = np.array([[r[2] for r in rows], gs, [r[4] for r in rows]], dtype=np.float64)  # (3, m, n)
            use_avg = [False] * m
            avgs = None
            if has_g and k:
                avgs = np.zeros((k, m, vec.shape[2]))
                avg = self._avg
                for i, row in enumerate(rows):
                    if row[5]:
                        if not self._avg_on:
                            avg[:] = 0.0
                            self._avg_on = True
                        avg *= self.betas[:, None]
                        avg += np.multiply.outer(1.0 - self.betas, vec[1, i])
                        avgs[:, i] = avg
                        use_avg[i] = True
                    else:
                        self._avg_on = False
            elif k:
                for row in rows:
                    if not row[5]:
                        self._avg_on = False
            sums = self._sums(vec, avgs).transpose(1, 2, 0).tolist()  # (m, layers, R)
        results = []
        for (step, loss, _, _, _, trained, cause, fd_errors, extra_pred), per_layer, avg_on in zip(rows, sums, use_avg):
            if fd_errors is not None:
                self.record_gradient_check(fd_errors)
            if k and not avg_on:
                per_layer = [r[:6] for r in per_layer]
            results.append(self._judge(step, loss, per_layer, has_g, True, trained, cause, extra_pred))
        return results

    def _judge(self, step, loss, sums, has_g, has_u, trained, untrained_cause, extra_pred):
        """One step's per-layer diagnostics from its per-layer sums (rows of _sums, one list per layer)."""
        k = len(self.betas)
        use_avg = has_g and has_u and trained and k > 0 and len(sums[0]) > 6
        loss_change = None
        if self.prev_pred is not None and self.prev_loss is not None:
            loss_change = {"predicted": self.prev_pred, "actual": loss - self.prev_loss}
        losses = self.losses
        losses.append(loss)
        rising = losses[-1] >= losses[0] or not math.isfinite(loss)  # the loss has not fallen over the window
        pred_total = extra_pred
        out, events = {}, []
        have_gu = has_g and has_u
        sqrt, nan, inf = math.sqrt, math.nan, math.inf
        g_rms_all = [sqrt(row[1]) / sq for row, sq in zip(sums, self._sqrt_sizes)]
        g_rms_max = max(g_rms_all)
        verdict_of, causes = self._verdict, CAUSES
        for name, state, row, g_rms in zip(self.layout.names, self.layers, sums, g_rms_all):
            bb, g2, u2, ug, n_sig, n_agree = row[:6]
            b_norm, g_norm, u_norm = sqrt(bb), sqrt(g2), sqrt(u2)
            if have_gu:
                cos = -ug / (u_norm * g_norm) if (u_norm > 0 and g_norm > 0) else nan
                pred_total += ug
                cosines = [cos] + [-ua / (u_norm * sqrt(a2)) if (u_norm > 0 and a2 > 0) else nan
                                   for a2, ua in zip(row[6:6 + k], row[6 + k:])] if use_avg else (cos,)
            else:
                cos, cosines = nan, (nan,)
            verdict = verdict_of(state, loss, rising, b_norm, g_rms, g_rms_max, u_norm, cosines, has_g, has_u,
                                 trained)
            cause = untrained_cause if verdict == "off" else causes.get(verdict, "")
            if verdict != state.verdict:
                state.verdict, state.since = verdict, step
                events.append({"event": "verdict", "step": step, "layer": name, "verdict": verdict, "cause": cause})
            ratio = u_norm / b_norm if (has_u and b_norm > 0) else None
            out[name] = {
                "b_norm": b_norm,
                "g_norm": g_norm if has_g else None,
                "u_norm": u_norm if has_u else None,
                "ratio": ratio if ratio is None or ratio < inf else None,
                "cos": None if cos != cos or abs(cos) == inf else cos,
                "sign_agree": (n_agree / n_sig) if (n_sig and has_u and u_norm > 0) else None,
                "pred_dloss": ug if have_gu else None,
                "fd_error": state.fd_error,
                "verdict": verdict,
                "cause": cause,
                "since": state.since,
            }
        self.prev_loss = loss
        self.prev_pred = pred_total if has_u else None
        return out, loss_change, events

    def _verdict(self, s, loss, rising, b_norm, g_rms, g_rms_max, u_norm, cosines, has_g, has_u, trained):
        """One layer's verdict this step; `rising`: the loss has not fallen over the last window."""
        t = self.t
        if s.first_norm is None:
            s.first_norm = b_norm
        s.norms.append(b_norm)
        if not trained:
            s.clear_cos()
            s.frozen_run = 0
            return "off"
        if not has_u:
            return s.verdict
        if not has_g:
            return self._explodes(s, rising, b_norm) or "no gradients"
        if not (b_norm < math.inf and g_rms < math.inf and u_norm < math.inf):
            return self._explodes(s, rising, b_norm) or s.verdict  # non-finite input: divergence, reported elsewhere
        for running, c in zip(s.cos, cosines):
            if c == c:  # defined (not NaN)
                running.add(c)
        if g_rms > s.max_g_rms:
            s.max_g_rms = g_rms
        moving = u_norm > 1e-12 * (b_norm if b_norm > 1.0 else 1.0)
        gradient_on = g_rms > t.grad_eps and g_rms >= t.quiet_grad_frac * s.max_g_rms
        s.frozen_run = 0 if (moving or not gradient_on) else s.frozen_run + 1
        if s.fd_error is not None and s.fd_error > t.fd_tolerance:
            return "gradient mismatch"
        raw = s.cos[0]
        n_cos = raw.n
        if n_cos >= t.min_steps:
            best_w = _best(s.cos, t.window) if len(s.cos) > 1 else raw.mean(t.window)
            # On a quiet (converged) gradient momentum and Adam jitter, and the running averages hold stale
            # signs: only a clear climb along the raw gradient counts there, as plain SGD with the sign bug
            # gives (cos -1 however small the gradient or its scale).
            if gradient_on:
                if best_w < t.uphill_cos:
                    return "uphill"
            elif raw.mean(t.window) < t.quiet_uphill_cos:
                return "uphill"
        else:
            best_w = math.nan
        if not gradient_on and s.verdict == "uphill":
            return "uphill"  # too quiet a gradient to clear a climb seen before
        if rising:
            exploding = self._explodes(s, rising, b_norm)
            if exploding:
                return exploding
        if s.frozen_run >= t.frozen_steps:
            return "frozen"
        if 0 < g_rms < t.vanish_grad and s.max_g_rms < t.vanish_ratio * g_rms_max and loss > t.converged_loss:
            return "vanishing"
        if (n_cos >= t.unrelated_steps and abs(best_w) < 2 * t.unrelated_cos
                and abs(_best(s.cos, t.unrelated_steps)) < t.unrelated_cos):
            return "unrelated"
        if n_cos >= t.min_steps or (s.verdict not in ("pending", "off") and n_cos):
            return "ok"
        return s.verdict if s.verdict != "off" else "pending"

    def _explodes(self, s, rising, b_norm):
        """The bias norm blows up while the loss does not fall (a norm growing as the loss falls is learning)."""
        if not rising:
            return None
        t = self.t
        if b_norm > t.explode_norm * max(1.0, s.first_norm):
            return "exploding"
        if len(s.norms) == s.norms.maxlen and b_norm > 10 and b_norm > t.explode_growth * max(s.norms[0], 1e-300):
            return "exploding"
        return None

    def verdicts(self) -> dict:
        """Each layer's current verdict: {name: (verdict, cause, since)}."""
        return {name: (s.verdict, CAUSES.get(s.verdict, ""), s.since) for name, s in zip(self.layout.names, self.layers)}


def _best(runnings, k):
    """Of the running means over the last k values, the one of largest magnitude (the direction the update
    follows most closely); NaN if none is defined."""
    best, size = math.nan, 0.0
    for r in runnings:
        mean = r.mean(k)
        if mean == mean and (best != best or abs(mean) > size):
            best, size = mean, abs(mean)
    return best


def finite_difference_errors(loss_at, b, g, layout: Layout, steps=(1e-6, 1e-7, 1e-8), tolerance=1e-3) -> dict:
    """Each layer's largest relative error between g and finite differences of loss_at (float64).

    loss_at(b_flat) -> float is the loss at biases b_flat (n_biases,); g is the analytic gradient there.
    An entry that fails with central differences is tried at the smaller step sizes, then one-sided at
    them: ReLU nets drive pre-activations onto the kink (seen within 1e-8 of it), where a central
    difference straddles the kink while the analytic (sub)gradient is one side's slope."""
    b = np.asarray(b, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    floor = max(1e-6, 1e-4 * float(np.abs(g).max(initial=0.0)))  # below this, differences are FD noise
    rel = np.full(b.shape, np.inf)
    probe = b.copy()

    def error(numeric, i):
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
    return {name: float(part.max()) if part.size else 0.0 for name, part in layout.split(rel).items()}
