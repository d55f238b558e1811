"""The summary form: per-layer sums judged exactly as the vectors they came from, and read safely."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from biasmon.core import presets
from biasmon.core.check import check_stream
from biasmon.core.errors import StreamError
from biasmon.core.layout import Layout
from biasmon.core.logger import StreamWriter
from biasmon.core.reader import StreamReader
from biasmon.core.records import Event, StepRecord
from biasmon.core.summary_form import layer_sums
from biasmon.core.trainer import Trainer

PRESETS = Path(__file__).resolve().parents[2] / "presets"


def _mlp_run(writer: StreamWriter, *, flip_bias=False, flip_weights=False, momentum=0.0, steps=300,
             unreached_from=None, frozen_layer=False, give_updates=False, seed=0, all_unreached_from=None,
             nan_from=None):
    """A 2-8-1 tanh MLP trained by plain SGD (momentum optional) on a fixed regression set, logged with
    its weights; bugs as asked."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(32, 2))
    y = np.sin(x[:, :1]) + 0.1 * x[:, 1:]
    w1, b1 = rng.normal(size=(2, 8)) * 0.5, np.zeros(8)
    w2, b2 = rng.normal(size=(8, 1)) * 0.5, np.zeros(1)
    params = [w1, b1, w2, b2]
    vel = [np.zeros_like(p) for p in params]
    for t in range(steps):
        h = np.tanh(x @ w1 + b1)
        out = h @ w2 + b2
        loss = float(np.mean((out - y) ** 2))
        d = 2 * (out - y) / len(x)
        g_w2, g_b2 = h.T @ d, d.sum(0)
        dh = (d @ w2.T) * (1 - h ** 2)
        g_w1, g_b1 = x.T @ dh, dh.sum(0)
        grads = [g_w1, g_b1, g_w2, g_b2]
        updates = []
        for i, (p, g) in enumerate(zip(params, grads)):
            vel[i] = momentum * vel[i] + g
            u = -0.1 * vel[i]
            if (flip_bias and i in (1, 3)) or (flip_weights and i in (0, 2)):
                u = -u
            if frozen_layer and i == 1:
                u = np.zeros_like(u)
            updates.append(u)
        if nan_from is not None and t >= nan_from:
            g_b2 = g_b2 * np.nan
        hidden_grad = None if unreached_from is not None and t >= unreached_from else g_b1
        out_grad = g_b2
        if all_unreached_from is not None and t >= all_unreached_from:
            hidden_grad = out_grad = None
        extra = {"bias_updates": {"h": updates[1], "o": updates[3]},
                 "weight_updates": {"h": updates[0], "o": updates[2]}} if give_updates else {}
        writer.step(t, loss, {"h": b1.copy(), "o": b2.copy()}, {"h": hidden_grad, "o": out_grad},
                    weights={"h": w1.copy(), "o": w2.copy()}, weight_grads={"h": g_w1, "o": g_w2}, **extra)
        for p, u in zip(params, updates):
            p += u
    writer.close()


CASES = {
    "correct": {},
    "correct, momentum": {"momentum": 0.9},
    "bias sign flipped": {"flip_bias": True},
    "weight sign flipped": {"flip_weights": True},
    "both flipped, momentum": {"flip_bias": True, "flip_weights": True, "momentum": 0.9},
    "a frozen bias": {"frozen_layer": True},
    "a detached bias": {"unreached_from": 100},
    "updates given": {"give_updates": True, "flip_weights": True},
    "every bias detached": {"all_unreached_from": 100},
    "a NaN gradient": {"nan_from": 120},
}


