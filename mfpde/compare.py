r"""Comparison runs: finite-width networks against the mean-field reference, and rate fits.

``run_compare(config, out_path)`` runs widths x seeds x step sizes of synchronously coupled
networks (:mod:`mfpde.coupling`), writes everything to ONE HDF5 file and fits the error rates.
``mfpde compare CONFIG`` (and a ``[compare]`` section of ``mfpde run``) call it; the ``[compare]``
TOML schema is documented in ``docs/finite-width.md``.

File layout (``FORMAT = "mfpde-compare"``, :data:`SCHEMA_VERSION`)::

    /                         attrs: format, schema_version, mfpde_version, created, config
                                     (JSON text of the resolved [compare] table), status
    /compare/<run>/           one group per (width, seed, step); run = "N{N}_seed{s}_dt{dt}"
                              (Pham–Nguyen: "n{n1}x{n2}_seed{s}_dt{dt}")
        attrs:  N (or n1, n2), n_min, seed, dt, method, m, shared_batches, seconds,
                N_ref (or n1_ref, n2_ref), ref_dt, ref_method, ref_batch,
                w2_0, w2_T, sw2_ref_0, sw2_ref_T, w2_method
        series/ datasets (n_records + 1,): t, coupling_mean, coupling_rms, coupling_max,
                output_gap, loss_N, risk_ref, loss_gap [, phase_rms, phase_max] [, W_gap]
                [, c1_max, c2_max, c3_max]
    /references/seed{s}_dt{dt}/   attrs: N_ref (or n1_ref, n2_ref), ref_dt, ref_method,
                              ref_batch, seconds, seed; datasets t, risk_ref
    /fits/<name>/             attrs: slope, C, ci_low, ci_high, ci_level, n_boot, ref_slope,
                                     x_name, quantity, at, agg, fixed (e.g. "dt=0.05")
                              datasets: x (n_x,), err (n_seeds, n_x), agg (n_x,), boot (n_boot,)

Rate fit (:func:`fit_rate`): ``err = C x^s`` by least squares of ``log agg`` on ``log x`` where
``agg`` is the per-``x`` mean over seeds (or geometric mean / median); the confidence interval
is the percentile bootstrap over seeds (seeds resampled with replacement, the fit repeated).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from .coupling import REF_BATCH, SAMPLING, CouplingRun, couple_pn, couple_readout
from .data import data_param_spec, make_dataset
from .dynamics.sgd import METHODS
from .models import make_model
from .models.three_layer_pn import PNThreeLayer

__all__ = ["run_compare", "parse_compare", "CompareSpec", "CompareResult", "RateFit", "fit_rate",
           "plot_rate", "read_compare", "FORMAT", "SCHEMA_VERSION", "run_name"]

FORMAT = "mfpde-compare"
SCHEMA_VERSION = 1
QUANTITIES = ("coupling_rms", "coupling_mean", "coupling_max", "output_gap", "loss_gap",
              "phase_rms", "phase_max", "W_gap", "w2", "sw2_ref")


class CompareConfigError(ValueError):
    """A ``[compare]`` value is missing, unknown or out of range (message names the field)."""


# ============================================================================ rate fit
@dataclass
class RateFit:
    """Least-squares fit ``err = C x^slope`` on log-log axes with a bootstrap interval over seeds."""

    x: np.ndarray
    err: np.ndarray
    agg: np.ndarray
    slope: float
    C: float
    ci_low: float
    ci_high: float
    ci_level: float
    n_boot: int
    boot: np.ndarray
    ref_slope: float = -0.5
    x_name: str = "N"
    quantity: str = "coupling_rms"
    at: str = "final"
    agg_kind: str = "mean"
    fixed: str = ""

    def contains(self, value: float) -> bool:
        return bool(self.ci_low <= value <= self.ci_high)

    def summary(self) -> str:
        return (f"{self.quantity} ~ {self.C:.3g} {self.x_name}^s: s = {self.slope:.3f} "
                f"[{100 * self.ci_level:.0f}% bootstrap CI {self.ci_low:.3f}, {self.ci_high:.3f}] "
                f"(reference {self.ref_slope:+g}; {self.err.shape[0]} seeds, "
                f"{self.x_name} = {', '.join(f'{v:g}' for v in self.x)}"
                + (f"; {self.fixed}" if self.fixed else "") + ")")


def _aggregate(err: np.ndarray, kind: str) -> np.ndarray:
    if kind == "mean":
        return err.mean(axis=0)
    if kind == "geomean":
        return np.exp(np.log(err).mean(axis=0))
    if kind == "median":
        return np.median(err, axis=0)
    raise ValueError(f"agg must be 'mean', 'geomean' or 'median', got {kind!r}")


def _loglog(x, y):
    lx, ly = np.log(x), np.log(y)
    A = np.vstack([lx, np.ones_like(lx)]).T
    (s, c), *_ = np.linalg.lstsq(A, ly, rcond=None)
    return float(s), float(math.exp(c))


def fit_rate(x, err, *, n_boot=2000, ci=0.95, seed=0, agg="mean", ref_slope=-0.5, x_name="N",
             quantity="coupling_rms", at="final", fixed="") -> RateFit:
    """Fit ``err = C x^s`` (least squares on log-log axes) with a bootstrap CI over seeds.

    Parameters
    ----------
    x : array (n_x,)
        Positive abscissae (widths or step sizes), at least 2 distinct values.
    err : array (n_seeds, n_x)
        Positive errors, one row per seed.
    n_boot : int
        Bootstrap resamples of the seeds (with replacement).
    ci : float
        Level of the percentile interval (0.95).
    agg : {"mean", "geomean", "median"}
        Aggregation over seeds at each ``x`` before the fit.
    """
    x = np.asarray(x, dtype=np.float64)
    err = np.atleast_2d(np.asarray(err, dtype=np.float64))
    if x.ndim != 1 or err.shape[1] != x.size or np.unique(x).size < 2:
        raise ValueError(f"need >= 2 distinct x and err of shape (n_seeds, {x.size}), got {err.shape}")
    if np.any(x <= 0) or not np.all(np.isfinite(err)) or np.any(err <= 0):
        raise ValueError("x and err must be positive and finite for a log-log fit")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    a = _aggregate(err, agg)
    slope, C = _loglog(x, a)
    S = err.shape[0]
    n_boot = int(n_boot)
    boot = np.full(n_boot, np.nan)
    if S >= 2 and n_boot > 0:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2718]))
        idx = rng.integers(S, size=(n_boot, S))
        lx = np.log(x)
        lxc = lx - lx.mean()
        den = float(lxc @ lxc)
        for b in range(n_boot):
            ab = _aggregate(err[idx[b]], agg)
            boot[b] = float(lxc @ np.log(ab)) / den
        lo, hi = np.quantile(boot, [(1 - ci) / 2, (1 + ci) / 2])
    else:
        lo = hi = math.nan
    return RateFit(x, err, a, slope, C, float(lo), float(hi), float(ci), n_boot, boot,
                   float(ref_slope), x_name, quantity, at, agg, fixed)


def plot_rate(fits, path, *, title=None, xlabel=None, ylabel=None, dpi=110) -> str:
    """Draw error against ``x`` on log-log axes: per-seed values, the seed aggregate, the fitted
    line ``C x^s`` (slope and CI in the legend) and a line of the reference slope through the
    aggregate's centre. ``fits`` is one :class:`RateFit` or a list (one colour each)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401

    fits = [fits] if isinstance(fits, RateFit) else list(fits)
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, f in enumerate(fits):
        c = colors[i % len(colors)]
        for row in f.err:
            ax.plot(f.x, row, ".", color=c, alpha=0.25, ms=4)
        lab = f.fixed or f.quantity
        ax.plot(f.x, f.agg, "o", color=c, label=f"{lab}: {f.agg_kind} over {f.err.shape[0]} seeds")
        xx = np.geomspace(f.x.min(), f.x.max(), 50)
        ci = (f" [{f.ci_low:.2f}, {f.ci_high:.2f}]" if math.isfinite(f.ci_low) else "")
        ax.plot(xx, f.C * xx ** f.slope, "-", color=c, label=f"fit: slope {f.slope:.3f}{ci}")
        lxm = math.exp(np.log(f.x).mean())
        lym = math.exp(np.log(f.agg).mean())
        ax.plot(xx, lym * (xx / lxm) ** f.ref_slope, "--", color="0.4",
                label=f"reference slope {f.ref_slope:+g}" if i == 0 else None)
    ax.set_xscale("log")
    ax.set_yscale("log")
    xs = np.unique(np.concatenate([f.x for f in fits]))
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{v:g}" for v in xs], fontsize=8)
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel(xlabel or fits[0].x_name)
    ax.set_ylabel(ylabel or f"{fits[0].quantity} ({fits[0].at})")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.fspath(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


# ============================================================================ configuration
@dataclass
class CompareSpec:
    """The resolved ``[compare]`` table (docs/finite-width.md)."""

    model: dict
    data: dict
    method: str = "gd"
    batch: int = 0
    sampling: str = "epochs"
    widths: list = field(default_factory=lambda: [64, 128, 256, 512])
    seeds: list = field(default_factory=lambda: list(range(8)))
    dts: list = field(default_factory=lambda: [0.05])
    T: float = 2.0
    beta: float = math.inf
    gamma: float | None = None
    n_records: int = 4
    test_n: int = 256
    w2_max_points: int = 1024
    n_projections: int = 128
    reference: dict = field(default_factory=dict)
    fit: dict = field(default_factory=dict)
    figure: bool = True
    name: str = "compare"

    @property
    def is_pn(self) -> bool:
        return self.model.get("kind") == "pham_nguyen"

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["beta"] = "inf" if math.isinf(self.beta) else self.beta
        return d


_TOP = {"model", "data", "method", "batch", "sampling", "widths", "seeds", "dts", "T", "beta",
        "gamma", "n_records", "test_n", "w2_max_points", "n_projections", "reference", "fit",
        "figure", "name"}
_REF = {"N", "dt", "batch"}
_FIT = {"x", "quantity", "at", "agg", "n_boot", "ci", "ref_slope"}


def _err(field_, msg):
    raise CompareConfigError(f"compare.{field_}: {msg}")


def _unknown(keys, allowed, where):
    import difflib
    for k in keys:
        if k not in allowed:
            hint = difflib.get_close_matches(k, sorted(allowed), n=1)
            _err(f"{where}{k}", "unknown key" + (f"; did you mean {hint[0]!r}?" if hint else "")
                 + f" (allowed: {', '.join(sorted(allowed))})")


def _pos_num(name, v, integer=False, allow_inf=False):
    if isinstance(v, str) and allow_inf and v.strip().lower() in ("inf", "+inf", "infinity"):
        return math.inf
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        _err(name, f"must be a {'integer' if integer else 'number'}, got {v!r}")
    if integer and not float(v).is_integer():
        _err(name, f"must be an integer, got {v!r}")
    if not (v > 0) or (math.isinf(v) and not allow_inf) or math.isnan(v):
        _err(name, f"must be > 0{' (or inf)' if allow_inf else ''}, got {v!r}")
    return int(v) if integer else float(v)


def parse_compare(config) -> CompareSpec:
    """Validate a ``[compare]`` table (a dict with a ``compare`` key, the table itself, or a path
    to a TOML file) and fill in defaults; errors are :class:`CompareConfigError` naming the field."""
    if isinstance(config, (str, os.PathLike)):
        with open(config, "rb") as fh:
            config = tomllib.load(fh)
    if not isinstance(config, Mapping):
        raise CompareConfigError(f"compare config must be a table, got {type(config).__name__}")
    c = dict(config.get("compare", config))
    _unknown(c, _TOP, "")
    if "model" not in c or not isinstance(c["model"], Mapping):
        _err("model", "required table (kind = 'two_layer' | 'nc' | 'pham_nguyen', ...)")
    if "data" not in c or not isinstance(c["data"], Mapping):
        _err("data", "required table (kind = ..., its parameters, seed)")
    model = dict(c["model"])
    model.setdefault("kind", "two_layer")
    if model["kind"] not in ("two_layer", "nc", "pham_nguyen"):
        _err("model.kind", f"must be 'two_layer', 'nc' or 'pham_nguyen', got {model['kind']!r}")
    data = dict(c["data"])
    if "kind" not in data:
        _err("data.kind", "required")
    spec = CompareSpec(model=model, data=data)
    pn = spec.is_pn
    method = c.get("method", "sgd" if pn else "gd")
    allowed = ("sgd", "shb", "shb_polyak") if pn else METHODS
    if method not in allowed:
        _err("method", f"must be one of {', '.join(allowed)}, got {method!r}")
    spec.method = method
    batch = c.get("batch", 0)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        _err("batch", f"must be an integer >= 0 (0 = full batch), got {batch!r}")
    spec.batch = batch
    if method == "gd" and batch:
        _err("batch", "method 'gd' is full batch (batch = 0); use method = 'sgd'")
    if method == "sgd" and not batch and not pn:
        _err("batch", "method 'sgd' needs batch >= 1")
    spec.sampling = c.get("sampling", "epochs")
    if spec.sampling not in SAMPLING:
        _err("sampling", f"must be one of {', '.join(SAMPLING)}, got {spec.sampling!r}")
    widths = c.get("widths", spec.widths)
    if not isinstance(widths, list) or not widths:
        _err("widths", "must be a non-empty list")
    wl = []
    for w in widths:
        if pn and isinstance(w, list):
            if len(w) != 2:
                _err("widths", f"Pham–Nguyen widths are n or [n1, n2], got {w!r}")
            wl.append([_pos_num("widths", w[0], True), _pos_num("widths", w[1], True)])
        else:
            n = _pos_num("widths", w, True)
            wl.append([n, n] if pn else n)
    if len({tuple(w) if isinstance(w, list) else w for w in wl}) != len(wl):
        _err("widths", f"repeated width in {widths!r}")
    spec.widths = wl
    seeds = c.get("seeds", 8)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            _err("seeds", f"must be >= 1 (or a list of seeds), got {seeds!r}")
        seeds = list(range(seeds))
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        _err("seeds", f"must be a count or a list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        _err("seeds", "repeated seed")
    spec.seeds = seeds
    dts = c.get("dts", spec.dts)
    if not isinstance(dts, list) or not dts:
        _err("dts", "must be a non-empty list of step sizes")
    spec.dts = [_pos_num("dts", v) for v in dts]
    if len(set(spec.dts)) != len(spec.dts):
        _err("dts", f"repeated step size in {dts!r}")
    spec.T = _pos_num("T", c.get("T", spec.T))
    spec.beta = _pos_num("beta", c.get("beta", math.inf), allow_inf=True)
    if pn and math.isfinite(spec.beta):
        _err("beta", "the Pham–Nguyen trainers are noiseless (SGD / heavy ball)")
    if method == "noisy_sgd" and math.isinf(spec.beta):
        _err("beta", "method 'noisy_sgd' needs a finite beta")
    if method in ("gd", "sgd") and math.isfinite(spec.beta):
        _err("beta", f"method {method!r} is noiseless; use 'noisy_sgd'")
    if method in ("shb", "shb_polyak"):
        if "gamma" not in c:
            _err("gamma", f"method {method!r} needs the friction gamma")
        spec.gamma = _pos_num("gamma", c["gamma"])
    elif "gamma" in c:
        _err("gamma", f"only for heavy ball (method 'shb' / 'shb_polyak'), not {method!r}")
    spec.n_records = _pos_num("n_records", c.get("n_records", spec.n_records), True)
    spec.test_n = _pos_num("test_n", c.get("test_n", spec.test_n), True)
    spec.w2_max_points = _pos_num("w2_max_points", c.get("w2_max_points", spec.w2_max_points), True)
    spec.n_projections = _pos_num("n_projections", c.get("n_projections", spec.n_projections), True)
    spec.figure = bool(c.get("figure", True))
    spec.name = str(c.get("name", "compare"))
    ref = dict(c.get("reference", {}))
    _unknown(ref, _REF, "reference.")
    if "N" not in ref:
        _err("reference.N", "required (reference size; Pham–Nguyen: n or [n1, n2])")
    if pn and isinstance(ref["N"], list):
        ref["N"] = [_pos_num("reference.N", v, True) for v in ref["N"]]
        if len(ref["N"]) != 2:
            _err("reference.N", "Pham–Nguyen reference is n or [n1, n2]")
    else:
        ref["N"] = _pos_num("reference.N", ref["N"], True)
    # no reference.dt: one reference per network step size, with the same step
    ref["dt"] = _pos_num("reference.dt", ref["dt"]) if "dt" in ref else None
    ref.setdefault("batch", "same")
    if ref["batch"] not in REF_BATCH:
        _err("reference.batch", f"must be one of {', '.join(REF_BATCH)}, got {ref['batch']!r}")
    big = ref["N"] if not isinstance(ref["N"], list) else min(ref["N"])
    for w in spec.widths:
        wm = max(w) if isinstance(w, list) else w
        if wm > big:
            _err("widths", f"width {w} exceeds the reference size {ref['N']}")
    spec.reference = ref
    fit = dict(c.get("fit", {}))
    _unknown(fit, _FIT, "fit.")
    fit.setdefault("x", "N")
    if fit["x"] not in ("N", "dt"):
        _err("fit.x", f"must be 'N' or 'dt', got {fit['x']!r}")
    fit.setdefault("quantity", "coupling_rms")
    if fit["quantity"] not in QUANTITIES:
        _err("fit.quantity", f"must be one of {', '.join(QUANTITIES)}, got {fit['quantity']!r}")
    fit.setdefault("at", "final")
    if fit["at"] not in ("final", "sup"):
        _err("fit.at", f"must be 'final' or 'sup', got {fit['at']!r}")
    fit.setdefault("agg", "mean")
    if fit["agg"] not in ("mean", "geomean", "median"):
        _err("fit.agg", f"must be 'mean', 'geomean' or 'median', got {fit['agg']!r}")
    fit["n_boot"] = _pos_num("fit.n_boot", fit.get("n_boot", 2000), True)
    fit["ci"] = float(fit.get("ci", 0.95))
    if not 0 < fit["ci"] < 1:
        _err("fit.ci", f"must be in (0, 1), got {fit['ci']!r}")
    fit.setdefault("ref_slope", -0.5 if fit["x"] == "N" else 0.5)
    spec.fit = fit
    # data kind / params checked by the data layer itself
    try:
        pspec = data_param_spec(data["kind"])
    except ValueError as exc:
        _err("data.kind", str(exc))
    for k in data:
        if k not in pspec and k not in ("kind", "seed"):
            _err(f"data.{k}", f"unknown parameter of data kind {data['kind']!r} "
                 f"(allowed: {', '.join(pspec)})")
    if spec.sampling == "online" and "online" not in pspec:
        _err("sampling", f"data kind {data['kind']!r} has no online sampler")
    return spec


# ============================================================================ running
@dataclass
class CompareResult:
    """Output of :func:`run_compare`: the file, the fits and the per-run errors."""

    path: str
    fits: dict
    figures: list
    seconds: float
    spec: CompareSpec


def run_name(N, seed, dt) -> str:
    """Group name of one run: ``N{N}_seed{s}_dt{dt}`` (PN: ``n{n1}x{n2}_seed{s}_dt{dt}``)."""
    w = f"n{N[0]}x{N[1]}" if isinstance(N, tuple) else f"N{N}"
    return f"{w}_seed{seed}_dt{dt:g}"


def _build(spec: CompareSpec):
    m = dict(spec.model)
    kind = m.pop("kind")
    if kind == "pham_nguyen":
        model = PNThreeLayer(**m)
    else:
        model = make_model(kind, **m)
    d = dict(spec.data)
    dkind = d.pop("kind")
    dseed = int(d.pop("seed", 0))
    data = make_dataset(dkind, seed=dseed, **d)
    sampler = None
    if "online" in data_param_spec(dkind):
        sampler = make_dataset(dkind, seed=dseed, online=True, **d)
        test = sampler.test_set(spec.test_n, seed=dseed + 1_000_003)
        test_kind = "fresh samples"
    else:
        test = data
        test_kind = "training set (no sampler for this data kind)"
    return model, data, sampler, test, test_kind


def _write_run(g, res, ref_info, spec):
    gs = g.create_group("series")
    for k, v in res.series.items():
        gs.create_dataset(k, data=np.asarray(v, dtype=np.float64))
    for k, v in res.attrs.items():
        g.attrs[k] = v
    if isinstance(res.N, tuple):
        g.attrs["n_min"] = min(res.N)
    else:
        g.attrs["n_min"] = int(res.N)
    for k, v in res.final.items():
        g.attrs[k] = v
    for k in ("N_ref", "n1_ref", "n2_ref", "ref_dt", "ref_method", "ref_batch"):
        if k in ref_info:
            g.attrs[k] = ref_info[k]
    g.attrs["seed"] = ref_info["seed"]


def _fits_from(spec, errs):
    """errs[(N, dt)][seed] -> value. Returns {name: RateFit}."""
    f = spec.fit
    seeds = spec.seeds
    widths = [tuple(w) if isinstance(w, list) else w for w in spec.widths]
    fits = {}

    def xval(w):
        return min(w) if isinstance(w, tuple) else w

    if f["x"] == "N":
        if len(widths) < 2:
            return fits
        for dt in spec.dts:
            x = np.array([xval(w) for w in widths], dtype=float)
            err = np.array([[errs[(w, dt)][s] for w in widths] for s in seeds])
            name = f"N_dt{dt:g}"
            fits[name] = fit_rate(x, err, n_boot=f["n_boot"], ci=f["ci"], agg=f["agg"],
                                  ref_slope=f["ref_slope"], x_name="n_min" if spec.is_pn else "N",
                                  quantity=f["quantity"], at=f["at"], fixed=f"dt={dt:g}")
    else:
        if len(spec.dts) < 2:
            return fits
        for w in widths:
            x = np.array(spec.dts, dtype=float)
            err = np.array([[errs[(w, dt)][s] for dt in spec.dts] for s in seeds])
            name = f"dt_N{xval(w)}" if not isinstance(w, tuple) else f"dt_n{w[0]}x{w[1]}"
            fits[name] = fit_rate(x, err, n_boot=f["n_boot"], ci=f["ci"], agg=f["agg"],
                                  ref_slope=f["ref_slope"], x_name="dt", quantity=f["quantity"],
                                  at=f["at"], fixed=f"N={w}")
    return fits


def _write_fit(g, fit: RateFit):
    for k in ("slope", "C", "ci_low", "ci_high", "ci_level", "n_boot", "ref_slope", "x_name",
              "quantity", "at", "fixed"):
        g.attrs[k] = getattr(fit, k)
    g.attrs["agg"] = fit.agg_kind
    for k in ("x", "err", "agg", "boot"):
        g.create_dataset(k, data=np.asarray(getattr(fit, k), dtype=np.float64))


def run_compare(config, out_path, quiet=False, *, stream=None) -> CompareResult:
    """Run a comparison (widths x seeds x step sizes), write ONE HDF5 file, fit the rates.

    Parameters
    ----------
    config : dict or path
        The ``[compare]`` table (or a whole config dict holding one, or a TOML file); schema in
        docs/finite-width.md, validated by :func:`parse_compare` before anything runs.
    out_path : path
        HDF5 output (overwritten). Figures ``<out_path stem>_<fit>.png`` go next to it when
        ``figure = true``.
    quiet : bool
        No progress output.

    Returns
    -------
    CompareResult
        ``path``, ``fits`` ({name: RateFit}), ``figures``, ``seconds``, ``spec``.
    """
    spec = parse_compare(config)
    out = stream if stream is not None else sys.stdout

    def say(msg):
        if not quiet:
            print(msg, file=out, flush=True)

    model, data, sampler, test, test_kind = _build(spec)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    widths = [tuple(w) if isinstance(w, list) else w for w in spec.widths]
    errs: dict = {(w, dt): {} for w in widths for dt in spec.dts}
    f = spec.fit
    from . import __version__ as _ver
    with h5py.File(out_path, "w") as h5:
        h5.attrs["format"] = FORMAT
        h5.attrs["schema_version"] = SCHEMA_VERSION
        h5.attrs["mfpde_version"] = str(_ver)
        h5.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        h5.attrs["config"] = json.dumps(spec.to_dict())
        h5.attrs["test_set"] = test_kind
        h5.attrs["status"] = "running"
        gc, gr = h5.create_group("compare"), h5.create_group("references")
        groups = [spec.dts] if spec.reference["dt"] is not None else [[dt] for dt in spec.dts]
        for seed in spec.seeds:
            for dts in groups:
                t0 = time.perf_counter()
                common = dict(dts=dts, T=spec.T, method=spec.method,
                              batch=spec.batch or None, sampling=spec.sampling, sampler=sampler,
                              ref_dt=spec.reference["dt"], ref_batch=spec.reference["batch"],
                              seed=seed, test=test, n_records=spec.n_records,
                              w2_max_points=spec.w2_max_points, n_projections=spec.n_projections)
                if spec.is_pn:
                    run: CouplingRun = couple_pn(model, data, n_ref=spec.reference["N"],
                                                 widths=widths, gamma=spec.gamma, **common)
                else:
                    run = couple_readout(model, data, N_ref=spec.reference["N"], widths=widths,
                                         beta=spec.beta, gamma=spec.gamma, **common)
                ref = run.reference
                rname = f"seed{seed}_dt{ref['ref_dt']:g}"
                g = gr.create_group(rname)
                for k, v in ref.items():
                    if isinstance(v, np.ndarray):
                        g.create_dataset(k, data=v)
                    else:
                        g.attrs[k] = v
                for (N, dt), res in run.results.items():
                    g = gc.create_group(run_name(N, seed, dt))
                    _write_run(g, res, ref, spec)
                    errs[(N, dt)][seed] = res.value(f["quantity"], f["at"])
                h5.flush()
                say(f"seed {seed}, dt {', '.join(f'{v:g}' for v in dts)}: reference "
                    f"{ref['seconds']:.1f} s, total {time.perf_counter() - t0:.1f} s; "
                    + ", ".join(f"{f['quantity']}[{N}]={errs[(N, dt)][seed]:.3g}"
                                for (N, dt) in run.results))
        fits = _fits_from(spec, errs)
        gf = h5.create_group("fits")
        for name, fit in fits.items():
            _write_fit(gf.create_group(name), fit)
            say("fit " + name + ": " + fit.summary())
        seconds = time.perf_counter() - t_start
        h5.attrs["seconds"] = seconds
        h5.attrs["status"] = "complete"
    figures = []
    if spec.figure and fits:
        for name, fit in fits.items():
            p = out_path.with_name(f"{out_path.stem}_{name}.png")
            plot_rate(fit, p, title=f"{spec.name}: {fit.quantity} vs {fit.x_name} ({fit.fixed})")
            figures.append(str(p))
            say(f"figure: {p}")
    return CompareResult(str(out_path), fits, figures, seconds, spec)


def read_compare(path) -> dict:
    """Read a comparison file: ``{"attrs", "config", "runs": {name: {"attrs", "series": {...}}},
    "references": {...}, "fits": {name: {"attrs", "x", "err", "agg", "boot"}}}``."""
    out: dict[str, Any] = {"runs": {}, "references": {}, "fits": {}}
    with h5py.File(path, "r") as h5:
        if h5.attrs.get("format") != FORMAT:
            raise ValueError(f"{path}: not an mfpde comparison file")
        out["attrs"] = {k: _py(v) for k, v in h5.attrs.items()}
        out["config"] = json.loads(out["attrs"]["config"])
        for top, key in (("compare", "runs"), ("references", "references"), ("fits", "fits")):
            if top not in h5:
                continue
            for name, g in h5[top].items():
                item = {"attrs": {k: _py(v) for k, v in g.attrs.items()}}
                for k, v in g.items():
                    if isinstance(v, h5py.Group):
                        item[k] = {kk: vv[()] for kk, vv in v.items()}
                    else:
                        item[k] = v[()]
                out[key][name] = item
    return out


def _py(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v
