"""The biasmon app: layout, keys and panels. What it shows comes from one source (live training, the replay
of a recording, or a watched stream) as Progress messages; tui/app.py builds it for each mode."""
from __future__ import annotations

import os
import threading
import time
from functools import partial
from typing import Iterable

from textual import events, on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static

from .events_panel import EventsPanel
from .direction_strip import DirectionStrip
from .history import RunHistory, shown_rows, step_range
from .loss_panel import LossPanel
from .messages import Progress, SourceFailed
from .norm_panel import NormPanel
from .segments import RunStart
from .sign_panel import SignPanel
from .source import OPTIONAL_ACTIONS, Source
from .state import LayerView, RunState, Status
from .status_line import StatusLine
from .text import shown

PLOT_SECONDS = 0.5  # plots are rebuilt at most twice a second while training runs
KEYS_SHOWN = "-keys-shown"  # the screen's class while the keys panel is shown (biasmon.tcss hides the presets)
PALETTE = [  # the command palette: title, key, action and its arguments (shown if the source supports it)
    ("Pause / resume", "space", "toggle_pause", ()), ("One step", "n", "step", ()),
    ("Restart the run", "r", "restart", ()), ("Flip the bias update sign (the bug)", "f", "flip", ()),
    ("Flip the weights' update sign (the same bug in the weights)", "F", "flip_weights", ()),
    ("Gradient check now", "g", "grad_check", ()), ("Halve the bias learning rate", "[", "bias_lr", (0.5,)),
    ("Double the bias learning rate", "]", "bias_lr", (2,)),
    ("Slower: cap the steps per second", "-", "rate", (0.5,)),
    ("Faster: raise or lift the steps-per-second cap", "+", "rate", (2,)),
    ("Seek back 10%", "←", "seek", (-0.1,)), ("Seek forward 10%", "→", "seek", (0.1,)),
    ("Layers: show biases / weights / both", "w", "cycle_view", ())]


