"""Observers (mfpde/observers.py): values against closed forms and metrics; they never change state."""
import json
import math

import numpy as np
import pytest

from mfpde.data import gaussian_mixture, linear_gaussian
from mfpde.dynamics import LangevinSolver
from mfpde.metrics.collapse import lemma45_residual, nc1, nc1_papyan
from mfpde.models import make_model
from mfpde.observers import Observers


def _nc_solver():
    data = gaussian_mixture(q=3, m=10, d=5, sep=1.0, std=0.4, seed=0).normalized(0.99)
    model = make_model("nc", d=5, q=3, p=4, Gamma=2.0, lam=0.05, lam_W=0.05)
    return data, model, LangevinSolver(model, data, N=500, dt=0.05, beta=20.0, batch=10, seed=1)


def test_observers_do_not_change_state_or_randomness():
    data, model, s = _nc_solver()
    s.step(5)
    before = s.state_dict()
    from mfpde.observables import _REGISTRY
    have = {"theta", "W", "model", "data", "labels"}
    names = [q for q, variants in _REGISTRY.items() if any(v.needs <= have for v in variants)]
    base = ["loss", "reg_loss", "entropy", "free_energy", "grad_sq", "grad_W_sq", "nc1",
            "nc1_papyan", "nb", "smin_W", "smax_W", "lemma45"]
    assert set(base) <= set(names)
    obs = Observers(names, model, data, beta=20.0)
    vals = obs(s)
    after = s.state_dict()
    assert set(vals) == set(names)
    assert all(math.isfinite(vals[q]) for q in base)
    assert all(isinstance(v, float) for v in vals.values())
    assert np.array_equal(before["theta"], after["theta"]) and np.array_equal(before["W"], after["W"])
    assert json.loads(before["rng"]) == json.loads(after["rng"])


def test_observer_values_match_model_and_metrics():
    data, model, s = _nc_solver()
    s.step(20)
    vals = Observers(["loss", "reg_loss", "grad_sq", "grad_W_sq", "nc1", "nc1_papyan", "lemma45",
                      "free_energy", "entropy"], model, data, beta=20.0)(s)
    X, Y = data.X, data.Y
    g = model.gradient(s.theta, X, Y, s.W)
    H = model.features(s.theta, X)
    assert vals["loss"] == pytest.approx(model.risk(s.theta, X, Y, s.W), rel=1e-14)
    assert vals["reg_loss"] == pytest.approx(model.regularized_risk(s.theta, X, Y, s.W), rel=1e-14)
    assert vals["grad_sq"] == pytest.approx(np.mean(np.sum(g.theta**2, 1)), rel=1e-12)
    assert vals["grad_W_sq"] == pytest.approx(np.sum(g.W**2), rel=1e-12)
    assert vals["nc1"] == pytest.approx(nc1(H, data.labels), rel=1e-14)
    assert vals["nc1_papyan"] == pytest.approx(nc1_papyan(H, data.labels), rel=1e-14)
    assert vals["lemma45"] == pytest.approx(
        lemma45_residual(s.theta[:, :4], s.W, 0.05, 0.05, 20.0), rel=1e-14)
    assert vals["free_energy"] == pytest.approx(vals["reg_loss"] - vals["entropy"] / 20.0, rel=1e-14)


def test_free_energy_estimate_matches_gaussian_closed_form():
    """Linear neuron at the Gibbs state: F(N(m, C)) = 1/2 E y^2 - b.m + 1/2 m.Sigma m
    + lam/2 (|m|^2 + tr C) - (1/(2 beta)) log det(2 pi e C) (dynamics.md §2.4), with the particle
    mean and covariance plugged in; the observer's kNN entropy is an estimate, so the tolerance is
    the estimator's bias at D = 3, N = 4000 (about 0.05 nats) divided by beta."""
    beta, lam = 10.0, 0.5
    data = linear_gaussian(n=20, d=3, Sigma=np.array([1.0, 0.5, 0.25]), b=np.array([0.5, -0.3, 0.2]),
                           noise=0.1, seed=0)
    model = make_model("two_layer", d=3, activation="identity", output="fixed", lam=lam)
    s = LangevinSolver(model, data, N=4000, dt=0.01, beta=beta, seed=0)
    s.step(600)
    X, y = data.X, data.Y[:, 0]
    Sigma, b = X.T @ X / len(y), X.T @ y / len(y)
    m, C = s.theta.mean(0), np.cov(s.theta.T, bias=True)
    F = (0.5 * np.mean(y**2) - b @ m + 0.5 * m @ Sigma @ m + lam / 2 * (m @ m + np.trace(C))
         - np.linalg.slogdet(2 * np.pi * np.e * C)[1] / (2 * beta))
    vals = Observers(["free_energy", "reg_loss"], model, data, beta=beta)(s)
    assert abs(vals["free_energy"] - F) < 0.1 / beta, (vals["free_energy"], F)


def test_bad_quantities_are_clear_errors():
    data, model, _ = _nc_solver()
    with pytest.raises(ValueError, match="unknown observed quantities"):
        Observers(["loss", "nc2000"], model, data)
    tl = make_model("two_layer", d=5, q=3)
    with pytest.raises(ValueError, match="need the NC model"):
        Observers(["nb"], tl, data)
    with pytest.raises(ValueError, match="held-out"):
        Observers(["test_loss"], model, data)
