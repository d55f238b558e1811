"""What the panels say: before data, without biases, on the axes, in the events log."""
from biasmon.tui.app import create_live_app
from biasmon.tui.loss_panel import LossPanel
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


def tick_labels(plot):
    """The x axis labels of a plot, as drawn."""
    rows = str(plot.render()).splitlines()
    axis = next(i for i, row in enumerate(rows) if "└" in row)
    return rows[axis + 1].split()


async def test_both_plots_label_the_same_whole_steps():
    app = create_live_app("gradient", pause_at=50)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state == "paused")
        await pilot.pause()
        loss, norms = tick_labels(app.query_one(LossPanel)), tick_labels(app.query_one(NormPanel))
        assert loss == norms and len(loss) >= 3
        assert all(label.isdigit() for label in loss), loss
