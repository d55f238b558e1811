"""TorchMonitor: the rows it computes in torch are biasmon.core.summary_form.layer_sums of the same tensors;
torch's optimizers read ok, the same optimizers climbing (maximize=True) read uphill, in the layers that
climb only. Skipped where torch is not installed."""
import io
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="TorchMonitor needs PyTorch (the test extra installs it)")
torch.set_num_threads(1)   # tiny models: threads only contend on a shared machine

from biasmon.core.check import check_stream  # noqa: E402
from biasmon.core.errors import BiasmonError  # noqa: E402
from biasmon.core.layout import Layout  # noqa: E402
from biasmon.core.summary_form import layer_sums  # noqa: E402
from biasmon import torch_sums  # noqa: E402
from biasmon.torch_monitor import TorchMonitor  # noqa: E402

OPTIMIZERS = {
    "sgd": lambda p, **kw: torch.optim.SGD(p, lr=0.05, **kw),
    "momentum": lambda p, **kw: torch.optim.SGD(p, lr=0.02, momentum=0.9, **kw),
    "nesterov": lambda p, **kw: torch.optim.SGD(p, lr=0.02, momentum=0.9, nesterov=True, **kw),
    "adam": lambda p, **kw: torch.optim.Adam(p, lr=0.005, **kw),
    "adamw": lambda p, **kw: torch.optim.AdamW(p, lr=0.005, weight_decay=0.01, **kw),
    "rmsprop": lambda p, **kw: torch.optim.RMSprop(p, lr=0.002, **kw),
}


def data(n=256, dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 2, generator=gen, dtype=dtype) * 3 - 1.5
    y = torch.sin(2 * x[:, :1]) + 0.5 * x[:, 1:] ** 2
    return x, y


def mlp(dtype=torch.float64):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(),
                               torch.nn.Linear(16, 1)).to(dtype)


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def one_step(net, optim, monitor, x, y, set_to_none=True):
    """One optimizer step of MSE regression on (x, y), given to the monitor."""
    optim.zero_grad(set_to_none=set_to_none)
    loss = torch.nn.functional.mse_loss(net(x), y)
    loss.backward()
    optim.step()
    monitor.step(loss)


class Recorder:
    """The tensors of every optimizer step, from hooks registered after the monitor's: p and g before the
    step, p after it and the optimizer's running average (None where it keeps none)."""

    def __init__(self, opt, params):
        self.params, self.opt, self.steps = params, opt, []
        opt.register_step_pre_hook(self.pre)
        opt.register_step_post_hook(self.post)

    def pre(self, opt, args, kwargs):
        self.steps.append({"p": [p.detach().numpy().ravel().copy() for p in self.params],
                           "g": [None if p.grad is None else p.grad.numpy().ravel().copy() for p in self.params]})

    def post(self, opt, args, kwargs):
        step = self.steps[-1]
        step["u"] = [p.detach().numpy().ravel() - before for p, before in zip(self.params, step["p"])]
        state = [opt.state.get(p, {}) for p in self.params]
        step["a"] = [next((s[k].numpy().ravel().copy() for k in ("exp_avg", "momentum_buffer") if k in s), None)
                     for s in state]


def expected_rows(step, kinds, orient):
    """{kind: (L, 7 + 2k) layer_sums} of one recorded step; orient: per layer, the sign a is taken with
    (torch's optimizers: -1 where maximize=True), or the sum of a.g so far."""
    out = {}
    for kind, (names, idx) in kinds.items():
        layout = Layout(tuple(names), tuple(len(step["p"][i]) for i in idx))
        cat = lambda key: np.concatenate([step[key][i] for i in idx])   # noqa: E731
        has_a = step["a"][idx[0]] is not None
        avg = None
        if has_a:
            avg = np.concatenate([np.sign(orient[i]) * step["a"][i] if orient[i] else step["a"][i] for i in idx])[None]
        out[kind] = layer_sums(layout, cat("p"), cat("g"), cat("u"), avg, 1 if has_a else 0)
    return out


