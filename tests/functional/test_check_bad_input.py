"""`biasmon check` on bad input: malformed lines are counted and named by line number and never crash;
unreadable input (missing file, unknown version, nothing to check) exits 2 with one line, no traceback."""
import json
import os

import pytest

LAYERS = {"hidden": 3, "out": 1}


def step_line(t, scale=1.0, **override):
    """A correct SGD step of a tiny quadratic: b -> b - 0.1 * g with g = b - target."""
    target = {"hidden": [0.5, -0.2, 0.1], "out": [0.3]}
    b = {k: [tv + (0.9 ** t) * (1.0 + i) * scale for i, tv in enumerate(v)] for k, v in target.items()}
    g = {k: [bv - tv for bv, tv in zip(b[k], target[k])] for k in b}
    line = {"step": t, "loss": 0.5 * sum(x * x for v in g.values() for x in v) + 0.01, "biases": b, "bias_grads": g}
    line.update(override)
    return json.dumps(line)


def good_lines(n=60):
    return [step_line(t) for t in range(n)]


def write(tmp_path, lines, name="run.jsonl", end="\n"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + end)
    return path


def one_error_line(proc):
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("biasmon: error: ")
    return lines[0]


def test_a_clean_stream_is_ok(tmp_path, biasmon_cli):
    proc = biasmon_cli("check", write(tmp_path, good_lines()))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""


def test_malformed_lines_are_counted_with_their_line_numbers_and_never_crash(tmp_path, biasmon_cli):
    lines = good_lines()
    bad = {
        5: "this is not json",
        9: json.dumps([1, 2, 3]),
        12: step_line(11, biases="not an object"),
        15: step_line(14, biases={"hidden": [1, "x", 3], "out": [0.1]}),
        21: step_line(20, bias_grads={"hidden": [True, 0.0, 0.0], "out": [0.0]}),  # a boolean is not a number
        24: step_line(23, step="24"),
        27: step_line(26, loss="low"),
        30: json.dumps({"step": 29, "biases": {"hidden": [0.1, 0.2, 0.3], "out": [0.1]}}),  # no loss
        33: step_line(32, biases={"hidden": [], "out": [0.1]}),
    }
    for line_no, text in bad.items():
        lines[line_no - 1] = text
    proc = biasmon_cli("check", "--json", write(tmp_path, lines))
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["malformed"]["count"] == len(bad)
    assert result["malformed"]["lines"] == sorted(bad)
    warnings = proc.stderr.strip().splitlines()
    assert len(warnings) == len(bad)
    for warning, line_no in zip(warnings, sorted(bad)):
        assert warning.startswith(f"biasmon: warning: {tmp_path / 'run.jsonl'}: line {line_no}: ")
    text = proc.stderr
    assert "'bias_grads.hidden[0]' must be a number" in text
    assert "'biases.hidden[1]' must be a number" in text
    assert "'loss' is missing" in text
    assert "'biases.hidden' is empty" in text
    assert result["steps"] == 60 - len(bad)


@pytest.mark.parametrize("strict", [[], ["--strict"]])
def test_a_layer_changing_size_within_a_run_is_unreadable_input(tmp_path, biasmon_cli, strict):
    lines = good_lines()
    lines[17] = step_line(17, biases={"hidden": [1.0, 2.0], "out": [0.1]})
    proc = biasmon_cli("check", *strict, write(tmp_path, lines))
    assert proc.returncode == 2
    error = one_error_line(proc)
    assert "line 18: the layers changed within a run: hidden[3], out[1] before, hidden[2], out[1] here" in error


def test_a_stream_without_bias_layers_is_unreadable_input(tmp_path, biasmon_cli):
    proc = biasmon_cli("check", write(tmp_path, ['{"step":0,"loss":1,"biases":{}}', '{"step":1,"loss":1,"biases":{}}']))
    assert proc.returncode == 2 and "no bias layers" in one_error_line(proc)
    declared = ['{"format":"biasmon-stream","version":1,"layers":[]}', '{"step":0,"loss":1,"biases":{}}']
    assert biasmon_cli("check", write(tmp_path, declared)).returncode == 0  # a net without biases, said so


def test_the_table_lists_malformed_lines_compactly_and_strict_makes_them_fatal(tmp_path, biasmon_cli):
    lines = good_lines()
    for i in (10, 11, 12, 40):
        lines[i - 1] = "{broken"
    path = write(tmp_path, lines)
    proc = biasmon_cli("check", path)
    assert proc.returncode == 0
    assert "malformed or non-finite lines: 4 (line 10-12, 40)" in proc.stdout
    strict = biasmon_cli("check", "--strict", path)
    assert strict.returncode == 2
    assert "4 malformed line(s) (--strict); first: line 10: not JSON" in strict.stderr.splitlines()[-1]


