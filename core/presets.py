"""Presets: TOML files naming a network, data, optimizer, bias strategy and diagnostics schedule.

The schema is checked key by key: an unknown key, a wrong type or an out-of-range value is a
PresetError naming the file, the key and what is allowed.
"""
from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import files, limits, strategies
from .data import GENERATORS, INPUTS
from .errors import PresetError
from .network import ACTIVATIONS, LOSSES, WEIGHT_INITS

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "presets"
DEFAULT_PRESET = "gradient"


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_finite(v: object) -> bool:
    """A number that is neither infinite nor NaN, and within a float's range."""
    try:
        return _is_number(v) and math.isfinite(float(v))
    except OverflowError:
        return False


def _is_seed(v: object) -> bool:
    return _is_int(v) and 0 <= v < 2 ** 64


SEED = "a whole number from 0 to 2**64 - 1"


MAX_PRESET_CHARS = 1 << 20  # a preset file is a few hundred characters


# key -> (check, allowed (for messages), default); a missing default means required.
NUMBER, INT, BOOL, STR = "a number", "a whole number", "true or false", "a string"
_REQUIRED = object()


_Spec = tuple[Callable[[Any], bool], str, Any]


def _spec(check: Callable[[Any], bool], allowed: str, default: Any = _REQUIRED) -> _Spec:
    return check, allowed, default


DEFAULT_SET = "tiny"   # [data] without 'set' or 'path'

