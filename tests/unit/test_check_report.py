"""What `check` reports about a stream, beyond the verdicts: each run's own divergence, lines (not
messages) counted as malformed, a null val_loss read as not given, a byte order mark, the first step of a
stream that does not start at 0, and the likely cause listed first."""
import json

import numpy as np
import pytest

from biasmon.check_cli import report_lines
from biasmon.core.check import check_stream


def line(t, target=0.2, val=0.5, loss=None):
    """A step of SGD on 0.5 (b - target)^2 per entry."""
    b = [target + 0.9 ** t, target - 0.9 ** t]
    g = [x - target for x in b]
    return json.dumps({"step": t, "loss": 0.5 * sum(x * x for x in g) + 0.01 if loss is None else loss,
                       "val_loss": val, "biases": {"h": b}, "bias_grads": {"h": g}})


def write(tmp_path, lines, text=None):
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(lines) + "\n" if text is None else text)
    return path


def test_a_divergence_belongs_to_its_run_not_the_last(tmp_path):
    first = [line(t) for t in range(40)] + [line(40, loss=float("inf"))]   # run 1 diverges
    restart = json.dumps({"event": "restarted", "step": 0, "run_id": "again"})
    second = [line(t) for t in range(40)]
    result = check_stream(write(tmp_path, first + [restart] + second))
    assert result.diverged is None                                   # the last run did not diverge
    assert [run.diverged.step for run in result.runs] == [40]
    assert result.runs[0].failing[-1] == "diverged at step 40"
    assert result.failing == [f"{result.runs[0].where()}: diverged at step 40"]
    text = report_lines(result)
    assert not any(t.startswith("DIVERGED") for t in text)          # under the last run's table: nothing
    assert "80 step lines (2 runs)" in text[0]                        # the diverging line is no step
    # the other way round: the last run diverges, the first did not
    result = check_stream(write(tmp_path, second + [restart] + first))
    assert result.diverged.step == 40 and result.runs[0].diverged is None
    assert result.failing == ["diverged at step 40"]


def test_each_run_reports_its_own_divergence(tmp_path):
    first = [line(t) for t in range(20)] + [line(20, loss=float("nan"))]
    restart = json.dumps({"event": "restarted", "step": 0})
    second = [line(t) for t in range(30)] + [line(30, loss=float("nan"))]
    result = check_stream(write(tmp_path, first + [restart] + second))
    assert result.runs[0].diverged.step == 20 and result.diverged.step == 30


def test_a_line_with_two_problems_is_one_malformed_line(tmp_path):
    lines = [line(t) for t in range(30)]
    lines[11] = line(11, loss=float("nan"), val=float("nan"))   # json.dumps writes NaN: read as not finite
    lines[20] = "not json"
    result = check_stream(write(tmp_path, lines))
    assert result.malformed.count == 2 and result.malformed.lines == [12, 21]
    assert result.malformed.problems == len(result.malformed.messages) == 2


@pytest.mark.parametrize("value", [None, float("nan")], ids=["null", "NaN"])
def test_a_val_loss_that_is_not_finite_is_read_as_not_given_and_noted(tmp_path, value):
    lines = [line(t, val=value) for t in range(30)]
    result = check_stream(write(tmp_path, lines))
    assert result.malformed.count == 0 and result.exit == 0
    assert result.final_val_loss is None
    assert "val_loss not finite (null, NaN or infinite) on 30 step line(s): read as not given" in result.notes


def test_a_null_val_loss_reads_the_same_in_blocks_as_line_by_line(tmp_path):
    lines = [line(t, val=None if t % 3 else 0.25 + t) for t in range(3000)]
    path = write(tmp_path, lines)
    fast = check_stream(path)
    import biasmon.core.fastlines as fastlines
    saved, fastlines._loads = fastlines._loads, None   # every line read line by line
    try:
        slow = check_stream(path, parallel=False)
    finally:
        fastlines._loads = saved
    assert fast.to_json() == slow.to_json()
    assert fast.final_val_loss == 0.25 + 2997


def test_a_byte_order_mark_is_dropped(tmp_path):
    header = json.dumps({"format": "biasmon-stream", "version": 1, "layers": [{"name": "h", "size": 2}]})
    path = write(tmp_path, [], text="\ufeff" + "\n".join([header] + [line(t) for t in range(30)]) + "\n")
    result = check_stream(path)
    assert result.malformed.count == 0 and result.steps == 30


