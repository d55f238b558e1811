"""Big vectors (a real model's weights) are diagnosed a few steps at a time, in arrays kept from call to
call: the sums, diagnoses and records are bit for bit those of the whole block at once."""
import math

import numpy as np
import pytest

from biasmon.core import Diagnoser, Thresholds, diagnoser as diagnoser_module, presets, trainer as trainer_module
from biasmon.core.measures import SIGNIFICANT, block_sums
from biasmon.core.trainer import Trainer

from test_verdict_reference import LAYOUT, random_run


def reference_sums(vec: np.ndarray, avg: np.ndarray | None, starts: np.ndarray) -> np.ndarray:
    """The sums as block_sums defines them, one (6 + 2k, m, n) array of terms summed by reduceat."""
    k = 0 if avg is None else len(avg)
    terms = np.empty((6 + 2 * k,) + vec.shape[1:])
    terms[:3] = vec * vec
    terms[3] = vec[2] * vec[1]
    top = terms[1].max(axis=-1, keepdims=True)
    terms[4] = terms[1] > top * SIGNIFICANT + 1e-300
    terms[5] = (terms[3] < 0.0) * terms[4]
    if k:
        terms[6:6 + k] = avg * avg
        terms[6 + k:] = avg * vec[2]
    return np.add.reduceat(terms, starts, axis=-1)


@pytest.mark.parametrize("shape", [(1, 5000), (3, 7), (40, 30), (300, 12)])
def test_block_sums_equal_the_reference_bit_for_bit(shape):
    """All terms in one reduceat (small), or term by term counted a slice at a time (few long rows) or in
    one reduceat (many short ones), with zeros,
    infinities and NaN among the entries."""
    rng = np.random.default_rng(sum(shape))
    m, n = shape
    vec = rng.normal(size=(3, m, n)) * rng.choice([1e-12, 1.0, 1e6], size=(3, m, n))
    vec[1, :, ::5] = 0.0
    vec[2, 0, :2] = [math.inf, math.nan]
    avg = rng.normal(size=(2, m, n))
    starts = np.array([0, 1, n // 2, n - 1])
    with np.errstate(all="ignore"):
        for a in (avg, None):
            got, want = block_sums(vec, a, starts), reference_sums(vec, a, starts)
            assert got.tobytes() == want.tobytes()


def _diagnoses(run, monkeypatch, chunk_entries: int, block: int) -> list[str]:
    monkeypatch.setattr(diagnoser_module, "CHUNK_ENTRIES", chunk_entries)
    d, out = Diagnoser(LAYOUT, Thresholds()), []
    for start in range(0, len(run), block):
        for x in d.observe(run[start:start + block]):
            out.append(repr((x.layers, x.loss_change, x.events)) + x.sums.tobytes().hex())
    return out


@pytest.mark.parametrize("seed", range(4))
def test_a_block_diagnosed_a_few_steps_at_a_time_equals_the_whole_block(seed, monkeypatch):
    """Chunks of 1 and 2 steps (10 entries a step) against one chunk: runs with untrained stretches
    and steps without gradients, so that chunks without running averages sit in blocks with them."""
    run = random_run(seed, steps=400)
    whole = _diagnoses(run, monkeypatch, 1 << 30, 128)
    assert _diagnoses(run, monkeypatch, 20, 128) == whole
    assert _diagnoses(run, monkeypatch, 1, 128) == whole


def test_a_big_net_is_diagnosed_a_few_steps_at_a_time_with_the_same_records(monkeypatch):
    """advance(256) on a net whose vectors are big diagnoses its steps every few steps (memory stays that
    of a few steps), and its records are those of one diagnosis of all 256."""
    preset = presets.resolve("story-bias-joins").with_overrides(steps=300)

    def run(held_entries: int) -> tuple[list, list[int]]:
        monkeypatch.setattr(trainer_module, "HELD_ENTRIES", held_entries)
        sizes, observe = [], Diagnoser.observe

        def spy(self, steps):
            sizes.append(len(steps))
            return observe(self, steps)

        monkeypatch.setattr(Diagnoser, "observe", spy)
        trainer, records = Trainer(preset), []
        while not trainer.done:
            records += [r.to_json() for r in trainer.advance(256)]
        monkeypatch.setattr(Diagnoser, "observe", observe)
        return records, sizes

    entries = sum(Trainer(preset).layout.sizes) + sum(Trainer(preset).weight_layout.sizes)
    whole, whole_sizes = run(1 << 30)
    few, few_sizes = run(3 * entries)
    assert max(whole_sizes) == 256 and max(few_sizes) == 3
    assert few == whole


@pytest.mark.parametrize("seed", range(4))
def test_a_step_without_running_averages_has_unknown_averages_sums_whatever_the_block(seed, monkeypatch):
    """Found while writing the test above: in a block where some step had running averages, a step
    without them (biases not trained, no gradient logged) got sums of 0 for them, which a summary-form
    recording wrote as 0 rather than null; in a block of its own, NaN. Now NaN in any block."""
    run = random_run(seed, steps=400)
    whole = _diagnoses(run, monkeypatch, 1 << 30, 128)
    assert _diagnoses(run, monkeypatch, 20, 7) == whole
    assert _diagnoses(run, monkeypatch, 1 << 30, 1) == whole
    d = Diagnoser(LAYOUT, Thresholds())
    for o, x in zip(run, d.observe(run)):
        assert np.isnan(x.sums[:, 7:]).all() == (not (o.trained and o.g is not None))


def test_record_compare_and_the_live_loop_ask_a_big_net_for_few_steps_at_a_time(monkeypatch, tmp_path):
    """The records of one advance() call hold every step's vectors: on a big net `record`, `compare` and
    the TUI's training loop ask for as many steps as advance() diagnoses together (memory stays that of
    a few steps: a 264k-parameter net's `record` peaked at 1.65 GB with 256), and `record` writes what
    it wrote with whole blocks."""
    import io
    import json
    import threading
    from types import SimpleNamespace

    from biasmon import commands
    from biasmon.tui.training import CHUNK_STEPS, TrainingLoop

    entries = sum(Trainer(presets.resolve("story-bias-joins")).layout.sizes) + \
        sum(Trainer(presets.resolve("story-bias-joins")).weight_layout.sizes)
    asked, advance = [], Trainer.advance

    def spy(self, n):
        asked.append(n)
        return advance(self, n)

    monkeypatch.setattr(Trainer, "advance", spy)

    def recorded(name: str) -> list:
        out = tmp_path / name
        assert commands.record("story-bias-joins", str(out), steps=40, out=io.StringIO()) == 0
        return [json.loads(line) for line in out.read_text().splitlines()[1:]]   # (the header has a run id)

    whole = recorded("whole.jsonl")
    assert set(asked) == {commands.BLOCK_STEPS}
    monkeypatch.setattr(trainer_module, "HELD_ENTRIES", 3 * entries)   # as if each step held a third of it
    asked.clear()
    assert recorded("few.jsonl") == whole
    assert set(asked) == {3}
    asked.clear()
    assert commands.compare(["story-bias-joins"], steps=10, out=io.StringIO()) == 0
    assert asked and max(asked) == 3
    controls = SimpleNamespace(paused=False, pause_at=None, max_rate=None, step_requests=threading.Semaphore(0))
    loop = TrainingLoop(Trainer(presets.resolve("story-bias-joins")), controls, None, lambda: False, lambda: False)
    assert loop._block_size() == 3 < CHUNK_STEPS
