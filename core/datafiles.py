"""A user's data file read within the limits of core/limits.py: a .csv (a header row, then numbers) or a .npz
(arrays x and y). Only regular files are read (a pipe would block, a device never end); a .csv line by line
with a length limit, a .npz only after its arrays' sizes are read from the archive's headers (a zip bomb is
refused before it inflates). Errors name the file, the line or array, and quote at most a short excerpt."""
from __future__ import annotations

import csv
import zipfile
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from . import files, limits
from .errors import DataError


def check_regular(path: Path) -> None:
    """DataError unless path is a regular file of at most `max_bytes` (following links)."""
    try:
        what = files.kind(path)
    except OSError as exc:
        raise DataError(f"{files.short_path(path)}: cannot read the file ({exc.strerror or exc})") from None
    if what == "missing":
        raise DataError(f"{files.short_path(path)}: no such file")
    if what != "file":
        raise DataError(f"{files.short_path(path)}: not a regular file (a {what}); give a .csv or .npz file")


def _lines(handle, path: Path) -> Iterator[str]:
    """The file's lines, each at most MAX_CSV_LINE characters (a longer one is a DataError)."""
    line_no = 0
    while True:
        line = handle.readline(limits.MAX_CSV_LINE + 1)
        if not line:
            return
        line_no += 1
        if len(line) > limits.MAX_CSV_LINE:
            raise DataError(f"{path}:{line_no}: a line longer than {limits.MAX_CSV_LINE:,} characters")
        yield line


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """The non-blank rows with the line number where each ends; DataError if unreadable."""
    check_regular(path)
    if path.stat().st_size > limits.MAX_CSV_BYTES:
        raise DataError(f"{path}: larger than {limits.MAX_CSV_BYTES >> 20} MB, the limit for a .csv file")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(_lines(handle, path))
            for row in reader:
                if any(cell.strip() for cell in row):
                    yield reader.line_num, row
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file ({files.short(exc, 80)})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text CSV file") from None


def _names(names: Sequence[str]) -> str:
    """Column names for a message: the first ten, each cut short."""
    shown = ", ".join(files.short(n, 20) for n in names[:10])
    return shown + (f", ... ({len(names)} columns)" if len(names) > 10 else "")


def _header(path: Path, rows: Iterator[tuple[int, list[str]]], wanted: Sequence[str]) -> list[str]:
    first = next(rows, None)
    if first is None:
        raise DataError(f"{path}: the file is empty")
    header = [cell.strip() for cell in first[1]]
    if len(header) > limits.MAX_WIDTH:
        raise DataError(f"{path}: {len(header):,} columns; at most {limits.MAX_WIDTH:,}")
    try:
        [float(cell) for cell in header]
        raise DataError(f"{path}: the first line must be a header naming the columns")
    except ValueError:
        pass
    missing = [name for name in wanted if name not in header]
    if missing:
        raise DataError(f"{path}: no column {', '.join(repr(files.short(m, 20)) for m in missing[:5])}; "
                        f"columns: {_names(header)}")
    return header


def _table(path: Path, header: list[str], rows: Iterator[tuple[int, list[str]]]) -> np.ndarray:
    """The data rows as floats (n, len(header)), within MAX_SAMPLES rows and MAX_DATA_VALUES numbers."""
    values, n = array("d"), 0
    for line_no, row in rows:
        if len(row) != len(header):
            raise DataError(f"{path}:{line_no}: {len(row)} cells, the header has {len(header)}")
        n += 1
        if n > limits.MAX_SAMPLES or n * len(header) > limits.MAX_DATA_VALUES:
            raise DataError(f"{path}: more than {limits.MAX_SAMPLES:,} rows or {limits.MAX_DATA_VALUES:,} numbers")
        for col, cell in enumerate(row):
            try:
                values.append(float(cell))
            except ValueError:
                raise DataError(f"{path}:{line_no}: column '{files.short(header[col], 20)}' is not a number: "
                                f"{files.short(repr(cell))}") from None
    if n == 0:
        raise DataError(f"{path}: the file has a header but no data rows")
    return np.frombuffer(values, dtype=np.float64).reshape(n, len(header))


def read_csv(path: Path, targets: Sequence[str], features: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """x (n, d_in) from the feature columns (all non-target ones if features is empty) and y (n, d_out)."""
    for key, names in (("targets", targets), ("features", features or [])):
        if len(set(names)) != len(names):
            raise DataError(f"{path}: data.{key} names a column more than once")
    rows = _rows(path)
    header = _header(path, rows, list(targets) + list(features or []))
    if not targets:
        raise DataError(f"{path}: data.targets must name at least one column")
    feature_names = list(features) if features else [h for h in header if h not in targets]
    if not feature_names:
        raise DataError(f"{path}: no feature columns left besides the targets")
    table = _table(path, header, rows)
    pick = lambda names: table[:, [header.index(n) for n in names]]  # noqa: E731
    return pick(feature_names), pick(targets)


def _array_sizes(path: Path) -> None:
    """DataError if the archive's arrays would inflate past MAX_DATA_VALUES numbers (read from the headers)."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.lower().endswith(".npy"):
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, dtype = read(member)
            total += int(np.prod(shape, dtype=object)) * max(1, dtype.itemsize // 8)
            if total > limits.MAX_DATA_VALUES:
                raise DataError(f"{path}: array '{files.short(info.filename, 20)}' holds {total:,} numbers or more; "
                                f"at most {limits.MAX_DATA_VALUES:,} in a data file")


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The archive's arrays x and y (names in any case), 2-D."""
    check_regular(path)
    try:
        _array_sizes(path)
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key.lower(): archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({files.short(exc, 80)})") from None
    if "x" not in arrays or "y" not in arrays:
        raise DataError(f"{path}: needs arrays named 'x' and 'y'; found: {_names(list(arrays)) or 'none'}")
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
