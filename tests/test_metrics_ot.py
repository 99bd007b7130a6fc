"""Tests of mfpde.metrics.ot (theory/metrics.md §6; validation.md §U: OT wrappers return W_2)."""

import time
import warnings

import numpy as np
import ot
import pytest

from mfpde.metrics import ot as mot


def _clouds(rng, n=120, m=90, D=3):
    X = rng.standard_normal((n, D))
    Y = 0.7 * rng.standard_normal((m, D)) + np.array([1.0] + [0.0] * (D - 1))
    return X, Y


# ---------------------------------------------------------------------------------------------
# exact W2 / W1
# ---------------------------------------------------------------------------------------------
def test_w2_exact_agrees_with_pot():
    rng = np.random.default_rng(0)
    X, Y = _clouds(rng)
    ref = ot.emd2(np.full(120, 1 / 120), np.full(90, 1 / 90), ot.dist(X, Y))  # W2^2
    val = mot.w2_exact(X, Y)
    assert val == pytest.approx(np.sqrt(ref), rel=1e-9)
    a = rng.uniform(0.1, 1.0, 120)
    b = rng.uniform(0.1, 1.0, 90)
    ref = ot.emd2(a / a.sum(), b / b.sum(), ot.dist(X, Y))
    assert mot.w2_exact(X, Y, 3.0 * a, b) == pytest.approx(np.sqrt(ref), rel=1e-9)


def test_w2_exact_is_distance_not_squared():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 4))
    v = np.array([3.0, 0.0, -4.0, 0.0])  # |v| = 5
    assert mot.w2_exact(X, X + v) == pytest.approx(5.0, rel=1e-10)
    assert mot.w2_exact(X, X[::-1]) == pytest.approx(0.0, abs=1e-7)
    assert mot.w1_exact(X, X + v) == pytest.approx(5.0, rel=1e-10)
    assert mot.w2_1d(X[:, 0], X[:, 0] + 2.0) == pytest.approx(2.0, rel=1e-12)
    assert mot.sliced_w2(X, X + v) <= 5.0 + 1e-12
    r = mot.w2(X, X + v)
    assert r.method == "exact" and r.value == pytest.approx(5.0, rel=1e-10)


