"""The PyTorch helper attached to an optimizer, as people train: param groups with their own lr, a
scheduler, a GradScaler that skips steps on an overflow, gradient accumulation, an optimizer that takes a
closure, the optimizer's own running average, wrapped models, and bad input. Skipped without torch."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from biasmon.core.check import check_stream  # noqa: E402
from biasmon.core.errors import BiasmonError  # noqa: E402
from biasmon.torch_logger import TorchBiasLogger  # noqa: E402

mse = torch.nn.functional.mse_loss


def data(n=64):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 2, generator=gen) * 3 - 1.5
    return x, torch.sin(2 * x[:, :1]) + 0.5 * x[:, 1:] ** 2


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def read(path):
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [s for s in lines if "step" in s and "event" not in s], [e for e in lines if "event" in e]


def grad_groups(net, lrs, maximize_bias=False):
    """Weights in one group (lr 0.1), each Linear's bias in its own group with its own lr."""
    weights = [p for n, p in net.named_parameters() if not n.endswith("bias")]
    groups = [{"params": weights, "lr": 0.1}]
    groups += [{"params": [net[i].bias], "lr": lr, "maximize": maximize_bias} for i, lr in zip((0, 2), lrs)]
    return groups


def test_param_groups_each_bias_moves_by_its_own_groups_lr(tmp_path):
    x, y = data()
    net = model()
    opt = torch.optim.SGD(grad_groups(net, (0.05, 0.01)), lr=0.1)
    with TorchBiasLogger(net, tmp_path / "run.jsonl", optimizer=opt) as log:
        for _ in range(5):
            opt.zero_grad()
            loss = mse(net(x), y)
            loss.backward()
            opt.step()
            log.step(loss)
    steps, _ = read(tmp_path / "run.jsonl")
    for line in steps:
        for layer, lr in (("0", 0.05), ("2", 0.01)):
            np.testing.assert_allclose(line["bias_updates"][layer], -lr * np.array(line["bias_grads"][layer]),
                                       rtol=1e-5, atol=1e-7)


def test_a_scheduler_changes_the_step_size_not_the_verdict(tmp_path):
    x, y = data()
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    lrs = []
    with TorchBiasLogger(net, tmp_path / "run.jsonl", optimizer=opt) as log:
        for _ in range(60):
            opt.zero_grad()
            loss = mse(net(x), y)
            loss.backward()
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
            log.step(loss)
    steps, _ = read(tmp_path / "run.jsonl")
    assert lrs[0] == 0.1 and lrs[-1] == 0.1 * 0.5 ** 5
    for line, lr in zip(steps, lrs):
        np.testing.assert_allclose(line["bias_updates"]["0"], -lr * np.array(line["bias_grads"]["0"]),
                                   rtol=1e-5, atol=1e-7)
    assert check_stream(tmp_path / "run.jsonl").exit == 0


def train_amp(path, steps, maximize_bias=False):
    """float16 autocast on the CPU with a GradScaler whose first scale overflows float16's gradient: its
    first steps are skipped (scaler.step does not call optimizer.step) until the scale has come down.
    The number of steps it skipped."""
    x, y = data()
    net = model()
    opt = torch.optim.SGD(grad_groups(net, (0.1, 0.1), maximize_bias), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 24, growth_interval=25)
    skipped = 0
    with TorchBiasLogger(net, path, optimizer=opt) as log:
        for _ in range(steps):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.float16):
                loss = mse(net(x), y)
            scaler.scale(loss).backward()
            scale = scaler.get_scale()
            scaler.step(opt)
            scaler.update()
            skipped += scaler.get_scale() < scale
            log.step(loss)
    return skipped


def test_a_gradscaler_skipped_step_writes_no_step_line_but_an_event(tmp_path):
    path = tmp_path / "run.jsonl"
    skipped = train_amp(path, 120)
    steps, events = read(path)
    skips = [e for e in events if e["event"] == "step_skipped"]
    assert skipped >= 3 and len(skips) == skipped and len(steps) == 120 - skipped
    assert all("GradScaler" in e["reason"] for e in skips)
    assert not {e["step"] for e in skips} & {s["step"] for s in steps}
    for line in steps:   # the unscaled gradient the optimizer used (not the scaled one), all finite
        for layer in ("0", "2"):
            g = np.array(line["bias_grads"][layer], dtype=float)
            np.testing.assert_allclose(line["bias_updates"][layer], -0.1 * g, rtol=1e-5, atol=1e-7)
            assert np.abs(g).max() < 10
    result = check_stream(path)
    assert result.exit == 0 and {d.verdict for d in result.layers.values()} == {"ok"}


def test_a_sign_bug_under_a_gradscaler_is_uphill(tmp_path):
    train_amp(tmp_path / "run.jsonl", 120, maximize_bias=True)
    result = check_stream(tmp_path / "run.jsonl")
    assert result.exit == 1 and {d.verdict for d in result.layers.values()} == {"uphill"}


def train_accumulating(path, micro=4, steps=40, log_every_micro_batch=False, **options):
    """Gradient accumulation: `micro` backward() calls (each of the micro-batch's loss / micro) per
    optimizer.step(). The full batch's gradient at each step's biases, computed apart."""
    x, y = data()
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    full = []
    with TorchBiasLogger(net, path, optimizer=opt, **options) as log:
        for _ in range(steps):
            full.append([g.detach().double().numpy() for g in
                         torch.autograd.grad(mse(net(x), y), [net[0].bias, net[2].bias])])
            opt.zero_grad()
            losses = []
            for xb, yb in zip(x.chunk(micro), y.chunk(micro)):
                loss = mse(net(xb), yb)
                (loss / micro).backward()
                losses.append(loss.detach())
                if log_every_micro_batch and len(losses) < micro:
                    log.step(loss)
            opt.step()
            log.step(torch.stack(losses).mean(), batch=(x, y))
    return full


