"""The live training loop (no Textual here): a Trainer stepped in blocks of steps, each block diagnosed
together, recorded, and folded into a batch handed over a few times a second."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

from ..core import Trainer
from .history import Batch, BatchBuilder
from .recording import Recording
from .source import BATCH_SECONDS

CHUNK_STEPS = 64          # steps per turn of the training loop (one lock, one block of diagnostics)
YIELD_SECONDS = 0.0005    # the trainer steps aside this long when the UI has something to draw
FIRST_FRAME_WAIT = 0.5    # at most this long, the first block waits for the screen's first frame


class Controls(Protocol):
    """What the UI changes while a run trains, read by the training thread between blocks."""

    paused: bool
    pause_at: int | None   # pause by itself once this many steps are done (tests, demos)
    max_rate: int | None   # at most this many steps per second (None: as fast as it goes)
    step_requests: threading.Semaphore  # one release per step asked for while paused


@dataclass
class Handover:
    """A batch for the UI, the steps per second since the last one (0: paused), and whether the run ended."""

    batch: Batch
    rate: float
    done: bool


class TrainingLoop:
    """Steps `trainer` until it is done or `cancelled()`; `ui_waiting()` says the UI has something to draw
    (the loop then sleeps a moment so the UI has the GIL). Cancellation is checked before and after
    every block, and under the recording's lock before writing, so a cancelled run never writes."""

    def __init__(self, trainer: Trainer, controls: Controls, recording: Recording,
                 cancelled: Callable[[], bool], ui_waiting: Callable[[], bool]) -> None:
        self.trainer, self.controls, self.recording = trainer, controls, recording
        self.cancelled, self.ui_waiting = cancelled, ui_waiting
        self.builder = BatchBuilder(trainer.run_id)
        self.next_due = 0.0

    def begin(self, reason: str | None) -> int | None:
        """The run begins (in the recording, if on): the step the run it replaces reached; None if this
        run was cancelled first (it must not begin)."""
        with self.recording.lock:  # the previous run's last block is written by now: its step count is final
            if self.cancelled():
                return None
            return self.recording.begin(self.trainer, reason)

    def run(self) -> Iterator[Handover]:
        """Train (after begin), yielding a Handover every BATCH_SECONDS, at each pause and at the end."""
        c = self.controls
        first_frame = time.monotonic() + FIRST_FRAME_WAIT
        while self.ui_waiting() and not self.cancelled() and time.monotonic() < first_frame:
            time.sleep(YIELD_SECONDS)   # the screen appears before the first block takes the GIL
        last_post = self.next_due = time.monotonic()
        steps_since = 0
        while not self.cancelled() and not self.trainer.done:
            if c.paused and not c.step_requests.acquire(timeout=0.05):
                if not self.builder.empty:
                    yield Handover(self.builder.take(), 0.0, False)
                continue
            stepped = self._block(self._block_size())
            if stepped is None or self.cancelled():  # a newer run has started: this one must not pause it
                return
            steps_since += stepped
            if self.ui_waiting():
                time.sleep(YIELD_SECONDS)
            if c.pause_at is not None and self.trainer.step_index >= c.pause_at and not c.paused:
                c.paused = True  # the batch handed over below brings the status line up to date
            now = time.monotonic()
            if now - last_post >= BATCH_SECONDS or c.paused:
                yield Handover(self.builder.take(), self._rate(steps_since, now - last_post), False)
                last_post, steps_since = now, 0
        if not self.cancelled():
            yield Handover(self.builder.take(), 0.0, True)

    def _rate(self, steps: int, seconds: float) -> float:
        """Steps per second for the status line (0 while paused). Under a cap, at most the cap: a window of
        a quarter second may hold one step more than the cap allows (a step at each edge), and steps a
        busy UI delayed are caught up (up to 0.1 s of them), but over time the loop keeps to the cap."""
        if self.controls.paused:
            return 0.0
        rate = steps / seconds
        return min(rate, self.controls.max_rate) if self.controls.max_rate else rate

    def _block_size(self) -> int:
        """Steps in the next block; with a speed cap, first wait for its turn (sleeping frees the GIL)."""
        c = self.controls
        cap = c.max_rate
        n = most = self.trainer.block_steps(CHUNK_STEPS)   # a big net's records hold fewer steps' vectors
        if cap:  # slow motion: one step per 1/cap seconds, the steps whose turn has come in one block
            time.sleep(max(0.0, self.next_due - time.monotonic()))
            now = time.monotonic()
            self.next_due = max(self.next_due, now - 0.1)
            n = min(most, 1 + int((now - self.next_due) * cap))
        if c.paused:
            n = 1
        if c.pause_at is not None:
            n = max(1, min(n, c.pause_at - self.trainer.step_index))
        if cap:
            self.next_due += n / cap   # the steps taken use their turns, no more
        return n

    def _block(self, n: int) -> int | None:
        """Train n steps under the recording's lock; the steps taken (None: cancelled, nothing done)."""
        with self.recording.lock:
            if self.cancelled():
                return None
            first = self.trainer.step_index
            for record in self.trainer.advance(n):
                self.builder.add(record)
                self.recording.write(record)
            return self.trainer.step_index - first
