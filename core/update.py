"""Where a parameter moves: the update rule of biasmon's own trainer, weights and biases, in one place.

Weights take SGD with momentum and weight decay; biases take the preset's strategy (core/strategies.py)
on the same optimizer direction, then the live bias learning-rate multiplier and, with flip_sign, the
story's bug: the bias moves along +gradient (flip_weight_sign: the same bug in the weights). As in Nielsen's network.py, the gradient is computed apart
(Network.gradients) and only `updates` decides the step; the trainer then adds it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .strategies import Context, Strategy


@dataclass
class UpdateRule:
    """The optimizer: its settings, and the momentum buffers (velocities) it keeps between steps."""

    lr: float
    momentum: float
    weight_decay: float
    strategy: Strategy
    params: dict                        # the strategy's parameters (k, eps, m)
    vel_w: np.ndarray = field(repr=False)  # (n_w,) momentum buffers, zero at the start
    vel_b: np.ndarray = field(repr=False)  # (n_b,)
    flip_sign: bool = False
    flip_weight_sign: bool = False
    bias_lr_scale: float = 1.0

    def updates(self, w: np.ndarray, b: np.ndarray, g_w: np.ndarray, g_b: np.ndarray, ctx: Context,
                train_biases: bool) -> tuple[np.ndarray, np.ndarray]:
        """u_w (n_w,) and u_b (n_b,): what this step adds to the flat weights w and biases b, whose
        gradients are g_w and g_b. Biases not trained at this step get a zero update."""
        lr, mom, wd = self.lr, self.momentum, self.weight_decay
        d_w = g_w + wd * w if wd else g_w
        if mom:
            self.vel_w = mom * self.vel_w + d_w
            d_w = self.vel_w
        u_w = lr * d_w if self.flip_weight_sign else -lr * d_w
        if not train_biases:
            return u_w, np.zeros_like(b)
        d_b = g_b + wd * b if (wd and self.strategy.decays_biases) else g_b
        if mom:
            self.vel_b = mom * self.vel_b + d_b
            d_b = self.vel_b
        u_b = self.strategy.update(d_b, ctx, **self.params) * self.bias_lr_scale
        return u_w, (-u_b if self.flip_sign else u_b)
