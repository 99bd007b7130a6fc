"""Population distributions: :class:`OnlineSampler` and the ``*_sampler`` functions of the data
models of theory/models.md §5 (fresh samples for online SGD, dynamics.md §4).

Every finite generator (:mod:`mfpde.data.generators`) draws its samples through the ``draw``
functions of these samplers, so each distribution is written once.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ._activations import _np_activation
from ._checks import _as_matrix, _check_choice, _check_float, _check_int, _check_rng, _resolve_rng
from .dataset import Dataset, one_hot

__all__ = ["OnlineSampler", "teacher_student_sampler", "gaussian_mixture_sampler",
           "mmn_gaussians_sampler", "separable_sampler", "linear_gaussian_sampler",
           "linear_gaussian_population"]


class OnlineSampler:
    """Fresh samples from a population distribution (online SGD, dynamics.md §4).

    Built by the ``*_sampler`` functions of this module; the finite generators draw their
    samples through the same functions, so a sampler and the finite data set built with the same
    seed describe the same distribution (same teacher, same means, ...).

    Parameters
    ----------
    name : str
        Kind of distribution (``"teacher_student"``, ...).
    d, q : int
        Input and output dimensions.
    draw : callable ``(n, rng) -> (X, Y, labels)``
        Draws ``n`` i.i.d. samples; ``labels`` is None for regression data.
    meta : dict
        Distribution parameters (copied into every data set drawn).
    draw_given_labels : callable ``(labels, rng) -> (X, Y)``, optional
        Class-conditional draw, for class-structured distributions.
    n_classes : int, optional
        Number of classes when ``draw_given_labels`` is given.

    Attributes
    ----------
    name, d, q, meta, n_classes
    """

    def __init__(self, name, d, q, draw, meta=None, draw_given_labels=None, n_classes=None):
        self.name = name
        self.d = int(d)
        self.q = int(q)
        self._draw = draw
        self._draw_given_labels = draw_given_labels
        self.n_classes = n_classes
        self.meta = dict(meta or {})

    def __repr__(self) -> str:
        return f"OnlineSampler(name={self.name!r}, d={self.d}, q={self.q})"

    def draw(self, n, rng):
        """``n`` i.i.d. samples: ``(X (n, d), Y (n, q), labels (n,) or None)``."""
        n = _check_int("n", n, 1)
        return self._draw(n, _check_rng(rng))

    def draw_given_labels(self, labels, rng):
        """Class-conditional samples for the given labels: ``(X (n, d), Y (n, q))``."""
        if self._draw_given_labels is None:
            raise ValueError(f"sampler {self.name!r} has no class structure (labels=None)")
        lab = np.asarray(labels, dtype=np.int64)
        if lab.ndim != 1 or lab.size == 0 or lab.min() < 0 or lab.max() >= self.n_classes:
            raise ValueError(
                f"labels must be a non-empty 1-D integer array in [0, {self.n_classes - 1}]"
            )
        return self._draw_given_labels(lab, _check_rng(rng))

    def sample(self, B, rng):
        """A fresh mini-batch ``(X (B, d), Y (B, q))`` drawn with ``rng``.

        Parameters
        ----------
        B : int
            Batch size, ``>= 1``.
        rng : numpy.random.Generator
            The run's generator (all randomness of a run comes from one generator).
        """
        B = _check_int("B", B, 1)
        X, Y, _ = self._draw(B, _check_rng(rng))
        return X, Y

    def test_set(self, n, seed=0, rng=None) -> Dataset:
        """A finite :class:`Dataset` of ``n`` fresh i.i.d. samples (e.g. a test set).

        Parameters
        ----------
        n : int
            ``>= 1``.
        seed : int
            Ignored if ``rng`` is given.
        rng : numpy.random.Generator, optional
        """
        n = _check_int("n", n, 1)
        rng = _resolve_rng(seed, rng)
        X, Y, labels = self._draw(n, rng)
        meta = dict(self.meta)
        meta["n"] = n
        return Dataset(X, Y, labels, self.name, meta)


def _labelled_sampler(name, d, q_out, n_classes, draw_given_labels, meta) -> OnlineSampler:
    """Sampler for a balanced class-conditional distribution (labels uniform on classes)."""

    def draw(n, rng):
        labels = rng.integers(n_classes, size=n)
        X, Y = draw_given_labels(labels, rng)
        return X, Y, labels

    return OnlineSampler(name, d, q_out, draw, meta, draw_given_labels, n_classes)


def _finite_balanced(sampler: OnlineSampler, m: int, rng) -> Dataset:
    """``m`` samples per class, sorted by class, through the sampler's class-conditional draw."""
    labels = np.repeat(np.arange(sampler.n_classes), m)
    X, Y = sampler.draw_given_labels(labels, rng)
    meta = dict(sampler.meta)
    meta["m"] = m
    return Dataset(X, Y, labels, sampler.name, meta)


