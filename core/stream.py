"""The record stream: JSON Lines, one header line (optional), step lines and event lines.

Written line by line and flushed, so a file cut off anywhere loses at most its last line. The reader
turns lines from any source (biasmon's trainer, a recording, an external trainer) into the same
records, deriving what a line leaves out: the update from consecutive biases, the diagnostics.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from .diagnostics import Diagnoser, Layout, Thresholds
from .errors import StreamError
from .records import Event, LayerVectors, StepRecord

FORMAT = "biasmon-stream"
VERSION = 1
RESET_EVENTS = ("preset_switched", "restarted")
BLOCK = 256  # steps diagnosed together when a whole file is read


class RecordWriter:
    """Writes records to an open text file, one flushed line each."""

    def __init__(self, handle):
        self.handle = handle

    def write_json(self, obj: dict) -> None:
        self.handle.write(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
        self.handle.flush()

    def write(self, record) -> None:
        self.write_json(record.to_json())


@dataclass(frozen=True)
class LineProblem:
    line: int
    message: str

    def __str__(self):
        return f"line {self.line}: {self.message}"


def _vectors(obj, key, strict_types=False):
    """obj[key] as (layer names, sizes, flat read-only float64 array), or None if absent.

    A null entry stands for a non-finite value (JSON has no NaN) and reads as NaN. The fast path lets
    NumPy convert the numbers; anything it cannot take as plain floats (null, strings, nested lists,
    huge integers, or true/false anywhere on the line: strict_types) goes through the entry-by-entry check."""
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not dict:
        raise ValueError(f"'{key}' must be an object of layer name -> list of numbers")
    flat, sizes = [], []
    for name, vec in value.items():
        if type(vec) is not list:
            raise ValueError(f"'{key}.{name}' must be a list of numbers, got {type(vec).__name__}")
        if not vec:
            raise ValueError(f"'{key}.{name}' is empty: a layer needs at least one bias")
        flat += vec
        sizes.append(len(vec))
    arr = None
    if not strict_types:
        try:
            arr = np.array(flat)
        except (ValueError, TypeError, OverflowError):
            arr = None
    if arr is None or arr.dtype.kind != "f" or arr.ndim != 1:
        arr = _checked_numbers(key, value)
    arr.flags.writeable = False
    return tuple(value), tuple(sizes), arr


def _all_finite(arr):
    """True if every entry is finite: one sum (inf/NaN propagate; a sum of finite entries overflowing
    means entries near 1e307, so it is checked entry by entry then)."""
    total = float(arr.sum())
    return math.isfinite(total) or bool(np.isfinite(arr).all())


def _checked_numbers(key, value):
    return np.asarray([_as_float(v, f"{key}.{name}[{i}]") for name, vec in value.items() for i, v in enumerate(vec)],
                      dtype=np.float64)


def _number(obj, key, required=False):
    """obj[key] as a float; None if absent (or, if required, a ValueError); null reads as NaN."""
    if key not in obj:
        if required:
            raise ValueError(f"'{key}' is missing")
        return None
    return _as_float(obj[key], key)


def _as_float(value, where):
    """A JSON value as a float: null reads as NaN, an integer too big for a float as +-inf; anything
    else that is not a number is a ValueError naming `where`."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"'{where}' must be a number (or null for a non-finite value), got {json.dumps(value)[:40]}")
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def parse_step(obj, strict_types=False):
    """The fields of a step line (a dict), checked for types but not against the stream so far.
    strict_types: check entry by entry (the line holds true/false somewhere). Raises ValueError."""
    step = obj.get("step")
    if type(step) is not int or step < 0:
        raise ValueError(f"'step' must be a whole number >= 0, got {json.dumps(step)[:40]}")
    loss = _number(obj, "loss", required=True)
    val_loss = _number(obj, "val_loss")
    biases = _vectors(obj, "biases", strict_types)
    if biases is None:
        raise ValueError("'biases' is missing (an object of layer name -> list of numbers)")
    grads = _vectors(obj, "bias_grads", strict_types)
    updates = _vectors(obj, "bias_updates", strict_types)
    trained = obj.get("bias_trained", True)
    if type(trained) is not bool:
        raise ValueError(f"'bias_trained' must be true or false, got {json.dumps(trained)[:40]}")
    return step, loss, val_loss, biases, grads, updates, trained, obj.get("diag"), obj.get("loss_change")


def _packed(vectors):
    return None if vectors is None else (vectors[0], vectors[1], vectors[2].tobytes())


def _unpacked(vectors):
    return None if vectors is None else (vectors[0], vectors[1], np.frombuffer(vectors[2], dtype=np.float64))


def prepare_lines(lines):
    """Parse lines ahead of a StreamReader, e.g. in another process: a list of ("step", packed fields) for
    well-formed step lines (vectors as bytes, cheap to pass between processes) and ("text", line) for
    anything else (header, event, blank or bad line), which the reader then reads itself."""
    out = []
    for text in lines:
        stripped = text.strip()
        try:
            obj = json.loads(stripped) if stripped.startswith("{") else None
        except (json.JSONDecodeError, RecursionError):
            obj = None
        if type(obj) is not dict or "format" in obj or "event" in obj:
            out.append(("text", text))
            continue
        try:
            step, loss, val_loss, b, g, u, trained, diag, change = parse_step(
                obj, "true" in stripped or "false" in stripped)
        except ValueError:
            out.append(("text", text))
            continue
        out.append(("step", (step, loss, val_loss, _packed(b), _packed(g), _packed(u), trained, diag, change)))
    return out


