"""BLAS threads chosen by timing (core/threads.py): a stalling count is left after costing little, a
faster one is taken, a change of load is followed; and the records do not depend on the count."""
from dataclasses import replace

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from biasmon.core import presets, threads
from biasmon.core.network import dot
from biasmon.core.threads import ThreadChooser
from biasmon.core.trainer import Trainer


class FakeLib:
    def __init__(self, threads: int) -> None:
        self.num_threads = threads

    def set_num_threads(self, threads: int) -> None:
        self.num_threads = threads


class FakeBlas:
    def __init__(self, threads: int = 2) -> None:
        self.lib_controllers = [FakeLib(threads)]


def run(chooser: ThreadChooser, cost, steps: int) -> tuple[float, list[int]]:
    """Total seconds of `steps` steps whose cost(step, threads) the chooser sees; the count of each step."""
    total, counts = 0.0, []
    with chooser.block():
        for t in range(steps):
            threads = chooser.blas.lib_controllers[0].num_threads
            seconds = cost(t, threads)
            chooser._observe(seconds)
            total += seconds
            counts.append(threads)
    return total, counts


def test_a_stalling_count_costs_little_and_is_left():
    chooser = ThreadChooser(blas=FakeBlas())
    total, counts = run(chooser, lambda t, n: 1e-3 if n == 1 else 10e-3, 5000)
    assert counts[0] == 1 and counts.count(2) >= 1          # it was tried
    assert total <= 1.06 * 5000 * 1e-3                      # and cost at most ~6%
    assert chooser.current == 1


def test_a_faster_count_is_taken_and_load_is_followed():
    chooser = ThreadChooser(blas=FakeBlas())
    # idle: 2 threads twice as fast; from step 3000 on the machine is busy and 2 threads stall
    total, counts = run(chooser, lambda t, n: (0.5e-3 if n == 2 else 1e-3) if t < 3000 else
                        (20e-3 if n == 2 else 2e-3), 6000)
    assert counts[:3000].count(2) >= 3000 - threads.REPAY * threads.GUESS - 10   # from its first try on
    assert counts[3100:].count(2) <= 0.05 * len(counts[3100:])


def test_the_counts_are_put_back_after_a_block():
    blas = FakeBlas(2)
    chooser = ThreadChooser(blas=blas)
    with chooser.block():
        assert blas.lib_controllers[0].num_threads == 1
    assert blas.lib_controllers[0].num_threads == 2


def test_one_blas_thread_leaves_the_chooser_inert():
    chooser = ThreadChooser(blas=FakeBlas(1))
    assert chooser.timed(lambda: 42) == 42 and chooser.recent == type(chooser.recent)()


def test_a_count_that_changes_the_bits_is_not_used():
    blas = FakeBlas(2)
    chooser = ThreadChooser(lambda: np.array([float(blas.lib_controllers[0].num_threads)]), blas=blas)
    total, counts = run(chooser, lambda t, n: 1e-3 if n == 1 else 0.1e-3, 2000)
    assert set(counts) == {1} and chooser.most == 1


def test_records_do_not_depend_on_the_thread_count(monkeypatch):
    """Over 1,000 samples, where OpenBLAS splits a weight gradient's sum across its threads: the chooser,
    made to try the other count at every other step, trains as at 1 thread."""
    monkeypatch.setattr(threads, "REPAY", 0)
    preset = presets.resolve("gradient").with_overrides(samples=2000)
    preset = replace(preset, network=dict(preset.network, layers=[2, 128, 128, 1]),
                     diagnostics=dict(preset.diagnostics, grad_check_every=0))
    runs = []
    for limit in (1, 2):
        with threadpool_limits(limit):
            trainer = Trainer(preset, steps=4)
            runs.append([r.to_json() for r in trainer.advance(4) if r.__class__.__name__ == "StepRecord"])
    assert runs[0] == runs[1] and len(runs[0]) == 4


def test_a_long_dot_product_does_not_depend_on_the_thread_count():
    a, b = np.random.default_rng(0).normal(size=(2, 50_000))
    results = []
    for limit in (1, 2):
        with threadpool_limits(limit):
            results.append(dot(a, b))
    assert results[0] == results[1] and results[0] == pytest.approx(float(a @ b), rel=1e-12)
