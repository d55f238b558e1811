"""Reading a record stream back: lines from any source (biasmon's trainer, a recording, an external
trainer) become the same records, deriving what a line leaves out: the update from consecutive biases,
and the diagnostics."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .diagnoser import Diagnoser, Observation, WeightStep
from .errors import StreamError
from .fastlines import NOT_NUMBERS, Block, Shape, Stop, bad_rows, scan
from .prescan import Scanned
from .layout import Layout
from .lines import StepLine, Vectors, check_errors, load_line, parse_step, stored_diagnosis
from .readlines import MAX_LINE_CHARS, OVERLONG, Overlong, chunks, stream_lines
from .records import Event
from .stream import FORMAT, READ_VERSIONS, RESET_EVENTS
from .verdicts import Thresholds, loss_diverged

BLOCK = 256  # steps diagnosed together when a whole file is read
MAX_MESSAGE = 300  # characters of a skipped line's message


@dataclass(frozen=True)
class LineProblem:
    line: int
    message: str
    divergence: bool = False   # a non-finite value, read as divergence (valid in the format: not malformed)

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def _all_finite(arr: np.ndarray) -> bool:
    """True if every entry is finite: one sum (inf/NaN propagate; a sum of finite entries overflowing
    means entries near 1e307, so it is checked entry by entry then). A short vector is summed in Python
    (its floats overflow to inf without a warning), faster than NumPy's sum with its warnings silenced."""
    if arr.size <= 256:
        total = sum(arr.tolist())
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            total = float(arr.sum())
    return math.isfinite(total) or bool(np.isfinite(arr).all())


