"""A stream that holds several runs (restarted, or a preset switched): each run is judged alone, and a
problem in any run fails `check`, named with its run and steps."""
import json
import subprocess
import sys

import numpy as np

TARGET = np.array([0.3, -0.2, 0.1])


def run_lines(sign: float, steps: int, lr: float = 0.01) -> list[str]:
    """Plain SGD on a quadratic (sign -1: the update climbs the gradient, the story's bug)."""
    lines, b = [], np.array([0.5, -0.4, 0.2])
    for t in range(steps):
        g = b - TARGET
        lines.append(json.dumps({"step": t, "loss": float(g @ g) + 0.01, "biases": {"h": b[:2].tolist(), "o": b[2:].tolist()},
                                 "bias_grads": {"h": g[:2].tolist(), "o": g[2:].tolist()}}))
        b = b - sign * lr * g
    return lines


def check(tmp_path, lines, *options):
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return subprocess.run([sys.executable, "-m", "biasmon", "check", str(path), *options], capture_output=True, text=True)


def restart(preset: str) -> str:
    return json.dumps({"event": "restarted", "step": 0, "run_id": f"{preset}-1", "preset": preset})


def test_a_run_with_the_sign_bug_then_a_clean_restart_fails_and_names_the_run(tmp_path):
    done = check(tmp_path, run_lines(-1, 300) + [restart("clean")] + run_lines(1, 300))
    assert done.returncode == 1, done.stdout
    assert "run 1, steps 0..299: PROBLEM: h uphill; o uphill" in done.stdout
    assert "run 2 (clean), the last:" in done.stdout
    result = json.loads(check(tmp_path, run_lines(-1, 300) + [restart("clean")] + run_lines(1, 300), "--json").stdout)
    assert result["exit"] == 1 and [r["index"] for r in result["runs"]] == [1]
    assert result["runs"][0]["layers"]["h"]["verdict"] == "uphill" and result["layers"]["h"]["verdict"] == "ok"


def test_a_clean_run_then_a_buggy_one_fails_on_the_last_and_two_clean_runs_pass(tmp_path):
    done = check(tmp_path, run_lines(1, 300) + [restart("buggy")] + run_lines(-1, 300))
    assert done.returncode == 1 and "run 1, steps" not in done.stdout and "run 2 (buggy), the last:" in done.stdout
    assert check(tmp_path, run_lines(1, 300) + [restart("again")] + run_lines(1, 300)).returncode == 0


def test_a_long_uphill_run_then_a_restart_is_not_forgiven(tmp_path):
    done = check(tmp_path, run_lines(-1, 2357, lr=5e-4) + [restart("x")] + run_lines(1, 30))
    assert "diverged" not in done.stdout   # slow enough never to diverge: only the verdicts can fail it
    assert done.returncode == 1 and "run 1, steps 0..2356: PROBLEM: h uphill; o uphill" in done.stdout


def header(run_id: str) -> str:
    return json.dumps({"format": "biasmon-stream", "version": 1, "run_id": run_id})


def test_a_second_header_starts_a_new_run_as_a_restart_does(tmp_path):
    done = check(tmp_path, [header("buggy: lr=0.1")] + run_lines(-1, 300) + [header("clean")] + run_lines(1, 300))
    assert done.returncode == 1, done.stdout
    assert "run 1 (buggy: lr=0.1), steps 0..299: PROBLEM: h uphill; o uphill" in done.stdout
    assert "run 2 (clean), the last:" in done.stdout


def test_a_stream_that_ends_right_after_a_restart_shows_the_run_before_as_the_last(tmp_path):
    done = check(tmp_path, run_lines(-1, 300) + [restart("next")])
    assert done.returncode == 1 and "run 2" not in done.stdout and "run 1" not in done.stdout
    result = json.loads(check(tmp_path, run_lines(-1, 300) + [restart("next")], "--json").stdout)
    assert result["runs"] == [] and result["layers"]["h"]["verdict"] == "uphill"


def test_the_summary_line_counts_step_lines_in_plain_words(tmp_path):
    """Lines, not steps (a sparse stream logs 1 step in k), singular for one."""
    out = check(tmp_path, run_lines(1.0, 1)).stdout.splitlines()[0]
    assert ": 1 step line (step 0), 2 bias layers, gradients logged;" in out, out
    sparse = [line for i, line in enumerate(run_lines(1.0, 40)) if i % 5 == 0]
    assert ": 8 step lines (steps 0..35), 2 bias layers, gradients logged" in check(tmp_path, sparse).stdout
