"""The PyTorch helper with main's stream version 2: weights=True logs every other parameter too (judged
like the biases), form="sums" writes per-layer sums judged as the vectors are. Skipped without torch."""
import json

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from biasmon.core.check import check_stream  # noqa: E402
from biasmon.torch_logger import TorchBiasLogger  # noqa: E402

mse = torch.nn.functional.mse_loss


def train(path, steps=150, flip=None, batchnorm=False, **options):
    """A 2-16-1 tanh MLP (a BatchNorm after the first Linear if asked), SGD lr 0.05 on minibatches of 16;
    flip: "bias" or "weight", that kind's param group maximizes (the sign bug)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(256, 2, generator=gen) * 3 - 1.5
    y = torch.sin(2 * x[:, :1]) + 0.5 * x[:, 1:] ** 2
    torch.manual_seed(0)
    layers = [torch.nn.Linear(2, 16)] + ([torch.nn.BatchNorm1d(16)] if batchnorm else [])
    net = torch.nn.Sequential(*layers, torch.nn.Tanh(), torch.nn.Linear(16, 1))
    named = list(net.named_parameters())
    groups = [{"params": [p for n, p in named if n.endswith(kind)], "maximize": flip == kind}
              for kind in ("bias", "weight")]
    opt = torch.optim.SGD(groups, lr=0.05)
    with TorchBiasLogger(net, path, optimizer=opt, **options) as log:
        for _ in range(steps):
            pick = torch.randint(0, 256, (16,), generator=gen)
            opt.zero_grad()
            loss = mse(net(x[pick]), y[pick])
            loss.backward()
            opt.step()
            log.step(loss)
    return [json.loads(line) for line in path.read_text().splitlines()]


def verdicts(path):
    r = check_stream(path)
    return r.exit, {n: d.verdict for n, d in r.layers.items()}, {n: d.verdict for n, d in r.weights.items()}


def test_weights_are_logged_by_layer_and_a_correct_run_is_ok(tmp_path):
    lines = train(tmp_path / "run.jsonl", weights=True)
    assert lines[0]["version"] == 2 and lines[0]["weights"] == [{"name": "0", "size": 32}, {"name": "2", "size": 16}]
    assert verdicts(tmp_path / "run.jsonl") == (0, {"0": "ok", "2": "ok"}, {"0": "ok", "2": "ok"})


def test_a_sign_bug_in_the_weights_alone_is_named_on_the_weights(tmp_path):
    train(tmp_path / "run.jsonl", flip="weight", weights=True)
    code, biases, weights = verdicts(tmp_path / "run.jsonl")
    assert code == 1 and weights == {"0": "uphill", "2": "uphill"}
    assert "uphill" not in biases.values()


@pytest.mark.parametrize("flip,batchnorm", [(None, False), ("bias", False), (None, True)],
                         ids=["correct", "bias-sign-bug", "bias-before-batchnorm"])
def test_the_summary_form_is_judged_as_the_vectors(tmp_path, flip, batchnorm):
    vectors = train(tmp_path / "vectors.jsonl", flip=flip, batchnorm=batchnorm, weights=True)
    sums = train(tmp_path / "sums.jsonl", flip=flip, batchnorm=batchnorm, weights=True, form="sums")
    assert "bias_sums" in sums[1] and "biases" not in sums[1] and "biases" in vectors[1]
    assert sums[0]["grad_dtype"] == "float32"   # float32 gradients: the redundant verdict's unit of rounding
    judged = verdicts(tmp_path / "sums.jsonl")
    assert judged == verdicts(tmp_path / "vectors.jsonl")
    assert judged[0] == (1 if flip else 0)
    if batchnorm:
        assert judged[1]["0"] == "redundant"
