"""The one exception biasmon shows to users: a message, never a traceback."""


class BiasmonError(Exception):
    """Bad input (preset, data file, stream, argument). The message names the source and what is allowed."""


class PresetError(BiasmonError):
    """A preset file or key is invalid."""


class DataError(BiasmonError):
    """A data file or generator request is invalid."""


class StreamError(BiasmonError):
    """A record stream cannot be read (unknown format version, unreadable file)."""
