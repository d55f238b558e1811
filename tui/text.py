"""Text from a stream, a file or a preset, made safe to show: no control character reaches the terminal
or breaks a line, and nothing is read as markup."""
from __future__ import annotations

from textual.markup import escape


def shown(text: object) -> str:
    """`text` as one printable line: every control or other non-printable character written as its
    escape (\\n, \\x1b, ...). For plain text (rich Text, a table cell made Text); see markup()."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def markup(text: object) -> str:
    """`text` as shown(), escaped for Textual markup (border titles, notifications)."""
    return escape(shown(text))
