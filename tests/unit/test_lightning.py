"""BiasmonCallback on a tiny LightningModule on the CPU: one callback and a correct run checks ok, a sign
bug (the bias param group maximizes) is uphill on every layer; accumulation and 16-bit mixed precision
write one line per optimizer step. Skipped where neither lightning nor pytorch_lightning is installed."""
import json

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
try:
    import lightning.pytorch as pl
except ImportError:
    pl = pytest.importorskip("pytorch_lightning", reason="neither lightning nor pytorch_lightning is installed")

from biasmon.core.check import check_stream  # noqa: E402
from biasmon.core.errors import BiasmonError  # noqa: E402
from biasmon.lightning import BiasmonCallback  # noqa: E402

mse = torch.nn.functional.mse_loss


class Regressor(pl.LightningModule):
    """A 2-16-1 tanh MLP on y = sin(2 x0) + 0.5 x1^2, SGD; maximize_bias: the biases' group maximizes."""

    def __init__(self, maximize_bias: bool = False, optimizers: int = 1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        self.maximize_bias, self.optimizer_count = maximize_bias, optimizers

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return mse(self(x), y)

    def configure_optimizers(self):
        named = list(self.net.named_parameters())
        groups = [{"params": [p for n, p in named if not n.endswith("bias")]},
                  {"params": [p for n, p in named if n.endswith("bias")], "maximize": self.maximize_bias}]
        if self.optimizer_count == 1:
            return torch.optim.SGD(groups, lr=0.1)
        return [torch.optim.SGD(groups[:1], lr=0.1), torch.optim.SGD(groups[1:], lr=0.1)]


def loader():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(256, 2, generator=gen) * 3 - 1.5
    y = torch.sin(2 * x[:, :1]) + 0.5 * x[:, 1:] ** 2
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=True,
                                       generator=gen)


def fit(path, module, steps=150, **trainer_options):
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[BiasmonCallback(path, loss_fn=mse, check_every=50)], **trainer_options)
    trainer.fit(module, loader())
    return [json.loads(line) for line in path.read_text().splitlines()]


def step_lines(lines):
    return [s for s in lines if "event" not in s and "format" not in s]


def test_a_correct_lightning_run_checks_ok_with_its_gradient_checks(tmp_path):
    lines = fit(tmp_path / "run.jsonl", Regressor())
    steps = step_lines(lines)
    assert len(steps) == 150 and {k: len(v) for k, v in steps[0]["biases"].items()} == {"net.0": 16, "net.2": 1}
    checks = [e for e in lines if e.get("event") == "gradient_check"]
    assert len(checks) == 3 and all("note" not in e and max(e["errors"].values()) < 1e-5 for e in checks)
    result = check_stream(tmp_path / "run.jsonl")
    assert result.exit == 0 and {d.verdict for d in result.layers.values()} == {"ok"}


def test_a_sign_bug_in_a_lightning_run_is_uphill_on_every_layer(tmp_path):
    fit(tmp_path / "run.jsonl", Regressor(maximize_bias=True))
    result = check_stream(tmp_path / "run.jsonl")
    assert result.exit == 1
    assert {name: d.verdict for name, d in result.layers.items()} == {"net.0": "uphill", "net.2": "uphill"}