@pytest.mark.parametrize("case", CASES)
def test_sums_are_judged_exactly_as_the_vectors_they_came_from(tmp_path, case):
    results = {}
    for form in ("vectors", "sums"):
        path = tmp_path / f"{form}.jsonl"
        _mlp_run(StreamWriter(path, form=form, check_every=0), **CASES[case])
        results[form] = check_stream(path).to_json()
        results[form].pop("source")
        # what a message quotes differs by form ('bias_sums' / 'bias_grads'); where and how many do not
        results[form]["malformed"].pop("messages")
        if results[form]["diverged"]:
            results[form]["diverged"] = results[form]["diverged"]["step"]
    assert results["sums"] == results["vectors"]
    assert results["sums"]["weights"], "the weights are judged too"


def test_the_cases_reach_the_verdicts_they_are_about(tmp_path):
    seen = {}
    for case in ("correct", "bias sign flipped", "weight sign flipped", "a frozen bias", "a detached bias"):
        path = tmp_path / "run.jsonl"
        _mlp_run(StreamWriter(path, form="sums", check_every=0), **CASES[case])
        r = check_stream(path)
        seen[case] = ({n: v.verdict for n, v in r.layers.items()}, {n: v.verdict for n, v in r.weights.items()}, r.exit)
    assert seen["correct"] == ({"h": "ok", "o": "ok"}, {"h": "ok", "o": "ok"}, 0)
    assert seen["bias sign flipped"][0] == {"h": "uphill", "o": "uphill"} and seen["bias sign flipped"][2] == 1
    assert seen["weight sign flipped"][1] == {"h": "uphill", "o": "uphill"} and seen["weight sign flipped"][2] == 1
    assert seen["a frozen bias"][0]["h"] == "frozen"
    assert seen["a detached bias"][0]["h"] == "detached"


def test_a_summary_line_is_small_and_the_header_names_version_2(tmp_path):
    path = tmp_path / "run.jsonl"
    _mlp_run(StreamWriter(path, form="sums", check_every=0), steps=50)
    lines = path.read_text().splitlines()
    head = json.loads(lines[0])
    assert head["version"] == 2 and head["form"] == "sums" and head["averages"] == ["ema0.9", "ema0.99"]
    assert head["weights"] == [{"name": "h", "size": 16}, {"name": "o", "size": 8}]
    assert max(len(line) for line in lines[1:]) < 1000
    assert len(lines) == 51   # the last step's line too, its update unknown


def test_a_bias_only_vector_stream_still_names_version_1(tmp_path):
    path = tmp_path / "run.jsonl"
    with StreamWriter(path) as log:
        log.step(0, 1.0, {"a": [0.0]}, {"a": [1.0]})
    assert json.loads(path.read_text().splitlines()[0])["version"] == 1


@pytest.mark.parametrize("momentum,flip", [(0.0, False), (0.9, True)])
def test_the_trainers_records_in_either_form_read_back_to_its_own_verdicts(momentum, flip):
    preset = presets.load(PRESETS / "gradient.toml")
    preset = replace(preset, train=dict(preset.train, momentum=momentum, lr=0.01 if momentum else preset.train["lr"]))
    trainer = Trainer(preset, steps=700)
    trainer.flip_weight_sign = flip
    records = []
    while not trainer.done:
        records += trainer.advance(256)

    def verdicts(recs):
        return [(e.step, e.data.get("param", "bias"), e.data["layer"], e.data["verdict"])
                for e in recs if isinstance(e, Event) and e.kind == "verdict"]

    for form in ("vectors", "sums"):
        reader = StreamReader(trainer.thresholds, recompute=True)
        out = reader.feed(json.dumps(trainer.header(form)))
        for rec in records:
            if isinstance(rec, Event) and rec.kind == "verdict":
                continue
            out += reader.feed(json.dumps(rec.summary_json() if form == "sums" and isinstance(rec, StepRecord)
                                          else rec.to_json()))
        out += reader.finish()
        assert verdicts(out) == verdicts(records), form
    assert ("weight", "uphill") in {(p, v) for _, p, _, v in verdicts(records)} if flip else True


