"""Weighted-quadrature Lagrangian reference (theory/grid.md §3): rule, exact linear cases,
refinement, integrators, kinetic Lyapunov, NC model, guards."""
import math

import numpy as np
import pytest
from scipy.linalg import expm

from mfpde.data import Dataset
from mfpde.meanfield.quadrature import QuadratureReference, gauss_hermite_rule, refinement_gap
from mfpde.models import make_model
from mfpde.validation.cases_kinetic import linear_kinetic_moments, toy_linear, toy_two_layer


def test_rule_moments():
    m = np.array([0.5, -1.0])
    C = np.array([[2.0, 0.6], [0.6, 0.5]])
    x, w = gauss_hermite_rule(5, 2, m, C)
    assert x.shape == (25, 2) and np.all(w > 0) and w.sum() == pytest.approx(1, abs=1e-15)
    np.testing.assert_allclose(w @ x, m, atol=1e-13)
    xc = x - m
    np.testing.assert_allclose((xc * w[:, None]).T @ xc, C, atol=1e-13)
    # degree 2 n_q - 1 = 9 exact per coordinate: E z^8 = 105 for the standardised coordinate
    x1, w1 = gauss_hermite_rule(5, 1)
    assert w1 @ x1[:, 0] ** 8 == pytest.approx(105.0, rel=1e-12)
    x1, w1 = gauss_hermite_rule(4, 1)                     # degree 7 only: E z^8 not exact
    assert abs(w1 @ x1[:, 0] ** 8 - 105.0) > 1.0
    with pytest.raises(ValueError):
        gauss_hermite_rule(0, 2)


def test_weighted_force_equals_replicated_particles():
    """The weighted measure sum_k w_k delta_k with w = counts/total is the empirical measure of
    the replicated cloud: same force per distinct particle."""
    model, data = toy_two_layer()
    rng = np.random.default_rng(0)
    th = rng.standard_normal((5, model.D))
    counts = np.array([1, 3, 2, 1, 5])
    g_w = model.gradient(th, data.X, data.Y, weights=counts / counts.sum()).theta
    rep = np.repeat(th, counts, axis=0)
    g_r = model.gradient(rep, data.X, data.Y).theta
    np.testing.assert_allclose(g_w, g_r[np.cumsum(counts) - counts], rtol=1e-12, atol=1e-14)


def test_linear_first_order_flow_exact():
    """dynamics.md §2.4, beta = inf: m(t) = m_inf + e^{-(Sigma+lam)t}(m0 - m_inf),
    C(t) = e^{-2 lam t} C0; the rule with 2 nodes per dimension is exact."""
    model, data = toy_linear(d=2, n=10)
    X, Y = data.X, data.Y[:, 0]
    Sig = X.T @ X / len(X)
    b = X.T @ Y / len(X)
    A = Sig + model.lam * np.eye(2)
    m_inf = np.linalg.solve(A, b)
    ts = np.array([0.0, 0.5, 1.5])
    sol = QuadratureReference(model, data, n_q=2).solve(ts)
    for i, t in enumerate(ts):
        m_t = m_inf + expm(-A * t) @ (-m_inf)
        np.testing.assert_allclose(sol.mean()[i], m_t, atol=1e-9)
        assert sol.moment2()[i] == pytest.approx(m_t @ m_t + 2 * math.exp(-2 * model.lam * t), rel=1e-8)


def test_linear_kinetic_flow_exact():
    """Kinetic linear neuron (noiseless): node mean and per-coordinate variance against the linear
    ODE of validation.md §K2 with beta = inf."""
    model, data = toy_linear(d=2, n=10)
    gamma = 1.3
    ts = np.array([0.0, 0.7, 2.0])
    sol = QuadratureReference(model, data, n_q=3, gamma=gamma).solve(ts)
    for i, t in enumerate(ts):
        m, v, C = linear_kinetic_moments(model, data, t, gamma, np.inf)
        np.testing.assert_allclose(sol.mean()[i], m, atol=1e-9)
        np.testing.assert_allclose(np.einsum("k,kd->d", sol.weights, sol.r[i]), v, atol=1e-9)
        var = np.einsum("k,kd->d", sol.weights, (sol.theta[i] - m) ** 2)
        np.testing.assert_allclose(var, C[0, 0], rtol=1e-8)


