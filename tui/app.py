"""The biasmon app: live training, replay of a recording, or watching a stream, in the same panels.

Live runs train in an exclusive thread worker that checks cancellation before and after every block of
steps and hands the UI a batch a few times a second; the UI drops batches of any run it has left. One
app factory per mode is shared by the CLI and the tests.
"""
from __future__ import annotations

import gc
import os
import sys
import threading
import time
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, OptionList, Static
from textual.worker import get_current_worker

from ..core import (DEFAULT_PRESET, RESET_EVENTS, BiasmonError, Event, RecordWriter, StreamError, StreamReader,
                    Trainer, discover_presets, load_preset, read_all)
from .events_panel import EventsPanel
from .history import BatchBuilder, RunHistory
from .loss_panel import LossPanel
from .messages import BatchReady, RecordsRead, SourceFailed
from .norm_panel import NormPanel
from .preset_list import PresetList
from .sign_panel import SignPanel
from .status_line import StatusLine

BATCH_SECONDS = 0.25  # how often a worker hands the UI what it has (4 per second)
CHUNK_STEPS = 16          # steps per turn of the training loop (one lock, one block of diagnostics)
PLOT_SECONDS = 0.5        # plots are rebuilt at most twice a second while training runs
SWITCH_INTERVAL = 0.0002  # seconds a thread may hold the GIL while another waits (Python's default: 0.005)
YIELD_SECONDS = 0.0005   # the trainer steps aside this long when the UI has messages waiting
UNLIMITED = 10**12    # live runs train until paused or quit, unless --steps is given
LIVE, REPLAY, WATCH = "live", "replay", "watch"
LIVE_ONLY = {"preset", "restart", "flip", "grad_check", "bias_lr", "rate"}
RATE_LEVELS = [2 ** k for k in range(2, 14)]  # steps/s caps offered by - and + (4 .. 8192); None: full speed
REPLAY_ONLY = {"seek"}