class BiasmonApp(App):
    """Panels for the runs of one source; keys go to the source, then the status line is brought up to date."""

    CSS_PATH = "biasmon.tcss"
    TITLE = "biasmon"
    HORIZONTAL_BREAKPOINTS = [(0, "-tiny"), (50, "-narrow"), (80, "-medium"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-tiny-h"), (16, "-short"), (30, "-tall"), (36, "-taller")]
    BIAS_LR, SEEK, SPEED = (Binding.Group(name, compact=True) for name in ("lr", "seek", "speed"))
    BINDINGS = [  # short words, and pairs grouped, so that the footer fits 80 columns
        Binding("space", "toggle_pause", "pause"),
        Binding("n", "step", "step"),
        Binding("r", "restart", "restart"),
        Binding("f", "flip", "flip"),
        Binding("F", "flip_weights", "flip weights", show=False),
        Binding("g", "grad_check", "check"),
        Binding("[", "bias_lr(0.5)", "lr/2", group=BIAS_LR),
        Binding("]", "bias_lr(2)", "lr×2", group=BIAS_LR),
        Binding("left", "seek(-0.1)", "back 10%", group=SEEK),
        Binding("right", "seek(0.1)", "fwd 10%", group=SEEK),
        Binding("minus", "rate(0.5)", "slower", group=SPEED),
        Binding("plus,equals_sign", "rate(2)", "faster", group=SPEED),
        Binding("s", "svg", "svg", show=False),
        Binding("w", "cycle_view", "view", show=False),  # in the palette; the strip's title shows [w]
        Binding("question_mark", "toggle_keys", "keys", show=False),   # also in the palette (its "Keys")
        Binding("escape", "hide_help_panel", "close keys", show=False),
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False),   # as a terminal program's users expect (Textual's own
        # binding only says to press ctrl+q); a focused text input (the palette's) still copies with it
        *[Binding(str(i), f"preset({i})", f"preset {i}", show=False) for i in range(1, 10)],
    ]
    status: var[Status | None] = var(None, init=False)
    view: var[LayerView] = var(LayerView.BIASES, init=False)  # whose layers the strip, |p| and sign panels show

    def __init__(self, source: Source) -> None:
        super().__init__()
        self.source = source
        source.attach(self)
        self.current: RunHistory | None = None
        self.previous: RunHistory | None = None  # drawn faint behind the current run
        self.exiting = False
        self.drawing = threading.Event()  # set while a change is not on screen yet: threads step aside
        self._plotted = 0.0
        self._plot_turn = False

    @property
    def state(self) -> RunState | None:
        """The run state the status line shows."""
        return self.status.state if self.status is not None else None

    # --- layout ----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        with Horizontal(id="body"):
            with Vertical(id="main"):
                with Horizontal(id="plots"):
                    yield LossPanel(id="loss")
                    with Vertical(id="right"):  # |p| over the direction strip; the strip alone when short
                        yield NormPanel(id="norms")
                        yield DirectionStrip(id="strip")
                yield SignPanel(id="sign")
                yield EventsPanel(id="events")
            side = self.source.side_panel()
            if side is not None:
                yield side
        yield Static("terminal too small for biasmon: make it at least 50 columns by 16 rows", id="too-small")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.drawing.set()   # the first frame is drawn before the training thread takes the GIL
        self.call_after_refresh(self.drawing.clear)
        self.source.start()

    def on_unmount(self) -> None:
        self.source.stop()

    def on_resize(self, event: events.Resize) -> None:
        """Below 80 columns the footer's keys need its whole row: the command palette's key gives way
        (ctrl+p still opens it; the keys panel, ?, lists it)."""
        footer = self.query_one(Footer)
        wide = event.size.width >= 80
        if footer.show_command_palette != wide:
            footer.show_command_palette = wide
            footer.refresh(recompose=True)

    # --- what the source sends -------------------------------------------------------------------
    def on_progress(self, message: Progress) -> None:
        if self.exiting:
            return
        progress = self.source.receive(message)
        if progress is None:
            return
        try:
            self._show(progress)
        except NoMatches:  # the screen is being torn down
            pass

    def _show(self, progress: Progress) -> None:
        """Apply a progress in its order: reset, notes, segments; then redraw."""
        events = self.query_one(EventsPanel)
        if progress.reset:
            self.current = self.previous = None
            events.clear()
        for note in progress.notes:
            events.note(note.text, note.style)
        begun = False
        for segment in progress.segments:
            if segment.start is not None:
                self._begin(segment.start, events)
                begun = True
            self.current.apply(segment.batch)
            for event in segment.batch.events:
                events.add(event)
        if progress.panels:
            self._refresh_panels(force_plots=begun or self.source.state is not RunState.RUNNING)
        self.show_status()

    def _begin(self, start: RunStart, events: EventsPanel) -> None:
        """A new run: the current one becomes the previous (if it has steps, or when the source says so)."""
        if self.current is not None and (start.keep_empty or self.current.loss.count):
            self.previous = self.current
        self.current = RunHistory(start.run_id, start.label)
        events.new_run()
        if start.note:
            events.note(start.note, "bold")

    def on_source_failed(self, message: SourceFailed) -> None:
        if self.exiting:
            return
        self.query_one(EventsPanel).note(message.message, "bold red")
        self.notify(shown(message.message), severity="error", timeout=8, markup=False)

    # --- panels ----------------------------------------------------------------------------------
    def _refresh_panels(self, force_plots: bool = True) -> None:
        """Update the panels; the plots (the costly part) at most PLOT_SECONDS apart unless forced."""
        cur, view = self.current, self.view
        now = time.monotonic()
        has_biases = self.source.has_biases(cur)
        rows = shown_rows(cur, view)
        empty = self._empty_text(cur, view, has_biases)
        steps = step_range(cur, self.previous)
        if force_plots or now - self._plotted >= PLOT_SECONDS / 2:
            # one plot per turn while training, so no single screen update carries both (a key pressed then
            # would wait for it); each plot still refreshes every PLOT_SECONDS
            self._plotted = now
            self._plot_turn = not self._plot_turn
            if force_plots or self._plot_turn:
                self.query_one(LossPanel).show(cur, self.previous)
            if force_plots or not self._plot_turn:
                self.query_one(NormPanel).show([(label, r.norms[name]) for label, name, r in rows if name in r.norms],
                                               view, steps, empty)
        self.query_one(DirectionStrip).show([(label, r.cos.get(name)) for label, name, r in rows], steps,
                                            view, empty)
        self.query_one(SignPanel).show({label: r.diag[name] for label, name, r in rows if name in r.diag},
                                       cur.loss_change if cur else None, cur.span if cur else 1, view, empty)

    def _empty_text(self, cur: RunHistory | None, view: LayerView, has_biases: bool) -> str | None:
        """Why the view has no row in this run (None: no step yet, each panel says it is waiting)."""
        if cur is None or cur.last_step is None:
            return None
        if view is LayerView.WEIGHTS:
            return "no weight diagnoses in this run"
        return None if has_biases else "this network has no biases"

    def action_toggle_keys(self) -> None:
        """? shows the keys panel, or hides it if it is shown."""
        if self.screen.query("HelpPanel"):   # by name: Textual imports it (and Markdown) when first shown
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def action_show_help_panel(self) -> None:
        """The keys panel (?, escape and the palette's "Keys" come here) takes the preset list's place, so
        that the plots and the gradient-sign table keep their width; the list gives up the focus, which it
        takes again when shown."""
        super().action_show_help_panel()
        self.screen.add_class(KEYS_SHOWN)
        if self.screen.focused is not None and self.screen.focused.id == "side":
            self.screen.set_focus(None)

    def action_hide_help_panel(self) -> None:
        super().action_hide_help_panel()
        self.screen.remove_class(KEYS_SHOWN)

    def action_cycle_view(self) -> None:
        """Show the next view of the layers: biases, weights, both."""
        self.view = self.view.next()
        self._refresh_panels()

    def show_status(self) -> None:
        """Bring the status line up to date; threads step aside until the change is on screen."""
        self.status = self.source.status(self.current)
        self.drawing.set()
        self.call_after_refresh(self.drawing.clear)

    def watch_status(self, old: Status | None, status: Status | None) -> None:
        if status is not None:
            self.query_one(StatusLine).show(status)
            if old is None or old.state is not status.state:
                self.refresh_bindings()  # a run that ended: the keys it makes useless are shown disabled

    # --- keys ------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide the optional actions the source does not support (and their keys in the footer); show
        disabled those that can do nothing now (after a divergence)."""
        if action in OPTIONAL_ACTIONS and action not in self.source.actions:
            return False
        return True if self.source.can(action) else None

    async def action_quit(self) -> None:
        self.exiting = True
        self.workers.cancel_all()
        self.exit()

    def _then_status(self, method, *args) -> None:
        """Run a source's control, then show its effect."""
        method(*args)
        self.show_status()

    def action_toggle_pause(self) -> None:
        self._then_status(self.source.toggle_pause)

    def action_step(self) -> None:
        self._then_status(self.source.step)

    def action_flip_weights(self) -> None:
        self._then_status(self.source.flip_weights)

    def action_seek(self, fraction: float) -> None:
        self._then_status(self.source.seek, fraction)

    def action_restart(self) -> None:
        self._then_status(self.source.restart)

    def action_preset(self, number: int) -> None:
        names = list(self.source.presets())
        if 1 <= number <= len(names):
            self._then_status(self.source.switch_preset, names[number - 1])

    @on(OptionList.OptionSelected, "#side")
    def _preset_selected(self, event: OptionList.OptionSelected) -> None:
        self._then_status(self.source.switch_preset, event.option.id)

    def action_flip(self) -> None:
        self._then_status(self.source.flip)

    def action_grad_check(self) -> None:
        self._then_status(self.source.grad_check)

    def action_bias_lr(self, factor: float) -> None:
        self._then_status(self.source.bias_lr, factor)

    def action_rate(self, factor: float) -> None:
        self._then_status(self.source.cap_rate, factor)

    def action_svg(self) -> None:
        path = self.save_screenshot(path=os.getcwd())
        self.notify(f"saved {path}", title="screenshot", timeout=4)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette: Textual's commands but its Screenshot (`s` saves elsewhere), then ours."""
        yield from (c for c in super().get_system_commands(screen) if c.title != "Screenshot")
        commands = [(title, key, partial(getattr(self, f"action_{action}"), *args))
                    for title, key, action, args in PALETTE if self.check_action(action, args)]
        commands += [(f"Preset: {name}", description, partial(self._then_status, self.source.switch_preset, name))
                     for name, description in self.source.presets().items()]
        commands.append(("Save an SVG screenshot", "s", self.action_svg))
        for title, help_text, callback in commands:
            yield SystemCommand(title, f"key {help_text}" if len(help_text) <= 5 else help_text, callback)
