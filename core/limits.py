"""Size limits on what a preset or a data file may ask for, so that memory and time stay bounded.
README's preset block states them; a value past one is a one-line error naming the key and the limit."""
from __future__ import annotations

from collections.abc import Sequence

MAX_LAYERS = 100                 # entries in network.layers (inputs, hidden layers, outputs)
MAX_WIDTH = 10_000               # units in one layer (and feature/target columns in a data file)
MAX_WEIGHTS = 5_000_000          # weights in all layers together (40 MB a copy in float64)
MAX_SAMPLES = 100_000            # data.samples, and the rows of a data file
MAX_UNITS_X_SAMPLES = 10_000_000  # samples x (sum of the layer widths): the activations of one pass
MAX_STEPS = 1_000_000_000        # train.steps
MAX_DATA_VALUES = 10_000_000     # numbers in a data file (x and y together)
MAX_CSV_BYTES = 256 << 20        # the size of a .csv file
MAX_CSV_LINE = 1 << 20           # characters in one line of a .csv file

LAYERS_ALLOWED = (f"a list of at least 2 and at most {MAX_LAYERS} whole numbers from 1 to {MAX_WIDTH:,}, inputs first, "
                  f"with at most {MAX_WEIGHTS:,} weights in all")


def layers_ok(v: object) -> bool:
    """network.layers within the limits: a list of 2..MAX_LAYERS widths in 1..MAX_WIDTH, MAX_WEIGHTS in all."""
    if not (isinstance(v, list) and 2 <= len(v) <= MAX_LAYERS):
        return False
    if not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_WIDTH for n in v):
        return False
    return sum(a * b for a, b in zip(v[:-1], v[1:])) <= MAX_WEIGHTS


def activations_problem(layers: Sequence[int], samples: int) -> str | None:
    """Why `samples` rows through `layers` would take too much memory, or None if they fit."""
    units = sum(layers)
    if samples * units <= MAX_UNITS_X_SAMPLES:
        return None
    return (f"{samples:,} samples x {units:,} units (the sum of network.layers) is more than "
            f"{MAX_UNITS_X_SAMPLES:,}: use fewer samples or narrower layers")
