"""Watch every trainable variable of a Keras 3 model trained with model.fit: one callback, nothing else.

    import os; os.environ["KERAS_BACKEND"] = "torch"    # before keras is imported
    import keras
    from biasmon.keras_monitor import KerasMonitor

    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    model.fit(x, y, callbacks=[KerasMonitor("run.jsonl")])   # then `biasmon check run.jsonl`

What a line holds (docs/stream-format.md, "The summary form"): per trainable variable one row of sums [n,
|p|^2, |g|^2, |u|^2, u.g, sig, agree, |a|^2, a.u], computed in torch where the variables live, by
biasmon.torch_sums.StepSums (as TorchMonitor's; read with one `.tolist()` per logged step). At fit's start
the callback hooks, on the model's optimizer instance (its class is left alone; fit's end removes them):
`apply` (Keras 3's one entry to a step, base_optimizer.py: the snapshot p of the variables is taken before
it runs, u = the variables after minus p, weight decay and constraints included) and `_backend_update_step`
(the gradients the update step is given: after loss-scale unscaling and clipping; a variable whose
gradient was None gets null gradient sums), and `scale_loss` (called by fit's train_step with the step's
loss, at p, before the backward pass: read with `.item()` only at a logged step). a is the optimizer's own
running average of the gradient where it keeps one per variable (`momentums`: SGD with momentum, Adam,
AdamW, Adamax, Nadam...), named in the header's `averages`, taken as an average of g: with the sign Keras's
update rule gives it (SGD's velocity averages -lr g: DESCENT_SIGN), or, for an optimizer not listed there,
the sign of the sum of cos(a, g) over the logged steps and every variable, as TorchMonitor does for optimizers
not torch's own (one variable's sum alone is noise where it sits at its minimum, or early on).

Layers: a variable whose name matches biasmon.torch_params.BIAS_NAME (`bias`; BatchNormalization's `beta`
and `gamma` do not) goes to `bias_sums`, every other trainable variable to
`weight_sums`. A variable named `bias`, `kernel`, `embeddings` or `weight` is logged under its layer's path
(`dense`, `dense_1`: the variable's `.path` without the model's name and its own), so that a layer's bias
and kernel share a name; any other under its full path (`batch_normalization/gamma`).

Steps: `step` counts the optimizer's `apply` calls since fit's start (0 first). `every=k` (default 32, as
TorchMonitor's) logs one step in k, that step's own g and u; the snapshot and the sums are made only then.

Supported: the torch backend (KERAS_BACKEND=torch), fit run eagerly (the torch backend's default,
jit_compile="auto" resolves to False there). Refused with a one-line BiasmonError: another backend (jax,
tensorflow: their train step is a traced stateless function, no Python runs per step), jit_compile=True
(torch.compile would trace the hooks), gradient accumulation (`gradient_accumulation_steps`: most steps
apply no update), a LossScaleOptimizer (mixed precision; not tested). One monitor writes one fit():
its stream is closed at fit's end.

keras and torch are needed only to call this: install them yourself or with the `keras` extra (biasmon[keras]).
"""
from __future__ import annotations

import math
import os
import re
import uuid
from typing import Any, TextIO

import numpy as np

from .core.errors import BiasmonError
from .core.layout import Layout
from .core.stream import RecordWriter, open_target, sums_header
from .torch_params import BIAS_NAME
from .torch_sums import step_line

DEFAULT_EVERY = 32   # as TorchMonitor's
AVERAGE_ATTRS = ("momentums", "_momentums")   # optimizer attributes holding a running average of g per variable
OWN_NAMES = re.compile(r"(?i)bias|kernel|embeddings|weight")   # variables named by their layer's path
NAME = "biasmon.keras_monitor"
# Keras's optimizers whose running average (`momentums`) is declared by their update rule: +1 an average of g
# (adam.py, lion.py, rmsprop.py...: m = b m + (1 - b) g, or its increments), -1 of -g (sgd.py: m = mu m - lr g);
# the classes themselves only (declared_sign), not a user's subclass
DESCENT_SIGN = {"SGD": -1.0, "Adam": 1.0, "AdamW": 1.0, "Adamax": 1.0, "Nadam": 1.0, "Lion": 1.0, "RMSprop": 1.0,
                "Lamb": 1.0}
HOOKED = ("apply", "_backend_update_step", "scale_loss")


def _keras() -> Any:
    try:
        import keras
    except ImportError:
        raise BiasmonError(f"{NAME} needs Keras 3: pip install keras torch (or biasmon[keras])") from None
    version = getattr(keras, "__version__", "0")
    if not version[:1].isdigit() or int(version.split(".")[0]) < 3:
        raise BiasmonError(f"{NAME} needs Keras 3, got keras {version}")
    backend = keras.backend.backend()
    if backend != "torch":
        raise BiasmonError(f"{NAME} supports the torch backend only (set KERAS_BACKEND=torch before importing "
                           f"keras), got the {backend} backend")
    return keras


