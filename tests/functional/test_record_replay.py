"""Recording a live session, replaying it, and replaying bad files."""
import json
import subprocess
import sys

import pytest
from textual import events

from biasmon.core.errors import BiasmonError
from biasmon.tui.app import create_live_app, create_replay_app
from pilot_helpers import SIZE, event_lines, event_text, replay_read, wait_for


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_recorded_session_matches_the_keys_and_replays_to_the_same_final_values(tmp_path):
    path = tmp_path / "session.jsonl"
    app = create_live_app("gradient", record_path=str(path), pause_at=60)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.current.last_step == 59)
        await pilot.press("f")           # the sign bug, on the running network
        app.source.pause_at = 90
        await pilot.press("space")
        await wait_for(pilot, lambda: app.current.last_step == 89)
        await pilot.press("2")           # switch to 'none' (paused: it waits)
        app.source.pause_at = 30
        await pilot.press("space")
        await wait_for(pilot, lambda: app.source.preset_name == "none" and app.current.last_step == 29)
        await pilot.press("3")
        app.source.pause_at = 40
        await pilot.press("space")
        await wait_for(pilot, lambda: app.source.preset_name == "frozen" and app.current.last_step == 39)
        live = app.current
        await pilot.press("q")
    lines = read_lines(path)
    assert lines[0]["format"] == "biasmon-stream" and lines[0]["preset"]["name"] == "gradient"
    evts = [(l["event"], l["step"], l.get("preset", l.get("flip_sign"))) for l in lines if "event" in l
            and l["event"] in ("flip_sign", "preset_switched")]
    assert evts == [("flip_sign", 60, True), ("preset_switched", 90, "none"), ("preset_switched", 30, "frozen")]

    replay = create_replay_app(path)
    async with replay.run_test(size=SIZE) as pilot:
        await replay_read(pilot)
        for _ in range(11):
            await pilot.press("right")
        await wait_for(pilot, lambda: replay.source.position == len(replay.source.records))
        assert replay.current.label == "frozen"
        assert replay.previous.label == "none"
        assert replay.current.last_step == live.last_step == 39
        assert replay.current.loss.last == live.loss.last
        assert replay.current.diag == live.diag
        assert {k: s.last for k, s in replay.current.norms.items()} == {k: s.last for k, s in live.norms.items()}


async def test_replay_pause_step_and_seek(tmp_path):
    path = tmp_path / "r.jsonl"
    subprocess.run([sys.executable, "-m", "biasmon", "record", "story-scaled", "--steps", "300", "-o", str(path)],
                   check=True, capture_output=True)
    app = create_replay_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await replay_read(pilot)
        await pilot.press("space")
        position = app.source.position
        await pilot.pause(0.5)
        assert app.source.position == position and app.source.paused
        await pilot.press("n")
        assert app.source.position == position + 1
        await pilot.press("right", "right", "right")
        assert app.source.position == min(len(app.source.records), position + 1 + 3 * int(0.1 * len(app.source.records)))
        middle = app.source.position
        await pilot.press("left")
        assert app.source.position == middle - int(0.1 * len(app.source.records))
        steps = [r.step for r in app.source.records[:app.source.position] if hasattr(r, "loss")]
        assert app.current.last_step == steps[-1]
        assert app.current.loss.count == len(steps)  # rebuilt from the start, nothing counted twice


