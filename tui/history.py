"""Bounded display history (pure NumPy; no Textual here, so it is easy to test).

`Series` keeps at most `capacity` min/max buckets however many steps arrive: when full, neighbouring
buckets merge and each then covers twice as many steps. Memory stays flat over a million steps while
the recording on disk keeps every step. `BatchBuilder` folds records into the batches the UI applies.
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

    def view(self, points: int) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of at most `points` points tracing the min/max envelope, tail included."""
        x = np.concatenate([self.x, self._tail_x])
        lo = np.concatenate([self.lo, self._tail_y])
        hi = np.concatenate([self.hi, self._tail_y])
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
            diag, norms = record.diag, b.norms
            if diag:
                for name, d in diag.items():
                    norms.setdefault(name, []).append(d.b_norm)
                b.diag = diag
            elif record.biases is not None:
                for name, vec in record.biases.items():
                    norms.setdefault(name, []).append(float(np.sqrt(np.dot(vec, vec))))
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


class RunHistory:
    """Everything the panels show of one run, accumulated from batches on the UI thread."""

    def __init__(self, run_id: str, label: str = ""):
        self.run_id = run_id
        self.label = label
        self.loss = Series()
        self.val_loss = Series()
        self.norms: dict[str, Series] = {}
        self.diag: dict = {}
        self.loss_change = None
        self.first_step = None
        self.last_step = None
        self.span = 1
        self.diverged = None

    def apply(self, batch: Batch) -> None:
        """Add a batch of this run's steps and events."""
        self.loss.extend(batch.steps, batch.loss)
        self.val_loss.extend(batch.steps, batch.val_loss)
        for name, values in batch.norms.items():
            self.norms.setdefault(name, Series()).extend(batch.steps, values)
        if batch.diag is not None:
            self.diag = batch.diag
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
        return self.loss.nbytes + self.val_loss.nbytes + sum(s.nbytes for s in self.norms.values())


def step_range(*runs: RunHistory | None) -> tuple[int, int] | None:
    """The steps from the first to the last shown of these runs (None: no step yet): the plots share it."""
    spans = [run.steps for run in runs if run is not None and run.steps is not None]
    return (min(s[0] for s in spans), max(s[1] for s in spans)) if spans else None
