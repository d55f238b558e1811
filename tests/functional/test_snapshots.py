"""Snapshot tests (pytest-textual-snapshot): plain `def`, a fixed seed, paused at a fixed step."""
import asyncio

from biasmon.tui.app import create_live_app

PAUSE_AT = 200


async def paused_at_fixed_step(pilot):
    app = pilot.app
    for _ in range(600):
        if app.current is not None and app.current.last_step == PAUSE_AT - 1 and app.state == "paused":
            break
        await asyncio.sleep(0.02)
    await pilot.pause()


def test_main_layout(snap_compare):
    app = create_live_app("gradient", seed=0, pause_at=PAUSE_AT)
    assert snap_compare(app, terminal_size=(140, 40), run_before=paused_at_fixed_step)


def test_main_layout_with_the_sign_bug(snap_compare):
    app = create_live_app("story-scaled", seed=0, pause_at=PAUSE_AT)
    assert snap_compare(app, terminal_size=(140, 40), run_before=paused_at_fixed_step)


def test_compact_layout(snap_compare):
    app = create_live_app("gradient", seed=0, pause_at=PAUSE_AT)
    assert snap_compare(app, terminal_size=(80, 24), run_before=paused_at_fixed_step)


def test_terminal_too_small(snap_compare):
    app = create_live_app("gradient", seed=0, pause_at=PAUSE_AT)
    assert snap_compare(app, terminal_size=(40, 12), run_before=paused_at_fixed_step)


FLIP_AT, FLIPPED_PAUSE_AT = 100, 180  # the flipped run diverges at step 250


async def flipped_then_paused(pilot):
    """Trains to FLIP_AT, presses f (the sign bug from the next step), then trains to FLIPPED_PAUSE_AT."""
    app = pilot.app
    for _ in range(600):
        if app.current is not None and app.current.last_step == FLIP_AT - 1 and app.state == "paused":
            break
        await asyncio.sleep(0.02)
    await pilot.press("f")
    app.source.pause_at = FLIPPED_PAUSE_AT
    await pilot.press("space")
    for _ in range(600):
        if app.current.last_step == FLIPPED_PAUSE_AT - 1 and app.state == "paused":
            break
        await asyncio.sleep(0.02)
    await pilot.pause()


def test_the_strip_turns_red_after_f_compact(snap_compare):
    app = create_live_app("gradient", seed=0, pause_at=FLIP_AT)
    assert snap_compare(app, terminal_size=(80, 24), run_before=flipped_then_paused)


def test_the_strip_turns_red_after_f(snap_compare):
    app = create_live_app("gradient", seed=0, pause_at=FLIP_AT)
    assert snap_compare(app, terminal_size=(140, 40), run_before=flipped_then_paused)


async def flipped_then_both_views(pilot):
    """As flipped_then_paused, then w twice: each layer's biases and weights."""
    await flipped_then_paused(pilot)
    await pilot.press("w", "w")
    await pilot.pause()


def test_biases_red_weights_green_after_f_compact(snap_compare):
    app = create_live_app("gradient", seed=0, pause_at=FLIP_AT)
    assert snap_compare(app, terminal_size=(80, 24), run_before=flipped_then_both_views)


async def paused_then_keys(pilot):
    """Paused at a fixed step, then ? (the keys panel, in the preset list's place)."""
    await paused_at_fixed_step(pilot)
    await pilot.press("question_mark")
    await pilot.pause()


def test_keys_panel_keeps_the_panels_readable(snap_compare):
    app = create_live_app("gradient", seed=0, pause_at=PAUSE_AT)
    assert snap_compare(app, terminal_size=(160, 50), run_before=paused_then_keys)
