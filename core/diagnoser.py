"""The Diagnoser: each step's per-layer measures (core/measures.py), then verdicts (core/verdicts.py).

The same Diagnoser serves biasmon's own trainer, recordings and external trainers' streams. It takes
`Observation`s (a step awaiting its diagnosis) and returns one `Diagnosis` each; many steps at once cost
a few NumPy calls, as one does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .layout import Layout
from .history import BlockSteps, History, oldest_in_window
from .measures import BlockMeasures, GradientAverages, StepMeasures, block_sums, measures
from .records import Event, LayerDiagnosis, LayerVectors, LossChange, StepRecord, new_tuple as _new_tuple
from .verdicts import CAUSES, PENDING, VERDICTS, Thresholds, verdict_codes


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
        self.thresholds = th = thresholds or Thresholds()
        self.off_cause = off_cause
        self.starts = layout.starts
        self.averages = GradientAverages(th.momentum_betas, int(sum(layout.sizes)))
        self.history = History(th, len(layout.names), 1 + len(th.momentum_betas))
        self.verdict = [PENDING] * len(layout.names)   # each layer's verdict (an index into VERDICTS)
        self.since = [0] * len(layout.names)           # the step it began
        self.fd_error: list[float | None] = [None] * len(layout.names)  # the last gradient check's error
        self.losses = np.zeros(0)   # the last window - 1 losses
        self.prev_loss = None
        self.prev_pred = None
        self.sizes = np.asarray(layout.sizes, dtype=np.float64)

    def record_gradient_check(self, errors: dict) -> None:
        """Largest relative finite-difference error per layer name, from a gradient check."""
        for i, name in enumerate(self.layout.names):
            value = errors.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.fd_error[i] = float(value) if math.isfinite(value) else math.inf

    def observe(self, steps: list[Observation]) -> list[Diagnosis]:
        """The diagnoses of consecutive steps, in order."""
        if not self.layout.names:
            return [Diagnosis({}, None, []) for _ in steps]
        if not steps:
            return []
        n = self.averages.avg.shape[1]
        has_g = [o.g is not None for o in steps]
        trained = [o.trained or self.always_trained for o in steps]
        zeros = np.zeros(n)
        with np.errstate(all="ignore"):  # huge (finite) values must not print overflow warnings
            vec = np.array([[o.b for o in steps], [zeros if o.g is None else o.g for o in steps],
                            [zeros if o.u is None else o.u for o in steps]], dtype=np.float64)  # (3, m, n)
            avg, with_avg = self.averages.block(vec[1], has_g, trained)
            m = measures(block_sums(vec, avg, self.starts), self.sizes, with_avg)
            fd_errors = self._fd_errors(steps)
            single = (vec[1].astype(np.float32) == vec[1]).all(axis=1)  # every gradient a float32 number
            rounding = np.where(single, np.finfo(np.float32).eps, np.finfo(np.float64).eps)
            codes = self._verdicts(steps, m, np.array(has_g), np.array(trained), fd_errors, rounding)
        return self._diagnoses(steps, m, codes, fd_errors)

    def _fd_errors(self, steps: list[Observation]) -> list[list[float | None]]:
        """Each step's last gradient-check error per layer (a check taken at a step applies from it on)."""
        out, current = [], list(self.fd_error)
        for o in steps:
            if o.fd_errors is not None:
                self.record_gradient_check(o.fd_errors)
                current = list(self.fd_error)
            out.append(current)
        return out

    def _verdicts(self, steps: list[Observation], m: BlockMeasures, has_g: np.ndarray, trained: np.ndarray,
                  fd_errors: list, rounding: np.ndarray) -> np.ndarray:
        """(m, L) each layer's verdict code at each step; rounding: (m,) each step's unit of rounding."""
        th = self.thresholds
        loss = np.array([o.loss for o in steps], dtype=np.float64)
        oldest, _, self.losses = oldest_in_window(self.losses, loss, th.window)
        has_u = np.array([o.u is not None for o in steps])
        b, g_rms, u = m.column("b_norm"), m.column("g_rms"), m.column("u_norm")
        top = g_rms[:, 0]
        for column in g_rms.T[1:]:  # Python's max, layer by layer: a NaN in first place stays
            top = np.where(column > top, column, top)
        fd = np.array([[math.nan if e is None else e for e in row] for row in fd_errors], dtype=np.float64)
        cosines = m.cosines  # (m, L, 1 + k); without any gradient in the block only cos(u, -g), undefined
        if cosines.shape[2] < 1 + len(self.averages.betas):
            cosines = np.full(cosines.shape[:2] + (1 + len(self.averages.betas),), np.nan)
        unreached = np.zeros(b.shape, dtype=bool)
        for i, o in enumerate(steps):
            if o.unreached is not None and o.g is not None:
                unreached[i] = o.unreached
        block = BlockSteps(loss, (loss >= oldest) | ~np.isfinite(loss), trained, b, g_rms, u, top, fd, cosines,
                           unreached, rounding)
        finite = (b < math.inf) & (g_rms < math.inf) & (u < math.inf)
        judged = (trained & has_u & has_g)[:, None] & finite & ~unreached
        window = self.history.advance(block, judged)
        return verdict_codes(window, judged, trained, has_u, has_g, self.verdict, th)

    def _diagnoses(self, steps: list[Observation], m: BlockMeasures, codes: np.ndarray, fd_errors: list) -> list[Diagnosis]:
        """Each step's Diagnosis, from its measures and verdict codes; verdict changes become events."""
        names, causes = self.layout.names, [self.off_cause if v == "off" else CAUSES.get(v, "") for v in VERDICTS]
        per_step = codes.tolist()
        out = []
        for o, row, fd, step_codes in zip(steps, m.steps, fd_errors, per_step):
            has_g, has_u = o.g is not None, o.u is not None
            loss_change = None
            if self.prev_pred is not None and self.prev_loss is not None:
                loss_change = _new_tuple(LossChange, (self.prev_pred, o.loss - self.prev_loss))
            pred = o.extra_pred
            layers, events = {}, []
            for i, name in enumerate(names):
                code = step_codes[i]
                if code != self.verdict[i]:
                    self.verdict[i], self.since[i] = code, o.step
                    events.append(Event.verdict(o.step, name, VERDICTS[code], causes[code]))
                if has_g and has_u:
                    pred += row.ug[i]
                reached = has_g and not (o.unreached is not None and o.unreached[i])
                layers[name] = _layer(row, i, reached, has_u, fd[i], VERDICTS[code], causes[code], self.since[i])
            self.prev_loss = o.loss
            self.prev_pred = pred if has_u else None
            out.append(_new_tuple(Diagnosis, (layers, loss_change, events)))
        return out

    def verdicts(self) -> dict:
        """Each layer's current verdict: {name: (verdict, cause, since)}."""
        return {name: (VERDICTS[v], CAUSES.get(VERDICTS[v], ""), since)
                for name, v, since in zip(self.layout.names, self.verdict, self.since)}


def _layer(m: StepMeasures, i: int, has_g: bool, has_u: bool, fd_error: float | None, verdict: str, cause: str,
           since: int) -> LayerDiagnosis:
    """Layer i's diagnosis: its measures (None where unknown or not finite), verdict and cause."""
    cos, ratio, agree = m.cos[i], m.ratio[i], m.sign_agree[i]
    return _new_tuple(LayerDiagnosis, (
        m.b_norm[i], m.g_norm[i] if has_g else None, m.u_norm[i] if has_u else None,
        ratio if has_u and ratio < math.inf else None,
        None if cos != cos or abs(cos) == math.inf else cos,
        agree if has_u and agree == agree else None,
        m.ug[i] if has_g and has_u else None, fd_error, verdict, cause, since))
