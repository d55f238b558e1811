"""StreamWriter -> StreamReader round trip, the reader's rules for external streams, and check's policy
for transient versus sustained problems."""
import io
import json
import math

import numpy as np
import pytest

from biasmon import StreamWriter
from biasmon.core import Layout, Thresholds, finite_difference_errors
from biasmon.core.check import Check, check_stream
from biasmon.core.errors import BiasmonError
from biasmon.core.records import Event, StepRecord
from biasmon.core import StreamReader, read_all


def read_text(text, **kw):
    reader = StreamReader(recompute=True, **kw)
    out = []
    for line in text.splitlines():
        out += reader.feed(line)
    out += reader.finish()
    return [r for r in out if isinstance(r, StepRecord)], [r for r in out if isinstance(r, Event)], reader


def sgd_lines(writer, steps=30, sign=1.0, start=0, every=1):
    b = np.array([1.0, -2.0, 0.5])
    for t in range(start, start + steps):
        g = b - np.array([0.2, 0.1, -0.3])
        if t % every == 0:
            writer.step(t, float(g @ g), biases={"h": b[:2], "o": b[2:]}, bias_grads={"h": g[:2], "o": g[2:]},
                        val_loss=float(g @ g) * 1.1)
        b = b - sign * 0.1 * g


def test_writer_writes_a_header_then_one_flushed_line_per_step(tmp_path):
    path = tmp_path / "run.jsonl"
    with StreamWriter(path, run_id="r1", meta={"lr": 0.1}) as log:
        sgd_lines(log, steps=2)
        assert len(path.read_text().splitlines()) == 3   # flushed before close
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["format"] == "biasmon-stream" and lines[0]["version"] == 1 and lines[0]["run_id"] == "r1"
    assert lines[0]["layers"] == [{"name": "h", "size": 2}, {"name": "o", "size": 1}] and lines[0]["meta"] == {"lr": 0.1}
    assert set(lines[1]) == {"step", "loss", "val_loss", "biases", "bias_grads"}
    assert lines[1]["biases"] == {"h": [1.0, -2.0], "o": [0.5]}


def test_round_trip_derives_the_update_from_consecutive_biases(tmp_path):
    path = tmp_path / "run.jsonl"
    with StreamWriter(path) as log:
        sgd_lines(log, steps=20)
    records, reader = read_all(path, recompute=True)
    steps = [r for r in records if isinstance(r, StepRecord)]
    assert len(steps) == 20 and reader.problems == [] and reader.max_span == 1
    np.testing.assert_allclose(steps[0].bias_updates["h"], -0.1 * steps[0].bias_grads["h"])
    assert steps[-1].bias_updates is None            # the last step's update is not known
    assert steps[-2].diag["h"].verdict == "ok" and steps[-2].diag["h"].cos == pytest.approx(1.0)


def test_sparse_steps_span_k_steps(tmp_path):
    path = tmp_path / "run.jsonl"
    with StreamWriter(path) as log:
        sgd_lines(log, steps=40, every=4)
    records, reader = read_all(path, recompute=True)
    steps = [r for r in records if isinstance(r, StepRecord)]
    assert reader.max_span == 4 and steps[0].span == 4
    assert steps[-2].diag["h"].verdict == "ok"


def test_explicit_bias_updates_are_used_as_given():
    text = "\n".join(json.dumps({"step": t, "loss": 1.0, "biases": {"a": [0.0, 0.0]}, "bias_grads": {"a": [1.0, 1.0]},
                                 "bias_updates": {"a": [0.1, 0.1]}}) for t in range(8))   # b never changes!
    steps, _, reader = read_text(text)
    assert steps[-1].bias_updates["a"].tolist() == [0.1, 0.1]    # not derived (that would be 0)
    assert steps[-1].diag["a"].verdict == "uphill"