def test_strict_judges_a_divergence_written_as_non_finite_values_and_refuses_only_malformed_lines(tmp_path, biasmon_cli):
    """NaN and Infinity after a blow-up are valid in the format (a trainer's divergence): --strict reports
    the run, exit 1 for the divergence; only a malformed line makes it unreadable (exit 2), named first."""
    lines = good_lines()
    for i in range(50, 60):
        lines[i] = step_line(i, loss=float("nan"), bias_grads={"hidden": [float("inf")] * 3, "out": [float("nan")]})
    path = write(tmp_path, lines)
    proc = biasmon_cli("check", "--strict", path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "DIVERGED at step 50" in proc.stdout and "malformed or non-finite lines: 10 (line 51-60)" in proc.stdout
    as_json = biasmon_cli("check", "--strict", "--json", path)
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["malformed"]["unreadable"] == 0
    lines[5] = "{broken"
    strict = biasmon_cli("check", "--strict", write(tmp_path, lines))
    assert strict.returncode == 2
    assert "1 malformed line(s) (--strict); first: line 6: not JSON" in strict.stderr.splitlines()[-1]


def test_many_malformed_lines_are_listed_ten_then_counted(tmp_path, biasmon_cli):
    lines = good_lines(80)
    for i in range(20, 45):
        lines[i] = "nope"
    proc = biasmon_cli("check", write(tmp_path, lines))
    warnings = proc.stderr.strip().splitlines()
    assert len(warnings) == 11 and warnings[-1].endswith("15 more warning(s) like these, 25 line(s) in all")


def test_non_finite_numbers_read_as_divergence(tmp_path, biasmon_cli):
    lines = good_lines()
    lines[40] = step_line(40, bias_grads={"hidden": [None, 0.0, 0.0], "out": [0.0]})
    lines[41] = step_line(41, loss=None)
    lines[42] = lines[42].replace('"loss": ', '"loss": NaN, "x": ', 1)
    proc = biasmon_cli("check", "--json", write(tmp_path, lines))
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["diverged"]["step"] == 40 and "bias_grads" in result["diverged"]["reason"]
    assert result["malformed"]["lines"] == [41, 42, 43]
    assert "line 41: non-finite value in 'bias_grads': read as divergence" in proc.stderr


def test_a_truncated_last_line_is_skipped_with_a_warning(tmp_path, biasmon_cli):
    lines = good_lines()
    lines.append(step_line(60)[:37])
    proc = biasmon_cli("check", write(tmp_path, lines, end=""))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr.strip() == f"biasmon: warning: {tmp_path / 'run.jsonl'}: line 61: not JSON (truncated or malformed line)"


def test_an_unknown_format_version_is_unreadable(tmp_path, biasmon_cli):
    header = json.dumps({"format": "biasmon-stream", "version": 99})
    proc = biasmon_cli("check", write(tmp_path, [header] + good_lines()))
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "line 1: stream format version 99 is not supported; this biasmon reads versions 1, 2" in line
    assert str(tmp_path / "run.jsonl") in line


def test_a_known_header_is_accepted(tmp_path, biasmon_cli):
    header = json.dumps({"format": "biasmon-stream", "version": 1, "run_id": "x"})
    assert biasmon_cli("check", write(tmp_path, [header] + good_lines())).returncode == 0


@pytest.mark.parametrize("content,message", [
    ("", "no step lines to check (empty stream)"),
    ("\n\n", "no step lines to check (2 line(s), none a readable step line)"),
    ("garbage\n{\"a\": 1}\n", "no step lines to check (2 line(s), none a readable step line); first problem: "
                              "line 1: not JSON (truncated or malformed line)"),
])
def test_nothing_to_check_is_unreadable(tmp_path, biasmon_cli, content, message):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    proc = biasmon_cli("check", path)
    assert proc.returncode == 2
    assert one_error_line(proc) == f"biasmon: error: {path}: {message}"


def test_a_missing_file_is_unreadable(tmp_path, biasmon_cli):
    proc = biasmon_cli("check", tmp_path / "nope.jsonl")
    assert proc.returncode == 2
    assert one_error_line(proc) == f"biasmon: error: {tmp_path / 'nope.jsonl'}: cannot read (No such file or directory)"


def test_a_directory_is_unreadable(tmp_path, biasmon_cli):
    proc = biasmon_cli("check", tmp_path)
    assert proc.returncode == 2
    assert f"{tmp_path}: cannot read" in one_error_line(proc)


def test_binary_garbage_never_crashes(tmp_path, biasmon_cli):
    path = tmp_path / "bin.jsonl"
    path.write_bytes(b"\xff\xfe\x00garbage\n" + "\n".join(good_lines()).encode() + b"\n\x80\x81\n")
    proc = biasmon_cli("check", path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert "line 1: not JSON" in proc.stderr and "line 62: not JSON" in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--window", "0"], "--window must be a whole number from 1 to 1,000,000,000, got 0"),
    (["--window", "9" * 20], "--window must be a whole number from 1 to 1,000,000,000, got 999"),
    (["--uphill-cos", "nan"], "--uphill-cos must be a finite number, got nan"),
    (["--uphill-cos", "-3"], "--uphill-cos must be between -1 and 1, got -3.0"),
    (["--explode-norm", "-1"], "--explode-norm must be >= 0, got -1.0"),
    (["--sustain", "0"], "--sustain must be a whole number from 1 to 1,000,000,000, got 0"),
    (["--momentum-betas", "0.9,2"], "each momentum factor must be in [0, 1)"),
    (["--frozen-steps", "many"], "invalid int value: 'many'"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, biasmon_cli, args, message):
    proc = biasmon_cli("check", write(tmp_path, good_lines()), *args)
    assert proc.returncode == 2
    assert message in one_error_line(proc)


def test_a_diverged_event_naming_no_layer_in_text_is_read_not_a_traceback(tmp_path, biasmon_cli):
    """Python's json reads NaN; a diverged event whose layer is NaN once crashed `check --json`."""
    lines = good_lines(10) + ['{"event": "diverged", "step": 9, "layer": NaN, "reason": 3}']
    proc = biasmon_cli("check", "--json", write(tmp_path, lines))
    assert "Traceback" not in proc.stderr and proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["diverged"] == {"step": 9, "layer": None, "reason": None}


def test_text_from_the_stream_is_escaped_and_cannot_forge_a_line(tmp_path, biasmon_cli):
    evil = "\x1b[31mEVIL\x1b[0m\nresult: ok"
    lines = [json.dumps({"step": t, "loss": 1.0 + t, "biases": {evil: [float(t), 1.0]},
                         "bias_grads": {evil: [1.0, 0.0]}}) for t in range(30)]  # climbing
    lines.insert(3, json.dumps({"step": 2, "loss": 1.0, "biases": {evil: ["x", 1.0]}}))  # a warning naming it
    proc = biasmon_cli("check", write(tmp_path, lines))
    assert "\x1b" not in proc.stdout + proc.stderr
    assert [line for line in proc.stdout.splitlines() if line.startswith("result:")] == ["result: PROBLEM: "
                                                                                         "\\x1b[31mEVIL\\x1b[0m\\nresult: ok uphill"]
    assert "\\x1b[31mEVIL" in proc.stderr and proc.stderr.count("\n") == 1


def test_a_preset_key_with_control_characters_is_escaped_in_the_error(tmp_path, biasmon_cli):
    preset = tmp_path / "p.toml"
    preset.write_text('description = "x"\n"bad\\nkey\\u001b[31m" = 1\n')
    proc = biasmon_cli("record", preset, "-o", tmp_path / "out.jsonl", "--steps", "2")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "\x1b" not in proc.stderr and "bad\\nkey\\x1b[31m" in proc.stderr


@pytest.mark.parametrize("command", ["check", "replay"])
def test_a_pipe_or_a_device_is_refused_at_once_not_read_forever(tmp_path, biasmon_cli, command):
    """A FIFO blocked until a writer came; /dev/zero was read as one endless line (gigabytes)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        proc = biasmon_cli(command, path)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, (path, proc.stderr)
        assert "not a regular file" in proc.stderr


def test_huge_step_count_options_cost_memory_only_as_the_stream_needs(tmp_path):
    """--unrelated-steps 10^8 on a 60-step stream: the running sums grow with the steps read, not with the
    option (they were allocated for the option at once: a 4.5 GB MemoryError traceback)."""
    import resource
    import subprocess
    import sys

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    proc = subprocess.run([sys.executable, "-m", "biasmon", "check", str(write(tmp_path, good_lines())),
                           "--unrelated-steps", "100000000", "--window", "50000000"],
                          capture_output=True, text=True, preexec_fn=cap, timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr


def test_with_json_an_error_is_also_one_json_object_on_stdout(tmp_path, biasmon_cli):
    proc = biasmon_cli("check", "--json", str(tmp_path / "missing.jsonl"))
    assert proc.returncode == 2 and "cannot read" in one_error_line(proc)
    out = json.loads(proc.stdout)
    assert out["exit"] == 2 and "missing.jsonl" in out["error"] and "cannot read" in out["error"]


@pytest.mark.parametrize("args,says", [(("--json", "--sustain", "x", "run.jsonl"), "invalid int value: 'x'"),
                                       (("--jso", "--bogus", "run.jsonl"), "unknown option '--bogus'"),
                                       (("--json",), "required: file")])
def test_with_json_a_bad_option_is_also_one_json_object_on_stdout(tmp_path, biasmon_cli, args, says):
    proc = biasmon_cli("check", *args)
    assert proc.returncode == 2 and says in one_error_line(proc)
    out = json.loads(proc.stdout)
    assert out["exit"] == 2 and says in out["error"]


def test_without_json_a_bad_option_prints_nothing_on_stdout(biasmon_cli):
    proc = biasmon_cli("check", "--sustain", "x", "run.jsonl")
    assert proc.returncode == 2 and proc.stdout == "" and "invalid int value" in one_error_line(proc)


def test_check_dash_with_a_terminal_for_standard_input_says_so_instead_of_waiting():
    import os
    import pty
    import subprocess
    import sys
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "biasmon", "check", "-"], stdin=secondary, capture_output=True,
                              text=True, timeout=60)
    finally:
        os.close(primary)
        os.close(secondary)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "check -: standard input is a terminal; pipe a stream into it" in proc.stderr
