"""A DistributedDataParallel trainer on the CPU (gloo), logged by rank 0 only with TorchBiasLogger.

Each of `world` processes trains the 2-16-1 tanh MLP of y = sin(2 x0) + 0.5 x1^2 on its own share of the
same 64 samples (full batch), SGD lr 0.1; DDP averages the gradients, so the run is the single-process
full-batch run (world=1: no DDP at all). bias_bug: the biases' param group maximizes (the sign bug).

    python tests/trainers/ddp_trainer.py OUT.jsonl [--world 2] [--steps 150] [--bias-bug]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

MSE = torch.nn.functional.mse_loss


def leave() -> None:
    """End a spawned rank whose work is written: os._exit skips the interpreter's C++ teardown, where
    gloo's threads now and then aborted a finished rank ("terminate called without an active exception")."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def data(rank: int, world: int):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 2, generator=gen) * 3 - 1.5
    y = torch.sin(2 * x[:, :1]) + 0.5 * x[:, 1:] ** 2
    return x[rank::world], y[rank::world]


def model(bias_bug: bool):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    named = list(net.named_parameters())
    groups = [{"params": [p for n, p in named if not n.endswith("bias")]},
              {"params": [p for n, p in named if n.endswith("bias")], "maximize": bias_bug}]
    return net, groups


def worker(rank: int, world: int, store: str, path: str, steps: int, bias_bug: bool) -> None:
    """One process: join the group (a file store: no port to race for, no server on rank 0 that must
    outlive the others), train, rank 0 logs (with the gradient check every 50 steps)."""
    from biasmon.torch_logger import TorchBiasLogger
    torch.set_num_threads(1)
    net, groups = model(bias_bug)
    if world > 1:
        torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                                             world_size=world)
        net = torch.nn.parallel.DistributedDataParallel(net)   # the same parameters: the groups hold
    opt = torch.optim.SGD(groups, lr=0.1)
    x, y = data(rank, world)
    log = TorchBiasLogger(net, path, optimizer=opt, loss_fn=MSE, check_every=50) if rank == 0 else None
    try:
        for _ in range(steps):
            opt.zero_grad()
            loss = MSE(net(x), y)
            loss.backward()
            opt.step()
            if log is not None:
                log.step(loss, batch=(x, y))
    finally:
        if log is not None:
            log.close()
        if world > 1:   # no process leaves while another may still talk to it (gloo aborts then)
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
    if world > 1:
        leave()


def train(path, world: int = 2, steps: int = 150, bias_bug: bool = False) -> None:
    """Train and log one run to `path` (world > 1: that many processes, spawned)."""
    if world == 1:
        worker(0, 1, "", str(path), steps, bias_bug)
        return
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "store")
        torch.multiprocessing.spawn(worker, args=(world, store, str(path), steps, bias_bug), nprocs=world)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--bias-bug", action="store_true")
    args = parser.parse_args(argv)
    train(args.out, args.world, args.steps, args.bias_bug)


if __name__ == "__main__":
    sys.exit(main())
