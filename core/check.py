"""`biasmon check FILE|-`: the headless verdict of a record stream, for CI of someone's own network code.

Per layer it prints the verdict at the end of the stream, its cause and the step it was first seen, plus
every problem verdict seen earlier (first step, longest stretch). Exit status:
    0  every layer ok (or only transient problems, shorter than --sustain steps), no divergence
    1  a problem: a layer's final verdict is a problem, a problem verdict lasted --sustain steps or more
       at some point, or the run diverged
    2  unreadable input: missing or unreadable file, unknown format version, no step line at all
Malformed lines are skipped, counted and listed with their line numbers (--strict makes them exit 2).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import fields

from .diagnostics import CAUSES, HELP, PROBLEMS, Thresholds
from .errors import BiasmonError, StreamError
from .records import StepRecord
from .stream import BLOCK, RESET_EVENTS, StreamReader
from .summary import RunSummary, fmt

NEED_GRADIENTS = ("uphill", "unrelated", "frozen", "vanishing", "gradient mismatch")
DEFAULT_SUSTAIN = 50
MAX_LISTED = 10


def _option(name):
    return "--" + name.replace("_", "-")


def _parse_betas(text):
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


def add_arguments(parser) -> None:
    parser.add_argument("file", help="the stream: a JSON Lines file, or - for standard input")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--sustain", type=int, default=DEFAULT_SUSTAIN, metavar="STEPS",
                        help="a problem verdict seen earlier fails the check if it lasted this many steps "
                             f"(default {DEFAULT_SUSTAIN}); a layer's final verdict always counts")
    parser.add_argument("--strict", action="store_true", help="malformed lines make the input unreadable (exit 2)")
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


def thresholds_from(args) -> Thresholds:
    values = {f.name: getattr(args, f.name) for f in fields(Thresholds)}
    for name in ("window", "min_steps", "unrelated_steps", "frozen_steps"):
        if values[name] < 1:
            raise BiasmonError(f"{_option(name)} must be a whole number >= 1, got {values[name]}")
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


class LayerHistory:
    """One layer's verdicts over the stream: where each stretch began, and the longest stretch per verdict."""

    def __init__(self):
        self.current = None      # (verdict, step it began)
        self.first = {}          # verdict -> first step seen
        self.longest = {}        # verdict -> longest stretch, in steps

    def change(self, verdict, step):
        self._close(step)
        self.current = (verdict, step)
        self.first.setdefault(verdict, step)

    def finish(self, last_step):
        self._close(last_step + 1)

    def _close(self, end_step):
        if self.current is None:
            return
        verdict, start = self.current
        self.longest[verdict] = max(self.longest.get(verdict, 0), end_step - start)


