"""StreamWriter: log a step of your own trainer as a biasmon stream line (docs/stream-format.md).

    from biasmon import StreamWriter

    with StreamWriter("run.jsonl") as log:
        for step in range(steps):
            ...                                  # forward, backward: loss, grads at the current biases
            log.step(step, loss, biases={"hidden": b1, "out": b2}, bias_grads={"hidden": g1, "out": g2})
            ...                                  # then update the biases

`biases` are the bias vectors at which `loss` and `bias_grads` were computed (before this step's update);
biasmon derives the update from consecutive steps unless `bias_updates` is given. Every line is flushed,
so `biasmon watch run.jsonl` can follow the run and a crash loses at most the line being written.

With `loss_at` (a function of a {layer: bias vector} dict returning the loss at those biases, all else
held fixed) it also runs the finite-difference gradient check every `check_every` steps and writes a
`gradient_check` event, so a trainer whose gradient itself is wrong is flagged `gradient mismatch`. A
`loss_at` that gives two different losses at the same biases (dropout, a different batch each call) is
reported as such (the event carries `nondeterministic` and a `note`, no errors), never as a mismatch.

With `every=k` it writes one line per k calls: the biases and loss of the span's first step, the
gradients of its k steps summed (`grad_steps: k`) and, if given, their updates summed, so the update
derived from consecutive lines is the one the summed gradient drove. A layer whose gradient is None
(no gradient reached it) is written as null.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np

from . import __version__
from .errors import BiasmonError
from .gradcheck import check_gradient, differs
from .layout import Layout
from .records import Event, _vectors, json_number
from .spans import Logged, Span as _Span
from .summary_form import SummaryLines, average_names
from .stream import RecordWriter, header, open_target
from .verdicts import Thresholds


def _flat(name: object, key: str, value: Any) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise BiasmonError(f"StreamWriter: {key}[{name!r}] must be a vector of numbers, "
                           f"got {type(value).__name__}") from None
    return arr.reshape(-1)


FORMS = ("vectors", "sums")


class StreamWriter:
    """Writes a biasmon stream: a header line, then one flushed JSON line per `step()` call.

    target: a path (opened for writing, truncated) or an open text file (left open by close()).
    loss_at: optional f({layer: ndarray}) -> float, the loss at the given biases; with it a
        finite-difference gradient check runs at step 0 and every `check_every` steps (0: never), on the
        single step's gradient (with every > 1: at the first step of a span).
    every: write one line per `every` calls, its gradients (and updates) summed over them.
    run_id, meta: optional identification written into the header.
    """

    def __init__(self, target: str | os.PathLike[str] | TextIO, *,
                 loss_at: Callable[[dict[str, np.ndarray]], float] | None = None, check_every: int = 100,
                 fd_tolerance: float | None = None, run_id: str | None = None,
                 meta: dict[str, Any] | None = None, every: int = 1, form: str = "vectors",
                 averages: tuple[float, ...] | None = None) -> None:
        self._handle, self._owns = open_target(target, "StreamWriter")
        if check_every is None or check_every < 0:
            raise BiasmonError(f"StreamWriter: check_every must be a whole number >= 0, got {check_every!r}")
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise BiasmonError(f"StreamWriter: every must be a whole number >= 1, got {every!r}")
        self.every = int(every)
        if form not in FORMS:
            raise BiasmonError(f"StreamWriter: form must be one of {', '.join(FORMS)}, got {form!r}")
        self.form = form
        betas = Thresholds().momentum_betas if averages is None else tuple(float(b) for b in averages)
        self._sums = SummaryLines(betas) if form == "sums" else None
        self.weight_layout: Layout | None = None
        self._float32_grads: bool | None = None   # every gradient given so far was float32 (summary form)
        self._span: _Span | None = None   # the line being summed (every > 1)
        self._last_check_step: int | None = None
        self._writer = RecordWriter(self._handle)
        self.loss_at = loss_at
        self.check_every = int(check_every)
        self.fd_tolerance = Thresholds().fd_tolerance if fd_tolerance is None else float(fd_tolerance)
        self.run_id = run_id or f"run-{uuid.uuid4().hex[:8]}"
        self.meta = meta
        self.layout = None
        self.last_check = None   # the last gradient check's {layer: relative error}
        self._header_written = False
        self._last_step = None
        self.closed = False

    # --- public ----------------------------------------------------------------------------------
    def step(self, step: int | np.integer, loss: float, biases: dict[str, Any],
             bias_grads: dict[str, Any] | None = None, val_loss: float | None = None,
             bias_updates: dict[str, Any] | None = None, *, weights: dict[str, Any] | None = None,
             weight_grads: dict[str, Any] | None = None, weight_updates: dict[str, Any] | None = None) -> None:
        """Log one step. biases/bias_grads/bias_updates: {layer: vector}, the same layers every step;
        weights/weight_grads/weight_updates the same for the layers' weights (any shape, flattened), if
        they are to be judged too."""
        if self.closed:
            raise BiasmonError("StreamWriter: step() after close()")
        if not isinstance(step, (int, np.integer)) or isinstance(step, bool) or step < 0:
            raise BiasmonError(f"StreamWriter: step must be a whole number >= 0, got {step!r}")
        step = int(step)
        loss = _number(step, "loss", loss)
        val_loss = None if val_loss is None else _number(step, "val_loss", val_loss)
        if self._last_step is not None and step <= self._last_step:
            raise BiasmonError(f"StreamWriter: step {step} does not follow step {self._last_step}")
        first = self._last_step is None
        if (weights is None) != (self.weight_layout is None) and not first:
            raise BiasmonError(f"StreamWriter: step {step}: weights must be logged at every step or at none "
                               f"(the first step {'did not log' if weights is not None else 'logged'} them)")
        if first:   # the header says whether the summary form's sums are of float32 gradients
            self._float32_grads = bias_grads is not None and all(
                getattr(v, "dtype", None) == np.float32 for grads in (bias_grads, weight_grads)
                if isinstance(grads, dict) for v in grads.values() if v is not None)
        kinds = {"bias": self._logged(step, "biases", biases, bias_grads, bias_updates)}
        if weights is not None:
            kinds["weight"] = self._logged(step, "weights", weights, weight_grads, weight_updates)
        self._ensure_header()
        starts_line = self.every == 1 or self._span is None or self._span.count == self.every
        if starts_line:   # the lines before this one are written first: a check event applies to the next line
            self._write_span()
            for done in self._sums.complete(kinds) if self._sums is not None else ():
                self._writer.write_json(done, allow_nan=True)
        b, g = kinds["bias"].values, kinds["bias"].grads
        if self.loss_at is not None and g is not None and self.check_due(step):
            self._gradient_check(step, b, g)
        if self.every == 1:   # a line refused as too long leaves the step unlogged: it may come again
            self._write(step, loss, val_loss, kinds, None)
        elif starts_line:
            self._span = _Span(step, loss, val_loss, kinds)
        else:
            self._span.add(kinds)
        self._last_step = step

    def _logged(self, step: int, key: str, values: Any, grads: Any, updates: Any) -> Logged:
        """One kind's vectors, checked against the layers of the first step (key: biases or weights)."""
        if not isinstance(values, dict):
            raise BiasmonError(f"StreamWriter: {key} must be a dict of layer name -> vector")
        flat = {str(name): _flat(name, key, v) for name, v in values.items()}
        layout = Layout(tuple(flat), tuple(v.size for v in flat.values()))
        attr = "layout" if key == "biases" else "weight_layout"
        known = getattr(self, attr)
        if known is None:
            setattr(self, attr, layout)
        elif layout != known:
            raise BiasmonError(f"StreamWriter: step {step}: {key} layers changed from {known.describe()} "
                               f"to {layout.describe()}")
        prefix = "bias" if key == "biases" else "weight"
        g, unreached = self._grads(f"{prefix}_grads", grads, step, layout)
        return Logged(flat, g, self._same_layout(f"{prefix}_updates", updates, step, layout), unreached)

    def check_due(self, step: int) -> bool:
        """Whether a gradient check is due if step(step, ...) is called next: at the first step, then every
        `check_every` steps; with every > 1 only at the first step of a span (a single step's gradient)."""
        if not self.check_every:
            return False
        if self.every > 1 and not (self._span is None or self._span.count == self.every):
            return False
        if self._last_check_step is None:
            return True
        if self.every == 1:
            return step % self.check_every == 0
        return step // self.check_every > self._last_check_step // self.check_every

    def gradient_check_event(self, step: int, data: dict[str, Any]) -> None:
        """Write a gradient_check event for `step` (a check made elsewhere, e.g. the PyTorch helper's)."""
        self._ensure_header()
        self._last_check_step = step
        if isinstance(data.get("errors"), dict):
            self.last_check = data["errors"]
        self._writer.write(Event("gradient_check", step, data))

    def event(self, kind: str, step: int, **data: Any) -> None:
        """Write an event line, e.g. event("diverged", 120, reason="loss is NaN")."""
        self._ensure_header()
        self._writer.write(Event(str(kind), int(step), data))

    def close(self) -> None:
        """Write the header if nothing was logged, then close the file (an open file given: flush it)."""
        if self.closed:
            return
        try:
            self._write_span()
            self._ensure_header()
            for line in self._sums.finish() if self._sums is not None else ():
                self._writer.write_json(line, allow_nan=True)
        finally:   # a last line refused (too long) still closes the file
            self.closed = True
            if self._owns:
                self._handle.close()
            else:
                self._handle.flush()

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, *exc: object) -> bool:
        self.close()
        return False

    # --- internals -------------------------------------------------------------------------------
    def _same_layout(self, key: str, vectors: dict[str, Any] | None, step: int,
                     layout: Layout) -> dict[str, np.ndarray] | None:
        if vectors is None:
            return None
        if not isinstance(vectors, dict):
            raise BiasmonError(f"StreamWriter: {key} must be a dict of layer name -> vector")
        out = {str(name): _flat(name, key, v) for name, v in vectors.items()}
        if Layout(tuple(out), tuple(v.size for v in out.values())) != layout:
            values = "biases" if key.startswith("bias") else "weights"
            raise BiasmonError(f"StreamWriter: step {step}: {key} must have the layers of {values}: "
                               f"{layout.describe()}")
        return out

    def _ensure_header(self) -> None:
        if self._header_written:
            return
        fields = {"biasmon": __version__, "writer": "biasmon.StreamWriter"}
        if self.layout is not None:
            fields["layers"] = self.layout.to_json()
        if self.weight_layout is not None:
            fields["weights"] = self.weight_layout.to_json()
        if self._sums is not None:
            fields["form"] = "sums"
            fields["averages"] = average_names(self._sums.betas)
            if self._float32_grads:
                fields["grad_dtype"] = "float32"
        if self.meta:
            fields["meta"] = self.meta
        version = 2 if self.weight_layout is not None or self._sums is not None else 1
        self._writer.write_json(header(self.run_id, version, **fields))
        self._header_written = True

    def _grads(self, key: str, vectors: dict[str, Any] | None, step: int,
               layout: Layout) -> tuple[dict | None, tuple | None]:
        """Gradients as {layer: vector}, a None layer as zeros, and which layers were None (or None)."""
        if not isinstance(vectors, dict) or all(v is not None for v in vectors.values()):
            return self._same_layout(key, vectors, step, layout), None
        sizes = dict(zip(layout.names, layout.sizes))
        filled = {name: np.zeros(sizes.get(str(name), 0)) if v is None else v for name, v in vectors.items()}
        return self._same_layout(key, filled, step, layout), tuple(v is None for v in vectors.values())

    def _write(self, step: int, loss: float, val_loss: float | None, kinds: dict[str, Logged],
               grad_steps: int | None) -> None:
        """A step line (or, in the summary form, the lines now complete): null for each layer no gradient
        reached, and grad_steps if given."""
        line = {"step": step, "loss": json_number(loss)}
        if val_loss is not None:
            line["val_loss"] = json_number(val_loss)
        if grad_steps is not None:
            line["grad_steps"] = grad_steps
        if self._sums is not None:
            layouts = {"bias": self.layout, "weight": self.weight_layout}
            for done in self._sums.push(line, kinds, layouts):
                self._writer.write_json(done, allow_nan=True)
            return
        for kind, logged in kinds.items():
            keys = ("biases", "bias_grads", "bias_updates") if kind == "bias" else \
                ("weights", "weight_grads", "weight_updates")
            line[keys[0]] = _vectors(logged.values)
            if logged.grads is not None:
                line[keys[1]] = _vectors(logged.grads)
                if logged.unreached is not None:
                    line[keys[1]] = {n: None if off else v for (n, v), off in zip(line[keys[1]].items(), logged.unreached)}
            if logged.updates is not None:
                line[keys[2]] = _vectors(logged.updates)
        if grad_steps is not None:   # after the vectors, as before
            line["grad_steps"] = line.pop("grad_steps")
        self._writer.write_json(line)

    def _write_span(self) -> None:
        span, self._span = self._span, None
        if span is not None:
            self._write(span.step, span.loss, span.val_loss, span.kinds, span.count)

    def _gradient_check(self, step: int, b: dict[str, np.ndarray], g: dict[str, np.ndarray]) -> None:
        layout = self.layout

        def loss_flat(flat: np.ndarray) -> float:
            return float(self.loss_at({n: v.copy() for n, v in layout.split(flat).items()}))

        b_flat = np.concatenate(list(b.values())) if b else np.zeros(0)
        g_flat = np.concatenate(list(g.values())) if g else np.zeros(0)
        if not (np.all(np.isfinite(b_flat)) and np.all(np.isfinite(g_flat))):
            return
        first, second = loss_flat(b_flat), loss_flat(b_flat)
        if differs(first, second):
            self.gradient_check_event(step, {"nondeterministic": True, "losses": [json_number(first), json_number(second)],
                                             "note": NONDETERMINISTIC.format(first, second)})
            return
        checked = check_gradient(loss_flat, b_flat, g_flat, layout, tolerance=self.fd_tolerance)
        errors, undecided = checked.errors, {n: k for n, k in checked.undecided.items() if k}
        self.gradient_check_event(step, {"errors": {n: json_number(e) for n, e in errors.items()},
                                         **({"undecided": undecided} if undecided else {})})
        self.last_check = errors


NONDETERMINISTIC = ("loss_at is not deterministic: two calls at the same biases gave {:.10g} and {:.10g} "
                    "(dropout? a different batch each call?): no gradient check")


def _number(step: int, key: str, value: Any) -> float:
    """value as a float (a Python or NumPy number, a 0-d array or tensor; NaN and infinities are a
    divergence, written as null), or a one-line BiasmonError naming the step and the key."""
    if not isinstance(value, (str, bytes, bool)):
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError):
            pass
    shown = " ".join(repr(value).split())[:40]   # one line: an array's repr spans several
    raise BiasmonError(f"StreamWriter: step {step}: {key} must be a number, got {type(value).__name__} {shown}")
