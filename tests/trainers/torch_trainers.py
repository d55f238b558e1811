"""Small PyTorch trainers, correct and buggy, logged with biasmon's TorchBiasLogger (tools/verdict_matrix.py).

A 2-16-16-1 tanh MLP on y = sin(2 x0) + 0.5 x1^2 (256 samples), MSE, minibatches of 16 drawn per epoch
without replacement (batch=0: full batch). Options: the optimizer (sgd, momentum, nesterov, adam, adamw,
rmsprop), a StepLR schedule, clip_grad_norm_, dropout, a normalisation layer after the first Linear
(batch | layer), the sign bug (maximize=True; bias_group="flip": the biases alone maximize), lr 0 for the
biases (bias_group="zero"), the biases' own lr, a third of the others' (bias_group="lr"), a detached bias
(the second Linear's), a custom tanh with a wrong backward, the gradient check (check=True), sparse logging
(every=k), float16 autocast with a GradScaler whose first scale overflows, so that its first steps are
skipped (amp=True), gradient accumulation over `accumulate` micro-batches per optimizer step, the sign
bug in the weights alone (bias_group="flip_weights"), logging the weights too and the summary form, and
the output layer's gradient zeroed before every optimizer step (zeroed=True: it never trains; "all": every
gradient, zero_grad() between backward() and step()), and the middle layer's units saturated from step
`saturate` on (its bias set to -50: tanh is -1 exactly there, so no gradient passes it or reaches below it).
"""
from __future__ import annotations

import torch

from biasmon.torch_logger import TorchBiasLogger

OPTIMIZERS = {
    "sgd": lambda p, maximize: torch.optim.SGD(p, lr=0.05, maximize=maximize),
    "momentum": lambda p, maximize: torch.optim.SGD(p, lr=0.02, momentum=0.9, maximize=maximize),
    "nesterov": lambda p, maximize: torch.optim.SGD(p, lr=0.02, momentum=0.9, nesterov=True, maximize=maximize),
    "adam": lambda p, maximize: torch.optim.Adam(p, lr=0.01, maximize=maximize),
    "adamw": lambda p, maximize: torch.optim.AdamW(p, lr=0.01, weight_decay=0.01, maximize=maximize),
    "rmsprop": lambda p, maximize: torch.optim.RMSprop(p, lr=0.003, maximize=maximize),
}


class WrongTanh(torch.autograd.Function):
    """tanh whose backward forgets tanh's derivative."""

    @staticmethod
    def forward(ctx, x):
        return torch.tanh(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


class Tanh(torch.nn.Module):
    def __init__(self, wrong: bool = False) -> None:
        super().__init__()
        self.wrong = wrong

    def forward(self, x):
        return WrongTanh.apply(x) if self.wrong else torch.tanh(x)


class DetachedLinear(torch.nn.Linear):
    """A Linear whose bias is added detached from the graph: no gradient ever reaches it."""

    def forward(self, x):
        return torch.nn.functional.linear(x, self.weight, self.bias.detach())


def model(norm: str | None = None, dropout: float = 0.0, detached: bool = False, wrong: bool = False):
    torch.manual_seed(0)
    layers = [torch.nn.Linear(2, 16)]
    if norm:
        layers.append(torch.nn.BatchNorm1d(16) if norm == "batch" else torch.nn.LayerNorm(16))
    layers += [Tanh(wrong), torch.nn.Dropout(dropout), (DetachedLinear if detached else torch.nn.Linear)(16, 16),
               Tanh(), torch.nn.Linear(16, 1)]
    return torch.nn.Sequential(*layers)


def optimizer(net, opt: str, maximize: bool, bias_group: str | None):
    if bias_group is None:
        return OPTIMIZERS[opt](net.parameters(), maximize)
    biases = [p for n, p in net.named_parameters() if n.endswith("bias")]
    others = [p for n, p in net.named_parameters() if not n.endswith("bias")]
    if bias_group == "flip_weights":   # the sign bug in the weights' update alone
        return OPTIMIZERS[opt]([{"params": others, "maximize": True}, {"params": biases}], maximize)
    base_lr = OPTIMIZERS[opt]([torch.zeros(1)], maximize).defaults["lr"]
    group = {"flip": {"params": biases, "maximize": True}, "zero": {"params": biases, "lr": 0.0},
             "lr": {"params": biases, "lr": base_lr / 3}}[bias_group]
    return OPTIMIZERS[opt]([{"params": others}, group], maximize)


def batches(x, y, size: int, gen):
    """Endless minibatches, an epoch at a time, drawn without replacement (size 0: the full batch)."""
    while True:
        if not size:
            yield x, y
            continue
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x) - size + 1, size):
            pick = order[i:i + size]
            yield x[pick], y[pick]


def train(path, steps: int = 300, opt: str = "sgd", batch: int = 16, schedule: bool = False, clip: float | None = None,
          dropout: float = 0.0, norm: str | None = None, maximize: bool = False, bias_group: str | None = None,
          detached: bool = False, wrong: bool = False, check: bool = False, every: int = 1, amp: bool = False,
          accumulate: int = 1, weights: bool = False, form: str = "vectors", zeroed: bool | str = False,
          saturate: int = 0) -> None:
    """Train and log one case to `path` (weights: log the weights too; form: the stream's, vectors or sums)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(256, 2, generator=gen) * 3 - 1.5
    y = torch.sin(2 * x[:, :1]) + 0.5 * x[:, 1:] ** 2
    net = model(norm, dropout, detached, wrong)
    optim = optimizer(net, opt, maximize, bias_group)
    sched = torch.optim.lr_scheduler.StepLR(optim, step_size=100, gamma=0.5) if schedule else None
    loss_fn = torch.nn.functional.mse_loss
    data = batches(x, y, batch, gen)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 24, enabled=amp)
    with TorchBiasLogger(net, path, optimizer=optim, loss_fn=loss_fn if check else None, check_every=50,
                         every=every, weights=weights, form=form) as log:
        for step in range(steps):
            xb, yb = next(data)
            if saturate and step == saturate:   # its units die: a bias pushed far below tanh's working range
                with torch.no_grad():
                    [m for m in net if isinstance(m, torch.nn.Linear)][1].bias.fill_(-50.0)
            optim.zero_grad()
            losses = []
            for xm, ym in zip(xb.chunk(accumulate), yb.chunk(accumulate)):
                with torch.autocast("cpu", dtype=torch.float16, enabled=amp):
                    loss = loss_fn(net(xm), ym)
                scaler.scale(loss / accumulate).backward()
                losses.append(loss.detach().float())
            if zeroed == "all":   # the bug: zero_grad() between backward() and step()
                optim.zero_grad(set_to_none=False)
            elif zeroed:   # the bug: the output layer's gradient wiped before the step
                net[-1].weight.grad.zero_()
                net[-1].bias.grad.zero_()
            if clip:
                scaler.unscale_(optim)
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            scaler.step(optim)
            scaler.update()
            if sched:
                sched.step()
            log.step(torch.stack(losses).mean(), batch=(xb, yb))
