"""OBS linear algebra of mfpde.sparse (theory/sparse.md §2.2, §2.5): identities to 1e-12."""

import itertools

import numpy as np
import pytest

from mfpde.sparse.linalg import (best_subset, factor, greedy_obs, obd, obs_project,
                                 obs_saliency, quadratic_model, restricted_newton,
                                 single_weight_saliency, single_weight_update, topk,
                                 woodfisher_inverse)


def spd(d, seed=0, cond=50.0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    lam = np.geomspace(1.0, cond, d)
    return (Q * lam) @ Q.T


def rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / max(1e-300, np.max(np.abs(b))))


# ---------------------------------------------------------------------------- T_k
def test_topk_ties_lowest_index():
    v = np.array([1.0, -1.0, 1.0, 0.5, -1.0])
    assert topk(v, 2)[0].tolist() == [0, 1]
    assert topk(v, 3)[0].tolist() == [0, 1, 2]
    assert topk(v, 4)[0].tolist() == [0, 1, 2, 4]
    assert topk(v, 5)[0].tolist() == [0, 1, 2, 3, 4]
    idx, out = topk(np.zeros(6), 2)          # all tied at 0: the first two
    assert idx.tolist() == [0, 1] and not out.any()


@pytest.mark.parametrize("seed", range(5))
def test_topk_matches_stable_sort(seed):
    rng = np.random.default_rng(seed)
    v = rng.integers(-3, 4, size=40).astype(float)          # many ties
    for k in range(0, 41):
        ref = np.sort(np.argsort(-np.abs(v), kind="stable")[:k])
        idx, out = topk(v, k)
        assert idx.tolist() == ref.tolist()
        assert np.array_equal(out[idx], v[idx]) and np.count_nonzero(out[np.setdiff1d(
            np.arange(40), idx)]) == 0


# ---------------------------------------------------------------------------- OBS
@pytest.mark.parametrize("seed", range(3))
def test_obs_identities_d12(seed):
    """sparse.md §3: the two forms of θ_OBS(Q) agree to 1e-12; the saliency equals the
    increase of the quadratic model (d = 12, |Q| = 4)."""
    rng = np.random.default_rng(seed)
    d = 12
    H = spd(d, seed)
    Hinv = np.linalg.inv(H)
    theta, g = rng.standard_normal(d), rng.standard_normal(d)
    for eta in (1.0, 0.3):
        tt = theta - eta * Hinv @ g
        Q = np.sort(rng.choice(d, 4, replace=False))
        a = obs_project(tt, Hinv, Q)
        b = restricted_newton(H, theta, g, Q, eta)
        assert rel(a, b) < 1e-12
        P = np.setdiff1d(np.arange(d), Q)
        assert np.all(a[P] == 0.0)
        # sal(P) = ½||θ_OBS - θ̃||_H² for every eta; with eta = 1 it is q_t(θ_OBS) - q_t(θ̃)
        e = a - tt
        sal = obs_saliency(tt, Hinv, Q)
        assert abs(0.5 * e @ H @ e - sal) < 1e-12 * sal
        if eta == 1.0:
            inc = quadratic_model(a, theta, g, H) - quadratic_model(tt, theta, g, H)
            assert abs(inc - sal) < 1e-12 * sal


def test_single_weight_formulas():
    rng = np.random.default_rng(4)
    d = 9
    Hinv = np.linalg.inv(spd(d, 4))
    tt = rng.standard_normal(d)
    sal = single_weight_saliency(tt, Hinv)
    for j in range(d):
        Q = np.setdiff1d(np.arange(d), [j])
        assert abs(sal[j] - obs_saliency(tt, Hinv, Q)) < 1e-12 * sal[j] + 1e-15
        new = tt + single_weight_update(tt, Hinv, j)
        assert abs(new[j]) < 1e-14 * np.abs(tt).max()
        assert rel(np.where(np.arange(d) == j, 0.0, new), obs_project(tt, Hinv, Q)) < 1e-12


@pytest.mark.parametrize("q", [1, 3])
def test_greedy_obs_equals_joint_projection(q):
    """Sequential OBC removals with inverse downdates compose to the joint OBS projection onto
    the kept set; their saliencies sum to the joint saliency (groups = rows for q > 1)."""
    rng = np.random.default_rng(7)
    d, k = 30, 7
    H = spd(d, 7, cond=200.0)
    Hinv = np.linalg.inv(H)
    tt = rng.standard_normal((d, q)) if q > 1 else rng.standard_normal(d)
    r = greedy_obs(tt, Hinv, k)
    assert r.keep.size == k and r.order.size == d - k
    assert sorted(np.concatenate([r.keep, r.order]).tolist()) == list(range(d))
    assert rel(r.theta, obs_project(tt, Hinv, r.keep)) < 1e-10
    assert abs(r.saliency.sum() - obs_saliency(tt, Hinv, r.keep)) < 1e-10 * r.saliency.sum()
    # first removal is the single-weight argmin
    s1 = single_weight_saliency(tt, Hinv)
    assert r.order[0] == int(np.argmin(s1))
    # the input is not modified
    assert np.array_equal(Hinv, np.linalg.inv(H))


