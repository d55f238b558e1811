"""Gradient-sign panel: per layer, is the bias update pointing down the gradient? Verdicts coloured."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from ..core import HELD_UPHILL, PROBLEMS, LossChange
from .text import shown

VERDICT_STYLES = {
    "ok": "bold green",
    "uphill": "bold white on red",
    "gradient mismatch": "bold magenta",
    "frozen": "bold cyan",
    "exploding": "bold red",
    "vanishing": "bold yellow",
    "unrelated": "bold yellow",
    "detached": "bold white on red",
    "redundant": "blue",
    "no gradients": "dim",
    "off": "dim",
    "pending": "dim",
}


def _num(value, spec="+.3f"):
    return "—" if value is None else format(value, spec)


def _ratio(d) -> str:
    """|u|/|b|; "—" when neither a gradient nor an update reaches the layer (dead units, or the step a run
    diverged at): a 0.00e+00 there, beside a verdict held from before, read as a measurement."""
    if not d.u_norm and not d.g_norm:
        return "—"
    return _num(d.ratio, ".2e")


TITLES = {"biases": "gradient sign: is each bias update going downhill?",
          "weights": "gradient sign: is each weight update going downhill?",
          "both": "gradient sign: is each update going downhill? (b: biases, W: weights)"}

RATIO_HEADERS = {"biases": "|u|/|b|", "weights": "|u|/|W|", "both": "|u|/|p|"}


class SignPanel(Static):
    """One row per layer (the view's: each layer's biases, weights, or both): cos(u,-g), sign agreement,
    |u|/|p|, last finite-difference error, verdict."""

    def __init__(self, **kwargs):
        super().__init__("waiting for the first steps...", **kwargs)
        self._shape = None
        self.border_title = TITLES["biases"]

    def show(self, diag: dict, loss_change: LossChange | None, span: int = 1, view: str = "biases",
             empty_text: str | None = None) -> None:
        """Show the newest diagnostics, one row per label (none: empty_text, dim; None: waiting)."""
        self.border_title = TITLES.get(view, TITLES["biases"])
        if not diag:
            self._shape = None
            self.update(Text(empty_text or "waiting for the first steps...", style="dim"))
            return
        width = self.content_size.width or 100
        table = _table(diag, width, view)
        notes = _notes(diag, loss_change, span)
        content = table
        if notes:
            content = Table.grid(expand=True)
            content.add_row(table)
            for note in notes:
                content.add_row(Text(shown(note), style="dim" if not note.startswith("cause") else "bold"))
        shape = (len(diag), len(notes), width)  # the screen is laid out again only when the height may change
        self.update(content, layout=shape != self._shape)
        self._shape = shape


def _table(diag: dict, width: int, view: str = "biases") -> Table:
    """One row per layer; the narrower the panel, the fewer columns."""
    table = Table(expand=True, box=None, padding=(0, 1), header_style="bold")
    table.add_column("layer", no_wrap=True)
    table.add_column("cos(u,-g)" if width >= 60 else "cos", justify="right", no_wrap=True)
    table.add_column("sign agree" if width >= 60 else "agree", justify="right", no_wrap=True)
    wide, medium = width >= 76, width >= 58
    if medium:
        table.add_column(RATIO_HEADERS.get(view, "|u|/|b|"), justify="right", no_wrap=True)
    if wide:
        table.add_column("FD err", justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    if wide:
        table.add_column("since", justify="right", no_wrap=True)
    for name, d in diag.items():
        verdict = d.verdict or "-"
        agree = d.sign_agree
        cells = [Text(shown(name)), _num(d.cos), "—" if agree is None else f"{100 * agree:.0f}%"]
        if medium:
            cells.append(_ratio(d))
        if wide:
            cells.append(_num(d.fd_error, ".1e"))
        cells.append(Text(shown(verdict), style=VERDICT_STYLES.get(verdict, "")))
        if wide:
            cells.append(str(d.since))
        table.add_row(*cells)
    return table


def _notes(diag: dict, loss_change: LossChange | None, span: int) -> list[str]:
    """The lines under the table: the loss change, the logging span, the first live problem's cause."""
    notes = []
    if loss_change and loss_change.predicted is not None and loss_change.actual is not None:
        notes.append(f"last step: loss change predicted {loss_change.predicted:+.2e}, seen {loss_change.actual:+.2e}")
    if span > 1:
        notes.append(f"steps are logged every {span}: each update spans {span} steps")
    problems = [d.cause for d in diag.values() if d.verdict in PROBLEMS]
    problems.sort(key=lambda cause: cause == HELD_UPHILL)   # a live problem first: a held one is its aftermath
    if problems:
        notes.append(f"cause: {problems[0]}")
    return notes
