"""Text a stream puts on screen (layer names, the preset named in its header, event fields) is shown
literally: no control character reaches the terminal or breaks a line, and nothing is read as markup."""
import json

from textual.geometry import Region

from biasmon.tui.app import create_replay_app
from biasmon.tui.events_panel import EventsPanel
from biasmon.tui.loss_panel import LossPanel
from biasmon.tui.norm_panel import NormPanel
from biasmon.tui.sign_panel import SignPanel
from biasmon.tui.status_line import StatusLine
from pilot_helpers import event_text, replay_read, wait_for

EVIL = "\u001b[31mEVIL\u001b[0m\nresult: ok"
LOUD = "[bold red]loud[/]"
SHOWN = {EVIL: r"\x1b[31mEVIL\x1b[0m\nresult: ok", LOUD: LOUD}


def write_stream(path, runs=2, steps=30):
    """Gradient descent on two layers with hostile names; a preset switch names a hostile preset."""
    lines = [{"format": "biasmon-stream", "version": 1, "run_id": "r1", "preset": {"name": "[i]p\u001b[2J"}}]
    for run in range(runs):
        if run:
            lines.append({"event": "preset_switched", "step": steps, "run_id": f"r{run + 1}", "preset": LOUD + EVIL})
        b = {EVIL: [0.0, 0.0], LOUD: [0.5]}
        for step in range(steps):
            g = {name: [x - 1.0 for x in v] for name, v in b.items()}
            loss = sum(x * x for v in g.values() for x in v) / 2
            lines.append({"step": step, "loss": loss, "biases": b, "bias_grads": g})
            b = {name: [x - 0.1 * gx for x, gx in zip(v, g[name])] for name, v in b.items()}
    lines.append({"event": "diverged", "step": steps, "layer": EVIL, "reason": LOUD})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def drawn(widget):
    return "\n".join(strip.text for strip in widget.render_lines(Region(0, 0, *widget.region.size)))


async def test_hostile_stream_text_is_shown_literally(tmp_path):
    path = tmp_path / "evil.jsonl"
    write_stream(path)
    app = create_replay_app(path)
    async with app.run_test(size=(220, 50)) as pilot:
        await replay_read(pilot)
        await pilot.press(*["right"] * 11)
        await wait_for(pilot, lambda: app.source.position == len(app.source.records))
        await pilot.pause()
        screen = {cls.__name__: drawn(app.query_one(cls)) for cls in (StatusLine, LossPanel, NormPanel, SignPanel,
                                                                    EventsPanel)}
        for name, text in screen.items():
            assert "\x1b" not in text and "\r" not in text, name
            assert not any(line.strip().strip("│").strip().startswith("result: ok") for line in text.splitlines()), name
        for shown in SHOWN.values():
            assert shown in screen["SignPanel"] and shown in screen["NormPanel"]  # its legend
        assert SHOWN[LOUD] + SHOWN[EVIL] in screen["StatusLine"]        # the run's label, from the stream
        assert "faint: [i]p\\x1b[2J" in screen["LossPanel"]              # the first run's, in the title
        assert f"DIVERGED (first non-finite layer: {SHOWN[EVIL]}) {LOUD}" in event_text(app)