def test_layer_sums_match_a_plain_loop():
    rng = np.random.default_rng(3)
    layout = Layout(("a", "b"), (3, 2))
    p, g, u = rng.normal(size=5), rng.normal(size=5), rng.normal(size=5)
    g[4] = 1e-30   # not significant: below 1e-16 of the largest g^2
    avg = rng.normal(size=(1, 5))
    table = layer_sums(layout, p, g, u, avg, 1)
    top = max(g ** 2)
    for row, (lo, hi) in zip(table, ((0, 3), (3, 5))):
        i = range(lo, hi)
        sig = [j for j in i if g[j] ** 2 > 1e-16 * top]
        want = [hi - lo, sum(p[j] ** 2 for j in i), sum(g[j] ** 2 for j in i), sum(u[j] ** 2 for j in i),
                sum(u[j] * g[j] for j in i), len(sig), sum(1 for j in sig if u[j] * g[j] < 0),
                sum(avg[0, j] ** 2 for j in i), sum(avg[0, j] * u[j] for j in i)]
        assert row == pytest.approx(want, rel=1e-12)
    assert np.isnan(layer_sums(layout, p, g, None, avg, 1)[:, [3, 4, 6, 8]]).all()


@pytest.mark.parametrize("row,message", [
    ([16, 1.0, 1.0], "7 + 2k numbers"),
    ([0, 1.0, 1.0, 1.0, 0.0, 1, 1], "whole number from 1 to 2**53"),
    ([16, -1.0, 1.0, 1.0, 0.0, 1, 1], ">= 0"),
    ([16, 1.0, 1.0, 1.0, 0.0, 1, 2], "agree <= sig"),
    ([16, 1.0, "x", 1.0, 0.0, 1, 1], "bias_sums.h[2]"),
    ("no", "7 + 2k numbers"),
])
def test_a_malformed_sums_row_is_a_skipped_line_naming_the_key(row, message):
    reader = StreamReader()
    reader.feed(json.dumps({"step": 0, "loss": 1.0, "bias_sums": {"h": row}}))
    assert len(reader.problems) == 1 and message in reader.problems[0].message


def test_vectors_and_sums_in_one_line_or_one_run_are_refused(tmp_path):
    reader = StreamReader()
    reader.feed(json.dumps({"step": 0, "loss": 1.0, "biases": {"h": [0.0]}, "bias_sums": {"h": [1, 0, 0, 0, 0, 0, 0]}}))
    assert "not both" in reader.problems[0].message
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps({"step": 0, "loss": 1.0, "biases": {"h": [0.0]}}) + "\n"
                    + json.dumps({"step": 1, "loss": 1.0, "bias_sums": {"h": [1, 0, 0, 0, 0, 0, 0]}}) + "\n")
    with pytest.raises(StreamError, match=r"line 2: the layers changed within a run: h\[1\] before, h\[1\] \(sums\)"):
        check_stream(path)


def test_weights_must_come_at_every_step_or_none(tmp_path):
    from biasmon.core.errors import BiasmonError
    log = StreamWriter(tmp_path / "w.jsonl")
    log.step(0, 1.0, {"a": [0.0]}, {"a": [1.0]})
    with pytest.raises(BiasmonError, match="weights must be logged at every step or at none"):
        log.step(1, 1.0, {"a": [0.0]}, {"a": [1.0]}, weights={"a": [1.0]})


@pytest.mark.parametrize("sums", [{"h": []}, {"h": 3}, {"h": [1, 0, 0, 0, 0, 0, 0], "o": []}, {"h": [[1]]}])
def test_an_empty_or_wrongly_typed_row_is_a_skipped_line_not_a_crash(sums):
    reader = StreamReader()
    reader.feed(json.dumps({"step": 0, "loss": 1.0, "bias_sums": sums}))
    assert len(reader.problems) == 1 and "bias_sums" in reader.problems[0].message


