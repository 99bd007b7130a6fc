"""Tests of mfpde.metrics.collapse (theory/metrics.md §1-§2, validation.md §U, §K4, §V6)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfpde.metrics import collapse as C


def _random_unbalanced(rng, n=57, p=6, q=4):
    labels = rng.integers(0, q, size=n)
    labels[:q] = np.arange(q)  # every class non-empty
    rng.shuffle(labels)
    H = rng.standard_normal((n, p)) * rng.uniform(0.5, 3.0, size=p) + rng.standard_normal(p)
    return H, labels


def _random_orthogonal(rng, p):
    Q, R = np.linalg.qr(rng.standard_normal((p, p)))
    return Q * np.sign(np.diag(R))


# ---------------------------------------------------------------------------------------------
# NC1 (Wu-Mondelli)
# ---------------------------------------------------------------------------------------------
def test_nc1_exact_collapse_is_zero():
    rng = np.random.default_rng(0)
    q, p, m = 4, 7, 9
    mu = rng.standard_normal((q, p))
    labels = rng.permutation(np.repeat(np.arange(q), m))
    H = mu[labels]
    assert C.nc1(H, labels) == pytest.approx(0.0, abs=1e-28)
    assert C.nc1_loop(H, labels) == pytest.approx(0.0, abs=1e-28)
    assert C.nc1_papyan(H, labels) == pytest.approx(0.0, abs=1e-28)


def test_nc1_matrix_equals_loop_unbalanced():
    rng = np.random.default_rng(1)
    for _ in range(5):
        H, labels = _random_unbalanced(rng)
        a = C.nc1(H, labels)
        b = C.nc1_loop(H, labels)
        assert abs(a - b) < 1e-12
        assert 0.0 < a < 1.0


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(min_value=4, max_value=40),
    p=st.integers(min_value=1, max_value=6),
    q=st.integers(min_value=1, max_value=4),
    seed=st.integers(min_value=0, max_value=2**31),
)
def test_nc1_matrix_equals_loop_hypothesis(n, p, q, seed):
    rng = np.random.default_rng(seed)
    q = min(q, n)
    labels = rng.integers(0, q, size=n)
    labels[:q] = np.arange(q)
    H = rng.standard_normal((n, p)) * 10.0 ** rng.uniform(-3, 3)
    assert abs(C.nc1(H, labels) - C.nc1_loop(H, labels)) < 1e-12


def test_nc1_matches_theory_matrix_form_balanced_sorted():
    # metrics.md §1.1: tr((Hbar - M_c)^T (Hbar - M_c)) / tr(Hbar^T Hbar), column layout
    rng = np.random.default_rng(2)
    q, m, p = 3, 5, 4
    n = q * m
    Hc = rng.standard_normal((p, n))  # column layout, sorted by class
    Y = np.kron(np.eye(q), np.ones((1, m)))
    Mg = Hc @ np.ones((n, n)) / n
    Hbar = Hc - Mg
    Mc = Hbar @ Y.T @ Y / m
    ref = np.trace((Hbar - Mc).T @ (Hbar - Mc)) / np.trace(Hbar.T @ Hbar)
    labels = np.repeat(np.arange(q), m)
    assert C.nc1(Hc.T, labels) == pytest.approx(ref, rel=1e-12)
    # NC1 = c/(1+c), c = tr Sigma_W / tr Sigma_B (balanced)
    mu = C.class_means(Hc.T, labels)
    SW = np.sum((Hc.T - mu[labels]) ** 2) / n
    SB = np.sum((mu - Hc.T.mean(0)) ** 2) / q
    c = SW / SB
    assert C.nc1(Hc.T, labels) == pytest.approx(c / (1 + c), rel=1e-12)


def test_nc1_invariances():
    rng = np.random.default_rng(3)
    H, labels = _random_unbalanced(rng, n=80, p=5, q=3)
    ref = C.nc1(H, labels)
    Q = _random_orthogonal(rng, 5)
    shift = 1e3 * rng.standard_normal(5)
    assert C.nc1(H + shift, labels) == pytest.approx(ref, rel=1e-9)
    assert C.nc1(7.5 * H, labels) == pytest.approx(ref, rel=1e-12)
    assert C.nc1(1e-6 * H, labels) == pytest.approx(ref, rel=1e-12)
    assert C.nc1(H @ Q.T, labels) == pytest.approx(ref, rel=1e-12)
    # permutation of the samples
    perm = rng.permutation(len(labels))
    assert C.nc1(H[perm], labels[perm]) == pytest.approx(ref, rel=1e-12)
    # Papyan variant: invariant under translation, scaling, orthogonal maps as well
    refp = C.nc1_papyan(H, labels)
    assert C.nc1_papyan(H + shift, labels) == pytest.approx(refp, rel=1e-8)
    assert C.nc1_papyan(3.0 * H, labels) == pytest.approx(refp, rel=1e-12)
    assert C.nc1_papyan(H @ Q.T, labels) == pytest.approx(refp, rel=1e-10)


def test_nc1_random_features():
    # E NC1 ~ (n - q)/(n - 1) for i.i.d. features (metrics.md §1.1)
    rng = np.random.default_rng(4)
    n, p, q = 200, 10, 5
    labels = rng.integers(0, q, size=n)
    labels[:q] = np.arange(q)
    vals = [C.nc1(rng.standard_normal((n, p)), labels) for _ in range(200)]
    expected = (n - q) / (n - 1)
    se = np.std(vals) / np.sqrt(len(vals))
    assert abs(np.mean(vals) - expected) < 4 * se + 1e-4
    # single draws are close as well (relative sd ~ sqrt(2(q-1)/(np)) ... small)
    assert abs(vals[0] - expected) < 0.03


def test_nc1_degenerate_is_nan():
    labels = np.array([0, 1, 0, 1])
    assert math.isnan(C.nc1(np.full((4, 3), 0.1), labels))
    assert math.isnan(C.nc1_loop(np.zeros((4, 3)), labels))
    assert math.isnan(C.nc1_papyan(np.full((4, 3), 2.0), labels))


@pytest.mark.parametrize(
    "H, labels",
    [
        (np.ones((4, 2)), np.array([0, 1, 0])),  # length mismatch
        (np.ones(4), np.array([0, 1, 0, 1])),  # H not 2-D
        (np.array([[0.0, np.nan], [1, 2], [3, 4]]), np.array([0, 1, 1])),  # NaN
        (np.ones((3, 2)), np.array([0, 2, 2])),  # empty class 1
        (np.ones((3, 2)), np.array([0, -1, 1])),  # negative label
        (np.ones((3, 2)), np.array([0, 0.5, 1])),  # non-integer label
        (np.ones((0, 2)), np.array([], dtype=int)),  # empty
    ],
)
def test_nc1_bad_input(H, labels):
    with pytest.raises(ValueError):
        C.nc1(H, labels)
    with pytest.raises(ValueError):
        C.nc1_loop(H, labels)


def test_float_integral_labels_accepted():
    rng = np.random.default_rng(5)
    H, labels = _random_unbalanced(rng)
    assert C.nc1(H, labels.astype(float)) == C.nc1(H, labels)


# ---------------------------------------------------------------------------------------------
# Papyan NC1
# ---------------------------------------------------------------------------------------------
def test_nc1_papyan_matches_direct_pinv():
    rng = np.random.default_rng(6)
    for p, q in ((8, 3), (3, 5), (6, 6)):
        n = 60
        labels = rng.integers(0, q, size=n)
        labels[:q] = np.arange(q)
        H = rng.standard_normal((n, p)) + 0.5 * rng.standard_normal((q, p))[labels]
        mu = np.array([H[labels == k].mean(0) for k in range(q)])
        muG = H.mean(0)
        R = H - mu[labels]
        SW = R.T @ R / n
        SB = (mu - muG).T @ (mu - muG) / q
        ref = np.trace(SW @ np.linalg.pinv(SB, rcond=1e-10, hermitian=True)) / q
        assert C.nc1_papyan(H, labels) == pytest.approx(ref, rel=1e-9)


def test_nc1_papyan_ignores_orthogonal_within_variance():
    # within-class noise orthogonal to the class-mean span: NC1_P = 0, NC1 > 0 (metrics.md §1.2)
    q, m = 3, 4
    mu = np.zeros((q, 5))
    mu[:, :3] = np.eye(3) - 1.0 / 3
    labels = np.repeat(np.arange(q), m)
    rng = np.random.default_rng(7)
    H = mu[labels].copy()
    noise = rng.standard_normal((q * m, 2))
    noise -= np.array([noise[labels == k].mean(0) for k in range(q)])[labels]
    H[:, 3:] = noise
    assert C.nc1_papyan(H, labels) == pytest.approx(0.0, abs=1e-12)
    assert C.nc1(H, labels) > 0.1


def test_nc1_papyan_needs_two_classes():
    with pytest.raises(ValueError):
        C.nc1_papyan(np.ones((3, 2)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError):
        C.nc1_papyan(np.random.default_rng(0).standard_normal((4, 2)), [0, 1, 0, 1], rcond=-1)


# ---------------------------------------------------------------------------------------------
# oracle (validation.md §K4)
# ---------------------------------------------------------------------------------------------
def test_oracle_structure():
    H, labels, means = C.nc_oracle(4, 6, 3, 0.0, 2.0, np.random.default_rng(0))
    assert H.shape == (12, 6) and labels.shape == (12,)
    assert np.allclose(np.linalg.norm(means, axis=1), 2.0)
    assert np.allclose(means.sum(0), 0.0, atol=1e-12)
    G = means @ means.T / 4.0
    assert np.allclose(G[~np.eye(4, dtype=bool)], -1.0 / 3)
    assert C.nc1(H, labels) == pytest.approx(0.0, abs=1e-25)
    r = C.nc2(H, labels)
    assert r["equinorm_means"] < 1e-12 and r["equiangular_means"] < 1e-12
    # p = q - 1 works too
    H, labels, means = C.nc_oracle(3, 2, 2, 0.0, 1.0, 0)
    assert np.allclose(np.linalg.norm(means, axis=1), 1.0)
    with pytest.raises(ValueError):
        C.nc_oracle(4, 2, 3, 1.0, 1.0, 0)


@pytest.mark.parametrize("q", [2, 3, 10])
@pytest.mark.parametrize("pmul", [1, 4])
def test_oracle_k4_within_2_percent(q, pmul):
    """K4: n = 1e4, both NC1 conventions within 2% of the population values.

    Sampling sd of NC1_P at this size is about sqrt(2/n)/sqrt(q-1) relative (1.4% for q = 2),
    so 2% is a ~1.4-sigma band; the fixed seed makes the test deterministic.
    """
    p = pmul * q
    s_w, s_b = 1.0, 2.0
    H, labels, means = C.nc_oracle(q, p, 10**4 // q, s_w, s_b, np.random.default_rng(0))
    assert C.nc1(H, labels) == pytest.approx(C.nc1_population(p, s_w, s_b), rel=0.02)
    assert C.nc1_papyan(H, labels) == pytest.approx(C.nc1_papyan_population(q, s_w, s_b),
                                                    rel=0.02)


def test_oracle_nc2_nc4_small_noise():
    q, p = 5, 8
    H, labels, means = C.nc_oracle(q, p, 400, 0.05, 2.0, np.random.default_rng(1))
    r = C.nc2(H, labels)
    assert r["equinorm_means"] < 0.01 and r["equiangular_means"] < 0.01
    # a network whose output is the negative distance to the true means agrees with NCC
    outputs = -np.sum((H[:, None, :] - means[None]) ** 2, axis=-1)
    assert C.nc4(H, labels, outputs) == 0.0
    # scrambled outputs disagree about (q-1)/q of the time
    perm = np.random.default_rng(2).permutation(len(labels))
    assert C.nc4(H, labels, outputs[perm]) > 0.6


def test_population_formulas():
    assert C.nc1_population(4, 1.0, 2.0) == pytest.approx(0.5)
    assert C.nc1_papyan_population(3, 1.0, 2.0) == pytest.approx(4.0 / 12.0)
    with pytest.raises(ValueError):
        C.nc1_papyan_population(3, 1.0, 0.0)
    with pytest.raises(ValueError):
        C.nc1_population(0, 1.0, 1.0)


# ---------------------------------------------------------------------------------------------
# NC2-NC4
# ---------------------------------------------------------------------------------------------
def test_nc3_orthonormal_W_value():
    # metrics.md §1.3: orthonormal W, ETF means -> NC3 = 2 - 2 sqrt((q-1)/q)
    q, p = 4, 6
    rng = np.random.default_rng(3)
    W, _ = np.linalg.qr(rng.standard_normal((p, q)))
    Wt = W @ np.linalg.inv(W.T @ W)  # collapsed features: class means = columns of W (W^T W)^-1
    labels = np.repeat(np.arange(q), 3)
    H = Wt.T[labels]
    val = C.nc3(H, labels, W)
    assert val == pytest.approx(2 - 2 * np.sqrt((q - 1) / q), rel=1e-10)
    r = C.nc2(H, labels, W)
    assert r["equinorm_means"] < 1e-12 and r["equiangular_means"] < 1e-12
    assert r["equinorm_W"] < 1e-12
    assert r["equiangular_W"] == pytest.approx(1.0 / (q - 1))
    # perfect self-duality when the W columns are the centred means
    Mt = (Wt - Wt.mean(axis=1, keepdims=True))
    assert C.nc3(H, labels, 3.0 * Mt) == pytest.approx(0.0, abs=1e-20)


def test_nc2_nc3_nc4_bad_shapes():
    H = np.random.default_rng(0).standard_normal((6, 3))
    labels = np.array([0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError):
        C.nc2(H, labels, np.ones((3, 2)))
    with pytest.raises(ValueError):
        C.nc3(H, labels, np.ones((2, 3)))
    with pytest.raises(ValueError):
        C.nc4(H, labels, np.ones((6, 2)))
    with pytest.raises(ValueError):
        C.nc2(H, np.zeros(6, dtype=int))


# ---------------------------------------------------------------------------------------------
# balancedness, Lemma 4.5, singular values
# ---------------------------------------------------------------------------------------------
def _A_with_second_moment(M, N, rng):
    """Rows a_j with A^T A / N = M exactly (M PSD, p x p)."""
    p = M.shape[0]
    Z = rng.standard_normal((N, p))
    S = Z.T @ Z / N
    Linv = np.linalg.inv(np.linalg.cholesky(S))
    Z = Z @ Linv.T  # Z^T Z / N = I
    ev, V = np.linalg.eigh(M)
    R = (V * np.sqrt(np.maximum(ev, 0))) @ V.T
    return Z @ R


def test_balancedness_zero_for_balanced():
    rng = np.random.default_rng(4)
    p, q, N = 5, 3, 400
    W = rng.standard_normal((p, q))
    A = _A_with_second_moment(2.5 * W @ W.T, N, rng)
    assert np.allclose(A.T @ A / N, 2.5 * W @ W.T)
    assert C.balancedness(A, W) < 1e-10
    # unbalanced: E[aa^T] = I has NB = 1 - ... > 0
    A2 = _A_with_second_moment(np.eye(p), N, rng)
    nb = C.balancedness(A2, W)
    assert nb > 0.3
    # scale invariance in both arguments
    assert C.balancedness(3 * A2, 0.1 * W) == pytest.approx(nb, rel=1e-10)


def test_balancedness_v7_bound_example():
    # On null(W^T) E[aa^T] = (beta lam)^-1 I, and lam E - lam_W WW^T = beta^-1 I:
    # NB >= 1/(1 + beta lam_W s_max^2) (validation.md §V7).
    rng = np.random.default_rng(5)
    p, q, N = 6, 2, 500
    lam, lam_W, beta = 0.3, 0.7, 20.0
    W = rng.standard_normal((p, q))
    M = (lam_W * W @ W.T + np.eye(p) / beta) / lam
    A = _A_with_second_moment(M, N, rng)
    smax = C.singular_values(W)[1]
    assert C.balancedness(A, W) >= 1.0 / (1.0 + beta * lam_W * smax**2) - 1e-12


def test_lemma45_residual_zero_on_stationary_construction():
    rng = np.random.default_rng(6)
    p, q, N = 4, 3, 300
    lam, lam_W, beta = 0.05, 0.05, 20.0
    W = rng.standard_normal((p, q))
    M = (lam_W * W @ W.T + np.eye(p) / beta) / lam
    A = _A_with_second_moment(M, N, rng)
    r = C.lemma45_residual(A, W, lam, lam_W, beta)
    assert r < 1e-12
    assert C.lemma45_residual(A, W, lam, lam_W, beta, relative=True) < 1e-10
    # perturbation: residual equals the operator norm of the perturbation
    A2 = _A_with_second_moment(M + 0.1 * np.diag([1.0, 0, 0, -2.0]), N, rng)
    r2 = C.lemma45_residual(A2, W, lam, lam_W, beta)
    assert r2 == pytest.approx(lam * 0.2, rel=1e-8)
    assert C.lemma45_residual(A2, W, lam, lam_W, beta, relative=True) == pytest.approx(
        beta * lam * 0.2, rel=1e-8)
    # beta = inf: identity term absent, relative undefined
    assert C.lemma45_residual(A, W, lam, lam_W, np.inf) == pytest.approx(
        np.max(np.abs(np.linalg.eigvalsh(lam * A.T @ A / N - lam_W * W @ W.T))), rel=1e-12)
    with pytest.raises(ValueError):
        C.lemma45_residual(A, W, lam, lam_W, np.inf, relative=True)
    with pytest.raises(ValueError):
        C.lemma45_residual(A, W, lam, lam_W, 0.0)
    with pytest.raises(ValueError):
        C.lemma45_residual(A[:, :3], W, lam, lam_W, beta)


def test_singular_values():
    rng = np.random.default_rng(7)
    U, _ = np.linalg.qr(rng.standard_normal((6, 3)))
    V, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    W = U @ np.diag([3.0, 2.0, 0.5]) @ V.T
    smin, smax = C.singular_values(W)
    assert smin == pytest.approx(0.5) and smax == pytest.approx(3.0)
    assert C.singular_values(W.T) == pytest.approx((0.5, 3.0))
    with pytest.raises(ValueError):
        C.singular_values(np.ones(3))
    with pytest.raises(ValueError):
        C.balancedness(np.zeros((4, 3)), np.ones((3, 2)))
