"""What the panels say: before data, without biases, on the axes, in the events log."""
from biasmon.tui.app import create_live_app
from biasmon.tui.norm_panel import NormPanel
from pilot_helpers import SIZE, wait_for


async def test_the_norm_panel_waits_for_data_before_saying_there_are_no_biases():
    app = create_live_app(autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state == "ready")
        assert str(app.query_one(NormPanel).render()) == "waiting for data..."
        await pilot.press("2")  # preset `none`: no biases at all
        await wait_for(pilot, lambda: (app.current.last_step or 0) > 3)
        await wait_for(pilot, lambda: str(app.query_one(NormPanel).render()) == "no biases in this network")
