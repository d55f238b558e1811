"""biasmon: see, per layer, whether your biases learn in the right direction.

Public API (pure NumPy; importing it never loads Textual):
    load_preset, Trainer, build_network, Network, StreamReader, RecordWriter, StreamWriter, Thresholds
"""
from .core import (Network, RecordWriter, StreamReader, StreamWriter, Thresholds, Trainer, __version__,
                   build_network, load_preset)

__all__ = ["__version__", "Thresholds", "Network", "load_preset", "RecordWriter", "StreamReader", "StreamWriter",
           "Trainer", "build_network"]