def test_the_writer_rejects_what_the_reader_would_skip(tmp_path):
    log = StreamWriter(io.StringIO())
    log.step(0, 1.0, biases={"a": [1.0, 2.0]})
    with pytest.raises(BiasmonError, match="layers changed from a\\[2\\] to a\\[3\\]"):
        log.step(1, 1.0, biases={"a": [1.0, 2.0, 3.0]})
    with pytest.raises(BiasmonError, match="step 0 does not follow step 0"):
        log.step(0, 1.0, biases={"a": [1.0, 2.0]})
    with pytest.raises(BiasmonError, match="bias_grads must have the layers of biases"):
        log.step(2, 1.0, biases={"a": [1.0, 2.0]}, bias_grads={"b": [0.0, 0.0]})
    with pytest.raises(BiasmonError, match="biases\\['a'\\] must be a vector of numbers"):
        log.step(3, 1.0, biases={"a": ["x", "y"]})
    with pytest.raises(BiasmonError, match="step 4: loss must be a number, got str 'abc'"):
        log.step(4, "abc", biases={"a": [1.0, 2.0]})
    with pytest.raises(BiasmonError, match="step 5: val_loss must be a number, got list"):
        log.step(5, 1.0, biases={"a": [1.0, 2.0]}, val_loss=[0.5])
    log.step(6, np.float32(0.5), biases={"a": [1.0, 2.0]}, val_loss=np.array(0.25))   # NumPy numbers, 0-d arrays


def test_non_finite_values_are_written_as_null_and_read_as_divergence():
    handle = io.StringIO()
    log = StreamWriter(handle)
    log.step(0, 1.0, biases={"a": [1.0]}, bias_grads={"a": [0.5]})
    log.step(1, math.nan, biases={"a": [math.inf]}, bias_grads={"a": [0.5]})
    line = json.loads(handle.getvalue().splitlines()[-1])
    assert line["loss"] is None and line["biases"] == {"a": [None]}
    _, events, reader = read_text(handle.getvalue())
    assert reader.diverged.step == 1 and reader.diverged.data["layer"] == "a"
    assert [e.kind for e in events] == ["diverged"]


def test_a_step_record_with_non_finite_entries_is_written_with_nulls():
    from biasmon.core import RecordWriter
    handle = io.StringIO()
    rec = StepRecord(3, 1.0, None, {"a": np.array([1.0, np.nan])}, {"a": np.array([np.inf, 0.5])},
                     {"a": np.array([-np.inf, 0.0])})
    RecordWriter(handle).write(rec)  # JSON has no NaN: this must not raise
    line = json.loads(handle.getvalue())
    assert line["biases"] == {"a": [1.0, None]} and line["bias_grads"] == {"a": [None, 0.5]}
    assert line["bias_updates"] == {"a": [None, 0.0]}


def test_a_loss_blowing_up_is_divergence():
    text = "\n".join(json.dumps({"step": t, "loss": 10.0 ** (2 * t), "biases": {"a": [float(t)]}}) for t in range(6))
    _, events, reader = read_text(text)
    assert reader.diverged == Event("diverged", 4, {"layer": None, "reason": "loss blew up to 1e+08"})


def test_the_reader_rejects_malformed_step_lines_with_the_key_and_what_is_allowed():
    lines = [
        {"step": 0, "loss": 1.0, "biases": {"a": [1.0, 2.0]}},
        {"step": 1, "loss": 1.0, "biases": {"a": [1.0, [2.0]]}},
        {"step": 2, "loss": 1.0, "biases": {"a": [1.0, 2.0]}, "bias_trained": "yes"},
        {"step": 3, "loss": True, "biases": {"a": [1.0, 2.0]}},
        {"step": -1, "loss": 1.0, "biases": {"a": [1.0, 2.0]}},
        {"step": 4, "loss": 1.0, "biases": {"a": [1.0, 2.0]}, "bias_grads": {"a": [1.0]}},
        {"step": 0, "loss": 1.0, "biases": {"a": [1.0, 2.0]}},
        {"event": "verdict"},
        {"step": 5, "loss": 1.0, "biases": {"a": [1e400, 2.0]}},
    ]
    _, _, reader = read_text("\n".join(json.dumps(x) if not isinstance(x, str) else x for x in lines)
                             .replace("1e+400", "1e400").replace("Infinity", "1e400"))
    messages = [str(p) for p in reader.problems]
    assert messages[0] == "line 2: 'biases.a[1]' must be a number (or null for a non-finite value), got [2.0]"
    assert messages[1] == "line 3: 'bias_trained' must be true or false, got \"yes\""
    assert messages[2] == "line 4: 'loss' must be a number (or null for a non-finite value), got true"
    assert messages[3] == "line 5: 'step' must be a whole number >= 0, got -1"
    assert messages[4] == "line 6: 'bias_grads' layers must match 'biases': a[2], got a[1]"
    assert messages[5] == "line 7: step 0 does not follow step 0"
    assert messages[6] == "line 8: an event line needs a string 'event' and a whole-number 'step'"
    assert messages[7] == "line 9: non-finite value in 'biases': read as divergence"
    assert reader.steps_read == 2   # lines 1 and 9


