"""An MLP trained with FSDP2 (`fully_shard`) on the CPU (gloo), watched by TorchMonitor, or the same MLP
trained unsharded in this process: the logged sums must be the same. With replicas > 1, HSDP: fully_shard on
a 2-D mesh (replicas x world // replicas), each parameter (Replicate(), Shard(0)).

The 3-5-4-1 tanh MLP (float64) of y = sin(2 x0) + 0.5 x1^2 - x2 over 64 samples, Adam lr 0.01. Each of two
processes takes every other sample; FSDP2 averages the two halves' gradients, so the step is the full batch's,
as unsharded (world=1: no FSDP at all). FSDP2 shards each parameter's first dim: the first layer's 5 rows as 3
and 2, the last layer's 1 row as 1 and none. The hidden units whose rows rank 1 holds are damped by 1e-9 (a
buffer), so that its gradient entries are not significant against rank 0's (g^2 below 1e-16 times the
largest): counted alone, a shard would call them significant. HSDP (world 4, replicas 2): each process takes
every fourth sample; the shard dim has two ranks, sharding as above (ranks 0 and 2 hold shard 0, 1 and 3 shard
1), the replicas all-reduce the gradients. Every rank builds the monitor alike; a rank other than 0 is given
its own path (OUT.rankN), so that a caller can see it was not written (the mesh's first rank alone writes);
the loss given is the mean of all processes' (all-reduced). bias_bug: the biases' param group maximizes (the
sign bug). chunk: the sums are made the larger models' way (biasmon/torch_sums.py), tensor by tensor in chunks
of that many entries.

    python tests/trainers/fsdp_trainer.py OUT.jsonl [--world 2] [--replicas 1] [--steps 60] [--every 1] [--bias-bug]
        [--chunk N]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from unittest import mock

import torch

from biasmon import torch_sums
from biasmon.torch_monitor import TorchMonitor

MSE = torch.nn.functional.mse_loss


def data(rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, generator=gen, dtype=torch.float64) * 3 - 1.5
    y = torch.sin(2 * x[:, :1]) + 0.5 * x[:, 1:2] ** 2 - x[:, 2:]
    return x[rank::world], y[rank::world]


class Damp(torch.nn.Module):
    """Multiplies the last n // 2 of n units (the rows of the layer before that rank 1 holds) by 1e-9."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor([1.0] * (n - n // 2) + [1e-9] * (n // 2), dtype=torch.float64))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * self.scale


def model() -> torch.nn.Sequential:
    """Linear layers 0, 3 and 6."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), Damp(5), torch.nn.Linear(5, 4),
                               torch.nn.Tanh(), Damp(4), torch.nn.Linear(4, 1)).double()


def optimizer(net: torch.nn.Module, bias_bug: bool) -> torch.optim.Optimizer:
    named = list(net.named_parameters())
    return torch.optim.Adam([{"params": [p for n, p in named if not n.endswith("bias")]},
                             {"params": [p for n, p in named if n.endswith("bias")], "maximize": bias_bug}],
                            lr=0.01)


def worker(rank: int, world: int, store: str, path: str, steps: int, every: int, bias_bug: bool,
           chunk: int | None, replicas: int = 1) -> None:
    """One process: join the group (a file store: no port to race for), shard each Linear and the root
    with fully_shard (on a 2-D replicas x shards mesh if replicas > 1: HSDP), train, the monitor's rank 0
    writes."""
    torch.set_num_threads(1)
    net = model()
    if world > 1:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard
        torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
        mesh = init_device_mesh("cpu", (replicas, world // replicas), mesh_dim_names=("replicate", "shard")) \
            if replicas > 1 else None   # None: fully_shard's default, 1-D over the world
        for layer in net[::3]:
            fully_shard(layer, mesh=mesh)
        fully_shard(net, mesh=mesh)   # the parameters are now DTensors, named as before (`0.bias`)
        path = path if rank == 0 else f"{path}.rank{rank}"
    opt = optimizer(net, bias_bug)   # after fully_shard: it holds the sharded parameters
    x, y = data(rank, world)
    way = mock.patch.multiple(torch_sums, FLAT_MAX=0, CHUNK=chunk) if chunk else contextlib.nullcontext()
    try:
        with way, TorchMonitor(net, path, opt, every=every, run_id="fsdp") as monitor:
            for _ in range(steps):
                opt.zero_grad()
                loss = MSE(net(x), y)
                loss.backward()
                opt.step()
                mean = loss.detach().clone()
                if world > 1:
                    torch.distributed.all_reduce(mean)
                monitor.step(mean / world)
    finally:
        if world > 1:   # no process leaves while another may still talk to it (gloo aborts then)
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
    if world > 1:   # written and flushed: skip the C++ teardown, where gloo's threads now and then aborted
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def train(path, world: int = 2, steps: int = 60, every: int = 1, bias_bug: bool = False,
          chunk: int | None = None, replicas: int = 1) -> None:
    """Train and log one run to `path` (world > 1: that many processes, spawned, HSDP if replicas > 1;
    1: unsharded, here)."""
    if world == 1:
        worker(0, 1, "", str(path), steps, every, bias_bug, chunk)
        return
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "store")
        torch.multiprocessing.spawn(worker, args=(world, store, str(path), steps, every, bias_bug, chunk, replicas),
                                    nprocs=world)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--bias-bug", action="store_true")
    parser.add_argument("--chunk", type=int)
    args = parser.parse_args(argv)
    train(args.out, args.world, args.steps, args.every, args.bias_bug, args.chunk, args.replicas)


if __name__ == "__main__":
    sys.exit(main())