def feed_prepared(reader, items) -> list:
    """Feed `prepare_lines` output to a StreamReader; the records, as feeding the lines would give."""
    out = []
    for kind, value in items:
        if kind == "text":
            out += reader.feed(value)
        else:
            step, loss, val_loss, b, g, u, trained, diag, change = value
            out += reader.feed_parsed((step, loss, val_loss, _unpacked(b), _unpacked(g), _unpacked(u),
                                       trained, diag, change))
    return out


class StreamReader:
    """Feed it lines; it returns records (StepRecord, Event). Problems are kept in `problems`.

    recompute=True ignores diagnostics stored in the lines and derives them with `thresholds`."""

    def __init__(self, thresholds: Thresholds | None = None, recompute=False, source="<stream>", block=1):
        """block > 1: diagnose that many steps at once (faster; records then come out in bursts, and
        finish() returns the rest). 1: every step's record comes out of the feed() that completes it."""
        self.block = block
        self._queue = []
        self.thresholds = thresholds or Thresholds()
        self.recompute = recompute
        self.source = source
        self.problems: list[LineProblem] = []
        self.header = None
        self.line_no = 0
        self.steps_read = 0
        self.max_span = 1
        self.has_grads = None
        self.diverged = None
        self._reset_run()

    def _reset_run(self):
        self.layout = None
        self.diagnoser = None
        self._pending = None
        self._pending_grad_check = None
        self._first_loss = None

    def _problem(self, message):
        self.problems.append(LineProblem(self.line_no, message))
        return []

    def feed(self, text: str) -> list:
        """One line of text (its newline optional)."""
        self.line_no += 1
        text = text.strip()
        if not text:
            return []
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return self._problem("not JSON (truncated or malformed line)")
        if not isinstance(obj, dict):
            return self._problem("not a JSON object")
        if "format" in obj:
            return self._read_header(obj)
        if "event" in obj:
            return self._read_event(obj)
        try:
            return self._read_step(obj, "true" in text or "false" in text)
        except ValueError as exc:
            return self._problem(str(exc))

    def finish(self) -> list:
        """At end of input: the last pending step, with its update unknown (and any queued steps)."""
        out = self._drain()
        return out + self._flush_pending(None, None)

    # --- lines -----------------------------------------------------------------------------------
    def _read_header(self, obj):
        if self._queue:
            return self._drain() + self._read_header(obj)
        if obj.get("format") != FORMAT:
            return self._problem(f"header names format {obj.get('format')!r}, expected {FORMAT!r}")
        if obj.get("version") != VERSION:
            raise StreamError(f"{self.source}: line {self.line_no}: stream format version {obj.get('version')!r} "
                              f"is not supported; this biasmon reads version {VERSION}")
        if self.header is not None or self.steps_read:
            out = self.finish()
            self._reset_run()
        else:
            out = []
        self.header = obj
        return out

    def _read_event(self, obj):
        if self._queue:  # records come out in the order of the lines
            return self._drain() + self._read_event(obj)
        kind, step = obj.get("event"), obj.get("step")
        if not isinstance(kind, str) or not isinstance(step, int) or isinstance(step, bool):
            return self._problem("an event line needs a string 'event' and a whole-number 'step'")
        event = Event.from_json(obj)
        data = event.data
        out = []
        if kind in RESET_EVENTS:
            out = self.finish()
            self._reset_run()
        elif kind == "gradient_check" and isinstance(data.get("errors"), dict):
            self._pending_grad_check = data["errors"]
        elif kind == "diverged":
            self.diverged = self.diverged or (step, data.get("layer"), data.get("reason"))
        elif kind == "verdict" and self.recompute:
            return out  # verdicts are re-derived from the step lines
        return out + [event]

    def _read_step(self, obj, strict_types=False):
        return self._accept_step(*parse_step(obj, strict_types))

    def feed_parsed(self, fields) -> list:
        """One step line already parsed by `prepare_lines` (in another process): same as feed(text)."""
        self.line_no += 1
        try:
            return self._accept_step(*fields)
        except ValueError as exc:
            return self._problem(str(exc))

    def _accept_step(self, step, loss, val_loss, biases, grads, updates, trained, diag, loss_change):
        names, sizes, b = biases
        if self.layout is None:
            self.layout = Layout(names, sizes)
            self.diagnoser = Diagnoser(self.layout, self.thresholds)
        elif names != self.layout.names or sizes != self.layout.sizes:
            raise ValueError(f"layers changed: expected {self._describe(self.layout)}, "
                             f"got {self._describe(Layout(names, sizes))}")
        for key, vecs in (("bias_grads", grads), ("bias_updates", updates)):
            if vecs is not None and (vecs[0] != names or vecs[1] != sizes):
                raise ValueError(f"'{key}' layers must match 'biases': {self._describe(self.layout)}, "
                                 f"got {self._describe(Layout(vecs[0], vecs[1]))}")
        if self._pending is not None and step <= self._pending["step"]:
            raise ValueError(f"step {step} does not follow step {self._pending['step']}")
        g = None if grads is None else grads[2]
        u = None if updates is None else updates[2]
        nonfinite = () if (math.isfinite(loss) and _all_finite(b) and (g is None or _all_finite(g))
                           and (u is None or _all_finite(u))) else \
            [key for key, v in (("loss", loss), ("biases", b), ("bias_grads", g), ("bias_updates", u))
             if v is not None and not np.isfinite(v).all()]
        if val_loss is not None and not math.isfinite(val_loss):
            self.problems.append(LineProblem(self.line_no, "'val_loss' is not finite: ignored"))
            val_loss = None
        self.steps_read += 1
        if self.has_grads is None:
            self.has_grads = grads is not None
        if nonfinite:
            out = self._flush_pending(None, None)
            where = ", ".join(f"'{k}'" for k in nonfinite)
            self.problems.append(LineProblem(self.line_no, f"non-finite value in {where}: read as divergence"))
            parts = self.layout.split(b)
            layer = next((n for n in self.layout.names if not np.isfinite(parts[n]).all()), None)
            self._diverge(out, step, layer, f"{' and '.join(nonfinite)} not finite")
            return out
        out = []
        if self._first_loss is None:
            self._first_loss = loss
        elif loss > self.thresholds.diverge_loss * max(1.0, self._first_loss):
            self._diverge(out, step, None, f"loss blew up to {loss:.3g}")
        line = {"step": step, "loss": loss, "val_loss": val_loss, "b": b, "g": g,
                "diag": diag, "loss_change": loss_change,
                "trained": trained, "grad_check": self._pending_grad_check}
        self._pending_grad_check = None
        out += self._flush_pending(b, step)
        if u is not None:
            out += self._emit(line, u, 1)
        else:
            self._pending = line
        return out

    def _diverge(self, out, step, layer, reason):
        out += self._drain()
        if self.diverged is None:
            self.diverged = (step, layer, reason)
            out.append(Event("diverged", step, {"layer": layer, "reason": reason}))

    @staticmethod
    def _describe(layout):
        return ", ".join(f"{n}[{s}]" for n, s in zip(layout.names, layout.sizes)) or "no layers"

    def _flush_pending(self, b_next, step_next):
        line, self._pending = self._pending, None
        if line is None:
            return []
        if b_next is None:
            return self._emit(line, None, 1)
        span = step_next - line["step"]
        if span > self.max_span:
            self.max_span = span
        return self._emit(line, b_next - line["b"], span)

    def _emit(self, line, u, span):
        """The StepRecord (with diagnostics) and verdict events for one line whose update u is known
        (queued, in block mode, until the block is full)."""
        if self.block > 1 and u is not None and (line["g"] is not None) == bool(self.has_grads):
            self._queue.append((line, u, span))
            return self._drain() if len(self._queue) >= self.block else []
        out = self._drain()
        return out + self._emit_one(line, u, span)

    def _drain(self) -> list:
        """Diagnose the queued steps together; their records, in order."""
        queue, self._queue = self._queue, []
        if not queue:
            return []
        results = self.diagnoser.observe_block(
            [(line["step"], line["loss"], line["b"], line["g"], u, line["trained"], "not trained at this step",
              line["grad_check"], 0.0) for line, u, _ in queue])
        out = []
        for (line, u, span), result in zip(queue, results):
            out += self._record(line, u, span, *result)
        return out

    def _emit_one(self, line, u, span):
        diag, loss_change, changes = self.diagnoser.observe(
            line["step"], line["loss"], line["b"], line["g"], u, trained=line["trained"],
            untrained_cause="not trained at this step", fd_errors=line["grad_check"])
        return self._record(line, u, span, diag, loss_change, changes)

    def _record(self, line, u, span, diag, loss_change, changes):
        events = []
        if line["diag"] is not None and not self.recompute:
            diag, loss_change = line["diag"], line["loss_change"]
        elif changes:
            events = [Event.from_json(e) for e in changes]
        layout = self.layout
        record = StepRecord(line["step"], line["loss"], line["val_loss"], LayerVectors(line["b"], layout),
                            None if line["g"] is None else LayerVectors(line["g"], layout),
                            None if u is None else LayerVectors(u, layout),
                            diag, loss_change, bias_trained=line["trained"], span=span)
        return [record] + events


def read_all(path, thresholds=None, recompute=False):
    """Every record of a finished stream file, and the reader (problems, header, divergence)."""
    reader = StreamReader(thresholds, recompute, source=str(path), block=BLOCK)
    records = []
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for text in handle:
                records.extend(reader.feed(text))
    except OSError as exc:
        raise StreamError(f"{path}: cannot read ({exc.strerror or exc})") from None
    records.extend(reader.finish())
    return records, reader
