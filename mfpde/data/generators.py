"""Finite data sets of the data models of theory/models.md §5: teacher-student (D2), Gaussian
mixture, MMN isotropic Gaussians (D3), separable (D4), well separated (D1), linear Gaussian (D5),
digits mod 3 (D6). Each draws through the sampler of its distribution
(:mod:`mfpde.data.samplers`), so ``f(..., seed=s)`` and ``f_sampler(..., seed=s)`` describe the
same distribution.
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import _check_float, _check_int, _resolve_rng
from .dataset import EXTRA_HIGH, EXTRA_LOW, Dataset, one_hot
from .samplers import (_finite_balanced, _separable_draw_fn, _simplex_etf,
                       gaussian_mixture_sampler, linear_gaussian_sampler, mmn_gaussians_sampler,
                       separable_sampler, teacher_student_sampler)

__all__ = ["teacher_student", "gaussian_mixture", "mmn_gaussians", "separable", "well_separated",
           "linear_gaussian", "digits_mod3"]


# --------------------------------------------------------------------------------------------
# D2 teacher-student
# --------------------------------------------------------------------------------------------

def teacher_student(n=1000, d=10, k_star=3, activation="tanh", noise=0.0, q=1, input="gaussian",
                    a_star="sign", seed=0, rng=None) -> Dataset:
    """Finite teacher–student regression data (models.md §5 D2).

    ``n`` i.i.d. samples of the distribution of :func:`teacher_student_sampler` (see there for
    the model and the exact teacher scaling); the teacher is drawn first from the same generator,
    so ``teacher_student(..., seed=s)`` and ``teacher_student_sampler(..., seed=s)`` share the
    teacher.

    Parameters
    ----------
    n : int
        Number of samples, ``>= 1``.
    d, k_star, activation, noise, q, input, a_star, seed, rng
        As in :func:`teacher_student_sampler`.

    Returns
    -------
    Dataset
        ``X (n, d)``, ``Y (n, q)``, ``labels=None``; ``meta["u_star"] (k*, d)``,
        ``meta["a_star"] (k*, q)``.
    """
    n = _check_int("n", n, 1)
    rng = _resolve_rng(seed, rng)
    s = teacher_student_sampler(d, k_star, activation, noise, q, input, a_star, rng=rng)
    X, Y, _ = s.draw(n, rng)
    meta = dict(s.meta)
    meta["n"] = n
    return Dataset(X, Y, None, s.name, meta)


# --------------------------------------------------------------------------------------------
# simplex ETF, Gaussian mixture
# --------------------------------------------------------------------------------------------


def gaussian_mixture(q=3, m=100, d=10, sep=1.0, std=0.3, seed=0, rng=None) -> Dataset:
    """Balanced ``q``-class Gaussian mixture, sorted by class, one-hot ``Y`` (models.md §5 D1).

    ``m`` samples of each class of the distribution of :func:`gaussian_mixture_sampler`
    (``x = sep · v_k + std · g``, ``v_k`` simplex ETF).

    Parameters
    ----------
    q : int
        Number of classes, ``>= 2``.
    m : int
        Samples per class, ``>= 1`` (``n = q m``).
    d : int
        Input dimension, ``>= max(1, q - 1)``.
    sep, std : float
        Mean norm and per-coordinate standard deviation, both ``>= 0``.
    seed : int
        Ignored if ``rng`` is given.
    rng : numpy.random.Generator, optional

    Returns
    -------
    Dataset
        ``X (qm, d)``, ``Y = kron(eye(q), ones((m, 1)))``, ``labels = repeat(arange(q), m)``.
        Inputs are not normalised (use :meth:`Dataset.normalized`).
    """
    m = _check_int("m", m, 1)
    s = gaussian_mixture_sampler(q, d, sep, std)
    return _finite_balanced(s, m, _resolve_rng(seed, rng))


# --------------------------------------------------------------------------------------------
# D3 Mei–Montanari–Nguyen isotropic Gaussians
# --------------------------------------------------------------------------------------------


def mmn_gaussians(n=1000, d=40, delta=0.8, seed=0, rng=None) -> Dataset:
    """Finite sample of the Mei–Montanari–Nguyen isotropic Gaussians (models.md §5 D3).

    ``n`` i.i.d. samples of :func:`mmn_gaussians_sampler`: ``y = ±1`` with probability 1/2,
    ``x ~ N(0, (1 ± Δ)² I_d)``. Samples are in draw order (not sorted; use
    :meth:`Dataset.sorted_by_class`).

    Parameters
    ----------
    n : int
        ``>= 1``.
    d : int
        ``>= 1``.
    delta : float
        ``Δ ∈ [0, 1)``.
    seed : int
        Ignored if ``rng`` is given.
    rng : numpy.random.Generator, optional

    Returns
    -------
    Dataset
        ``X (n, d)``, ``Y (n, 1)`` in ``{-1, +1}``, ``labels (n,)`` in ``{0, 1}`` (1 ⇔ y = +1).
    """
    n = _check_int("n", n, 1)
    s = mmn_gaussians_sampler(d, delta)
    return s.test_set(n, rng=_resolve_rng(seed, rng))


# --------------------------------------------------------------------------------------------
# D4 separable, D1 well separated
# --------------------------------------------------------------------------------------------


def separable(q=3, m=20, d=10, r0=0.6, delta_b=0.27, seed=0, rng=None) -> Dataset:
    """Finite bounded (τ, M)-separable classification data (models.md §5 D4).

    ``m`` samples per class of :func:`separable_sampler`, sorted by class, one-hot ``Y``.
    Defaults are the small V9 setting (validation.md §V9: ``q = 3``, ``d = 10``, ``r0 = 0.6``,
    ``δ_b = 0.27``).

    Parameters
    ----------
    q : int
        ``>= 2``.
    m : int
        Samples per class, ``>= 1``.
    d : int
        ``>= max(1, q - 1)``.
    r0, delta_b : float
        See :func:`separable_sampler`.
    seed : int
        Ignored if ``rng`` is given.
    rng : numpy.random.Generator, optional

    Returns
    -------
    Dataset
        ``||x_i|| <= 1``; ``meta["tau"]`` is the margin for ``M = 1`` (τ/M), ``meta["etf"]``
        the vectors ``v_k`` (so ``û_k = M · etf[k]``).
    """
    m = _check_int("m", m, 1)
    s = separable_sampler(q, d, r0, delta_b)
    return _finite_balanced(s, m, _resolve_rng(seed, rng))


def well_separated(q=3, m=4, d=5, delta_b=0.1, seed=0, rng=None) -> Dataset:
    """Small, well-separated classification data meeting all NC assumptions (models.md §5 D1).

    Construction [choice]: in ``R^{d-1}``, class ``k`` is ``x = v_k + ζ`` (simplex ETF ``v_k``,
    ``ζ`` uniform in the ball of radius ``δ_b``, i.e. the D4 construction with ``r0 = 1``);
    inputs are divided by the largest norm times ``1/sqrt(1 − 0.1²)``, then one coordinate
    with distinct values uniform in ``[0.05, 0.1]`` is appended (Assumption 2), so
    ``||x_i|| <= 1`` (A2) and the total dimension is ``d``. Sorted by class, one-hot ``Y``.

    Parameters
    ----------
    q : int
        Number of classes, ``>= 2``.
    m : int
        Samples per class, ``>= 1``.
    d : int
        Input dimension including the extra coordinate, ``>= max(2, q)``.
    delta_b : float
        Within-class spread before scaling, ``0 < δ_b < 1/(q-1)``.
    seed : int
        Ignored if ``rng`` is given.
    rng : numpy.random.Generator, optional

    Returns
    -------
    Dataset
        ``meta["tau"]``: margin with ``û_k = (etf[k], 0)`` after scaling (``M = 1``);
        ``meta["extra_coordinate"] = d - 1``.
    """
    q = _check_int("q", q, 2)
    m = _check_int("m", m, 1)
    d = _check_int("d", d, max(2, q),
                   why=" (d counts the extra coordinate; the ETF needs d - 1 >= q - 1)")
    delta_b = _check_float("delta_b", delta_b, 0.0, 1.0 / (q - 1), lo_open=True, hi_open=True)
    rng = _resolve_rng(seed, rng)
    etf = _simplex_etf(q, d - 1)
    labels = np.repeat(np.arange(q), m)
    X, Y = _separable_draw_fn(etf, 1.0, delta_b)(labels, rng)
    meta = {"kind": "well_separated", "model": "models.md §5 D1 (D4 construction, r0 = 1)",
            "q": q, "m": m, "d": d, "delta_b": delta_b}
    base = Dataset(X, Y, labels, "well_separated", meta)
    base = base.normalized(math.sqrt(1.0 - EXTRA_HIGH**2))
    ds = base.with_extra_coordinate(EXTRA_LOW, EXTRA_HIGH, rng=rng)
    ds.meta["tau"] = (1.0 / (q - 1) - delta_b) * ds.meta["input_scale"]
    ds.meta["M"] = 1.0
    ds.meta["etf"] = np.ascontiguousarray(np.column_stack([etf, np.zeros(q)]))
    return ds


# --------------------------------------------------------------------------------------------
# D5 linear Gaussian
# --------------------------------------------------------------------------------------------


def linear_gaussian(n=1000, d=10, Sigma=None, b=None, noise=0.0, seed=0, rng=None) -> Dataset:
    """Finite sample of the linear Gaussian case (models.md §5 D5).

    ``n`` i.i.d. samples of :func:`linear_gaussian_sampler`: ``x ~ N(0, Σ)``,
    ``y = bᵀΣ⁻¹x + noise · g`` so that ``E[y x] = b``.

    Parameters
    ----------
    n : int
        ``>= 1``.
    d, Sigma, b, noise
        As in :func:`linear_gaussian_sampler`.
    seed : int
        Ignored if ``rng`` is given.
    rng : numpy.random.Generator, optional

    Returns
    -------
    Dataset
        ``X (n, d)``, ``Y (n, 1)``, ``labels=None``; ``meta["Sigma"]``, ``meta["b"]``.
    """
    n = _check_int("n", n, 1)
    s = linear_gaussian_sampler(d, Sigma, b, noise)
    return s.test_set(n, rng=_resolve_rng(seed, rng))


# --------------------------------------------------------------------------------------------
# D6 digits mod 3 (validation.md §V14 offline analogue)
# --------------------------------------------------------------------------------------------


def digits_mod3(n_train_per_class=400, seed=0, rng=None) -> tuple[Dataset, Dataset]:
    """scikit-learn 8×8 digits with labels mod 3 (models.md §5 D6, validation.md §V14).

    Steps: ``load_digits()`` (1797 images, 64 features in 0–16); labels ``mod 3`` (class sizes
    722 / 542 / 533); ``x / 16``; divide all inputs by the largest norm; append one coordinate
    with distinct values uniform in ``[0.05, 0.1]`` (Assumption 2), ``d = 65``; split per class
    into ``n_train_per_class`` training samples and the rest for testing.

    Deviation [choice]: the 64 pixel coordinates are scaled to largest norm ``sqrt(1 − 0.1²)``
    (instead of 1) so that ``||x|| <= 1`` still holds after the extra coordinate is appended.

    Parameters
    ----------
    n_train_per_class : int
        In ``[1, 532]`` (the smallest class has 533 images; at least one per class is kept for
        testing).
    seed : int
        Seed of the extra coordinate and of the split (ignored if ``rng`` is given).
    rng : numpy.random.Generator, optional

    Returns
    -------
    train, test : Dataset
        Both sorted by class, one-hot ``Y`` with ``q = 3``; ``meta["source_index"]`` gives the
        row of each sample in ``load_digits()``.

    Raises
    ------
    ImportError
        If scikit-learn is not installed (``pip install mfpde[data]``).
    """
    n_train_per_class = _check_int("n_train_per_class", n_train_per_class, 1, 532)
    rng = _resolve_rng(seed, rng)
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(
            "digits_mod3 needs scikit-learn; install the 'data' extra: pip install mfpde[data]"
        ) from exc
    digits = load_digits()
    X = np.asarray(digits.data, dtype=np.float64) / 16.0
    labels = np.asarray(digits.target, dtype=np.int64) % 3
    meta = {"kind": "digits_mod3", "model": "models.md §5 D6, validation.md §V14",
            "source": "sklearn.datasets.load_digits", "label_map": "digit mod 3",
            "n_train_per_class": n_train_per_class}
    full = Dataset(X, one_hot(labels, 3), labels, "digits_mod3", meta)
    full = full.normalized(math.sqrt(1.0 - EXTRA_HIGH**2))
    full = full.with_extra_coordinate(EXTRA_LOW, EXTRA_HIGH, rng=rng)
    train, test, idx_train, idx_test = full.split(n_train_per_class, rng=rng, return_indices=True)
    train.meta["source_index"] = idx_train
    test.meta["source_index"] = idx_test
    return train, test
