"""The `biasmon` command. Headless subcommands use only biasmon.core; the TUI is imported on demand.

    biasmon [PRESET] [--presets DIR] [--record FILE] [--seed S] [--steps N] [--rate N]   live monitor
    biasmon [PRESET] ... --serve [--host H] [--port P]   the live monitor in a browser (the serve extra)
    biasmon presets | record | compare | replay FILE | watch FILE|- | check FILE|-
"""
from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

from .core import __version__
from .core.errors import BiasmonError
from .text import printable, unknown_command, unknown_command_or_preset, unknown_options

SUBCOMMANDS = ("presets", "record", "compare", "replay", "watch", "check")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for any other bad input ("biasmon: error: " is added)
        command = self.prog.removeprefix("biasmon").strip()
        raise BiasmonError(f"{command}: {message}" if command else message)

    def parse_known_args(self, args=None, namespace=None):
        """As argparse's (parse_args calls it), but an option this command does not take is named first:
        argparse reports a missing argument before an unknown option (`check -x`: "the following
        arguments are required")."""
        args = list(sys.argv[1:] if args is None else args)
        unknown = self._unknown_options(args)
        if unknown:
            close = {o: c[0] for o in unknown
                     if (c := difflib.get_close_matches(o.split("=", 1)[0], self._known(), n=1, cutoff=0.7))}
            self.error(unknown_options(self.prog.removeprefix("biasmon").strip(), unknown, close))
        return super().parse_known_args(args, namespace)

    def _unknown_options(self, args: list[str]) -> list[str]:
        """The arguments that look like options (start with -) that no option of this parser matches:
        exactly, as a prefix of a long option (--ste; argparse says whether it is ambiguous), or as a
        short option with its value attached (-ofile). A negative number is a value, `-` standard input,
        and everything after `--` is positional."""
        known = self._known()
        unknown = []
        for arg in args:
            if arg == "--":
                break
            if not arg.startswith("-") or arg == "-" or _is_number(arg):
                continue
            if arg.startswith("--"):
                name = arg.split("=", 1)[0]
                if not any(o == name or (self.allow_abbrev and o.startswith("--") and o.startswith(name))
                           for o in known):
                    unknown.append(arg)
            elif arg[:2] not in known:
                unknown.append(arg)
        return unknown


    def _known(self) -> list[str]:
        """Every option string this parser takes (-o, --output, ...)."""
        return [o for a in self._actions for o in a.option_strings]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _presets_option(parser):
    parser.add_argument("--presets", metavar="DIR", action="append", default=[],
                        help="also load presets from this folder (repeatable)")


def _run_parser():
    p = _Parser(prog="biasmon", description="Live monitor: is every layer's bias learning in the right direction?",
                epilog="subcommands: " + ", ".join(SUBCOMMANDS) + " (biasmon SUBCOMMAND --help)")
    p.add_argument("preset", nargs="?", help="preset name or .toml file (default: gradient)")
    _presets_option(p)
    p.add_argument("--record", metavar="FILE", help="record the live session to FILE (JSON Lines)")
    p.add_argument("--seed", type=int, help="override the preset's seed")
    p.add_argument("--steps", type=int, help="stop after N steps (default: train until paused or quit)")
    p.add_argument("--rate", type=int, metavar="N", help="at most N steps per second (slow motion; keys - and +)")
    p.add_argument("--serve", action="store_true",
                   help="serve the monitor to a browser at http://HOST:PORT (each page trains its own run; "
                        "needs the serve extra: pip install 'biasmon[serve]')")
    p.add_argument("--host", default="localhost", help="with --serve: the address to listen on (default: localhost)")
    p.add_argument("--port", type=int, default=8000, help="with --serve: the port (default: 8000)")
    p.add_argument("--version", action="version", version=f"biasmon {__version__}")
    return p


def _sub_parser(name):
    p = _Parser(prog=f"biasmon {name}")
    if name == "presets":
        p.description = "List the presets with their descriptions."
        _presets_option(p)
    elif name == "record":
        p.description = "Train a preset with no UI and write the record stream."
        p.add_argument("preset", help="a preset name (biasmon presets lists them) or a .toml file")
        p.add_argument("-o", "--output", required=True, metavar="FILE",
                       help="write the record stream (JSON Lines) to FILE, replacing it if it exists")
        p.add_argument("--form", choices=("sums", "vectors"), default="sums",
                       help="sums: per-layer sums, under 1 KB a step (default); vectors: every bias and weight")
        p.add_argument("--steps", type=int, metavar="N",
                       help="train N steps (default: the preset's train.steps); a run that diverges stops there")
        p.add_argument("--seed", type=int, metavar="S",
                       help="override the preset's train.seed, which draws the initial weights and biases "
                            "(the data keeps its data.seed)")
        _presets_option(p)
    elif name == "compare":
        p.description = "Run presets headless and print one comparison table (all presets by default)."
        p.add_argument("presets_to_run", nargs="*", metavar="PRESET",
                       help="preset names or .toml files (default: every preset, built-in and from --presets)")
        p.add_argument("--steps", type=int, metavar="N",
                       help="train each preset N steps (default: each preset's train.steps); a run that "
                            "diverges stops there")
        _presets_option(p)
    elif name == "replay":
        p.description = "Show a recording in the live panels, with pause, step and seek."
        p.add_argument("file", help="a record stream (JSON Lines file), as record or --record writes")
    elif name == "watch":
        p.description = "Follow a stream as it grows (a file, or - for standard input)."
        p.add_argument("file", help="the stream to follow: a JSON Lines file, or - for standard input")
    elif name == "check":
        from . import check_cli
        p.description = "Headless verdict of a stream for CI: exit 0 all ok, 1 a problem found, 2 unreadable."
        check_cli.add_arguments(p)
    return p


