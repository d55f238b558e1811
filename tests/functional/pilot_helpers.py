"""Helpers for Pilot tests: wait for the app (its trainer runs in a thread) and read its panels."""
import asyncio

from biasmon.tui.events_panel import EventsPanel
from biasmon.tui.status_line import StatusLine

SIZE = (140, 40)


async def wait_for(pilot, condition, timeout=20.0):
    """Let the app run until condition() holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


def status_text(app):
    return str(app.query_one(StatusLine).render())


def event_lines(app):
    return "\n".join(line.text for line in app.query_one(EventsPanel).lines)


def event_text(app):
    """The events log as one line: entries wrapped over several lines read whole."""
    return " ".join(line.text.strip() for line in app.query_one(EventsPanel).lines)


async def replay_read(pilot):
    """Let a replay read its file (in a worker, once the screen is up)."""
    await wait_for(pilot, lambda: not pilot.app.source.reading)
