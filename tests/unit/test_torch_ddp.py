"""DistributedDataParallel on the CPU (two processes, gloo, a free local port), logged by rank 0 only: the
stream is the single-process run's (DDP averages the two halves' gradients: the full batch's), its layers
are named without DDP's `module.`, and `check` judges it alike: ok when correct, uphill with the sign bug.
Skipped without torch or torch.distributed."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available in this build", allow_module_level=True)

from biasmon.core.check import check_stream  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trainers"))
import ddp_trainer  # noqa: E402

pytestmark = pytest.mark.slow   # two processes spawned per run: about 10 s each


def steps(path):
    return [line for line in map(json.loads, path.read_text().splitlines()) if "biases" in line]


def verdicts(path):
    result = check_stream(path)
    return result.exit, {name: d.verdict for name, d in result.layers.items()}


def test_ddp_logged_by_rank_0_is_the_single_process_run_and_checks_ok(tmp_path):
    ddp_trainer.train(tmp_path / "ddp.jsonl", world=2, steps=120)
    ddp_trainer.train(tmp_path / "one.jsonl", world=1, steps=120)
    ddp, one = steps(tmp_path / "ddp.jsonl"), steps(tmp_path / "one.jsonl")
    assert len(ddp) == len(one) == 120 and list(ddp[0]["biases"]) == ["0", "2"]
    for a, b in zip(ddp, one):
        for key in ("biases", "bias_grads", "bias_updates"):
            for layer in ("0", "2"):
                np.testing.assert_allclose(a[key][layer], b[key][layer], rtol=1e-3, atol=1e-6)
    assert verdicts(tmp_path / "ddp.jsonl") == verdicts(tmp_path / "one.jsonl") == (0, {"0": "ok", "2": "ok"})
    checks = [e for e in map(json.loads, (tmp_path / "ddp.jsonl").read_text().splitlines())
              if e.get("event") == "gradient_check"]
    assert checks and all(max(e["errors"].values()) < 1e-5 and "distributed over 2" in e["note"] for e in checks)


def test_a_sign_bug_under_ddp_is_uphill_as_in_a_single_process(tmp_path):
    ddp_trainer.train(tmp_path / "ddp.jsonl", world=2, steps=120, bias_bug=True)
    ddp_trainer.train(tmp_path / "one.jsonl", world=1, steps=120, bias_bug=True)
    assert verdicts(tmp_path / "ddp.jsonl") == verdicts(tmp_path / "one.jsonl") == (1, {"0": "uphill", "2": "uphill"})