def test_gradient_check_events_flag_a_wrong_gradient():
    target = np.array([0.3, -0.2, 0.1])

    def loss_at(biases):
        b = np.concatenate([biases["h"], biases["o"]])
        return float(0.5 * np.sum((b - target) ** 2))

    for wrong, expected in ((False, "ok"), (True, "gradient mismatch")):
        handle = io.StringIO()
        log = StreamWriter(handle, loss_at=loss_at, check_every=5)
        b = np.array([1.0, 2.0, 3.0])
        for t in range(12):
            g = (b - target) * (2.0 if wrong else 1.0)
            log.step(t, loss_at({"h": b[:2], "o": b[2:]}), biases={"h": b[:2], "o": b[2:]},
                     bias_grads={"h": g[:2], "o": g[2:]})
            b = b - 0.1 * g
        events = [json.loads(x) for x in handle.getvalue().splitlines() if '"gradient_check"' in x]
        assert [e["step"] for e in events] == [0, 5, 10]
        assert (max(events[0]["errors"].values()) > 0.1) == wrong
        steps, _, _ = read_text(handle.getvalue())
        assert steps[-2].diag["h"].verdict == expected and steps[-2].diag["o"].verdict == expected


def test_finite_difference_errors_match_the_loggers_check():
    layout = Layout(("h",), (2,))
    errors = finite_difference_errors(lambda b: float(b @ b), np.array([1.0, 2.0]), np.array([2.0, 4.0]), layout)
    assert errors["h"] < 1e-6


def check_of(lines, sustain=50):
    check = Check(Thresholds(), sustain)
    for line in lines:
        check.feed(json.dumps(line))
    check.finish()
    return check.result().to_json()


def sign_stretch_lines(steps, flipped):
    """SGD on one bias layer, with the sign flipped during `flipped` (a range of steps)."""
    out, b = [], np.array([2.0, -1.0])
    for t in range(steps):
        g = b.copy()
        out.append({"step": t, "loss": float(g @ g) / 2 + 0.1, "biases": {"a": b.tolist()}, "bias_grads": {"a": g.tolist()}})
        b = b + (0.02 if t in flipped else -0.02) * g
    return out


def test_a_transient_problem_is_reported_but_does_not_fail_the_check():
    result = check_of(sign_stretch_lines(300, range(100, 120)))
    layer = result["layers"]["a"]
    assert layer["verdict"] == "ok" and result["exit"] == 0
    (problem,) = layer["problems"]
    assert problem["verdict"] == "uphill" and 100 <= problem["first_step"] <= 115
    assert 0 < problem["longest_steps"] < 50 and problem["counts"] is False


def test_a_sustained_problem_fails_the_check_even_if_it_ends():
    result = check_of(sign_stretch_lines(400, range(100, 200)))
    layer = result["layers"]["a"]
    assert layer["verdict"] == "ok" and result["exit"] == 1
    uphill = next(p for p in layer["problems"] if p["verdict"] == "uphill")
    assert uphill["counts"] is True and uphill["longest_steps"] >= 90 and result["failing"] == ["a uphill"]
    assert check_of(sign_stretch_lines(400, range(100, 200)), sustain=500)["exit"] == 0


def test_a_final_problem_always_fails_the_check():
    result = check_of(sign_stretch_lines(130, range(105, 130)), sustain=1000)
    assert result["layers"]["a"]["verdict"] == "uphill" and result["exit"] == 1


def test_check_stream_raises_on_a_missing_file(tmp_path):
    with pytest.raises(BiasmonError, match="nope.jsonl: cannot read"):
        check_stream(tmp_path / "nope.jsonl")


def test_every_threshold_is_a_check_option():
    from biasmon.cli import _sub_parser
    args = _sub_parser("check").parse_args(["x.jsonl"])
    for name in Thresholds.names():
        assert getattr(args, name) == getattr(Thresholds(), name)
    args = _sub_parser("check").parse_args(["x.jsonl", "--uphill-cos", "-0.5", "--momentum-betas", "0.8,0.95",
                                            "--unrelated-steps", "300"])
    assert (args.uphill_cos, args.momentum_betas, args.unrelated_steps) == (-0.5, (0.8, 0.95), 300)


