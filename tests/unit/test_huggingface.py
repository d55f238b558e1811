"""BiasmonTrainerCallback on a tiny regression model (a plain torch.nn.Module returning {"loss", "logits"}) and
the Hugging Face Trainer on the CPU: one callback and a correct run checks ok, a sign bug (the bias param
group maximizes) is uphill on every layer; gradient accumulation writes one line per optimizer step with
the loss the Trainer itself reports for it; clipping does not cry wolf; bad input is a one-line error.
Skipped where transformers (or accelerate, which its Trainer needs) is not installed."""
import inspect
import json
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate", reason="the Hugging Face Trainer needs accelerate")
transformers = pytest.importorskip("transformers", reason="transformers is not installed")
torch.set_num_threads(1)

from biasmon.core.check import check_stream  # noqa: E402
from biasmon.core.errors import BiasmonError  # noqa: E402
from biasmon.huggingface import BiasmonTrainerCallback  # noqa: E402

mse = torch.nn.functional.mse_loss


class Regressor(torch.nn.Module):
    """A 2-16-1 tanh MLP on y = sin(2 x0) + 0.5 x1^2; its forward returns the loss when given labels."""

    def __init__(self, bias: bool = True):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 16, bias=bias), torch.nn.Tanh(),
                                       torch.nn.Linear(16, 1, bias=bias))

    def forward(self, x, labels=None):
        out = self.net(x)
        return {"logits": out} if labels is None else {"loss": mse(out, labels), "logits": out}


class ItemsRegressor(Regressor):
    """Accepts **kwargs, so the Trainer passes num_items_in_batch (the accumulated batch's count) and
    expects the loss normalized by it: a sum of squares over the micro-batch / num_items_in_batch."""

    def forward(self, x, labels=None, **kwargs):
        out = self.net(x)
        return {"loss": ((out - labels) ** 2).sum() / kwargs["num_items_in_batch"], "logits": out}


class Data(torch.utils.data.Dataset):
    def __init__(self, n=256, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 2, generator=gen) * 3 - 1.5
        self.y = torch.sin(2 * self.x[:, :1]) + 0.5 * self.x[:, 1:] ** 2

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def trainer(path, model, steps=150, optimizers=(None, None), **options):
    """A Trainer of `model` for `steps` optimizer steps logged to `path`; options: TrainingArguments'."""
    options = {"learning_rate": 0.05, "lr_scheduler_type": "constant", "logging_steps": 1, **options}
    args = transformers.TrainingArguments(output_dir=str(path.parent / "out"), max_steps=steps,
                                          per_device_train_batch_size=16, report_to="none", save_strategy="no",
                                          disable_tqdm=True, use_cpu=True, **options)
    extra = {"eval_dataset": Data(64, seed=1)} if "eval_steps" in options else {}
    return transformers.Trainer(model=model, args=args, train_dataset=Data(),
                                optimizers=optimizers, callbacks=[BiasmonTrainerCallback(path)], **extra)


def fit(path, model, steps=150, **options):
    """Train; (the stream's lines, the Trainer's per-step training logs)."""
    run = trainer(path, model, steps, **options)
    run.train()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return lines, [h for h in run.state.log_history if "loss" in h]


def same_losses(logged, reported):
    """The stream's losses are the Trainer's reported ones (older transformers, e.g. 4.41, round those to 4 places)."""
    return logged == pytest.approx(reported, rel=1e-6, abs=5.1e-5)


FIELDS = inspect.signature(transformers.TrainingArguments).parameters
NUM_ITEMS = "num_items_in_batch" in inspect.signature(transformers.Trainer.compute_loss).parameters


def step_lines(lines):
    return [s for s in lines if "event" not in s and "format" not in s]


