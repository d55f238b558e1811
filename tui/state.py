"""What the status line shows, as typed values: the run state and a snapshot of the source's settings."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RunState(StrEnum):
    """Where the shown run is. Live: running/paused/finished; replay: reading (its file)/playing/paused/end
    of recording; watch: waiting for the file/following/paused/end of stream/stopped (on an error); any of
    them: diverged. Pause reads "paused" in every mode (watch then holds the view still): "frozen" is a
    verdict's name."""

    READY = "ready"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    DIVERGED = "diverged"
    PLAYING = "playing"
    END_OF_RECORDING = "end of recording"
    READING = "reading"
    WAITING = "waiting for the file"
    FOLLOWING = "following"
    END_OF_STREAM = "end of stream"
    STOPPED = "stopped: see the events log"   # watch: reading ended on an error (what was read stays shown)


@dataclass(frozen=True)
class Status:
    """One status line: the mode badge, the source, the step, the speed, the state and the live settings.
    A field left None is not shown."""

    mode: str
    source: str
    state: RunState
    step: int | None = None
    total: int | None = None
    rate: float = 0.0
    diverged_at: int | None = None       # the step of the first divergence, with RunState.DIVERGED
    position: tuple[int, int] | None = None  # replay: records shown, records in the file
    read: tuple[int, float] | None = None    # replay, while its file is read: lines read, share of the file
    flip: bool | None = None
    flip_weights: bool | None = None     # live: the weights' sign bug (shown only when on)
    lr_scale: float | None = None
    recording: str | None = None         # live: the file being written, "" when not recording
    max_rate: int | None = None
    hint: str | None = None              # what to press now (a live run that has ended)

    @property
    def shown_step(self) -> int | None:
        """The step to show: a run that diverged reached the step it diverged at (a step with no record,
        one after the last shown), so the status line never says "step 314 ... diverged at step 315"."""
        if self.state is RunState.DIVERGED and self.diverged_at is not None and (
                self.step is None or self.step < self.diverged_at):
            return self.diverged_at
        return self.step

    @property
    def state_text(self) -> str:
        """The state as words: "diverged" (at the step shown), "diverged at step 120" (records went on),
        "paused"."""
        if self.state is RunState.DIVERGED and self.shown_step != self.diverged_at:
            return f"diverged at step {self.diverged_at}"
        if self.state is RunState.READING and self.read is not None:
            return f"reading… {self.read[0]:,} lines ({self.read[1]:.0%})"
        return self.state.value


class LayerView(StrEnum):
    """Which parameters the per-layer panels show (key w cycles): each layer's biases, its weights, or both."""

    BIASES = "biases"
    WEIGHTS = "weights"
    BOTH = "both"

    def next(self) -> "LayerView":
        """The view w goes to from this one."""
        views = list(LayerView)
        return views[(views.index(self) + 1) % len(views)]