def test_w2_fallback_to_sliced_warns():
    rng = np.random.default_rng(2)
    X, Y = _clouds(rng, n=60, m=40)
    with pytest.warns(UserWarning, match="sliced"):
        val = mot.w2_exact(X, Y, max_points=50)
    assert val == pytest.approx(mot.sliced_w2(X, Y), rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = mot.w2(X, Y, max_points=50)
        assert r.method == "sliced (fallback: n > max_points)"
        assert r.value == pytest.approx(val, rel=1e-12)
        r = mot.w2(X, Y, max_points=60)
        assert r.method == "exact"
        assert r.value >= val  # SW2 <= W2
    with pytest.raises(ValueError, match="max_points"):
        mot.w1_exact(X, Y, max_points=50)


def test_w1_exact_agrees_with_pot():
    rng = np.random.default_rng(3)
    X, Y = _clouds(rng, n=80, m=80)
    ref = ot.emd2(np.full(80, 1 / 80), np.full(80, 1 / 80), ot.dist(X, Y, metric="euclidean"))
    assert mot.w1_exact(X, Y) == pytest.approx(ref, rel=1e-9)
    assert mot.w1_exact(X, Y) <= mot.w2_exact(X, Y) + 1e-12


def test_exact_w2_on_gaussian_samples_matches_bures():
    """N = 2000, D = 2: exact W2 within the sampling floor of the Bures value."""
    rng = np.random.default_rng(0)
    m = np.array([1.0, 0.5])
    C = np.array([[2.0, 0.3], [0.3, 0.5]])
    N = 2000
    X = rng.standard_normal((N, 2))
    Y = m + rng.standard_normal((N, 2)) @ np.linalg.cholesky(C).T
    exact = mot.w2_exact(X, Y)
    bures = mot.bures_w2(np.zeros(2), np.eye(2), m, C)
    # sampling floor: W2 between two independent N-samples of the same law (metrics.md §6.3)
    floor = mot.w2_exact(X, rng.standard_normal((N, 2)))
    print(f"\nexact W2 = {exact:.4f}, Bures = {bures:.4f}, floor = {floor:.4f}")
    assert 0.05 < floor < 0.3
    assert abs(exact - bures) < floor


# ---------------------------------------------------------------------------------------------
# 1-D and sliced
# ---------------------------------------------------------------------------------------------
def test_w2_1d_against_pot():
    rng = np.random.default_rng(4)
    x = rng.standard_normal(300)
    y = 2.0 * rng.standard_normal(451) + 0.3
    assert mot.w2_1d(x, y) ** 2 == pytest.approx(ot.wasserstein_1d(x, y, p=2), rel=1e-10)
    z = rng.standard_normal(300)
    assert mot.w2_1d(x, z) ** 2 == pytest.approx(ot.wasserstein_1d(x, z, p=2), rel=1e-10)
    a = rng.uniform(size=300)
    b = rng.uniform(size=451)
    ref = ot.wasserstein_1d(x, y, a / a.sum(), b / b.sum(), p=2)
    assert mot.w2_1d(x, y, a, b) ** 2 == pytest.approx(ref, rel=1e-10)
    # (n, 1) input and the exact solver agree
    assert mot.w2_1d(x[:, None], y[:, None]) == pytest.approx(mot.w2_exact(x, y), rel=1e-9)
    with pytest.raises(ValueError):
        mot.w2_1d(rng.standard_normal((5, 2)), rng.standard_normal((5, 2)))


def test_w2_1d_known_values():
    # two Diracs vs one: W2^2 = 1/2 * 1^2 + 1/2 * 1^2 for {-1, 1} vs {0}
    assert mot.w2_1d([-1.0, 1.0], [0.0]) == pytest.approx(1.0)
    # weighted: mass 1/4 at 0 and 3/4 at 4 vs Dirac at 1 -> 1/4 * 1 + 3/4 * 9 = 7
    assert mot.w2_1d([0.0, 4.0], [1.0], a=[1, 3]) == pytest.approx(np.sqrt(7.0))
    # zero weights are allowed (points ignored)
    assert mot.w2_1d([0.0, 4.0, 100.0], [0.0, 4.0], a=[1, 1, 0]) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("sizes", [(400, 400), (400, 257)])
def test_sliced_agrees_with_pot_same_projections(sizes):
    rng = np.random.default_rng(5)
    X, Y = _clouds(rng, *sizes, D=5)
    Om = mot.sphere_directions(5, 64, seed=3)
    assert np.allclose(np.linalg.norm(Om, axis=0), 1.0)
    ref = ot.sliced_wasserstein_distance(X, Y, projections=Om, p=2)
    assert mot.sliced_w2(X, Y, projections=Om) == pytest.approx(ref, rel=1e-10)
    # default directions are exactly sphere_directions(D, n_projections, seed)
    assert mot.sliced_w2(X, Y, n_projections=64, seed=3) == pytest.approx(ref, rel=1e-12)
    # weighted
    a = rng.uniform(size=sizes[0])
    b = rng.uniform(size=sizes[1])
    ref = ot.sliced_wasserstein_distance(X, Y, a / a.sum(), b / b.sum(), projections=Om, p=2)
    assert mot.sliced_w2(X, Y, a=a, b=b, projections=Om, chunk=7) == pytest.approx(ref, rel=1e-10)
    # one weighted, one uniform
    ref = ot.sliced_wasserstein_distance(X, Y, a / a.sum(), None, projections=Om, p=2)
    assert mot.sliced_w2(X, Y, a=a, projections=Om) == pytest.approx(ref, rel=1e-10)


def test_sliced_statistically_close_to_pot_random_directions():
    # different random streams: agreement within Monte Carlo error over directions
    rng = np.random.default_rng(6)
    X, Y = _clouds(rng, 500, 500, D=4)
    ours = mot.sliced_w2(X, Y, n_projections=2000, seed=1)
    pot = ot.sliced_wasserstein_distance(X, Y, n_projections=2000, seed=1)
    assert ours == pytest.approx(pot, rel=0.03)


def test_sliced_equals_exact_in_1d():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 1))
    y = 1.5 * rng.standard_normal((211, 1)) - 0.2
    ex = mot.w2_exact(x, y)
    assert mot.sliced_w2(x, y, n_projections=5) == pytest.approx(ex, rel=1e-9)
    assert mot.w2_1d(x, y) == pytest.approx(ex, rel=1e-9)
    z = rng.standard_normal((300, 1))
    assert mot.sliced_w2(x, z) == pytest.approx(mot.w2_exact(x, z), rel=1e-9)


