"""Verdict logic on synthetic bias trajectories: correct optimizers under any positive scaling stay ok,
sign bugs are uphill whatever positive factor scales them, and frozen / unrelated / exploding / vanishing
are called only when they should be."""
import math

import numpy as np
import pytest

from biasmon.core import Diagnoser, Layout, Observation, Thresholds

LAYOUT = Layout(("hidden", "out"), (8, 1))


def observe(diag, step, loss, b, g, u):
    """One step's {layer: LayerDiagnosis}."""
    return diag.observe([Observation(step, loss, None, b, g, u)])[0].layers


def quadratic(seed=0, n=9):
    rng = np.random.default_rng(seed)
    curv = rng.uniform(0.3, 3.0, size=n)
    target = rng.normal(size=n)
    return (lambda b: curv * (b - target)), (lambda b: float(0.5 * np.sum(curv * (b - target) ** 2)) + 0.05)


def run(update, steps=400, seed=0, thresholds=None, noise=0.0):
    """Drive a Diagnoser with b <- b + update(t, g, loss, state); the verdict sequence per layer."""
    rng = np.random.default_rng(seed + 100)
    grad, loss_of = quadratic(seed)
    diag = Diagnoser(LAYOUT, thresholds)
    b = rng.normal(size=9) * 2
    state = {}
    seen = {name: [] for name in LAYOUT.names}
    for t in range(steps):
        g = grad(b) + noise * rng.normal(size=9)
        loss = loss_of(b)
        u = update(t, g, loss, state, rng)
        out = observe(diag, t, loss, b.copy(), g, u)
        for name in LAYOUT.names:
            seen[name].append(out[name].verdict)
        b = b + u
    return seen


def sgd(t, g, loss, state, rng):
    return -0.1 * g


def momentum(beta):
    def update(t, g, loss, state, rng):
        state["v"] = beta * state.get("v", 0.0) + g
        return -0.05 * state["v"]
    return update


def adam(t, g, loss, state, rng):
    state["m"] = 0.9 * state.get("m", 0.0) + 0.1 * g
    state["v"] = 0.999 * state.get("v", 0.0) + 0.001 * g * g
    return -0.02 * (state["m"] / (1 - 0.9 ** (t + 1))) / (np.sqrt(state["v"] / (1 - 0.999 ** (t + 1))) + 1e-8)


def scaled(inner, factor):
    return lambda t, g, loss, state, rng: factor(t, loss, rng) * inner(t, g, loss, state, rng)


def flipped(inner, layers=("hidden", "out")):
    def update(t, g, loss, state, rng):
        u = inner(t, g, loss, state, rng)
        mask = np.concatenate([np.full(s, n in layers) for n, s in zip(LAYOUT.names, LAYOUT.sizes)])
        return np.where(mask, -u, u)
    return update


FACTORS = {
    "constant": lambda t, loss, rng: 3.0,
    "loss": lambda t, loss, rng: loss,
    "inverse loss": lambda t, loss, rng: 1.0 / (loss + 0.01),
    "random positive (1e-3..30)": lambda t, loss, rng: 10 ** rng.uniform(-3, 1.5),
    "decaying schedule": lambda t, loss, rng: 1.0 / (1 + t),
}
OPTIMIZERS = {"sgd": sgd, "momentum 0.9": momentum(0.9), "momentum 0.99": momentum(0.99), "adam": adam}


def problems(seen):
    return {name: sorted({v for v in verdicts if v not in ("ok", "pending")}) for name, verdicts in seen.items()}


@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_correct_optimizers_raise_no_alarm(opt):
    seen = run(OPTIMIZERS[opt])
    assert problems(seen) == {"hidden": [], "out": []}
    assert seen["hidden"][-1] == seen["out"][-1] == "ok"


def longest_problem_stretch(verdicts):
    longest = run_length = 0
    for v in verdicts:
        run_length = run_length + 1 if v not in ("ok", "pending") else 0
        longest = max(longest, run_length)
    return longest


@pytest.mark.parametrize("beta", [0.5, 0.7, 0.8, 0.95])
@pytest.mark.parametrize("seed", range(4))
def test_momentum_off_the_default_betas_has_at_most_short_blips_on_a_one_bias_layer(beta, seed):
    # a 1-bias layer's cosine is only a sign; heavy-ball momentum with a factor far from 0.9 and 0.99 can
    # point against g and both running averages for a few steps of an oscillation. `check` forgives
    # stretches shorter than --sustain (50) steps; the final verdict is ok.
    seen = run(momentum(beta), steps=600, seed=seed)
    assert problems(seen)["hidden"] == []
    assert longest_problem_stretch(seen["out"]) < 25 and seen["out"][-1] == "ok"


