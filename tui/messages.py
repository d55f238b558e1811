"""Messages from the worker threads to the app (post_message is thread-safe in Textual 8)."""
from __future__ import annotations

from textual.message import Message

from .history import Batch


class BatchReady(Message):
    """A live run's steps since the last batch (a few per second, never one per step)."""

    def __init__(self, batch: Batch, rate: float, done: bool) -> None:
        super().__init__()
        self.batch, self.rate, self.done = batch, rate, done


class RecordsRead(Message):
    """Records read from a followed stream (watch)."""

    def __init__(self, records: list, problems: list, ended: bool) -> None:
        super().__init__()
        self.records, self.problems, self.ended = records, problems, ended


class SourceFailed(Message):
    """The run or stream stopped with an error the user must see (message names the source)."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message
