"""Log a PyTorch model's biases for biasmon: attach once, one call per step (torch is imported lazily).

    from biasmon.torch_logger import TorchBiasLogger

    loss_fn = torch.nn.functional.mse_loss
    log = TorchBiasLogger(model, "run.jsonl", optimizer=optimizer, loss_fn=loss_fn)   # attach once
    for x, y in batches:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)   # optional: recognised as clipping
        optimizer.step()
        log.step(loss, batch=(x, y))     # after optimizer.step(); batch: only for the gradient check
    log.close()                          # or: with TorchBiasLogger(...) as log:

With `optimizer=` the logger hooks into optimizer.step() (register_step_pre_hook / post_hook): just
before the step it takes the biases and their `.grad`, just after it the update actually applied, so
param groups with their own lr, a scheduler, clipping and weight decay are all in the logged update.
An optimizer stepped with a closure (LBFGS, Lightning) computes the gradient inside step(): it is taken
after the closure's first call, at the biases before the step. After each step `log.running_average`
holds, per layer, the optimizer's running average of the gradient (SGD's momentum buffer, Adam's
exp_avg; None where it keeps none): the direction the update follows.

- torch.amp.GradScaler: scaler.step(optimizer) unscales `.grad` in place first, so the logged gradient
  is the true one; a step it skips (inf/NaN gradients: optimizer.step() is not called) gets no step
  line, only a `step_skipped` event (`loss`, `reason`): nothing was trained, nothing to judge.
- Gradient accumulation (several backward() per optimizer.step()): call log.step() once per optimizer
  step, after it; the line holds the accumulated `.grad` the optimizer used (the loss you pass: e.g. the
  mean of the micro-batches'). A log.step() with no optimizer step since the last one writes only a
  `step_skipped` event.
- DDP (DistributedDataParallel) and other wrappers (DataParallel, torch.compile): give the wrapped model
  or the one inside; layers are named by the module inside (`0`, not `module.0`). Create the logger in
  one process only (rank 0): the `.grad` it sees is all-reduced, the mean over every process's batch,
  the gradient each process's optimizer follows. Its gradient check then compares finite differences
  with autograd on rank 0's batch, not the logged (averaged) gradient.

Without `optimizer=`, `step(loss)` after optimizer.step() logs the biases as they were at the previous call (or
at construction), `.grad` as it is now, and the change since (whatever the optimizer, a scheduler or
your own code did); call it before `zero_grad(set_to_none=True)` then. A bias whose `.grad` is None (no
gradient reached it: detached, unused) is logged as null, "no gradient", not as zeros.

Gradient check (give `loss_fn`, called as loss_fn(model(*inputs), *targets), and the step's batch
`(inputs, targets)` to step()): at step 0 and every `check_every` steps, in float64 on copies of the
parameters as they were before the step, dropout off, on the same batch (biasmon/torch_check.py).

Sparse logging: `every=k` writes one line per k steps with the gradients of those k steps summed
(`grad_steps`) and their updates summed; the gradient check still compares a single step's gradient.

Which parameters are biases: every trainable parameter whose own name (after the last dot) contains
"bias" (`bias`, `in_proj_bias`, `bias_ih_l0`, `bias_k`, ...), or is `b`, `b1`, `b_out`, `out_b`, ...
(a `b` alone or as a word joined by `_`), any shape (flattened). LayerNorm's and BatchNorm's `bias` are
biases; their `weight` is not. A bias named otherwise: give `params=` (names, parameters, or a dict
{layer name: parameter}). A layer is named by its module path for `*.bias` (`0`, `encoder.fc1`), by
the parameter's full name otherwise (`attn.in_proj_bias`, `b1`).

torch is needed only to call this: install it yourself or with the `torch` extra (`biasmon[torch]`).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .core.errors import BiasmonError
from .core.layout import Layout
from .core.logger import StreamWriter
from .core.records import json_number
from .torch_check import BatchLoss, float64_state, gradient_check
from .torch_distributed import unwrap, world_size
from .torch_optim import check_optimizer, running_averages

BIAS_NAME = re.compile(r"(?i).*bias.*|b\d*|b_.*|.*_b\d*")


def _torch():
    try:
        import torch
    except ImportError:
        raise BiasmonError("biasmon.torch_logger needs PyTorch: pip install torch (or biasmon[torch])") from None
    return torch


def layer_name(name: str) -> str:
    """A bias parameter's layer name: its module path for `*.bias`, its full name otherwise."""
    return name[:-len(".bias")] if name.endswith(".bias") else name


