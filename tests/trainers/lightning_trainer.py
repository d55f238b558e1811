"""A PyTorch Lightning trainer logged with biasmon's BiasmonCallback (tools/verdict_matrix.py): the 2-16-16-1
tanh MLP and data of torch_trainers.py as a LightningModule, SGD lr 0.05, minibatches of 16, on the CPU.
Options: the sign bug (bias_bug: the biases' param group maximizes), accumulate_grad_batches, the
gradient check (check=True), DDP over `devices` CPU processes (strategy="ddp": run as a script then).

    python tests/trainers/lightning_trainer.py OUT.jsonl [--steps N] [--devices D] [--bias-bug] [--check]
"""
from __future__ import annotations

import logging

import torch
import torch_trainers

try:
    import lightning.pytorch as pl
except ImportError:
    import pytorch_lightning as pl

from biasmon.lightning import BiasmonCallback

MSE = torch.nn.functional.mse_loss
for _name in (pl.__name__, "lightning.fabric", "lightning_fabric"):   # no "GPU available" banner per case
    logging.getLogger(_name).setLevel(logging.WARNING)


class Regressor(pl.LightningModule):
    def __init__(self, bias_bug: bool) -> None:
        super().__init__()
        self.net = torch_trainers.model()
        self.bias_bug = bias_bug

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return MSE(self(batch[0]), batch[1])

    def configure_optimizers(self):
        named = list(self.net.named_parameters())
        return torch.optim.SGD([{"params": [p for n, p in named if not n.endswith("bias")]},
                                {"params": [p for n, p in named if n.endswith("bias")], "maximize": self.bias_bug}],
                               lr=0.05)


def train(path, steps: int = 300, bias_bug: bool = False, accumulate: int = 1, check: bool = False,
          devices: int = 1) -> None:
    """Fit for `steps` optimizer steps and log to `path` (devices > 1: DDP over that many CPU processes,
    which Lightning starts by running this script again: call it from main())."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(256, 2, generator=gen) * 3 - 1.5
    y = torch.sin(2 * x[:, :1]) + 0.5 * x[:, 1:] ** 2
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=True,
                                         generator=gen)
    callback = BiasmonCallback(path, loss_fn=MSE if check else None, check_every=50)
    strategy = {"strategy": "ddp"} if devices > 1 else {}
    trainer = pl.Trainer(accelerator="cpu", devices=devices, **strategy, max_steps=steps, accumulate_grad_batches=accumulate,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[callback])
    trainer.fit(Regressor(bias_bug), loader)


def main(argv: list[str] | None = None) -> None:
    """python lightning_trainer.py OUT.jsonl [--steps N] [--devices D] [--bias-bug] [--check]"""
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--bias-bug", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    train(args.out, args.steps, args.bias_bug, check=args.check, devices=args.devices)


if __name__ == "__main__":
    main()