def test_accumulation_one_line_per_optimizer_step_with_the_accumulated_gradient(tmp_path):
    path = tmp_path / "run.jsonl"
    full = train_accumulating(path, loss_fn=mse, check_every=10)
    steps, events = read(path)
    assert [s["step"] for s in steps] == list(range(40))
    for line, (g0, g2) in zip(steps, full):
        np.testing.assert_allclose(line["bias_grads"]["0"], g0, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(line["bias_grads"]["2"], g2, rtol=1e-4, atol=1e-7)
    checks = [e for e in events if e["event"] == "gradient_check"]
    assert len(checks) == 4 and all("note" not in e and max(e["errors"].values()) < 1e-5 for e in checks)
    assert check_stream(path).exit == 0


def test_accumulation_logged_at_every_micro_batch_still_writes_one_line_per_optimizer_step(tmp_path):
    path = tmp_path / "run.jsonl"
    full = train_accumulating(path, micro=4, steps=10, log_every_micro_batch=True)
    steps, events = read(path)
    assert [s["step"] for s in steps] == list(range(3, 40, 4))
    assert [e["step"] for e in events if e["event"] == "step_skipped"] == [i for i in range(40) if i % 4 != 3]
    assert all("accumulating" in e["reason"] for e in events if e["event"] == "step_skipped")
    np.testing.assert_allclose(steps[-1]["bias_grads"]["0"], full[-1][0], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("make", [
    lambda p: torch.optim.LBFGS(p, lr=0.5, max_iter=4),
    lambda p: torch.optim.SGD(p, lr=0.1),
], ids=["lbfgs", "sgd"])
def test_a_closure_step_logs_the_gradient_at_the_biases_before_the_step(tmp_path, make):
    x, y = data()
    net = model()
    opt = make(net.parameters())
    expected = []

    def closure():
        opt.zero_grad()
        loss = mse(net(x), y)
        loss.backward()
        return loss
    with TorchBiasLogger(net, tmp_path / "run.jsonl", optimizer=opt) as log:
        for _ in range(3):
            expected.append(torch.autograd.grad(mse(net(x), y), net[0].bias)[0].double().numpy())
            log.step(opt.step(closure))
    steps, _ = read(tmp_path / "run.jsonl")
    assert len(steps) == 3
    for line, g in zip(steps, expected):
        np.testing.assert_allclose(line["bias_grads"]["0"], g, rtol=1e-4, atol=1e-7)
        assert np.abs(np.array(line["bias_updates"]["0"])).max() > 0


@pytest.mark.parametrize("make,key", [
    (lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), "momentum_buffer"),
    (lambda p: torch.optim.Adam(p, lr=0.01), "exp_avg"),
    (lambda p: torch.optim.SGD(p, lr=0.05), None),
], ids=["momentum", "adam", "sgd"])
def test_the_optimizers_running_average_is_read_after_each_step(tmp_path, make, key):
    x, y = data()
    net = model()
    opt = make(net.parameters())
    with TorchBiasLogger(net, tmp_path / "run.jsonl", optimizer=opt) as log:
        for _ in range(3):
            opt.zero_grad()
            loss = mse(net(x), y)
            loss.backward()
            opt.step()
            log.step(loss)
            for layer, i in (("0", 0), ("2", 2)):
                if key is None:
                    assert log.running_average[layer] is None
                else:
                    np.testing.assert_array_equal(log.running_average[layer],
                                                  opt.state[net[i].bias][key].double().numpy())


@pytest.mark.parametrize("wrapper,prefix", [("DataParallel", "module"), ("compile", "_orig_mod")])
def test_a_wrapped_model_is_named_by_the_module_inside(tmp_path, wrapper, prefix):
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    # looked up now: another test's import (Lightning) may have wrapped torch.compile since collection
    wrapped = torch.nn.DataParallel(net) if wrapper == "DataParallel" else torch.compile(net)   # compiles at a call
    assert {n.split(".")[0] for n, _ in wrapped.named_parameters()} == {prefix}
    with TorchBiasLogger(wrapped, tmp_path / "run.jsonl", optimizer=opt, weights=True) as log:
        assert list(log.params) == list(log.kinds["weight"]) == ["0", "2"]


@pytest.mark.parametrize("make,words", [
    (lambda net: dict(model=torch.nn.Sequential()), "has no parameters"),
    (lambda net: dict(model=net, optimizer="sgd"), "must be a torch.optim.Optimizer"),
    (lambda net: dict(model=net, optimizer=torch.optim.SGD(model().parameters(), lr=0.1)),
     "holds none of the model's bias parameters"),
], ids=["no-parameters", "not-an-optimizer", "another-models-optimizer"])
def test_bad_input_is_a_one_line_error_naming_what_is_allowed(tmp_path, make, words):
    options = make(model())
    with pytest.raises(BiasmonError) as caught:
        TorchBiasLogger(options.pop("model"), tmp_path / "run.jsonl", **options)
    assert words in str(caught.value) and "\n" not in str(caught.value)
