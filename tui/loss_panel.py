"""Loss panel: train and validation loss on a log axis; the previous run faint behind the current one."""
from __future__ import annotations

from rich.text import Text

from .history import RunHistory, step_range
from .plot import Line, PlotextPlot
from .text import shown


class LossPanel(PlotextPlot):
    def __init__(self, **kwargs):
        super().__init__(title="loss (log)", log_y=True, **kwargs)

    def show(self, current: RunHistory | None, previous: RunHistory | None) -> None:
        """Plot the current run's losses over the previous run's, faint, over the current run's steps."""
        n = self.points_wanted()
        steps = step_range(current, previous)
        upto = steps[1] if steps is not None else None
        lines = []
        if previous is not None:  # drawn first, so the current run lies on top; over the current run's steps
            lines.append(Line("prev train", *previous.loss.view(n, upto), "gray", "dim"))
            if previous.val_loss.has_values:
                lines.append(Line("prev val", *previous.val_loss.view(n, upto), "gray", "dim"))
        if current is not None:
            lines.append(Line("train", *current.loss.view(n), "cyan", "bold"))
            if current.val_loss.has_values:
                lines.append(Line("val", *current.val_loss.view(n), "orange", "bold"))
        self.set_lines(lines, steps)
        if previous is not None:
            self.border_title = Text(f"loss (log)  faint: {shown(previous.label)}")  # not markup: stream text
        else:
            self.border_title = "loss (log)"
