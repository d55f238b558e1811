"""Issue 10, streams: what json cannot take, lines past the length or layer limits, deep nesting in a parsed-ahead
line, pipes and devices: a skipped and counted line or a one-line error, bounded memory, never a traceback."""
import io
import json
import os
import resource
import subprocess
import sys

import pytest

from biasmon.core import MAX_LINE_CHARS, StreamReader
from biasmon.core.check import check_stream
from biasmon.core.errors import BiasmonError
from biasmon.tui.watch import PipeStream, follow, open_stream


def line(t, **extra):
    b = 1.0 - 0.1 * t
    return json.dumps({"step": t, "loss": b * b, "biases": {"h": [b, b], "o": [b]},
                       "bias_grads": {"h": [b, b], "o": [b]}, **extra})


def write(tmp_path, lines, name="run.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_integers_of_4301_digits_anywhere_are_a_skipped_line(tmp_path):
    lines = [line(t) for t in range(8)]
    lines[3] = line(3, note=int("7" * 400)).replace("7" * 400, "7" * 4400)
    result = check_stream(write(tmp_path, lines))
    assert result.malformed.lines == [4] and "4300 digits" in result.malformed.messages[0]


def test_a_401_digit_error_in_a_gradient_check_reads_as_a_mismatch(tmp_path):
    lines = [line(t) for t in range(8)]
    lines.insert(2, '{"event": "gradient_check", "step": 2, "errors": {"h": %s, "o": 0}}' % ("9" * 401))
    result = check_stream(write(tmp_path, lines))
    assert result.layers["h"].verdict == "gradient mismatch" and result.exit == 1


def test_a_deeply_nested_diag_parsed_in_a_second_process(tmp_path):
    """The parsing process once failed to send back a line nested 960 deep (MaybeEncodingError). Run in a
    fresh interpreter: how deep json can read depends on the stack already in use."""
    lines = [line(t) for t in range(30)]
    lines[5] = line(5, diag="@").replace('"@"', "[" * 960 + "]" * 960)
    lines[6] = line(6, diag={"h": {"verdict": "ok", "cos": [[[[1]]]]}}, loss_change={"predicted": [[[]]]})
    path = write(tmp_path, lines)
    code = ("import sys; from biasmon.core.check import check_stream as c; p = sys.argv[1]; "
            "a, b = c(p, parallel=True), c(p, parallel=False); assert a == b, (a, b); print(a.steps)")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "30", proc.stderr[-2000:]


def test_a_line_past_the_length_limit_is_skipped_and_counted(tmp_path):
    lines = [line(t) for t in range(8)]
    lines[2] = line(2).replace('"h": [', '"h": [' + "0.5, " * (MAX_LINE_CHARS // 5), 1)
    result = check_stream(write(tmp_path, lines))
    assert result.malformed.lines == [3] and f"longer than {MAX_LINE_CHARS:,}" in result.malformed.messages[0]
    assert result.steps == 7


def test_a_line_with_too_many_layers_is_skipped_with_a_short_message(tmp_path):
    lines = [line(t) for t in range(8)]
    lines[2] = json.dumps({"step": 2, "loss": 1.0, "biases": {f"layer{i}": [0.0] for i in range(20000)}})
    result = check_stream(write(tmp_path, lines))
    assert result.malformed.lines == [3] and "at most 1,000" in result.malformed.messages[0]
    assert len(result.malformed.messages[0]) < 400


def test_a_warning_about_a_layer_mismatch_does_not_list_every_layer():
    reader = StreamReader()
    many = {f"layer{i}": [0.0] for i in range(900)}
    reader.feed(json.dumps({"step": 0, "loss": 1.0, "biases": many}))
    reader.feed(json.dumps({"step": 1, "loss": 1.0, "biases": many, "bias_grads": {"x": [0.0]}}))
    message = str(reader.problems[0])
    assert len(reader.problems) == 1 and len(message) < 400 and "(900 layers)" in message


def _capped(limit):
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="POSIX")
def test_an_endless_line_on_standard_input_is_read_in_bounded_memory():
    """400 MB of NUL bytes and no newline (as `check - </dev/zero` reads) under a 350 MB address-space cap."""
    feeder = subprocess.Popen(["head", "-c", "400000000", "/dev/zero"], stdout=subprocess.PIPE)
    proc = subprocess.run([sys.executable, "-m", "biasmon", "check", "-"], stdin=feeder.stdout, capture_output=True,
                          text=True, timeout=120, preexec_fn=_capped(350 << 20))
    feeder.stdout.close()
    feeder.kill()
    feeder.wait()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-500:]
    assert "longer than" in proc.stderr and proc.stderr.count("\n") == 1


def test_watch_skips_a_line_past_the_limit_as_it_grows():
    text = "\0" * (MAX_LINE_CHARS + 10) + "\n" + line(0) + "\n" + line(1) + "\n"
    reader = StreamReader()
    reads = [r for r in follow(PipeStream(io.StringIO(text)), reader) if r is not None]
    assert [p.line for p in reader.problems] == [1] and "longer than" in reader.problems[0].message
    assert sum(1 for r in reads for rec in r.records if hasattr(rec, "loss")) == 2


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"), reason="POSIX")
def test_watch_of_a_pipe_or_a_device_says_what_is_wrong(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    for path in (tmp_path / "fifo", "/dev/zero"):
        with pytest.raises(BiasmonError, match="not a regular file .a pipe or a device.*biasmon watch -"):
            open_stream(str(path))