@pytest.mark.parametrize("way", ["flat", "per tensor"])
@pytest.mark.parametrize("opt,maximize", [("sgd", False), ("momentum", False), ("adam", False), ("adam", True)])
def test_its_rows_are_layer_sums_of_the_same_tensors(tmp_path, monkeypatch, opt, maximize, way):
    """Both ways of torch_sums: one buffer of terms (a small model), or tensor by tensor in chunks."""
    if way == "per tensor":
        monkeypatch.setattr(torch_sums, "CHUNK", 100)   # several chunks a tensor, one of them short
        monkeypatch.setattr(torch_sums, "FLAT_MAX", 0)
    x, y = data()
    net = mlp()
    optim = OPTIMIZERS[opt](net.parameters(), maximize=maximize)
    path = tmp_path / "run.jsonl"
    with TorchMonitor(net, path, optim, every=2) as monitor:
        params = monitor.params
        rec = Recorder(optim, params)
        for i in range(7):
            one_step(net, optim, monitor, x[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32])
    head, *steps = lines(path)
    assert head["version"] == 2 and head["form"] == "sums" and "grad_dtype" not in head
    assert head["averages"] == ([] if opt == "sgd" else [{"momentum": "momentum_buffer"}.get(opt, "exp_avg")])
    assert [s["step"] for s in steps] == [0, 2, 4, 6]
    assert [id(p) for p in params] == [id(p) for m in (net[0], net[2], net[4]) for p in (m.bias,)] + \
        [id(p) for m in (net[0], net[2], net[4]) for p in (m.weight,)]   # the biases, then the weights
    assert [d["name"] for d in head["layers"]] == ["0", "2", "4"] == [d["name"] for d in head["weights"]]
    kinds = {"bias": (["0", "2", "4"], [0, 1, 2]), "weight": (["0", "2", "4"], [3, 4, 5])}
    orient = np.full(len(params), -1.0 if maximize else 1.0)   # as the optimizer declares it
    for line in steps:
        step = rec.steps[line["step"]]
        want = expected_rows(step, kinds, orient)
        for kind in ("bias", "weight"):
            got = np.array(list(line[f"{kind}_sums"].values()), dtype=np.float64)
            assert got.shape == want[kind].shape
            assert got[:, [0, 5, 6]].tolist() == want[kind][:, [0, 5, 6]].tolist()   # counts: exactly
            np.testing.assert_allclose(got, want[kind], rtol=1e-10, atol=0)
    if maximize:   # the optimizer's buffer averaged -g: taken with the other sign, a.u > 0 like g.u
        assert all(row[8] > 0 for line in steps[1:] for row in line["bias_sums"].values())


@pytest.mark.parametrize("maximize", [False, True])
def test_a_torch_optimizers_average_is_taken_as_it_declares_not_by_a_noisy_sum(tmp_path, maximize):
    """Where a layer sits at its minimum its a.g is noise, and their sum over the logged steps can turn
    negative by chance (a 1-entry head bias under AdamW did: 45 of 63 lines of a correct run read uphill).
    torch's own optimizers say which way their average points (maximize): a.u keeps the sign of a correct
    step (negative: Adam's step opposes its exp_avg) however the sum stands, and a climbing one's is positive."""
    x, y = data()
    net = mlp()
    optim = OPTIMIZERS["adam"](net.parameters(), maximize=maximize)
    path = tmp_path / "run.jsonl"
    with TorchMonitor(net, path, optim, every=1) as monitor:
        for i in range(6):
            monitor._orient[:] = 1e9 if maximize else -1e9   # a sum of a.g pointing the other way
            one_step(net, optim, monitor, x[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32])
    _, *steps = lines(path)
    au = [row[8] for line in steps for kind in ("bias_sums", "weight_sums") for row in line[kind].values()]
    assert len(au) == 36 and all((a > 0) if maximize else (a < 0) for a in au)


