"""biasmon: see, per layer, whether your biases learn in the right direction.

Public API (pure NumPy; importing it never loads Textual):
    load_preset, Trainer, build_network, Network, StreamReader, RecordWriter, StreamWriter, Thresholds
"""
from importlib.util import find_spec as _find_spec
from pathlib import Path as _Path

if _find_spec(__name__ + ".core") is None:   # this biasmon/ is a checkout's, shadowing the installed one (a
    __path__.append(str(_Path(__file__).resolve().parent.parent))   # script run there): its core/, tui/, presets/

from .core import (Network, RecordWriter, StreamReader, StreamWriter, Thresholds, Trainer, __version__,
                   build_network, load_preset)

__all__ = ["__version__", "Thresholds", "Network", "load_preset", "RecordWriter", "StreamReader", "StreamWriter",
           "Trainer", "build_network"]
