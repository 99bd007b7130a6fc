"""Dropout and connectivity analysis of stored runs: read a network from a run file, write the
result as an HDF5 file (docs/dropout-connectivity.md).

Reading (:func:`read_network`). The network is taken from a snapshot of the run file
(``/snapshots/theta`` and ``/snapshots/W``; default: the last snapshot) or from the checkpoint
(the complete final state; the default when the file has no snapshots). A snapshot that holds only
a sub-sample of the particles (``observe.snapshot_particles > 0``) is refused with a one-line
error, since a sub-network of a sub-sample is not a sub-network of the trained network. The model
and the data the loss is evaluated on are rebuilt from the stored configuration: the model from
``[model]``, the data set from ``[data]`` (the finite set the run's ``loss`` observer uses; for
online runs, a finite sample of the population with the stored size and seed). Pham–Nguyen
networks are read from ``/snapshots/w1, w2, w3`` or from the checkpoint's ``w1, w2, w3``
(the state of :class:`~mfpde.models.three_layer_pn.PNDriver`) when ``[model] kind =
"pham_nguyen"``.

Two runs are *comparable* (:func:`connect_runs`) when their ``[model]`` and ``[data]`` tables
agree (the performance option ``model.memory`` and ``data.test_n`` aside), their widths agree and,
for the NC model, their ``W`` is the same.

Result files (:func:`write_dropout`, :func:`write_connect`) follow the run store's conventions:
root attributes ``schema_version``, ``mfpde_version``, ``config`` (the analysed run's TOML),
``created``, ``updated``, ``status`` = ``complete``, ``message``, plus ``format``
(:data:`DROPOUT_FORMAT` or :data:`CONNECT_FORMAT`); :func:`mfpde.store.load` opens them (no series,
no snapshots) and ``mfpde info`` / ``mfpde plot`` recognise them by ``format``. Layouts are listed
in the docstrings of the writers.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from .metrics.connectivity import ConnectResult, check_comparable, connect
from .metrics.dropout import DropoutResult, Network, dropout_gaps
from .store import SCHEMA_VERSION, Run, StoreError, _now, _open_read, _version, load

__all__ = ["AnalysisError", "read_network", "dropout_run", "connect_runs", "write_dropout",
           "write_connect", "read_analysis", "analysis_format", "DROPOUT_FORMAT", "CONNECT_FORMAT",
           "FORMATS", "NetworkSource"]

DROPOUT_FORMAT = "mfpde-dropout"
CONNECT_FORMAT = "mfpde-connect"
FORMATS = (DROPOUT_FORMAT, CONNECT_FORMAT)

#: ``[model]`` / ``[data]`` keys that do not change the network or the loss
_IGNORED_KEYS = {("model", "memory"), ("data", "test_n")}


class AnalysisError(ValueError):
    """A run file cannot be analysed (message: one line naming the file and the reason)."""


# ============================================================================ reading networks
class NetworkSource(dict):
    """Where a network came from: ``path``, ``source`` (``"snapshot"`` | ``"checkpoint"``),
    ``snapshot`` (index or -1), ``step``, ``t``, ``config_text``."""


def _as_run(run) -> Run:
    if isinstance(run, Run):
        return run
    path = os.fspath(run)
    try:
        return load(path)
    except FileNotFoundError:
        raise AnalysisError(f"{path}: no such file") from None
    except StoreError as exc:
        raise AnalysisError(str(exc)) from None
    except OSError as exc:
        raise AnalysisError(f"{path}: not a readable HDF5 file "
                            f"({str(exc).splitlines()[0]})") from None


def _model_and_data(run: Run):
    """Model and evaluation data set rebuilt from the stored configuration
    (:func:`mfpde.build.build_data`, :func:`mfpde.build.make_model`)."""
    from .build import build_data, make_model
    from .config import ConfigError, parse_config

    cfgd = run.config or {}
    if not cfgd.get("model") or not cfgd.get("data"):
        raise AnalysisError(f"{run.path}: no [model] / [data] configuration stored; "
                            f"not a run file written by 'mfpde run'")
    try:
        cfg = parse_config(run.config_text, name=f"{run.path} (stored config)")
        data, _, _ = build_data(cfg.data)
        Y = np.asarray(data.Y)
        d, q = int(data.X.shape[1]), 1 if Y.ndim == 1 else int(Y.shape[1])
        model = make_model(cfg.model, d, q)
    except ConfigError as exc:
        raise AnalysisError(f"{run.path}: {str(exc).splitlines()[0]}") from None
    return model, data


def _width_from_config(run: Run):
    dyn = (run.config or {}).get("dynamics", {})
    return dyn.get("N")


def _parse_snapshot(snapshot):
    if snapshot is None or isinstance(snapshot, (int, np.integer)):
        return snapshot
    s = str(snapshot).strip().lower()
    if s in ("checkpoint", "ck", "final"):
        return "checkpoint"
    try:
        return int(s)
    except ValueError:
        raise AnalysisError(f"--snapshot {snapshot!r}: expected a snapshot index (negative "
                            f"counts from the end) or 'checkpoint'") from None


def read_network(run, snapshot=None) -> tuple[Network, Any, NetworkSource]:
    """The network stored in a run file, its evaluation data and where it came from.

    Parameters
    ----------
    run : path or :class:`~mfpde.store.Run`
    snapshot : int, ``"checkpoint"`` or None
        Snapshot index (negative counts from the end) or the checkpoint; None: the last snapshot,
        or the checkpoint if the file has no snapshots.

    Returns
    -------
    (Network, Dataset, NetworkSource)

    Raises
    ------
    AnalysisError
        Missing file, no network stored, a sub-sampled snapshot, an index out of range.
    """
    run = _as_run(run)
    snap = _parse_snapshot(snapshot)
    model, data = _model_and_data(run)
    pn = getattr(model, "kind", "") == "pham_nguyen"
    src = NetworkSource(path=run.path, config_text=run.config_text)
    with _open_read(run.path) as f:
        has_snap = "snapshots" in f and run.n_snapshots > 0
        if snap is None:
            snap = -1 if has_snap else "checkpoint"
        if snap == "checkpoint":
            from .store import read_checkpoint
            ck = read_checkpoint(f)
            if ck is None:
                raise AnalysisError(f"{run.path}: no snapshots and no complete checkpoint: no "
                                    f"network stored")
            st, meta = ck["state"], ck["meta"]
            step = int(meta.get("step", st.get("k", -1)))
            src.update(source="checkpoint", snapshot=-1, step=step,
                       t=float(meta.get("t", math.nan)))
            if pn:
                params = _pn_from(st, run.path, "checkpoint")
                W = None
            else:
                if "theta" not in st:
                    raise AnalysisError(f"{run.path}: the checkpoint holds no particles 'theta'")
                params = np.asarray(st["theta"], dtype=np.float64)
                W = None if st.get("W") is None else np.asarray(st["W"], dtype=np.float64)
        else:
            if not has_snap:
                raise AnalysisError(f"{run.path}: no snapshots stored (observe.snapshot_every = 0);"
                                    f" use --snapshot checkpoint for the final state")
            n = run.n_snapshots
            if not -n <= snap < n:
                raise AnalysisError(f"{run.path}: snapshot {snap} out of range ({n} snapshots)")
            i = snap % n
            g = f["snapshots"]
            src.update(source="snapshot", snapshot=int(i), step=int(g["step"][i]),
                       t=float(g["t"][i]))
            if pn:
                params = _pn_from({k: g[k][i] for k in ("w1", "w2", "w3") if k in g}, run.path,
                                  f"snapshot {i}")
                W = None
            else:
                idx = g["index"][:]
                N = _width_from_config(run)
                N = int(N) if N is not None else int(f["checkpoint/theta"].shape[0]) \
                    if "checkpoint/theta" in f else idx.size
                if idx.size < N:
                    raise AnalysisError(
                        f"{run.path}: snapshot {i} holds {idx.size} of the N = {N} particles "
                        f"(observe.snapshot_particles = {idx.size}); a sub-network of a sub-sample "
                        f"is not a sub-network of the trained network: use --snapshot checkpoint "
                        f"(final state) or re-run with observe.snapshot_particles = 0")
                params = np.asarray(g["theta"][i], dtype=np.float64)
                W = np.asarray(g["W"][i], dtype=np.float64) if "W" in g else None
    try:
        net = Network(model, params, W)
    except ValueError as exc:
        raise AnalysisError(f"{run.path}: stored parameters do not fit the model: {exc}") from None
    return net, data, src


def _pn_from(state, path, where):
    from .models.three_layer_pn import PNWeights
    missing = [k for k in ("w1", "w2", "w3") if k not in state]
    if missing:
        raise AnalysisError(f"{path}: the {where} holds no Pham–Nguyen weights "
                            f"({', '.join(missing)} missing)")
    return PNWeights(*(np.asarray(state[k], dtype=np.float64) for k in ("w1", "w2", "w3")))


def _comparable_configs(ra: Run, rb: Run) -> None:
    ca, cb = ra.config or {}, rb.config or {}
    for sec in ("model", "data"):
        sa, sb = ca.get(sec, {}), cb.get(sec, {})
        for key in sorted(set(sa) | set(sb)):
            if (sec, key) in _IGNORED_KEYS:
                continue
            if sa.get(key) != sb.get(key):
                hint = (" (data.seed defaults to dynamics.seed + 1: give both runs the same "
                        "data.seed)" if (sec, key) == ("data", "seed") else "")
                raise AnalysisError(f"{ra.path} and {rb.path} are not comparable: {sec}.{key} = "
                                    f"{sa.get(key)!r} vs {sb.get(key)!r}{hint}")


# ============================================================================ analyses of runs
def dropout_run(run, *, snapshot=None, Ms: Sequence | None = None, n_subsets: int = 200,
                seed: int = 0, quantiles=None) -> tuple[DropoutResult, NetworkSource]:
    """:func:`~mfpde.metrics.dropout.dropout_gaps` of the network stored in ``run`` on its data."""
    net, data, src = read_network(run, snapshot)
    kw = {} if quantiles is None else {"quantiles": quantiles}
    try:
        res = dropout_gaps(net, data.X, data.Y, Ms, n_subsets=n_subsets, seed=seed, **kw)
    except ValueError as exc:
        raise AnalysisError(f"{src['path']}: {exc}") from None
    return res, src


def connect_runs(run_a, run_b, *, snapshot=None, snapshot_b=None, points: int = 40,
                 straight: bool = True) -> tuple[ConnectResult, NetworkSource, NetworkSource]:
    """:func:`~mfpde.metrics.connectivity.connect` between the networks of two comparable runs
    (``snapshot`` for both, or ``snapshot_b`` for the second)."""
    ra, rb = _as_run(run_a), _as_run(run_b)
    _comparable_configs(ra, rb)
    A, data, sa = read_network(ra, snapshot)
    B, _, sb = read_network(rb, snapshot if snapshot_b is None else snapshot_b)
    try:
        check_comparable(A, B)
        res = connect(A, B, data.X, data.Y, points=points, straight=straight)
    except ValueError as exc:
        raise AnalysisError(f"{ra.path} and {rb.path}: {exc}") from None
    return res, sa, sb


# ============================================================================ writing results
def _create(path) -> tuple[h5py.File, Path]:
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise AnalysisError(f"cannot write {path}: directory {str(parent)!r} does not exist")
    part = path.with_name(path.name + ".part")
    try:
        f = h5py.File(part, "w")
    except OSError as exc:
        raise AnalysisError(f"cannot write {path}: {str(exc).splitlines()[0]}") from None
    return f, part


def _root_attrs(f, fmt, config_text, extra):
    f.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
    f.attrs["mfpde_version"] = _version()
    f.attrs["format"] = fmt
    f.attrs["config"] = config_text or ""
    f.attrs["created"] = _now()
    f.attrs["updated"] = f.attrs["created"]
    f.attrs["status"] = "complete"
    f.attrs["message"] = ""
    for k, v in extra.items():
        if v is None:
            continue
        if isinstance(v, (dict, list, tuple)):
            v = json.dumps(v)
        f.attrs[k] = v


def _finish(f, part, path) -> str:
    f.flush()
    f.close()
    os.replace(part, path)
    return os.fspath(path)


def write_dropout(path, res: DropoutResult, src: NetworkSource | dict | None = None) -> str:
    """Write a dropout result.

    Layout::

        /                 attrs: schema_version, mfpde_version, format = "mfpde-dropout", config,
                                 created, updated, status, message, source, source_kind
                                 ("snapshot" | "checkpoint"), snapshot, step, t, kind, N (or n1,
                                 n2), loss_N, s2 (E_x s_x^2), n_subsets, seed, seconds,
                                 quantile_levels
        /dropout/M        int64   (n_M,) [Pham–Nguyen: (n_M, 2) = (M1, M2)]
        /dropout/gaps     float64 (n_M, K)   L_M(theta_S) - L_N of every sampled subset
        /dropout/mean, se, exact, linear_sd, worst       float64 (n_M,)
        /dropout/quantiles float64 (n_M, n_q)
        /dropout/worst_subset  int64 (n_M, max M) indices of the worst subset, -1 padded
                               [Pham–Nguyen: worst_subset1, worst_subset2]
    """
    src = dict(src or {})
    f, part = _create(path)
    try:
        width = res.width
        extra = {"source": src.get("path"), "source_kind": src.get("source"),
                 "snapshot": src.get("snapshot"), "step": src.get("step"), "t": src.get("t"),
                 "kind": res.kind, "loss_N": float(res.loss_N), "s2": float(res.s2),
                 "n_subsets": int(res.n_subsets), "seed": int(res.seed),
                 "seconds": float(res.seconds),
                 "quantile_levels": np.asarray(res.quantile_levels, dtype=np.float64)}
        if isinstance(width, tuple):
            extra.update(n1=int(width[0]), n2=int(width[1]))
        else:
            extra["N"] = int(width)
        _root_attrs(f, DROPOUT_FORMAT, src.get("config_text", ""), extra)
        g = f.create_group("dropout", track_order=True)
        g.create_dataset("M", data=np.asarray(res.M, dtype=np.int64))
        for k in ("gaps", "mean", "se", "exact", "linear_sd", "worst", "quantiles"):
            g.create_dataset(k, data=np.asarray(getattr(res, k), dtype=np.float64))
        if isinstance(width, tuple):
            for layer in (0, 1):
                subs = [s[layer] for s in res.worst_subsets]
                g.create_dataset(f"worst_subset{layer + 1}", data=_pad(subs))
        else:
            g.create_dataset("worst_subset", data=_pad(res.worst_subsets))
    except BaseException:
        f.close()
        os.unlink(part)
        raise
    return _finish(f, part, path)


def _pad(subs) -> np.ndarray:
    m = max(len(s) for s in subs)
    out = np.full((len(subs), m), -1, dtype=np.int64)
    for j, s in enumerate(subs):
        out[j, :len(s)] = s
    return out


def write_connect(path, res: ConnectResult, src_a: dict | None = None,
                  src_b: dict | None = None) -> str:
    """Write a connectivity result.

    Layout::

        /                 attrs: schema_version, mfpde_version, format = "mfpde-connect", config
                                 (run A's TOML), config_B, created, updated, status, message,
                                 source_A, source_B, snapshot_A, snapshot_B, step_A, step_B, kind
                                 (path kind), N (or n1, n2), loss_A, loss_B, barrier,
                                 barrier_knots, bound, applies, holds, tol, margin,
                                 straight_barrier, points, seconds, segments (JSON list),
                                 affine (JSON list), knot_labels (JSON list), gaps (JSON dict)
        /path/tau, loss   float64 (P,)  tau = j + s on segment j
        /path/segment     int64   (P,)
        /knots/loss       float64 (J + 1,)
        /straight/tau, loss  float64 (P_s,)  the straight line, tau in [0, 1]
    """
    src_a, src_b = dict(src_a or {}), dict(src_b or {})
    f, part = _create(path)
    try:
        extra = {"config_B": src_b.get("config_text", ""), "source_A": src_a.get("path"),
                 "source_B": src_b.get("path"), "snapshot_A": src_a.get("snapshot"),
                 "snapshot_B": src_b.get("snapshot"), "step_A": src_a.get("step"),
                 "step_B": src_b.get("step"), "kind": res.kind, "loss_A": res.loss_A,
                 "loss_B": res.loss_B, "barrier": res.barrier, "barrier_knots": res.barrier_knots,
                 "bound": res.bound, "applies": bool(res.applies), "holds": bool(res.holds),
                 "tol": res.tol, "margin": res.margin, "straight_barrier": res.straight_barrier,
                 "points": int(res.points), "seconds": float(res.seconds),
                 "segments": list(res.segments), "affine": [bool(a) for a in res.affine],
                 "knot_labels": list(res.knot_labels), "gaps": dict(res.gaps)}
        if isinstance(res.width, tuple):
            extra.update(n1=int(res.width[0]), n2=int(res.width[1]))
        else:
            extra["N"] = int(res.width)
        _root_attrs(f, CONNECT_FORMAT, src_a.get("config_text", ""), extra)
        g = f.create_group("path", track_order=True)
        g.create_dataset("tau", data=res.tau)
        g.create_dataset("loss", data=res.loss)
        g.create_dataset("segment", data=res.segment.astype(np.int64))
        f.create_group("knots").create_dataset("loss", data=res.knot_loss)
        s = f.create_group("straight", track_order=True)
        s.create_dataset("tau", data=res.straight_tau)
        s.create_dataset("loss", data=res.straight_loss)
    except BaseException:
        f.close()
        os.unlink(part)
        raise
    return _finish(f, part, path)


# ============================================================================ reading results
def analysis_format(path) -> str | None:
    """``"mfpde-dropout"`` / ``"mfpde-connect"`` for a result file, None for anything else
    (missing, not HDF5, a run file)."""
    try:
        with _open_read(path) as f:
            fmt = f.attrs.get("format")
    except (OSError, FileNotFoundError):
        return None
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    return fmt if fmt in FORMATS else None


def _py(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


_JSON_ATTRS = ("segments", "affine", "knot_labels", "gaps")


def read_analysis(path) -> dict:
    """Read a result file: ``{"format", "attrs", <group>: {dataset: array}}``."""
    path = os.fspath(path)
    fmt = analysis_format(path)
    if fmt is None:
        raise AnalysisError(f"{path}: not an mfpde dropout / connect result file")
    out: dict[str, Any] = {"format": fmt}
    with _open_read(path) as f:
        attrs = {k: _py(v) for k, v in f.attrs.items()}
        for k in _JSON_ATTRS:
            if k in attrs and isinstance(attrs[k], str):
                attrs[k] = json.loads(attrs[k])
        out["attrs"] = attrs
        for name, g in f.items():
            if isinstance(g, h5py.Group):
                out[name] = {k: v[()] for k, v in g.items()}
    return out