class Check:
    """Folds a stream's records into the check's result; `result()` is the JSON-able outcome."""

    def __init__(self, thresholds: Thresholds, sustain=DEFAULT_SUSTAIN, source="<stream>"):
        self.thresholds = thresholds
        self.sustain = sustain
        self.source = source
        self.reader = StreamReader(thresholds, recompute=True, source=source, block=BLOCK)
        self.summary = RunSummary()
        self.history: dict[str, LayerHistory] = {}
        self.first_step = None
        self.runs = 0

    def feed(self, text):
        self._add(self.reader.feed(text))

    def finish(self):
        self._add(self.reader.finish())

    def _add(self, records):
        for rec in records:
            self.summary.add(rec)
            if isinstance(rec, StepRecord):
                if self.first_step is None:
                    self.first_step = rec.step
            elif rec.kind == "verdict":
                layer = rec.data.get("layer")
                self.history.setdefault(layer, LayerHistory()).change(rec.data.get("verdict"), rec.step)
            elif rec.kind in RESET_EVENTS:
                self.runs += 1

    def result(self) -> dict:
        s, reader = self.summary, self.reader
        if s.steps == 0:
            what = "empty stream" if reader.line_no == 0 else (
                f"{reader.line_no} line(s), none a readable step line")
            first = f"; first problem: {reader.problems[0]}" if reader.problems else ""
            raise StreamError(f"{self.source}: no step lines to check ({what}){first}")
        layers, failing = {}, []
        for name, (verdict, cause, since) in s.verdicts.items():
            hist = self.history.get(name, LayerHistory())
            hist.finish(s.last_step)
            problems = []
            for v, first in sorted(hist.first.items(), key=lambda kv: kv[1]):
                if v not in PROBLEMS:
                    continue
                final = v == verdict
                longest = hist.longest.get(v, 0)
                counts = final or longest >= self.sustain
                problems.append({"verdict": v, "cause": CAUSES.get(v, ""), "first_step": first,
                                 "longest_steps": longest, "final": final, "counts": counts})
                if counts:
                    failing.append(f"{name} {v}")
            layers[name] = {"verdict": verdict, "cause": cause, "since": since,
                            "first_seen": hist.first.get(verdict, since), "problems": problems}
        notes = []
        if reader.has_grads is False:
            notes.append("no bias_grads logged: " + ", ".join(f"'{v}'" for v in NEED_GRADIENTS)
                         + " need gradients (and 'gradient mismatch' gradient_check events); checked without "
                           "them: exploding bias norms and divergence only")
        if reader.max_span > 1:
            notes.append(f"sparse steps: a derived update spans up to {reader.max_span} steps "
                         "(the difference of consecutive logged biases)")
        if any(v[0] == "pending" for v in s.verdicts.values()):
            notes.append(f"too few steps for a verdict on some layers (uphill needs {self.thresholds.min_steps} "
                         "steps with a defined cosine, unrelated a full --unrelated-steps stretch)")
        if not s.verdicts:
            notes.append("no bias layers in the stream")
        if self.runs:
            notes.append(f"the stream holds {self.runs + 1} runs (restarted or preset switched); verdicts span all")
        if s.diverged:
            failing.append(f"diverged at step {s.diverged[0]}")
        return {
            "source": self.source,
            "steps": s.steps, "first_step": self.first_step, "last_step": s.last_step,
            "final_loss": s.final_loss, "best_loss": s.best_loss, "final_val_loss": s.final_val,
            "has_grads": bool(reader.has_grads), "max_span": reader.max_span,
            "diverged": None if not s.diverged else dict(zip(("step", "layer", "reason"), s.diverged)),
            "layers": layers,
            "malformed": {"count": len(reader.problems), "lines": [p.line for p in reader.problems],
                          "messages": [str(p) for p in reader.problems[:MAX_LISTED]]},
            "notes": notes,
            "sustain": self.sustain,
            "failing": failing,
            "status": "problem" if failing else "ok",
            "exit": 1 if failing else 0,
        }


