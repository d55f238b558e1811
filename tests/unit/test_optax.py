"""biasmon.optax_monitor: the sums it computes in JAX are biasmon.core.summary_form.layer_sums of the same
arrays; a correct jitted MLP (sgd, adam) checks ok, the same MLP with its bias updates negated inside the
wrapped chain reads uphill on the biases only; every=k logs one update in k; a crash loses no line written.
Skipped where JAX or optax is not installed (the jax extra: pip install -e '.[jax]')."""
import json
import sys
from typing import Any, NamedTuple

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="biasmon.optax_monitor needs JAX (pip install -e '.[jax]')")
optax = pytest.importorskip("optax", reason="biasmon.optax_monitor needs optax (pip install -e '.[jax]')")
jnp = jax.numpy

from biasmon import optax_monitor  # noqa: E402
from biasmon.core.check import check_stream  # noqa: E402
from biasmon.core.errors import BiasmonError  # noqa: E402
from biasmon.core.layout import Layout  # noqa: E402
from biasmon.core.summary_form import layer_sums  # noqa: E402
from biasmon.jax_sums import leaf_layers, step_sums  # noqa: E402
from biasmon.optax_monitor import monitor  # noqa: E402

STEPS = 300


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def verdicts(result):
    return ({n: layer.verdict for n, layer in result.layers.items()},
            {n: layer.verdict for n, layer in result.weights.items()})


# --- the sums ---------------------------------------------------------------------------------------
def random_step(rng, dtype):
    """A params tree of 4 layers (biases and weights) and g, u, a shaped as it: random values, some
    gradient entries exactly 0 and some far below the threshold of `sig`, some update entries 0."""
    sizes = [(3, 5), (5, 7), (7, 1), (1, 4)]
    tree = lambda f: {f"layer{i}": {"b": f((m,)), "w": f((n, m))} for i, (n, m) in enumerate(sizes)}  # noqa: E731

    def g_values(shape):
        g = rng.normal(size=shape) * 10.0 ** rng.integers(-3, 2)
        g[rng.random(shape) < 0.2] = 0.0
        g[rng.random(shape) < 0.15] *= 1e-12   # g^2 below 1e-16 times the largest: not significant
        return g

    def u_values(shape):
        u = rng.normal(size=shape)
        u[rng.random(shape) < 0.2] = 0.0
        return u

    as_dtype = lambda t: jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), t)  # noqa: E731
    return (as_dtype(tree(lambda s: rng.normal(size=s))), as_dtype(tree(g_values)), as_dtype(tree(u_values)),
            as_dtype(tree(lambda s: rng.normal(size=s))))


def reference(leaves, p, g, u, a):
    """{kind: (L, 9) layer_sums} of the leaves of each kind, end to end (float64 NumPy)."""
    flat = {name: [np.asarray(x, np.float64).ravel() for x in jax.tree_util.tree_leaves(t)]
            for name, t in (("p", p), ("g", g), ("u", u), ("a", a))}
    out = {}
    for kind in (0, 1):
        mine = [leaf for leaf in leaves if leaf.kind == kind]
        cat = lambda key: np.concatenate([flat[key][leaf.index] for leaf in mine])  # noqa: E731
        layout = Layout(tuple(x.layer for x in mine), tuple(x.size for x in mine))
        out[kind] = layer_sums(layout, cat("p"), cat("g"), cat("u"), cat("a")[None], 1)
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("jit", [False, True])
def test_the_jax_sums_are_layer_sums_of_the_same_arrays(dtype, jit):
    rng = np.random.default_rng(7)
    x64 = jax.enable_x64 if hasattr(jax, "enable_x64") else jax.experimental.enable_x64   # older jax: the latter
    with x64(dtype == "float64"):
        for _ in range(3 if jit else 1):   # op by op, one draw costs a second
            p, g, u, a = random_step(rng, dtype)
            leaves = leaf_layers(jax, p)
            assert [(x.layer, x.kind) for x in leaves[:2]] == [("layer0", 0), ("layer0", 1)]
            leaf = lambda t: [jax.tree_util.tree_leaves(t)[x.index] for x in leaves]  # noqa: E731
            sums = lambda *xs: step_sums(jax, leaves, *xs)  # noqa: E731
            floats, counts = (jax.jit(sums) if jit else sums)(leaf(p), leaf(g), leaf(u), leaf(a))
            assert floats.dtype == jnp.dtype(dtype) and counts.dtype == jnp.int32
            floats, counts = np.asarray(floats, np.float64), np.asarray(counts)
            want = reference(leaves, p, g, u, a)
            rtol = 1e-5 if dtype == "float32" else 1e-12
            for kind in (0, 1):
                rows = [i for i, x in enumerate(leaves) if x.kind == kind]
                got, ref = floats[rows], want[kind]
                assert counts[rows].tolist() == ref[:, 5:7].astype(int).tolist()
                assert 0 < ref[:, 6].sum() < ref[:, 5].sum() < ref[:, 0].sum()   # the counts are tested
                np.testing.assert_allclose(got[:, [0, 1, 2, 4]], ref[:, [1, 2, 3, 7]], rtol=rtol)
                scale = np.sqrt(ref[:, [2, 7]] * ref[:, [3, 3]])   # u.g and a.u: relative to |u||g|, |a||u|
                assert np.all(np.abs(got[:, [3, 5]] - ref[:, [4, 8]]) <= rtol * 10 * scale)


