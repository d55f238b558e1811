"""What every source of runs shares: the app it posts to, its run state, pause and step, and the status
it reports. A source says which of the app's optional actions it supports; the app hides the rest."""
from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING, ClassVar

from .history import RunHistory
from .messages import Progress
from .segments import Divergence, Segment
from .state import RunState, Status

if TYPE_CHECKING:
    from textual.app import App
    from textual.widget import Widget

BATCH_SECONDS = 0.25      # how often a source hands the UI what it has (4 per second)
SWITCH_INTERVAL = 0.0002  # seconds a thread may hold the GIL while another waits (Python's default: 0.005)
OPTIONAL_ACTIONS = frozenset({"step", "seek", "preset", "restart", "flip", "flip_weights", "grad_check", "bias_lr",
                              "rate"})


class Source:
    """Base of the live, replay and watch sources. Runs on the UI thread unless a method says otherwise."""

    mode: ClassVar[str] = ""
    actions: ClassVar[frozenset[str]] = frozenset()  # which of OPTIONAL_ACTIONS this source supports
    going: ClassVar[RunState] = RunState.RUNNING     # the state pause toggles with `halted`
    halted: ClassVar[RunState] = RunState.PAUSED

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.app: App | None = None
        self.paused = False
        self.state = self.going
        self.rate = 0.0
        self.divergence = Divergence()
        self.diverged_at: int | None = None  # shown with RunState.DIVERGED
        self._switch_interval = sys.getswitchinterval()

    def attach(self, app: App) -> None:
        """Post to `app` from now on."""
        self.app = app

    def post(self, progress: Progress) -> None:
        """Hand the app a Progress (from any thread)."""
        self.app.post_message(progress)

    def start(self) -> None:
        """The app is mounted: begin. The trainer or reader thread holds the GIL between switches; the UI,
        input and output threads each wait up to one switch interval per hand-over, and 5 ms (the
        default) made a key press take seconds to show. The widgets live as long as the app: gc.freeze
        keeps them out of the collector's full passes."""
        sys.setswitchinterval(SWITCH_INTERVAL)
        gc.freeze()

    def stop(self) -> None:
        """The app is unmounted: undo start()."""
        sys.setswitchinterval(self._switch_interval)
        gc.unfreeze()

    def close(self) -> None:
        """The app has exited: release files."""

    def side_panel(self) -> Widget | None:
        """A widget for the right-hand column, if this source has one."""
        return None

    def receive(self, progress: Progress) -> Progress | None:
        """Called by the app before it shows `progress`: update the run state; return what to show now
        (None: nothing, the progress is stale)."""
        return progress

    def note_divergence(self, segments: list[Segment]) -> bool:
        """Whether the shown run has diverged once `segments` are shown; if so, the state says where."""
        step = self.divergence.follow(segments)
        if step is not None:
            self.state, self.diverged_at = RunState.DIVERGED, step
        return step is not None

    def status(self, current: RunHistory | None) -> Status:
        """What the status line shows now."""
        return Status(self.mode, self.name, self.state, step=current.last_step if current else None,
                      rate=self.rate, diverged_at=self.diverged_at)

    def has_biases(self, current: RunHistory | None) -> bool:
        """Whether the shown network has biases (so an empty sign panel is waiting, not empty for good)."""
        return current is None or bool(current.norms) or current.last_step is None

    def can(self, action: str) -> bool:
        """Whether `action` can do anything now (the app shows it disabled if not)."""
        return True

    def toggle_pause(self) -> None:
        """Pause or resume (replay: stop playing; watch: freeze the view)."""
        self.paused = not self.paused
        if self.state in (self.going, self.halted):
            self.state = self.halted if self.paused else self.going

    # The optional actions: the app calls one only if its name is in `actions`.
    def step(self) -> None:
        """One step (live) or one record (replay), pausing first."""

    def seek(self, fraction: float) -> None:
        """Move through a recording by this fraction of it."""

    def restart(self) -> None:
        """Start the run again from step 0."""

    def switch_preset(self, name: str) -> None:
        """Start preset `name` from step 0."""

    def presets(self) -> dict[str, str]:
        """The presets one can switch to: name -> description."""
        return {}

    def flip(self) -> None:
        """Flip the sign of the bias update."""

    def flip_weights(self) -> None:
        """Flip the sign of the weights' update (the same bug in the weights)."""

    def grad_check(self) -> None:
        """A finite-difference check of the biases (and the weights, if diagnosed) at the next step."""

    def bias_lr(self, factor: float) -> None:
        """Scale the bias learning rate."""

    def cap_rate(self, factor: float) -> None:
        """Cap the training speed, or lift the cap."""
