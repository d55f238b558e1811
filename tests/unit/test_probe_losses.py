"""Network.probe_losses gives, many probes at once, the bits loss_at gives one probe at a time; the
gradient check through it says what it says through loss_at."""
import numpy as np
import pytest

from biasmon.core import Layout, network
from biasmon.core.gradcheck import check_gradient
from biasmon.core.network import Network


def trained_net(sizes, act, loss, steps=40):
    rng = np.random.default_rng(1)
    net = Network(sizes, [act] * (len(sizes) - 2) + ["identity"], loss=loss)
    net.initialise(rng, "he", 0.1)
    x = rng.normal(size=(30, sizes[0]))
    y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], 30)] if loss == "cross_entropy" else rng.normal(size=(30, sizes[-1]))
    for _ in range(steps):
        grads = net.gradients(x, y)
        net.w_flat -= 0.05 * grads.w_flat
        net.b_flat -= 0.05 * grads.b_flat
    return net, x, y


@pytest.mark.parametrize("kind", ["bias", "weight"])
@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", "identity"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("chunk", [None, 40])
def test_probe_losses_are_loss_at_bit_for_bit(kind, act, loss, chunk, monkeypatch):
    """probe_losses (a bias entry set) and probe_weight_losses (a weight entry set), many probes in one
    call: the bits loss_at gives with that entry set, one probe at a time."""
    if chunk:   # a few probes stacked at a time
        monkeypatch.setattr(network, "PROBE_FLOATS", chunk * 30)
    net, x, y = trained_net([3, 7, 5, 4], act, loss)
    flat = net.b_flat if kind == "bias" else net.w_flat
    start = flat.copy()
    rng = np.random.default_rng(2)
    entries = np.concatenate([rng.permutation(start.size), [0, start.size - 1]])
    values = start[entries] + rng.normal(size=entries.size) * np.geomspace(1e-9, 1.0, entries.size)
    expected = []
    for i, v in zip(entries, values):
        flat[i] = v
        expected.append(net.loss_at(x, y))
        flat[i] = start[i]
    probe = net.probe_losses if kind == "bias" else net.probe_weight_losses
    assert np.array_equal(probe(x, y, start, entries, values), np.array(expected))
    assert np.array_equal(flat, start)       # the network is unchanged


def test_weight_probes_of_a_wide_net_are_loss_at_bit_for_bit():
    """Shapes where BLAS takes its blocked paths (the benchmarks' deepest net, narrower)."""
    net, x, y = trained_net([10, 96, 96, 1], "relu", "mse", steps=3)
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(200, 10)), rng.normal(size=(200, 1))
    w = net.w_flat.copy()
    entries = np.random.default_rng(5).choice(w.size, size=40, replace=False)
    values = w[entries] * (1 + 1e-6)
    expected = []
    for i, v in zip(entries, values):
        net.w_flat[i] = v
        expected.append(net.loss_at(x, y))
        net.w_flat[i] = w[i]
    assert np.array_equal(net.probe_weight_losses(x, y, w, entries, values), np.array(expected))


def test_the_check_through_probe_losses_says_what_it_says_through_loss_at():
    net, x, y = trained_net([2, 16, 16, 1], "relu", "mse", steps=400)
    layout = Layout(("hidden1", "hidden2", "output"), (16, 16, 1))
    b = net.b_flat.copy()
    g = net.gradients(x, y).b_flat
    wrong = g.copy()
    wrong[3] *= -1.0                               # a flipped entry is still a mismatch
    for grad in (g, wrong):
        batched = check_gradient(lambda bb: net.loss_at(x, y, bb), b, grad, layout,
                                 probe_losses=lambda e, v: net.probe_losses(x, y, b, e, v))
        one_by_one = check_gradient(lambda bb: net.loss_at(x, y, bb), b, grad, layout)
        assert batched == one_by_one
    assert batched.errors["hidden1"] > 0.5 and one_by_one.errors["output"] < 1e-3
