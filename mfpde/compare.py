r"""Comparison jobs: finite-width networks against the mean-field reference, and their rates.

``run_compare(config, out_path)`` runs widths x seeds x step sizes of synchronously coupled
networks (:func:`mfpde.coupling.couple_readout` / :func:`~mfpde.coupling.couple_pn`), writes
everything to ONE HDF5 file (:class:`mfpde.store.CompareWriter`, layout in
docs/finite-width.md §4), fits the error rates (:func:`mfpde.metrics.rates.fit_rate`) and draws
one figure per fit (:func:`mfpde.plotting.plot_rate`). ``mfpde compare CONFIG`` and
``mfpde run CONFIG`` with a ``[compare]`` section call it.

The configuration is the ``[compare]`` section of the one configuration system
(:class:`mfpde.config.CompareConfig`), validated before anything runs: bad input is a
:class:`~mfpde.config.ConfigError` naming ``compare.<field>`` and no file is written.
"""
from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .config import CompareConfig, Config, ConfigError, load_config, parse_config
from .metrics.rates import RateFit, fit_rate
from .plotting import plot_rate
from .store import COMPARE_FORMAT as FORMAT
from .store import COMPARE_SCHEMA_VERSION as SCHEMA_VERSION
from .store import CompareWriter, read_compare

__all__ = ["run_compare", "compare_config", "parse_compare", "CompareResult", "RateFit",
           "fit_rate", "plot_rate", "read_compare", "FORMAT", "SCHEMA_VERSION", "run_name",
           "unit_key", "unit_count", "CompareConfigError"]

#: former error class of the ``[compare]`` validator: configuration errors are ConfigError
CompareConfigError = ConfigError


# ============================================================================ configuration
def compare_config(config: Any) -> Config:
    """The validated configuration of a comparison job.

    ``config`` is a :class:`~mfpde.config.Config` with a ``[compare]`` section, a dict holding a
    ``compare`` table (or the table itself), or the path of a TOML file."""
    if isinstance(config, Config):
        cfg = config
        name = "the configuration"
    elif isinstance(config, (str, os.PathLike)):
        cfg = load_config(config)
        name = os.fspath(config)
    elif isinstance(config, Mapping):
        raw = dict(config) if "compare" in config else {"compare": dict(config)}
        cfg = parse_config(raw)
        name = "the configuration"
    else:
        raise ConfigError(f"a comparison config is a table, a Config or a TOML path, got "
                          f"{type(config).__name__}")
    if cfg.compare is None:
        raise ConfigError(f"{name} has no [compare] section")
    return cfg


def parse_compare(config: Any) -> CompareConfig:
    """The validated ``[compare]`` section (see :func:`compare_config`); errors are
    :class:`~mfpde.config.ConfigError` naming ``compare.<field>``."""
    return compare_config(config).compare


# ============================================================================ running
@dataclass
class CompareResult:
    """Output of :func:`run_compare`: the file, the fits and the figures."""

    path: str
    fits: dict
    figures: list
    seconds: float
    spec: CompareConfig


def run_name(N, seed, dt) -> str:
    """Group name of one run: ``N{N}_seed{s}_dt{dt}`` (PN: ``n{n1}x{n2}_seed{s}_dt{dt}``)."""
    w = f"n{N[0]}x{N[1]}" if isinstance(N, tuple) else f"N{N}"
    return f"{w}_seed{seed}_dt{dt:g}"


def _build(spec: CompareConfig):
    """Model, data, sampler and held-out set of a comparison (bad input: ConfigError)."""
    from .build import build_data, make_model
    from .data import make_dataset
    from .rules import PN_KIND

    mc, dc = spec.model, spec.data
    data, _, _ = build_data(dc, where="compare.data")
    d = int(data.X.shape[1])
    Y = np.asarray(data.Y)
    q = 1 if Y.ndim == 1 else int(Y.shape[1])
    if mc.d is not None and mc.d != d:
        raise ConfigError(f"compare.model.d = {mc.d}: the data ({dc.kind}) have d = {d} inputs; "
                          f"remove compare.model.d or set it to {d}")
    if mc.kind == PN_KIND:
        if q != 1:
            raise ConfigError(f"compare.model.kind = {PN_KIND!r} has a scalar output; the data "
                              f"({dc.kind}) have q = {q} outputs")
    elif mc.q is not None and mc.q != q:
        raise ConfigError(f"compare.model.q = {mc.q}: the data ({dc.kind}) have q = {q} "
                          f"outputs; remove compare.model.q or set it to {q}")
    model = make_model(mc, d, q, where="compare.model")
    sampler = None
    if dc.has_sampler:
        sampler = make_dataset(dc.kind, seed=dc.seed, online=True, **dc.params)
        test = sampler.test_set(spec.test_n, seed=dc.seed + 1_000_003)
        test_kind = "fresh samples"
    else:
        test = data
        test_kind = "training set (no sampler for this data kind)"
    return model, data, sampler, test, test_kind


