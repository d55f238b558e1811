"""What the panels say: before data, without biases, on the axes, in the events log."""
from textual.app import App
from textual.geometry import Region

from biasmon.tui.app import create_live_app
from biasmon.tui.events_panel import EventsPanel
from biasmon.tui.loss_panel import LossPanel
from biasmon.tui.norm_panel import NormPanel
from biasmon.tui.sign_panel import SignPanel
from pilot_helpers import SIZE, status_text, wait_for


async def test_the_norm_panel_waits_for_data_before_saying_there_are_no_biases():
    app = create_live_app(autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state == "ready")
        assert str(app.query_one(NormPanel).render()) == "waiting for data..."
        await pilot.press("2")  # preset `none`: no biases at all
        await wait_for(pilot, lambda: (app.current.last_step or 0) > 3)
        await wait_for(pilot, lambda: str(app.query_one(NormPanel).render()) == "this network has no biases")


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


async def test_long_event_lines_wrap_inside_the_events_log():
    app = create_live_app(pause_at=3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state == "paused")
        log = app.query_one(EventsPanel)
        words = [f"word{i}" for i in range(40)]
        log.note(" ".join(words))
        await pilot.pause()
        width = log.scrollable_content_region.width
        lines = [line.text.rstrip() for line in log.lines]
        assert all(len(line) <= width for line in lines), (width, max(map(len, lines)))
        assert " ".join(lines).split()[-40:] == words


async def test_at_80_by_24_the_status_line_and_the_footer_fit(tmp_path):
    app = create_live_app(max_rate=20, pause_at=5, record_path=str(tmp_path / "a-long-recording-name.jsonl"))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.state == "paused")
        status = status_text(app)
        assert len(status) <= 80 and "flip off" in status and "lr x1" in status, status
        await wait_for(pilot, lambda: len(app.query("FooterKey.-command-palette")) == 1)  # composed when ready
        await pilot.pause()
        palette = app.query_one("FooterKey.-command-palette").region
        keys = [key.region for key in app.query("FooterKey") if key.region != palette]
        assert len(keys) >= 9 and all(0 < key.right <= palette.x for key in keys)


def panel_text(widget):
    return "\n".join(strip.text for strip in widget.render_lines(Region(0, 0, *widget.region.size)))


async def test_a_layer_nothing_reaches_shows_dashes_not_zeros_beside_its_held_verdict():
    from biasmon.core import LayerDiagnosis
    dead = LayerDiagnosis(b_norm=7.8, g_norm=0.0, u_norm=0.0, ratio=0.0, cos=None, sign_agree=None,
                          pred_dloss=0.0, fd_error=None, verdict="uphill", cause="sign flipped?", since=4)
    app = SignOnly()
    async with app.run_test(size=(120, 10)) as pilot:
        app.query_one(SignPanel).show({"hidden1": dead}, None)
        await pilot.pause()
        row = next(line for line in panel_text(app.query_one(SignPanel)).splitlines() if "hidden1" in line)
        assert row.split()[1:-2] == ["—"] * 4 and "uphill" in row and "0.00e+00" not in row


class SignOnly(App):
    def compose(self):
        yield SignPanel()


async def test_the_events_log_shows_weights_going_wrong_and_recovering_but_not_their_first_ok():
    from biasmon.core.records import Event
    app = create_live_app(pause_at=3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state == "paused")
        log = app.query_one(EventsPanel)
        log.clear()
        for step, verdict in ((4, "ok"), (40, "exploding"), (43, "exploding"), (50, "ok"), (60, "pending")):
            log.add(Event("verdict", step, {"layer": "out", "param": "weight", "verdict": verdict, "cause": ""}))
        log.add(Event("verdict", 70, {"layer": ["odd"], "param": "weight", "verdict": "vanishing", "cause": ""}))
        await pilot.pause()
        text = " ".join(" ".join(line.text.split()) for line in log.lines) + " "
        assert "step 4 " not in text and "step 60 " not in text
        assert all(f"step {s} " in text for s in (40, 43, 50, 70)) and "out weights: ok" in text
        log.add(Event("verdict", 80, {"layer": "out", "param": "weight", "verdict": "exploding", "cause": ""}))
        log.new_run()   # the next run's first ok is not a recovery
        log.add(Event("verdict", 4, {"layer": "out", "param": "weight", "verdict": "ok", "cause": ""}))
        await pilot.pause()
        assert "step 80 " in " ".join(" ".join(line.text.split()) for line in log.lines)
        assert "step 4 " not in " ".join(" ".join(line.text.split()) for line in log.lines)


async def test_event_lines_wrapped_on_a_narrow_terminal_read_whole_once_it_is_wider():
    app = create_live_app(pause_at=3)
    async with app.run_test(size=(60, 32)) as pilot:
        await wait_for(pilot, lambda: app.state == "paused")
        log = app.query_one(EventsPanel)
        words = " ".join(f"word{i}" for i in range(12))
        log.note(words)
        await pilot.pause()
        assert not any(line.text.strip() == words for line in log.lines)   # wrapped at 60 columns
        await pilot.resize_terminal(140, 40)
        await wait_for(pilot, lambda: any(line.text.strip() == words for line in log.lines))
        assert log.virtual_size.width <= log.scrollable_content_region.width   # no sideways scrolling


def test_the_sign_panels_cause_line_names_a_live_problem_before_a_held_one():
    from types import SimpleNamespace

    from biasmon.core import CAUSES, HELD_UPHILL
    from biasmon.tui.sign_panel import _notes
    diag = {"hidden1": SimpleNamespace(verdict="uphill", cause=HELD_UPHILL),
            "output": SimpleNamespace(verdict="uphill", cause=CAUSES["uphill"])}
    assert _notes(diag, None, 1) == [f"cause: {CAUSES['uphill']}"]
    assert _notes({"hidden1": diag["hidden1"]}, None, 1) == [f"cause: {HELD_UPHILL}"]


class OnePlot(App):
    def __init__(self, plot):
        super().__init__()
        self.plot = plot

    def compose(self):
        yield self.plot


async def test_a_short_log_plot_labels_whole_decades_each_on_a_row_of_its_own():
    """At 50x16 the loss plot had a few rows for six decade labels: two on one row overwrote each other
    (`1e1` over `1e-1` read `11e-1`, a value that looks real). A label now comes every other row at most."""
    import re

    import numpy as np

    from biasmon.tui.plot import Line, PlotextPlot

    steps = np.arange(1000.0)
    for rows in (7, 8, 9, 12, 20):
        plot = PlotextPlot(log_y=True)
        app = OnePlot(plot)
        async with app.run_test(size=(40, rows)) as pilot:
            plot.set_lines([Line("loss", steps, 10.0 ** np.linspace(4.3, -4.2, 1000), "green")])
            await pilot.pause()
            drawn = str(plot.render()).splitlines()
        labelled = [(i, row.split("┤")[0].strip()) for i, row in enumerate(drawn) if "┤" in row]
        assert len(labelled) >= 2, drawn
        assert all(re.fullmatch(r"1e-?\d", label) for _, label in labelled), drawn
        assert all(b - a >= 2 for (a, _), (b, _) in zip(labelled, labelled[1:])), drawn
