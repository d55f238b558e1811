"""Which parameters of a torch.nn.Module the PyTorch helper logs, by kind (biases, and weights if asked),
and their values and gradients as NumPy vectors. torch is imported lazily (by the caller)."""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from .core.errors import BiasmonError

BIAS_NAME = re.compile(r"(?i).*bias.*|b\d*|b_.*|.*_b\d*")


def layer_name(name: str, suffix: str = ".bias") -> str:
    """A parameter's layer name: its module path for `*.bias` (`*.weight` for weights), its full name otherwise."""
    return name[:-len(suffix)] if name.endswith(suffix) else name


def is_bias(name: str) -> bool:
    """Whether a parameter's full name names a bias (the rule: torch_logger's docstring)."""
    return BIAS_NAME.fullmatch(name.rsplit(".", 1)[-1]) is not None


def bias_parameters(model: Any, params: Any = None) -> dict:
    """{layer name: bias parameter} of a torch.nn.Module in registration order (the rule: torch_logger's
    docstring), trainable ones only. params: the biases instead: names, parameters, or {layer name: parameter}."""
    named = dict(model.named_parameters())
    if params is None:
        return {layer_name(n): p for n, p in named.items() if p.requires_grad and is_bias(n)}
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


def frozen_biases(model: Any) -> dict[str, str]:
    """{layer name: parameter name} of the biases (by the rule) with requires_grad False: those
    bias_parameters leaves out unless params= names them."""
    return {layer_name(n): n for n, p in model.named_parameters() if not p.requires_grad and is_bias(n)}


def left_out_meta(left_out: dict[str, str], meta: Any) -> Any:
    """The header's meta with `left_out_biases` ({layer: "requires_grad=False"}) for the biases a helper
    leaves out (frozen_biases), unless meta already says; a meta that is not a dict (or None) as given:
    the writer judges it."""
    if not left_out or not (meta is None or isinstance(meta, dict)):
        return meta
    meta = dict(meta or {})
    meta.setdefault("left_out_biases", {layer: "requires_grad=False" for layer in left_out})
    return meta


def left_out_warning(who: str, left_out: dict[str, str]) -> str:
    """The warning a helper gives once, before it attaches, naming the frozen biases it leaves out."""
    return (f"{who}: {named_biases(left_out)} requires_grad=False: left out, neither logged nor judged "
            "(recorded in the stream header's meta.left_out_biases; give params= to log a bias anyway)")


def named_biases(left_out: dict[str, str], limit: int = 8) -> str:
    """'1 bias (2.bias) has' / '12 biases (a.bias, ..., and 4 more) have', for a message."""
    names = list(left_out.values())
    shown = ", ".join(names[:limit]) + (f", and {len(names) - limit} more" if len(names) > limit else "")
    return f"1 bias ({shown}) has" if len(names) == 1 else f"{len(names)} biases ({shown}) have"


def weight_parameters(model: Any, biases: dict) -> dict:
    """{layer name: parameter} of every trainable parameter that is not one of `biases`: named by the module
    path for `*.weight` (`0`, `encoder.fc1`: the same name as the layer's bias), by the full name otherwise."""
    logged = {id(p) for p in biases.values()}
    return {layer_name(n, ".weight"): p for n, p in model.named_parameters() if p.requires_grad and id(p) not in logged}


def values(params: dict) -> dict[str, np.ndarray]:
    """{layer: the parameter flattened (n,), float64, a copy}."""
    return {name: p.detach().to("cpu").double().numpy().reshape(-1).copy() for name, p in params.items()}


def grads(params: dict) -> dict[str, np.ndarray | None] | None:
    """{layer: `.grad` flattened (n,), a copy (float32 unless the gradient is float64: the stream's summary
    form says so), None where no gradient reached it}, or None if none reached any layer."""
    import torch
    out = {}
    for name, p in params.items():
        g = p.grad
        if g is not None:
            g = g.detach().to("cpu", torch.float64 if g.dtype == torch.float64 else torch.float32)
            g = g.numpy().reshape(-1).copy()
        out[name] = g
    return None if all(g is None for g in out.values()) else out


def all_finite(model: Any) -> bool:
    """Whether every `.grad` of the model is finite (a GradScaler skips the step otherwise)."""
    import torch
    return all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
