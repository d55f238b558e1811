"""The summary form of a stream line: per-layer sums in place of vectors (docs/stream-format.md).

`layer_sums` is the reference definition, for one step of one kind of parameter; `SummaryLines` turns
the steps a StreamWriter is given (vectors) into summary-form lines, deriving an update not given from
the next step's values, as a reader does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layout import Layout
from .measures import GradientAverages, block_sums
from .records import SUM_COLUMNS, sums_json
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


def average_cosines(ag: np.ndarray, aa: np.ndarray, gg: np.ndarray) -> np.ndarray:
    """(L,) cos(a, g) of each layer's running average a and gradient g from their sums a.g, |a|^2, |g|^2
    (0 where one is not known, not finite or zero): a writer that cannot tell which way an optimizer's
    average points adds these up over the logged steps and every layer, and takes a as an average of -g
    where the total is negative. Cosines, not a.g itself: an early overshoot (the gradient reversed, the
    average not yet) gives a few large negative a.g that would outweigh a whole run of positive ones."""
    norms = np.sqrt(np.where(aa > 0, aa, 0.0)) * np.sqrt(np.where(gg > 0, gg, 0.0))   # (NaN > 0 is False)
    usable = (norms > 0) & (norms < np.inf) & (np.abs(ag) < np.inf)
    cos = np.divide(ag, norms, out=np.zeros(len(ag)), where=usable)   # no warning to silence: nothing else divides
    return np.clip(cos, -1.0, 1.0, out=cos)


def oriented_dots(au: np.ndarray, ag: np.ndarray, aa: np.ndarray, gg: np.ndarray, orient: np.ndarray,
                  declared: np.ndarray | None = None) -> np.ndarray:
    """(L,) each layer's a.u with its running average a taken as an average of g, as the format says (a
    writer's rule for an optimizer's own buffer): declared (L,) +1 where the optimizer says a averages g,
    -1 where -g, 0 where it says nothing (None: nowhere); where it says nothing, the total of orient (L,),
    each layer's sum of cos(a, g) over the logged steps (average_cosines, this step's added here in place),
    decides for every layer: the way an optimizer keeps its average is one rule for all its parameters."""
    if declared is not None and declared.all():   # every layer's way declared: no evidence needed
        return au * declared
    orient += average_cosines(ag, aa, gg)
    sign = -1.0 if orient.sum() < 0 else 1.0
    return au * (sign if declared is None else np.where(declared != 0, declared, sign))


def average_names(betas: tuple[float, ...]) -> list[str]:
    """The header's `averages` for running averages a <- beta a + (1 - beta) g: ["ema0.9", ...]."""
    return [f"ema{b:g}" for b in betas]


@dataclass
class _Pending:
    """A step waiting for its update: its plain keys, its vectors and layers by kind, the running
    averages of its gradient by kind ((k, n), None before the first gradient)."""

    line: dict
    kinds: dict[str, Logged]
    layouts: dict[str, Layout]
    averages: dict[str, np.ndarray | None]


class SummaryLines:
    """Summary-form lines from the vectors of consecutive steps. betas: the running averages of g whose
    sums each line carries (as the Diagnoser's momentum_betas, so that both judge alike)."""

    def __init__(self, betas: tuple[float, ...]) -> None:
        self.betas = tuple(betas)
        self.averages: dict[str, GradientAverages] = {}
        self.pending: _Pending | None = None

    def complete(self, following: dict[str, Logged]) -> list[dict]:
        """The line waiting for its update, completed by the next step's values (`following`), if any."""
        return self._flush(following)

    def push(self, line: dict, kinds: dict[str, Logged], layouts: dict[str, Layout]) -> list[dict]:
        """One step: `line` its plain keys (step, loss, ...), `kinds` its vectors by kind ("bias",
        "weight"). Returns the lines now complete: the previous step's (completed by this one's values,
        unless complete() did it first), and this one's if its updates were given."""
        out = self._flush(kinds)
        averages = {}
        for kind, logged in kinds.items():
            if kind not in self.averages:
                self.averages[kind] = GradientAverages(self.betas, int(sum(layouts[kind].sizes)))
            g = _flat(logged.grads)
            avg, used = self.averages[kind].block(np.zeros((1, 0)) if g is None else g[None], [g is not None], [True])
            averages[kind] = avg[:, 0].copy() if used[0] else None
        self.pending = _Pending(line, kinds, layouts, averages)
        if all(logged.updates is not None for logged in kinds.values()):
            out += self._flush(None)
        return out

    def finish(self) -> list[dict]:
        """The last step's line (its update unknown unless it was given)."""
        return self._flush(None)

    def _flush(self, following: dict[str, Logged] | None) -> list[dict]:
        pending, self.pending = self.pending, None
        if pending is None:
            return []
        line = dict(pending.line)
        for kind, logged in pending.kinds.items():
            layout, p = pending.layouts[kind], _flat(logged.values)
            u = _flat(logged.updates)
            if u is None and following is not None:
                u = _flat(following[kind].values) - p
            g = _flat(logged.grads)
            table = layer_sums(layout, p, g, u, pending.averages[kind], len(self.betas))
            line[f"{kind}_sums"] = sums_json(layout.names, table, g is not None, u is not None, logged.unreached)
        return [line]


def _flat(vectors: dict | None) -> np.ndarray | None:
    if vectors is None:
        return None
    parts = [np.asarray(v, dtype=np.float64).reshape(-1) for v in vectors.values()]
    return np.concatenate(parts) if parts else np.zeros(0)
