"""Mutated inputs for bench/fuzz.py: presets (TOML text, with hostile data files beside them) and record
streams (JSON Lines), each a deterministic function of a seeded random.Random."""
from __future__ import annotations

import json
import os
import random
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Values a key may be given: wrong types, huge, non-finite, nested, control characters.
VALUES = ["0", "-1", "1", "2", "9223372036854775807", "100000000", "20000", "1e308", "inf", "-inf", "nan", '"2"',
          '""', "true", "[]", "[1, 2]", "{}", '"\\u001b[31mX\\nY"', "[2, 20000, 20000, 1]", "[3, 16, 16, 1]",
          "[2, 3000, 3000, 1]", "[" + ", ".join(["1"] * 3000) + "]", "0.5", "1e-300", "-0.0"]
KEYS = ["layers", "samples", "steps", "lr", "noise", "bias_init", "momentum", "weight_decay", "k", "eps", "m",
        "seed", "order", "from_step", "grad_check_every", "val_fraction", "set", "path", "targets", "features",
        "activation", "dtype", "strategy", "flip_sign", "description"]


def hostile_files(folder: Path) -> dict[str, str]:
    """Data files a preset may point at: name -> absolute path (some are pipes, devices or bombs)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}

    def put(name, data: bytes) -> None:
        (folder / name).write_bytes(data)
        made[name] = str(folder / name)

    put("good.csv", b"a,b,y\n" + b"".join(b"%d,%d,%g\n" % (i, -i, i / 2) for i in range(12)))
    put("notzip.npz", b"PK\x03\x04" + os.urandom(64))
    put("longline.csv", b"a,b,y\n" + b"1," * 600_000 + b"1\n")
    for name, target in (("zero.csv", "/dev/zero"), ("passwd.csv", "/etc/passwd"), ("zero.npz", "/dev/zero")):
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(target)
        made[name] = str(folder / name)
    if not (folder / "fifo.csv").exists():
        os.mkfifo(folder / "fifo.csv")
    made["fifo.csv"] = str(folder / "fifo.csv")
    bomb = folder / "bomb.npz"
    if not bomb.exists():
        _zip_bomb(bomb, rows=30_000_000)
    made["bomb.npz"] = str(bomb)
    made["long"] = "/tmp/" + "d" * 5000 + ".csv"
    return made


def _zip_bomb(path: Path, rows: int) -> None:
    """An .npz whose 'x' inflates to rows x 2 float64 zeros (a few hundred kB on disk)."""
    head = "{'descr': '<f8', 'fortran_order': False, 'shape': (%d, 2), }" % rows
    head = head + " " * (63 - (len(head) + 10) % 64) + "\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("x.npy", "w", force_zip64=True) as f:
            f.write(b"\x93NUMPY\x01\x00" + len(head).to_bytes(2, "little") + head.encode())
            block = bytes(1 << 20)
            for _ in range(rows * 16 // len(block)):
                f.write(block)
        z.writestr("y.npy", b"")


def _base_presets(files: dict[str, str]) -> list[str]:
    texts = [p.read_text() for p in sorted((ROOT / "presets").glob("*.toml"))]
    csv = texts[0].replace('set = "tiny"', f'path = "{files["good.csv"]}"\ntargets = ["y"]')
    return texts + [csv]


def mutate_preset(rng: random.Random, files: dict[str, str]) -> str:
    """One shipped preset (or its CSV variant) with one to three mutations."""
    text = rng.choice(_base_presets(files))
    for _ in range(rng.randint(1, 3)):
        lines = text.splitlines()
        kind = rng.randrange(10)
        if kind <= 4:  # set a key, in its section if present, else at the end of a random section
            key, value = rng.choice(KEYS), rng.choice(VALUES)
            hit = [i for i, line in enumerate(lines) if line.split("=")[0].strip() == key]
            line = f"{key} = {value}"
            if hit:
                lines[hit[0]] = line
            else:
                lines.insert(rng.randrange(len(lines) + 1), line)
        elif kind == 5:  # point the data at a hostile file
            name = rng.choice(sorted(files))
            lines = [line for line in lines if not line.startswith(("set =", "path =", "targets ="))]
            at = next((i + 1 for i, line in enumerate(lines) if line.strip() == "[data]"), len(lines))
            lines[at:at] = [f'path = "{files[name]}"', 'targets = ["y"]']
        elif kind == 6:  # a deeply nested value
            depth = rng.choice([50, 400, 1000, 3000])
            lines.insert(rng.randrange(len(lines) + 1), "deep = " + "[" * depth + "]" * depth)
        elif kind == 7:  # delete, duplicate or swap lines
            if lines:
                i = rng.randrange(len(lines))
                lines[i:i + 1] = rng.choice([[], [lines[i], lines[i]], [lines[i].upper()]])
        elif kind == 8:  # cut the file
            return "\n".join(lines)[:rng.randrange(len(text) + 1)]
        else:  # random characters somewhere
            at = rng.randrange(len(text) + 1)
            text = text[:at] + "".join(chr(rng.choice([0, 10, 27, 34, 61, 91, 93, rng.randrange(32, 0x3000)]))
                                       for _ in range(rng.randint(1, 5))) + text[at:]
            continue
        text = "\n".join(lines) + "\n"
    return text


def base_stream(form: str = "vectors") -> list[str]:
    """A short recording of the default preset, as lines (header, events, steps), in `form`: vectors
    (every bias and weight) or sums (the summary form)."""
    from biasmon.core import load_preset
    from biasmon.core.records import StepRecord
    from biasmon.core.trainer import Trainer
    trainer = Trainer(load_preset("gradient"), steps=30)
    lines = [json.dumps(trainer.header(form), separators=(",", ":"))]
    lines += [json.dumps(r.summary_json() if form == "sums" and isinstance(r, StepRecord) else r.to_json(),
                         separators=(",", ":"), allow_nan=False) for r in trainer]
    return lines


def _mutate_obj(rng: random.Random, obj):
    """A JSON value with one random change deep inside."""
    hostile = ["@BIG4400@", "@BIG401@", "@BIG401@", None, True, "x", "\u001b[31mEVIL\u001b[0m\nresult: ok",
               [], {}, [1.0] * 5, float("nan"), float("inf"), 1e308, -1, 2 ** 70, {"a": {"b": []}}]
    if isinstance(obj, dict) and obj and rng.random() < 0.8:
        key = rng.choice(list(obj))
        action = rng.randrange(4)
        if action == 0:
            del obj[key]
        elif action == 1:
            obj[key + rng.choice(["", "x", "\n"])] = obj.pop(key)
        else:
            obj[key] = _mutate_obj(rng, obj[key])
        return obj
    if isinstance(obj, list) and obj and rng.random() < 0.8:
        i = rng.randrange(len(obj))
        action = rng.randrange(4)
        if action == 0:
            del obj[i]
        elif action == 1:
            obj.append(obj[i])
        else:
            obj[i] = _mutate_obj(rng, obj[i])
        return obj
    return rng.choice(hostile)


def _big(text: str) -> str:
    """Huge integers (json cannot write them without lifting the digit limit, which the CLI would inherit)."""
    return text.replace('"@BIG4400@"', "7" * 4400).replace('"@BIG401@"', "-" + "3" * 401)


def _special_line(rng: random.Random, good: str) -> str:
    step = json.loads(good)
    if "bias_sums" in step:
        return _special_sums_line(rng, step)
    kind = rng.randrange(6)
    if kind == 0:
        return '{"step":0,"loss":1,"biases":{}}'
    if kind == 1:
        step["diag"] = json.loads("[" * 960 + "]" * 960)
    elif kind == 2:
        step["biases"] = {f"l{i}": [0.0] for i in range(rng.choice([1000, 30000]))}
    elif kind == 3:
        return '{"event": "gradient_check", "step": 0, "errors": {"hidden1": %s}}' % ("9" * 401)
    elif kind == 4:
        return json.dumps({"event": "diverged", "step": 0, "layer": float("nan")})
    else:
        step["biases"]["hidden1"] = step["biases"]["hidden1"] + [0.5]  # a layer changes size
    return json.dumps(step)


def _special_sums_line(rng: random.Random, step: dict) -> str:
    """A summary-form line gone wrong in one of the ways a writer can get it wrong."""
    kind = rng.randrange(6)
    row = step["bias_sums"]["hidden1"]
    if kind == 0:
        step["bias_sums"]["hidden1"] = row + [1.0, 1.0]        # rows of two lengths
    elif kind == 1:
        step["bias_sums"] = {f"l{i}": row for i in range(rng.choice([1000, 30000]))}
    elif kind == 2:
        step["biases"] = {"hidden1": [0.0]}                     # vectors and sums in one line
    elif kind == 3:
        step["weight_sums"]["hidden1"] = [0] + row[1:]          # no entries
    elif kind == 4:
        step["bias_sums"]["hidden1"] = [row[0] + 1] + row[1:]   # a layer changes size
    else:
        step["bias_sums"]["hidden1"] = [row[0], -1.0] + row[2:]  # a negative square
    return json.dumps(step)


def mutate_stream(rng: random.Random, lines: list[str]) -> str:
    """The base stream with one to four mutated, inserted, cut or deleted lines."""
    good = next(line for line in lines if line.startswith('{"step"'))
    lines = list(lines)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(lines))
        kind = rng.randrange(6)
        if kind <= 1 and lines[i].endswith("}"):
            try:
                lines[i] = _big(json.dumps(_mutate_obj(rng, json.loads(lines[i]))))
            except (ValueError, RecursionError):  # a line mutated before: huge digits or deep nesting
                del lines[i]
        elif kind == 2:
            lines.insert(i, _special_line(rng, good))
        elif kind == 3:
            lines[i] = lines[i][:rng.randrange(len(lines[i]) + 1)]
        elif kind == 4:
            del lines[i:i + rng.randint(1, 10)]
        else:
            lines[i] = lines[i].replace("1", "1" * rng.choice([2, 401, 4400]), 1)
        if not lines:
            break
    return "\n".join(lines) + ("\n" if rng.random() < 0.9 else "")
