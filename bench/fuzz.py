"""Fuzz the command line: mutated presets and streams through `biasmon.cli.main`, each in a forked child under
a memory cap (RLIMIT_AS) and a time limit. Every run must end with exit 0, 1 or 2 and print no traceback.

    python bench/fuzz.py [--presets 1000] [--streams 1000] [--seed 1] [--timeout 20] [--cap-mb 1024] [--json]

Prints: tried, clean, tracebacks, timeouts, over memory cap (and the first few failing cases).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_cases import base_stream, hostile_files, mutate_preset, mutate_stream  # noqa: E402

# imported once: every child is forked from here
import biasmon.check_cli  # noqa: E402,F401
import biasmon.commands  # noqa: E402,F401
import biasmon.tui.app  # noqa: E402,F401
from biasmon.cli import main  # noqa: E402

TRACEBACK = "Traceback (most recent call last)"
MEMORY = ("MemoryError", "Unable to allocate", "Cannot allocate memory")


@dataclass
class Tally:
    tried: int = 0
    clean: int = 0
    tracebacks: int = 0
    timeouts: int = 0
    over_memory_cap: int = 0
    failures: list = field(default_factory=list)

    def add(self, argv: list[str], verdict: str, detail: str) -> None:
        self.tried += 1
        setattr(self, verdict, getattr(self, verdict) + 1)
        if verdict != "clean" and len(self.failures) < 20:
            self.failures.append({"argv": [a[:200] for a in argv], "outcome": verdict, "detail": detail[-300:]})


def _child(argv: list[str], stdin: str | None, out: str, cap: int) -> None:
    """In the forked child: cap the address space, redirect 0/1/2, run the CLI, exit with its status."""
    status = 1
    try:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        os.dup2(os.open(stdin or os.devnull, os.O_RDONLY), 0)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        status = main(argv)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # what Python itself would print for an uncaught exception
        import traceback
        traceback.print_exc()
        status = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(status if isinstance(status, int) and 0 <= status < 256 else 1)


def _verdict(status: int, timed_out: bool, text: str) -> str:
    if timed_out:
        return "timeouts"
    if any(m in text for m in MEMORY) or (os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGSEGV,
                                                                                              signal.SIGABRT)):
        return "over_memory_cap"
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    return "tracebacks" if TRACEBACK in text or code not in (0, 1, 2) else "clean"


def run_cases(cases: list[tuple[str, list[str], str | None]], work: Path, timeout: float, cap: int, jobs: int,
              tallies: dict[str, Tally]) -> None:
    """Each (kind, argv, stdin path) in a forked child, `jobs` at a time; tallied by kind."""
    running: dict[int, tuple] = {}
    queue = list(enumerate(cases))
    sys.stdout.flush()
    sys.stderr.flush()
    while queue or running:
        while queue and len(running) < jobs:
            i, (kind, argv, stdin) = queue.pop(0)
            out = str(work / f"out{i}.txt")
            pid = os.fork()
            if pid == 0:
                _child(argv, stdin, out, cap)
            running[pid] = (kind, argv, out, time.monotonic() + timeout, False)
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            time.sleep(0.005)
            for p, (kind, argv, out, deadline, killed) in list(running.items()):
                if not killed and time.monotonic() > deadline:
                    os.kill(p, signal.SIGKILL)
                    running[p] = (kind, argv, out, deadline, True)
            continue
        kind, argv, out, _, killed = running.pop(pid)
        with open(out, "rb") as handle:
            text = handle.read(4_000_000).decode("utf-8", "replace")
        os.unlink(out)
        tallies.setdefault(kind, Tally()).add(argv, _verdict(status, killed, text), text)


def build_cases(n_presets: int, n_streams: int, seed: int, work: Path) -> list[tuple[str, list[str], str | None]]:
    rng = random.Random(seed)
    files = hostile_files(work / "files")
    cases = []
    for i in range(n_presets):
        folder = work / f"p{i}"
        folder.mkdir()
        path = folder / "fuzzed.toml"
        path.write_text(mutate_preset(rng, files), encoding="utf-8", errors="surrogatepass")
        out = str(folder / "rec.jsonl")
        cases.append(("presets", rng.choice([["record", str(path), "-o", out, "--steps", "8"]] * 3
                                 + [["compare", str(path), "--steps", "5"], ["presets", "--presets", str(folder)],
                                    [str(path)]]), None))
    bases = [base_stream("vectors"), base_stream("sums")]
    for i in range(n_streams):
        path = work / f"s{i}.jsonl"
        path.write_text(mutate_stream(rng, bases[i % 2]), encoding="utf-8")
        argv = rng.choice([["check", str(path)], ["check", "--json", str(path)], ["check", "--strict", str(path)],
                           ["check", "-"], ["replay", str(path)]])
        cases.append(("streams", argv, str(path) if argv[-1] == "-" else None))
    return cases


def main_fuzz(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", type=int, default=1000)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per case")
    p.add_argument("--cap-mb", type=int, default=1024, help="address-space cap per case (RLIMIT_AS)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print the tally as one JSON object")
    args = p.parse_args(argv)
    tallies: dict[str, Tally] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="biasmon-fuzz-") as tmp:
        cases = build_cases(args.presets, args.streams, args.seed, Path(tmp))
        run_cases(cases, Path(tmp), args.timeout, args.cap_mb << 20, args.jobs, tallies)
    if args.json:
        print(json.dumps({kind: t.__dict__ for kind, t in tallies.items()}))
        return 0
    for kind, t in sorted(tallies.items()):
        print(f"{kind}: tried {t.tried}, clean {t.clean}, tracebacks {t.tracebacks}, timeouts {t.timeouts}, "
              f"over memory cap {t.over_memory_cap}")
    print(f"({time.monotonic() - started:.0f} s, {args.timeout:g} s and {args.cap_mb} MB per case)")
    for failure in [f for t in tallies.values() for f in t.failures[:5]]:
        print(f"  {failure['outcome']}: {' '.join(failure['argv'])}\n    {failure['detail'][-200:]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main_fuzz())
