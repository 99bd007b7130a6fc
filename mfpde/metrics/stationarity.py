r"""Near-stationary points of the NC model: how close to collapse they are (Wu & Mondelli, ICML 2025).

Theory: theory/metrics.md §4 (stationarity gap), validation.md §V5–§V7 (Theorem 4.2, eqs. (6),
(9), (12), Corollary 4.4, Lemma 4.5, the balancedness bound), models.md §2 (the NC model),
metrics.md §3 (test error).

Layout (docs/architecture.md): ROW layout, one sample per row. The theory writes matrices with one
sample per column; the formulas below are the same after transposition.

==========  ==========  ======================================================================
symbol      shape       meaning
==========  ==========  ======================================================================
``H``       (n, p)      features :math:`h_\rho(x_i)` (the theory's :math:`H_\rho^\top`)
``Y``       (n, q)      one-hot targets
``W``       (p, q)      last layer
``K``       (n, n)      kernel :math:`K_\rho = E_\rho[\sigma(Xu)\sigma(u^\top X^\top)]`
``Z``       (n, q)      residual :math:`\Gamma H W - Y` (the theory's :math:`Z^\top`)
``G``       (n, p)      :math:`\frac\Gamma n Z W^\top` (the theory's :math:`G^\top`)
``EaaT``    (p, p)      second moment :math:`E_\rho[aa^\top]` (:math:`A^\top A/N` for particles)
``WWT``     (p, p)      :math:`WW^\top` (a snapshot or a time average)
``GHt``     (p, p)      :math:`GH_\rho^\top` in the theory's layout, i.e. ``G.T @ H`` here
==========  ==========  ======================================================================

Every function that takes second moments accepts time averages (e.g. from
:class:`mfpde.engine.averages.TimeAverage`), not only the matrices of one particle snapshot: a
noisy stationary state fluctuates, and the statements of Lemma 4.5 and of the balancedness bound
are about the stationary law, i.e. about averages.

What is exact and what is estimated. The identity (12) residual, ``r6``, ``E_2``, the Corollary
4.4 bound, the Lemma 4.5 residuals and the balancedness bound are exact functions of the measured
matrices. The stationarity gap :math:`\varepsilon_S` of Definition 4.1 contains the score
:math:`\nabla\log\rho`, which particles do not give: :func:`stationarity_gap` returns the exact
entropy-free part and, for finite :math:`\beta`, an ESTIMATE of the entropy term (integration by
parts plus a kernel-density Fisher information, metrics.md §4 option 2), always labelled so.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .collapse import _as_labels, _as_matrix, balanced_error, nc1
from .entropy import fisher_information_kde

__all__ = [
    "SIGMA_SUP",
    "sigma_sup",
    "kernel_matrix",
    "NCSnapshot",
    "nc_snapshot",
    "residual_matrices",
    "identity12_residual",
    "r12",
    "eq6_features",
    "r6",
    "collapsed_features",
    "e2",
    "e2_bound_measured",
    "e2_bound_paper",
    "e1_bound_paper",
    "nc1_bound",
    "nc1_bound_threshold",
    "StationarityGap",
    "stationarity_gap",
    "eps_S_squared",
    "second_moments",
    "lemma45_trained_matrix",
    "lemma45_trained",
    "lemma45_frozen_matrix",
    "lemma45_frozen",
    "nb_lower_bound",
    "heldout_metrics",
]

#: :math:`\sup_z|\sigma(z)|` of the bounded activations (the constant that enters the bounds
#: through :math:`|K_{ij}| \le C^2` and Cauchy–Schwarz; models.md §4)
SIGMA_SUP = {"tanh": 1.0, "sigmoid": 1.0, "erf": 1.0}


def sigma_sup(activation: str) -> float:
    """:math:`\\sup|\\sigma|` of a bounded activation (``tanh``, ``sigmoid``, ``erf``: 1).

    Raises ``ValueError`` for unbounded activations (then give the constant explicitly)."""
    try:
        return SIGMA_SUP[activation]
    except KeyError:
        raise ValueError(f"activation {activation!r} is not bounded (or not tabulated); the "
                         f"bounds need sup|sigma|: pass C1 explicitly") from None


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _pos(name, v, allow_inf=False):
    v = float(v)
    if math.isnan(v) or v <= 0 or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{name} must be > 0{' (inf allowed)' if allow_inf else ' and finite'}, "
                         f"got {v}")
    return v


def _shapes(H=None, K=None, W=None, Y=None):
    """Validate the shapes of the row-layout matrices against each other."""
    n = p = q = None
    out = []
    if H is not None:
        H = _as_matrix(H, "H")
        n, p = H.shape
    if Y is not None:
        Y = _as_matrix(Y, "Y")
        if n is not None and Y.shape[0] != n:
            raise ValueError(f"Y must have n = {n} rows like H, got shape {Y.shape}")
        n, q = Y.shape
    if W is not None:
        W = _as_matrix(W, "W")
        if p is not None and W.shape[0] != p:
            raise ValueError(f"W must be (p, q) with p = {p} (columns of H), got {W.shape}")
        if q is not None and W.shape[1] != q:
            raise ValueError(f"W must be (p, q) with q = {q} (columns of Y), got {W.shape}")
        p, q = W.shape
    if K is not None:
        K = _as_matrix(K, "K")
        if K.shape[0] != K.shape[1] or (n is not None and K.shape[0] != n):
            raise ValueError(f"K must be (n, n) with n = {n}, got {K.shape}")
        K = 0.5 * (K + K.T)
    for a in (H, K, W, Y):
        out.append(a)
    return out


def _fro(M) -> float:
    return float(np.sqrt(np.einsum("ij,ij->", M, M)))


def _sym_opnorm(M) -> float:
    return float(np.max(np.abs(np.linalg.eigvalsh(0.5 * (M + M.T)))))


def residual_matrices(H, W, Y, Gamma):
    r"""Residual and back-propagated residual (dynamics.md §1.3, row layout).

    .. math::  Z = \Gamma H W - Y \ (n\times q),\qquad G = \frac\Gamma n Z W^\top\ (n\times p),
               \qquad R = \frac{\|Z\|_F^2}{2n}.

    Parameters
    ----------
    H : array_like (n, p); W : array_like (p, q); Y : array_like (n, q); Gamma : float > 0

    Returns
    -------
    (Z, G, R) : ndarray (n, q), ndarray (n, p), float
    """
    H, _, W, Y = _shapes(H=H, W=W, Y=Y)
    Gamma = _pos("Gamma", Gamma)
    n = H.shape[0]
    Z = Gamma * (H @ W) - Y
    G = (Gamma / n) * (Z @ W.T)
    return Z, G, float(np.einsum("ij,ij->", Z, Z)) / (2.0 * n)


# --------------------------------------------------------------------------------------------
# snapshot of the NC quantities of a particle system
# --------------------------------------------------------------------------------------------
def kernel_matrix(model, theta, X, chunk: int = 4096) -> np.ndarray:
    r"""Empirical kernel :math:`K = \frac1N\sum_j \sigma(X\tilde u_j)\sigma(\tilde u_j^\top X^\top)`
    (models.md §2; dynamics.md §1.3: ``K = S S^T / N``), shape (n, n).

    ``X`` (n, d) gets the model's bias coordinate if it has one; ``theta`` (N, D) are the
    particles of a read-out model (``u`` = the last ``d_in`` columns). Particles are processed in
    chunks of ``chunk`` (memory ``O(n * chunk)``); cost ``O(n^2 N + n N d)``.
    """
    from ..activations import evaluate

    theta = model.check_theta(theta)
    Xa = model.prepare_X(X)
    U = theta[:, model.pa:]
    n, N = Xa.shape[0], theta.shape[0]
    K = np.zeros((n, n))
    for s in range(0, N, int(chunk)):
        S = evaluate(model.activation, Xa @ U[s:s + int(chunk)].T)   # (n, m)
        K += S @ S.T
    K /= N
    return 0.5 * (K + K.T)


def _is_truncated(model) -> bool:
    return getattr(model, "readout_truncation", None) is not None


@dataclass
class NCSnapshot:
    """The NC matrices of one particle state (row layout; see the module table).

    Attributes
    ----------
    H : (n, p) features;  Z : (n, q) residual;  G : (n, p) back-propagated residual
    risk : float, :math:`R = \\|Z\\|_F^2/(2n)`
    K : (n, n) kernel or None;  KG : (n, p) ``K @ G`` or None
    EaaT : (p, p) :math:`A^\\top A/N`;  WWT : (p, p) :math:`WW^\\top`
    GHt : (p, p) the data part of :math:`E[\\nabla_a\\Psi\\, a^\\top]`, i.e.
        :math:`\\frac1N\\sum_j(\\nabla_a\\Psi(\\theta_j) - \\lambda a_j)a_j^\\top`; equals ``G.T @ H``
        (:math:`GH_\\rho^\\top`) for the untruncated read-out and
        :math:`E[(\\tau_R'(a)\\odot G^\\top\\sigma)a^\\top]` with :math:`\\tau_R` (Section 5)
    """

    H: np.ndarray
    Z: np.ndarray
    G: np.ndarray
    risk: float
    K: np.ndarray | None
    KG: np.ndarray | None
    EaaT: np.ndarray
    WWT: np.ndarray
    GHt: np.ndarray


def nc_snapshot(model, theta, X, Y, W, *, kernel: bool = True) -> NCSnapshot:
    """All NC matrices of one particle state of the NC model (see :class:`NCSnapshot`).

    Parameters
    ----------
    model : NCThreeLayer (or its truncated variant)
    theta : (N, D) particles;  X : (n, d);  Y : (n, q);  W : (p, q)
    kernel : also form ``K`` (n, n) (cost ``O(n^2 N)``) and ``K @ G``

    For the truncated read-out (``model.readout_truncation`` set) ``H`` is :math:`H^R_\\rho` and
    ``GHt`` comes from one gradient pass (the :math:`\\tau_R'` factor).
    """
    theta = model.check_theta(theta)
    W = model.check_W(W)
    H = model.features(theta, X)
    Yp = model.prepare_Y(Y, H.shape[0])
    Z, G, R = residual_matrices(H, W, Yp, model.Gamma)
    A = theta[:, :model.p]
    N = theta.shape[0]
    EaaT = A.T @ A / N
    if _is_truncated(model):
        g = model.gradient(theta, X, Yp, W)
        GHt = (g.theta[:, :model.p] - model.lam * A).T @ A / N
    else:
        GHt = G.T @ H
    K = KG = None
    if kernel:
        K = kernel_matrix(model, theta, X)
        KG = K @ G
    return NCSnapshot(H, Z, G, R, K, KG, 0.5 * (EaaT + EaaT.T), W @ W.T, GHt)


# --------------------------------------------------------------------------------------------
# Theorem 4.2: identity (12), eq. (6), E_2
# --------------------------------------------------------------------------------------------
def identity12_residual(H, K, W, Y, Gamma, lam) -> np.ndarray:
    r"""Residual of identity (12) of Wu–Mondelli (validation.md §V5), shape (n, p).

    .. math::  E = H + \frac1\lambda K G,\qquad G = \frac\Gamma n(\Gamma HW - Y)W^\top

    (theory layout: :math:`H_\rho + \frac{\Gamma}{\lambda n}WZK_\rho`). Exact statement behind it
    [derived here]: multiplying :math:`\nabla_a\frac{\delta F}{\delta\rho} = G\sigma(X^\top u)
    + \lambda a + \beta^{-1}\nabla_a\log\rho` by :math:`\sigma(u^\top X)` and integrating (the
    score term integrates to 0) gives
    :math:`E = \frac1\lambda E_\rho[\nabla_a\frac{\delta F}{\delta\rho}\,\sigma(u^\top X)]`, so
    :math:`\|E\|_F \le C_1\sqrt n\,\varepsilon_S/\lambda` with :math:`C_1 = \sup|\sigma|`. For
    particles :math:`E = \frac1{\lambda N}\sum_j\nabla_a\Psi(\theta_j)\sigma(u_j^\top X)`, which
    fluctuates like :math:`N^{-1/2}` at a noisy stationary state.

    Parameters
    ----------
    H : (n, p); K : (n, n) symmetric; W : (p, q); Y : (n, q); Gamma, lam : float > 0

    Returns
    -------
    ndarray (n, p)
    """
    H, K, W, Y = _shapes(H=H, K=K, W=W, Y=Y)
    lam = _pos("lam", lam)
    _, G, _ = residual_matrices(H, W, Y, Gamma)
    return H + (K @ G) / lam


def r12(H, K, W, Y, Gamma, lam) -> float:
    r"""Relative identity (12) residual :math:`r_{12} = \|H + \frac1\lambda KG\|_F / \|H\|_F`
    (validation.md §V5). Shapes as in :func:`identity12_residual`; ``nan`` if ``H = 0``."""
    E = identity12_residual(H, K, W, Y, Gamma, lam)
    nH = _fro(np.asarray(H, dtype=float))
    return _fro(E) / nH if nH > 0 else math.nan


def eq6_features(K, W, Y, Gamma, lam) -> np.ndarray:
    r"""The features of eq. (6) of Wu–Mondelli through two eigendecompositions (validation.md §V5).

    Eq. (6) (theory layout, without :math:`E_1`):
    :math:`\mathrm{vec}(H_6) = \Gamma(K/n\otimes W)(\Gamma^2K/n\otimes W^\top W
    + \lambda I_{nq})^{-1}\mathrm{vec}(Y)`. With :math:`W^\top W = V_w\,\mathrm{diag}(\omega)V_w^\top`
    and :math:`K = V_k\,\mathrm{diag}(\kappa)V_k^\top` the :math:`nq\times nq` inverse is diagonal
    in the basis :math:`V_k\otimes V_w` [derived here, checked]:

    .. math::

        Z^* = -V_w\Big[(V_w^\top Y V_k)\oslash\big(1 + \tfrac{\Gamma^2}{\lambda n}\omega\kappa^\top
        \big)\Big]V_k^\top,\qquad H_6 = -\frac{\Gamma}{\lambda n}WZ^*K

    (:math:`\oslash` element-wise; :math:`Y` here :math:`q\times n`). :math:`Z^*` is the residual of
    the self-consistent solution of (12) with :math:`E = 0` for the given ``K`` and ``W``. Cost
    ``O(n^3 + q^3 + n^2 q + n p q)``; no ``nq x nq`` matrix is formed.

    Parameters
    ----------
    K : (n, n) symmetric PSD; W : (p, q); Y : (n, q); Gamma, lam : float > 0

    Returns
    -------
    ndarray (n, p), the rows of :math:`H_6`
    """
    _, K, W, Y = _shapes(K=K, W=W, Y=Y)
    Gamma, lam = _pos("Gamma", Gamma), _pos("lam", lam)
    n = K.shape[0]
    om, Vw = np.linalg.eigh(W.T @ W)
    ka, Vk = np.linalg.eigh(K)
    c = Gamma**2 / (lam * n)
    Yt = Vw.T @ Y.T @ Vk                                   # (q, n)
    Zs = -(Vw @ (Yt / (1.0 + c * np.outer(om, ka))) @ Vk.T)  # (q, n), theory layout
    return -(Gamma / (lam * n)) * (K @ Zs.T @ W.T)       # rows of H_6 (n, p)


def r6(H, K, W, Y, Gamma, lam) -> float:
    r"""Relative eq. (6) residual :math:`r_6 = \|H - H_6(K, W)\|_F/\|H\|_F` (validation.md §V5),
    :math:`H_6` from :func:`eq6_features` with the measured ``K`` and ``W``; ``nan`` if ``H = 0``.

    Shapes: ``H`` (n, p), ``K`` (n, n), ``W`` (p, q), ``Y`` (n, q).
    """
    H, K, W, Y = _shapes(H=H, K=K, W=W, Y=Y)
    nH = _fro(H)
    if nH == 0:
        return math.nan
    return _fro(H - eq6_features(K, W, Y, Gamma, lam)) / nH


def collapsed_features(W, Y, Gamma) -> np.ndarray:
    r"""The collapsed features of Theorem 4.2, :math:`H^* = \Gamma^{-1}W(W^\top W)^{-1}Y`
    (theory layout), rows ``Gamma^-1 Y (W^T W)^-1 W^T``, shape (n, p). Needs ``W`` (p, q) of rank q.

    Every sample of class ``k`` gets the class mean :math:`\Gamma^{-1}W(W^\top W)^{-1}e_k`, and
    :math:`\Gamma W^\top H^* = Y` (zero risk).
    """
    _, _, W, Y = _shapes(W=W, Y=Y)
    Gamma = _pos("Gamma", Gamma)
    s = np.linalg.svd(W, compute_uv=False)
    if s.min() <= 1e-12 * max(1.0, s.max()):
        raise ValueError("W is singular (s_min(W) = 0): the collapsed features are undefined")
    return (Y @ np.linalg.solve(W.T @ W, W.T)) / Gamma


def e2(H, W, Y, Gamma) -> float:
    r""":math:`\|E_2\|_F^2 = \|H - \Gamma^{-1}W(W^\top W)^{-1}Y\|_F^2` of Theorem 4.2
    (validation.md §V5). ``H`` (n, p), ``W`` (p, q) of rank q, ``Y`` (n, q)."""
    H, _, W, Y = _shapes(H=H, W=W, Y=Y)
    D = H - collapsed_features(W, Y, Gamma)
    return float(np.einsum("ij,ij->", D, D))


def e2_bound_measured(H, K, W, Y, Gamma, lam) -> dict:
    r"""Deterministic bound of :math:`\|E_2\|_F^2` by measured quantities [derived here].

    Split :math:`E_2 = P_WE_2 + P_\perp H` (:math:`P_W` the projection on the range of ``W``;
    :math:`P_\perp H^* = 0`). Since :math:`W^\top E_2 = Z/\Gamma`,
    :math:`\|P_WE_2\|_F^2 \le \|Z\|_F^2/(\Gamma^2 s_{min}(W)^2) = 2nR/(\Gamma^2s_{min}(W)^2)` — the
    :math:`\varepsilon_S`-free term of the paper's bound — and :math:`P_\perp H = P_\perp E` with
    :math:`E` the identity (12) residual, so

    .. math::  \|E_2\|_F^2 \le \frac{2nR}{\Gamma^2 s_{min}(W)^2} + \|E\|_F^2 .

    Returns
    -------
    dict
        ``risk_part`` (:math:`2nR/(\Gamma^2s_{min}^2)`), ``e12_sq`` (:math:`\|E\|_F^2`),
        ``bound`` (their sum), ``range_part`` / ``perp_part`` (the two exact components of
        :math:`\|E_2\|^2`), ``e2``.
    """
    H, K, W, Y = _shapes(H=H, K=K, W=W, Y=Y)
    n = H.shape[0]
    Z, _, R = residual_matrices(H, W, Y, Gamma)
    smin = float(np.linalg.svd(W, compute_uv=False).min())
    E = identity12_residual(H, K, W, Y, Gamma, lam)
    Q, _ = np.linalg.qr(W)
    D = H - collapsed_features(W, Y, Gamma)
    DP = (D @ Q) @ Q.T
    risk_part = 2.0 * n * R / (float(Gamma) ** 2 * smin**2)
    e12 = float(np.einsum("ij,ij->", E, E))
    return dict(risk_part=risk_part, e12_sq=e12, bound=risk_part + e12,
                range_part=float(np.einsum("ij,ij->", DP, DP)),
                perp_part=float(np.einsum("ij,ij->", D - DP, D - DP)),
                e2=float(np.einsum("ij,ij->", D, D)))


def e1_bound_paper(n, W, Gamma, lam, eps_S, C1=1.0) -> float:
    r"""Theorem 4.2 bound on :math:`\|E_1\|^2` as printed (validation.md §V5, [reconstructed —
    verify]): :math:`2(\lambda^{-4}\Gamma^4C_1^2s_{max}(W)^4 + \lambda^{-2})C_1^2 n\varepsilon_S^2`.
    ``W`` (p, q); ``eps_S`` the stationarity gap *with* the entropy term."""
    W = _as_matrix(W, "W")
    lam, Gamma = _pos("lam", lam), _pos("Gamma", Gamma)
    smax = float(np.linalg.svd(W, compute_uv=False).max())
    return 2.0 * (lam**-4 * Gamma**4 * C1**2 * smax**4 + lam**-2) * C1**2 * n * float(eps_S) ** 2


def e2_bound_paper(n, risk, W, Gamma, lam, eps_S, C1=1.0) -> dict:
    r"""Theorem 4.2 bound on :math:`\|E_2\|_F^2` as printed (validation.md §V5, [reconstructed —
    verify])

    .. math::

        \|E_2\|_F^2 \le 2(\lambda^{-4}\Gamma^4C_1^2 s_{max}(W)^4 + \lambda^{-2})C_1^2 n\varepsilon_S^2
        + \frac{2n\Gamma^{-2}R + 2\lambda^{-2}s_{max}(W)^2C_1^2n\varepsilon_S^2}{s_{min}(W)^2}.

    ``eps_S`` is the stationarity gap *with* the entropy term (for :math:`\beta<\infty` only an
    estimate is available, :func:`stationarity_gap`). Returns ``{"risk_part", "eps_part",
    "bound"}`` (``risk_part`` = :math:`2nR/(\Gamma^2s_{min}^2)`, the :math:`\varepsilon_S`-free term).
    """
    W = _as_matrix(W, "W")
    lam, Gamma = _pos("lam", lam), _pos("Gamma", Gamma)
    s = np.linalg.svd(W, compute_uv=False)
    smin, smax = float(s.min()), float(s.max())
    e = float(eps_S) ** 2
    risk_part = 2.0 * n * float(risk) / (Gamma**2 * smin**2)
    eps_part = (2.0 * (lam**-4 * Gamma**4 * C1**2 * smax**4 + lam**-2) * C1**2 * n * e
                + 2.0 * lam**-2 * smax**2 * C1**2 * n * e / smin**2)
    return dict(risk_part=risk_part, eps_part=eps_part, bound=risk_part + eps_part)


# --------------------------------------------------------------------------------------------
# Corollary 4.4
# --------------------------------------------------------------------------------------------
def nc1_bound_threshold(W, Gamma, labels) -> float:
    r"""The quantity :math:`T = (q-1)n_{min}/s_{max}(\Gamma W)^2` of Corollary 4.4 (for balanced
    classes :math:`n_{min} = n/q`, so :math:`T = (q-1)n/(q\,s_{max}(\Gamma W)^2)` as printed;
    :math:`s_{max}(\Gamma W)`, not :math:`s_{max}(W)`, validation.md §V5).

    Meaning [derived here]: the total centred sum of squares of the collapsed features :math:`H^*`
    is at least :math:`T` (their class means are the columns of :math:`\Gamma^{-1}W(W^\top W)^{-1}`,
    whose smallest singular value is :math:`1/s_{max}(\Gamma W)`); with unbalanced classes the
    smallest class size :math:`n_{min}` replaces :math:`n/q` [derived here].
    ``W`` (p, q); ``labels`` (n,) with classes ``0..q-1``.
    """
    W = _as_matrix(W, "W")
    Gamma = _pos("Gamma", Gamma)
    lab, q, counts = _as_labels(labels, np.asarray(labels).shape[0], min_classes=2)
    if q != W.shape[1]:
        raise ValueError(f"labels have q = {q} classes but W has {W.shape[1]} columns")
    smax = Gamma * float(np.linalg.svd(W, compute_uv=False).max())
    return (q - 1) * float(counts.min()) / smax**2


def nc1_bound(e2_value, W, Gamma, labels) -> tuple[float, bool]:
    r"""Corollary 4.4 of Wu–Mondelli with the measured :math:`\|E_2\|_F^2` (validation.md §V5).

    If :math:`\|E_2\|_F^2 \le T/8` (:func:`nc1_bound_threshold`; balanced:
    :math:`(q-1)n/(8q\,s_{max}(\Gamma W)^2)`) then

    .. math::  \mathrm{NC1}(H_\rho) \le \frac{16\|E_2\|_F^2}{T/2 - 4\|E_2\|_F^2}.

    This is a deterministic inequality between :math:`H`, :math:`W` and the labels [derived here:
    the within-class sum of squares of :math:`H` is at most :math:`\|E_2\|_F^2` and the total one at
    least :math:`(\sqrt T - \|E_2\|_F)^2 \ge T/2 - \|E_2\|_F^2`], so it must hold whenever its
    condition does.

    Parameters
    ----------
    e2_value : float, :math:`\|E_2\|_F^2` (:func:`e2`)
    W : (p, q); Gamma : float > 0; labels : (n,) ints ``0..q-1``

    Returns
    -------
    (bound, applicable) : (float, bool)
        ``bound`` is ``nan`` where the condition fails (``applicable`` False); ``inf`` at
        equality.
    """
    e = float(e2_value)
    if not (e >= 0 and math.isfinite(e)):
        raise ValueError(f"e2_value must be a finite number >= 0, got {e2_value!r}")
    T = nc1_bound_threshold(W, Gamma, labels)
    if e > T / 8.0:
        return math.nan, False
    den = T / 2.0 - 4.0 * e
    return (16.0 * e / den if den > 0 else math.inf), True


# --------------------------------------------------------------------------------------------
# stationarity gap (Definition 4.1)
# --------------------------------------------------------------------------------------------
def eps_S_squared(grad_sq, laplacian, fisher, beta) -> float:
    r""":math:`\varepsilon_S^2 = E\|\nabla\Psi\|^2 - 2\beta^{-1}E[\Delta\Psi] + \beta^{-2}I(\rho)`
    (metrics.md §4 option 2, integration by parts; ``grad_sq`` for ``beta = inf``)."""
    beta = _pos("beta", beta, allow_inf=True)
    if math.isinf(beta):
        return float(grad_sq)
    return float(grad_sq) - 2.0 * float(laplacian) / beta + float(fisher) / beta**2


@dataclass
class StationarityGap:
    r"""Stationarity gap of Definition 4.1 and its terms (metrics.md §4).

    Attributes
    ----------
    grad_sq : :math:`\frac1N\sum_j\|\nabla\Psi(\theta_j)\|^2`, the entropy-free :math:`\varepsilon_S^2`
        (exact; equals :math:`\varepsilon_S^2` only for :math:`\beta = \infty`)
    laplacian : :math:`\frac1N\sum_j\Delta\Psi(\theta_j)` (exact)
    fisher : KDE ESTIMATE of :math:`I(\rho) = E\|\nabla\log\rho\|^2` (nan when not estimated)
    bandwidth : kernel bandwidth of that estimate (whitened units)
    beta : inverse temperature
    grad_W_sq : :math:`\|\nabla_WF\|_F^2` (NC model; reported separately)
    eps_S_sq : :math:`\varepsilon_S^2` with the entropy term (an ESTIMATE for finite beta; may be
        slightly negative through the estimator's error)
    """

    grad_sq: float
    laplacian: float
    fisher: float
    bandwidth: float
    beta: float
    grad_W_sq: float
    eps_S_sq: float

    @property
    def eps_S(self) -> float:
        """:math:`\\varepsilon_S` with the entropy term (``sqrt(max(eps_S_sq, 0))``)."""
        return math.sqrt(max(self.eps_S_sq, 0.0)) if math.isfinite(self.eps_S_sq) else math.nan

    @property
    def eps_S_free(self) -> float:
        """Entropy-free :math:`\\varepsilon_S = (E\\|\\nabla\\Psi\\|^2)^{1/2}`."""
        return math.sqrt(self.grad_sq)


def stationarity_gap(model, theta, X, Y, W=None, beta=math.inf, *, entropy: bool = True,
                     bandwidth=None, max_points: int = 4000) -> StationarityGap:
    r"""Stationarity gap :math:`\varepsilon_S` of Definition 4.1 (metrics.md §4; dynamics.md §2.2)

    .. math::  \varepsilon_S^2 = E_\rho\|\nabla\Psi(\theta;\rho,W) + \beta^{-1}\nabla\log\rho\|^2
               = E\|\nabla\Psi\|^2 - 2\beta^{-1}E[\Delta\Psi] + \beta^{-2}I(\rho),

    the second form by integration by parts [derived here]. The first two terms are exact particle
    averages (one gradient pass with the Laplacian); :math:`I(\rho)` is estimated by the
    leave-one-out Gaussian-KDE score (:func:`mfpde.metrics.entropy.fisher_information_kde`, whitened,
    Silverman bandwidth unless ``bandwidth``) on the first ``max_points`` particles (particles are
    exchangeable; no random draw). The estimate is reliable only for ``D <~ 5``.

    Parameters
    ----------
    model : read-out model; theta : (N, D); X : (n, d); Y : (n, q); W : (p, q) or None
    beta : float, ``inf`` = noiseless (then :math:`\varepsilon_S^2` = the entropy-free term)
    entropy : estimate the Fisher information for finite ``beta`` (else ``eps_S_sq`` is nan)
    bandwidth : float, optional; max_points : int

    Returns
    -------
    StationarityGap
    """
    beta = _pos("beta", beta, allow_inf=True)
    theta = model.check_theta(theta)
    g = model.gradient(theta, X, Y, W, laplacian=True)
    N = theta.shape[0]
    gsq = float(np.einsum("ij,ij->", g.theta, g.theta)) / N
    lap = float(np.mean(g.lap))
    gW = float(np.sum(g.W**2)) if g.W is not None else math.nan
    fisher, h = math.nan, math.nan
    if math.isinf(beta):
        eps2 = gsq
    elif entropy:
        pts = theta[:min(N, int(max_points))]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            fisher, h = fisher_information_kde(pts, bandwidth)
        eps2 = eps_S_squared(gsq, lap, fisher, beta)
    else:
        eps2 = math.nan
    return StationarityGap(gsq, lap, float(fisher), float(h), beta, gW, float(eps2))


# --------------------------------------------------------------------------------------------
# Lemma 4.5 and the balancedness bound
# --------------------------------------------------------------------------------------------
def second_moments(model, theta, X, Y, W) -> dict:
    """``{"EaaT", "WWT", "GHt"}`` (p, p) of one particle state (:func:`nc_snapshot` without the
    kernel); average them over time for the Lemma 4.5 statements."""
    s = nc_snapshot(model, theta, X, Y, W, kernel=False)
    return {"EaaT": s.EaaT, "WWT": s.WWT, "GHt": s.GHt}


def _moments(EaaT, other, name):
    E = _as_matrix(EaaT, "EaaT")
    M = _as_matrix(other, name)
    if E.shape[0] != E.shape[1] or M.shape != E.shape:
        raise ValueError(f"EaaT and {name} must be square (p, p) of the same shape, got "
                         f"{E.shape} and {M.shape}")
    return 0.5 * (E + E.T), M


def lemma45_trained_matrix(EaaT, WWT, lam, lam_W, beta) -> np.ndarray:
    r"""Lemma 4.5 of Wu–Mondelli, ``W`` trained (validation.md §V6): at a stationary point
    :math:`\lambda E_\rho[aa^\top] - \lambda_W WW^\top = \beta^{-1}I_p`. Returns the residual
    matrix :math:`\lambda E[aa^\top] - \lambda_W WW^\top - \beta^{-1}I_p` (p, p).

    ``EaaT``, ``WWT`` (p, p): snapshots or time averages; ``lam``, ``lam_W`` >= 0; ``beta`` > 0
    (inf: no identity term).
    """
    E, WW = _moments(EaaT, WWT, "WWT")
    beta = _pos("beta", beta, allow_inf=True)
    M = float(lam) * E - float(lam_W) * 0.5 * (WW + WW.T)
    M[np.diag_indices_from(M)] -= 1.0 / beta
    return M


def lemma45_trained(EaaT, WWT, lam, lam_W, beta, relative: bool = False) -> float:
    r"""Operator norm of :func:`lemma45_trained_matrix`; ``relative=True``: times ``beta``
    (the residual in units of :math:`\beta^{-1}`, the quantity of validation.md §V6)."""
    r = _sym_opnorm(lemma45_trained_matrix(EaaT, WWT, lam, lam_W, beta))
    if relative:
        if math.isinf(beta):
            raise ValueError("relative=True needs a finite beta")
        return r * float(beta)
    return r


def lemma45_frozen_matrix(EaaT, GHt, lam, beta) -> np.ndarray:
    r"""Lemma 4.5 with ``W`` frozen (only :math:`\rho`-stationarity; validation.md §V6
    [derived here]): :math:`\lambda E_\rho[aa^\top] = \beta^{-1}I_p - GH_\rho^\top`.

    Derivation: multiply :math:`\nabla_a\frac{\delta F}{\delta\rho} = G\sigma(X^\top u) + \lambda a
    + \beta^{-1}\nabla_a\log\rho = 0` by :math:`a^\top` and integrate
    (:math:`E[\nabla_a\log\rho\, a^\top] = -I_p`). With ``W`` trained, :math:`\nabla_WF = 0` gives
    :math:`GH^\top = -\lambda_W WW^\top` and the trained form. Returns the residual matrix
    :math:`\lambda E[aa^\top] + \mathrm{sym}(GH^\top) - \beta^{-1}I_p` (p, p).

    ``GHt`` (p, p) is :math:`GH_\rho^\top` in the theory layout (``G.T @ H`` in row layout; for
    particles :math:`\frac1N\sum_j(\nabla_a\Psi_j - \lambda a_j)a_j^\top`, see :class:`NCSnapshot`),
    a snapshot or a time average. Only its symmetric part enters (the stationary second moment
    is symmetric; for particles the time average of the drift correlation is what the SDE fixes).
    """
    E, C = _moments(EaaT, GHt, "GHt")
    beta = _pos("beta", beta, allow_inf=True)
    M = float(lam) * E + 0.5 * (C + C.T)
    M[np.diag_indices_from(M)] -= 1.0 / beta
    return M


def lemma45_frozen(EaaT, GHt, lam, beta, relative: bool = False) -> float:
    r"""Operator norm of :func:`lemma45_frozen_matrix`; ``relative=True``: times ``beta``."""
    r = _sym_opnorm(lemma45_frozen_matrix(EaaT, GHt, lam, beta))
    if relative:
        if math.isinf(beta):
            raise ValueError("relative=True needs a finite beta")
        return r * float(beta)
    return r


def nb_lower_bound(WWT, beta, lam_W, q=None) -> float:
    r"""Balancedness lower bound of a stationary point with ``W`` trained, ``p > q``,
    :math:`\beta < \infty` (validation.md §V7, metrics.md §1.4 [derived here from Lemma 4.5]):

    .. math::  \mathrm{NB} \ge \frac{1}{1 + \beta\lambda_W s_{max}(W)^2}

    (on the null space of :math:`W^\top`, :math:`E[aa^\top] = (\beta\lambda)^{-1}I`). ``WWT``
    (p, p) is :math:`WW^\top`, a snapshot or a time average (:math:`s_{max}^2` = its largest
    eigenvalue). ``q``: columns of ``W`` (default: the numerical rank of ``WWT``, right for a
    snapshot; give it for a time average, whose rank can exceed ``q``). Returns 0 for
    ``beta = inf`` and for ``p <= q`` (no null space: no bound).
    """
    WW = _as_matrix(WWT, "WWT")
    beta = _pos("beta", beta, allow_inf=True)
    if math.isinf(beta):
        return 0.0
    ev = np.linalg.eigvalsh(0.5 * (WW + WW.T))
    if q is None:
        q = int(np.sum(ev > 1e-10 * max(float(ev[-1]), 1e-300)))
    if WW.shape[0] <= int(q):
        return 0.0
    return 1.0 / (1.0 + beta * float(lam_W) * float(ev[-1]))


# --------------------------------------------------------------------------------------------
# generalisation (metrics.md §3)
# --------------------------------------------------------------------------------------------
def heldout_metrics(model, theta, W, train, test=None) -> dict:
    r"""Training and held-out metrics of an NC (or two-layer) network (metrics.md §3, §1.1).

    Returns ``train_loss``, ``train_error`` (class-balanced, :func:`~mfpde.metrics.collapse.
    balanced_error`), ``train_nc1`` and, with ``test``, ``test_loss``, ``test_error``,
    ``test_nc1`` (NC1 of the features of the held-out inputs under their own labels) and
    ``gap = test_loss - train_loss``. Data sets need ``X`` (n, d), ``Y`` (n, q) and ``labels``
    (n,) (labels only for errors and NC1).
    """
    out = {}
    for name, ds in (("train", train), ("test", test)):
        if ds is None:
            continue
        H = model.features(theta, ds.X)
        F = model.Gamma * (H @ W) if W is not None else H
        D = F - ds.Y
        out[f"{name}_loss"] = float(np.einsum("ij,ij->", D, D)) / (2.0 * ds.X.shape[0])
        if getattr(ds, "labels", None) is not None:
            out[f"{name}_error"] = balanced_error(F, ds.labels)
            out[f"{name}_nc1"] = nc1(H, ds.labels)
    if test is not None:
        out["gap"] = out["test_loss"] - out["train_loss"]
    return out