class StreamReader:
    """Feed it lines; it returns records (StepRecord, Event). Problems are kept in `problems`.

    recompute=True ignores diagnostics stored in the lines and derives them with `thresholds`.
    block > 1: diagnose that many steps at once (faster; records then come out in bursts, and finish()
    returns the rest). 1: every step's record comes out of the feed() that completes it. every_step False:
    only the last record of each block carries its diagnoses (diag), the others None; verdict events
    come as always, and no record carries its vectors or sums (what `check` needs, faster)."""

    def __init__(self, thresholds: Thresholds | None = None, recompute: bool = False, source: str = "<stream>",
                 block: int = 1, every_step: bool = True) -> None:
        self.block = block
        self.every_step = every_step   # False: a step record's diag only at the end of each block (check)
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
        self.val_ignored = 0          # step lines whose val_loss was not finite (null): read as not given
        self._queue: list[Observation] = []
        self._reset_run()

    def _reset_run(self) -> None:
        self.diverged: Event | None = None         # the run's first divergence
        self.layout: Layout | None = None
        self.diagnoser: Diagnoser | None = None
        self.weight_layout: Layout | None = None   # None: the run logs no weights
        self.weight_diagnoser: Diagnoser | None = None
        self.summary_form = False                  # the run's lines carry sums, not vectors
        self._width = 0                            # summary form: the numbers in a row (7 + 2k)
        self._pending: Observation | None = None   # the last step, waiting for the next to know its update
        self._grad_check: dict | None = None       # a gradient_check event's errors, for the next step
        self._weight_check: dict | None = None     # its weight_errors
        self._first_loss: float | None = None
        self._stored: dict[str, bool] = {}         # param -> the last step line carried its diagnoses
        self._shape: Shape | None = None           # what the run's regular lines hold (read in blocks)
        self._blocks = True                        # False: the run's lines are read line by line

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
        return self._read_object(obj, text)

    def _read_object(self, obj: object, text: str) -> list:
        """A line's JSON value (text: the line, stripped)."""
        if not isinstance(obj, dict):
            return self._problem("not a JSON object")
        if "format" in obj:
            out = self.drain()
            try:
                return out + self._read_header(obj)
            except StreamError as exc:   # a version it cannot read: the steps drained before it go with it
                raise StreamError(str(exc), out + exc.records) from None
        if "event" in obj:
            return self.drain() + self._read_event(obj)
        try:
            line = parse_step(obj, "true" in text or "false" in text)
            out = self._read_step(line)
        except ValueError as exc:
            return self._problem(str(exc))
        if self._shape is None and self._blocks and self.layout is not None and self._first_loss is not None:
            self._shape = Shape.of(obj, line, self.recompute)
            self._blocks = self._shape is not None
        return out

    def feed_lines(self, texts: list[str], scanned: "Scanned | None" = None) -> list:
        """Lines in order: the records feeding them one by one gives. Once a run's first step line is read,
        its regular lines are read in blocks (core/fastlines.py), much faster; `scanned`: the lines' blocks
        as core/prescan.py scanned them ahead (each used where it still fits the reader's state)."""
        out: list = []
        try:
            return self._feed_lines(texts, scanned, out)
        except StreamError as exc:   # a line that stops the reading: what the lines before it gave goes with it
            raise StreamError(str(exc), out + exc.records) from None

    def _feed_lines(self, texts: list[str], scanned: "Scanned | None", out: list) -> list:
        i, k = 0, 0
        ahead = scanned.segments if scanned is not None and self._fits(scanned, texts) else []
        while i < len(texts):
            shape = self._shape
            if shape is None or self._grad_check is not None or \
                    (self._weight_check is not None and self.weight_layout is not None):
                out += self.feed(texts[i])   # (a gradient check's errors go with the next step line)
                i += 1
                continue
            after = self._pending.step if self._pending is not None else -1 if shape.derives else None
            limit = self.block_state()[1]
            while k < len(ahead) and ahead[k].start < i:
                k += 1
            segment = ahead[k] if k < len(ahead) and ahead[k].start == i else None
            if segment is not None and shape == scanned.shape and limit == scanned.limit and \
                    (after is None or segment.block is None or segment.block.steps[0] > after):
                block, stop = segment.block, None if segment.stop is None else Stop(segment.stop, None)
            else:
                block, stop = scan(texts, i, shape, after, limit)
            if stop is NOT_NUMBERS:   # entries NumPy cannot read as numbers: the run goes line by line
                self._shape, self._blocks = None, False
                continue
            if block is not None and shape.summary:
                bad = np.flatnonzero(np.logical_or.reduce([bad_rows(a) for a in block.arrays.values()]))
                if len(bad):   # sums parse_step refuses: that line, and the run's after it, line by line
                    block, stop = block.head(int(bad[0])), Stop(i + int(bad[0]), None)
                    self._shape, self._blocks = None, False
            if block is not None:
                out += self._read_block(block)
            if stop is None:
                break
            i = stop.index + 1
            if stop.obj is None:
                out += self.feed(texts[stop.index])
            else:   # parsed already: read as feed() would
                self.line_no += 1
                out += self._read_object(stop.obj, texts[stop.index].strip())
        return out

    def block_state(self) -> tuple[Shape, float] | None:
        """The run's shape and divergence limit while its regular lines are read in blocks (else None): what
        a chunk is scanned ahead with (core/prescan.py)."""
        if self._shape is None or self._first_loss is None:
            return None
        return self._shape, self.thresholds.diverge_loss * max(1.0, self._first_loss)

    def _fits(self, scanned: "Scanned", texts: list[str]) -> bool:
        """Whether a chunk scanned ahead is these lines (the file may have grown between the two reads)."""
        return scanned.lines == len(texts) and scanned.first == texts[0] and scanned.last == texts[-1]

    def _read_block(self, block: Block) -> list:
        """Regular lines (fastlines.scan) read at once: what _read_step gives for each of them."""
        out = []
        arrays, m, summary = block.arrays, len(block), self.summary_form
        losses = np.asarray(block.loss, dtype=np.float64).tolist()
        if block.val_loss is None:
            vals = [None] * m
        else:
            vals = _val_losses(block.val_loss)
            self.val_ignored += vals.count(None)
        trained = block.trained or [True] * m
        spans = block.grad_steps or [1] * m
        self.line_no += m
        self.steps_read += m
        self.last_step = block.steps[-1]
        if block.grad_steps is not None and max(spans) > 1:
            self.summed_grads = True
            self.max_span = max(self.max_span, max(spans))
        self._stored = {"bias": False, "weight": False}
        if summary:
            bias, weight = arrays.get("bias_sums"), arrays.get("weight_sums")
            queued = True
        else:
            b, g, u = arrays["biases"], arrays.get("bias_grads"), arrays.get("bias_updates")
            w, wg, wu = arrays.get("weights"), arrays.get("weight_grads"), arrays.get("weight_updates")
            queued = not self._shape.derives
            if not queued:   # each line's update, the next line's values less its own (as _flush_pending)
                db = b[1:] - b[:-1]
                dw = None if w is None else w[1:] - w[:-1]
        for i, step_no in enumerate(block.steps):
            loss, val, span = losses[i], vals[i], spans[i]
            if summary:
                step = Observation(step_no, loss, val, None, None, None, trained[i], span=span,
                                   sums=[] if bias is None else bias[i],
                                   sums_have=(False, False) if bias is None else (True, True))
                w_step = None if weight is None else \
                    Observation(step_no, loss, val, None, None, None, span=span, sums=weight[i], sums_have=(True, True))
                b_i = w_i = None
            else:
                b_i = b[i]
                step = Observation(step_no, loss, val, b_i, None if g is None else g[i], None if u is None else u[i],
                                   trained[i], span=span)
                w_i = None if w is None else w[i]
                w_step = None if w is None else Observation(step_no, loss, val, w_i, None if wg is None else wg[i],
                                                            None if wu is None else wu[i], span=span)
            step.weights = w_step
            if i and not queued:   # the line before, in this block: its update one of the differences
                self._flush_pending(b_i, step_no, w_i, db[i - 1], None if dw is None else dw[i - 1])
            else:
                self._flush_pending(b_i, step_no, w_i)
            if queued:
                self._queue.append(step)
            else:
                self._pending = step
            if len(self._queue) >= self.block:
                out += self.drain()
        return out

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
        self._flush_pending(None, None, None)
        return self.drain()

    # --- lines -----------------------------------------------------------------------------------
    def _read_header(self, obj: dict) -> list:
        if obj.get("format") != FORMAT:
            return self._problem(f"header names format {obj.get('format')!r}, expected {FORMAT!r}")
        if obj.get("version") not in READ_VERSIONS or type(obj.get("version")) is not int:
            raise StreamError(f"{self.source}: line {self.line_no}: stream format version {obj.get('version')!r} "
                              f"is not supported; this biasmon reads versions "
                              f"{', '.join(map(str, READ_VERSIONS))}")
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
        elif kind == "gradient_check":
            if isinstance(event.data.get("errors"), dict):
                self._grad_check = check_errors(event.data["errors"])
            if isinstance(event.data.get("weight_errors"), dict):
                self._weight_check = check_errors(event.data["weight_errors"])
        elif kind == "diverged":
            self.diverged = self.diverged or event
        elif kind == "verdict" and (self.recompute or (step == self.last_step and
                                                       not self._stored.get(_param(event.data)))):
            return out  # derived again from its step line (which stored no diagnoses: the summary form)
        return out + [event]

    def _check_layers(self, line: StepLine) -> None:
        """The run's layers are those of its first step line (created then); later lines must match."""
        summary = line.biases is None
        if summary:
            bias, weight = line.bias_sums, line.weight_sums
            width = (bias or weight).width
            if bias is not None and weight is not None and bias.width != weight.width:
                raise ValueError("'bias_sums' and 'weight_sums' need the same running averages (rows of one length)")
            if self.layout is not None and self.summary_form and width != self._width:
                raise StreamError(f"{self.source}: line {self.line_no}: the running averages changed within a run: "
                                  f"rows of {self._width} numbers before, {width} here (a run keeps its form; a "
                                  "header or a restarted / preset_switched event starts a new run)")
            self._width = width
        else:
            bias, weight = line.biases, line.weights
        layers = (bias.names, bias.sizes) if bias is not None else ((), ())
        weight_layers = (weight.names, weight.sizes) if weight is not None else None
        if self.layout is None:
            self._start_run(Layout(*layers), Layout(*weight_layers) if weight_layers else None, line)
        elif summary != self.summary_form or layers != self._layers or weight_layers != self._weight_layers:
            layout, weights = Layout(*layers), Layout(*weight_layers) if weight_layers else None
            raise StreamError(f"{self.source}: line {self.line_no}: the layers changed within a run: "
                              f"{_describe(self.layout, self.weight_layout, self.summary_form)} before, "
                              f"{_describe(layout, weights, summary)} here (a run keeps its layers and form; "
                              "a header or a restarted / preset_switched event starts a new run)")
        if not summary:
            for key, vecs, want in (("bias_grads", line.grads, self.layout), ("bias_updates", line.updates, self.layout),
                                    ("weight_grads", line.weight_grads, self.weight_layout),
                                    ("weight_updates", line.weight_updates, self.weight_layout)):
                if vecs is not None and vecs.layout != want:
                    values = "biases" if key.startswith("bias") else "weights"
                    raise ValueError(f"'{key}' layers must match '{values}': {want.describe()}, "
                                     f"got {vecs.layout.describe()}")
        if self._pending is not None and line.step <= self._pending.step:
            raise ValueError(f"step {line.step} does not follow step {self._pending.step}")

    def _start_run(self, layout: Layout, weights: Layout | None, line: StepLine) -> None:
        """The run's diagnosers, made first (a failure leaves the run unstarted), then its layers."""
        summary = line.biases is None
        averages = (self._width - 7) // 2 if summary else None
        diagnoser = Diagnoser(layout, self.thresholds, averages=averages)
        weight_diagnoser = None if weights is None else \
            Diagnoser(weights, self.thresholds, param="weight", averages=averages)
        float32 = isinstance(self.header, dict) and self.header.get("grad_dtype") == "float32"
        for d in (diagnoser, weight_diagnoser):
            if d is not None:
                d.float32_grads, d.every_step = float32, self.every_step
        self.diagnoser, self.weight_diagnoser = diagnoser, weight_diagnoser
        self.layout, self.weight_layout, self.summary_form = layout, weights, summary
        self._layers = (layout.names, layout.sizes)
        self._weight_layers = (weights.names, weights.sizes) if weights is not None else None

    def _read_step(self, line: StepLine) -> list:
        self._check_layers(line)
        loss, val_loss = line.loss, line.val_loss
        observe = _summary_observations if self.summary_form else _vector_observations
        step, w_step, nonfinite, bad_layer = observe(line, self.layout)
        b, w = step.b, None if w_step is None else w_step.b
        if not math.isfinite(loss):
            nonfinite.insert(0, "loss")
        if val_loss is not None and not math.isfinite(val_loss):   # null (or past float): as not given
            self.val_ignored += 1
            val_loss = step.val_loss = None
        self.steps_read += 1
        self.last_step = line.step
        if self.has_grads is None:
            self.has_grads = step.has_g or (w_step is not None and w_step.has_g)
        if nonfinite:
            self._flush_pending(None, None, None)
            where = ", ".join(f"'{k}'" for k in nonfinite)
            self.problems.append(LineProblem(self.line_no, f"non-finite value in {where}: read as divergence", True))
            return self._diverge(line.step, bad_layer, f"{' and '.join(nonfinite)} not finite")
        out = []
        if self._first_loss is None:
            self._first_loss = loss
        elif loss_diverged(loss, self._first_loss, self.thresholds):
            out = self._diverge(line.step, None, f"loss blew up to {loss:.3g}")
        step.fd_errors, self._grad_check = self._grad_check, None
        if w_step is not None:
            w_step.fd_errors, self._weight_check = self._weight_check, None
            w_step.stored = None if self.recompute else stored_diagnosis(line, "weight_diag")
        step.stored = None if self.recompute else stored_diagnosis(line)
        self._stored = {"bias": step.stored is not None, "weight": w_step is not None and w_step.stored is not None}
        step.weights = w_step
        self._flush_pending(b, line.step, w)
        if line.grad_steps > 1:
            self.summed_grads = True
            self.max_span = max(self.max_span, line.grad_steps)
        if self.summary_form or (step.has_u and (w_step is None or w_step.has_u)):
            self._queue.append(step)
        else:
            self._pending = step
        return out + (self.drain() if len(self._queue) >= self.block else [])

    def _diverge(self, step: int, layer: str | None, reason: str) -> list:
        """The queued steps' records, then a diverged event (the first divergence of the run only)."""
        out = self.drain()
        if self.diverged is None:
            self.diverged = Event("diverged", step, {"layer": layer, "reason": reason})
            out.append(self.diverged)
        return out

    def _flush_pending(self, b_next: np.ndarray | None, step_next: int | None, w_next: np.ndarray | None,
                       db: np.ndarray | None = None, dw: np.ndarray | None = None) -> None:
        """Queue the pending step, its update now known (b_next - b, w_next - w where not logged; db, dw:
        those differences, taken for a whole block at once) or known never to be (b_next None)."""
        step, self._pending = self._pending, None
        if step is None:
            return
        if b_next is not None:
            step.span = step_next - step.step
            self.max_span = max(self.max_span, step.span)
            if step.u is None:
                step.u = b_next - step.b if db is None else db
            if step.weights is not None and step.weights.u is None:
                step.weights.u = w_next - step.weights.b if dw is None else dw
                step.weights.span = step.span
        self._queue.append(step)

    def drain(self) -> list:
        """The records of the steps queued so far (read, their update known), diagnosed now as one block
        (each record followed by its verdict changes): when `block` of them have come, before an event or a
        header, at the end, or when a follower posts what it read, a few times a second."""
        queue, self._queue = self._queue, []
        if not queue:
            return []
        weights = [o.weights for o in queue if o.weights is not None]
        for o in queue if weights else ():
            o.extra_pred, o.weights.extra_pred = _first_order(o.weights), _first_order(o)
        w_diagnoses = iter(self.weight_diagnoser.observe(weights)) if weights else None
        out = []
        for step, diagnosis in zip(queue, self.diagnoser.observe(queue)):
            diagnosis = step.stored or diagnosis
            w = None
            if step.weights is not None:
                w_diagnosis = next(w_diagnoses)
                w = WeightStep(self.weight_layout, step.weights, step.weights.stored or w_diagnosis)
            out.append(step.record(self.layout, diagnosis, w, values=self.every_step))
            out += diagnosis.events
            if w is not None:
                out += w.diagnosis.events
        return out


