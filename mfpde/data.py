"""Data sets and online samplers (theory: models.md §5 "Data models").

Conventions (docs/architecture.md): row layout, inputs ``X`` of shape ``(n, d)``, targets ``Y``
of shape ``(n, q)``, both C-contiguous float64.  Every random draw comes from a
``numpy.random.Generator``; functions take either ``seed`` (turned into
``np.random.default_rng(np.random.SeedSequence(seed))``) or an explicit ``rng`` (which then
takes precedence over ``seed``).

Contents
--------
- :class:`Dataset`: a finite data set ``(X, Y, labels, name, meta)`` with class utilities.
- :class:`OnlineSampler`: fresh samples from a population distribution (online SGD).
- Generators: :func:`teacher_student` (D2), :func:`gaussian_mixture`, :func:`mmn_gaussians` (D3),
  :func:`separable` (D4), :func:`well_separated` (D1), :func:`linear_gaussian` (D5),
  :func:`digits_mod3` (D6 / validation.md §V14), :func:`load_npz`.
- Samplers: :func:`teacher_student_sampler`, :func:`gaussian_mixture_sampler`,
  :func:`mmn_gaussians_sampler`, :func:`separable_sampler`, :func:`linear_gaussian_sampler`.
  Every finite generator draws its samples through the corresponding sampler's ``draw``
  functions, so each distribution is written once.
- Registry: :data:`DATA_KINDS`, :func:`make_dataset`, :func:`data_param_spec`.
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy.special import erf as _erf
from scipy.special import expit as _expit

__all__ = [
    "Dataset",
    "OnlineSampler",
    "one_hot",
    "teacher_student",
    "teacher_student_sampler",
    "gaussian_mixture",
    "gaussian_mixture_sampler",
    "mmn_gaussians",
    "mmn_gaussians_sampler",
    "separable",
    "separable_sampler",
    "well_separated",
    "linear_gaussian",
    "linear_gaussian_sampler",
    "linear_gaussian_population",
    "digits_mod3",
    "load_npz",
    "DATA_KINDS",
    "REQUIRED",
    "make_dataset",
    "data_param_spec",
]

#: Range of the appended "distinct coordinate" (models.md §5 D1, Assumption 2 of Wu–Mondelli).
EXTRA_LOW = 0.05
EXTRA_HIGH = 0.1

_NPZ_FORMAT = 1


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _suggest(value: str, choices) -> str:
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_int(name: str, value, lo: int | None = None, hi: int | None = None,
               why: str = "") -> int:
    """Return ``value`` as int; ValueError naming ``name`` if not an integer in ``[lo, hi]``."""
    rng_txt = (
        f"an integer in [{lo}, {hi}]" if lo is not None and hi is not None
        else f"an integer >= {lo}" if lo is not None
        else f"an integer <= {hi}" if hi is not None
        else "an integer"
    ) + why
    ok = False
    if isinstance(value, (bool, np.bool_)):
        ok = False
    elif isinstance(value, numbers.Integral):
        ok = True
    elif isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        ok = True
    if not ok:
        raise ValueError(f"{name} must be {rng_txt}, got {value!r}")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} must be {rng_txt}, got {v}")
    return v


def _check_float(
    name: str,
    value,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """Return ``value`` as float; ValueError naming ``name`` if not finite and in range."""
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    if lo is None and hi is None:
        rng_txt = "a finite number"
    else:
        a = "-inf" if lo is None else repr(lo)
        b = "inf" if hi is None else repr(hi)
        rng_txt = f"a finite number in {'(' if lo is None else left}{a}, {b}{')' if hi is None else right}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be {rng_txt}, got {value!r}")
    v = float(value)
    bad = not math.isfinite(v)
    if lo is not None:
        bad = bad or (v <= lo if lo_open else v < lo)
    if hi is not None:
        bad = bad or (v >= hi if hi_open else v > hi)
    if bad:
        raise ValueError(f"{name} must be {rng_txt}, got {value!r}")
    return v


def _check_choice(name: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}"
            + (_suggest(value, choices) if isinstance(value, str) else "")
        )
    return value


def _check_rng(rng, name: str = "rng") -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"{name} must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def _resolve_rng(seed, rng) -> np.random.Generator:
    """``rng`` if given, else ``default_rng(SeedSequence(seed))``."""
    if rng is not None:
        return _check_rng(rng)
    if isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    seed = _check_int("seed", seed, 0)
    return np.random.default_rng(np.random.SeedSequence(seed))


def _as_matrix(name: str, a, ndim: int = 2) -> np.ndarray:
    try:
        arr = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real {ndim}-D array, got {type(a).__name__}") from exc
    return arr


# --------------------------------------------------------------------------------------------
# activations (private numpy versions; the Numba ones live in mfpde/activations.py)
# --------------------------------------------------------------------------------------------

# MMN piecewise linear constants (models.md §4) [recalled — verify]
_MMN_T1, _MMN_T2, _MMN_S1, _MMN_S2 = 0.5, 1.5, -2.5, 7.5


def _mmn_pl(z):
    slope = (_MMN_S2 - _MMN_S1) / (_MMN_T2 - _MMN_T1)
    return _MMN_S1 + slope * np.clip(z - _MMN_T1, 0.0, _MMN_T2 - _MMN_T1)


_NP_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "sigmoid": _expit,
    "erf": _erf,
    "softplus": lambda z: np.logaddexp(0.0, z),
    "relu": lambda z: np.maximum(z, 0.0),
    "identity": lambda z: np.asarray(z, dtype=np.float64) * 1.0,
    "mmn_pl": _mmn_pl,
}


def _np_activation(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """Vectorised numpy activation ``sigma`` by name (models.md §4)."""
    _check_choice("activation", name, tuple(_NP_ACTIVATIONS))
    return _NP_ACTIVATIONS[name]


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


def one_hot(labels, q: int) -> np.ndarray:
    """One-hot targets ``Y[i, labels[i]] = 1`` (models.md §5 D1).

    Parameters
    ----------
    labels : array_like of int, shape (n,)
        Class labels in ``[0, q)``.
    q : int
        Number of classes, ``q >= 1``.

    Returns
    -------
    Y : ndarray, shape (n, q), float64, C-contiguous
        For labels sorted by class with ``m`` per class, ``Y = kron(eye(q), ones((m, 1)))``
        (the row-layout transpose of ``I_q ⊗ 1_mᵀ``).
    """
    q = _check_int("q", q, 1)
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise ValueError(f"labels must be a 1-D integer array, got shape {lab.shape}")
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        if not (np.issubdtype(lab.dtype, np.floating) and np.all(np.isfinite(lab))
                and np.all(lab == np.round(lab))):
            raise ValueError(f"labels must be integers, got dtype {lab.dtype}")
    lab = lab.astype(np.int64)
    if lab.size and (lab.min() < 0 or lab.max() >= q):
        raise ValueError(
            f"labels must lie in [0, q-1] = [0, {q - 1}], got values in [{lab.min()}, {lab.max()}]"
        )
    Y = np.zeros((lab.size, q), dtype=np.float64)
    Y[np.arange(lab.size), lab] = 1.0
    return Y


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"meta value of type {type(obj).__name__} cannot be stored in an npz file")


@dataclass(eq=False, repr=False)
class Dataset:
    """A finite data set in row layout (models.md §5).

    Parameters
    ----------
    X : array_like, shape (n, d)
        Inputs, one row per sample.
    Y : array_like, shape (n, q) or (n,)
        Targets; a 1-D ``Y`` is read as ``q = 1``.
    labels : array_like of int, shape (n,), or None
        Class labels (non-negative integers) for classification data, else None.
    name : str
        Short description, e.g. ``"separable"``.
    meta : dict
        Generation parameters (teacher weights, margins, covariances, ...).

    Notes
    -----
    ``X`` and ``Y`` are stored as C-contiguous float64 arrays, ``labels`` as int64. On
    construction the shapes must agree, ``n >= 1``, and all values must be finite; otherwise a
    ``ValueError`` names the offending field.
    """

    X: np.ndarray
    Y: np.ndarray
    labels: np.ndarray | None = None
    name: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        X = _as_matrix("X", self.X)
        Y = _as_matrix("Y", self.Y)
        if X.ndim != 2:
            raise ValueError(f"X must have shape (n, d), got shape {X.shape}")
        if Y.ndim == 1:
            Y = np.ascontiguousarray(Y.reshape(-1, 1))
        if Y.ndim != 2:
            raise ValueError(f"Y must have shape (n, q), got shape {Y.shape}")
        if X.shape[0] < 1:
            raise ValueError(f"X must have n >= 1 rows, got shape {X.shape}")
        if X.shape[1] < 1 or Y.shape[1] < 1:
            raise ValueError(f"X and Y need at least one column, got X {X.shape}, Y {Y.shape}")
        if Y.shape[0] != X.shape[0]:
            raise ValueError(
                f"X and Y must have the same number of rows n, got X {X.shape} and Y {Y.shape}"
            )
        if not np.all(np.isfinite(X)):
            raise ValueError("X must contain only finite values (found NaN or inf)")
        if not np.all(np.isfinite(Y)):
            raise ValueError("Y must contain only finite values (found NaN or inf)")
        if self.labels is not None:
            lab = np.asarray(self.labels)
            if lab.shape != (X.shape[0],):
                raise ValueError(
                    f"labels must have shape (n,) = ({X.shape[0]},), got shape {lab.shape}"
                )
            if not np.issubdtype(lab.dtype, np.integer):
                if not (np.issubdtype(lab.dtype, np.floating) and np.all(np.isfinite(lab))
                        and np.all(lab == np.round(lab))):
                    raise ValueError(f"labels must be integers, got dtype {lab.dtype}")
            lab = np.ascontiguousarray(lab.astype(np.int64))
            if lab.min() < 0:
                raise ValueError(f"labels must be >= 0, got minimum {lab.min()}")
            self.labels = lab
        if not isinstance(self.name, str):
            raise ValueError(f"name must be a str, got {type(self.name).__name__}")
        if not isinstance(self.meta, dict):
            raise ValueError(f"meta must be a dict, got {type(self.meta).__name__}")
        self.X, self.Y = X, Y

    # -- basic properties ---------------------------------------------------------------------

    @property
    def n(self) -> int:
        """Number of samples."""
        return self.X.shape[0]

    @property
    def d(self) -> int:
        """Input dimension."""
        return self.X.shape[1]

    @property
    def q(self) -> int:
        """Output dimension (number of classes for one-hot targets)."""
        return self.Y.shape[1]

    def _need_labels(self, what: str):
        if self.labels is None:
            raise ValueError(f"{what} needs class labels, but dataset {self.name!r} has labels=None")

    @property
    def class_counts(self) -> np.ndarray:
        """Samples per class, ``(K,)`` int64 with ``K = max(q, max(labels) + 1)``."""
        self._need_labels("class_counts")
        return np.bincount(self.labels, minlength=max(self.q, int(self.labels.max()) + 1))

    @property
    def is_sorted_by_class(self) -> bool:
        """True if labels are non-decreasing (models.md §5 D1 ordering)."""
        self._need_labels("is_sorted_by_class")
        return bool(np.all(np.diff(self.labels) >= 0))

    def __repr__(self) -> str:
        lab = "None" if self.labels is None else f"counts={self.class_counts.tolist()}"
        return f"Dataset(name={self.name!r}, n={self.n}, d={self.d}, q={self.q}, labels={lab})"

    one_hot = staticmethod(one_hot)

    # -- derived data sets --------------------------------------------------------------------

    def _derive(self, X, Y, labels, meta=None) -> "Dataset":
        return Dataset(X, Y, labels, self.name, dict(self.meta) if meta is None else meta)

    def subset(self, idx) -> "Dataset":
        """New Dataset with the rows ``idx`` (integer indices or a boolean mask of length n)."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (self.n,):
                raise ValueError(f"idx as a boolean mask must have shape ({self.n},), got {idx.shape}")
            idx = np.flatnonzero(idx)
        elif idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise ValueError(f"idx must be a 1-D integer array or boolean mask, got {idx.dtype} {idx.shape}")
        if idx.size == 0:
            raise ValueError("idx must select at least one sample, got an empty selection")
        if idx.min() < -self.n or idx.max() >= self.n:
            raise ValueError(f"idx must lie in [-{self.n}, {self.n - 1}], got [{idx.min()}, {idx.max()}]")
        lab = None if self.labels is None else self.labels[idx]
        return self._derive(self.X[idx], self.Y[idx], lab)

    def sorted_by_class(self) -> "Dataset":
        """New Dataset sorted by label (stable), as models.md §5 D1 requires for the NC model."""
        self._need_labels("sorted_by_class")
        return self.subset(np.argsort(self.labels, kind="stable"))

    def split(self, train, seed=0, rng=None, return_indices=False):
        """Random train/test split, stratified by class when labels exist.

        Parameters
        ----------
        train : int or float
            int: training samples per class (labelled data) or in total (``labels=None``);
            float in (0, 1): fraction of each class (or of all samples) used for training
            (rounded per class).
        seed : int
            Seed of the split (ignored if ``rng`` is given).
        rng : numpy.random.Generator, optional
        return_indices : bool
            Also return the row indices (into this data set) of both parts.

        Returns
        -------
        train, test : Dataset
            Both sorted by class (stable) when labels exist; otherwise in original order.
            ``meta["part"]`` is ``"train"`` / ``"test"``.
        idx_train, idx_test : ndarray of int
            Only with ``return_indices=True``: ``train = self.subset(idx_train)``, etc.
        """
        rng = _resolve_rng(seed, rng)
        is_frac = isinstance(train, (float, np.floating))
        if is_frac:
            frac = _check_float("train", train, 0.0, 1.0, lo_open=True, hi_open=True)
        if self.labels is None:
            n_tr = (int(round(frac * self.n)) if is_frac
                    else _check_int("train", train, 1, self.n - 1))
            if not 1 <= n_tr <= self.n - 1:
                raise ValueError(f"train fraction {train!r} leaves an empty part for n = {self.n}")
            perm = rng.permutation(self.n)
            tr, te = np.sort(perm[:n_tr]), np.sort(perm[n_tr:])
        else:
            counts = self.class_counts
            present = counts[counts > 0]
            if not is_frac:
                _check_int("train", train, 1, int(present.min()))
            tr_parts, te_parts = [], []
            for k in np.flatnonzero(counts):
                idx_k = np.flatnonzero(self.labels == k)
                n_k = int(round(frac * idx_k.size)) if is_frac else int(train)
                perm = rng.permutation(idx_k)
                tr_parts.append(np.sort(perm[:n_k]))
                te_parts.append(np.sort(perm[n_k:]))
            tr, te = np.concatenate(tr_parts), np.concatenate(te_parts)
            if tr.size == 0 or te.size == 0:
                raise ValueError(
                    f"train={train!r} leaves an empty {'training' if tr.size == 0 else 'test'} "
                    f"set (class counts {counts.tolist()})"
                )
        out = []
        for part, idx in (("train", tr), ("test", te)):
            ds = self.subset(idx)
            ds.meta["part"] = part
            out.append(ds)
        if return_indices:
            return out[0], out[1], tr, te
        return out[0], out[1]

    def with_extra_coordinate(self, low=EXTRA_LOW, high=EXTRA_HIGH, seed=0, rng=None) -> "Dataset":
        """Append one input coordinate with i.i.d. distinct values uniform in ``[low, high]``.

        This is the construction of models.md §5 D1 that meets the second part of Assumption 2 of
        Wu–Mondelli (a coordinate with pairwise distinct, non-zero values). The new coordinate is
        the last one (``meta["extra_coordinate"] = d`` of the input data); ``d`` grows by one and
        norms grow by at most ``high`` in quadrature.

        Parameters
        ----------
        low, high : float
            ``0 < low < high``.
        seed : int
            Ignored if ``rng`` is given.
        rng : numpy.random.Generator, optional
        """
        low = _check_float("low", low, 0.0, None, lo_open=True)
        high = _check_float("high", high, low, None, lo_open=True)
        rng = _resolve_rng(seed, rng)
        for _ in range(100):
            c = rng.uniform(low, high, size=self.n)
            if np.unique(c).size == self.n:
                break
        else:  # pragma: no cover - probability ~ n^2 2^-53 per attempt
            raise RuntimeError("could not draw distinct values for the extra coordinate")
        X = np.ascontiguousarray(np.column_stack([self.X, c]))
        meta = dict(self.meta)
        meta["extra_coordinate"] = self.d
        meta["extra_range"] = [low, high]
        return self._derive(X, self.Y, self.labels, meta)

    def normalized(self, max_norm=1.0) -> "Dataset":
        """Divide all inputs by the largest norm so that ``max_i ||x_i|| = max_norm`` (A2).

        Assumption (A2) of Wu–Mondelli (models.md §2) requires ``||x_i|| <= 1``. The factor is
        recorded cumulatively in ``meta["input_scale"]``; other meta entries (e.g. margins) are
        not rescaled.

        Parameters
        ----------
        max_norm : float
            ``> 0``.
        """
        max_norm = _check_float("max_norm", max_norm, 0.0, None, lo_open=True)
        largest = float(np.max(np.linalg.norm(self.X, axis=1)))
        if largest == 0.0:
            raise ValueError("cannot normalise: all inputs are zero (largest norm 0)")
        s = max_norm / largest
        meta = dict(self.meta)
        meta["input_scale"] = float(meta.get("input_scale", 1.0)) * s
        return self._derive(self.X * s, self.Y, self.labels, meta)

    # -- persistence --------------------------------------------------------------------------

    def save_npz(self, path) -> str:
        """Write the data set to ``path`` (exact file name; no extension is added).

        Layout: arrays ``X``, ``Y``, optional ``labels``, ``name`` (string), top-level meta
        arrays as ``meta.<key>``, all other meta entries as JSON text in ``meta_json`` (numpy
        scalars become Python numbers; nested arrays become lists). Loadable without pickle.
        """
        arrays: dict[str, np.ndarray] = {"X": self.X, "Y": self.Y}
        if self.labels is not None:
            arrays["labels"] = self.labels
        plain = {}
        for key, val in self.meta.items():
            if not isinstance(key, str):
                raise ValueError(f"meta keys must be strings to save, got {key!r}")
            if isinstance(val, np.ndarray):
                if val.dtype == object:
                    raise ValueError(f"meta[{key!r}] is an object array and cannot be saved")
                arrays["meta." + key] = val
            else:
                plain[key] = val
        try:
            meta_json = json.dumps(plain, default=_json_default)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc
        arrays["meta_json"] = np.array(meta_json)
        arrays["name"] = np.array(self.name)
        arrays["mfpde_format"] = np.array(_NPZ_FORMAT)
        path = os.fspath(path)
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return path

    @classmethod
    def load_npz(cls, path) -> "Dataset":
        """Read a file written by :meth:`save_npz` (see :func:`load_npz`)."""
        return load_npz(path)