@pytest.mark.parametrize("opt", ["sgd", "momentum 0.9", "adam"])
def test_correct_optimizers_with_noisy_gradients_raise_no_alarm(opt):
    assert problems(run(OPTIMIZERS[opt], noise=0.5, seed=3)) == {"hidden": [], "out": []}


@pytest.mark.parametrize("factor", FACTORS)
def test_correct_updates_scaled_by_any_positive_factor_stay_ok(factor):
    # base step 0.01 * g: every factor here keeps the step stable (an unstable step size is its own problem)
    seen = run(scaled(lambda t, g, loss, state, rng: -0.01 * g, FACTORS[factor]), steps=600)
    assert problems(seen) == {"hidden": [], "out": []}


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("opt", ["sgd", "momentum 0.9", "adam"])
def test_a_sign_bug_is_uphill_whatever_positive_factor_scales_it(opt, factor):
    with np.errstate(all="ignore"):   # some of these climb until the numbers overflow
        seen = run(scaled(flipped(OPTIMIZERS[opt]), FACTORS[factor]), steps=60)
    for name in LAYOUT.names:
        assert seen[name].index("uphill") <= 10
        assert set(seen[name][seen[name].index("uphill"):]) <= {"uphill", "exploding"}, (name, seen[name])


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("layer", LAYOUT.names)
def test_a_sign_bug_on_one_layer_only_flags_that_layer(layer, factor):
    base = lambda t, g, loss, state, rng: -0.01 * g  # noqa: E731  (stable under every factor)
    with np.errstate(all="ignore"):   # scaled by the loss, the climb feeds itself until it overflows
        seen = run(scaled(flipped(base, layers=(layer,)), FACTORS[factor]), steps=80)
    other = next(name for name in LAYOUT.names if name != layer)
    assert seen[layer].index("uphill") <= 10
    assert set(seen[layer][seen[layer].index("uphill"):]) <= {"uphill", "exploding"}
    # the other layer is never uphill; scaled by a loss that the bug blows up, its own steps explode too
    assert "uphill" not in seen[other]
    if factor != "loss":
        assert set(seen[other][4:]) == {"ok"}


def test_biases_that_never_move_with_a_non_zero_gradient_are_frozen():
    seen = run(lambda t, g, loss, state, rng: np.zeros_like(g), steps=30)
    assert seen["hidden"][Thresholds().frozen_steps - 1] == "frozen" and seen["out"][-1] == "frozen"


def test_a_converged_float32_trainer_whose_tiny_steps_round_away_is_not_frozen():
    def update(t, g, loss, state, rng):
        step = -0.1 * g
        return np.zeros_like(g) if t > 250 else step   # by step 250 |g| has fallen by far more than 1e3
    seen = run(update, steps=300)
    assert problems(seen) == {"hidden": [], "out": []}


def test_updates_unrelated_to_the_gradient_are_called_unrelated_after_a_long_stretch():
    def random_step(t, g, loss, state, rng):
        r = rng.normal(size=g.shape)
        return 0.05 * r / np.linalg.norm(r)
    steps = Thresholds().unrelated_steps
    seen = run(random_step, steps=steps + 100)
    assert "unrelated" not in seen["hidden"][:steps - 1]
    assert seen["hidden"][-1] == "unrelated"


def test_a_bias_norm_blowing_up_while_the_loss_rises_is_exploding():
    seen = run(lambda t, g, loss, state, rng: -2.5 * g, steps=40)   # lr past 2/curvature: oscillates outwards
    assert "exploding" in seen["hidden"]


def test_a_bias_norm_growing_while_the_loss_falls_is_learning_not_exploding():
    diag = Diagnoser(Layout(("out",), (1,)))
    b, target = 0.0, 5000.0        # an unnormalised regression target: the output bias must grow a lot
    for t in range(200):
        g = b - target
        out = observe(diag, t, 0.5 * g * g, np.array([b]), np.array([g]), np.array([-0.1 * g]))
        assert out["out"].verdict in ("pending", "ok"), (t, out["out"])
        b -= 0.1 * g


def test_vanishing_needs_another_layer_with_a_far_larger_gradient():
    diag = Diagnoser(LAYOUT)
    b = np.ones(9)
    for t in range(10):   # converged at a non-zero loss: every gradient tiny together -> not vanishing
        g = np.full(9, 1e-12 * (t + 1))
        out = observe(diag, t, 0.3, b, g, -0.1 * g)
    assert out["hidden"].verdict == "ok"
    diag = Diagnoser(LAYOUT)
    for t in range(10):   # hidden's gradient vanished while the output layer's is large
        g = np.concatenate([np.full(8, 1e-12), [0.5]])
        out = observe(diag, t, 0.3, b, g, -0.1 * g)
    assert out["hidden"].verdict == "vanishing" and out["out"].verdict == "ok"


