"""Model layer (models.md §1–§2, dynamics.md §1.2–§1.3): forces against finite differences of the
width-N objective J_N, Laplacians and potentials, weighted measures, blocking, input checks."""
import numpy as np
import pytest

from mfpde.models import NCThreeLayer, TwoLayer, make_model

ACTS = ["tanh", "sigmoid", "erf", "softplus", "identity"]
CASES = [
    ("two_layer", dict(q=1)),
    ("two_layer", dict(q=2, bias=True, lam=0.3)),
    ("two_layer", dict(q=1, output="fixed", lam=0.1)),
    ("two_layer", dict(q=1, output="fixed", bias=True)),
    ("nc", dict(q=3, p=4, Gamma=2.0)),
    ("nc", dict(q=2, p=3, Gamma=0.7, lam=0.05, lam_W=0.2, bias=True)),
]


def _problem(kind, kw, act, seed=0, N=6, n=9, d=3):
    rng = np.random.default_rng(seed)
    m = make_model(kind, d=d, activation=act, **kw)
    X = rng.standard_normal((n, d)) / np.sqrt(d)
    Y = rng.standard_normal((n, m.q))
    theta = m.init_particles(N, rng)
    W = m.init_W(rng)
    return m, X, Y, theta, W


def _J(m, theta, X, Y, W):
    """Width-N objective J_N = R + (lam/(2N)) sum |theta_j|^2 + (lam_W/2)|W|^2 (dynamics.md §1.2)."""
    return m.risk(theta, X, Y, W) + m.penalty(theta, W)


def _rel(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("kind,kw", CASES)
def test_force_is_N_rescaled_gradient(kind, kw, act):
    m, X, Y, theta, W = _problem(kind, kw, act)
    N = theta.shape[0]
    g = m.gradient(theta, X, Y, W)
    h = 1e-6
    fd = np.zeros_like(theta)
    for idx in np.ndindex(*theta.shape):
        e = np.zeros_like(theta)
        e[idx] = h
        fd[idx] = N * (_J(m, theta + e, X, Y, W) - _J(m, theta - e, X, Y, W)) / (2 * h)
    assert _rel(g.theta, fd) < 1e-6
    if W is not None:
        fdW = np.zeros_like(W)
        for idx in np.ndindex(*W.shape):
            e = np.zeros_like(W)
            e[idx] = h
            fdW[idx] = (_J(m, theta, X, Y, W + e) - _J(m, theta, X, Y, W - e)) / (2 * h)
        assert _rel(g.W, fdW) < 1e-6
    assert np.isclose(g.risk, m.risk(theta, X, Y, W), rtol=1e-14)


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "erf", "softplus"])
@pytest.mark.parametrize("kind,kw", CASES)
def test_potential_gradient_and_laplacian(kind, kw, act):
    """grad Psi and Delta Psi of the potential at fixed rho (dynamics.md §1.2, metrics.md §4)."""
    m, X, Y, theta, W = _problem(kind, kw, act, seed=1)
    g = m.gradient(theta, X, Y, W, laplacian=True)
    pts = theta[:3]
    h = 1e-5
    grad_fd = np.zeros_like(pts)
    lap_fd = np.zeros(3)
    psi0 = m.potential(pts, theta, X, Y, W)
    for j in range(m.D):
        e = np.zeros_like(pts)
        e[:, j] = h
        up, dn = m.potential(pts + e, theta, X, Y, W), m.potential(pts - e, theta, X, Y, W)
        grad_fd[:, j] = (up - dn) / (2 * h)
        lap_fd += (up - 2 * psi0 + dn) / h**2
    assert _rel(g.theta[:3], grad_fd) < 1e-6
    assert np.abs(g.lap[:3] - lap_fd).max() < 1e-4 * max(1.0, np.abs(lap_fd).max())


def test_first_variation():
    """d/ds R((1-s) rho_N + s delta_theta) at 0 = dR/drho(theta) - mean_j dR/drho(theta_j) (§U)."""
    m, X, Y, theta, W = _problem("nc", dict(q=2, p=3, Gamma=1.5), "tanh", seed=2, N=8)
    new = np.random.default_rng(5).standard_normal((1, m.D))
    pts = np.vstack([theta, new])
    N = theta.shape[0]
    dRdrho = m.potential(pts, theta, X, Y, W) - 0.5 * m.lam * np.sum(pts**2, 1)

    def R(s):
        w = np.r_[np.full(N, (1 - s) / N), s]
        return m.risk(pts, X, Y, W, weights=w)

    h = 1e-5                                  # one-sided (weights must stay >= 0), second order
    lhs = (-3 * R(0.0) + 4 * R(h) - R(2 * h)) / (2 * h)
    assert np.isclose(lhs, dRdrho[-1] - dRdrho[:N].mean(), rtol=1e-6, atol=1e-9)