def test_greedy_matrix_projection_is_columnwise():
    """Kronecker curvature H ⊗ I_q: the group projection acts column by column."""
    rng = np.random.default_rng(8)
    d = 10
    Hinv = np.linalg.inv(spd(d, 8))
    tt = rng.standard_normal((d, 3))
    Q = np.array([1, 4, 5, 8])
    full = obs_project(tt, Hinv, Q)
    for c in range(3):
        assert rel(full[:, c], obs_project(tt[:, c], Hinv, Q)) < 1e-12


def test_obd_formula():
    rng = np.random.default_rng(2)
    theta, g = rng.standard_normal(8), rng.standard_normal(8)
    h = rng.uniform(0.5, 2.0, 8)
    idx, out = obd(theta, g, h, 3, eta=0.7)
    tt = theta - 0.7 * g / h
    sal = 0.5 * h * tt ** 2
    assert sorted(idx.tolist()) == sorted(np.argsort(-sal, kind="stable")[:3].tolist())
    assert np.allclose(out[idx], tt[idx], rtol=0, atol=0)


# ---------------------------------------------------------------------------- WoodFisher
def test_woodfisher_inverse_exact():
    rng = np.random.default_rng(3)
    m, d, delta = 50, 20, 0.3
    G = rng.standard_normal((m, d))
    F = delta * np.eye(d) + G.T @ G / m
    Finv = woodfisher_inverse(G, delta)
    assert np.max(np.abs(Finv @ F - np.eye(d))) < 1e-12
    # block-diagonal version = inverse of the block-diagonal Fisher
    Fb = np.zeros_like(F)
    for s in range(0, d, 8):
        e = min(d, s + 8)
        Fb[s:e, s:e] = F[s:e, s:e]
    assert np.max(np.abs(woodfisher_inverse(G, delta, block=8) @ Fb - np.eye(d))) < 1e-12
    with pytest.raises(ValueError):
        woodfisher_inverse(G, 0.0)


# ---------------------------------------------------------------------------- enumeration
def test_best_subset_equals_min_saliency():
    """Exact I-OBS support (§2.3): max b_Qᵀ H_QQ⁻¹ b_Q with b = Hθ̃ is the min-saliency support,
    and every support satisfies ½θ̃ᵀHθ̃ - ½ b_Qᵀ H_QQ⁻¹ b_Q = sal(Qᶜ)."""
    rng = np.random.default_rng(5)
    d, k = 10, 3
    H = spd(d, 5)
    Hinv = np.linalg.inv(H)
    tt = rng.standard_normal(d)
    b = H @ tt
    Q, v = best_subset(H, b, k)
    sal = {}
    for S in itertools.combinations(range(d), k):
        S = list(S)
        val = b[S] @ np.linalg.solve(H[np.ix_(S, S)], b[S])
        s = obs_saliency(tt, Hinv, S)
        assert abs(0.5 * tt @ b - 0.5 * val - s) < 1e-12 * max(1.0, abs(tt @ b))
        sal[tuple(S)] = s
    best = min(sal, key=sal.get)
    assert tuple(Q.tolist()) == best
    with pytest.raises(ValueError, match="enumerates"):
        best_subset(np.eye(40), np.ones(40), 20)


# ---------------------------------------------------------------------------- damping
def test_factor_damping():
    H = spd(6, 1)
    assert factor(H).delta == 0.0
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 6))
    S = X.T @ X / 4                                            # rank 4 < 6
    f = factor(S, "auto")
    assert f.delta == pytest.approx(0.01 * np.mean(np.diag(S)), rel=1e-14)
    with pytest.raises(np.linalg.LinAlgError):
        factor(-np.eye(3), None)
    f2 = factor(H, 0.1)
    assert f2.delta == pytest.approx(0.1 * np.mean(np.diag(H)), rel=1e-14)
    A = H + f2.delta * np.eye(6)
    assert np.max(np.abs(f2.inverse() @ A - np.eye(6))) < 1e-12


def test_greedy_obs_ties_lowest_index():
    """Equal saliencies: the lowest index is removed first (deterministic tie-breaking)."""
    r = greedy_obs(np.ones(6), np.eye(6), 2)
    assert r.order.tolist() == [0, 1, 2, 3] and r.keep.tolist() == [4, 5]
    assert r.theta.tolist() == [0, 0, 0, 0, 1, 1]
    alive = np.array([True, False, True, True, False, True])
    r = greedy_obs(np.ones(6), np.eye(6), 2, alive=alive)
    assert r.order.tolist() == [0, 2] and r.keep.tolist() == [3, 5]
