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
from .records import Event, LayerDiagnosis, LayerSums, LayerVectors, LossChange, StepRecord, new_tuple as _new_tuple
from .verdicts import (DEAD_UNITS, DETACHED, HELD_UPHILL, NO_LONGER_REACHED, PENDING, UPHILL, VANISHING, VERDICTS,
                       Thresholds, causes as causes_of, verdict_codes)


CHUNK_ENTRIES = 1 << 16   # vectors' entries (steps x n) diagnosed at a time: 512 KB an array
CLOSER_CAUSE = frozenset((UPHILL, VANISHING, DETACHED))   # verdicts whose cause a step may make closer


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
    sums: list | None = None               # the summary form instead of b, g, u: L rows of 7 + 2k numbers (None: null)
    weights: "Observation | None" = None   # the same step's weights (a stream reader's; the trainer keeps its own)

    sums_have: tuple[bool, bool] = (False, False)   # with sums: whether they hold the gradient, the update

    @property
    def has_g(self) -> bool:
        """Whether the step's gradient was logged."""
        return self.g is not None if self.sums is None else self.sums_have[0]

    @property
    def has_u(self) -> bool:
        """Whether the step's update is known."""
        return self.u is not None if self.sums is None else self.sums_have[1]

    def record(self, layout: Layout, diagnosis: "Diagnosis | None", weights: "WeightStep | None" = None,
               values: bool = True) -> StepRecord:
        """The StepRecord of this step with its diagnosis (and its weights', if they were observed too).
        values False: without its vectors and sums (what `check` reads needs neither)."""
        if not values:
            w_diag = weights.diagnosis if weights is not None else None
            return _new_tuple(StepRecord, (
                self.step, self.loss, self.val_loss, None, None, None, None if diagnosis is None else diagnosis.layers,
                None if diagnosis is None else diagnosis.loss_change, self.trained, self.span, None, None, None,
                None if w_diag is None else w_diag.layers, None, None))
        w = weights.observation if weights is not None else None
        w_layout = weights.layout if weights is not None else None
        w_diag = weights.diagnosis if weights is not None else None
        return _new_tuple(StepRecord, (
            self.step, self.loss, self.val_loss, None if self.b is None else LayerVectors(self.b, layout),
            None if self.g is None else LayerVectors(self.g, layout),
            None if self.u is None else LayerVectors(self.u, layout),
            None if diagnosis is None else diagnosis.layers,
            None if diagnosis is None else diagnosis.loss_change, self.trained, self.span,
            None if w is None or w.b is None else LayerVectors(w.b, w_layout),
            None if w is None or w.g is None else LayerVectors(w.g, w_layout),
            None if w is None or w.u is None else LayerVectors(w.u, w_layout),
            None if w_diag is None else w_diag.layers,
            _sums(layout, diagnosis, self), _sums(w_layout, w_diag, w)))


class WeightStep(NamedTuple):
    """A step's weights as observed and diagnosed, for Observation.record."""

    layout: Layout
    observation: Observation
    diagnosis: "Diagnosis | None"


def _sums(layout: Layout | None, diagnosis: "Diagnosis | None", o: "Observation | None") -> LayerSums | None:
    if layout is None or diagnosis is None or diagnosis.sums is None:
        return None
    return _new_tuple(LayerSums, (layout.names, diagnosis.sums, o.has_g, o.has_u))


class Diagnosis(NamedTuple):
    """One step's diagnosis: each layer's, the loss change the previous step predicted, verdict changes,
    and the per-layer sums it was made of ((L, 7 + 2k) as LayerSums.table; None if not computed)."""

    layers: dict[str, LayerDiagnosis]
    loss_change: LossChange | None
    events: list[Event]
    sums: np.ndarray | None = None