def test_the_first_verdict_begins_at_the_first_step(tmp_path):
    result = check_stream(write(tmp_path, [line(7)]))
    assert result.layers["h"].verdict == "pending" and result.layers["h"].since == 7
    assert result.layers["h"].first_seen == 7


def test_the_cause_is_listed_before_what_follows_from_it(tmp_path):
    """Weights that climb their gradient blow up the bias norms: the weights' uphill comes first."""
    rng = np.random.default_rng(0)
    lines = []
    for t in range(120):
        b = (1.3 ** t) * np.ones(2)             # biases: down their gradient, their norm blowing up (exploding)
        w = np.array([0.5 + 0.01 * t, -0.5 - 0.01 * t])
        gw = np.array([1.0, -1.0]) + 0.01 * rng.normal(size=2)   # weights move along +g: uphill
        lines.append(json.dumps({"step": t, "loss": 1.0 + 0.01 * t, "biases": {"h": b.tolist()},
                                 "bias_grads": {"h": (-0.01 * b).tolist()}, "weights": {"h": w.tolist()},
                                 "weight_grads": {"h": gw.tolist()}}))
    result = check_stream(write(tmp_path, lines))
    verdicts = [f.split()[-1] for f in result.failing]
    assert "uphill" in verdicts and "exploding" in verdicts, result.failing
    assert verdicts.index("uphill") < verdicts.index("exploding")
    assert result.failing[0] == "h weights uphill"


def test_biases_the_writer_left_out_are_noted(tmp_path):
    header = json.dumps({"format": "biasmon-stream", "version": 1, "layers": [{"name": "h", "size": 2}],
                         "meta": {"left_out_biases": {"2": "requires_grad=False", "x": 3}}})
    result = check_stream(write(tmp_path, [header] + [line(t) for t in range(30)]))
    assert "the writer left out 2 bias layer(s), neither logged nor judged: 2 (requires_grad=False), " \
           "x (left out)" in result.notes
    for meta in (None, [], {"left_out_biases": ["2"]}, "text"):
        header = json.dumps({"format": "biasmon-stream", "version": 1, "layers": [{"name": "h", "size": 2}],
                             "meta": meta})
        result = check_stream(write(tmp_path, [header] + [line(t) for t in range(30)]))
        assert not any("left out" in note for note in result.notes)


def test_a_run_whose_every_step_line_diverged_is_still_judged(tmp_path):
    """Its lines give a diverged event and no step record: the run is kept, and fails the check."""
    bad = line(0, loss=float("nan"))
    restart = json.dumps({"event": "restarted", "step": 0})
    good = [line(t) for t in range(40)]
    result = check_stream(write(tmp_path, [bad, restart] + good))         # first run: one diverging line
    assert result.exit == 1 and result.runs[0].diverged.step == 0 and result.runs[0].steps == 0
    assert result.failing == ["run 1, no step read: diverged at step 0"]
    result = check_stream(write(tmp_path, good + [restart, bad]))         # the last run: one diverging line
    assert result.exit == 1 and result.diverged.step == 0 and result.failing == ["diverged at step 0"]
    assert [run.diverged for run in result.runs] == [None]
    text = report_lines(result)
    assert any(t.startswith("DIVERGED at step 0") for t in text) and "(2 runs)" in text[0]
    divergence = json.dumps({"event": "diverged", "step": 3})             # a run of a diverged event alone
    result = check_stream(write(tmp_path, good + [restart, divergence, restart] + good))
    assert result.exit == 1 and [run.diverged and run.diverged.step for run in result.runs] == [None, 3]


def test_a_gradient_check_naming_a_layer_no_step_line_has_is_a_note_not_silence(tmp_path):
    """A writer's typo ('fc3' for 'h'): its error judged nothing, and check said nothing of it."""
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join([
        '{"format": "biasmon-stream", "version": 2}',
        '{"event": "gradient_check", "step": 0, "errors": {"fc3": 0.5, "h": 1e-06}}',
        '{"step": 0, "loss": 1.0, "biases": {"h": [1.0, 2.0]}, "bias_grads": {"h": [0.1, 0.2]}}',
        '{"step": 1, "loss": 0.9, "biases": {"h": [0.99, 1.98]}, "bias_grads": {"h": [0.1, 0.2]}}']) + "\n")
    notes = check_stream(path).notes
    assert any("names layer(s) no step line has: 'fc3'" in note for note in notes), notes
    assert not any("'h'" in note for note in notes)
