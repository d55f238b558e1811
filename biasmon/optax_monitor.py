"""Watch every parameter of a JAX model trained with optax: wrap the optimizer once, pass the loss.

    import optax
    from biasmon.optax_monitor import monitor

    tx = monitor(optax.adam(1e-3), "run.jsonl")      # a GradientTransformation, as optax.adam's is
    opt_state = tx.init(params)
    ...                                               # in the (jitted) step:
    updates, opt_state = tx.update(grads, opt_state, params, value=loss)
    params = optax.apply_updates(params, updates)
    ...
    tx.close()                                        # or `with monitor(...) as tx:`; then `biasmon check run.jsonl`

The loss comes in as optax's `value=` extra argument (the name optax.contrib.reduce_on_plateau and the
line searches of optax.lbfgs read it under; it is passed on to the wrapped transformation, which may use
it too). `params` is needed as well (the parameters before the step, whose norms are logged).

What a line holds (docs/stream-format.md, "The summary form"): per parameter leaf one row of sums [n,
|p|^2, |g|^2, |u|^2, u.g, sig, agree, |a|^2, a.u], computed in JAX inside update (biasmon/jax_sums.py), so
under jax.jit too: g is the incoming updates (the gradient given to tx.update), u the wrapped
transformation's output (what optax.apply_updates adds to the parameters), p the params given, a the
wrapped transformation's running average of the gradient where its state holds one whose tree is the
params' tree (the first field named `mu`, as ScaleByAdamState has: adam, adamw, nadam, lion, ...; or
`trace`, TraceState's: sgd with momentum), named in the header's `averages`, taken as an average of g
with the sign of the sum of cos(a, g) over the logged steps and every leaf (as biasmon.torch_monitor does
for optimizers not torch's own): a state's sign depends on where it sits in the chain (optax.sgd's trace
averages g; chain(scale(-lr), trace(b)), the same optimizer, averages -lr g), and one leaf's sum alone is
noise where it sits at its minimum. Biases go to `bias_sums`, other leaves to `weight_sums`, named from
the pytree paths (biasmon/jax_sums.py: `Dense_0` for `params/Dense_0/kernel` and `.../bias`).

How a line gets out: only the step number, the loss and the small arrays of the sums leave the device,
through a host callback that writes the line with biasmon's RecordWriter, flushed at once (a crash loses
no line already written). Which callback (measured: bench/bench_optax.py):

- by default jax.pure_callback, inside a lax.cond that runs it (and the sums) only at a logged step. Its
  result (the step) is kept in the wrapper's state and passed to the next logged step's callback, so the
  callbacks run in step order, and are never dropped while the state is used (the next step takes it).
  JAX treats such a callback as pure: a transformation may call it again (the host writes a step once) and
  it adds no effect to the program, so jit keeps its fast C++ dispatch path;
- ordered=True: jax.experimental.io_callback(ordered=True), JAX's own guarantee for an impure callback
  (once per execution, in program order, whatever becomes of the state). Any effect in a jitted program
  turns off jit's fast dispatch path for every call, logged or not: about 0.3 to 0.5 ms more a step on
  this machine, so it suits steps of many milliseconds. (jax.debug.callback, the other way, may be
  dropped, duplicated or reordered by transformations, and costs the same as io_callback.)

Dispatch is asynchronous: a line appears when the device has run its step; close() first waits for every
computation dispatched so far (the live arrays, and jax.effects_barrier()). A vmapped or differentiated
optimizer update is not supported: JAX refuses either callback under differentiation, and an ordered
io_callback under vmap; under vmap a pure_callback would run once per member, and only the first member's
line of a step be written (not tested).

Steps: the wrapper's state counts the updates (`step` 0 first). `every=k` (default DEFAULT_EVERY, 32, as
TorchMonitor's) logs one update in k, that update's own g and u; the other steps compute no sums and call
nothing on the host (they still pass the cond its operands: on a 2-16-16-1 MLP whose step takes 0.1 ms
that is most of the cost). A verdict then forms over k times as many steps, and a bug acting only between
logged steps can be missed. A state re-initialised (tx.init again) restarts the count: the stream then
starts a new run (a new header) at the first line whose step goes back.

jax and optax are needed only to call this: install them yourself or with the `jax` extra (biasmon[jax]).
"""
from __future__ import annotations

