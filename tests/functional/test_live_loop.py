"""The live training loop without the app: the speed it reports under a cap (on a clock of our own)."""
import threading
from types import SimpleNamespace

import pytest

from biasmon.core import Trainer, load_preset
from biasmon.tui import training
from biasmon.tui.recording import Recording


class Clock:
    """time.monotonic and time.sleep on a clock that moves only when slept on, or when `lag` says a
    busy UI held the trainer back (every `every`-th sleep lasts `lag` seconds longer)."""

    def __init__(self, lag=0.0, every=0):
        self.now, self.lag, self.every, self.sleeps = 100.0, lag, every, 0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps += 1
        self.now += seconds + (self.lag if self.every and self.sleeps % self.every == 0 else 0.0)


def rates(monkeypatch, clock, cap, handovers=40):
    monkeypatch.setattr(training, "time", clock)
    controls = SimpleNamespace(paused=False, pause_at=None, max_rate=cap, step_requests=threading.Semaphore(0))
    trainer = Trainer(load_preset("gradient"), steps=10**6)
    loop = training.TrainingLoop(trainer, controls, Recording(None, print), lambda: False, lambda: False)
    assert loop.begin(None) == 0
    shown = []
    for handover in loop.run():
        shown.append(handover.rate)
        if len(shown) == handovers:
            return shown, trainer.step_index


def test_the_rate_shown_never_exceeds_the_cap(monkeypatch):
    shown, _ = rates(monkeypatch, Clock(), cap=20)
    assert max(shown) <= 20 and min(shown) > 0


def test_steps_a_busy_ui_delayed_are_caught_up_but_never_shown_above_the_cap(monkeypatch):
    clock = Clock(lag=0.08, every=7)  # the UI drew a plot: this step came late
    start = clock.now
    shown, steps = rates(monkeypatch, clock, cap=20)
    assert max(shown) <= 20
    assert steps / (clock.now - start) > 19  # over time the loop keeps to the cap


def first_block_start(monkeypatch, drawn_after):
    """The clock's time when the trainer's first step ran, with the UI drawing its first frame for
    `drawn_after` seconds (ui_waiting() true until then)."""
    clock = Clock()
    monkeypatch.setattr(training, "time", clock)
    controls = SimpleNamespace(paused=False, pause_at=None, max_rate=None, step_requests=threading.Semaphore(0))
    trainer = Trainer(load_preset("gradient"), steps=10**6)
    started = []

    def advance(n):
        started.append(clock.now)
        raise FirstBlock

    trainer.advance = advance
    start = clock.now
    loop = training.TrainingLoop(trainer, controls, Recording(None, print), lambda: False,
                                 lambda: clock.now < start + drawn_after)
    with pytest.raises(FirstBlock):
        next(loop.run())
    return started[0] - start


class FirstBlock(Exception):
    """The trainer's first block began: the test has what it waited for."""


def test_the_first_block_waits_for_the_first_frame_but_not_forever(monkeypatch):
    assert 0.1 <= first_block_start(monkeypatch, 0.1) < 0.1 + 2 * training.YIELD_SECONDS
    assert first_block_start(monkeypatch, 0.0) == 0.0
    assert training.FIRST_FRAME_WAIT <= first_block_start(monkeypatch, 60.0) < training.FIRST_FRAME_WAIT + 0.01
