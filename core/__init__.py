"""biasmon's core: pure NumPy (never Textual). Network, data, strategies, diagnostics, trainer,
presets and the record stream."""

__version__ = "0.1.0"
