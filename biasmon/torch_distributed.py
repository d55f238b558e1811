"""Models the PyTorch helper sees through wrappers: DistributedDataParallel, DataParallel and torch.compile
put the user's module under `module` / `_orig_mod` (parameter names `module.0.bias`); the helper names
layers by the module inside. Under DDP one process logs (rank 0): the `.grad` it sees is the all-reduced
mean over every process's batch. torch is imported lazily."""
from __future__ import annotations

from typing import Any


def unwrap(model: Any) -> Any:
    """The user's module inside DDP / DataParallel / torch.compile wrappers (the model itself if none)."""
    import torch
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    while True:
        if isinstance(model, wrappers):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):   # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def world_size() -> int:
    """How many processes train together (torch.distributed initialised), 1 otherwise."""
    import torch.distributed as dist
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    import torch.distributed as dist
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
