"""Network.gradients against an independent reference: central finite differences of a loss written
here from scratch (float64), a float32 network, and, where torch is importable, torch autograd."""
import itertools
from dataclasses import replace

import numpy as np
import pytest

from biasmon.core import Layout, finite_difference_errors, presets
from biasmon.core.network import ACTIVATIONS, Network
from biasmon.core.trainer import Trainer

HIDDEN = ("tanh", "sigmoid", "relu", "identity")
# mse with every output activation; cross_entropy only with identity (softmax is part of the loss)
HEADS = [("mse", out) for out in ("tanh", "sigmoid", "relu", "identity")] + [("cross_entropy", "identity")]
CASES = [(h, loss, out) for h, (loss, out) in itertools.product(HIDDEN, HEADS)]
SIZES = [3, 5, 4, 2]


def test_cases_cover_every_activation_and_loss():
    assert set(HIDDEN) == set(ACTIVATIONS)
    assert {loss for _, loss, _ in CASES} == {"mse", "cross_entropy"}
    assert len(CASES) == 20


# --- an independent reference: plain formulas, no code shared with biasmon.core.network --------------
def ref_act(name, z):
    return {"tanh": np.tanh, "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)),
            "relu": lambda v: np.where(v > 0, v, 0.0), "identity": lambda v: v}[name](z)


def ref_loss(ws, bs, acts, loss, x, y):
    a = x
    for w, b, act in zip(ws, bs, acts):
        a = ref_act(act, a @ w + b)
    if loss == "mse":
        return float(np.mean((a - y) ** 2))
    m = a.max(axis=1, keepdims=True)
    log_softmax = a - m - np.log(np.exp(a - m).sum(axis=1, keepdims=True))
    return float(-np.sum(y * log_softmax) / len(x))


def central_differences(f, params, h=1e-6):
    """d f / d p for every entry of every array in params (perturbed in place, then restored)."""
    out = []
    for p in params:
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            keep = p[idx]
            p[idx] = keep + h
            up = f()
            p[idx] = keep - h
            down = f()
            p[idx] = keep
            g[idx] = (up - down) / (2 * h)
        out.append(g)
    return out