def test_a_correct_trainer_run_checks_ok_and_logs_the_trainers_own_losses(tmp_path):
    # evaluation every 50 steps: its forwards (eval mode, no_grad) are not taken for training losses
    strategy = "eval_strategy" if "eval_strategy" in FIELDS else "evaluation_strategy"   # renamed in 4.41
    lines, logs = fit(tmp_path / "run.jsonl", Regressor(), **{strategy: "steps"}, eval_steps=50)
    steps = step_lines(lines)
    assert len(steps) == 150 and [s["step"] for s in steps] == list(range(150))
    assert {k: len(v) for k, v in steps[0]["biases"].items()} == {"net.0": 16, "net.2": 1}
    assert same_losses([s["loss"] for s in steps], [h["loss"] for h in logs])
    result = check_stream(tmp_path / "run.jsonl")
    assert result.exit == 0 and {d.verdict for d in result.layers.values()} == {"ok"}


def test_a_sign_bug_in_the_optimizer_passed_to_the_trainer_is_uphill_on_every_layer(tmp_path):
    model = Regressor()
    named = list(model.named_parameters())
    optimizer = torch.optim.SGD([{"params": [p for n, p in named if not n.endswith("bias")]},
                                 {"params": [p for n, p in named if n.endswith("bias")], "maximize": True}], lr=0.05)
    trainer(tmp_path / "run.jsonl", model, steps=200, optimizers=(optimizer, None)).train()
    result = check_stream(tmp_path / "run.jsonl")
    assert result.exit == 1
    assert {name: d.verdict for name, d in result.layers.items()} == {"net.0": "uphill", "net.2": "uphill"}


@pytest.mark.parametrize("model", [Regressor, pytest.param(ItemsRegressor, marks=pytest.mark.skipif(
    not NUM_ITEMS, reason="this transformers passes no num_items_in_batch (4.46 added it)"))],
    ids=["mean-loss", "num_items_in_batch"])
def test_gradient_accumulation_gives_one_line_per_optimizer_step_with_its_loss(tmp_path, model):
    lines, logs = fit(tmp_path / "run.jsonl", model(), steps=40, gradient_accumulation_steps=4)
    steps = step_lines(lines)
    assert len(steps) == 40 and not [e for e in lines if e.get("event") == "step_skipped"]
    # the loss of the 4 micro-batches together, as the Trainer reports it (the mean of per-batch means, or
    # the sum of losses already divided by the accumulated batch's count)
    assert same_losses([s["loss"] for s in steps], [h["loss"] for h in logs])
    assert check_stream(tmp_path / "run.jsonl").exit == 0


def test_gradient_clipping_by_max_grad_norm_does_not_cry_wolf(tmp_path):
    lines, logs = fit(tmp_path / "run.jsonl", Regressor(), max_grad_norm=0.05)
    clipped = [h["grad_norm"] > 0.05 for h in logs]      # the norm before clipping
    assert sum(clipped) > 0.9 * len(clipped)
    for s in step_lines(lines):   # the logged gradient is the clipped one the optimizer used
        assert sum(sum(g * g for g in v) for v in s["bias_grads"].values()) ** 0.5 <= 0.05 * (1 + 1e-5)
    result = check_stream(tmp_path / "run.jsonl")
    assert result.exit == 0 and {d.verdict for d in result.layers.values()} == {"ok"}