def _step_groups(spec: CompareConfig) -> list[list[float]]:
    """Step sizes run against one reference: all (with ``reference.dt``) or one at a time."""
    dts = [float(dt) for dt in spec.dts]
    return [dts] if spec.reference.dt is not None else [[dt] for dt in dts]


def unit_count(spec: CompareConfig) -> int:
    """Number of units (seed x step-size group) of a comparison."""
    return len(spec.seeds) * len(_step_groups(spec))


def _check_times(spec: CompareConfig) -> None:
    """``T``, the record times and every network step are multiples of the reference step
    (the rule of :func:`mfpde.coupling.record_times`), checked before any file exists."""
    from .coupling import record_times

    for dts in _step_groups(spec):
        ref_dt = spec.reference.dt if spec.reference.dt is not None else dts[0]
        try:
            record_times(spec.T, ref_dt, dts, spec.n_records)
        except ValueError as exc:
            where = "compare.T / compare.dts / compare.n_records" + \
                (" / compare.reference.dt" if spec.reference.dt is not None else "")
            raise ConfigError(f"{where}: {exc}") from None


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, Mapping):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def _fits_from(spec: CompareConfig, errs) -> dict[str, RateFit]:
    """``errs[(N, dt)][seed]`` -> ``{name: RateFit}`` (one fit per dt, or one per width)."""
    f = spec.fit
    seeds = list(spec.seeds)
    widths = [tuple(w) if isinstance(w, list) else w for w in spec.widths]
    fits = {}

    def xval(w):
        return min(w) if isinstance(w, tuple) else w

    common = dict(n_boot=f.n_boot, ci=f.ci, agg=f.agg, ref_slope=f.ref_slope,
                  quantity=f.quantity, at=f.at)
    if f.x == "N":
        if len(widths) < 2:
            return fits
        for dt in spec.dts:
            x = np.array([xval(w) for w in widths], dtype=float)
            err = np.array([[errs[(w, dt)][s] for w in widths] for s in seeds])
            fits[f"N_dt{dt:g}"] = fit_rate(x, err, x_name="n_min" if spec.is_pn else "N",
                                           fixed=f"dt={dt:g}", **common)
    else:
        if len(spec.dts) < 2:
            return fits
        for w in widths:
            x = np.array(spec.dts, dtype=float)
            err = np.array([[errs[(w, dt)][s] for dt in spec.dts] for s in seeds])
            name = f"dt_N{xval(w)}" if not isinstance(w, tuple) else f"dt_n{w[0]}x{w[1]}"
            fits[name] = fit_rate(x, err, x_name="dt", fixed=f"N={w}", **common)
    return fits


def unit_key(seed, dts) -> str:
    """Key of one unit of a comparison (a seed and a group of step sizes, one coupled run)."""
    return f"seed{seed}_dt" + ",".join(f"{dt:g}" for dt in dts)


@functools.lru_cache(maxsize=2)
def _built(config_toml: str):
    """Config, model, data, sampler and held-out set of a comparison (cached per process)."""
    cfg = parse_config(tomllib.loads(config_toml))
    return (cfg.compare, *_build(cfg.compare))


def _run_unit(config_toml: str, seed: int, dts: tuple[float, ...], team=None, stop=None):
    """One unit of a comparison: the coupled run of ``seed`` and the step sizes ``dts``
    (:func:`mfpde.coupling.couple_readout` / :func:`~mfpde.coupling.couple_pn`); a task of
    :mod:`mfpde.executors`, seeded by ``seed`` alone. Returns the ``CouplingRun``. With
    ``team`` (a :class:`mfpde.parallel.Team`; read-out models) every rank of the team calls
    it and the reference is split over them; the run is returned on rank 0."""
    from .coupling import couple_pn, couple_readout

    spec, model, data, sampler, test, _ = _built(config_toml)
    widths = [tuple(w) if isinstance(w, list) else w for w in spec.widths]
    ref_N = list(spec.reference.N) if isinstance(spec.reference.N, list) else spec.reference.N
    common = dict(dts=list(dts), T=spec.T, method=spec.method, batch=spec.batch or None,
                  sampling=spec.sampling, sampler=sampler, ref_dt=spec.reference.dt,
                  ref_batch=spec.reference.batch, seed=seed, test=test,
                  n_records=spec.n_records, w2_max_points=spec.w2_max_points,
                  n_projections=spec.n_projections)
    if spec.is_pn:
        return couple_pn(model, data, n_ref=ref_N, widths=widths, gamma=spec.gamma, **common)
    return couple_readout(model, data, N_ref=ref_N, widths=widths, beta=spec.beta,
                          gamma=spec.gamma, noise_stream=spec.reference.noise_stream,
                          team=team, stop=stop, **common)