import os
import threading
import uuid
import warnings
from functools import partial
from typing import Any, NamedTuple, TextIO

import numpy as np

from .core.errors import BiasmonError
from .core.layout import Layout
from .core.records import json_number, sums_json
from .core.stream import RecordWriter, open_target, sums_header
from .core.summary_form import oriented_dots
from .jax_sums import Leaf, check_same_leaves, leaf_layers, step_sums

DEFAULT_EVERY = 32   # as TorchMonitor's: bench/bench_optax.py
AVERAGE_FIELDS = ("mu", "trace")   # optimizer state fields holding a running average of g
NAME = "biasmon.optax_monitor"


def _frameworks() -> tuple[Any, Any]:
    try:
        import jax
        import jax.experimental   # io_callback
        import optax
    except ImportError:
        raise BiasmonError(f"{NAME} needs JAX and optax: pip install jax optax (or biasmon[jax])") from None
    return jax, optax


class MonitorState(NamedTuple):
    """The wrapper's state: the updates counted so far, the step of the last line sent to the host (the
    callback's result: each logged step's callback takes the previous one's, which orders them), and the
    wrapped transformation's state."""

    count: Any
    logged: Any
    inner_state: Any


class OptaxMonitor:
    """The monitor behind `monitor()`: its init and update are the transformation's; close() ends the stream.

    tx: an optax GradientTransformation. path: a file path (truncated) or an open text file (left open by
    close()). every: log one update in `every`. ordered: use io_callback(ordered=True) rather than a
    pure_callback ordered through the state (the module docstring). run_id, meta: written into the header."""

    def __init__(self, tx: Any, path: str | os.PathLike[str] | TextIO, *, every: int = DEFAULT_EVERY,
                 ordered: bool = False, run_id: str | None = None, meta: dict | None = None) -> None:
        jax, optax = _frameworks()
        if not isinstance(tx, optax.GradientTransformation):
            raise BiasmonError(f"{NAME}: tx must be an optax GradientTransformation (optax.adam(1e-3), "
                               f"optax.chain(...), optax.MultiSteps(...).gradient_transformation(), ...), "
                               f"got {type(tx).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise BiasmonError(f"{NAME}: every must be a whole number >= 1, got {every!r}")
        self.jax, self.optax, self.every, self.ordered = jax, optax, every, bool(ordered)
        self.inner = optax.with_extra_args_support(tx)
        self.run_id = run_id or f"optax-{uuid.uuid4().hex[:8]}"
        self.meta = meta
        self._handle, self._owns = open_target(path, NAME)
        self._writer = RecordWriter(self._handle)
        self._lock = threading.Lock()
        self.leaves: list[Leaf] | None = None   # the logged leaves, from the first params seen
        self._tree_leaves = 0                # leaves of the params tree (logged or not)
        self.bias_layout: Layout | None = None
        self.weight_layout: Layout | None = None
        self._order: list[int] = []          # rows of the device table in stream order: biases, then weights
        self._averages: str | None = None    # the state field the running average is read from
        self._float32: bool = False
        self._orient: np.ndarray | None = None   # per layer: the sum of cos(a, g) over the logged steps
        self._header_written = False
        self._last_step: int | None = None
        self.lines = 0                       # step lines written
        self.dropped = 0                     # lines of steps run after close() (not written)
        self.closed = False

    # --- the transformation -----------------------------------------------------------------------
    def init(self, params: Any) -> MonitorState:
        self._leaves(params, "params")
        jnp = self.jax.numpy
        inner = self.inner.init(params)
        self._refuse_accumulation(inner)
        return MonitorState(jnp.zeros([], jnp.int32), jnp.full([], -1, jnp.int32), inner)

    def _refuse_accumulation(self, inner_state: Any) -> None:
        """Gradient accumulation inside the wrapped transformation (optax.MultiSteps, optax.apply_every)
        emits zero updates on k - 1 steps in k: those steps would read as a frozen layer. The monitor goes
        inside it instead, where each update it sees is one the parameters take."""
        kinds = (self.optax.MultiStepsState, self.optax.ApplyEvery)
        found = [x for x in self.jax.tree_util.tree_leaves(inner_state, is_leaf=lambda x: isinstance(x, kinds))
                 if isinstance(x, kinds)]
        if found:
            raise BiasmonError(f"{NAME}: the wrapped transformation accumulates gradients "
                               f"({type(found[0]).__name__}): most of its steps apply no update; wrap the "
                               "optimizer inside it instead: optax.MultiSteps(monitor(optax.adam(1e-3), path), k)")

    def update(self, updates: Any, state: Any, params: Any = None, **extra_args: Any) -> tuple[Any, MonitorState]:
        jax, jnp = self.jax, self.jax.numpy
        if not isinstance(state, MonitorState):
            raise BiasmonError(f"{NAME}: state must be the state this transformation's init returned, "
                               f"got {type(state).__name__}")
        if params is None:
            raise BiasmonError(f"{NAME}: update needs params (tx.update(grads, state, params, value=loss)): "
                               "the parameters before the step")
        if extra_args.get("value") is None:
            raise BiasmonError(f"{NAME}: update needs the loss as value= (tx.update(grads, state, params, "
                               "value=loss)): the loss at params, written in each line")
        loss = jnp.asarray(extra_args["value"])
        if loss.shape != ():
            raise BiasmonError(f"{NAME}: value must be the loss, a scalar, got an array of shape {loss.shape}")
        leaves = self._leaves(params, "params")
        new_updates, inner_state = self.inner.update(updates, state.inner_state, params, **extra_args)
        p = self._picked(params, leaves, "params")
        g = self._picked(updates, leaves, "the gradient (updates)")
        u = self._picked(new_updates, leaves, "the wrapped transformation's updates")
        field, averages = self._find_average(inner_state, params)
        a = None if averages is None else self._picked(averages, leaves, "the running average")
        float32 = all(x.dtype == jnp.float32 for x in g)
        write = partial(self._write, field, float32)
        ack = jax.ShapeDtypeStruct((), jnp.int32)

        def log() -> Any:
            floats, counts = step_sums(jax, leaves, p, g, u, a)   # sent as two arrays (each one sent costs)
            ints = jnp.concatenate([jnp.stack([state.count, state.logged]), counts.reshape(-1)])
            reals = jnp.concatenate([loss.astype(floats.dtype)[None], floats.reshape(-1)])
            args = (ints, reals)
            if self.ordered:
                jax.experimental.io_callback(partial(_no_result, write), None, *args, ordered=True)
                return state.count
            return jax.pure_callback(write, ack, *args)

        if self.every == 1:
            logged = log()
        else:
            logged = jax.lax.cond(state.count % self.every == 0, log, lambda: state.logged)
        top = jnp.iinfo(jnp.int32).max
        count = jnp.where(state.count < top, state.count + 1, state.count)
        if not self.ordered:
            new_updates = _tied(jax, new_updates, logged)
        return new_updates, MonitorState(count, logged, inner_state)

    # --- leaves and averages (at trace time) -------------------------------------------------------
    def _leaves(self, params: Any, what: str) -> list[Leaf]:
        leaves = leaf_layers(self.jax, params)
        if self.leaves is not None:
            check_same_leaves(what, leaves, self.leaves)
            return self.leaves
        self._tree_leaves = len(self.jax.tree_util.tree_leaves(params))
        if not any(leaf.kind == 0 for leaf in leaves):
            found = ", ".join(leaf.path for leaf in leaves[:4]) or "no floating-point leaves"
            raise BiasmonError(f"{NAME}: the params tree has no bias leaf (a leaf named bias, b, b1, b_out, "
                               f"*bias*, ...; found {found}{', ...' if len(leaves) > 4 else ''})")
        self.leaves = leaves
        biases = [leaf for leaf in leaves if leaf.kind == 0]
        weights = [leaf for leaf in leaves if leaf.kind == 1]
        self.bias_layout = Layout(tuple(x.layer for x in biases), tuple(x.size for x in biases))
        self.weight_layout = Layout(tuple(x.layer for x in weights), tuple(x.size for x in weights))
        self._order = [leaves.index(x) for x in biases + weights]
        self._orient = np.zeros(len(leaves))
        return leaves

    def _picked(self, tree: Any, leaves: list[Leaf], what: str) -> list:
        """The arrays of the logged leaves of a tree shaped as the params."""
        flat = self.jax.tree_util.tree_leaves(tree)
        if len(flat) != self._tree_leaves:
            raise BiasmonError(f"{NAME}: {what} is not shaped as the params ({len(flat)} leaves, the params "
                               f"{self._tree_leaves})")
        picked = [flat[leaf.index] for leaf in leaves]
        for leaf, x in zip(leaves, picked):
            if int(np.prod(np.shape(x))) != leaf.size:
                raise BiasmonError(f"{NAME}: {what} is not shaped as the params (at {leaf.path})")
        return picked

    def _find_average(self, state: Any, params: Any) -> tuple[str | None, Any]:
        """(field, tree) of the first running average of g in a state: a `mu` or `trace` field whose tree
        is the params' (the field first found is kept for the run); (None, None) if there is none."""
        tree_util = self.jax.tree_util
        target = tree_util.tree_structure(params)
        shapes = [np.shape(x) for x in tree_util.tree_leaves(params)]
        fields = (self._averages,) if self._averages else AVERAGE_FIELDS

        def search(node: Any) -> tuple[str | None, Any]:
            if hasattr(node, "_fields"):
                for field in fields:
                    if field in node._fields:
                        value = getattr(node, field)
                        if tree_util.tree_structure(value) == target and \
                                [np.shape(x) for x in tree_util.tree_leaves(value)] == shapes:
                            return field, value
                children = list(node)
            elif isinstance(node, (tuple, list)):
                children = list(node)
            elif isinstance(node, dict):
                children = list(node.values())
            else:
                return None, None
            for child in children:
                found = search(child)
                if found[0] is not None:
                    return found
            return None, None

        field, value = search(state)
        if field is not None and self._averages is None:
            self._averages = field
        return field, value

    # --- the host side ------------------------------------------------------------------------------
    def _write(self, field: str | None, float32: bool, ints: Any, reals: Any) -> Any:
        """One logged step's line (run on the host by the callback); the step, as the callback's result.
        ints: the step, the last logged step's (only there to order the callbacks), then the (L, 2) counts;
        reals: the loss, then the (L, 4 or 7) sums."""
        ints, reals = np.asarray(ints, np.int64), np.asarray(reals, np.float64)
        step, loss = int(ints[0]), float(reals[0])
        counts, floats = ints[2:].reshape(-1, 2), reals[1:].reshape(len(ints[2:]) // 2, -1)
        ack = np.asarray(step, np.int32)
        with self._lock:
            if self.closed:
                self.dropped += 1
                if self.dropped == 1:
                    warnings.warn(f"{NAME}: a step ran after close(): its line is not written", stacklevel=1)
                return ack
            if step == self._last_step:   # the same step's callback run again: written once
                return ack
            if self._last_step is not None and step < self._last_step:   # tx.init again: a new run
                self._header_written = False
                if self._orient is not None:
                    self._orient[:] = 0.0   # the new run's average is oriented by its own steps
                self.run_id = f"{self.run_id.split('~')[0]}~{uuid.uuid4().hex[:4]}"
            self._last_step = step
            if not self._header_written:
                self._float32 = float32
                self._write_header(field)
            sizes = np.array([leaf.size for leaf in self.leaves], dtype=np.float64)
            width = 9 if field else 7
            rows = np.empty((len(self.leaves), width))
            rows[:, 0] = sizes
            rows[:, 1:5] = floats[:, :4]
            rows[:, 5:7] = counts
            if field:
                rows[:, 7] = floats[:, 4]
                rows[:, 8] = oriented_dots(floats[:, 5], floats[:, 6], floats[:, 4], floats[:, 1],
                                           self._orient)   # a taken as an average of g
            rows = rows[self._order]
            nb = len(self.bias_layout.names)
            line: dict[str, Any] = {"step": step, "loss": json_number(loss)}
            line["bias_sums"] = sums_json(self.bias_layout.names, rows[:nb], True, True, None)
            if self.weight_layout.names:
                line["weight_sums"] = sums_json(self.weight_layout.names, rows[nb:], True, True, None)
            self._writer.write_json(line, allow_nan=True)   # a non-finite sum is the literal NaN / Infinity
            self.lines += 1
        return ack

    def _write_header(self, field: str | None) -> None:
        self._writer.write_json(sums_header(self.run_id, NAME, self.bias_layout, self.weight_layout, field,
                                            self._float32, self.every, self.meta))
        self._header_written = True

    def close(self) -> None:
        """Wait for the steps dispatched so far to write their lines, then close the stream (a header only,
        if no step was logged and the params are known)."""
        if self.closed:
            return
        self.jax.effects_barrier()   # ordered: every io_callback dispatched so far has run
        for array in self.jax.live_arrays():   # pure_callback: every computation dispatched so far has run
            try:
                array.block_until_ready()
            except RuntimeError:   # deleted (donated) meanwhile
                pass
        with self._lock:
            self.closed = True
            if not self._header_written and self.leaves is not None:
                self._write_header(self._averages)
            if self._owns:
                self._handle.close()
            else:
                self._handle.flush()


_classes: dict[str, type] = {}


def _transformation_class(optax: Any) -> type:
    """A GradientTransformationExtraArgs with close() and the context manager (the monitor: update's owner)."""
    if "cls" not in _classes:
        class Monitored(optax.GradientTransformationExtraArgs):
            """An optax GradientTransformationExtraArgs that logs each update; close() ends its stream."""

            __slots__ = ()

            @property
            def monitor(self) -> OptaxMonitor:
                return self.update.__self__

            def close(self) -> None:
                self.monitor.close()

            def __enter__(self) -> Any:
                return self

            def __exit__(self, *exc: object) -> bool:
                self.close()
                return False

        Monitored.__name__ = Monitored.__qualname__ = "MonitoredTransformation"
        _classes["cls"] = Monitored
    return _classes["cls"]


def monitor(tx: Any, path: str | os.PathLike[str] | TextIO, *, every: int = DEFAULT_EVERY, ordered: bool = False,
            run_id: str | None = None, meta: dict | None = None) -> Any:
    """`tx` wrapped: a GradientTransformationExtraArgs whose update logs the step (pass value=loss) to
    `path`; close() it (or use `with`) at the end. every, ordered, run_id, meta: as OptaxMonitor's."""
    watcher = OptaxMonitor(tx, path, every=every, ordered=ordered, run_id=run_id, meta=meta)
    return _transformation_class(watcher.optax)(watcher.init, watcher.update)


def _tied(jax: Any, updates: Any, logged: Any) -> Any:
    """The updates, their first floating-point leaf made to depend on the callback's result (plus 0.0):
    a jitted loop that returns only the params (a lax.scan, a fori_loop) would otherwise drop the
    pure_callback, whose result lives in the optimizer state alone, and write no line."""
    leaves, tree = jax.tree_util.tree_flatten(updates)
    for i, leaf in enumerate(leaves):
        if jax.numpy.issubdtype(leaf.dtype, jax.numpy.floating):
            zero = jax.lax.optimization_barrier(logged).astype(leaf.dtype) * 0   # not folded away
            leaves[i] = leaf + zero
            break
    return jax.tree_util.tree_unflatten(tree, leaves)


def _no_result(write: Any, *args: Any) -> None:
    write(*args)


