"""Pilot tests: every key of the live monitor does what the footer says."""
import asyncio

import pytest
from textual import events

from biasmon.tui.app import create_live_app
from pilot_helpers import SIZE, event_lines, event_text, status_text, wait_for


async def test_space_pauses_and_resumes():
    app = create_live_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: (app.current.last_step or 0) > 50)
        await pilot.press("space")
        assert app.source.paused and "paused" in status_text(app)
        await pilot.pause(0.4)
        frozen = app.current.last_step
        await pilot.pause(0.4)
        assert app.current.last_step == frozen
        await pilot.press("space")
        assert "running" in status_text(app)
        await wait_for(pilot, lambda: app.current.last_step > frozen + 10)


async def test_n_takes_exactly_one_step_while_paused():
    app = create_live_app(pause_at=20)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.current.last_step == 19 and app.state == "paused")
        for expected in (20, 21, 22):
            await pilot.press("n")
            await wait_for(pilot, lambda: app.current.last_step == expected)
        await pilot.pause(0.3)
        assert app.current.last_step == 22


async def test_r_restarts_from_step_zero_with_a_new_run():
    app = create_live_app(pause_at=300)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.current.last_step == 299)
        first_run = app.current.run_id
        await pilot.press("r")  # while paused: the old run is cancelled before anything else changes
        assert app.current.run_id != first_run
        app.source.pause_at = 10
        await pilot.press("space")
        await wait_for(pilot, lambda: app.current.last_step == 9 and app.source.paused)
        assert app.previous.run_id == first_run  # kept faint for comparison


async def test_after_a_restart_the_plots_span_the_new_run_and_the_old_one_is_drawn_over_its_steps():
    """A long run, then a new one: the new run fills the plots' width (the old one does not squeeze it into
    their first columns); the old run's faint loss is drawn over the same steps only."""
    from biasmon.tui.direction_strip import DirectionStrip
    from biasmon.tui.loss_panel import LossPanel
    from biasmon.tui.norm_panel import NormPanel
    app = create_live_app(pause_at=600)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.current.last_step == 599)
        await pilot.press("r")
        app.source.pause_at = 40
        await pilot.press("space")
        await wait_for(pilot, lambda: app.current.last_step == 39 and app.source.paused)
        await pilot.pause(0.3)
        for panel in (LossPanel, NormPanel, DirectionStrip):
            assert app.query_one(panel).x_range == (0, 39), panel
        faint = [line for line in app.query_one(LossPanel).lines if line.style == "dim"]
        assert faint and all(0 < len(line.x) and line.x.max() <= 39 for line in faint)


async def test_f_flips_the_sign_and_the_verdict_turns_uphill_then_back():
    app = create_live_app(max_rate=20)  # slow motion, as in README's walkthrough: back long before it diverges
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "output" in app.current.diag and app.current.diag["output"].verdict == "ok")
        await pilot.press("f")
        assert app.source.trainer.flip_sign and "flip_sign ON" in status_text(app)
        await wait_for(pilot, lambda: all(d.verdict == "uphill" for d in app.current.diag.values()))
        assert "flip_sign ON" in event_lines(app)
        await pilot.press("f")
        assert not app.source.trainer.flip_sign
        await wait_for(pilot, lambda: all(d.verdict == "ok" for d in app.current.diag.values()))
        assert app.current.diverged is None


async def test_after_a_divergence_the_status_line_says_press_r_and_the_keys_that_cannot_act_are_disabled():
    app = create_live_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f")  # at full speed the flipped run diverges within a second
        await wait_for(pilot, lambda: app.state == "diverged")
        diverged_at = app.current.diverged.step
        assert f"step {diverged_at}  diverged: r restarts, 1-9 picks a preset" in status_text(app)
        before = status_text(app)
        await pilot.press("f", "left_square_bracket", "right_square_bracket", "g", "space", "n")
        assert status_text(app) == before and app.source.trainer.flip_sign
        assert app.source.trainer.bias_lr_scale == 1 and not app.source.paused
        for action in ("flip", "bias_lr", "grad_check", "toggle_pause", "step"):
            assert app.check_action(action, ()) is None  # shown disabled in the footer, not in the palette
        await pilot.press("r")
        assert not app.source.trainer.flip_sign and app.check_action("flip", ()) is True


async def test_g_runs_a_gradient_check_now():
    app = create_live_app(pause_at=7)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.current.last_step == 6)
        assert "gradient check" not in event_lines(app)  # the scheduled one at step 0 passed quietly
        await pilot.press("g", "n")
        await wait_for(pilot, lambda: "gradient check" in event_lines(app))
        assert "step      7  gradient check" in event_lines(app)
        assert "; weights: hidden1" in event_text(app)   # the weights are checked too (README's key g)


