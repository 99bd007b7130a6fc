"""Wasserstein-type distances between particle clouds (theory/metrics.md §6).

Every function returns a DISTANCE (``W_2``, ``W_1``, ``SW_2``, ...), never its square, unless its
name ends in ``_squared``.  (POT's ``ot.emd2`` with ``ot.dist`` and ``ot.wasserstein_1d`` return
``W_2^2``; this module takes the square roots.)

Clouds are in ROW layout: ``X`` of shape ``(n, D)``, ``Y`` of shape ``(m, D)`` (a 1-D array is
read as ``D = 1``).  Optional weights ``a`` (n,), ``b`` (m,) must be non-negative with a positive
sum; they are normalised to probability vectors.  Without weights the clouds are uniform
empirical measures.

Size limits and cost (see also docs/metrics.md):

* ``w2_exact``, ``w1_exact``: network simplex, roughly ``O(n^3 log n)`` time and a dense
  ``n x m`` cost matrix; capped at ``max_points = 5000`` points per cloud (200 MB cost matrix).
* ``sinkhorn_w2``, ``sinkhorn_divergence*``: ``O(n m)`` per iteration and ``O(n m)`` memory;
  capped at ``max_points``.
* ``sliced_w2``: ``O(L D (n + m) + L (n + m) log(n + m))`` time, ``O(chunk (n + m))`` memory;
  ``10^5`` points per cloud are fine.
* ``w2_1d``: ``O((n + m) log(n + m))``.  ``bures_w2``: ``O(D^3)``.

Statistical caveat (metrics.md §6.3): ``W_2`` between an ``N``-sample and its limit (or
between two independent ``N``-samples) decays like ``N^{-1/D}`` for ``D > 4``; do not read raw
``W_2`` of particle clouds as an ``N^{-1/2}`` convergence rate.  ``SW_2`` decays like
``N^{-1/2}`` free of ``D``.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from typing import NamedTuple

import numpy as np

if "ot" not in sys.modules:
    # POT imports every array library it finds (PyTorch, JAX, ...) for its backends, which
    # takes seconds; mfpde hands it NumPy arrays only. Set the variable to "" to keep them.
    for _lib in ("PYTORCH", "JAX", "CUPY", "TENSORFLOW"):
        os.environ.setdefault(f"POT_BACKEND_DISABLE_{_lib}", "1")
import ot  # noqa: E402  POT (absolute import: the top-level Python Optimal Transport package)
from scipy.special import logsumexp

try:  # optional: keep the thin projection products single-threaded (see sliced_w2)
    from threadpoolctl import threadpool_limits as _threadpool_limits
except ImportError:  # pragma: no cover
    _threadpool_limits = None

from ..kernels.ot import w2sq_merge_rows

__all__ = [
    "W2Result",
    "w2",
    "w2_exact",
    "w1_exact",
    "sinkhorn_w2",
    "sinkhorn_divergence",
    "sinkhorn_divergence_squared",
    "sliced_w2",
    "sphere_directions",
    "w2_1d",
    "bures_w2",
    "w2_cloud_gaussian",
    "empirical_gaussian",
]

FALLBACK_METHOD = "sliced (fallback: n > max_points)"


class W2Result(NamedTuple):
    """Result of :func:`w2`: the value and what was computed.

    Attributes
    ----------
    value : float
        The distance (``W_2`` or ``SW_2``, not squared).
    method : str
        ``"exact"`` or ``"sliced (fallback: n > max_points)"``.
    """

    value: float
    method: str


# ----------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------
def _as_cloud(X, name: str) -> np.ndarray:
    """Finite float64 ``(n, D)`` array; a 1-D array is read as ``(n, 1)``."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array ({exc})") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (n, D) (or (n,) for D = 1), got {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    return arr


def _as_pair(X, Y) -> tuple[np.ndarray, np.ndarray]:
    X = _as_cloud(X, "X")
    Y = _as_cloud(Y, "Y")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X and Y must have the same dimension D, got {X.shape} and {Y.shape}")
    return X, Y


def _as_weights(a, n: int, name: str):
    """``None`` (uniform) or a normalised float64 probability vector of length ``n``."""
    if a is None:
        return None
    try:
        w = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array ({exc})") from None
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    if np.any(w < 0):
        raise ValueError(f"{name} must be non-negative")
    s = w.sum()
    if not s > 0:
        raise ValueError(f"{name} must have a positive sum")
    return w / s


def _uniform(n: int) -> np.ndarray:
    return np.full(n, 1.0 / n)


def _check_max_points(max_points) -> int:
    if max_points is None:
        return None
    mp = int(max_points)
    if mp < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    return mp


def _sqrt_clip(v: float) -> float:
    """``sqrt(max(v, 0))``: squared costs can be slightly negative by round-off."""
    v = float(v)
    return math.sqrt(v) if v > 0.0 else 0.0


def _sq_cost(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Squared Euclidean cost matrix, computed after a common shift (W2 is invariant) to limit
    cancellation in ``|x|^2 + |y|^2 - 2 x.y``; clipped at 0."""
    c = X.mean(axis=0)
    M = ot.dist(X - c, Y - c)  # metric='sqeuclidean' (POT default)
    np.maximum(M, 0.0, out=M)
    return M


# ----------------------------------------------------------------------------------------------
# exact OT
# ----------------------------------------------------------------------------------------------
def w2_exact(X, Y, a=None, b=None, max_points=5000, *, n_projections=128, seed=0,
             num_iter_max=10_000_000) -> float:
    """Exact 2-Wasserstein distance between two discrete measures (metrics.md §6.1).

    .. math::

        W_2(\\mu,\\nu) = \\Big(\\min_{\\pi \\in \\Pi(a,b)} \\sum_{j,l} \\pi_{jl}
        \\|x_j - y_l\\|^2\\Big)^{1/2}

    computed as ``sqrt(ot.emd2(a, b, ot.dist(X, Y)))`` (``ot.dist`` is the SQUARED Euclidean
    cost, so ``ot.emd2`` returns ``W_2^2``; tiny negative round-off is clipped).  The clouds are
    shifted by a common vector before forming the cost (``W_2`` is invariant) to reduce
    cancellation.

    If either cloud has more than ``max_points`` points the exact solver is NOT run: a
    ``UserWarning`` is emitted and the sliced distance :func:`sliced_w2` (a different, smaller
    quantity: ``SW_2 <= W_2``) is returned instead.  Use :func:`w2` to get the method back
    with the value.

    Parameters
    ----------
    X : array_like, shape (n, D) or (n,)
    Y : array_like, shape (m, D) or (m,)
    a, b : array_like, shape (n,), (m,), optional
        Non-negative weights (normalised internally); uniform if omitted.
    max_points : int, optional
        Cap on ``max(n, m)`` for the exact solver (default 5000: the dense cost matrix is
        ``n m`` doubles, 200 MB at 5000 x 5000, and the network simplex costs roughly
        ``O(n^3 log n)``).  ``None`` disables the cap.
    n_projections, seed : int, optional
        Passed to :func:`sliced_w2` in the fallback.
    num_iter_max : int, optional
        Iteration cap of the network simplex (POT's default 1e5 is too small above ~1000
        points; POT warns if it is reached).

    Returns
    -------
    float
        ``W_2`` (not squared), or ``SW_2`` in the fallback.

    Raises
    ------
    ValueError
        On wrong shapes, mismatched dimension, NaN/inf, or bad weights.
    """
    return _w2_impl(X, Y, a, b, max_points, n_projections, seed, num_iter_max, warn=True).value


def w2(X, Y, a=None, b=None, max_points=5000, *, n_projections=128, seed=0,
       num_iter_max=10_000_000) -> W2Result:
    """``W_2`` with a record of the method used (metrics.md §6.1).

    Same computation as :func:`w2_exact` (exact EMD up to ``max_points`` points per cloud,
    sliced ``SW_2`` above), but returns ``W2Result(value, method)`` with ``method`` equal to
    ``"exact"`` or ``"sliced (fallback: n > max_points)"`` so that callers can store what was
    computed.  No warning is emitted on fallback (the method is in the result).

    Parameters
    ----------
    X, Y, a, b, max_points, n_projections, seed, num_iter_max
        See :func:`w2_exact`.

    Returns
    -------
    W2Result
        ``(value, method)``; ``value`` is a distance (not squared).

    Raises
    ------
    ValueError
        On bad inputs (see :func:`w2_exact`).
    """
    return _w2_impl(X, Y, a, b, max_points, n_projections, seed, num_iter_max, warn=False)


def _w2_impl(X, Y, a, b, max_points, n_projections, seed, num_iter_max, warn) -> W2Result:
    X, Y = _as_pair(X, Y)
    n, m = X.shape[0], Y.shape[0]
    a = _as_weights(a, n, "a")
    b = _as_weights(b, m, "b")
    mp = _check_max_points(max_points)
    if mp is not None and max(n, m) > mp:
        if warn:
            warnings.warn(
                f"w2_exact: cloud sizes ({n}, {m}) exceed max_points = {mp}; returning the "
                f"sliced W2 with {n_projections} projections instead of the exact W2 "
                f"(SW2 <= W2)",
                UserWarning,
                stacklevel=3,
            )
        val = sliced_w2(X, Y, n_projections=n_projections, seed=seed, a=a, b=b)
        return W2Result(val, FALLBACK_METHOD)
    M = _sq_cost(X, Y)
    cost = ot.emd2(a if a is not None else _uniform(n), b if b is not None else _uniform(m), M,
                   numItermax=int(num_iter_max))
    return W2Result(_sqrt_clip(cost), "exact")


def w1_exact(X, Y, a=None, b=None, max_points=5000, *, num_iter_max=10_000_000) -> float:
    """Exact 1-Wasserstein distance (metrics.md §6.1).

    .. math::  W_1 = \\min_{\\pi \\in \\Pi(a,b)} \\sum_{j,l} \\pi_{jl} \\|x_j - y_l\\|

    via ``ot.emd2(a, b, ot.dist(X, Y, metric='euclidean'))`` (already a distance).

    Parameters
    ----------
    X : array_like, shape (n, D) or (n,)
    Y : array_like, shape (m, D) or (m,)
    a, b : array_like, optional
        Weights (normalised internally); uniform if omitted.
    max_points : int, optional
        Cap on ``max(n, m)`` (default 5000; memory ``O(n m)``, time ~ ``O(n^3 log n)``).
    num_iter_max : int, optional
        Network-simplex iteration cap.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        On bad inputs or if a cloud exceeds ``max_points`` (there is no fallback for ``W_1``).
    """
    X, Y = _as_pair(X, Y)
    n, m = X.shape[0], Y.shape[0]
    a = _as_weights(a, n, "a")
    b = _as_weights(b, m, "b")
    mp = _check_max_points(max_points)
    if mp is not None and max(n, m) > mp:
        raise ValueError(
            f"w1_exact: cloud sizes ({n}, {m}) exceed max_points = {mp}; subsample the clouds "
            f"or raise max_points (memory O(n m))"
        )
    c = X.mean(axis=0)
    M = ot.dist(X - c, Y - c, metric="euclidean")
    cost = ot.emd2(a if a is not None else _uniform(n), b if b is not None else _uniform(m), M,
                   numItermax=int(num_iter_max))
    return max(float(cost), 0.0)


# ----------------------------------------------------------------------------------------------
# entropic OT
# ----------------------------------------------------------------------------------------------
def _check_reg(reg) -> float:
    r = float(reg)
    if not (np.isfinite(r) and r > 0):
        raise ValueError(f"reg must be finite and > 0, got {reg}")
    return r


def _entropic_inputs(X, Y, a, b, max_points):
    X, Y = _as_pair(X, Y)
    n, m = X.shape[0], Y.shape[0]
    a = _as_weights(a, n, "a")
    b = _as_weights(b, m, "b")
    mp = _check_max_points(max_points)
    if mp is not None and max(n, m) > mp:
        raise ValueError(
            f"cloud sizes ({n}, {m}) exceed max_points = {mp} (dense O(n m) cost matrix); "
            f"subsample or raise max_points"
        )
    a = a if a is not None else _uniform(n)
    b = b if b is not None else _uniform(m)
    return X, Y, a, b


def sinkhorn_w2(X, Y, reg, a=None, b=None, max_points=5000, *, method="sinkhorn_stabilized",
                num_iter_max=10_000, stop_thr=1e-9) -> float:
    """Square root of the transport cost of the entropic plan (metrics.md §6.1).

    .. math::

        \\pi_\\varepsilon = \\arg\\min_{\\pi\\in\\Pi(a,b)} \\langle \\pi, M\\rangle
        - \\varepsilon H(\\pi), \\qquad \\text{returns } \\langle \\pi_\\varepsilon,
        M\\rangle^{1/2},

    with ``M_jl = ||x_j - y_l||^2`` and ``eps = reg`` (``ot.sinkhorn2(a, b, M, reg)``; the
    entropy term is not included in the value).  This is BIASED UPWARD: ``pi_eps`` is a
    feasible but blurred plan, so ``<pi_eps, M> >= W_2^2`` and the result is ``>= W_2``; the
    bias is ``O(reg log(1/reg))`` and does not vanish for ``X = Y``.  Use
    :func:`sinkhorn_divergence` for a debiased quantity.

    ``reg`` is in the units of ``M`` (squared distance): choose it relative to the typical
    squared distance (e.g. ``1e-2 * mean(M)``).  Small ``reg`` needs many iterations (POT warns
    if ``num_iter_max`` is reached).

    Parameters
    ----------
    X : array_like, shape (n, D) or (n,)
    Y : array_like, shape (m, D) or (m,)
    reg : float
        Entropic regularisation ``> 0`` (units of squared distance).
    a, b : array_like, optional
        Weights (normalised internally).
    max_points : int, optional
        Cap on ``max(n, m)`` (default 5000; memory ``O(n m)``, ``O(n m)`` per iteration).
    method : str, optional
        POT Sinkhorn variant (default ``"sinkhorn_stabilized"``: log-stabilised, fast and safe
        for small ``reg``; ``"sinkhorn_log"`` is the slower fully log-domain solver).
    num_iter_max : int, optional
    stop_thr : float, optional
        Passed to POT (``numItermax``, ``stopThr``).

    Returns
    -------
    float
        ``<pi_eps, M>^{1/2} >= W_2``.

    Raises
    ------
    ValueError
        On bad inputs, ``reg <= 0``, or a cloud larger than ``max_points``.
    """
    reg = _check_reg(reg)
    X, Y, a, b = _entropic_inputs(X, Y, a, b, max_points)
    M = _sq_cost(X, Y)
    cost = ot.sinkhorn2(a, b, M, reg, method=method, numItermax=int(num_iter_max),
                        stopThr=float(stop_thr))
    return _sqrt_clip(cost)


def _ot_eps(a, b, M, reg, method, num_iter_max, stop_thr) -> float:
    """Entropic OT with the KL penalty: ``<pi, M> + reg KL(pi | a x b)`` at the Sinkhorn plan."""
    P = ot.sinkhorn(a, b, M, reg, method=method, numItermax=int(num_iter_max),
                    stopThr=float(stop_thr))
    ab = np.outer(a, b)
    pos = P > 0
    kl = float(np.sum(P[pos] * np.log(P[pos] / ab[pos])))
    return float(np.sum(P * M)) + reg * kl


def _ot_eps_self(a, M, reg, num_iter_max, stop_thr) -> float:
    """``OT_eps(a, a)`` (KL form) by the symmetric log-domain Sinkhorn iteration
    ``f <- (f + T(f))/2``, ``T(f)_i = -eps log sum_j a_j exp((f_j - M_ij)/eps)``, which converges
    much faster than alternating updates (Feydy et al. 2019); returns ``2 <a, f>``."""
    loga = np.log(a)
    f = np.zeros(a.shape[0])
    tol = float(stop_thr) * max(float(M.max()), np.finfo(float).tiny)
    Mr = M / reg
    converged = False
    for _ in range(int(num_iter_max)):
        Tf = -reg * logsumexp(loga[None, :] + f[None, :] / reg - Mr, axis=1)
        fn = 0.5 * (f + Tf)
        if np.max(np.abs(fn - f)) <= tol:
            f = fn
            converged = True
            break
        f = fn
    if not converged:
        warnings.warn("symmetric Sinkhorn did not converge; increase num_iter_max or reg",
                      UserWarning, stacklevel=3)
    # one last half-step makes f a fixed point of T to round-off
    f = -reg * logsumexp(loga[None, :] + f[None, :] / reg - Mr, axis=1)
    return 2.0 * float(np.dot(a, f))


def sinkhorn_divergence_squared(X, Y, reg, a=None, b=None, max_points=5000, *,
                                method="sinkhorn_stabilized", num_iter_max=10_000,
                                stop_thr=1e-9) -> float:
    """Debiased Sinkhorn divergence ``S_eps`` (Feydy et al. 2019; metrics.md §6.1).

    .. math::

        S_\\varepsilon(\\mu,\\nu) = OT_\\varepsilon(\\mu,\\nu) - \\tfrac12 OT_\\varepsilon(\\mu,\\mu)
        - \\tfrac12 OT_\\varepsilon(\\nu,\\nu), \\quad
        OT_\\varepsilon = \\min_\\pi \\langle\\pi, M\\rangle + \\varepsilon\\,
        KL(\\pi \\,|\\, a\\otimes b),

    with the squared Euclidean cost ``M``.  Includes the entropic term, so ``S_eps >= 0`` with
    equality iff ``mu = nu`` and ``S_eps -> W_2^2`` as ``eps -> 0``; units of squared distance.
    NOTE: POT 0.9's ``ot.bregman.empirical_sinkhorn_divergence`` omits the entropic
    contributions (it debiases ``<pi, M>`` only) and can be negative; it is not used here.

    Parameters
    ----------
    X, Y, reg, a, b, max_points, method, num_iter_max, stop_thr
        As in :func:`sinkhorn_w2` (three Sinkhorn solves, memory ``O((n + m)^2)``).

    Returns
    -------
    float
        ``S_eps`` (may be ``-O(stop_thr)`` by round-off / incomplete convergence).

    Raises
    ------
    ValueError
        On bad inputs, ``reg <= 0``, or a cloud larger than ``max_points``.
    """
    reg = _check_reg(reg)
    X, Y, a, b = _entropic_inputs(X, Y, a, b, max_points)
    kw = dict(method=method, num_iter_max=num_iter_max, stop_thr=stop_thr)
    xy = _ot_eps(a, b, _sq_cost(X, Y), reg, **kw)
    xx = _ot_eps_self(a, _sq_cost(X, X), reg, num_iter_max, stop_thr)
    yy = _ot_eps_self(b, _sq_cost(Y, Y), reg, num_iter_max, stop_thr)
    return xy - 0.5 * (xx + yy)


def sinkhorn_divergence(X, Y, reg, a=None, b=None, max_points=5000, **kwargs) -> float:
    """Square root of the debiased Sinkhorn divergence, ``sqrt(max(S_eps, 0))`` (metrics.md §6.1).

    A distance-like quantity (units of length, comparable with ``W_2``; tends to ``W_2`` as
    ``reg -> 0``).  See :func:`sinkhorn_divergence_squared` for the definition and arguments.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        As :func:`sinkhorn_divergence_squared`.
    """
    return _sqrt_clip(sinkhorn_divergence_squared(X, Y, reg, a, b, max_points, **kwargs))


# ----------------------------------------------------------------------------------------------
# 1-D and sliced
# ----------------------------------------------------------------------------------------------
def _cumweights(w: np.ndarray, axis: int = -1) -> np.ndarray:
    """Cumulative weights normalised to end at exactly 1 along ``axis``."""
    c = np.cumsum(w, axis=axis)
    c /= np.take(c, [-1], axis=axis)
    idx = [slice(None)] * c.ndim
    idx[axis] = -1
    c[tuple(idx)] = 1.0
    return c


def _w2sq_1d_rows(P: np.ndarray, a, Q: np.ndarray, b) -> np.ndarray:
    """Squared 1-D ``W_2`` between row ``r`` of ``P`` (c, n) and row ``r`` of ``Q`` (c, m),
    with weights ``a`` (n,) / ``b`` (m,) or ``None`` (uniform).  ``P``, ``Q`` are overwritten."""
    c, n = P.shape
    m = Q.shape[1]
    if a is None and b is None and n == m:
        P.sort(axis=1)
        Q.sort(axis=1)
        P -= Q
        return np.einsum("ij,ij->i", P, P) / n
    if a is None:
        P.sort(axis=1)
        CA = (np.arange(1, n + 1, dtype=np.float64) / n)[None, :]
    else:
        ia = np.argsort(P, axis=1)
        P = np.take_along_axis(P, ia, axis=1)
        CA = _cumweights(a[ia], axis=1)
    if b is None:
        Q.sort(axis=1)
        CB = (np.arange(1, m + 1, dtype=np.float64) / m)[None, :]
    else:
        ib = np.argsort(Q, axis=1)
        Q = np.take_along_axis(Q, ib, axis=1)
        CB = _cumweights(b[ib], axis=1)
    CA[:, -1] = 1.0
    CB[:, -1] = 1.0
    out = np.empty(c)
    w2sq_merge_rows(np.ascontiguousarray(P), np.ascontiguousarray(CA),
                    np.ascontiguousarray(Q), np.ascontiguousarray(CB), out)
    return out


def w2_1d(x, y, a=None, b=None) -> float:
    """1-D 2-Wasserstein distance by the quantile formula (metrics.md §6.1).

    .. math::  W_2(\\mu,\\nu) = \\Big(\\int_0^1 |F^{-1}(t) - G^{-1}(t)|^2 dt\\Big)^{1/2}

    For equal sizes and uniform weights this is ``sqrt(mean((sort(x) - sort(y))^2))``;
    otherwise the integral is evaluated exactly on the merged grid of the two cumulative
    weight sequences.  ``ot.wasserstein_1d(x, y, p=2)`` returns the SQUARE of this value.

    Parameters
    ----------
    x : array_like, shape (n,) or (n, 1)
    y : array_like, shape (m,) or (m, 1)
    a, b : array_like, shape (n,), (m,), optional
        Non-negative weights (normalised internally); uniform if omitted.

    Returns
    -------
    float
        ``W_2`` (not squared).  Cost ``O((n + m) log(n + m))``.

    Raises
    ------
    ValueError
        On non-1-D input, NaN/inf or bad weights.
    """
    X, Y = _as_pair(x, y)
    if X.shape[1] != 1:
        raise ValueError(f"w2_1d needs 1-D samples (shape (n,) or (n, 1)), got {X.shape}")
    a = _as_weights(a, X.shape[0], "a")
    b = _as_weights(b, Y.shape[0], "b")
    val = _w2sq_1d_rows(X.T.copy(), a, Y.T.copy(), b)[0]
    return _sqrt_clip(val)


def sphere_directions(D: int, n_projections: int = 128, seed=0) -> np.ndarray:
    """Uniform random directions on the sphere ``S^{D-1}`` (for :func:`sliced_w2`).

    Normalised standard Gaussian vectors drawn from ``numpy.random.default_rng(seed)``.

    Parameters
    ----------
    D : int
        Dimension (``>= 1``).
    n_projections : int
        Number of directions ``L`` (``>= 1``).
    seed : int, numpy.random.SeedSequence or numpy.random.Generator
        Seed (a Generator is used as is).

    Returns
    -------
    ndarray, shape (D, L)
        Unit directions as COLUMNS (the layout of POT's ``projections`` argument).

    Raises
    ------
    ValueError
        If ``D < 1`` or ``n_projections < 1``.
    """
    D, L = int(D), int(n_projections)
    if D < 1 or L < 1:
        raise ValueError(f"need D >= 1 and n_projections >= 1, got D = {D}, L = {L}")
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((D, L))
    nrm = np.linalg.norm(G, axis=0)
    while np.any(nrm == 0.0):  # probability zero; only possible in tiny D by underflow
        bad = nrm == 0.0
        G[:, bad] = rng.standard_normal((D, int(bad.sum())))
        nrm = np.linalg.norm(G, axis=0)
    return G / nrm


def sliced_w2(X, Y, n_projections=128, seed=0, a=None, b=None, *, projections=None,
              chunk=32) -> float:
    """Sliced 2-Wasserstein distance, Monte Carlo over random directions (metrics.md §6.1).

    .. math::

        SW_2(\\mu,\\nu) = \\Big(\\int_{S^{D-1}} W_2^2(P_{\\omega\\#}\\mu, P_{\\omega\\#}\\nu)\\,
        d\\omega\\Big)^{1/2} \\approx \\Big(\\frac1L \\sum_{l=1}^L
        W_2^2(\\omega_l^T X, \\omega_l^T Y)\\Big)^{1/2}

    with ``L = n_projections`` directions uniform on the sphere (:func:`sphere_directions`,
    seeded numpy Generator) or the given ``projections``.  Each chunk of directions is applied
    with one BLAS product ``Omega^T X^T``; each projected row is sorted.  Equal sizes without
    weights: ``W_2^2`` of a projection is the mean squared difference of the sorted
    projections.  Unequal sizes or weights: exact 1-D quantile formula (see :func:`w2_1d`).
    Same estimator as ``ot.sliced_wasserstein_distance(X, Y, a, b, p=2,
    projections=Omega)``; a different random stream than POT's ``seed``.

    ``SW_2 <= W_2`` (each 1-D projection is 1-Lipschitz); its sampling error between an
    ``N``-sample and the limit is ``O(N^{-1/2})`` free of ``D`` (metrics.md §6.3); the
    Monte Carlo error over directions is ``O(L^{-1/2})`` relative.

    Parameters
    ----------
    X : array_like, shape (n, D) or (n,)
    Y : array_like, shape (m, D) or (m,)
    n_projections : int, optional
        Number of random directions ``L`` (default 128; ignored if ``projections`` is given).
    seed : int or numpy.random.Generator, optional
        Seed of the directions (default 0, so repeated calls are reproducible).
    a, b : array_like, optional
        Non-negative weights (normalised internally); uniform if omitted.
    projections : array_like, shape (D, L), optional
        Explicit directions as columns (used as given; should be unit vectors).
    chunk : int, optional
        Directions processed at once (memory ``8 chunk (n + m)`` bytes).

    Returns
    -------
    float
        ``SW_2`` (not squared).

    Raises
    ------
    ValueError
        On bad inputs or a ``projections`` matrix of the wrong shape.

    Notes
    -----
    Cost ``O(L D (n + m) + L (n + m) log(n + m))``.  Two clouds of ``10^5`` points in
    ``D = 10`` with ``L = 128`` take about 0.4 s on one core (docs/metrics.md).  The projection
    products are run with one BLAS thread when ``threadpoolctl`` is available.  Unequal sizes or
    weights use a small Numba kernel (compiled at first use).
    """
    X, Y = _as_pair(X, Y)
    n, m = X.shape[0], Y.shape[0]
    D = X.shape[1]
    a = _as_weights(a, n, "a")
    b = _as_weights(b, m, "b")
    if projections is None:
        Om = sphere_directions(D, n_projections, seed)
    else:
        Om = np.asarray(projections, dtype=np.float64)
        if Om.ndim != 2 or Om.shape[0] != D or Om.shape[1] < 1:
            raise ValueError(f"projections must have shape (D, L) = ({D}, L), got {Om.shape}")
        if not np.all(np.isfinite(Om)):
            raise ValueError("projections contains NaN or infinite entries")
    L = Om.shape[1]
    OmT = np.ascontiguousarray(Om.T)  # (L, D)
    # a common shift (SW2 is translation invariant) limits round-off for far-off-centre clouds
    c = X.mean(axis=0)
    Xc = X - c
    Yc = Y - c
    chunk = max(1, int(chunk))
    total = 0.0
    # The (chunk x D) @ (D x n) products are memory bound; multi-threaded BLAS only adds
    # contention on a loaded machine (measured 2x slower), so use one BLAS thread if possible.
    ctx = _threadpool_limits(1, user_api="blas") if _threadpool_limits is not None else None
    try:
        for s in range(0, L, chunk):
            O = OmT[s:s + chunk]
            P = O @ Xc.T  # (c, n), C-contiguous
            Q = O @ Yc.T  # (c, m)
            total += float(np.sum(_w2sq_1d_rows(P, a, Q, b)))
    finally:
        if ctx is not None:
            ctx.restore_original_limits()
    return _sqrt_clip(total / L)


# ----------------------------------------------------------------------------------------------
# Gaussians
# ----------------------------------------------------------------------------------------------
def _as_gaussian(m, C, name: str):
    mv = np.atleast_1d(np.asarray(m, dtype=np.float64))
    if mv.ndim != 1:
        raise ValueError(f"mean {name} must be a vector of shape (D,), got {mv.shape}")
    D = mv.shape[0]
    Cm = np.asarray(C, dtype=np.float64)
    if Cm.ndim == 0 or (Cm.ndim == 1 and Cm.shape == (1,)):
        Cm = Cm.reshape(1, 1)
    if Cm.shape != (D, D):
        raise ValueError(f"covariance {name} must have shape ({D}, {D}), got {Cm.shape}")
    if not (np.all(np.isfinite(mv)) and np.all(np.isfinite(Cm))):
        raise ValueError(f"mean/covariance {name} contains NaN or infinite entries")
    scale = max(float(np.max(np.abs(Cm))), np.finfo(float).tiny)
    if np.max(np.abs(Cm - Cm.T)) > 1e-8 * scale:
        raise ValueError(f"covariance {name} is not symmetric")
    Cm = 0.5 * (Cm + Cm.T)
    ev, V = np.linalg.eigh(Cm)
    if ev[0] < -1e-10 * max(scale, 1e-300):
        raise ValueError(f"covariance {name} is not positive semi-definite "
                         f"(smallest eigenvalue {ev[0]:.3g})")
    return mv, Cm, np.maximum(ev, 0.0), V


def _psd_sqrt_from_eig(ev, V):
    S = (V * np.sqrt(ev)) @ V.T
    return 0.5 * (S + S.T)


def bures_w2(m1, C1, m2, C2) -> float:
    """``W_2`` between Gaussians ``N(m1, C1)`` and ``N(m2, C2)`` (Bures; metrics.md §6.1).

    .. math::

        W_2^2 = \\|m_1 - m_2\\|^2 + \\mathrm{tr}\\big(C_1 + C_2
        - 2 (C_2^{1/2} C_1 C_2^{1/2})^{1/2}\\big)

    Matrix square roots of the symmetric PSD matrices are taken through symmetric
    eigendecompositions (``numpy.linalg.eigh``, eigenvalues clipped at 0, results
    symmetrised) -- the robust equivalent of a symmetrised ``scipy.linalg.sqrtm`` for PSD
    input, also valid for singular covariances.  Closed forms: ``W_2(N(0,1), N(10,1)) = 10``,
    ``W_2(N(0, s1^2 I_D), N(0, s2^2 I_D)) = sqrt(D) |s1 - s2|``.

    Parameters
    ----------
    m1, m2 : array_like, shape (D,) (or scalars for D = 1)
    C1, C2 : array_like, shape (D, D) (or scalars for D = 1)
        Symmetric positive semi-definite covariances.

    Returns
    -------
    float
        ``W_2`` (not squared).  Cost ``O(D^3)``.

    Raises
    ------
    ValueError
        On shape mismatch, NaN, non-symmetric or indefinite covariance.
    """
    m1, C1, ev1, V1 = _as_gaussian(m1, C1, "1")
    m2, C2, ev2, V2 = _as_gaussian(m2, C2, "2")
    if m1.shape != m2.shape:
        raise ValueError(f"dimension mismatch: {m1.shape[0]} vs {m2.shape[0]}")
    S2 = _psd_sqrt_from_eig(ev2, V2)
    Mx = S2 @ C1 @ S2
    Mx = 0.5 * (Mx + Mx.T)
    cross = float(np.sum(np.sqrt(np.maximum(np.linalg.eigvalsh(Mx), 0.0))))
    dm = m1 - m2
    val = float(dm @ dm) + float(np.sum(ev1) + np.sum(ev2)) - 2.0 * cross
    return _sqrt_clip(val)


def empirical_gaussian(X) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a cloud's empirical measure (``1/N`` normalisation).

    Parameters
    ----------
    X : array_like, shape (N, D) or (N,)

    Returns
    -------
    (mean, cov) : ndarray (D,), ndarray (D, D)
        ``mean = (1/N) sum_j x_j``, ``cov = (1/N) sum_j (x_j - mean)(x_j - mean)^T``.

    Raises
    ------
    ValueError
        On bad input.
    """
    X = _as_cloud(X, "X")
    mu = X.mean(axis=0)
    Z = X - mu
    C = (Z.T @ Z) / X.shape[0]
    return mu, 0.5 * (C + C.T)


def w2_cloud_gaussian(X, m, C, method="bures", *, seed=0, max_points=5000,
                      n_projections=128) -> float:
    """Distance between a particle cloud and a Gaussian ``N(m, C)`` (metrics.md §6.1, §6.3).

    * ``method="bures"``: :func:`bures_w2` between the cloud's empirical Gaussian
      ``N(mean(X), cov(X))`` (``1/N`` covariance, :func:`empirical_gaussian`) and ``N(m, C)``.
      This is a Gaussian PROXY and a LOWER BOUND: by Gelbrich's inequality
      ``W_2(rho_N, N(m, C)) >= bures_w2(mean, cov, m, C)``; it only sees the first two moments
      and vanishes for any cloud with the right mean and covariance.  Cost ``O(N D^2 + D^3)``;
      no size limit; its sampling error is ``O(N^{-1/2})``.
    * ``method="sample"``: draw ``N`` points from ``N(m, C)`` (seeded
      ``numpy.random.default_rng(seed)``) and return :func:`w2_exact` between the two clouds
      (exact EMD up to ``max_points``, sliced ``SW_2`` with a ``UserWarning`` above).  Biased
      UPWARD by the sampling floor ``~ N^{-1/D}`` (metrics.md §6.3), so it does not tend to 0
      quickly even for an exact Gaussian cloud.

    Parameters
    ----------
    X : array_like, shape (N, D) or (N,)
    m : array_like, shape (D,)
    C : array_like, shape (D, D)
        Symmetric PSD covariance.
    method : {"bures", "sample"}
    seed : int or Generator, optional
        Seed of the Gaussian sample (``"sample"`` only).
    max_points, n_projections : int, optional
        Passed to :func:`w2_exact` (``"sample"`` only).

    Returns
    -------
    float
        A ``W_2``-type distance (not squared).

    Raises
    ------
    ValueError
        On bad inputs, dimension mismatch or an unknown ``method``.
    """
    X = _as_cloud(X, "X")
    mv, Cm, ev, V = _as_gaussian(m, C, "C")
    if mv.shape[0] != X.shape[1]:
        raise ValueError(f"dimension mismatch: X has D = {X.shape[1]}, m has {mv.shape[0]}")
    if method == "bures":
        mu, Cx = empirical_gaussian(X)
        return bures_w2(mu, Cx, mv, Cm)
    if method == "sample":
        rng = np.random.default_rng(seed)
        S = _psd_sqrt_from_eig(ev, V)
        Z = mv + rng.standard_normal(X.shape) @ S
        return _w2_impl(X, Z, None, None, max_points, n_projections, seed, 10_000_000,
                        warn=True).value
    raise ValueError(f"method must be 'bures' or 'sample', got {method!r}")