# --------------------------------------------------------------------------------------------
# D2 teacher-student
# --------------------------------------------------------------------------------------------

_INPUTS = ("gaussian", "sphere")
_A_STAR = ("sign", "gaussian")


def teacher_student_sampler(d=10, k_star=3, activation="tanh", noise=0.0, q=1, input="gaussian",
                            a_star="sign", seed=0, rng=None) -> OnlineSampler:
    """Population sampler of the teacher–student model (models.md §5 D2).

    Model::

        x ~ N(0, I_d / d)            (input="gaussian")   or   x ~ Unif(S^{d-1}) (input="sphere")
        y = (1/k*) Σ_{j<=k*} a*_j σ(u*_jᵀ x) + noise · g,   g ~ N(0, I_q)

    Teacher [choice]: ``u*_j = √d · g_j / ||g_j||`` with ``g_j ~ N(0, I_d)``, i.e. exactly
    ``||u*_j|| = √d``, so that ``u*_jᵀx ~ N(0, 1)`` exactly for Gaussian inputs (and
    ``√d cos∠ ≈ N(0, 1)`` on the sphere). ``a*_j ∈ R^q`` has i.i.d. entries ±1 (``a_star="sign"``)
    or N(0, 1) (``a_star="gaussian"``). The teacher is drawn first from the generator (``u*``
    then ``a*``); it is realisable by the student ``a σ(uᵀx)`` with
    ``ρ = (1/k*) Σ_j δ_(a*_j, u*_j)``.

    Parameters
    ----------
    d : int
        Input dimension, ``>= 1``.
    k_star : int
        Number of teacher neurons, ``>= 1`` (models.md suggests 2–5).
    activation : str
        One of tanh, sigmoid, erf, softplus, relu, identity, mmn_pl (models.md §4).
    noise : float
        Standard deviation of the additive Gaussian label noise, ``>= 0``.
    q : int
        Output dimension, ``>= 1``.
    input : {"gaussian", "sphere"}
    a_star : {"sign", "gaussian"}
    seed : int
        Seed of the teacher (ignored if ``rng`` is given).
    rng : numpy.random.Generator, optional

    Returns
    -------
    OnlineSampler
        ``meta`` holds ``u_star (k*, d)``, ``a_star (k*, q)`` and the parameters.
    """
    d = _check_int("d", d, 1)
    k_star = _check_int("k_star", k_star, 1)
    sigma = _np_activation(activation)
    noise = _check_float("noise", noise, 0.0)
    q = _check_int("q", q, 1)
    _check_choice("input", input, _INPUTS)
    _check_choice("a_star", a_star, _A_STAR)
    rng = _resolve_rng(seed, rng)

    g = rng.standard_normal((k_star, d))
    u_star = np.sqrt(d) * g / np.linalg.norm(g, axis=1, keepdims=True)
    if a_star == "sign":
        a = rng.choice(np.array([-1.0, 1.0]), size=(k_star, q))
    else:
        a = rng.standard_normal((k_star, q))
    a = np.ascontiguousarray(a)
    sphere = input == "sphere"

    def draw(n, rng):
        X = rng.standard_normal((n, d))
        if sphere:
            X /= np.linalg.norm(X, axis=1, keepdims=True)
        else:
            X /= np.sqrt(d)
        Y = sigma(X @ u_star.T) @ a / k_star
        if noise > 0.0:
            Y += noise * rng.standard_normal((n, q))
        return X, np.ascontiguousarray(Y), None

    meta = {"kind": "teacher_student", "model": "models.md §5 D2", "d": d, "k_star": k_star,
            "activation": activation, "noise": noise, "q": q, "input": input,
            "a_star_dist": a_star, "u_star": u_star, "a_star": a}
    return OnlineSampler("teacher_student", d, q, draw, meta)


