"""HDF5 run store: one file per run with series, snapshots and a checkpoint.

The layout is documented in ``docs/hdf5-schema.md`` (schema version :data:`SCHEMA_VERSION`)::

    /                      attrs: schema_version, mfpde_version, config, created, seed, status,
                                  message, updated
    /series/step           int64   (n_obs,)           step k of each observation
    /series/t              float64 (n_obs,)           mean-field time t = k dt
    /series/<quantity>     float64 (n_obs,)           one per observed scalar
    /snapshots/step        int64   (n_snap,)
    /snapshots/t           float64 (n_snap,)
    /snapshots/index       int64   (N_sub,)           which particles are kept
    /snapshots/theta       float64 (n_snap, N_sub, D)
    /snapshots/W           float64 (n_snap, p, q)     NC model only
    /snapshots/r           float64 (n_snap, N_sub, D) velocities, kinetic solver only
    /grid/axis0, edges0 [, axis1, edges1]            grid solvers: cell centres and edges
    /grid/t, /grid/step, /grid/density (n_snap, *grid shape)   density snapshots
    /checkpoint/           complete solver state (see :meth:`RunStore.write_checkpoint`)

Writing (:class:`RunStore`) keeps the file open for the whole run and calls ``flush()`` after
every batch of writes, so a process killed at any moment leaves a file that opens and holds every
event up to the last flush. The checkpoint is replaced atomically: the new state is written to
``/checkpoint_new`` and flushed, then ``/checkpoint`` is unlinked and ``/checkpoint_new`` moved to
``/checkpoint``; a reader takes ``/checkpoint`` if it is complete and ``/checkpoint_new``
otherwise. Reading (:func:`load`) returns a :class:`Run` with the series in memory and the
snapshots read lazily.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import shutil
import tomllib
from typing import Any, Iterator, Mapping, Sequence

import h5py
import numpy as np

__all__ = ["SCHEMA_VERSION", "STATUSES", "RunStore", "Run", "Snapshot", "load", "StoreError",
           "StoreFullError", "free_bytes", "ensure_space", "in_use", "is_locked_error"]

#: Version of the file layout; bumped on any incompatible change (see docs/hdf5-schema.md).
#: Version 2: the noise of particle runs comes from the stream named by ``dynamics.noise_stream``
#: of the stored config (``"blocks"``: one generator per particle chunk, the same for any number
#: of MPI ranks; the checkpoint holds their states in ``noise_streams``). Version 1 files have
#: no such field and always used the single stream of the run's generator; they load and resume
#: with it.
SCHEMA_VERSION = 2
#: schema version of files whose particle runs draw their noise from the single stream
SINGLE_STREAM_SCHEMA = 1
#: Allowed values of the root attribute ``status``.
STATUSES = ("running", "complete", "failed", "interrupted")

_SERIES_CHUNK = 1024          # rows per chunk of a series dataset (8 KiB of float64)
_SNAPSHOT_CHUNK_BYTES = 1 << 20


class StoreError(ValueError):
    """The file is not an mfpde run file, has an unsupported schema version, or is corrupt."""


class StoreFullError(OSError):
    """Not enough free space to write the next piece of a run file. Raised *before* anything
    is written, so the file and its last checkpoint stay intact (``--resume`` continues it)."""


#: bytes kept free on the file system: a run stops before a write would leave less than this
RESERVE_BYTES = 1 << 20


def free_bytes(path: str | os.PathLike) -> int:
    """Free bytes on the file system holding ``path`` (its directory if it does not exist)."""
    path = os.fspath(path)
    d = path if os.path.isdir(path) else (os.path.dirname(os.path.abspath(path)) or ".")
    return int(shutil.disk_usage(d).free)


def ensure_space(path: str | os.PathLike, nbytes: int, what: str) -> None:
    """Raise :class:`StoreFullError` unless ``nbytes`` plus :data:`RESERVE_BYTES` are free next
    to ``path``."""
    free = free_bytes(path)
    need = int(nbytes) + RESERVE_BYTES
    if free < need:
        raise StoreFullError(errno.ENOSPC,
                             f"no space left for {what}: {free / 2**20:.1f} MiB free, "
                             f"{need / 2**20:.1f} MiB needed")


def is_locked_error(exc: BaseException) -> bool:
    """Whether an error of ``h5py.File`` means another process holds the file's lock (HDF5
    raises ``BlockingIOError``, errno EAGAIN/EWOULDBLOCK)."""
    return isinstance(exc, BlockingIOError) or getattr(exc, "errno", None) in (
        errno.EAGAIN, errno.EWOULDBLOCK)


def in_use(path: str | os.PathLike) -> bool:
    """Whether another process has ``path`` open for writing (it holds the HDF5 file lock)."""
    try:
        with h5py.File(os.fspath(path), "r+"):
            return False
    except OSError as exc:
        return is_locked_error(exc)


def _version() -> str:
    try:
        from mfpde import __version__
        return str(__version__)
    except Exception:  # pragma: no cover - during partial installs
        return "0.1.0"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _open_read(path: str | os.PathLike) -> h5py.File:
    """Open read-only; if another process holds the HDF5 write lock, read without locking."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        if not is_locked_error(exc):
            raise
        # a run is writing this file right now: the data up to its last flush is consistent
        return h5py.File(path, "r", locking=False)


