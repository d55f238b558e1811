"""README's PyTorch, Lightning, Hugging Face Trainer, DDP, FSDP2 and JAX / optax examples run as shown (in a
fresh folder, as a user pastes them) and `biasmon check` passes each stream they write. The PyTorch ones skipped
without torch; the Lightning one without Lightning, the Trainer one without transformers and accelerate, the
JAX one without jax and optax, the Keras 3 one without keras (and torch, its backend there)."""
import importlib.util
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")

ROOT = Path(__file__).resolve().parents[2]
SECTION = (ROOT / "README.md").read_text().split("## PyTorch, Lightning and DDP", 1)[1].split("\n## ", 1)[0]
JAX = re.findall(r"```python\n(.*?)```", SECTION.split("\n### JAX / optax", 1)[1], re.S)[0]
KERAS = re.findall(r"```python\n(.*?)```", SECTION.split("\n### Keras 3", 1)[1], re.S)[0]
MONITOR = SECTION.split("\n### PyTorch: every parameter", 1)[1].split("\n### ", 1)[0]
FSDP = re.findall(r"```python\n(.*?)```", MONITOR, re.S)[1]   # the first is TorchMonitor's, tested elsewhere
SECTION = SECTION.split("\n### ", 1)[0]   # TorchMonitor's example, in a subsection, has a test of its own
PLAIN, AMP, LIGHTNING, HUGGINGFACE, DDP = re.findall(r"```python\n(.*?)```", SECTION, re.S)
DDP_PORT = "29511"
FSDP_PORT = "29512"

pytestmark = pytest.mark.slow


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the README's DDP example takes a tcp:// address)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(tmp_path, code, *streams):
    """Run `code` as a script in tmp_path; each stream it wrote read back, and `biasmon check` passes it."""
    (tmp_path / "example.py").write_text(code)
    proc = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = {}
    for name in streams:
        check = subprocess.run([sys.executable, "-m", "biasmon", "check", name], cwd=tmp_path, capture_output=True,
                               text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
        lines[name] = [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]
    return lines


def steps(lines):
    return [line for line in lines if "biases" in line]


def step_count(code):
    """The optimizer steps an example runs: its `range(N)` or `max_steps=N`."""
    return int(re.search(r"(?:range|max_steps=)\(?(\d+)", code).group(1))


@needs_torch
def test_the_pytorch_example_then_mixed_precision_with_accumulation(tmp_path):
    lines = run(tmp_path, PLAIN + AMP, "run.jsonl", "amp.jsonl")
    assert len(steps(lines["run.jsonl"])) == step_count(PLAIN) and list(steps(lines["run.jsonl"])[0]["biases"]) == ["0", "2"]
    assert any(e.get("event") == "gradient_check" for e in lines["run.jsonl"])
    amp = lines["amp.jsonl"]
    assert len(steps(amp)) + len([e for e in amp if e.get("event") == "step_skipped"]) == step_count(AMP)


@needs_torch
@pytest.mark.skipif(importlib.util.find_spec("lightning") is None, reason="lightning is not installed")
def test_the_lightning_example(tmp_path):
    lines = run(tmp_path, LIGHTNING, "lightning.jsonl")["lightning.jsonl"]
    assert len(steps(lines)) == step_count(LIGHTNING) and list(steps(lines)[0]["biases"]) == ["net.0", "net.2"]


@needs_torch
@pytest.mark.skipif(importlib.util.find_spec("transformers") is None or importlib.util.find_spec("accelerate") is None,
                    reason="transformers and accelerate are not installed")
def test_the_hugging_face_trainer_example(tmp_path):
    lines = run(tmp_path, HUGGINGFACE, "hf.jsonl")["hf.jsonl"]
    assert len(steps(lines)) == step_count(HUGGINGFACE) and list(steps(lines)[0]["biases"]) == ["net.0", "net.2"]


@needs_torch
def test_the_ddp_example(tmp_path):
    assert DDP.count(DDP_PORT) == 1
    lines = run(tmp_path, DDP.replace(DDP_PORT, str(free_port())), "ddp.jsonl")["ddp.jsonl"]   # a port free here
    assert len(steps(lines)) == step_count(DDP) and list(steps(lines)[0]["biases"]) == ["0", "2"]


@needs_torch
def test_the_fsdp2_example(tmp_path):
    assert FSDP.count(FSDP_PORT) == 1
    head, *lines = run(tmp_path, FSDP.replace(FSDP_PORT, str(free_port())), "fsdp.jsonl")["fsdp.jsonl"]
    assert head["writer"] == "biasmon.TorchMonitor" and head["averages"] == ["exp_avg"]
    assert head["layers"] == [{"name": "0", "size": 32}, {"name": "2", "size": 1}]   # unsharded names and sizes
    assert head["weights"] == [{"name": "0", "size": 256}, {"name": "2", "size": 32}]
    assert [line["step"] for line in lines] == list(range(0, step_count(FSDP), head["every"]))


@pytest.mark.skipif(importlib.util.find_spec("jax") is None or importlib.util.find_spec("optax") is None,
                    reason="jax and optax are not installed (pip install -e '.[jax]')")
def test_the_jax_optax_example(tmp_path):
    head, *lines = run(tmp_path, JAX, "jax.jsonl")["jax.jsonl"]
    assert head["writer"] == "biasmon.optax_monitor" and head["averages"] == ["mu"]
    assert [line["step"] for line in lines] == list(range(0, step_count(JAX), head["every"]))
    assert list(lines[0]["bias_sums"]) == list(lines[0]["weight_sums"]) == ["0", "1", "2"]


@pytest.mark.skipif(importlib.util.find_spec("keras") is None or not HAS_TORCH,
                    reason="keras (and torch, its backend in the example) is not installed: pip install -e '.[keras]'")
def test_the_keras_example(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")   # a 2-16-16-1 MLP: torch's threads only contend (10 times slower)
    head, *lines = run(tmp_path, KERAS, "keras.jsonl")["keras.jsonl"]
    assert head["writer"] == "biasmon.KerasMonitor" and head["averages"] == ["momentums"]
    assert [x["name"] for x in head["layers"]] == ["dense", "dense_1", "dense_2"]
    steps_run = 512 // 32 * int(re.search(r"epochs=(\d+)", KERAS).group(1))
    assert [line["step"] for line in lines] == list(range(0, steps_run, head["every"]))