def test_sliced_translation_and_bound():
    rng = np.random.default_rng(8)
    X, Y = _clouds(rng, 300, 300, D=6)
    s = mot.sliced_w2(X, Y)
    shift = 1e4 * rng.standard_normal(6)
    assert mot.sliced_w2(X + shift, Y + shift) == pytest.approx(s, rel=1e-8)
    assert s <= mot.w2_exact(X, Y)
    assert mot.sliced_w2(X, X) == 0.0


def test_sliced_timing_1e5_points():
    rng = np.random.default_rng(9)
    X = rng.standard_normal((100_000, 10))
    Y = 1.1 * rng.standard_normal((100_000, 10)) + 0.05
    mot.sliced_w2(X[:10], Y[:10])  # warm-up
    t0 = time.perf_counter()
    val = mot.sliced_w2(X, Y, n_projections=128)
    dt = time.perf_counter() - t0
    print(f"\nsliced_w2: 2 x 1e5 points, D = 10, 128 projections: {dt:.3f} s (SW2 = {val:.5f})")
    assert dt < 10.0
    # population SW2^2 = E_w[(w.m)^2] + (1.1 - 1)^2 = |m|^2/D + 0.01 with m = 0.05 * 1
    assert val == pytest.approx(np.sqrt(0.05**2 + 0.01), rel=0.05)


# ---------------------------------------------------------------------------------------------
# Gaussians
# ---------------------------------------------------------------------------------------------
def test_bures_closed_forms():
    assert mot.bures_w2(0.0, 1.0, 10.0, 1.0) == pytest.approx(10.0, rel=1e-12)
    assert mot.bures_w2([0.0], [[1.0]], [10.0], [[1.0]]) == pytest.approx(10.0, rel=1e-12)
    for D, s1, s2 in ((1, 1.0, 3.0), (5, 0.5, 2.0), (20, 2.0, 1.9)):
        val = mot.bures_w2(np.zeros(D), s1**2 * np.eye(D), np.zeros(D), s2**2 * np.eye(D))
        assert val == pytest.approx(np.sqrt(D) * abs(s1 - s2), rel=1e-10)
    # singular covariances are fine
    assert mot.bures_w2(np.zeros(2), np.zeros((2, 2)), np.zeros(2), np.diag([4.0, 0.0])) == (
        pytest.approx(2.0, rel=1e-12))


def test_bures_against_pot():
    rng = np.random.default_rng(10)
    for D in (2, 5):
        A = rng.standard_normal((D, D))
        B = rng.standard_normal((D, D + 2))
        C1, C2 = A @ A.T, B @ B.T / 3
        m1, m2 = rng.standard_normal(D), rng.standard_normal(D)
        ref = float(ot.gaussian.bures_wasserstein_distance(m1, m2, C1, C2))
        val = mot.bures_w2(m1, C1, m2, C2)
        assert val == pytest.approx(ref, rel=1e-8)
        assert mot.bures_w2(m2, C2, m1, C1) == pytest.approx(val, rel=1e-8)  # symmetric


def test_bures_bad_input():
    with pytest.raises(ValueError, match="symmetric"):
        mot.bures_w2(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="semi-definite"):
        mot.bures_w2(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError):
        mot.bures_w2(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError):
        mot.bures_w2(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError):
        mot.bures_w2(np.zeros(2), np.full((2, 2), np.nan), np.zeros(2), np.eye(2))


