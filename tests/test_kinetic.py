"""Kinetic (heavy-ball / underdamped Langevin) solver: schemes, kernels, Lyapunov, state, limits.

Theory: theory/dynamics.md §5 and §6.3; validation.md §K2, §V4, §V13. The long versions of the
rate checks are the registered validation cases (``mfpde validate --only kinetic``); the slow
tests at the bottom run them.
"""
import math

import numpy as np
import pytest

from mfpde.observables import Observers
from mfpde.dynamics.base import make_rng
from mfpde.dynamics.kinetic import INTEGRATORS, KineticSolver
from mfpde.dynamics.langevin import LangevinSolver
from mfpde.kernels import kinetic as K
from mfpde.validation.cases_kinetic import (experiment_lyapunov, experiment_order,
                                            experiment_overdamped_coupled, fit_slope,
                                            linear_kinetic_moments, toy_linear, toy_nc,
                                            toy_two_layer)


@pytest.fixture(scope="module")
def two_layer():
    return toy_two_layer()


@pytest.fixture(scope="module")
def nc():
    return toy_nc()


# ----------------------------------------------------------------------------- kernels
def _arrays(N=300, D=3, seed=0):
    rng = np.random.default_rng(seed)
    return [np.ascontiguousarray(rng.standard_normal((N, D))) for _ in range(4)]


@pytest.mark.parametrize("noisy", [True, False])
def test_kernels_match_numpy_substeps(noisy):
    th, r, f, g = _arrays()
    s = 0.3 if noisy else 0.0
    gg = g if noisy else np.empty((0, 0))
    # SHB: r <- a r - eps f + s g; theta <- theta + eps r
    t1, r1 = th.copy(), r.copy()
    K.shb_update(t1, r1, f, gg, 0.9, 0.1, s)
    r_ref = 0.9 * r - 0.1 * f + s * g
    np.testing.assert_allclose(r1, r_ref, rtol=0, atol=1e-14)
    np.testing.assert_allclose(t1, th + 0.1 * r_ref, rtol=0, atol=1e-14)
    # BAOA: B(hb) A(ha) O(c, s) A(ha)
    t1, r1 = th.copy(), r.copy()
    K.baoa_update(t1, r1, f, gg, 0.05, 0.04, 0.8, s)
    v = r - 0.05 * f
    x = th + 0.04 * v
    v = 0.8 * v + s * g
    np.testing.assert_allclose(r1, v, rtol=0, atol=1e-14)
    np.testing.assert_allclose(t1, x + 0.04 * v, rtol=0, atol=1e-14)
    # OBA: O(c, s) B(hb) A(ha)
    t1, r1 = th.copy(), r.copy()
    K.oba_update(t1, r1, f, gg, 0.8, s, 0.05, 0.1)
    v = 0.8 * r + s * g - 0.05 * f
    np.testing.assert_allclose(r1, v, rtol=0, atol=1e-14)
    np.testing.assert_allclose(t1, th + 0.1 * v, rtol=0, atol=1e-14)
    # BO: r <- c (r - hb f) + s g
    r1 = r.copy()
    K.bo_update(r1, f, gg, 0.05, 0.8, s)
    np.testing.assert_allclose(r1, 0.8 * (r - 0.05 * f) + s * g, rtol=0, atol=1e-14)


def test_kernels_serial_parallel_bitwise():
    """Element-wise kernels: the parallel and serial variants give identical bits."""
    th, r, f, g = _arrays(N=257, D=5, seed=1)
    cases = [
        ("_shb", lambda a, b: (a, b, f, g, 0.93, 0.07, 0.2), 2),
        ("_baoa", lambda a, b: (a, b, f, g, 0.05, 0.05, 0.9, 0.1), 2),
        ("_oba", lambda a, b: (a, b, f, g, 0.9, 0.1, 0.05, 0.1), 2),
        ("_bo", lambda a, b: (b, f, g, 0.05, 0.9, 0.1), 1),
    ]
    for name, args, _ in cases:
        a1, b1, a2, b2 = th.copy(), r.copy(), th.copy(), r.copy()
        getattr(K, name + "_ser")(*args(a1, b1))
        getattr(K, name + "_par")(*args(a2, b2))
        assert np.array_equal(a1, a2) and np.array_equal(b1, b2), name


