"""The finite data set :class:`Dataset` in row layout (theory/models.md §5) and :func:`one_hot`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._checks import _as_matrix, _check_float, _check_int, _resolve_rng

__all__ = ["Dataset", "one_hot", "EXTRA_LOW", "EXTRA_HIGH"]

#: Range of the appended "distinct coordinate" (models.md §5 D1, Assumption 2 of Wu–Mondelli).
EXTRA_LOW = 0.05
EXTRA_HIGH = 0.1


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
        from .io import save_npz
        return save_npz(self, path)

    @classmethod
    def load_npz(cls, path) -> "Dataset":
        """Read a file written by :meth:`save_npz` (see :func:`mfpde.data.io.load_npz`)."""
        from .io import load_npz
        return load_npz(path)