class HandAdam(torch.optim.Optimizer):
    """Adam written out by hand, outside torch.optim: nothing declares which way its exp_avg points."""

    def __init__(self, params, lr=0.005):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state["t"], state["exp_avg"], state["sq"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                state["t"] += 1
                state["exp_avg"].mul_(0.9).add_(p.grad, alpha=0.1)
                state["sq"].mul_(0.999).addcmul_(p.grad, p.grad, value=0.001)
                m = state["exp_avg"] / (1 - 0.9 ** state["t"])
                v = state["sq"] / (1 - 0.999 ** state["t"])
                p.sub_(group["lr"] * m / (v.sqrt() + 1e-8))


def test_an_undeclared_average_is_oriented_by_every_layers_a_g_not_one_layers():
    """An optimizer from elsewhere does not say which way its average points; a.g says, but one layer's
    sum alone is noise at its minimum or early on (a hand-written Keras Adam's first layer went negative at
    step 32 and read uphill for the rest of a correct run). The way an optimizer keeps its average is one
    rule for all its parameters: the total over every layer decides. Here one layer's own sum is made
    negative before each step, the total positive: every a.u keeps the sign of a correct Adam step (< 0)."""
    x, y = data()
    net = mlp()
    optim = HandAdam(net.parameters())
    path = io.StringIO()
    with TorchMonitor(net, path, optim, every=1) as monitor:
        for i in range(6):
            monitor._orient[:] = 1.0
            monitor._orient[0] = -3.0   # this layer's own sum points the other way; the total does not
            one_step(net, optim, monitor, x[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32])
    header, *steps = [json.loads(line) for line in path.getvalue().splitlines()]
    assert header["averages"] == ["exp_avg"]
    au = [row[8] for line in steps[1:] for kind in ("bias_sums", "weight_sums") for row in line[kind].values()]
    assert len(au) == 5 * 6 and all(a < 0 for a in au)


def train(path, opt, *, maximize=False, weights_maximize=False, every=2, steps=300, dtype=torch.float64):
    """Minibatch regression logged by a TorchMonitor. weights_maximize: the weights in a parameter group of
    their own that climbs, at a tenth of the learning rate (at the full rate plain SGD blows the output up
    within 60 steps, and the biases read `exploding`, truly)."""
    x, y = data(dtype=dtype)
    net = mlp(dtype)
    if weights_maximize:
        named = list(net.named_parameters())
        probe = OPTIMIZERS[opt]([torch.zeros(1)])
        groups = [{"params": [p for n, p in named if n.endswith("bias")]},
                  {"params": [p for n, p in named if n.endswith("weight")], "maximize": True,
                   "lr": probe.defaults["lr"] / 10}]
        optim = OPTIMIZERS[opt](groups)
    else:
        optim = OPTIMIZERS[opt](net.parameters(), maximize=maximize)
    gen = torch.Generator().manual_seed(1)
    with TorchMonitor(net, path, optim, every=every) as monitor:
        for _ in range(steps):
            pick = torch.randint(0, len(x), (32,), generator=gen)
            optim.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x[pick]), y[pick])
            loss.backward()
            optim.step()
            monitor.step(loss)


def verdicts(result):
    return ({n: layer.verdict for n, layer in result.layers.items()},
            {n: layer.verdict for n, layer in result.weights.items()})


@pytest.mark.parametrize("way", ["flat", "per tensor"])
def test_it_keeps_one_copy_of_the_parameters_between_steps(tmp_path, monkeypatch, way):
    """The snapshot the update is measured against, and nothing else of that size (issue 11: at most one
    extra copy of the parameters): the flat way's terms buffer is made for a logged step and let go."""
    if way == "per tensor":
        monkeypatch.setattr(torch_sums, "FLAT_MAX", 0)
    x, y = data()
    net = mlp()
    optim = torch.optim.SGD(net.parameters(), lr=0.1)
    params = sum(p.numel() * p.element_size() for p in net.parameters())
    with TorchMonitor(net, tmp_path / "run.jsonl", optim, every=1) as monitor:
        for i in range(3):
            optim.zero_grad()
            torch.nn.functional.mse_loss(net(x[:32]), y[:32]).backward()
            optim.step()
            monitor.step(1.0)
            assert monitor.buffer_bytes == params
            assert monitor._sums.flat == (way == "flat")


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_a_correct_trainer_is_ok_and_a_climbing_one_uphill(tmp_path, opt):
    train(tmp_path / "ok.jsonl", opt)
    ok = check_stream(tmp_path / "ok.jsonl")
    assert ok.exit == 0, ok.failing
    assert set(verdicts(ok)[0].values()) == {"ok"} == set(verdicts(ok)[1].values())
    train(tmp_path / "up.jsonl", opt, maximize=True)
    up = check_stream(tmp_path / "up.jsonl")
    assert up.exit == 1
    assert set(verdicts(up)[0].values()) == {"uphill"} == set(verdicts(up)[1].values())


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_a_sign_bug_in_the_weights_only_is_uphill_there_only(tmp_path, opt):
    train(tmp_path / "run.jsonl", opt, weights_maximize=True, steps=100)
    result = check_stream(tmp_path / "run.jsonl")
    biases, weights = verdicts(result)
    assert result.exit == 1
    assert set(weights.values()) == {"uphill"} and set(biases.values()) == {"ok"}