def test_weighted_measure_equals_replicated_particles():
    m, X, Y, theta, W = _problem("nc", dict(q=3, p=4, Gamma=2.0), "tanh", N=5)
    counts = np.array([1, 2, 3, 1, 1])
    rep = np.repeat(theta, counts, axis=0)
    w = counts / counts.sum()
    assert np.allclose(m.forward(theta, X, W, weights=w), m.forward(rep, X, W), atol=1e-14)
    g1 = m.gradient(theta, X, Y, W, weights=w)
    g2 = m.gradient(rep, X, Y, W)
    assert np.allclose(g1.theta, g2.theta[np.cumsum(counts) - 1], atol=1e-13)
    assert np.allclose(g1.W, g2.W, atol=1e-14)


@pytest.mark.parametrize("kind,kw", CASES)
def test_blocking_does_not_change_results(kind, kw):
    m, X, Y, theta, W = _problem(kind, kw, "tanh", N=50, n=37)
    g = m.gradient(theta, X, Y, W, laplacian=True)
    small = make_model(kind, d=3, activation="tanh", **kw)
    small.block_bytes = 8 * 50 * 4          # 4 samples per block
    assert small.block_size(37, 50) == 4
    gs = small.gradient(theta, X, Y, W, laplacian=True)
    assert np.allclose(g.theta, gs.theta, rtol=1e-12, atol=1e-15)
    assert np.allclose(g.lap, gs.lap, rtol=1e-12, atol=1e-15)
    assert np.isclose(g.risk, gs.risk, rtol=1e-13)


def test_two_layer_matches_plain_numpy():
    """Row-layout matrix formulas of dynamics.md §1.2 written out directly."""
    rng = np.random.default_rng(3)
    m = TwoLayer(d=4, q=2, activation="tanh", lam=0.2)
    X, Y = rng.standard_normal((30, 4)), rng.standard_normal((30, 2))
    th = m.init_particles(20, rng)
    A, U = th[:, :2], th[:, 2:]
    S = np.tanh(X @ U.T)
    Z = S @ A / 20 - Y
    G = Z / 30
    gA = S.T @ G + 0.2 * A
    gU = ((1 - S**2) * (G @ A.T)).T @ X + 0.2 * U
    g = m.gradient(th, X, Y)
    assert np.allclose(g.theta, np.hstack([gA, gU]), atol=1e-14)
    assert np.isclose(g.risk, (Z**2).sum() / 60)


def test_nc_is_two_layer_when_W_is_identity():
    """models.md §2: p = q, W = I_q, Gamma = 1 frozen is the two-layer network with vector output."""
    rng = np.random.default_rng(4)
    nc = NCThreeLayer(d=3, q=2, p=2, Gamma=1.0, lam=0.1)
    tl = TwoLayer(d=3, q=2, lam=0.1)
    X, Y = rng.standard_normal((10, 3)), rng.standard_normal((10, 2))
    th = tl.init_particles(7, rng)
    assert np.allclose(nc.gradient(th, X, Y, np.eye(2)).theta, tl.gradient(th, X, Y).theta, atol=1e-15)


def test_init_W_orthonormal():
    m = NCThreeLayer(d=3, q=3, p=5)
    W = m.init_W(np.random.default_rng(0))
    assert np.allclose(W.T @ W, np.eye(3), atol=1e-13)


def test_bad_inputs_raise_clear_errors():
    m = TwoLayer(d=3, q=1)
    X, Y = np.zeros((4, 3)), np.zeros((4, 1))
    with pytest.raises(ValueError, match=r"theta must have shape \(N, 4\)"):
        m.gradient(np.zeros((5, 3)), X, Y)
    with pytest.raises(ValueError, match="d = 3 columns"):
        m.gradient(np.zeros((5, 4)), np.zeros((4, 2)), Y)
    with pytest.raises(ValueError, match="4 rows"):
        m.gradient(np.zeros((5, 4)), X, np.zeros((3, 1)))
    with pytest.raises(ValueError, match="has no W"):
        m.gradient(np.zeros((5, 4)), X, Y, W=np.eye(1))
    with pytest.raises(ValueError, match="needs W"):
        NCThreeLayer(d=3, q=2, p=2).gradient(np.zeros((5, 5)), X, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="p >= q"):
        NCThreeLayer(d=3, q=3, p=2)
    with pytest.raises(ValueError, match="output='fixed' needs q = 1"):
        TwoLayer(d=3, q=2, output="fixed")
    with pytest.raises(ValueError, match="lam"):
        TwoLayer(d=3, lam=-1.0)
    with pytest.raises(ValueError, match="did you mean 'nc'"):
        make_model("nc3", d=3)
    with pytest.raises(ValueError, match="weights"):
        m.forward(np.zeros((5, 4)), X, weights=np.ones(5))
