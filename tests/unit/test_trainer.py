"""Trainer: determinism, step/reset, live flip_sign and bias_lr_scale, on-demand gradient checks,
and divergence ending the run cleanly."""
import copy
import math

import numpy as np
import pytest

from biasmon.core import presets
from biasmon.core.records import Event, StepRecord
from biasmon.core.trainer import Trainer


def variant(base="gradient", **sections):
    raw = copy.deepcopy(presets.resolve(base).raw)
    for section, changes in sections.items():
        raw.setdefault(section, {}).update(changes)
    return presets.parse(raw, f"{base}-variant", f"{base}-variant.toml")


def stream(trainer):
    return [rec.to_json() for rec in trainer]


def events(records, kind):
    return [r for r in records if isinstance(r, Event) and r.kind == kind]


# --- determinism -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gradient", "story-bias-joins"])
def test_same_preset_and_seed_give_identical_records(name):
    preset = presets.resolve(name)
    steps = 1100 if name == "story-bias-joins" else 150
    a = stream(Trainer(preset, steps=steps, seed=7))
    b = stream(Trainer(preset, steps=steps, seed=7))
    assert len(a) > steps
    assert a == b


def test_different_seeds_give_different_records():
    preset = presets.resolve("gradient")
    a = [line for line in stream(Trainer(preset, steps=20, seed=1)) if "event" not in line]
    b = [line for line in stream(Trainer(preset, steps=20, seed=2)) if "event" not in line]
    assert len(a) == len(b) == 20
    assert a[0]["loss"] != b[0]["loss"]
    assert a[0]["biases"] == b[0]["biases"]  # bias_init is a constant; the weights differ
    assert a[-1]["biases"] != b[-1]["biases"]


def test_records_are_immutable():
    rec = next(r for r in Trainer(presets.resolve("gradient"), steps=2) if isinstance(r, StepRecord))
    with pytest.raises(Exception):
        rec.loss = 0.0
    with pytest.raises(ValueError):
        rec.biases["output"][0] = 1.0
    with pytest.raises(ValueError):
        rec.bias_grads["output"][0] = 1.0


def test_biases_in_a_record_are_those_before_its_update():
    steps = [r for r in Trainer(presets.resolve("gradient"), steps=5) if isinstance(r, StepRecord)]
    for prev, cur in zip(steps, steps[1:]):
        for layer in cur.biases:
            np.testing.assert_allclose(cur.biases[layer], prev.biases[layer] + prev.bias_updates[layer], rtol=1e-15)


# --- blocks ------------------------------------------------------------------------------------------
def one_at_a_time(trainer):
    out = []
    while not trainer.done:
        out += trainer.step()
    return [r.to_json() for r in out]


@pytest.mark.parametrize("preset, steps", [
    pytest.param(lambda: presets.resolve("gradient"), 300, id="gradient"),
    pytest.param(lambda: presets.resolve("story-bias-joins"), 1100, id="bias-joins-mid-block"),
    pytest.param(lambda: presets.resolve("frozen"), 100, id="frozen"),
    pytest.param(lambda: presets.resolve("none"), 40, id="none"),
    pytest.param(lambda: variant("gradient", train={"momentum": 0.9}), 300, id="momentum"),
    pytest.param(lambda: variant("gradient", diagnostics={"grad_check_every": 7}), 60, id="grad-checks"),
    pytest.param(lambda: presets.resolve("story-error-scaled"), 3000, id="diverges-mid-block"),
])
@pytest.mark.parametrize("block", [5, 32])
def test_advancing_in_blocks_gives_the_records_of_single_steps(preset, steps, block):
    single = one_at_a_time(Trainer(preset(), steps=steps))
    trainer = Trainer(preset(), steps=steps)
    blocks = []
    while not trainer.done:
        blocks += [r.to_json() for r in trainer.advance(block)]
    assert blocks == single
    assert [r.to_json() for r in Trainer(preset(), steps=steps)] == single  # and iterating


def test_iterating_trains_no_further_than_the_records_read():
    trainer = Trainer(presets.resolve("gradient"), steps=100)
    for record in trainer:
        if isinstance(record, StepRecord) and record.step == 3:
            break
    assert trainer.step_index == 4
    assert [r.step for r in trainer.step() if isinstance(r, StepRecord)] == [4]