def make_case(hidden, loss, out, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    acts = [hidden] * (len(SIZES) - 2) + [out]
    net = Network(SIZES, acts, loss=loss, dtype=dtype)
    net.initialise(rng, "xavier")
    net.b_flat[...] = rng.normal(0.0, 0.5, size=net.b_flat.shape)  # non-zero biases, so they matter
    x = rng.normal(size=(7, SIZES[0]))
    if loss == "cross_entropy":
        y = np.eye(SIZES[-1])[rng.integers(0, SIZES[-1], size=7)]
    else:
        y = rng.uniform(0.1, 0.9, size=(7, SIZES[-1]))
    return net, x.astype(dtype), y.astype(dtype)


@pytest.mark.parametrize("hidden,loss,out", CASES)
def test_gradients_match_central_differences_float64(hidden, loss, out):
    net, x, y = make_case(hidden, loss, out)
    ws = [w.copy() for w in net.weights]
    bs = [b.copy() for b in net.biases]
    f = lambda: ref_loss(ws, bs, net.activations, loss, x, y)  # noqa: E731
    grads = net.gradients(x, y)

    assert grads.loss == pytest.approx(f(), rel=1e-12, abs=1e-14)
    assert net.loss_at(x, y) == pytest.approx(f(), rel=1e-12, abs=1e-14)
    num_w = central_differences(f, ws)
    num_b = central_differences(f, bs)
    assert len(grads.weights) == len(ws) and len(grads.biases) == len(bs)
    for layer, (ga, gn, p) in enumerate(zip(grads.weights, num_w, net.weights)):
        assert ga.shape == p.shape
        np.testing.assert_allclose(ga, gn, rtol=1e-5, atol=1e-8, err_msg=f"dL/dW layer {layer}")
    for layer, (ga, gn, p) in enumerate(zip(grads.biases, num_b, net.biases)):
        assert ga.shape == p.shape
        np.testing.assert_allclose(ga, gn, rtol=1e-5, atol=1e-8, err_msg=f"dL/db layer {layer}")
    # the flat vectors hold the same numbers as the per-layer views
    np.testing.assert_array_equal(grads.w_flat, np.concatenate([g.ravel() for g in grads.weights]))
    np.testing.assert_array_equal(grads.b_flat, np.concatenate([g.ravel() for g in grads.biases]))
    # the gradient of a non-trivial case is not all zeros (a test that cannot pass vacuously)
    assert np.abs(grads.b_flat).max() > 1e-6


@pytest.mark.parametrize("hidden,loss,out", CASES)
def test_gradients_do_not_touch_the_parameters(hidden, loss, out):
    net, x, y = make_case(hidden, loss, out)
    w0, b0 = net.w_flat.copy(), net.b_flat.copy()
    net.gradients(x, y)
    net.loss_at(x, y, b0 + 1.0)
    np.testing.assert_array_equal(net.w_flat, w0)
    np.testing.assert_array_equal(net.b_flat, b0)


def test_loss_at_other_biases_matches_reference():
    net, x, y = make_case("tanh", "mse", "identity")
    other = net.b_flat + 0.3
    ws = [w.copy() for w in net.weights]
    bs = [other[net.b_offsets[i]:net.b_offsets[i + 1]] for i in range(len(ws))]
    assert net.loss_at(x, y, other) == pytest.approx(ref_loss(ws, bs, net.activations, "mse", x, y), rel=1e-12)
    assert net.loss_at(x, y, other) != pytest.approx(net.loss_at(x, y), rel=1e-6)


@pytest.mark.parametrize("hidden,loss,out", CASES)
def test_float32_network_gives_float32_gradients_close_to_float64(hidden, loss, out):
    net64, x64, y64 = make_case(hidden, loss, out)
    net32 = Network(net64.sizes, net64.activations, loss=loss, dtype="float32")
    net32.w_flat[...] = net64.w_flat
    net32.b_flat[...] = net64.b_flat
    g64 = net64.gradients(x64, y64)
    g32 = net32.gradients(x64.astype(np.float32), y64.astype(np.float32))
    assert net32.w_flat.dtype == np.float32
    assert g32.w_flat.dtype == np.float32 and g32.b_flat.dtype == np.float32
    for g in g32.weights + g32.biases:
        assert g.dtype == np.float32
    assert g32.loss == pytest.approx(g64.loss, rel=1e-5)
    scale = max(np.abs(g64.w_flat).max(), np.abs(g64.b_flat).max())
    np.testing.assert_allclose(g32.w_flat, g64.w_flat, rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(g32.b_flat, g64.b_flat, rtol=1e-4, atol=1e-5 * scale)


def test_network_without_biases_has_zero_bias_gradient_and_ignores_biases():
    rng = np.random.default_rng(1)
    net = Network([2, 4, 1], ["tanh", "identity"], has_biases=False)
    net.initialise(rng, "xavier", bias_init=0.5)
    x, y = rng.normal(size=(5, 2)), rng.normal(size=(5, 1))
    assert not net.b_flat.any()
    g = net.gradients(x, y)
    assert not g.b_flat.any()
    assert g.w_flat.any()


# --- torch autograd as a second reference (micrograd's check) ---------------------------------------
@pytest.mark.parametrize("hidden,loss,out", CASES)
def test_loss_and_gradients_match_torch_autograd(hidden, loss, out):
    torch = pytest.importorskip("torch")
    net, x, y = make_case(hidden, loss, out, seed=3)
    fns = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "identity": lambda v: v}
    ws = [torch.tensor(w, dtype=torch.float64, requires_grad=True) for w in net.weights]
    bs = [torch.tensor(b, dtype=torch.float64, requires_grad=True) for b in net.biases]
    a = torch.tensor(x)
    for w, b, act in zip(ws, bs, net.activations):
        a = fns[act](a @ w + b)
    target = torch.tensor(y)
    if loss == "mse":
        value = torch.nn.functional.mse_loss(a, target)
    else:
        value = torch.nn.functional.cross_entropy(a, target)  # probabilities as targets: mean over samples
    value.backward()
    grads = net.gradients(x, y)
    assert grads.loss == pytest.approx(value.item(), rel=1e-12, abs=1e-15)
    for ga, t in zip(grads.weights + grads.biases, ws + bs):
        np.testing.assert_allclose(ga, t.grad.numpy(), rtol=1e-10, atol=1e-13)


# --- issue 10: the gradient check's cost is bounded --------------------------------------------------
def test_gradient_check_of_a_big_layer_samples_and_still_catches_a_wrong_layer():
    from biasmon.core.gradcheck import FULL_CHECK_MAX, SAMPLE, sample_entries

    layout = Layout(("wide", "out"), (3000, 1))
    b = np.linspace(-1.0, 1.0, 3001)
    calls = []

    def loss_at(bb):
        calls.append(1)
        return float(bb @ bb)

    errors = finite_difference_errors(loss_at, b, 2 * b, layout)
    assert errors == {"wide": pytest.approx(0.0, abs=1e-4), "out": pytest.approx(0.0, abs=1e-4)}
    assert len(calls) <= 2 * (SAMPLE + 2) < 2 * FULL_CHECK_MAX
    wrong = 2 * b
    wrong[:3000] *= -1.0  # every entry of the wide layer has the wrong sign: any sample catches it
    assert finite_difference_errors(loss_at, b, wrong, layout)["wide"] > 0.5
    first, again = sample_entries(layout, seed=1), sample_entries(layout, seed=2)
    assert 3000 in first and len(first) <= SAMPLE + 2 and not np.array_equal(first, again)
    assert sample_entries(Layout(("a", "b"), (16, 1))) is None  # small nets: every entry, as before


def test_a_big_net_s_step_zero_gradient_check_costs_a_sample():
    preset = presets.resolve("gradient")
    preset = replace(preset, network=dict(preset.network, layers=[2, 2000, 1]))
    trainer = Trainer(preset, steps=1)
    calls = []   # one per loss evaluated for the check (Network.probe_losses evaluates many per call)
    original = trainer.net.probe_losses

    def counting(x, y, b, entries, values):
        calls.extend(entries)
        return original(x, y, b, entries, values)

    trainer.net.probe_losses = counting
    records = trainer.step()
    check = next(r for r in records if getattr(r, "kind", None) == "gradient_check")
    assert set(check.data["errors"]) == {"hidden1", "output"}
    assert 0 < len(calls) <= 6 * 70
