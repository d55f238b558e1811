"""Save every output that must not change when only the structure or the speed of biasmon changes.

    python tools/golden.py OUTDIR [--steps N]

Writes one small text file per case into OUTDIR; compare two runs with `diff -r BEFORE AFTER`.
Cases (the issue "one typed step pipeline" lists them):
  - `biasmon compare` of all presets, and `biasmon record` of every preset (stdout without its timing,
    and the stream's sha256 with the random run_id masked);
  - every preset trained through the API: plain, with momentum 0.9, and with flip_sign toggled at a third
    of the run (the stream's sha256);
  - `biasmon check --json` and the text report of each of those recordings;
  - every example trainer stream of tests/functional/test_check_trainers.py: check --json, the text report,
    and the records StreamReader gives (stored diagnostics, and recomputed).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "functional"))

RUN_ID = re.compile(rb'"run_id":"[^"]*"')
TIMING = re.compile(r" in [0-9.]+ s \([0-9,]+ steps/s\)")


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "biasmon", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT)


def digest(path: Path) -> str:
    return hashlib.sha256(RUN_ID.sub(b'"run_id":"-"', path.read_bytes())).hexdigest()


def save(out: Path, name: str, text: str) -> None:
    (out / name).write_text(text.replace(str(out), "OUT"))


def checks(out: Path, name: str, stream: Path) -> None:
    for flag in ("--json", None):
        proc = cli("check", stream, *([flag] if flag else []))
        text = proc.stdout.replace(str(stream), "STREAM")
        save(out, f"{name}.check{'-json' if flag else ''}", f"exit {proc.returncode}\n{text}{proc.stderr}")


def read_back(out: Path, name: str, stream: Path) -> None:
    import biasmon
    for recompute in (False, True):
        reader = biasmon.StreamReader(recompute=recompute)
        lines = []
        with open(stream, encoding="utf-8") as handle:
            for text in handle:
                lines += [json.dumps(r.to_json(), sort_keys=False) for r in reader.feed(text)]
        lines += [json.dumps(r.to_json()) for r in reader.finish()]
        lines += [str(p) for p in reader.problems]
        body = "\n".join(lines).encode()
        save(out, f"{name}.read{'-recompute' if recompute else ''}", hashlib.sha256(body).hexdigest() + "\n")


def api_streams(work: Path, steps: int) -> dict:
    import biasmon
    from biasmon.core import presets
    streams = {}
    for pname, preset in presets.discover().items():
        for variant in ("plain", "momentum", "flip"):
            chosen = replace(preset, train=dict(preset.train, momentum=0.9)) if variant == "momentum" else preset
            trainer = biasmon.Trainer(chosen, steps=steps)
            path = work / f"api-{pname}-{variant}.jsonl"
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(trainer.header(), separators=(",", ":"), allow_nan=False) + "\n")
                while not trainer.done:
                    if variant == "flip" and trainer.step_index == steps // 3:
                        trainer.flip_sign = not trainer.flip_sign
                    for rec in trainer.advance(7):
                        handle.write(json.dumps(rec.to_json(), separators=(",", ":"), allow_nan=False) + "\n")
            streams[path.stem] = path
    return streams


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = out / "streams"
    work.mkdir(exist_ok=True)
    proc = cli("compare", "--steps", args.steps)
    save(out, "compare", f"exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    from biasmon.core import presets
    for pname in presets.discover():
        path = work / f"record-{pname}.jsonl"
        proc = cli("record", pname, "-o", path, "--steps", args.steps)
        save(out, f"record-{pname}", f"exit {proc.returncode}\n{TIMING.sub('', proc.stdout)}{proc.stderr}"
                                      f"sha256 {digest(path)}\n")
        checks(out, f"record-{pname}", path)
    for name, path in api_streams(work, args.steps).items():
        save(out, name, f"sha256 {digest(path)}\n")
        checks(out, name, path)
        read_back(out, name, path)
    from test_check_trainers import CASES
    from conftest import TRAINERS
    for name, (trainer_args, *_) in CASES.items():
        path = work / f"trainer-{name}.jsonl"
        subprocess.run([sys.executable, str(TRAINERS / "numpy_mlp.py"), str(path), "--steps", "400", *trainer_args],
                       check=True, capture_output=True)
        save(out, f"trainer-{name}", f"sha256 {digest(path)}\n")
        checks(out, f"trainer-{name}", path)
        read_back(out, f"trainer-{name}", path)
    for path in work.iterdir():
        path.unlink()
    work.rmdir()


if __name__ == "__main__":
    main()
