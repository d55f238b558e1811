"""Log a PyTorch model's biases for biasmon with one call per training step (torch is imported lazily).

    from biasmon.torch_logger import TorchBiasLogger

    log = TorchBiasLogger(model, "run.jsonl")      # snapshots every bias parameter now
    for step, (x, y) in enumerate(batches):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        log.step(loss)                             # the one added line: right after optimizer.step()
    log.close()                                    # or: with TorchBiasLogger(...) as log:

Each call writes one stream line: the biases as they were before this step's update (the snapshot taken
at the previous call, or at construction), their gradients (`.grad`, still holding this step's gradient
after `optimizer.step()`), the update actually applied (biases now minus the snapshot: whatever the
optimizer, a scheduler, clipping or your own code did to them in between) and the loss. Then it takes a
new snapshot. Call it before `zero_grad(set_to_none=True)` if your loop zeroes gradients after the step.

A bias parameter is every parameter whose name is `bias` or ends in `.bias` (requires_grad=True); its
layer is named by its module path (`0`, `encoder.fc1`, ...). Keyword arguments not listed below go to
biasmon.StreamWriter (loss_at, check_every, run_id, meta).

torch is needed only to call this: install it yourself or with the `torch` extra (`biasmon[torch]`).
"""
from __future__ import annotations

import numpy as np

from .core.errors import BiasmonError
from .core.logger import StreamWriter


def _torch():
    try:
        import torch
    except ImportError:
        raise BiasmonError("biasmon.torch_logger needs PyTorch: pip install torch (or biasmon[torch])") from None
    return torch


def bias_parameters(model) -> dict:
    """{layer name: bias parameter} of a torch.nn.Module, in registration order."""
    out = {}
    for name, param in model.named_parameters():
        if param.requires_grad and (name == "bias" or name.endswith(".bias")):
            out[name[:-len(".bias")] if name.endswith(".bias") else "bias"] = param
    return out


def _numpy(tensor):
    return tensor.detach().to("cpu").double().numpy().reshape(-1).copy()


class TorchBiasLogger:
    """One `step(loss)` call per training step, after `optimizer.step()`; see the module docstring."""

    def __init__(self, model, target, **writer_options):
        torch = _torch()
        if not isinstance(model, torch.nn.Module):
            raise BiasmonError(f"TorchBiasLogger: model must be a torch.nn.Module, got {type(model).__name__}")
        self.params = bias_parameters(model)
        if not self.params:
            raise BiasmonError("TorchBiasLogger: the model has no trainable bias parameters "
                               "(named 'bias' or '*.bias')")
        self.writer = StreamWriter(target, **writer_options)
        self.step_index = 0
        self._before = self._snapshot()

    def _snapshot(self):
        return {name: _numpy(p) for name, p in self.params.items()}

    def step(self, loss, val_loss=None, step=None) -> None:
        """Log the step just taken: loss (a tensor or number) computed at the biases before the update."""
        step = self.step_index if step is None else int(step)
        after = self._snapshot()
        grads = {name: (None if p.grad is None else _numpy(p.grad)) for name, p in self.params.items()}
        if all(g is None for g in grads.values()):
            grads = None
        else:  # a bias that took no part in this step's loss has a zero gradient
            grads = {name: (np.zeros_like(self._before[name]) if g is None else g) for name, g in grads.items()}
        updates = {name: after[name] - self._before[name] for name in after}
        self.writer.step(step, _as_float(loss), biases=self._before, bias_grads=grads,
                         val_loss=None if val_loss is None else _as_float(val_loss), bias_updates=updates)
        self._before = after
        self.step_index = step + 1

    def close(self) -> None:
        self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _as_float(value):
    return float(value.detach().item()) if hasattr(value, "detach") else float(value)
