"""TUI launch to first frame: from starting the interpreter to the first frame the live app composes.

    python bench/bench_launch.py [--repeats R]

Each run is a fresh `python -c ...` process (imports included) that opens the live app headless
(App.run_test, as in the tests) and waits for its first refresh; the same for a minimal Textual app
(one Static) as the floor. Medians of R runs, taken in turns. Issue 12's target: <= 0.6 s.
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
    async with app.run_test(size=(140, 40)):
        drawn = asyncio.Event()
        app.call_after_refresh(drawn.set)
        await drawn.wait()
        print(time.time() - t0)
asyncio.run(main())
"""
BIASMON = "from biasmon.tui.app import create_live_app\napp = create_live_app()"
MINIMAL = ("from textual.app import App\nfrom textual.widgets import Static\n"
           "class Minimal(App):\n    def compose(self):\n        yield Static('hello')\napp = Minimal()")


def launch(make: str) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD.format(make=make), str(time.time())],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    launch(BIASMON)   # warm the disk cache
    ours, eager, floor = [], [], []
    for _ in range(args.repeats):
        ours.append(launch(BIASMON))
        eager.append(launch("import plotext\n" + BIASMON))
        floor.append(launch(MINIMAL))
    print(f"biasmon live app, launch to first frame : median {statistics.median(ours):.2f} s "
          f"(target <= 0.6 s: {'met' if statistics.median(ours) <= 0.6 else 'MISSED'})")
    print(f"  the same, plotext imported up front   : median {statistics.median(eager):.2f} s (as before it was "
          f"imported at the first plot)")
    print(f"a minimal Textual app, the same         : median {statistics.median(floor):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
