"""The PyTorch helper: one call per step logs every bias, its gradient and the update applied; a model
trained with a deliberately wrong bias update is flagged uphill, torch's own optimizers are ok.
Skipped where torch is not installed."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)   # tiny models: threads only contend on a shared machine

from biasmon.core.check import check_stream  # noqa: E402
from biasmon.torch_logger import TorchBiasLogger, bias_parameters  # noqa: E402


def data():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 2, generator=gen) * 3 - 1.5
    y = torch.sin(2 * x[:, :1]) + 0.5 * x[:, 1:] ** 2
    return x, y


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def train(path, make_optimizer=None, wrong_bias_sign=False, steps=120):
    x, y = data()
    net = model()
    opt = make_optimizer(net.parameters()) if make_optimizer else None
    with TorchBiasLogger(net, path) as log:
        for _ in range(steps):
            net.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), y)
            loss.backward()
            if opt is not None:
                opt.step()
            else:   # a hand-written update whose bias step has the wrong sign
                with torch.no_grad():
                    for name, p in net.named_parameters():
                        p += (0.1 if (wrong_bias_sign and name.endswith("bias")) else -0.1) * p.grad
            log.step(loss)
    return net


def test_it_finds_every_bias_parameter_by_module_path():
    assert list(bias_parameters(model())) == ["0", "2"]


def test_each_line_holds_the_biases_before_the_step_their_grads_and_the_update_applied(tmp_path):
    path = tmp_path / "run.jsonl"
    net = train(path, lambda p: torch.optim.SGD(p, lr=0.05), steps=3)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["format"] == "biasmon-stream" and lines[0]["layers"] == [{"name": "0", "size": 8},
                                                                            {"name": "2", "size": 1}]
    steps = lines[1:]
    assert [s["step"] for s in steps] == [0, 1, 2]
    for before, after in zip(steps, steps[1:]):
        for layer in ("0", "2"):
            b0, b1 = np.array(before["biases"][layer]), np.array(after["biases"][layer])
            np.testing.assert_allclose(b1 - b0, before["bias_updates"][layer], atol=1e-7)
            np.testing.assert_allclose(before["bias_updates"][layer], -0.05 * np.array(before["bias_grads"][layer]),
                                       rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(np.array(steps[-1]["biases"]["2"]) + steps[-1]["bias_updates"]["2"],
                               net[2].bias.detach().double().numpy(), atol=1e-7)


@pytest.mark.parametrize("optimizer", [
    lambda p: torch.optim.SGD(p, lr=0.05),
    lambda p: torch.optim.SGD(p, lr=0.02, momentum=0.9),
    lambda p: torch.optim.Adam(p, lr=0.01),
], ids=["sgd", "momentum", "adam"])
def test_torch_optimizers_are_ok(tmp_path, optimizer):
    train(tmp_path / "run.jsonl", optimizer)
    result = check_stream(tmp_path / "run.jsonl").to_json()
    assert result["exit"] == 0, result
    assert {layer["verdict"] for layer in result["layers"].values()} == {"ok"}


def test_a_wrong_bias_update_is_flagged(tmp_path):
    train(tmp_path / "run.jsonl", wrong_bias_sign=True)
    result = check_stream(tmp_path / "run.jsonl").to_json()
    assert result["exit"] == 1
    assert {name: layer["verdict"] for name, layer in result["layers"].items()} == {"0": "uphill", "2": "uphill"}
