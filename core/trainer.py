"""The trainer: an iterator of immutable records, deterministic for a preset and seed.

Each step computes the loss and all gradients first (network.gradients), then the updates (SGD for
weights, the preset's strategy for biases), then applies them: gradient and update are both observed.
"""
from __future__ import annotations

import itertools
import math
import uuid
from dataclasses import dataclass, field

import numpy as np

from . import strategies
from .data import load_file, generate
from .diagnostics import Diagnoser, Layout, Thresholds, finite_difference_errors
from .network import Network
from .presets import Preset
from .records import Event, LayerVectors, StepRecord

BLOWUP_FACTOR = 1e6  # a loss this many times the first step's (or 1.0, if larger) counts as diverged
_run_counter = itertools.count(1)


def build_network(preset: Preset) -> Network:
    """The preset's network, initialised from its seed (weights and biases)."""
    net_cfg = preset.network
    sizes = net_cfg["layers"]
    acts = [net_cfg["activation"]] * (len(sizes) - 2) + [net_cfg["output"]]
    strategy = strategies.get(preset.bias["strategy"])
    net = Network(sizes, acts, loss=net_cfg["loss"], dtype=net_cfg["dtype"], has_biases=strategy.has_biases)
    net.initialise(np.random.default_rng(preset.train["seed"]), net_cfg["weight_init"], net_cfg["bias_init"])
    return net


def load_data(preset: Preset):
    d, sizes, dtype = preset.data, preset.network["layers"], preset.network["dtype"]
    if d["path"] is not None:
        return load_file(d["path"], d["targets"], d["features"], sizes[0], sizes[-1], d["seed"],
                         d["val_fraction"], dtype)
    return generate(d["set"], d["samples"], d["noise"], sizes[-1], d["seed"], d["val_fraction"], dtype)


