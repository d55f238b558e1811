"""Direction strip: per layer, cos(u,-g) over the steps as a band of colour — green while the update points
down the gradient, red when it points up (the sign bug), yellow when unrelated. The value is also the
height of the bar in each column (▁ at -1, █ at +1), so a terminal without colour shows it too.

Each row's values come from a bounded MeanSeries (tui/history.py), averaged into one column per cell of
the widget's width over the plots' step range, so the cost of a redraw does not grow with the run.
"""
from __future__ import annotations

import math

import numpy as np
from rich.style import Style
from rich.text import Span, Text
from textual.geometry import Size
from textual.widget import Widget

from .history import MeanSeries
from .plot import COLOURS
from .text import shown

BARS = " ▁▂▃▄▅▆▇█"
LABEL_MAX = 12       # a row label's widest (cut with …)
MIN_CELLS = 8        # fewer columns than this for the values: the strip says it is too small
NO_VALUE = "·"       # a column with no defined cos (a frozen or untrained layer, or a gap in the steps)
NAN_KEY = 99         # the style key of a NaN column
VIEW_NAMES = {"biases": "biases", "weights": "weights", "both": "biases & weights"}


def _blend(a, b, t):
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))


def colour(value: float) -> tuple[int, int, int]:
    """The colour of a cos(u,-g): red at -1, yellow at 0, green at +1, linear between."""
    if value >= 0:
        return _blend(COLOURS["yellow"], COLOURS["green"], min(value, 1.0))
    return _blend(COLOURS["yellow"], COLOURS["red"], min(-value, 1.0))


_STYLES: dict[int, Style] = {}


def _style(value: float) -> Style:
    """The cell style of a value (quantised to 0.1): the bar in the value's colour on a dark shade of it."""
    q = int(round(max(-1.0, min(1.0, value)) * 10))
    style = _STYLES.get(q)
    if style is None:
        fg = colour(q / 10)
        bg = _blend((0, 0, 0), fg, 0.4)
        style = _STYLES[q] = Style(color="rgb(%d,%d,%d)" % fg, bgcolor="rgb(%d,%d,%d)" % bg)
    return style


def band_lines(values: np.ndarray, height: int) -> list[Text]:
    """A band `height` rows high, one column per value: the bar's height is the value (+1 full, 0 half, -1
    the lowest ▁, so that it is seen), its colour the value's; NaN columns show a dim dot on the bottom row.
    Each line is one string with a span per run of equal colours (not a span per cell: a wide strip has
    thousands of cells)."""
    finite = np.isfinite(values)
    eighths = 8 * height
    clipped = np.clip(np.nan_to_num(values), -1, 1)
    level = np.where(finite, np.maximum(1, np.rint((clipped + 1) / 2 * eighths)), 0).astype(int)
    key = np.where(finite, np.rint(clipped * 10), NAN_KEY).astype(int)  # the style of each column
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], len(key)]
    runs = [(int(a), int(b), "dim" if key[a] == NAN_KEY else _style(key[a] / 10)) for a, b in zip(starts, ends)]
    lines = []
    for row in range(height - 1, -1, -1):  # top row first; row 0 is the bottom
        cells = np.clip(level - 8 * row, 0, 8)
        glyphs = [BARS[c] if ok else (NO_VALUE if row == 0 else " ") for c, ok in zip(cells.tolist(), finite.tolist())]
        lines.append(Text("".join(glyphs), spans=[Span(a, b, style) for a, b, style in runs]))
    return lines


def legend(width: int = 80) -> Text:
    """The scale, for the border: the glyph and colour of +1, 0 and -1 (in words if `width` leaves room)."""
    words = ("+1 downhill", "0", "−1 uphill") if width >= 36 else ("+1", "0", "−1")
    text = Text()
    for glyph, value, word in zip("█▄▁", (1.0, 0.0, -1.0), words):
        text.append("  " if text else "")
        text.append(glyph, _style(value))
        text.append(f" {word}")
    return text


