"""Entry points of the TUI: one factory per mode (live training, replay of a recording, watching a stream),
shared by the CLI and the tests, and the run_* functions the CLI calls."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..core import DEFAULT_PRESET, BiasmonError, discover_presets, load_data, load_preset
from .live import LiveSource
from .monitor import BiasmonApp
from .recording_file import check_replayable
from .replay import ReplaySource
from .serve import served
from .watch import WatchSource, open_stream

__all__ = ["BiasmonApp", "create_live_app", "create_replay_app", "create_watch_app", "run_live", "run_replay",
           "run_watch"]


def create_live_app(preset: str | None = None, preset_dirs: Iterable[str | Path] = (), record_path: str | None = None,
                    seed: int | None = None, steps: int | None = None, autostart: bool = True,
                    pause_at: int | None = None, max_rate: int | None = None) -> BiasmonApp:
    """The live monitor training `preset` (default: the default preset; a name or a .toml path)."""
    presets = discover_presets(preset_dirs)
    name = preset or DEFAULT_PRESET
    if name not in presets:
        extra = load_preset(name, preset_dirs)  # a .toml path, or an error listing the presets
        presets = {extra.name: extra, **{k: v for k, v in presets.items() if k != extra.name}}
        name = extra.name
    load_data(presets[name])  # a bad data file is a one-line error now, before any screen is drawn
    return BiasmonApp(LiveSource(presets, name, seed=seed, steps=steps, record_path=record_path,
                                 autostart=autostart, pause_at=pause_at, max_rate=max_rate))


def create_replay_app(path: str | Path) -> BiasmonApp:
    """The replay of a recording, read once the screen is up; BiasmonError if it has no step to replay
    (the file is read up to its first step record for that, before the app starts)."""
    check_replayable(path)
    return BiasmonApp(ReplaySource(None, None, str(path), path=path))


def create_watch_app(source: str) -> BiasmonApp:
    """The monitor following a file or, for `-`, standard input."""
    return BiasmonApp(WatchSource(*open_stream(source)))


def _run(app: BiasmonApp) -> int:
    if not os.isatty(0) and not served():  # Textual would wait for keys on a closed or redirected input forever
        raise BiasmonError("standard input is not a terminal: the monitor reads its keys there (run it in a "
                           "terminal; `biasmon record` and `biasmon check` need none)")
    try:
        result = app.run()
    finally:
        app.source.close()
    if app.return_code:
        return app.return_code
    return 0 if result is None else int(result)


def run_live(preset: str | None, preset_dirs: Iterable[str | Path], record_path: str | None, seed: int | None,
             steps: int | None, max_rate: int | None = None) -> int:
    """Run the live monitor until quit; the exit code."""
    return _run(create_live_app(preset, preset_dirs, record_path, seed, steps, max_rate=max_rate))


def run_replay(path: str | Path) -> int:
    """Replay a recording until quit; the exit code."""
    return _run(create_replay_app(path))


def run_watch(source: str) -> int:
    """Watch a stream until quit; the exit code."""
    return _run(create_watch_app(source))
