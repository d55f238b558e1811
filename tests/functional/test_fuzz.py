"""Issue 10: a fixed-seed fuzz of the command line. Mutated presets (through record, compare, presets and the
live monitor's start) and mutated streams (through check, check --json, check --strict, check - and replay),
each in a forked child under a 1 GB address-space cap and a time limit: every run ends with exit 0, 1 or 2
and prints no traceback. bench/fuzz.py runs the same with more cases."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "bench" / "fuzz.py"


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="fork and RLIMIT_AS")
def test_mutated_presets_and_streams_end_cleanly_under_a_memory_cap(tmp_path):
    proc = subprocess.run([sys.executable, str(FUZZ), "--presets", "250", "--streams", "250", "--seed", "10",
                           "--timeout", "30", "--cap-mb", "1024", "--jobs", "2", "--json"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tallies = json.loads(proc.stdout)
    for kind in ("presets", "streams"):
        t = tallies[kind]
        assert t["tried"] == 250
        assert (t["tracebacks"], t["timeouts"], t["over_memory_cap"]) == (0, 0, 0), t["failures"]
        assert t["clean"] == 250
