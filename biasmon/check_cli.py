"""`biasmon check FILE|-`: its options, and the report it prints (core/check.py computes the result).

Per layer it prints the verdict at the end of the stream, its cause and the step it was first seen, plus
every problem verdict seen earlier (first step, longest stretch). Exit status: 0 every layer ok, 1 a
problem found, 2 unreadable input. Malformed lines are skipped, counted and listed with their line numbers
(--strict makes them exit 2; a line whose values are not finite is a divergence, not malformed).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import fields
from typing import TextIO

from .core.check import DEFAULT_SUSTAIN, ONLY_FINAL, check_stream
from .core.check_result import CheckResult
from .core.errors import BiasmonError, StreamError
from .core.verdicts import PROBLEMS, Thresholds
from .text import HELP, divergence_line, fmt, preset_not_stream, print_lines, printable, table


MAX_STEPS_OPTION = 10 ** 9  # a step count option past this is not a window (and past 2**63 overflows)


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_betas(text: str) -> tuple[float, ...]:
    text = text.strip()
    if not text:
        return ()
    try:
        betas = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in [0, 1), got {text!r}") from None
    if not all(0.0 <= b < 1.0 for b in betas):
        raise argparse.ArgumentTypeError(f"each momentum factor must be in [0, 1), got {text!r}")
    return betas


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the stream: a JSON Lines file, or - for standard input")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--sustain", type=int, default=DEFAULT_SUSTAIN, metavar="LINES",
                        help="a problem verdict seen earlier fails the check if it lasted this many step lines "
                             "(a step each, unless the stream is logged sparsely; the window counts lines too) "
                             f"(default {DEFAULT_SUSTAIN}); a layer's final verdict always counts")
    parser.add_argument("--strict", action="store_true",
                        help="malformed lines make the input unreadable (exit 2); a non-finite value is a divergence, "
                             "judged as ever")
    group = parser.add_argument_group("thresholds (docs/stream-format.md says why each default)")
    defaults = Thresholds()
    for f in fields(Thresholds):
        default = getattr(defaults, f.name)
        if f.name == "momentum_betas":
            group.add_argument(_option(f.name), dest=f.name, type=_parse_betas, default=default,
                               metavar="B1,B2", help=f"{HELP[f.name]} (default {','.join(map(str, default))})")
        else:
            kind = int if isinstance(default, int) else float
            group.add_argument(_option(f.name), dest=f.name, type=kind, default=default,
                               metavar="N" if kind is int else "X", help=f"{HELP[f.name]} (default {default})")


def thresholds_from(args: argparse.Namespace) -> Thresholds:
    values = {f.name: getattr(args, f.name) for f in fields(Thresholds)}
    for name in ("window", "min_steps", "unrelated_steps", "frozen_steps"):
        if not 1 <= values[name] <= MAX_STEPS_OPTION:
            raise BiasmonError(f"{_option(name)} must be a whole number from 1 to {MAX_STEPS_OPTION:,}, "
                               f"got {values[name]}")
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise BiasmonError(f"{_option(name)} must be a finite number, got {value}")
    for name in ("unrelated_cos", "quiet_grad_frac", "grad_eps", "explode_norm", "explode_growth",
                 "vanish_grad", "vanish_ratio", "converged_loss", "fd_tolerance", "diverge_loss"):
        if values[name] < 0:
            raise BiasmonError(f"{_option(name)} must be >= 0, got {values[name]}")
    for name in ("uphill_cos", "quiet_uphill_cos"):
        if not -1.0 <= values[name] <= 1.0:
            raise BiasmonError(f"{_option(name)} must be between -1 and 1, got {values[name]}")
    return Thresholds(**values)


def _compact(numbers: list[int]) -> str:
    """1,2,3,7,9,10 -> '1-3, 7, 9-10'."""
    parts, start, prev = [], None, None
    for n in numbers:
        if prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = n
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ", ".join(parts)


def _layer_rows(result: CheckResult) -> list[tuple[str, ...]]:
    rows = [("layer", "verdict", "first step", "longest", "fails check", "cause")]
    named = [(name, layer) for name, layer in result.layers.items()] + \
        [(f"{name} weights", layer) for name, layer in result.weights.items()]
    for name, layer in named:
        final_problem = next((p for p in layer.problems if p.final), None)
        rows.append((name, layer.verdict, str(layer.first_seen),
                     f"{final_problem.longest_steps}" if final_problem else "-",
                     ("yes" if final_problem.counts else "no (learned before)") if final_problem
                     else ("-" if layer.verdict not in PROBLEMS else "yes"), layer.cause))
        for p in layer.problems:
            if not p.final:
                rows.append(("", f"earlier: {p.verdict}", str(p.first_step), str(p.longest_steps),
                             "yes" if p.counts else "no (not final)" if p.verdict in ONLY_FINAL
                             else f"no (< {result.sustain} lines)", p.cause))
    return rows


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}" + ("" if n == 1 else "s")


def _layers(result: CheckResult) -> str:
    """'3 bias layers', '... and their weights', or '2 weight layers (no biases)'."""
    layers, weights = result.layers, result.weights
    if not layers and not weights and result.runs:   # the last run read no step (it diverged at once)
        layers, weights = result.runs[-1].layers, result.runs[-1].weights
    if not layers and weights:
        return f"{_count(len(weights), 'weight layer')} (no biases)"
    return _count(len(layers), "bias layer") + (" and their weights" if weights else "")


def report_lines(result: CheckResult) -> list[str]:
    """The text report: a summary line, the layer table, divergence, notes, malformed lines, the result."""
    grads = "gradients logged" if result.has_grads else "no gradients"
    span = f"step {result.first_step}" if result.first_step == result.last_step else \
        f"steps {result.first_step}..{result.last_step}"
    if result.runs:   # each run counts its steps again
        span = f"{len(result.runs) + 1} runs"
    lines = [f"{result.source}: {_count(result.steps, 'step line')} ({span}), "
             f"{_layers(result)}, {grads}; "
             f"train loss final {fmt(result.final_loss)}, best {fmt(result.best_loss)}"]
    for run in result.runs:
        if run.failing:
            lines.append(f"{run.where()}: PROBLEM: " + "; ".join(run.failing))
    if result.runs:
        lines.append(f"run {len(result.runs) + 1}{f' ({result.last_run})' if result.last_run else ''}, the last:")
    rows = _layer_rows(result)
    if len(rows) > 1:
        lines += table(rows, open_last=True)
    if result.diverged:
        d = result.diverged
        lines.append(divergence_line(d.step, d.layer, d.reason))
    lines += [f"note: {note}" for note in result.notes]
    bad = result.malformed
    if bad.count:
        lines.append(f"malformed or non-finite lines: {bad.count} (line {_compact(sorted(set(bad.lines)))})")
    lines.append(f"result: PROBLEM: {'; '.join(result.failing)}" if result.failing else "result: ok")
    return lines


def print_report(result: CheckResult, out: TextIO = sys.stdout) -> None:
    """The text report, every line escaped: a stream's layer names cannot forge a line or colour the terminal."""
    print_lines(report_lines(result), out)


