"""biasmon.keras_monitor on Keras 3's torch backend (KERAS_BACKEND=torch, set here before keras is imported):
the sums of its lines are biasmon.core.summary_form.layer_sums of the same step's p, g, u and the optimizer's
momentums (float32 and float64 variables); a correct MLP fit (SGD with momentum, Adam) checks ok; an
optimizer that climbs along its bias gradients is uphill on exactly the biases; every=k logs one step in k;
what it refuses is a one-line BiasmonError. Skipped where keras is not installed (the keras extra:
pip install -e '.[keras]'), or was imported here on another backend."""
import os

os.environ["KERAS_BACKEND"] = "torch"   # before keras is imported

import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch", reason="biasmon.keras_monitor runs on Keras's torch backend (pip install torch)")
keras = pytest.importorskip("keras", reason="biasmon.keras_monitor needs Keras 3 (pip install -e '.[keras]')")
if keras.backend.backend() != "torch":
    pytest.skip(f"keras was imported on the {keras.backend.backend()} backend before this module set "
                "KERAS_BACKEND=torch", allow_module_level=True)

from biasmon import keras_monitor  # noqa: E402
from biasmon.core.check import check_stream  # noqa: E402
from biasmon.core.errors import BiasmonError  # noqa: E402
from biasmon.core.layout import Layout  # noqa: E402
from biasmon.core.summary_form import layer_sums  # noqa: E402
from biasmon.keras_monitor import KerasMonitor, variable_layers  # noqa: E402

torch.set_num_threads(1)
LAYERS = ("h1", "h2", "out")


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def verdicts(result):
    return ({n: layer.verdict for n, layer in result.layers.items()},
            {n: layer.verdict for n, layer in result.weights.items()})