async def test_replay_of_a_truncated_or_corrupted_file_says_what_it_skipped(tmp_path):
    good = tmp_path / "good.jsonl"
    subprocess.run([sys.executable, "-m", "biasmon", "record", "gradient", "--steps", "50", "-o", str(good)],
                   check=True, capture_output=True)
    lines = good.read_text().splitlines(keepends=True)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(lines[:5]) + "{not json\n" + "".join(lines[5:20]) + lines[20][: len(lines[20]) // 2])
    app = create_replay_app(bad)
    async with app.run_test(size=SIZE) as pilot:
        await replay_read(pilot)
        await pilot.pause()
        assert "skipped 2 unreadable line(s): 6, 22" in event_text(app)


@pytest.mark.parametrize("content, message", [
    ("", "no step records to replay"),
    ("garbage\nmore garbage\n", "no step records to replay (2 unreadable line(s), first: line 1"),
    ('{"format": "biasmon-stream", "version": 9}\n', "format version 9 is not supported"),
])
def test_replay_of_an_unusable_file_exits_2_with_one_line(tmp_path, content, message):
    path = tmp_path / "x.jsonl"
    path.write_text(content)
    with pytest.raises(BiasmonError) as info:
        create_replay_app(path)
    assert message in str(info.value) and str(path) in str(info.value)
    run = subprocess.run([sys.executable, "-m", "biasmon", "replay", str(path)], capture_output=True, text=True)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert message in run.stderr


def test_replay_of_a_missing_file_exits_2(tmp_path):
    run = subprocess.run([sys.executable, "-m", "biasmon", "replay", str(tmp_path / "nope.jsonl")],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr and "nope.jsonl" in run.stderr


def steps_left_behind(lines):
    """(step of each preset_switched / restarted event, steps the run before it recorded)."""
    pairs, steps = [], 0
    for line in lines[1:]:
        if line.get("event") in ("preset_switched", "restarted"):
            pairs.append((line["step"], steps))
            steps = 0
        elif "event" not in line:
            steps = line["step"] + 1
    return pairs


async def test_key_storms_record_the_step_each_run_left_had_reached(tmp_path):
    path = tmp_path / "storm.jsonl"
    app = create_live_app("gradient", record_path=str(path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: (app.current.last_step or 0) > 40)
        for burst in range(12):  # bursts of keys faster than a worker starts, with pauses that let runs train
            for i in range(4):
                key = "r" if (burst + i) % 5 == 0 else str(1 + (3 * burst + i) % 9)
                app.post_message(events.Key(key, key))
            await pilot.pause(0.05 * (burst % 3))
        await wait_for(pilot, lambda: (app.current.last_step or 0) > 20)
        note = [line for line in event_lines(app).splitlines() if line.startswith("── new run:")][-1]
        await pilot.press("q")
    pairs = steps_left_behind(read_lines(path))
    assert len(pairs) >= 10 and any(left > 0 for left, _ in pairs)
    assert all(left == recorded for left, recorded in pairs), pairs
    assert note.startswith("── new run:") and note.endswith(f"at step {pairs[-1][0]}) ──"), note


@pytest.mark.parametrize("form", ["sums", "vectors"])
def test_a_recordings_verdict_changes_are_read_back_once_in_either_form(tmp_path, form):
    """Replay and watch read a recording with recompute off: a verdict event stored in the file is the
    one derived again from a summary-form step (no diagnoses stored), so it must come back once."""
    from biasmon.core import StreamReader
    from biasmon.core.records import Event
    path = tmp_path / "bad.jsonl"
    subprocess.run([sys.executable, "-m", "biasmon", "record", "story-scaled", "-o", str(path), "--steps", "300",
                    "--form", form], check=True, capture_output=True)
    stored = [json.loads(line) for line in path.read_text().splitlines() if '"event":"verdict"' in line]
    reader, read = StreamReader(), []
    for line in path.read_text().splitlines():
        read += reader.feed(line)
    read += reader.finish()
    verdicts = [(e.step, e.data.get("param", "bias"), e.data["layer"], e.data["verdict"])
                for e in read if isinstance(e, Event) and e.kind == "verdict"]
    assert len(stored) >= 3
    assert verdicts == [(e["step"], e.get("param", "bias"), e["layer"], e["verdict"]) for e in stored]


def test_verdict_events_of_a_step_line_that_was_torn_are_kept():
    """Vector form: a run's first step line torn (unreadable), its stored verdict events are the only
    ones there are for that step: kept, not dropped as if the reader derived them."""
    from biasmon.core import StreamReader
    from biasmon.core.records import Event
    lines = [json.dumps({"format": "biasmon-stream", "version": 1, "run_id": "r"}),
             '{"step": 0, "loss": 1.0, "biases": {"h": [0.5',   # torn
             json.dumps({"event": "verdict", "step": 0, "layer": "h", "verdict": "off", "cause": "not yet"})]
    reader, read = StreamReader(), []
    for line in lines:
        read += reader.feed(line)
    assert [e.data["verdict"] for e in read if isinstance(e, Event) and e.kind == "verdict"] == ["off"]