# --------------------------------------------------------------------------------------------
# simplex ETF, Gaussian mixture
# --------------------------------------------------------------------------------------------


def _simplex_etf(q: int, d: int) -> np.ndarray:
    """``(q, d)`` unit vectors with ``<v_k, v_l> = -1/(q-1)`` (models.md §5 D4).

    ``d >= q``: the centred, normalised standard basis of ``R^q`` in the first ``q``
    coordinates. ``d = q - 1``: the same vectors in an orthonormal basis of ``1^⊥``.
    """
    E = np.eye(q) - 1.0 / q
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    if d >= q:
        V = np.zeros((q, d))
        V[:, :q] = E
        return V
    if d == q - 1:
        Q, _ = np.linalg.qr((np.eye(q) - 1.0 / q)[:, : q - 1])
        V = E @ Q
        return np.ascontiguousarray(V / np.linalg.norm(V, axis=1, keepdims=True))
    raise ValueError(f"d must be >= q - 1 = {q - 1} for a simplex ETF, got {d}")


def gaussian_mixture_sampler(q=3, d=10, sep=1.0, std=0.3) -> OnlineSampler:
    """Population sampler of the balanced Gaussian mixture (classification, one-hot targets).

    Model [choice]: label ``k`` uniform on ``{0, …, q-1}``, ``x = sep · v_k + std · g`` with
    ``g ~ N(0, I_d)`` and ``v_1, …, v_q`` the simplex ETF of models.md §5 D4 (unit norm,
    ``<v_k, v_l> = -1/(q-1)``), so ``||μ_k|| = sep`` and the mean distance is
    ``sep · sqrt(2q/(q-1))``. ``y = e_k`` (one-hot, models.md §5 D1).

    Parameters
    ----------
    q : int
        Number of classes, ``>= 2``.
    d : int
        Input dimension, ``>= max(1, q - 1)``.
    sep : float
        Norm of every class mean, ``>= 0``.
    std : float
        Per-coordinate standard deviation, ``>= 0``.

    Returns
    -------
    OnlineSampler
        ``meta["means"] (q, d)``.
    """
    q = _check_int("q", q, 2)
    d = _check_int("d", d, max(1, q - 1), why=" (a simplex ETF of q classes needs d >= q - 1)")
    sep = _check_float("sep", sep, 0.0)
    std = _check_float("std", std, 0.0)
    means = np.ascontiguousarray(sep * _simplex_etf(q, d))

    def draw_given_labels(labels, rng):
        X = means[labels] + std * rng.standard_normal((labels.size, d))
        return np.ascontiguousarray(X), one_hot(labels, q)

    meta = {"kind": "gaussian_mixture", "model": "balanced Gaussian mixture (models.md §5 D1)",
            "q": q, "d": d, "sep": sep, "std": std, "means": means}
    return _labelled_sampler("gaussian_mixture", d, q, q, draw_given_labels, meta)


# --------------------------------------------------------------------------------------------
# D3 Mei–Montanari–Nguyen isotropic Gaussians
# --------------------------------------------------------------------------------------------


def mmn_gaussians_sampler(d=40, delta=0.8) -> OnlineSampler:
    """Population sampler of the Mei–Montanari–Nguyen isotropic Gaussians (models.md §5 D3).

    Model: with probability 1/2 ``y = +1`` and ``x ~ N(0, (1+Δ)² I_d)``, otherwise ``y = -1``
    and ``x ~ N(0, (1-Δ)² I_d)``. ``labels = 1`` for ``y = +1`` and ``0`` for ``y = -1``.

    Parameters
    ----------
    d : int
        Input dimension, ``>= 1``.
    delta : float
        ``Δ ∈ [0, 1)``.

    Returns
    -------
    OnlineSampler
        ``q = 1``.
    """
    d = _check_int("d", d, 1)
    delta = _check_float("delta", delta, 0.0, 1.0, hi_open=True)
    scale = np.array([1.0 - delta, 1.0 + delta])
    yval = np.array([-1.0, 1.0])

    def draw_given_labels(labels, rng):
        X = scale[labels][:, None] * rng.standard_normal((labels.size, d))
        return np.ascontiguousarray(X), np.ascontiguousarray(yval[labels][:, None])

    meta = {"kind": "mmn_gaussians", "model": "models.md §5 D3", "d": d, "delta": delta}
    return _labelled_sampler("mmn_gaussians", d, 1, 2, draw_given_labels, meta)