@pytest.mark.parametrize("jit", [False, True])
def test_its_lines_are_layer_sums_of_the_recorded_steps(tmp_path, jit):
    """Three momentum steps, jitted or op by op: each line's rows are layer_sums of p, g, u and the trace."""
    rng = np.random.default_rng(3)
    p, _, _, _ = random_step(rng, "float32")
    path = tmp_path / "run.jsonl"
    recorded = []
    with monitor(optax.sgd(0.1, momentum=0.9), path, every=1) as tx:
        state = tx.init(p)
        update = jax.jit(tx.update) if jit else tx.update
        for _ in range(3):
            g = jax.tree_util.tree_map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), p)
            u, state = update(g, state, p, value=1.0)
            recorded.append((p, g, u, state.inner_state[0].trace))
            p = optax.apply_updates(p, u)
    head, *steps = lines(path)
    assert head["averages"] == ["trace"] and head["form"] == "sums" and head["grad_dtype"] == "float32"
    assert [line["step"] for line in steps] == [0, 1, 2]
    leaves = leaf_layers(jax, p)
    for line, step in zip(steps, recorded):
        want = reference(leaves, *step)
        for key, kind in (("bias_sums", 0), ("weight_sums", 1)):
            got = np.array(list(line[key].values()), dtype=np.float64)
            assert list(line[key]) == [f"layer{i}" for i in range(4)]
            np.testing.assert_allclose(got, want[kind], rtol=2e-5, atol=1e-9)


@pytest.mark.parametrize("make", [lambda: optax.sgd(0.05, momentum=0.9),
                                  lambda: optax.chain(optax.scale(-0.05), optax.trace(0.9)),
                                  lambda: optax.adam(0.01)], ids=["sgd-momentum", "scale-then-trace", "adam"])
def test_a_correct_steps_a_u_is_negative_whichever_way_the_state_keeps_its_average(tmp_path, make):
    """optax.sgd's trace averages g; chain(scale(-lr), trace(b)), the same optimizer, keeps a trace of
    -lr g (a state's sign depends on where it sits in the chain: a state class of optax's says nothing).
    Oriented by cos(a, g) over the logged steps and leaves, a correct step opposes the average of g."""
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(256, 4)), rng.normal(size=(4, 1))
    y = x @ w + 0.3
    p = {"dense": {"kernel": jnp.zeros((4, 1)), "bias": jnp.zeros((1,))}}
    loss = lambda q: jnp.mean((x @ q["dense"]["kernel"] + q["dense"]["bias"] - y) ** 2)  # noqa: E731
    path = tmp_path / "run.jsonl"
    with monitor(make(), path, every=1) as tx:
        state = tx.init(p)
        for _ in range(30):
            value, g = jax.value_and_grad(loss)(p)
            u, state = tx.update(g, state, p, value=value)
            p = optax.apply_updates(p, u)
    _, *steps = lines(path)
    au = [line[key]["dense"][8] for line in steps[1:] for key in ("bias_sums", "weight_sums")]
    assert len(au) == 2 * 29 and all(a < 0 for a in au)
    assert check_stream(path).exit == 0


class HandMomentumState(NamedTuple):
    mu: Any