def test_w2_cloud_gaussian():
    rng = np.random.default_rng(11)
    m = np.array([0.5, -1.0])
    C = np.array([[1.0, 0.4], [0.4, 2.0]])
    X = m + rng.standard_normal((1000, 2)) @ np.linalg.cholesky(C).T
    mu, Cx = mot.empirical_gaussian(X)
    b = mot.w2_cloud_gaussian(X, m, C)
    assert b == pytest.approx(mot.bures_w2(mu, Cx, m, C), rel=1e-12)
    assert b < 0.1  # O(N^-1/2) for an exact Gaussian cloud
    s = mot.w2_cloud_gaussian(X, m, C, method="sample", seed=1)
    assert b <= s  # Gelbrich lower bound vs sample estimate (biased upward by the floor)
    assert s < 0.3
    # a shifted cloud: both methods see the shift
    v = np.array([3.0, 4.0])
    assert mot.w2_cloud_gaussian(X + v, m, C) == pytest.approx(5.0, abs=0.1)
    assert mot.w2_cloud_gaussian(X + v, m, C, method="sample") == pytest.approx(5.0, abs=0.2)
    with pytest.warns(UserWarning, match="sliced"):
        mot.w2_cloud_gaussian(X, m, C, method="sample", max_points=100)
    with pytest.raises(ValueError):
        mot.w2_cloud_gaussian(X, m, C, method="nope")
    with pytest.raises(ValueError):
        mot.w2_cloud_gaussian(X, np.zeros(3), np.eye(3))


# ---------------------------------------------------------------------------------------------
# entropic
# ---------------------------------------------------------------------------------------------
def test_sinkhorn_upward_bias_and_convergence():
    rng = np.random.default_rng(12)
    X, Y = _clouds(rng, 100, 80, D=2)
    ex = mot.w2_exact(X, Y)
    vals = [mot.sinkhorn_w2(X, Y, reg) for reg in (1.0, 0.1, 0.01)]
    assert all(v >= ex - 1e-9 for v in vals)
    assert vals[0] > vals[1] > vals[2]
    assert vals[2] == pytest.approx(ex, rel=0.02)
    # agrees with POT directly
    M = ot.dist(X, Y)
    ref = np.sqrt(ot.sinkhorn2(np.full(100, 0.01), np.full(80, 1 / 80), M, 0.1,
                               method="sinkhorn_log", stopThr=1e-9, numItermax=10000))
    assert vals[1] == pytest.approx(float(ref), rel=1e-6)


def test_sinkhorn_divergence():
    rng = np.random.default_rng(13)
    X, Y = _clouds(rng, 100, 80, D=2)
    assert mot.sinkhorn_divergence_squared(X, X, 0.5) == pytest.approx(0.0, abs=1e-8)
    s = [mot.sinkhorn_divergence(X, Y, reg) for reg in (2.0, 0.05)]
    ex = mot.w2_exact(X, Y)
    assert all(v > 0 for v in s)
    assert s[1] == pytest.approx(ex, rel=0.03)
    assert mot.sinkhorn_divergence_squared(X, Y, 0.05) == pytest.approx(s[1] ** 2, rel=1e-12)
    with pytest.raises(ValueError):
        mot.sinkhorn_w2(X, Y, 0.0)
    with pytest.raises(ValueError):
        mot.sinkhorn_w2(X, Y, 0.1, max_points=50)


# ---------------------------------------------------------------------------------------------
# input validation
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [mot.w2_exact, mot.w1_exact, mot.sliced_w2,
                                lambda X, Y, **k: mot.w2(X, Y, **k).value])
def test_bad_inputs(fn):
    X = np.zeros((4, 2))
    with pytest.raises(ValueError):
        fn(X, np.zeros((4, 3)))
    with pytest.raises(ValueError):
        fn(np.array([[0.0, np.nan]]), X)
    with pytest.raises(ValueError):
        fn(np.zeros((0, 2)), X)
    with pytest.raises(ValueError):
        fn(np.zeros((2, 2, 2)), X)
    with pytest.raises(ValueError):
        fn(X, X, a=np.array([1.0, -1.0, 1.0, 1.0]))
    with pytest.raises(ValueError):
        fn(X, X, a=np.ones(3))
    with pytest.raises(ValueError):
        fn(X, X, b=np.zeros(4))
    with pytest.raises(ValueError):
        mot.sliced_w2(X, X, projections=np.ones((3, 5)))
