"""biasmon for PyTorch Lightning: one callback, no other change to the training loop.

    from biasmon.lightning import BiasmonCallback

    trainer = lightning.Trainer(max_steps=300, callbacks=[BiasmonCallback("run.jsonl")])
    trainer.fit(model, train_loader)          # then: biasmon check run.jsonl

At the start of fit it attaches a TorchBiasLogger (biasmon/torch_logger.py) to the LightningModule and
its optimizer (`trainer.optimizers`; with several, the one at `optimizer_index`, logging the biases it
holds); after each optimizer step it logs the training step's loss (training_step's return value, or
its "loss"); at the end of fit (or on an exception) it closes the stream. Under DDP only global rank 0
logs. With accumulate_grad_batches=k there is one line per optimizer step, its loss the mean of its k
batches' (Lightning hands each on divided by k: multiplied back) and its gradient check on the k batches
joined (tuples of tensors: (inputs, targets)); a step a GradScaler skips
(precision="16-mixed") is a `step_skipped` event. `loss_fn` (and batches of (inputs, targets)) turns
on the gradient check: loss_fn(module(*inputs), *targets) must be the loss training_step computes.

Works with `lightning` (lightning.pytorch) and `pytorch_lightning` 2.x: the callback is an instance of
the Callback class of each one imported when BiasmonCallback is first used (of each one installed if
none is imported yet). Neither is needed to import biasmon.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .core.errors import BiasmonError
from .torch_logger import TorchBiasLogger, bias_parameters

PACKAGES = ("lightning.pytorch", "pytorch_lightning")


def callback_bases() -> tuple[type, ...]:
    """The Callback class of each Lightning package already imported, or else of each one installed (a
    one-line BiasmonError if none is)."""
    imported = [sys.modules[name].Callback for name in PACKAGES if hasattr(sys.modules.get(name), "Callback")]
    if imported:
        return tuple(imported)
    bases = []
    for name in PACKAGES:
        try:
            bases.append(importlib.import_module(name).Callback)
        except ImportError:
            continue
    if not bases:
        raise BiasmonError("biasmon.lightning needs PyTorch Lightning 2.x: pip install lightning "
                           "(or pytorch-lightning, or biasmon[lightning])")
    return tuple(bases)


class BiasmonLogic:
    """What BiasmonCallback does; mixed into the Lightning Callback class(es) by `BiasmonCallback`.

    path: the stream file; loss_fn, check_every, every, params, weights and the StreamWriter options
    (form, fd_tolerance, run_id, meta): as TorchBiasLogger's; optimizer_index: which of the module's
    optimizers to follow."""

    def __init__(self, path: Any, *, loss_fn: Callable | None = None, check_every: int = 100, every: int = 1,
                 params: Iterable | dict | None = None, optimizer_index: int = 0, **writer_options: Any) -> None:
        self.path, self.optimizer_index = path, optimizer_index
        self.options = dict(loss_fn=loss_fn, check_every=check_every, every=every, params=params, **writer_options)
        self.logger: TorchBiasLogger | None = None
        self._stepped = False   # on_before_optimizer_step ran since the last logged batch
        self._losses: list = []    # the losses of the batches since the last optimizer step (accumulation)
        self._batches: list = []   # and the batches, for the gradient check (only with loss_fn)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        optimizers = list(trainer.optimizers)
        if not 0 <= self.optimizer_index < len(optimizers):
            raise BiasmonError(f"BiasmonCallback: optimizer_index {self.optimizer_index}: the module has "
                               f"{len(optimizers)} optimizer(s) (configure_optimizers): 0 to {len(optimizers) - 1}")
        optimizer = optimizers[self.optimizer_index]
        options = dict(self.options)
        if len(optimizers) > 1 and options["params"] is None:   # the biases this optimizer moves
            held = {id(p) for group in optimizer.param_groups for p in group["params"]}
            options["params"] = {n: p for n, p in bias_parameters(pl_module).items() if id(p) in held}
        self.logger = TorchBiasLogger(pl_module, self.path, optimizer=optimizer, **options)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        self._stepped = self._stepped or (self.logger is not None and optimizer is self.logger.optimizer)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.logger is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is None and not self._stepped:
            return   # training_step returned None: Lightning skips the batch
        if loss is None and not self._losses:
            raise BiasmonError("BiasmonCallback: training_step returned no loss: return it (or a dict with "
                               "'loss') so that the step can be logged")
        if loss is not None:
            if getattr(pl_module, "automatic_optimization", True):   # Lightning hands on loss / accumulate_grad_batches
                loss = loss * getattr(trainer, "accumulate_grad_batches", 1)
            self._losses.append(loss.detach() if hasattr(loss, "detach") else loss)
            if self.options["loss_fn"] is not None:
                self._batches.append(batch)
        if not self._stepped:
            return   # accumulating gradients: no optimizer step on this batch
        self._stepped = False
        losses, batches, self._losses, self._batches = self._losses, self._batches, [], []
        batch = None
        if batches:   # joined only for a check due at this step
            batch = _joined(batches) if self.logger.writer.check_due(self.logger.step_index) else batches[-1]
        self.logger.step(_mean(losses), batch=batch)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self.close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.close()

    def close(self) -> None:
        """Detach from the optimizer and close the stream (at the end of fit; safe to call again)."""
        if self.logger is not None:
            self.logger.close()
            self.logger = None


def _mean(losses: list) -> Any:
    """The mean of a step's batch losses (tensors: one stacked mean, no read per batch; or numbers)."""
    if len(losses) == 1:
        return losses[0]
    import torch
    if all(isinstance(x, torch.Tensor) and x.dim() == 0 for x in losses):
        return torch.stack([x.to(losses[0].dtype) for x in losses]).mean()
    return sum(float(x) for x in losses) / len(losses)


def _joined(batches: list) -> Any:
    """The batches of one optimizer step as one batch, for a gradient check due at it: each (inputs,
    targets, ...) tuple's tensors joined along their first dimension (a mean loss over it is the mean of
    equal-sized batches' losses, its gradient the step's); the last batch where they cannot be joined
    (not tuples of tensors of one structure, shapes that differ past the first dimension: the check then
    says the loss at that batch is not the logged one)."""
    last = batches[-1]
    if len(batches) == 1 or not isinstance(last, (tuple, list)):
        return last
    import torch
    if not all(type(b) is type(last) and len(b) == len(last) and
               all(isinstance(t, torch.Tensor) and t.dim() > 0 for t in b) for b in batches):
        return last
    try:
        parts = [torch.cat(column) for column in zip(*batches)]
    except (RuntimeError, TypeError, ValueError):   # shapes that differ past the first dimension, devices, dtypes
        return last
    if hasattr(last, "_make"):   # a namedtuple
        return type(last)._make(parts)
    return type(last)(parts)


_classes: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    """BiasmonCallback is made on first use, from the Lightning package(s) installed."""
    if name != "BiasmonCallback":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _classes:
        _classes[name] = type("BiasmonCallback", (BiasmonLogic, *callback_bases()),
                              {"__doc__": BiasmonLogic.__doc__, "__module__": __name__})
    return _classes[name]
