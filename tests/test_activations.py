"""Activations (models.md §4): derivatives against central finite differences, special values."""
import math

import numpy as np
import pytest

from mfpde.activations import ACTIVATIONS, MMN_S1, MMN_S2, activation_info, evaluate

SMOOTH = [name for name, info in ACTIVATIONS.items() if info.smooth]


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("order", [1, 2])
def test_derivatives_match_finite_differences(name, order):
    rng = np.random.default_rng(0)
    z = rng.uniform(-3, 3, size=400)
    if not ACTIVATIONS[name].smooth:
        # stay away from the kinks (0 for relu; 0.5 and 1.5 for mmn_pl)
        z = z[np.min(np.abs(z[:, None] - np.array([0.0, 0.5, 1.5])), axis=1) > 1e-3]
    h = 1e-5
    fd = (evaluate(name, z + h, order - 1) - evaluate(name, z - h, order - 1)) / (2 * h)
    exact = evaluate(name, z, order)
    scale = max(1.0, np.abs(exact).max())
    assert np.abs(fd - exact).max() / scale < 1e-6


def test_closed_forms():
    z = np.linspace(-4, 4, 81)
    assert np.allclose(evaluate("tanh", z), np.tanh(z), rtol=0, atol=1e-15)
    assert np.allclose(evaluate("sigmoid", z), 1 / (1 + np.exp(-z)), rtol=0, atol=1e-15)
    assert np.allclose(evaluate("sigmoid", z), (1 + np.tanh(z / 2)) / 2, rtol=0, atol=1e-15)
    assert np.allclose(evaluate("erf", z), [math.erf(v) for v in z], rtol=0, atol=1e-15)
    assert np.allclose(evaluate("softplus", z), np.logaddexp(0, z), rtol=0, atol=1e-14)
    assert np.array_equal(evaluate("identity", z), z)
    assert np.array_equal(evaluate("relu", z), np.maximum(z, 0))
    pl = evaluate("mmn_pl", np.array([-10.0, 0.5, 1.0, 1.5, 10.0]))
    assert np.allclose(pl, [MMN_S1, MMN_S1, (MMN_S1 + MMN_S2) / 2, MMN_S2, MMN_S2])


def test_extreme_arguments_are_finite():
    z = np.array([-1e4, -800.0, -50.0, 0.0, 50.0, 800.0, 1e4])
    for name in ACTIVATIONS:
        for order in (0, 1, 2):
            assert np.all(np.isfinite(evaluate(name, z, order))), (name, order)
    assert evaluate("softplus", np.array([800.0]))[0] == 800.0


def test_unknown_activation_is_a_clear_error():
    with pytest.raises(ValueError, match="allowed: .*tanh"):
        activation_info("tahn")
    with pytest.raises(ValueError, match="order"):
        evaluate("tanh", [0.0], order=3)


def test_flags():
    assert not ACTIVATIONS["relu"].smooth and not ACTIVATIONS["mmn_pl"].smooth
    assert set(SMOOTH) == {"identity", "tanh", "sigmoid", "erf", "softplus"}
    assert ACTIVATIONS["tanh"].wm_a3 and not ACTIVATIONS["softplus"].wm_a3
