"""TUI launch: from starting the interpreter to the first frame the live app draws, and to the first frame
that shows a plotted loss curve.

    python bench/bench_launch.py [--repeats R] [--against PYTHON]

Each run is a fresh `python -c ...` process (imports included) that opens the live app headless
(App.run_test, as in the tests) and waits for its first refresh, then for the first refresh after the
loss plot holds a curve; the same for a minimal Textual app (one Static) as the floor. Medians of R runs,
taken in turns (with --against, another checkout's interpreter in the same turns, and the ratio).
Issue 12's target: first frame <= 0.6 s.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CHILD = """
import asyncio, sys, time
t0 = float(sys.argv[1])
{make}
async def main():
    async with app.run_test(size=(140, 40)) as pilot:
        drawn = asyncio.Event()
        app.call_after_refresh(drawn.set)
        await drawn.wait()
        first = time.time() - t0
        plotted = first
        if {plots}:
            from biasmon.tui.loss_panel import LossPanel
            panel = app.screen.query_one(LossPanel)
            while not panel.lines:
                await asyncio.sleep(0.005)
            drawn = asyncio.Event()
            app.call_after_refresh(drawn.set)
            await drawn.wait()
            plotted = time.time() - t0
        print(first, plotted)
asyncio.run(main())
"""
BIASMON = "from biasmon.tui.app import create_live_app\napp = create_live_app()"
MINIMAL = ("from textual.app import App\nfrom textual.widgets import Static\n"
           "class Minimal(App):\n    def compose(self):\n        yield Static('hello')\napp = Minimal()")


def launch(make: str, python: str = sys.executable, plots: bool = True) -> tuple[float, float]:
    """Seconds to the first frame and to the first frame with a loss curve."""
    out = subprocess.run([python, "-c", CHILD.format(make=make, plots=plots), str(time.time())],
                         capture_output=True, text=True, check=True)
    first, plotted = out.stdout.strip().splitlines()[-1].split()
    return float(first), float(plotted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--against", metavar="PYTHON", help="another checkout's python, run in the same turns")
    args = parser.parse_args(argv)
    launch(BIASMON)   # warm the disk cache
    runs: dict[str, list[tuple[float, float]]] = {"this": [], "against": [], "floor": []}
    for _ in range(args.repeats):
        runs["this"].append(launch(BIASMON))
        if args.against:
            runs["against"].append(launch(BIASMON, args.against))
        runs["floor"].append(launch(MINIMAL, plots=False))

    def medians(label: str) -> tuple[float, float]:
        return statistics.median(r[0] for r in runs[label]), statistics.median(r[1] for r in runs[label])

    first, plotted = medians("this")
    print(f"biasmon live app, launch to first frame : median {first:.2f} s "
          f"(target <= 0.6 s: {'met' if first <= 0.6 else 'MISSED'}); to the first loss curve {plotted:.2f} s")
    if args.against:
        a_first, a_plotted = medians("against")
        print(f"  against {args.against}: first frame {a_first:.2f} s, first loss curve {a_plotted:.2f} s; "
              f"ratios this/against {first / a_first:.2f} and {plotted / a_plotted:.2f}")
    print(f"a minimal Textual app, the same         : median {medians('floor')[0]:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