def variable_layers(model: Any) -> tuple[dict, dict]:
    """({bias layer: variable}, {weight layer: variable}) of a Keras model's trainable variables in the
    model's order (naming: the module docstring)."""
    variables = list(model.trainable_variables)
    prefix = f"{model.name}/"
    named = []
    for v in variables:
        path = getattr(v, "path", None) or v.name
        path = path[len(prefix):] if path.startswith(prefix) else path
        keys = path.split("/")
        kind = 0 if BIAS_NAME.fullmatch(keys[-1]) else 1
        layer = "/".join(keys[:-1]) if len(keys) > 1 and OWN_NAMES.fullmatch(keys[-1]) else path
        named.append((kind, layer, path, v))
    counts: dict[tuple[int, str], int] = {}
    for kind, layer, _, _ in named:
        counts[(kind, layer)] = counts.get((kind, layer), 0) + 1
    out: tuple[dict, dict] = ({}, {})
    for kind, layer, path, v in named:
        out[kind][layer if counts[(kind, layer)] == 1 else path] = v
    return out


class KerasMonitor:
    """A keras.callbacks.Callback (the class is made one when keras is imported: `KerasMonitor(...)` returns
    an instance of a Callback subclass) that logs the model's optimizer steps during fit().

    path: a file path (truncated) or an open text file (left open at fit's end). every: log one optimizer
    step in `every`. run_id, meta: written into the header."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is KerasMonitor:
            return object.__new__(_callback_class(_keras()))
        return object.__new__(cls)

    def __init__(self, path: str | os.PathLike[str] | TextIO, *, every: int = DEFAULT_EVERY,
                 run_id: str | None = None, meta: dict | None = None) -> None:
        keras = _keras()
        keras.callbacks.Callback.__init__(self)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise BiasmonError(f"KerasMonitor: every must be a whole number >= 1, got {every!r}")
        import torch
        self.torch, self.every = torch, every
        self.run_id = run_id or f"keras-{uuid.uuid4().hex[:8]}"
        self.meta = meta
        self._handle, self._owns = open_target(path, "KerasMonitor")
        self._writer = RecordWriter(self._handle)
        self.optimizer: Any = None
        self.variables: list = []
        self.bias_layout = self.weight_layout = None
        self.steps = 0                 # optimizer apply() calls since fit's start
        self.lines = 0                 # step lines written
        self._loss: Any = None         # the last loss scale_loss was given
        self._grads: dict | None = None   # id(variable) -> the gradient the update step was given
        self._averages: str | None = None   # the header's name of the running average
        self._average_attr: str | None = None   # the optimizer's attribute it is read from
        self._orient: np.ndarray | None = None
        self._declared: np.ndarray | None = None   # per variable: the sign its average is taken with (0: by cos(a, g))
        self._float32: bool | None = None
        self._header_written = False
        self._sums: Any = None
        self.closed = False
        self.started = False

    # --- the callback ------------------------------------------------------------------------------
    def on_train_begin(self, logs: Any = None) -> None:
        if self.closed or self.started:
            raise BiasmonError("KerasMonitor: a monitor writes one fit() (its stream is closed at fit's end): "
                               "give the next fit a new KerasMonitor")
        self.started = True
        try:
            self._attach(self.model)
        except BiasmonError:
            self.close()   # refused: the stream is left closed, with no line
            raise

    def _attach(self, model: Any) -> None:
        """Check what fit runs and hook the optimizer (the module docstring)."""
        if getattr(model, "jit_compile", False):
            raise BiasmonError("KerasMonitor: jit_compile=True is not supported (torch.compile would trace the "
                               "monitor's hooks): compile the model with jit_compile=False")
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            raise BiasmonError("KerasMonitor: the model has no optimizer: call model.compile(optimizer=...) first")
        if hasattr(optimizer, "inner_optimizer"):
            raise BiasmonError(f"KerasMonitor: {type(optimizer).__name__} (a wrapped optimizer, mixed "
                               "precision's loss scaling) is not supported")
        if getattr(optimizer, "gradient_accumulation_steps", None):
            raise BiasmonError("KerasMonitor: gradient_accumulation_steps is not supported (most steps apply "
                               "no update: they would read as frozen layers)")
        biases, weights = variable_layers(model)
        if not biases and not weights:
            raise BiasmonError("KerasMonitor: the model has no trainable variables")
        from .torch_sums import StepSums
        self.optimizer = optimizer
        self.variables = list(biases.values()) + list(weights.values())
        self.bias_layout = Layout(tuple(biases), tuple(int(np.prod(v.shape)) for v in biases.values()))
        self.weight_layout = Layout(tuple(weights), tuple(int(np.prod(v.shape)) for v in weights.values()))
        self._sums = StepSums(self._values(), [0] * len(biases) + [1] * len(weights))
        self._orient = np.zeros(len(self.variables))
        self._declared = np.full(len(self.variables), declared_sign(optimizer))
        for name in HOOKED:
            original = getattr(optimizer, name)
            object.__setattr__(optimizer, name, getattr(self, f"_hooked_{name}")(original))

    def on_train_end(self, logs: Any = None) -> None:
        self.close()

    # --- hooks -------------------------------------------------------------------------------------
    def _hooked_scale_loss(self, original: Any) -> Any:
        def scale_loss(loss: Any) -> Any:
            self._loss = loss
            return original(loss)
        return scale_loss

    def _hooked__backend_update_step(self, original: Any) -> Any:
        def _backend_update_step(grads: Any, trainable_variables: Any, learning_rate: Any) -> Any:
            if self._grads is not None:
                for g, v in zip(grads, trainable_variables):
                    self._grads[id(v)] = g
            return original(grads, trainable_variables, learning_rate)
        return _backend_update_step

    def _hooked_apply(self, original: Any) -> Any:
        def apply(grads: Any, trainable_variables: Any = None) -> Any:
            if self.closed or self.steps % self.every:
                self.steps += 1
                return original(grads, trainable_variables)
            step = self.steps
            self.steps += 1
            torch = self.torch
            with torch.no_grad():
                self._sums.params = self._values()
                self._sums.snapshot()
            self._grads = {}
            try:
                result = original(grads, trainable_variables)
                grads_used = [self._grads.get(id(v)) for v in self.variables]
            finally:
                self._grads = None
            self._log(step, grads_used)
            return result
        return apply

    def _values(self) -> list:
        """The torch tensors of the tracked variables (taken anew: an assign may replace one)."""
        return [v.value for v in self.variables]

    def _average(self) -> list:
        """The optimizer's running average of each variable's gradient, or Nones (the first attribute found is
        kept for the run)."""
        opt = self.optimizer
        attrs = (self._average_attr,) if self._average_attr else AVERAGE_ATTRS
        for attr in attrs:
            found = getattr(opt, attr, None)
            if not isinstance(found, (list, tuple)) or not found:
                continue
            out = []
            for v in self.variables:
                try:
                    a = found[opt._get_variable_index(v)]
                except (KeyError, IndexError, AttributeError):
                    a = None
                a = getattr(a, "value", None)
                out.append(a if a is not None and tuple(a.shape) == tuple(v.shape) else None)
            if any(a is not None for a in out):
                if self._averages is None and not self._header_written:
                    self._average_attr, self._averages = attr, attr.lstrip("_")   # Adam's is _momentums
                return out
        return [None] * len(self.variables)

    def _log(self, step: int, grads: list) -> None:
        torch = self.torch
        averages = self._average()
        unreached = tuple(g is None for g in grads)
        if self._float32 is None:
            self._float32 = {g.dtype for g in grads if g is not None} == {torch.float32}
        with torch.no_grad():
            self._sums.params = self._values()
            table = self._sums.compute([None if g is None else g.detach() for g in grads], averages)
        rows = np.array(table.tolist(), dtype=np.float64)
        loss = self._loss
        self._loss = None
        self._write(step, math.nan if loss is None else _as_float(loss), rows, unreached)

    # --- writing -----------------------------------------------------------------------------------
    def _write(self, step: int, loss: float, rows: np.ndarray, unreached: tuple) -> None:
        self._ensure_header()
        line = step_line(step, loss, None, rows, unreached, self.bias_layout, self.weight_layout, self._orient,
                         bool(self._averages), self._declared)
        self._writer.write_json(line, allow_nan=True)   # a non-finite sum is the literal NaN / Infinity
        self.lines += 1

    def _ensure_header(self) -> None:
        if self._header_written or self.bias_layout is None:
            return
        self._writer.write_json(sums_header(self.run_id, "biasmon.KerasMonitor", self.bias_layout, self.weight_layout,
                                            self._averages, self._float32, self.every, self.meta))
        self._header_written = True

    # --- public ------------------------------------------------------------------------------------
    def close(self) -> None:
        """Remove the hooks from the optimizer and close the stream (fit's end does it)."""
        if self.closed:
            return
        self.closed = True
        if self.optimizer is not None:
            for name in HOOKED:
                self.optimizer.__dict__.pop(name, None)
        self._ensure_header()
        if self._owns:
            self._handle.close()
        else:
            self._handle.flush()


_classes: dict[str, type] = {}


def _callback_class(keras: Any) -> type:
    """KerasMonitor made a keras.callbacks.Callback (fit takes only those)."""
    if "cls" not in _classes:
        cls = type("KerasMonitor", (KerasMonitor, keras.callbacks.Callback), {"__doc__": KerasMonitor.__doc__,
                                                                               "__module__": __name__})
        _classes["cls"] = cls
    return _classes["cls"]


def declared_sign(optimizer: Any) -> float:
    """+1 if the optimizer's running average is one of g, -1 if of -g (DESCENT_SIGN: a Keras optimizer class
    itself, or the torch backend's own version of it), 0 if not known (the sum of cos(a, g) orients it):
    a user's subclass may keep its average another way (a torch-style SGD velocity, m = mu m + g)."""
    cls = type(optimizer)
    if cls.__module__.split(".")[0] == "keras" and cls.__name__ in DESCENT_SIGN:
        return DESCENT_SIGN[cls.__name__]
    return 0.0


def _as_float(value: Any) -> float:
    value = float(value.detach().item()) if hasattr(value, "detach") else float(value)
    return value if math.isfinite(value) else math.nan
