"""Text from a stream, a file or a preset, made safe to show: no control character reaches the terminal
or breaks a line. Where Textual reads markup (border titles, notifications), pass rich Text or
markup=False instead, so nothing from a stream is read as markup."""
from __future__ import annotations


def shown(text: object) -> str:
    """`text` as one printable line: every control or other non-printable character written as its
    escape (\\n, \\x1b, ...)."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)

