"""The PyTorch helper's view of an optimizer: is it one, does it hold the biases, and the running average of
the gradient it follows (its own state, read after a step). torch is imported lazily."""
from __future__ import annotations

from typing import Any

import numpy as np

from .core.errors import BiasmonError

# The optimizer state that is a running average of the gradient, the direction the update follows:
# SGD's momentum buffer (SGD with momentum > 0, also RMSprop's with momentum: of the scaled gradient),
# Adam's, AdamW's, Adamax's, NAdam's and RAdam's first moment.
RUNNING_AVERAGE_KEYS = ("exp_avg", "momentum_buffer")


def check_optimizer(optimizer: Any, params: dict) -> None:
    """A one-line BiasmonError unless `optimizer` is a torch.optim.Optimizer holding at least one of
    `params` ({layer: bias parameter})."""
    import torch
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise BiasmonError(f"TorchBiasLogger: optimizer must be a torch.optim.Optimizer (SGD, Adam, ...), "
                           f"got {type(optimizer).__name__}")
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if not any(id(p) in held for p in params.values()):
        raise BiasmonError("TorchBiasLogger: the optimizer holds none of the model's bias parameters "
                           f"({', '.join(list(params)[:6])}): give it model.parameters()")


def running_averages(optimizer: Any, params: dict) -> dict[str, np.ndarray | None]:
    """{layer: the optimizer's running average of the gradient for that bias (n,), float64}, None where it
    keeps none (plain SGD, Adagrad, before its first step). Read after optimizer.step()."""
    out = {}
    for name, p in params.items():
        state = optimizer.state.get(p, {})
        average = next((state[k] for k in RUNNING_AVERAGE_KEYS if state.get(k) is not None), None)
        out[name] = None if average is None else average.detach().to("cpu").double().numpy().reshape(-1).copy()
    return out