def hand_momentum(lr=0.1, beta=0.9):
    """Heavy-ball momentum written out by hand, its state a class of its own (not optax's: nothing declares
    which way its mu points)."""
    def init(params):
        return HandMomentumState(jax.tree_util.tree_map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        mu = jax.tree_util.tree_map(lambda m, g: beta * m + g, state.mu, updates)
        return jax.tree_util.tree_map(lambda m: -lr * m, mu), HandMomentumState(mu)

    return optax.GradientTransformation(init, update)


def test_an_undeclared_average_is_oriented_by_every_leafs_a_g_not_one_leafs(tmp_path):
    """A state from elsewhere does not say which way its mu points; a.g says, but one leaf's sum alone is
    noise at its minimum or early on. The total over every leaf decides: with one leaf's own sum negative
    before each step and the total positive, every a.u keeps the sign of a correct step (< 0)."""
    rng = np.random.default_rng(5)
    p, _, _, _ = random_step(rng, "float64")
    path = tmp_path / "run.jsonl"
    with monitor(hand_momentum(), path, every=1) as tx:
        state = tx.init(p)
        for _ in range(4):
            if tx.monitor._orient is not None:
                tx.monitor._orient[:] = 1.0
                tx.monitor._orient[0] = -3.0
            g = jax.tree_util.tree_map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), p)
            u, state = tx.update(g, state, p, value=1.0)
            p = optax.apply_updates(p, u)
    head, *steps = lines(path)
    assert head["averages"] == ["mu"]
    au = [row[8] for line in steps[1:] for key in ("bias_sums", "weight_sums") for row in line[key].values()]
    assert len(au) == 3 * 8 and all(a < 0 for a in au)


def test_the_layers_are_named_from_the_pytree_paths():
    params = {"params": {"Dense_0": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)},
                         "LayerNorm_0": {"scale": jnp.ones(3), "bias": jnp.ones(3)},
                         "lstm": {"bias_ih": jnp.ones(4), "bias_hh": jnp.ones(4), "w": jnp.ones((2, 4))},
                         "step": jnp.zeros((), jnp.int32), "empty": jnp.zeros((0,))}}
    leaves = leaf_layers(jax, params)
    assert [(x.layer, x.kind) for x in leaves] == [
        ("Dense_0", 0), ("Dense_0", 1), ("LayerNorm_0", 0), ("LayerNorm_0/scale", 1),
        ("lstm/bias_hh", 0), ("lstm/bias_ih", 0), ("lstm", 1)]
    assert [x.layer for x in leaf_layers(jax, [{"w": jnp.ones(2), "b": jnp.ones(1)}] * 2)] == ["0", "0", "1", "1"]


# --- training runs ----------------------------------------------------------------------------------
def data():
    key = jax.random.PRNGKey(0)
    x = jax.random.uniform(key, (256, 2)) * 3 - 1.5
    return x, jnp.sin(2 * x[:, :1]) + 0.5 * x[:, 1:] ** 2


def mlp(key, sizes=(2, 16, 16, 1)):
    params = []
    for n, m in zip(sizes[:-1], sizes[1:]):
        key, k = jax.random.split(key)
        params.append({"w": jax.random.normal(k, (n, m)) / jnp.sqrt(n), "b": jnp.zeros(m)})
    return params


def loss_fn(params, x, y):
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return jnp.mean((x @ params[-1]["w"] + params[-1]["b"] - y) ** 2)


def flip_biases():
    """The story's bug as a transformation: the bias leaves' updates negated (they move along +gradient)."""
    return optax.masked(optax.scale(-1.0), lambda params: [{"w": False, "b": True} for _ in params])


OPTIMIZERS = {"sgd": lambda: optax.sgd(0.05), "adam": lambda: optax.adam(0.01)}