# --------------------------------------------------------------------------------------------
# D4 separable, D1 well separated
# --------------------------------------------------------------------------------------------


def _uniform_ball(n: int, d: int, radius: float, rng) -> np.ndarray:
    g = rng.standard_normal((n, d))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    r = radius * rng.random(n) ** (1.0 / d)
    return g * r[:, None]


def _separable_draw_fn(etf: np.ndarray, r0: float, delta_b: float):
    q, d = etf.shape

    def draw_given_labels(labels, rng):
        X = r0 * etf[labels] + _uniform_ball(labels.size, d, delta_b, rng)
        return np.ascontiguousarray(X), one_hot(labels, q)

    return draw_given_labels


def _check_separable(q, d, r0, delta_b):
    q = _check_int("q", q, 2)
    d = _check_int("d", d, max(1, q - 1), why=" (a simplex ETF of q classes needs d >= q - 1)")
    r0 = _check_float("r0", r0, 0.0, 1.0, lo_open=True)
    a, b = r0 / (q - 1), 1.0 - r0
    interval = f"(0, {a:.6g})" if a <= b else f"(0, {b:.6g}]"
    if not (isinstance(delta_b, numbers.Real) and not isinstance(delta_b, (bool, np.bool_))
            and 0.0 < float(delta_b) < a and float(delta_b) <= b):
        raise ValueError(
            f"delta_b must satisfy 0 < delta_b < r0/(q-1) = {a:.6g} (positive margin) and "
            f"r0 + delta_b <= 1 (||x|| <= 1), i.e. delta_b in {interval}, got {delta_b!r}"
        )
    return q, d, r0, float(delta_b)


def separable_sampler(q=3, d=10, r0=0.6, delta_b=0.27) -> OnlineSampler:
    """Population sampler of the bounded (τ, M)-separable distribution (models.md §5 D4).

    Model [derived here, models.md §5 D4]: label ``k`` uniform, ``x = r0 v_k + ζ`` with
    ``v_1..v_q`` the simplex ETF (``d >= q``: centred normalised standard basis embedded in
    ``R^d``; ``d = q - 1``: the same in a basis of ``1^⊥``) and ``ζ`` uniform in the ball of
    radius ``δ_b``. Requires ``0 < δ_b < r0/(q-1)`` and ``r0 + δ_b <= 1``, so ``||x|| <= 1``.
    With ``û_k = M v_k`` the margin is ``τ = M (r0/(q-1) − δ_b)``: ``û_kᵀx >= τ`` on class
    ``k`` and ``< −τ`` on the others.

    Parameters
    ----------
    q : int
        ``>= 2``.
    d : int
        ``>= max(1, q - 1)``.
    r0 : float
        ``(0, 1)``.
    delta_b : float
        ``(0, min(r0/(q-1), 1 - r0)]`` with strict ``< r0/(q-1)``.

    Returns
    -------
    OnlineSampler
        ``meta["etf"] (q, d)``, ``meta["tau"] = r0/(q-1) − δ_b`` (the margin for ``M = 1``, i.e.
        ``τ/M``), ``meta["M"] = 1.0``.
    """
    q, d, r0, delta_b = _check_separable(q, d, r0, delta_b)
    etf = _simplex_etf(q, d)
    meta = {"kind": "separable", "model": "models.md §5 D4", "q": q, "d": d, "r0": r0,
            "delta_b": delta_b, "tau": r0 / (q - 1) - delta_b, "M": 1.0, "etf": etf}
    return _labelled_sampler("separable", d, q, q, _separable_draw_fn(etf, r0, delta_b), meta)


# --------------------------------------------------------------------------------------------
# D5 linear Gaussian
# --------------------------------------------------------------------------------------------


