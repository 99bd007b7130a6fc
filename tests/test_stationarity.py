"""Tests of mfpde.metrics.stationarity and the new functions of mfpde.metrics.collapse
(theory: validation.md §V5–§V7, metrics.md §1.4, §3, §4)."""

import math

import numpy as np
import pytest

from mfpde.data import well_separated
from mfpde.metrics import collapse as C
from mfpde.metrics import stationarity as S
from mfpde.models import make_model


def _problem(rng, n=7, p=4, q=3):
    H = rng.standard_normal((n, p))
    W = rng.standard_normal((p, q))
    labels = np.arange(n) % q
    Y = np.eye(q)[labels]
    B = rng.standard_normal((n, 3 * n))
    K = B @ B.T / (3 * n)
    return H, W, Y, K, labels


def _eq6_dense(K, W, Y, Gamma, lam):
    """vec(H) = Gamma (K/n kron W)(Gamma^2 K/n kron W^T W + lam I_nq)^-1 vec(Y), column-stacking
    vec of the theory layout (H: p x n, Y: q x n); returns rows (n, p)."""
    n, q = Y.shape
    p = W.shape[0]
    M = Gamma**2 * np.kron(K / n, W.T @ W) + lam * np.eye(n * q)
    vecY = Y.T.reshape(-1, order="F")
    vecH = Gamma * np.kron(K / n, W) @ np.linalg.solve(M, vecY)
    return vecH.reshape((p, n), order="F").T


@pytest.mark.parametrize("Gamma,lam,p", [(1.0, 0.3, 4), (2.5, 0.01, 3), (0.4, 2.0, 6)])
def test_eq6_eigendecomposition_equals_dense_kronecker(Gamma, lam, p):
    rng = np.random.default_rng(int(10 * Gamma + p))
    _, W, Y, K, _ = _problem(rng, p=p)
    H6 = S.eq6_features(K, W, Y, Gamma, lam)
    Hd = _eq6_dense(K, W, Y, Gamma, lam)
    assert np.abs(H6 - Hd).max() < 1e-12 * max(1.0, np.abs(Hd).max())


def test_eq6_solves_identity12_exactly():
    rng = np.random.default_rng(2)
    _, W, Y, K, _ = _problem(rng)
    H6 = S.eq6_features(K, W, Y, 1.7, 0.2)
    assert S.r12(H6, K, W, Y, 1.7, 0.2) < 1e-12
    assert S.r6(H6, K, W, Y, 1.7, 0.2) == 0.0


def test_identity12_residual_is_the_particle_force_moment():
    """H + K G/lam = (1/(lam N)) sum_j grad_a Psi(theta_j) sigma(u_j^T X) for particles."""
    rng = np.random.default_rng(3)
    data = well_separated(q=3, m=3, d=4, seed=1)
    model = make_model("nc", d=4, q=3, p=4, Gamma=1.3, lam=0.07, lam_W=0.02)
    theta = rng.standard_normal((300, model.D))
    W = model.init_W(rng)
    snap = S.nc_snapshot(model, theta, data.X, data.Y, W)
    E = S.identity12_residual(snap.H, snap.K, W, data.Y, model.Gamma, model.lam)
    g = model.gradient(theta, data.X, data.Y, W)
    Sig = np.tanh(data.X @ theta[:, 4:].T)                  # (n, N)
    ref = Sig @ g.theta[:, :4] / (model.lam * theta.shape[0])
    assert np.abs(E - ref).max() < 1e-12
    assert S.r12(snap.H, snap.K, W, data.Y, model.Gamma, model.lam) == pytest.approx(
        np.linalg.norm(ref) / np.linalg.norm(snap.H), rel=1e-12)


def test_kernel_matrix_direct_and_with_bias():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((6, 3)) / 2
    for bias in (False, True):
        model = make_model("nc", d=3, q=2, p=2, activation="sigmoid", bias=bias)
        theta = rng.standard_normal((1000, model.D))
        Xa = np.hstack([X, np.ones((6, 1))]) if bias else X
        Sig = 1 / (1 + np.exp(-(Xa @ theta[:, 2:].T)))
        K = S.kernel_matrix(model, theta, X, chunk=333)
        assert np.abs(K - Sig @ Sig.T / 1000).max() < 1e-13