# ----------------------------------------------------------------------------- schemes
def _manual_baoab(model, data, theta0, h, gamma, beta, seed, steps):
    """Independent NumPy BAOAB with the documented draw order (noise of step k)."""
    rng = make_rng(seed)
    th, r = theta0.copy(), np.zeros_like(theta0)
    f = model.gradient(th, data.X, data.Y).theta
    c = math.exp(-gamma * h)
    s = math.sqrt((1 - c * c) / beta)
    for _ in range(steps):
        r = r - 0.5 * h * f
        th = th + 0.5 * h * r
        r = c * r + s * rng.standard_normal(th.shape)
        th = th + 0.5 * h * r
        f = model.gradient(th, data.X, data.Y).theta
        r = r - 0.5 * h * f
    return th, r


def test_baoab_matches_independent_implementation(two_layer):
    model, data = two_layer
    theta0 = model.init_particles(50, np.random.default_rng(3))
    s = KineticSolver(model, data, N=50, dt=0.05, gamma=1.5, beta=20.0, integrator="baoab",
                      theta0=theta0, seed=9)
    s.step(30)
    th, r = _manual_baoab(model, data, theta0, 0.05, 1.5, 20.0, 9, 30)
    np.testing.assert_allclose(s.theta, th, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.r, r, rtol=0, atol=1e-12)


@pytest.mark.parametrize("beta", [np.inf, 25.0])
def test_shb_velocity_form_equals_polyak_form(two_layer, beta):
    """dynamics.md §5.2: theta^{k+1} = theta^k - eps^2 grad + mu (theta^k - theta^{k-1})
    + sqrt(2 gamma eps^3/beta) g with mu = 1 - gamma eps gives the same iterates."""
    model, data = two_layer
    N, eps, gamma = 40, 0.05, 2.0
    theta0 = model.init_particles(N, np.random.default_rng(4))
    s = KineticSolver(model, data, N=N, dt=eps, gamma=gamma, beta=beta, integrator="shb",
                      theta0=theta0, seed=2)
    s.step(60)
    rng = make_rng(2)
    prev, cur = theta0.copy(), theta0.copy()
    mu = 1 - gamma * eps
    for _ in range(60):
        g = model.gradient(cur, data.X, data.Y).theta
        new = cur - eps ** 2 * g + mu * (cur - prev)
        if math.isfinite(beta):
            new += math.sqrt(2 * gamma * eps ** 3 / beta) * rng.standard_normal(cur.shape)
        prev, cur = cur, new
    np.testing.assert_allclose(s.theta, cur, rtol=0, atol=1e-11)
    np.testing.assert_allclose(s.r, (cur - prev) / eps, rtol=0, atol=1e-9)


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_one_force_evaluation_per_step(two_layer, integrator):
    model, data = two_layer
    beta = np.inf if integrator == "splitting" else 30.0
    s = KineticSolver(model, data, N=20, dt=0.05, gamma=1.0, beta=beta, integrator=integrator)
    s.step(25)
    assert s.n_force == (25 if integrator == "shb" else 26)      # + the first evaluation


def test_xi_is_a_change_of_clock(two_layer):
    """Constant xi = 2 with step dt equals xi = 1 with step 2 dt (dynamics.md §2.5 [choice])."""
    model, data = two_layer
    theta0 = model.init_particles(30, np.random.default_rng(0))
    for integ in ("splitting", "shb"):
        a = KineticSolver(model, data, N=30, dt=0.02, gamma=1.0, xi=2.0, integrator=integ, theta0=theta0)
        b = KineticSolver(model, data, N=30, dt=0.04, gamma=1.0, integrator=integ, theta0=theta0)
        a.step(50)
        b.step(50)
        np.testing.assert_allclose(a.theta, b.theta, rtol=0, atol=1e-13)
        np.testing.assert_allclose(a.r, b.r, rtol=0, atol=1e-13)


