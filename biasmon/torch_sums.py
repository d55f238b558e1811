"""One optimizer step's summary-form sums, computed in torch where the tensors live (TorchMonitor uses it).

`StepSums.snapshot()` copies the parameters before a step; `StepSums.compute()` after it gives a
(L, 10) float64 tensor, one row per parameter tensor: n, |p|^2, |g|^2, |u|^2, u.g, sig, agree (the
summary form's columns), then |a|^2, a.u and a.g for the optimizer's running average a (NaN where a
tensor has none; a.g orients a, see biasmon.torch_monitor). It never synchronises with the device: the
caller reads the result with one `.tolist()`.

The definition is biasmon.core.summary_form.layer_sums (tested against it): `sig` counts the entries whose
g^2 is above SIGNIFICANT times the largest g^2 of the step over every tensor of the same kind (biases or
weights); `agree` those of them where u.g < 0. Two ways to the same sums:

- a model of at most FLAT_MAX entries in one dtype (where the cost is the number of kernels launched, not
  the bytes): the snapshot is one flat (n,) buffer; at a logged step every tensor goes end to end in the
  rows of one (9, n) buffer of per-entry terms (its first row the snapshot), made and summed per layer in
  about 20 kernels however many tensors there are, and let go after (at most 9 x 4 x FLAT_MAX bytes =
  0.56 MiB in float32 while it is in use);
- a larger one: the snapshot (one copy of the parameters, and nothing else of that size), then tensor
  by tensor in chunks of CHUNK entries, every term of a chunk made while it is in the cache (about 16
  kernels a chunk), the counts' flags written over the chunk's own snapshot once it is used.

Sums are taken in the parameters' own dtype (float32: about 1e-7 relative), counts exactly.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .core.layout import Layout
from .core.measures import SIGNIFICANT
from .core.records import json_number, sums_json
from .core.summary_form import oriented_dots
from .torch_distributed import local_tensors

CHUNK = 1 << 17            # entries of a chunk (512 KiB in float32: a few of them stay in the cache)
FLAT_MAX = 1 << 14         # models up to this many entries take the flat way
TINY = 1e-300              # as layer_sums: g^2 above top * SIGNIFICANT + TINY is significant
COLUMNS = 10               # n, pp, gg, uu, ug, sig, agree, aa, au, ag
NEEDS_G = [2, 4, 5, 6, 9]  # the columns a tensor without a gradient has none of
SIGNS = (1, 1, 1, -1, 1, 1, 1, -1, 1)   # the terms hold v = -u: v.g and a.v change sign


class StepSums:
    """Per-layer sums of one step. params: the tracked parameters (L tensors; of a DTensor, FSDP2's, the
    local shard is summed); kinds: (L,) 0 for a bias, 1 for a weight (the biases first)."""

    def __init__(self, params: list, kinds: list[int]) -> None:
        import torch
        self.torch, self.params, self.kinds = torch, params, kinds
        local = local_tensors(params)
        self.shapes = [p.shape for p in local]
        self.sizes = [int(p.numel()) for p in local]
        self.biases = sum(s for s, k in zip(self.sizes, kinds) if k == 0)   # entries of the biases
        p0 = local[0]
        self.flat = sum(self.sizes) <= FLAT_MAX and len({(p.device, p.dtype) for p in local}) == 1
        self._size_col = torch.tensor(self.sizes, dtype=torch.float64, device=p0.device)[:, None]
        self._signs = torch.tensor(SIGNS, dtype=torch.float64, device=p0.device)
        if self.flat:
            self._flat_snapshot = torch.empty(sum(self.sizes), dtype=p0.dtype, device=p0.device)
            self._snapshot = self._views(self._flat_snapshot)
        else:
            self._snapshot = [torch.empty_like(p, memory_format=torch.contiguous_format) for p in local]

    @property
    def buffer_bytes(self) -> int:
        """Bytes kept between steps: the snapshot, one copy of the parameters."""
        kept = [self._flat_snapshot] if self.flat else self._snapshot
        return sum(t.numel() * t.element_size() for t in kept)

    def _views(self, row: Any) -> list:
        """row (n,) cut into views shaped as the parameters."""
        out, start = [], 0
        for shape, size in zip(self.shapes, self.sizes):
            out.append(row[start:start + size].view(shape))
            start += size
        return out

    def snapshot(self) -> None:
        """Copy the parameters (before the step)."""
        self.torch._foreach_copy_(self._snapshot, self._tensors())

    def _tensors(self) -> list:
        """The parameters' entries on this rank, detached (a DTensor's local shard taken anew each time, never
        a stale view of it)."""
        return [p.detach() for p in local_tensors(self.params)]

    def compute(self, grads: list, averages: list, group: Any = None) -> Any:
        """(L, 10) float64 sums of the step since snapshot(). grads, averages: (L,) tensors or None.
        group: a process group whose shards' sums are added (the largest g^2 all-reduced first, for
        `sig`). The snapshot is used up (taken again before the next logged step)."""
        params, grads, averages = self._tensors(), local_tensors(grads), local_tensors(averages)
        way = self._flat if self.flat else self._per_tensor
        table = way(params, grads, averages, group)
        missing_g = [i for i, g in enumerate(grads) if g is None]
        missing_a = [i for i, a in enumerate(averages) if a is None]
        if missing_g:
            device = table.device
            rows = self.torch.tensor(missing_g, device=device)[:, None]
            table[rows, self.torch.tensor(NEEDS_G, device=device)] = math.nan
        if missing_a:
            table[self.torch.tensor(missing_a, device=table.device), 7:] = math.nan
        if group is not None:
            self.torch.distributed.all_reduce(table, group=group)
        return table

    def _thresholds(self, top: Any, group: Any) -> Any:
        """(2,) per kind: top * SIGNIFICANT + TINY, top (2,) the largest g^2 of each kind (over every shard)."""
        if group is not None:
            self.torch.distributed.all_reduce(top, op=self.torch.distributed.ReduceOp.MAX, group=group)
        return top * SIGNIFICANT + TINY

    # --- small models: one buffer of terms --------------------------------------------------------
    def _flat(self, params: list, grads: list, averages: list, group: Any) -> Any:
        """Rows pp, gg, uu, v.g, sig, agree, aa, a.v, a.g of every entry (v = -u), summed per layer."""
        torch, nb, snapshot = self.torch, self.biases, self._flat_snapshot
        t = torch.empty((9,) + snapshot.shape, dtype=snapshot.dtype, device=snapshot.device)   # for this step only
        torch.mul(snapshot, snapshot, out=t[0])   # pp: the snapshot squared (no copy of it first)
        torch.cat([p.reshape(-1) for p in params], out=t[2])
        torch.sub(snapshot, t[2], out=t[2])   # v = -u: before less after
        torch.cat(_flats(params, grads), out=t[1])
        torch.cat(_flats(params, averages), out=t[6])
        torch.mul(t[6], t[2], out=t[7])
        torch.mul(t[6], t[1], out=t[8])
        torch.mul(t[2], t[1], out=t[3])
        torch._foreach_mul_(*[[t[1], t[2], t[6]]] * 2)   # squared in place
        top = torch.stack([t[1, :nb].max() if nb else t.new_zeros(()),
                           t[1, nb:].max() if nb < t.shape[1] else t.new_zeros(())]).double()
        threshold = self._thresholds(top, group)
        torch.gt(t[1, :nb], threshold[0], out=t[4, :nb])
        torch.gt(t[1, nb:], threshold[1], out=t[4, nb:])
        torch.gt(t[3], 0, out=t[5]).mul_(t[4])
        sums = torch.stack([block.sum(1) for block in t.split(self.sizes, 1)]).double()   # (L, 9)
        return torch.cat([self._size_col, sums.mul_(self._signs)], 1)

    # --- larger models: tensor by tensor, in chunks ------------------------------------------------
    def _per_tensor(self, params: list, grads: list, averages: list, group: Any) -> Any:
        """The flat way's nine sums, tensor by tensor in chunks of CHUNK entries: every term of a chunk is
        made while the chunk is in the cache, so that p, g and a are read from memory about once (after
        one pass over g for its largest entry). Each chunk's sums are 0-d tensors; one stack at the end."""
        torch = self.torch
        L = len(params)
        grads = [g.to_dense() if g is not None and g.is_sparse else g for g in grads]   # (an nn.Embedding's)
        top = torch.zeros(2, dtype=torch.float64, device=params[0].device)
        with_g = [i for i in range(L) if grads[i] is not None and grads[i].numel()]   # a shard may be empty
        if with_g:
            ends = [torch.aminmax(grads[i]) for i in with_g]
            largest = torch.maximum(_stack(torch, [hi for _, hi in ends]), -_stack(torch, [lo for lo, _ in ends]))
            kinds = torch.tensor([self.kinds[i] for i in with_g], device=top.device)
            top.scatter_reduce_(0, kinds, largest ** 2, "amax")
        threshold = self._thresholds(top, group)
        values, owners = [], []
        for i, p in enumerate(params):
            v, q = self._snapshot[i].view(-1), p.reshape(-1)
            g = None if grads[i] is None else _flat(grads[i]).to(v.dtype)
            a = None if averages[i] is None else averages[i].reshape(-1).to(v.dtype)
            zero = v.new_zeros(())
            n = CHUNK
            for start in range(0, v.numel(), n):
                values += self._chunk(v[start:start + n], q[start:start + n],
                                      None if g is None else g[start:start + n],
                                      None if a is None else a[start:start + n], threshold[self.kinds[i]], zero)
                owners.append(i)
        rows = _stack(torch, values).view(-1, 9)
        sums = torch.zeros((L, 9), dtype=torch.float64, device=top.device)
        sums.index_add_(0, torch.tensor(owners, device=top.device), rows)
        return torch.cat([self._size_col, sums.mul_(self._signs)], 1)

    def _chunk(self, v: Any, q: Any, g: Any, a: Any, threshold: Any, zero: Any) -> list:
        """[pp, gg, uu, v.g, sig, agree, aa, a.v, a.g] of one chunk: v the snapshot (p before), q p after;
        v becomes -u, then holds the flags the counts are made of (no other buffer). zero stands for what
        needs a missing g or a."""
        torch = self.torch
        pp = v.dot(v)
        v.sub_(q)
        uu = v.dot(v)
        gg = vg = sig = agree = ag = aa = av = zero
        if a is not None:
            aa, av = a.dot(a), a.dot(v)
            ag = a.dot(g) if g is not None else zero
        if g is not None:
            gg = g.dot(g)
            vg = v.mul_(g).sum()
            v.gt_(0).mul_(g).mul_(g)   # g^2 where v.g > 0 (u.g < 0), else 0
            agree = v.gt_(threshold).sum()
            sig = torch.mul(g, g, out=v).gt_(threshold).sum()
        return [pp, gg, uu, vg, sig, agree, aa, av, ag]


