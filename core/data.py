"""Data sets: seeded generators and a user's CSV or .npz, split into train and validation.

Every set is X (n, d_in) float and Y (n, d_out) float; classification targets are one-hot when the
network has one output per class, or a single 0/1 column for a two-class, one-output network.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import limits
from .datafiles import check_regular, read_csv, read_npz
from .errors import DataError

GENERATORS = ("tiny", "xor", "sine", "spirals", "blobs")
INPUTS = {"tiny": 2, "xor": 2, "sine": 1, "spirals": 2, "blobs": 2}  # each built-in set's feature columns

# What a generator returns: x (n, d_in), then either real-valued targets (n, d_out) or integer labels (n,).
_Generated = tuple[np.ndarray, np.ndarray | None, np.ndarray | None]


@dataclass(frozen=True)
class DataSet:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    name: str


def _tiny(rng: np.random.Generator, n: int, noise: float) -> _Generated:
    """A handful of 2-D points, half of them mirrored through the origin, with targets offset from 0.
    A bias-free net is positively homogeneous (ReLU: f(-x) is tied to f(x); tanh: odd), so it fits the
    offset poorly; with biases a 2-16-16-1 net overfits these points to near-zero loss."""
    half = rng.uniform(-1.0, 1.0, size=((n + 1) // 2, 2))
    x = np.concatenate([half, -half])[:n]
    y = 0.6 + 0.3 * np.sin(2.0 * x[:, :1]) * np.cos(2.0 * x[:, 1:]) + noise * rng.normal(size=(n, 1))
    return x, y, None


def _xor(rng: np.random.Generator, n: int, noise: float) -> _Generated:
    corners = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    idx = np.arange(n) % 4
    x = corners[idx] + noise * rng.normal(size=(n, 2))
    return x, None, (corners[idx, 0] != corners[idx, 1]).astype(int)


def _sine(rng: np.random.Generator, n: int, noise: float) -> _Generated:
    x = rng.uniform(-np.pi, np.pi, size=(n, 1))
    return x, np.sin(x) + noise * rng.normal(size=x.shape), None


def _spirals(rng: np.random.Generator, n: int, noise: float) -> _Generated:
    half = n // 2
    t = np.sqrt(rng.uniform(0.05, 1.0, size=half)) * 3.0 * np.pi
    arm = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / (3.0 * np.pi)
    x = np.concatenate([arm, -arm]) + noise * rng.normal(size=(2 * half, 2))
    return x, None, np.repeat([0, 1], half)


def _blobs(rng: np.random.Generator, n: int, noise: float, classes: int = 3) -> _Generated:
    centres = rng.uniform(-2.0, 2.0, size=(classes, 2))
    labels = np.arange(n) % classes
    return centres[labels] + (0.3 + noise) * rng.normal(size=(n, 2)), None, labels


def _targets(values: np.ndarray | None, labels: np.ndarray | None, outputs: int, source: str) -> np.ndarray:
    if labels is None:
        if values.shape[1] != outputs:
            raise DataError(f"{source}: {values.shape[1]} target column(s) but the network has {outputs} output(s)")
        return values
    classes = int(labels.max()) + 1
    if outputs == 1 and classes == 2:
        return labels[:, None].astype(float)
    if outputs != classes:
        raise DataError(f"{source}: {classes} classes need {classes} outputs (or 1 for two classes), "
                        f"but the network has {outputs}")
    return np.eye(classes)[labels]


def split(x: np.ndarray, y: np.ndarray, val_fraction: float, rng: np.random.Generator, name: str) -> DataSet:
    """Shuffle with rng and hold out val_fraction of the samples (at least one when the fraction > 0)."""
    n = len(x)
    if n == 0:
        raise DataError(f"{name}: the data set is empty")
    order = rng.permutation(n)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0:
        n_val = max(1, n_val)
    if n - n_val < 1:
        raise DataError(f"{name}: {n} sample(s) leave none for training with val_fraction {val_fraction}")
    val, train = order[:n_val], order[n_val:]
    return DataSet(x[train], y[train], x[val], y[val], name)


def generate(name: str, samples: int, noise: float, outputs: int, seed: int, val_fraction: float,
             dtype: str = "float64", inputs: int | None = None) -> DataSet:
    """A built-in data set, deterministic from the seed (inputs: the network's, checked if given)."""
    makers = {"tiny": _tiny, "xor": _xor, "sine": _sine, "spirals": _spirals, "blobs": _blobs}
    if name not in makers:
        raise DataError(f"unknown data set '{name}'; built-in sets: {', '.join(GENERATORS)}")
    if inputs is not None and inputs != INPUTS[name]:
        raise DataError(f"data set '{name}' has {INPUTS[name]} feature(s) but the network has {inputs} input(s)")
    rng = np.random.default_rng(seed)
    x, values, labels = makers[name](rng, samples, noise)
    y = _targets(values, labels, outputs, f"data set '{name}'")
    return split(x.astype(dtype), y.astype(dtype), val_fraction, rng, name)


def load_file(path: str | Path, targets: Sequence[str] | None, features: Sequence[str] | None, inputs: int,
              outputs: int, seed: int, val_fraction: float, dtype: str = "float64",
              hidden: Sequence[int] = ()) -> DataSet:
    """A user's .csv (header row; targets named) or .npz (arrays x and y), checked against the network
    (inputs, hidden widths, outputs) and the limits of core/limits.py."""
    path = Path(path)
    check_regular(path)
    if path.suffix.lower() == ".npz":
        x, y = read_npz(path)
    elif path.suffix.lower() == ".csv":
        x, y = read_csv(path, targets or [], features)
    else:
        raise DataError(f"{path}: unsupported data file; use .csv or .npz")
    if len(x) == 0:
        raise DataError(f"{path}: the data set is empty")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise DataError(f"{path}: the data contain NaN or infinite values")
    if x.shape[1] != inputs:
        raise DataError(f"{path}: {x.shape[1]} feature column(s) but the network has {inputs} input(s)")
    if y.shape[1] != outputs:
        raise DataError(f"{path}: {y.shape[1]} target column(s) but the network has {outputs} output(s)")
    problem = limits.activations_problem([inputs, *hidden, outputs], len(x))
    if problem:
        raise DataError(f"{path}: {problem}")
    rng = np.random.default_rng(seed)
    return split(x.astype(dtype), y.astype(dtype), val_fraction, rng, path.name)