def test_parsing_in_a_second_process_gives_the_same_result(tmp_path, monkeypatch):
    monkeypatch.setattr("biasmon.core.check.CHUNK_LINES", 7)   # many chunks, boundaries inside runs
    path = tmp_path / "mixed.jsonl"
    with StreamWriter(path) as log:
        sgd_lines(log, steps=40)
        log.event("flip_sign", 40, flip_sign=True)
        sgd_lines(log, steps=30, sign=-1.0, start=40)
    lines = path.read_text().splitlines()
    lines[5] = "not json"
    lines[9] = lines[9].replace('"loss":', '"loss": true, "x":')
    lines[12] = lines[12].replace("[", '["x", ', 1)
    lines.insert(20, json.dumps({"event": "gradient_check", "step": 19, "errors": {"h": 0.5, "o": 1e-9}}))
    path.write_text("\n".join(lines) + "\n{\"step\": 99, \"loss\"")
    sequential = check_stream(path, parallel=False)
    assert sequential.malformed.count >= 4 and sequential.exit == 1
    assert check_stream(path, parallel=True) == sequential


def test_a_line_longer_than_a_reader_takes_is_not_written(tmp_path, monkeypatch):
    """A big model's vectors make lines past MAX_LINE_CHARS, which every reader skips: the writer raises a
    one-line BiasmonError naming the step and the summary form instead, and writes nothing of the line
    (the stream before it stays readable)."""
    from biasmon.core import stream
    monkeypatch.setattr(stream, "MAX_LINE_CHARS", 400)
    path = tmp_path / "run.jsonl"
    log = StreamWriter(path)
    log.step(0, 1.0, {"h": np.zeros(40)}, bias_grads={"h": np.ones(40)})   # short numbers: about 350 characters
    with pytest.raises(BiasmonError, match=r"step 1's line would be [\d,]+ characters, past the 400 a reader takes"):
        log.step(1, 1.0, {"h": np.linspace(0.1, 1.0, 40)}, bias_grads={"h": np.linspace(0.1, 1.0, 40)})
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(len(line) <= 400 for line in lines)
    assert [r.step for r in read_all(path)[0] if isinstance(r, StepRecord)] == [0]


def test_a_refused_line_leaves_the_writer_usable_and_close_still_closes(tmp_path, monkeypatch):
    """The step of a refused line is not logged (the same step may come again, smaller); with every > 1 a
    last span refused at close() still closes the file."""
    from biasmon.core import stream
    monkeypatch.setattr(stream, "MAX_LINE_CHARS", 400)
    big = {"h": np.linspace(0.1, 1.0, 40)}
    log = StreamWriter(tmp_path / "a.jsonl")
    with pytest.raises(BiasmonError):
        log.step(0, 1.0, big, bias_grads=big)
    log.step(0, 1.0, {"h": np.zeros(40)}, bias_grads={"h": np.ones(40)})
    log.close()
    assert [r.step for r in read_all(tmp_path / "a.jsonl")[0] if isinstance(r, StepRecord)] == [0]
    log = StreamWriter(tmp_path / "b.jsonl", every=4)
    log.step(0, 1.0, big, bias_grads=big)
    with pytest.raises(BiasmonError):
        log.close()
    assert log.closed and log._handle.closed


@pytest.mark.parametrize("unused", ["zeros", "null"])
def test_a_head_first_used_late_is_detached_until_then_and_passes_the_check(tmp_path, unused):
    """A layer no gradient reaches for its first 80 steps (a head whose loss term starts later: zeros, as
    JAX gives, or null, as PyTorch's None), then trained: detached while unused, ok after, and the check
    passes (detached fails it only as the final verdict); one never used fails it."""
    def run(path, used_from):
        rng = np.random.default_rng(0)
        b = {"a": rng.normal(size=4), "b": rng.normal(size=3), "aux": rng.normal(size=2)}
        with StreamWriter(path) as log:
            for t in range(300):
                g = {k: v - 0.5 + 0.01 * rng.normal(size=v.size) for k, v in b.items()}
                if t < used_from:
                    g["aux"] = np.zeros(2)
                logged = dict(g, aux=None) if t < used_from and unused == "null" else g
                loss = float(sum((v - 0.5) @ (v - 0.5) for v in b.values())) + 0.1
                log.step(t, loss, {k: v.copy() for k, v in b.items()}, bias_grads=logged)
                b = {k: v - 0.1 * g[k] for k, v in b.items()}
        return check_stream(path)

    late = run(tmp_path / "late.jsonl", 80)
    aux = late.layers["aux"]
    assert aux.verdict == "ok" and late.exit == 0, late.failing
    assert [(p.verdict, p.first_step, p.longest_steps >= 50, p.counts) for p in aux.problems] == [("detached", 9, True, False)]
    never = run(tmp_path / "never.jsonl", 10 ** 9)
    assert never.layers["aux"].verdict == "detached" and never.exit == 1
