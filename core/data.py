"""Data sets: seeded generators and a user's CSV or .npz, split into train and validation.

Every set is X (n, d_in) float and Y (n, d_out) float; classification targets are one-hot when the
network has one output per class, or a single 0/1 column for a two-class, one-output network.
"""
from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

GENERATORS = ("tiny", "xor", "sine", "spirals", "blobs")

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
             dtype: str = "float64") -> DataSet:
    """A built-in data set, deterministic from the seed."""
    makers = {"tiny": _tiny, "xor": _xor, "sine": _sine, "spirals": _spirals, "blobs": _blobs}
    if name not in makers:
        raise DataError(f"unknown data set '{name}'; built-in sets: {', '.join(GENERATORS)}")
    rng = np.random.default_rng(seed)
    x, values, labels = makers[name](rng, samples, noise)
    y = _targets(values, labels, outputs, f"data set '{name}'")
    return split(x.astype(dtype), y.astype(dtype), val_fraction, rng, name)


def _read_csv_rows(path: Path) -> tuple[list[int], list[list[str]]]:
    """The file's non-blank rows (header first), each with its csv line number (where the row ends)."""
    try:
        with path.open(newline="") as handle:
            reader = csv.reader(handle)
            numbered = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV file") from None
    if not numbered:
        raise DataError(f"{path}: the file is empty")
    return [n for n, _ in numbered], [row for _, row in numbered]


def _parse_table(path: Path, header: list[str], line_nos: list[int], rows: list[list[str]]) -> np.ndarray:
    """The data rows (rows after the header) as floats: (n, len(header))."""
    table = np.empty((len(rows) - 1, len(header)))
    for i, (line_no, row) in enumerate(zip(line_nos[1:], rows[1:])):
        if len(row) != len(header):
            raise DataError(f"{path}:{line_no}: {len(row)} cells, the header has {len(header)}")
        for col, cell in enumerate(row):
            try:
                table[i, col] = float(cell)
            except ValueError:
                raise DataError(f"{path}:{line_no}: column '{header[col]}' is not a number: {cell!r}") from None
    if len(table) == 0:
        raise DataError(f"{path}: the file has a header but no data rows")
    return table


def _read_csv(path: Path, targets: Sequence[str], features: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """x (n, d_in) from the feature columns (all non-target ones if features is empty) and y (n, d_out)."""
    line_nos, rows = _read_csv_rows(path)
    header = [cell.strip() for cell in rows[0]]
    try:
        [float(cell) for cell in header]
        raise DataError(f"{path}: the first line must be a header naming the columns")
    except ValueError:
        pass
    missing = [name for name in list(targets) + list(features or []) if name not in header]
    if missing:
        raise DataError(f"{path}: no column {', '.join(repr(m) for m in missing)}; "
                        f"columns: {', '.join(header)}")
    if not targets:
        raise DataError(f"{path}: data.targets must name at least one column")
    feature_names = list(features) if features else [h for h in header if h not in targets]
    if not feature_names:
        raise DataError(f"{path}: no feature columns left besides the targets")
    table = _parse_table(path, header, line_nos, rows)
    pick = lambda names: table[:, [header.index(n) for n in names]]  # noqa: E731
    return pick(feature_names), pick(targets)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key.lower(): archive[key] for key in archive.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    if "x" not in arrays or "y" not in arrays:
        raise DataError(f"{path}: needs arrays named 'x' and 'y'; found: {', '.join(arrays) or 'none'}")
    x, y = arrays["x"], arrays["y"]
    if x.ndim == 1:
        x = x[:, None]
    if y.ndim == 1:
        y = y[:, None]
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise DataError(f"{path}: 'x' and 'y' must be 2-D with the same number of rows, "
                        f"got {x.shape} and {y.shape}")
    if not (np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.number)):
        raise DataError(f"{path}: 'x' and 'y' must be numeric")
    return x.astype(float), y.astype(float)


def load_file(path: str | Path, targets: Sequence[str] | None, features: Sequence[str] | None, inputs: int,
              outputs: int, seed: int, val_fraction: float, dtype: str = "float64") -> DataSet:
    """A user's .csv (header row; targets named) or .npz (arrays x and y), checked against the network."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.suffix.lower() == ".npz":
        x, y = _read_npz(path)
    elif path.suffix.lower() == ".csv":
        x, y = _read_csv(path, targets or [], features)
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
    rng = np.random.default_rng(seed)
    return split(x.astype(dtype), y.astype(dtype), val_fraction, rng, path.name)
