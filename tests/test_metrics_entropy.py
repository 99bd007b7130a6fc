"""Tests of mfpde.metrics.entropy (theory/metrics.md §4, §5)."""

import math

import numpy as np
import pytest
from scipy.special import digamma, gammaln

from mfpde.metrics import entropy as E


def test_gaussian_entropy_closed_form():
    assert E.gaussian_entropy(1.0) == pytest.approx(0.5 * (1 + math.log(2 * math.pi)))
    C = np.array([[2.0, 0.5], [0.5, 1.0]])
    ref = 0.5 * math.log(np.linalg.det(2 * math.pi * math.e * C))
    assert E.gaussian_entropy(C) == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError):
        E.gaussian_entropy(np.diag([1.0, 0.0]))
    with pytest.raises(ValueError):
        E.gaussian_entropy(np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError):
        E.gaussian_entropy(np.ones((2, 3)))


def test_knn_entropy_gaussian_d4():
    """metrics.md §5: D = 4, N = 4000, k = 3 Gaussian within 0.15 of the closed form."""
    rng = np.random.default_rng(0)
    D, N = 4, 4000
    A = rng.standard_normal((D, D)) / 2 + np.eye(D)
    C = A @ A.T
    theta = rng.standard_normal((N, D)) @ A.T
    est = E.knn_entropy(theta, k=3)
    ref = E.gaussian_entropy(C)
    print(f"\nkNN entropy D=4 N=4000 k=3: {est:.4f} vs closed form {ref:.4f}")
    assert abs(est - ref) < 0.15


def test_knn_entropy_formula_small_case():
    # direct evaluation of the KL formula on a tiny cloud (brute-force neighbours)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 2))
    k = 2
    d = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    eps = np.sort(d, axis=1)[:, k - 1]
    D, N = 2, 30
    ref = digamma(N) - digamma(k) + (D / 2) * math.log(math.pi) - gammaln(D / 2 + 1) \
        + D * np.mean(np.log(eps))
    assert E.knn_entropy(X, k=k) == pytest.approx(ref, rel=1e-12)
    # translation invariant, scaling adds D log s
    assert E.knn_entropy(X + 1e3, k=k) == pytest.approx(ref, rel=1e-9)
    assert E.knn_entropy(3.0 * X, k=k) == pytest.approx(ref + D * math.log(3.0), rel=1e-12)


def test_knn_entropy_bad_input():
    with pytest.raises(ValueError, match="coincident"):
        E.knn_entropy(np.zeros((10, 2)), k=3)
    with pytest.raises(ValueError):
        E.knn_entropy(np.ones((3, 2)), k=3)
    with pytest.raises(ValueError):
        E.knn_entropy(np.array([[0.0, np.nan], [1.0, 1.0], [2.0, 0.0]]), k=1)
    with pytest.raises(ValueError):
        E.knn_entropy(np.zeros((3, 2, 2)), k=1)


@pytest.mark.parametrize("D", [1, 2])
def test_fisher_information_gaussian(D):
    """metrics.md §4: KDE Fisher information of N(m, C) ~ tr C^-1 within 15% (D = 1, 2)."""
    rng = np.random.default_rng(0)
    N = 3000
    A = np.array([[1.5]]) if D == 1 else np.array([[1.0, 0.0], [0.8, 0.4]])
    C = A @ A.T
    theta = rng.standard_normal((N, D)) @ A.T + 2.0
    val, h = E.fisher_information_kde(theta)
    ref = np.trace(np.linalg.inv(C))
    print(f"\nFisher KDE D={D}: {val:.4f} vs tr C^-1 = {ref:.4f} (h = {h:.3f})")
    assert h == pytest.approx((4 / ((D + 2) * N)) ** (1 / (D + 4)), rel=1e-12)  # whitened
    assert val == pytest.approx(ref, rel=0.15)


def test_fisher_information_smoothing_limit():
    # large bandwidth: the estimator tends to E_rho |grad log(rho * N(0, h^2))|^2
    # = D / (1 + h^2)^2 for a standard Gaussian (noise of the score is negligible)
    rng = np.random.default_rng(1)
    N, D, h = 2000, 2, 1.0
    theta = rng.standard_normal((N, D))
    val, h_used = E.fisher_information_kde(theta, h=h, whiten=False)
    assert h_used == h
    ref = np.mean(np.sum(theta**2, axis=1)) / (1 + h**2) ** 2
    assert val == pytest.approx(ref, rel=0.05)


def test_fisher_information_chunking_and_whitening():
    rng = np.random.default_rng(2)
    theta = rng.standard_normal((300, 2)) * np.array([1.0, 0.1])
    v1, h1 = E.fisher_information_kde(theta, chunk_elems=1000)
    v2, h2 = E.fisher_information_kde(theta, chunk_elems=10**7)
    assert v1 == pytest.approx(v2, rel=1e-10) and h1 == h2
    # whitening is affine equivariant: I scales as 1/s^2 under theta -> s theta
    v3, _ = E.fisher_information_kde(5.0 * theta)
    assert v3 == pytest.approx(v1 / 25.0, rel=1e-10)
    # isotropic kernel with a hand-computed brute-force reference
    h = 0.3
    Z = theta[:50]
    d2 = ((Z[:, None] - Z[None]) ** 2).sum(-1)
    W = np.exp(-d2 / (2 * h * h))
    np.fill_diagonal(W, 0.0)
    W /= W.sum(1, keepdims=True)
    S = (W @ Z - Z) / h**2
    ref = np.mean(np.sum(S**2, axis=1))
    assert E.fisher_information_kde(Z, h=h, whiten=False)[0] == pytest.approx(ref, rel=1e-9)


def test_fisher_information_bad_input():
    with pytest.raises(ValueError):
        E.fisher_information_kde(np.zeros((2, 1)))
    with pytest.raises(ValueError):
        E.fisher_information_kde(np.random.default_rng(0).standard_normal((10, 2)), h=0.0)
    with pytest.raises(ValueError):
        E.fisher_information_kde(np.zeros((10, 2)))  # singular covariance
    with pytest.warns(UserWarning, match="D = 6"):
        E.fisher_information_kde(np.random.default_rng(0).standard_normal((20, 6)))
