"""Messages from the sources to the app (post_message is thread-safe in Textual 8)."""
from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message

from .segments import Segment


@dataclass(frozen=True)
class Note:
    """A line for the events log that is not a record (a skipped line, a failure)."""

    text: str
    style: str = ""


@dataclass
class Progress(Message):
    """What a source has for the panels, in the order the app shows it: `reset` clears the runs and the
    events log, then `notes` are logged, then `segments` are applied. Live sources post a few per
    second, never one per step. `panels` False: only the log and the status line change."""

    segments: list[Segment] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    reset: bool = False
    rate: float | None = None  # steps per second since the source's last Progress
    done: bool = False         # the run or the stream has ended
    stopped: bool = False      # ... on an error (a SourceFailed follows with it)
    panels: bool = True


@dataclass
class SourceFailed(Message):
    """The run or stream stopped with an error the user must see (message names the source)."""

    message: str
