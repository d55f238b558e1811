"""Watch every parameter of a PyTorch model in the summary form: attach once, one call per step.

    from biasmon.torch_monitor import TorchMonitor

    with TorchMonitor(model, "run.jsonl", optimizer) as monitor:
        for x, y in batches:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            monitor.step(loss)          # after optimizer.step(); then `biasmon check run.jsonl`

What a line holds (docs/stream-format.md, "The summary form"): for each trainable parameter tensor, one
row of sums [n, |p|^2, |g|^2, |u|^2, u.g, sig, agree, |a|^2, a.u], computed in torch on the tensors'
device, read with one `.tolist()` per logged step. p is the parameter before the step, g the `.grad` the
optimizer used (read in its step pre-hook: after clipping and a GradScaler's unscale), u what the step
applied (p after minus p before: a snapshot of the parameters is taken in the pre-hook of a logged step:
one extra copy of the trainable parameters, kept between steps, and no other buffer of that size; a
model of at most 2^14 entries makes 9 terms an entry for a logged step, at most 0.56 MiB in float32, and
lets them go: biasmon/torch_sums.py), a the optimizer's own running average of the gradient where it keeps one
(`momentum_buffer`: SGD and RMSprop with momentum; `exp_avg`: Adam, AdamW, NAdam, RAdam, Adamax), named
in the header's `averages`. The buffer holds the average of g or of -g (`maximize=True`, or an optimizer written to
climb) by the optimizer's own convention: for torch's own optimizers each layer's a is taken as its param
group's `maximize` says (an average of -g where it is True), for any other optimizer with the sign of the
sum of cos(a, g) over the logged steps so far and every layer (one rule for all its parameters; one layer's sum
alone is noise where it sits at its minimum: a 1-entry bias under Adam), so that it stands for an average
of g, as the format says; a sign bug then reads uphill against it as against g.

Layers: one per parameter tensor. Biases (biasmon.torch_logger.bias_parameters: the naming rule, or
`params=`) go to `bias_sums`, every other trainable parameter to `weight_sums`; a layer is named by its
module path for `*.bias` and `*.weight` (`0`, `encoder.fc1`), by the parameter's full name otherwise.
Parameters with requires_grad=False are left out (frozen biases are named in a UserWarning and in the
header's meta.left_out_biases, which `check` notes); a trainable one the optimizer does not hold shows as
frozen. A parameter whose `.grad` is None at the step (no gradient reached it), or that was frozen since
(requires_grad=False, whatever its `.grad` holds), gets null gradient sums.

Steps: `step` in a line counts the optimizer's steps (0 first). `every=k` logs one optimizer step in k,
that step's own g and u (exact, no span): the snapshot and the sums are made only for a logged step, so
the cost falls as 1/k. Sparse logging can miss what happens between logged steps: a bug that acts only at
some steps (every other step, one parameter group's warm-up) may never be on a logged one; the check's
windows count lines, so a verdict takes k times as many steps to form (uphill after about 5k to 20k
steps, frozen after 10k); a divergence shows at the next logged step; the loss is sampled too (the
losses of the steps between are never read). DEFAULT_EVERY was chosen by
measurement (bench/bench_frameworks.py) to keep the overhead within 5% of a training step of a
784-512-512-10 MLP (batch 128), 15% of a 64-64-32-10 MLP (batch 32), 3% of a 10M-parameter transformer.

Losses: `step(loss)` after optimizer.step(). Called when no optimizer step ran since the previous call
(the micro-batches of gradient accumulation, or a step a GradScaler skipped), its loss is kept: the
line's loss is the mean of the losses given since the previous optimizer step (losses at the same
parameters). A loss is read (`.item()`) only for a logged step. A step a GradScaler skipped writes
nothing (with a fused optimizer its post-hook runs, its `found_inf` says so; the next step is logged).

Distributed: under DDP the gradients are all-reduced, so one rank's monitor (rank 0) sees the whole step.
Under FSDP2 (`fully_shard`: each parameter, its `.grad` and its optimizer state are DTensors, each rank
holding a shard) nothing more is needed: build the monitor after fully_shard (as the optimizer), on every rank
alike; each rank sums its local shards (unpadded; the snapshot copies those only) and the sums are added over
the parameters' device mesh (tested on the CPU, two gloo processes, with an uneven and an empty shard:
tests/trainers/fsdp_trainer.py gives the unsharded run's stream, names and all). Under HSDP (fully_shard on a
2-D mesh, replicas x shards: placements (Replicate(), Shard(0))) they are added over the shard dim's process
group only, each replica's shards holding the same values, and the mesh's first rank writes (tested as above
with four processes, a 2 x 2 mesh). When each rank holds a shard otherwise (a hand-sharded layer, as
tests/trainers/sharded_linear.py has), give `process_group=`. The sums are added by one all_reduce of a flat
tensor, after one all_reduce MAX of each kind's largest g^2 for `sig`; every rank must call step() alike; the
group's rank 0 (under HSDP, the mesh's first rank) writes the stream, with the loss it is given there
(all-reduce it for the whole batch's). Refused unless `process_group=` is given: plain tensors beside
DTensors, DTensors on several meshes, and placements other than one Shard dim with Replicate on the others (a
Partial, two Shard dims, none); refused always: FSDP1's FullyShardedDataParallel (its parameters are flat
views, empty on the ranks that hold none of them, with no `.grad` there).

torch is needed only to call this: install it yourself or with the `torch` extra (`biasmon[torch]`).
"""
from __future__ import annotations

