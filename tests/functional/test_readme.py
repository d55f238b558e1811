"""README tells the truth: two set-up commands, the test one is what CI runs; keys and presets listed."""
import re
from pathlib import Path

from biasmon.core import presets
from biasmon.tui.app import BiasmonApp

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def setup_commands():
    return [line for line in re.findall(r"```sh\n(.*?)\n```", README, re.S)]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    commands = setup_commands()
    assert len(commands) == 2
    run, test = commands
    assert run.endswith("biasmon") and "pytest" in test
    assert test in (ROOT / ".ci" / "run").read_text()


def test_readme_lists_every_key_binding_and_every_preset():
    keys_section = README.split("## Keys", 1)[1].split("##", 1)[0]
    for binding in BiasmonApp.BINDINGS:
        if binding.key.isdigit():
            continue
        shown = {"space": "space", "left": "←", "right": "→", "minus": "-", "plus,equals_sign": "+"}.get(
            binding.key, binding.key)
        assert f"| {shown}" in keys_section or f"/ {shown}" in keys_section or f"{shown} |" in keys_section, binding.key
    for name in presets.discover():
        assert f"`{name}`" in README, name
