"""Example trainers (plain NumPy scripts, tests/trainers/numpy_mlp.py) run as subprocesses write their
streams; `python -m biasmon check` must give each the right verdicts and exit status."""
import json
import sys

import pytest

from conftest import TRAINERS, run_many

LAYERS = ("hidden1", "hidden2", "output")
OK = {layer: "ok" for layer in LAYERS}

# name: (trainer arguments, expected exit status, {layer: final verdict}, {layer: problem verdict seen})
CASES = {
    "sgd": (["--update", "sgd"], 0, OK, {}),
    "momentum": (["--update", "momentum"], 0, OK, {}),
    "momentum_minibatch": (["--update", "momentum", "--batch", "4", "--seed", "2"], 0, OK, {}),
    "adam": (["--update", "adam"], 0, OK, {}),
    "loss_scaled": (["--update", "loss_scaled"], 0, OK, {}),
    "sgd_sparse_raw": (["--update", "sgd", "--raw", "--every", "5"], 0, OK, {}),
    "sgd_no_grads": (["--update", "sgd", "--no-grads"], 0, {layer: "no gradients" for layer in LAYERS}, {}),
    "wrong_grad_unchecked": (["--update", "wrong_grad"], 0, OK, {}),
    "sign_one_layer": (["--update", "sign", "--flip", "hidden2"], 1,
                       {"hidden1": "ok", "hidden2": "uphill", "output": "ok"}, {}),
    "sign_one_layer_sparse_raw": (["--update", "sign", "--flip", "hidden1", "--raw", "--every", "3"], 1,
                                  {"hidden1": "uphill", "hidden2": "ok", "output": "ok"}, {}),
    "sign_all": (["--update", "sign"], 1, {layer: "uphill" for layer in LAYERS}, {}),
    "sign_loss": (["--update", "sign_loss"], 1, {}, {layer: "uphill" for layer in LAYERS}),
    "sign_inverse": (["--update", "sign_inverse"], 1, {layer: "uphill" for layer in LAYERS}, {}),
    "sign_gap": (["--update", "sign_gap"], 1, {}, {layer: "uphill" for layer in LAYERS}),
    "frozen": (["--update", "frozen"], 1, {layer: "frozen" for layer in LAYERS}, {}),
    "random": (["--update", "random"], 1, {}, {"hidden1": "unrelated", "hidden2": "unrelated"}),
    "exploding": (["--update", "exploding"], 1, {}, {"output": "exploding"}),
    "diverging": (["--update", "diverging"], 1, {}, {}),
    "wrong_grad_fd": (["--update", "wrong_grad", "--fd-check"], 1,
                      {"hidden1": "gradient mismatch", "hidden2": "gradient mismatch", "output": "ok"}, {}),
}


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """Every case's trainer, then `biasmon check --json` on its stream, several processes at a time."""
    tmp = tmp_path_factory.mktemp("streams")
    paths = {name: tmp / f"{name}.jsonl" for name in CASES}
    trained = run_many({name: [sys.executable, str(TRAINERS / "numpy_mlp.py"), str(paths[name]), "--steps", "400",
                               *args] for name, (args, *_) in CASES.items()})
    for name, proc in trained.items():
        assert proc.returncode == 0, f"trainer {name} failed: {proc.stderr}"
    return paths, run_many({name: [sys.executable, "-m", "biasmon", "check", "--json", str(path)]
                            for name, path in paths.items()})


@pytest.mark.parametrize("name", CASES)
def test_check_gives_the_right_verdict_and_exit_status(checked, name):
    _, results = checked
    args, status, final, seen = CASES[name]
    proc = results[name]
    assert "Traceback" not in proc.stderr
    assert proc.returncode == status, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["exit"] == status and (result["status"] == "ok") == (status == 0)
    assert set(result["layers"]) == set(LAYERS)
    for layer, verdict in final.items():
        assert result["layers"][layer]["verdict"] == verdict, (layer, result["layers"][layer])
    for layer, verdict in seen.items():
        assert verdict in {p["verdict"] for p in result["layers"][layer]["problems"]}, (layer, result["layers"][layer])
    if status == 0:
        assert result["failing"] == [] and result["diverged"] is None
        assert all(not p["counts"] for layer in result["layers"].values() for p in layer["problems"])


def test_divergence_is_reported_with_its_step(checked):
    result = json.loads(checked[1]["diverging"].stdout)
    assert result["diverged"] is not None and result["diverged"]["step"] <= result["last_step"] + 1
    assert any(f.startswith("diverged at step") for f in result["failing"])


def test_sparse_steps_say_the_update_spans_k_steps(checked):
    result = json.loads(checked[1]["sgd_sparse_raw"].stdout)
    assert result["max_span"] == 5
    assert any("spans up to 5 steps" in note for note in result["notes"])
    assert json.loads(checked[1]["sgd"].stdout)["max_span"] == 1


def test_without_gradients_it_says_which_diagnostics_need_them(checked):
    result = json.loads(checked[1]["sgd_no_grads"].stdout)
    assert result["has_grads"] is False
    note = next(n for n in result["notes"] if "no bias_grads" in n)
    for verdict in ("uphill", "unrelated", "frozen", "gradient mismatch"):
        assert verdict in note


def test_the_table_names_each_layer_verdict_cause_and_first_step(checked, biasmon_cli):
    paths, _ = checked
    proc = biasmon_cli("check", paths["sign_one_layer"])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.split() and line.split()[0] in LAYERS}
    assert "uphill" in rows["hidden2"] and "sign flipped?" in rows["hidden2"]
    assert rows["hidden1"].split()[1] == "ok" and rows["output"].split()[1] == "ok"
    first_step = int(rows["hidden2"].split()[2])
    assert 0 <= first_step <= 20
    assert proc.stdout.rstrip().splitlines()[-1] == "result: PROBLEM: hidden2 uphill"


def test_check_reads_a_pipe(checked, biasmon_cli):
    paths, _ = checked
    ok = biasmon_cli("check", "-", stdin=paths["momentum"].read_text())
    bad = biasmon_cli("check", "-", "--json", stdin=paths["sign_one_layer"].read_text())
    assert ok.returncode == 0 and "result: ok" in ok.stdout
    assert bad.returncode == 1 and json.loads(bad.stdout)["layers"]["hidden2"]["verdict"] == "uphill"
