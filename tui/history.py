"""Bounded display history (pure NumPy; no Textual here, so it is easy to test).

`Series` keeps at most `capacity` min/max buckets however many steps arrive: when full, neighbouring
buckets merge and each then covers twice as many steps. `MeanSeries` does the same with bucket means (the
direction strip's cos(u,-g)). Memory stays flat over a million steps while the recording on disk keeps
every step. `BatchBuilder` folds records into the batches the UI applies: each layer's biases and, when a
record has them, its weights (`LayerRows`, one per kind of parameter).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..core import Event, StepRecord


def _merge(x, lo, hi, factor):
    """Merge every `factor` consecutive buckets (the last, partial group too)."""
    n = len(x)
    starts = np.arange(0, n, factor)
    return x[np.minimum(starts + factor, n) - 1], np.fmin.reduceat(lo, starts), np.fmax.reduceat(hi, starts)


class Series:
    """Step-indexed values, bounded: x (step of each bucket's last sample), lo/hi (min/max in it)."""

    def __init__(self, capacity=2048):
        self.capacity = capacity
        self.width = 1  # raw samples per bucket
        self.x = np.empty(0)
        self.lo = np.empty(0)
        self.hi = np.empty(0)
        self._tail_x: list = []
        self._tail_y: list = []
        self.last = math.nan
        self.count = 0

    def extend(self, xs: list, ys: list) -> None:
        """Append values (None: NaN) at steps xs."""
        if not len(xs):
            return
        self.count += len(xs)
        self.last = float(ys[-1]) if ys[-1] is not None else math.nan
        xs = np.asarray(self._tail_x + list(xs), dtype=float)
        ys = np.asarray(self._tail_y + [math.nan if y is None else y for y in ys], dtype=float)
        full = len(xs) // self.width * self.width
        if full:
            x, lo, hi = _merge(xs[:full], ys[:full], ys[:full], self.width)
            self.x = np.concatenate([self.x, x])
            self.lo = np.concatenate([self.lo, lo])
            self.hi = np.concatenate([self.hi, hi])
        self._tail_x, self._tail_y = xs[full:].tolist(), ys[full:].tolist()
        while len(self.x) > self.capacity:
            self.x, self.lo, self.hi = _merge(self.x, self.lo, self.hi, 2)
            self.width *= 2

    def view(self, points: int, upto: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of at most `points` points tracing the min/max envelope, tail included; upto: only the
        buckets whose last step is at or before it (the steps a plot shows)."""
        x = np.concatenate([self.x, self._tail_x])
        lo = np.concatenate([self.lo, self._tail_y])
        hi = np.concatenate([self.hi, self._tail_y])
        if upto is not None:
            keep = int(np.searchsorted(x, upto, side="right"))   # x rises: steps come in order
            x, lo, hi = x[:keep], lo[:keep], hi[:keep]
        buckets = max(1, points // 2)
        if len(x) > buckets:
            x, lo, hi = _merge(x, lo, hi, math.ceil(len(x) / buckets))
        xx = np.repeat(x, 2)
        yy = np.empty(2 * len(x))
        yy[0::2], yy[1::2] = lo, hi
        return xx, yy

    @property
    def nbytes(self) -> int:
        """Bytes held by the buckets."""
        return self.x.nbytes + self.lo.nbytes + self.hi.nbytes

    @property
    def has_values(self) -> bool:
        """Whether any finite value arrived."""
        return bool(np.isfinite(self.hi).any() or any(math.isfinite(y) for y in self._tail_y))


class MeanSeries:
    """Step-indexed values, bounded: at most `capacity` buckets, each with the step of its last sample
    (x), the sum of its finite values and their count. When full, neighbouring buckets merge; a NaN
    (None) adds to no sum, so a bucket of undefined values reads NaN."""

    def __init__(self, capacity=1024):
        self.capacity = capacity
        self.width = 1   # samples per full bucket
        self.fill = 0    # samples in the last bucket (it stays open until it holds `width`)
        self.x = np.empty(0)
        self.total = np.empty(0)
        self.n = np.empty(0)
        self.count = 0

    def extend(self, xs: list, ys: list) -> None:
        """Append values (None: NaN) at steps xs."""
        if not len(xs):
            return
        self.count += len(xs)
        xs = np.asarray(xs, dtype=float)
        ys = np.asarray([math.nan if y is None else y for y in ys], dtype=float)
        finite = np.isfinite(ys)
        ys, ok = np.where(finite, ys, 0.0), finite.astype(float)
        if self.fill and self.fill < self.width:  # top up the open bucket first
            k = min(self.width - self.fill, len(xs))
            self.x[-1] = xs[k - 1]
            self.total[-1] += ys[:k].sum()
            self.n[-1] += ok[:k].sum()
            self.fill += k
            xs, ys, ok = xs[k:], ys[k:], ok[k:]
        if len(xs):
            starts = np.arange(0, len(xs), self.width)
            self.x = np.concatenate([self.x, xs[np.minimum(starts + self.width, len(xs)) - 1]])
            self.total = np.concatenate([self.total, np.add.reduceat(ys, starts)])
            self.n = np.concatenate([self.n, np.add.reduceat(ok, starts)])
            self.fill = len(xs) - starts[-1]
        while len(self.x) > self.capacity:
            odd = len(self.x) % 2
            starts = np.arange(0, len(self.x), 2)
            ends = np.minimum(starts + 2, len(self.x)) - 1
            self.x = self.x[ends]
            self.total, self.n = np.add.reduceat(self.total, starts), np.add.reduceat(self.n, starts)
            if not odd:  # the open bucket merged with the full one before it
                self.fill += self.width
            self.width *= 2

    def view(self, columns: int, x_range: tuple[float, float]) -> np.ndarray:
        """The mean in each of `columns` equal spans of steps from x_range[0] to x_range[1] (NaN: no
        finite value there, or no step yet). A span narrower than a step shows the bucket holding it."""
        out = np.full(columns, math.nan)
        if not len(self.x) or columns < 1:
            return out
        lo, hi = x_range
        edges = lo + np.arange(columns + 1) * ((hi - lo + 1) / columns)
        idx = np.searchsorted(self.x, edges, side="left")   # buckets ending before each edge
        starts = np.floor(edges[:-1])                       # the step each column begins in
        holder = np.searchsorted(self.x, starts, side="left")  # the bucket holding it
        sums = np.concatenate([[0.0], np.cumsum(self.total)])
        counts = np.concatenate([[0.0], np.cumsum(self.n)])
        first, after = idx[:-1], idx[1:]
        inside = (after == first) & (holder < len(self.x))  # no bucket ends in the column: it lies in one
        first, after = np.where(inside, holder, first), np.where(inside, holder + 1, after)
        total, n = sums[after] - sums[first], counts[after] - counts[first]
        np.divide(total, n, out=out, where=n > 0)
        out[starts > self.x[-1]] = math.nan  # after the last step: nothing yet
        return out

    @property
    def last(self) -> float:
        """The newest bucket's mean (NaN: none)."""
        return float(self.total[-1] / self.n[-1]) if len(self.n) and self.n[-1] else math.nan

    @property
    def nbytes(self) -> int:
        """Bytes held by the buckets."""
        return self.x.nbytes + self.total.nbytes + self.n.nbytes


@dataclass
class LayerBatch:
    """One kind of parameter's per-layer values since the last batch: |p| and cos(u,-g) per step, and the
    newest diagnoses."""

    steps: list = field(default_factory=list)     # the steps that had them
    norms: dict = field(default_factory=dict)     # layer -> list of |p|
    cos: dict = field(default_factory=dict)       # layer -> list of cos(u,-g) (None: undefined)
    diag: dict | None = None                      # newest per-layer diagnostics


@dataclass
class Batch:
    """What the UI applies at once: raw per-step values since the last batch, the newest per-layer
    diagnostics, and events. run_id lets the UI drop batches of a run it has left."""

    run_id: str
    steps: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    norms: dict = field(default_factory=dict)     # layer -> list of |b|
    diag: dict | None = None                      # newest per-layer diagnostics
    cos: dict = field(default_factory=dict)       # layer -> list of the biases' cos(u,-g)
    weights: LayerBatch | None = None             # the weights' (None: no record of the batch has them)
    loss_change: dict | None = None
    span: int = 1
    events: list = field(default_factory=list)    # Event
    last_step: int | None = None


class BatchBuilder:
    """Folds records into a Batch; take() hands it over and starts the next."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.batch = Batch(run_id)

    def add(self, record: StepRecord | Event) -> None:
        """Fold one record into the batch being built."""
        b = self.batch
        if type(record) is StepRecord:
            b.steps.append(record.step)
            b.loss.append(record.loss)
            b.val_loss.append(record.val_loss)
            diag, norms, cos = record.diag, b.norms, b.cos
            if diag:
                for name, d in diag.items():
                    norms.setdefault(name, []).append(d.b_norm)
                    cos.setdefault(name, []).append(d.cos)
                b.diag = diag
            elif record.biases is not None:
                for name, vec in record.biases.items():
                    norms.setdefault(name, []).append(float(np.sqrt(np.dot(vec, vec))))
                    cos.setdefault(name, []).append(None)
            weight_diag = record.weight_diag
            if weight_diag:
                w = b.weights if b.weights is not None else LayerBatch()
                b.weights = w
                w.steps.append(record.step)
                for name, d in weight_diag.items():
                    w.norms.setdefault(name, []).append(d.b_norm)
                    w.cos.setdefault(name, []).append(d.cos)
                w.diag = weight_diag
            if record.loss_change is not None:
                b.loss_change = record.loss_change
            if record.span > b.span:
                b.span = record.span
            b.last_step = record.step
        elif isinstance(record, Event):
            b.events.append(record)

    def take(self) -> Batch:
        """The batch built so far; a new one starts."""
        batch, self.batch = self.batch, Batch(self.run_id)
        return batch

    @property
    def empty(self) -> bool:
        """Whether the batch being built has no step and no event."""
        return not self.batch.steps and not self.batch.events


class LayerRows:
    """One kind of parameter (biases or weights) of a run, per layer: |p| and cos(u,-g) over the steps,
    bounded, and the newest diagnoses."""

    def __init__(self) -> None:
        self.norms: dict[str, Series] = {}
        self.cos: dict[str, MeanSeries] = {}
        self.diag: dict = {}

    def extend(self, steps: list, norms: dict, cos: dict, diag: dict | None) -> None:
        """Add the values at `steps` (each layer's list has one per step)."""
        for name, values in norms.items():
            self.norms.setdefault(name, Series()).extend(steps, values)
        for name, values in cos.items():
            self.cos.setdefault(name, MeanSeries()).extend(steps, values)
        if diag is not None:
            self.diag = diag

    @property
    def nbytes(self) -> int:
        """Bytes held by the series."""
        return sum(s.nbytes for s in self.norms.values()) + sum(s.nbytes for s in self.cos.values())


class RunHistory:
    """Everything the panels show of one run, accumulated from batches on the UI thread: the losses, and
    the biases' and the weights' layer rows (the weights' stay empty in a run whose records have none)."""

    def __init__(self, run_id: str, label: str = ""):
        self.run_id = run_id
        self.label = label
        self.loss = Series()
        self.val_loss = Series()
        self.biases = LayerRows()
        self.weights = LayerRows()
        self.loss_change = None
        self.first_step = None
        self.last_step = None
        self.span = 1
        self.diverged = None

    @property
    def norms(self) -> dict[str, Series]:
        """|b| of each layer."""
        return self.biases.norms

    @property
    def diag(self) -> dict:
        """The biases' newest diagnoses."""
        return self.biases.diag

    def apply(self, batch: Batch) -> None:
        """Add a batch of this run's steps and events."""
        self.loss.extend(batch.steps, batch.loss)
        self.val_loss.extend(batch.steps, batch.val_loss)
        self.biases.extend(batch.steps, batch.norms, batch.cos, batch.diag)
        if batch.weights is not None:
            w = batch.weights
            self.weights.extend(w.steps, w.norms, w.cos, w.diag)
        if batch.loss_change is not None:
            self.loss_change = batch.loss_change
        if batch.last_step is not None:
            self.last_step = batch.last_step
            if self.first_step is None:
                self.first_step = batch.steps[0]
        self.span = max(self.span, batch.span)
        for event in batch.events:
            if event.kind == "diverged" and self.diverged is None:
                self.diverged = event

    @property
    def steps(self) -> tuple[int, int] | None:
        """The first and last step shown (None: no step yet)."""
        return None if self.last_step is None else (self.first_step, self.last_step)

    @property
    def nbytes(self) -> int:
        """Bytes held by the run's series."""
        return self.loss.nbytes + self.val_loss.nbytes + self.biases.nbytes + self.weights.nbytes


KINDS = {"biases": "b", "weights": "W"}  # the kinds of parameter, and the short name of each in a row label


def shown_rows(run: RunHistory | None, view: str) -> list[tuple[str, str, LayerRows]]:
    """(label, layer, rows) for each row a view shows: "biases", "weights", or "both" (each layer's bias
    row, then its weight row, labelled "layer b" and "layer W")."""
    if run is None:
        return []
    kinds = list(KINDS) if view == "both" else [view]
    groups = {kind: getattr(run, kind) for kind in kinds}
    names = dict.fromkeys(name for rows in groups.values() for name in [*rows.norms, *rows.cos, *rows.diag])
    return [(f"{name} {KINDS[kind]}" if len(kinds) > 1 else name, name, rows)
            for name in names for kind, rows in groups.items()
            if name in rows.norms or name in rows.cos or name in rows.diag]


def step_range(current: RunHistory | None, previous: RunHistory | None = None) -> tuple[int, int] | None:
    """The steps the plots share: the current run's, from its first to its last step (the previous run,
    faint behind it, is drawn over the same steps: runs compare at equal steps, and a long previous run
    does not squeeze a new one into the plots' first columns); before the current run's first step, the
    previous run's (None: neither has a step). Runs whose steps do not overlap (a stream that goes on
    counting after a restart) share the steps of both, so that the previous one stays in sight."""
    spans = [run.steps for run in (current, previous) if run is not None and run.steps is not None]
    if len(spans) == 2 and (spans[1][0] > spans[0][1] or spans[1][1] < spans[0][0]):
        return min(spans[0][0], spans[1][0]), max(spans[0][1], spans[1][1])
    return spans[0] if spans else None
