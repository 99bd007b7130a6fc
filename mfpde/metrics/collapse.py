"""Neural-collapse and balancedness metrics (theory/metrics.md §1, §2; validation.md §V6, §V7, §K4).

Layout conventions (docs/architecture.md): feature matrices are in ROW layout, ``H`` has shape
``(n, p)`` with one sample per row (the theory files write ``H`` as ``p x n``, one sample per
column; every formula below is the same with ``h_i`` = row ``i``).  ``labels`` is an integer
array of shape ``(n,)`` with classes ``0 .. q-1``; ``q = labels.max() + 1`` and every class in
``0 .. q-1`` must have at least one sample.  Classes need not be sorted or balanced.  Particle
output weights ``A`` have shape ``(N, p)`` (one particle per row), so ``E_rho[a a^T] ~ A^T A / N``;
the last layer ``W`` has shape ``(p, q)``.

Two NC1 conventions are provided and must not be mixed up:

* :func:`nc1` -- Wu--Mondelli: within-class sum of squares / total centred sum of squares, in
  ``[0, 1]`` (metrics.md §1.1).  This is the project's primary NC1.
* :func:`nc1_papyan` -- Papyan--Han--Donoho: ``(1/q) tr(Sigma_W Sigma_B^+)``, unbounded
  (metrics.md §1.2).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "nc1",
    "nc1_loop",
    "nc1_papyan",
    "nc2",
    "nc3",
    "nc4",
    "class_means",
    "balancedness",
    "lemma45_residual",
    "singular_values",
    "nc_oracle",
    "nc1_population",
    "nc1_papyan_population",
    "balancedness_moments",
    "balanced_error",
]

_EPS = np.finfo(np.float64).eps


# ----------------------------------------------------------------------------------------------
# input validation
# ----------------------------------------------------------------------------------------------
def _as_matrix(X, name: str, ndim: int = 2) -> np.ndarray:
    """Return ``X`` as a finite float64 array with ``ndim`` dimensions, else raise ValueError."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array ({exc})") from None
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    return arr


def _as_labels(labels, n: int, min_classes: int = 1) -> tuple[np.ndarray, int, np.ndarray]:
    """Validate labels; return ``(labels as intp, q, counts)``.

    ``q = labels.max() + 1``; every class ``0 .. q-1`` must be non-empty.
    """
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise ValueError(f"labels must be a 1-D array of shape (n,), got shape {lab.shape}")
    if lab.shape[0] != n:
        raise ValueError(f"labels has length {lab.shape[0]} but H has {n} rows (samples)")
    if lab.dtype == bool:
        lab = lab.astype(np.intp)
    if not np.issubdtype(lab.dtype, np.integer):
        try:
            labf = lab.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError("labels must be integers 0..q-1") from None
        if not np.all(np.isfinite(labf)) or np.any(labf != np.round(labf)):
            raise ValueError("labels must be integers 0..q-1 (got non-integral values)")
        lab = labf.astype(np.intp)
    lab = lab.astype(np.intp, copy=False)
    if lab.min() < 0:
        raise ValueError("labels must be non-negative integers 0..q-1")
    q = int(lab.max()) + 1
    counts = np.bincount(lab, minlength=q)
    if np.any(counts == 0):
        empty = np.flatnonzero(counts == 0)
        raise ValueError(
            f"empty classes {empty.tolist()[:10]}: labels must use every class 0..q-1 "
            f"(q = labels.max() + 1 = {q}); relabel the classes consecutively"
        )
    if q < min_classes:
        raise ValueError(f"at least {min_classes} classes are required, got q = {q}")
    return lab, q, counts


def _features_and_labels(H, labels, min_classes: int = 1):
    H = _as_matrix(H, "H")
    lab, q, counts = _as_labels(labels, H.shape[0], min_classes=min_classes)
    return H, lab, q, counts