def test_invalid_arguments(two_layer):
    model, data = two_layer
    with pytest.raises(ValueError, match="integrator"):
        KineticSolver(model, data, N=5, dt=0.1, gamma=1.0, integrator="verlet")
    with pytest.raises(ValueError, match="noiseless"):
        KineticSolver(model, data, N=5, dt=0.1, gamma=1.0, beta=10.0, integrator="splitting")
    with pytest.raises(ValueError, match="gamma\\*dt"):
        KineticSolver(model, data, N=5, dt=0.1, gamma=10.0, integrator="shb")
    with pytest.raises(ValueError, match="gamma"):
        KineticSolver(model, data, N=5, dt=0.1, gamma=0.0)
    with pytest.raises(ValueError, match="r0"):
        KineticSolver(model, data, N=5, dt=0.1, gamma=1.0, r0=np.zeros((4, model.D)))
    with pytest.raises(ValueError, match="rW0"):
        KineticSolver(model, data, N=5, dt=0.1, gamma=1.0, rW0=np.zeros((1, 1)))


# ----------------------------------------------------------------------------- state
@pytest.mark.parametrize("integrator", ["baoab", "obabo", "shb"])
def test_state_dict_bitwise_resume(nc, integrator):
    """Mini-batches + noise + W velocity: resume from a checkpoint reproduces the run bitwise."""
    model, data = nc
    kw = dict(N=40, dt=0.05, gamma=1.0, beta=50.0, batch=16, integrator=integrator, seed=7)
    a = KineticSolver(model, data, **kw)
    a.step(13)
    st = a.state_dict()
    assert st["r"].shape == a.theta.shape and st["r_W"].shape == a.W.shape
    a.step(11)
    b = KineticSolver(model, data, **kw)
    b.load_state_dict(st)
    b.step(11)
    for name in ("theta", "r", "W", "r_W"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    snap = a.snapshot_arrays()
    assert set(snap) == {"theta", "r"} and np.array_equal(snap["r"], a.r)
    snap["r"][0, 0] += 1.0                              # a copy, not a view
    assert snap["r"][0, 0] != a.r[0, 0]


def test_noise_follows_the_coupling_hook(two_layer):
    """The noise goes through ParticleDriver.draw_noise, so a noise_source hook drives it."""
    model, data = two_layer
    theta0 = model.init_particles(20, np.random.default_rng(0))
    a = KineticSolver(model, data, N=20, dt=0.05, gamma=1.0, beta=10.0, integrator="baoab", theta0=theta0)
    b = KineticSolver(model, data, N=20, dt=0.05, gamma=1.0, beta=10.0, integrator="baoab", theta0=theta0,
                      seed=123)
    src = make_rng(0)                                  # a's own generator sequence
    b.noise_source = lambda: src.standard_normal((20, model.D))
    a.step(10)
    b.step(10)
    np.testing.assert_array_equal(a.theta, b.theta)


# ----------------------------------------------------------------------------- Lyapunov
def test_hamiltonian_monotone_and_dissipation(two_layer, nc):
    """Noiseless splitting: H non-increasing at every step; dH/dt = -gamma E|r|^2 to O(h^2)."""
    for model, data in (two_layer, nc):
        r = experiment_lyapunov(model, data, integrator="splitting", h=0.1, T=10.0, N=64)
        assert r["n_increase"] == 0, r["max_increase"]
        assert r["H"][-1] < 0.5 * r["H"][0]
        assert r["residual"] < 0.01
    r2 = experiment_lyapunov(*two_layer, integrator="splitting", h=0.05, T=10.0, N=64)
    r1 = experiment_lyapunov(*two_layer, integrator="splitting", h=0.1, T=10.0, N=64)
    assert 3.2 < r1["residual"] / r2["residual"] < 4.8              # second order


def test_hamiltonian_value(nc):
    model, data = nc
    s = KineticSolver(model, data, N=30, dt=0.1, gamma=1.0, r0=np.ones((30, model.D)),
                      rW0=np.full((model.p, model.q), 2.0))
    expect = (model.regularized_risk(s.theta, data.X, data.Y, s.W)
              + 0.5 * model.D + 0.5 * 4.0 * model.p * model.q)
    v = Observers(["hamiltonian", "dissipation", "kinetic_free_energy"], model, data)(s)
    assert v["hamiltonian"] == pytest.approx(expect, rel=1e-14)
    assert v["dissipation"] == pytest.approx(1.0 * model.D + 4.0 * model.p * model.q, rel=1e-14)
    assert v["kinetic_free_energy"] == v["hamiltonian"]                  # beta = inf


def test_first_order_W_dissipation(nc):
    model, data = nc
    s = KineticSolver(model, data, N=30, dt=0.05, gamma=1.0, W_momentum=False)
    assert s.r_W is None
    gW = model.gradient(s.theta, data.X, data.Y, s.W).W
    obs = Observers(["hamiltonian", "dissipation"], model, data)
    assert obs(s)["dissipation"] == pytest.approx(float(np.sum(gW ** 2)), rel=1e-12)   # r = 0
    H = [obs(s)["hamiltonian"]]
    for _ in range(100):
        s.step()
        H.append(obs(s)["hamiltonian"])
    assert np.all(np.diff(H) < 0)


def test_kinetic_free_energy_is_labelled_estimate():
    model, data = toy_linear()
    s = KineticSolver(model, data, N=2000, dt=0.1, gamma=2.0, beta=10.0, seed=1)
    s.step(80)
    from mfpde.metrics.entropy import knn_entropy
    from mfpde.observables import describe
    obs = Observers(["hamiltonian", "kinetic_free_energy"], model, data, beta=10.0)(s)
    S = knn_entropy(np.hstack([s.theta, s.r]), k=3)
    assert obs["kinetic_free_energy"] == pytest.approx(obs["hamiltonian"] - S / 10.0, rel=1e-12)
    assert "ESTIMATE" in describe()["kinetic_free_energy"]


# ----------------------------------------------------------------------------- accuracy
def test_orders(two_layer):
    hs = (0.1, 0.05, 0.025)
    _, _, p2 = experiment_order(*two_layer, integrator="splitting", hs=hs, N=64, h_ref=0.025 / 8)
    _, _, p1 = experiment_order(*two_layer, integrator="shb", hs=hs, N=64, h_ref=0.025 / 8)
    assert 1.8 <= p2 <= 2.2
    assert 0.8 <= p1 <= 1.25


def test_gibbs_and_transient_moments_linear():
    """K2: underdamped Langevin for the linear neuron; mean and variances against the exact linear
    ODE (transient) and the Gibbs law (stationary), within 4 standard errors."""
    model, data = toy_linear()
    check_linear_kinetic_moments(model, data, linear_kinetic_moments)


def check_linear_kinetic_moments(model, data, moments):
    """The K2 checks of :func:`test_gibbs_and_transient_moments_linear` for a linear-neuron
    ``model`` (also run in float32 by tests/test_float32.py); ``moments`` the exact transient
    moments ``(m, v, C)`` at time t."""
    beta, gamma, lam, N = 10.0, 2.0, model.lam, 6000
    s = KineticSolver(model, data, N=N, dt=0.05, gamma=gamma, beta=beta, integrator="baoab", seed=5)
    s.step(30)
    m, v, C = moments(model, data, s.t, gamma, beta)
    assert np.all(np.abs(s.theta.mean(0) - m) < 4 * np.sqrt(C[0, 0] / N))
    assert np.all(np.abs(s.r.mean(0) - v) < 4 * np.sqrt(C[1, 1] / N))
    assert np.all(np.abs(s.theta.var(0) - C[0, 0]) < 4 * C[0, 0] * np.sqrt(2 / N))
    s.step(270)
    X, Y = data.X, data.Y[:, 0]
    m_inf = np.linalg.solve(X.T @ X / len(X) + lam * np.eye(X.shape[1]), X.T @ Y / len(X))
    assert np.all(np.abs(s.theta.mean(0) - m_inf) < 4 * np.sqrt(1 / (beta * lam * N)))
    assert np.all(np.abs(s.theta.var(0) - 1 / (beta * lam)) < 4 / (beta * lam) * np.sqrt(2 / N))
    assert np.all(np.abs(s.r.var(0) - 1 / beta) < 4 / beta * np.sqrt(2 / N))


def test_overdamped_limit_noisy_coupling_slope():
    e = experiment_overdamped_coupled([2, 4, 8], beta=20.0, N=100, c=0.2, S=0.5)
    assert -1.25 <= fit_slope([2, 4, 8], e) <= -0.75


def test_overdamped_shb_equals_gd_when_momentum_vanishes(two_layer):
    """gamma*eps -> 1 (mu = 0): SHB with step eps is GD with step eps^2 = eps/gamma exactly."""
    model, data = two_layer
    theta0 = model.init_particles(25, np.random.default_rng(2))
    eps = 0.1
    a = KineticSolver(model, data, N=25, dt=eps, gamma=(1 - 1e-15) / eps, integrator="shb",
                      theta0=theta0)
    b = LangevinSolver(model, data, N=25, dt=eps * eps, theta0=theta0)
    a.step(40)
    b.step(40)
    np.testing.assert_allclose(a.theta, b.theta, rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------- Pham–Nguyen
def test_pn_kinetic():
    from mfpde.dynamics import PNDriver, PNKineticSolver
    from mfpde.validation.cases_kinetic import toy_pn
    model, data, w0 = toy_pn(n1=12, n2=10)
    s = PNKineticSolver(model, data, dt=0.1, gamma=0.5, weights0=w0)
    obs = Observers(["hamiltonian"], model, data)
    H = [obs(s)["hamiltonian"]]
    for _ in range(100):
        s.step()
        H.append(obs(s)["hamiltonian"])
    assert np.all(np.diff(H) < 0) and s.n_force == 101
    # the PN heavy-ball recursion is the finite-width SHB of PNDriver, iterate for iterate
    a = PNKineticSolver(model, data, dt=0.05, gamma=0.5, weights0=w0, integrator="shb")
    b = PNDriver(model, data, dt=0.05, method="shb", gamma=0.5, weights0=w0)
    a.step(20)
    b.step(20)
    for x, y in zip(list(a.w.arrays()) + a.r, list(b.w.arrays()) + b.r):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-13)
    st = s.state_dict()
    s.step(5)
    c = PNKineticSolver(model, data, dt=0.1, gamma=0.5, weights0=w0)
    c.load_state_dict(st)
    c.step(5)
    assert all(np.array_equal(x, y) for x, y in zip(s.w.arrays(), c.w.arrays()))


# ----------------------------------------------------------------------------- validation cases
def test_cases_registered():
    from mfpde.validation import cases, discover
    discover(["mfpde.validation.cases_kinetic"])
    names = set(cases())
    assert {"kinetic.lyapunov", "kinetic.splitting_order", "kinetic.gibbs", "kinetic.overdamped",
            "kinetic.quadrature", "kinetic.pn"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("case", ["kinetic.lyapunov", "kinetic.splitting_order", "kinetic.gibbs",
                                  "kinetic.overdamped", "kinetic.quadrature", "kinetic.pn"])
def test_validation_case_quick(case, tmp_path):
    from mfpde.validation import Context, cases, discover
    discover(["mfpde.validation.cases_kinetic"])
    ctx = Context(outdir=tmp_path, level="quick", case=case)
    checks = cases()[case].fn(ctx)
    failed = [(c.quantity, c.measured, c.expected) for c in checks if not c.passed]
    assert checks and not failed, failed
    assert ctx.figures and all(p.exists() for p in ctx.figures)


def test_kinetic_drivers_protocol(two_layer, nc):
    """Engine protocol: kinetic fields ``theta, r`` [+ ``W``, ``r_W``]; the PN reference shows
    weights and velocities; ``t_end`` ignored (fixed ``dt``)."""
    from mfpde.engine.protocol import check_driver
    from mfpde.validation.cases_kinetic import toy_pn
    model, data = nc
    s = KineticSolver(model, data, N=10, dt=0.05, gamma=1.0, seed=0)
    check_driver(s)
    s.step(2, t_end=0.0)
    f = s.fields()
    assert set(f) == {"theta", "r", "W", "r_W"} and f["r"] is s.r and f["r_W"] is s.r_W
    s = KineticSolver(model, data, N=10, dt=0.05, gamma=1.0, seed=0, W_momentum=False)
    assert set(s.fields()) == {"theta", "r", "W"}
    from mfpde.dynamics import PNKineticSolver
    pm, pdata, w0 = toy_pn(n1=6, n2=5)
    p = PNKineticSolver(pm, pdata, dt=0.1, gamma=0.5, weights0=w0)
    check_driver(p)
    p.step(2, t_end=0.0)
    assert p.k == 2 and set(p.fields()) == {"w1", "w2", "w3", "r1", "r2", "r3"}
    assert p.fields()["r2"] is p.r[1]


@pytest.mark.parametrize("N", [300, 70000])
def test_heavy_ball_written_once_fused_equals_numpy(N):
    """``velocity_step`` runs the fused kernel for (N, D) arrays and the NumPy sequence
    otherwise: the same bits (serial and parallel kernel sizes); the Polyak and first-order
    steps are the documented sequences."""
    from mfpde.dynamics.heavy_ball import descent_step, polyak_step, velocity_step
    th, r, f, g = _arrays(N=N, D=3, seed=5)
    for s in (0.0, 0.21):
        t1, r1 = th.copy(), r.copy()
        velocity_step(t1, r1, f, 0.93, 0.07, noise=g, noise_scale=s)      # fused kernel
        t2, r2 = np.asfortranarray(th), np.asfortranarray(r)                # NumPy path
        velocity_step(t2, r2, f, 0.93, 0.07, noise=g, noise_scale=s)
        assert np.array_equal(t1, t2) and np.array_equal(r1, r2)
        t3, r3 = th.copy(), r.copy()
        r3 *= 0.93
        r3 -= 0.07 * f
        if s:
            r3 += s * g
        t3 += 0.07 * r3
        assert np.array_equal(t1, t3) and np.array_equal(r1, r3)
    # a separate force step (Pham–Nguyen xi_l) on a 1-D layer
    w, v, gl = th[:, 0].copy(), r[:, 0].copy(), f[:, 0].copy()
    velocity_step(w, v, gl, 0.9, 0.05, force_step=0.05 * 1.7)
    assert np.array_equal(v, 0.9 * r[:, 0] - (0.05 * 1.7) * f[:, 0])
    assert np.array_equal(w, th[:, 0] + 0.05 * v)
    w, wp = th.copy(), r.copy()
    polyak_step(w, wp, f, 0.8, 0.01, noise=g, noise_scale=0.3)
    assert np.array_equal(w, th + 0.8 * (th - r) - 0.01 * f + 0.3 * g) and np.array_equal(wp, th)
    w = th.copy()
    descent_step(w, f, 0.1)
    assert np.array_equal(w, th - 0.1 * f)
