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


def test_layers_merge_in_network_order():
    assert commands.merge_orders([["hidden1", "output"], ["hidden1", "hidden2", "output"]]) == \
        ["hidden1", "hidden2", "output"]
    assert commands.merge_orders([["hidden1", "output"], ["hidden1", "hidden2", "hidden3", "output"],
                                  ["hidden1", "hidden2", "output"]]) == ["hidden1", "hidden2", "hidden3", "output"]
    assert commands.merge_orders([["a", "b"], ["c", "d"]]) == ["a", "b", "c", "d"]
    assert commands.merge_orders([]) == []


def compare_table(*names, extra_dirs=()):
    out = io.StringIO()
    assert commands.compare(list(names), steps=30, extra_dirs=list(extra_dirs), out=out) == 0
    lines = out.getvalue().splitlines()
    header, rows = lines[0], {line.split()[0]: line for line in lines[2:] if line and not line.startswith("layer")}
    return header, rows, out.getvalue()


def cell(header, row, column):
    """The text of `row` under the header's `column` (up to the next column's start)."""
    start = header.index(column)
    rest = [header.index(c) for c in header.split("  ") if c and header.index(c) > start]
    return row[start:min(rest, default=len(row))].strip()


def test_compare_puts_layers_in_network_order_and_says_where_a_network_has_no_such_layer(tmp_path):
    (tmp_path / "mine.toml").write_text('description = "a 2-8-1 net"\n[network]\nlayers = [2, 8, 1]\n')
    header, rows, text = compare_table("mine", "gradient", "none", extra_dirs=[tmp_path])
    assert header.index("hidden1 b / w") < header.index("hidden2 b / w") < header.index("output b / w"), text
    assert cell(header, rows["mine"], "hidden2 b / w") == "no such layer", text
    assert cell(header, rows["mine"], "output b / w").endswith(" / ok @4"), text
    assert cell(header, rows["gradient"], "hidden2 b / w") == "ok @4 / ok @4", text
    # biases off is not a missing layer: the weights still have their verdict
    assert cell(header, rows["none"], "hidden2 b / w") == "no bias / ok @4", text
    assert "no such layer: the preset's network has no layer of that name" in text


def test_a_table_lines_up_names_with_control_and_wide_characters_as_printed():
    """A layer named with a zero-width space and an escape sequence is printed escaped (\\u200b, \\x1b):
    its column was as wide as the raw name, one cell short; a wide character takes two columns."""
    from biasmon.text import table
    lines = table([("layer", "verdict"), ("层\u200b/\x1b[31mred", "ok"), ("o", "ok")])
    assert lines[2] == "层\\u200b/\\x1b[31mred  ok"
    assert lines[3] == "o" + " " * 19 + "  ok"
    assert lines[1] == "-" * 20 + "  " + "-" * 7
    assert table([("layer", "v"), ("cafe\u0301", "ok")])[2] == "cafe\u0301" + " " * 3 + "ok"   # the mark: no column
