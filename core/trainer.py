"""The trainer: an iterator of immutable records, deterministic for a preset and seed.

Each step computes the loss and all gradients first (Network.gradients), then the updates
(core/update.py: `UpdateRule.updates`), then applies them: gradient and update are both observed.
"""
from __future__ import annotations

import itertools
import math
import uuid
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from . import __version__, strategies
from .data import DataSet, generate, load_file
from .diagnoser import Diagnoser, Observation, WeightStep
from .gradcheck import check_gradient
from .layout import Layout
from .network import Network, dot
from .presets import Preset
from .records import Event, StepRecord
from .stream import header
from .summary_form import average_names
from .threads import ThreadChooser
from .update import UpdateRule
from .verdicts import Thresholds, loss_diverged

_run_counter = itertools.count(1)
HELD_ENTRIES = 1 << 20   # advance() diagnoses its steps once they hold this many vector entries (biases + weights)


def build_network(preset: Preset) -> Network:
    """The preset's network, initialised from its seed (weights and biases)."""
    net_cfg = preset.network
    sizes = net_cfg["layers"]
    acts = [net_cfg["activation"]] * (len(sizes) - 2) + [net_cfg["output"]]
    strategy = strategies.get(preset.bias["strategy"])
    net = Network(sizes, acts, loss=net_cfg["loss"], dtype=net_cfg["dtype"], has_biases=strategy.has_biases)
    net.initialise(np.random.default_rng(preset.train["seed"]), net_cfg["weight_init"], net_cfg["bias_init"])
    return net


def load_data(preset: Preset) -> DataSet:
    """The preset's data set, split into training and validation."""
    d, sizes, dtype = preset.data, preset.network["layers"], preset.network["dtype"]
    if d["path"] is not None:
        return load_file(d["path"], d["targets"], d["features"], sizes[0], sizes[-1], d["seed"],
                         d["val_fraction"], dtype, hidden=sizes[1:-1])
    return generate(d["set"], d["samples"], d["noise"], sizes[-1], d["seed"], d["val_fraction"], dtype,
                    inputs=sizes[0])


@dataclass
class TrainedStep:
    """One trained step, waiting for its diagnosis: the events before its record, the step itself (None
    when the run diverged before the update), and the events after it."""

    before: list[Event]
    observation: Observation | None = None
    after: list[Event] = field(default_factory=list)
    weights: Observation | None = None      # the same step's weights, if they are diagnosed


