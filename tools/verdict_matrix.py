"""A matrix of small correct and buggy trainers, each judged by `biasmon check`: a stable text table to diff
before and after a change of the verdicts.

    python tools/verdict_matrix.py [--only SUBSTRING] [--steps N]

PyTorch cases (skipped if torch is not installed) log through biasmon.torch_logger.TorchBiasLogger
(tests/trainers/torch_trainers.py; DDP: ddp_trainer.py, two processes, rank 0 logs), Lightning cases
(skipped without Lightning) through biasmon.lightning.BiasmonCallback (lightning_trainer.py);
NumPy cases run tests/trainers/numpy_mlp.py. Per case: the expected outcome (`expect`: exit status, and
a layer's verdict where it matters), `check`'s exit status, each layer's final verdict, the problem
verdicts seen (first step, longest stretch; * = counts for the exit status) and `ok?`: yes / NO, or
`no (limit)` where the outcome misses the ideal in a way docs/stream-format.md states (sparse logging
without grad_steps: a flipped run fails the check, but not every layer is named uphill).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "trainers"))

from biasmon.core.check import check_stream  # noqa: E402

LIMIT = "limit"   # the ideal outcome; what biasmon gives instead is a documented limit


def torch_cases() -> dict:
    """name -> (trainer options, expected exit, {layer: expected verdict}, limit)."""
    ok = (0, {}, None)
    cases = {
        "sgd full batch": (dict(opt="sgd", batch=0), *ok),
        "sgd minibatch + StepLR": (dict(opt="sgd", schedule=True), *ok),
        "momentum 0.9": (dict(opt="momentum"), *ok),
        "nesterov": (dict(opt="nesterov"), *ok),
        "adam": (dict(opt="adam"), *ok),
        "adamw": (dict(opt="adamw"), *ok),
        "rmsprop": (dict(opt="rmsprop"), *ok),
        "sgd + clip_grad_norm_ + check": (dict(opt="sgd", clip=0.05, check=True), *ok),
        "adam + dropout + check": (dict(opt="adam", dropout=0.2, check=True), *ok),
        "adam + layernorm + check": (dict(opt="adam", norm="layer", check=True), *ok),
        "adam + batchnorm (bias before BN)": (dict(opt="adam", norm="batch"), 0, {"0": "redundant"}, None),
        "sgd + batchnorm (bias before BN)": (dict(opt="sgd", norm="batch"), 0, {"0": "redundant"}, None),
        "sign bug: maximize=True": (dict(opt="sgd", maximize=True), 1, {"*": "uphill"}, None),
        "sign bug: bias group maximize": (dict(opt="adam", bias_group="flip"), 1, {"*": "uphill"}, None),
        "lr 0 for biases": (dict(opt="sgd", bias_group="zero"), 1, {"*": "frozen"}, None),
        "detached bias": (dict(opt="sgd", detached=True), 1, {"3": "detached"}, None),
        "output layer's gradient zeroed, weights logged": (dict(opt="adam", zeroed=True, weights=True), 1,
                                                            {"5": "detached", "5 weights": "detached"}, None),
        "output layer's gradient zeroed, summary form": (dict(opt="sgd", zeroed=True, form="sums"), 1,
                                                          {"5": "detached"}, None),
        "zero_grad() between backward() and step()": (dict(opt="momentum", zeroed="all"), 1, {"*": "detached"}, None),
        "units saturated from step 150 (sgd)": (dict(opt="sgd", saturate=150), 1, {"0": "vanishing", "3": "vanishing"},
                                                None),
        "units saturated from step 150 (adam, weights logged)": (dict(opt="adam", saturate=150, weights=True), 1,
                                                                 {"0": "vanishing", "3": "vanishing",
                                                                  "0 weights": "vanishing", "3 weights": "vanishing"}, None),
        "units saturated from step 150 (momentum, summary form)": (dict(opt="momentum", saturate=150, form="sums"), 1,
                                                                   {"0": "vanishing", "3": "vanishing"}, None),
        "sgd every=16 (one epoch) + check": (dict(opt="sgd", every=16, check=True, steps=960), *ok),
        "adam every=16 (one epoch)": (dict(opt="adam", every=16, steps=960), *ok),
        "sign bug: bias group maximize, every=16": (dict(opt="sgd", every=16, bias_group="flip", steps=960), 1,
                                                    {"*": "uphill"}, None),
        "wrong custom backward + check": (dict(opt="sgd", wrong=True, check=True), 1, {"0": "gradient mismatch"}, None),
        "adam, biases' own lr (param group)": (dict(opt="adam", bias_group="lr"), *ok),
        "sgd + GradScaler fp16 (skipped steps)": (dict(opt="sgd", amp=True), *ok),
        "adam + GradScaler fp16 + clip + check": (dict(opt="adam", amp=True, clip=0.5, check=True), *ok),
        "sign bug: bias group maximize + GradScaler": (dict(opt="sgd", amp=True, bias_group="flip"), 1,
                                                       {"*": "uphill"}, None),
        "momentum, accumulate 4 + check": (dict(opt="momentum", accumulate=4, check=True), *ok),
        "sign bug: bias group maximize, accumulate 4": (dict(opt="sgd", accumulate=4, bias_group="flip"), 1,
                                                        {"*": "uphill"}, None),
        "adam, weights logged": (dict(opt="adam", weights=True), *ok),
        "sign bug: weights group maximize, weights logged": (dict(opt="sgd", bias_group="flip_weights", weights=True),
                                                             1, {"0 weights": "uphill", "5 weights": "uphill"}, None),
        "momentum, summary form, weights logged": (dict(opt="momentum", form="sums", weights=True), *ok),
        "sign bug: bias group maximize, summary form": (dict(opt="adam", bias_group="flip", form="sums"), 1,
                                                        {"*": "uphill"}, None),
    }
    return {f"torch {name}": case for name, case in cases.items()}


def framework_cases() -> dict:
    """name -> (kind, trainer options, expected exit, {layer: verdict}, limit): Lightning and DDP."""
    return {
        "lightning sgd + check": ("lightning", dict(check=True), 0, {}, None),
        "lightning sgd, accumulate 4": ("lightning", dict(accumulate=4), 0, {}, None),
        "lightning sign bug: bias group maximize": ("lightning", dict(bias_bug=True), 1, {"*": "uphill"}, None),
        "ddp sgd, 2 processes": ("ddp", dict(world=2), 0, {}, None),
        "ddp sign bug: bias group maximize": ("ddp", dict(world=2, bias_bug=True), 1, {"*": "uphill"}, None),
    }


def numpy_cases() -> dict:
    """name -> (numpy_mlp.py arguments, expected exit, {layer: verdict}, limit)."""
    cases = {
        "sgd": (["--update", "sgd"], 0, {}, None),
        "momentum": (["--update", "momentum"], 0, {}, None),
        "adam": (["--update", "adam"], 0, {}, None),
        "sign flip": (["--update", "sign"], 1, {"*": "uphill"}, None),
        "frozen": (["--update", "frozen"], 1, {"*": "frozen"}, None),
        "wrong gradient + loss_at": (["--update", "wrong_grad", "--fd-check"], 1, {"hidden1": "gradient mismatch"}, None),
    }
    epoch = 9   # 36 training samples in minibatches of 4, drawn without replacement
    for k in (2, 5, 7, 10, 16, epoch):
        label = "epoch" if k == epoch else str(k)
        for update in ("sgd", "momentum", "adam", "sign"):   # at least 40 logged lines
            base = ["--update", update, "--batch", "4", "--shuffle", "--steps", str(max(300, 40 * k))]
            expect = (1, {"*": "uphill"}) if update == "sign" else (0, {})
            cases[f"k={label} {update} every="] = (base + ["--sum-every", str(k)], *expect, None)
            cases[f"k={label} {update} sparse"] = (base + ["--every", str(k)], *expect, LIMIT if update == "sign" else None)
    return {f"numpy {name}": case for name, case in cases.items()}


def run_numpy(path: Path, args: list, steps: int) -> None:
    import numpy_mlp
    numpy_mlp.main([str(path), "--steps", str(steps), *args])   # a case's own --steps comes last and wins


def judge(path: Path, exit_expected: int, verdicts: dict, limit: str | None) -> list[str]:
    """The table row's cells after `case`: expect, exit, verdicts, problems, ok?."""
    r = check_stream(path)
    rows = {**r.layers, **{f"{name} weights": layer for name, layer in r.weights.items()}}   # weights if logged
    final = {name: layer.verdict for name, layer in rows.items()}
    seen = [f"{name}:{p.verdict}@{p.first_step}/{p.longest_steps}{'*' if p.counts else ''}"
            for name, layer in rows.items() for p in layer.problems]
    good = r.exit == exit_expected and all(
        all(v == want for v in final.values()) if layer == "*" else final.get(layer) == want
        for layer, want in verdicts.items())
    expect = f"exit {exit_expected}" + "".join(f", {layer} {want}" for layer, want in verdicts.items())
    mark = "yes" if good else (f"no ({limit})" if limit else "NO")
    return [expect, str(r.exit), " ".join(f"{n}={v}" for n, v in final.items()), " ".join(seen) or "-", mark]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    cases, trainers = {}, {"numpy": lambda path, options, steps: run_numpy(path, options, steps)}
    try:
        import torch
        torch.set_num_threads(1)
        import torch_trainers
        cases.update({n: ("torch", *c) for n, c in torch_cases().items()})
        trainers["torch"] = lambda path, options, steps: torch_trainers.train(path, **{"steps": steps, **options})
        import ddp_trainer
        trainers["ddp"] = lambda path, options, steps: ddp_trainer.train(path, **{"steps": steps, **options})
        import lightning_trainer
        trainers["lightning"] = lambda path, options, steps: lightning_trainer.train(path, **{"steps": steps, **options})
    except ImportError as exc:
        print(f"{exc.name} is not installed: its cases skipped")
    cases.update({n: c for n, c in framework_cases().items() if c[0] in trainers})
    cases.update({n: ("numpy", *c) for n, c in numpy_cases().items()})
    rows = [["case", "expect", "exit", "final verdicts", "problems seen (first/longest, * counts)", "ok?"]]
    with tempfile.TemporaryDirectory() as work:
        for i, (name, (kind, options, code, verdicts, limit)) in enumerate(cases.items()):
            if args.only not in name:
                continue
            path = Path(work) / f"case{i}.jsonl"
            trainers[kind](path, options, args.steps)
            rows.append([name, *judge(path, code, verdicts, limit)])
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    marks = [r[-1] for r in rows[1:]]
    print(f"\n{len(marks)} cases: {marks.count('yes')} as expected, {marks.count('NO')} not, "
          f"{len(marks) - marks.count('yes') - marks.count('NO')} short of the ideal by a documented limit")


if __name__ == "__main__":
    main()
