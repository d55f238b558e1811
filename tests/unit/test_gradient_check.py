"""The finite-difference check knows its own error bound: an entry whose differences disagree among
themselves (kinks inside every step, as a ReLU net near a zero loss has) is undecided, never a mismatch;
a wrong gradient whose differences agree is still a mismatch."""
import numpy as np

from biasmon.core import Layout
from biasmon.core.gradcheck import check_gradient

LAYOUT = Layout(("h", "o"), (3, 1))


KINKS = 0.2 + np.random.default_rng(0).uniform(-1e-5, 1e-5, 60) * np.geomspace(1e-3, 1, 60)


def kinky_loss(b: np.ndarray) -> float:
    """Smooth in every entry but the first, which sits among kinks closer together than any probe step
    (a sum of |b0 - k| for 60 kinks within 1e-5 of b0 = 0.2): every step size gives another slope."""
    return float(1e-7 * np.sum(np.abs(b[0] - KINKS)) + 0.5 * np.sum(b[1:] ** 2))


def subgradient(b: np.ndarray) -> np.ndarray:
    return np.concatenate([[1e-7 * np.sum(np.sign(b[0] - KINKS))], b[1:]])


def test_an_entry_among_kinks_is_undecided_not_a_mismatch():
    b = np.array([0.2, 0.5, -0.3, 0.1])
    g = subgradient(b)
    checked = check_gradient(kinky_loss, b, g, LAYOUT)
    assert checked.errors["h"] <= 1e-3 and checked.undecided == {"h": 1, "o": 0}


def test_a_wrong_gradient_whose_differences_agree_is_still_a_mismatch():
    b = np.array([0.2, 0.5, -0.3, 0.1])
    g = subgradient(b)
    g[2] *= -1                                     # a sign bug in one smooth entry
    g[3] *= 1.01                                   # 1% off in another layer
    checked = check_gradient(kinky_loss, b, g, LAYOUT)
    assert checked.errors["h"] > 0.5 and checked.errors["o"] > 5e-3
    assert checked.undecided == {"h": 1, "o": 0}


def test_a_flipped_gradient_at_a_kink_is_a_mismatch_not_undecided():
    """Two ReLU units exactly on their kink (slopes 0 and 1 on either side): the estimates span [0, 1];
    a gradient of -1 lies outside every one of them."""
    layout = Layout(("relu",), (2,))
    loss = lambda b: float(np.sum(np.maximum(b, 0.0)))
    checked = check_gradient(loss, np.zeros(2), np.array([-1.0, -1.0]), layout)
    assert checked.errors["relu"] > 0.5 and checked.undecided == {"relu": 0}
    honest = check_gradient(loss, np.zeros(2), np.array([0.0, 1.0]), layout)   # a one-sided slope each: fine
    assert honest.errors.get("relu", 0.0) <= 1e-3


def test_a_layer_with_every_entry_undecided_is_left_out_of_the_errors():
    b = np.array([0.2, 0.5, -0.3, 0.1])
    layout = Layout(("kinks", "rest"), (1, 3))
    checked = check_gradient(kinky_loss, b, subgradient(b), layout)
    assert "kinks" not in checked.errors and checked.undecided["kinks"] == 1 and checked.errors["rest"] < 1e-6