def _positive(value, name):
    if value is not None and value < 1:
        raise BiasmonError(f"--{name} must be a whole number >= 1, got {value}")


def _seed(value):
    if value is not None and not 0 <= value < 2 ** 64:
        raise BiasmonError(f"--seed must be a whole number from 0 to 2**64 - 1, got {value}")


def _refuse_unknown_command(argv: list[str]) -> None:
    """A first argument close to a subcommand's name (`chek`) that is neither a subcommand, a file nor a
    preset name (built-in, or a NAME.toml in a --presets folder given) is a mistyped subcommand: say so,
    rather than load it as a preset or complain about the arguments after it."""
    first = argv[0]
    if first in SUBCOMMANDS or first.startswith("-"):
        return
    close = difflib.get_close_matches(first, SUBCOMMANDS, n=1, cutoff=0.6)
    if close and not _preset_or_file(first, argv):
        raise BiasmonError(unknown_command(first, close[0]))


def _preset_or_file(name: str, argv: list[str]) -> bool:
    """Whether `name` is a path that exists or a preset's name: built-in, or NAME.toml in a --presets
    folder given in argv (looked up, not loaded; a path the system refuses counts as one: the preset
    loader says what is wrong with it)."""
    from .core import presets as preset_mod
    folders = [preset_mod.BUILTIN_DIR] + [Path(value) for option, value in zip(argv, argv[1:])
                                          if option == "--presets"] \
        + [Path(a.split("=", 1)[1]) for a in argv if a.startswith("--presets=")]
    try:
        return Path(name).exists() or any((folder / f"{name}.toml").exists() for folder in folders)
    except (OSError, ValueError):
        return True


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except BiasmonError as exc:
        print(printable(f"biasmon: error: {exc}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("biasmon: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _wants_json(args: list[str]) -> bool:
    """Whether check's arguments ask for --json (or a prefix of it argparse takes), before any `--`."""
    for arg in args:
        if arg == "--":
            return False
        if len(arg) >= 3 and "--json".startswith(arg):
            return True
    return False


def _dispatch(argv) -> int:
    from . import commands

    if argv:
        _refuse_unknown_command(argv)
    if argv and argv[0] in SUBCOMMANDS:
        parser = _sub_parser(argv[0])
        # compare takes presets before and after its options (`compare a --steps 3 b`); after a `--`, as
        # before (Python 3.11's intermixed parsing mistakes a name after it for an option)
        intermixed = argv[0] == "compare" and "--" not in argv[1:]
        try:
            name, args = argv[0], (parser.parse_intermixed_args if intermixed else parser.parse_args)(argv[1:])
        except BiasmonError as exc:   # check --json: a bad option is one JSON object on stdout too
            if argv[0] == "check" and _wants_json(argv[1:]):
                print(json.dumps({"exit": 2, "error": str(exc)}))
            raise
        if name == "presets":
            return commands.list_presets(args.presets)
        if name == "record":
            _positive(args.steps, "steps")
            _seed(args.seed)
            return commands.record(args.preset, args.output, args.steps, args.seed, args.presets, form=args.form)
        if name == "compare":
            _positive(args.steps, "steps")
            return commands.compare(args.presets_to_run, args.steps, args.presets)
        if name == "check":
            from . import check_cli
            return check_cli.run(args)
        from .tui.app import run_replay, run_watch
        return run_replay(args.file) if name == "replay" else run_watch(args.file)
    parser = _run_parser()
    args, extra = parser.parse_known_args(argv)
    if args.preset is not None:
        commands.refuse_stream(args.preset)
    if extra:   # a second positional argument (options were checked): not a preset and its options
        if args.preset is not None and not _preset_or_file(args.preset, argv):
            raise BiasmonError(unknown_command_or_preset(args.preset, SUBCOMMANDS))
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _positive(args.steps, "steps")
    _positive(args.rate, "rate")
    _seed(args.seed)
    if args.serve:
        from .tui.serve import serve_live
        return serve_live(args.preset, args.presets, args.record, args.seed, args.steps, args.rate, args.host, args.port)
    from .tui.app import run_live
    return run_live(args.preset, args.presets, args.record, args.seed, args.steps, args.rate)
