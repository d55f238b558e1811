"""The headless commands: presets, record and compare. They print, and return an exit status. Output
goes to `out` or, when it is None, to sys.stdout as it is at the call (print's file=None; stderr alike),
not as it was at import: a caller that redirects it (contextlib.redirect_stdout, pytest's capsys) gets it."""
from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple, TextIO

from .core import files
from .core import presets as preset_mod
from .core.errors import BiasmonError
from .core.records import LayerDiagnosis
from .core.stream import RecordWriter
from .core.summary import RunSummary
from .core.trainer import Trainer
from .text import divergence_line, fmt, print_lines, printable, stream_not_preset, table

BLOCK_STEPS = 256  # steps trained and diagnosed together (Trainer.advance): verdicts cost least per step in big blocks


STREAM_SUFFIXES = (".jsonl", ".ndjson")


def looks_like_stream(name: str) -> bool:
    """Whether a preset argument is a regular file that looks like a record stream rather than a preset:
    named *.jsonl (or *.ndjson), or its first non-blank text is `{`, as a JSON object's (a
    `biasmon-stream` header's, a step line's), which no TOML file starts with. Anything else (and a
    file that cannot be read) is left to the preset loader and its own message."""
    path = Path(name)
    try:
        if files.kind(path) != "file":
            return False
        if path.suffix.lower() in STREAM_SUFFIXES:
            return True
        with path.open("rb") as handle:
            start = handle.read(4096)
    except OSError:
        return False
    return start.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n").startswith(b"{")


def refuse_stream(name: str) -> None:
    """A one-line error if the preset argument is a record stream (what to run on it instead)."""
    if looks_like_stream(name):
        raise BiasmonError(stream_not_preset(files.short_path(name)))


def resolve_preset(name: str, extra_dirs: list[str] = ()) -> preset_mod.Preset:
    """The preset named or given as a file, as core's resolve, but a record stream is named as such."""
    refuse_stream(name)
    return preset_mod.resolve(name, extra_dirs)


def list_presets(extra_dirs: list[str], out: TextIO | None = None) -> int:
    found = preset_mod.discover(extra_dirs)
    width = max(len(n) for n in found)
    for i, (name, p) in enumerate(found.items(), start=1):
        key = str(i) if i <= 9 else " "
        default = " (default)" if name == preset_mod.DEFAULT_PRESET else ""
        print(printable(f"{key}  {name:<{width}}  {p.description}{default}"), file=out)
    return 0


class Progress:
    """A one-line progress bar on stderr, redrawn at most 10 times a second."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total, self.stream = total, sys.stderr if stream is None else stream
        self.start = self.last = time.perf_counter()
        self.enabled = self.stream.isatty()

    def update(self, done: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not force and now - self.last < 0.1):
            return
        self.last = now
        filled = int(30 * done / max(1, self.total))
        rate = done / max(now - self.start, 1e-9)
        self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} steps  {rate:,.0f} steps/s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def open_output(path: str):
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise BiasmonError(f"{path}: cannot write the recording ({exc.strerror or exc})") from None


class CtrlC:
    """Within `with CtrlC() as ctrl_c:` (main thread), Ctrl-C sets ctrl_c.pressed instead of raising, so a
    loop stops between records and can say exactly what it wrote; a second Ctrl-C raises as usual."""

    def __enter__(self) -> "CtrlC":
        self.pressed, self.previous = False, None
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # (nohup: Ctrl-C stays ignored)
            self.previous = signal.signal(signal.SIGINT, self._note)
        return self

    def _note(self, signum: int, frame: object) -> None:
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def record(preset_name: str, output: str, steps: int | None = None, seed: int | None = None,
           extra_dirs: list[str] = (), out: TextIO | None = None, form: str = "sums") -> int:
    """Train with no UI, write every record to `output` (form: sums, the summary form, or vectors), print
    a summary and each layer's verdict. Ctrl-C stops after the block of steps being trained, written
    whole: the message names the last step in the file."""
    preset = resolve_preset(preset_name, extra_dirs)
    trainer = Trainer(preset, steps=steps, seed=seed, step_detail=form == "vectors")   # sums: no per-step diag written
    summary = RunSummary()
    progress = Progress(trainer.steps)
    started = time.perf_counter()
    handle = open_output(output)
    try:
        with CtrlC() as ctrl_c:
            writer = RecordWriter(handle, form)
            writer.write_json(trainer.header(form))
            while not trainer.done and not ctrl_c.pressed:
                for rec in trainer.advance(trainer.block_steps(BLOCK_STEPS)):   # big nets: fewer, memory bounded
                    writer.write(rec)
                    summary.add(rec)
                progress.update(trainer.step_index)
        if ctrl_c.pressed:
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        progress.close()
        print(f"interrupted; {output} holds {_held(summary)}", file=sys.stderr)
        return 130
    except OSError as exc:  # every line is flushed as written: what is in the file stays readable
        progress.close()
        raise BiasmonError(f"{output}: cannot write the recording ({exc.strerror or exc}); "
                           f"it holds {_held(summary)}") from None
    except BiasmonError as exc:   # a line too long to be read back (a big net's vectors)
        progress.close()
        raise BiasmonError(f"{output}: {exc}; the file holds {_held(summary)}") from None
    finally:
        try:
            handle.close()
        except OSError:
            pass  # the error that matters was reported above
    progress.update(trainer.step_index, force=True)
    progress.close()
    elapsed = time.perf_counter() - started
    print(f"{preset.name}: {summary.steps} steps in {elapsed:.2f} s ({summary.steps / max(elapsed, 1e-9):,.0f} steps/s) "
          f"-> {output}", file=out)
    print_summary(summary, out)
    return 0


def _held(summary: RunSummary) -> str:
    return f"every step up to {summary.last_step}" if summary.last_step is not None else "no steps yet"


def print_summary(summary: RunSummary, out: TextIO | None = None) -> None:
    print(f"train loss: final {fmt(summary.final_loss)}, best {fmt(summary.best_loss)}", file=out)
    if summary.final_val is not None:
        print(f"val loss:   final {fmt(summary.final_val)}, best {fmt(summary.best_val)}", file=out)
    if summary.diverged:
        d = summary.diverged
        print(divergence_line(d.step, d.data.get("layer"), d.data.get("reason")), file=out)
    if not summary.verdicts:
        print("no bias verdicts (the network has no biases)", file=out)
    rows = [(layer, d) for layer, d in summary.verdicts.items()] + \
        [(f"{layer} weights", d) for layer, d in summary.weight_verdicts.items()]
    if rows:   # one set of columns for the bias and the weight rows, as wide as their longest entries
        name_w = max(10, *(len(name) for name, _ in rows))
        verdict_w = max(18, *(len(d.verdict) for _, d in rows))
        since_w = max(6, *(len(str(d.since)) for _, d in rows))
        for name, d in rows:
            print(printable(f"  {name:<{name_w}} {d.verdict:<{verdict_w}} since step {d.since:<{since_w}} {d.cause}"),
                  file=out)


def _cell(d: LayerDiagnosis | None, missing: str) -> str:
    return missing if d is None else f"{d.verdict} @{d.since}"


def merge_orders(orders: list[list[str]]) -> list[str]:
    """Every name of the lists, once, each list's names in its own order where the lists agree: the first
    list as it is, a name new in a later list just before the next of its list's names already placed
    (at the end if none is). Networks named hidden1.., output give their network order."""
    merged: list[str] = []
    for order in orders:
        for i, name in enumerate(order):
            if name not in merged:
                later = next((n for n in order[i + 1:] if n in merged), None)
                merged.insert(len(merged) if later is None else merged.index(later), name)
    return merged


class ComparedRun(NamedTuple):
    """One preset's headless run in compare: its summary, its network's layers and those with biases."""

    name: str
    summary: RunSummary
    layers: list[str]
    bias_layers: set[str]


def _layer_cell(run: ComparedRun, layer: str) -> str:
    """A compare cell: the layer's bias verdict / its weights' verdict; `no bias` where the network has
    no biases, `-` where no verdict came (the run ended first), `no such layer` where its network has none."""
    if layer not in run.layers:
        return "no such layer"
    bias = _cell(run.summary.verdicts.get(layer), "-" if layer in run.bias_layers else "no bias")
    return f"{bias} / {_cell(run.summary.weight_verdicts.get(layer), '-')}"


def compare(names: list[str], steps: int | None = None, extra_dirs: list[str] = (), out: TextIO | None = None) -> int:
    """Run each preset headless; print one table of losses, divergence and per-layer verdicts, a column per
    layer in network order (the union of the presets' layers, merge_orders)."""
    available = preset_mod.discover(extra_dirs)
    chosen = [resolve_preset(n, extra_dirs) for n in names] if names else list(available.values())
    runs = []
    for preset in chosen:
        summary, trainer = RunSummary(), Trainer(preset, steps=steps, step_detail=False)
        while not trainer.done:
            for rec in trainer.advance(trainer.block_steps(BLOCK_STEPS)):
                summary.add(rec)
        runs.append(ComparedRun(preset.name, summary, list(trainer.net.layer_names), set(trainer.layout.names)))
    layers = merge_orders([run.layers for run in runs])
    cells = [("preset", "final train", "best train", "final val", "best val", "diverged",
              *(f"{layer} b / w" for layer in layers))]
    for run in runs:
        name, s = run.name, run.summary
        cells.append((name, fmt(s.final_loss), fmt(s.best_loss), fmt(s.final_val), fmt(s.best_val),
                      "-" if not s.diverged else f"step {s.diverged.step}",
                      *(_layer_cell(run, layer) for layer in layers)))
    print_lines(table(cells), out)
    print("\nlayer cells: b / w, the verdict of the layer's bias / its weights at the end of the run @ the step "
          "it has held since (biasmon check also gives the step each was first seen); no bias: the preset "
          "trains without biases; no such layer: the preset's network has no layer of that name", file=out)
    return 0