def test_collapsed_features_and_e2():
    rng = np.random.default_rng(5)
    H, W, Y, _, labels = _problem(rng, n=9)
    Hs = S.collapsed_features(W, Y, 2.0)
    assert np.abs(2.0 * Hs @ W - Y).max() < 1e-12          # Gamma W^T H* = Y
    assert C.nc1(Hs, labels) < 1e-20
    assert S.e2(Hs, W, Y, 2.0) < 1e-24
    assert S.e2(H, W, Y, 2.0) == pytest.approx(np.sum((H - Hs) ** 2))
    with pytest.raises(ValueError, match="singular"):
        S.collapsed_features(np.zeros((4, 3)), Y, 1.0)


def test_e2_measured_bound_decomposition_and_inequality():
    rng = np.random.default_rng(6)
    for _ in range(20):
        H, W, Y, K, _ = _problem(rng, n=8, p=5)
        G, lam = rng.uniform(0.3, 3), rng.uniform(0.05, 2)
        b = S.e2_bound_measured(H, K, W, Y, G, lam)
        assert b["range_part"] + b["perp_part"] == pytest.approx(b["e2"], rel=1e-12)
        assert b["range_part"] <= b["risk_part"] * (1 + 1e-12)
        assert b["e2"] <= b["bound"] * (1 + 1e-12)
    # at the eq. (6) point the identity part vanishes: the bound is the risk part alone
    H6 = S.eq6_features(K, W, Y, 1.0, 0.5)
    b = S.e2_bound_measured(H6, K, W, Y, 1.0, 0.5)
    assert b["e12_sq"] < 1e-24
    assert b["e2"] <= b["risk_part"] * (1 + 1e-10)


def test_paper_e2_bound_terms():
    W = np.linalg.qr(np.random.default_rng(7).standard_normal((4, 3)))[0]
    b = S.e2_bound_paper(12, 0.1, W, 2.0, 0.5, 0.0, 1.0)
    assert b["eps_part"] == 0.0 and b["risk_part"] == pytest.approx(2 * 12 * 0.1 / 4.0)
    b = S.e2_bound_paper(12, 0.0, W, 1.0, 0.5, 0.1, 1.0)
    # 2 (lam^-4 + lam^-2) n eps^2 + 2 lam^-2 n eps^2 (s = 1)
    assert b["bound"] == pytest.approx(2 * (16 + 4) * 12 * 0.01 + 2 * 4 * 12 * 0.01)
    assert S.e1_bound_paper(12, W, 1.0, 0.5, 0.1) == pytest.approx(2 * (16 + 4) * 12 * 0.01)


def test_corollary44_threshold_and_inequality_on_random_states():
    rng = np.random.default_rng(8)
    W = rng.standard_normal((4, 3))
    labels = np.repeat(np.arange(3), 5)
    smax = np.linalg.svd(2.0 * W, compute_uv=False).max()
    assert S.nc1_bound_threshold(W, 2.0, labels) == pytest.approx(2 * 15 / (3 * smax**2))
    applicable = 0
    for trial in range(400):
        q, p = rng.integers(2, 5), rng.integers(4, 8)
        counts = rng.integers(2, 7, size=q)
        lab = np.repeat(np.arange(q), counts)
        rng.shuffle(lab)
        Y = np.eye(q)[lab]
        W = rng.standard_normal((p, q))
        G = rng.uniform(0.2, 4)
        Hs = S.collapsed_features(W, Y, G)
        H = Hs + 10 ** rng.uniform(-3, -0.5) * np.abs(Hs).max() * rng.standard_normal(Hs.shape)
        b, ok = S.nc1_bound(S.e2(H, W, Y, G), W, G, lab)
        if ok:
            applicable += 1
            assert C.nc1(H, lab) <= b * (1 + 1e-12)
        else:
            assert math.isnan(b)
    assert applicable > 100


def test_lemma45_forms_at_an_exact_stationary_point():
    """W stationary: grad_W F = 0 gives G H^T = -lam_W W W^T; then E[aa^T] from Lemma 4.5."""
    rng = np.random.default_rng(9)
    n, p, q = 9, 5, 3
    H = rng.standard_normal((n, p))
    Y = np.eye(q)[np.arange(n) % q]
    Gam, lam, lam_W, beta = 1.5, 0.2, 0.3, 7.0
    W = np.linalg.solve(Gam**2 / n * H.T @ H + lam_W * np.eye(p), Gam / n * H.T @ Y)
    Z, G, _ = S.residual_matrices(H, W, Y, Gam)
    assert np.abs(Gam / n * H.T @ Z + lam_W * W).max() < 1e-12           # grad_W F = 0
    GHt = G.T @ H
    assert np.abs(GHt + lam_W * W @ W.T).max() < 1e-12
    E = (np.eye(p) / beta - GHt) / lam
    assert S.lemma45_frozen(E, GHt, lam, beta) < 1e-13
    assert S.lemma45_trained(E, W @ W.T, lam, lam_W, beta) < 1e-13
    # wrong temperature: the diagonal is off by the difference
    # residual 1/beta - 1/(2 beta) = 1/(2 beta), in units of the 1/(2 beta) it is tested against
    assert S.lemma45_trained(E, W @ W.T, lam, lam_W, 2 * beta, relative=True) == pytest.approx(
        1.0, rel=1e-9)
    M = S.lemma45_trained_matrix(E, W @ W.T, lam, lam_W, 2 * beta)
    assert np.allclose(np.diag(M), 1 / (2 * beta))