import math
import os
import uuid
import warnings
from typing import Any, TextIO

import numpy as np

from .core.errors import BiasmonError
from .core.layout import Layout
from .core.stream import RecordWriter, open_target, sums_header
from .torch_params import bias_parameters, frozen_biases, left_out_meta, left_out_warning
from .torch_sums import step_line

DEFAULT_EVERY = 32
AVERAGE_KEYS = ("exp_avg", "momentum_buffer")   # optimizer state holding a running average of g


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise BiasmonError("biasmon.torch_monitor needs PyTorch: pip install torch (or biasmon[torch])") from None
    return torch


def parameter_layers(model: Any, params: Any = None) -> tuple[dict, dict]:
    """({bias layer: parameter}, {weight layer: parameter}) of a torch.nn.Module's trainable parameters in
    registration order (naming: the module docstring; params: the biases, as bias_parameters takes them)."""
    biases = {n: p for n, p in bias_parameters(model, params).items() if p.requires_grad}
    taken = {id(p) for p in biases.values()}
    weights = {}
    for name, p in model.named_parameters():
        if p.requires_grad and id(p) not in taken:
            weights[name[:-len(".weight")] if name.endswith(".weight") else name] = p
            taken.add(id(p))
    return biases, weights


class TorchMonitor:
    """Attach to a model and its optimizer; `step(loss)` once per optimizer step; `close()` (or `with`).

    path: a file path (truncated) or an open text file (left open by close()); None on ranks other than
    the process group's rank 0 (under HSDP, the mesh's first rank). every: log one optimizer step in
    `every`. params: the bias parameters, if the naming rule does not find them. run_id, meta: written into
    the header. process_group: add the sums of the shards each rank of the group holds, whose rank 0 writes
    (FSDP2's DTensors: their mesh's group unless given, under HSDP its shard dim's; see the module
    docstring)."""

    def __init__(self, model: Any, path: str | os.PathLike[str] | TextIO | None, optimizer: Any, *,
                 every: int = DEFAULT_EVERY, params: Any = None, run_id: str | None = None,
                 meta: dict | None = None, process_group: Any = None) -> None:
        torch = _torch()
        if not isinstance(model, torch.nn.Module):
            raise BiasmonError(f"TorchMonitor: model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise BiasmonError(f"TorchMonitor: optimizer must be a torch.optim.Optimizer (SGD, Adam, ...), "
                               f"got {type(optimizer).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise BiasmonError(f"TorchMonitor: every must be a whole number >= 1, got {every!r}")
        from .torch_distributed import fsdp1, shard_group
        if fsdp1(model):
            raise BiasmonError("TorchMonitor: FSDP1's FullyShardedDataParallel is not supported (a parameter is a "
                               "flat view, empty on ranks that hold none of it): shard with FSDP2's fully_shard")
        biases, weights = parameter_layers(model, params)
        self.left_out = {} if params is not None else frozen_biases(model)   # {layer: its parameter's name}
        if not biases and not weights:
            raise BiasmonError("TorchMonitor: the model has no trainable parameters (requires_grad=True)")
        from .torch_sums import StepSums
        self.torch, self.optimizer, self.every = torch, optimizer, every
        self.bias_layout = Layout(tuple(biases), tuple(int(p.numel()) for p in biases.values()))
        self.weight_layout = Layout(tuple(weights), tuple(int(p.numel()) for p in weights.values()))
        self.params = list(biases.values()) + list(weights.values())
        self.group, self._writes = shard_group(self.params) if process_group is None else \
            (process_group, torch.distributed.get_rank(process_group) == 0)   # FSDP2's shard dim / the group given
        if self.left_out and self._writes:   # said once, by the rank that writes, before anything is attached
            warnings.warn(left_out_warning("TorchMonitor", self.left_out), UserWarning, stacklevel=2)
        self._sums = StepSums(self.params, [0] * len(biases) + [1] * len(weights))
        self.run_id = run_id or f"torch-{uuid.uuid4().hex[:8]}"
        self.meta = left_out_meta(self.left_out, meta)
        self._handle, self._owns = open_target(path, "TorchMonitor") if self._writes else (None, False)
        self._writer = RecordWriter(self._handle) if self._writes else None
        self.steps = 0                 # optimizer steps taken (post-hooks run)
        self.next_logged = 0           # the optimizer step to log next
        self.lines = 0                 # step lines written
        self._armed = False            # the snapshot of this step is taken
        self._grads: list = []
        self._pending: tuple | None = None   # (step, table) of a logged step waiting for its loss
        self._held: tuple = (0.0, 0)   # the sum and count of the losses given before the logged step ran
        self._posts_since_call = 0
        self._averages: str | None = None    # the state key of the optimizer's running average, once known
        self._orient = np.zeros(len(self.params))   # per layer: the sum of cos(a, g) over the logged steps
        # torch's own optimizers say which way their average points (maximize); another's is oriented by cos(a, g)
        self._declares = type(optimizer).__module__.startswith("torch.optim")
        self._float32: bool | None = None   # every gradient of the first logged step was float32
        self._header_written = False
        self.closed = False
        self._hooks = [optimizer.register_step_pre_hook(self._pre_step),
                       optimizer.register_step_post_hook(self._post_step)]

    # --- hooks -------------------------------------------------------------------------------------
    def _pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.steps < self.next_logged:
            return
        with self.torch.no_grad():
            self._sums.snapshot()
        # a parameter frozen since (requires_grad=False) gets no gradient from the loss, whatever .grad holds
        # (zeros, after zero_grad(set_to_none=False)): as one no gradient reached
        self._grads = [p.grad if p.requires_grad else None for p in self.params]
        self._armed = True

    def _post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        step = self.steps
        self.steps += 1
        self._posts_since_call += 1
        if not self._armed:
            return
        self._armed = False
        if _skipped(optimizer, kwargs):   # a fused optimizer under a GradScaler: nothing moved, not a step
            self.steps -= 1
            self._posts_since_call -= 1
            self._grads = []
            return
        averages = [self._average(p) for p in self.params]
        unreached = tuple(g is None for g in self._grads)
        if self._float32 is None:
            dtypes = {g.dtype for g in self._grads if g is not None}
            self._float32 = dtypes == {self.torch.float32}
        with self.torch.no_grad():
            table = self._sums.compute(self._grads, averages, self.group)
        self._grads = []
        self._pending = (step, table, unreached)
        self.next_logged = step + self.every

    @property
    def buffer_bytes(self) -> int:
        """Bytes the monitor keeps between steps: its snapshot of the parameters."""
        return self._sums.buffer_bytes

    def _average(self, p: Any) -> Any:
        """The optimizer's running average of p's gradient (the key first found is kept for the run)."""
        state = self.optimizer.state.get(p)
        if not state:
            return None
        keys = (self._averages,) if self._averages else AVERAGE_KEYS
        for key in keys:
            a = state.get(key)
            if isinstance(a, self.torch.Tensor) and a.shape == p.shape:
                if self._averages is None and not self._header_written:
                    self._averages = key
                return a
        return None

    # --- public ------------------------------------------------------------------------------------
    def step(self, loss: Any, val_loss: Any = None) -> None:
        """After optimizer.step(): the step's loss (a tensor or a number, at the parameters before the
        step); val_loss optional. Writes the line of a logged step (see the module docstring)."""
        if self.closed:
            raise BiasmonError("TorchMonitor: step() after close()")
        ran, self._posts_since_call = self._posts_since_call, 0
        if ran > 1:
            raise BiasmonError(f"TorchMonitor: optimizer.step() ran {ran} times since the last monitor.step(): "
                               "call monitor.step(loss) once per optimizer step (every=k logs sparsely)")
        if ran == 0:
            if self.steps >= self.next_logged:   # kept as a tensor: read only if its step is logged
                total, count = self._held
                self._held = (total + (loss.detach() if hasattr(loss, "detach") else loss), count + 1)
            return
        (total, count), self._held = self._held, (0.0, 0)
        if self._pending is None:
            return
        (step, table, unreached), self._pending = self._pending, None
        if self._writes:
            rows = np.array(table.tolist(), dtype=np.float64)   # (L, 10): the one read of the step's sums
            mean = (_as_float(total) + _as_float(loss)) / (count + 1)
            self._write(step, mean, None if val_loss is None else _as_float(val_loss), rows, unreached)

    def close(self) -> None:
        """Detach from the optimizer and close the stream (a logged step never given its loss is dropped)."""
        if self.closed:
            return
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        self.closed = True
        if self._writes:
            self._ensure_header(None)
            if self._owns:
                self._handle.close()
            else:
                self._handle.flush()

    def __enter__(self) -> TorchMonitor:
        return self

    def __exit__(self, *exc: object) -> bool:
        self.close()
        return False

    def _declared(self) -> np.ndarray | None:
        """Per layer, the way torch's own optimizer says its average points: +1 (an average of g), -1 (of
        -g: the layer's param group has maximize=True), 0 (its group says nothing); None for an optimizer
        from elsewhere (its average is oriented by the logged cos(a, g))."""
        if not self._declares:
            return None
        maximize = {id(p): group.get("maximize") for group in self.optimizer.param_groups for p in group["params"]}
        signs = {True: -1.0, False: 1.0}
        return np.array([signs.get(maximize.get(id(p)), 0.0) for p in self.params])

    # --- writing -----------------------------------------------------------------------------------
    def _write(self, step: int, loss: float, val_loss: float | None, rows: np.ndarray, unreached: tuple) -> None:
        """The step's line (torch_sums.step_line), after the header (which the first line's sizes complete)."""
        self._ensure_header(rows)
        line = step_line(step, loss, val_loss, rows, unreached, self.bias_layout, self.weight_layout, self._orient,
                         bool(self._averages), self._declared())
        self._writer.write_json(line, allow_nan=True)   # a non-finite sum is the literal NaN / Infinity
        self.lines += 1

    def _ensure_header(self, rows: np.ndarray | None) -> None:
        """The header, at the first line (the sizes summed over the shards, the dtype of the gradients)."""
        if self._header_written:
            return
        sizes = [int(n) for n in rows[:, 0]] if rows is not None else \
            list(self.bias_layout.sizes + self.weight_layout.sizes)
        nb = len(self.bias_layout.names)
        self.bias_layout = Layout(self.bias_layout.names, tuple(sizes[:nb]))
        self.weight_layout = Layout(self.weight_layout.names, tuple(sizes[nb:]))
        self._writer.write_json(sums_header(self.run_id, "biasmon.TorchMonitor", self.bias_layout, self.weight_layout,
                                            self._averages, self._float32, self.every, self.meta))
        self._header_written = True




def _skipped(optimizer: Any, kwargs: Any) -> bool:
    """Whether a GradScaler told a fused optimizer to skip this step (found_inf set)."""
    found = kwargs.get("found_inf") if isinstance(kwargs, dict) else None
    found = getattr(optimizer, "found_inf", None) if found is None else found
    return found is not None and bool(found.item() if hasattr(found, "item") else found)


def _as_float(value: Any) -> float:
    value = float(value.detach().item()) if hasattr(value, "detach") else float(value)
    return value if math.isfinite(value) else math.nan
