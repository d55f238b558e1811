"""Where each layer's entries sit in a flat vector (the layers' biases end to end)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Layout:
    """Layer names and sizes; layer i owns flat[starts[i]:starts[i] + sizes[i]]."""

    names: tuple[str, ...]
    sizes: tuple[int, ...]

    @property
    def starts(self) -> np.ndarray:
        """(layers,) the offset of each layer's first entry."""
        return np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(int)

    def split(self, flat: np.ndarray) -> dict:
        """{name: view of flat (n,) for that layer}."""
        out, start = {}, 0
        for name, size in zip(self.names, self.sizes):
            out[name] = flat[start:start + size]
            start += size
        return out

    def to_json(self) -> list[dict]:
        """The layers as a stream's header lists them: [{"name": ..., "size": ...}, ...]."""
        return [{"name": n, "size": s} for n, s in zip(self.names, self.sizes)]

    def describe(self, most: int = 6) -> str:
        """'a[16], b[1]' (for messages): the first `most` layers (names cut to 30 characters), then how many."""
        shown = ", ".join(f"{n if len(n) <= 30 else n[:30] + '...'}[{s}]"
                          for n, s in zip(self.names[:most], self.sizes[:most]))
        if len(self.names) > most:
            shown += f", ... ({len(self.names):,} layers)"
        return shown or "no layers"
