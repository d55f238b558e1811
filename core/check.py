"""The headless verdict of a record stream (`biasmon check`), as data: `check_stream` returns a
`CheckResult`; biasmon/check_cli.py prints it. Exit status in the result:
    0  every layer ok (or only transient problems, shorter than `sustain` steps), no divergence
    1  a problem: a layer's final verdict is a problem, a problem verdict lasted `sustain` steps or more
       at some point, or the run diverged
Unreadable input (no step line at all, an unknown format version, a missing file) raises StreamError.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .check_result import CheckResult, Divergence, LayerResult, Malformed, ProblemSeen, RunResult
from .errors import StreamError
from .lines import FAST_PARSER, prepare_lines
from .prescan import AHEAD, ReadAhead
from .readlines import chunks, stream_lines
from .reader import BLOCK, StreamReader
from .records import Event, StepRecord
from .stream import RESET_EVENTS
from .summary import RunSummary
from .verdicts import PROBLEMS, Thresholds, causes

NEED_GRADIENTS = ("uphill", "unrelated", "frozen", "vanishing", "gradient mismatch")
DEFAULT_SUSTAIN = 50
MAX_LISTED = 10
# the problem verdicts in the order a check lists them: what a bug does first, what follows from it last
CAUSE_FIRST = ("uphill", "gradient mismatch", "frozen", "detached", "unrelated", "vanishing", "exploding")
PARALLEL_MIN_BYTES = 4_000_000   # below this a second process costs more than it saves
CHUNK_LINES = 2000
ONLY_FINAL = ("detached",)   # problems that fail the check only as a layer's final verdict ...
LEARNS = ("ok", "uphill", "gradient mismatch", "frozen", "vanishing", "unrelated", "redundant")   # (had a gradient)


class LayerHistory:
    """One layer's verdicts over a run: where each stretch began, and the longest stretch per verdict,
    counted in step lines (a step each, unless the trainer logs sparsely), as the window is."""

    def __init__(self) -> None:
        self.current: tuple[str, int] | None = None   # (verdict, the line it began at)
        self.first: dict[str, int] = {}                # verdict -> first step seen
        self.longest: dict[str, int] = {}              # verdict -> longest stretch, in lines
        self.learned_lines = 0          # lines so far with a verdict judged on a gradient (LEARNS)
        self.learned_before = 0         # those before the last detached stretch began

    def change(self, verdict: str, step: int, line: int) -> None:
        self._close(line)
        self.current = (verdict, line)
        self.first.setdefault(verdict, step)
        if verdict == "detached":
            self.learned_before = self.learned_lines

    def finish(self, lines: int) -> None:
        self._close(lines)

    def _close(self, end_line: int) -> None:
        if self.current is None:
            return
        verdict, start = self.current
        self.longest[verdict] = max(self.longest.get(verdict, 0), end_line - start)
        if verdict in LEARNS:
            self.learned_lines += end_line - start

    def problems(self, final_verdict: str, sustain: int, param: str = "bias",
                 nothing_learns: bool = False) -> list[ProblemSeen]:
        """Each problem verdict seen, and whether it fails the check: as the final verdict, or having lasted
        `sustain` lines; `detached` only as the final verdict (a layer that gets a gradient later, a head
        first used at some step, learns then), and not after the layer had learned for `sustain` lines or
        more (frozen mid-run, as fine-tuning does: listed, not failing; a layer cut off a few steps in fails),
        unless every layer ends detached (nothing_learns: no part of the model learns any more)."""
        out = []
        for verdict, first in sorted(self.first.items(), key=lambda kv: kv[1]):
            if verdict in PROBLEMS:
                final = verdict == final_verdict
                longest = self.longest.get(verdict, 0)
                if verdict in ONLY_FINAL:
                    counts = final and (self.learned_before < sustain or nothing_learns)
                else:
                    counts = final or longest >= sustain
                out.append(ProblemSeen(verdict, causes(param).get(verdict, ""), first, longest, final, counts))
        return out


class Check:
    """Folds a stream's records into the check's result."""

    def __init__(self, thresholds: Thresholds, sustain: int = DEFAULT_SUSTAIN, source: str = "<stream>") -> None:
        self.thresholds = thresholds
        self.sustain = sustain
        self.source = source
        self.reader = StreamReader(thresholds, recompute=True, source=source, block=BLOCK, every_step=False)
        self.summary = RunSummary()       # the whole stream
        self.run = RunSummary()           # the run being read
        self.history: dict[tuple[str, str], LayerHistory] = {}   # the run being read, per (param, layer)
        self.first_step: int | None = None
        self.run_first_step: int | None = None
        self.run_label: str | None = None
        self.earlier: list[RunResult] = []
        self.check_notes: dict[str, list[int]] = {}   # what gradient_check events said: note -> steps
        self.checked_names: dict[str, int] = {}       # layer names gradient_check events gave errors for -> first step

    def feed(self, text: str) -> None:
        self.add(self.reader.feed(text))

    def finish(self) -> None:
        self.add(self.reader.finish())

    def add(self, records: list[StepRecord | Event]) -> None:
        steps = []   # consecutive step records, added together before the next event
        for rec in records:
            if isinstance(rec, StepRecord):
                steps.append(rec)
                continue
            self._add_steps(steps)
            steps = []
            self.summary.add(rec)
            self.run.add(rec)
            if rec.kind == "verdict":
                key = (rec.data.get("param", "bias"), rec.data.get("layer"))
                self.history.setdefault(key, LayerHistory()).change(rec.data.get("verdict"), rec.step, self.run.steps - 1)
            elif rec.kind in RESET_EVENTS:
                self._close_run(_text(rec.data.get("preset")) or _text(rec.data.get("run_id")))
            elif rec.kind == "gradient_check":
                if isinstance(rec.data.get("note"), str):
                    self.check_notes.setdefault(rec.data["note"], []).append(rec.step)
                for key in ("errors", "weight_errors"):
                    if isinstance(rec.data.get(key), dict):
                        for name in rec.data[key]:
                            self.checked_names.setdefault(name, rec.step)
        self._add_steps(steps)

    def _add_steps(self, steps: list[StepRecord]) -> None:
        if not steps:
            return
        self.summary.add_steps(steps)
        self.run.add_steps(steps)
        if self.first_step is None:
            self.first_step = steps[0].step
        if self.run_first_step is None:
            self.run_first_step = steps[0].step

    def _close_run(self, next_label: str | None) -> None:
        """The run read so far is judged alone; the next one begins (its label from the event)."""
        if self._run_read():
            layers, weights, failing = self._layers()
            label = self.run_label
            if not self.earlier and label is None and isinstance(self.reader.first_header, dict):
                label = _text(self.reader.first_header.get("run_id"))
            self.earlier.append(RunResult(len(self.earlier) + 1, label, self.run_first_step, self.run.last_step,
                                          self.run.steps, layers, failing, weights, _divergence(self.run.diverged)))
        self.run, self.history, self.run_first_step, self.run_label = RunSummary(), {}, None, next_label

    def _run_read(self) -> bool:
        """Whether the run being read has anything to judge: a step, or a divergence (a run whose every step
        line diverged has no step records)."""
        return self.run.steps > 0 or self.run.diverged is not None

    def _layers(self) -> tuple[dict[str, LayerResult], dict[str, LayerResult], list[str]]:
        """The run being read: each layer's result, its weights', and what fails the check in it: the likely
        causes first (CAUSE_FIRST: a weight layer's uphill before the bias norms it blew up), its divergence
        last."""
        failing: list[tuple[int, str]] = []
        out = []
        finals = [d.verdict for d in (*self.run.verdicts.values(), *self.run.weight_verdicts.values())]
        nothing_learns = bool(finals) and all(v == "detached" for v in finals)   # not a part frozen: all of it
        for param, verdicts, suffix in (("bias", self.run.verdicts, ""), ("weight", self.run.weight_verdicts, " weights")):
            layers = {}
            for name, d in verdicts.items():
                hist = self.history.get((param, name), LayerHistory())
                hist.finish(self.run.steps)
                problems = hist.problems(d.verdict, self.sustain, param, nothing_learns)
                failing += [(CAUSE_FIRST.index(p.verdict), f"{name}{suffix} {p.verdict}") for p in problems if p.counts]
                layers[name] = LayerResult(d.verdict, d.cause, d.since, hist.first.get(d.verdict, d.since), problems)
            out.append(layers)
        failing.sort(key=lambda item: item[0])   # stable: layers in order within a verdict
        said = [text for _, text in failing]
        if self.run.diverged:
            said.append(f"diverged at step {self.run.diverged.step}")
        return out[0], out[1], said

    def result(self) -> CheckResult:
        s, reader = self.summary, self.reader
        if s.steps == 0:
            what = "empty stream" if reader.line_no == 0 else f"{reader.line_no} line(s), none a readable step line"
            first = f"; first problem: {reader.problems[0]}" if reader.problems else ""
            raise StreamError(f"{self.source}: no step lines to check ({what}){first}")
        if not s.verdicts and not s.weight_verdicts and (reader.header or {}).get("layers") != []:
            raise StreamError(f"{self.source}: no bias layers: every step line's 'biases' is empty; a stream needs "
                              "at least one layer (a network with no biases at all: a header with \"layers\": [])")
        earlier, label = list(self.earlier), self.run_label
        if self._run_read() or not earlier:
            layers, weights, failing = self._layers()
            diverged = _divergence(self.run.diverged)
        else:   # the stream ends with a restart and no step after it: the run before is the last
            last = earlier.pop()
            layers, weights, failing, label, diverged = last.layers, last.weights, last.failing, last.label, last.diverged
        failing = [f"{run.where()}: {f}" for run in earlier for f in run.failing] + failing
        problems = reader.problems
        lines = sorted({p.line for p in problems})
        unreadable = [p for p in problems if not p.divergence]
        return CheckResult(
            self.source, s.steps, self.first_step, s.last_step, s.final_loss, s.best_loss, s.final_val,
            bool(reader.has_grads), reader.max_span, diverged, layers,
            Malformed(len(lines), lines, [str(p) for p in problems[:MAX_LISTED]], len(problems),
                      len({p.line for p in unreadable}), str(unreadable[0]) if unreadable else None),
            self._notes(len(earlier)), self.sustain, failing, "problem" if failing else "ok", 1 if failing else 0,
            earlier, label if earlier else None, weights)

    def _notes(self, earlier: int) -> list[str]:
        s, reader, notes = self.summary, self.reader, []
        if reader.has_grads is False:
            notes.append("no bias_grads logged: " + ", ".join(f"'{v}'" for v in NEED_GRADIENTS)
                         + " need gradients (and 'gradient mismatch' gradient_check events); checked without "
                           "them: exploding bias norms and divergence only")
        if reader.max_span > 1 and reader.summed_grads:
            notes.append(f"sparse steps: a line spans up to {reader.max_span} steps, its bias_grads summed over "
                         "them (grad_steps), so its update and gradient compare exactly")
        elif reader.max_span > 1:
            notes.append(f"sparse steps: a derived update spans up to {reader.max_span} steps "
                         "(the difference of consecutive logged biases)")
        for note, steps in list(self.check_notes.items())[:MAX_LISTED]:
            more = f" (and {len(steps) - 1} later check{'s' if len(steps) > 2 else ''})" if len(steps) > 1 else ""
            notes.append(f"gradient check at step {steps[0]}{more}: {note}")
        known = s.verdicts.keys() | s.weight_verdicts.keys()
        unknown = [(step, name) for name, step in self.checked_names.items() if name not in known]
        if unknown:   # a writer's typo, or another model's names: those errors judged nothing
            names = ", ".join(repr(name) for _, name in unknown[:MAX_LISTED])
            notes.append(f"gradient check from step {min(step for step, _ in unknown)} names layer(s) no step line "
                         f"has: {names}{' ...' if len(unknown) > MAX_LISTED else ''}: their errors were not judged")
        if any(d.verdict == "pending" for d in (self.run if self.run.steps else self.summary).verdicts.values()):
            notes.append(f"too few steps for a verdict on some layers (uphill needs {self.thresholds.min_steps} "
                         "steps with a defined cosine, unrelated a full --unrelated-steps stretch)")
        if not s.verdicts:
            notes.append("no bias layers in the stream")
        left_out = _left_out(reader.first_header)
        if left_out:
            notes.append(f"the writer left out {len(left_out)} bias layer(s), neither logged nor judged: "
                         + ", ".join(f"{name} ({why})" for name, why in left_out[:MAX_LISTED])
                         + (f" and {len(left_out) - MAX_LISTED} more" if len(left_out) > MAX_LISTED else ""))
        if reader.val_ignored:
            notes.append(f"val_loss not finite (null, NaN or infinite) on {reader.val_ignored:,} step line(s): "
                         "read as not given")
        if earlier:
            notes.append(f"the stream holds {earlier + 1} runs (restarted or preset switched), each judged "
                         "alone; the table shows the last, a problem in any fails the check")
        return notes


def _left_out(header: object) -> list[tuple[str, str]]:
    """The header's meta.left_out_biases (name -> why), as (name, why) text pairs; [] if absent or not an
    object of text (a stream may put any JSON value there)."""
    meta = header.get("meta") if isinstance(header, dict) else None
    left = meta.get("left_out_biases") if isinstance(meta, dict) else None
    if not isinstance(left, dict):
        return []
    return [(name[:80], why[:80] if isinstance(why, str) else "left out") for name, why in left.items()]


def _divergence(event: Event | None) -> Divergence | None:
    """A diverged event as the check reports it."""
    if event is None:
        return None
    return Divergence(event.step, _text(event.data.get("layer")), _text(event.data.get("reason")))


def _text(value: object) -> str | None:
    """A name or reason from an event line: text, or None (a stream may put any JSON value there)."""
    return value if isinstance(value, str) else None


def check_stream(path: str | Path, thresholds: Thresholds | None = None, sustain: int = DEFAULT_SUSTAIN,
                 parallel: bool | None = None) -> CheckResult:
    """The check's result for a stream file ('-': standard input). Raises StreamError if unreadable.

    parallel: a second process reads ahead while this one diagnoses (None: for files of PARALLEL_MIN_BYTES
    or more, where the platform can fork and there are two cores): with orjson it scans the regular lines
    into blocks (core/prescan.py), without it parses each line. Same result."""
    check = Check(thresholds or Thresholds(), sustain, source="<stdin>" if path == "-" else str(path))
    forked = parallel and path != "-"
    if FAST_PARSER:   # a second process scans blocks ahead
        ahead, pool = (_read_ahead(path) if parallel is None else _fork(path) if forked else None), None
    else:             # a second process parses each line
        ahead, pool = None, (_parse_pool(path) if parallel is None else _fork_pool() if forked else None)
    if pool is None:
        try:
            for index, lines in enumerate(chunks(stream_lines(path), CHUNK_LINES)):
                check.add(check.reader.feed_lines(lines, ahead.result(index) if ahead else None))
                state = check.reader.block_state()
                if ahead and state is not None:
                    for later in range(index + 1, index + 1 + AHEAD):
                        ahead.ask(later, *state)
        finally:
            if ahead:
                ahead.close()
    else:
        with pool:
            for items in pool.imap(prepare_lines, chunks(stream_lines(path), CHUNK_LINES)):
                check.add(check.reader.feed_prepared(items))
    check.finish()
    return check.result()


def _read_ahead(path: str | Path) -> ReadAhead | None:
    """A second process scanning the chunks ahead (core/prescan.py), for files of PARALLEL_MIN_BYTES or more
    on a machine with two cores or more; None otherwise."""
    return _fork(path) if _big(path) else None


def _fork(path: str | Path) -> ReadAhead | None:
    """The read-ahead process, forked (on Linux only, and only while no other thread runs here: a fork
    copies a lock some thread may hold)."""
    import multiprocessing
    import threading
    if not sys.platform.startswith("linux") or threading.active_count() > 1:
        return None
    try:
        return ReadAhead(str(path), CHUNK_LINES, multiprocessing.get_context("fork"))
    except OSError:
        return None


def _big(path: str | Path) -> bool:
    """Whether a file is big enough for a second process to pay (PARALLEL_MIN_BYTES), on two cores or more."""
    if path == "-" or (os.cpu_count() or 1) < 2:
        return False
    try:
        return os.path.getsize(path) >= PARALLEL_MIN_BYTES
    except OSError:
        return False  # stream_lines raises the one-line error


def _parse_pool(path: str | Path):
    """Without orjson, a second process parses while this one diagnoses: for files of PARALLEL_MIN_BYTES or
    more on a machine with two cores or more (with orjson the read-ahead process scans blocks instead:
    _read_ahead). (The load average is no guide: it trails the last minute's work. On a busy machine
    the second process costs about 15%; on an idle one it saves a third.)"""
    if not _big(path) or _summary_form(path):
        return None
    return _fork_pool()


def _summary_form(path: str | Path) -> bool:
    """Whether the stream's first lines are in the summary form: cheap to parse, so a second process
    would cost more in sending the parsed lines back than it saves."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(65536)
    except OSError:
        return False
    return b'_sums"' in start


def _fork_pool():
    import multiprocessing
    if "fork" not in multiprocessing.get_all_start_methods():
        return None
    try:
        return multiprocessing.get_context("fork").Pool(1)
    except OSError:
        return None
