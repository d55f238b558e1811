"""Mistakes on the command line get one line that says what was meant: a record stream given where a
preset is expected (exit 2, no traceback)."""
import json

import pytest

from biasmon import cli

HEADER = {"format": "biasmon-stream", "version": 1, "run_id": "r", "layers": [{"name": "out", "size": 1}]}
STEP = {"step": 0, "loss": 1.0, "biases": {"out": [0.5]}, "bias_grads": {"out": [0.1]}}


def error_line(capsys, argv):
    """Run biasmon in this process; its one stderr line (exit 2 asserted)."""
    assert cli.main([str(a) for a in argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("biasmon: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


@pytest.fixture
def streams(tmp_path):
    """A stream named .jsonl, one named otherwise (a step line first), a .jsonl with no biasmon header."""
    named = tmp_path / "small.jsonl"
    named.write_text(json.dumps(HEADER) + "\n" + json.dumps(STEP) + "\n")
    other = tmp_path / "run.log"
    other.write_text("\n  " + json.dumps(STEP) + "\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    return named, other, empty


@pytest.mark.parametrize("which", [0, 1, 2])
@pytest.mark.parametrize("command", [[], ["record", "-o", "out.jsonl"], ["compare", "gradient"]])
def test_a_stream_given_as_a_preset_is_named_as_a_stream(capsys, streams, which, command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = streams[which]
    line = error_line(capsys, [*command, path])
    assert f"{path}: looks like a record stream (JSON Lines), not a preset" in line
    for sub in ("replay", "check", "watch"):
        assert f"`biasmon {sub} {path}`" in line
    assert not (tmp_path / "out.jsonl").exists()


def test_a_stream_too_big_for_a_preset_is_named_as_a_stream_not_as_too_big(capsys, tmp_path):
    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps({**STEP, "biases": {"out": [0.5] * 300_000}}) + "\n")
    line = error_line(capsys, [big])
    assert "looks like a record stream" in line and "characters" not in line


def test_the_suggested_commands_quote_a_path_with_spaces(capsys, tmp_path):
    path = tmp_path / "my run.jsonl"
    path.write_text(json.dumps(STEP) + "\n")
    assert f"`biasmon check '{path}'`" in error_line(capsys, [path])


def test_a_toml_preset_is_still_a_preset_and_a_bad_one_keeps_its_message(capsys, tmp_path, biasmon_cli):
    good = tmp_path / "p.toml"
    good.write_text('description = "a preset"\n')
    proc = biasmon_cli("record", good, "-o", tmp_path / "o.jsonl", "--steps", "3")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("this is not toml\n")
    assert "invalid TOML" in error_line(capsys, ["record", bad, "-o", tmp_path / "o.jsonl"])


def test_the_trial_repro_in_a_subprocess_has_no_traceback(streams, biasmon_cli):
    proc = biasmon_cli(streams[0])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "looks like a record stream" in proc.stderr