def test_lemma45_frozen_at_the_gibbs_form():
    """a | u ~ N(-G sigma/lam, 1/(beta lam)): lam E[aa^T] + G H^T = I/beta for any weights."""
    rng = np.random.default_rng(10)
    n, p, lam, beta = 6, 3, 0.4, 5.0
    Sg = np.tanh(rng.standard_normal((500, n)))
    w = rng.random(500)
    w /= w.sum()
    K = Sg.T @ (Sg * w[:, None])
    G = rng.standard_normal((n, p))
    H = -K @ G / lam
    E = G.T @ K @ G / lam**2 + np.eye(p) / (beta * lam)
    assert S.lemma45_frozen(E, G.T @ H, lam, beta) < 1e-13


def test_nb_lower_bound_equality_for_orthonormal_W_and_inequality():
    rng = np.random.default_rng(11)
    p, q, lam, lam_W, beta = 6, 3, 0.1, 0.25, 4.0
    W = np.linalg.qr(rng.standard_normal((p, q)))[0]
    E = (np.eye(p) / beta + lam_W * W @ W.T) / lam                     # Lemma 4.5, trained
    nb = C.balancedness_moments(E, W @ W.T)
    bound = S.nb_lower_bound(W @ W.T, beta, lam_W)
    assert bound == pytest.approx(1 / (1 + beta * lam_W))
    assert nb == pytest.approx(bound, rel=1e-12)
    for _ in range(20):
        W = rng.standard_normal((p, q))
        E = (np.eye(p) / beta + lam_W * W @ W.T) / lam
        assert C.balancedness_moments(E, W @ W.T) >= S.nb_lower_bound(W @ W.T, beta, lam_W) - 1e-12
    assert S.nb_lower_bound(W @ W.T, math.inf, lam_W) == 0.0
    Wsq = rng.standard_normal((3, 3))
    assert S.nb_lower_bound(Wsq @ Wsq.T, beta, lam_W) == 0.0          # p = q: no null space
    # a time average of W W^T has full rank: q must be given
    avg = 0.5 * (W @ W.T) + 0.5 * (Wsq2 := rng.standard_normal((p, q))) @ Wsq2.T
    assert S.nb_lower_bound(avg, beta, lam_W) == 0.0
    assert S.nb_lower_bound(avg, beta, lam_W, q=q) > 0.0


def test_balancedness_moments_equals_balancedness():
    rng = np.random.default_rng(12)
    A = rng.standard_normal((50, 4))
    W = rng.standard_normal((4, 2))
    assert C.balancedness_moments(A.T @ A / 50, W @ W.T) == pytest.approx(C.balancedness(A, W),
                                                                          rel=1e-12)


def test_balanced_error_known_values():
    lab = np.array([0, 0, 0, 1, 2, 2])
    F = np.eye(3)[lab]
    assert C.balanced_error(F, lab) == 0.0
    F2 = F.copy()
    F2[0] = [0, 1, 0]                                                # one of three in class 0
    assert C.balanced_error(F2, lab) == pytest.approx((1 / 3) / 3)
    F3 = F.copy()
    F3[3] = [0.5, 0.5, 0.0]                                          # tie: an error
    assert C.balanced_error(F3, lab) == pytest.approx(1 / 3)
    assert C.balanced_error(np.ones((6, 3)), lab) == 1.0              # constant output
    with pytest.raises(ValueError):
        C.balanced_error(np.ones((6, 2)), lab)