async def test_brackets_halve_and_double_the_bias_learning_rate():
    app = create_live_app(pause_at=5)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.current.last_step == 4)
        await pilot.press("[", "[")
        assert app.source.trainer.bias_lr_scale == 0.25 and "bias lr x0.25" in status_text(app)
        await pilot.press("]")
        assert app.source.trainer.bias_lr_scale == 0.5
        await pilot.press("n")
        await wait_for(pilot, lambda: "bias lr multiplier x0.5" in event_lines(app))
        d = app.current.diag["output"]
        assert d.u_norm == pytest.approx(0.05 * 0.5 * d.g_norm, rel=1e-9)


async def test_number_keys_and_the_list_switch_presets():
    app = create_live_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        assert app.source.preset_name == "none" and app.source.trainer.preset.name == "none"
        await wait_for(pilot, lambda: (app.current.last_step or 0) > 5)
        assert app.current.diag == {}  # no biases
        await pilot.press("3")
        assert app.source.preset_name == "frozen"
        await wait_for(pilot, lambda: "output" in app.current.diag and app.current.diag["output"].verdict == "frozen")


async def test_s_saves_an_svg_screenshot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = create_live_app(pause_at=3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.current.last_step == 2)
        await pilot.press("s")
        await pilot.pause()
    shots = list(tmp_path.glob("*.svg"))
    assert len(shots) == 1 and "<svg" in shots[0].read_text()


async def test_q_quits_and_ends_the_worker():
    app = create_live_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: (app.current.last_step or 0) > 100)
        assert app.source.running_loops == 1
        await pilot.press("q")
    for _ in range(100):
        if app.source.running_loops == 0:
            break
        await asyncio.sleep(0.02)
    assert app.source.running_loops == 0
    assert app.return_code in (0, None)


async def test_switching_presets_100_times_leaves_one_worker_and_only_the_last_runs_data():
    app = create_live_app()
    async with app.run_test(size=SIZE) as pilot:
        keys = [str(1 + (7 * i) % 9) for i in range(100)]
        for key in keys:  # straight into the app's queue, as fast as a key repeat can go
            app.post_message(events.Key(key, key))
        app.post_message(events.Key("left_square_bracket", "["))  # queued after them: marks the last run
        last = list(app.source.presets())[int(keys[-1]) - 1]
        await wait_for(pilot, lambda: app.source.trainer.bias_lr_scale == 0.5)
        assert app.source.preset_name == last
        await wait_for(pilot, lambda: (app.current.last_step or 0) > 20)
        await pilot.pause(0.3)
        assert app.source.running_loops == 1
        assert app.source.trainer.run_id == app.current.run_id
        # the panels' series hold exactly the steps of this run: one value per step, from step 0
        assert app.current.loss.count == app.current.last_step + 1
        x, _ = app.current.loss.view(10**6)
        assert x[0] < app.current.loss.width  # the first bucket holds step 0


async def test_replay_and_watch_hide_the_live_only_keys(tmp_path):
    app = create_live_app()
    assert app.check_action("flip", ()) is True
    from biasmon.tui.app import BiasmonApp
    from biasmon.tui.replay import ReplaySource
    replay = BiasmonApp(ReplaySource(records=[], reader=None, name="x"))
    for action in ("flip", "preset", "restart", "grad_check", "bias_lr"):
        assert replay.check_action(action, ()) is False
    assert replay.check_action("seek", ()) is True


async def test_minus_and_plus_cap_and_lift_the_speed():
    app = create_live_app(pause_at=5)  # paused: the pilot's key presses need an idle app to be quick
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state == "paused")
        await pilot.press("minus")
        assert app.source.max_rate == 8192 and "(max 8,192/s)" in status_text(app)
        for _ in range(20):
            await pilot.press("minus")
        assert app.source.max_rate == 4  # the slowest level
        await pilot.press("plus", "equals_sign")
        assert app.source.max_rate == 16
        for _ in range(12):
            await pilot.press("plus")
        assert app.source.max_rate is None and "max" not in status_text(app)


