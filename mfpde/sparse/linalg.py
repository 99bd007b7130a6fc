r"""Optimal-brain-surgeon linear algebra (theory/sparse.md §2.2, §2.5).

Notation: ``θ`` (d,) the current iterate, ``g`` (d,) the gradient, ``H`` (d, d) a symmetric
positive-(semi)definite curvature, ``θ̃ = θ - η H^{-1} g`` the (damped) Newton point, ``Q`` a kept
support (sorted int64 indices) and ``P = Qᶜ`` the pruned set. Every function accepts ``θ̃`` of
shape ``(d,)`` or ``(d, q)``; in the second case the rows are groups of a Kronecker-structured
curvature ``H ⊗ I_q`` (neuron pruning, sparse.md §5.1).

.. math::

    \theta_{OBS}(Q) = \tilde\theta - H^{-1}[:, P]\,([H^{-1}]_{PP})^{-1}\tilde\theta_P
    \;=\;\text{restricted Newton: } \theta_Q = H_{QQ}^{-1}(H\tilde\theta)_Q,\ \theta_P = 0,

    \mathrm{sal}(P) = q_t(\theta_{OBS}(Q)) - q_t(\tilde\theta)
    = \tfrac12\,\tilde\theta_P^\top ([H^{-1}]_{PP})^{-1}\tilde\theta_P,\qquad
    \mathrm{sal}_j = \tilde\theta_j^2 / (2[H^{-1}]_{jj}),

with ``(Hθ̃)_Q = (Hθ)_Q - η g_Q``, so the restricted form needs no inverse of the full ``H``.

Damping [choice, sparse.md §2.5]: ``H + δI`` with ``δ = 0.01·mean(diag H)`` unless given; curvature
matrices are symmetrised ``(H + Hᵀ)/2``.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from ..kernels.sparse import obc_prune, topk_indices

__all__ = ["DEFAULT_DAMPING", "symmetrize", "damping_delta", "Factor", "factor", "topk",
           "obs_project", "restricted_newton", "obs_saliency", "single_weight_saliency",
           "single_weight_update", "quadratic_model", "GreedyResult", "greedy_obs", "obd",
           "woodfisher_inverse", "best_subset", "ENUMERATION_LIMIT"]

#: relative damping ``δ / mean(diag H)`` used when a curvature is not positive definite
DEFAULT_DAMPING = 0.01
#: ``damping = "auto"`` damps a curvature whose reciprocal condition number is below this
AUTO_RCOND = 1e-12
#: largest number of supports :func:`best_subset` enumerates
ENUMERATION_LIMIT = 2_000_000


def symmetrize(H: np.ndarray) -> np.ndarray:
    """``(H + Hᵀ)/2`` as a new C-contiguous float64 array (d, d)."""
    H = np.asarray(H, dtype=np.float64)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"a curvature matrix must be square (d, d), got shape {H.shape}")
    return np.ascontiguousarray(0.5 * (H + H.T))


def damping_delta(H: np.ndarray, damping: float) -> float:
    """Absolute damping ``δ = damping · mean(diag H)`` for a relative ``damping >= 0``."""
    if not (math.isfinite(damping) and damping >= 0):
        raise ValueError(f"damping must be a finite number >= 0, got {damping!r}")
    return float(damping) * float(np.mean(np.abs(np.diag(H)))) if damping else 0.0


@dataclass
class Factor:
    """Cholesky factor of ``H + δI`` (scipy ``cho_factor``); ``delta`` is the absolute damping."""

    cho: tuple
    delta: float
    d: int

    def solve(self, v: np.ndarray) -> np.ndarray:
        """``(H + δI)^{-1} v`` for ``v`` (d,) or (d, m)."""
        return sla.cho_solve(self.cho, v, check_finite=False)

    def inverse(self) -> np.ndarray:
        """``(H + δI)^{-1}`` (d, d), symmetrised."""
        return symmetrize(self.solve(np.eye(self.d)))


def factor(H: np.ndarray, damping: float | str | None = "auto") -> Factor:
    """Cholesky factor of the damped curvature.

    ``damping``: ``"auto"`` (undamped if ``H`` is positive definite, else ``δ = 0.01·mean(diag
    H)``), ``None`` / ``0`` (undamped; raises if ``H`` is not positive definite) or a relative
    ``damping > 0`` (``δ = damping·mean(diag H)``). ``H`` is symmetrised first. Raises
    ``numpy.linalg.LinAlgError`` naming the damping when no factor exists. With ``"auto"`` an
    undamped factor whose reciprocal condition number (LAPACK ``dpocon``) is below
    :data:`AUTO_RCOND` counts as singular (a rank-deficient ``XᵀX/n`` can factor with round-off
    pivots).
    """
    H = symmetrize(H)
    d = H.shape[0]
    if damping == "auto":
        tries = [0.0, damping_delta(H, DEFAULT_DAMPING)]
    elif damping is None:
        tries = [0.0]
    else:
        tries = [damping_delta(H, float(damping))]
    for i, delta in enumerate(tries):
        A = H + delta * np.eye(d) if delta else H
        try:
            cho = sla.cho_factor(A, lower=False, check_finite=False)
        except (np.linalg.LinAlgError, sla.LinAlgError):
            continue
        if damping == "auto" and i == 0 and _rcond(cho, A) < AUTO_RCOND:
            continue                              # numerically singular: damp
        return Factor(cho, delta, d)
    if not np.all(np.isfinite(H)):
        raise np.linalg.LinAlgError("the curvature has non-finite entries")
    raise np.linalg.LinAlgError(
        f"curvature is not positive definite with damping {damping!r} (absolute {tries[-1]:.3g});"
        f" use a larger relative damping")


def _rcond(cho, A) -> float:
    """LAPACK ``dpocon`` estimate of ``1/κ_1(A)`` from the Cholesky factor ``cho``."""
    from scipy.linalg.lapack import dpocon
    rc, info = dpocon(cho[0], float(np.max(np.sum(np.abs(A), axis=0))), uplo="L" if cho[1] else "U")
    return float(rc) if info == 0 else 0.0


def _as2(theta):
    theta = np.asarray(theta, dtype=np.float64)
    return (theta[:, None], True) if theta.ndim == 1 else (theta, False)


def topk(v: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``T_k(v)`` (sparse.md §2): ``(idx, out)`` with ``idx`` the kept indices (increasing) and
    ``out`` (d,) equal to ``v`` on ``idx`` and 0 elsewhere. Ties broken by lowest index."""
    v = np.ascontiguousarray(v, dtype=np.float64)
    idx = topk_indices(v, int(k))
    out = np.zeros_like(v)
    out[idx] = v[idx]
    return idx, out


