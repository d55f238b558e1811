"""The PyTorch helper attached to an optimizer: its gradient check (before the step, same batch, float64,
dropout off), clipping, a wrong backward, a bias no gradient reaches, every=k, and which parameters are
biases. Skipped where torch is not installed."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)   # tiny models: threads only contend on a shared machine

from biasmon.core.check import check_stream  # noqa: E402
from biasmon.core.errors import BiasmonError  # noqa: E402
from biasmon.torch_logger import TorchBiasLogger, bias_parameters  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trainers"))
from torch_trainers import Tanh  # noqa: E402  (a tanh whose backward may be wrong: the bug a check catches)

loss_fn = torch.nn.functional.mse_loss


def data():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 2, generator=gen) * 3 - 1.5
    return x, torch.sin(2 * x[:, :1]) + 0.5 * x[:, 1:] ** 2


def model(dropout=0.0, wrong=False):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.LayerNorm(16), Tanh(wrong), torch.nn.Dropout(dropout),
                               torch.nn.Linear(16, 1))


def train(path, net, attach=True, clip=None, steps=150, every=1, grad_hook=None, wrong_batch=False, check_every=25):
    x, y = data()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.5)
    if grad_hook:
        net[-1].bias.register_hook(grad_hook)
    gen = torch.Generator().manual_seed(1)
    with TorchBiasLogger(net, path, optimizer=opt if attach else None, loss_fn=loss_fn, every=every,
                         check_every=check_every) as log:
        for _ in range(steps):
            pick = torch.randint(0, 64, (16,), generator=gen)
            opt.zero_grad()
            loss = loss_fn(net(x[pick]), y[pick])
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            opt.step()
            log.step(loss, batch=(x[:16], y[:16]) if wrong_batch else (x[pick], y[pick]))
    return [json.loads(line) for line in path.read_text().splitlines()]


def checks(lines):
    return [line for line in lines if line.get("event") == "gradient_check"]


@pytest.mark.parametrize("attach", [True, False], ids=["optimizer-hooks", "after-step"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_correct_training_passes_the_gradient_check(tmp_path, attach, dropout):
    events = checks(train(tmp_path / "run.jsonl", model(dropout), attach=attach))
    assert [e["step"] for e in events] == [0, 25, 50, 75, 100, 125]
    assert max(max(e["errors"].values()) for e in events) < 1e-5
    assert all(e.get("dropout_off", False) == (dropout > 0) and "note" not in e for e in events)
    result = check_stream(tmp_path / "run.jsonl")
    assert result.exit == 0 and {d.verdict for d in result.layers.values()} == {"ok"}


def test_clipping_is_reported_as_clipping_not_as_a_mismatch(tmp_path):
    events = checks(train(tmp_path / "run.jsonl", model(), clip=0.05))
    assert all(0 < e["grad_scale"] < 1 and "clip" in e["note"] for e in events)
    result = check_stream(tmp_path / "run.jsonl")
    assert result.exit == 0 and any("clipped" in n for n in result.notes)


def test_a_wrong_custom_backward_is_a_gradient_mismatch(tmp_path):
    events = checks(train(tmp_path / "run.jsonl", model(wrong=True)))
    assert min(e["errors"]["0"] for e in events) > 1e-2
    result = check_stream(tmp_path / "run.jsonl")
    assert result.exit == 1 and result.layers["0"].verdict == "gradient mismatch"


def test_a_logged_gradient_of_the_wrong_sign_is_a_mismatch(tmp_path):
    events = checks(train(tmp_path / "run.jsonl", model(), grad_hook=lambda g: -g))   # the update then climbs
    assert all(e["errors"]["4"] > 1 for e in events)
    assert check_stream(tmp_path / "run.jsonl").layers["4"].verdict == "gradient mismatch"


def test_a_batch_that_is_not_the_steps_is_said_to_be_so_not_a_mismatch(tmp_path):
    events = checks(train(tmp_path / "run.jsonl", model(), wrong_batch=True))
    assert all("not the step's batch" in e["note"] for e in events[1:])
    assert check_stream(tmp_path / "run.jsonl").exit == 0


class Detached(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 8)
        self.out = torch.nn.Linear(8, 1)
        self.b = torch.nn.Parameter(torch.zeros(8))     # meant to be added, but detached from the graph

    def forward(self, x):
        return self.out(torch.tanh(self.fc(x) + self.b.detach()))


def test_a_bias_no_gradient_reaches_is_logged_as_null(tmp_path):
    torch.manual_seed(0)
    lines = train(tmp_path / "run.jsonl", Detached(), steps=3, check_every=0)
    steps = [line for line in lines if "step" in line and "event" not in line]
    assert [s["bias_grads"]["b"] for s in steps] == [None, None, None]
    assert all(len(s["bias_grads"]["fc"]) == 8 and s["biases"]["b"] == [0.0] * 8 for s in steps)


@pytest.mark.parametrize("attach", [True, False], ids=["optimizer-hooks", "after-step"])
def test_every_k_sums_the_gradients_of_the_span(tmp_path, attach):
    x, y = data()
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    grads = []
    with TorchBiasLogger(net, tmp_path / "run.jsonl", optimizer=opt if attach else None, every=4) as log:
        for t in range(10):
            opt.zero_grad()
            loss = loss_fn(net(x[t:t + 8]), y[t:t + 8])
            loss.backward()
            grads.append(net[-1].bias.grad.double().numpy().copy())
            opt.step()
            log.step(loss)
    steps = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()[1:]]
    assert [(s["step"], s["grad_steps"]) for s in steps] == [(0, 4), (4, 4), (8, 2)]
    for s in steps:
        total = np.sum(grads[s["step"]:s["step"] + 4], axis=0)
        np.testing.assert_allclose(s["bias_grads"]["4"], total, rtol=1e-6)
        np.testing.assert_allclose(s["bias_updates"]["4"], -0.05 * total, rtol=1e-4, atol=1e-7)


class Custom(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = torch.nn.MultiheadAttention(4, 2)
        self.lstm = torch.nn.LSTM(4, 3)
        self.norm = torch.nn.LayerNorm(3)
        self.w = torch.nn.Parameter(torch.ones(3, 1))
        self.b = torch.nn.Parameter(torch.zeros(1))
        self.scale = torch.nn.Parameter(torch.ones(3))


def test_every_bias_parameter_is_found_whatever_it_is_called():
    assert list(bias_parameters(Custom())) == ["b", "attn.in_proj_bias", "attn.out_proj", "lstm.bias_ih_l0",
                                               "lstm.bias_hh_l0", "norm"]   # own parameters come first
    net = Custom()
    assert list(bias_parameters(net, params=["b", net.norm.bias])) == ["b", "norm"]
    assert list(bias_parameters(net, params={"shift": net.b})) == ["shift"]
    with pytest.raises(BiasmonError, match="not a parameter of the model"):
        bias_parameters(net, params=["nope"])


def test_a_loss_at_is_refused_with_what_to_give_instead(tmp_path):
    with pytest.raises(BiasmonError, match="give loss_fn= and pass the batch"):
        TorchBiasLogger(model(), tmp_path / "run.jsonl", loss_at=lambda b: 0.0)


def test_two_optimizer_steps_for_one_log_step_are_refused(tmp_path):
    x, y = data()
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    log = TorchBiasLogger(net, tmp_path / "run.jsonl", optimizer=opt)
    for _ in range(2):
        loss_fn(net(x), y).backward()
        opt.step()
    with pytest.raises(BiasmonError, match="ran 2 times since the last log.step"):
        log.step(1.0)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_bias_followed_by_batchnorm_is_redundant_not_a_problem(tmp_path, optimizer):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.BatchNorm1d(16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    x, y = data()
    opt = torch.optim.SGD(net.parameters(), lr=0.05) if optimizer == "sgd" else torch.optim.Adam(net.parameters(), 1e-2)
    with TorchBiasLogger(net, tmp_path / "bn.jsonl", optimizer=opt) as log:
        for step in range(120):
            pick = torch.arange(16) + 16 * (step % 4)
            opt.zero_grad()
            loss = loss_fn(net(x[pick]), y[pick])
            loss.backward()
            opt.step()
            log.step(loss)
    result = check_stream(str(tmp_path / "bn.jsonl"))
    verdicts = {name: layer.verdict for name, layer in result.layers.items()}
    assert verdicts == {"0": "redundant", "1": "ok", "3": "ok"}, verdicts
    assert result.exit == 0
