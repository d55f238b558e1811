"""Bias-update strategies: each formula on known numbers, and through the Trainer: flip_sign is uphill,
every unflipped strategy (but frozen/none) settles on ok, frozen is frozen, none has no bias layers."""
import copy

import numpy as np
import pytest

from biasmon.core import presets, strategies
from biasmon.core.records import Event, StepRecord
from biasmon.core.trainer import Trainer

D = np.array([1.0, -2.0, 0.5])
CTX = strategies.Context(step=3, lr=0.1, train_loss=0.5, val_loss=0.8)
MOVING = ["gradient", "scaled", "error_scaled", "inverse_error", "gap_scaled", "lr_mult"]


def variant(base="gradient", **sections):
    """A shipped preset with some keys of some sections replaced, validated by presets.parse."""
    raw = copy.deepcopy(presets.resolve(base).raw)
    for section, changes in sections.items():
        raw.setdefault(section, {}).update(changes)
    return presets.parse(raw, f"{base}-variant", f"{base}-variant.toml")


def run(preset, steps):
    records = []
    for rec in Trainer(preset, steps=steps):
        records.append(rec)
    return records


def steps_of(records):
    return [r for r in records if isinstance(r, StepRecord)]


def verdict_events(records):
    return [r for r in records if isinstance(r, Event) and r.kind == "verdict"]


def test_registry_holds_the_issues_strategies():
    assert set(MOVING) | {"none", "frozen"} <= set(strategies.REGISTRY)


@pytest.mark.parametrize("name,expected", [
    ("gradient", -0.1 * D),
    ("scaled", -0.1 * 0.1 * D),                 # default k = 0.1
    ("error_scaled", -0.1 * 0.5 * D),           # L_train = 0.5
    ("inverse_error", -0.1 * D / (0.5 + 0.01)),  # default eps = 0.01
    ("gap_scaled", -0.1 * (0.8 - 0.5) * D),     # gap = L_val - L_train = 0.3
    ("lr_mult", -0.1 * 2.0 * D),                # default m = 2
    ("frozen", np.zeros(3)),
    ("none", np.zeros(3)),
])
def test_update_formula_on_known_numbers(name, expected):
    u = strategies.get(name).update(D, CTX)
    np.testing.assert_allclose(u, expected, rtol=1e-15, atol=0)
    assert u.shape == D.shape


def test_update_formula_parameters():
    assert np.allclose(strategies.get("scaled").update(D, CTX, k=0.5), -0.05 * D)
    assert np.allclose(strategies.get("inverse_error").update(D, CTX, eps=0.5), -0.1 * D / 1.0)
    assert np.allclose(strategies.get("lr_mult").update(D, CTX, m=3.0), -0.3 * D)


@pytest.mark.parametrize("val_loss", [0.2, 0.5, None])
def test_gap_scaled_is_zero_without_a_positive_gap(val_loss):
    ctx = strategies.Context(step=0, lr=0.1, train_loss=0.5, val_loss=val_loss)
    assert not strategies.get("gap_scaled").update(D, ctx).any()


def test_strategy_flags():
    assert strategies.get("none").has_biases is False
    assert strategies.get("frozen").has_biases is True and strategies.get("frozen").trains_biases is False
    assert strategies.get("lr_mult").decays_biases is False
    assert all(strategies.get(n).trains_biases and strategies.get(n).has_biases for n in MOVING)


def test_unknown_strategy_lists_the_valid_ones():
    with pytest.raises(KeyError) as info:
        strategies.get("sideways")
    for name in strategies.REGISTRY:
        assert name in str(info.value)


# --- through the trainer -----------------------------------------------------------------------------
def test_trainer_applies_the_strategy_to_the_gradient_it_reports():
    """u = strategy(g) exactly, for each layer of each step (momentum 0, no weight decay)."""
    for name, factor in [("gradient", 1.0), ("scaled", 0.1), ("lr_mult", 2.0)]:
        for rec in steps_of(run(presets.resolve(name), 5)):
            for layer, g in rec.bias_grads.items():
                np.testing.assert_allclose(rec.bias_updates[layer], -0.05 * factor * g, rtol=1e-12)