def data(n=512):
    """y = sin(2 x0) + 0.5 x1^2 on 2 inputs (a smooth target a small tanh MLP fits)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(n, 2))
    y = np.sin(2 * x[:, :1]) + 0.5 * x[:, 1:] ** 2
    return x.astype(keras.config.floatx()), y.astype(keras.config.floatx())


def mlp(optimizer, **compile_kwargs):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(16, activation="tanh", name="h1"),
                              keras.layers.Dense(16, activation="tanh", name="h2"), keras.layers.Dense(1, name="out")])
    model.compile(optimizer=optimizer, loss="mse", **compile_kwargs)
    return model


def fit(model, path, epochs, every=1, batch_size=32, **kwargs):
    x, y = data()
    monitor = KerasMonitor(path, every=every, **kwargs)
    model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0, callbacks=[monitor])
    return monitor


class ClimbingBiases(keras.optimizers.Optimizer):
    """Plain gradient descent, but the biases move along +gradient (a sign bug, as maximize=True would)."""

    def update_step(self, gradient, variable, learning_rate):
        sign = -1.0 if variable.name == "bias" else 1.0
        self.assign_sub(variable, keras.ops.multiply(gradient, sign * learning_rate))


class Recorder:
    """Installed on the optimizer before fit (so under the monitor's own hook): each step's p (before the
    update step), g, u and the momentums, as float64 NumPy arrays by variable path."""

    def __init__(self, optimizer):
        self.optimizer, self.steps = optimizer, []
        original = optimizer._backend_update_step

        def _backend_update_step(grads, variables, learning_rate):
            p = {v.path: np.array(v.numpy(), np.float64) for v in variables}
            g = {v.path: np.array(keras.ops.convert_to_numpy(x), np.float64) for v, x in zip(variables, grads)}
            out = original(grads, variables, learning_rate)
            u = {v.path: np.array(v.numpy(), np.float64) - p[v.path] for v in variables}
            moms = getattr(optimizer, "momentums", None) or optimizer._momentums
            a = {v.path: np.array(moms[optimizer._get_variable_index(v)].numpy(), np.float64) for v in variables}
            self.steps.append((p, g, u, a))
            return out

        object.__setattr__(optimizer, "_backend_update_step", _backend_update_step)


@pytest.fixture
def floatx():
    before = keras.config.floatx(), keras.config.dtype_policy()
    yield
    keras.config.set_floatx(before[0])
    keras.config.set_dtype_policy(before[1])


# --- the sums ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("make", [lambda: keras.optimizers.SGD(0.05, momentum=0.9),
                                  lambda: keras.optimizers.Adam(0.01)], ids=["sgd-momentum", "adam"])
def test_its_lines_are_layer_sums_of_the_same_steps(tmp_path, dtype, make, floatx):
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    model = mlp(make())
    assert {v.value.dtype for v in model.trainable_variables} == {getattr(torch, dtype)}
    recorder = Recorder(model.optimizer)
    fit(model, tmp_path / "run.jsonl", epochs=1, batch_size=64)   # 8 steps
    header, *steps = lines(tmp_path / "run.jsonl")
    assert header["writer"] == "biasmon.KerasMonitor" and header["form"] == "sums"
    assert header["averages"] == ["momentums"] and header["every"] == 1
    assert ("grad_dtype" in header) == (dtype == "float32")
    assert [x["name"] for x in header["layers"]] == list(LAYERS)
    assert [x["name"] for x in header["weights"]] == list(LAYERS)
    assert [x["size"] for x in header["weights"]] == [32, 256, 16]
    assert len(steps) == len(recorder.steps) == 8
    biases, weights = variable_layers(model)
    rtol, atol = (1e-5, 1e-7) if dtype == "float32" else (1e-11, 1e-14)
    sign = -1.0 if isinstance(model.optimizer, keras.optimizers.SGD) else 1.0   # SGD's velocity averages -lr g
    for i, (line, (p, g, u, a)) in enumerate(zip(steps, recorder.steps)):
        assert line["step"] == i and np.isfinite(line["loss"])
        for key, layers in (("bias_sums", biases), ("weight_sums", weights)):
            paths = [v.path for v in layers.values()]
            layout = Layout(tuple(layers), tuple(p[x].size for x in paths))
            cat = lambda d: np.concatenate([d[x].ravel() for x in paths])  # noqa: E731
            want = layer_sums(layout, cat(p), cat(g), cat(u), cat(a)[None], 1)
            want[:, 8] *= sign   # a taken as an average of g, with the sign Keras's update rule gives it
            got = np.array([line[key][name] for name in layers], dtype=np.float64)
            np.testing.assert_array_equal(got[:, [0, 5, 6]], want[:, [0, 5, 6]])   # n and the counts: exact
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("make,wrong", [(lambda: keras.optimizers.SGD(0.05, momentum=0.9), 1e9),
                                        (lambda: keras.optimizers.Adam(0.01), -1e9),
                                        (lambda: keras.optimizers.AdamW(0.01), -1e9)],
                         ids=["sgd-momentum", "adam", "adamw"])
def test_the_average_is_taken_as_the_update_rule_declares_not_by_a_noisy_sum(tmp_path, make, wrong):
    """Where a layer sits at its minimum its a.g is noise, and the sum over the logged steps can turn the
    wrong way by chance (TorchMonitor's 1-entry head bias under AdamW read uphill on 45 of 63 lines). Keras's
    own optimizers fix the sign: a is taken as an average of g (SGD's velocity, -lr g averaged, with its sign
    changed), and a correct step opposes it, a.u < 0, however the sum stands (wrong: a sum pointing the
    other way, set before every step)."""
    model = mlp(make())
    monitor = KerasMonitor(tmp_path / "run.jsonl", every=1)
    x, y = data()

    class PushOrient(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            monitor._orient[:] = wrong

    model.fit(x[:192], y[:192], batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[monitor, PushOrient()])
    _, *steps = lines(tmp_path / "run.jsonl")
    au = [row[8] for line in steps[1:] for kind in ("bias_sums", "weight_sums") for row in line[kind].values()]
    assert len(au) == 30 and all(a < 0 for a in au)


class HandAdam(keras.optimizers.Optimizer):
    """Adam written out by hand, keeping its average in `momentums`: not in keras_monitor.DESCENT_SIGN."""

    def build(self, variables):
        super().build(variables)
        self.momentums = [self.add_variable_from_reference(v, "m") for v in variables]
        self.squares = [self.add_variable_from_reference(v, "v") for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        i = self._get_variable_index(variable)
        m, v = self.momentums[i], self.squares[i]
        t = keras.ops.cast(self.iterations + 1, variable.dtype)
        self.assign(m, 0.9 * m + 0.1 * gradient)
        self.assign(v, 0.999 * v + 0.001 * gradient * gradient)
        step = (m / (1 - 0.9 ** t)) / (keras.ops.sqrt(v / (1 - 0.999 ** t)) + 1e-7)
        self.assign_sub(variable, keras.ops.cast(learning_rate, variable.dtype) * step)


def test_an_undeclared_average_is_oriented_by_every_variables_a_g_not_one_variables(tmp_path):
    """A hand-written Adam's first layer's own sum of a.g went negative at step 32 of a correct run, and its
    a.u read reversed, uphill, from then on. The total over every variable decides (one rule for all of an
    optimizer's parameters): with one variable's own sum negative before each step and the total positive,
    every a.u keeps the sign of a correct step (< 0)."""
    model = mlp(HandAdam(learning_rate=0.01))
    monitor = KerasMonitor(tmp_path / "run.jsonl", every=1)
    x, y = data()

    class PushOrient(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            monitor._orient[:] = 1.0
            monitor._orient[0] = -3.0

    model.fit(x[:192], y[:192], batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[monitor, PushOrient()])
    _, *steps = lines(tmp_path / "run.jsonl")
    au = [row[8] for line in steps[1:] for kind in ("bias_sums", "weight_sums") for row in line[kind].values()]
    assert len(au) == 30 and all(a < 0 for a in au)


class TorchStyleSGD(keras.optimizers.SGD):
    """A user's SGD whose velocity is torch's, m = mu m + g (Keras's keeps m = mu m - lr g): a correct optimizer
    whose average has the other sign from its base class's."""

    def update_step(self, gradient, variable, learning_rate):
        m = self.momentums[self._get_variable_index(variable)]
        self.assign(m, self.momentum * m + gradient)
        self.assign_sub(variable, keras.ops.cast(learning_rate, variable.dtype) * m)


def test_a_subclass_of_a_keras_optimizer_is_oriented_by_its_steps_not_its_base_class(tmp_path):
    fit(mlp(TorchStyleSGD(0.02, momentum=0.9)), tmp_path / "run.jsonl", epochs=3)
    _, *steps = lines(tmp_path / "run.jsonl")
    au = [row[8] for line in steps[1:] for kind in ("bias_sums", "weight_sums") for row in line[kind].values()]
    assert len(au) == 6 * (len(steps) - 1) and all(a < 0 for a in au)
    assert check_stream(tmp_path / "run.jsonl").exit == 0


def test_the_loss_is_the_steps_own_loss_before_the_update(tmp_path):
    model = mlp(keras.optimizers.SGD(0.05))
    x, y = data()
    want = float(keras.ops.convert_to_numpy(keras.ops.mean((model.predict(x[:32], verbose=0) - y[:32]) ** 2)))
    fit(model, tmp_path / "run.jsonl", epochs=1)
    first = lines(tmp_path / "run.jsonl")[1]
    assert first["step"] == 0 and first["loss"] == pytest.approx(want, rel=1e-5)
    assert "weight_sums" in first and len(first["bias_sums"]["h1"]) == 7   # plain SGD: no running average


# --- verdicts -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: keras.optimizers.SGD(0.05, momentum=0.9),
                                  lambda: keras.optimizers.Adam(0.01)], ids=["sgd-momentum", "adam"])
def test_a_correct_fit_is_ok(tmp_path, make):
    fit(mlp(make()), tmp_path / "ok.jsonl", epochs=20, every=1)   # 320 steps
    result = check_stream(tmp_path / "ok.jsonl")
    assert result.exit == 0
    assert verdicts(result) == ({n: "ok" for n in LAYERS},) * 2


def test_biases_climbing_their_gradient_are_uphill_there_only(tmp_path):
    fit(mlp(ClimbingBiases(learning_rate=0.01)), tmp_path / "bug.jsonl", epochs=20, every=1)
    result = check_stream(tmp_path / "bug.jsonl")
    assert result.exit == 1
    assert verdicts(result) == ({n: "uphill" for n in LAYERS},
                                {n: "ok" for n in LAYERS})


def test_the_layers_are_named_from_the_variables_paths():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,), dtype="int32")
    h = keras.layers.Flatten()(keras.layers.Embedding(10, 4, name="emb")(inputs))
    h = keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(8, name="fc")(h))
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(h), name="net")
    biases, weights = variable_layers(model)
    assert list(biases) == ["fc", "out"]
    assert list(weights) == ["emb", "fc", "bn/gamma", "bn/beta", "out"]   # beta, gamma: not biases by name


