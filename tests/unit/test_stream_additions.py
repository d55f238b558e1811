"""Stream format additions: a layer no gradient reached (`bias_grads` null), lines that sum the gradients
of the steps they span (`grad_steps`, StreamWriter(every=k)), and gradient checks that cannot decide (a
loss_at that is not deterministic; an error inside the check's own bound)."""
import io
import json

import numpy as np
import pytest

import biasmon.core.reader as reader_module
from biasmon import StreamWriter
from biasmon.core import Diagnoser, StreamReader
from biasmon.core.check import Check
from biasmon.core.lines import parse_step
from biasmon.core.records import StepRecord
from biasmon.core.verdicts import Thresholds

TARGET = np.array([0.3, -0.2, 0.1])


def read(text, monkeypatch=None):
    """The step records, and (with monkeypatch) the Observations the reader handed its Diagnoser."""
    seen = []
    if monkeypatch is not None:
        class Capturing(Diagnoser):
            def observe(self, steps):
                seen.extend(steps)
                return super().observe(steps)
        monkeypatch.setattr(reader_module, "Diagnoser", Capturing)
    reader = StreamReader(recompute=True)
    out = []
    for line in text.splitlines():
        out += reader.feed(line)
    out += reader.finish()
    return [r for r in out if isinstance(r, StepRecord)], seen, reader


def check_text(text):
    check = Check(Thresholds())
    for line in text.splitlines():
        check.feed(line)
    check.finish()
    return check.result()


def test_a_null_layer_in_bias_grads_reads_as_unreached_with_zeros():
    line = parse_step({"step": 0, "loss": 1.0, "biases": {"a": [1.0, 2.0], "b": [3.0]},
                       "bias_grads": {"a": [0.5, -0.5], "b": None}})
    assert line.unreached == (False, True)
    assert line.grads.flat.tolist() == [0.5, -0.5, 0.0]
    assert parse_step({"step": 0, "loss": 1.0, "biases": {"a": [1.0]}, "bias_grads": {"a": [0.5]}}).unreached is None


def test_the_writer_writes_a_none_gradient_as_null_and_the_reader_passes_it_on(monkeypatch):
    handle = io.StringIO()
    with StreamWriter(handle) as log:
        for t in range(3):
            log.step(t, 1.0, biases={"a": [1.0 - t, 2.0], "b": [3.0]}, bias_grads={"a": [1.0, 0.0], "b": None})
    lines = [json.loads(x) for x in handle.getvalue().splitlines()[1:]]
    assert [line["bias_grads"] for line in lines] == [{"a": [1.0, 0.0], "b": None}] * 3
    steps, seen, reader = read(handle.getvalue(), monkeypatch)
    assert reader.problems == [] and len(steps) == 3
    assert [o.unreached for o in seen] == [(False, True)] * 3
    assert seen[0].g.tolist() == [1.0, 0.0, 0.0]


def test_a_null_layer_that_biases_does_not_have_is_a_problem():
    _, _, reader = read(json.dumps({"step": 0, "loss": 1.0, "biases": {"a": [1.0]}, "bias_grads": {"z": None}}))
    assert reader.problems and "'bias_grads.z' is null but 'biases' has no layer 'z'" in reader.problems[0].message


def minibatch_sgd(log, steps, every_call=1, lr=0.1, seed=0):
    """SGD on 0.5*|b - target_i|^2 with a target drawn per step (minibatches); log.step every `every_call`."""
    rng = np.random.default_rng(seed)
    b, grads, biases = np.array([1.0, 2.0, 3.0]), [], []
    for t in range(steps):
        g = b - TARGET - rng.normal(0, 0.5, 3)
        if t % every_call == 0:
            log.step(t, float(g @ g) / 2, biases={"h": b[:2], "o": b[2:]}, bias_grads={"h": g[:2], "o": g[2:]})
        grads.append(g)
        biases.append(b)
        b = b - lr * g
    return np.array(biases), np.array(grads)


@pytest.mark.parametrize("k", [2, 5, 7])
def test_every_k_writes_one_line_per_span_with_the_summed_gradient(k):
    handle = io.StringIO()
    with StreamWriter(handle, every=k) as log:
        biases, grads = minibatch_sgd(log, 30)
    lines = [json.loads(x) for x in handle.getvalue().splitlines()[1:]]
    assert [line["step"] for line in lines] == list(range(0, 30, k))
    assert [line["grad_steps"] for line in lines] == [min(k, 30 - s) for s in range(0, 30, k)]
    for line in lines:
        s = line["step"]
        np.testing.assert_allclose(line["bias_grads"]["h"] + line["bias_grads"]["o"], grads[s:s + k].sum(axis=0))
        np.testing.assert_array_equal(line["biases"]["h"] + line["biases"]["o"], biases[s])
    steps, _, reader = read(handle.getvalue())
    assert reader.max_span == k and reader.summed_grads
    for rec in steps[:-1]:   # the derived update is exactly -lr times the summed gradient
        np.testing.assert_allclose(rec.bias_updates["h"], -0.1 * rec.bias_grads["h"], rtol=1e-12, atol=1e-15)
        assert rec.span == k