def run_compare(config, out_path, quiet=False, *, stream=None,
                figure_path=None, resume=False, pool=None) -> CompareResult:
    """Run a comparison (widths x seeds x step sizes), write ONE HDF5 file, fit the rates.

    Parameters
    ----------
    config : Config, dict or path
        A configuration with a ``[compare]`` section (or the table itself, or a TOML file);
        schema in docs/finite-width.md, validated before anything runs.
    out_path : path
        HDF5 output (created or replaced; ``mfpde run`` / ``mfpde compare`` pass a temporary
        ``OUT.h5.part`` and rename it, see :func:`mfpde.runner.run`). Its directory must exist.
    figure_path : path, optional
        Where the figures are named from (default ``out_path``): ``<stem>_<fit>.png`` next to
        it when ``compare.figure = true``.
    quiet : bool
        No progress output.
    stream : text stream for progress (default stdout)
    resume : bool
        Continue the unfinished file ``out_path`` of the same ``[compare]`` table: its finished
        units (:class:`~mfpde.store.CompareWriter`) are kept and not run again. Every unit is
        seeded by its seed alone, so the result equals that of an uninterrupted job.
    pool : :class:`mfpde.executors.TaskPool`, optional
        Where the units run (default: in this process, in order); the file is the same for
        every executor (its units are written as they finish).

    Returns
    -------
    CompareResult
        ``path``, ``fits`` ({name: RateFit}), ``figures``, ``seconds``, ``spec`` (the
        ``[compare]`` section).

    Raises
    ------
    ConfigError
        Bad input (nothing written).
    """
    from .executors import TaskPool

    cfg = compare_config(config)
    spec = cfg.compare
    out = stream if stream is not None else sys.stdout
    pool = pool if pool is not None else TaskPool(None, 1)

    def say(msg):
        if not quiet:
            print(msg, file=out, flush=True)

    _check_times(spec)
    config_toml = cfg.to_toml()
    test_kind = _built(config_toml)[-1]      # bad input fails here, before any file exists
    out_path = Path(out_path)
    fig_path = Path(figure_path) if figure_path is not None else out_path
    t_start = time.perf_counter()
    widths = [tuple(w) if isinstance(w, list) else w for w in spec.widths]
    errs: dict = {(w, dt): {} for w in widths for dt in spec.dts}
    f = spec.fit
    config_json = json.dumps(_json_safe(spec.to_dict()))

    def label(dts):
        return f"dt {', '.join(f'{v:g}' for v in dts)}"

    with CompareWriter(out_path, config=config_json, test_set=test_kind, resume=resume) as w:
        done = w.done
        units = [(seed, tuple(dts)) for seed in spec.seeds for dts in _step_groups(spec)]
        todo = []
        for seed, dts in units:
            key = unit_key(seed, dts)
            if key in done:
                for dt in dts:
                    for N in widths:
                        errs[(N, dt)][seed] = done[key][run_name(N, seed, dt)]
                say(f"seed {seed}, {label(dts)}: kept from the interrupted job")
            else:
                todo.append((seed, dts))
        if not pool.in_process and todo:
            say(f"{len(todo)} units on {pool.workers} processes")
        for j, run in pool.imap(_run_unit, [(config_toml, s, d) for s, d in todo]):
            seed, dts = todo[j]
            ref = run.reference
            ref_name = f"seed{seed}_dt{ref['ref_dt']:g}"
            names = {wd: run_name(wd[0], seed, wd[1]) for wd in run.results}
            w.add_reference(ref_name, ref)
            for wd, res in run.results.items():
                w.add_run(names[wd], res, ref, ref["seed"])
                errs[wd][seed] = res.value(f.quantity, f.at)
            w.unit_done(unit_key(seed, dts), [f"references/{ref_name}"]
                        + [f"compare/{n}" for n in names.values()],
                        {n: errs[wd][seed] for wd, n in names.items()})
            total = ref["seconds"] + sum(r.attrs.get("seconds", 0.0) for r in run.results.values())
            say(f"seed {seed}, {label(dts)}: reference {ref['seconds']:.1f} s, total "
                f"{total:.1f} s; " + ", ".join(f"{f.quantity}[{N}]={errs[(N, dt)][seed]:.3g}"
                            for (N, dt) in run.results))
        fits = _fits_from(spec, errs)
        for name, fit in fits.items():
            w.add_fit(name, fit)
            say("fit " + name + ": " + fit.summary())
        seconds = time.perf_counter() - t_start
        w.finish(seconds)
    figures = []
    if spec.figure and fits:
        for name, fit in fits.items():
            p = fig_path.with_name(f"{fig_path.stem}_{name}.png")
            plot_rate(fit, p, title=f"{spec.name}: {fit.quantity} vs {fit.x_name} ({fit.fixed})")
            figures.append(str(p))
            say(f"figure: {p}")
    return CompareResult(str(out_path), fits, figures, seconds, spec)
