"""Text for people: number formats, tables, the divergence line, what each `check` threshold means."""
from __future__ import annotations

import shlex
import unicodedata
from pathlib import Path
from typing import TextIO


def printable(text: str) -> str:
    """text with every control or other non-printable character written as its escape (\\n, \\x1b, ...):
    what a stream, a preset or a file name says can neither break a line nor drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def fmt(value: float | None, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[tuple[str, ...]], open_last: bool = False) -> list[str]:
    """Rows of cells as aligned lines, with a rule under the first (the header). open_last: the last
    column is free text, not padded (its rule is five dashes). Cells are escaped first (printable), so
    that a name with a control character lines up as it is printed."""
    rows = [tuple(printable(cell) for cell in row) for row in rows]
    widths = [max(_columns(r[i]) for r in rows) for i in range(len(rows[0]) - (1 if open_last else 0))]
    pad = lambda c, w: c + " " * (w - _columns(c))  # noqa: E731
    lines = []
    for i, row in enumerate(rows):
        if open_last:
            lines.append("  ".join(pad(c, w) for c, w in zip(row, widths)) + "  " + row[-1])
        else:
            lines.append("  ".join(pad(c, w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + ("  " + "-" * 5 if open_last else ""))
    return lines


def _columns(text: str) -> int:
    """The terminal columns text takes: two for a wide (East Asian) character, none for a combining mark,
    one for any other."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def print_lines(lines: list[str], out: TextIO) -> None:
    """Each line, escaped (printable), on its own line."""
    for line in lines:
        print(printable(line), file=out)


def stream_not_preset(path: str) -> str:
    """A record stream given where a preset is expected: what to run on it instead."""
    arg = shlex.quote(path)
    return (f"{path}: looks like a record stream (JSON Lines), not a preset: try `biasmon replay {arg}`, "
            f"`biasmon check {arg}` or `biasmon watch {arg}`")


def preset_not_stream(path: str) -> str | None:
    """What to run instead when `check` is given a preset (a built-in preset's name that is no file, or a
    .toml file) rather than a record stream; None if it does not look like one."""
    from .core import presets
    if path == "-":
        return None
    try:
        is_file, exists = Path(path).is_file(), Path(path).exists()
    except OSError:   # a name too long, a folder that cannot be searched: no hint
        return None
    if not ((is_file and path.endswith(".toml")) or (not exists and path in presets.discover())):
        return None
    arg = shlex.quote(path)
    return (f"{path} looks like a preset, and check reads a record stream: record one first, "
            f"`biasmon record {arg} -o run.jsonl`, then `biasmon check run.jsonl`")


def unknown_command(word: str, close: str) -> str:
    return f"unknown command '{word}' (did you mean '{close}'?)"


def unknown_command_or_preset(word: str, commands: tuple[str, ...]) -> str:
    return (f"'{word}' is neither a command ({', '.join(commands)}) nor a preset (biasmon presets lists them), "
            "and a preset takes no further arguments")


def unknown_options(command: str, options: list[str], close: dict[str, str]) -> str:
    """Options no command takes, each with the option it may be a typo of; where --help lists them."""
    named = ", ".join(f"'{o}'" + (f" (did you mean '{close[o]}'?)" if o in close else "") for o in options)
    where = f"biasmon {command} --help" if command else "biasmon --help"
    return f"unknown option{'s' if len(options) > 1 else ''} {named}; {where} lists the options"


def divergence_line(step: int, layer: str | None, reason: str | None) -> str:
    return (f"DIVERGED at step {step}" + (f" (first non-finite layer: {layer})" if layer else "")
            + (f": {reason}" if reason else ""))


# What each Thresholds field means (`biasmon check --help`).
HELP = {
    "window": "steps over which the descent cosine is averaged for 'uphill'",
    "min_steps": "steps with a defined cosine needed before 'uphill' can be called",
    "uphill_cos": "'uphill' when the window's mean cos(update, -d) is below this, d the gradient or the "
                  "running average of it that the update follows most closely",
    "unrelated_cos": "'unrelated' when |mean cos| is below this over the last unrelated-steps steps and below twice "
                     "this over the last window (an update that switched between following and climbing the "
                     "gradient averages to 0 too, but not in every window)",
    "unrelated_steps": "length of the stretch (steps with a defined cosine) that 'unrelated' needs",
    "frozen_steps": "'frozen' after this many steps in a row with a zero update and a non-zero gradient",
    "quiet_grad_frac": "a layer whose rms(g) fell below this times its largest rms(g) has converged: its "
                       "tiny steps may round away or jitter, so neither 'frozen' nor 'uphill' is called "
                       "(an 'uphill' already called is held)",
    "quiet_uphill_cos": "on a quiet (converged) gradient, 'uphill' only when the window's mean cos(update, -g) is "
                        "below this "
                        "(a clear climb, as a sign bug gives at any scale; Adam's jitter near a minimum does not)",
    "grad_eps": "rms(g) at or below this is a zero gradient",
    "explode_norm": "'exploding' when |b| exceeds this times max(1, first |b|) and the loss has not fallen",
    "explode_growth": "... or when |b| > 10 grew by this factor within one window and the loss has not fallen",
    "vanish_grad": "'vanishing' when rms(g) is below this, the loss above converged-loss ...",
    "vanish_ratio": "... and the layer's rms(g) has never been above this times the largest layer's rms(g) now "
                    "(a layer that converged first is not vanishing)",
    "converged_loss": "a loss at or below this counts as converged (no 'vanishing')",
    "redundant_ulps": "'redundant' (not a problem) when a layer's rms(g) has never been above this many units of "
                      "rounding (float32's or float64's, as the logged gradients are) times the largest any layer "
                      "has had: rounding noise, as a bias a normalisation layer cancels has; 0 turns it off",
    "fd_tolerance": "'gradient mismatch' when a finite-difference check's relative error exceeds this",
    "momentum_betas": "running averages (momentum factors) of the gradient that the update may follow "
                      "(comma-separated; empty: only the raw gradient)",
    "diverge_loss": "a loss above this times max(1, the first loss) counts as divergence",
}