class _reading:
    """Context manager: an HDF5 read error (a failed Fletcher-32 checksum, an unreadable block)
    becomes a :class:`StoreError` naming the file and what was read."""

    def __init__(self, path, what: str):
        self.path, self.what = path, what

    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        if exc is not None and isinstance(exc, OSError) and not isinstance(exc, StoreFullError):
            raise StoreError(f"{self.path}: {self.what} is corrupt or unreadable "
                             f"({_h5_reason(exc)})") from None
        return False


def _h5_reason(exc: BaseException) -> str:
    """The innermost reason of an HDF5 error message (e.g. ``truncated file: ...``)."""
    text = str(exc)
    if "(" in text and text.endswith(")"):
        return text[text.index("(") + 1:-1]
    return text


# --------------------------------------------------------------------------------------------
# writer
# --------------------------------------------------------------------------------------------

class RunStore:
    """Writer of one run file. Use :meth:`create` for a new run, :meth:`open` to resume.

    Every public write method ends with ``flush()``: after it returns, the file on disk holds the
    new data and opens cleanly even if the process is killed immediately afterwards.
    """

    def __init__(self, f: h5py.File):
        self.f = f
        self.path = f.filename

    # ------------------------------------------------------------------ open / create
    @classmethod
    def create(cls, path: str | os.PathLike, *, config_text: str, seed: int,
               quantities: Sequence[str] = (), attrs: Mapping[str, Any] | None = None,
               overwrite: bool = False) -> "RunStore":
        """Create a new run file with status ``running``.

        Raises ``FileExistsError`` if the file exists and ``overwrite`` is false.
        """
        path = os.fspath(path)
        ensure_space(path, 1 << 18, f"a new run file {path}")
        f = h5py.File(path, "w" if overwrite else "w-")
        try:
            f.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
            f.attrs["mfpde_version"] = _version()
            f.attrs["config"] = config_text
            f.attrs["created"] = _now()
            f.attrs["updated"] = f.attrs["created"]
            f.attrs["seed"] = np.int64(seed)
            f.attrs["status"] = "running"
            f.attrs["message"] = ""
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
            g = f.create_group("series", track_order=True)
            cls._new_series(g, "step", np.int64)
            cls._new_series(g, "t", np.float64)
            for q in quantities:
                cls._new_series(g, q, np.float64)
            f.flush()
        except BaseException:
            f.close()
            raise
        return cls(f)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunStore":
        """Open an existing run file for appending (resume)."""
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file")
        f = h5py.File(path, "r+")
        try:
            _check_schema(f, path)
        except BaseException:
            f.close()
            raise
        return cls(f)

    @staticmethod
    def _new_series(g: h5py.Group, name: str, dtype) -> h5py.Dataset:
        return g.create_dataset(name, shape=(0,), maxshape=(None,), chunks=(_SERIES_CHUNK,),
                                dtype=dtype, fletcher32=True)

    # ------------------------------------------------------------------ generic
    def _space(self, nbytes: int, what: str) -> None:
        """Stop before a write of about ``nbytes`` that the file system cannot take
        (:class:`StoreFullError`; nothing is written, the last checkpoint stays intact)."""
        ensure_space(self.f.filename, nbytes, f"{what} of {self.path}")

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        if self.f.id.valid:
            self.f.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def status(self) -> str:
        return str(self.f.attrs["status"])

    def set_status(self, status: str, message: str = "") -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        self.f.attrs["status"] = status
        self.f.attrs["message"] = message
        self.f.attrs["updated"] = _now()
        self.flush()

    def set_attrs(self, **attrs: Any) -> None:
        for k, v in attrs.items():
            self.f.attrs[k] = v
        self.flush()

    @property
    def config_text(self) -> str:
        return str(self.f.attrs["config"])

    # ------------------------------------------------------------------ series
    @property
    def n_series(self) -> int:
        """Number of complete observation rows."""
        g = self.f["series"]
        return min(g[k].shape[0] for k in g)

    def append_series(self, step: int, t: float, values: Mapping[str, float]) -> None:
        """Append one observation row (``step``, ``t`` and one value per quantity).

        A quantity seen for the first time gets a new dataset back-filled with NaN; a known
        quantity missing from ``values`` is recorded as NaN.
        """
        g = self.f["series"]
        self._space(8 * _SERIES_CHUNK * (len(g) + len(values)) + (1 << 14), "a series row")
        n = self.n_series
        for name in values:
            if name not in g:
                d = self._new_series(g, name, np.float64)
                d.resize((n,))
                if n:
                    d[:] = np.nan
        # quantities first, `step` last: a row counts once every dataset has it
        names = [k for k in g if k not in ("step", "t")] + ["t", "step"]
        for name in names:
            d = g[name]
            d.resize((n + 1,))
            if name == "step":
                d[n] = int(step)
            elif name == "t":
                d[n] = float(t)
            else:
                d[n] = float(values.get(name, np.nan))
        self.flush()

    def series(self) -> dict[str, np.ndarray]:
        g = self.f["series"]
        n = self.n_series
        return {k: g[k][:n] for k in g}

    # ------------------------------------------------------------------ snapshots
    def init_snapshots(self, index: np.ndarray, D: int, W_shape: tuple[int, int] | None,
                       velocities: bool = False) -> None:
        """Create the ``/snapshots`` group for particles ``index`` (kept fixed for the run);
        ``velocities`` adds ``/snapshots/r`` (kinetic solver)."""
        if "snapshots" in self.f:
            return
        index = np.asarray(index, dtype=np.int64)
        g = self.f.create_group("snapshots", track_order=True)
        _fixed(g, "index", index)
        self._new_series(g, "step", np.int64)
        self._new_series(g, "t", np.float64)
        n_sub = int(index.size)
        rows = max(1, min(n_sub, _SNAPSHOT_CHUNK_BYTES // max(1, 8 * D)))
        for name in ("theta", "r") if velocities else ("theta",):
            g.create_dataset(name, shape=(0, n_sub, D), maxshape=(None, n_sub, D),
                             chunks=(1, rows, D), dtype=np.float64, fletcher32=True)
        if W_shape is not None:
            g.create_dataset("W", shape=(0, *W_shape), maxshape=(None, *W_shape),
                             chunks=(1, *W_shape), dtype=np.float64, fletcher32=True)
        self.flush()

    def init_fields(self, shapes: Mapping[str, tuple]) -> None:
        """Create ``/snapshots`` for drivers that show other fields than particles (e.g. the
        Pham–Nguyen weights ``w1`` (n1, d), ``w2`` (n1, n2), ``w3`` (n2,)): one dataset
        ``/snapshots/<name>`` of shape (n_snap, *shape) per field, grown by
        :meth:`append_fields`."""
        if "snapshots" in self.f:
            return
        g = self.f.create_group("snapshots", track_order=True)
        self._new_series(g, "step", np.int64)
        self._new_series(g, "t", np.float64)
        for name, shape in shapes.items():
            shape = tuple(int(x) for x in shape)
            g.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape),
                             chunks=(1, *shape) if shape else (_SERIES_CHUNK,),
                             dtype=np.float64, fletcher32=True)
        self.flush()

    def append_fields(self, step: int, t: float, fields: Mapping[str, np.ndarray]) -> None:
        """Append one snapshot of the fields created by :meth:`init_fields`."""
        g = self.f["snapshots"]
        self._space(sum(np.asarray(a).nbytes for a in fields.values()) + (1 << 14), "a snapshot")
        n = self.n_snapshots
        for name in g:
            if name in ("step", "t", "index"):
                continue
            g[name].resize((n + 1, *g[name].shape[1:]))
            g[name][n] = fields[name]
        for name, value in (("t", float(t)), ("step", int(step))):
            g[name].resize((n + 1,))
            g[name][n] = value
        self.flush()

    @property
    def snapshot_index(self) -> np.ndarray | None:
        return self.f["snapshots/index"][:] if "snapshots" in self.f else None

    @property
    def n_snapshots(self) -> int:
        if "snapshots" not in self.f:
            return 0
        return _n_rows(self.f["snapshots"])

    def append_snapshot(self, step: int, t: float, theta: np.ndarray,
                        W: np.ndarray | None = None, r: np.ndarray | None = None) -> None:
        """Append particles ``theta`` (N_sub, D) (already subsampled), ``W`` (p, q) and the
        velocities ``r`` (N_sub, D) when the group has them."""
        g = self.f["snapshots"]
        self._space(sum(np.asarray(a).nbytes for a in (theta, W, r) if a is not None)
                    + (1 << 14), "a snapshot")
        n = self.n_snapshots
        for name, arr in (("theta", theta), ("W", W), ("r", r)):
            if name in g:
                g[name].resize((n + 1, *g[name].shape[1:]))
                g[name][n] = arr
        for name, value in (("t", float(t)), ("step", int(step))):
            g[name].resize((n + 1,))
            g[name][n] = value
        self.flush()

    # ------------------------------------------------------------------ grid densities
    def init_grid(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Create ``/grid`` from a grid solver's ``snapshot_arrays()``: the axes and edges are
        stored once, ``/grid/density`` (n_snap, *grid shape) grows with :meth:`append_grid`."""
        g = self.f.create_group("grid", track_order=True)
        for k, v in arrays.items():
            if k != "density":
                _fixed(g, k, np.asarray(v, dtype=np.float64))
        self._new_series(g, "step", np.int64)
        self._new_series(g, "t", np.float64)
        shape = np.shape(arrays["density"])
        g.create_dataset("density", shape=(0, *shape), maxshape=(None, *shape),
                         chunks=(1, *shape), dtype=np.float64, fletcher32=True)
        self.flush()

    def append_grid(self, step: int, t: float, density: np.ndarray) -> None:
        """Append one density snapshot (cell averages on the grid of :meth:`init_grid`)."""
        g = self.f["grid"]
        self._space(np.asarray(density).nbytes + (1 << 14), "a density snapshot")
        n = g["density"].shape[0]
        for name, value in (("density", density), ("t", float(t)), ("step", int(step))):
            g[name].resize((n + 1, *g[name].shape[1:]))
            g[name][n] = value
        self.flush()

    # ------------------------------------------------------------------ truncation (resume)
    def truncate(self, step: int) -> None:
        """Drop series rows, snapshots and grid densities recorded after ``step`` (for resuming
        from it)."""
        for gname in ("series", "snapshots", "grid"):
            if gname not in self.f:
                continue
            g = self.f[gname]
            n = self.n_series if gname == "series" else _n_rows(g)
            steps = g["step"][:n]
            keep = int(np.searchsorted(steps, step, side="right"))
            for k in g:
                d = g[k]
                if d.maxshape[0] is not None:       # fixed datasets: index, grid axes
                    continue
                if d.shape[0] != keep:
                    d.resize((keep, *d.shape[1:]))
        self.flush()

    # ------------------------------------------------------------------ checkpoint
    def write_checkpoint(self, state: Mapping[str, Any], **attrs: Any) -> None:
        """Replace ``/checkpoint`` atomically by ``state`` (e.g. ``solver.state_dict()``).

        Arrays become datasets, ``None`` values are listed in the attribute ``none_keys``,
        scalars and strings (the RNG state as JSON text) become attributes; ``attrs`` (e.g.
        ``step=k, t=t``) are added as attributes. ``complete = 1`` is written last.
        """
        f = self.f
        self._space(_state_bytes(state) + (1 << 16), "a checkpoint")
        if "checkpoint_new" in f:
            del f["checkpoint_new"]
        g = f.create_group("checkpoint_new")
        none_keys, json_keys, list_keys = [], [], []
        for key, value in state.items():
            if value is None:
                none_keys.append(key)
            elif isinstance(value, (list, tuple)) and value and all(
                    isinstance(v, np.ndarray) for v in value):
                sub = g.create_group(key)
                for i, v in enumerate(value):
                    _fixed(sub, str(i), v)
                list_keys.append(key)
            elif isinstance(value, np.ndarray):
                _fixed(g, key, value)
            elif isinstance(value, (bool, np.bool_)):
                g.attrs[key] = bool(value)
            elif isinstance(value, (int, np.integer)):
                g.attrs[key] = np.int64(value)
            elif isinstance(value, (float, np.floating)):
                g.attrs[key] = np.float64(value)
            elif isinstance(value, str):
                g.attrs[key] = value
            elif isinstance(value, (bytes,)):
                g.attrs[key] = value.decode()
            elif isinstance(value, Mapping):
                g.attrs[key] = json.dumps(value)
                json_keys.append(key)
            else:
                _fixed(g, key, np.asarray(value))
        g.attrs["none_keys"] = json.dumps(none_keys)
        g.attrs["json_keys"] = json.dumps(json_keys)
        if list_keys:
            g.attrs["list_keys"] = json.dumps(list_keys)
        g.attrs["state_keys"] = json.dumps(list(state))
        for k, v in attrs.items():
            g.attrs[f"meta:{k}"] = v
        g.attrs["sha256"] = _digest(state)
        g.attrs["written"] = _now()
        g.attrs["complete"] = np.int64(1)
        f.flush()
        if "checkpoint" in f:
            del f["checkpoint"]
        f.move("checkpoint_new", "checkpoint")
        f.flush()

    def read_checkpoint(self) -> dict[str, Any] | None:
        return read_checkpoint(self.f)


def _check_schema(f: h5py.File, path: str) -> None:
    if "schema_version" not in f.attrs:
        raise StoreError(f"{path}: not an mfpde run file (no schema_version attribute)")
    v = int(f.attrs["schema_version"])
    if v > SCHEMA_VERSION:
        raise StoreError(f"{path}: schema version {v} is newer than this mfpde supports "
                         f"({SCHEMA_VERSION}); upgrade mfpde")


def _fixed(g: h5py.Group, name: str, data: np.ndarray) -> h5py.Dataset:
    """A dataset written once, with the Fletcher-32 checksum when it can be chunked."""
    data = np.asarray(data)
    if data.ndim >= 1 and data.size > 0 and data.dtype.kind in "biuf":
        return g.create_dataset(name, data=data, chunks=data.shape, fletcher32=True)
    return g.create_dataset(name, data=data)


def _normal(value: Any) -> Any:
    """A state value as :func:`read_checkpoint` returns it."""
    if value is None or isinstance(value, (str, np.ndarray)):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, Mapping):
        return json.loads(json.dumps(value))
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, np.ndarray) for v in value):
        return list(value)
    return np.asarray(value)


def _state_bytes(state: Mapping[str, Any]) -> int:
    """Bytes of the arrays of a state (what a checkpoint writes, apart from metadata)."""
    n = 0
    for v in state.values():
        if isinstance(v, np.ndarray):
            n += v.nbytes
        elif isinstance(v, (list, tuple)):
            n += sum(x.nbytes for x in v if isinstance(x, np.ndarray))
        elif isinstance(v, str):
            n += len(v)
    return n


def _digest(state: Mapping[str, Any]) -> str:
    """SHA-256 of a checkpoint state (keys, types, dtypes, shapes and bytes, in order)."""
    h = hashlib.sha256()
    for key, value in state.items():
        h.update(b"\x00k" + str(key).encode())
        v = _normal(value)
        parts = v if isinstance(v, list) else [v]
        for x in parts:
            if x is None:
                h.update(b"N")
            elif isinstance(x, np.ndarray):
                x = np.ascontiguousarray(x)
                h.update(b"A" + x.dtype.str.encode() + repr(x.shape).encode() + x.tobytes())
            elif isinstance(x, bool):
                h.update(b"B1" if x else b"B0")
            elif isinstance(x, int):
                h.update(b"I" + repr(x).encode())
            elif isinstance(x, float):
                h.update(b"F" + x.hex().encode())
            elif isinstance(x, str):
                h.update(b"S" + x.encode())
            else:
                h.update(b"J" + json.dumps(x, sort_keys=True).encode())
    return h.hexdigest()


def _n_rows(g: h5py.Group) -> int:
    """Complete rows of a growing group (``/snapshots``, ``/grid``): the shortest of its
    growing datasets."""
    return min((g[k].shape[0] for k in g if g[k].maxshape[0] is None), default=0)


def _complete(g: h5py.Group | None) -> bool:
    return g is not None and int(g.attrs.get("complete", 0)) == 1


def _read_state(g: h5py.Group) -> dict[str, Any]:
    keys = json.loads(g.attrs["state_keys"])
    none_keys = set(json.loads(g.attrs.get("none_keys", "[]")))
    json_keys = set(json.loads(g.attrs.get("json_keys", "[]")))
    list_keys = set(json.loads(g.attrs.get("list_keys", "[]")))
    state: dict[str, Any] = {}
    for key in keys:
        if key in none_keys:
            state[key] = None
        elif key in list_keys:
            sub = g[key]
            state[key] = [np.asarray(sub[str(i)][()]) for i in range(len(sub))]
        elif key in g:
            state[key] = np.asarray(g[key][()])
        else:
            v = g.attrs[key]
            if key in json_keys:
                v = json.loads(v)
            elif isinstance(v, np.integer):
                v = int(v)
            elif isinstance(v, np.floating):
                v = float(v)
            elif isinstance(v, np.bool_):
                v = bool(v)
            elif isinstance(v, bytes):
                v = v.decode()
            state[key] = v
    return state


def read_checkpoint(f: h5py.File) -> dict[str, Any] | None:
    """The last complete checkpoint of an open file.

    Returns ``{"state": {...}, "meta": {...}}`` (``state`` as passed to
    :meth:`RunStore.write_checkpoint`, ``meta`` its keyword attributes) or None if there is none.
    """
    g = None
    for name in ("checkpoint", "checkpoint_new"):
        if name in f and _complete(f[name]):
            g = f[name]
            break
    if g is None:
        return None
    try:
        state = _read_state(g)
    except OSError as exc:     # a Fletcher-32 checksum failed, or a block cannot be read
        raise StoreError(f"{f.filename}: the checkpoint is corrupt ({_h5_reason(exc)})") from None
    want = g.attrs.get("sha256")
    if want is not None and _digest(state) != str(want):
        step = g.attrs.get("meta:step", "?")
        raise StoreError(f"{f.filename}: the checkpoint (step {step}) is corrupt: its checksum "
                         f"does not match")
    meta = {}
    for k, v in g.attrs.items():
        if k.startswith("meta:"):
            meta[k[5:]] = v.item() if isinstance(v, np.generic) else v
    meta["written"] = str(g.attrs.get("written", ""))
    return {"state": state, "meta": meta}


# --------------------------------------------------------------------------------------------
# reader
# --------------------------------------------------------------------------------------------

class Snapshot:
    """One stored snapshot: ``step``, ``t``, ``theta`` (N_sub, D), ``W`` (p, q) or None,
    ``r`` (N_sub, D) velocities or None (kinetic solver),
    ``index`` (N_sub,) particle indices."""

    __slots__ = ("step", "t", "theta", "W", "index", "r")

    def __init__(self, step, t, theta, W, index, r=None):
        self.step, self.t, self.theta, self.W, self.index, self.r = step, t, theta, W, index, r

    def __repr__(self) -> str:
        return f"Snapshot(step={self.step}, t={self.t:g}, theta{self.theta.shape})"


class _Snapshots(Sequence):
    """Lazy sequence of snapshots: each item is read from the file when accessed."""

    def __init__(self, run: "Run"):
        self._run = run

    def __len__(self) -> int:
        return self._run.n_snapshots

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._run.snapshot(i)

    def __iter__(self) -> Iterator[Snapshot]:
        for i in range(len(self)):
            yield self._run.snapshot(i)


class Run:
    """A stored run (see :func:`load`).

    Attributes
    ----------
    path : str
    attrs : dict            root attributes (schema_version, mfpde_version, created, seed, ...)
    config_text : str       resolved TOML configuration (re-runnable as is)
    config : dict           the same, parsed
    status : str            running | complete | failed | interrupted
    series : dict[str, ndarray]   ``t``, ``step`` and one float64 array per quantity
    snapshots : sequence of :class:`Snapshot`, read lazily
    snapshot_times, snapshot_steps : ndarray
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        try:
            f = _open_read(self.path)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot open as HDF5 ({_h5_reason(exc)})") from None
        with f:
            _check_schema(f, self.path)
            self.attrs = {k: (v.item() if isinstance(v, np.generic) else v)
                          for k, v in f.attrs.items()}
            series = {}
            if "series" in f:
                g = f["series"]
                n = min((g[k].shape[0] for k in g), default=0)
                with _reading(self.path, "the series"):
                    series = {k: g[k][:n] for k in g}
            self.series: dict[str, np.ndarray] = series
            self.n_snapshots = 0
            self.snapshot_times = np.zeros(0)
            self.snapshot_steps = np.zeros(0, dtype=np.int64)
            self.snapshot_index = None
            self.snapshot_fields: list[str] = []
            if "snapshots" in f:
                g = f["snapshots"]
                n = _n_rows(g)
                self.n_snapshots = n
                self.snapshot_times = g["t"][:n]
                self.snapshot_steps = g["step"][:n]
                self.snapshot_index = g["index"][:] if "index" in g else None
                self.snapshot_fields = [k for k in g if k not in ("step", "t", "index")]
            self.has_checkpoint = read_checkpoint(f) is not None if (
                "checkpoint" in f or "checkpoint_new" in f) else False
        self.config_text = str(self.attrs.get("config", ""))
        try:
            self.config = tomllib.loads(self.config_text)
        except tomllib.TOMLDecodeError:
            self.config = {}
        self.status = str(self.attrs.get("status", ""))
        self.message = str(self.attrs.get("message", ""))
        self.schema_version = int(self.attrs.get("schema_version", 0))
        self.snapshots = _Snapshots(self)

    @property
    def t(self) -> np.ndarray:
        return self.series.get("t", np.zeros(0))

    @property
    def quantities(self) -> list[str]:
        return [k for k in self.series if k not in ("t", "step")]

    def grid(self) -> dict[str, np.ndarray] | None:
        """Grid-solver output: ``axis0``, ``edges0`` [, ``axis1``, ``edges1``], ``t`` (n_snap,),
        ``step``, ``density`` (n_snap, *grid shape); None if the file has no ``/grid``."""
        with _open_read(self.path) as f:
            if "grid" not in f:
                return None
            g = f["grid"]
            n = min(g[k].shape[0] for k in ("t", "step", "density"))
            return {k: (g[k][:n] if k in ("t", "step", "density") else g[k][:]) for k in g}

    def snapshot(self, i: int) -> Snapshot:
        """Read snapshot ``i`` (negative indices count from the end)."""
        n = self.n_snapshots
        if not -n <= i < n:
            raise IndexError(f"snapshot {i} out of range ({n} snapshots)")
        i %= n
        with _open_read(self.path) as f, _reading(self.path, f"snapshot {i}"):
            g = f["snapshots"]
            W = g["W"][i] if "W" in g else None
            r = g["r"][i] if "r" in g else None
            return Snapshot(int(g["step"][i]), float(g["t"][i]), g["theta"][i], W,
                            g["index"][:], r)

    def fields(self, i: int) -> dict[str, np.ndarray]:
        """Every field stored in snapshot ``i``: ``{name: array}`` (particles ``theta``, ``W``,
        ``r``, or the fields of other drivers such as the Pham–Nguyen weights)."""
        n = self.n_snapshots
        if not -n <= i < n:
            raise IndexError(f"snapshot {i} out of range ({n} snapshots)")
        i %= n
        with _open_read(self.path) as f, _reading(self.path, f"snapshot {i}"):
            g = f["snapshots"]
            return {k: g[k][i] for k in self.snapshot_fields}

    def checkpoint(self) -> dict[str, Any] | None:
        """The last complete checkpoint: ``{"state": solver state dict, "meta": {...}}``."""
        with _open_read(self.path) as f:
            return read_checkpoint(f)

    def sizes(self) -> dict[str, Any]:
        """Shapes of the stored datasets and the file size in bytes."""
        out: dict[str, Any] = {"file_bytes": os.path.getsize(self.path)}
        with _open_read(self.path) as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    out[name] = tuple(obj.shape)
            f.visititems(visit)
        return out

    def __repr__(self) -> str:
        n = len(self.t)
        return (f"Run({self.path!r}, status={self.status!r}, {n} observations, "
                f"{self.n_snapshots} snapshots)")


def load(path: str | os.PathLike) -> Run:
    """Open a run file written by ``mfpde run``.

    Returns a :class:`Run` with ``.config`` (dict), ``.config_text``, ``.status``, ``.series``
    (dict of numpy arrays incl. ``t``), ``.snapshots`` / ``.snapshot(i)`` (read lazily),
    ``.checkpoint()`` and ``.attrs``.
    """
    return Run(path)


# ============================================================================================
# comparison files (``mfpde compare``): one HDF5 file per comparison job
# ============================================================================================
#
#     /                             attrs: format, schema_version, mfpde_version, created, config
#                                          (JSON of the resolved [compare] table), test_set,
#                                          status (running | complete), seconds, units (JSON
#                                          list of the finished units, see CompareWriter)
#     /compare/<run>/               attrs: the run's attributes (width, step, method, W2 values,
#                                          reference size and step, seed, ...)
#         series/<quantity>         float64 (n_records + 1,)
#     /references/<name>/           attrs: the reference's scalars; its arrays as datasets
#     /fits/<name>/                 attrs: slope, C, ci_low, ci_high, ci_level, n_boot, ref_slope,
#                                          x_name, quantity, at, agg, fixed
#                                   datasets: x, err, agg, boot
#
# The layout is documented in docs/finite-width.md §4 (format "mfpde-compare", schema 1).

#: ``format`` root attribute of a comparison file
COMPARE_FORMAT = "mfpde-compare"
#: version of the comparison file layout
COMPARE_SCHEMA_VERSION = 1

#: attributes a comparison run takes from the record of its reference
_COMPARE_REF_ATTRS = ("N_ref", "n1_ref", "n2_ref", "ref_dt", "ref_method", "ref_batch")
#: attributes of a rate fit, in the order they are written
_FIT_ATTRS = ("slope", "C", "ci_low", "ci_high", "ci_level", "n_boot", "ref_slope", "x_name",
              "quantity", "at", "fixed")


class CompareWriter:
    """Write a comparison file (layout above) unit by unit.

    A *unit* is one coupled run of a seed and a group of step sizes: its reference and its
    networks. :meth:`unit_done` records a finished unit in the ``units`` root attribute (its
    key, the names of its groups and the values fitted) and flushes the file, so a job that is
    interrupted keeps its finished units (``status`` stays ``running``) and ``resume=True``
    continues it: the groups of a unit that was being written when the job stopped are
    deleted, the finished ones are kept (:attr:`done`).

    Parameters
    ----------
    path : path of the file (replaced, or continued with ``resume``)
    config : str
        JSON text of the resolved ``[compare]`` table.
    test_set : str
        What the held-out set is (fresh samples, or the training set).
    resume : bool
        Continue the unfinished file at ``path``; a file of another comparison, or one that is
        already complete, is a :class:`StoreError`.
    """

    def __init__(self, path: str | os.PathLike, *, config: str, test_set: str,
                 resume: bool = False):
        self.path = os.fspath(path)
        self._fits = None
        if resume:
            self._reopen(config)
            return
        self.f = h5py.File(self.path, "w")
        a = self.f.attrs
        a["format"] = COMPARE_FORMAT
        a["schema_version"] = COMPARE_SCHEMA_VERSION
        a["mfpde_version"] = _version()
        a["created"] = _now()
        a["config"] = config
        a["test_set"] = test_set
        a["status"] = "running"
        a["units"] = "[]"
        self._units: list[dict] = []
        self._runs = self.f.create_group("compare")
        self._refs = self.f.create_group("references")

    def _reopen(self, config: str) -> None:
        try:
            self.f = h5py.File(self.path, "r+")
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot be continued ({exc}); remove it to start "
                             f"over") from None
        try:
            a = self.f.attrs
            if a.get("format") != COMPARE_FORMAT or "units" not in a:
                raise StoreError(f"{self.path}: not a comparison file that can be continued")
            if _py(a["status"]) != "running":
                raise StoreError(f"{self.path}: the comparison is already {_py(a['status'])}")
            if json.loads(_py(a["config"])) != json.loads(config):
                raise StoreError(f"{self.path}: holds a comparison with another [compare] "
                                 f"table; remove it, or resume with the configuration it was "
                                 f"started with")
            self._units = json.loads(_py(a["units"]))
            self._runs, self._refs = self.f["compare"], self.f["references"]
            keep = {n for u in self._units for n in u["groups"]}
            for g in (self._runs, self._refs):
                for name in [n for n in g if f"{g.name[1:]}/{n}" not in keep]:
                    del g[name]      # a unit that was being written when the job stopped
            if "fits" in self.f:
                del self.f["fits"]
            self.f.flush()
        except BaseException:
            self.f.close()
            raise

    @property
    def done(self) -> dict[str, dict[str, float]]:
        """``{unit key: {run name: fitted value}}`` of the finished units."""
        return {u["key"]: u["values"] for u in self._units}

    def unit_done(self, key: str, groups: list[str], values: Mapping[str, float]) -> None:
        """Record a finished unit: ``groups`` (``compare/<run>``, ``references/<name>``) and
        the fitted value of each run (JSON keeps floats exactly); then flush."""
        self._units.append({"key": key, "groups": list(groups),
                            "values": {k: float(v) for k, v in values.items()}})
        self.f.attrs["units"] = json.dumps(self._units)
        self.f.flush()

    def add_reference(self, name: str, record: Mapping[str, Any]) -> None:
        """A reference: arrays (``t``, ``risk_ref``) as datasets, everything else as attributes."""
        g = self._refs.create_group(name)
        for k, v in record.items():
            if isinstance(v, np.ndarray):
                g.create_dataset(k, data=v)
            else:
                g.attrs[k] = v

    def add_run(self, name: str, result: Any, reference: Mapping[str, Any], seed: int) -> None:
        """One coupled network: ``result.series`` (arrays), ``result.attrs`` and
        ``result.final`` (attributes), its minimal width ``n_min``, the reference's size and step
        and the seed."""
        g = self._runs.create_group(name)
        gs = g.create_group("series")
        for k, v in result.series.items():
            gs.create_dataset(k, data=np.asarray(v, dtype=np.float64))
        for k, v in result.attrs.items():
            g.attrs[k] = v
        N = result.N
        g.attrs["n_min"] = min(N) if isinstance(N, tuple) else int(N)
        for k, v in result.final.items():
            g.attrs[k] = v
        for k in _COMPARE_REF_ATTRS:
            if k in reference:
                g.attrs[k] = reference[k]
        g.attrs["seed"] = seed

    def add_fit(self, name: str, fit: Any) -> None:
        """A rate fit (:class:`mfpde.metrics.rates.RateFit`): its numbers as attributes, ``x``,
        ``err``, ``agg``, ``boot`` as datasets."""
        if self._fits is None:
            self._fits = self.f.create_group("fits")
        g = self._fits.create_group(name)
        for k in _FIT_ATTRS:
            g.attrs[k] = getattr(fit, k)
        g.attrs["agg"] = fit.agg_kind
        for k in ("x", "err", "agg", "boot"):
            g.create_dataset(k, data=np.asarray(getattr(fit, k), dtype=np.float64))

    def flush(self) -> None:
        self.f.flush()

    def finish(self, seconds: float) -> None:
        """Mark the file complete (``/fits`` exists even without fits)."""
        if self._fits is None:
            self._fits = self.f.create_group("fits")
        self.f.attrs["seconds"] = seconds
        self.f.attrs["status"] = "complete"

    def close(self) -> None:
        if self.f.id.valid:
            self.f.close()

    def __enter__(self) -> "CompareWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _py(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def read_compare(path: str | os.PathLike) -> dict[str, Any]:
    """Read a comparison file: ``{"attrs", "config", "runs": {name: {"attrs", "series": {...}}},
    "references": {...}, "fits": {name: {"attrs", "x", "err", "agg", "boot"}}}``."""
    out: dict[str, Any] = {"runs": {}, "references": {}, "fits": {}}
    with _open_read(path) as h5:
        if h5.attrs.get("format") != COMPARE_FORMAT:
            raise StoreError(f"{os.fspath(path)}: not an mfpde comparison file")
        out["attrs"] = {k: _py(v) for k, v in h5.attrs.items()}
        out["config"] = json.loads(out["attrs"]["config"])
        for top, key in (("compare", "runs"), ("references", "references"), ("fits", "fits")):
            if top not in h5:
                continue
            for name, g in h5[top].items():
                item: dict[str, Any] = {"attrs": {k: _py(v) for k, v in g.attrs.items()}}
                for k, v in g.items():
                    if isinstance(v, h5py.Group):
                        item[k] = {kk: vv[()] for kk, vv in v.items()}
                    else:
                        item[k] = v[()]
                out[key][name] = item
    return out


def compare_units_done(path: str | os.PathLike) -> int:
    """How many finished units an unfinished comparison file holds (0 if it holds none, is
    complete, or cannot be read)."""
    try:
        with _open_read(path) as h5:
            if h5.attrs.get("format") != COMPARE_FORMAT or _py(h5.attrs.get("status")) != "running":
                return 0
            return len(json.loads(_py(h5.attrs.get("units", "[]"))))
    except (OSError, ValueError, KeyError):
        return 0
