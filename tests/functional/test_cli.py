"""The headless CLI in a subprocess (python -m biasmon), a recording cut at random bytes, and core's
independence from Textual checked in a fresh interpreter."""
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

import biasmon
from biasmon.core import presets
from biasmon.core import read_all
from biasmon.core.records import StepRecord

CORE_DIR = Path(biasmon.core.__file__).resolve().parent


def biasmon_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "biasmon", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


# --- errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["record", "nope", "-o", "f.jsonl"],
    ["record", "gradient", "-o", "f.jsonl", "--steps", "0"],
    ["record", "gradient"],                              # -o missing
    ["compare", "gradient", "nope"],
    ["record", "missing.toml", "-o", "f.jsonl"],
])
def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path, args):
    result = biasmon_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("biasmon")
    if "nope" in args:
        assert "'nope'" in lines[0]


def test_record_with_a_bad_preset_file_names_the_file(tmp_path):
    (tmp_path / "bad.toml").write_text('description = "x"\n[train]\nlr = -1\n')
    result = biasmon_cli("record", "bad.toml", "-o", "out.jsonl", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "bad.toml" in result.stderr and "'train.lr'" in result.stderr


# --- presets / compare / record ----------------------------------------------------------------------
def test_presets_lists_every_preset_with_its_description():
    result = biasmon_cli("presets")
    assert result.returncode == 0, result.stderr
    found = presets.discover()
    assert len(found) >= 13
    for name, p in found.items():
        line = next((ln for ln in result.stdout.splitlines() if re.search(rf"\s{re.escape(name)}\s", ln)), None)
        assert line is not None, name
        assert p.description in line


def test_compare_names_uphill_for_the_story_and_ok_for_gradient():
    result = biasmon_cli("compare", "gradient", "story-scaled", "--steps", "200")
    assert result.returncode == 0, result.stderr
    rows = {ln.split()[0]: ln for ln in result.stdout.splitlines() if ln.strip()}
    header = rows["preset"]
    for column in ("final train", "best train", "diverged", "hidden1", "hidden2", "output"):
        assert column in header
    assert rows["story-scaled"].count("uphill @") == 3 and rows["story-scaled"].count("/ ok @") == 3   # weights ok
    assert "uphill" not in rows["gradient"] and rows["gradient"].count("ok @") == 6   # biases and weights


def test_compare_takes_presets_on_both_sides_of_its_options():
    """`compare a --steps 3 b` was refused ("unrecognized arguments: b")."""
    result = biasmon_cli("compare", "gradient", "--steps", "3", "frozen")
    assert result.returncode == 0, result.stderr
    assert [ln.split()[0] for ln in result.stdout.splitlines()[2:4]] == ["gradient", "frozen"]


def test_record_writes_a_stream_and_prints_the_verdicts(tmp_path):
    out = tmp_path / "run.jsonl"
    result = biasmon_cli("record", "story-scaled", "--steps", "60", "--seed", "3", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "uphill" in result.stdout and "hidden1" in result.stdout
    lines = out.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "biasmon-stream" and header["version"] == 2 and header["form"] == "sums"
    assert header["preset"]["train"]["seed"] == 3 and [la["name"] for la in header["layers"]] == [
        "hidden1", "hidden2", "output"]
    assert [la["name"] for la in header["weights"]] == ["hidden1", "hidden2", "output"]
    steps = [json.loads(ln) for ln in lines[1:] if '"event"' not in ln]
    assert [s["step"] for s in steps] == list(range(60))
    for key in ("step", "loss", "val_loss", "bias_sums", "weight_sums"):
        assert key in steps[0]
    assert max(len(ln) for ln in lines[1:]) < 1000   # the summary form: under 1 KB a step
    records, reader = read_all(out)
    assert sum(isinstance(r, StepRecord) for r in records) == 60 and not reader.problems


def test_record_in_the_vector_form_writes_every_bias_and_weight(tmp_path):
    out = tmp_path / "run.jsonl"
    result = biasmon_cli("record", "gradient", "--steps", "20", "--form", "vectors", "-o", str(out))
    assert result.returncode == 0, result.stderr
    steps = [json.loads(ln) for ln in out.read_text().splitlines()[1:] if '"event"' not in ln]
    assert [len(v) for v in steps[0]["biases"].values()] == [16, 16, 1]
    assert [len(v) for v in steps[0]["weights"].values()] == [32, 256, 16]
    for key in ("bias_grads", "weight_grads", "diag", "weight_diag"):
        assert key in steps[0]
    assert biasmon_cli("check", str(out)).returncode == 0


def test_record_refuses_vector_lines_too_long_to_read_back(tmp_path):
    """A 264k-parameter net's step in the vector form is about 16 MB of JSON, past the 8 MiB a reader
    takes: record says so in one line (exit 2) instead of writing lines check would skip, and the file
    keeps what came before; the summary form records the same net."""
    (tmp_path / "wide.toml").write_text('description = "wide"\n[network]\nlayers = [2, 512, 512, 1]\n'
                                        '[data]\nset = "tiny"\nsamples = 16\n[train]\nlr = 0.01\n')
    out = tmp_path / "run.jsonl"
    result = biasmon_cli("record", "wide", "--presets", str(tmp_path), "--steps", "3", "--form", "vectors",
                         "-o", str(out))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "past the 8,388,608 a reader takes" in lines[0] and "--form sums" in lines[0]
    assert "step 0's line" in lines[0] and lines[0].endswith("the file holds no steps yet")
    assert json.loads(out.read_text().splitlines()[0])["format"] == "biasmon-stream"
    assert biasmon_cli("record", "wide", "--presets", str(tmp_path), "--steps", "3", "-o", str(out)).returncode == 0
    assert biasmon_cli("check", str(out)).returncode in (0, 1)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_during_record_keeps_every_step_it_names(tmp_path):
    import signal
    import time
    out = tmp_path / "run.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "biasmon", "record", "gradient", "--steps", "10000000",
                             "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a terminal
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 200_000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = int(re.search(r"holds every step up to (\d+)", err).group(1))
    records, reader = read_all(out)
    steps = [r.step for r in records if isinstance(r, StepRecord)]
    assert last > 0 and steps[:last + 1] == list(range(last + 1))
    assert len(steps) == last + 1  # every step written is counted
    assert len(reader.problems) <= 1  # at most the last line, cut off


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
def test_ctrl_c_just_after_a_line_is_written_is_counted(tmp_path, monkeypatch, capsys):
    """The signal lands between writing a step and counting it: the message still names that step."""
    import os
    import signal

    from biasmon import commands
    from biasmon.core.stream import RecordWriter

    written = []

    def write_then_interrupt(self, record):
        RecordWriter.write_json(self, record.to_json())
        if isinstance(record, StepRecord):
            written.append(record.step)
            if record.step == 50:
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(commands.RecordWriter, "write", write_then_interrupt)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (nohup ignores it)
    out = tmp_path / "run.jsonl"
    try:
        assert commands.record("gradient", str(out), steps=1000) == 130
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, outer)
    held = int(re.search(r"holds every step up to (\d+)", capsys.readouterr().err).group(1))
    steps = [r.step for r in read_all(out)[0] if isinstance(r, StepRecord)]
    assert held == steps[-1] == written[-1] >= 50


def test_recording_cut_at_random_bytes_reads_back_every_complete_line(tmp_path):
    full = tmp_path / "full.jsonl"
    result = biasmon_cli("record", "gradient", "--steps", "40", "-o", str(full))
    assert result.returncode == 0, result.stderr
    data = full.read_bytes()
    # where each step line ends (its last byte before the newline)
    ends, pos = [], 0
    for line in data.split(b"\n")[:-1]:
        pos += len(line) + 1
        if line.startswith(b"{") and b'"event"' not in line and b'"format"' not in line:
            ends.append(pos - 1)
    assert len(ends) == 40
    rng = random.Random(20240601)
    cuts = sorted(rng.sample(range(1, len(data)), 12)) + [0, len(data) - 1, len(data)]
    cuts += [e for e in ends[5:7]] + [e - 1 for e in ends[5:7]] + [data.index(b"}", ends[8] - 200) + 1]  # just after an inner }
    for cut in cuts:
        part = tmp_path / f"cut-{cut}.jsonl"
        part.write_bytes(data[:cut])
        records, reader = read_all(part)
        complete = sum(end <= cut for end in ends)
        steps = [r.step for r in records if isinstance(r, StepRecord)]
        assert steps == list(range(complete)), cut
        line_start = data.rfind(b"\n", 0, cut) + 1
        line_end = data.find(b"\n", cut) if data.find(b"\n", cut) >= 0 else len(data)
        mid_line = cut not in (line_start, line_end)  # the last line lost some of its bytes
        assert len(reader.problems) == (1 if mid_line else 0), (cut, reader.problems)


# --- core never imports textual ----------------------------------------------------------------------
def core_modules():
    return sorted(p.stem for p in CORE_DIR.glob("*.py") if p.stem != "__init__")


def test_core_never_imports_textual_in_a_fresh_interpreter():
    modules = ["biasmon", "biasmon.core"] + [f"biasmon.core.{m}" for m in core_modules()]
    assert {"biasmon.core.trainer", "biasmon.core.network", "biasmon.core.reader"} <= set(modules)
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
            "print('LOADED', len(sys.modules), bad)\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "LOADED" in result.stdout


def test_headless_commands_do_not_import_textual():
    code = ("import sys, io, contextlib\n"
            "from biasmon import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert cli.main(['presets']) == 0\n"
            "    assert cli.main(['compare', 'gradient', '--steps', '3']) == 0\n"
            "assert 'textual' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_core_source_never_mentions_textual_imports():
    pattern = re.compile(r"^\s*(import|from)\s+textual\b|import_module\(\s*['\"]textual|__import__\(\s*['\"]textual",
                         re.M)
    sources = sorted(CORE_DIR.glob("*.py"))
    assert len(sources) >= 10
    for path in sources:
        text = path.read_text()
        assert not pattern.search(text), path
        assert "textual" not in text, f"{path} mentions 'textual'"


def _biasmon(*args, timeout=20):
    return subprocess.run([sys.executable, "-m", "biasmon", *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def test_the_monitor_without_a_terminal_says_so_and_exits_2():
    """Before: Textual waited for keys on the closed input forever, burning a core."""
    proc = _biasmon("--steps", "100", timeout=10)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "standard input is not a terminal" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_bad_data_file_stops_the_monitor_before_it_starts(tmp_path):
    (tmp_path / "d.csv").write_text("x,y\n1,2\n")
    preset = tmp_path / "p.toml"
    preset.write_text('description = "bad data"\n[data]\npath = "d.csv"\ntargets = ["y"]\n')
    proc = _biasmon(preset, timeout=10)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "d.csv: 1 feature column(s) but the network has 2 input(s)" in proc.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_write_failure_while_recording_is_one_line_and_exit_2():
    proc = _biasmon("record", "gradient", "-o", "/dev/full", "--steps", "50")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "/dev/full: cannot write the recording (No space left on device)" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, line", [
    (["--steps", "abc"], "biasmon: error: argument --steps: invalid int value: 'abc'"),
    (["record", "gradient"], "biasmon: error: record: the following arguments are required: -o/--output"),
])
def test_a_bad_option_is_one_line_naming_the_command_once(args, line):
    proc = biasmon_cli(*args)
    assert proc.returncode == 2 and proc.stderr.strip() == line