class BiasmonApp(App):
    CSS_PATH = "biasmon.tcss"
    TITLE = "biasmon"
    HORIZONTAL_BREAKPOINTS = [(0, "-tiny"), (50, "-narrow"), (80, "-medium"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-tiny-h"), (16, "-short"), (30, "-tall")]
    BINDINGS = [
        Binding("space", "toggle_pause", "pause"),
        Binding("n", "step", "step"),
        Binding("r", "restart", "restart"),
        Binding("f", "flip", "flip"),
        Binding("g", "grad_check", "check"),
        Binding("[", "bias_lr(0.5)", "lr/2"),
        Binding("]", "bias_lr(2)", "lr×2"),
        Binding("left", "seek(-0.1)", "back 10%"),
        Binding("right", "seek(0.1)", "fwd 10%"),
        Binding("minus", "rate(0.5)", "slower"),
        Binding("plus,equals_sign", "rate(2)", "faster"),
        Binding("s", "svg", "svg"),
        Binding("q", "quit", "quit"),
        *[Binding(str(i), f"preset({i})", f"preset {i}", show=False) for i in range(1, 10)],
    ]

    def __init__(self, mode, *, presets=None, preset_name=None, seed=None, steps=None, record_path=None,
                 records=None, reader=None, stream=None, source_name="", autostart=True, pause_at=None,
                 max_rate=None):
        super().__init__()
        self.mode = mode
        self.presets = presets or {}
        self.preset_name = preset_name
        self.seed, self.steps = seed, steps
        self.record_path = record_path
        self.source_name = source_name
        self.autostart = autostart
        self.pause_at = pause_at  # live: pause by itself once this many steps are done (tests, demos)
        self.max_rate = max_rate  # live: at most this many steps per second (None: as fast as it goes)
        self.current: RunHistory | None = None
        self.previous: RunHistory | None = None
        self.trainer: Trainer | None = None
        self.paused = False
        self.state = "starting"
        self.rate = 0.0
        self._io_lock = threading.Lock()     # one run at a time touches the recording
        self._loops_lock = threading.Lock()
        self.running_loops = 0               # training loops still running (a cancelled one ends after its block)
        self._step_requests = threading.Semaphore(0)
        self._plotted = 0.0
        self._plot_turn = False
        self._recorder = None
        self._record_handle = None
        self._switch_interval = sys.getswitchinterval()
        # replay
        self.records = records or []
        self.reader = reader
        self.position = 0
        self._exiting = False
        # watch
        self.stream = stream
        self._held: list = []  # records read while the view is frozen

    # --- layout ----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        with Horizontal(id="body"):
            with Vertical(id="main"):
                with Horizontal(id="plots"):
                    yield LossPanel(id="loss")
                    yield NormPanel(id="norms")
                yield SignPanel(id="sign")
                yield EventsPanel(id="events")
            if self.mode == LIVE:
                yield PresetList(self.presets, self.preset_name, id="side")
        yield Static("terminal too small for biasmon: make it at least 50 columns by 16 rows", id="too-small")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        # The trainer thread holds the GIL between switches; the UI, input and output threads each wait up to
        # one switch interval per hand-over. 5 ms (the default) made a key press take seconds to show.
        sys.setswitchinterval(SWITCH_INTERVAL)
        gc.freeze()  # the widgets live as long as the app: keep them out of the collector's full passes
        self.query_one(EventsPanel).can_focus = False
        if self.mode == LIVE:
            if self.record_path:
                self._open_recording()
            if self.autostart:
                self.start_run(self.preset_name, reason=None)
            else:
                self.state = "ready"
                self._show_status()
        elif self.mode == REPLAY:
            self._replay_problems()
            self.set_interval(BATCH_SECONDS, self._replay_tick)
            self._show_status()
        else:
            self.state = "following"
            self._follow(self.stream)
            self._show_status()

    def on_unmount(self) -> None:
        sys.setswitchinterval(self._switch_interval)
        gc.unfreeze()

    # --- live runs -------------------------------------------------------------------------------
    def _open_recording(self):
        try:
            self._record_handle = open(self.record_path, "w", encoding="utf-8")
        except OSError as exc:
            self.exit(return_code=2, message=f"biasmon: error: {self.record_path}: cannot write ({exc.strerror or exc})")
            return
        self._recorder = RecordWriter(self._record_handle)

    def start_run(self, name, reason) -> None:
        """Train preset `name` from step 0 in a new worker; the one before is cancelled."""
        try:
            trainer = Trainer(self.presets[name], seed=self.seed, steps=self.steps or UNLIMITED)
        except BiasmonError as exc:
            self.query_one(EventsPanel).note(f"cannot start {name}: {exc}", "bold red")
            self.notify(str(exc), title=f"cannot start {name}", severity="error")
            return
        previous_trainer = self.trainer
        old_step = previous_trainer.step_index if previous_trainer else 0
        if self.current is not None and self.current.loss.count:
            self.previous = self.current
        self.preset_name = name
        self.trainer = trainer
        self.current = RunHistory(trainer.run_id, name)
        if reason is not None and self.is_mounted:
            what = "restarted" if reason == "restarted" else f"switched at step {old_step}"
            self.query_one(EventsPanel).note(f"── new run: {name} ({what}) ──", "bold")
        self.state = "paused" if self.paused else "running"
        self.rate = 0.0
        if self.mode == LIVE and self.is_mounted:
            self.query_one(PresetList).mark_active(name)
        self._refresh_panels()
        self._show_status()
        self._train(trainer, reason, previous_trainer)

    @work(thread=True, exclusive=True, group="run", name="trainer")
    def _train(self, trainer: Trainer, reason, previous_trainer) -> None:
        with self._loops_lock:
            self.running_loops += 1
        try:
            self._train_loop(trainer, reason, previous_trainer)
        except Exception as exc:  # a bug must not take the session (or the recording) down with a traceback
            self.post_message(SourceFailed(f"training stopped at step {trainer.step_index}: "
                                           f"{type(exc).__name__}: {exc}"))
        finally:
            with self._loops_lock:
                self.running_loops -= 1

    def _train_loop(self, trainer: Trainer, reason, previous_trainer) -> None:
        worker = get_current_worker()
        builder = BatchBuilder(trainer.run_id)
        with self._io_lock:  # the previous run's last block is written by now: its step count is final
            if worker.is_cancelled:
                return
            self._record_start(trainer, reason, previous_trainer.step_index if previous_trainer else 0)
        last_post = next_due = time.monotonic()
        steps_since = 0
        while not worker.is_cancelled and not trainer.done:
            if self.paused and not self._step_requests.acquire(timeout=0.05):
                if not builder.empty:
                    self.post_message(BatchReady(builder.take(), 0.0, False))
                continue
            cap = self.max_rate
            if cap:  # slow motion: one step per 1/cap seconds (sleeping frees the GIL for the UI)
                time.sleep(max(0.0, next_due - time.monotonic()))
                next_due = max(next_due, time.monotonic() - 0.1) + 1.0 / cap
            n = 1 if (self.paused or cap) else CHUNK_STEPS
            if self.pause_at is not None:
                n = max(1, min(n, self.pause_at - trainer.step_index))
            with self._io_lock:  # a chunk of steps per lock, diagnosed together
                if worker.is_cancelled:
                    return
                first = trainer.step_index
                for record in trainer.advance(n):
                    builder.add(record)
                    if self._recorder is not None:
                        self._write(record)
                steps_since += trainer.step_index - first
            if worker.is_cancelled:  # a newer run has started: this one must not pause it
                return
            if self._message_queue.qsize() or self._screen_dirty():  # the UI has work waiting: let it have the GIL
                time.sleep(YIELD_SECONDS)
            if self.pause_at is not None and trainer.step_index >= self.pause_at and not self.paused:
                self.paused = True  # the batch posted below brings the status line up to date
            now = time.monotonic()
            if now - last_post >= BATCH_SECONDS or self.paused:
                rate = steps_since / (now - last_post) if not self.paused else 0.0
                self.post_message(BatchReady(builder.take(), rate, False))
                last_post, steps_since = now, 0
        if not worker.is_cancelled:
            self.post_message(BatchReady(builder.take(), 0.0, True))

    def _screen_dirty(self) -> bool:
        """Whether the screen has widgets waiting to be drawn (read from the trainer thread: a hint only)."""
        try:
            return bool(self.screen._dirty_widgets)
        except Exception:  # no screen yet, or it is being replaced
            return False

    def _record_start(self, trainer, reason, old_step):
        if self._recorder is None:
            return
        if reason is None:
            self._recorder.write_json(trainer.header())
        else:
            self._write(Event(reason, old_step, {"run_id": trainer.run_id, "preset": trainer.preset.name,
                                                 "layers": trainer.header()["layers"]}))

    def _write(self, record):
        try:
            self._recorder.write(record)
        except (OSError, ValueError) as exc:
            self._recorder = None
            self.post_message(SourceFailed(f"{self.record_path}: recording stopped ({exc})"))

    def on_batch_ready(self, message: BatchReady) -> None:
        if self.current is None or message.batch.run_id != self.current.run_id or self._exiting:
            return  # a batch from a run we have left, or the app is closing
        self.current.apply(message.batch)
        try:
            self._show_batch(message)
        except NoMatches:  # the screen is being torn down
            pass

    def _show_batch(self, message: BatchReady) -> None:
        events = self.query_one(EventsPanel)
        for event in message.batch.events:
            events.add(event)
        if message.rate:
            self.rate = message.rate
        if self.paused and self.state == "running":
            self.state = "paused"
        if self.current.diverged is not None:
            self.state = f"diverged at step {self.current.diverged.step}"
        elif message.done:
            self.state = "finished"
        self._refresh_panels(force_plots=message.done or self.paused or self.current.diverged is not None)
        self._show_status()

    def on_source_failed(self, message: SourceFailed) -> None:
        if self._exiting:
            return
        self.query_one(EventsPanel).note(message.message, "bold red")
        self.notify(message.message, severity="error", timeout=8)

    # --- panels ----------------------------------------------------------------------------------
    def _refresh_panels(self, force_plots=True):
        """Update the panels; the plots (the costly part) at most PLOT_SECONDS apart unless forced."""
        cur = self.current
        now = time.monotonic()
        if force_plots or now - self._plotted >= PLOT_SECONDS / 2:
            # one plot per turn while training, so no single screen update carries both (a key pressed then
            # would wait for it); each plot still refreshes every PLOT_SECONDS
            self._plotted = now
            self._plot_turn = not self._plot_turn
            if force_plots or self._plot_turn:
                self.query_one(LossPanel).show(cur, self.previous)
            if force_plots or not self._plot_turn:
                self.query_one(NormPanel).show(cur)
        has_biases = True
        if self.trainer is not None:
            has_biases = bool(self.trainer.layout.names)
        elif cur is not None:
            has_biases = bool(cur.norms) or cur.last_step is None
        self.query_one(SignPanel).show(cur.diag if cur else {}, cur.loss_change if cur else None,
                                       cur.span if cur else 1, has_biases)

    def _show_status(self):
        cur = self.current
        step = cur.last_step if cur else None
        if self.mode == LIVE:
            t = self.trainer
            self.query_one(StatusLine).show(
                mode="LIVE", source=self.preset_name or "", step=step, total=self.steps,
                rate=self.rate if self.state == "running" else 0, state=self.state,
                flip=t.flip_sign if t else None, lr_scale=t.bias_lr_scale if t else None,
                recording=self.record_path if self._recorder is not None else "", max_rate=self.max_rate)
        elif self.mode == REPLAY:
            self.query_one(StatusLine).show(
                mode="REPLAY", source=f"{self.source_name} ({cur.label if cur else ''})", step=step, total=None,
                rate=0, state=f"{self.state}  record {self.position}/{len(self.records)}")
        else:
            self.query_one(StatusLine).show(mode="WATCH", source=self.source_name, step=step, total=None,
                                            rate=self.rate, state=self.state)

    async def action_quit(self) -> None:
        self._exiting = True
        self.workers.cancel_all()
        self.exit()

    # --- keys ------------------------------------------------------------------------------------
    def check_action(self, action, parameters):
        if action in LIVE_ONLY and self.mode != LIVE:
            return False
        if action in REPLAY_ONLY and self.mode != REPLAY:
            return False
        if action == "step" and self.mode == WATCH:
            return False
        return True

    def action_toggle_pause(self) -> None:
        if self.mode == LIVE and self.trainer is not None and self.trainer.done:
            self.notify("this run has ended: r restarts it, 1-9 picks a preset", timeout=4)
            return
        self.paused = not self.paused
        if self.state in ("running", "paused", "playing", "following", "frozen"):
            self.state = {LIVE: ("paused", "running"), REPLAY: ("paused", "playing"),
                          WATCH: ("frozen", "following")}[self.mode][0 if self.paused else 1]
        self._show_status()

    def action_step(self) -> None:
        if self.mode == LIVE and self.trainer is not None and self.trainer.done:
            self.notify("this run has ended: r restarts it, 1-9 picks a preset", timeout=4)
            return
        if not self.paused:
            self.action_toggle_pause()
        if self.mode == LIVE:
            self._step_requests.release()
        else:
            self._replay_to(self.position + 1)

    def action_restart(self) -> None:
        self.start_run(self.preset_name, reason="restarted")

    def action_preset(self, number: int) -> None:
        names = list(self.presets)
        if 1 <= number <= len(names):
            self.switch_preset(names[number - 1])

    def switch_preset(self, name) -> None:
        self.start_run(name, reason="preset_switched")

    @on(OptionList.OptionSelected, "#side")
    def _preset_selected(self, event: OptionList.OptionSelected) -> None:
        self.switch_preset(event.option.id)

    def action_flip(self) -> None:
        if self.trainer is None:
            return
        self.trainer.flip_sign = not self.trainer.flip_sign
        self._show_status()  # the status line shows it now; the events log at the next step

    def action_grad_check(self) -> None:
        if self.trainer is None:
            return
        self.trainer.request_gradient_check()
        self.notify("finite-difference check of every bias at the next step" +
                    (" (press n)" if self.paused else ""), title="gradient check", timeout=3)

    def action_bias_lr(self, factor: float) -> None:
        if self.trainer is None:
            return
        self.trainer.bias_lr_scale = min(1024.0, max(1 / 1024, self.trainer.bias_lr_scale * factor))
        self._show_status()

    def action_rate(self, factor: float) -> None:
        """Cap the training speed (slow motion to watch a sign bug develop), or lift the cap."""
        if self.max_rate is None:
            self.max_rate = RATE_LEVELS[-1] if factor < 1 else None
        else:
            wanted = self.max_rate * factor
            self.max_rate = None if wanted > RATE_LEVELS[-1] else max(RATE_LEVELS[0], int(wanted))
        self._show_status()

    def action_svg(self) -> None:
        path = self.save_screenshot(path=os.getcwd())
        self.notify(f"saved {path}", title="screenshot", timeout=4)

    def action_seek(self, fraction: float) -> None:
        self._replay_to(self.position + int(fraction * len(self.records)))

    def get_system_commands(self, screen):
        # Textual's own "Screenshot" saves elsewhere than `s` does: offer only ours
        yield from (c for c in super().get_system_commands(screen) if c.title != "Screenshot")
        commands = [("Pause / resume", "space", self.action_toggle_pause), ("One step", "n", self.action_step)]
        if self.mode == LIVE:
            commands += [("Restart the run", "r", self.action_restart),
                         ("Flip the bias update sign (the bug)", "f", self.action_flip),
                         ("Gradient check now", "g", self.action_grad_check),
                         ("Halve the bias learning rate", "[", lambda: self.action_bias_lr(0.5)),
                         ("Double the bias learning rate", "]", lambda: self.action_bias_lr(2)),
                         ("Slower: cap the steps per second", "-", lambda: self.action_rate(0.5)),
                         ("Faster: raise or lift the steps-per-second cap", "+", lambda: self.action_rate(2))]
            commands += [(f"Preset: {name}", p.description, lambda n=name: self.switch_preset(n))
                         for name, p in self.presets.items()]
        commands.append(("Save an SVG screenshot", "s", self.action_svg))
        for title, help_text, callback in commands:
            yield SystemCommand(title, f"key {help_text}" if len(help_text) <= 5 else help_text, callback)

    # --- replay ----------------------------------------------------------------------------------
    def _replay_problems(self):
        if self.reader is not None and self.reader.problems:
            lines = ", ".join(str(p.line) for p in self.reader.problems[:10])
            more = "" if len(self.reader.problems) <= 10 else f" and {len(self.reader.problems) - 10} more"
            self.query_one(EventsPanel).note(f"{self.source_name}: skipped {len(self.reader.problems)} "
                                             f"unreadable line(s): {lines}{more}", "bold yellow")
        self.state = "playing"

    def _replay_tick(self) -> None:
        if self.paused or self.position >= len(self.records):
            if self.position >= len(self.records) and self.state == "playing":
                self.state = "end of recording"
                self._show_status()
            return
        chunk = max(1, len(self.records) // 50)
        self._replay_to(self.position + chunk)

    def _replay_to(self, position: int) -> None:
        position = max(0, min(len(self.records), position))
        if position < self.position:
            self.current = self.previous = None
            self.query_one(EventsPanel).clear()
            self._replay_problems()
            if self.paused:
                self.state = "paused"
            start = 0
        else:
            start = self.position
        self._feed(self.records[start:position])
        self.position = position
        if position >= len(self.records) and not self.paused:
            self.state = "end of recording"
        self._refresh_panels()
        self._show_status()

    def _feed(self, records) -> None:
        """Apply records from a recording or a stream: a preset switch or restart starts a new run."""
        events = self.query_one(EventsPanel)
        if self.current is None:
            preset = (self.reader.header or {}).get("preset") if self.reader is not None else None
            label = preset.get("name") if isinstance(preset, dict) else None
            self.current = RunHistory("stream", str(label or "run"))
        builder = BatchBuilder(self.current.run_id)
        for record in records:
            if isinstance(record, Event) and record.kind in RESET_EVENTS:
                self.current.apply(builder.take())
                self.previous = self.current
                self.current = RunHistory(str(record.data.get("run_id", "")), str(record.data.get("preset", "run")))
                events.note(f"── new run: {self.current.label} ({record.kind.replace('_', ' ')} "
                            f"at step {record.step}) ──", "bold")
                builder = BatchBuilder(self.current.run_id)
            builder.add(record)
            if isinstance(record, Event):
                events.add(record)
        self.current.apply(builder.take())
        if self.current.diverged is not None:
            self.state = f"diverged at step {self.current.diverged.step}"

    # --- watch -----------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="watch", name="follow")
    def _follow(self, stream) -> None:
        try:
            self._follow_loop(stream)
        except StreamError as exc:
            self.post_message(SourceFailed(str(exc)))
        except Exception as exc:  # never a traceback: say what stopped, keep what was shown
            self.post_message(SourceFailed(f"{self.source_name}: reading stopped: {type(exc).__name__}: {exc}"))

    def _follow_loop(self, stream) -> None:
        """Read the stream as it grows (a file: like tail -f; a pipe: until it closes). A line is fed
        only once complete, so a trainer that dies mid-line costs that line and nothing else."""
        worker = get_current_worker()
        reader = self.reader = StreamReader(source=self.source_name)
        pending, partial, reported, steps = [], "", 0, 0
        last_post = time.monotonic()
        while not worker.is_cancelled:
            text = stream.readline()
            ended = False
            if text:
                partial += text
                if partial.endswith("\n"):
                    records = reader.feed(partial)
                    partial = ""
                    pending.extend(records)
                    steps += sum(1 for r in records if not isinstance(r, Event))
            elif getattr(stream, "is_pipe", False):
                if partial:
                    pending.extend(reader.feed(partial))
                pending.extend(reader.finish())
                ended = True
            else:
                time.sleep(0.05)
            now = time.monotonic()
            if ended or now - last_post >= BATCH_SECONDS:
                self.rate = steps / (now - last_post)
                self.post_message(RecordsRead(pending, reader.problems[reported:], ended))
                reported = len(reader.problems)
                pending, steps, last_post = [], 0, now
            if ended:
                return

    def on_records_read(self, message: RecordsRead) -> None:
        if self._exiting:
            return
        for problem in message.problems:
            self.query_one(EventsPanel).note(f"{self.source_name}: skipped {problem}", "yellow")
        self._held.extend(message.records)
        if not self.paused:
            self._feed(self._held)
            self._held = []
        if message.ended:
            self.state = "end of stream"
        self._refresh_panels()
        self._show_status()


# --- factories shared by the CLI and the tests --------------------------------------------------------
def create_live_app(preset=None, preset_dirs=(), record_path=None, seed=None, steps=None, autostart=True,
                    pause_at=None, max_rate=None):
    presets = discover_presets(preset_dirs)
    name = preset or DEFAULT_PRESET
    if name not in presets:
        extra = load_preset(name, preset_dirs)  # a .toml path, or an error listing the presets
        presets = {extra.name: extra, **{k: v for k, v in presets.items() if k != extra.name}}
        name = extra.name
    return BiasmonApp(LIVE, presets=presets, preset_name=name, seed=seed, steps=steps, record_path=record_path,
                      autostart=autostart, pause_at=pause_at, max_rate=max_rate)


def create_replay_app(path):
    records, reader = read_all(path)
    if not any(not isinstance(r, Event) for r in records):
        problems = f" ({len(reader.problems)} unreadable line(s), first: {reader.problems[0]})" if reader.problems else ""
        raise BiasmonError(f"{path}: no step records to replay{problems}")
    return BiasmonApp(REPLAY, records=records, reader=reader, source_name=str(path))


class _PipeStream:
    """Standard input handed over by `watch -`, read from a duplicated descriptor."""

    is_pipe = True

    def __init__(self, handle):
        self.handle = handle

    def readline(self):
        return self.handle.readline()


def create_watch_app(source):
    if source == "-":
        if sys.stdin.isatty():
            raise BiasmonError("watch -: standard input is a terminal; pipe a trainer into it "
                               "(./my_trainer | biasmon watch -)")
        pipe = os.fdopen(os.dup(0), "r", encoding="utf-8", errors="replace")
        try:
            tty = os.open("/dev/tty", os.O_RDONLY)
        except OSError:
            raise BiasmonError("watch -: no terminal to read keys from (/dev/tty)") from None
        os.dup2(tty, 0)
        os.close(tty)
        return BiasmonApp(WATCH, stream=_PipeStream(pipe), source_name="stdin")
    path = Path(source)
    if not path.is_file():
        raise BiasmonError(f"{path}: no such file to watch")
    handle = open(path, encoding="utf-8", errors="replace")
    return BiasmonApp(WATCH, stream=handle, source_name=str(path))


def _run(app) -> int:
    try:
        result = app.run()
    finally:
        if app._record_handle is not None:
            app._record_handle.close()
    if app.return_code:
        return app.return_code
    return 0 if result is None else int(result)


def run_live(preset, preset_dirs, record_path, seed, steps, max_rate=None) -> int:
    return _run(create_live_app(preset, preset_dirs, record_path, seed, steps, max_rate=max_rate))


def run_replay(path) -> int:
    return _run(create_replay_app(path))


def run_watch(source) -> int:
    return _run(create_watch_app(source))