def _val_losses(values: list) -> list[float | None]:
    """A block's val_loss as floats, None where not finite (null reads as NaN), as _read_step reads each."""
    arr = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(arr)
    if finite.all():
        return arr.tolist()
    return [v if ok else None for v, ok in zip(arr.tolist(), finite.tolist())]


def _param(data: dict) -> str | None:
    """A verdict event's param ("bias" if absent), None if it is not text."""
    value = data.get("param", "bias")
    return value if isinstance(value, str) else None


def _first_order(o: Observation) -> float:
    """g . u of one step's parameters (0 where either is not known): their part of the loss change."""
    if isinstance(o.sums, np.ndarray):   # read in a block: every number finite
        return float(sum(o.sums[:, 4].tolist()))
    if o.sums is not None:
        return float(sum(row[4] for row in o.sums if row[4] is not None and math.isfinite(row[4])))
    if o.g is None or o.u is None:
        return 0.0
    return float(o.g @ o.u)


def _vector_observations(line: StepLine, layout: Layout) -> tuple[Observation, Observation | None, list[str], str | None]:
    """A vector-form line's observations (biases, weights or None), the keys holding a value that is not
    finite (divergence), and the first bias layer with such a value."""
    b, g, u = line.biases.flat, _flat(line.grads), _flat(line.updates)
    w, wg, wu = _flat(line.weights), _flat(line.weight_grads), _flat(line.weight_updates)
    parts = (("biases", b), ("bias_grads", g), ("bias_updates", u), ("weights", w), ("weight_grads", wg),
             ("weight_updates", wu))
    nonfinite = [key for key, v in parts if v is not None and not _all_finite(v)]
    bad_layer = None
    if "biases" in nonfinite:
        split = layout.split(b)
        bad_layer = next((n for n in layout.names if not np.isfinite(split[n]).all()), None)
    step = Observation(line.step, line.loss, line.val_loss, b, g, u, line.trained, span=line.grad_steps,
                       unreached=line.unreached)
    w_step = None if w is None else Observation(line.step, line.loss, line.val_loss, w, wg, wu,
                                                span=line.grad_steps, unreached=line.weight_unreached)
    return step, w_step, nonfinite, bad_layer


