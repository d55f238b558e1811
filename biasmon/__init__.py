"""biasmon: see, per layer, whether your biases learn in the right direction.

Public API (pure NumPy; importing it never loads Textual):
    load_preset, Trainer, Network, StreamReader, RecordWriter, Thresholds, StreamWriter
"""
from .core import __version__
from .core.diagnostics import Thresholds
from .core.logger import StreamWriter
from .core.network import Network
from .core.presets import resolve as load_preset
from .core.stream import RecordWriter, StreamReader
from .core.trainer import Trainer, build_network

__all__ = ["__version__", "Thresholds", "Network", "load_preset", "RecordWriter", "StreamReader", "StreamWriter",
           "Trainer", "build_network"]
