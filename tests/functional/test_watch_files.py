"""`biasmon watch FILE` like tail -F: a file truncated, replaced or removed and created again is read again
from its start as a new run (fresh reader state), and the events log says so."""
import json
import os

import pytest

import biasmon.tui.watch as watch
from biasmon.core import StreamReader
from biasmon.tui.app import create_watch_app
from biasmon.tui.watch import follow, open_stream
from pilot_helpers import SIZE, event_text, wait_for


def header(run_id, preset="run"):
    return json.dumps({"format": "biasmon-stream", "version": 2, "run_id": run_id, "preset": {"name": preset}}) + "\n"


def steps(n, sign=1.0):
    """n step lines of gradient descent (sign -1: the sign bug) on b for L = |b - 1|^2 / 2."""
    lines, b = [], [0.0, 0.0]
    for step in range(n):
        g = [x - 1.0 for x in b]
        lines.append(json.dumps({"step": step, "loss": sum(v * v for v in g) / 2, "biases": {"out": b},
                                 "bias_grads": {"out": g}}) + "\n")
        b = [x - sign * 0.1 * gx for x, gx in zip(b, g)]
    return "".join(lines)


@pytest.fixture
def fast(monkeypatch):
    """follow() hands over what it read at every turn and never sleeps."""
    monkeypatch.setattr(watch, "BATCH_SECONDS", 0.0)
    monkeypatch.setattr(watch, "POLL_SECONDS", 0.0)


class Follower:
    """follow() over a file, read turn by turn."""

    def __init__(self, path):
        self.reader = StreamReader(source=str(path))
        self.reads = follow(open_stream(str(path))[0], self.reader)
        self.all = []

    def until(self, condition, turns=200):
        """Read until condition(read) holds for a Read; that Read (the ones before are kept in `all`)."""
        for _ in range(turns):
            read = next(self.reads)
            if read is not None:
                self.all.append(read)
                if condition(read):
                    return read
        raise AssertionError("condition not met")

    def steps_until(self, last):
        """The steps read until step `last` comes out (the last line's step waits for its update)."""
        seen = []
        self.until(lambda read: seen.extend(r.step for r in read.records if hasattr(r, "loss")) or last in seen)
        return seen


def test_a_file_truncated_and_written_again_is_read_from_its_start_with_a_fresh_reader(tmp_path, fast):
    path = tmp_path / "run.jsonl"
    path.write_text(header("a") + steps(20, sign=-1.0))
    follower = Follower(path)
    assert follower.steps_until(18) == list(range(19))
    with path.open("w") as out:   # the trainer run again into the same file: shorter than what was read
        out.write(header("b", "second") + steps(5))
    read = follower.until(lambda read: read.new_reader is not None)
    assert read.notes == [f"{path} was truncated: read again from its start"]
    assert [r.step for r in read.records if hasattr(r, "loss")] == [19]   # the old run's last step
    new = read.new_reader
    assert follower.steps_until(3) == [0, 1, 2, 3]
    assert new.header["run_id"] == "b" and new.problems == [] and follower.reader.problems == []
    assert all(not r.problems for r in follower.all)


def test_a_file_truncated_then_written_past_what_was_read_is_a_new_run(tmp_path, fast):
    path = tmp_path / "run.jsonl"
    path.write_text(header("a") + steps(10))
    follower = Follower(path)
    follower.steps_until(8)
    with path.open("w") as out:
        out.write(header("b"))
        out.flush()
        read = follower.until(lambda read: read.new_reader is not None)
        out.write(steps(40))   # longer than the first run
    assert follower.steps_until(38) == list(range(39))
    assert read.new_reader.header["run_id"] == "b" and read.new_reader.problems == []


def test_a_file_replaced_by_a_rename_is_followed_from_the_new_files_start(tmp_path, fast):
    path, other = tmp_path / "run.jsonl", tmp_path / "run.jsonl.tmp"
    path.write_text(header("a") + steps(30))
    follower = Follower(path)
    follower.steps_until(28)
    other.write_text(header("b") + steps(50))   # longer: no size could tell it, the inode does
    os.replace(other, path)
    read = follower.until(lambda read: read.new_reader is not None)
    assert read.notes == [f"{path} was replaced: the new file read from its start"]
    assert follower.steps_until(48) == list(range(49))
    assert read.new_reader.header["run_id"] == "b" and read.new_reader.problems == []


def test_a_file_removed_then_created_again_is_followed_from_the_new_files_start(tmp_path, fast):
    path = tmp_path / "run.jsonl"
    path.write_text(header("a") + steps(10))
    follower = Follower(path)
    follower.steps_until(8)
    os.remove(path)
    read = follower.until(lambda read: bool(read.notes))
    assert read.notes == [f"{path} was removed: a new file there will be read from its start"]
    assert read.new_reader is None
    for _ in range(5):   # said once
        later = next(follower.reads)
        assert later is None or not later.notes
    path.write_text(header("b") + steps(10))   # the same inode may come back: removed is enough to tell
    read = follower.until(lambda read: read.new_reader is not None)
    assert read.notes == [f"{path} was created again: the new file read from its start"]
    assert follower.steps_until(8) == list(range(9))
    assert read.new_reader.header["run_id"] == "b" and read.new_reader.problems == []


async def test_watch_shows_a_run_written_again_into_the_same_file_as_a_new_run(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_text(header("a", "first") + steps(30, sign=-1.0))
    app = create_watch_app(str(path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.current is not None and app.current.last_step == 28)
        with path.open("w") as out:   # shorter than the first: it used to show nothing
            out.write(header("b", "second") + steps(10))
        await wait_for(pilot, lambda: app.current.label == "second" and app.current.last_step == 8)
        assert app.previous.label == "first" and app.previous.last_step == 29
        assert app.current.loss.count == 9 and app.current.first_step == 0   # plotted from the start
        text = event_text(app)
        assert f"── new run: second ({path} was truncated: read again from its start) ──" in text
        assert "skipped" not in text and "does not follow" not in text
        assert app.state == "following"