def _summary_observations(line: StepLine, layout: Layout) -> tuple[Observation, Observation | None, list[str], str | None]:
    """A summary-form line's observations (biases, weights or None), the keys holding a value that reads as
    divergence (a parameter, gradient or update sum not finite), and the first bias layer concerned
    (layout: unused, the rows name their layers)."""
    out, nonfinite, bad_layer = [], [], None
    isfinite = math.isfinite
    for key, sums in (("bias_sums", line.bias_sums), ("weight_sums", line.weight_sums)):
        if sums is None:
            out.append(None if key == "weight_sums" else _observation(line, [], line.trained))
            continue
        bad = [i for i, row in enumerate(sums.rows) if row[1] is None or not isfinite(row[1])
               or (row[2] is not None and not isfinite(row[2])) or (row[3] is not None and not isfinite(row[3]))]
        if bad:
            nonfinite.append(key)
            if key == "bias_sums":
                bad_layer = sums.names[bad[0]]
        out.append(_observation(line, sums.rows, line.trained if key == "bias_sums" else True))
    return out[0], out[1], nonfinite, bad_layer


def _observation(line: StepLine, rows: list, trained: bool) -> Observation:
    """The Observation of one kind's sums (rows as read). The gradient was logged if some layer has |g|^2,
    or says no gradient reached it (|g|^2 null, its counts 0); a layer whose |g|^2 is null is then one no
    gradient reached (the diagnoser reads its gradient's sums as 0, as a null vector's zeros). All null,
    counts too: no gradient logged. The update is known if any layer's |u|^2 is."""
    no_g = [row[2] is None for row in rows]
    has_g = bool(rows) and (not all(no_g) or any(row[5] is not None for row in rows))
    has_u = any(row[3] is not None for row in rows)
    return Observation(line.step, line.loss, line.val_loss, None, None, None, trained, span=line.grad_steps,
                       sums=rows, unreached=tuple(no_g) if has_g and any(no_g) else None,
                       sums_have=(has_g, has_u))


def _describe(layout: Layout, weights: Layout | None, summary: bool) -> str:
    """'a[16], b[1]' with ' and weights w[32]' and ' (sums)' as they apply, for messages."""
    return (layout.describe() + (f" and weights {weights.describe()}" if weights is not None else "")
            + (" (sums)" if summary else ""))


def _flat(vectors: Vectors | None) -> np.ndarray | None:
    return None if vectors is None else vectors.flat


def read_all(path: str | Path, thresholds: Thresholds | None = None, recompute: bool = False) -> tuple[list, StreamReader]:
    """Every record of a finished stream file, and the reader (problems, header)."""
    reader = StreamReader(thresholds, recompute, source=str(path), block=BLOCK)
    records = []
    for texts in chunks(stream_lines(path), BLOCK):
        records.extend(reader.feed_lines(texts))
    records.extend(reader.finish())
    return records, reader
