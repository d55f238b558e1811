"""A script run inside a checkout imports the checkout's biasmon/ (first on sys.path), whose core/, tui/
and presets/ lie beside it, not inside it as installed: biasmon then finds them there."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]  # as a plain install
from biasmon.core import Trainer, load_preset
import biasmon.core, biasmon.tui.app
trainer = Trainer(load_preset("gradient"), steps=5)
trainer.advance(5)
print(biasmon.core.__file__, trainer.step_index)
"""


def test_a_script_in_a_checkout_imports_the_checkouts_subpackages(tmp_path):
    for folder in ("biasmon", "core", "tui", "presets"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "script.py").write_text(SCRIPT)
    out = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-800:]
    where, steps = out.stdout.split()
    assert Path(where) == tmp_path / "core" / "__init__.py" and steps == "5"