SCHEMA = {
    "": {
        "description": _spec(lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string"),
        "order": _spec(_is_int, INT, 1000),
    },
    "network": {
        "layers": _spec(limits.layers_ok, limits.LAYERS_ALLOWED, [2, 16, 16, 1]),
        "activation": _spec(lambda v: v in ACTIVATIONS, " | ".join(ACTIVATIONS), "tanh"),
        "output": _spec(lambda v: v in ACTIVATIONS, " | ".join(ACTIVATIONS), "identity"),
        "loss": _spec(lambda v: v in LOSSES, " | ".join(LOSSES), "mse"),
        "dtype": _spec(lambda v: v in ("float64", "float32"), "float64 | float32", "float64"),
        "weight_init": _spec(lambda v: v in WEIGHT_INITS, " | ".join(WEIGHT_INITS), "xavier"),
        "bias_init": _spec(_is_finite, "a finite number", 0.0),
    },
    "data": {
        "set": _spec(lambda v: v in GENERATORS, " | ".join(GENERATORS), None),
        "path": _spec(lambda v: isinstance(v, str) and v != "", "a path to a .csv or .npz file", None),
        "targets": _spec(lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
                         "a list of CSV column names", None),
        "features": _spec(lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
                          "a list of CSV column names", None),
        "samples": _spec(lambda v: _is_int(v) and 2 <= v <= limits.MAX_SAMPLES,
                         f"a whole number from 2 to {limits.MAX_SAMPLES:,}", 16),
        "noise": _spec(lambda v: _is_finite(v) and v >= 0, "a number >= 0 and finite", 0.05),
        "val_fraction": _spec(lambda v: _is_number(v) and 0 <= v < 1, "a number with 0 <= x < 1", 0.25),
        "seed": _spec(_is_seed, SEED, 0),
    },
    "train": {
        "seed": _spec(_is_seed, SEED, 0),
        "lr": _spec(lambda v: _is_finite(v) and v > 0, "a number > 0 and finite", 0.1),
        "momentum": _spec(lambda v: _is_number(v) and 0 <= v < 1, "a number with 0 <= x < 1", 0.0),
        "weight_decay": _spec(lambda v: _is_finite(v) and v >= 0, "a number >= 0 and finite", 0.0),
        "steps": _spec(lambda v: _is_int(v) and 1 <= v <= limits.MAX_STEPS,
                       f"a whole number from 1 to {limits.MAX_STEPS:,}", 2000),
    },
    "bias": {
        "strategy": _spec(lambda v: isinstance(v, str) and v in strategies.REGISTRY, " | ".join(strategies.REGISTRY), "gradient"),
        "flip_sign": _spec(lambda v: isinstance(v, bool), BOOL, False),
        "from_step": _spec(lambda v: _is_int(v) and v >= 0, "a whole number >= 0", 0),
    },
    "weights": {
        "flip_sign": _spec(lambda v: isinstance(v, bool), BOOL, False),
    },
    "diagnostics": {
        "grad_check_every": _spec(lambda v: _is_int(v) and v >= 0, "a whole number >= 0 (0: only on demand)", 100),
    },
}


@dataclass(frozen=True)
class Preset:
    """A validated preset. Sections are plain dicts of checked values with defaults filled in."""

    name: str
    description: str
    network: dict
    data: dict
    train: dict
    bias: dict
    bias_params: dict
    diagnostics: dict
    weights: dict
    source: str = ""
    order: int = 1000
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    def with_overrides(self, steps: int | None = None, seed: int | None = None,
                       samples: int | None = None) -> "Preset":
        """A copy with train.steps, train.seed and data.samples replaced where given (not None)."""
        train = dict(self.train, **({"steps": steps} if steps is not None else {}),
                     **({"seed": seed} if seed is not None else {}))
        data = dict(self.data, **({"samples": samples} if samples is not None else {}))
        return replace(self, train=train, data=data)

    def to_json(self) -> dict:
        """The checked sections as a JSON-ready dict, the strategy's parameters merged into bias."""
        return {"name": self.name, "description": self.description, "network": self.network, "data": self.data,
                "train": self.train, "bias": dict(self.bias, **self.bias_params), "weights": self.weights,
                "diagnostics": self.diagnostics}


def _check_section(source: str, section: str, table: dict[str, Any], schema: dict[str, _Spec],
                   extra: dict[str, _Spec] | None = None) -> dict[str, Any]:
    extra = extra or {}
    allowed = {**schema, **extra}
    out = {}
    where = f"{section}." if section else ""
    for key, value in table.items():
        if section == "" and key in SCHEMA and key:
            continue
        if key not in allowed:
            names = ", ".join(list(allowed) + ([f"[{k}]" for k in SCHEMA if k] if not section else []))
            raise PresetError(f"{source}: unknown key '{where}{key}'; allowed here: {names}")
        check, text, _ = allowed[key]
        if not check(value):
            raise PresetError(f"{source}: key '{where}{key}' must be {text}, got {files.short(repr(value))}")
        out[key] = value
    for key, (_, text, default) in allowed.items():
        if key not in out:
            if default is _REQUIRED:
                raise PresetError(f"{source}: missing key '{where}{key}' ({text})")
            out[key] = default
    return out


def parse(table: dict, name: str, source: str) -> Preset:
    """Validate a TOML table as a preset."""
    for key, value in table.items():
        if key in SCHEMA and key and not isinstance(value, dict):
            raise PresetError(f"{source}: '{key}' must be a table ([{key}]), got {files.short(repr(value))}")
    top = _check_section(source, "", table, SCHEMA[""])
    strategy_name = table.get("bias", {}).get("strategy", "gradient") if isinstance(table.get("bias"), dict) else "gradient"
    if not isinstance(strategy_name, str) or strategy_name not in strategies.REGISTRY:
        raise PresetError(f"{source}: key 'bias.strategy' is {files.short(repr(strategy_name))}, not a strategy; "
                          f"valid: {', '.join(strategies.REGISTRY)}")
    strategy = strategies.REGISTRY[strategy_name]
    param_spec = {k: _spec(lambda v, check=check: _is_finite(v) and check(v), text, default)
                  for k, (default, text, check) in strategy.params.items()}
    sections = {s: _check_section(source, s, table.get(s, {}), SCHEMA[s], param_spec if s == "bias" else None)
                for s in ("network", "data", "train", "bias", "weights", "diagnostics")}
    bias = sections["bias"]
    bias_params = {k: bias.pop(k) for k in list(bias) if k in strategy.params}
    data, network = sections["data"], sections["network"]
    if data["set"] is not None and data["path"] is not None:
        raise PresetError(f"{source}: [data] takes one of 'set' (one of {', '.join(GENERATORS)}) or 'path', not both")
    if data["set"] is None and data["path"] is None:
        given = [f"'data.{k}'" for k in ("targets", "features") if data[k] is not None]
        if given:
            raise PresetError(f"{source}: key {' and '.join(given)} needs 'path' (the CSV file it names columns of)")
        data["set"] = DEFAULT_SET
    if data["path"] is not None and Path(data["path"]).suffix.lower() == ".csv" and not data["targets"]:
        raise PresetError(f"{source}: key 'data.targets' is required with a CSV path (the target column names)")
    if data["path"] is not None and not Path(data["path"]).is_absolute() and source:
        data["path"] = str((Path(source).parent / data["path"]))
    if network["loss"] == "cross_entropy" and network["output"] != "identity":
        raise PresetError(f"{source}: key 'network.output' must be identity with loss cross_entropy "
                          "(softmax is part of the loss)")
    _check_fit(source, network["layers"], data)
    return Preset(name=name, description=top["description"].strip(), order=top["order"], source=source,
                  raw=table, bias_params=bias_params, **sections)


def _check_fit(source: str, layers: list[int], data: dict) -> None:
    """A built-in data set's input width against the network's, and its samples' activations against the limit."""
    if data["set"] is None:
        return  # a data file is checked when it is read
    if layers[0] != INPUTS[data["set"]]:
        raise PresetError(f"{source}: key 'network.layers' starts with {layers[0]} input(s), but data set "
                          f"'{data['set']}' has {INPUTS[data['set']]} feature(s)")
    problem = limits.activations_problem(layers, data["samples"])
    if problem:
        raise PresetError(f"{source}: keys 'data.samples' and 'network.layers': {problem}")


def _read_text(path: Path) -> str:
    """The preset file's text; PresetError if it is not a readable regular UTF-8 file of sane size."""
    try:
        what = files.kind(path)
        if what != "file":
            raise PresetError(f"{files.short_path(path)}: " + ("no such preset file" if what == "missing" else
                              f"not a regular file (a {what}): give a .toml file"))
        with path.open(encoding="utf-8") as handle:
            text = handle.read(MAX_PRESET_CHARS + 1)
    except OSError as exc:
        raise PresetError(f"{files.short_path(path)}: cannot read the preset ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise PresetError(f"{files.short_path(path)}: not a UTF-8 text file") from None
    if len(text) > MAX_PRESET_CHARS:
        raise PresetError(f"{files.short_path(path)}: more than {MAX_PRESET_CHARS:,} characters; a preset is a "
                          "short TOML file")
    return text


def load(path: str | Path) -> Preset:
    """Read and validate one preset file."""
    path = Path(path)
    text = _read_text(path)
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise PresetError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise PresetError(f"{path}: invalid TOML: {files.short(exc, 80)}") from None
    return parse(table, path.stem, str(path))


def discover(extra_dirs: Iterable[str | Path] = ()) -> dict[str, Preset]:
    """Built-in presets plus those in extra_dirs (a later folder's preset replaces a same-named one),
    ordered by their `order` key; on a tie a later folder's preset comes first (a user's `order = 1`
    is the first preset, before the built-in one), then by name."""
    found = {}
    for rank, folder in enumerate([BUILTIN_DIR, *map(Path, extra_dirs)]):
        try:
            is_dir = files.kind(folder) == "folder"
        except OSError as exc:
            raise PresetError(f"{files.short_path(folder)}: cannot read the preset folder ({exc.strerror})") from None
        if not is_dir:
            raise PresetError(f"{files.short_path(folder)}: no such preset folder")
        for path in sorted(folder.glob("*.toml")):
            found[path.stem] = (rank, load(path))
    ordered = sorted(found.items(), key=lambda item: (item[1][1].order, -item[1][0], item[0]))
    return {name: preset for name, (_, preset) in ordered}


def resolve(name_or_path: str | Path, extra_dirs: Iterable[str | Path] = ()) -> Preset:
    """A preset by name (built-in or from extra_dirs) or by path to a .toml file."""
    candidate = Path(name_or_path)
    try:
        what = files.kind(candidate)
    except OSError as exc:
        raise PresetError(f"{files.short_path(candidate)}: cannot read the preset ({exc.strerror})") from None
    if candidate.suffix == ".toml" or what in ("file", "special"):
        return load(candidate)
    presets = discover(extra_dirs)
    if name_or_path not in presets:
        raise PresetError(f"unknown preset '{files.short(name_or_path, 200)}'; available: {', '.join(presets)}")
    return presets[name_or_path]
