"""`biasmon watch`: following a file another process is still writing, and a pipe."""
import subprocess
import sys
import textwrap

import pytest

from biasmon.tui.app import BiasmonApp, create_watch_app
from biasmon.tui.watch import PipeStream, WatchSource
from pilot_helpers import SIZE, event_text, status_text, wait_for


# A trainer in plain Python: gradient descent on b for L = |b - 1|^2 / 2, one JSON line per step,
# with one malformed line at step 10; it dies mid-line at the end when asked to.
TRAINER = textwrap.dedent("""
    import json, sys, time
    n, delay, die = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "die"
    b = [0.0, 0.0]
    for step in range(n):
        g = [x - 1.0 for x in b]
        loss = sum(v * v for v in g) / 2
        print(json.dumps({"step": step, "loss": loss, "biases": {"out": b}, "bias_grads": {"out": g}}), flush=True)
        if step == 10:
            print("{this is not json", flush=True)
        b = [x - 0.1 * gx for x, gx in zip(b, g)]
        time.sleep(delay)
    if die:
        sys.stdout.write('{"step": %d, "loss": 0.1, "bia' % n)
        sys.stdout.flush()
        import os; os._exit(1)
""")


async def test_watch_follows_a_file_still_being_written(tmp_path):
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    path = tmp_path / "run.jsonl"
    with path.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(script), "60", "0.02", "die"], stdout=out)
        app = create_watch_app(str(path))
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.current is not None and (app.current.last_step or 0) >= 5)
            first_seen = app.current.last_step
            assert proc.poll() is None  # the trainer is still writing
            await wait_for(pilot, lambda: proc.poll() is not None)
            await wait_for(pilot, lambda: app.current.last_step == 58)  # step 59 waits for its update
            assert first_seen < 58
            assert app.current.diag["out"].verdict == "ok"
            assert "skipped line 12: not JSON" in event_text(app)
            assert app.check_action("flip", ()) is False and app.check_action("preset", ()) is False


async def test_watch_reads_a_pipe_to_its_end():
    script_text = TRAINER
    proc = subprocess.Popen([sys.executable, "-c", script_text, "40", "0", "die"], stdout=subprocess.PIPE, text=True)
    app = BiasmonApp(WatchSource(PipeStream(proc.stdout), "stdin"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state == "end of stream")
        assert app.current.last_step == 39
        assert app.current.loss.count == 40
        text = event_text(app)
        assert "skipped line 12: not JSON" in text and "skipped line 42: not JSON" in text
    proc.wait()


async def test_watch_waits_for_a_file_the_trainer_has_not_created_yet_and_says_so(tmp_path):
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    path = tmp_path / "later.jsonl"
    app = create_watch_app(str(path))  # like tail -F: no error, a wait
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "waiting for the file" in status_text(app))
        assert "waiting for later.jsonl to be created" in event_text(app).replace(str(tmp_path) + "/", "")
        with path.open("w") as out:
            subprocess.run([sys.executable, str(script), "20", "0", "end"], stdout=out, check=True)
        await wait_for(pilot, lambda: app.current is not None and app.current.last_step == 18)
        assert "following" in status_text(app) and "appeared: following it" in event_text(app)


def test_watch_of_a_directory_exits_2(tmp_path):
    run = subprocess.run([sys.executable, "-m", "biasmon", "watch", str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 2 and str(tmp_path) in run.stderr and "Traceback" not in run.stderr


async def test_space_in_watch_says_paused_like_the_live_monitor_not_frozen_a_verdicts_name(tmp_path):
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    path = tmp_path / "run.jsonl"
    with path.open("w") as out:
        subprocess.run([sys.executable, str(script), "20", "0", "end"], stdout=out, check=True)
    app = create_watch_app(str(path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.current is not None and app.current.last_step == 18)
        await pilot.press("space")
        assert app.state == "paused" and "paused" in status_text(app) and "frozen" not in status_text(app)
        await pilot.press("space")
        assert app.state == "following" and "following" in status_text(app)


@pytest.mark.parametrize("last", ["layers change", "unknown version"])
async def test_a_line_that_stops_the_reading_keeps_the_steps_before_it_and_says_stopped(tmp_path, last):
    """A stream whose line 11 cannot be read on (the layers change; a header of an unknown version: check
    exits 2). watch drew nothing of the ten steps before it and still said "following"; they are drawn
    now, and the status says stopped."""
    import json
    lines, b = [], [0.0, 0.0]
    for step in range(20):
        size = 2 if step < 10 else 3
        b = (b + [0.0])[:size]
        g = [x - 1.0 for x in b]
        lines.append(json.dumps({"step": step, "loss": sum(v * v for v in g) / 2, "biases": {"out": b},
                                 "bias_grads": {"out": g}}))
        b = [x - 0.1 * gx for x, gx in zip(b, g)]
    if last == "unknown version":
        lines[10:] = [json.dumps({"format": "biasmon-stream", "version": 99})]
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(lines) + "\n")
    app = create_watch_app(str(path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state == "stopped: see the events log")
        assert app.current is not None and app.current.loss.count == 10 and app.current.last_step == 9
        assert ("line 11: the layers changed within a run" if last == "layers change"
                else "line 11: stream format version 99") in event_text(app)
        assert "stopped" in status_text(app)
