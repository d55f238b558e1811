"""One optimizer step's summary-form sums, computed in JAX where the arrays live (biasmon.optax_monitor uses
it), and the layers a parameter pytree's leaves are logged as. jax is imported lazily (by the caller).

`step_sums` gives, per leaf, the columns of biasmon.core.summary_form.layer_sums (tested against it):
|p|^2, |g|^2, |u|^2, u.g, then |a|^2, a.u, a.g for a running average a of g (a.g orients a, as
biasmon.torch_sums does), as one float array, and the counts `sig` and `agree` as one int32 array. `sig`
counts the entries whose g^2 is above SIGNIFICANT times the largest g^2 of the step over every leaf of the
same kind (biases, or weights), and above 1e-300; `agree` those of them where u and g have opposite signs
(a sign comparison, so a product that would underflow in float32 is still counted as layer_sums counts it).
Sums are taken in the leaf's dtype, at least float32 (bfloat16 and float16 leaves are widened first); the
table is float64 when any leaf is (jax_enable_x64), float32 otherwise: about 1e-7 relative in float32.
The counts are exact but for an entry whose g^2 is within float32 rounding of the threshold.

Layers (`leaf_layers`): a leaf whose last key matches biasmon.torch_params.BIAS_NAME (`bias`, `b`, `b1`,
`in_proj_bias`, `b_out`, ...) is a bias; every other floating-point leaf is a weight. A leaf named `bias`,
`b`, `kernel`, `w` or `weight` (the usual names in Flax, Haiku, Equinox and hand-written trees) is logged
under its parent's path ("Dense_0" for params["Dense_0"]["kernel"]), so that a layer's bias and weights
share a name; any other leaf under its full path ("LayerNorm_0/scale"). Keys are joined with "/"; leading
keys every leaf shares are dropped while each leaf keeps a parent ("params" of a Flax tree). Two leaves of
one kind that would share a name are each named by their full path. Leaves that are not floating point
(integer counters, PRNG keys) and empty leaves are skipped.
"""
from __future__ import annotations

import re
from typing import Any, NamedTuple

from .core.errors import BiasmonError
from .core.measures import SIGNIFICANT
from .torch_params import BIAS_NAME

TINY = 1e-300                   # as layer_sums: g^2 above top * SIGNIFICANT + TINY is significant
OWN_NAMES = re.compile(r"(?i)bias|b|kernel|w|weight")   # leaves named by their parent's path
FLOATS = 4                      # pp, gg, uu, ug
WITH_AVERAGE = 7                # then aa, au, ag


class Leaf(NamedTuple):
    """A logged leaf: its index in the flattened tree, its path, layer name, kind (0 bias, 1 weight), size."""

    index: int
    path: str
    layer: str
    kind: int
    size: int


def key_name(key: Any) -> str:
    """One key of a pytree path as text: a dict key, a sequence index, an attribute name."""
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def leaf_layers(jax: Any, params: Any) -> list[Leaf]:
    """The logged leaves of a parameter pytree, in its flattening order (the naming: the module docstring)."""
    import numpy as np
    pairs, _ = jax.tree_util.tree_flatten_with_path(params)
    kept = []
    for index, (path, leaf) in enumerate(pairs):
        dtype, shape = getattr(leaf, "dtype", None), getattr(leaf, "shape", None)
        if dtype is None or shape is None or not jax.numpy.issubdtype(dtype, jax.numpy.floating):
            continue
        size = int(np.prod(shape, dtype=np.int64))
        if size:
            kept.append((index, [key_name(k) for k in path], size))
    while len({keys[0] if len(keys) >= 3 else None for _, keys, _ in kept} - {None}) == 1 and \
            all(len(keys) >= 3 for _, keys, _ in kept):
        kept = [(i, keys[1:], size) for i, keys, size in kept]
    leaves = []
    for index, keys, size in kept:
        path = "/".join(keys) or "params"
        name = keys[-1] if keys else ""
        kind = 0 if BIAS_NAME.fullmatch(name) else 1
        layer = "/".join(keys[:-1]) if len(keys) > 1 and OWN_NAMES.fullmatch(name) else path
        leaves.append(Leaf(index, path, layer, kind, size))
    taken: dict[tuple[int, str], int] = {}
    for leaf in leaves:
        taken[(leaf.kind, leaf.layer)] = taken.get((leaf.kind, leaf.layer), 0) + 1
    return [leaf._replace(layer=leaf.path) if taken[(leaf.kind, leaf.layer)] > 1 else leaf for leaf in leaves]


def step_sums(jax: Any, leaves: list[Leaf], p: list, g: list, u: list, a: list | None) -> tuple[Any, Any]:
    """((L, 4) or (L, 7) floats, (L, 2) int32 counts) of one step, one row per leaf of `leaves` (biases and
    weights in any order): pp, gg, uu, ug [, aa, au, ag], and sig, agree. p, g, u, a: the leaves' arrays
    (the parameters before the step, the gradient, the update applied, a running average of g)."""
    jnp = jax.numpy
    wide = [_widen(jnp, x) for x in p]
    table_dtype = jnp.result_type(*[x.dtype for x in wide])
    gs = [_widen(jnp, x).reshape(-1) for x in g]
    us = [_widen(jnp, x).reshape(-1) for x in u]
    squares = [x * x for x in gs]
    top = {}
    for leaf, sq in zip(leaves, squares):   # the largest g^2 of each kind
        m = jnp.max(sq).astype(table_dtype)
        top[leaf.kind] = m if leaf.kind not in top else jnp.maximum(top[leaf.kind], m)
    threshold = {kind: t * jnp.asarray(SIGNIFICANT, table_dtype) + jnp.asarray(TINY, table_dtype) for kind, t in top.items()}
    rows, counts = [], []
    for i, leaf in enumerate(leaves):
        pi, gi, ui, sq = wide[i].reshape(-1), gs[i], us[i], squares[i]
        sums = [jnp.vdot(pi, pi), jnp.sum(sq), jnp.vdot(ui, ui), jnp.vdot(ui, gi)]
        if a is not None:
            ai = _widen(jnp, a[i]).reshape(-1)
            sums += [jnp.vdot(ai, ai), jnp.vdot(ai, ui), jnp.vdot(ai, gi)]
        rows.append(jnp.stack([s.astype(table_dtype) for s in sums]))
        significant = sq > threshold[leaf.kind].astype(sq.dtype)
        opposed = ((ui > 0) & (gi < 0)) | ((ui < 0) & (gi > 0))
        counts.append(jnp.stack([jnp.sum(significant, dtype=jnp.int32), jnp.sum(significant & opposed, dtype=jnp.int32)]))
    return jnp.stack(rows), jnp.stack(counts)


def _widen(jnp: Any, x: Any) -> Any:
    """x as an array of at least float32 (bfloat16, float16 widened)."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def check_same_leaves(what: str, leaves: list[Leaf], other: list[Leaf]) -> None:
    """A one-line BiasmonError if a tree's logged leaves are not those of the first one."""
    if [(x.path, x.size) for x in leaves] != [(x.path, x.size) for x in other]:
        raise BiasmonError(f"biasmon.optax_monitor: {what} has other leaves than the params given to init "
                           f"({len(other)} logged leaves there, {len(leaves)} here): the layers of a stream stay "
                           "the same for the whole run")