def train(path, opt, steps=STEPS, every=1, crash_at=None, ordered=False):
    """A 2-16-16-1 tanh MLP on minibatches of 32; the final loss."""
    x, y = data()
    params = mlp(jax.random.PRNGKey(1))
    with monitor(opt, path, every=every, ordered=ordered) as tx:
        state = tx.init(params)

        def step(params, state, i):
            pick = jax.random.randint(jax.random.fold_in(jax.random.PRNGKey(2), i), (32,), 0, len(x))
            loss, grads = jax.value_and_grad(loss_fn)(params, x[pick], y[pick])
            updates, state = tx.update(grads, state, params, value=loss)
            return optax.apply_updates(params, updates), state, loss

        step = jax.jit(step)
        for i in range(steps):
            if i == crash_at:
                raise RuntimeError("the trainer crashed")
            params, state, loss = step(params, state, i)
    return float(loss)


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_a_correct_jitted_mlp_is_ok_and_negated_bias_updates_are_uphill_there_only(tmp_path, opt):
    first = float(loss_fn(mlp(jax.random.PRNGKey(1)), *data()))
    assert train(tmp_path / "ok.jsonl", OPTIMIZERS[opt]()) < first / 3   # it trained
    ok = check_stream(tmp_path / "ok.jsonl")
    assert ok.exit == 0, ok.failing
    assert verdicts(ok) == ({"0": "ok", "1": "ok", "2": "ok"},) * 2
    head, *steps = lines(tmp_path / "ok.jsonl")
    assert len(steps) == STEPS and head["averages"] == ([] if opt == "sgd" else ["mu"])
    train(tmp_path / "bug.jsonl", optax.chain(OPTIMIZERS[opt](), flip_biases()), steps=100)
    bug = check_stream(tmp_path / "bug.jsonl")
    assert bug.exit == 1
    assert verdicts(bug) == ({"0": "uphill", "1": "uphill", "2": "uphill"}, {"0": "ok", "1": "ok", "2": "ok"})


@pytest.mark.parametrize("ordered", [False, True])
def test_every_k_logs_one_update_in_k(tmp_path, ordered):
    path = tmp_path / "run.jsonl"
    train(path, optax.adam(0.01), steps=200, every=7, ordered=ordered)
    head, *steps = lines(path)
    assert head["every"] == 7 and [s["step"] for s in steps] == list(range(0, 200, 7))
    assert check_stream(path).exit == 0


def test_by_default_it_logs_one_update_in_32(tmp_path):
    train(tmp_path / "run.jsonl", optax.sgd(0.05), steps=70, every=optax_monitor.DEFAULT_EVERY)
    head, *steps = lines(tmp_path / "run.jsonl")
    assert optax_monitor.DEFAULT_EVERY == 32 and [s["step"] for s in steps] == [0, 32, 64]
    assert monitor(optax.sgd(0.1), tmp_path / "other.jsonl").monitor.every == 32


@pytest.mark.parametrize("ordered", [False, True])
def test_a_crash_loses_no_line_and_lines_are_on_disk_before_close(tmp_path, ordered):
    path = tmp_path / "run.jsonl"
    with pytest.raises(RuntimeError, match="crashed"):
        train(path, optax.sgd(0.05), crash_at=12, ordered=ordered)
    assert [s["step"] for s in lines(path)[1:]] == list(range(12))
    x, y = data()
    params = mlp(jax.random.PRNGKey(1))
    tx = monitor(optax.sgd(0.05), tmp_path / "open.jsonl", every=1, ordered=ordered)
    state = tx.init(params)
    step = jax.jit(lambda params, state: tx.update(jax.grad(loss_fn)(params, x, y), state, params,
                                                   value=loss_fn(params, x, y)))
    for _ in range(3):
        updates, state = step(params, state)
        params = optax.apply_updates(params, updates)
    jax.block_until_ready(state)
    jax.effects_barrier()
    assert len(lines(tmp_path / "open.jsonl")) == 4   # the header and 3 lines, the stream still open
    tx.close()


def test_a_gradient_gone_nan_is_written_as_nan_and_read_as_divergence(tmp_path):
    params = mlp(jax.random.PRNGKey(1))
    path = tmp_path / "run.jsonl"
    with monitor(optax.sgd(0.05), path, every=1) as tx:
        state = tx.init(params)
        update = jax.jit(tx.update)
        for i in range(4):
            loss, grads = jax.value_and_grad(loss_fn)(params, *data())
            if i == 2:
                grads[0]["b"] = grads[0]["b"].at[0].set(jnp.nan)
            updates, state = update(grads, state, params, value=loss)
            params = optax.apply_updates(params, updates)
    row = lines(path)[3]["bias_sums"]["0"]
    assert np.isnan(row[2]) and np.isnan(row[3])
    result = check_stream(path)
    assert result.exit == 1 and result.diverged is not None