class Recording(Regressor):
    """The Regressor, keeping every training_step's loss."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.seen.append(loss.item())
        return loss


def test_accumulated_batches_give_one_line_per_optimizer_step_with_their_mean_loss(tmp_path):
    """Lightning hands the callback each batch's loss divided by accumulate_grad_batches: the line has the
    mean of the step's batches' losses as training_step returned them, and the gradient check at step 0
    compares the logged gradient on the four batches joined (no note: the loss there is the logged one)."""
    module = Recording()
    module.seen = []
    lines = fit(tmp_path / "run.jsonl", module, steps=40, accumulate_grad_batches=4)
    steps = step_lines(lines)
    assert len(steps) == 40 and not [e for e in lines if e.get("event") == "step_skipped"]
    want = [sum(module.seen[4 * i:4 * i + 4]) / 4 for i in range(40)]
    assert [s["loss"] for s in steps] == pytest.approx(want, rel=1e-6)
    checks = [e for e in lines if e.get("event") == "gradient_check"]
    assert len(checks) == 1 and "note" not in checks[0] and max(checks[0]["errors"].values()) < 1e-5
    assert check_stream(tmp_path / "run.jsonl").exit == 0


def test_16_bit_mixed_precision_skipped_steps_are_events_and_the_run_checks_ok(tmp_path):
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 24)   # float16's gradient overflows at first
    plugin = pl.plugins.precision.MixedPrecision("16-mixed", "cpu", scaler=scaler)
    lines = fit(tmp_path / "run.jsonl", Regressor(), steps=120, plugins=[plugin])
    skipped = [e for e in lines if e.get("event") == "step_skipped"]
    assert skipped and len(step_lines(lines)) + len(skipped) == 120
    result = check_stream(tmp_path / "run.jsonl")
    assert result.exit == 0 and {d.verdict for d in result.layers.values()} == {"ok"}


def test_with_two_optimizers_it_follows_the_one_asked_for_and_logs_the_biases_it_holds(tmp_path):
    trainer = pl.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[BiasmonCallback(tmp_path / "run.jsonl", optimizer_index=2)])
    with pytest.raises(BiasmonError, match="optimizer_index 2: the module has 2 optimizer"):
        trainer.fit(ManualTwoOptimizers(), loader())


class ManualTwoOptimizers(Regressor):
    """Weights and biases in two optimizers, stepped by hand (manual optimization)."""

    def __init__(self):
        super().__init__(optimizers=2)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        weights, biases = self.optimizers()
        weights.zero_grad()
        biases.zero_grad()
        loss = mse(self(batch[0]), batch[1])
        self.manual_backward(loss)
        weights.step()
        biases.step()
        return loss


def test_manual_optimization_with_two_optimizers_logs_the_chosen_ones_biases(tmp_path):
    trainer = pl.Trainer(accelerator="cpu", max_steps=160, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[BiasmonCallback(tmp_path / "run.jsonl", optimizer_index=1)])
    trainer.fit(ManualTwoOptimizers(), loader())
    lines = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert list(step_lines(lines)[0]["biases"]) == ["net.0", "net.2"]
    assert len(step_lines(lines)) == 80   # max_steps counts both optimizers' steps
    assert check_stream(tmp_path / "run.jsonl").exit == 0


def test_a_batch_training_step_skips_is_left_out_of_an_accumulated_step(tmp_path):
    class Skipping(Regressor):
        def training_step(self, batch, batch_idx):
            return None if batch_idx == 2 else super().training_step(batch, batch_idx)   # Lightning skips it

    lines = fit(tmp_path / "run.jsonl", Skipping(), steps=12, accumulate_grad_batches=2)
    assert len(step_lines(lines)) == 12


def test_batches_are_joined_for_the_check_where_they_can_be_and_the_last_is_given_otherwise():
    from collections import namedtuple

    from biasmon.lightning import _joined
    Pair = namedtuple("Pair", "x y")
    a, b = Pair(torch.ones(2, 3), torch.ones(2, 1)), Pair(torch.zeros(4, 3), torch.zeros(4, 1))
    joined = _joined([a, b])
    assert type(joined) is Pair and joined.x.shape == (6, 3) and joined.y.shape == (6, 1)
    assert _joined([(torch.ones(2, 3),), (torch.ones(2, 5),)])[0].shape == (2, 5)    # widths differ: the last
    assert _joined([(torch.tensor(1.0),), (torch.tensor(2.0),)])[0].item() == 2.0   # 0-d: the last
    assert _joined([{"x": 1}, {"x": 2}]) == {"x": 2}                                  # not a tuple: the last
