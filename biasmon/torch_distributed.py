"""Models the PyTorch helper sees through wrappers: DistributedDataParallel, DataParallel and torch.compile
put the user's module under `module` / `_orig_mod` (parameter names `module.0.bias`); the helper names
layers by the module inside. Under DDP one process logs (rank 0): the `.grad` it sees is the all-reduced
mean over every process's batch. Under FSDP2 (fully_shard) each parameter, its `.grad` and its optimizer
state are DTensors: TorchMonitor sums each rank's local shard and adds the sums over the mesh's process
group. torch is imported lazily."""
from __future__ import annotations

import sys
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


def local_tensors(tensors: list) -> list:
    """The entries of each tensor this rank holds: a DTensor's local shard (FSDP2's parameters, gradients and
    optimizer state: unpadded, possibly empty), any other tensor (or None) as it is."""
    dtensor = _dtensor()
    if dtensor is None:
        return list(tensors)
    return [t.to_local() if isinstance(t, dtensor) else t for t in tensors]


def shard_group(params: list) -> Any:
    """The process group FSDP2 shards `params` over (each a DTensor sharded on one 1-D device mesh), None if
    none is a DTensor; a BiasmonError if their local shards' sums cannot simply be added up."""
    dtensor = _dtensor()
    sharded = [p for p in params if dtensor is not None and isinstance(p, dtensor)]
    if not sharded:
        return None
    meshes = {p.device_mesh for p in sharded}
    if len(sharded) < len(params) or len(meshes) > 1 or next(iter(meshes)).ndim != 1 \
            or not all(place.is_shard() for p in sharded for place in p.placements):
        from .core.errors import BiasmonError
        raise BiasmonError(f"TorchMonitor: the parameters are not all DTensors sharded over one 1-D device mesh, "
                           f"as FSDP2's fully_shard makes them ({len(sharded)} of {len(params)} DTensors, "
                           f"{len(meshes)} mesh(es)): give process_group=, whose ranks hold disjoint shards")
    return next(iter(meshes)).get_group()


def fsdp1(model: Any) -> bool:
    """Whether FSDP1's FullyShardedDataParallel wraps the model or a module in it."""
    wrapper = getattr(sys.modules.get("torch.distributed.fsdp"), "FullyShardedDataParallel", None)
    return wrapper is not None and any(isinstance(m, wrapper) for m in model.modules())


def _dtensor() -> type | None:
    """torch's DTensor class if torch.distributed.tensor is loaded (no DTensor exists before), not importing it."""
    return getattr(sys.modules.get("torch.distributed.tensor"), "DTensor", None)
