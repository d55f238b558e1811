"""The PyTorch helper's gradient check (biasmon.torch_logger uses it; torch is imported lazily).

It runs at a step's own parameters (copied before the optimizer moved them), on the step's batch, in
float64 on those copies (torch.func.functional_call: the model itself is not touched), with dropout
switched off and every other module as it was in the forward pass (BatchNorm in train mode uses the
batch's statistics; its running statistics are updated only in the copies). Two questions:

- does autograd's gradient (the model's own backward: a custom autograd.Function included) agree with
  finite differences of the loss? The relative errors go into the event's `errors` (entries whose
  gradient lies within the span of their own finite differences are `undecided`, core/gradcheck.py);
- is the logged `.grad` that gradient? A common factor < 1 is clipping (`grad_scale`, a note), not a
  mismatch; anything else (a sign flipped by a hook, ...) is added to `errors`. Not compared when dropout
  was on in the forward pass (its mask cannot be replayed) or when the loss at the batch is not the
  logged loss (not the step's batch?): a note says so.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .core.gradcheck import check_gradient, differs
from .core.layout import Layout
from .core.records import json_number

LOGGED_TOLERANCE = 1e-2   # the logged gradient (float32, say) against the float64 one: relative, on the whole
LOSS_TOLERANCE = 1e-3     # the logged loss against the loss at the given batch, relative


def float64_state(model: Any) -> dict:
    """float64 copies of every parameter and buffer of `model` by name (non-float buffers copied as is)."""
    import torch
    with torch.no_grad():
        tensors = list(model.named_parameters()) + list(model.named_buffers())
        return {name: t.detach().to(torch.float64).clone() if t.is_floating_point() else t.detach().clone()
                for name, t in tensors}


def _to64(value: Any) -> Any:
    """Tensors in a batch (nested tuples and lists too) as float64 where they are floating point."""
    import torch
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float64) if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(_to64(v) for v in value)
    return value


@contextlib.contextmanager
def dropout_off(model: Any) -> Iterator[bool]:
    """Dropout modules in eval mode for the block; yields whether any was on (training, p > 0)."""
    import torch
    kinds = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d, torch.nn.AlphaDropout,
             torch.nn.FeatureAlphaDropout)
    switched = [m for m in model.modules() if isinstance(m, kinds) and m.training]
    for m in switched:
        m.eval()
    try:
        yield any(m.p > 0 for m in switched)
    finally:
        for m in switched:
            m.train()


class BatchLoss:
    """The loss of `model` at the step's copied state with its biases replaced: loss_fn(model(*inputs), *targets).

    state: float64_state's copies; names: the bias parameters' names in layout order; batch: (inputs,
    targets), each a tensor or a tuple of them."""

    def __init__(self, model: Any, state: dict, names: list[str], loss_fn: Callable, batch: tuple) -> None:
        inputs, targets = batch
        self.inputs = _to64(inputs if isinstance(inputs, (tuple, list)) else (inputs,))
        self.targets = _to64(targets if isinstance(targets, (tuple, list)) else (targets,))
        self.model, self.state, self.names, self.loss_fn = model, state, names, loss_fn
        self.shapes = [state[n].shape for n in names]
        self.device = state[names[0]].device
        self.b = np.concatenate([state[n].detach().reshape(-1).cpu().numpy() for n in names])

    def _tensors(self, flat: Any) -> list:
        import torch
        flat = torch.as_tensor(flat, dtype=torch.float64, device=self.device)
        parts = torch.split(flat, [int(np.prod(s)) for s in self.shapes])
        return [p.reshape(s) for p, s in zip(parts, self.shapes)]

    def _loss(self, biases: list) -> Any:
        from torch.func import functional_call
        params = dict(self.state)
        params.update(zip(self.names, biases))
        return self.loss_fn(functional_call(self.model, params, tuple(self.inputs)), *self.targets)

    def __call__(self, flat: np.ndarray) -> float:
        """The loss at biases `flat` (n,)."""
        import torch
        with torch.no_grad():
            return float(self._loss(self._tensors(flat)))

    def gradient(self) -> tuple[np.ndarray, list[bool]]:
        """autograd's float64 gradient at the copied biases (n,), and per bias parameter whether it got none."""
        import torch
        leaves = [t.clone().requires_grad_(True) for t in self._tensors(self.b)]
        with torch.enable_grad():
            grads = torch.autograd.grad(self._loss(leaves), leaves, allow_unused=True)
        flat = [np.zeros(leaf.numel()) if g is None else g.detach().reshape(-1).cpu().numpy() for leaf, g in zip(leaves, grads)]
        return np.concatenate(flat), [g is None for g in grads]


def gradient_check(loss: BatchLoss, layout: Layout, logged: np.ndarray | None, logged_loss: float,
                   tolerance: float) -> dict:
    """The gradient_check event's data for one step (see the module docstring). logged: the step's
    logged gradient (n,), zeros where none reached a layer, or None."""
    with dropout_off(loss.model) as had_dropout:
        first, second = loss(loss.b), loss(loss.b)
        if differs(first, second):
            return {"nondeterministic": True, "losses": [json_number(first), json_number(second)],
                    "note": "the loss at the step's batch is not deterministic with dropout off: two evaluations "
                            f"gave {first:.10g} and {second:.10g}: no gradient check"}
        g, _ = loss.gradient()
        checked = check_gradient(loss, loss.b, g, layout, tolerance=tolerance)
    data = {"errors": checked.errors}
    undecided = {name: n for name, n in checked.undecided.items() if n}
    if undecided:
        data["undecided"] = undecided
    if had_dropout:
        data["dropout_off"] = True
    elif logged is not None:
        _compare_logged(data, layout, logged, g, logged_loss, first)
    data["errors"] = {n: json_number(e) for n, e in data["errors"].items()}
    return data


def _compare_logged(data: dict, layout: Layout, logged: np.ndarray, g: np.ndarray, logged_loss: float,
                    loss: float) -> None:
    """Is the logged gradient g (n,), up to rounding or a common positive factor (clipping)? See the module."""
    if not abs(logged_loss - loss) <= LOSS_TOLERANCE * abs(loss) + 1e-12:
        data["note"] = (f"the loss at the given batch ({loss:.6g}) is not the logged loss ({logged_loss:.6g}): "
                        "not the step's batch? The logged gradient was not compared")
        return
    norm = float(g @ g)
    if norm == 0.0:
        return
    scale = float(logged @ g) / norm
    residual = float(np.linalg.norm(logged - scale * g)) / np.sqrt(norm)
    if residual <= LOGGED_TOLERANCE and scale > 0:
        if abs(scale - 1.0) > LOGGED_TOLERANCE:
            data["grad_scale"] = scale
            data["note"] = ("the logged gradient is the true one times a common factor "
                            f"{'< 1 (clipped: clip_grad_norm_?)' if scale < 1 else '> 1 (scaled loss?)'}: "
                            "not a mismatch")
        return
    floor = 1e-6 * max(1.0, float(np.abs(g).max()))
    for name, (lg, tg) in zip(layout.names, zip(layout.split(logged).values(), layout.split(g).values())):
        differ = float(np.linalg.norm(lg - tg)) / max(float(np.linalg.norm(lg)), float(np.linalg.norm(tg)), floor)
        data["errors"][name] = max(data["errors"][name], differ)
    data["note"] = "the logged .grad is not the gradient of loss_fn at the batch (nor a positive multiple of it)"
