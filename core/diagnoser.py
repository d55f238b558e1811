"""The Diagnoser: each step's per-layer measures (core/measures.py), then verdicts (core/verdicts.py).

The same Diagnoser serves biasmon's own trainer, recordings and external trainers' streams. It takes
`Observation`s (a step awaiting its diagnosis) and returns one `Diagnosis` each; many steps at once cost
a few NumPy calls, as one does.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .layout import Layout
from .measures import GradientAverages, StepMeasures, block_sums, measures
from .records import Event, LayerDiagnosis, LayerVectors, LossChange, StepRecord, new_tuple as _new_tuple
from .verdicts import CAUSES, LayerState, StepFacts, Thresholds, judge


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
    stored: "Diagnosis | None" = None      # the diagnosis a stream line carried (replay), or None
    unreached: tuple[bool, ...] | None = None  # per layer (layout order): no gradient reached it (g is zeros there)

    def record(self, layout: Layout, diagnosis: "Diagnosis | None") -> StepRecord:
        """The StepRecord of this step with its diagnosis."""
        return _new_tuple(StepRecord, (self.step, self.loss, self.val_loss, LayerVectors(self.b, layout),
                                       None if self.g is None else LayerVectors(self.g, layout),
                                       None if self.u is None else LayerVectors(self.u, layout),
                                       None if diagnosis is None else diagnosis.layers,
                                       None if diagnosis is None else diagnosis.loss_change, self.trained, self.span))


class Diagnosis(NamedTuple):
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
        self._layers = [(i, name, state) for i, (name, state) in enumerate(zip(layout.names, self.layers))]
        self.losses = deque(maxlen=self.thresholds.window)  # the last window's losses (all layers share them)
        self.prev_loss = None
        self.prev_pred = None
        self.sizes = np.asarray(layout.sizes, dtype=np.float64)

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
            per_step = measures(block_sums(vec, avg, self.starts), self.sizes, with_avg)
        out = []
        for o, s in zip(steps, per_step):
            if o.fd_errors is not None:
                self.record_gradient_check(o.fd_errors)
            out.append(self._diagnose(o, s))
        return out

    def _diagnose(self, o: Observation, m: StepMeasures) -> Diagnosis:
        """One step's diagnosis from its measures."""
        has_g, has_u = o.g is not None, o.u is not None
        loss_change = None
        if self.prev_pred is not None and self.prev_loss is not None:
            loss_change = _new_tuple(LossChange, (self.prev_pred, o.loss - self.prev_loss))
        self.losses.append(o.loss)
        rising = self.losses[-1] >= self.losses[0] or not math.isfinite(o.loss)  # not fallen over the window
        facts = StepFacts(o.loss, rising, has_g, has_u, o.trained or self.always_trained)
        have_gu = has_g and has_u
        g_rms_max = max(m.g_rms)
        pred = o.extra_pred
        layers, events = {}, []
        th, cosines = self.thresholds, m.cosines if have_gu else None
        for i, name, state in self._layers:
            cos = m.cos[i]
            verdict = judge(state, facts, th, m.b_norm[i], m.g_rms[i], g_rms_max, m.u_norm[i],
                            (cos,) if cosines is None else cosines[i])
            cause = self.off_cause if verdict == "off" else CAUSES.get(verdict, "")
            if verdict != state.verdict:
                state.verdict, state.since = verdict, o.step
                events.append(Event.verdict(o.step, name, verdict, cause))
            if have_gu:
                pred += m.ug[i]
            layers[name] = self._layer(m, i, has_g, has_u, state, cause)
        self.prev_loss = o.loss
        self.prev_pred = pred if has_u else None
        return _new_tuple(Diagnosis, (layers, loss_change, events))

    @staticmethod
    def _layer(m: StepMeasures, i: int, has_g: bool, has_u: bool, state: LayerState, cause: str) -> LayerDiagnosis:
        """Layer i's diagnosis: its measures (None where unknown or not finite), verdict and cause."""
        cos, ratio, agree = m.cos[i], m.ratio[i], m.sign_agree[i]
        return _new_tuple(LayerDiagnosis, (
            m.b_norm[i], m.g_norm[i] if has_g else None, m.u_norm[i] if has_u else None,
            ratio if has_u and ratio < math.inf else None,
            None if cos != cos or abs(cos) == math.inf else cos,
            agree if has_u and agree == agree else None,
            m.ug[i] if has_g and has_u else None, state.fd_error, state.verdict, cause, state.since))

    def verdicts(self) -> dict:
        """Each layer's current verdict: {name: (verdict, cause, since)}."""
        return {name: (s.verdict, CAUSES.get(s.verdict, ""), s.since) for name, s in zip(self.layout.names, self.layers)}
