"""What `record` and `compare` print, read in this process."""
import contextlib
import io

from biasmon import commands
from biasmon.core.records import LayerDiagnosis
from biasmon.core.summary import RunSummary


def test_the_commands_print_to_stdout_as_it_is_when_called_not_at_import():
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert commands.list_presets([]) == 0
        assert commands.Progress(10).stream is err
    assert "gradient" in out.getvalue()


def summary_rows(text):
    return [line for line in text.splitlines() if " since step " in line]


def test_record_prints_bias_and_weight_rows_in_one_set_of_columns(tmp_path):
    out = io.StringIO()
    assert commands.record("gradient", str(tmp_path / "run.jsonl"), steps=30, out=out) == 0
    rows = summary_rows(out.getvalue())
    names = [r for r in rows if " weights " in r]
    assert len(rows) == 6 and len(names) == 3, out.getvalue()
    # every row's verdict ("ok") and "since step" start in the same column, bias rows and weight rows alike
    assert len({r.index(" ok ") for r in rows}) == 1, out.getvalue()
    assert len({r.index("since step") for r in rows}) == 1, out.getvalue()


def test_long_layer_names_verdicts_and_steps_widen_their_columns():
    def diag(verdict, since):
        return LayerDiagnosis(None, None, None, None, None, None, None, None, verdict, "why", since)
    summary = RunSummary()
    summary.verdicts = {"a": diag("ok", 4), "encoder.layers.11.attn": diag("gradient mismatch", 1_234_567)}
    summary.weight_verdicts = {"encoder.layers.11.attn": diag("a-verdict-longer-than-18", 5)}
    out = io.StringIO()
    commands.print_summary(summary, out)
    rows = summary_rows(out.getvalue())
    assert len(rows) == 3
    assert len({r.index("since step") for r in rows}) == 1, out.getvalue()
    assert len({r.index(" why") for r in rows}) == 1, out.getvalue()
    assert "  encoder.layers.11.attn weights a-verdict-longer-than-18 since step 5       why" in rows