def test_stationarity_gap_noiseless_is_the_gradient_norm():
    rng = np.random.default_rng(13)
    data = well_separated(q=3, m=3, d=4, seed=2)
    model = make_model("nc", d=4, q=3, p=3, Gamma=1.0, lam=0.1, lam_W=0.1)
    theta = rng.standard_normal((200, model.D))
    W = model.init_W(rng)
    gap = S.stationarity_gap(model, theta, data.X, data.Y, W, math.inf)
    g = model.gradient(theta, data.X, data.Y, W)
    assert gap.grad_sq == pytest.approx(np.mean(np.sum(g.theta**2, 1)), rel=1e-12)
    assert gap.eps_S == gap.eps_S_free == pytest.approx(math.sqrt(gap.grad_sq))
    assert gap.grad_W_sq == pytest.approx(np.sum(g.W**2))
    assert math.isnan(gap.fisher)


def test_stationarity_gap_vanishes_at_a_gibbs_state():
    """Negligible data term (Gamma -> 0): Psi = lam |theta|^2/2, Gibbs = N(0, I/(beta lam));
    the integration-by-parts form is ~0 (KDE bias only) while the entropy-free part is not."""
    rng = np.random.default_rng(14)
    lam, beta = 0.5, 4.0
    X = rng.standard_normal((5, 1)) / 3
    Y = np.eye(1)[np.zeros(5, int)]
    model = make_model("nc", d=1, q=1, p=1, Gamma=1e-9, lam=lam, lam_W=0.0)
    theta = rng.standard_normal((5000, 2)) / math.sqrt(beta * lam)
    gap = S.stationarity_gap(model, theta, X, Y, np.ones((1, 1)), beta, max_points=5000)
    D = 2
    assert gap.grad_sq == pytest.approx(lam * D / beta, rel=0.05)
    assert gap.laplacian == pytest.approx(lam * D, rel=1e-6)
    # the KDE smooths rho by the kernel (bandwidth ~ 0.24 in whitened units): I about 10% low
    assert gap.fisher == pytest.approx(beta * lam * D, rel=0.2)
    assert abs(gap.eps_S_sq) <= 0.2 * gap.grad_sq
    assert S.eps_S_squared(lam * D / beta, lam * D, beta * lam * D, beta) == pytest.approx(
        0.0, abs=1e-15)


def test_nc_snapshot_GHt_paths_agree():
    rng = np.random.default_rng(15)
    data = well_separated(q=3, m=3, d=4, seed=3)
    model = make_model("nc", d=4, q=3, p=4, Gamma=2.0, lam=0.05, lam_W=0.05)
    theta = rng.standard_normal((400, model.D))
    W = model.init_W(rng)
    snap = S.nc_snapshot(model, theta, data.X, data.Y, W)
    g = model.gradient(theta, data.X, data.Y, W)
    A = theta[:, :4]
    ref = (g.theta[:, :4] - model.lam * A).T @ A / 400
    assert np.abs(snap.GHt - ref).max() < 1e-12
    assert np.abs(snap.EaaT - A.T @ A / 400).max() < 1e-14
    m = S.second_moments(model, theta, data.X, data.Y, W)
    assert np.abs(m["GHt"] - snap.GHt).max() == 0.0


def test_heldout_metrics_manual():
    rng = np.random.default_rng(16)
    tr = well_separated(q=3, m=4, d=4, seed=4)
    te = well_separated(q=3, m=5, d=4, seed=5)
    model = make_model("nc", d=4, q=3, p=4, Gamma=1.0)
    theta = rng.standard_normal((300, model.D))
    W = model.init_W(rng)
    m = S.heldout_metrics(model, theta, W, tr, te)
    F = model.forward(theta, te.X, W)
    assert m["test_loss"] == pytest.approx(model.risk(theta, te.X, te.Y, W), rel=1e-12)
    assert m["test_error"] == C.balanced_error(F, te.labels)
    assert m["test_nc1"] == pytest.approx(C.nc1(model.features(theta, te.X), te.labels))
    assert m["gap"] == pytest.approx(m["test_loss"] - m["train_loss"])


def test_input_validation_names_the_argument():
    rng = np.random.default_rng(17)
    H, W, Y, K, labels = _problem(rng)
    with pytest.raises(ValueError, match="W must be"):
        S.r12(H, K, W[:, :2], Y, 1.0, 0.1)
    with pytest.raises(ValueError, match="lam"):
        S.r12(H, K, W, Y, 1.0, 0.0)
    with pytest.raises(ValueError, match="K must be"):
        S.eq6_features(K[:3], W, Y, 1.0, 0.1)
    with pytest.raises(ValueError, match="e2_value"):
        S.nc1_bound(-1.0, W, 1.0, labels)
