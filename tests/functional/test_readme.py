"""README tells the truth: two set-up commands, the test one is what CI runs; keys and presets listed."""
import re
from pathlib import Path

from biasmon.core import StepRecord, Trainer, load_preset, presets
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
        shown = {"space": "space", "left": "←", "right": "→", "minus": "-", "plus,equals_sign": "+",
                 "question_mark": "?"}.get(
            binding.key, binding.key)
        assert f"| {shown}" in keys_section or f"/ {shown}" in keys_section or f"{shown} |" in keys_section, binding.key
    for name in presets.discover():
        assert f"`{name}`" in README, name


def walkthrough_text():
    return " ".join(README.split("## A two-minute walkthrough", 1)[1].split("## Keys", 1)[0].split())


def flipped_run(flip_at, scale_at=None, unflip_at=None, until=4000):
    """The default preset, as the walkthrough plays it: f at step flip_at, [ [ at scale_at, f at unflip_at.
    The step it diverged at (None: it did not before `until`) and the records of each step."""
    trainer = Trainer(load_preset("gradient"), steps=until)
    records, diverged = {}, None
    plan = sorted((at, what) for at, what in ((flip_at, "flip"), (scale_at, "scale"), (unflip_at, "unflip"))
                  if at is not None)
    for at, what in plan + [(until, "end")]:
        for record in trainer.advance(at - trainer.step_index):
            if isinstance(record, StepRecord):
                records[record.step] = record
            elif record.kind == "diverged":
                diverged = record.step
        if trainer.done:
            break
        if what == "scale":
            trainer.bias_lr_scale = 0.25
        elif what in ("flip", "unflip"):
            trainer.flip_sign = what == "flip"
    return diverged, records


def all_verdicts(record, verdict):
    return all(d.verdict == verdict for d in record.diag.values())


def test_the_walkthrough_holds_at_its_rate_for_a_flip_from_2_to_50_seconds_in():
    text = walkthrough_text()
    rate = int(re.search(r"`biasmon --rate (\d+)`", text).group(1))
    low, high = map(int, re.search(r"the run diverges (\d+) to (\d+) steps after the flip", text).groups())
    later = int(re.search(r"four times smaller, (\d+) steps after it or later", text).group(1))
    for flip_at in (2 * rate, 5 * rate, 10 * rate, 20 * rate, 50 * rate):
        diverged, records = flipped_run(flip_at)
        assert low <= diverged - flip_at <= high, (flip_at, diverged)  # step 4: left alone
        assert all_verdicts(records[flip_at + 12], "uphill")         # step 2: about a dozen steps later
        scale_at = flip_at + 5 * rate                                 # step 3: [ [ within a few seconds
        diverged, records = flipped_run(flip_at, scale_at)
        assert diverged - flip_at >= later and all_verdicts(records[diverged - 1], "uphill")
        unflip_at = scale_at + 10 * rate                              # step 4: f again, ten seconds on
        diverged, records = flipped_run(flip_at, scale_at, unflip_at, until=unflip_at + 300)
        assert diverged is None and all_verdicts(records[unflip_at + 12], "ok")
        assert records[unflip_at + 100].loss < records[unflip_at].loss