# --- steps ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("every", [3, 32])
def test_every_k_logs_one_step_in_k(tmp_path, every):
    monitor = fit(mlp(keras.optimizers.Adam(0.01)), tmp_path / "run.jsonl", epochs=7, every=every)   # 112 steps
    header, *steps = lines(tmp_path / "run.jsonl")
    assert header["every"] == every and monitor.steps == 112
    assert [x["step"] for x in steps] == list(range(0, 112, every))
    assert check_stream(tmp_path / "run.jsonl").exit == 0


def test_by_default_it_logs_one_step_in_32(tmp_path):
    x, y = data()
    mlp_model = mlp(keras.optimizers.SGD(0.05))
    mlp_model.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=[KerasMonitor(tmp_path / "run.jsonl")])
    assert [x["step"] for x in lines(tmp_path / "run.jsonl")[1:]] == [0, 32]


def test_fit_end_removes_its_hooks_and_closes_the_stream(tmp_path):
    model = mlp(keras.optimizers.SGD(0.05))
    monitor = fit(model, tmp_path / "run.jsonl", epochs=1)
    assert monitor.closed and not any(k in vars(model.optimizer) for k in keras_monitor.HOOKED)
    x, y = data()
    model.fit(x, y, epochs=1, verbose=0)   # training on without the monitor writes nothing more
    assert len(lines(tmp_path / "run.jsonl")) == 17
    with pytest.raises(BiasmonError, match="one fit"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[monitor])