def axis_line(lo: int, hi: int, width: int) -> Text:
    """The step axis under the bands: the first step at the left, the last at the right."""
    left, right = str(lo), str(hi)
    middle = "steps"
    gap = width - len(left) - len(right)
    if gap < 2:
        return Text(right.rjust(width)[:width], style="dim")
    if gap >= len(middle) + 2:
        pad = gap - len(middle)
        return Text(left + " " * (pad // 2) + middle + " " * (pad - pad // 2) + right, style="dim")
    return Text(left + " " * gap + right, style="dim")


class DirectionStrip(Widget):
    """One band per row (a layer's biases or weights): cos(u,-g) over the steps, as colour and bar height.
    `show` gives the rows; the picture is made in render(), once per size and set of rows."""

    DEFAULT_CSS = "DirectionStrip { height: auto; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rows: list[tuple[str, MeanSeries | None]] = []
        self.x_range: tuple[int, int] | None = None
        self.empty_text = "waiting for data..."
        self._cache: tuple | None = None
        self.border_title = Text(f"cos(u,-g): {VIEW_NAMES['biases']} [w]")
        self.border_subtitle = legend()

    def show(self, rows: list[tuple[str, MeanSeries | None]], x_range: tuple[int, int] | None, view: str = "biases",
             empty_text: str | None = None) -> None:
        """Show these rows (label, cos series) over the steps x_range; the title names the view. No row:
        empty_text (None: waiting for data)."""
        relayout = len(rows) != len(self.rows)
        self.rows, self.x_range, self.empty_text = rows, x_range, empty_text or "waiting for data..."
        self._cache = None
        self.border_title = Text(f"cos(u,-g): {VIEW_NAMES.get(view, view)} [w]")  # Text: "[w]" is no markup
        self.border_subtitle = legend(self.size.width)
        self.refresh(layout=relayout)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        """One row per band and one for the step axis (height: auto)."""
        return len(self.rows) + 1 if self.rows else 1

    def column_values(self, columns: int) -> list[np.ndarray]:
        """Each row's value in `columns` columns over the step range (NaN: none)."""
        if self.x_range is None:
            return [np.full(columns, math.nan) for _ in self.rows]
        return [series.view(columns, self.x_range) if series is not None else np.full(columns, math.nan)
                for _, series in self.rows]

    def render(self) -> Text:
        width, height = self.content_size
        key = (width, height)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        text = self.picture(width, height)
        self._cache = (key, text)
        return text

    def picture(self, width: int, height: int) -> Text:
        """The strip at this content size: one band per row (as many as fit), then the step axis."""
        if not self.rows or self.x_range is None:
            return Text(self.empty_text, style="dim")
        label_width = min(LABEL_MAX, max(len(shown(label)) for label, _ in self.rows)) + 1
        cells = width - label_width
        if cells < MIN_CELLS or height < 1:
            return Text("(too small)", style="dim")
        n = len(self.rows)
        axis = height > n
        room = height - axis
        shown_rows = n if room >= n else max(0, room - 1)  # the last row then says how many are left out
        band = max(1, room // n) if room >= n else 1
        fill = band - 1 if band >= 3 else band  # tall bands are kept apart by a blank row
        values = self.column_values(cells)
        lines: list[Text] = []
        for (label, _), row in zip(self.rows[:shown_rows], values):
            name = shown(label)
            name = name if len(name) < label_width else name[:label_width - 2] + "…"
            for i, line in enumerate(band_lines(row, fill)):
                lines.append(Text.assemble((name.ljust(label_width) if i == 0 else " " * label_width, "bold"), line))
            lines.extend(Text("") for _ in range(band - fill))
        if shown_rows < n:
            more = Text(f"… {n - shown_rows} more rows (a taller terminal shows them)", style="dim")
            more.truncate(width, overflow="ellipsis")
            lines.append(more)
        if axis:
            lines.extend(Text("") for _ in range(room - len(lines)))
            lines.append(Text(" " * label_width) + axis_line(*self.x_range, cells))
        return Text("\n").join(lines)
