"""Reading regular lines in blocks (core/fastlines.py, StreamReader.feed_lines) gives exactly what reading
them line by line gives: the same records, problems and errors, on recordings of every form and on
streams with every kind of irregular line among regular ones."""
import importlib.util
import json
import random
from pathlib import Path

import numpy as np
import pytest

from biasmon.core import StreamReader, Thresholds, load_preset
from biasmon.core.errors import StreamError
from biasmon.core.records import StepRecord
from biasmon.core.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]


def _fuzz_cases():
    spec = importlib.util.spec_from_file_location("fuzz_cases", ROOT / "bench" / "fuzz_cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(lines, blocks, chunk=7, recompute=True, every_step=False):
    """(records as JSON, problems) or the StreamError's text: line by line, or in chunks of `chunk` lines."""
    reader = StreamReader(Thresholds(), recompute=recompute, block=256, every_step=every_step)
    out = []
    try:
        if blocks:
            for i in range(0, len(lines), chunk):
                out += reader.feed_lines(lines[i:i + chunk])
        else:
            for line in lines:
                out += reader.feed(line)
        out += reader.finish()
    except StreamError as exc:
        return str(exc), reader.line_no
    return [_full(r) for r in out], [str(p) for p in reader.problems], reader.max_span, reader.summed_grads


def _full(record):
    """A record as comparable text: its JSON, and a step's diagnoses, loss change and sums too (which a
    summary-form record's JSON leaves out)."""
    if not isinstance(record, StepRecord):
        return record.to_json()
    sums = [None if s is None else (s.names, s.table.tolist(), s.has_g, s.has_u)
            for s in (record.bias_sums, record.weight_sums)]
    return repr((record.to_json(), record.diag, record.weight_diag, record.loss_change, record.span, sums))


def same(lines, **kw):
    for chunk in (1, 7, 2000):
        assert read(lines, True, chunk, **kw) == read(lines, False, **kw), chunk


def recording(preset, steps, form, **overrides):
    trainer = Trainer(load_preset(preset), steps=steps, **overrides)
    lines = [json.dumps(trainer.header(form), separators=(",", ":"))]
    lines += [json.dumps(r.summary_json() if form == "sums" and isinstance(r, StepRecord) else r.to_json(),
                         separators=(",", ":"), allow_nan=False) for r in trainer]
    return [line + "\n" for line in lines]


@pytest.mark.parametrize("form", ["vectors", "sums"])
@pytest.mark.parametrize("preset", ["gradient", "story-bias-joins", "story-gap-scaled", "none", "frozen"])
def test_recordings_read_the_same_in_blocks(preset, form):
    lines = recording(preset, 320, form)
    same(lines)
    same(lines, recompute=False, every_step=True)


def _vector_line(step, b, g, u=None, **extra):
    line = {"step": step, "loss": 1.0 / (step + 1), "val_loss": 2.0 / (step + 1),
            "biases": {"h": b[:2], "o": b[2:]}, "bias_grads": {"h": g[:2], "o": g[2:]}}
    if u is not None:
        line["bias_updates"] = {"h": u[:2], "o": u[2:]}
    line.update(extra)
    return line


def _stream(irregular, steps=60, updates=False, at=(20, 41)):
    """A descending 3-bias stream with `irregular(step, line) -> list of lines` put in at the steps `at`."""
    rng = np.random.default_rng(0)
    b = np.array([1.0, -1.0, 0.5])
    lines = [json.dumps({"format": "biasmon-stream", "version": 1, "run_id": "t"})]
    for step in range(steps):
        g = b + 0.01 * rng.normal(size=3)
        u = (-0.1 * g).tolist() if updates else None
        line = _vector_line(step, b.tolist(), g.tolist(), u)
        if step in at:
            lines += irregular(step, line)
        else:
            lines.append(json.dumps(line))
        b = b - 0.1 * g
    return [line + "\n" for line in lines]


IRREGULAR = {
    "null entry": lambda s, line: [json.dumps(line).replace(str(line["biases"]["h"][0]), "null", 1)],
    "NaN literal": lambda s, line: [json.dumps(line).replace(str(line["biases"]["h"][0]), "NaN", 1)],
    "true entry": lambda s, line: [json.dumps(line).replace(str(line["bias_grads"]["o"][0]), "true", 1)],
    "string entry": lambda s, line: [json.dumps(line).replace(str(line["biases"]["o"][0]), '"1.5"', 1)],
    "integer entries": lambda s, line: [json.dumps({**line, "biases": {"h": [1, 2], "o": [3]}})],
    "huge integer": lambda s, line: [json.dumps({**line, "biases": {"h": [2 ** 70, 2], "o": [3]}})],
    "layer as text": lambda s, line: [json.dumps({**line, "biases": {"h": "ab", "o": [3.0]}})],
    "layer as object": lambda s, line: [json.dumps({**line, "biases": {"h": {"a": 1, "b": 2}, "o": [3.0]}})],
    "nested entry": lambda s, line: [json.dumps({**line, "biases": {"h": [[1.0], 2.0], "o": [3.0]}})],
    "null gradients": lambda s, line: [json.dumps({**line, "bias_grads": None})],
    "null gradient layer": lambda s, line: [json.dumps({**line, "bias_grads": {"h": None, "o": [0.1]}})],
    "untrained": lambda s, line: [json.dumps({**line, "bias_trained": False})],
    "trained flag": lambda s, line: [json.dumps({**line, "bias_trained": True})],
    "grad steps": lambda s, line: [json.dumps({**line, "grad_steps": 3})],
    "bad grad steps": lambda s, line: [json.dumps({**line, "grad_steps": 0})],
    "stored diag": lambda s, line: [json.dumps({**line, "diag": {"h": {"verdict": "uphill"}}})],
    "no val_loss": lambda s, line: [json.dumps({k: v for k, v in line.items() if k != "val_loss"})],
    "null val_loss": lambda s, line: [json.dumps({**line, "val_loss": None})],
    "float step": lambda s, line: [json.dumps({**line, "step": float(s)})],
    "step back": lambda s, line: [json.dumps({**line, "step": s - 5})],
    "repeated step": lambda s, line: [json.dumps({**line, "step": s - 1})],
    "loss blows up": lambda s, line: [json.dumps({**line, "loss": 1e9})],
    "loss as text": lambda s, line: [json.dumps({**line, "loss": "1"})],
    "extra key": lambda s, line: [json.dumps({**line, "lr": 0.1, "note": "true story"})],
    "layer renamed": lambda s, line: [json.dumps({**line, "biases": {"h2": line["biases"]["h"], "o": line["biases"]["o"]}})],
    "layer resized": lambda s, line: [json.dumps({**line, "biases": {"h": [1.0], "o": [1.0, 2.0]}})],
    "layers reordered": lambda s, line: [json.dumps({**line, "biases": {"o": line["biases"]["o"], "h": line["biases"]["h"]}})],
    "event": lambda s, line: [json.dumps({"event": "note", "step": s}), json.dumps(line)],
    "gradient check": lambda s, line: [json.dumps({"event": "gradient_check", "step": s, "errors": {"h": 0.5}}),
                                       json.dumps(line)],
    "verdict event": lambda s, line: [json.dumps(line), json.dumps({"event": "verdict", "step": s, "layer": "h",
                                                                    "verdict": "uphill", "param": ["weight"]})],
    "restart": lambda s, line: [json.dumps({"event": "restarted", "step": s}), json.dumps(line)],
    "second header": lambda s, line: [json.dumps({"format": "biasmon-stream", "version": 1}), json.dumps(line)],
    "blank and bad": lambda s, line: ["", "   ", "{not json", "[1, 2]", "null", json.dumps(line)],
    "torn": lambda s, line: [json.dumps(line)[:40]],
    "whitespace": lambda s, line: ["  " + json.dumps(line, indent=None, separators=(", ", ": ")) + "  "],
}


@pytest.mark.parametrize("updates", [False, True])
@pytest.mark.parametrize("name", sorted(IRREGULAR))
def test_an_irregular_line_among_regular_ones_reads_the_same(name, updates):
    same(_stream(IRREGULAR[name], updates=updates))
    same(_stream(IRREGULAR[name], updates=updates), recompute=False, every_step=True)   # as replay reads


def _sums_stream(change, steps=60, at=(20, 41)):
    """A summary-form stream of biases and weights, `change(row) -> row or line` at the steps `at`."""
    lines = [json.dumps({"format": "biasmon-stream", "version": 2, "form": "sums", "averages": ["ema0.9"]})]
    for step in range(steps):
        gg = 1.0 / (1 + step)
        row = [4, 2.0, gg, 1e-4 * gg, -1e-2 * gg, 4, 4, 0.9 * gg, -0.9e-2 * gg]
        line = {"step": step, "loss": gg, "bias_sums": {"a": list(row), "b": list(row)},
                "weight_sums": {"a": [16] + row[1:], "b": [16] + row[1:]}}
        if step in at:
            changed = change(line)
            lines += changed if isinstance(changed, list) else [json.dumps(line)]
        else:
            lines.append(json.dumps(line))
    return [line + "\n" for line in lines]


def _row(i, value):
    def change(line):
        line["bias_sums"]["b"][i] = value
    return change


SUMS_IRREGULAR = {
    "negative square": _row(2, -1.0),
    "agree above sig": _row(6, 5),
    "n as float": _row(0, 4.0),
    "n zero": _row(0, 0),
    "n past 2**53": _row(0, 2 ** 53 + 1),
    "null square": _row(3, None),
    "null gradient": _row(2, None),
    "huge number": _row(1, 1e305),
    "true count": _row(5, True),
    "true entry": _row(3, True),
    "text entry": _row(3, "1"),
    "row as text": lambda line: line["bias_sums"].update(b="x" * 9),
    "short row": lambda line: line["bias_sums"].update(b=line["bias_sums"]["b"][:7]),
    "weights dropped": lambda line: line.pop("weight_sums"),
    "weights null": lambda line: line.update(weight_sums=None),
    "vectors too": lambda line: line.update(biases={"a": [0.0] * 4}),
    "untrained": lambda line: line.update(bias_trained=False),
}


@pytest.mark.parametrize("name", sorted(SUMS_IRREGULAR))
def test_an_irregular_summary_line_reads_the_same(name):
    same(_sums_stream(SUMS_IRREGULAR[name]))


def test_mutated_streams_read_the_same():
    cases = _fuzz_cases()
    rng = random.Random(5)
    bases = [cases.base_stream("vectors"), cases.base_stream("sums"),
             [line.rstrip("\n") for line in recording("story-gap-scaled", 90, "sums")]]
    for i in range(240):
        try:
            text = cases.mutate_stream(rng, bases[i % len(bases)])
        except RecursionError:   # a line nested 960 deep, made under pytest's deeper stack
            continue
        lines = text.splitlines(keepends=True)
        assert read(lines, True, 5) == read(lines, False), (i, text[:2000])


def test_a_long_regular_stream_is_read_in_blocks():
    """Not a timing: the regular lines past the run's first go through scan's blocks."""
    from biasmon.core import fastlines
    lines = _stream(lambda s, line: [json.dumps(line)], steps=500)
    calls = []
    original = fastlines.scan

    def counting(*args, **kw):
        block, stop = original(*args, **kw)
        calls.append(0 if block is None else len(block))
        return block, stop

    import biasmon.core.reader as reader_module
    reader_module.scan = counting
    try:
        reader = StreamReader(Thresholds(), recompute=True, block=256, every_step=False)
        reader.feed_lines(lines)
    finally:
        reader_module.scan = original
    assert sum(calls) == 499


def _checks(path, monkeypatch):
    """check_stream's result in one process and with a second scanning ahead, in chunks of 40 lines."""
    from biasmon.core import check
    monkeypatch.setattr(check, "CHUNK_LINES", 40)

    def outcome(parallel):
        try:
            return check.check_stream(path, parallel=parallel).to_json()
        except StreamError as exc:
            return str(exc)

    return outcome(False), outcome(True)


@pytest.mark.parametrize("form", ["vectors", "sums"])
def test_scanning_ahead_in_a_second_process_checks_the_same(tmp_path, monkeypatch, form):
    lines = recording("story-gap-scaled", 400, form)
    lines += recording("gradient", 150, form)[1:]   # a second run after a header
    for name in ("gradient check", "event", "step back", "null entry", "loss blows up", "restart"):
        lines += _stream(IRREGULAR[name], steps=130, at=(45, 46, 90))
    path = tmp_path / "s.jsonl"
    path.write_text("".join(lines))
    one, two = _checks(path, monkeypatch)
    assert one == two
    assert one["steps"] > 1000 and len(one["runs"]) > 3


def test_mutated_streams_check_the_same_with_a_second_process(tmp_path, monkeypatch):
    cases = _fuzz_cases()
    rng = random.Random(9)
    base = [line.rstrip("\n") for line in recording("story-bias-joins", 200, "vectors")]
    for i in range(6):
        path = tmp_path / f"{i}.jsonl"
        path.write_text(cases.mutate_stream(rng, base))
        one, two = _checks(path, monkeypatch)
        assert one == two


def test_the_second_process_does_the_scanning(tmp_path, monkeypatch):
    """Not a timing: with a second process, this one scans only the lines it had to (the first chunk)."""
    import biasmon.core.reader as reader_module
    from biasmon.core import check
    lines = _stream(lambda s, line: [json.dumps(line)], steps=400)
    path = tmp_path / "s.jsonl"
    path.write_text("".join(lines))
    monkeypatch.setattr(check, "CHUNK_LINES", 40)
    scanned, original = [], reader_module.scan

    def counting(*args, **kw):
        block, stop = original(*args, **kw)
        scanned.append(0 if block is None else len(block))
        return block, stop

    monkeypatch.setattr(reader_module, "scan", counting)
    result = check.check_stream(path, parallel=True)
    assert result.steps == 400 and sum(scanned) < 80


def test_adding_step_records_together_sums_up_as_one_by_one():
    from biasmon.core.summary import RunSummary
    lines = _stream(IRREGULAR["null val_loss"], steps=80) + _stream(IRREGULAR["loss blows up"], steps=40)[1:]
    reader = StreamReader(Thresholds(), recompute=True, block=16)
    records = [r for line in lines for r in reader.feed(line)] + reader.finish()
    steps = [r for r in records if isinstance(r, StepRecord)]
    steps[5] = steps[5]._replace(loss=float("nan"), val_loss=None)
    one, together = RunSummary(), RunSummary()
    for r in steps:
        one.add(r)
    together.add_steps(steps[:30])
    together.add_steps(steps[30:])
    assert one == together and one.steps == len(steps) and one.best_val is not None


def _first_line(change, form):
    lines = _stream(lambda s, line: [json.dumps(line)], steps=50) if form == "vectors" else _sums_stream(lambda l: None)
    first = json.loads(lines[1])
    change(first)
    lines[1] = json.dumps(first) + "\n"
    return lines


FIRST_LINE = {
    "null loss": lambda line: line.update(loss=None),
    "loss blown up": lambda line: line.update(loss=1e300),
    "null first entry": lambda line: (line.get("biases") or line["bias_sums"])[next(iter(
        line.get("biases") or line["bias_sums"]))].__setitem__(1, None),
}


@pytest.mark.parametrize("form", ["vectors", "sums"])
@pytest.mark.parametrize("name", sorted(FIRST_LINE))
def test_a_first_step_line_that_diverges_reads_the_same(tmp_path, monkeypatch, name, form):
    """Found by a review: the run's shape was taken from a first line read as divergence (no loss yet)."""
    lines = _first_line(FIRST_LINE[name], form)
    same(lines)
    path = tmp_path / "s.jsonl"
    path.write_text("".join(lines))
    one, two = _checks(path, monkeypatch)
    assert one == two and one["exit"] == (1 if name.startswith("null") else 0)   # (a first loss sets the scale)


def test_a_pending_step_is_followed_in_order_by_a_block():
    """Found by a review: a line without updates among lines with them leaves a step pending; the next
    line must follow it (line by line: 'step 3 does not follow step 5')."""
    u = {"a": [0.01, 0.01]}

    def line(step, updates=True):
        out = {"step": step, "loss": 1.0, "biases": {"a": [0.0, 1.0]}, "bias_grads": {"a": [0.5, 0.5]}}
        if updates:
            out["bias_updates"] = u
        return json.dumps(out) + "\n"

    lines = ['{"format":"biasmon-stream","version":1}\n', line(0), line(1), line(5, False), line(3), line(6)]
    same(lines)
    assert any("does not follow" in p for p in read(lines, True)[1])


def test_running_averages_of_a_block_are_those_of_one_step_at_a_time():
    """GradientAverages.block against the plain recurrence: no averages where no step had a trained
    gradient (found by a review: zeros came back, read as 0 sums, not unknown)."""
    from biasmon.core.measures import GradientAverages
    rng = np.random.default_rng(1)
    betas = (0.9, 0.99)
    plain, block = np.zeros((2, 4)), GradientAverages(betas, 4)
    on = False
    for trial in range(40):
        m = int(rng.integers(1, 6))
        g = rng.normal(size=(m, 4))
        has_g = (rng.random(m) < 0.7).tolist()
        trained = (rng.random(m) < 0.8).tolist()
        out, used = block.block(g, has_g, trained)
        want = np.full((2, m, 4), np.nan)
        for i in range(m):
            if not trained[i]:
                on = False
                continue
            if not has_g[i]:
                continue
            if not on:
                plain[:] = 0.0
                on = True
            plain = plain * np.array(betas)[:, None] + np.multiply.outer(1 - np.array(betas), g[i])
            want[:, i] = plain
        assert used == [t and h for t, h in zip(trained, has_g)]
        if not any(used):
            assert out is None
        else:
            np.testing.assert_array_equal(out[:, used], want[:, used])


def test_a_read_ahead_worker_that_dies_costs_only_time(tmp_path, monkeypatch):
    """Found by a review: a worker killed while sending hung check. Killed here before it answers."""
    import multiprocessing
    from biasmon.core import check, prescan
    lines = _stream(lambda s, line: [json.dumps(line)], steps=300)
    path = tmp_path / "s.jsonl"
    path.write_text("".join(lines))
    ahead = prescan.ReadAhead(str(path), 40, multiprocessing.get_context("fork"))
    ahead.process.kill()
    ahead.process.join()
    lines_shape = StreamReader(Thresholds(), recompute=True)
    lines_shape.feed_lines(lines[:5])
    ahead.ask(1, *lines_shape.block_state())
    assert ahead.result(1) is None and ahead.gone
    ahead.close()

    def dead(p):   # check_stream with a worker that is gone from the start
        made = prescan.ReadAhead(str(p), check.CHUNK_LINES, multiprocessing.get_context("fork"))
        made.process.kill()
        return made

    monkeypatch.setattr(check, "_fork", dead)
    monkeypatch.setattr(check, "CHUNK_LINES", 40)
    assert check.check_stream(path, parallel=True) == check.check_stream(path, parallel=False)
