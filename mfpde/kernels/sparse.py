r"""Compiled kernels of the sparse-recovery iterations (theory/sparse.md §2).

All kernels are serial, strict IEEE arithmetic (no ``fastmath``) and release the GIL
(:func:`mfpde._numba.jit`). Vectors are float64 of shape ``(d,)``, matrices C-contiguous
``(d, d)``; index arrays are int64.

==========================  ==================================================================
:func:`topk_indices`        ``T_k`` support: the ``k`` largest ``|v_j|``, ties by lowest index,
                            returned in increasing index order; ``O(d)`` (one ``np.partition``)
:func:`rows_matvec`         ``out = sum_j c_j M[idx_j, :] - b``: a matrix-vector product with a
                            sparse vector, ``O(d |idx|)`` (``M`` symmetric: ``M c - b``)
:func:`sparse_residual_sq`  ``||sum_j c_j XT[idx_j, :] - y||^2`` (residual of a sparse iterate,
                            ``XT = X^T`` row-major), ``O(n |idx|)``
:func:`support_stats`       ``||x - x*||``, ``#supp(x)``, ``#(supp(x) ∩ supp(x*))`` in one pass
:func:`obc_prune`           greedy OBS (OBC) with inverse downdates, rows of ``theta`` as groups
==========================  ==================================================================
"""
from __future__ import annotations

import numpy as np

from .._numba import jit


@jit
def topk_indices(v, k):
    """Indices of the ``k`` entries of largest magnitude of ``v`` (d,), increasing order.

    Ties at the threshold are broken by lowest index (sparse.md §2, [choice]): all entries with
    ``|v_j| > tau`` are kept, then the lowest-index entries with ``|v_j| = tau``, where ``tau``
    is the ``k``-th largest magnitude. ``k >= d`` returns ``arange(d)``.
    """
    d = v.size
    if k >= d:
        return np.arange(d)
    out = np.empty(k, dtype=np.int64)
    if k <= 0:
        return out
    a = np.abs(v)
    tau = np.partition(a, d - k)[d - k]
    n_gt = 0
    for i in range(d):
        if a[i] > tau:
            n_gt += 1
    n_eq = k - n_gt
    m = 0
    for i in range(d):
        ai = a[i]
        if ai > tau:
            out[m] = i
            m += 1
        elif ai == tau and n_eq > 0:
            out[m] = i
            m += 1
            n_eq -= 1
    return out


@jit
def rows_matvec(M, idx, coef, b, out):
    """``out[:] = sum_j coef[j] * M[idx[j], :] - b`` (``M`` (d, d) row-major, ``b``, ``out`` (d,)).

    For a symmetric ``M`` (a Hessian) this is ``M x - b`` for the vector ``x`` with ``x[idx] =
    coef`` and zeros elsewhere; rows are read contiguously.
    """
    d = out.size
    for i in range(d):
        out[i] = -b[i]
    for j in range(idx.size):
        c = coef[j]
        r = idx[j]
        for i in range(d):
            out[i] += c * M[r, i]


@jit
def sparse_residual_sq(XT, idx, coef, y, work):
    """``||X x - y||^2`` for ``x[idx] = coef`` (zeros elsewhere); ``XT`` is ``X^T`` (d, n),
    ``y``, ``work`` (n,) (``work`` receives the residual ``X x - y``)."""
    n = y.size
    for i in range(n):
        work[i] = -y[i]
    for j in range(idx.size):
        c = coef[j]
        r = idx[j]
        for i in range(n):
            work[i] += c * XT[r, i]
    s = 0.0
    for i in range(n):
        s += work[i] * work[i]
    return s


@jit
def support_stats(x, target, target_mask):
    """``(||x - target||_2, #{j: x_j != 0}, #{j: x_j != 0 and target_mask[j]})``."""
    s = 0.0
    nnz = 0
    tp = 0
    for j in range(x.size):
        e = x[j] - target[j]
        s += e * e
        if x[j] != 0.0:
            nnz += 1
            if target_mask[j]:
                tp += 1
    return np.sqrt(s), nnz, tp


