"""Data sets in ``.npz`` files: :func:`save_npz` (also :meth:`Dataset.save_npz`) and
:func:`load_npz` (never unpickles)."""

from __future__ import annotations

import json
import os

import numpy as np

from .dataset import Dataset, one_hot

__all__ = ["save_npz", "load_npz"]

_NPZ_FORMAT = 1


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"meta value of type {type(obj).__name__} cannot be stored in an npz file")


def save_npz(dataset: Dataset, path) -> str:
    """Write ``dataset`` to ``path`` (exact file name; no extension is added).

    Layout: arrays ``X``, ``Y``, optional ``labels``, ``name`` (string), top-level meta
    arrays as ``meta.<key>``, all other meta entries as JSON text in ``meta_json`` (numpy
    scalars become Python numbers; nested arrays become lists), the format number
    ``mfpde_format``. Loadable without pickle (:func:`load_npz`).
    """
    arrays: dict[str, np.ndarray] = {"X": dataset.X, "Y": dataset.Y}
    if dataset.labels is not None:
        arrays["labels"] = dataset.labels
    plain = {}
    for key, val in dataset.meta.items():
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
    arrays["name"] = np.array(dataset.name)
    arrays["mfpde_format"] = np.array(_NPZ_FORMAT)
    path = os.fspath(path)
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


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