def _flats(params: list, tensors: list) -> list:
    """Each tensor flat (dense) in its parameter's dtype, zeros of its parameter's size where it is None."""
    return [p.new_zeros(p.numel()) if t is None else _flat(t).to(p.dtype) for p, t in zip(params, tensors)]


def _flat(t: Any) -> Any:
    """A gradient as a flat tensor (dense: a sparse gradient is made dense)."""
    return (t.to_dense() if t.is_sparse else t).reshape(-1)


def _stack(torch: Any, scalars: list) -> Any:
    """0-d tensors of any float dtype as one float64 vector."""
    if len({s.dtype for s in scalars}) > 1:
        return torch.stack([s.to(torch.float64) for s in scalars])
    return torch.stack(scalars).to(torch.float64)


def step_line(step: int, loss: float, val_loss: float | None, rows: np.ndarray, unreached: tuple,
              biases: Layout, weights: Layout, orient: np.ndarray, averages: bool,
              declared: np.ndarray | None = None) -> dict:
    """A logged step's line from StepSums' rows ((L, 10) float64, the biases' rows first), read back (docs/
    stream-format.md: a layer whose gradient was None is one no gradient reached; a sum that is not finite,
    divergence, goes out as NaN or Infinity). a.u is written with a taken as an average of g
    (core.summary_form.oriented_dots): declared (L,) +1 where the optimizer says its average is of g, -1
    where of -g (torch's `maximize=True`), 0 where it says nothing (None: nowhere); there the total of
    orient (L,), each layer's sum of cos(a, g) over the logged steps (this one's added here), decides: one
    layer's sum alone is noise where it sits at its minimum, and a sum of a.g itself is ruled by an early
    overshoot (a hand-written Adam's a.g at step 32 outweighed the rest of a correct run, which read
    uphill). averages: whether the rows carry |a|^2, a.u."""
    has_a = ~np.isnan(rows[:, 7])
    if has_a.any():
        rows[:, 8] = oriented_dots(rows[:, 8], rows[:, 9], rows[:, 7], rows[:, 2], orient, declared)
    line: dict[str, Any] = {"step": step, "loss": json_number(loss)}
    if val_loss is not None:
        line["val_loss"] = json_number(val_loss)
    width = 9 if averages else 7
    nb = len(biases.names)
    for key, names, part, off in (("bias_sums", biases.names, rows[:nb, :width], unreached[:nb]),
                                  ("weight_sums", weights.names, rows[nb:, :width], unreached[nb:])):
        if names:
            line[key] = sums_json(names, part, True, True, off)
    return line
