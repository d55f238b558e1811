"""A dense MLP whose parameters live in flat vectors, with backprop kept apart from any update.

Shapes: X is (n, d_in); layer l has weights W[l] of shape (d_l, d_{l+1}) and biases b[l] of shape
(d_{l+1},). `weights` and `biases` are lists of views into the flat vectors `w_flat` and `b_flat`, so
per-layer code reads like Nielsen's network.py while diagnostics can reduce over all layers at once.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

ACTIVATIONS = ("tanh", "sigmoid", "relu", "identity")
LOSSES = ("mse", "cross_entropy")
WEIGHT_INITS = ("xavier", "he")
PROBE_FLOATS = 1 << 17  # probe_losses stacks at most about this many activations (1 MB in float64) at once


def _activate_inplace(name: str, z: np.ndarray) -> np.ndarray:
    """The activation f(z), written over z (a fresh pre-activation nobody else holds); sigmoid via tanh,
    which cannot overflow."""
    if name == "tanh":
        return np.tanh(z, out=z)
    if name == "sigmoid":
        z *= 0.5
        np.tanh(z, out=z)
        z += 1.0
        z *= 0.5
        return z
    if name == "relu":
        return np.maximum(z, 0.0, out=z)
    return z


def _times_slope(name: str, delta: np.ndarray, a: np.ndarray) -> None:
    """delta *= d a / d z, in place, from the activation a alone (relu: a > 0 exactly when z > 0)."""
    if name == "tanh":
        slope = a * a
        np.subtract(1.0, slope, out=slope)
        delta *= slope
    elif name == "sigmoid":
        slope = 1.0 - a
        slope *= a
        delta *= slope
    elif name == "relu":
        delta *= np.sign(a)  # a >= 0: sign is the 0/1 step, and float * float beats a bool mask


DOT_CHUNK = 8192  # OpenBLAS splits a dot product of more than 10,000 entries across its threads


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """a @ b for 1-d a and b (n,), with bits that do not depend on the BLAS thread count (core/threads.py
    changes it): up to DOT_CHUNK entries in one product (one thread, as a @ b), past that the products
    of DOT_CHUNK-entry pieces added in order."""
    n = a.shape[0]
    if n <= DOT_CHUNK:
        return float(a @ b)
    return float(sum(float(a[i:i + DOT_CHUNK] @ b[i:i + DOT_CHUNK]) for i in range(0, n, DOT_CHUNK)))


def _loss_value(loss: str, out: np.ndarray, y: np.ndarray) -> float:
    """The loss of out (n, k) against y (n, k): mse is the mean of squared errors over all entries;
    cross_entropy the mean over samples of -sum(y * log softmax(out)), y one-hot."""
    if loss == "mse":
        diff = (out - y).ravel()
        return dot(diff, diff) / diff.size
    shifted = out - out.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -dot(y.ravel(), (shifted - log_z).ravel()) / out.shape[0]


def _loss_and_grad_inplace(loss: str, out: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """The loss (as _loss_value) and dL/d(out), the gradient in a fresh array with as few passes as possible."""
    if loss == "mse":
        diff = out - y
        flat = diff.ravel()
        value = dot(flat, flat) / flat.size
        diff *= 2.0 / flat.size
        return value, diff
    n = out.shape[0]
    shifted = out - out.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    shifted -= log_z  # log softmax
    value = -dot(y.ravel(), shifted.ravel()) / n
    np.exp(shifted, out=shifted)
    shifted -= y
    shifted *= 1.0 / n
    return value, shifted


@dataclass
class Gradients:
    """The flat gradient vectors, and per-layer views of them shaped like the parameters (made when read)."""

    loss: float
    w_flat: np.ndarray
    b_flat: np.ndarray
    w_layout: list = field(repr=False)   # (slice of w_flat, shape) per layer
    b_layout: list = field(repr=False)   # slice of b_flat per layer

    @property
    def weights(self) -> list[np.ndarray]:
        """dL/dW per layer, (d_l, d_{l+1}) views of w_flat."""
        return [self.w_flat[part].reshape(shape) for part, shape in self.w_layout]

    @property
    def biases(self) -> list[np.ndarray]:
        """dL/db per layer, (d_{l+1},) views of b_flat."""
        return [self.b_flat[part] for part in self.b_layout]


class Network:
    """An MLP: sizes [d_in, h1, ..., d_out], one activation per layer (the last is the output's)."""

    def __init__(self, sizes: Sequence[int], activations: Sequence[str], loss: str = "mse",
                 dtype: str | np.dtype = "float64", has_biases: bool = True) -> None:
        if len(activations) != len(sizes) - 1:
            raise ValueError("one activation per layer is needed")
        self.sizes = [int(s) for s in sizes]
        self.activations = list(activations)
        self.loss = loss
        self.dtype = np.dtype(dtype)
        self.has_biases = has_biases
        self.layer_names = [f"hidden{i + 1}" for i in range(len(sizes) - 2)] + ["output"]
        w_shapes = list(zip(self.sizes[:-1], self.sizes[1:]))
        self.w_offsets = np.cumsum([0] + [a * b for a, b in w_shapes])
        self.b_offsets = np.cumsum([0] + self.sizes[1:])
        self.w_flat = np.zeros(self.w_offsets[-1], dtype=self.dtype)
        self.b_flat = np.zeros(self.b_offsets[-1], dtype=self.dtype)
        self._w_layout = [(slice(int(self.w_offsets[i]), int(self.w_offsets[i + 1])), shape)
                          for i, shape in enumerate(w_shapes)]
        self._b_layout = [slice(int(self.b_offsets[i]), int(self.b_offsets[i + 1])) for i in range(len(w_shapes))]
        self._ones_cache = None
        # backprop writes into these, then hands out copies: no per-step views of fresh arrays
        self._gw = np.empty_like(self.w_flat)
        self._gb = np.empty_like(self.b_flat)
        self._gws = [self._gw[part].reshape(shape) for part, shape in self._w_layout]
        self._gbs = [self._gb[part] for part in self._b_layout]
        self.weights = self._views(self.w_flat, self.w_offsets, w_shapes)
        self.biases = self._views(self.b_flat, self.b_offsets, [(s,) for s in self.sizes[1:]])

    @staticmethod
    def _views(flat: np.ndarray, offsets: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
        return [flat[offsets[i]:offsets[i + 1]].reshape(shape) for i, shape in enumerate(shapes)]

    def initialise(self, rng: np.random.Generator, weight_init: str = "xavier", bias_init: float = 0.0) -> None:
        """Xavier (uniform, Glorot) or He (normal) weights; every bias set to the constant bias_init."""
        for w in self.weights:
            fan_in, fan_out = w.shape
            if weight_init == "he":
                w[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=w.shape)
            else:
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                w[...] = rng.uniform(-limit, limit, size=w.shape)
        self.b_flat[...] = bias_init if self.has_biases else 0.0

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The output (n, d_out) for x (n, d_in), before any softmax."""
        a = x
        for w, b, act in zip(self.weights, self.biases, self.activations):
            z = a @ w
            z += b
            a = _activate_inplace(act, z)
        return a

    def loss_at(self, x: np.ndarray, y: np.ndarray, b_flat: np.ndarray | None = None) -> float:
        """The loss at the current weights, and at the biases b_flat if given (the network is unchanged)."""
        if b_flat is None:
            return _loss_value(self.loss, self.forward(x), y)
        saved = self.b_flat.copy()
        self.b_flat[...] = b_flat
        try:
            return _loss_value(self.loss, self.forward(x), y)
        finally:
            self.b_flat[...] = saved

    def probe_losses(self, x: np.ndarray, y: np.ndarray, b_flat: np.ndarray, entries: np.ndarray,
                     values: np.ndarray) -> np.ndarray:
        """(k,) the loss at biases b_flat (n_b,) with entry entries[j] set to values[j], one entry at a time
        (entries, values: (k,)), with the bits loss_at(x, y, that vector) gives. A bias of layer l changes
        layers l and up only: the layers below are computed once, and the probes of one layer go through
        the layers above together, stacked along a first axis ((c, n, d), PROBE_FLOATS numbers at most)."""
        entries = np.asarray(entries, dtype=np.intp)
        values = np.asarray(values, dtype=self.dtype)
        b_flat = np.asarray(b_flat, dtype=self.dtype)   # as loss_at stores it into the network's biases
        biases = [b_flat[part] for part in self._b_layout]
        products, a = [], x                      # each layer's a @ w (n, d_{l+1}) at b_flat
        for w, b, act in zip(self.weights, biases, self.activations):
            z = a @ w
            products.append(z.copy())
            z += b
            a = _activate_inplace(act, z)
        out = np.empty(len(entries))
        layer_of = np.searchsorted(self.b_offsets[1:], entries, side="right")
        for layer in range(len(self.weights)):
            picked = np.flatnonzero(layer_of == layer)
            stack = max(1, PROBE_FLOATS // (len(x) * max(self.sizes[layer + 1:])))   # probes at a time
            for start in range(0, len(picked), stack):
                chunk = picked[start:start + stack]
                probed = np.repeat(biases[layer][None], len(chunk), axis=0)             # (c, d_{l+1})
                probed[np.arange(len(chunk)), entries[chunk] - self.b_offsets[layer]] = values[chunk]
                a = _activate_inplace(self.activations[layer], products[layer][None] + probed[:, None, :])
                out[chunk] = self._stacked_losses(layer + 1, a, y, self.weights, biases)
        return out

    def probe_weight_losses(self, x: np.ndarray, y: np.ndarray, w_flat: np.ndarray, entries: np.ndarray,
                            values: np.ndarray) -> np.ndarray:
        """(k,) the loss at weights w_flat (n_w,) and the network's biases with entry entries[j] set to
        values[j], one entry at a time (entries, values: (k,)), with the bits loss_at gives at that vector.
        A weight of layer l changes layers l and up only: the inputs of the layers below are computed
        once, and the probes of one layer go through together, each with its own copy of that layer's
        weights ((c, d_l, d_{l+1}); about PROBE_FLOATS numbers at most)."""
        entries = np.asarray(entries, dtype=np.intp)
        values = np.asarray(values, dtype=self.dtype)
        w_flat = np.asarray(w_flat, dtype=self.dtype)   # as a copy stored into the network's weights
        weights = [w_flat[part].reshape(shape) for part, shape in self._w_layout]
        inputs, a = [], x                        # each layer's input (n, d_l) at w_flat
        for w, b, act in zip(weights, self.biases, self.activations):
            inputs.append(a)
            z = a @ w
            z += b
            a = _activate_inplace(act, z)
        out = np.empty(len(entries))
        layer_of = np.searchsorted(self.w_offsets[1:], entries, side="right")
        for layer, w in enumerate(weights):
            picked = np.flatnonzero(layer_of == layer)
            stack = max(1, PROBE_FLOATS // max(w.size, len(x) * max(self.sizes[layer + 1:])))
            for start in range(0, len(picked), stack):
                chunk = picked[start:start + stack]
                probed = np.repeat(w[None], len(chunk), axis=0)                          # (c, d_l, d_{l+1})
                probed.reshape(len(chunk), -1)[np.arange(len(chunk)), entries[chunk] - self.w_offsets[layer]] = \
                    values[chunk]
                z = inputs[layer] @ probed           # (c, n, d_{l+1}): each probe's product as a 2-d one gives it
                z += self.biases[layer]
                a = _activate_inplace(self.activations[layer], z)
                out[chunk] = self._stacked_losses(layer + 1, a, y, weights, self.biases)
        return out

    def _stacked_losses(self, layer: int, a: np.ndarray, y: np.ndarray, weights: list, biases: list) -> list[float]:
        """The loss of each of c probes whose activations a (c, n, d_layer) enter layer `layer`, through the
        layers from it up (weights, biases: each layer's), stacked."""
        for w, b, act in zip(weights[layer:], biases[layer:], self.activations[layer:]):
            z = a @ w                    # (c, n, d): each probe's product as a 2-d one gives it
            z += b
            a = _activate_inplace(act, z)
        return [_loss_value(self.loss, a[j], y) for j in range(len(a))]

    def _ones(self, n: int, dtype: np.dtype) -> np.ndarray:
        cached = self._ones_cache
        if cached is None or cached.shape[0] != n or cached.dtype != dtype:
            cached = self._ones_cache = np.ones(n, dtype=dtype)
        return cached

    def gradients(self, x: np.ndarray, y: np.ndarray) -> Gradients:
        """Backprop: the loss and dL/dW, dL/db for every layer. Nothing is updated. It works in buffers of
        the network's own, so one call at a time (not from two threads at once); what it returns is a copy."""
        acts = [x]
        a = x
        for w, b, act in zip(self.weights, self.biases, self.activations):
            z = a @ w
            z += b
            a = _activate_inplace(act, z)
            acts.append(a)
        loss, delta = _loss_and_grad_inplace(self.loss, a, y)
        gw, gb, gws, gbs = self._gw, self._gb, self._gws, self._gbs
        ones = self._ones(len(x), delta.dtype)
        _times_slope(self.activations[-1], delta, a)
        for layer in range(len(self.weights) - 1, -1, -1):
            np.matmul(acts[layer].T, delta, out=gws[layer])
            if self.has_biases:
                np.matmul(ones, delta, out=gbs[layer])  # column sums; BLAS beats add.reduce here
            if layer:
                delta = delta @ self.weights[layer].T
                _times_slope(self.activations[layer - 1], delta, acts[layer])
        if not self.has_biases:
            gb[...] = 0.0
        return Gradients(loss, gw.copy(), gb.copy(), self._w_layout, self._b_layout)