def _complement(Q, d):
    mask = np.ones(d, dtype=bool)
    mask[np.asarray(Q, dtype=np.int64)] = False
    return np.flatnonzero(mask)


def obs_project(theta_tilde: np.ndarray, Hinv: np.ndarray, Q) -> np.ndarray:
    r"""``θ_OBS(Q) = θ̃ - H^{-1}[:, P] ([H^{-1}]_PP)^{-1} θ̃_P`` (inverse form, sparse.md §2.2).

    ``θ̃`` (d,) or (d, q), ``Hinv`` (d, d), ``Q`` kept indices. Entries on ``P`` are set to exactly 0.
    """
    th, flat = _as2(theta_tilde)
    d = th.shape[0]
    P = _complement(Q, d)
    out = th.copy()
    if P.size:
        out -= Hinv[:, P] @ np.linalg.solve(Hinv[np.ix_(P, P)], th[P])
        out[P] = 0.0
    return out[:, 0] if flat else out


def restricted_newton(H: np.ndarray, theta: np.ndarray, g: np.ndarray, Q, eta: float = 1.0,
                      Htheta: np.ndarray | None = None) -> np.ndarray:
    r"""Restricted Newton form of ``θ_OBS(Q)``: ``θ_Q = H_QQ^{-1}(H_{Q,:} θ - η g_Q)``, ``θ_P = 0``.

    ``H`` (d, d) (already damped if a damped Newton point is meant), ``theta``, ``g`` (d,) or
    (d, q), ``Q`` kept indices; ``Htheta`` optionally supplies ``H θ``. For quadratic ``f`` and
    ``η = 1`` this is the least-squares refit on ``Q`` (sparse.md §2.5 item 1).
    """
    th, flat = _as2(theta)
    gg, _ = _as2(g)
    Q = np.asarray(Q, dtype=np.int64)
    Hth = (H[Q] @ th) if Htheta is None else _as2(Htheta)[0][Q]
    rhs = Hth - eta * gg[Q]
    out = np.zeros_like(th)
    if Q.size:
        HQQ = H[np.ix_(Q, Q)]
        try:
            out[Q] = sla.cho_solve(sla.cho_factor(HQQ, check_finite=False), rhs, check_finite=False)
        except (np.linalg.LinAlgError, sla.LinAlgError):
            out[Q] = np.linalg.lstsq(HQQ, rhs, rcond=None)[0]
    return out[:, 0] if flat else out


