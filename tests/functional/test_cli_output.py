"""What `record` and `compare` print, read in this process."""
import contextlib
import io

from biasmon import commands


def test_the_commands_print_to_stdout_as_it_is_when_called_not_at_import():
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert commands.list_presets([]) == 0
        assert commands.Progress(10).stream is err
    assert "gradient" in out.getvalue()
