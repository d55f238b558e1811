"""The live training loop without the app: the speed it reports under a cap (on a clock of our own)."""
import threading
from types import SimpleNamespace

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
