"""The summary form of a stream line: per-layer sums in place of vectors (docs/stream-format.md).

`layer_sums` is the reference definition, for one step of one kind of parameter; `SummaryLines` turns
the steps a StreamWriter is given (vectors) into summary-form lines, deriving an update not given from
the next step's values, as a reader does.
"""
from __future__ import annotations

import numpy as np

from .layout import Layout
from .measures import GradientAverages, block_sums
from .records import SUM_COLUMNS, json_number
from .spans import Logged


def layer_sums(layout: Layout, p: np.ndarray, g: np.ndarray | None, u: np.ndarray | None,
               averages: np.ndarray | None = None, k: int = 0) -> np.ndarray:
    """(L, 7 + 2k) one step's sums per layer, as a summary-form line carries them: n, |p|^2, |g|^2, |u|^2,
    u.g, the entries with a significant gradient (g^2 above 1e-16 times the largest g^2 of the step, over
    every layer given), those where u opposes g; then |a_j|^2 and a_j.u for each running average a_j of g.
    p, g, u: (n,) the layers end to end; averages: (k, n) or None; NaN where g, u or the averages are None."""
    n = len(p)
    vec = np.array([p, np.zeros(n) if g is None else g, np.zeros(n) if u is None else u], dtype=np.float64)[:, None]
    avg = None if averages is None else averages[:, None]
    with np.errstate(all="ignore"):
        sums = block_sums(vec, avg, layout.starts)[:, 0].T   # (L, 6 + 2k')
    table = np.full((len(layout.names), len(SUM_COLUMNS) + 2 * k), np.nan)
    table[:, 0] = layout.sizes
    table[:, 1:7] = sums[:, :6]
    if averages is not None:
        table[:, 7:] = sums[:, 6:]
    if g is None:
        table[:, [2, 4, 5, 6]] = np.nan
        table[:, 7 + k:] = np.nan
    if u is None:
        table[:, [3, 4, 6]] = np.nan
        table[:, 7 + k:] = np.nan
    return table


def sums_json(layout: Layout, table: np.ndarray, unreached: tuple | None) -> dict:
    """{layer: row} for a line, counts as whole numbers, null for NaN (and for the gradient's sums of a
    layer no gradient reached)."""
    out = {}
    for i, (name, row) in enumerate(zip(layout.names, table.tolist())):
        off = unreached is not None and unreached[i]
        out[name] = [None if (off and j in _GRADIENT) else
                     (int(v) if j in _COUNTS and v == v else json_number(v)) for j, v in enumerate(row)]
    return out


_COUNTS = (0, 5, 6)
_GRADIENT = (2, 4, 5, 6)


class SummaryLines:
    """Summary-form lines from the vectors of consecutive steps. betas: the running averages of g whose
    sums each line carries (as the Diagnoser's momentum_betas, so that both judge alike)."""

    def __init__(self, betas: tuple[float, ...]) -> None:
        self.betas = tuple(betas)
        self.averages: dict[str, GradientAverages] = {}
        self.pending: dict | None = None   # the last step, waiting for the next one's values (its update)

    def push(self, line: dict, kinds: dict[str, Logged], layouts: dict[str, Layout], trained: bool) -> list[dict]:
        """One step: `line` its plain keys (step, loss, ...), `kinds` its vectors by kind ("bias",
        "weight"). Returns the lines now complete (the previous step's once this one gives its update)."""
        out = self._flush(kinds)
        entry = {"line": line, "kinds": kinds, "layouts": layouts, "avg": {}}
        for kind, logged in kinds.items():
            layout = layouts[kind]
            if kind not in self.averages:
                self.averages[kind] = GradientAverages(self.betas, int(sum(layout.sizes)))
            g = _flat(logged.grads)
            avg, used = self.averages[kind].block(np.zeros((1, 0)) if g is None else g[None],
                                                  [g is not None], [trained or kind != "bias"])
            entry["avg"][kind] = avg[:, 0].copy() if used[0] else None
        self.pending = entry
        if all(logged.updates is not None for logged in kinds.values()):
            out += self._flush(None)
        return out

    def finish(self) -> list[dict]:
        """The last step's line (its update unknown unless it was given)."""
        return self._flush(None)

    def _flush(self, following: dict[str, Logged] | None) -> list[dict]:
        entry, self.pending = self.pending, None
        if entry is None:
            return []
        line = dict(entry["line"])
        for kind, logged in entry["kinds"].items():
            layout, p = entry["layouts"][kind], _flat(logged.values)
            u = _flat(logged.updates)
            if u is None and following is not None:
                u = _flat(following[kind].values) - p
            table = layer_sums(layout, p, _flat(logged.grads), u, entry["avg"][kind], len(self.betas))
            line[f"{kind}_sums"] = sums_json(layout, table, logged.unreached)
        return [line]


def _flat(vectors: dict | None) -> np.ndarray | None:
    if vectors is None:
        return None
    parts = [np.asarray(v, dtype=np.float64).reshape(-1) for v in vectors.values()]
    return np.concatenate(parts) if parts else np.zeros(0)
