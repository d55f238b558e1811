"""A thin plotext 6 widget drawing with plotext's public figure (`plotext.figure`): plotext has one, and
every widget builds its plot there from render(), on Textual's UI thread only, one after another.

Series are downsampled to about the widget's width before plotting; NaN/inf never reach plotext (a NaN
aborts the process there). A log axis is drawn as log10 of the values on a linear axis with our own
decade labels, so it never hits plotext's log-scale errors (constant series, single points).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import plotext as plt
from rich.text import Text
from textual.widget import Widget

# One RGB colour per name, used by plotext for the line and by the legend (hex in Textual markup), so the
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


def _log_ticks(lo: float, hi: float):
    """Tick positions (log10 units) and labels for a log axis spanning 10**lo .. 10**hi."""
    first, last = math.floor(lo), math.ceil(hi)
    stride = max(1, (last - first) // 5)
    ticks = [p for p in range(first, last + 1, stride) if lo - 1e-9 <= p <= hi + 1e-9]
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
        self.empty_text = "waiting for data..."
        self._cache = None
        self.border_title = title

    def set_lines(self, lines: list[Line]) -> None:
        """Plot these lines (the legend follows)."""
        self.lines = lines
        self._cache = None
        shown = [l for l in lines if len(l.y)]
        shown.sort(key=lambda l: l.style == "dim")  # the current run's entries first: they must not be cut
        self.border_subtitle = "  ".join(
            f"[{_hex(l.color)}{' dim' if l.style == 'dim' else ''}]━ {l.label}[/]" for l in shown)
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
            if self.log_y:
                keep &= y > 0
            if keep.any():
                y = np.log10(y[keep]) if self.log_y else y[keep]
                lines.append((line, x[keep], y))
        text = Text.from_ansi(self._build(lines, width, height)) if lines else Text(self.empty_text, style="dim")
        self._cache = (key, text)
        return text

    def _build(self, lines, width, height) -> str:
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
        if self.log_y:
            fig.ruler("y").ticks(*_log_ticks(lo, hi))
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
