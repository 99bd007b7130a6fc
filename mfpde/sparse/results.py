r"""Results of a sparse-recovery experiment: in memory, in an HDF5 file, as a figure.

File layout (the run-file schema of :mod:`mfpde.store`, written through
:meth:`mfpde.store.RunStore.create`; documented in docs/sparse.md)::

    /                           attrs: schema_version, mfpde_version, config (resolved TOML),
                                       created, updated, seed, status, message,
                                       kind = "sparse", sparse_layout = 1, seconds
    /series/step                int64   (steps,)  iteration s = 0 .. steps-1
    /series/t                   float64 (steps,)  = s
    /series/<method>.loss       float64 (steps,)  mean over runs of the loss before update s
    /series/<method>.dist       float64 (steps,)  mean over runs of ||θ_{s+1} - θ*||
    /sparse/theta_star          float64 (runs, d)
    /sparse/theta0              float64 (runs, d)
    /sparse/k_star, /sparse/k   int64   (runs,)
    /sparse/<method>/loss, dist, rel_dist, precision, recall, time   float64 (runs, steps)
    /sparse/<method>/x_final    float64 (runs, d)
    /sparse/<method>/eta        float64 (runs,)   numeric step of each run
    /sparse/<method>/diverged   bool    (runs,)
                                attrs: method, eta_rule, damping, curvature

The figure (:func:`plot_results`) shows loss and distance against the iteration, the mean over
runs with a ± one standard deviation band (clipped at a small positive value on the log axes).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

__all__ = ["MethodResult", "SparseResult", "write_results", "read_results", "plot_results",
           "LAYOUT_VERSION", "QUANTITIES"]

#: version of the ``/sparse`` group layout (the root schema is :data:`mfpde.store.SCHEMA_VERSION`)
LAYOUT_VERSION = 1
#: per-iteration quantities, arrays of shape (runs, steps)
QUANTITIES = ("loss", "dist", "rel_dist", "precision", "recall", "time")
#: relative error below which a run counts as an exact recovery
EXACT = 1e-6


@dataclass
class MethodResult:
    """One method over all runs: arrays of shape (runs, steps) ``loss`` (before update ``s``),
    ``dist`` / ``rel_dist`` (after), ``precision``, ``recall``, ``time`` (cumulative seconds);
    ``x_final`` (runs, d), ``eta`` (runs,), ``diverged`` (runs,) bool."""

    method: str
    loss: np.ndarray
    dist: np.ndarray
    rel_dist: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    time: np.ndarray
    x_final: np.ndarray
    eta: np.ndarray
    diverged: np.ndarray
    eta_rule: str = ""
    damping: str = ""
    curvature: str = "hessian"

    def final(self, q: str = "dist") -> np.ndarray:
        """Last value of quantity ``q`` of every run (runs,)."""
        return getattr(self, q)[:, -1]

    def summary(self) -> dict[str, float]:
        """Final mean / std (``ddof = 0``) of loss and distance, exact recoveries
        (``rel_dist < 1e-6``), mean seconds per iteration."""
        fl, fd = self.final("loss"), self.final("dist")
        steps = self.time.shape[1]
        return {"loss_mean": float(np.mean(fl)), "loss_std": float(np.std(fl)),
                "dist_mean": float(np.mean(fd)), "dist_std": float(np.std(fd)),
                "rel_dist_mean": float(np.mean(self.final("rel_dist"))),
                "exact": int(np.sum(self.final("rel_dist") < EXACT)),
                "runs": int(fl.size), "diverged": int(np.sum(self.diverged)),
                "s_per_iter": float(np.nanmean(self.time[:, -1])) / steps}


@dataclass
class SparseResult:
    """Result of :func:`mfpde.sparse.run_experiment`: ``spec``, ``methods`` ({name:
    :class:`MethodResult`}), ``theta_star`` / ``theta0`` (runs, d), ``k_star`` / ``k`` (runs,),
    ``seconds``."""

    spec: Any
    methods: dict[str, MethodResult]
    theta_star: np.ndarray
    theta0: np.ndarray
    k_star: np.ndarray
    k: np.ndarray
    seconds: float = 0.0
    path: str = ""

    @property
    def steps(self) -> int:
        return next(iter(self.methods.values())).loss.shape[1]

    def summary(self) -> dict[str, dict[str, float]]:
        return {m: r.summary() for m, r in self.methods.items()}

    def table(self, steps=None) -> list[dict[str, Any]]:
        """Rows ``{step, <method>.loss, <method>.dist}`` of the means at ``steps`` (default
        0, 100, 300, 500 and the last step, as in the published table)."""
        S = self.steps
        steps = [s for s in (steps or (0, 100, 300, 500, S - 1)) if s < S]
        rows = []
        for s in steps:
            row: dict[str, Any] = {"step": s}
            for m, r in self.methods.items():
                row[f"{m}.loss"] = float(np.mean(r.loss[:, s]))
                row[f"{m}.dist"] = float(np.mean(r.dist[:, s]))
            rows.append(row)
        return rows


def write_results(result: SparseResult, path: str | os.PathLike, *, overwrite: bool = True) -> str:
    """Write ``result`` to ``path`` (layout: module docstring). The file is built as
    ``path + ".part"`` and renamed when complete, so ``path`` never holds a partial file."""
    from ..store import RunStore
    from .experiment import spec_to_toml
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists")
    part = path.with_name(path.name + ".part")
    steps = result.steps
    names = [f"{m}.{q}" for m in result.methods for q in ("loss", "dist")]
    store = RunStore.create(part, config_text=spec_to_toml(result.spec), seed=result.spec.seed,
                            quantities=names, overwrite=True,
                            attrs={"kind": "sparse", "sparse_layout": np.int64(LAYOUT_VERSION)})
    try:
        f = store.f
        s = f["series"]
        cols = {"step": np.arange(steps, dtype=np.int64), "t": np.arange(steps, dtype=np.float64)}
        for m, r in result.methods.items():
            with np.errstate(invalid="ignore"):
                cols[f"{m}.loss"] = np.mean(r.loss, axis=0)
                cols[f"{m}.dist"] = np.mean(r.dist, axis=0)
        for name, col in cols.items():
            s[name].resize((steps,))
            s[name][:] = col
        g = f.create_group("sparse", track_order=True)
        g.create_dataset("theta_star", data=result.theta_star)
        g.create_dataset("theta0", data=result.theta0)
        g.create_dataset("k_star", data=np.asarray(result.k_star, dtype=np.int64))
        g.create_dataset("k", data=np.asarray(result.k, dtype=np.int64))
        for m, r in result.methods.items():
            gm = g.create_group(m, track_order=True)
            for q in QUANTITIES:
                gm.create_dataset(q, data=getattr(r, q))
            gm.create_dataset("x_final", data=r.x_final)
            gm.create_dataset("eta", data=r.eta)
            gm.create_dataset("diverged", data=np.asarray(r.diverged, dtype=bool))
            gm.attrs["method"] = m
            gm.attrs["eta_rule"] = r.eta_rule
            gm.attrs["damping"] = r.damping
            gm.attrs["curvature"] = r.curvature
        store.set_attrs(seconds=float(result.seconds))
        store.set_status("complete")
    finally:
        store.close()
    os.replace(part, path)
    result.path = str(path)
    return str(path)


def read_results(path: str | os.PathLike) -> SparseResult:
    """Read a file written by :func:`write_results` (or ``mfpde sparse``)."""
    import tomllib

    from ..store import StoreError, _check_schema, _open_read
    from .experiment import parse_spec
    path = os.fspath(path)
    with _open_read(path) as f:
        _check_schema(f, path)
        if f.attrs.get("kind") != "sparse" or "sparse" not in f:
            raise StoreError(f"{path}: not a sparse-recovery results file")
        spec = parse_spec(tomllib.loads(str(f.attrs["config"])))
        g = f["sparse"]
        methods = {}
        for m in g:
            gm = g[m]
            if not isinstance(gm, h5py.Group):
                continue
            methods[m] = MethodResult(method=m, **{q: gm[q][()] for q in QUANTITIES},
                                      x_final=gm["x_final"][()], eta=gm["eta"][()],
                                      diverged=gm["diverged"][()].astype(bool),
                                      eta_rule=str(gm.attrs.get("eta_rule", "")),
                                      damping=str(gm.attrs.get("damping", "")),
                                      curvature=str(gm.attrs.get("curvature", "hessian")))
        order = [m for m in spec.methods if m in methods]
        return SparseResult(spec=spec, methods={m: methods[m] for m in order},
                            theta_star=g["theta_star"][()], theta0=g["theta0"][()],
                            k_star=g["k_star"][()], k=g["k"][()],
                            seconds=float(f.attrs.get("seconds", 0.0)), path=path)


def plot_results(result: SparseResult, path: str | os.PathLike, *, reference: dict | None = None,
                 loss_label: str | None = None, title: str | None = None, dpi: int = 100) -> str:
    """Loss and distance ``||θ - θ*||`` against the iteration, mean ± std over runs (bands),
    log y axes. ``reference``: published points ``{"steps": [...], method: {"loss": [...],
    "dist": [...]}}`` drawn as markers (e.g. :data:`mfpde.sparse.experiment.PAPER_SETUP_A`)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    fig = Figure(figsize=(10.5, 3.8))
    axes = [fig.add_subplot(1, 2, i + 1) for i in range(2)]
    steps = np.arange(result.steps)
    colors = ["C0", "C3", "C2", "C1", "C4", "C5", "C6"]
    tiny = 1e-300
    for c, (m, r) in zip(colors, result.methods.items()):
        for ax, q in zip(axes, ("loss", "dist")):
            a = getattr(r, q)
            with np.errstate(invalid="ignore"):
                mu, sd = np.mean(a, axis=0), np.std(a, axis=0)
            ax.plot(steps, mu, color=c, lw=1.4, label=m)
            lo = np.maximum(mu - sd, np.maximum(mu * 1e-3, tiny))
            ax.fill_between(steps, lo, mu + sd, color=c, alpha=0.25, lw=0)
            if reference and m in reference:
                ax.plot(reference["steps"], reference[m][q], "o", mfc="none", color=c, ms=6,
                        label=f"{m} (paper)")
    spec = result.spec
    loss_label = loss_label or ("(1/n)||X theta - y||^2" if getattr(spec, "loss", "") == "mse"
                                else "f(theta)")
    axes[0].set_ylabel(f"loss {loss_label} (before update)")
    axes[1].set_ylabel("||theta - theta*|| (after update)")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both", lw=0.4)
    runs = result.theta_star.shape[0]
    fig.suptitle(title or f"{spec.name}: mean ± std over {runs} runs", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return str(path)
