"""Mistakes on the command line get one line that says what was meant: a record stream given where a
preset is expected (and a preset given to check), a mistyped subcommand, an option the command does not
take (exit 2, no traceback)."""
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


def test_a_preset_given_to_check_is_named_as_a_preset(capsys, tmp_path, monkeypatch):
    """check of a preset's name (no such file here) or of a .toml file says to record it first; a missing
    stream keeps its plain message."""
    monkeypatch.chdir(tmp_path)
    line = error_line(capsys, ["check", "gradient"])
    assert line.startswith("biasmon: error: gradient: cannot read") and \
        "gradient looks like a preset" in line and "`biasmon record gradient -o run.jsonl`" in line
    preset = tmp_path / "mine.toml"
    preset.write_text('description = "mine"\n[network]\nlayers = [2, 8, 1]\n')
    assert "mine.toml looks like a preset" in error_line(capsys, ["check", preset])
    assert error_line(capsys, ["check", "nope.jsonl"]) == \
        "biasmon: error: nope.jsonl: cannot read (No such file or directory)"
    assert "looks like a preset" not in error_line(capsys, ["check", "nope.toml"])   # no such file: no preset
    assert "File name too long" in error_line(capsys, ["check", "a" * 300])   # the hint's own look-up fails quietly


@pytest.mark.parametrize("word, meant", [("chek", "check"), ("replya", "replay"), ("preset", "presets"),
                                         ("recrod", "record"), ("compar", "compare"), ("wach", "watch")])
def test_a_mistyped_subcommand_is_named_with_the_one_meant(capsys, streams, word, meant):
    line = error_line(capsys, [word, streams[0]])
    assert line == f"biasmon: error: unknown command '{word}' (did you mean '{meant}'?)"


def test_a_preset_or_file_named_like_a_subcommand_is_not_a_mistyped_subcommand(capsys, tmp_path, monkeypatch):
    (tmp_path / "chek.toml").write_text('description = "a preset named like check"\n')
    # --steps 0 stops the live monitor before it starts: the name got past the subcommand test
    assert "--steps must be" in error_line(capsys, ["chek", "--presets", tmp_path, "--steps", "0"])
    assert "--steps must be" in error_line(capsys, ["chek", f"--presets={tmp_path}", "--steps", "0"])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chek").write_text('description = "a preset file named like check"\n')
    assert "--steps must be" in error_line(capsys, ["chek", "--steps", "0"])


def test_a_word_neither_command_nor_preset_followed_by_an_argument_says_so(capsys, streams):
    line = error_line(capsys, ["foo", streams[0]])
    assert "'foo' is neither a command (presets, record, compare, replay, watch, check) nor a preset" in line
    assert error_line(capsys, ["gradient", "extra"]) == "biasmon: error: unrecognized arguments: extra"


@pytest.mark.parametrize("argv, line", [
    (["check", "-x"], "check: unknown option '-x'; biasmon check --help lists the options"),
    (["record", "-x"], "record: unknown option '-x'; biasmon record --help lists the options"),
    (["check", "FILE", "--sustian", "3"],
     "check: unknown option '--sustian' (did you mean '--sustain'?); biasmon check --help lists the options"),
    (["check", "FILE", "-x", "--foo=3"],
     "check: unknown options '-x', '--foo=3'; biasmon check --help lists the options"),
    (["-steps", "3"], "unknown option '-steps' (did you mean '--steps'?); biasmon --help lists the options"),
    (["compare", "--step", "3", "--nope"],
     "compare: unknown option '--nope'; biasmon compare --help lists the options"),
])
def test_an_unknown_option_is_named(capsys, streams, argv, line):
    argv = [streams[0] if a == "FILE" else a for a in argv]
    assert error_line(capsys, argv) == f"biasmon: error: {line}"


def test_values_that_start_with_a_dash_are_not_unknown_options(capsys, tmp_path, biasmon_cli):
    stream = tmp_path / "run.jsonl"
    assert biasmon_cli("record", "gradient", "-o", stream, "--steps", "30").returncode == 0
    proc = biasmon_cli("check", "--uphill-cos", "-0.5", "--quiet-uphill-cos=-0.4", stream)
    assert proc.returncode in (0, 1) and proc.stderr == "", proc.stderr
    proc = biasmon_cli("check", "--", stream)
    assert proc.returncode in (0, 1) and proc.stderr == "", proc.stderr
    proc = biasmon_cli("record", "gradient", f"-o{tmp_path / 'attached.jsonl'}", "--ste", "5")
    assert proc.returncode == 0 and (tmp_path / "attached.jsonl").exists(), proc.stderr
    # an abbreviation argparse accepts is not unknown, nor a negative value
    assert "got -1" in error_line(capsys, ["record", "gradient", "-o", tmp_path / "x.jsonl", "--see", "-1"])


def test_the_trial_repro_in_a_subprocess_has_no_traceback(tmp_path, streams, biasmon_cli):
    proc = biasmon_cli("chek", streams[0])
    assert proc.returncode == 2 and proc.stderr == "biasmon: error: unknown command 'chek' (did you mean 'check'?)\n"
    proc = biasmon_cli(streams[0])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "looks like a record stream" in proc.stderr


@pytest.mark.parametrize("name", [None, *cli.SUBCOMMANDS])
def test_every_argument_of_every_command_has_help(name):
    parser = cli._run_parser() if name is None else cli._sub_parser(name)
    assert all(action.help for action in parser._actions), \
        [action.dest for action in parser._actions if not action.help]


def test_record_help_says_what_each_argument_does(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["record", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in ("preset a preset name (biasmon presets lists them) or a .toml file",
                  "-o FILE, --output FILE write the record stream (JSON Lines) to FILE",
                  "--steps N train N steps (default: the preset's train.steps)",
                  "--seed S override the preset's train.seed"):
        assert words in text
