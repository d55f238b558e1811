"""BiasmonCallback under Lightning's DDP strategy, two CPU processes (Lightning starts the second by running
the trainer script again): global rank 0 alone writes the stream, its layers are the module's own
(`net.0`, no `module.`), and a sign bug is uphill on every layer, as in one process. Skipped without
Lightning."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
try:
    import lightning.pytorch  # noqa: F401
except ImportError:
    pytest.importorskip("pytorch_lightning", reason="neither lightning nor pytorch_lightning is installed")

from biasmon.core.check import check_stream  # noqa: E402

TRAINER = Path(__file__).resolve().parents[1] / "trainers" / "lightning_trainer.py"


@pytest.mark.slow
def test_under_lightning_ddp_rank_0_alone_logs_and_a_sign_bug_is_uphill(tmp_path):
    path = tmp_path / "run.jsonl"
    proc = subprocess.run([sys.executable, str(TRAINER), str(path), "--steps", "120", "--devices", "2", "--bias-bug",
                           "--check"], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    steps = [line for line in lines if "biases" in line]
    assert [s["step"] for s in steps] == list(range(120))   # one writer
    checks = [e for e in lines if e.get("event") == "gradient_check"]
    assert checks and all("distributed over 2" in e["note"] for e in checks)
    result = check_stream(path)
    assert result.exit == 1
    assert {n: d.verdict for n, d in result.layers.items()} == {"net.0": "uphill", "net.3": "uphill", "net.5": "uphill"}
