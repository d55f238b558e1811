"""Norm panel: |p| per layer over steps (the view's: each layer's biases, weights, or both), one line per
row, legend with the row labels."""
from __future__ import annotations

from .history import Series
from .plot import Line, PlotextPlot

LAYER_COLOURS = ("green", "magenta", "blue", "yellow", "teal", "red", "white")
TITLES = {"biases": "bias norm |b| per layer", "weights": "weight norm |W| per layer",
          "both": "norms |b| and |W| per layer"}


class NormPanel(PlotextPlot):
    def __init__(self, **kwargs):
        super().__init__(title=TITLES["biases"], log_y=False, **kwargs)

    def show(self, rows: list[tuple[str, Series]], view: str = "biases", x_range: tuple[int, int] | None = None,
             empty_text: str | None = None) -> None:
        """Plot each row's norm (label, series) over the steps x_range (the loss plot's); no row: empty_text
        (None: waiting for data)."""
        self.border_title = TITLES.get(view, TITLES["biases"])
        self.empty_text = empty_text or "waiting for data..."
        n = self.points_wanted()
        self.set_lines([Line(label, *series.view(n), LAYER_COLOURS[i % len(LAYER_COLOURS)])
                        for i, (label, series) in enumerate(rows)], x_range)
