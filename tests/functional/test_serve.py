"""`biasmon --serve`: without textual-serve a one-line error naming the extra; bad options are errors before
anything is served; with textual-serve and chromium, the page shows the monitor (bench/serve_screenshot.py
in a real headless browser)."""
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WITHOUT_TEXTUAL_SERVE = "import sys; sys.modules['textual_serve'] = None\nfrom biasmon.cli import main\nsys.exit(main(sys.argv[1:]))"


def run(code_args, timeout=60):
    return subprocess.run([sys.executable, *code_args], capture_output=True, text=True, timeout=timeout)


def test_without_textual_serve_it_is_a_one_line_error_naming_the_extra():
    result = run(["-c", WITHOUT_TEXTUAL_SERVE, "--serve", "--port", "1"])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "biasmon[serve]" in lines[0] and "textual-serve" in lines[0], result.stderr
    assert "serving" not in result.stdout


@pytest.mark.parametrize("args, words", [
    (["nope", "--serve"], "'nope'"),
    (["--serve", "--record", "run.jsonl"], "--record"),
    (["--serve", "--port", "70000"], "--port"),
])
def test_bad_options_are_errors_before_serving(tmp_path, args, words):
    result = subprocess.run([sys.executable, "-m", "biasmon", *args], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0]
    assert not (tmp_path / "run.jsonl").exists()


CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.skipif(importlib.util.find_spec("textual_serve") is None,
                    reason="textual-serve is not installed (pip install 'biasmon[serve]')")
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on the PATH (apt-get install chromium)")
def test_the_served_page_shows_the_monitor_in_headless_chromium(tmp_path):
    png = tmp_path / "serve.png"
    result = run([str(ROOT / "bench" / "serve_screenshot.py"), "-o", str(png), "--size", "1024x640",
                  "--wait", "2", "--timeout", "40", "--chromium", CHROMIUM, "--", "--rate", "100"], timeout=55)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the page shows biasmon" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