def test_live_settings_and_requested_checks_apply_from_the_next_step_of_a_block():
    trainer = Trainer(variant("gradient", diagnostics={"grad_check_every": 0}), steps=100)
    trainer.advance(10)
    trainer.flip_sign = True
    trainer.request_gradient_check()
    out = trainer.advance(10)
    assert [e.step for e in events(out, "flip_sign")] == [10]
    assert [e.step for e in events(out, "gradient_check")] == [10]
    first = [r for r in out if isinstance(r, StepRecord)][0]
    assert first.step == 10 and all(d.cos == pytest.approx(-1.0) for d in first.diag.values())


# --- step / reset ------------------------------------------------------------------------------------
def test_step_returns_one_step_record_per_call_and_stops_at_steps():
    trainer = Trainer(presets.resolve("gradient"), steps=3)
    got = []
    for _ in range(5):
        got.append([r for r in trainer.step() if isinstance(r, StepRecord)])
    assert [len(g) for g in got] == [1, 1, 1, 0, 0]
    assert [g[0].step for g in got[:3]] == [0, 1, 2]
    assert trainer.done and trainer.step_index == 3


def test_reset_gives_a_new_run_id_and_the_same_records():
    trainer = Trainer(presets.resolve("gradient"), steps=30)
    first_id = trainer.run_id
    first = stream(trainer)
    trainer.reset()
    assert trainer.run_id != first_id
    assert trainer.step_index == 0 and not trainer.done
    assert stream(trainer) == first
    assert trainer.header()["run_id"] == trainer.run_id


def test_reset_mid_run_undoes_live_changes():
    trainer = Trainer(presets.resolve("gradient"), steps=30)
    clean = stream(Trainer(presets.resolve("gradient"), steps=30))
    for _ in range(5):
        trainer.step()
    trainer.flip_sign = True
    trainer.bias_lr_scale = 3.0
    trainer.step()
    trainer.reset()
    assert trainer.flip_sign is False and trainer.bias_lr_scale == 1.0
    assert stream(trainer) == clean


# --- live settings -----------------------------------------------------------------------------------
def test_flip_sign_toggled_mid_run_emits_an_event_and_turns_uphill():
    trainer = Trainer(presets.resolve("gradient"), steps=60)
    records = []
    for _ in range(20):
        records += trainer.step()
    assert all(r.diag[layer].verdict == "ok" for r in records[-1:] if isinstance(r, StepRecord) for layer in r.diag)
    trainer.flip_sign = True
    after = []
    for _ in range(20):
        after += trainer.step()
    flips = events(after, "flip_sign")
    assert len(flips) == 1 and flips[0].step == 20 and flips[0].data == {"flip_sign": True}
    assert after[0] is flips[0]  # the event comes before that step's record
    steps = [r for r in after if isinstance(r, StepRecord)]
    assert all(d.cos == pytest.approx(-1.0) for d in steps[0].diag.values())
    assert all(d.verdict == "uphill" for d in steps[-1].diag.values())
    uphill = [e for e in events(after, "verdict") if e.data["verdict"] == "uphill"]
    assert {e.data["layer"] for e in uphill} == {"hidden1", "hidden2", "output"}
    assert all(20 <= e.step < 40 for e in uphill)
    # toggling back is announced too
    trainer.flip_sign = False
    assert events(trainer.step(), "flip_sign")[0].data == {"flip_sign": False}


def test_bias_lr_scale_applies_to_the_bias_update_only():
    ref = Trainer(presets.resolve("gradient"), steps=10)
    scaled = Trainer(presets.resolve("gradient"), steps=10)
    scaled.bias_lr_scale = 0.25
    r0 = [r for r in ref.step() if isinstance(r, StepRecord)][0]
    out = scaled.step()
    assert events(out, "bias_lr_scale")[0].data == {"bias_lr_scale": 0.25}
    s0 = [r for r in out if isinstance(r, StepRecord)][0]
    for layer in r0.bias_updates:
        np.testing.assert_allclose(s0.bias_updates[layer], 0.25 * r0.bias_updates[layer], rtol=1e-14)
    np.testing.assert_array_equal(ref.net.w_flat, scaled.net.w_flat)  # weights moved the same
    assert not np.array_equal(ref.net.b_flat, scaled.net.b_flat)


