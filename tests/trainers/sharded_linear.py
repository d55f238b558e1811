"""A linear layer trained with Adam and watched by TorchMonitor, whole or split by rows over two CPU
processes (gloo), each holding half of its weight and bias: the sharded sums, all-reduced over the
process group, must equal the whole layer's.

    python sharded_linear.py OUT.jsonl      # two processes; rank 0 writes OUT.jsonl

`whole(path)` trains the unsharded layer the same way. The loss weighs the second half's outputs by
1e-9, so that its gradient entries are not significant against the first half's (g^2 below 1e-16 times
the largest): counted alone, a shard would call them significant.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist

from biasmon.torch_monitor import TorchMonitor

STEPS, BATCH, OUT = 12, 32, 4
WEIGHT = torch.tensor([1.0, 1.0, 1e-9, 1e-9], dtype=torch.float64)   # per output: the loss's weight


def layer(rows: slice) -> torch.nn.Module:
    """nn.Sequential(Linear(3, rows)) holding those output rows of one seeded Linear(3, 4)."""
    torch.manual_seed(0)
    full = torch.nn.Linear(3, OUT).double()
    part = torch.nn.Sequential(torch.nn.Linear(3, rows.stop - rows.start)).double()
    with torch.no_grad():
        part[0].weight.copy_(full.weight[rows])
        part[0].bias.copy_(full.bias[rows])
    return part


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(step)
    return torch.randn(BATCH, 3, generator=gen, dtype=torch.float64), \
        torch.randn(BATCH, OUT, generator=gen, dtype=torch.float64)


def train(rows: slice, path: str | None, group) -> None:
    """The rows' part of the loss (the whole loss adds every rank's); the monitor gets the whole loss."""
    net = layer(rows)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    with TorchMonitor(net, path, opt, every=1, process_group=group, run_id="linear") as monitor:
        for step in range(STEPS):
            x, y = batch(step)
            opt.zero_grad()
            part = (((net(x) - y[:, rows]) ** 2) * WEIGHT[rows]).sum() / y.numel()
            part.backward()
            opt.step()
            loss = part.detach().clone()
            if group is not None:
                dist.all_reduce(loss, group=group)
            monitor.step(loss)


def whole(path: str) -> None:
    train(slice(0, OUT), path, None)


def _rank(rank: int, store: str, path: str) -> None:
    """One rank: a file store (no port to race for, no server on rank 0 that must outlive the other)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        half = OUT // 2
        train(slice(rank * half, (rank + 1) * half), path if rank == 0 else None, dist.group.WORLD)
        dist.barrier()   # both ranks done before either tears gloo down (without it one aborted now and then)
    finally:
        dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)   # written and flushed: skip the C++ teardown, where gloo's threads now and then aborted


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        torch.multiprocessing.spawn(_rank, args=(str(Path(tmp) / "store"), sys.argv[1]), nprocs=2, join=True)