def test_float32_gradients_are_named_in_the_header(tmp_path):
    train(tmp_path / "run.jsonl", "adam", steps=10, dtype=torch.float32)
    assert lines(tmp_path / "run.jsonl")[0]["grad_dtype"] == "float32"


def test_no_gradient_is_null_and_a_frozen_parameter_is_left_out(tmp_path):
    x, y = data()
    net = mlp()
    net.add_module("unused", torch.nn.Linear(2, 3).double())
    net[0].weight.requires_grad_(False)
    optim = torch.optim.SGD(net.parameters(), lr=0.05)
    path = tmp_path / "run.jsonl"
    with TorchMonitor(net, path, optim, every=1) as monitor:
        for _ in range(3):
            optim.zero_grad()
            loss = torch.nn.functional.mse_loss(net[:5](x), y)
            loss.backward()
            optim.step()
            monitor.step(loss)
    head, *steps = lines(path)
    assert [d["name"] for d in head["weights"]] == ["2", "4", "unused"]
    row = steps[-1]["weight_sums"]["unused"]
    assert row[2] is None and row[4:7] == [None, 0, 0] and row[3] == 0   # the format's "no gradient reached"
    assert steps[-1]["weight_sums"]["2"][2] > 0


@pytest.mark.parametrize("set_to_none", [True, False])
def test_a_layer_frozen_mid_run_has_no_gradient_whatever_its_grad_holds(tmp_path, set_to_none):
    """requires_grad=False from step 2 on: no gradient reaches the layer, written as such (null) whether
    zero_grad left .grad None or a tensor of zeros; the same as freezing with .grad set to None."""
    x, y = data()
    net = mlp()
    optim = torch.optim.SGD(net.parameters(), lr=0.05)
    path = tmp_path / "run.jsonl"
    with TorchMonitor(net, path, optim, every=1) as monitor:
        for i in range(4):
            if i == 2:
                net[0].requires_grad_(False)
            one_step(net, optim, monitor, x, y, set_to_none)
    _, *steps = lines(path)
    assert [s["bias_sums"]["0"][2] is None for s in steps] == [False, False, True, True]
    assert [s["weight_sums"]["0"][2] is None for s in steps] == [False, False, True, True]
    assert all(s["bias_sums"]["2"][2] > 0 for s in steps)


def test_a_gradient_gone_nan_is_written_as_nan_and_read_as_divergence(tmp_path):
    x, y = data()
    net = mlp()
    optim = torch.optim.SGD(net.parameters(), lr=0.05)
    path = tmp_path / "run.jsonl"
    with TorchMonitor(net, path, optim, every=1) as monitor:
        for i in range(4):
            optim.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), y)
            loss.backward()
            if i == 2:
                net[0].bias.grad[0] = float("nan")
            optim.step()
            monitor.step(loss)
    row = lines(path)[3]["bias_sums"]["0"]
    assert np.isnan(row[2]) and np.isnan(row[3])   # the literal NaN: null would read as unknown
    result = check_stream(path)
    assert result.exit == 1 and result.diverged is not None


def test_gradient_accumulation_writes_one_line_per_optimizer_step_with_the_mean_loss(tmp_path):
    x, y = data()
    net = mlp()
    optim = torch.optim.SGD(net.parameters(), lr=0.05)
    path = tmp_path / "run.jsonl"
    losses = []
    with TorchMonitor(net, path, optim, every=1) as monitor:
        for i in range(6):
            loss = torch.nn.functional.mse_loss(net(x[i * 16:(i + 1) * 16]), y[i * 16:(i + 1) * 16])
            (loss / 2).backward()
            losses.append(loss.item())
            if i % 2:
                optim.step()
                optim.zero_grad()
            monitor.step(loss)
    steps = lines(path)[1:]
    assert [s["step"] for s in steps] == [0, 1, 2]
    assert [s["loss"] for s in steps] == pytest.approx([(a + b) / 2 for a, b in zip(losses[::2], losses[1::2])])


