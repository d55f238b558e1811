"""Bias-norm panel: |b| per layer over steps, one line per layer, legend with the layer names."""
from __future__ import annotations

from .history import RunHistory
from .plot import Line, PlotextPlot

LAYER_COLOURS = ("green", "magenta", "blue", "yellow", "teal", "red", "white")


class NormPanel(PlotextPlot):
    def __init__(self, **kwargs):
        super().__init__(title="bias norm |b| per layer", log_y=False, **kwargs)

    def show(self, current: RunHistory | None, has_biases: bool = True,
             x_range: tuple[int, int] | None = None) -> None:
        """Plot |b| of each layer of the current run over the steps x_range (the loss plot's); none: waiting
        for data, or a network without biases."""
        self.empty_text = "waiting for data..." if has_biases else "no biases in this network"
        if current is None:
            self.set_lines([])
            return
        n = self.points_wanted()
        self.set_lines([Line(name, *series.view(n), LAYER_COLOURS[i % len(LAYER_COLOURS)])
                        for i, (name, series) in enumerate(current.norms.items())], x_range)
