"""Live training: each run trains in an exclusive thread worker (a thin loop over TrainingLoop) that posts
a Progress a few times a second; the app drops the batches of any run it has left."""
from __future__ import annotations

import threading
from functools import partial

from textual.worker import get_current_worker

from ..core import BiasmonError, Trainer
from .history import Batch, RunHistory
from .messages import Note, Progress, SourceFailed
from .preset_list import PresetList
from .recording import Recording
from .segments import RunStart, Segment
from .source import Source
from .state import RunState, Status
from .text import shown
from .training import TrainingLoop

UNLIMITED = 10**12  # live runs train until paused or quit, unless --steps is given
RATE_LEVELS = [2 ** k for k in range(2, 14)]  # the steps/s caps - and + go through (4 .. 8192); None: full speed
NEXT = "r restarts, 1-9 picks a preset"  # what to press once a run has ended (status line)
SETTLED_ACTIONS = frozenset({"toggle_pause", "step", "flip", "flip_weights", "grad_check", "bias_lr"})  # nothing to act on


class LiveSource(Source):
    """Trains the presets (name -> core Preset), one run at a time; also the Controls its training
    thread reads (paused, pause_at, max_rate, step_requests)."""

    mode = "LIVE"
    actions = frozenset({"step", "preset", "restart", "flip", "flip_weights", "grad_check", "bias_lr", "rate"})

    def __init__(self, presets: dict, preset_name: str, *, seed: int | None = None,
                 steps: int | None = None, record_path: str | None = None, autostart: bool = True,
                 pause_at: int | None = None, max_rate: int | None = None) -> None:
        super().__init__(preset_name)
        self.preset_list: PresetList | None = None
        self.all_presets, self.preset_name = presets, preset_name
        self.seed, self.steps, self.autostart = seed, steps, autostart
        self.pause_at, self.max_rate = pause_at, max_rate
        self.step_requests = threading.Semaphore(0)
        self.recording = Recording(record_path, lambda text: self.app.post_message(SourceFailed(text)))
        self.trainer: Trainer | None = None
        self._loops_lock = threading.Lock()
        self.running_loops = 0  # training loops still running (a cancelled one ends after its block)

    def start(self) -> None:
        """Open the recording, then train the chosen preset (or wait for a key when not autostarting)."""
        super().start()
        error = self.recording.open()
        if error:
            self.app.exit(return_code=2, message=error)
            return
        if self.autostart:
            self.start_run(self.preset_name, reason=None)
        else:
            self.state = RunState.READY
            self.post(Progress(panels=False))

    def close(self) -> None:
        self.recording.close()

    def side_panel(self) -> PresetList:
        self.preset_list = PresetList(self.all_presets, self.preset_name, id="side")
        return self.preset_list

    def start_run(self, name: str, reason: str | None) -> None:
        """Train preset `name` from step 0 in a new worker; the one before is cancelled."""
        try:
            trainer = Trainer(self.all_presets[name], seed=self.seed, steps=self.steps or UNLIMITED)
        except BiasmonError as exc:
            self.post(Progress(notes=[Note(f"cannot start {name}: {exc}", "bold red")], panels=False))
            self.app.notify(shown(exc), title=f"cannot start {shown(name)}", severity="error", markup=False)
            return
        self.preset_name, self.trainer = name, trainer
        self.state = RunState.PAUSED if self.paused else RunState.RUNNING
        self.rate = 0.0
        if self.preset_list is not None:
            self.preset_list.mark_active(name)
        self.post(Progress([Segment(Batch(trainer.run_id), RunStart(trainer.run_id, name))]))
        self.app.run_worker(partial(self._train, trainer, reason), name="trainer", group="run",
                            exclusive=True, thread=True)

    def _train(self, trainer: Trainer, reason: str | None) -> None:
        """The worker: begins the run, then hands each batch of the training loop to the app (in the
        worker's thread). The events log marks the new run with the step the run it replaces reached."""
        worker = get_current_worker()
        with self._loops_lock:
            self.running_loops += 1
        try:
            loop = TrainingLoop(trainer, self, self.recording, lambda: worker.is_cancelled, self.app.drawing.is_set)
            left = loop.begin(reason)
            if left is None:
                return
            if reason is not None:
                what = f"{'restarted' if reason == 'restarted' else 'switched'} at step {left}"
                self.post(Progress([Segment(Batch(trainer.run_id))], [Note(f"── new run: {trainer.preset.name} "
                                                                         f"({what}) ──", "bold")], panels=False))
            for handover in loop.run():
                self.app.drawing.set()  # the UI has a message waiting: the next blocks step aside
                self.post(Progress([Segment(handover.batch)], rate=handover.rate, done=handover.done))
        except Exception as exc:  # a bug must not take the session (or the recording) down with a traceback
            self.post(SourceFailed(f"training stopped at step {trainer.step_index}: {type(exc).__name__}: {exc}"))
        finally:
            with self._loops_lock:
                self.running_loops -= 1

    def receive(self, progress: Progress) -> Progress | None:
        """Drop batches of a run we have left; then diverged beats finished beats paused."""
        if progress.segments and progress.segments[0].batch.run_id != self.trainer.run_id:
            return None  # a batch from a run we have left
        if progress.segments:
            if progress.rate:
                self.rate = progress.rate
            if self.paused and self.state is RunState.RUNNING:
                self.state = RunState.PAUSED
            if not self.note_divergence(progress.segments) and progress.done:
                self.state = RunState.FINISHED
        return progress

    def status(self, current: RunHistory | None) -> Status:
        t = self.trainer
        return Status(self.mode, self.preset_name or "", self.state, step=current.last_step if current else None,
                      total=self.steps, rate=self.rate if self.state is RunState.RUNNING else 0,
                      diverged_at=self.diverged_at, flip=t.flip_sign if t else None,
                      flip_weights=t.flip_weight_sign if t else None,
                      lr_scale=t.bias_lr_scale if t else None, max_rate=self.max_rate,
                      recording=self.recording.path if self.recording.on else "",
                      hint=NEXT if self.state in (RunState.DIVERGED, RunState.FINISHED) else None)

    def has_biases(self, current: RunHistory | None) -> bool:
        return bool(self.trainer.layout.names) if self.trainer is not None else super().has_biases(current)

    def can(self, action: str) -> bool:
        """A run that has ended (diverged, or --steps done) trains no more: pause, step, flip, the gradient
        check and the bias lr have nothing to act on (the status line says what to press)."""
        return not (action in SETTLED_ACTIONS and self.trainer is not None and self.trainer.done)

    def step(self) -> None:
        if not self.paused:
            self.toggle_pause()
        self.step_requests.release()

    def restart(self) -> None:
        self.start_run(self.preset_name, reason="restarted")

    def switch_preset(self, name: str) -> None:
        self.start_run(name, reason="preset_switched")

    def presets(self) -> dict[str, str]:
        return {name: p.description for name, p in self.all_presets.items()}

    def flip(self) -> None:
        if self.trainer is None or self._no_biases("flip_sign", "F flips the weights' sign"):
            return
        self.trainer.flip_sign = not self.trainer.flip_sign   # the status line shows it now; the events log next step

    def flip_weights(self) -> None:
        if self.trainer is not None:
            self.trainer.flip_weight_sign = not self.trainer.flip_weight_sign

    def grad_check(self) -> None:
        if self.trainer is not None:
            t = self.trainer
            t.request_gradient_check()
            what = " and ".join(kind for kind, on in (("biases", t.layout.names), ("weights", t.diagnose_weights)) if on)
            self.app.notify(f"finite-difference check of the {what or 'parameters'} at the next step" +
                            (" (press n)" if self.paused else ""), title="gradient check", timeout=3)

    def bias_lr(self, factor: float) -> None:
        if self.trainer is None or self._no_biases("bias lr", "[ and ] scale the biases' learning rate"):
            return
        self.trainer.bias_lr_scale = min(1024.0, max(1 / 1024, self.trainer.bias_lr_scale * factor))

    def _no_biases(self, title: str, what: str) -> bool:
        """Whether the network has no biases (a key acting on them then says so, and does nothing)."""
        if self.trainer.layout.names:
            return False
        self.app.notify(f"this network has no biases: {what}", title=title, timeout=3)
        return True

    def cap_rate(self, factor: float) -> None:
        """Cap the training speed (slow motion to watch a sign bug develop), or lift the cap: slower (factor
        below 1) goes to the next of RATE_LEVELS below the cap (from no cap, the fastest; none below: it
        stays), faster to the next above it (past the fastest, the cap is lifted). A cap between levels
        (--rate 10) goes to a level at once: 10, then -, -, + is 8, 4, 8."""
        if factor < 1:
            if self.max_rate is None:
                self.max_rate = RATE_LEVELS[-1]
            else:
                self.max_rate = max((r for r in RATE_LEVELS if r < self.max_rate), default=self.max_rate)
        elif self.max_rate is not None:
            self.max_rate = min((r for r in RATE_LEVELS if r > self.max_rate), default=None)