def _scaled_run(path, fused):
    """Six steps under a GradScaler; the third step's gradient is made infinite, so it is skipped."""
    x, y = data(dtype=torch.float32)
    net = mlp(torch.float32)
    optim = torch.optim.Adam(net.parameters(), lr=0.01, fused=fused)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 4)
    losses = []
    with TorchMonitor(net, path, optim, every=1) as monitor:
        for i in range(6):
            optim.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x[i * 16:(i + 1) * 16]), y[i * 16:(i + 1) * 16])
            scaler.scale(loss).backward()
            if i == 2:
                net[0].bias.grad[0] = float("inf")
            scaler.step(optim)
            scaler.update()
            losses.append(loss.item())
            monitor.step(loss)
    return losses


@pytest.mark.parametrize("fused", [False, True])
def test_a_step_a_grad_scaler_skips_writes_nothing(tmp_path, fused):
    path = tmp_path / "run.jsonl"
    losses = _scaled_run(path, fused)
    steps = lines(path)[1:]
    assert [s["step"] for s in steps] == [0, 1, 2, 3, 4]
    assert all(all(row[3] > 0 for row in s["bias_sums"].values()) for s in steps)
    assert steps[2]["loss"] == pytest.approx((losses[2] + losses[3]) / 2, rel=1e-6)   # the same parameters


def test_every_k_logs_one_step_in_k_and_check_is_ok(tmp_path):
    path = tmp_path / "run.jsonl"
    train(path, "adam", every=7, steps=400)
    head, *steps = lines(path)
    assert head["every"] == 7 and [s["step"] for s in steps] == list(range(0, 400, 7))
    assert check_stream(path).exit == 0


def test_a_schedule_and_clipping_change_nothing_but_the_step(tmp_path):
    x, y = data()
    net = mlp()
    optim = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=0.1, total_steps=300)
    gen = torch.Generator().manual_seed(1)
    path = tmp_path / "run.jsonl"
    with TorchMonitor(net, path, optim, every=2) as monitor:
        for _ in range(300):
            pick = torch.randint(0, len(x), (32,), generator=gen)
            optim.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x[pick]), y[pick])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)
            optim.step()
            schedule.step()
            monitor.step(loss)
    result = check_stream(path)
    assert result.exit == 0 and set(verdicts(result)[0].values()) == {"ok"} == set(verdicts(result)[1].values())


def test_without_torch_it_says_how_to_install_it(tmp_path, monkeypatch):
    import sys
    net = mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    monkeypatch.setitem(sys.modules, "torch", None)   # import torch now raises ImportError
    with pytest.raises(BiasmonError, match="pip install torch") as err:
        TorchMonitor(net, tmp_path / "run.jsonl", opt)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kwargs,message", [
    ({"model": "net"}, "model must be a torch.nn.Module"),
    ({"optimizer": object()}, "optimizer must be a torch.optim.Optimizer"),
    ({"every": 0}, "every must be a whole number >= 1"),
    ({"every": 2.5}, "every must be a whole number >= 1"),
    ({"model": torch.nn.ReLU()}, "no trainable parameters"),
])
def test_bad_input_is_a_one_line_error_naming_what_is_allowed(tmp_path, kwargs, message):
    net = mlp()
    args = {"model": net, "optimizer": torch.optim.SGD(net.parameters(), lr=0.1), **kwargs}
    every = args.pop("every", 1)
    with pytest.raises(BiasmonError, match=message) as err:
        TorchMonitor(args["model"], tmp_path / "run.jsonl", args["optimizer"], every=every)
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_sums_of_shards_all_reduced_over_a_process_group_equal_the_whole_layers(tmp_path):
    """Two processes (gloo), each holding half of a linear layer (tests/trainers/sharded_linear.py)."""
    import subprocess
    import sys
    from pathlib import Path
    trainers = Path(__file__).resolve().parents[1] / "trainers"
    subprocess.run([sys.executable, str(trainers / "sharded_linear.py"), str(tmp_path / "sharded.jsonl")],
                   check=True, timeout=60, capture_output=True)
    sys.path.insert(0, str(trainers))
    from sharded_linear import whole
    whole(str(tmp_path / "whole.jsonl"))
    sharded, reference = lines(tmp_path / "sharded.jsonl"), lines(tmp_path / "whole.jsonl")
    assert sharded[0]["layers"] == reference[0]["layers"] == [{"name": "0", "size": 4}]
    assert sharded[0]["weights"] == reference[0]["weights"] == [{"name": "0", "size": 12}]
    assert len(sharded) == len(reference) == 13
    for got, want in zip(sharded[1:], reference[1:]):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-12)
        for key in ("bias_sums", "weight_sums"):
            g, w = np.array(got[key]["0"], dtype=float), np.array(want[key]["0"], dtype=float)
            assert g[[0, 5, 6]].tolist() == w[[0, 5, 6]].tolist()
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=0)
    assert reference[1]["bias_sums"]["0"][5] == 2   # the second half's gradient entries are not significant