def test_check_says_that_sparse_lines_carry_summed_gradients():
    handle = io.StringIO()
    with StreamWriter(handle, every=4) as log:
        minibatch_sgd(log, 200)
    notes = check_text(handle.getvalue()).notes
    assert any("bias_grads summed over them (grad_steps)" in n for n in notes), notes


def test_grad_steps_sets_the_span_of_a_line_with_its_update():
    text = "\n".join(json.dumps({"step": 3 * t, "loss": 1.0, "biases": {"a": [0.0]}, "bias_grads": {"a": [1.0]},
                                 "bias_updates": {"a": [-0.1]}, "grad_steps": 3}) for t in range(4))
    steps, seen, reader = read(text)
    assert [r.span for r in steps] == [3, 3, 3, 3] and reader.summed_grads
    _, _, bad = read(json.dumps({"step": 0, "loss": 1.0, "biases": {"a": [0.0]}, "grad_steps": 0}))
    assert bad.problems[0].message == "'grad_steps' must be a whole number >= 1, got 0"


def quadratic_loss_at(biases):
    b = np.concatenate([biases["h"], biases["o"]])
    return float(0.5 * np.sum((b - TARGET) ** 2))


def test_the_gradient_check_with_every_k_compares_a_single_steps_gradient():
    handle = io.StringIO()
    b = np.array([1.0, 2.0, 3.0])
    with StreamWriter(handle, every=5, loss_at=quadratic_loss_at, check_every=10) as log:
        for t in range(30):
            g = b - TARGET
            log.step(t, quadratic_loss_at({"h": b[:2], "o": b[2:]}), biases={"h": b[:2], "o": b[2:]},
                     bias_grads={"h": g[:2], "o": g[2:]})
            b = b - 0.05 * g
    events = [json.loads(x) for x in handle.getvalue().splitlines() if '"gradient_check"' in x]
    assert [e["step"] for e in events] == [0, 10, 20]
    assert max(max(e["errors"].values()) for e in events) < 1e-6


def test_a_loss_at_that_is_not_deterministic_is_said_to_be_so_not_a_mismatch():
    rng = np.random.default_rng(1)

    def noisy_loss_at(biases):   # as with dropout, or a different batch per call
        return quadratic_loss_at(biases) * (1 + 0.05 * rng.normal())

    handle = io.StringIO()
    b = np.array([1.0, 2.0, 3.0])
    with StreamWriter(handle, loss_at=noisy_loss_at, check_every=10) as log:
        for t in range(40):
            g = b - TARGET
            log.step(t, 1.0, biases={"h": b[:2], "o": b[2:]}, bias_grads={"h": g[:2], "o": g[2:]})
            b = b - 0.05 * g
    events = [json.loads(x) for x in handle.getvalue().splitlines() if '"gradient_check"' in x]
    assert events and all(e["nondeterministic"] is True and "errors" not in e for e in events)
    result = check_text(handle.getvalue())
    assert result.exit == 0 and {d.verdict for d in result.layers.values()} == {"ok"}
    assert any("loss_at is not deterministic" in n for n in result.notes)


def test_a_check_that_decided_nothing_for_a_layer_leaves_its_last_error_standing():
    check = lambda step, data: json.dumps({"event": "gradient_check", "step": step, **data})
    lines, b = [check(0, {"errors": {"a": 0.5}})], np.array([2.0, -1.0])
    for t in range(20):
        if t == 10:   # every entry undecided: no evidence either way, the failed check still stands
            lines.append(check(10, {"errors": {}, "undecided": {"a": 2}}))
        lines.append(json.dumps({"step": t, "loss": 1.0, "biases": {"a": b.tolist()}, "bias_grads": {"a": b.tolist()}}))
        b = b - 0.1 * b
    steps, _, _ = read("\n".join(lines))
    assert steps[-2].diag["a"].verdict == "gradient mismatch" and steps[-2].diag["a"].fd_error == 0.5


def test_the_events_log_shows_what_a_gradient_check_could_not_decide():
    from biasmon.core import Event
    from biasmon.tui.events_panel import describe
    note = "loss_at is not deterministic: two calls at the same biases gave 1 and 2"
    assert note in describe(Event("gradient_check", 5, {"nondeterministic": True, "note": note})).plain


def test_a_gradient_check_of_weights_alone_reads_without_an_empty_bias_list():
    from biasmon.core import Event
    from biasmon.tui.events_panel import describe
    line = describe(Event("gradient_check", 5, {"errors": {}, "weight_errors": {"h": 1e-7, "out": 2e-8}})).plain
    assert line.endswith("gradient check max rel. error 1.0e-07: weights: h 1.0e-07, out 2.0e-08")
    both = describe(Event("gradient_check", 5, {"errors": {"h": 3e-9}, "weight_errors": {"h": 1e-7}})).plain
    assert both.endswith("max rel. error 1.0e-07: h 3.0e-09; weights: h 1.0e-07")


