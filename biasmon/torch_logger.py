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
  line, only a `step_skipped` event (`loss`, `reason`): nothing was trained, nothing to judge. (Only
  with optimizer=: without it, a skipped step's inf `.grad` is logged, and read as divergence.)
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

Weights too: `weights=True` logs every other trainable parameter as well, judged like the biases (a
layer's weights are named as its bias: `0`, `encoder.fc1`; other parameters by their full name). The
summary form: `form="sums"` writes per-layer sums instead of vectors (a few hundred bytes a line however
large the model; judged exactly as the vectors, docs/stream-format.md). Both need stream version 2.

Sparse logging: `every=k` writes one line per k steps with the gradients of those k steps summed
(`grad_steps`) and their updates summed; the gradient check still compares a single step's gradient.

Which parameters are biases: every trainable parameter whose own name (after the last dot) contains
"bias" (`bias`, `in_proj_bias`, `bias_ih_l0`, `bias_k`, ...), or is `b`, `b1`, `b_out`, `out_b`, ...
(a `b` alone or as a word joined by `_`), any shape (flattened). LayerNorm's and BatchNorm's `bias` are
biases; their `weight` is not. A bias named otherwise: give `params=` (names, parameters, or a dict
{layer name: parameter}). A layer is named by its module path for `*.bias` (`0`, `encoder.fc1`), by
the parameter's full name otherwise (`attn.in_proj_bias`, `b1`). A bias with requires_grad=False (frozen)
is left out, and named once: a UserWarning when the logger attaches, and the header's
`meta.left_out_biases` ({layer: "requires_grad=False"}); give `params=` to log it anyway.

torch is needed only to call this: install it yourself or with the `torch` extra (`biasmon[torch]`).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from . import torch_params
from .core.errors import BiasmonError
from .core.layout import Layout
from .core.logger import StreamWriter
from .core.records import json_number
from .torch_check import BatchLoss, float64_state, gradient_check
from .torch_distributed import unwrap, world_size
from .torch_optim import check_optimizer, running_averages
from .torch_params import BIAS_NAME, bias_parameters, frozen_biases, layer_name  # noqa: F401  (public here too)

__all__ = ["TorchBiasLogger", "bias_parameters", "layer_name", "BIAS_NAME"]


def _torch():
    try:
        import torch
    except ImportError:
        raise BiasmonError("biasmon.torch_logger needs PyTorch: pip install torch (or biasmon[torch])") from None
    return torch


class TorchBiasLogger:
    """Attach to a model (and optimizer); one `step(loss)` call per training step. See the module docstring.

    Keyword arguments: optimizer, loss_fn, check_every (100; 0: never), every (1), params, weights (False:
    True logs every other trainable parameter too), and for the stream form ("vectors" or "sums"),
    fd_tolerance, run_id, meta (as biasmon.StreamWriter)."""

    def __init__(self, model: Any, target: Any, *, optimizer: Any = None, loss_fn: Callable | None = None,
                 check_every: int = 100, every: int = 1, params: Iterable | dict | None = None,
                 weights: bool = False, **writer_options: Any) -> None:
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
        self.left_out = {} if params is not None else frozen_biases(model)   # {layer: its parameter's name}
        if not self.params:
            frozen = f": {torch_params.named_biases(self.left_out)} requires_grad=False" if self.left_out else ""
            raise BiasmonError(f"TorchBiasLogger: the model has no trainable bias parameters{frozen} (see the "
                               "docstring for the rule; give params= to name them)")
        if self.left_out:   # said once, before anything is attached (a warning made an error leaves nothing behind)
            warnings.warn(torch_params.left_out_warning("TorchBiasLogger", self.left_out), UserWarning, stacklevel=2)
            writer_options["meta"] = torch_params.left_out_meta(self.left_out, writer_options.get("meta"))
        if optimizer is not None:
            check_optimizer(optimizer, self.params)
        self.kinds = {"bias": self.params}   # what each line logs, by kind: {kind: {layer: parameter}}
        if weights:
            self.kinds["weight"] = torch_params.weight_parameters(model, self.params)
        self.names = {id(p): n for n, p in model.named_parameters()}
        self.layout = Layout(tuple(self.params), tuple(int(p.numel()) for p in self.params.values()))
        self.world_size = world_size()       # > 1: the .grad seen is the mean over every process's batch
        self.writer = StreamWriter(target, check_every=check_every if loss_fn else 0, every=every, **writer_options)
        self.step_index = 0
        self._captured: list[dict] = []       # per optimizer step since step(): before, grads, after (by kind)
        self._state64: dict | None = None     # float64 copies of everything before the step, for the check
        self._before = self._values()
        self.optimizer = optimizer
        self.running_average: dict[str, np.ndarray | None] = {}   # the optimizer's, after its last step
        self._hooks = []
        if optimizer is not None:
            self._hooks = [optimizer.register_step_pre_hook(self._pre_step),
                           optimizer.register_step_post_hook(self._post_step)]
        elif self.writer.check_due(0) and loss_fn is not None:
            self._state64 = float64_state(model)

    def _values(self) -> dict:
        return {kind: torch_params.values(params) for kind, params in self.kinds.items()}

    def _grads(self) -> dict:
        return {kind: torch_params.grads(params) for kind, params in self.kinds.items()}

    def _pre_step(self, optimizer: Any, args: tuple, kwargs: dict) -> tuple | None:
        """Before optimizer.step(): copy for the check, take the parameters and `.grad`; with a closure
        (LBFGS, Lightning), the gradient is computed inside step(): taken after the closure's first call."""
        if self.loss_fn is not None and not self._captured and self.writer.check_due(self.step_index):
            self._state64 = float64_state(self.model)
        capture = {"before": self._values(), "grads": None, "after": None}
        self._captured.append(capture)
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)   # args: (optimizer, closure?)
        if closure is None:
            capture["grads"] = self._grads()
            return None

        def closure_then_capture() -> Any:
            result = closure()
            if capture["grads"] is None:
                capture["grads"] = self._grads()
            return result
        if "closure" in kwargs:
            return args, {**kwargs, "closure": closure_then_capture}
        return (args[0], closure_then_capture, *args[2:]), kwargs

    def _post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._captured[-1]["after"] = self._values()
        self.running_average = running_averages(optimizer, self.params)

    def step(self, loss: Any, batch: tuple | None = None, val_loss: Any = None, step: int | None = None) -> None:
        """Log the step just taken: loss (a tensor or number) computed at the biases before the update;
        batch (inputs, targets): the step's batch, for the gradient check when one is due."""
        step = self.step_index if step is None else int(step)
        if len(self._captured) > 1:
            raise BiasmonError(f"TorchBiasLogger: optimizer.step() ran {len(self._captured)} times since the last "
                               "log.step(): call log.step() once per optimizer step (every=k logs sparsely)")
        if self._captured:
            capture = self._captured.pop()
            before, grads, after = capture["before"], capture["grads"], capture["after"]
        elif self._hooks:   # attached, and optimizer.step() did not run: no line
            self._skipped(step, loss)
            return
        else:
            before, grads, after = self._before, self._grads(), self._values()
        loss = _as_float(loss)
        if self.loss_fn is not None and self.writer.check_due(step):
            self._check(step, before["bias"], grads["bias"], loss, batch)
        self._state64 = None
        updates = {kind: {name: after[kind][name] - v for name, v in values.items()} for kind, values in before.items()}
        weights = {} if "weight" not in before else dict(
            weights=before["weight"], weight_grads=grads["weight"], weight_updates=updates["weight"])
        self.writer.step(step, loss, biases=before["bias"], bias_grads=grads["bias"],
                         val_loss=None if val_loss is None else _as_float(val_loss), bias_updates=updates["bias"],
                         **weights)
        self._before = after
        self.step_index = step + 1
        if not self._hooks and self.loss_fn is not None and self.writer.check_due(self.step_index):
            self._state64 = float64_state(self.model)

    def _skipped(self, step: int, loss: Any) -> None:
        """optimizer.step() did not run since the last call: a `step_skipped` event, no step line."""
        reason = ("optimizer.step() did not run since the last log.step() (accumulating gradients? call "
                  "log.step() once per optimizer step)" if torch_params.all_finite(self.model) else
                  "the gradient is not finite: a GradScaler skips such a step")
        self.writer.event("step_skipped", step, loss=json_number(_as_float(loss)), reason=reason)
        self._before = self._values()
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