class Trainer:
    """Trains a preset's network step by step. `step()` returns that step's records; iterating yields
    records until `steps` are done or the run diverged. flip_sign and bias_lr_scale can change live."""

    def __init__(self, preset: Preset, *, seed=None, steps=None, diagnostics=True, thresholds=None):
        self.preset = preset.with_overrides(steps=steps, seed=seed)
        self.diagnostics = diagnostics
        momentum = self.preset.train["momentum"]
        # The trainer knows its optimizer: SGD follows g, heavy-ball momentum a running average of g
        # with beta = momentum. The diagnoser need not try other averages (as it must for a stream).
        self.thresholds = thresholds or Thresholds(momentum_betas=(momentum,) if momentum else ())
        self.data = load_data(self.preset)
        self.reset()

    # --- state -----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to step 0 with the preset's initial network and settings; a new run id."""
        p = self.preset
        self.run_id = f"{p.name}-s{p.train['seed']}-{next(_run_counter)}-{uuid.uuid4().hex[:6]}"
        self.net = build_network(p)
        self.strategy = strategies.get(p.bias["strategy"])
        self.layout = Layout(tuple(self.net.layer_names), tuple(self.net.sizes[1:])) if self.strategy.has_biases \
            else Layout((), ())
        self.flip_sign = bool(p.bias["flip_sign"])
        self.bias_lr_scale = 1.0
        self.step_index = 0
        self.done = False
        self.first_loss = None
        self._initial_norms = self._layer_norms()
        self._vel_w = np.zeros_like(self.net.w_flat)
        self._vel_b = np.zeros_like(self.net.b_flat)
        self._check_requested = False
        self._announced = {"flip_sign": self.flip_sign, "bias_lr_scale": 1.0}
        self.diagnoser = Diagnoser(self.layout, self.thresholds) if self.diagnostics else None
        self._untrained_cause = "network has no biases" if not self.strategy.has_biases else (
            f"bias training starts at step {p.bias['from_step']}" if self.strategy.trains_biases
            else "strategy 'frozen' never moves the biases")
        self._last_val = None

    @property
    def steps(self) -> int:
        return self.preset.train["steps"]

    def header(self) -> dict:
        """The stream's first line for this run."""
        from . import __version__
        return {"format": "biasmon-stream", "version": 1, "run_id": self.run_id, "preset": self.preset.to_json(),
                "layers": [{"name": n, "size": s} for n, s in zip(self.layout.names, self.layout.sizes)],
                "biasmon": __version__}

    def request_gradient_check(self) -> None:
        """Run a finite-difference check of every bias entry at the next step."""
        self._check_requested = True

    # --- stepping --------------------------------------------------------------------------------
    def __iter__(self):
        """Records until the run ends, one step at a time: stop reading and the trainer stops with you.
        advance(n) is faster where a few steps' delay is fine (record, compare and the TUI use it)."""
        while not self.done:
            yield from self.step()

    def step(self) -> list:
        """One training step; its records: events first, then the StepRecord, then verdict changes."""
        return self.advance(1)

    def advance(self, n: int) -> list:
        """Up to n training steps (fewer when the run ends): the records that n step() calls give, in order.
        The n steps' diagnostics are taken together (Diagnoser.observe_block), which costs less per step.
        Live settings (flip_sign, bias_lr_scale, a requested gradient check) are read before each step.
        If a step raises, the steps this call trained before it are not reported."""
        if self.done:
            return []
        with np.errstate(all="ignore"):  # a diverging run ends with a `diverged` event, not warnings
            trained = []
            while len(trained) < n and not self.done:
                trained.append(self._train_step())
            return self._records(trained)

    def _train_step(self) -> "_Trained":
        """Computes the loss and gradients, then the updates, and applies them (warnings already off)."""
        p, net, t = self.preset, self.net, self.step_index
        before = self._setting_events(t)
        x, y = self.data.x_train, self.data.y_train
        grads = net.gradients(x, y)
        val_loss = net.loss_at(self.data.x_val, self.data.y_val) if len(self.data.x_val) else None
        loss = grads.loss
        if self.first_loss is None:
            self.first_loss = loss
        if not math.isfinite(loss) or loss > BLOWUP_FACTOR * max(1.0, self.first_loss):
            self.done = True
            return _Trained(before + [self._diverged(t, loss)])
        lr, mom, wd = p.train["lr"], p.train["momentum"], p.train["weight_decay"]
        d_w = grads.w_flat + wd * net.w_flat if wd else grads.w_flat
        if mom:
            self._vel_w = mom * self._vel_w + d_w
            d_w = self._vel_w
        u_w = -lr * d_w
        trained = self.strategy.trains_biases and t >= p.bias["from_step"]
        b = net.b_flat.copy()
        g_b = grads.b_flat
        if trained:
            d_b = g_b + wd * b if (wd and self.strategy.decays_biases) else g_b
            if mom:
                self._vel_b = mom * self._vel_b + d_b
                d_b = self._vel_b
            ctx = strategies.Context(t, lr, loss, val_loss)
            u_b = self.strategy.update(d_b, ctx, **p.bias_params) * self.bias_lr_scale
            if self.flip_sign:
                u_b = -u_b
        else:
            u_b = np.zeros_like(b)
        step = _Trained(before, t, loss, val_loss, b, g_b, u_b, trained)
        if self.diagnoser is not None:
            every = p.diagnostics["grad_check_every"]
            if self.layout.names and (self._check_requested or (every and t % every == 0)):
                check = self._gradient_check(t, b, g_b)
                step.before.append(check)
                step.fd_errors = check.data["errors"]
            step.weights_pred = float(grads.w_flat @ u_w)
        net.w_flat += u_w
        net.b_flat += u_b
        self.step_index = t + 1
        if not (math.isfinite(float(net.w_flat @ net.w_flat)) and math.isfinite(float(net.b_flat @ net.b_flat))):
            self.done = True
            step.after.append(self._diverged(t + 1, math.nan))
        elif self.step_index >= self.steps:
            self.done = True
        return step

    def _records(self, trained: list) -> list:
        """The records of steps trained in a row, with their diagnostics."""
        observed = [s for s in trained if s.b is not None]
        diagnosed = self._diagnose(observed)
        out = []
        for s in trained:
            out += s.before
            if s.b is not None:
                diag, loss_change, verdict_events = next(diagnosed)
                out.append(StepRecord(s.t, s.loss, s.val_loss, self._split(s.b), self._split(s.g), self._split(s.u),
                                      diag, loss_change, bias_trained=s.trained))
                out.extend(Event.from_json(e) for e in verdict_events)
            out += s.after
        return out

    def _diagnose(self, steps: list):
        """An iterator of (diag, loss_change, verdict events) for each step."""
        if self.diagnoser is None:
            return iter([(None, None, [])] * len(steps))
        frozen = self.strategy.name == "frozen"  # judged as training: its biases are meant to move
        rows = [(s.t, s.loss, s.b, s.g, s.u, s.trained or frozen, self._untrained_cause, s.fd_errors,
                 s.weights_pred) for s in steps]
        return iter(self.diagnoser.observe_block(rows))  # one row (step()) takes observe()'s single-step path

    def _split(self, flat):
        return LayerVectors(flat, self.layout)

    def _setting_events(self, t):
        events = []
        for key, value in (("flip_sign", self.flip_sign), ("bias_lr_scale", self.bias_lr_scale)):
            if self._announced[key] != value:
                self._announced[key] = value
                events.append(Event(key, t, {key: value}))
        return events

    def _gradient_check(self, t, b, g_b):
        requested, self._check_requested = self._check_requested, False
        net, x, y = self.net, self.data.x_train, self.data.y_train
        if net.dtype != np.float64:
            ref = Network(net.sizes, net.activations, net.loss, "float64", net.has_biases)
            ref.w_flat[...] = net.w_flat
            x, y = x.astype(np.float64), y.astype(np.float64)
        else:
            ref = net
        errors = finite_difference_errors(lambda bb: ref.loss_at(x, y, bb), b, g_b, self.layout,
                                          tolerance=self.thresholds.fd_tolerance)
        return Event("gradient_check", t, {"errors": errors, **({"requested": True} if requested else {})})

    def _layer_norms(self):
        return [math.sqrt(float(w.ravel() @ w.ravel()) + float(b @ b)) for w, b in zip(self.net.weights, self.net.biases)]

    def _diverged(self, t, loss):
        """The diverged event: the first layer (in forward order) whose parameters went non-finite, or,
        when the loss blew up first, the layer whose parameters grew the most since step 0."""
        layer = None
        for name, w, b in zip(self.net.layer_names, self.net.weights, self.net.biases):
            if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
                layer = name
                break
        data = {"layer": layer}
        if layer:
            data["reason"] = "parameters became non-finite"
        else:
            with np.errstate(all="ignore"):
                growth = [now / max(first, 1e-12) for now, first in zip(self._layer_norms(), self._initial_norms)]
            data["grew_most"] = self.net.layer_names[int(np.nanargmax(growth))] if not np.all(np.isnan(growth)) else None
            data["reason"] = "loss is not finite" if not math.isfinite(loss) else f"loss blew up to {loss:.3g}"
        return Event("diverged", t, data)


@dataclass
class _Trained:
    """One trained step, waiting for its diagnostics: b (n_biases,) at which loss and g were taken, u applied.
    b is None when the run diverged before the update (then `before` ends with the diverged event)."""

    before: list                       # events before the step's record (settings, gradient check)
    t: int = 0
    loss: float = math.nan
    val_loss: float | None = None
    b: np.ndarray | None = None
    g: np.ndarray | None = None
    u: np.ndarray | None = None
    trained: bool = False
    fd_errors: dict | None = None      # this step's gradient check
    weights_pred: float = 0.0          # the weights' part of the first-order loss change, g_w . u_w
    after: list = field(default_factory=list)  # a diverged event after the update