def linear_gaussian_population(d=10, Sigma=None, b=None) -> tuple[np.ndarray, np.ndarray]:
    """Validated population moments ``(Σ, b)`` of the linear Gaussian case (models.md §5 D5).

    Parameters
    ----------
    d : int
        ``>= 1``.
    Sigma : None, float, array (d,) or array (d, d)
        Input covariance; None → ``I_d``; a positive number ``s`` → ``s I_d``; a positive vector
        → ``diag``; a matrix must be symmetric positive definite.
    b : None or array (d,)
        ``b = E[y x]``; None → ``1_d / √d`` [choice] (unit norm).

    Returns
    -------
    Sigma : ndarray (d, d)
    b : ndarray (d,)
    """
    d = _check_int("d", d, 1)
    if Sigma is None:
        S = np.eye(d)
    else:
        S = _as_matrix("Sigma", Sigma)
        if S.ndim == 0:
            _check_float("Sigma", float(S), 0.0, None, lo_open=True)
            S = float(S) * np.eye(d)
        elif S.ndim == 1:
            if S.shape != (d,) or not np.all(np.isfinite(S)) or np.any(S <= 0):
                raise ValueError(
                    f"Sigma as a vector must be ({d},) positive diagonal entries, got shape "
                    f"{S.shape} with min {S.min() if S.size else None}"
                )
            S = np.diag(S)
        elif S.shape != (d, d):
            raise ValueError(f"Sigma must have shape ({d}, {d}), got {S.shape}")
        if not np.all(np.isfinite(S)):
            raise ValueError("Sigma must contain only finite values")
        if not np.allclose(S, S.T, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(S).max())):
            raise ValueError("Sigma must be symmetric, got an asymmetric matrix")
        S = 0.5 * (S + S.T)
        try:
            np.linalg.cholesky(S)
        except np.linalg.LinAlgError:
            raise ValueError(
                f"Sigma must be positive definite, got smallest eigenvalue "
                f"{np.linalg.eigvalsh(S).min():.3g}"
            ) from None
    if b is None:
        bb = np.ones(d) / math.sqrt(d)
    else:
        bb = _as_matrix("b", b)
        if bb.shape != (d,) or not np.all(np.isfinite(bb)):
            raise ValueError(f"b must be a finite vector of shape ({d},), got shape {bb.shape}")
    return np.ascontiguousarray(S), np.ascontiguousarray(bb)


def linear_gaussian_sampler(d=10, Sigma=None, b=None, noise=0.0) -> OnlineSampler:
    """Population sampler of the linear Gaussian case (models.md §5 D5).

    Model: ``x ~ N(0, Σ)``, ``y = wᵀx + noise · g`` with ``w = Σ⁻¹ b`` and ``g ~ N(0, 1)``, so
    that ``E[y x] = b`` and ``E[y²] = bᵀΣ⁻¹b + noise²``. Inputs are drawn as ``x = L g`` with
    ``Σ = L Lᵀ`` (Cholesky).

    Parameters
    ----------
    d, Sigma, b
        As in :func:`linear_gaussian_population`.
    noise : float
        Standard deviation of the label noise, ``>= 0``.

    Returns
    -------
    OnlineSampler
        ``q = 1``; ``meta``: ``Sigma``, ``b``, ``w``, ``noise``, ``second_moment_y``.
    """
    S, bb = linear_gaussian_population(d, Sigma, b)
    noise = _check_float("noise", noise, 0.0)
    L = np.linalg.cholesky(S)
    w = np.linalg.solve(S, bb)
    d = S.shape[0]

    def draw(n, rng):
        X = np.ascontiguousarray(rng.standard_normal((n, d)) @ L.T)
        Y = (X @ w)[:, None]
        if noise > 0.0:
            Y += noise * rng.standard_normal((n, 1))
        return X, np.ascontiguousarray(Y), None

    meta = {"kind": "linear_gaussian", "model": "models.md §5 D5", "d": d, "Sigma": S, "b": bb,
            "w": w, "noise": noise, "second_moment_y": float(bb @ w) + noise**2}
    return OnlineSampler("linear_gaussian", d, 1, draw, meta)
