"""Status line: mode, source, step, steps/s, state (and what to press when the run has ended), flip and
bias-lr state, recording. It always fits one row: long labels first, short ones on a narrow terminal,
then cut with an ellipsis."""
from __future__ import annotations

import os

from rich.text import Text
from textual.widget import Widget

from .state import RunState, Status
from .text import shown

STATE_STYLES = {RunState.RUNNING: "bold green", RunState.PAUSED: "bold yellow", RunState.FINISHED: "bold blue",
                RunState.DIVERGED: "bold white on red"}


def _parts(s: Status, short: bool) -> list:
    """The pieces of the row, in the long or the short wording."""
    step = "-" if s.shown_step is None else str(s.shown_step)
    parts = [(f" {s.mode} ", "bold reverse"), " ", (shown(s.source), "bold"),
             f"  step {step}" + (f"/{s.total}" if s.total else "")]
    if s.rate:
        parts.append(f"  {s.rate:,.0f}/s" if short else f"  {s.rate:,.0f} steps/s")
    if s.max_rate:
        parts.append((f" (max {s.max_rate:,}/s)" if short else f"  (max {s.max_rate:,}/s)", "yellow"))
    parts += ["  ", (s.state_text, STATE_STYLES.get(s.state, "bold"))]
    if s.hint:
        parts.append((f": {s.hint.split(',')[0] if short else s.hint}", "bold"))
    if s.position is not None:
        parts.append(f"  {s.position[0]}/{s.position[1]}" if short else
                     f"  record {s.position[0]}/{s.position[1]}")
    if s.flip is not None:
        parts += ["  flip " if short else "  flip_sign ", ("ON", "bold white on red") if s.flip else ("off", "green")]
    if s.flip_weights:
        parts += ["  W flip " if short else "  weights flip_sign ", ("ON", "bold white on red")]
    if s.lr_scale is not None:
        parts.append(f"  {'' if short else 'bias '}lr x{s.lr_scale:g}")
    if s.recording:
        parts += ["  rec ", (shown(os.path.basename(s.recording)) if short else f"on: {shown(s.recording)}", "bold red")]
    elif s.recording is not None and not short:
        parts += ["  rec ", ("off", "dim")]
    return parts


def status_text(status: Status, width: int = 0) -> Text:
    """The one row the status line shows for `status`, at most `width` cells (0: no limit)."""
    text = Text.assemble(*_parts(status, short=False))
    if width and text.cell_len > width:
        text = Text.assemble(*_parts(status, short=True))
        text.truncate(width, overflow="ellipsis")
    return text


class StatusLine(Widget):
    """Shows a Status, drawn again at each width; never reads text back."""

    DEFAULT_CSS = "StatusLine { height: 1; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.status: Status | None = None

    def show(self, status: Status) -> None:
        """Show `status` (always one row: the screen is not laid out again)."""
        self.status = status
        self.refresh()

    def render(self) -> Text:
        return status_text(self.status, self.size.width) if self.status is not None else Text("")