def _lines(path):
    """The lines of `path` ('-': standard input), decoding errors replaced (they then fail as not JSON)."""
    if path == "-":
        stdin = sys.stdin
        if hasattr(stdin, "buffer"):
            import io
            stdin = io.TextIOWrapper(stdin.buffer, encoding="utf-8", errors="replace")
        yield from stdin
        return
    try:
        handle = open(path, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise StreamError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        try:
            yield from handle
        except OSError as exc:
            raise StreamError(f"{path}: cannot read ({exc.strerror or exc})") from None


PARALLEL_MIN_BYTES = 4_000_000   # below this a second process costs more than it saves
CHUNK_LINES = 2000


def check_stream(path, thresholds=None, sustain=DEFAULT_SUSTAIN, parallel=None) -> dict:
    """The check's result for a stream file ('-': standard input). Raises StreamError if unreadable.

    parallel: parse the JSON in a second process while this one diagnoses (None: for files of
    PARALLEL_MIN_BYTES or more, where the platform can fork and a core is idle). Same result either way."""
    check = Check(thresholds or Thresholds(), sustain, source="<stdin>" if path == "-" else str(path))
    pool = _parse_pool(path) if parallel is None else (_fork_pool() if parallel and path != "-" else None)
    if pool is None:
        for text in _lines(path):
            check.feed(text)
    else:
        from .stream import feed_prepared, prepare_lines
        with pool:
            for items in pool.imap(prepare_lines, _chunks(_lines(path), CHUNK_LINES)):
                check._add(feed_prepared(check.reader, items))
    check.finish()
    return check.result()


def _parse_pool(path):
    if path == "-":
        return None
    try:
        size = os.path.getsize(path)
    except OSError:
        return None  # _lines raises the one-line error
    if size < PARALLEL_MIN_BYTES or not _idle_core():
        return None
    return _fork_pool()


def _idle_core():
    """Whether a second process can parse while this one diagnoses: a machine with two cores or more.
    (The load average is no guide: it trails the last minute's work. On a busy machine the second
    process costs about 15%; on an idle one it saves a third.)"""
    return (os.cpu_count() or 1) > 1


def _fork_pool():
    import multiprocessing
    if "fork" not in multiprocessing.get_all_start_methods():
        return None
    try:
        return multiprocessing.get_context("fork").Pool(1)
    except OSError:
        return None


def _chunks(lines, size):
    chunk = []
    for text in lines:
        chunk.append(text)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _compact(numbers):
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


def print_report(result, out=sys.stdout) -> None:
    grads = "gradients logged" if result["has_grads"] else "no gradients"
    print(f"{result['source']}: {result['steps']} steps ({result['first_step']}..{result['last_step']}), "
          f"{len(result['layers'])} bias layers, {grads}; train loss final {fmt(result['final_loss'])}, "
          f"best {fmt(result['best_loss'])}", file=out)
    rows = [("layer", "verdict", "first step", "longest", "counts", "cause")]
    for name, layer in result["layers"].items():
        final_problem = next((p for p in layer["problems"] if p["final"]), None)
        rows.append((name, layer["verdict"], str(layer["first_seen"]),
                     f"{final_problem['longest_steps']}" if final_problem else "-",
                     "yes" if final_problem else ("-" if layer["verdict"] not in PROBLEMS else "yes"),
                     layer["cause"]))
        for p in layer["problems"]:
            if p["final"]:
                continue
            rows.append(("", f"earlier: {p['verdict']}", str(p["first_step"]), str(p["longest_steps"]),
                         "yes" if p["counts"] else f"no (< {result['sustain']} steps)", p["cause"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for i, row in enumerate(rows if len(rows) > 1 else []):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1], file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths) + "  " + "-" * 5, file=out)
    if result["diverged"]:
        d = result["diverged"]
        print(f"DIVERGED at step {d['step']}" + (f" (first non-finite layer: {d['layer']})" if d["layer"] else "")
              + (f": {d['reason']}" if d["reason"] else ""), file=out)
    for note in result["notes"]:
        print(f"note: {note}", file=out)
    bad = result["malformed"]
    if bad["count"]:
        print(f"malformed or non-finite lines: {bad['count']} (line {_compact(sorted(set(bad['lines'])))})",
              file=out)
    if result["failing"]:
        print(f"result: PROBLEM: {'; '.join(result['failing'])}", file=out)
    else:
        print("result: ok", file=out)


def run(args) -> int:
    thresholds = thresholds_from(args)
    if args.sustain < 1:
        raise BiasmonError(f"--sustain must be a whole number >= 1, got {args.sustain}")
    result = check_stream(args.file, thresholds, args.sustain)
    bad = result["malformed"]
    for message in bad["messages"]:
        print(f"biasmon: warning: {result['source']}: {message}", file=sys.stderr)
    if bad["count"] > len(bad["messages"]):
        print(f"biasmon: warning: {result['source']}: {bad['count'] - len(bad['messages'])} more malformed "
              f"line(s) skipped", file=sys.stderr)
    if args.strict and bad["count"]:
        raise StreamError(f"{result['source']}: {bad['count']} malformed line(s) (--strict); first: "
                          f"{bad['messages'][0]}")
    if args.json:
        print(json.dumps(result, indent=1, allow_nan=False, default=_json_default))
    else:
        print_report(result)
    return result["exit"]


def _json_default(value):
    if isinstance(value, float):
        return None
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
