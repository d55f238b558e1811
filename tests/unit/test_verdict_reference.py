"""The block verdicts (NumPy over many steps at once) against the plain step-by-step reference
(tests/unit/plain_verdicts.py): the same verdict for every layer at every step, whatever the block size,
on random runs that pass through every branch: biases not trained for a while, steps without gradients
or updates, non-finite steps, gradient checks, sign flips, frozen and random updates, vanishing and
exploding norms, layers no gradient reaches, rounding-noise gradients, gradients of exact zeros."""
import math

import numpy as np
import pytest

from biasmon.core import Diagnoser, Layout, Observation, Thresholds
from biasmon.core.measures import GradientAverages, block_sums, measures

from plain_verdicts import PlainJudge

LAYOUT = Layout(("wide", "one", "small"), (6, 1, 3))
KINDS = ("sgd", "momentum", "flipped", "frozen", "random", "tiny", "huge", "quiet")


def random_run(seed: int, steps: int = 700) -> list[Observation]:
    """Steps of a run that changes its behaviour every few dozen steps."""
    rng = np.random.default_rng(seed)
    n = sum(LAYOUT.sizes)
    b, v, out, kind, trained = rng.normal(size=n), np.zeros(n), [], "sgd", True
    detached_from = int(rng.integers(steps))
    for t in range(steps):
        if rng.random() < 0.04:
            kind = KINDS[rng.integers(len(KINDS))]
        if rng.random() < 0.02:
            trained = not trained
        scale = {"tiny": 1e-9, "quiet": 1e-5, "huge": 1e3}.get(kind, 1.0)
        g = scale * (b - 1.0 + 0.3 * rng.normal(size=n))
        if seed % 2:  # the last layer's gradient never matters: vanishing
            g[-3:] *= 1e-12
        v = 0.9 * v + g
        u = {"sgd": -0.1 * g, "momentum": -0.05 * v, "flipped": 0.1 * g, "frozen": np.zeros(n),
             "random": 0.01 * rng.normal(size=n), "tiny": -0.1 * g, "quiet": -0.1 * g * rng.choice([-1, 1], n),
             "huge": 3.0 * np.abs(b) + 1.0}[kind]
        if not trained:
            u = np.zeros(n)
        loss = float(np.sum(g * g) / scale ** 2 * (10.0 if kind == "huge" else 1.0))
        obs = Observation(t, loss, None, b.copy(), None if rng.random() < 0.03 else g.copy(),
                          None if rng.random() < 0.02 else u.copy(), trained)
        if rng.random() < 0.01:
            obs.fd_errors = {"wide": float(rng.choice([1e-9, 0.5, math.inf])), "small": 1e-7}
        if rng.random() < 0.005:
            obs.b = obs.b * np.inf
        if obs.g is not None and (detached_from <= t < detached_from + 40 or rng.random() < 0.01):
            obs.unreached = (False, True, False)   # no gradient reaches 'one': zeros, logged null
            obs.g[6] = 0.0
        if obs.g is not None and ((seed == 4 and t < 200) or (seed == 3 and 100 <= t < 160)):
            obs.g[7:] = 0.0   # the trainer wipes 'small''s gradient: from the start (detached), or later (not)
        if seed % 3 == 2 and obs.g is not None:  # a float32 trainer whose 'small' layer is rounding noise
            obs.g = obs.g.astype(np.float32).astype(np.float64)
            obs.g[7:] = np.float32(1e-9) * obs.g[7:]
        out.append(obs)
        b = b + u
    return out


def plain_verdicts(run: list[Observation], th: Thresholds) -> list[list[str]]:
    judge = PlainJudge(LAYOUT.names, th)
    avg = GradientAverages(th.momentum_betas, sum(LAYOUT.sizes))
    out = []
    for o in run:
        if o.fd_errors is not None:
            for state, name in zip(judge.layers, LAYOUT.names):
                value = o.fd_errors.get(name)
                if value is not None:
                    state.fd_error = value if math.isfinite(value) else math.inf
        zeros = np.zeros(sum(LAYOUT.sizes))
        vec = np.array([[o.b], [zeros if o.g is None else o.g], [zeros if o.u is None else o.u]])
        a, with_avg = avg.block(vec[1], [o.g is not None], [o.trained])
        with np.errstate(all="ignore"):
            m = measures(block_sums(vec, a, LAYOUT.starts), np.asarray(LAYOUT.sizes, float), with_avg)
        cosines = m.cosines[0].tolist() if with_avg[0] else None
        with np.errstate(over="ignore"):
            single = bool((vec[1].astype(np.float32) == vec[1]).all())
        rounding = float(np.finfo(np.float32 if single else np.float64).eps)
        out.append(judge.step(o.loss, o.g is not None, o.u is not None, o.trained, m.step(0), cosines,
                              o.unreached if o.g is not None else None, rounding))
    return out


