"""The framework helpers stay optional: importing biasmon (and its TUI, and the helpers' modules) loads
neither torch, Lightning, transformers, JAX, optax nor Keras, and biasmon.lightning without Lightning
(biasmon.huggingface without transformers) says what to install in one line (biasmon.optax_monitor's:
tests/unit/test_optax.py)."""
import subprocess
import sys

import pytest

from biasmon import huggingface as biasmon_huggingface
from biasmon import lightning as biasmon_lightning
from biasmon.core.errors import BiasmonError


def test_importing_biasmon_and_its_tui_loads_no_framework():
    code = ("import sys, biasmon, biasmon.tui.app, biasmon.lightning, biasmon.huggingface, biasmon.optax_monitor, "
            "biasmon.keras_monitor; "
            "print(sorted(m for m in ('torch', 'lightning', 'pytorch_lightning', 'transformers', 'accelerate', "
            "'jax', 'optax', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_without_lightning_the_callback_is_a_one_line_error_naming_the_package(monkeypatch):
    monkeypatch.setattr(biasmon_lightning, "PACKAGES", ("no_such_lightning_package",))
    monkeypatch.setattr(biasmon_lightning, "_classes", {})
    with pytest.raises(BiasmonError) as caught:
        biasmon_lightning.BiasmonCallback
    assert "pip install lightning" in str(caught.value) and "\n" not in str(caught.value)


def test_without_transformers_the_trainer_callback_is_a_one_line_error_naming_the_extra(monkeypatch):
    monkeypatch.setattr(biasmon_huggingface, "PACKAGE", "no_such_transformers_package")
    monkeypatch.setattr(biasmon_huggingface, "_classes", {})
    with pytest.raises(BiasmonError) as caught:
        biasmon_huggingface.BiasmonTrainerCallback
    assert "pip install biasmon[huggingface]" in str(caught.value) and "\n" not in str(caught.value)