def test_a_nan_gradient_is_divergence_and_every_layer_unreached_is_detached_in_either_form(tmp_path):
    for form in ("vectors", "sums"):
        path = tmp_path / f"{form}.jsonl"
        _mlp_run(StreamWriter(path, form=form, check_every=0), nan_from=120)
        assert check_stream(path).diverged.step == 120, form
        _mlp_run(StreamWriter(path, form=form, check_every=0), all_unreached_from=100)
        r = check_stream(path)   # the biases learned for 100 lines: cut off then, listed, not failing (the weights learn)
        assert {n: v.verdict for n, v in r.layers.items()} == {"h": "detached", "o": "detached"} and r.exit == 0, form
        assert all(not p.counts for v in r.layers.values() for p in v.problems), form
        _mlp_run(StreamWriter(path, form=form, check_every=0), all_unreached_from=0)
        r = check_stream(path)   # from the start: they never learn
        assert {n: v.verdict for n, v in r.layers.items()} == {"h": "detached", "o": "detached"} and r.exit == 1, form


def test_a_gradient_check_event_comes_right_before_the_line_it_applies_to(tmp_path):
    for form, every in (("vectors", 1), ("sums", 1), ("vectors", 3), ("sums", 3)):
        path = tmp_path / f"{form}{every}.jsonl"
        log = StreamWriter(path, form=form, every=every, check_every=4, loss_at=lambda b: float(b["a"][0] ** 2))
        for t in range(12):
            log.step(t, 1.0, {"a": [1.0 - 0.1 * t]}, {"a": [2.0 - 0.2 * t]})
        log.close()
        lines = [json.loads(line) for line in path.read_text().splitlines()[1:]]
        checks = [i for i, line in enumerate(lines) if line.get("event") == "gradient_check"]
        assert checks and all(lines[i + 1]["step"] == lines[i]["step"] for i in checks), (form, every)


def test_a_huge_layer_in_the_summary_form_costs_no_memory_and_bad_rows_are_skipped_lines(tmp_path):
    path = tmp_path / "big.jsonl"
    line = {"step": 0, "loss": 1.0, "weight_sums": {"w": [10 ** 15, 1.0, 1.0, 0.01, -0.1, 10, 10, 1.0, 1.0, -0.1, -0.1]}}
    path.write_text(json.dumps(line) + "\n")
    assert check_stream(path).weights["w"].verdict == "pending"
    reader = StreamReader()
    reader.feed(json.dumps({"step": 0, "loss": 1.0, "bias_sums": None}))
    reader.feed(json.dumps({"step": 1, "loss": 1.0, "bias_sums": {"h": [2 ** 60, 0, 0, 0, 0, 0, 0]}}))
    assert [p.line for p in reader.problems] == [1, 2] and "2**53" in reader.problems[1].message


def test_a_step_number_past_64_bits_reads_as_a_whole_number():
    from biasmon.core.lines import load_line
    assert load_line('{"step": 18446744073709551617, "loss": 1}')["step"] == 2 ** 64 + 1


def test_a_float32_presets_summary_header_says_its_gradients_are_float32():
    preset = presets.load(PRESETS / "gradient.toml")
    preset = replace(preset, network=dict(preset.network, dtype="float32"))
    assert Trainer(preset, steps=5).header("sums")["grad_dtype"] == "float32"
    assert "grad_dtype" not in Trainer(presets.load(PRESETS / "gradient.toml"), steps=5).header("sums")


def test_a_row_whose_float32_gradient_squared_to_zero_is_read_not_skipped():
    """A writer's sums are taken in the parameters' dtype: a float32 gradient near 1e-25 squares to 0
    while u.g does not (momentum keeps u large), and a bfloat16 1-entry bias rounds u.g past |u| |g|.
    Such rows are what `vanishing` is judged on: read, never skipped as impossible."""
    reader = StreamReader()
    for step in range(3):
        reader.feed(json.dumps({"step": step, "loss": 1.0, "bias_sums": {
            "h": [16, 1.0, 0.0, 1e-4, -3e-29, 0, 0], "o": [1, 1.0, 0.01, 1e-4, -1.004e-3, 1, 1]}}))
    assert reader.problems == []