def _class_means(H: np.ndarray, lab: np.ndarray, q: int, counts: np.ndarray) -> np.ndarray:
    """Per-class means ``mu_k`` as rows of a ``(q, p)`` array (no validation)."""
    order = np.argsort(lab, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    sums = np.add.reduceat(H[order], starts, axis=0)
    return sums / counts[:, None]


def class_means(H, labels) -> np.ndarray:
    """Per-class means of row-layout features (metrics.md §1).

    Parameters
    ----------
    H : array_like, shape (n, p)
        Features, one sample per row.
    labels : array_like of int, shape (n,)
        Classes ``0 .. q-1`` (each non-empty; any order, unbalanced allowed).

    Returns
    -------
    ndarray, shape (q, p)
        Row ``k`` is ``mu_k = (1/n_k) sum_{i: c(i)=k} h_i``.

    Raises
    ------
    ValueError
        On wrong shapes, NaN/inf entries, non-integer labels or empty classes.
    """
    H, lab, q, counts = _features_and_labels(H, labels)
    return _class_means(H, lab, q, counts)


# ----------------------------------------------------------------------------------------------
# NC1
# ----------------------------------------------------------------------------------------------
def nc1(H, labels) -> float:
    """Wu--Mondelli NC1: within-class over total (centred) sum of squares (metrics.md §1.1).

    .. math::

        \\mathrm{NC1}(H) = \\frac{\\sum_i \\|h_i - \\mu_{c(i)}\\|^2}{\\sum_i \\|h_i - \\mu_G\\|^2}

    with per-class means ``mu_k`` and the global mean ``mu_G = (1/n) sum_i h_i``.  For balanced
    data sorted by class this equals ``tr((Hbar - M_c)^T (Hbar - M_c)) / tr(Hbar^T Hbar)`` of
    metrics.md §1.1; for unbalanced or unsorted data the right-hand side with per-class means is
    used ([choice] of metrics.md §1.1).  This is the project's primary NC1; it is NOT the
    Papyan--Han--Donoho quantity (see :func:`nc1_papyan`).

    Properties: range ``[0, 1]``; 0 iff every feature equals its class mean; invariant under
    translation, orthogonal maps and scaling of ``H``; for random (uncollapsed) features
    ``E NC1 ~ (n - q)/(n - 1)``; for balanced classes ``NC1 = c/(1 + c)`` with
    ``c = tr Sigma_W / tr Sigma_B``.

    Parameters
    ----------
    H : array_like, shape (n, p)
        Features ``h_i`` as rows (for the NC model: ``model.features(theta, X)``).
    labels : array_like of int, shape (n,)
        Class of each sample, ``0 .. q-1``, every class non-empty.

    Returns
    -------
    float
        NC1 in ``[0, 1]``; ``nan`` if the total centred sum of squares vanishes (all features
        equal, up to round-off).

    Raises
    ------
    ValueError
        On wrong shapes, NaN/inf in ``H``, non-integer labels or empty classes.

    Notes
    -----
    Cost ``O(n p)`` time and one ``(n, p)`` temporary.  Both sums of squares are computed from
    explicitly centred residuals (two-pass), so the result is translation invariant to
    round-off.
    """
    H, lab, q, counts = _features_and_labels(H, labels)
    n, p = H.shape
    mu = _class_means(H, lab, q, counts)
    R = H - mu[lab]
    within = float(np.einsum("ij,ij->", R, R))
    R = H - H.mean(axis=0)
    total = float(np.einsum("ij,ij->", R, R))
    scale = float(np.max(np.abs(H)))
    if total == 0.0 or total <= n * p * (16.0 * _EPS * scale) ** 2:
        return math.nan
    return within / total


def nc1_loop(H, labels) -> float:
    """Plain-Python loop implementation of :func:`nc1` (metrics.md §1.1), for tests.

    Computes ``sum_i ||h_i - mu_{c(i)}||^2 / sum_i ||h_i - mu_G||^2`` with explicit Python loops
    over samples, classes and coordinates (no vectorised numpy reductions).  Independent of the
    vectorised :func:`nc1`; ``O(n p)`` but slow -- use only on small inputs.

    Parameters
    ----------
    H : array_like, shape (n, p)
    labels : array_like of int, shape (n,)

    Returns
    -------
    float
        Same quantity as :func:`nc1` (``nan`` iff the total sum of squares is exactly 0).

    Raises
    ------
    ValueError
        Same conditions as :func:`nc1`.
    """
    H, lab, q, counts = _features_and_labels(H, labels)
    rows = H.tolist()
    labs = [int(c) for c in lab]
    n = len(rows)
    p = len(rows[0])
    sums = [[0.0] * p for _ in range(q)]
    cnt = [0] * q
    glob = [0.0] * p
    for h, c in zip(rows, labs):
        cnt[c] += 1
        for j in range(p):
            sums[c][j] += h[j]
            glob[j] += h[j]
    means = [[s / cnt[k] for s in sums[k]] for k in range(q)]
    glob = [g / n for g in glob]
    within = 0.0
    total = 0.0
    for h, c in zip(rows, labs):
        for j in range(p):
            within += (h[j] - means[c][j]) ** 2
            total += (h[j] - glob[j]) ** 2
    if total == 0.0:
        return math.nan
    return within / total


def _centred_means(H, lab, q, counts):
    mu = _class_means(H, lab, q, counts)
    muG = H.mean(axis=0)
    return mu, mu - muG


def nc1_papyan(H, labels, rcond: float = 1e-10) -> float:
    """Papyan--Han--Donoho NC1: ``(1/q) tr(Sigma_W Sigma_B^+)`` (metrics.md §1.2).

    .. math::

        \\Sigma_W = \\frac1n \\sum_i (h_i-\\mu_{c(i)})(h_i-\\mu_{c(i)})^T, \\quad
        \\Sigma_B = \\frac1q \\sum_k (\\mu_k-\\mu_G)(\\mu_k-\\mu_G)^T, \\quad
        \\mathrm{NC1}_P = \\frac1q \\mathrm{tr}(\\Sigma_W \\Sigma_B^+).

    ``Sigma_B^+`` is the Moore--Penrose pseudo-inverse computed through an eigendecomposition
    with a relative cut-off: eigenvalues ``<= rcond * lambda_max(Sigma_B)`` are treated as 0.
    The eigendecomposition is done on the ``q x q`` Gram matrix ``Mt^T Mt / q`` (``Mt`` = centred
    class means as columns), which has the same non-zero eigenvalues as ``Sigma_B``; the
    ``p x p`` matrices are never formed.  ``mu_G`` is the global sample mean (for unbalanced data
    ``Sigma_B`` can then have rank ``q``).

    Conventions: this includes the ``1/q`` factor (the widely copied notebook version reports
    ``q * NC1_P``).  Unlike :func:`nc1` it ignores within-class variance orthogonal to the range
    of ``Sigma_B``, is unbounded and is sensitive to an ill-conditioned ``Sigma_B``.

    Parameters
    ----------
    H : array_like, shape (n, p)
        Features as rows.
    labels : array_like of int, shape (n,)
        Classes ``0 .. q-1``, all non-empty, ``q >= 2``.
    rcond : float, optional
        Relative eigenvalue cut-off of the pseudo-inverse (default ``1e-10``).

    Returns
    -------
    float
        ``NC1_P >= 0``; ``nan`` if ``Sigma_B = 0`` (all class means equal).

    Raises
    ------
    ValueError
        On bad ``H``/``labels`` (see :func:`nc1`), ``q < 2`` or ``rcond`` not in ``[0, 1)``.

    Notes
    -----
    Cost ``O(n p q + q^3)``.
    """
    if not (np.isfinite(rcond) and 0.0 <= rcond < 1.0):
        raise ValueError(f"rcond must be in [0, 1), got {rcond}")
    H, lab, q, counts = _features_and_labels(H, labels, min_classes=2)
    n = H.shape[0]
    mu, Mt = _centred_means(H, lab, q, counts)  # Mt: (q, p), row k = mu_k - mu_G
    G = (Mt @ Mt.T) / q  # (q, q), same non-zero spectrum as Sigma_B
    G = 0.5 * (G + G.T)
    lam, V = np.linalg.eigh(G)
    lmax = lam[-1]
    if not lmax > 0.0:
        return math.nan
    keep = lam > rcond * lmax
    lam = lam[keep]
    # unit eigenvectors of Sigma_B: u_i = Mt^T v_i / sqrt(q lam_i), as columns of U (p, r)
    U = (Mt.T @ V[:, keep]) / np.sqrt(q * lam)
    R = H - mu[lab]
    RU = R @ U  # (n, r)
    quad = np.einsum("ij,ij->j", RU, RU) / n  # u_i^T Sigma_W u_i
    return float(np.sum(quad / lam) / q)


# ----------------------------------------------------------------------------------------------
# NC2 - NC4
# ----------------------------------------------------------------------------------------------
def _equinorm(V: np.ndarray) -> float:
    """``std_k ||v_k|| / mean_k ||v_k||`` over the rows of ``V`` (population std)."""
    norms = np.linalg.norm(V, axis=1)
    mean = norms.mean()
    if mean == 0.0:
        return math.nan
    return float(norms.std() / mean)


def _equiangular(V: np.ndarray) -> float:
    """``mean_{k != l} |cos(v_k, v_l) + 1/(q-1)|`` over the rows of ``V``."""
    q = V.shape[0]
    norms = np.linalg.norm(V, axis=1)
    if np.any(norms == 0.0):
        return math.nan
    U = V / norms[:, None]
    C = U @ U.T
    off = ~np.eye(q, dtype=bool)
    return float(np.mean(np.abs(C[off] + 1.0 / (q - 1))))


def _check_W(W, p: int, q: int) -> np.ndarray:
    W = _as_matrix(W, "W")
    if W.shape != (p, q):
        raise ValueError(
            f"W must have shape (p, q) = ({p}, {q}) (classifier vectors w_k as columns), "
            f"got {W.shape}"
        )
    return W


def nc2(H, labels, W=None) -> dict:
    """NC2 (equinorm and equiangularity) of Papyan--Han--Donoho (metrics.md §1.3).

    With centred class means ``mt_k = mu_k - mu_G`` and classifier vectors ``w_k`` (column ``k``
    of ``W``; for the NC model pass ``W`` -- the factor ``Gamma`` does not change NC2):

    * equinorm: ``std_k ||mt_k|| / mean_k ||mt_k||`` (population std);
    * equiangularity: ``mean_{k != l} | cos(mt_k, mt_l) + 1/(q - 1) |``;

    and the same two quantities for the ``w_k`` if ``W`` is given.  Both vanish for a simplex
    ETF.  The NC model need not drive them to 0 unless ``W^T W ~ I_q`` (metrics.md §1.3);
    report them, do not test them against theory.

    Parameters
    ----------
    H : array_like, shape (n, p)
    labels : array_like of int, shape (n,)
        Classes ``0 .. q-1``, all non-empty, ``q >= 2``.
    W : array_like, shape (p, q), optional
        Last layer; column ``k`` is the classifier vector of class ``k``.

    Returns
    -------
    dict
        ``{"equinorm_means", "equiangular_means"}`` and, if ``W`` is given, also
        ``{"equinorm_W", "equiangular_W"}`` (floats; ``nan`` where a norm vanishes).

    Raises
    ------
    ValueError
        On bad ``H``/``labels``, ``q < 2`` or ``W`` of the wrong shape / non-finite.
    """
    H, lab, q, counts = _features_and_labels(H, labels, min_classes=2)
    _, Mt = _centred_means(H, lab, q, counts)
    out = {"equinorm_means": _equinorm(Mt), "equiangular_means": _equiangular(Mt)}
    if W is not None:
        W = _check_W(W, H.shape[1], q)
        out["equinorm_W"] = _equinorm(W.T)
        out["equiangular_W"] = _equiangular(W.T)
    return out


def nc3(H, labels, W) -> float:
    """NC3 self-duality (metrics.md §1.3).

    .. math::

        \\mathrm{NC3} = \\left\\| \\frac{\\tilde W}{\\|\\tilde W\\|_F}
        - \\frac{\\tilde M}{\\|\\tilde M\\|_F} \\right\\|_F^2,

    ``W~ = [w_1 ... w_q] = W`` (uncentred classifier columns, shape ``(p, q)``),
    ``M~ = [mu_1 - mu_G, ..., mu_q - mu_G]`` (centred class means as columns).  Range ``[0, 4]``.
    Without a bias it need not vanish at collapse; with orthonormal ``W`` and ETF means it
    equals ``2 - 2 sqrt((q-1)/q)`` (metrics.md §1.3).

    Parameters
    ----------
    H : array_like, shape (n, p)
    labels : array_like of int, shape (n,)
        Classes ``0 .. q-1``, all non-empty, ``q >= 2``.
    W : array_like, shape (p, q)

    Returns
    -------
    float
        ``nan`` if ``W = 0`` or all centred means vanish.

    Raises
    ------
    ValueError
        On bad inputs (shapes, NaN, empty classes, ``q < 2``).
    """
    H, lab, q, counts = _features_and_labels(H, labels, min_classes=2)
    W = _check_W(W, H.shape[1], q)
    _, Mt = _centred_means(H, lab, q, counts)
    Mt = Mt.T  # (p, q)
    nw = np.linalg.norm(W)
    nm = np.linalg.norm(Mt)
    if nw == 0.0 or nm == 0.0:
        return math.nan
    D = W / nw - Mt / nm
    return float(np.sum(D * D))


def nc4(H, labels, outputs) -> float:
    """NC4: disagreement between the network and the nearest-class-mean rule (metrics.md §1.3).

    .. math::

        \\mathrm{NC4} = \\frac1n \\#\\{ i : \\arg\\max_k f(x_i)_k \\ne
        \\arg\\min_k \\|h_i - \\mu_k\\| \\}

    Class means ``mu_k`` (uncentred) are computed from ``H`` and ``labels``.  Ties are broken
    towards the smallest class index (``numpy.argmax`` / ``argmin``).

    Parameters
    ----------
    H : array_like, shape (n, p)
        Features as rows.
    labels : array_like of int, shape (n,)
        Classes ``0 .. q-1`` used to form the class means.
    outputs : array_like, shape (n, q)
        Network outputs ``f(x_i)`` (rows), e.g. ``model.forward(theta, X, W)``.

    Returns
    -------
    float
        Fraction in ``[0, 1]``.

    Raises
    ------
    ValueError
        On bad inputs or if ``outputs`` is not ``(n, q)``.
    """
    H, lab, q, counts = _features_and_labels(H, labels)
    F = _as_matrix(outputs, "outputs")
    if F.shape != (H.shape[0], q):
        raise ValueError(f"outputs must have shape (n, q) = ({H.shape[0]}, {q}), got {F.shape}")
    mu = _class_means(H, lab, q, counts)
    # ||h - mu_k||^2 up to the k-independent ||h||^2; centre first to limit cancellation
    c = H.mean(axis=0)
    Hc = H - c
    muc = mu - c
    d2 = np.einsum("kj,kj->k", muc, muc)[None, :] - 2.0 * (Hc @ muc.T)
    ncc = np.argmin(d2, axis=1)
    net = np.argmax(F, axis=1)
    return float(np.mean(ncc != net))


# ----------------------------------------------------------------------------------------------
# balancedness, Lemma 4.5, singular values
# ----------------------------------------------------------------------------------------------
def _second_moment(A, W):
    A = _as_matrix(A, "A")
    W = _as_matrix(W, "W")
    if A.shape[1] != W.shape[0]:
        raise ValueError(
            f"A must be (N, p) and W (p, q) with the same p; got A {A.shape}, W {W.shape}"
        )
    E = (A.T @ A) / A.shape[0]
    E = 0.5 * (E + E.T)
    WW = W @ W.T
    WW = 0.5 * (WW + WW.T)
    return E, WW


def _opnorm_sym(M: np.ndarray) -> float:
    """Operator (spectral) norm of a symmetric matrix = max |eigenvalue|."""
    ev = np.linalg.eigvalsh(M)
    return float(np.max(np.abs(ev)))


def balancedness(A, W) -> float:
    """Normalised balancedness NB of Wu--Mondelli eqs. (25)--(26) (metrics.md §1.4).

    .. math::

        \\mathrm{NB} = \\frac{\\|E[aa^T] - c^* WW^T\\|_{op}}{\\|E[aa^T]\\|_{op}}, \\qquad
        c^* = \\frac{\\langle E[aa^T], WW^T\\rangle_F}{\\|WW^T\\|_F^2},

    with ``E[aa^T] ~ A^T A / N``.  ``NB = 0`` iff ``A^T A / N`` is a multiple of ``W W^T``
    (balanced).  At a stationary point with ``W`` trained, ``p > q``, ``beta < inf``:
    ``NB >= 1/(1 + beta lam_W s_max(W)^2)`` (validation.md §V7).

    Parameters
    ----------
    A : array_like, shape (N, p)
        Outgoing weights ``a_j`` of the particles as rows.
    W : array_like, shape (p, q)
        Last layer.

    Returns
    -------
    float
        ``NB >= 0`` (``c* >= 0`` since both matrices are PSD; NB is ``<= 1`` when ``W W^T`` has
        rank one but can exceed 1 in general).

    Raises
    ------
    ValueError
        On shape mismatch, NaN, ``A = 0`` or ``W = 0``.
    """
    E, WW = _second_moment(A, W)
    nWW2 = float(np.sum(WW * WW))
    if nWW2 == 0.0:
        raise ValueError("W is zero: balancedness is undefined")
    nE = _opnorm_sym(E)
    if nE == 0.0:
        raise ValueError("A is zero: balancedness is undefined")
    c = float(np.sum(E * WW)) / nWW2
    return _opnorm_sym(E - c * WW) / nE


def balancedness_moments(EaaT, WWT) -> float:
    """Normalised balancedness NB from second moments (metrics.md §1.4, eqs. (25)--(26)).

    Same quantity as :func:`balancedness`, with ``E[aa^T]`` and ``W W^T`` given as matrices, so
    that time averages can be used (validation.md §V7: NB of time-averaged ``A^T A / N``):

    .. math::

        \\mathrm{NB} = \\frac{\\|E - c^* M\\|_{op}}{\\|E\\|_{op}}, \\qquad
        c^* = \\frac{\\langle E, M\\rangle_F}{\\|M\\|_F^2},\\qquad E = E[aa^T],\\ M = WW^T.

    Parameters
    ----------
    EaaT : array_like, shape (p, p)
        Second moment of the outgoing weights (e.g. ``A^T A / N`` or its time average).
    WWT : array_like, shape (p, p)
        ``W W^T`` (or its time average).

    Returns
    -------
    float
        ``NB >= 0``; ``balancedness(A, W) == balancedness_moments(A.T @ A / N, W @ W.T)``.

    Raises
    ------
    ValueError
        On shape mismatch, NaN, or a zero matrix.
    """
    E = _as_matrix(EaaT, "EaaT")
    WW = _as_matrix(WWT, "WWT")
    if E.shape[0] != E.shape[1] or WW.shape != E.shape:
        raise ValueError(f"EaaT and WWT must be square (p, p) of the same shape, got {E.shape} "
                         f"and {WW.shape}")
    E = 0.5 * (E + E.T)
    WW = 0.5 * (WW + WW.T)
    nWW2 = float(np.sum(WW * WW))
    if nWW2 == 0.0:
        raise ValueError("WWT is zero: balancedness is undefined")
    nE = _opnorm_sym(E)
    if nE == 0.0:
        raise ValueError("EaaT is zero: balancedness is undefined")
    c = float(np.sum(E * WW)) / nWW2
    return _opnorm_sym(E - c * WW) / nE


def balanced_error(outputs, labels) -> float:
    """Class-balanced classification error (metrics.md §3; Wu--Mondelli Section 5).

    .. math::  \\mathrm{err} = \\frac1q \\sum_k \\frac{\\#\\{i : c(i) = k,\\
               \\arg\\max_l f(x_i)_l \\ne k\\}}{n_k}

    A tie for the largest output counts as an error (metrics.md §3), so a constant output is
    wrong everywhere.

    Parameters
    ----------
    outputs : array_like, shape (n, q)
        Network outputs ``f(x_i)`` as rows.
    labels : array_like of int, shape (n,)
        True classes ``0 .. q-1`` (every class non-empty).

    Returns
    -------
    float
        In ``[0, 1]``; chance level of a label-independent rule is ``1 - 1/q``.

    Raises
    ------
    ValueError
        On bad shapes, NaN outputs, empty classes or ``outputs`` with fewer than ``q`` columns.
    """
    F = _as_matrix(outputs, "outputs")
    lab, q, counts = _as_labels(labels, F.shape[0])
    if F.shape[1] < q:
        raise ValueError(f"outputs must have at least q = {q} columns, got shape {F.shape}")
    top = F.max(axis=1)
    n_top = np.sum(F == top[:, None], axis=1)
    correct = (F[np.arange(F.shape[0]), lab] == top) & (n_top == 1)
    wrong = np.bincount(lab, weights=(~correct).astype(np.float64), minlength=q)
    return float(np.mean(wrong / counts))


def lemma45_residual(A, W, lam, lam_W, beta, relative: bool = False) -> float:
    """Residual of the stationarity identity of Lemma 4.5 of Wu--Mondelli (validation.md §V6).

    At a stationary point (``grad(dF/drho) = 0`` and ``grad_W F = 0``)

    .. math::  \\lambda E_\\rho[aa^T] - \\lambda_W WW^T = \\beta^{-1} I_p ,

    so this returns

    .. math::  r = \\| \\lambda A^T A/N - \\lambda_W WW^T - \\beta^{-1} I_p \\|_{op}

    (operator norm = largest absolute eigenvalue of the symmetric matrix), or, with
    ``relative=True``, ``beta * r`` (the residual measured in units of ``1/beta``, the
    quantity ``beta ||M - beta^{-1} I||_op`` of validation.md §V6).  Pass time-averaged
    ``A^T A / N`` by averaging snapshots outside if needed.

    Parameters
    ----------
    A : array_like, shape (N, p)
        Particle output weights (rows).
    W : array_like, shape (p, q)
    lam, lam_W : float
        Weight decays on the particles and on ``W`` (finite).
    beta : float
        Inverse temperature, ``0 < beta <= inf`` (``inf``: the identity term is absent).
    relative : bool, optional
        Return ``beta * r`` instead of ``r`` (requires finite ``beta``).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        On shape mismatch, NaN, non-finite ``lam``/``lam_W``, ``beta <= 0`` or NaN, or
        ``relative=True`` with ``beta = inf``.
    """
    for name, v in (("lam", lam), ("lam_W", lam_W)):
        if not np.isfinite(v):
            raise ValueError(f"{name} must be finite, got {v}")
    if np.isnan(beta) or beta <= 0:
        raise ValueError(f"beta must be > 0 (inf allowed), got {beta}")
    if relative and np.isinf(beta):
        raise ValueError("relative=True needs a finite beta (the reference 1/beta is 0)")
    E, WW = _second_moment(A, W)
    M = float(lam) * E - float(lam_W) * WW
    M[np.diag_indices_from(M)] -= 1.0 / float(beta)
    r = _opnorm_sym(M)
    return r * float(beta) if relative else r


def singular_values(W) -> tuple[float, float]:
    """Smallest and largest singular value of ``W`` (metrics.md §2).

    Parameters
    ----------
    W : array_like, shape (p, q)

    Returns
    -------
    (s_min, s_max) : tuple of float
        ``s_min`` is the smallest of the ``min(p, q)`` singular values.

    Raises
    ------
    ValueError
        If ``W`` is not a non-empty finite 2-D array.
    """
    W = _as_matrix(W, "W")
    s = np.linalg.svd(W, compute_uv=False)
    return float(s.min()), float(s.max())


# ----------------------------------------------------------------------------------------------
# synthetic oracle (validation.md §K4)
# ----------------------------------------------------------------------------------------------
def nc_oracle(q: int, p: int, m: int, s_w: float, s_b: float, rng=None):
    """Synthetic neural-collapse oracle features (metrics.md §1.2, validation.md §K4).

    ``h = mu_c + s_w z``, ``z ~ N(0, I_p)``, with class means forming a simplex ETF centred at
    the origin with ``||mu_k - mu_G|| = s_b`` (``mu_G = 0``), embedded in ``R^p`` by a random
    orthonormal map.  Population values: :func:`nc1_population`, :func:`nc1_papyan_population`.

    Parameters
    ----------
    q : int
        Number of classes, ``q >= 2``.
    p : int
        Feature dimension, ``p >= q - 1``.
    m : int
        Samples per class (``n = q m``), ``m >= 1``.
    s_w, s_b : float
        Within-class noise level and class-mean radius (``>= 0``).
    rng : numpy.random.Generator or int or None
        Random source (an int is used as a seed).

    Returns
    -------
    H : ndarray, shape (q m, p)
        Features as rows, sorted by class.
    labels : ndarray of int, shape (q m,)
        ``labels = repeat(arange(q), m)``.
    means : ndarray, shape (q, p)
        The population class means (rows).

    Raises
    ------
    ValueError
        On ``q < 2``, ``p < q - 1``, ``m < 1`` or negative/non-finite scales.
    """
    q, p, m = int(q), int(p), int(m)
    if q < 2:
        raise ValueError(f"q must be >= 2, got {q}")
    if p < q - 1:
        raise ValueError(f"a simplex ETF of q = {q} vectors needs p >= q - 1, got p = {p}")
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    for name, v in (("s_w", s_w), ("s_b", s_b)):
        if not (np.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {v}")
    rng = np.random.default_rng(rng)
    # orthonormal basis of 1^perp in R^q: columns of B (q, q-1)
    Qm, _ = np.linalg.qr(np.eye(q) - 1.0 / q)
    B = Qm[:, : q - 1]
    # ETF vertices in R^{q-1}: rows of sqrt(q/(q-1)) (I - 11^T/q) B, unit norm
    E = np.sqrt(q / (q - 1.0)) * ((np.eye(q) - 1.0 / q) @ B)
    # random isometric embedding R^{q-1} -> R^p
    O, _ = np.linalg.qr(rng.standard_normal((p, q - 1)))
    means = s_b * (E @ O.T)  # (q, p)
    labels = np.repeat(np.arange(q), m)
    H = means[labels] + s_w * rng.standard_normal((q * m, p))
    return H, labels, means


def nc1_population(p: int, s_w: float, s_b: float) -> float:
    """Population Wu--Mondelli NC1 of the oracle (metrics.md §1.2): ``p s_w^2/(p s_w^2 + s_b^2)``.

    Parameters
    ----------
    p : int
        Feature dimension (``>= 1``).
    s_w, s_b : float
        Oracle scales (see :func:`nc_oracle`).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If ``p < 1``, a scale is negative/non-finite, or both scales are 0.
    """
    if int(p) < 1:
        raise ValueError(f"p must be >= 1, got {p}")
    for name, v in (("s_w", s_w), ("s_b", s_b)):
        if not (np.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {v}")
    num = p * s_w**2
    den = num + s_b**2
    if den == 0:
        raise ValueError("s_w = s_b = 0: NC1 undefined")
    return float(num / den)


def nc1_papyan_population(q: int, s_w: float, s_b: float) -> float:
    """Population Papyan NC1 of the oracle (metrics.md §1.2): ``s_w^2 (q-1)^2 / (q s_b^2)``.

    Parameters
    ----------
    q : int
        Number of classes (``>= 2``).
    s_w, s_b : float
        Oracle scales; ``s_b > 0``.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If ``q < 2``, ``s_b <= 0`` or a scale is negative/non-finite.
    """
    if int(q) < 2:
        raise ValueError(f"q must be >= 2, got {q}")
    if not (np.isfinite(s_w) and s_w >= 0):
        raise ValueError(f"s_w must be finite and >= 0, got {s_w}")
    if not (np.isfinite(s_b) and s_b > 0):
        raise ValueError(f"s_b must be finite and > 0, got {s_b}")
    return float(s_w**2 * (q - 1) ** 2 / (q * s_b**2))
