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
before the step it takes the biases and their `.grad`, just after it the update actually applied.
Without it, `step(loss)` after optimizer.step() logs the biases as they were at the previous call (or
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
from .torch_check import BatchLoss, float64_state, gradient_check

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
        self.model, self.loss_fn = model, loss_fn
        self.params = bias_parameters(model, params)
        if not self.params:
            raise BiasmonError("TorchBiasLogger: the model has no trainable bias parameters (see the docstring "
                               "for the rule; give params= to name them)")
        self.names = {id(p): n for n, p in model.named_parameters()}
        self.layout = Layout(tuple(self.params), tuple(int(p.numel()) for p in self.params.values()))
        self.writer = StreamWriter(target, check_every=check_every if loss_fn else 0, every=every, **writer_options)
        self.step_index = 0
        self._captured: list[list] = []       # [biases, grads, biases after] per optimizer step since step()
        self._state64: dict | None = None     # float64 copies of everything before the step, for the check
        self._before = self._biases()
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

    def _pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.loss_fn is not None and not self._captured and self.writer.check_due(self.step_index):
            self._state64 = float64_state(self.model)
        self._captured.append([self._biases(), self._grads(), None])

    def _post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._captured[-1][2] = self._biases()

    def step(self, loss: Any, batch: tuple | None = None, val_loss: Any = None, step: int | None = None) -> None:
        """Log the step just taken: loss (a tensor or number) computed at the biases before the update;
        batch (inputs, targets): the step's batch, for the gradient check when one is due."""
        step = self.step_index if step is None else int(step)
        if len(self._captured) > 1:
            raise BiasmonError(f"TorchBiasLogger: optimizer.step() ran {len(self._captured)} times since the last "
                               "log.step(): call log.step() once per optimizer step (every=k logs sparsely)")
        if self._captured:
            before, grads, after = self._captured.pop()
        else:   # no optimizer attached, or it skipped this step (e.g. a GradScaler on an overflow)
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

    def _check(self, step: int, before: dict, grads: dict | None, loss: float, batch: tuple | None) -> None:
        if batch is None:
            raise BiasmonError(f"TorchBiasLogger: a gradient check is due at step {step}: pass the step's batch, "
                               "log.step(loss, batch=(inputs, targets))")
        if self._state64 is None:
            return   # the parameters before this step were not copied (attached mid-step)
        names = [self.names[id(p)] for p in self.params.values()]
        batch_loss = BatchLoss(self.model, self._state64, names, self.loss_fn, batch)
        logged = None if grads is None else np.concatenate(
            [np.zeros_like(before[n]) if g is None else g for n, g in grads.items()])
        data = gradient_check(batch_loss, self.layout, logged, loss, self.writer.fd_tolerance)
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