class Trainer:
    """Trains a preset's network step by step. `step()` returns that step's records; iterating yields
    records until `steps` are done or the run diverged. flip_sign, flip_weight_sign and bias_lr_scale can
    change live. weights: diagnose each layer's weights too (with diagnostics). step_detail False: a
    step's per-layer diagnoses (StepRecord.diag, weight_diag) only on the last record of each block
    diagnosed (each advance() call's last step, and on big nets every HELD_ENTRIES entries' worth of
    steps), verdict events as always: what `record` (in the summary form) and `compare` need, for less."""

    def __init__(self, preset: Preset, *, seed: int | None = None, steps: int | None = None,
                 diagnostics: bool = True, thresholds: Thresholds | None = None, weights: bool = True,
                 step_detail: bool = True) -> None:
        self.preset = preset.with_overrides(steps=steps, seed=seed)
        self.diagnostics = diagnostics
        self.diagnose_weights = diagnostics and weights
        self.step_detail = step_detail
        momentum = self.preset.train["momentum"]
        # The trainer knows its optimizer: SGD follows g, heavy-ball momentum a running average of g
        # with beta = momentum. The diagnoser need not try other averages (as it must for a stream).
        self.thresholds = thresholds or Thresholds(momentum_betas=(momentum,) if momentum else ())
        self.data = load_data(self.preset)
        # BLAS threads for the steps, chosen by timing them, if the gradient's bits do not depend on them
        self._threads = ThreadChooser(lambda: self.net.gradients(self.data.x_train, self.data.y_train).w_flat)
        self.reset()

    # --- state -----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to step 0 with the preset's initial network and settings; a new run id."""
        p = self.preset
        self.run_id = f"{p.name}-s{p.train['seed']}-{next(_run_counter)}-{uuid.uuid4().hex[:6]}"
        self.net = build_network(p)
        self.strategy = strategies.get(p.bias["strategy"])
        has_biases = self.strategy.has_biases
        self.layout = Layout(tuple(self.net.layer_names), tuple(self.net.sizes[1:])) if has_biases else Layout((), ())
        self.rule = UpdateRule(p.train["lr"], p.train["momentum"], p.train["weight_decay"], self.strategy,
                               p.bias_params, np.zeros_like(self.net.w_flat), np.zeros_like(self.net.b_flat),
                               flip_sign=bool(p.bias["flip_sign"]), flip_weight_sign=bool(p.weights["flip_sign"]))
        self.weight_layout = Layout(tuple(self.net.layer_names), tuple(w.size for w in self.net.weights))
        self.step_index = 0
        self.done = False
        self.first_loss = None
        self._initial_norms = self._layer_norms()
        self._check_requested = False
        self._check_every = p.diagnostics["grad_check_every"] if has_biases or self.diagnose_weights else 0
        self._announced = {"flip_sign": self.flip_sign, "flip_weight_sign": self.flip_weight_sign, "bias_lr_scale": 1.0}
        off_cause = "network has no biases" if not has_biases else f"bias training starts at step {p.bias['from_step']}"
        self._judge_frozen = self.strategy.name == "frozen"   # judged as training: its biases are meant to move
        self.diagnoser = Diagnoser(self.layout, self.thresholds, off_cause) \
            if self.diagnostics else None
        self.weight_diagnoser = Diagnoser(self.weight_layout, self.thresholds, param="weight") \
            if self.diagnose_weights else None
        for d in (self.diagnoser, self.weight_diagnoser):
            if d is not None:
                d.every_step = self.step_detail
        # steps whose vectors advance() holds before diagnosing them (a block's diagnoses are those of its
        # steps one by one): all of a block's on small nets, a few on big ones, so that memory stays small
        entries = len(self.net.b_flat) + (len(self.net.w_flat) if self.diagnose_weights else 0)
        self._held_steps = max(1, HELD_ENTRIES // max(entries, 1))

    flip_sign = property(lambda self: self.rule.flip_sign, lambda self, on: setattr(self.rule, "flip_sign", on),
                         doc="the story's bug: biases move along +gradient from the next step on")
    flip_weight_sign = property(lambda self: self.rule.flip_weight_sign,
                                lambda self, on: setattr(self.rule, "flip_weight_sign", on),
                                doc="the same bug in the weights: they move along +gradient from the next step on")
    bias_lr_scale = property(lambda self: self.rule.bias_lr_scale,
                             lambda self, x: setattr(self.rule, "bias_lr_scale", x),
                             doc="a live multiplier of every bias update")

    @property
    def steps(self) -> int:
        return self.preset.train["steps"]

    def header(self, form: str = "vectors") -> dict:
        """The stream's first line for this run, its records written in `form` (vectors, or sums: the
        summary form, whose running averages are the diagnoser's)."""
        fields = {"preset": self.preset.to_json(),
                  "layers": self.layout.to_json()}
        if self.diagnose_weights:
            fields["weights"] = self.weight_layout.to_json()
        if form == "sums":
            fields["form"] = "sums"
            fields["averages"] = average_names(self.thresholds.momentum_betas)
            if self.net.dtype == np.float32:
                fields["grad_dtype"] = "float32"
        version = 2 if self.diagnose_weights or form == "sums" else 1
        return header(self.run_id, version, **fields, biasmon=__version__)

    def request_gradient_check(self) -> None:
        """Run a finite-difference check of the biases (and the weights, if diagnosed) at the next step."""
        self._check_requested = bool(self.layout.names) or self.diagnose_weights

    # --- stepping --------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[StepRecord | Event]:
        """Records until the run ends, one step at a time: stop reading and the trainer stops with you.
        advance(n) is faster where a few steps' delay is fine (record, compare and the TUI use it)."""
        while not self.done:
            yield from self.step()

    def step(self) -> list:
        """One training step; its records: events first, then the StepRecord, then verdict changes."""
        return self.advance(1)

    def block_steps(self, most: int) -> int:
        """Steps to ask of one advance() call, at most `most`: fewer on a big net, whose records would
        otherwise hold too many vectors at once (each step's parameters, gradient and update): as many as
        advance() diagnoses together, HELD_ENTRIES entries' worth."""
        return max(1, min(most, self._held_steps))

    def advance(self, n: int) -> list:
        """Up to n training steps (fewer when the run ends): the records that n step() calls give, in order.
        The n steps are diagnosed together (Diagnoser.observe), which costs less per step. Live settings
        (flip_sign, bias_lr_scale, a requested gradient check) are read before each step. If a step
        raises, the steps this call trained before it are not reported."""
        if self.done:
            return []
        with np.errstate(all="ignore"):  # a diverging run ends with a `diverged` event, not warnings
            out, trained, done = [], [], 0
            with self._threads.block():
                while done < n and not self.done:
                    trained.append(self._threads.timed(self._train_step))
                    done += 1
                    if len(trained) >= self._held_steps:   # big vectors: diagnosed while still in cache
                        out += self._records(trained)
                        trained = []
            return out + self._records(trained)

    def _train_step(self) -> TrainedStep:
        """Computes the loss and gradients, then the updates, and applies them (warnings already off)."""
        p, net, t = self.preset, self.net, self.step_index
        step = TrainedStep(self._setting_events(t))
        grads = net.gradients(self.data.x_train, self.data.y_train)
        val_loss = net.loss_at(self.data.x_val, self.data.y_val) if len(self.data.x_val) else None
        loss = grads.loss
        if self.first_loss is None:
            self.first_loss = loss
        if loss_diverged(loss, self.first_loss, self.thresholds):
            self.done = True
            step.before.append(self._diverged(t, loss))
            return step
        trained = self.strategy.trains_biases and t >= p.bias["from_step"]
        b = net.b_flat.copy()
        u_w, u_b = self.rule.updates(net.w_flat, b, grads.w_flat, grads.b_flat,
                                     strategies.Context(t, p.train["lr"], loss, val_loss), trained)
        # the frozen strategy's biases are meant to move and never do: its steps count as trained, in the
        # records too, so that a recording (or its check) judges them `frozen` as the trainer does
        step.observation = Observation(t, loss, val_loss, b, grads.b_flat, u_b, trained or self._judge_frozen)
        if self.weight_diagnoser is not None:
            step.weights = Observation(t, loss, val_loss, net.w_flat.copy(), grads.w_flat, u_w,
                                       extra_pred=dot(grads.b_flat, u_b))
        if self.diagnoser is not None:
            if self._check_requested or (self._check_every and t % self._check_every == 0):
                self._gradient_check(step)
            step.observation.extra_pred = dot(grads.w_flat, u_w)   # bits independent of the BLAS threads
        net.w_flat += u_w
        net.b_flat += u_b
        self.step_index = t + 1
        if not (math.isfinite(float(net.w_flat @ net.w_flat)) and math.isfinite(float(net.b_flat @ net.b_flat))):
            self.done = True
            step.after.append(self._diverged(t + 1, math.nan))
        elif self.step_index >= self.steps:
            self.done = True
        return step

    def _records(self, trained: list[TrainedStep]) -> list:
        """The records of steps trained in a row, with their diagnoses."""
        observed = [s.observation for s in trained if s.observation is not None]
        diagnoses = iter(self.diagnoser.observe(observed) if self.diagnoser is not None else [None] * len(observed))
        w_observed = [s.weights for s in trained if s.weights is not None]
        w_diagnoses = iter(self.weight_diagnoser.observe(w_observed) if self.weight_diagnoser is not None else [])
        out = []
        for s in trained:
            out += s.before
            if s.observation is not None:
                diagnosis = next(diagnoses)
                w = None if s.weights is None else WeightStep(self.weight_layout, s.weights, next(w_diagnoses))
                out.append(s.observation.record(self.layout, diagnosis, w))
                out += diagnosis.events if diagnosis is not None else []
                out += w.diagnosis.events if w is not None else []
            out += s.after
        return out

    def _setting_events(self, t: int) -> list[Event]:
        events = []
        for key, value in (("flip_sign", self.rule.flip_sign), ("flip_weight_sign", self.rule.flip_weight_sign),
                           ("bias_lr_scale", self.rule.bias_lr_scale)):
            if self._announced[key] != value:
                self._announced[key] = value
                events.append(Event(key, t, {key: value}))
        return events

    def _gradient_check(self, step: TrainedStep) -> None:
        """The finite-difference check of the biases (every entry up to 512 a check, a sample past that) and,
        if diagnosed, of a sample of the weights, at the step's parameters (requested, or due)."""
        o, w = step.observation, step.weights
        requested, self._check_requested = self._check_requested, False
        net, x, y = self.net, self.data.x_train, self.data.y_train
        if net.dtype != np.float64:
            ref = Network(net.sizes, net.activations, net.loss, "float64", net.has_biases)
            ref.w_flat[...] = net.w_flat
            x, y = x.astype(np.float64), y.astype(np.float64)
        else:
            ref = net
        data = {}
        checks = [("", o, self.layout, lambda bb: ref.loss_at(x, y, bb),
                   lambda entries, values: ref.probe_losses(x, y, o.b, entries, values))] if self.layout.names else []
        if w is not None:
            ref.b_flat[...] = o.b
            checks.append(("weight_", w, self.weight_layout, lambda ww: _loss_at_weights(ref, x, y, ww),
                           lambda entries, values: ref.probe_weight_losses(x, y, w.b, entries, values)))
        for prefix, observed, layout, loss_at, probe_losses in checks:
            checked = check_gradient(loss_at, observed.b, observed.g, layout, tolerance=self.thresholds.fd_tolerance,
                                     seed=o.step, probe_losses=probe_losses)
            observed.fd_errors = checked.errors
            data[f"{prefix}errors"] = checked.errors
            undecided = {name: n for name, n in checked.undecided.items() if n}
            if undecided:
                data[f"{prefix}undecided"] = undecided
        if requested:
            data["requested"] = True
        step.before.append(Event("gradient_check", o.step, data))

    def _layer_norms(self) -> list[float]:
        return [math.sqrt(float(w.ravel() @ w.ravel()) + float(b @ b)) for w, b in zip(self.net.weights, self.net.biases)]

    def _diverged(self, t: int, loss: float) -> Event:
        """The diverged event: the first layer (in forward order) whose parameters went non-finite, or,
        when the loss blew up first, the layer whose parameters grew the most since step 0."""
        layer = next((name for name, w, b in zip(self.net.layer_names, self.net.weights, self.net.biases)
                      if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b)))), None)
        data = {"layer": layer}
        if layer:
            data["reason"] = "parameters became non-finite"
        else:
            with np.errstate(all="ignore"):
                growth = [now / max(first, 1e-12) for now, first in zip(self._layer_norms(), self._initial_norms)]
            data["grew_most"] = self.net.layer_names[int(np.nanargmax(growth))] if not np.all(np.isnan(growth)) else None
            data["reason"] = "loss is not finite" if not math.isfinite(loss) else f"loss blew up to {loss:.3g}"
        return Event("diverged", t, data)


def _loss_at_weights(net: Network, x: np.ndarray, y: np.ndarray, w_flat: np.ndarray) -> float:
    """The loss at the weights w_flat (n_w,); the network's own weights are put back after."""
    saved = net.w_flat.copy()
    net.w_flat[...] = w_flat
    try:
        return net.loss_at(x, y)
    finally:
        net.w_flat[...] = saved
