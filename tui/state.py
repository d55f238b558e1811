"""What the status line shows, as typed values: the run state and a snapshot of the source's settings."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RunState(StrEnum):
    """Where the shown run is. Live: running/paused/finished; replay: playing/paused/end of recording;
    watch: following/frozen/end of stream; any of them: diverged."""

    READY = "ready"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    DIVERGED = "diverged"
    PLAYING = "playing"
    END_OF_RECORDING = "end of recording"
    FOLLOWING = "following"
    FROZEN = "frozen"
    END_OF_STREAM = "end of stream"


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
    flip: bool | None = None
    lr_scale: float | None = None
    recording: str | None = None         # live: the file being written, "" when not recording
    max_rate: int | None = None

    @property
    def state_text(self) -> str:
        """The state as words: "diverged at step 120", "paused  record 40/300"."""
        text = self.state.value
        if self.state is RunState.DIVERGED:
            text = f"diverged at step {self.diverged_at}"
        if self.position is not None:
            text += f"  record {self.position[0]}/{self.position[1]}"
        return text