def test_the_readme_example_runs_as_shown_and_checks_ok(tmp_path, monkeypatch):
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### PyTorch: every parameter", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    result = check_stream(tmp_path / "run.jsonl")
    assert result.exit == 0
    assert verdicts(result) == ({"0": "ok", "2": "ok"}, {"0": "ok", "2": "ok"})


def test_a_sparse_gradient_is_summed_alike_both_ways(tmp_path, monkeypatch):
    """nn.Embedding(sparse=True) gives a sparse .grad: the flat way and the per-tensor way (a larger
    model's) give the same sums (the per-tensor way raised NotImplementedError on it)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Embedding(20, 4, sparse=True), torch.nn.Flatten(), torch.nn.Linear(12, 1))
    optim = torch.optim.SGD(net.parameters(), lr=0.1)
    flat = TorchMonitor(net, tmp_path / "flat.jsonl", optim, every=1)
    monkeypatch.setattr(torch_sums, "FLAT_MAX", 0)
    per_tensor = TorchMonitor(net, tmp_path / "per_tensor.jsonl", optim, every=1)
    assert flat._sums.flat and not per_tensor._sums.flat
    tokens = torch.randint(0, 20, (16, 3))
    for _ in range(3):
        optim.zero_grad()
        loss = net(tokens).pow(2).mean()
        loss.backward()
        optim.step()
        flat.step(loss)
        per_tensor.step(loss)
    flat.close()
    per_tensor.close()
    a = [json.loads(t) for t in (tmp_path / "flat.jsonl").read_text().splitlines()[1:]]
    b = [json.loads(t) for t in (tmp_path / "per_tensor.jsonl").read_text().splitlines()[1:]]
    assert len(a) == len(b) == 3
    for x, y in zip(a, b):
        for key in ("bias_sums", "weight_sums"):
            assert list(x[key]) == list(y[key])
            for layer in x[key]:
                np.testing.assert_allclose(np.array(x[key][layer], dtype=float), np.array(y[key][layer], dtype=float),
                                           rtol=1e-5, atol=1e-12)


def test_an_early_overshoot_does_not_outweigh_a_run_of_an_undeclared_average():
    """An optimizer that does not say which way its average points is oriented by cos(a, g) summed over the
    logged steps and layers. A sum of a.g itself was ruled by one early overshoot (the gradient reversed,
    the average not yet: a.g large and negative), and a hand-written Adam's correct layers read uphill
    for the rest of the run. Here: one step at cos -1 with |a| |g| = 100, then four at cos +0.5 with
    |a| |g| = 1: a is an average of g (a.u of a correct step stays negative)."""
    from biasmon.core.layout import Layout
    layout, none = Layout(("h",), (4,)), Layout((), ())
    orient = np.zeros(1)
    for ag, norm in [(-100.0, 100.0)] + [(0.5, 1.0)] * 4:
        rows = np.array([[4, 1.0, norm, 0.01, -0.1 * norm, 4, 4, norm, -0.05, ag]])
        line = torch_sums.step_line(0, 1.0, None, rows, (False,), layout, none, orient, True)
    assert line["bias_sums"]["h"][8] == -0.05