def test_request_gradient_check_produces_an_event_next_step():
    preset = variant("gradient", diagnostics={"grad_check_every": 0})
    trainer = Trainer(preset, steps=20)
    for _ in range(3):
        assert not events(trainer.step(), "gradient_check")  # 0: only on demand
    trainer.request_gradient_check()
    out = trainer.step()
    checks = events(out, "gradient_check")
    assert len(checks) == 1 and checks[0].step == 3
    errors = checks[0].data["errors"]
    assert set(errors) == {"hidden1", "hidden2", "output"}
    assert all(0 <= e < 1e-3 for e in errors.values())
    step = [r for r in out if isinstance(r, StepRecord)][0]
    assert all(d.fd_error == errors[layer] for layer, d in step.diag.items())
    assert not events(trainer.step(), "gradient_check")  # once


def test_gradient_check_runs_on_its_schedule():
    records = list(Trainer(variant("gradient", diagnostics={"grad_check_every": 7}), steps=22))
    assert [e.step for e in events(records, "gradient_check")] == [0, 7, 14, 21]


def test_gradient_check_of_a_float32_network_passes():
    records = list(Trainer(variant("gradient", network={"dtype": "float32"}), steps=3))
    errors = events(records, "gradient_check")[0].data["errors"]
    assert all(e < 1e-3 for e in errors.values())
    steps = [r for r in records if isinstance(r, StepRecord)]
    assert steps[0].biases["output"].dtype == np.float32


def test_diagnostics_off_gives_the_same_training():
    on = [r for r in Trainer(presets.resolve("gradient"), steps=20) if isinstance(r, StepRecord)]
    off = [r for r in Trainer(presets.resolve("gradient"), steps=20, diagnostics=False) if isinstance(r, StepRecord)]
    assert [r.loss for r in on] == [r.loss for r in off]
    assert all(r.diag is None for r in off)


# --- divergence --------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", [
    pytest.param(lambda: presets.resolve("story-error-scaled"), id="story-error-scaled"),
    pytest.param(lambda: variant("gradient", train={"lr": 1000.0}), id="huge-lr"),
    pytest.param(lambda: variant("gradient", network={"activation": "tanh"}, train={"lr": 50.0}), id="tanh-lr50"),
])
def test_divergence_ends_the_run_cleanly_with_an_event(preset):
    trainer = Trainer(preset(), steps=3000)
    records = list(trainer)  # no exception escapes
    diverged = events(records, "diverged")
    assert len(diverged) == 1
    assert records[-1] is diverged[0]
    event = diverged[0]
    assert isinstance(event.step, int) and 0 < event.step < 3000
    assert "layer" in event.data and event.data["reason"]
    last_step = max(r.step for r in records if isinstance(r, StepRecord))
    assert event.step in (last_step, last_step + 1)
    assert trainer.done and trainer.step() == []
    line = event.to_json()
    assert line["event"] == "diverged" and line["step"] == event.step


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_parameters_name_the_first_layer():
    trainer = Trainer(presets.resolve("gradient"), steps=50)
    trainer.step()
    trainer.net.weights[1][0, 0] = math.inf
    out = trainer.step()
    diverged = events(out, "diverged")
    assert len(diverged) == 1 and diverged[0].step == 1
    assert diverged[0].data["layer"] == "hidden2"
    assert trainer.done


def test_step_detail_off_gives_the_same_events_and_last_diagnoses_for_less():
    from biasmon.core.records import StepRecord as _Step
    preset = presets.resolve("story-scaled")
    runs = {}
    for detail in (True, False):
        trainer = Trainer(preset, steps=700, step_detail=detail)
        records = []
        while not trainer.done:
            records += trainer.advance(256)
        steps = [r for r in records if isinstance(r, _Step)]
        events = [r for r in records if not isinstance(r, _Step)]
        runs[detail] = (events, steps[-1].diag, steps[-1].weight_diag, [r.bias_sums.table.tolist() for r in steps],
                        sum(r.diag is None for r in steps))
    assert runs[True][:4] == runs[False][:4]
    assert runs[True][4] == 0 and runs[False][4] == 700 - 3   # one detailed step per advance() call
