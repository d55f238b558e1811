"""Shared helpers: run `biasmon` as a subprocess, and run several processes at once."""
import subprocess
import sys
from pathlib import Path

import pytest

TRAINERS = Path(__file__).parent / "trainers"


def run_many(commands, timeout=60, stdin=None):
    """Run commands concurrently; {key: CompletedProcess} for {key: argv}."""
    procs = {key: subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL)
             for key, argv in commands.items()}
    done = {}
    for key, proc in procs.items():
        out, err = proc.communicate(stdin, timeout=timeout)
        done[key] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return done


@pytest.fixture
def biasmon_cli():
    """biasmon_cli(*args, stdin=None) -> CompletedProcess of `python -m biasmon args...`."""
    def run(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "biasmon", *map(str, args)], capture_output=True, text=True,
                              input=stdin, timeout=60)
    return run