def detached_stream(null_from: int, steps: int = 60) -> str:
    """SGD on two layers; from step null_from on, the 'frozen_head' layer's gradient is logged null."""
    lines, b = [], np.array([0.5, -0.4, 0.2])
    for t in range(steps):
        g = b - TARGET
        grads = {"hidden": g[:2].tolist(), "frozen_head": None if t >= null_from else g[2:].tolist()}
        lines.append(json.dumps({"step": t, "loss": float(g @ g), "biases": {"hidden": b[:2].tolist(),
                                 "frozen_head": b[2:].tolist()}, "bias_grads": grads}))
        b = b - 0.1 * np.where([True, True, t < null_from], g, 0.0)
    return "\n".join(lines)


def test_a_bias_no_gradient_reaches_is_detached_a_problem_and_the_others_are_judged_as_usual():
    result = check_text(detached_stream(null_from=0))
    layers = result.layers
    assert layers["frozen_head"].verdict == "detached" and layers["hidden"].verdict == "ok"
    assert result.exit == 1
    records, _, _ = read(detached_stream(null_from=0))
    assert records[-2].diag["frozen_head"].g_norm is None and records[-2].diag["hidden"].g_norm is not None


def test_a_gradient_missing_for_a_few_steps_is_not_detached_but_ten_in_a_row_are():
    assert check_text(detached_stream(null_from=52)).exit == 0   # 8 lines without: not yet
    result = check_text(detached_stream(null_from=45))           # 15 lines without
    assert result.layers["frozen_head"].verdict == "detached"


def test_a_layer_that_learned_then_gets_no_gradient_is_detached_as_frozen_mid_run_and_does_not_fail():
    """Freezing a layer mid-run (fine-tuning: requires_grad=False, or .grad set to None) leaves it without a
    gradient after it learned: detached, said so (not 'it never learns'), listed, and the check passes
    once it learned for `sustain` lines or more. Cut off a few steps in (a .detach() bug after a warm-up),
    or from the start (it never learns), that fails."""
    from biasmon.core.verdicts import CAUSES, NO_LONGER_REACHED
    cut_early = check_text(detached_stream(null_from=20, steps=120))   # ok for 16 lines, then none
    assert cut_early.layers["frozen_head"].verdict == "detached" and cut_early.exit == 1
    late = check_text(detached_stream(null_from=70, steps=120))       # ok for 66 lines, then none
    head = late.layers["frozen_head"]
    assert head.verdict == "detached" and head.cause == NO_LONGER_REACHED[0]
    assert [(p.verdict, p.final, p.counts) for p in head.problems] == [("detached", True, False)]
    assert late.exit == 0 and late.failing == []
    early = check_text(detached_stream(null_from=0))
    assert early.layers["frozen_head"].cause == CAUSES["detached"] and early.exit == 1
    lines, b = [], 0.5   # the only layer learns for 70 lines, then gets no gradient: nothing learns any more
    for t in range(100):
        g = b - 0.1
        lines.append(json.dumps({"step": t, "loss": g * g + 0.01, "biases": {"a": [b]}, "bias_grads": {"a": [g] if t < 70 else None}}))
        b -= 0.05 * g if t < 70 else 0.0
    alone = check_text("\n".join(lines))
    assert alone.layers["a"].verdict == "detached" and alone.exit == 1


def rounding_noise_stream(steps: int = 60) -> str:
    """A float32 trainer: 'hidden' learns; 'pre_norm' has a gradient of rounding noise (a bias a
    normalisation layer cancels), so its Adam-like steps go nowhere in particular."""
    rng = np.random.default_rng(5)
    lines, b, c = [], np.array([0.5, -0.4], dtype=np.float32), np.zeros(3, dtype=np.float32)
    for t in range(steps):
        g = (b - TARGET[:2]).astype(np.float32)
        noise = (rng.normal(size=3) * 3e-9).astype(np.float32)
        lines.append(json.dumps({"step": t, "loss": float(g @ g), "biases": {"hidden": b.tolist(), "pre_norm": c.tolist()},
                                 "bias_grads": {"hidden": g.tolist(), "pre_norm": noise.tolist()}}))
        b = (b - np.float32(0.1) * g).astype(np.float32)
        c = (c - np.float32(1e-3) * np.sign(noise)).astype(np.float32)
    return "\n".join(lines)


def test_a_gradient_of_rounding_noise_is_redundant_not_a_problem():
    result = check_text(rounding_noise_stream())
    assert result.layers["pre_norm"].verdict == "redundant" and result.layers["hidden"].verdict == "ok"
    assert result.exit == 0


def test_redundant_can_be_turned_off_and_a_float64_gradient_that_small_is_not_rounding():
    check = Check(Thresholds(redundant_ulps=0))
    for line in rounding_noise_stream().splitlines():
        check.feed(line)
    check.finish()
    assert check.result().layers["pre_norm"].verdict != "redundant"
    as_float64 = "\n".join(json.dumps({**obj, "bias_grads": {k: [x * (1 + 1e-12) for x in v] for k, v in obj["bias_grads"].items()}})
                           for obj in map(json.loads, rounding_noise_stream().splitlines()))
    assert check_text(as_float64).layers["pre_norm"].verdict != "redundant"