class Diagnoser:
    """Feed it steps in order; it returns each step's per-layer diagnoses and verdict changes.

    The descent cosine of a layer is cos(u, -d) for d the gradient g and for running averages of g
    (momentum_betas): SGD follows g, heavy-ball momentum and Adam follow a running average of it, and a
    positive factor (learning rate, loss, schedule) or Adam's per-coordinate scaling changes neither sign.
    off_cause: the cause shown while a step's biases are not trained (verdict `off`). param: "bias" or
    "weight", named in verdict events; averages: how many running averages a summary-form step brings."""

    def __init__(self, layout: Layout, thresholds: Thresholds | None = None,
                 off_cause: str = "not trained at this step",
                 param: str = "bias", averages: int | None = None) -> None:
        self.layout = layout
        self.thresholds = th = thresholds or Thresholds()
        self.off_cause = off_cause
        self.param = param   # "bias" or "weight": what the layers' entries are (named in verdict events)
        self.starts = layout.starts
        # running averages of g, kept here for vectors (summary-form steps bring their own sums of them)
        self.averages = GradientAverages(th.momentum_betas, int(sum(layout.sizes)) if averages is None else 0)
        # steps in the summary form bring their own sums of `averages` running averages (None: the betas')
        self.series = 1 + (len(th.momentum_betas) if averages is None else averages)
        self.float32_grads = False   # summary form: the sums are of float32 gradients (the unit of rounding)
        self.every_step = True       # False: only each block's last step gets its layers' diagnoses (a check)
        self.history = History(th, len(layout.names), self.series)
        self.verdict = [PENDING] * len(layout.names)   # each layer's verdict (an index into VERDICTS)
        self.since = [0] * len(layout.names)           # the step it began (the first step seen, at first)
        self.seen = False                              # a step has been observed
        self.fd_error: list[float | None] = [None] * len(layout.names)  # the last gradient check's error
        self.losses = np.zeros(0)   # the last window - 1 losses
        self.prev_loss = None
        self.prev_pred = None
        self.sizes = np.asarray(layout.sizes, dtype=np.float64)
        self._work: _Work | None = None   # arrays _vector_sums reuses

    def record_gradient_check(self, errors: dict) -> None:
        """Largest relative finite-difference error per layer name, from a gradient check."""
        for i, name in enumerate(self.layout.names):
            value = errors.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.fd_error[i] = float(value) if math.isfinite(value) else math.inf

    def observe(self, steps: list[Observation]) -> list[Diagnosis]:
        """The diagnoses of consecutive steps, in order."""
        if not self.layout.names:
            return [Diagnosis({}, None, [], None) for _ in steps]
        if not steps:
            return []
        if not self.seen:   # the first verdict (pending) began at the first step seen
            self.since, self.seen = [steps[0].step] * len(self.layout.names), True
        facts = _Facts.of(steps, len(self.layout.names))
        with np.errstate(all="ignore"):  # huge (finite) values must not print overflow warnings
            if steps[0].sums is not None:
                sums, with_avg, rounding = self._given_sums(steps, facts.unreached)
            else:
                sums, with_avg, rounding = self._vector_sums(steps, facts.has_g, facts.trained)
            m = measures(sums, self.sizes, with_avg)
            fd_errors = self._fd_errors(steps)
            codes, had_gradient = self._verdicts(facts, m, fd_errors, rounding)
        table = np.concatenate((np.broadcast_to(self.sizes, (1,) + sums.shape[1:]), sums)).transpose(1, 2, 0)
        return self._diagnoses(steps, facts, m, codes, fd_errors, table, had_gradient)

    def _vector_sums(self, steps: list[Observation], has_g: list[bool], trained: list[bool]):
        """A block's sums from its vectors: (6 + 2k, m, L), which steps have running averages, and each
        step's unit of rounding (float32's if every gradient entry is a float32 number); the averages' sums
        of a step without running averages are NaN (unknown), whatever the block. Big vectors go
        a few steps at a time (CHUNK_ENTRIES entries) through arrays kept from call to call: memory stays
        small, the work in cache, and no new array's pages are touched a first time (a page fault each)."""
        n, k = self.averages.avg.shape[1], len(self.averages.betas)
        rows = min(len(steps), max(1, CHUNK_ENTRIES // max(n, 1)))
        if self._work is None or self._work.rows < rows:
            self._work = _Work(rows, n, k)
        work = self._work
        sums, with_avg, single = [], [], []
        for lo in range(0, len(steps), work.rows):
            chunk = steps[lo:lo + work.rows]
            c = len(chunk)
            vec, scratch = work.vec[:, :c], work.scratch[:c]
            for i, o in enumerate(chunk):   # b, g, u (zeros where not given)
                vec[0, i] = o.b
                vec[1, i] = 0.0 if o.g is None else o.g
                vec[2, i] = 0.0 if o.u is None else o.u
            avg, used = self.averages.block(vec[1], has_g[lo:lo + c], trained[lo:lo + c], work.avg[:c])
            np.copyto(work.single[:c], vec[1], casting="unsafe")   # float32 numbers: the same as float32
            np.equal(work.single[:c], vec[1], out=work.same[:c])
            single.append(work.same[:c].all(axis=1))
            part = block_sums(vec, avg, self.starts, scratch)
            if avg is None and k:
                part = np.concatenate((part, np.full((2 * k,) + part.shape[1:], np.nan)))
            if not all(used):   # a step without running averages: their sums unknown
                part[6:, ~np.array(used, dtype=bool)] = np.nan
            sums.append(part)
            with_avg += used
        sums = np.concatenate(sums, axis=1) if len(sums) > 1 else sums[0]
        rounding = np.where(np.concatenate(single), np.finfo(np.float32).eps, np.finfo(np.float64).eps)
        return sums, with_avg, rounding

    def _given_sums(self, steps: list[Observation], unreached: np.ndarray | None):
        """A block's sums as its steps brought them (the summary form): (6 + 2k, m, L), which steps have
        running averages, and each step's unit of rounding (float32's if the stream says so). unreached:
        (m, L) the layers no gradient reached (None: none): their gradient's sums are 0 (as zeros)."""
        table = _stack([o.sums for o in steps])   # (m, L, 7 + 2k), NaN for null
        if unreached is not None:   # |g|^2, u.g, significant, opposing
            table[unreached[:, :, None] & np.isin(np.arange(table.shape[-1]), (2, 4, 5, 6))] = 0.0
        sums = table[:, :, 1:].transpose(2, 0, 1)
        k = (len(sums) - 6) // 2
        with_avg = (~np.isnan(sums[6:6 + k])).any(axis=(0, 2)).tolist() if k else [False] * len(steps)
        eps = np.finfo(np.float32 if self.float32_grads else np.float64).eps
        return sums, with_avg, np.full(len(steps), eps)

    def _fd_errors(self, steps: list[Observation]) -> list[list[float | None]]:
        """Each step's last gradient-check error per layer (a check taken at a step applies from it on)."""
        out, current = [], list(self.fd_error)
        for o in steps:
            if o.fd_errors is not None:
                self.record_gradient_check(o.fd_errors)
                current = list(self.fd_error)
            out.append(current)
        return out

    def _verdicts(self, facts: "_Facts", m: BlockMeasures, fd_errors: list,
                  rounding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(m, L) each layer's verdict code at each step, and (m, L) whether the layer has had a gradient by
        then (for the cause of one detached after it learned); rounding: (m,) each step's unit of rounding."""
        th = self.thresholds
        loss = np.array(facts.loss, dtype=np.float64)
        oldest, _, self.losses = oldest_in_window(self.losses, loss, th.window)
        has_g, has_u, trained = np.array(facts.has_g), np.array(facts.has_u), np.array(facts.trained)
        b, g_rms, u = m.column("b_norm"), m.column("g_rms"), m.column("u_norm")
        top = g_rms[:, 0]
        for column in g_rms.T[1:]:  # Python's max, layer by layer: a NaN in first place stays
            top = np.where(column > top, column, top)
        if all(row is fd_errors[0] for row in fd_errors):   # no gradient check in the block: one row
            fd = np.tile(_errors(fd_errors[0]), (len(fd_errors), 1))
        else:
            fd = np.array([_errors(row) for row in fd_errors], dtype=np.float64)
        unreached = np.zeros(b.shape, dtype=bool) if facts.unreached is None else facts.unreached & has_g[:, None]
        block = BlockSteps(loss, (loss >= oldest) | ~np.isfinite(loss), trained, b, g_rms, u, top, fd, m.cosines,
                           unreached, rounding)
        finite = (b < math.inf) & (g_rms < math.inf) & (u < math.inf)
        judged = (trained & has_u & has_g)[:, None] & finite & ~unreached
        window = self.history.advance(block, judged)
        return verdict_codes(window, judged, trained, has_u, has_g, self.verdict, th), window.max_g_rms > 0

    def _diagnoses(self, steps: list[Observation], facts: "_Facts", m: BlockMeasures, codes: np.ndarray,
                   fd_errors: list, sums: np.ndarray, had_gradient: np.ndarray) -> list[Diagnosis]:
        """Each step's Diagnosis, from its measures, verdict codes ((m, L)), sums ((m, L, 7 + 2k)) and whether
        each layer had a gradient by then ((m, L));
        verdict changes become events. With every_step False, only the block's last step gets its layers'
        diagnoses and loss change (the others None): what a reader that wants verdicts only needs."""
        said = causes_of(self.param)
        no_longer = NO_LONGER_REACHED[self.param == "weight"]
        names, causes = self.layout.names, [self.off_cause if v == "off" else said.get(v, "") for v in VERDICTS]
        n, eps = len(steps), self.thresholds.grad_eps
        step_no = facts.step   # Python ints: a stream's step may be past 64 bits
        has_g, has_u = np.array(facts.has_g), np.array(facts.has_u)
        changed = codes != np.concatenate((np.array(self.verdict, dtype=codes.dtype)[None], codes[:-1]))
        # the row of the block where each layer's verdict last changed, after each step (-1: before the block)
        changed_at = np.maximum.accumulate(np.where(changed, np.arange(n)[:, None], -1), axis=0).tolist()
        pred = np.array(facts.extra_pred, dtype=np.float64)
        ug, gu = m.column("ug"), has_g & has_u
        for j in range(len(names)):   # layer by layer, as a running sum adds them
            pred = np.where(gu, pred + ug[:, j], pred)
        g_rms = m.column("g_rms").tolist()

        def reached(i: int, j: int) -> bool:   # a gradient reached layer j at step i
            return bool(has_g[i]) and not (steps[i].unreached is not None and steps[i].unreached[j])

        def cause(i: int, j: int, code: int) -> str:   # what a verdict says at step i: its own cause, or a
            if code == UPHILL and reached(i, j) and g_rms[i][j] <= eps:   # closer one where the step shows it
                return HELD_UPHILL
            if code == VANISHING and reached(i, j) and g_rms[i][j] == 0:
                return DEAD_UNITS
            if code == DETACHED and had_gradient[i, j]:
                return no_longer
            return causes[code]

        events: list[list[Event]] = [[] for _ in range(n)]
        for i, j in zip(*np.nonzero(changed)):
            code = int(codes[i, j])
            events[i].append(Event.verdict(step_no[i], names[j], VERDICTS[code], cause(i, j, code), self.param))
        prev_pred = [self.prev_pred] + [p if u else None for p, u in zip(pred[:-1].tolist(), has_u[:-1].tolist())]
        prev_loss = [self.prev_loss] + facts.loss[:-1]
        detailed = range(n) if self.every_step else range(n - 1, n)
        out = [_new_tuple(Diagnosis, (None, None, events[i], sums[i])) for i in range(n)]
        code_rows = codes.tolist()

        def since(i: int) -> list[int]:   # each layer's verdict's first step, after step i
            return [self.since[j] if at < 0 else step_no[at] for j, at in enumerate(changed_at[i])]

        for i in detailed:
            o, row = steps[i], m.step(i)
            loss_change = None
            if prev_pred[i] is not None and prev_loss[i] is not None:
                loss_change = _new_tuple(LossChange, (prev_pred[i], o.loss - prev_loss[i]))
            began, got_g, unreached, got_u = since(i), bool(has_g[i]), o.unreached, bool(has_u[i])
            layers = {name: _layer(row, j, got_g and not (unreached is not None and unreached[j]), got_u,
                                   fd_errors[i][j], VERDICTS[code],
                                   cause(i, j, code) if code in CLOSER_CAUSE else causes[code], began[j])
                      for j, (name, code) in enumerate(zip(names, code_rows[i]))}
            out[i] = _new_tuple(Diagnosis, (layers, loss_change, events[i], sums[i]))
        self.verdict, self.since = code_rows[-1], since(n - 1)
        self.prev_loss = facts.loss[-1]
        self.prev_pred = float(pred[-1]) if has_u[-1] else None
        return out

    def verdicts(self) -> dict:
        """Each layer's current verdict: {name: (verdict, cause, since)}."""
        return {name: (VERDICTS[v], causes_of(self.param).get(VERDICTS[v], ""), since)
                for name, v, since in zip(self.layout.names, self.verdict, self.since)}


class _Facts(NamedTuple):
    """A block's per-step facts, gathered once from its Observations: (m,) lists, and (m, L) bool where
    a step says which layers no gradient reached (None if no step says)."""

    step: list[int]
    loss: list[float]
    has_g: list[bool]
    has_u: list[bool]
    trained: list[bool]
    extra_pred: list[float]
    unreached: np.ndarray | None

    @staticmethod
    def of(steps: list[Observation], layers: int) -> "_Facts":
        unreached = None
        if any(o.unreached is not None for o in steps):
            unreached = np.array([(False,) * layers if o.unreached is None else o.unreached for o in steps], dtype=bool)
        return _Facts([o.step for o in steps], [o.loss for o in steps], [o.has_g for o in steps],
                      [o.has_u for o in steps], [o.trained for o in steps], [o.extra_pred for o in steps], unreached)


class _Work:
    """Arrays _vector_sums reuses for up to `rows` steps of n entries with k running averages."""

    def __init__(self, rows: int, n: int, k: int) -> None:
        self.rows = rows
        self.vec = np.empty((3, rows, n))        # b, g, u
        self.avg = np.empty((rows, k, n))        # the running averages after each step
        self.scratch = np.empty((rows, n))       # block_sums' products
        self.single = np.empty((rows, n), dtype=np.float32)
        self.same = np.empty((rows, n), dtype=bool)


def _stack(rows: list) -> np.ndarray:
    """(m, ...) float64, a new array, from m arrays or lists of one shape (None read as NaN)."""
    return np.array(rows, dtype=np.float64)


def _errors(row: list[float | None]) -> np.ndarray:
    """A gradient check's errors per layer, NaN where there is none."""
    return np.array([math.nan if e is None else e for e in row], dtype=np.float64)


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
