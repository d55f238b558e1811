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
from .records import Event, StepRecord

FORMAT = "biasmon-stream"
VERSION = 1
RESET_EVENTS = ("preset_switched", "restarted")


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


def _vectors(obj, key, line_no):
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"'{key}' must be an object of layer name -> list of numbers")
    out = {}
    for name, vec in value.items():
        if not isinstance(vec, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vec):
            raise ValueError(f"'{key}.{name}' must be a list of numbers")
        arr = np.asarray(vec, dtype=np.float64)
        arr.flags.writeable = False
        out[name] = arr
    return out


def _number(obj, key, required=False):
    value = obj.get(key)
    if value is None:
        if required:
            raise ValueError(f"'{key}' is missing")
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"'{key}' must be a number, got {value!r}")
    return float(value)


class StreamReader:
    """Feed it lines; it returns records (StepRecord, Event). Problems are kept in `problems`.

    recompute=True ignores diagnostics stored in the lines and derives them with `thresholds`."""

    def __init__(self, thresholds: Thresholds | None = None, recompute=False, source="<stream>"):
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
            return self._read_step(obj)
        except ValueError as exc:
            return self._problem(str(exc))

    def finish(self) -> list:
        """At end of input: the last pending step, with its update unknown."""
        return self._flush_pending(None, None)

    # --- lines -----------------------------------------------------------------------------------
    def _read_header(self, obj):
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
        kind, step = obj.get("event"), obj.get("step")
        if not isinstance(kind, str) or not isinstance(step, int) or isinstance(step, bool):
            return self._problem("an event line needs a string 'event' and a whole-number 'step'")
        data = {k: v for k, v in obj.items() if k not in ("event", "step")}
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
        return out + [Event(kind, step, data)]

    def _read_step(self, obj):
        step = obj.get("step")
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ValueError(f"'step' must be a whole number >= 0, got {step!r}")
        loss = _number(obj, "loss")
        val_loss = _number(obj, "val_loss")
        biases = _vectors(obj, "biases", self.line_no)
        if biases is None:
            raise ValueError("'biases' is missing")
        grads = _vectors(obj, "bias_grads", self.line_no)
        updates = _vectors(obj, "bias_updates", self.line_no)
        layout = Layout(tuple(biases), tuple(len(v) for v in biases.values()))
        if self.layout is None:
            self.layout = layout
            self.diagnoser = Diagnoser(layout, self.thresholds)
        elif layout != self.layout:
            raise ValueError(f"layers changed: expected {self._describe(self.layout)}, got {self._describe(layout)}")
        for key, vecs in (("bias_grads", grads), ("bias_updates", updates)):
            if vecs is not None and Layout(tuple(vecs), tuple(len(v) for v in vecs.values())) != layout:
                raise ValueError(f"'{key}' layers must match 'biases': {self._describe(layout)}")
        if self._pending is not None and step <= self._pending["step"]:
            raise ValueError(f"step {step} does not follow step {self._pending['step']}")
        nonfinite = loss is None or not math.isfinite(loss) or any(
            not np.all(np.isfinite(v)) for v in biases.values())
        self.steps_read += 1
        if self.has_grads is None:
            self.has_grads = grads is not None
        line = {"step": step, "loss": loss, "val_loss": val_loss, "biases": biases, "grads": grads,
                "updates": updates, "diag": obj.get("diag"), "loss_change": obj.get("loss_change"),
                "trained": obj.get("bias_trained", True) is not False, "grad_check": self._pending_grad_check}
        self._pending_grad_check = None
        b_next = np.concatenate(list(biases.values())) if biases else np.zeros(0)
        out = self._flush_pending(b_next, step)
        if nonfinite:
            self.problems.append(LineProblem(self.line_no, "non-finite or missing loss/bias: read as divergence"))
            layer = next((n for n, v in biases.items() if not np.all(np.isfinite(v))), None)
            if self.diverged is None:
                self.diverged = (step, layer, "loss or biases not finite")
                out.append(Event("diverged", step, {"layer": layer, "reason": "loss or biases not finite"}))
            return out
        if updates is not None:
            out += self._emit(line, np.concatenate(list(updates.values())) if updates else np.zeros(0), 1)
        else:
            self._pending = line
        return out

    @staticmethod
    def _describe(layout):
        return ", ".join(f"{n}[{s}]" for n, s in zip(layout.names, layout.sizes)) or "no layers"

    def _flush_pending(self, b_next, step_next):
        line, self._pending = self._pending, None
        if line is None:
            return []
        if b_next is None:
            return self._emit(line, None, 1)
        b = np.concatenate(list(line["biases"].values())) if line["biases"] else np.zeros(0)
        span = step_next - line["step"]
        self.max_span = max(self.max_span, span)
        return self._emit(line, b_next - b, span)

    def _emit(self, line, u, span):
        """The StepRecord (with diagnostics) and verdict events for one line whose update u is known."""
        b = np.concatenate(list(line["biases"].values())) if line["biases"] else np.zeros(0)
        g = np.concatenate(list(line["grads"].values())) if line["grads"] else (None if line["grads"] is None else np.zeros(0))
        if line["grad_check"] is not None:
            self.diagnoser.record_gradient_check(line["grad_check"])
        diag, loss_change, changes = self.diagnoser.observe(
            line["step"], line["loss"], b, g, u, trained=line["trained"], untrained_cause="not trained at this step")
        events = []
        if line["diag"] is not None and not self.recompute:
            diag, loss_change = line["diag"], line["loss_change"]
        else:
            events = [Event("verdict", e["step"], {k: v for k, v in e.items() if k not in ("event", "step")})
                      for e in changes]
        updates = None
        if u is not None:
            u = u.copy()
            u.flags.writeable = False
            updates = self.layout.split(u)
        record = StepRecord(line["step"], line["loss"], line["val_loss"], line["biases"], line["grads"], updates,
                            diag, loss_change, bias_trained=line["trained"], span=span)
        return [record] + events


def read_all(path, thresholds=None, recompute=False):
    """Every record of a finished stream file, and the reader (problems, header, divergence)."""
    reader = StreamReader(thresholds, recompute, source=str(path))
    records = []
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for text in handle:
                records.extend(reader.feed(text))
    except OSError as exc:
        raise StreamError(f"{path}: cannot read ({exc.strerror or exc})") from None
    records.extend(reader.finish())
    return records, reader