def test_weight_decay_applies_to_biases_except_for_lr_mult():
    for name, factor, decays in [("gradient", 1.0, True), ("lr_mult", 2.0, False)]:
        preset = variant(name, train={"weight_decay": 0.1})
        for rec in steps_of(run(preset, 3)):
            for layer, g in rec.bias_grads.items():
                d = g + 0.1 * rec.biases[layer] if decays else g
                np.testing.assert_allclose(rec.bias_updates[layer], -0.05 * factor * d, rtol=1e-12)


def test_momentum_scales_the_optimizers_step_not_the_raw_gradient():
    recs = steps_of(run(variant("scaled", train={"momentum": 0.9}, bias={"from_step": 0}), 3))
    velocity = {layer: np.zeros_like(g) for layer, g in recs[0].bias_grads.items()}
    for rec in recs:
        for layer, g in rec.bias_grads.items():
            velocity[layer] = 0.9 * velocity[layer] + g
            np.testing.assert_allclose(rec.bias_updates[layer], -0.05 * 0.1 * velocity[layer], rtol=1e-12)


@pytest.mark.parametrize("name", MOVING)
def test_flip_sign_points_uphill_within_20_steps(name):
    records = run(variant(name, bias={"flip_sign": True}), 20)
    steps = steps_of(records)
    layers = list(steps[0].diag)
    assert layers == ["hidden1", "hidden2", "output"]
    defined = 0
    for rec in steps:
        for layer, d in rec.diag.items():
            if d.cos is not None:  # undefined when u = 0 (gap_scaled with no gap)
                defined += 1
                assert d.cos == pytest.approx(-1.0, abs=1e-9), (rec.step, layer)
    assert defined >= 5 * len(layers)
    uphill = {e.data["layer"]: e.step for e in verdict_events(records) if e.data["verdict"] == "uphill"}
    assert set(uphill) == set(layers)
    assert max(uphill.values()) < 20
    assert all(d.verdict == "uphill" for d in steps[-1].diag.values())


@pytest.mark.parametrize("name", MOVING)
def test_unflipped_strategy_descends_and_settles_on_ok(name):
    """Without the bug every moving strategy has cos(u, -g) = +1 and ends with verdict ok.

    gap_scaled moves the bias only while L_val > L_train; on `tiny` the gap closes for a while, the
    bias stops moving with g != 0, and the verdict passes through 'frozen' before settling on ok
    (around step 450 with the shipped seed). What we assert: the verdict it settles on at the end of
    the run is ok, it is never uphill, and 'frozen' is the only other verdict seen, for gap_scaled only."""
    records = run(presets.resolve(name), 3000 if name == "gap_scaled" else 300)
    steps = steps_of(records)
    for rec in steps:
        for d in rec.diag.values():
            assert d.cos is None or d.cos == pytest.approx(1.0, abs=1e-9)
    assert {layer: d.verdict for layer, d in steps[-1].diag.items()} == dict.fromkeys(steps[-1].diag, "ok")
    seen = {e.data["verdict"] for e in verdict_events(records)}
    assert "uphill" not in seen
    assert seen - {"ok", "pending"} <= ({"frozen"} if name == "gap_scaled" else set())
    assert not any(isinstance(r, Event) and r.kind == "diverged" for r in records)


def test_frozen_biases_never_move_and_are_called_frozen():
    records = run(presets.resolve("frozen"), 40)
    steps = steps_of(records)
    first = steps[0].biases
    for rec in steps:
        for layer, b in rec.biases.items():
            np.testing.assert_array_equal(b, first[layer])
            assert not rec.bias_updates[layer].any()
    assert all(d.verdict == "frozen" for d in steps[-1].diag.values())
    assert any(np.abs(g).max() > 0 for g in steps[-1].bias_grads.values())


def test_none_has_no_bias_layers():
    trainer = Trainer(presets.resolve("none"), steps=10)
    assert not trainer.net.has_biases and not trainer.net.b_flat.any()
    assert trainer.header()["layers"] == []
    steps = steps_of(list(trainer))
    assert len(steps) == 10
    for rec in steps:
        assert rec.biases == {} and rec.bias_grads == {} and not rec.diag
    assert not trainer.net.b_flat.any()
