"""TorchBiasLogger, TorchMonitor and a bias with requires_grad=False (frozen): left out of the stream, but
named once, in a UserWarning when the helper attaches and in the header's meta.left_out_biases. Skipped
without torch."""
import json
import warnings

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from biasmon.core.check import check_stream  # noqa: E402
from biasmon.core.errors import BiasmonError  # noqa: E402
from biasmon.torch_logger import TorchBiasLogger  # noqa: E402
from biasmon.torch_monitor import TorchMonitor  # noqa: E402


def model(frozen=(2,)):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 1))
    for i in frozen:
        net[i].bias.requires_grad_(False)
    return net


def train(net, log, steps=60, opt=None):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 2, generator=gen) * 3 - 1.5
    y = torch.sin(2 * x[:, :1])
    opt = opt or torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), y)
        loss.backward()
        opt.step()
        log.step(loss)


def header(path):
    return json.loads(path.read_text().splitlines()[0])


def test_a_frozen_bias_is_named_in_a_warning_and_in_the_header(tmp_path):
    path = tmp_path / "run.jsonl"
    net = model()
    with pytest.warns(UserWarning) as caught:
        log = TorchBiasLogger(net, path)
    messages = [str(w.message) for w in caught if "TorchBiasLogger" in str(w.message)]
    assert messages == ["TorchBiasLogger: 1 bias (2.bias) has requires_grad=False: left out, neither logged nor "
                        "judged (recorded in the stream header's meta.left_out_biases; give params= to log a bias "
                        "anyway)"]
    assert caught[0].filename == __file__   # it points at the line that attached the logger
    with log:
        train(net, log)
    assert header(path)["meta"] == {"left_out_biases": {"2": "requires_grad=False"}}
    result = check_stream(str(path))
    assert list(result.layers) == ["0", "4"] and result.exit == 0


def test_the_users_meta_is_kept_and_not_changed(tmp_path):
    meta = {"experiment": "e1"}
    with pytest.warns(UserWarning, match="2.bias"):
        log = TorchBiasLogger(model(), tmp_path / "run.jsonl", meta=meta)
    with log:
        train(log.model, log, steps=2)
    assert header(tmp_path / "run.jsonl")["meta"] == {"experiment": "e1",
                                                      "left_out_biases": {"2": "requires_grad=False"}}
    assert meta == {"experiment": "e1"}


def test_no_frozen_bias_no_warning_and_no_meta(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with TorchBiasLogger(model(frozen=()), tmp_path / "run.jsonl") as log:
            train(log.model, log, steps=2)
    assert "meta" not in header(tmp_path / "run.jsonl")


def test_biases_named_with_params_are_the_users_choice_no_warning(tmp_path):
    net = model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with TorchBiasLogger(net, tmp_path / "run.jsonl", params=["0.bias", "4.bias"]) as log:
            train(net, log, steps=2)
    assert "meta" not in header(tmp_path / "run.jsonl")


def test_many_frozen_biases_are_counted_and_the_first_named(tmp_path):
    net = torch.nn.Sequential(*(torch.nn.Linear(2, 2) for _ in range(12)))
    for layer in net[1:]:
        layer.bias.requires_grad_(False)
    with pytest.warns(UserWarning, match=r"11 biases \(1\.bias, 2\.bias, .*, 8\.bias, and 3 more\) have "
                                         r"requires_grad=False"):
        TorchBiasLogger(net, tmp_path / "run.jsonl").close()


def test_every_bias_frozen_is_an_error_that_says_so(tmp_path):
    with pytest.raises(BiasmonError, match=r"no trainable bias parameters: 3 biases \(0\.bias, 2\.bias, 4\.bias\) "
                                           r"have requires_grad=False"):
        TorchBiasLogger(model(frozen=(0, 2, 4)), tmp_path / "run.jsonl")


def test_torch_monitor_names_a_frozen_bias_in_a_warning_and_the_header_and_check_notes_it(tmp_path):
    """TorchMonitor left frozen parameters out without a word: a bias frozen by mistake was neither judged
    nor mentioned."""
    path, net = tmp_path / "run.jsonl", model()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    with pytest.warns(UserWarning) as caught:
        monitor = TorchMonitor(net, path, opt, every=1, meta={"experiment": "e1"})
    assert [str(w.message) for w in caught if "TorchMonitor" in str(w.message)] == [
        "TorchMonitor: 1 bias (2.bias) has requires_grad=False: left out, neither logged nor judged (recorded "
        "in the stream header's meta.left_out_biases; give params= to log a bias anyway)"]
    assert caught[0].filename == __file__
    with monitor:
        train(net, monitor, opt=opt)
    assert header(path)["meta"] == {"experiment": "e1", "left_out_biases": {"2": "requires_grad=False"}}
    result = check_stream(str(path))
    assert list(result.layers) == ["0", "4"] and result.exit == 0
    assert any("left out 1 bias layer(s), neither logged nor judged: 2 (requires_grad=False)" in n for n in result.notes)


def test_torch_monitor_without_frozen_biases_or_with_params_warns_nothing(tmp_path):
    for net, params in ((model(frozen=()), None), (model(), ["0.bias", "4.bias"])):
        opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with TorchMonitor(net, tmp_path / "run.jsonl", opt, every=1, params=params) as monitor:
                train(net, monitor, steps=2, opt=opt)
        assert "meta" not in header(tmp_path / "run.jsonl")


@pytest.mark.parametrize("helper", ["TorchMonitor", "TorchBiasLogger"])
def test_the_warning_made_an_error_leaves_nothing_attached(tmp_path, helper):
    """Under warnings-as-errors the constructor raises; it used to have opened (emptied) the stream and
    hooked the optimizer first, leaving a monitor no one could close (a review found it)."""
    net = model()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    path = tmp_path / "run.jsonl"
    path.write_text("kept\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="2.bias"):
            if helper == "TorchMonitor":
                TorchMonitor(net, path, opt)
            else:
                TorchBiasLogger(net, path, optimizer=opt)
    assert path.read_text() == "kept\n"
    # the optimizer's step hooks (torch keeps them in these dicts): none was left behind
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