def block_verdicts(run: list[Observation], th: Thresholds, block: int) -> list[list[str]]:
    diagnoser = Diagnoser(LAYOUT, th)
    out = []
    for start in range(0, len(run), block):
        for d in diagnoser.observe(run[start:start + block]):
            out.append([d.layers[name].verdict for name in LAYOUT.names])
    return out


@pytest.mark.parametrize("seed", range(6))
def test_block_verdicts_match_the_plain_reference_at_every_step(seed):
    th = Thresholds()
    run = random_run(seed)
    expected = plain_verdicts(run, th)
    seen = {v for row in expected for v in row}
    assert {"ok", "uphill", "off", "pending"} <= seen, seen   # the run exercises the main branches
    for block in (1, 7, 64, 700):
        got = block_verdicts(run, th, block)
        first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), None)
        assert first is None, (block, first, got[first], expected[first])


def test_every_verdict_is_reached_by_some_random_run():
    th = Thresholds(unrelated_steps=60, window=10)
    seen = set()
    for seed in range(6):
        run = random_run(seed)
        got = block_verdicts(run, th, 32)
        assert got == plain_verdicts(run, th)
        seen |= {v for row in got for v in row}
    assert {"ok", "uphill", "gradient mismatch", "frozen", "exploding", "vanishing", "unrelated", "off",
            "pending", "no gradients", "detached", "redundant"} <= seen, seen


def test_a_gradient_wiped_from_the_start_is_detached_one_that_reaches_zero_later_is_not():
    """Seed 4's 'small' layer has a gradient of exact zeros from the start, while the others' are not (a
    trainer that wipes it before the step): detached after frozen_steps. Seed 3's has exact zeros for 60
    steps after it had a gradient (as a layer that converged exactly): never detached."""
    th = Thresholds()
    wiped = [row[2] for row in block_verdicts(random_run(4), th, 64)]
    assert wiped[:th.frozen_steps - 1] == ["pending"] * (th.frozen_steps - 1) and wiped[th.frozen_steps - 1] == "detached"
    assert "detached" not in [row[2] for row in block_verdicts(random_run(3), th, 64)]


def dying_run(steps: int = 160, die_at: int = 80, fade: bool = False, back: tuple = ()) -> list[Observation]:
    """SGD on a quadratic; from die_at 'wide''s gradient is exact zeros (its ReLU units died), straight after
    a gradient that was on; fade: it first fades through quiet values (a layer converging exactly); back:
    steps at which its gradient is there again all the same (a head masked out of some batches)."""
    rng = np.random.default_rng(7)
    n = sum(LAYOUT.sizes)
    b, out = rng.normal(size=n), []
    for t in range(steps):
        g = b - 1.0 + 0.3 * rng.normal(size=n)
        if fade and t >= die_at - 20:
            g[:6] *= 1e-6 ** ((t - die_at + 20) / 20)   # quiet (below 1e-3 of its largest) before it is zero
        if t >= die_at and t not in back:
            g[:6] = 0.0
        out.append(Observation(t, float(np.sum(g * g)) + 0.5, None, b.copy(), g.copy(), -0.1 * g))
        b = b - 0.1 * g
    return out


@pytest.mark.parametrize("fade", [False, True])
def test_a_gradient_that_drops_to_exact_zeros_is_vanishing_one_that_fades_out_first_is_not(fade):
    """Units that die (ReLU) leave exact zeros straight after a live gradient: vanishing after frozen_steps,
    the same in blocks as step by step. A gradient that fades out through quiet values first converged."""
    th = Thresholds()
    run = dying_run(fade=fade)
    got = block_verdicts(run, th, 64)
    assert got == plain_verdicts(run, th)
    wide = [row[0] for row in got]
    assert wide[60] == "ok"
    if fade:
        assert "vanishing" not in wide
    else:
        assert wide[80 + th.frozen_steps - 2] == "ok" and wide[80 + th.frozen_steps - 1:] == ["vanishing"] * (80 - th.frozen_steps + 1)


def test_a_gradient_that_comes_back_after_a_stretch_of_exact_zeros_is_not_called_dead_again():
    """Zeros from step 80, the gradient back at steps 100-109, zeros again from 110: vanishing from 89 to 99
    (as dead units look), then never again: dead units do not come back (a head masked out of some
    batches). The same in blocks of any size as step by step."""
    th = Thresholds()
    run = dying_run(back=tuple(range(100, 110)))
    expected = plain_verdicts(run, th)
    for block in (1, 7, 64, 700):
        assert block_verdicts(run, th, block) == expected, block
    wide = [row[0] for row in expected]
    assert wide[89:100] == ["vanishing"] * 11 and "vanishing" not in wide[100:]
