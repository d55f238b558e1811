"""`biasmon --serve`: the live monitor in a browser, through textual-serve (the `serve` extra, imported
only here). Each browser page starts its own `biasmon` process, with the command line given, drawing
through Textual's web driver."""
from __future__ import annotations

import os
import shlex
import sys

from ..core import BiasmonError

WEB_DRIVER = "web_driver"  # in TEXTUAL_DRIVER when textual-serve runs the app


def served() -> bool:
    """Whether this process draws for textual-serve (its keys come on a pipe, not a terminal)."""
    return WEB_DRIVER in os.environ.get("TEXTUAL_DRIVER", "")


def serve_live(preset: str | None, preset_dirs: list[str], record_path: str | None, seed: int | None,
               steps: int | None, max_rate: int | None, host: str, port: int) -> int:
    """Serve the live monitor with these options: they are checked first (a bad preset is an error here,
    not in the browser), then each page runs the same command line without --serve."""
    if record_path:
        raise BiasmonError("--record cannot be used with --serve: each browser page trains its own run")
    if not 0 < port < 65536:
        raise BiasmonError(f"--port must be a whole number from 1 to 65535, got {port}")
    from .app import create_live_app
    create_live_app(preset, preset_dirs)  # reads the preset and its data, as each page will
    argv = [preset] if preset else []
    for folder in preset_dirs:
        argv += ["--presets", str(folder)]
    for flag, value in (("--seed", seed), ("--steps", steps), ("--rate", max_rate)):
        if value is not None:
            argv += [flag, str(value)]
    return serve(argv, host, port)


def serve(argv: list[str], host: str, port: int) -> int:
    """Serve `biasmon ARGV` on http://host:port until interrupted; the exit code. BiasmonError without
    textual-serve, naming the extra."""
    try:
        from textual_serve.server import Server
    except ImportError:
        raise BiasmonError("--serve needs textual-serve: pip install 'biasmon[serve]'") from None
    command = shlex.join([sys.executable, "-m", "biasmon", *argv])
    url = f"http://{host}:{port}"
    print(f"biasmon: serving the monitor on {url} (each page trains its own run; Ctrl+C stops)", flush=True)
    try:
        Server(command, host=host, port=port, title="biasmon").serve()
    except OSError as exc:  # the port is taken, or the host is not this machine's
        raise BiasmonError(f"--serve: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return 0