def obs_saliency(theta_tilde: np.ndarray, Hinv: np.ndarray, Q) -> float:
    r"""``½ tr(θ̃_Pᵀ ([H^{-1}]_PP)^{-1} θ̃_P)`` for ``P = Qᶜ`` (sparse.md §2.2): the increase of the
    quadratic model from ``θ̃`` to ``θ_OBS(Q)``."""
    th, _ = _as2(theta_tilde)
    P = _complement(Q, th.shape[0])
    if not P.size:
        return 0.0
    tp = th[P]
    return 0.5 * float(np.sum(tp * np.linalg.solve(Hinv[np.ix_(P, P)], tp)))


def single_weight_saliency(theta_tilde: np.ndarray, Hinv: np.ndarray) -> np.ndarray:
    """``sal_j = ||θ̃_j||² / (2 [H^{-1}]_jj)`` for every ``j`` (d,)."""
    th, _ = _as2(theta_tilde)
    return 0.5 * np.sum(th * th, axis=1) / np.diag(Hinv)


def single_weight_update(theta_tilde: np.ndarray, Hinv: np.ndarray, j: int) -> np.ndarray:
    """``δθ = -(θ̃_j / [H^{-1}]_jj) H^{-1} e_j``: removing weight ``j`` (its entry becomes 0)."""
    th, flat = _as2(theta_tilde)
    delta = -np.outer(Hinv[:, j], th[j]) / Hinv[j, j]
    return delta[:, 0] if flat else delta


def quadratic_model(theta, theta_t, g, H) -> float:
    """``q_t(θ) = <g, θ - θ_t> + ½ (θ - θ_t)ᵀ H (θ - θ_t)`` (sparse.md §2.2)."""
    e, _ = _as2(np.asarray(theta, dtype=np.float64) - np.asarray(theta_t, dtype=np.float64))
    gg, _ = _as2(g)
    return float(np.sum(gg * e) + 0.5 * np.sum(e * (H @ e)))


@dataclass
class GreedyResult:
    """Result of :func:`greedy_obs`: ``theta`` (d,) or (d, q) pruned iterate, ``keep`` kept
    indices (increasing), ``order`` removed indices in removal order, ``saliency`` their
    saliencies at removal (sum = joint saliency of the removed set)."""

    theta: np.ndarray
    keep: np.ndarray
    order: np.ndarray
    saliency: np.ndarray


def greedy_obs(theta_tilde: np.ndarray, Hinv: np.ndarray, k: int,
               alive: np.ndarray | None = None) -> GreedyResult:
    r"""Greedy OBS / OBC (sparse.md §2.5 item 2): from ``θ̃`` remove
    ``j = argmin θ_j²/[H^{-1}]_jj`` with the OBS update and the inverse downdate
    ``H^{-1} ← H^{-1} - H^{-1}[:, j] H^{-1}[j, :]/[H^{-1}]_jj`` until ``k`` weights remain.

    ``θ̃`` (d,) or (d, q) (rows as groups), ``Hinv`` (d, d) (not modified), ``alive`` optional
    (d,) bool of coordinates still present (default all). The result equals
    :func:`obs_project` onto the kept set (sequential projections compose).
    """
    th, flat = _as2(theta_tilde)
    th = np.array(th, dtype=np.float64, order="C")
    Hc = np.ascontiguousarray(Hinv, dtype=np.float64)
    al = np.ones(th.shape[0], dtype=bool) if alive is None else np.array(alive, dtype=bool)
    order, sal = obc_prune(th, Hc, int(k), al)
    out = th[:, 0] if flat else th
    return GreedyResult(out, np.flatnonzero(al), order, sal)


