"""Reading in blocks (check, replay) gives exactly the records that reading line by line gives."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from biasmon.core import StreamReader, Thresholds

TRAINER = Path(__file__).resolve().parents[1] / "trainers" / "numpy_mlp.py"


def records(lines, block, recompute=True):
    reader = StreamReader(Thresholds(), recompute=recompute, block=block)
    out = []
    for line in lines:
        out += reader.feed(line)
    out += reader.finish()
    return [r.to_json() for r in out], [str(p) for p in reader.problems]


def recording(tmp_path, preset, steps):
    path = tmp_path / f"{preset}.jsonl"
    subprocess.run([sys.executable, "-m", "biasmon", "record", preset, "--steps", str(steps), "-o", str(path)],
                   check=True, capture_output=True)
    return path.read_text().splitlines(keepends=True)


@pytest.mark.parametrize("preset, steps", [("gradient", 700), ("story-bias-joins", 1100), ("story-error-scaled", 600),
                                           ("none", 50), ("frozen", 300)])
@pytest.mark.parametrize("block", [7, 256])
def test_blocks_match_line_by_line_on_recordings(tmp_path, preset, steps, block):
    lines = recording(tmp_path, preset, steps)
    for recompute in (True, False):
        assert records(lines, block, recompute) == records(lines, 1, recompute)


def test_blocks_match_with_momentum_resets_bad_lines_and_missing_gradients(tmp_path):
    rng = np.random.default_rng(3)
    lines, b, v = [], np.zeros(3), np.zeros(3)
    for step in range(400):
        g = b - np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=3)
        line = {"step": step, "loss": float(g @ g), "biases": {"h": b[:2].tolist(), "o": b[2:].tolist()}}
        if step % 97:  # now and then a line without gradients
            line["bias_grads"] = {"h": g[:2].tolist(), "o": g[2:].tolist()}
        if 150 <= step < 170:
            line["bias_trained"] = False
        lines.append(json.dumps(line) + "\n")
        if step == 200:
            lines.append("{not json\n")
            lines.append(json.dumps({"event": "gradient_check", "step": 201, "errors": {"h": 0.5, "o": 1e-9}}) + "\n")
        if step == 300:
            lines.append(json.dumps({"event": "restarted", "step": 300}) + "\n")
        v = 0.9 * v + g
        b = b - 0.02 * v
    for block in (2, 5, 64, 1000):
        assert records(lines, block) == records(lines, 1)
