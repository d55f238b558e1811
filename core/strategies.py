"""Bias-update strategies: small pure functions from a step direction to the update applied to b.

`d` is what the optimizer would step along for the bias: the raw gradient g with momentum 0, or the
momentum buffer otherwise. Each function returns u (same shape as d), and the trainer applies b += u.
`flip_sign` negates u: the story's bug, a bias moved along +gradient.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class Context:
    step: int
    lr: float
    train_loss: float
    val_loss: float | None


@dataclass(frozen=True)
class Strategy:
    name: str
    update: Callable[..., np.ndarray]
    params: dict  # name -> (default, description of allowed values, check)
    description: str
    trains_biases: bool = True
    has_biases: bool = True
    decays_biases: bool = True  # weight decay, if any, applies to the bias too


def _positive(v: float) -> bool:
    return v > 0


def _below_one(v: float) -> bool:
    return 0 < v < 1


REGISTRY: dict[str, Strategy] = {}


_UpdateFn = Callable[..., np.ndarray]  # (d, ctx, **params) -> u, the same shape as d


def _register(name: str, description: str, params: dict[str, tuple[Any, str, Callable[[Any], bool]]] | None = None,
              **flags: bool) -> Callable[[_UpdateFn], _UpdateFn]:
    def wrap(fn: _UpdateFn) -> _UpdateFn:
        REGISTRY[name] = Strategy(name, fn, params or {}, description, **flags)
        return fn
    return wrap


@_register("gradient", "-lr*g: plain gradient descent, the answer")
def gradient(d: np.ndarray, ctx: Context) -> np.ndarray:
    """u = -lr*d for d (n_b,)."""
    return -ctx.lr * d


@_register("none", "the network has no biases at all", trains_biases=False, has_biases=False)
def none(d: np.ndarray, ctx: Context) -> np.ndarray:
    """u = 0 (same shape as d): nothing to update."""
    return np.zeros_like(d)


@_register("frozen", "biases exist at their initial value but never move", trains_biases=False)
def frozen(d: np.ndarray, ctx: Context) -> np.ndarray:
    """u = 0 (same shape as d): the biases keep their initial value."""
    return np.zeros_like(d)


@_register("scaled", "-lr*k*g with 0 < k < 1: scale the bias updates down",
           {"k": (0.1, "a number with 0 < k < 1", _below_one)})
def scaled(d: np.ndarray, ctx: Context, k: float = 0.1) -> np.ndarray:
    """u = -lr*k*d for d (n_b,)."""
    return -ctx.lr * k * d


@_register("error_scaled", "-lr*L_train*g: proportional to the training error")
def error_scaled(d: np.ndarray, ctx: Context) -> np.ndarray:
    """u = -lr*L_train*d for d (n_b,)."""
    return -ctx.lr * ctx.train_loss * d


@_register("inverse_error", "-lr*g/(L_train+eps): inversely proportional to the training error",
           {"eps": (1e-2, "a number > 0", _positive)})
def inverse_error(d: np.ndarray, ctx: Context, eps: float = 1e-2) -> np.ndarray:
    """u = -lr*d/(L_train+eps) for d (n_b,)."""
    return -ctx.lr * d / (ctx.train_loss + eps)


@_register("gap_scaled", "-lr*max(0, L_val-L_train)*g: the more overfitting, the more the bias moves")
def gap_scaled(d: np.ndarray, ctx: Context) -> np.ndarray:
    """u = -lr*max(0, L_val-L_train)*d for d (n_b,); no step without a validation loss."""
    gap = 0.0 if ctx.val_loss is None else max(0.0, ctx.val_loss - ctx.train_loss)
    return -ctx.lr * gap * d


@_register("lr_mult", "-lr*m*g, no weight decay on biases (Caffe's convention)",
           {"m": (2.0, "a number > 0", _positive)}, decays_biases=False)
def lr_mult(d: np.ndarray, ctx: Context, m: float = 2.0) -> np.ndarray:
    """u = -lr*m*d for d (n_b,)."""
    return -ctx.lr * m * d


def get(name: str) -> Strategy:
    """The strategy called name; KeyError lists the valid names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown strategy '{name}'; valid: {', '.join(REGISTRY)}") from None