async def test_minus_and_plus_from_a_rate_between_levels_go_to_the_levels_next_to_it():
    app = create_live_app(pause_at=5, max_rate=10)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state == "paused")
        shown = []
        for key in ("minus", "minus", "plus"):
            await pilot.press(key)
            shown.append(app.source.max_rate)
            assert f"(max {app.source.max_rate:,}/s)" in status_text(app)
        assert shown == [8, 4, 8]   # it was 5, 4, 8: the first - halved, the second did not
        app.source.max_rate = 3     # --rate 3: below the slowest level, - keeps it, + goes to 4
        await pilot.press("minus")
        assert app.source.max_rate == 3
        await pilot.press("plus")
        assert app.source.max_rate == 4
        app.source.max_rate = 10000  # above the fastest level: - goes to it, + lifts the cap
        await pilot.press("minus")
        assert app.source.max_rate == 8192
        app.source.max_rate = 10000
        await pilot.press("plus")
        assert app.source.max_rate is None


async def test_capped_run_pauses_and_steps_like_any_other():
    app = create_live_app(max_rate=50, pause_at=10)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.current.last_step == 9 and app.state == "paused")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.current.last_step == 10)


async def test_a_new_run_is_marked_in_the_events_log_and_an_ended_run_says_how_to_go_on():
    app = create_live_app(steps=30)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state == "finished")
        await pilot.press("space")
        assert not app.source.paused  # nothing to pause: a notice says r restarts
        await pilot.press("2")
        await wait_for(pilot, lambda: "── new run: none (switched at step 30) ──" in event_lines(app))


async def test_shift_f_flips_the_weights_sign_and_their_verdict_turns_uphill_the_biases_stay_ok():
    # flipped weights climb fast (a few steps to divergence): flipped from the first steps, the window
    # has room to call them uphill before the run ends
    app = create_live_app(max_rate=20)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("F")
        assert app.source.trainer.flip_weight_sign and "weights flip_sign ON" in status_text(app)
        assert not app.source.trainer.flip_sign
        await wait_for(pilot, lambda: app.current is not None and app.current.weights.diag and all(
            d.verdict == "uphill" for d in app.current.weights.diag.values()))
        assert "flip_weight_sign ON" in event_lines(app)
        assert all(d.verdict != "uphill" for d in app.current.diag.values())   # the biases are not flipped
        await pilot.press("r")
        assert not app.source.trainer.flip_weight_sign and "weights flip_sign" not in status_text(app)


async def test_question_mark_shows_and_hides_the_keys_and_escape_hides_them():
    from textual.widgets import HelpPanel
    app = create_live_app(pause_at=5)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state == "paused")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: len(app.screen.query(HelpPanel)) == 1)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: len(app.screen.query(HelpPanel)) == 0)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: len(app.screen.query(HelpPanel)) == 1)
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(app.screen.query(HelpPanel)) == 0)


async def test_the_keys_panel_takes_the_preset_lists_place_and_the_list_comes_back_with_the_focus():
    from textual.widgets import HelpPanel
    from biasmon.tui.loss_panel import LossPanel
    from biasmon.tui.sign_panel import SignPanel
    app = create_live_app(pause_at=5)
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_for(pilot, lambda: app.state == "paused")
        side = app.query_one("#side")
        assert side.display and app.screen.focused is side
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: len(app.screen.query(HelpPanel)) == 1)
        await pilot.pause()
        assert not side.display and app.screen.focused is None   # enter cannot switch an unseen preset
        assert app.query_one(LossPanel).size.width >= 50 and app.query_one(SignPanel).size.width >= 100
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(app.screen.query(HelpPanel)) == 0)
        await pilot.pause()
        assert side.display and app.screen.focused is side


async def test_bias_keys_on_a_network_without_biases_say_so_and_change_nothing():
    app = create_live_app("none", pause_at=30)
    said, notify = [], app.notify
    app.notify = lambda message, **kw: (said.append(message), notify(message, **kw))[1]
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: (app.current.last_step or 0) >= 29)
        for key in ("f", "]"):
            await pilot.press(key)
        await pilot.pause(0.1)
        trainer = app.source.trainer
        assert not trainer.flip_sign and trainer.bias_lr_scale == 1.0
        assert any("this network has no biases" in m for m in said), said
        assert "flip_sign ON" not in event_lines(app)


async def test_ctrl_c_quits_as_a_terminal_programs_users_expect():
    app = create_live_app(pause_at=5)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state == "paused")
        await pilot.press("ctrl+p")   # in the palette's search field ctrl+c is the field's (copy)
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CommandPalette")
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app.is_running and app.screen.__class__.__name__ == "CommandPalette"
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ != "CommandPalette")
        await pilot.press("ctrl+c")
        await wait_for(pilot, lambda: not app.is_running)
