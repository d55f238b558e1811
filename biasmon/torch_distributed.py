"""Models the PyTorch helper sees through wrappers: DistributedDataParallel, DataParallel and torch.compile
put the user's module under `module` / `_orig_mod` (parameter names `module.0.bias`); the helper names
layers by the module inside. Under DDP one process logs (rank 0): the `.grad` it sees is the all-reduced
mean over every process's batch. Under FSDP2 (fully_shard) each parameter, its `.grad` and its optimizer
state are DTensors: TorchMonitor sums each rank's local shard and adds the sums over the process group of
the mesh dim they are sharded on (under HSDP, a 2-D mesh, not over the replicas). torch is imported lazily."""
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


def shard_group(params: list) -> tuple[Any, bool]:
    """(the process group whose ranks' local shards of `params` add up to each whole parameter, whether this
    rank writes the stream), as FSDP2's fully_shard leaves them: every parameter a DTensor on one device mesh,
    sharded (Shard) on one and the same mesh dim and replicated on any other (FSDP on a 1-D mesh: (Shard(0),);
    HSDP on a 2-D one: (Replicate(), Shard(0))). The group is that mesh dim's: the replicas hold the same
    values, so adding over the whole mesh would count each once per replica; the mesh's first rank (at 0 on
    every dim) writes. (None, True) if no parameter is a DTensor; a one-line BiasmonError if their sums cannot
    simply be added up (plain tensors beside DTensors, several meshes, other placements: Partial, no Shard or
    more than one)."""
    dtensor = _dtensor()
    sharded = [p for p in params if dtensor is not None and isinstance(p, dtensor)]
    if not sharded:
        return None, True
    meshes = {p.device_mesh for p in sharded}
    kinds = {tuple("S" if q.is_shard() else "R" if q.is_replicate() else "?" for q in p.placements) for p in sharded}
    kind = kinds.pop() if len(kinds) == 1 else ()
    if len(sharded) < len(params):
        wrong = f"{len(params) - len(sharded)} of {len(params)} parameters are not DTensors"
    elif len(meshes) > 1:
        wrong = f"the DTensors are on {len(meshes)} device meshes"
    elif kind.count("S") != 1 or "?" in kind:
        wrong = "placements " + ", ".join(sorted({str(tuple(p.placements)) for p in sharded}))
    else:
        mesh = meshes.pop()
        coordinate = mesh.get_coordinate()
        return mesh.get_group(mesh_dim=kind.index("S")), coordinate is not None and not any(coordinate)
    from .core.errors import BiasmonError
    raise BiasmonError(f"TorchMonitor: cannot add up the shards' sums: {wrong}; allowed: every parameter a DTensor "
                       f"on one device mesh, Shard on the same one mesh dim and Replicate on any other, as FSDP2's "
                       f"fully_shard makes them (FSDP: (Shard(0),), HSDP: (Replicate(), Shard(0))), or give "
                       f"process_group=, whose ranks hold disjoint shards")


def fsdp1(model: Any) -> bool:
    """Whether FSDP1's FullyShardedDataParallel wraps the model or a module in it."""
    wrapper = getattr(sys.modules.get("torch.distributed.fsdp"), "FullyShardedDataParallel", None)
    return wrapper is not None and any(isinstance(m, wrapper) for m in model.modules())


def _dtensor() -> type | None:
    """torch's DTensor class if torch.distributed.tensor is loaded (no DTensor exists before), not importing it."""
    return getattr(sys.modules.get("torch.distributed.tensor"), "DTensor", None)
