"""Events log: divergence, verdict changes, gradient checks, preset switches, each with its step."""
from __future__ import annotations

from collections import deque

from rich.text import Text
from textual import events
from textual.widgets import RichLog

from ..core import RESET_EVENTS, Event, Thresholds
from .sign_panel import VERDICT_STYLES
from .text import shown


def describe(event: Event) -> Text:
    """One line of the events log for `event`; whatever the stream wrote is shown escaped (shown())."""
    d, step = event.data, f"step {event.step:>6}  "
    if event.kind == "verdict":
        verdict = d.get("verdict", "?")
        weights = " weights" if d.get("param") == "weight" else ""
        return Text.assemble(step, (f"{shown(d.get('layer'))}{weights}: ", "bold"),
                             (shown(verdict), VERDICT_STYLES.get(verdict, "")), f"  {shown(d.get('cause', ''))}")
    if event.kind == "diverged":
        where = f" (first non-finite layer: {shown(d['layer'])})" if d.get("layer") else (
            f" (parameters grew most in {shown(d['grew_most'])})" if d.get("grew_most") else "")
        return Text.assemble(step, ("DIVERGED", "bold white on red"), f"{where} {shown(d.get('reason') or '')}")
    if event.kind == "gradient_check" and isinstance(d.get("note"), str) and not d.get("errors"):
        return Text.assemble(step, ("gradient check ", "bold"), shown(d["note"]))
    if event.kind == "gradient_check":
        errors = _numbers(d.get("errors"))
        weight_errors = _numbers(d.get("weight_errors"))
        worst = max([*errors.values(), *weight_errors.values()], default=0.0)
        parts = [", ".join(f"{shown(k)} {v:.1e}" for k, v in errors.items())] if errors else []
        if weight_errors:
            parts.append("weights: " + ", ".join(f"{shown(k)} {v:.1e}" for k, v in weight_errors.items()))
        body = "; ".join(parts)
        note = f"  ({shown(d['note'])})" if isinstance(d.get("note"), str) else ""
        return Text.assemble(step, ("gradient check ", "bold"), f"max rel. error {worst:.1e}: {body}{note}")
    if event.kind == "flip_sign":
        on = d.get("flip_sign")
        return Text.assemble(step, ("flip_sign ", "bold"), ("ON: bias moves along +gradient", "bold red") if on
                             else ("off: bias moves along -gradient", "green"))
    if event.kind == "flip_weight_sign":
        on = d.get("flip_weight_sign")
        return Text.assemble(step, ("flip_weight_sign ", "bold"), ("ON: weights move along +gradient", "bold red")
                             if on else ("off: weights move along -gradient", "green"))
    if event.kind == "bias_lr_scale":
        return Text.assemble(step, ("bias lr multiplier ", "bold"), f"x{shown(d.get('bias_lr_scale'))}")
    if event.kind in RESET_EVENTS:
        return Text.assemble(step, (event.kind.replace("_", " ") + " ", "bold"), shown(d.get("preset", "")),
                             f"  run {shown(d.get('run_id', ''))}")
    return Text.assemble(step, (shown(event.kind), "bold"), f" {shown(d)}" if d else "")


QUIET = ("ok", "pending")
MAX_ENTRIES = 1000   # the log keeps this many lines, and this many entries to wrap anew


def _numbers(errors: object) -> dict:
    """A gradient check's {layer: error}, the numbers only (a stream may write anything there)."""
    if not isinstance(errors, dict):
        return {}
    return {k: float(v) for k, v in errors.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class EventsPanel(RichLog, can_focus=False):
    """The events log, newest last; at most 1000 lines, long ones wrapped. It never takes the focus (not
    even the app's first focus): focused, it would keep ←/→ and enter from the app and the preset list."""

    def __init__(self, **kwargs):
        super().__init__(max_lines=MAX_ENTRIES, wrap=True, min_width=20, markup=False, **kwargs)
        self.border_title = "events"
        self.weights_wrong: set[str] = set()   # weight layers whose last verdict logged was a problem
        self.entries: deque[Text] = deque(maxlen=MAX_ENTRIES)   # what was logged, to wrap anew on a resize
        self.wrapped_at: int | None = None   # the width the lines were wrapped at

    def add(self, event: Event, fd_tolerance: float = Thresholds().fd_tolerance) -> None:
        """Log the event; a scheduled gradient check is logged only when asked for or when it fails."""
        if event.kind == "gradient_check" and not event.data.get("requested") and "note" not in event.data:
            errors = [*_numbers(event.data.get("errors")).values(), *_numbers(event.data.get("weight_errors")).values()]
            if max(errors, default=0.0) <= fd_tolerance:
                return
        if event.kind == "verdict" and event.data.get("param") == "weight":
            layer = str(event.data.get("layer"))
            if event.data.get("verdict") not in QUIET:
                self.weights_wrong.add(layer)
            elif layer in self.weights_wrong:
                self.weights_wrong.discard(layer)   # a recovery is news too
            else:
                return   # the weights are news when they go wrong; biases stay the featured view
        self.log_line(describe(event))

    def log_line(self, text: Text) -> None:
        self.entries.append(text)
        self.write(text)

    def new_run(self) -> None:
        """A run begins: its weights' first ok is quiet again (the lines logged so far stay)."""
        self.weights_wrong = set()

    def clear(self) -> "EventsPanel":
        self.weights_wrong = set()
        self.entries.clear()
        return super().clear()

    def on_resize(self, event: events.Resize) -> None:
        """Wrap every entry anew at the new width (a line wrapped on a narrow terminal reads whole again)."""
        width = event.size.width
        if self.wrapped_at is not None and width != self.wrapped_at and self.entries:
            RichLog.clear(self)
            for text in self.entries:
                self.write(text)
        self.wrapped_at = width

    def note(self, text: str, style: str = "") -> None:
        """Log a line that is not an event."""
        self.log_line(Text(shown(text), style=style))
