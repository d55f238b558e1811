"""biasmon for the Hugging Face Trainer: one callback, no other change to the training code.

    from biasmon.huggingface import BiasmonTrainerCallback

    trainer = Trainer(model=model, args=args, train_dataset=data,
                      callbacks=[BiasmonTrainerCallback("run.jsonl")])
    trainer.train()                           # then: biasmon check run.jsonl

At `on_train_begin` (the Trainer has made its optimizer by then, and passes it and the model to every
callback) it attaches a TorchBiasLogger (biasmon/torch_logger.py) to the model and to the torch optimizer
inside the Trainer's (accelerate's AcceleratedOptimizer wraps it), and a forward hook on the model that
reads the loss of each training forward. The logger's optimizer hooks take the biases and their `.grad`
just before optimizer.step(), so after the Trainer's gradient clipping (max_grad_norm) and the sum of
the micro-batches of gradient accumulation, and the update the step applied. At `on_step_end`, which the
Trainer calls once per optimizer step, it writes the line, so gradient_accumulation_steps=k gives one
line per optimizer step; the line's `step` is the Trainer's global_step - 1 (0 first). At `on_train_end`
it closes the stream. Only the world's process zero (state.is_world_process_zero) logs; under DDP the
`.grad` it sees is the mean over the processes, the loss its own batch's (as TorchBiasLogger's docstring
says; not tested with the Trainer here).

The loss: Trainer callbacks are never given the step's loss (its logs hold a mean over `logging_steps`),
so the callback reads what the model's forward returns in training mode with gradients on: its "loss"
(a dict or ModelOutput) or its first element (a tuple), as Trainer.compute_loss takes it. Over the
micro-batches of one optimizer step the line's loss is their mean, or their sum where the Trainer passed
`num_items_in_batch` to the model (it then divides by the whole accumulated batch's count): in both cases
the loss whose gradient is the accumulated `.grad` the optimizer used, at the parameters before the
step, which is what the check's loss-change test compares the predicted change with. Forwards in eval
mode or under no_grad (evaluation during training) are not read. A loss computed outside the model
(`compute_loss_func`, `label_smoothing_factor`, an overridden compute_loss) is not seen: if the model
returns no loss the callback stops the run with a BiasmonError; if it also returns a loss of its own, that
one is logged (a callback cannot tell the difference).

There is no exception event in the Trainer's callbacks: if training raises, the stream is not closed,
but every line written so far is flushed (StreamWriter), so a crash loses at most, with every=k, the
steps of the unfinished span; the next train() with the same callback detaches the previous logger first.

Options: every, params, weights and the StreamWriter options (form, run_id, meta), as TorchBiasLogger's.
No gradient check (`loss_fn`): the Trainer's batches are keyword dicts, which the check cannot replay.
transformers (and accelerate, which its Trainer needs) are imported only when the callback is first
used: `pip install biasmon[huggingface]`.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any

from .core.errors import BiasmonError
from .torch_logger import TorchBiasLogger

PACKAGE = "transformers"


def callback_base() -> type:
    """transformers.TrainerCallback (a one-line BiasmonError if transformers is not installed)."""
    try:
        return importlib.import_module(PACKAGE).TrainerCallback
    except ImportError:
        raise BiasmonError("biasmon.huggingface needs transformers and accelerate: "
                           "pip install biasmon[huggingface]") from None


class BiasmonTrainerLogic:
    """What BiasmonTrainerCallback does; mixed into transformers.TrainerCallback by `BiasmonTrainerCallback`.

    path: the stream file; every, params, weights and the StreamWriter options (form, run_id, meta): as
    TorchBiasLogger's. See the module docstring."""

    def __init__(self, path: Any, *, every: int = 1, params: Iterable | dict | None = None, weights: bool = False,
                 **writer_options: Any) -> None:
        if "loss_fn" in writer_options or "check_every" in writer_options:
            raise BiasmonError("BiasmonTrainerCallback has no gradient check (loss_fn, check_every): the Trainer's "
                               "batches are keyword dicts it cannot replay; use TorchBiasLogger in a plain loop")
        self.path = path
        self.options = dict(every=every, params=params, weights=weights, **writer_options)
        self.logger: TorchBiasLogger | None = None
        self._hook = None
        self._losses: list = []        # the training forwards' losses since the last logged step
        self._normalized = False       # the model was given num_items_in_batch: its losses add up
        self._no_loss: str | None = None   # what a training forward returned instead of a loss

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                       **kwargs: Any) -> None:
        self.close()   # a previous train() that raised left its logger attached
        if not state.is_world_process_zero:
            return
        if model is None:
            raise BiasmonError("BiasmonTrainerCallback: the Trainer passed no model to on_train_begin")
        if optimizer is None:
            raise BiasmonError("BiasmonTrainerCallback: the Trainer has no optimizer at on_train_begin (give "
                               "Trainer(optimizers=(optimizer, scheduler)) or let it create one)")
        inner = getattr(optimizer, "optimizer", None)   # accelerate's AcceleratedOptimizer wraps the torch one
        if inner is not None and hasattr(inner, "register_step_pre_hook"):
            optimizer = inner
        self.logger = TorchBiasLogger(model, self.path, optimizer=optimizer, **self.options)
        self._losses, self._normalized, self._no_loss = [], False, None
        self._hook = self.logger.model.register_forward_hook(self._on_forward, with_kwargs=True)

    def _on_forward(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        """Keep a training forward's loss (as Trainer.compute_loss takes it from the output)."""
        import torch
        if not module.training or not torch.is_grad_enabled():
            return
        if isinstance(output, Mapping):
            loss = output.get("loss")
        else:
            loss = output[0] if isinstance(output, (tuple, list)) and output else None
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self._losses.append(loss.detach().reshape(()))
            self._normalized = kwargs.get("num_items_in_batch") is not None
        else:
            self._no_loss = ("no 'loss'" if isinstance(output, Mapping) else
                             f"a first element that is not a loss ({type(loss).__name__}"
                             f"{tuple(loss.shape) if isinstance(loss, torch.Tensor) else ''})")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.logger is None:
            return
        losses, self._losses = self._losses, []
        step = state.global_step - 1
        if not losses:
            problem = self._no_loss or "no training forward of the model was seen"
            self.close()
            raise BiasmonError(f"BiasmonTrainerCallback: step {step}: the model's output had {problem}: the logged "
                               "loss is read from the model's output (compute_loss_func, label_smoothing_factor "
                               "or an overridden compute_loss compute it elsewhere and are not supported)")
        total = sum(losses[1:], losses[0])
        self.logger.step(total if self._normalized else total / len(losses), step=step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.close()

    def close(self) -> None:
        """Detach from the model and the optimizer and close the stream (safe to call again)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.logger is not None:
            self.logger.close()
            self.logger = None


_classes: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    """BiasmonTrainerCallback is made on first use, from transformers' TrainerCallback."""
    if name != "BiasmonTrainerCallback":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _classes:
        _classes[name] = type("BiasmonTrainerCallback", (BiasmonTrainerLogic, callback_base()),
                              {"__doc__": BiasmonTrainerLogic.__doc__, "__module__": __name__})
    return _classes[name]