# --- what it refuses --------------------------------------------------------------------------------
def one_line(excinfo):
    return "\n" not in str(excinfo.value)


def test_jit_compile_is_refused_in_one_line(tmp_path):
    with pytest.raises(BiasmonError, match="jit_compile=True") as excinfo:
        fit(mlp(keras.optimizers.SGD(0.05), jit_compile=True), tmp_path / "run.jsonl", epochs=1)
    assert one_line(excinfo)
    assert (tmp_path / "run.jsonl").read_text() == ""   # closed, with no line


def test_gradient_accumulation_is_refused_in_one_line(tmp_path):
    with pytest.raises(BiasmonError, match="gradient_accumulation_steps") as excinfo:
        fit(mlp(keras.optimizers.SGD(0.05, gradient_accumulation_steps=2)), tmp_path / "run.jsonl", epochs=1)
    assert one_line(excinfo)


def test_another_backend_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(BiasmonError, match="torch backend only .*KERAS_BACKEND=torch.*jax") as excinfo:
        KerasMonitor(tmp_path / "run.jsonl")
    assert one_line(excinfo)


def test_bad_every_is_refused(tmp_path):
    for every in (0, -1, 1.5, True):
        with pytest.raises(BiasmonError, match="every must be a whole number"):
            KerasMonitor(tmp_path / "run.jsonl", every=every)


def test_without_keras_it_says_how_to_install_it(monkeypatch):
    import builtins
    real = builtins.__import__

    def no_keras(name, *args, **kwargs):
        if name == "keras":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_keras)
    with pytest.raises(BiasmonError, match=r"pip install keras torch \(or biasmon\[keras\]\)"):
        keras_monitor._keras()
