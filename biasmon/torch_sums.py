"""One optimizer step's summary-form sums, computed in torch where the tensors live (TorchMonitor uses it).

`step_sums` gives a (L, 10) float64 tensor, one row per parameter tensor, in the order of
`SUM_COLUMNS` (biasmon.core.records) then |a|^2, a.u and a.g for the optimizer's running average a (NaN
where a tensor has none; a.g orients a, see biasmon.torch_monitor). It reads the snapshot of the
parameters taken before the step, the parameters after it, the gradients and the averages, makes no copy
of whole tensors beyond a scratch buffer of at most SCRATCH entries per dtype, and never synchronises
with the device: the caller reads the result with one `.tolist()`.

The definition is biasmon.core.summary_form.layer_sums (tested against it): `sig` counts the entries whose
g^2 is above SIGNIFICANT times the largest g^2 of the step over every tensor of the same kind (biases or
weights); `agree` those of them where u.g < 0. Sums are taken in the parameters' own dtype (float32:
about 1e-7 relative), counts exactly (chunks of at most SCRATCH entries, added in float64).
"""
from __future__ import annotations

import math
from typing import Any

from .core.measures import SIGNIFICANT

SCRATCH = 1 << 18          # entries of the reusable buffer the significance test writes (1 MiB in float32)
TINY = 1e-300              # as layer_sums: g^2 above top * SIGNIFICANT + TINY is significant
COLUMNS = 10               # n, pp, gg, uu, ug, sig, agree, aa, au, ag


def powsum(torch: Any, tensors: list) -> list:
    """[sum of x^2 for x in tensors], one foreach kernel where torch has it."""
    if not tensors:
        return []
    if hasattr(torch, "_foreach_powsum"):
        return list(torch._foreach_powsum(tensors, 2))
    return [n * n for n in torch._foreach_norm(tensors)]


class StepSums:
    """Per-layer sums of one step. params: the tracked parameters (L tensors); kinds: (L,) 0 for a bias,
    1 for a weight. Holds the scratch buffers between steps."""

    def __init__(self, params: list, kinds: list[int]) -> None:
        import torch
        self.torch = torch
        self.params = params
        self.kinds = kinds
        self.sizes = [int(p.numel()) for p in params]
        self._scratch: dict = {}

    def scratch(self, like: Any, n: int) -> Any:
        """A flat buffer of n <= SCRATCH entries of like's dtype and device (reused)."""
        key = (like.device, like.dtype)
        buf = self._scratch.get(key)
        if buf is None or buf.numel() < n:
            buf = self._scratch[key] = self.torch.empty(min(SCRATCH, max(self.sizes)), dtype=like.dtype,
                                                        device=like.device)
        return buf[:n]

    def compute(self, diff: list, grads: list, averages: list, group: Any = None) -> Any:
        """(L, 10) float64 sums. diff: (L,) the snapshot of the parameters before the step, which this
        turns into p_before - p_after = -u and then overwrites (it is taken again before the next logged
        step); grads, averages: (L,) tensors or None. group: a process group whose shards' sums are added
        (the largest |g| all-reduced first, for `sig`)."""
        torch = self.torch
        L = len(self.params)
        pp = powsum(torch, diff)
        torch._foreach_sub_(diff, self.params)
        uu = powsum(torch, diff)
        with_g = [i for i in range(L) if grads[i] is not None]
        with_a = [i for i in range(L) if averages[i] is not None]
        gg = powsum(torch, [grads[i] for i in with_g])
        aa = powsum(torch, [averages[i] for i in with_a])
        thresholds = self._thresholds([grads[i] for i in with_g], [self.kinds[i] for i in with_g], group)
        va, ag = [], []
        for i in with_a:
            a = averages[i].reshape(-1)
            va.append(torch.dot(a, diff[i].reshape(-1)))
            if grads[i] is not None:
                ag.append(torch.dot(a, _flat(grads[i])))
        counts = [self._counts(diff[i].reshape(-1), _flat(grads[i]), thresholds[self.kinds[i]]) for i in with_g]
        table = torch.full((L, COLUMNS), math.nan, dtype=torch.float64, device=self.params[0].device)
        table[:, 0] = torch.tensor(self.sizes, dtype=torch.float64)
        table[:, 1] = _stack(torch, pp)
        table[:, 3] = _stack(torch, uu)
        if with_g:
            idx = torch.tensor(with_g, device=table.device)
            table[idx, 2] = _stack(torch, gg)
            table[idx, 4:7] = _stack(torch, [c for row in counts for c in row]).view(-1, 3)
        if with_a:
            idx = torch.tensor(with_a, device=table.device)
            table[idx, 7] = _stack(torch, aa)
            table[idx, 8] = -_stack(torch, va)
            if ag:
                table[torch.tensor([i for i in with_a if grads[i] is not None], device=table.device), 9] = _stack(torch, ag)
        if group is not None:
            torch.distributed.all_reduce(table, group=group)
        return table

    def _thresholds(self, grads: list, kinds: list[int], group: Any) -> Any:
        """(2,) per kind: top * SIGNIFICANT + TINY, top the largest g^2 of the step over that kind's tensors
        (over every shard with a process group)."""
        torch = self.torch
        device = self.params[0].device
        top = torch.zeros(2, dtype=torch.float64, device=device)
        if grads:
            ends = [torch.aminmax(g) for g in grads]
            largest = torch.maximum(_stack(torch, [hi for _, hi in ends]), -_stack(torch, [lo for lo, _ in ends]))
            top.scatter_reduce_(0, torch.tensor(kinds, device=device), largest, "amax")
        if group is not None:
            torch.distributed.all_reduce(top, op=torch.distributed.ReduceOp.MAX, group=group)
        return top * top * SIGNIFICANT + TINY

    def _counts(self, v: Any, g: Any, threshold: Any) -> tuple:
        """(u.g, significant entries, those where u.g < 0) of one tensor; v = -u, destroyed here."""
        torch = self.torch
        ug = -v.dot(g)
        v.mul_(g).gt_(0)   # 1 where v.g > 0, that is u.g < 0
        sig, agree = [], []
        for start in range(0, v.numel(), SCRATCH):
            gc, vc = g[start:start + SCRATCH], v[start:start + SCRATCH]
            s = torch.mul(gc, gc, out=self.scratch(gc, gc.numel())).gt_(threshold)
            sig.append(s.sum())
            agree.append(s.dot(vc))
        if len(sig) == 1:
            return ug, sig[0], agree[0]
        return ug, _stack(torch, sig).sum(), _stack(torch, agree).sum()


def _flat(t: Any) -> Any:
    """A gradient as a flat tensor (dense: a sparse gradient is made dense)."""
    return (t.to_dense() if t.is_sparse else t).reshape(-1)


def _stack(torch: Any, scalars: list) -> Any:
    """0-d tensors of any float dtype as one float64 vector."""
    return torch.stack([s.to(torch.float64) for s in scalars]) if len({s.dtype for s in scalars}) > 1 \
        else torch.stack(scalars).to(torch.float64)
