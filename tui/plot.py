"""A thin plotext 6 widget drawing with plotext's public figure (`plotext.figure`): plotext has one, and
every widget builds its plot there from render(), on Textual's UI thread only, one after another.

Series are downsampled to about the widget's width before plotting; NaN/inf never reach plotext (a NaN
aborts the process there). A log axis is drawn as log10 of the values on a linear axis with our own
decade labels, so it never hits plotext's log-scale errors (constant series, single points).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from rich.text import Text
from textual.widget import Widget

from .text import shown as printable

# One RGB colour per name, used by plotext for the line and by the legend (as hex), so the
# two always match whatever the terminal's palette.
COLOURS = {"cyan": (95, 215, 255), "orange": (255, 135, 0), "gray": (128, 128, 128), "green": (135, 255, 95),
           "magenta": (255, 95, 255), "blue": (95, 135, 255), "yellow": (215, 215, 0), "teal": (0, 175, 175),
           "red": (255, 95, 95), "white": (255, 255, 255)}


def _hex(name):
    return "#%02x%02x%02x" % COLOURS.get(name, COLOURS["white"])


@dataclass
class Line:
    label: str
    x: np.ndarray
    y: np.ndarray
    color: str = "cyan"  # a COLOURS name
    style: str | None = None  # "bold" for the current run, "dim" for a faded previous one


def step_ticks(lo: float, hi: float, width: int) -> list[int]:
    """Whole-number ticks (steps) from lo to hi: a stride of 1, 2 or 5 times a power of ten, as many as
    fit `width` columns with room for their labels."""
    fit = max(2, width // (len(str(int(hi))) + 3))
    stride, grow = 1, itertools.cycle((2, 2.5, 2))  # 1, 2, 5, 10, 20, 50, ...
    while len(ticks := range(math.ceil(lo / stride) * stride, math.floor(hi) + 1, stride)) > fit:
        stride = round(stride * next(grow))
    return list(ticks)


def _log_ticks(lo: float, hi: float, rows: int = 40):
    """Tick positions (log10 units) and labels for a log axis spanning 10**lo .. 10**hi, drawn on `rows`
    rows: at most one tick every other row (two labels on one row overwrite each other: `1e1` over `1e-1`
    read `11e-1`), whole decades where two of them fit."""
    first, last = math.floor(lo), math.ceil(hi)
    most = max(2, (rows + 1) // 2)
    stride = max(1, (last - first) // 5)
    ticks = [p for p in range(first, last + 1, stride) if lo - 1e-9 <= p <= hi + 1e-9]
    if len(ticks) > most:   # a short plot: fewer decades, multiples of a wider stride
        stride = max(1, math.ceil((hi - lo) / (most - 1)))
        start = math.ceil(lo / stride - 1e-9) * stride
        ticks = list(range(start, math.floor(hi + 1e-9) + 1, stride))
        if len(ticks) < 2:   # the lowest and highest whole decades
            ticks = [math.ceil(lo - 1e-9), math.floor(hi + 1e-9)]
    if len(ticks) < 2:
        ticks = list(np.linspace(lo, hi, 3))
    return ticks, [f"{10 ** t:.2g}" if abs(t - round(t)) > 1e-9 else f"1e{int(round(t))}" for t in ticks]


class PlotextPlot(Widget):
    """Draws `lines` with plotext; `set_lines` replaces them and repaints. Legend in the border subtitle."""

    DEFAULT_CSS = "PlotextPlot { height: 1fr; min-height: 5; }"

    def __init__(self, title="", log_y=False, **kwargs):
        super().__init__(**kwargs)
        self.log_y = log_y
        self.lines: list[Line] = []
        self.x_range: tuple[float, float] | None = None
        self.empty_text = "waiting for data..."
        self._cache = None
        self.border_title = title

    def set_lines(self, lines: list[Line], x_range: tuple[float, float] | None = None) -> None:
        """Plot these lines (the legend follows) over the steps x_range (default: the lines' own)."""
        self.lines = lines
        self.x_range = x_range
        self._cache = None
        shown = [l for l in lines if len(l.y)]
        shown.sort(key=lambda l: l.style == "dim")  # the current run's entries first: they must not be cut
        legend = Text()  # rich Text, not markup: a label from a stream is shown as it is (escaped)
        for l in shown:
            legend.append("  " if legend else "")
            legend.append(f"━ {printable(l.label)}", style=_hex(l.color) + (" dim" if l.style == "dim" else ""))
        self.border_subtitle = legend
        self.refresh()

    def points_wanted(self) -> int:
        """About one point per column (min/max pairs): plotext's cost grows with points, not with detail."""
        return max(16, self.content_size.width)

    def render(self) -> Text:
        """The plot at the widget's size, built once per size and set of lines."""
        width, height = self.content_size
        if width < 12 or height < 4:
            return Text("(too small to plot)", style="dim")
        key = (width, height)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        lines = []
        for line in self.lines:
            x, y = np.asarray(line.x, dtype=float), np.asarray(line.y, dtype=float)
            keep = np.isfinite(y) & np.isfinite(x)
            if self.x_range is not None:   # a previous run's steps outside the shared range are not drawn
                keep &= (x >= self.x_range[0]) & (x <= self.x_range[1])
            if self.log_y:
                keep &= y > 0
            if keep.any():
                y = np.log10(y[keep]) if self.log_y else y[keep]
                lines.append((line, x[keep], y))
        text = Text.from_ansi(self._build(lines, width, height)) if lines else Text(self.empty_text, style="dim")
        self._cache = (key, text)
        return text

    def _step_axis(self, fig, lines, width: int) -> None:
        """The x axis: x_range (or the lines' steps), whole-number ticks."""
        lo, hi = self.x_range or (min(float(x.min()) for _, x, _ in lines), max(float(x.max()) for _, x, _ in lines))
        hi = max(hi, lo + 1)
        ticks = step_ticks(lo, hi, width - 8)  # the y labels take a few columns
        fig.ruler("x").lim(lo, hi)
        fig.ruler("x").ticks(ticks, [str(t) for t in ticks])

    def _build(self, lines, width, height) -> str:
        import plotext as plt   # imported at the first plot, not at start-up (~0.1 s, most of it its docs)

        plt.terminal.limit(False, False)  # never clamp to the real terminal's size
        fig = plt.figure
        fig.clear()
        fig.theme("simple")
        fig.canvas("default")
        fig.plot_size(width, height)
        lo = min(float(y.min()) for _, _, y in lines)
        hi = max(float(y.max()) for _, _, y in lines)
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        fig.ruler("y").lim(lo, hi)
        self._step_axis(fig, lines, width)
        if self.log_y:
            fig.ruler("y").ticks(*_log_ticks(lo, hi, height - 3))   # (the frame and the x axis take three rows)
        for line, x, y in lines:
            if len(x) == 1:  # plotext needs two points for a line
                x, y = np.repeat(x, 2), np.repeat(y, 2)
            rgb = COLOURS.get(line.color, COLOURS["white"])
            style = plt.pixel(rgb, None, line.style) if line.style else plt.pixel(rgb)
            signal = fig.signal(x, y, marker=plt.marker("braille", style))
            signal.lines()
            fig.draw(signal)
        try:
            return fig.build().string()
        except (ValueError, ZeroDivisionError, OverflowError, IndexError) as exc:
            return f"(cannot draw these values: {exc})"
