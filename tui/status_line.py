"""Status line: preset, step, steps/s, running/paused, flip and bias-lr state, recording on/off."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class StatusLine(Static):
    def show(self, *, mode, source, step, total, rate, state, flip=None, lr_scale=None, recording=None,
             max_rate=None) -> None:
        parts = [(f" {mode} ", "bold reverse"), " ", (source, "bold"),
                 f"  step {'-' if step is None else step}" + (f"/{total}" if total else ""),
                 f"  {rate:,.0f} steps/s" if rate else ""]
        if max_rate:
            parts += [("  (max " + f"{max_rate:,}" + "/s)", "yellow")]
        state_style = {"running": "bold green", "paused": "bold yellow", "finished": "bold blue",
                       "diverged": "bold white on red"}.get(state.split()[0] if state else "", "bold")
        parts += ["  ", (state, state_style)]
        if flip is not None:
            parts += ["  flip_sign ", ("ON", "bold white on red") if flip else ("off", "green")]
        if lr_scale is not None:
            parts += [f"  bias lr x{lr_scale:g}"]
        if recording is not None:
            parts += ["  rec ", (f"on: {recording}", "bold red") if recording else ("off", "dim")]
        self.update(Text.assemble(*parts), layout=False)  # always one row: no need to lay out the screen
