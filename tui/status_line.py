"""Status line: preset, step, steps/s, running/paused, flip and bias-lr state, recording on/off."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from .state import RunState, Status

STATE_STYLES = {RunState.RUNNING: "bold green", RunState.PAUSED: "bold yellow", RunState.FINISHED: "bold blue",
                RunState.DIVERGED: "bold white on red"}


def status_text(status: Status) -> Text:
    """The one row the status line shows for `status`."""
    s = status
    parts = [(f" {s.mode} ", "bold reverse"), " ", (s.source, "bold"),
             f"  step {'-' if s.step is None else s.step}" + (f"/{s.total}" if s.total else ""),
             f"  {s.rate:,.0f} steps/s" if s.rate else ""]
    if s.max_rate:
        parts += [("  (max " + f"{s.max_rate:,}" + "/s)", "yellow")]
    parts += ["  ", (s.state_text, STATE_STYLES.get(s.state, "bold"))]
    if s.flip is not None:
        parts += ["  flip_sign ", ("ON", "bold white on red") if s.flip else ("off", "green")]
    if s.lr_scale is not None:
        parts += [f"  bias lr x{s.lr_scale:g}"]
    if s.recording is not None:
        parts += ["  rec ", (f"on: {s.recording}", "bold red") if s.recording else ("off", "dim")]
    return Text.assemble(*parts)


class StatusLine(Static):
    """Shows a Status; never reads text back."""

    def show(self, status: Status) -> None:
        """Show `status`."""
        self.update(status_text(status), layout=False)  # always one row: no need to lay out the screen
