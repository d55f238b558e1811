"""How fast `biasmon watch` keeps up with a trainer: lines per second it digests, and its lag.

    python bench/bench_watch.py [--steps N] [--rate R]

Runs watch's reading loop (biasmon.tui.watch.follow with the StreamReader the watch source makes),
without the screen, on a synthetic 3-layer stream (bench_check.py's: biases 16, 16, 1, with gradients):
  - capacity: a finished file read as a pipe, start to end: lines per second;
  - lag: a writer thread appends R lines a second (default 5,000) while follow reads the growing file;
    the lag of a post is the time from the writing of the last step it holds to the post. Issue 12's
    target: >= 5,000 lines/s sustained with a lag under 1 s.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_check import write_vectors as write_stream  # noqa: E402

from biasmon.core import Event, StreamReader  # noqa: E402
from biasmon.tui import watch  # noqa: E402


def reader() -> StreamReader:
    """The reader the watch source makes."""
    return StreamReader(source="bench", block=getattr(watch, "READ_BLOCK", 1))


def capacity(path: Path) -> float:
    with open(path, encoding="utf-8") as handle:
        started, steps = time.perf_counter(), 0
        for read in watch.follow(watch.PipeStream(handle), reader()):
            if read is not None:
                steps += sum(1 for r in read.records if not isinstance(r, Event))
        return steps / (time.perf_counter() - started)


def lag(lines: list[str], rate: float, folder: Path) -> tuple[float, float, float]:
    """(lines/s digested, median lag, max lag) while a writer appends `rate` lines a second."""
    path = folder / "growing.jsonl"
    path.write_text("")
    written = {}

    def write() -> None:
        with open(path, "a", encoding="utf-8") as out:
            start = time.monotonic()
            for i, line in enumerate(lines):
                time.sleep(max(0.0, start + i / rate - time.monotonic()))
                out.write(line)
                out.flush()
                written[i - 1] = time.monotonic()   # line i is step i - 1 (line 0: the header)

    writer = threading.Thread(target=write)
    lags, steps, last, started = [], 0, len(lines) - 2, time.monotonic()
    with open(path, encoding="utf-8") as handle:
        writer.start()
        for read in watch.follow(handle, reader()):
            if read is None or not read.records:
                if not writer.is_alive() and steps > last:
                    break
                continue
            now = time.monotonic()
            step_records = [r for r in read.records if not isinstance(r, Event)]
            steps += len(step_records)
            if step_records:
                lags.append(now - written[step_records[-1].step])
            if steps > last - 1:
                break
    writer.join()
    return steps / (time.monotonic() - started), statistics.median(lags), max(lags)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--rate", type=float, default=5_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stream.jsonl"
        write_stream(path, args.steps)
        print(f"watch capacity (a finished file, as a pipe): {capacity(path):10,.0f} lines/s")
        lines = path.read_text().splitlines(keepends=True)[: int(args.rate * 4)]
        rate, median, worst = lag(lines, args.rate, Path(tmp))
        print(f"watch at {args.rate:,.0f} lines/s written: {rate:10,.0f} lines/s digested, lag median {median:.2f} s, "
              f"max {worst:.2f} s (target: keeps up, lag < 1 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
