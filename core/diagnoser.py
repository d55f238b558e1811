"""The Diagnoser: each step's per-layer measures (core/measures.py), then verdicts (core/verdicts.py).

The same Diagnoser serves biasmon's own trainer, recordings and external trainers' streams. It takes
`Observation`s (a step awaiting its diagnosis) and returns one `Diagnosis` each; many steps at once cost
a few NumPy calls, as one does.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .layout import Layout
from .measures import GradientAverages, LayerSums, block_sums, step_sums
from .records import Event, LayerDiagnosis, LayerVectors, LossChange, StepRecord
from .verdicts import CAUSES, LayerMeasures, LayerState, StepFacts, Thresholds, judge


@dataclass(slots=True)
class Observation:
    """One step awaiting its diagnosis. b, g, u: flat (n,) vectors, the layers end to end: the biases at
    which loss and g were taken, then the update applied (g None: not logged; u None: not known yet)."""

    step: int
    loss: float
    val_loss: float | None
    b: np.ndarray
    g: np.ndarray | None
    u: np.ndarray | None
    trained: bool = True
    span: int = 1                          # steps the update spans (sparse logging)
    fd_errors: dict | None = None          # a gradient check taken at this step: {layer: relative error}
    extra_pred: float = 0.0                # the weights' part of the predicted loss change, g_w . u_w
    stored: tuple | None = None            # (diag, loss_change) a stream line carried, or None

    def record(self, layout: Layout, diagnosis: "Diagnosis | None") -> StepRecord:
        """The StepRecord of this step with its diagnosis."""
        return StepRecord(self.step, self.loss, self.val_loss, LayerVectors(self.b, layout),
                          None if self.g is None else LayerVectors(self.g, layout),
                          None if self.u is None else LayerVectors(self.u, layout),
                          None if diagnosis is None else diagnosis.layers,
                          None if diagnosis is None else diagnosis.loss_change,
                          bias_trained=self.trained, span=self.span)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """One step's diagnosis: each layer's, the loss change the previous step predicted, verdict changes."""

    layers: dict[str, LayerDiagnosis]
    loss_change: LossChange | None
    events: list[Event]


class Diagnoser:
    """Feed it steps in order; it returns each step's per-layer diagnoses and verdict changes.

    The descent cosine of a layer is cos(u, -d) for d the gradient g and for running averages of g
    (momentum_betas): SGD follows g, heavy-ball momentum and Adam follow a running average of it, and a
    positive factor (learning rate, loss, schedule) or Adam's per-coordinate scaling changes neither sign.
    off_cause: the cause shown while a step's biases are not trained (verdict `off`); always_trained:
    judge every step as trained (biases that are meant to move but never do: the frozen strategy)."""

    def __init__(self, layout: Layout, thresholds: Thresholds | None = None,
                 off_cause: str = "not trained at this step", always_trained: bool = False) -> None:
        self.layout = layout
        self.always_trained = always_trained
        self.thresholds = thresholds or Thresholds()
        self.off_cause = off_cause
        self.starts = layout.starts
        self.averages = GradientAverages(self.thresholds.momentum_betas, int(sum(layout.sizes)))
        self.layers = [LayerState(self.thresholds) for _ in layout.names]
        self.losses = deque(maxlen=self.thresholds.window)  # the last window's losses (all layers share them)
        self.prev_loss = None
        self.prev_pred = None
        self._sqrt_sizes = [math.sqrt(size) for size in layout.sizes]

    def record_gradient_check(self, errors: dict) -> None:
        """Largest relative finite-difference error per layer name, from a gradient check."""
        for name, state in zip(self.layout.names, self.layers):
            value = errors.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                state.fd_error = float(value) if math.isfinite(value) else math.inf

    def observe(self, steps: list[Observation]) -> list[Diagnosis]:
        """The diagnoses of consecutive steps, in order."""
        if not self.layers:
            return [Diagnosis({}, None, []) for _ in steps]
        if not steps:
            return []
        n = self.averages.avg.shape[1]
        has_g = [o.g is not None for o in steps]
        zeros = np.zeros(n)
        with np.errstate(all="ignore"):  # huge (finite) values must not print overflow warnings
            vec = np.array([[o.b for o in steps], [zeros if o.g is None else o.g for o in steps],
                            [zeros if o.u is None else o.u for o in steps]], dtype=np.float64)  # (3, m, n)
            avg, with_avg = self.averages.block(vec[1], has_g, [o.trained or self.always_trained for o in steps])
            sums = step_sums(block_sums(vec, avg, self.starts), with_avg)
        out = []
        for o, s in zip(steps, sums):
            if o.fd_errors is not None:
                self.record_gradient_check(o.fd_errors)
            out.append(self._diagnose(o, s))
        return out

    def _diagnose(self, o: Observation, s: LayerSums) -> Diagnosis:
        """One step's diagnosis from its per-layer sums."""
        has_g, has_u = o.g is not None, o.u is not None
        loss_change = None
        if self.prev_pred is not None and self.prev_loss is not None:
            loss_change = LossChange(self.prev_pred, o.loss - self.prev_loss)
        self.losses.append(o.loss)
        rising = self.losses[-1] >= self.losses[0] or not math.isfinite(o.loss)  # not fallen over the window
        facts = StepFacts(o.loss, rising, has_g, has_u, o.trained or self.always_trained)
        have_gu = has_g and has_u
        use_avg = have_gu and s.aa is not None
        sqrt, nan, inf, t = math.sqrt, math.nan, math.inf, self.thresholds
        g_rms_all = [sqrt(gg) / sq for gg, sq in zip(s.gg, self._sqrt_sizes)]
        g_rms_max = max(g_rms_all)
        pred_total = o.extra_pred
        layers, events = {}, []
        for i, (name, state) in enumerate(zip(self.layout.names, self.layers)):
            b_norm, g_norm, u_norm, ug = sqrt(s.bb[i]), sqrt(s.gg[i]), sqrt(s.uu[i]), s.ug[i]
            cos = nan
            cosines = (nan,)
            if have_gu:
                cos = -ug / (u_norm * g_norm) if (u_norm > 0 and g_norm > 0) else nan
                pred_total += ug
                if use_avg:
                    cosines = [cos] + [-au[i] / (u_norm * sqrt(aa[i])) if (u_norm > 0 and aa[i] > 0) else nan
                                       for aa, au in zip(s.aa, s.au)]
                else:
                    cosines = (cos,)
            verdict = judge(state, LayerMeasures(b_norm, g_rms_all[i], g_rms_max, u_norm, cosines), facts, t)
            cause = self.off_cause if verdict == "off" else CAUSES.get(verdict, "")
            if verdict != state.verdict:
                state.verdict, state.since = verdict, o.step
                events.append(Event.verdict(o.step, name, verdict, cause))
            ratio = u_norm / b_norm if (has_u and b_norm > 0) else None
            n_sig = s.n_sig[i]
            layers[name] = LayerDiagnosis(
                b_norm, g_norm if has_g else None, u_norm if has_u else None,
                ratio if ratio is None or ratio < inf else None,
                None if cos != cos or abs(cos) == inf else cos,
                (s.n_agree[i] / n_sig) if (n_sig and has_u and u_norm > 0) else None,
                ug if have_gu else None, state.fd_error, verdict, cause, state.since)
        self.prev_loss = o.loss
        self.prev_pred = pred_total if has_u else None
        return Diagnosis(layers, loss_change, events)

    def verdicts(self) -> dict:
        """Each layer's current verdict: {name: (verdict, cause, since)}."""
        return {name: (s.verdict, CAUSES.get(s.verdict, ""), s.since) for name, s in zip(self.layout.names, self.layers)}
