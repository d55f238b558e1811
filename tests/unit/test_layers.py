"""The layering contracts in pyproject.toml ([tool.importlinter]) hold: core never imports Textual, plotext
or the CLI side, and the TUI uses core's public names only. lint-imports reads the package as it is
installed (biasmon/, with core/ and tui/ as biasmon.core and biasmon.tui), so the test lays it out so."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def staged(tmp_path):
    package = tmp_path / "biasmon"
    shutil.copytree(ROOT / "biasmon", package, ignore=shutil.ignore_patterns("__pycache__"))
    for sub in ("core", "tui"):
        shutil.copytree(ROOT / sub, package / sub, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def lint(tmp_path, leak=None):
    """lint-imports on the staged package; leak: (module file name, source) added to biasmon/core first."""
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if lint_imports is None:
        pytest.fail("lint-imports is not installed (it is in the test extra: pip install -e '.[test]')")
    root = staged(tmp_path)
    if leak:
        (root / "biasmon" / "core" / leak[0]).write_text(leak[1])
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([lint_imports, "--no-cache", str(ROOT / "pyproject.toml")], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)


def test_the_import_contracts_hold(tmp_path):
    proc = lint(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 kept, 0 broken" in proc.stdout


def test_a_broken_contract_is_caught(tmp_path):
    """The check can fail: core importing Textual breaks the first contract."""
    proc = lint(tmp_path, ("leak.py", "import textual\n"))
    assert proc.returncode == 1 and "biasmon.core.leak -> textual" in proc.stdout, proc.stdout
