"""Reading a record stream back: lines from any source (biasmon's trainer, a recording, an external
trainer) become the same records, deriving what a line leaves out: the update from consecutive biases,
and the diagnostics."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .diagnoser import Diagnoser, Observation
from .errors import StreamError
from .layout import Layout
from .lines import StepLine, Vectors, check_errors, load_line, parse_step, stored_diagnosis
from .readlines import MAX_LINE_CHARS, OVERLONG, Overlong, stream_lines
from .records import Event
from .stream import FORMAT, RESET_EVENTS, VERSION
from .verdicts import Thresholds, loss_diverged

BLOCK = 256  # steps diagnosed together when a whole file is read
MAX_MESSAGE = 300  # characters of a skipped line's message


@dataclass(frozen=True)
class LineProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def _all_finite(arr: np.ndarray) -> bool:
    """True if every entry is finite: one sum (inf/NaN propagate; a sum of finite entries overflowing
    means entries near 1e307, so it is checked entry by entry then)."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(arr.sum())
    return math.isfinite(total) or bool(np.isfinite(arr).all())


class StreamReader:
    """Feed it lines; it returns records (StepRecord, Event). Problems are kept in `problems`.

    recompute=True ignores diagnostics stored in the lines and derives them with `thresholds`.
    block > 1: diagnose that many steps at once (faster; records then come out in bursts, and finish()
    returns the rest). 1: every step's record comes out of the feed() that completes it."""

    def __init__(self, thresholds: Thresholds | None = None, recompute: bool = False, source: str = "<stream>",
                 block: int = 1) -> None:
        self.block = block
        self.thresholds = thresholds or Thresholds()
        self.recompute = recompute
        self.source = source
        self.problems: list[LineProblem] = []
        self.header: dict | None = None
        self.first_header: dict | None = None   # the stream's first header (a later one starts a new run)
        self.last_step: int | None = None
        self.line_no = 0
        self.steps_read = 0
        self.max_span = 1
        self.summed_grads = False     # a line's bias_grads summed the steps it spans (grad_steps > 1)
        self.has_grads: bool | None = None
        self.diverged: Event | None = None   # the stream's first divergence
        self._queue: list[Observation] = []
        self._reset_run()

    def _reset_run(self) -> None:
        self.layout: Layout | None = None
        self.diagnoser: Diagnoser | None = None
        self._pending: Observation | None = None   # the last step, waiting for the next to know its update
        self._grad_check: dict | None = None       # a gradient_check event's errors, for the next step
        self._first_loss: float | None = None

    def _problem(self, message: str) -> list:
        """Count the current line as skipped (the message cut to MAX_MESSAGE characters)."""
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + "..."
        self.problems.append(LineProblem(self.line_no, message))
        return []

    def feed(self, text: str) -> list:
        """One line of text (its newline optional); lines.OVERLONG_LINE for a line skipped as too long."""
        self.line_no += 1
        if type(text) is Overlong or len(text) > MAX_LINE_CHARS + 1:
            return self._problem(OVERLONG)
        text = text.strip()
        if not text:
            return []
        try:
            obj = load_line(text)
        except ValueError as exc:
            return self._problem(str(exc))
        if not isinstance(obj, dict):
            return self._problem("not a JSON object")
        if "format" in obj:
            return self.drain() + self._read_header(obj)
        if "event" in obj:
            return self.drain() + self._read_event(obj)
        try:
            return self._read_step(parse_step(obj, "true" in text or "false" in text))
        except ValueError as exc:
            return self._problem(str(exc))

    def feed_prepared(self, items: list) -> list:
        """The output of lines.prepare_lines (parsed ahead, e.g. in another process): the records that
        feeding the lines themselves gives."""
        out = []
        for item in items:
            if isinstance(item, str):
                out += self.feed(item)
                continue
            self.line_no += 1
            try:
                out += self._read_step(item)
            except ValueError as exc:
                self._problem(str(exc))
        return out

    def finish(self) -> list:
        """At end of input: the last pending step, with its update unknown (and any queued steps)."""
        self._flush_pending(None, None)
        return self.drain()

    # --- lines -----------------------------------------------------------------------------------
    def _read_header(self, obj: dict) -> list:
        if obj.get("format") != FORMAT:
            return self._problem(f"header names format {obj.get('format')!r}, expected {FORMAT!r}")
        if obj.get("version") != VERSION:
            raise StreamError(f"{self.source}: line {self.line_no}: stream format version {obj.get('version')!r} "
                              f"is not supported; this biasmon reads version {VERSION}")
        out = []
        if self.header is not None or self.steps_read:   # a second header: a new run, as a restart says
            last = self._pending.step if self._pending is not None else self.last_step
            out = self.finish()
            self._reset_run()
            out.append(Event("restarted", last if last is not None else 0,
                             {"run_id": obj.get("run_id"), "from": "a second header"}))
        elif self.first_header is None:
            self.first_header = obj
        self.header = obj
        return out

    def _read_event(self, obj: dict) -> list:
        kind, step = obj.get("event"), obj.get("step")
        if not isinstance(kind, str) or not isinstance(step, int) or isinstance(step, bool):
            return self._problem("an event line needs a string 'event' and a whole-number 'step'")
        event = Event.from_json(obj)
        out = []
        if kind in RESET_EVENTS:
            out = self.finish()
            self._reset_run()
        elif kind == "gradient_check" and isinstance(event.data.get("errors"), dict):
            self._grad_check = check_errors(event.data["errors"])
        elif kind == "diverged":
            self.diverged = self.diverged or event
        elif kind == "verdict" and self.recompute:
            return out  # verdicts are re-derived from the step lines
        return out + [event]

    def _check_layers(self, line: StepLine) -> None:
        names, sizes = line.biases.names, line.biases.sizes
        if self.layout is None:
            self.layout = Layout(names, sizes)
            self.diagnoser = Diagnoser(self.layout, self.thresholds)
        elif names != self.layout.names or sizes != self.layout.sizes:
            raise StreamError(f"{self.source}: line {self.line_no}: the bias layers changed within a run: "
                              f"{self.layout.describe()} before, {line.biases.layout.describe()} here (a run keeps "
                              "its layers; a header or a restarted / preset_switched event starts a new run)")
        for key, vecs in (("bias_grads", line.grads), ("bias_updates", line.updates)):
            if vecs is not None and (vecs.names != names or vecs.sizes != sizes):
                raise ValueError(f"'{key}' layers must match 'biases': {self.layout.describe()}, "
                                 f"got {vecs.layout.describe()}")
        if self._pending is not None and line.step <= self._pending.step:
            raise ValueError(f"step {line.step} does not follow step {self._pending.step}")

    def _read_step(self, line: StepLine) -> list:
        self._check_layers(line)
        b, g, u = line.biases.flat, _flat(line.grads), _flat(line.updates)
        loss, val_loss = line.loss, line.val_loss
        nonfinite = () if (math.isfinite(loss) and _all_finite(b) and (g is None or _all_finite(g))
                           and (u is None or _all_finite(u))) else \
            [key for key, v in (("loss", loss), ("biases", b), ("bias_grads", g), ("bias_updates", u))
             if v is not None and not np.isfinite(v).all()]
        if val_loss is not None and not math.isfinite(val_loss):
            self.problems.append(LineProblem(self.line_no, "'val_loss' is not finite: ignored"))
            val_loss = None
        self.steps_read += 1
        self.last_step = line.step
        if self.has_grads is None:
            self.has_grads = g is not None
        if nonfinite:
            self._flush_pending(None, None)
            where = ", ".join(f"'{k}'" for k in nonfinite)
            self.problems.append(LineProblem(self.line_no, f"non-finite value in {where}: read as divergence"))
            parts = self.layout.split(b)
            layer = next((n for n in self.layout.names if not np.isfinite(parts[n]).all()), None)
            return self._diverge(line.step, layer, f"{' and '.join(nonfinite)} not finite")
        out = []
        if self._first_loss is None:
            self._first_loss = loss
        elif loss_diverged(loss, self._first_loss, self.thresholds):
            out = self._diverge(line.step, None, f"loss blew up to {loss:.3g}")
        step = Observation(line.step, loss, val_loss, b, g, None, line.trained, span=line.grad_steps,
                           fd_errors=self._grad_check, stored=None if self.recompute else stored_diagnosis(line),
                           unreached=line.unreached)
        self._grad_check = None
        self._flush_pending(b, line.step)
        if line.grad_steps > 1:
            self.summed_grads = True
            self.max_span = max(self.max_span, line.grad_steps)
        if u is not None:
            step.u = u
            self._queue.append(step)
        else:
            self._pending = step
        return out + (self.drain() if len(self._queue) >= self.block else [])

    def _diverge(self, step: int, layer: str | None, reason: str) -> list:
        """The queued steps' records, then a diverged event (the first divergence of the stream only)."""
        out = self.drain()
        if self.diverged is None:
            self.diverged = Event("diverged", step, {"layer": layer, "reason": reason})
            out.append(self.diverged)
        return out

    def _flush_pending(self, b_next: np.ndarray | None, step_next: int | None) -> None:
        """Queue the pending step, its update now known (b_next - b) or known never to be (b_next None)."""
        step, self._pending = self._pending, None
        if step is None:
            return
        if b_next is not None:
            step.span = step_next - step.step
            self.max_span = max(self.max_span, step.span)
            step.u = b_next - step.b
        self._queue.append(step)

    def drain(self) -> list:
        """The records of the steps queued so far (read, their update known), diagnosed now as one block
        (each record followed by its verdict changes): when `block` of them have come, before an event or a
        header, at the end, or when a follower posts what it read, a few times a second."""
        queue, self._queue = self._queue, []
        if not queue:
            return []
        out = []
        for step, diagnosis in zip(queue, self.diagnoser.observe(queue)):
            diagnosis = step.stored or diagnosis
            out.append(step.record(self.layout, diagnosis))
            out += diagnosis.events
        return out


def _flat(vectors: Vectors | None) -> np.ndarray | None:
    return None if vectors is None else vectors.flat


def read_all(path: str | Path, thresholds: Thresholds | None = None, recompute: bool = False) -> tuple[list, StreamReader]:
    """Every record of a finished stream file, and the reader (problems, header)."""
    reader = StreamReader(thresholds, recompute, source=str(path), block=BLOCK)
    records = []
    for text in stream_lines(path):
        records.extend(reader.feed(text))
    records.extend(reader.finish())
    return records, reader