def run(args: argparse.Namespace) -> int:
    """check FILE: the report (or --json) on stdout, the exit status. With --json an error (exit 2) is also
    one JSON object on stdout, {"exit": 2, "error": ...}, for a script that parses it."""
    try:
        return _check(args)
    except BiasmonError as exc:
        if args.json:
            print(json.dumps({"exit": 2, "error": str(exc)}))
        raise


def _check(args: argparse.Namespace) -> int:
    thresholds = thresholds_from(args)
    if not 1 <= args.sustain <= MAX_STEPS_OPTION:
        raise BiasmonError(f"--sustain must be a whole number from 1 to {MAX_STEPS_OPTION:,}, got {args.sustain}")
    if args.file == "-" and sys.stdin is None:
        raise BiasmonError("check -: standard input is closed; pipe a stream into it (./my_trainer | biasmon check -)")
    if args.file == "-" and sys.stdin.isatty():   # it would wait for a stream that a terminal never ends
        raise BiasmonError("check -: standard input is a terminal; pipe a stream into it "
                           "(./my_trainer | biasmon check -, or biasmon check - < run.jsonl)")
    try:
        result = check_stream(args.file, thresholds, args.sustain)
    except StreamError as exc:
        hint = preset_not_stream(args.file)
        if hint is None:
            raise
        raise StreamError(f"{exc}; {hint}") from None
    bad = result.malformed
    for message in bad.messages:
        print(printable(f"biasmon: warning: {result.source}: {message}"), file=sys.stderr)
    if bad.problems > len(bad.messages):
        print(printable(f"biasmon: warning: {result.source}: {bad.problems - len(bad.messages)} more warning(s) "
                        f"like these, {bad.count:,} line(s) in all"), file=sys.stderr)
    if args.strict and bad.unreadable:   # a non-finite value is a divergence, judged: not malformed
        raise StreamError(f"{result.source}: {bad.unreadable} malformed line(s) (--strict); first: {bad.first_unreadable}")
    if args.json:
        print(json.dumps(result.to_json(), indent=1, allow_nan=False))
    else:
        print_report(result)
    return result.exit