def test_a_failed_gradient_check_is_a_gradient_mismatch_until_a_passing_one():
    diag = Diagnoser(LAYOUT)
    b = np.ones(9)
    g = np.ones(9)
    diag.record_gradient_check({"hidden": 0.5, "out": 1e-9})
    out = observe(diag, 0, 1.0, b, g, -0.1 * g)
    assert out["hidden"].verdict == "gradient mismatch" and out["out"].verdict != "gradient mismatch"
    diag.record_gradient_check({"hidden": 1e-8, "out": None})
    for t in range(1, 6):
        out = observe(diag, t, 1.0, b, g, -0.1 * g)
    assert out["hidden"].verdict == "ok"


def test_without_gradients_only_norms_are_judged():
    diag = Diagnoser(LAYOUT)
    for t in range(10):
        out = observe(diag, t, 1.0, np.ones(9), None, np.full(9, 0.01))
    assert out["hidden"].verdict == "no gradients" and out["hidden"].cos is None


def test_observe_tolerates_huge_values_without_warnings():
    diag = Diagnoser(LAYOUT)
    with np.errstate(all="raise"):
        out = observe(diag, 0, 1.0, np.full(9, 1e300), np.full(9, 1e300), np.full(9, -1e300))
    assert out["hidden"].b_norm == math.inf


def test_an_uphill_held_after_the_gradient_died_says_so_not_sign_flipped():
    """The hidden units died climbing (ReLU): no gradient reaches them any more. The verdict stays uphill
    (what happened), but the cause no longer reads as a live sign bug: the user may have fixed it."""
    from biasmon.core.verdicts import CAUSES, HELD_UPHILL
    grad, loss_of = quadratic()
    diag, b = Diagnoser(LAYOUT), np.ones(9)
    for t in range(80):
        g = grad(b)
        if t >= 40:
            g[:8] = 0.0   # the hidden layer's units are dead from step 40
        out = observe(diag, t, loss_of(b), b.copy(), g, 0.05 * g)   # the sign bug: u = +lr g
        b = b + 0.05 * g
        if t == 39:
            assert out["hidden"].verdict == "uphill" and out["hidden"].cause == CAUSES["uphill"]
    assert out["hidden"].verdict == "uphill" and out["hidden"].cause == HELD_UPHILL
    assert out["out"].verdict == "uphill" and out["out"].cause == CAUSES["uphill"]


def test_units_that_die_mid_run_are_vanishing_and_say_so_not_ok():
    """A correct SGD run whose hidden units all die at step 40 (ReLU: exact zeros from then on, the update
    zero too): the layer no longer learns while the loss stays high. It was `ok` for ever before."""
    from biasmon.core.verdicts import DEAD_UNITS
    grad, loss_of = quadratic()
    diag, b, th = Diagnoser(LAYOUT), np.ones(9), Thresholds()
    seen, events = [], []
    for t in range(80):
        g = grad(b)
        if t >= 40:
            g[:8] = 0.0
        diagnosis = diag.observe([Observation(t, loss_of(b), None, b.copy(), g, -0.05 * g)])[0]
        out = diagnosis.layers
        seen.append(out["hidden"].verdict)
        events += diagnosis.events
        b = b - 0.05 * g
    assert seen[39] == "ok" and seen[40 + th.frozen_steps - 2] == "ok"
    assert seen[40 + th.frozen_steps - 1:] == ["vanishing"] * (40 - th.frozen_steps + 1)
    assert out["hidden"].cause == DEAD_UNITS and out["out"].verdict == "ok"
    # the verdict event says what the layer's row says (the events panel, a recording's verdict lines)
    [died] = [e for e in events if e.data["verdict"] == "vanishing"]
    assert died.step == 40 + th.frozen_steps - 1 and died.data["layer"] == "hidden" and died.data["cause"] == DEAD_UNITS


@pytest.mark.parametrize("loss", [0.3, 1e-9])
def test_every_gradient_zero_from_the_start_is_detached_unless_the_loss_has_converged(loss):
    """zero_grad() between backward() and step(): every layer's gradient exactly zero, nothing moves, the
    loss stays: every layer detached after frozen_steps. At a loss below converged_loss (an exact fit) a
    zero gradient is no bug: nothing is called."""
    diag, th = Diagnoser(LAYOUT), Thresholds()
    b, zero = np.linspace(-1.0, 1.0, 9), np.zeros(9)
    seen = [observe(diag, t, loss, b.copy(), zero.copy(), zero.copy()) for t in range(30)]
    verdicts = {name: [s[name].verdict for s in seen] for name in LAYOUT.names}
    if loss > th.converged_loss:
        assert all(v[th.frozen_steps - 1:] == ["detached"] * (31 - th.frozen_steps) for v in verdicts.values())
    else:
        assert all(set(v) == {"pending"} for v in verdicts.values())
