"""The one exception biasmon shows to users: a message, never a traceback."""


class BiasmonError(Exception):
    """Bad input (preset, data file, stream, argument). The message names the source and what is allowed."""


class PresetError(BiasmonError):
    """A preset file or key is invalid."""


class DataError(BiasmonError):
    """A data file or generator request is invalid."""


class StreamError(BiasmonError):
    """A record stream cannot be read (unknown format version, unreadable file). records: what the lines
    read before the one that stopped it gave, where the reader had not returned it yet (feed_lines)."""

    def __init__(self, message: str, records: list | None = None) -> None:
        super().__init__(message)
        self.records = records or []