def test_a_state_initialised_again_starts_a_new_run(tmp_path):
    path = tmp_path / "run.jsonl"
    params = mlp(jax.random.PRNGKey(1))
    with monitor(optax.sgd(0.05), path, every=1) as tx:
        for _ in range(2):
            state = tx.init(params)
            for _ in range(3):
                loss, grads = jax.value_and_grad(loss_fn)(params, *data())
                _, state = tx.update(grads, state, params, value=loss)
    out = lines(path)
    assert ["format" in line for line in out] == [True, False, False, False] * 2
    assert [line["step"] for line in out if "step" in line] == [0, 1, 2, 0, 1, 2]
    assert out[0]["run_id"] != out[4]["run_id"]


# --- bad input --------------------------------------------------------------------------------------
def one_line_error(call, match):
    with pytest.raises(BiasmonError, match=match) as err:
        call()
    assert "\n" not in str(err.value)


def test_bad_input_is_a_one_line_error_naming_what_is_allowed(tmp_path):
    path = tmp_path / "run.jsonl"
    params = mlp(jax.random.PRNGKey(1))
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    one_line_error(lambda: monitor(lambda g: g, path), "must be an optax GradientTransformation")
    one_line_error(lambda: monitor(optax.sgd(0.1), path, every=0), "every must be a whole number >= 1")
    one_line_error(lambda: monitor(optax.sgd(0.1), path).init({"w": jnp.ones((2, 2)), "kernel": jnp.ones(2)}),
                   "no bias leaf")
    tx = monitor(optax.sgd(0.1), path)
    state = tx.init(params)
    one_line_error(lambda: tx.update(grads, state, params), r"needs the loss as value=")
    one_line_error(lambda: tx.update(grads, state, value=1.0), "needs params")
    one_line_error(lambda: jax.jit(lambda s: tx.update(grads, s, params, value=jnp.ones(3)))(state), "scalar")
    one_line_error(lambda: tx.update(grads, state, params[:2], value=1.0), "other leaves than the params")
    one_line_error(lambda: tx.update(grads, optax.sgd(0.1).init(params), params, value=1.0), "state must be")
    tx.close()


def test_without_jax_it_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optax", None)   # import optax now raises ImportError
    one_line_error(lambda: monitor(object(), tmp_path / "run.jsonl"), r"pip install jax optax")
    assert optax_monitor.NAME == "biasmon.optax_monitor"


def fori_train(tx, steps):
    """A jitted lax.fori_loop of minibatch steps that returns the params only (the state is dropped)."""
    x, y = data()
    params = mlp(jax.random.PRNGKey(1))

    def step(i, carry):
        params, state = carry
        pick = jax.random.randint(jax.random.fold_in(jax.random.PRNGKey(2), i), (32,), 0, len(x))
        loss, grads = jax.value_and_grad(loss_fn)(params, x[pick], y[pick])
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state

    return jax.jit(lambda p, s: jax.lax.fori_loop(0, steps, step, (p, s))[0])(params, tx.init(params))


def test_a_jitted_loop_returning_only_the_params_still_writes_every_line(tmp_path):
    """The default pure_callback's result lives in the optimizer state: unless the updates depend on it,
    jit drops the callback when the loop keeps only the params."""
    with monitor(optax.adam(0.01), tmp_path / "run.jsonl", every=1) as tx:
        jax.block_until_ready(fori_train(tx, 60))
    assert [s["step"] for s in lines(tmp_path / "run.jsonl")[1:]] == list(range(60))


def test_gradient_accumulation_goes_outside_the_monitor(tmp_path):
    """Wrapped inside optax.MultiSteps, a line per optimizer step (ok); wrapping MultiSteps (whose k - 1
    steps in k apply nothing) is refused in one line saying which way round."""
    inner = optax.MultiSteps(optax.adam(0.01), 4).gradient_transformation()
    with pytest.raises(BiasmonError, match=r"accumulates gradients \(MultiStepsState\).*MultiSteps\(monitor"):
        monitor(inner, tmp_path / "bad.jsonl").init(mlp(jax.random.PRNGKey(1)))
    with monitor(optax.adam(0.01), tmp_path / "run.jsonl", every=1) as tx:
        jax.block_until_ready(fori_train(optax.MultiSteps(tx, 4), 400))
    assert [s["step"] for s in lines(tmp_path / "run.jsonl")[1:]] == list(range(100))
    assert check_stream(tmp_path / "run.jsonl").exit == 0