def load_npz(path) -> Dataset:
    """Load a :class:`Dataset` from an ``.npz`` file.

    Accepts files written by :meth:`Dataset.save_npz` and plain ``.npz`` files with an array
    ``X`` of shape ``(n, d)`` and ``Y`` (``(n, q)`` or ``(n,)``) and/or integer ``labels``
    ``(n,)``; if ``Y`` is missing, ``Y = one_hot(labels)`` (models.md §5 D1). Never unpickles.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Dataset
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"path {path!r} does not exist or is not a file")
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)
        if "X" not in keys or not ({"Y", "labels"} & keys):
            raise ValueError(
                f"path {path!r} is not a data file: needs an array 'X' and 'Y' or 'labels', "
                f"found {sorted(keys)}"
            )
        X = z["X"]
        labels = z["labels"] if "labels" in keys else None
        if "Y" in keys:
            Y = z["Y"]
        else:
            lab = np.asarray(labels)
            Y = one_hot(lab, int(lab.max()) + 1 if lab.size else 1)
        name = str(z["name"]) if "name" in keys else os.path.splitext(os.path.basename(path))[0]
        meta = json.loads(str(z["meta_json"])) if "meta_json" in keys else {}
        for key in z.files:
            if key.startswith("meta."):
                meta[key[len("meta."):]] = z[key]
    return Dataset(X, Y, labels, name, meta)


# --------------------------------------------------------------------------------------------
# online sampler
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------


class _Required:
    def __repr__(self):
        return "<required>"


#: Marker used by :func:`data_param_spec` for parameters without a default.
REQUIRED = _Required()


def _digits_builder(n_train_per_class=400, part="train", seed=0):
    _check_choice("part", part, ("train", "test"))
    train, test = digits_mod3(n_train_per_class, seed=seed)
    return train if part == "train" else test


def _npz_builder(path):
    return load_npz(path)


# kind -> (finite builder, sampler builder or None)
_REGISTRY: dict[str, tuple[Callable, Callable | None]] = {
    "teacher_student": (teacher_student, teacher_student_sampler),
    "gaussian_mixture": (gaussian_mixture, gaussian_mixture_sampler),
    "mmn_gaussians": (mmn_gaussians, mmn_gaussians_sampler),
    "separable": (separable, separable_sampler),
    "well_separated": (well_separated, None),
    "linear_gaussian": (linear_gaussian, linear_gaussian_sampler),
    "digits_mod3": (_digits_builder, None),
    "npz": (_npz_builder, None),
}

#: Data kinds understood by :func:`make_dataset`.
DATA_KINDS: tuple[str, ...] = tuple(_REGISTRY)

_NOT_PARAMS = ("seed", "rng")


def _check_kind(kind) -> str:
    if not isinstance(kind, str) or kind not in _REGISTRY:
        raise ValueError(
            f"unknown data kind {kind!r}"
            + (_suggest(kind, DATA_KINDS) if isinstance(kind, str) else "")
            + f" (known kinds: {', '.join(DATA_KINDS)})"
        )
    return kind


def _signature_params(fn) -> dict[str, Any]:
    out = {}
    for p in inspect.signature(fn).parameters.values():
        if p.name in _NOT_PARAMS or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        out[p.name] = REQUIRED if p.default is p.empty else p.default
    return out


def data_param_spec(kind: str) -> dict[str, Any]:
    """Parameters of a data kind and their defaults (for config validation).

    Parameters
    ----------
    kind : str
        One of :data:`DATA_KINDS`.

    Returns
    -------
    dict
        ``{name: default}`` in signature order (``seed`` excluded; it is a separate argument
        of :func:`make_dataset`). Parameters without a default map to :data:`REQUIRED`. Kinds
        with a population sampler have ``online=False``; with ``online=True`` the sample-size
        parameters (``n``, ``m``) are ignored.
    """
    gen, sampler = _REGISTRY[_check_kind(kind)]
    spec = _signature_params(gen)
    if sampler is not None:
        spec["online"] = False
    return spec


def make_dataset(kind: str, seed=0, **params):
    """Build a data set (or an online sampler) by kind name, for the config system.

    Kinds (models.md §5): ``teacher_student`` (D2), ``gaussian_mixture``, ``mmn_gaussians``
    (D3), ``separable`` (D4), ``well_separated`` (D1), ``linear_gaussian`` (D5), ``digits_mod3``
    (D6; parameter ``part="train"|"test"`` selects the half of :func:`digits_mod3`), ``npz``
    (parameter ``path``, see :func:`load_npz`).

    Parameters
    ----------
    kind : str
        One of :data:`DATA_KINDS`.
    seed : int
        Seed of the generator (``>= 0``; unused by ``npz``).
    **params
        Parameters of the kind, see :func:`data_param_spec`. ``online=True`` (kinds with a
        sampler: teacher_student, gaussian_mixture, mmn_gaussians, separable, linear_gaussian)
        returns an :class:`OnlineSampler`; the population parameters are built with the same
        seed, so the sampler has the same teacher / means as the finite data set.

    Returns
    -------
    Dataset or OnlineSampler

    Raises
    ------
    ValueError
        Unknown kind (with a "did you mean" suggestion), unknown or missing parameter (named),
        invalid parameter value (named, with the allowed range).
    """
    gen, sampler = _REGISTRY[_check_kind(kind)]
    spec = data_param_spec(kind)
    for name in params:
        if name not in spec:
            hint = ""
            if name == "online":
                ok = [k for k, v in _REGISTRY.items() if v[1] is not None]
                hint = f" (online sampling is supported for: {', '.join(ok)})"
            raise ValueError(
                f"unknown parameter {name!r} for data kind {kind!r}"
                + _suggest(name, list(spec)) + hint
                + f" (allowed: {', '.join(spec) if spec else 'none'})"
            )
    missing = [k for k, v in spec.items() if v is REQUIRED and k not in params]
    if missing:
        raise ValueError(f"data kind {kind!r} needs parameter(s): {', '.join(missing)}")
    online = params.pop("online", False)
    if not isinstance(online, (bool, np.bool_)):
        raise ValueError(f"online must be True or False, got {online!r}")
    seed = _check_int("seed", seed, 0)
    if online:
        fn = sampler
        accepted = inspect.signature(fn).parameters
        kwargs = {k: v for k, v in params.items() if k in accepted}
    else:
        fn, kwargs = gen, dict(params)
    if "seed" in inspect.signature(fn).parameters:
        kwargs["seed"] = seed
    return fn(**kwargs)