def obd(theta: np.ndarray, g: np.ndarray, h: np.ndarray, k: int,
        eta: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    r"""Diagonal OBS (OBD, sparse.md §2.5 item 3): ``H ≈ diag(h)``,
    ``θ̃ = θ - η g / h``, keep the ``k`` largest saliencies ``h_j θ̃_j² / 2`` (no cross-correction).

    Returns ``(idx, θ_new)`` (ties by lowest index)."""
    h = np.asarray(h, dtype=np.float64)
    if np.any(h <= 0):
        raise ValueError("OBD needs a positive diagonal curvature (use damping)")
    tt = theta - eta * g / h
    idx = topk_indices(np.ascontiguousarray(np.sqrt(h) * np.abs(tt)), int(k))
    out = np.zeros_like(tt)
    out[idx] = tt[idx]
    return idx, out


def woodfisher_inverse(G: np.ndarray, delta: float, block: int | None = None) -> np.ndarray:
    r"""Inverse of the empirical Fisher ``F̂ = δI + (1/m) Σ_i g_i g_iᵀ`` by Woodbury rank-1 updates
    (WoodFisher, sparse.md §2.5 item 4):

    .. math::

        F_0^{-1} = \delta^{-1} I,\qquad
        F_i^{-1} = F_{i-1}^{-1} - \frac{F_{i-1}^{-1} g_i g_i^\top F_{i-1}^{-1}}
                   {m + g_i^\top F_{i-1}^{-1} g_i}.

    ``G`` (m, d) per-sample gradients (rows), ``delta > 0`` absolute damping, ``block``: a
    block-diagonal approximation with diagonal blocks of ``block`` coordinates (None: one block).
    Returns ``F̂^{-1}`` (d, d), symmetrised. Cost ``O(m d^2)`` (``O(m d · block)`` with blocks).
    """
    G = np.asarray(G, dtype=np.float64)
    if G.ndim != 2:
        raise ValueError(f"G must have shape (m, d), got {G.shape}")
    if not (math.isfinite(delta) and delta > 0):
        raise ValueError(f"the Fisher damping must be > 0, got {delta!r}")
    m, d = G.shape
    B = d if not block else int(block)
    Finv = np.zeros((d, d))
    for s in range(0, d, B):
        e = min(d, s + B)
        Fi = np.eye(e - s) / delta
        for i in range(m):
            gi = G[i, s:e]
            v = Fi @ gi
            Fi -= np.outer(v, v) / (m + gi @ v)
        Finv[s:e, s:e] = Fi
    return symmetrize(Finv)


def best_subset(H: np.ndarray, b: np.ndarray, k: int, limit: int = ENUMERATION_LIMIT,
                chunk: int = 8192) -> tuple[np.ndarray, float]:
    r"""Exact support selection of I-OBS by enumeration (sparse.md §2.3): the ``Q`` (|Q| = k)
    maximising ``b_Qᵀ H_QQ^{-1} b_Q`` with ``b = H θ̃ = Hθ - ηg``, i.e. minimising
    ``||θ - θ̃||_H²`` over ``k``-sparse ``θ`` (equivalently the saliency
    ``½ θ̃_Pᵀ([H^{-1}]_PP)^{-1}θ̃_P`` when ``H`` is invertible). Only ``H_QQ`` must be invertible.

    ``H`` (d, d), ``b`` (d,). Supports are visited in lexicographic order and the first maximiser
    is returned (deterministic). Returns ``(Q, value)``. Raises ``ValueError`` if ``C(d, k) >
    limit``.
    """
    d = H.shape[0]
    count = math.comb(d, k)
    if count > limit:
        raise ValueError(f"exact I-OBS enumerates C({d}, {k}) = {count} supports (> {limit}); "
                         f"use a smaller d or k")
    best_v, best_Q = -np.inf, None
    it = itertools.combinations(range(d), k)
    while True:
        Qs = np.array(list(itertools.islice(it, chunk)), dtype=np.int64).reshape(-1, k)
        if not Qs.shape[0]:
            break
        HQ = H[Qs[:, :, None], Qs[:, None, :]]
        bQ = b[Qs]
        try:
            x = np.linalg.solve(HQ, bQ[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            x = np.stack([np.linalg.lstsq(HQ[i], bQ[i], rcond=None)[0] for i in range(len(Qs))])
        v = np.einsum("ij,ij->i", bQ, x)
        i = int(np.argmax(v))
        if v[i] > best_v:
            best_v, best_Q = float(v[i]), Qs[i].copy()
    return best_Q, best_v
