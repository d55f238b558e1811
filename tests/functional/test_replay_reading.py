"""`biasmon replay FILE` of a large recording: the screen comes up at once and says how far the file is
read (in a worker; q quits meanwhile), and the records are kept compact, without their vectors or sums."""
import random
import threading
import time

import pytest

import biasmon.tui.recording_file as recording_file
from biasmon.core import RecordWriter, StepRecord, Trainer, load_preset, read_all
from biasmon.tui.app import create_replay_app
from biasmon.tui.recording_file import RecordBlocks
from pilot_helpers import SIZE, event_text, replay_read, status_text, wait_for

STEPS = 600


@pytest.fixture
def recording(tmp_path):
    path = tmp_path / "run.jsonl"
    for form in ("sums", "vectors"):
        with (tmp_path / f"{form}.jsonl").open("w") as out:
            writer = RecordWriter(out, form)
            trainer = Trainer(load_preset("gradient"), steps=STEPS, seed=0)
            writer.write_json(trainer.header(form))
            for record in trainer:
                writer.write(record)
    return tmp_path


@pytest.fixture
def slow_reading(monkeypatch):
    """Each chunk of lines read takes 20 ms more; the chunks read so far are counted."""
    chunks, real = [], recording_file.line_chunks

    def slow(lines, size):
        for chunk in real(lines, size):
            time.sleep(0.02)
            chunks.append(threading.current_thread().name)
            yield chunk

    monkeypatch.setattr(recording_file, "line_chunks", slow)
    monkeypatch.setattr(recording_file, "CHUNK_LINES", 8)
    return chunks


async def test_the_screen_says_how_far_the_file_is_read_and_q_quits_while_reading(recording, slow_reading):
    app = create_replay_app(recording / "sums.jsonl")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "reading… " in status_text(app) and len(slow_reading) >= 3)
        assert " lines (" in status_text(app) and "reading " in event_text(app)
        assert app.check_action("seek", (0.1,)) is None and app.check_action("step", ()) is None  # shown disabled
        await pilot.press("q")
    read = len(slow_reading)
    time.sleep(0.2)
    assert len(slow_reading) == read < STEPS // 8   # the worker stopped at its next chunk


@pytest.mark.parametrize("form", ["sums", "vectors"])
async def test_a_replay_keeps_its_records_without_vectors_and_shows_the_same_run(recording, form):
    path = recording / f"{form}.jsonl"
    full, _ = read_all(path)
    app = create_replay_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await replay_read(pilot)
        records = app.source.records
        assert isinstance(records, RecordBlocks) and len(records) == len(full)
        steps = [r for r in records if type(r) is StepRecord]
        assert steps and all(r.biases is None and r.bias_sums is None and r.weights is None and
                             r.weight_sums is None and r.diag is not None for r in steps)
        assert [r.step for r in steps] == [r.step for r in full if type(r) is StepRecord]
        assert f"read {path}: {len(full):,} records" in event_text(app)
        await pilot.press("space", *["right"] * 11)
        await wait_for(pilot, lambda: app.current is not None and app.current.last_step == STEPS - 1)
        last = [r for r in full if type(r) is StepRecord][-1]
        assert app.current.diag == last.diag and app.current.loss.last == last.loss
        await pilot.press("left")   # back: replayed from the first record, in parts
        await wait_for(pilot, lambda: app.current.last_step is not None and app.current.last_step < STEPS - 1)
        assert app.current.loss.count == sum(1 for r in records[:app.source.position] if type(r) is StepRecord)


def test_record_blocks_read_as_the_list_they_hold():
    values = list(range(1000))
    blocks = RecordBlocks()
    at = 0
    rng = random.Random(0)
    while at < len(values):
        n = rng.randint(1, 60)
        blocks.append(values[at:at + n])
        at += n
    assert len(blocks) == len(values) and list(blocks) == values
    for _ in range(200):
        i, j = sorted(rng.randint(-5, 1005) for _ in range(2))
        assert blocks[i:j] == values[i:j]
    assert blocks[-1] == 999 and blocks[0] == 0
    with pytest.raises(IndexError):
        blocks[1000]


def stream_whose_layers_change_at_line_11(path):
    import json
    lines, b = [], [0.0, 0.0]
    for step in range(20):
        b = (b + [0.0])[:2 if step < 10 else 3]
        g = [x - 1.0 for x in b]
        lines.append(json.dumps({"step": step, "loss": sum(v * v for v in g) / 2, "biases": {"out": b},
                                 "bias_grads": {"out": g}}))
        b = [x - 0.1 * gx for x, gx in zip(b, g)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("case", ["layers change", "unknown version"])
async def test_a_line_that_stops_the_reading_keeps_the_steps_before_it(tmp_path, case):
    """Line 11 cannot be read on (the layers change; a header of an unknown version). replay read '0
    records' and showed nothing; the ten steps before it are replayed now, and the error is in the log."""
    write, says = STOPPING[case]
    app = create_replay_app(write(tmp_path / "run.jsonl"))
    async with app.run_test(size=SIZE) as pilot:
        await replay_read(pilot)
        await wait_for(pilot, lambda: app.current is not None and app.current.last_step == 9)
        assert app.current.loss.count == 10
        assert says in event_text(app)


def stream_with_an_unknown_version_at_line_11(path):
    import json
    lines = stream_whose_layers_change_at_line_11(path).read_text().splitlines()[:10]
    path.write_text("\n".join(lines + [json.dumps({"format": "biasmon-stream", "version": 99})]) + "\n")
    return path


STOPPING = {"layers change": (stream_whose_layers_change_at_line_11, "line 11: the layers changed"),
            "unknown version": (stream_with_an_unknown_version_at_line_11, "line 11: stream format version 99")}


@pytest.mark.parametrize("block", [1, 4, 256])
@pytest.mark.parametrize("case", sorted(STOPPING))
def test_the_reader_hands_on_what_the_lines_before_a_stopping_line_gave(tmp_path, case, block):
    """(A header of a version it cannot read drained the steps queued before it, then raised: they were lost.)"""
    from biasmon.core import StreamError, StreamReader
    write, says = STOPPING[case]
    lines = write(tmp_path / "run.jsonl").read_text().splitlines()
    reader = StreamReader(block=block)
    with pytest.raises(StreamError, match=says) as caught:
        reader.feed_lines(lines)
    steps = [r for r in caught.value.records + reader.finish() if isinstance(r, StepRecord)]
    assert [r.step for r in steps] == list(range(10))