def bias_parameters(model: Any, params: Any = None) -> dict:
    """{layer name: bias parameter} of a torch.nn.Module in registration order (the rule: module
    docstring). params: the biases instead: names, parameters, or {layer name: parameter}."""
    named = dict(model.named_parameters())
    if params is None:
        return {layer_name(n): p for n, p in named.items() if p.requires_grad and BIAS_NAME.fullmatch(n.rsplit(".", 1)[-1])}
    if isinstance(params, dict):
        return {str(k): v for k, v in params.items()}
    by_id = {id(p): n for n, p in named.items()}
    out = {}
    for item in params:
        name = item if isinstance(item, str) else by_id.get(id(item))
        if name not in named:
            raise BiasmonError(f"TorchBiasLogger: params: {item if isinstance(item, str) else 'a tensor'} "
                               "is not a parameter of the model")
        out[layer_name(name)] = named[name]
    return out


def _numpy(tensor: Any) -> np.ndarray:
    return tensor.detach().to("cpu").double().numpy().reshape(-1).copy()


class TorchBiasLogger:
    """Attach to a model (and optimizer); one `step(loss)` call per training step. See the module docstring.

    Keyword arguments: optimizer, loss_fn, check_every (100; 0: never), every (1), params, and for the
    stream fd_tolerance, run_id, meta (as biasmon.StreamWriter)."""

    def __init__(self, model: Any, target: Any, *, optimizer: Any = None, loss_fn: Callable | None = None,
                 check_every: int = 100, every: int = 1, params: Iterable | dict | None = None,
                 **writer_options: Any) -> None:
        torch = _torch()
        if not isinstance(model, torch.nn.Module):
            raise BiasmonError(f"TorchBiasLogger: model must be a torch.nn.Module, got {type(model).__name__}")
        if "loss_at" in writer_options:
            raise BiasmonError("TorchBiasLogger runs the gradient check itself, before the optimizer moves the "
                               "parameters: give loss_fn= and pass the batch to step(loss, batch=(x, y))")
        model = unwrap(model)   # DDP, DataParallel, torch.compile: layers named by the module inside
        self.model, self.loss_fn = model, loss_fn
        if not any(True for _ in model.parameters()):
            raise BiasmonError(f"TorchBiasLogger: the model ({type(model).__name__}) has no parameters: give the "
                               "torch.nn.Module you train")
        self.params = bias_parameters(model, params)
        if not self.params:
            raise BiasmonError("TorchBiasLogger: the model has no trainable bias parameters (see the docstring "
                               "for the rule; give params= to name them)")
        if optimizer is not None:
            check_optimizer(optimizer, self.params)
        self.names = {id(p): n for n, p in model.named_parameters()}
        self.layout = Layout(tuple(self.params), tuple(int(p.numel()) for p in self.params.values()))
        self.world_size = world_size()       # > 1: the .grad seen is the mean over every process's batch
        self.writer = StreamWriter(target, check_every=check_every if loss_fn else 0, every=every, **writer_options)
        self.step_index = 0
        self._captured: list[list] = []       # [biases, grads, biases after] per optimizer step since step()
        self._state64: dict | None = None     # float64 copies of everything before the step, for the check
        self._before = self._biases()
        self.optimizer = optimizer
        self.running_average: dict[str, np.ndarray | None] = {}   # the optimizer's, after its last step
        self._hooks = []
        if optimizer is not None:
            self._hooks = [optimizer.register_step_pre_hook(self._pre_step),
                           optimizer.register_step_post_hook(self._post_step)]
        elif self.writer.check_due(0) and loss_fn is not None:
            self._state64 = float64_state(model)

    def _biases(self) -> dict:
        return {name: _numpy(p) for name, p in self.params.items()}

    def _grads(self) -> dict | None:
        """{layer: gradient or None where no gradient reached it}, or None if none reached any layer."""
        grads = {name: None if p.grad is None else _numpy(p.grad) for name, p in self.params.items()}
        return None if all(g is None for g in grads.values()) else grads

    @property
    def stepped(self) -> bool:
        """Whether optimizer.step() ran since the last step() call (always False without optimizer=)."""
        return bool(self._captured)

    def _pre_step(self, optimizer: Any, args: tuple, kwargs: dict) -> tuple | None:
        """Before optimizer.step(): copy for the check, take the biases and `.grad`; with a closure (LBFGS,
        Lightning), the gradient is computed inside step(): take them after the closure's first call."""
        if self.loss_fn is not None and not self._captured and self.writer.check_due(self.step_index):
            self._state64 = float64_state(self.model)
        capture = [self._biases(), None, None]
        self._captured.append(capture)
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)   # args: (optimizer, closure?)
        if closure is None:
            capture[1] = self._grads()
            return None
        calls = []

        def closure_then_capture() -> Any:
            result = closure()
            if not calls:
                calls.append(True)
                capture[1] = self._grads()
            return result
        if "closure" in kwargs:
            return args, {**kwargs, "closure": closure_then_capture}
        return (args[0], closure_then_capture, *args[2:]), kwargs

    def _post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._captured[-1][2] = self._biases()
        self.running_average = running_averages(optimizer, self.params)

    def step(self, loss: Any, batch: tuple | None = None, val_loss: Any = None, step: int | None = None) -> None:
        """Log the step just taken: loss (a tensor or number) computed at the biases before the update;
        batch (inputs, targets): the step's batch, for the gradient check when one is due."""
        step = self.step_index if step is None else int(step)
        if len(self._captured) > 1:
            raise BiasmonError(f"TorchBiasLogger: optimizer.step() ran {len(self._captured)} times since the last "
                               "log.step(): call log.step() once per optimizer step (every=k logs sparsely)")
        if self._captured:
            before, grads, after = self._captured.pop()
        elif self._hooks:   # attached, and optimizer.step() did not run: no line
            self._skipped(step, loss)
            return
        else:
            before, grads, after = self._before, self._grads(), self._biases()
        loss = _as_float(loss)
        if self.loss_fn is not None and self.writer.check_due(step):
            self._check(step, before, grads, loss, batch)
        self._state64 = None
        updates = {name: after[name] - before[name] for name in after}
        self.writer.step(step, loss, biases=before, bias_grads=grads,
                         val_loss=None if val_loss is None else _as_float(val_loss), bias_updates=updates)
        self._before = after
        self.step_index = step + 1
        if not self._hooks and self.loss_fn is not None and self.writer.check_due(self.step_index):
            self._state64 = float64_state(self.model)

    def _skipped(self, step: int, loss: Any) -> None:
        """optimizer.step() did not run since the last call: a `step_skipped` event, no step line."""
        grads = self._grads()
        overflow = grads is not None and not all(g is None or np.isfinite(g).all() for g in grads.values())
        reason = ("the gradient is not finite: a GradScaler skips such a step" if overflow else
                  "optimizer.step() did not run since the last log.step() (accumulating gradients? call "
                  "log.step() once per optimizer step)")
        self.writer.event("step_skipped", step, loss=json_number(_as_float(loss)), reason=reason)
        self._before = self._biases()
        self._state64 = None
        self.step_index = step + 1

    def _check(self, step: int, before: dict, grads: dict | None, loss: float, batch: tuple | None) -> None:
        if batch is None:
            raise BiasmonError(f"TorchBiasLogger: a gradient check is due at step {step}: pass the step's batch, "
                               "log.step(loss, batch=(inputs, targets))")
        if self._state64 is None:
            return   # the parameters before this step were not copied (attached mid-step)
        names = [self.names[id(p)] for p in self.params.values()]
        batch_loss = BatchLoss(self.model, self._state64, names, self.loss_fn, batch)
        logged = None if grads is None or self.world_size > 1 else np.concatenate(
            [np.zeros_like(before[n]) if g is None else g for n, g in grads.items()])
        data = gradient_check(batch_loss, self.layout, logged, loss, self.writer.fd_tolerance)
        if self.world_size > 1 and "note" not in data:
            data["note"] = (f"distributed over {self.world_size} processes: the logged .grad is the mean of their "
                            "batches' gradients; autograd was checked on this process's batch, the logged "
                            "gradient not compared")
        self.writer.gradient_check_event(step, data)

    def close(self) -> None:
        """Detach from the optimizer and close the stream."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        self.writer.close()

    def __enter__(self) -> TorchBiasLogger:
        return self

    def __exit__(self, *exc: object) -> bool:
        self.close()
        return False


def _as_float(value: Any) -> float:
    return float(value.detach().item()) if hasattr(value, "detach") else float(value)
