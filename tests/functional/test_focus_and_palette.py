"""Keys reach what the footer promises: the events log never takes the focus, the preset list has it, and
the palette lists every action the source supports (replay's seek too)."""
from textual.app import App

from biasmon.tui.app import create_live_app, create_replay_app
from biasmon.tui.events_panel import EventsPanel
from pilot_helpers import SIZE, replay_read, wait_for


class LogOnly(App):
    def compose(self):
        yield EventsPanel()


async def test_the_events_log_never_takes_the_first_focus():
    # focused, the log kept ←/→ (replay's seek, missing from the footer) and enter (the preset list)
    app = LogOnly()
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        assert app.focused is None


async def test_enter_on_the_preset_list_switches_without_tab():
    app = create_live_app(pause_at=5)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state == "paused")
        await pilot.press("down", "enter")
        assert app.source.preset_name == "none"


def palette_titles(app):
    return [command.title for command in app.get_system_commands(app.screen)]


async def test_the_palette_offers_seek_in_replay_only(tmp_path):
    from biasmon.core import Trainer, load_preset, RecordWriter
    path = tmp_path / "run.jsonl"
    with path.open("w") as out:
        writer = RecordWriter(out)
        trainer = Trainer(load_preset("gradient"), steps=40)
        writer.write_json(trainer.header())
        for record in trainer:
            writer.write(record)
    replay = create_replay_app(path)
    async with replay.run_test(size=SIZE) as pilot:
        await replay_read(pilot)
        assert {"Seek back 10%", "Seek forward 10%"} <= set(palette_titles(replay))
    live = create_live_app(pause_at=2)
    async with live.run_test(size=SIZE):
        assert "Seek back 10%" not in palette_titles(live)


async def test_the_preset_list_takes_the_focus_when_the_terminal_grows_wide_enough():
    app = create_live_app(pause_at=5)
    async with app.run_test(size=(80, 24)) as pilot:  # too narrow: the list is hidden
        await wait_for(pilot, lambda: app.state == "paused")
        await pilot.resize_terminal(*SIZE)
        await pilot.pause()
        await pilot.press("down", "enter")
        assert app.source.preset_name == "none"


async def test_below_80_columns_the_footer_keeps_its_keys_and_drops_the_palette_key():
    """At 70 columns the palette's key (docked right) covered `-+ speed` and `q quit`; it gives way
    there (ctrl+p still opens the palette) and comes back at 80 columns."""
    app = create_live_app(pause_at=5)
    async with app.run_test(size=(70, 30)) as pilot:
        await wait_for(pilot, lambda: app.state == "paused")
        await pilot.pause()
        keys = lambda: [key.description for key in app.query("Footer FooterKey")]  # noqa: E731
        assert "quit" in keys() and "palette" not in keys()
        await pilot.resize_terminal(100, 30)
        await wait_for(pilot, lambda: "palette" in keys())
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CommandPalette")