def test_only_the_world_process_zero_logs(tmp_path):
    callback = BiasmonTrainerCallback(tmp_path / "run.jsonl")
    model = Regressor()
    state = SimpleNamespace(is_world_process_zero=False, global_step=1)
    callback.on_train_begin(None, state, None, model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    callback.on_step_end(None, state, None)
    callback.on_train_end(None, state, None)
    assert callback.logger is None and not (tmp_path / "run.jsonl").exists()


def test_a_model_without_biases_is_a_one_line_error(tmp_path):
    with pytest.raises(BiasmonError, match="no trainable bias parameters") as caught:
        trainer(tmp_path / "run.jsonl", Regressor(bias=False), steps=5).train()
    assert "\n" not in str(caught.value)


class OwnLossTrainer(transformers.Trainer):
    """Computes the loss itself from the model's logits (the model is not given the labels)."""

    def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = mse(outputs["logits"], labels)
        return (loss, outputs) if return_outputs else loss


def test_a_loss_computed_outside_the_model_stops_the_run_with_a_one_line_error(tmp_path):
    run = trainer(tmp_path / "run.jsonl", Regressor(), steps=5)
    run = OwnLossTrainer(model=run.model, args=run.args, train_dataset=run.train_dataset,
                         callbacks=[BiasmonTrainerCallback(tmp_path / "run.jsonl")])
    with pytest.raises(BiasmonError, match="step 0: the model's output had no 'loss'.*compute_loss") as caught:
        run.train()
    assert "\n" not in str(caught.value)
    assert [json.loads(line)["format"] for line in (tmp_path / "run.jsonl").read_text().splitlines()] == \
        ["biasmon-stream"]   # closed: the header, no step


def test_no_optimizer_and_a_gradient_check_are_one_line_errors(tmp_path):
    callback = BiasmonTrainerCallback(tmp_path / "run.jsonl")
    state = SimpleNamespace(is_world_process_zero=True, global_step=0)
    with pytest.raises(BiasmonError, match="no optimizer at on_train_begin"):
        callback.on_train_begin(None, state, None, model=Regressor(), optimizer=None)
    with pytest.raises(BiasmonError, match="no gradient check"):
        BiasmonTrainerCallback(tmp_path / "run.jsonl", loss_fn=mse)


def test_a_tiny_gpt2_from_a_config_logs_every_parameter_sparsely_in_the_summary_form(tmp_path):
    """A transformers model (its loss normalized by num_items_in_batch on recent versions), AdamW with weight
    decay, the linear schedule, accumulation of 2: one line per 4 optimizer steps, each with its step's loss."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    model = transformers.GPT2LMHeadModel(config)
    starts = torch.randint(0, 32, (128,), generator=torch.Generator().manual_seed(0)).tolist()
    data = [{"input_ids": torch.arange(s, s + 16) % 32, "labels": torch.arange(s, s + 16) % 32} for s in starts]
    path = tmp_path / "run.jsonl"
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=120, per_device_train_batch_size=16,
                                          gradient_accumulation_steps=2, learning_rate=3e-3, weight_decay=0.01,
                                          logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True,
                                          use_cpu=True)
    run = transformers.Trainer(model=model, args=args, train_dataset=data,
                               callbacks=[BiasmonTrainerCallback(path, every=4, form="sums", weights=True)])
    run.train()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    steps = step_lines(lines)
    assert [s["step"] for s in steps] == list(range(0, 120, 4)) and {s["grad_steps"] for s in steps} == {4}
    assert "transformer.h.0.attn.c_attn" in steps[0]["bias_sums"] and "transformer.wte" in steps[0]["weight_sums"]
    logs = [h for h in run.state.log_history if "loss" in h]
    assert same_losses([s["loss"] for s in steps], [logs[s["step"]]["loss"] for s in steps])
    result = check_stream(path)
    assert result.exit == 0 and {d.verdict for d in result.layers.values()} == {"ok"}


class Crashing(Regressor):
    """Raises in its 61st training forward, as a run that crashes mid-way."""

    calls = 0

    def forward(self, x, labels=None):
        self.calls += self.training
        if self.calls > 60:
            raise RuntimeError("out of memory, say")
        return super().forward(x, labels)


def test_a_crash_in_training_loses_no_step_already_logged(tmp_path):
    # the Trainer has no exception event: the stream is not closed, but every line is flushed as written
    run = trainer(tmp_path / "run.jsonl", Crashing(), steps=150)
    with pytest.raises(RuntimeError, match="out of memory"):
        run.train()
    callback = next(c for c in run.callback_handler.callbacks if isinstance(c, BiasmonTrainerCallback))
    assert callback.logger is not None and not callback.logger.writer.closed   # read while still open
    lines = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert [s["step"] for s in step_lines(lines)] == list(range(60))
    result = check_stream(tmp_path / "run.jsonl")
    assert result.exit == 0 and {d.verdict for d in result.layers.values()} == {"ok"}