def test_refinement_and_rk4():
    model, data = toy_two_layer()
    ts = [0.0, 1.0]
    g1 = refinement_gap(model, data, ts, (6, 12), gamma=1.0)
    g2 = refinement_gap(model, data, ts, (12, 24), gamma=1.0)
    assert g2 < 0.5 * g1 and g2 < 1e-3
    ref = QuadratureReference(model, data, n_q=6, gamma=1.0)
    a = ref.solve(ts)
    b = ref.solve(ts, method="rk4", dt=0.01)
    np.testing.assert_allclose(a.theta, b.theta, atol=1e-7)
    np.testing.assert_allclose(a.r, b.r, atol=1e-7)


def test_kinetic_hamiltonian_decreases_and_first_order_risk_decreases():
    model, data = toy_two_layer()
    ts = np.linspace(0.0, 5.0, 101)
    kin = QuadratureReference(model, data, n_q=8, gamma=0.5).solve(ts)
    H = kin.hamiltonian(model, data.X, data.Y)
    assert np.all(np.diff(H) < 1e-10) and H[-1] < 0.5 * H[0]
    gf = QuadratureReference(model, data, n_q=8).solve(ts)
    assert gf.r is None
    assert np.all(np.diff(gf.regularized_risk(model, data.X, data.Y)) < 1e-12)


def test_nc_model_with_W_velocity():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 1))
    Y = np.tanh(2 * X)
    data = Dataset(X=X, Y=Y)
    model = make_model("nc", d=1, q=1, p=1, lam=0.01, lam_W=0.01)       # D = p + d = 2
    ts = np.linspace(0.0, 4.0, 41)
    sol = QuadratureReference(model, data, n_q=8, gamma=1.0, W0=np.array([[0.7]])).solve(ts)
    assert sol.W.shape == (41, 1, 1) and sol.r_W.shape == (41, 1, 1)
    assert sol.W[-1, 0, 0] != 0.7
    H = sol.hamiltonian(model, X, Y)
    assert np.all(np.diff(H) < 1e-10)
    frozen = QuadratureReference(model, data, n_q=4, gamma=1.0, train_W=False,
                                 W0=np.array([[0.7]])).solve([0.0, 1.0])
    assert frozen.W[-1, 0, 0] == 0.7


def test_guards():
    model, data = toy_two_layer()
    with pytest.raises(ValueError, match="max_nodes"):
        QuadratureReference(model, data, n_q=10, max_nodes=50)
    with pytest.raises(ValueError, match="r0"):
        QuadratureReference(model, data, n_q=3, r0=np.zeros((9, 2)))
    with pytest.raises(ValueError, match="gamma"):
        QuadratureReference(model, data, n_q=3, gamma=-1.0)
    with pytest.raises(ValueError, match="t_eval"):
        QuadratureReference(model, data, n_q=3).solve([1.0, 0.5])


def test_quadrature_reference_is_a_driver():
    """With a fixed ``dt`` the reference is a driver (engine protocol): ``step(n)`` is the RK4 step
    of ``solve(method="rk4")``, bitwise, however the steps are split; state round-trips."""
    from mfpde.engine.protocol import check_driver
    model, data = toy_two_layer()
    for gamma in (None, 1.5):
        ref = QuadratureReference(model, data, n_q=5, gamma=gamma, dt=0.05)
        check_driver(ref)
        assert ref.k == 0 and ref.t == 0.0 and ref.dt == 0.05 and math.isnan(ref.last_risk)
        sol = QuadratureReference(model, data, n_q=5, gamma=gamma).solve([0.5], method="rk4",
                                                                          dt=0.05)
        ref.step(3)
        st = ref.state_dict()
        ref.step(7)
        assert ref.k == 10 and ref.t == pytest.approx(0.5)
        f = ref.fields()
        assert np.array_equal(f["nodes"], sol.theta[-1])
        assert f["node_weights"] is ref.weights
        if gamma is None:
            assert "r" not in f
        else:
            assert np.array_equal(f["r"], sol.r[-1])
        assert np.isfinite(ref.last_risk)
        other = QuadratureReference(model, data, n_q=5, gamma=gamma, dt=0.05)
        other.load_state_dict(st)
        other.step(7)
        assert np.array_equal(other.fields()["nodes"], f["nodes"])
    with pytest.raises(ValueError, match="fixed dt"):
        QuadratureReference(model, data, n_q=3).step()