@jit
def obc_prune(theta, Hinv, k, alive):
    r"""Greedy OBS (OBC) in place (sparse.md §2.5 item 2), groups = rows of ``theta``.

    ``theta`` (d, q) starts at the Newton point ``θ̃`` and is overwritten by the result; ``Hinv``
    (d, d) is ``H^{-1}`` (read only: the downdates act on a compact copy); ``alive`` (d,) bool
    marks the coordinates still present and is updated. While more than ``k`` remain, remove

    .. math::

        j = \arg\min_{j\ \mathrm{alive}} \|\theta_j\|^2 / [H^{-1}]_{jj}\quad(\text{lowest index on ties}),

        \theta \leftarrow \theta - H^{-1}[:, j]\,\theta_j / [H^{-1}]_{jj},\qquad
        H^{-1} \leftarrow H^{-1} - H^{-1}[:, j] H^{-1}[j, :] / [H^{-1}]_{jj} .

    The inverse restricted to the alive coordinates is kept as a contiguous ``m x m`` block
    (a removed coordinate is replaced by the last one), so each removal costs ``O(m^2)``
    contiguous operations. Row ``j`` of ``theta`` is set to exactly 0. Returns ``(order,
    saliency)``: the removed indices in removal order (int64) and their saliencies
    ``½ ||θ_j||² / [H^{-1}]_jj`` at removal; the total is ``½ tr(θ̃_Pᵀ ([H^{-1}]_PP)^{-1} θ̃_P)``
    for the removed set ``P`` (Kronecker-structured Hessian ``H ⊗ I_q``).
    """
    d, q = theta.shape
    m = 0
    for j in range(d):
        if alive[j]:
            m += 1
    n_rm = max(0, m - k)
    order = np.empty(n_rm, dtype=np.int64)
    sal = np.empty(n_rm)
    live = np.empty(m, dtype=np.int64)
    m = 0
    for j in range(d):
        if alive[j]:
            live[m] = j
            m += 1
    Hc = np.empty((m, m))
    th = np.empty((m, q))
    for a in range(m):
        for b in range(m):
            Hc[a, b] = Hinv[live[a], live[b]]
        for c in range(q):
            th[a, c] = theta[live[a], c]
    col = np.empty(m)
    for r in range(n_rm):
        best = -1
        bs = np.inf
        for t in range(m):
            s = 0.0
            for c in range(q):
                s += th[t, c] * th[t, c]
            s = s / Hc[t, t]
            if s < bs or (s == bs and live[t] < live[best]):
                bs = s
                best = t
        t = best
        j = live[t]
        piv = Hc[t, t]
        for a in range(m):
            col[a] = Hc[a, t]
        for c in range(q):
            f = th[t, c] / piv
            for a in range(m):
                th[a, c] -= f * col[a]
        for a in range(m):
            ca = col[a] / piv
            for b in range(m):
                Hc[a, b] -= ca * col[b]
        last = m - 1
        if t != last:
            for b in range(m):
                Hc[t, b] = Hc[last, b]
            for a in range(m):
                Hc[a, t] = Hc[a, last]
            for c in range(q):
                th[t, c] = th[last, c]
            live[t] = live[last]
        m -= 1
        alive[j] = False
        order[r] = j
        sal[r] = 0.5 * bs
    for j in range(d):
        for c in range(q):
            theta[j, c] = 0.0
    for a in range(m):
        for c in range(q):
            theta[live[a], c] = th[a, c]
    return order, sal


@jit
def _support(theta):
    m = 0
    for j in range(theta.size):
        if theta[j] != 0.0:
            m += 1
    idx = np.empty(m, dtype=np.int64)
    m = 0
    for j in range(theta.size):
        if theta[j] != 0.0:
            idx[m] = j
            m += 1
    return idx


@jit
def _residual_sq(XT, y, theta, idx, work):
    """``||Xθ - y||²`` from the columns of ``X`` (rows of ``XT``) on ``idx = supp θ``."""
    n = y.size
    for i in range(n):
        work[i] = -y[i]
    for j in idx:
        c = theta[j]
        for i in range(n):
            work[i] += c * XT[j, i]
    s = 0.0
    for i in range(n):
        s += work[i] * work[i]
    return s


@jit
def _keep(v, k):
    idx = topk_indices(v, k)
    out = np.zeros(v.size)
    for j in idx:
        out[j] = v[j]
    return out


@jit
def fused_iht(H, XT, b, y, theta, eta, k, work):
    r"""One k-IHT step of a quadratic problem: ``θ_new = T_k(θ - η(Hθ - b))`` (sparse.md §2.1).

    ``H`` (d, d) symmetric, ``XT = Xᵀ`` (d, n), ``b`` (d,), ``y`` (n,), ``work`` (n,) scratch.
    Products run over the support of ``θ`` only (rows of ``H``, columns of ``X``), ``O((d + n)
    nnz(θ))``. Returns ``(||Xθ - y||², θ_new)`` (the residual of the iterate before the update).
    """
    d = theta.size
    idx = _support(theta)
    rss = _residual_sq(XT, y, theta, idx, work)
    v = np.empty(d)
    for i in range(d):
        v[i] = theta[i] + eta * b[i]
    for j in idx:
        c = eta * theta[j]
        for i in range(d):
            v[i] -= c * H[j, i]
    return rss, _keep(v, k)


@jit
def fused_topk_newton(XT, y, theta, theta_n, eta, k, work):
    r"""One Topk-I-OBS step of a quadratic problem with an undamped Hessian:
    ``θ_new = T_k(θ - ηH^{-1}(Hθ - b)) = T_k((1 - η)θ + ηθ_N)``, ``θ_N = H^{-1}b`` (sparse.md
    §2.4, §3). Returns ``(||Xθ - y||², θ_new)``; ``O(d + n nnz(θ))``."""
    d = theta.size
    idx = _support(theta)
    rss = _residual_sq(XT, y, theta, idx, work)
    v = np.empty(d)
    a = 1.0 - eta
    for i in range(d):
        v[i] = a * theta[i] + eta * theta_n[i]
    return rss, _keep(v, k)
