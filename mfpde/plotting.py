"""Figures from stored runs only (matplotlib, Agg backend).

:func:`plot_run` draws the standard figure of a run file:

* top row: the observed series against time on log axes (log y where the values are positive):
  ``loss`` / ``reg_loss`` / ``test_loss``, ``free_energy``, ``nc1`` / ``nc1_papyan``, and the
  remaining quantities together;
* bottom row (when snapshots exist): histograms of the first particle coordinates at up to
  five snapshot times.

Missing series or snapshots simply leave their panel out; a run with nothing recorded yet gives
a figure saying so.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["plot_run", "series_panels", "coordinate_labels", "plot_analysis", "plot_rate"]

#: panel title -> quantities drawn in it (in this order)
PANELS = (
    ("risk", ("loss", "reg_loss", "test_loss")),
    ("free energy", ("free_energy",)),
    ("NC1", ("nc1", "nc1_papyan")),
)


def _mpl():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def series_panels(series: dict[str, np.ndarray]) -> list[tuple[str, list[str]]]:
    """Which panels to draw: ``[(title, [quantities present])]``."""
    present = [k for k in series if k not in ("t", "step")]
    panels, used = [], set()
    for title, names in PANELS:
        have = [n for n in names if n in present]
        if have:
            panels.append((title, have))
            used.update(have)
    rest = [k for k in present if k not in used]
    if rest:
        panels.append((", ".join(rest) if len(rest) <= 3 else "other quantities", rest))
    return panels


def coordinate_labels(config: dict[str, Any], D: int) -> list[str]:
    """Names of the particle coordinates, from the stored config (``a_i`` then ``u_j``)."""
    model = config.get("model", {}) if isinstance(config, dict) else {}
    kind = model.get("kind")
    n_a = 0
    if kind == "nc":
        n_a = int(model.get("p", 0))
    elif kind == "two_layer" and model.get("output", "trainable") == "trainable":
        n_a = int(model.get("q", 1) or 1)
    labels = [f"a_{i + 1}" for i in range(min(n_a, D))]
    labels += [f"u_{j + 1}" for j in range(D - len(labels))]
    return labels


#: y-axis label of each panel title (the quantities' common meaning)
YLABELS = {"risk": "risk", "free energy": "free energy", "NC1": "NC1"}


def _plot_series(ax, t: np.ndarray, series: dict[str, np.ndarray], names: list[str],
                 title: str) -> None:
    """Series against time. The time axis is logarithmic above the first positive time and
    linear below it (symlog), so ``t = 0`` stays on the plot; a curve equal to one already
    drawn (``reg_loss`` = ``loss`` when ``lambda = 0``) is drawn dashed on top and named as
    equal in the legend instead of being hidden."""
    all_pos = True
    drawn = []
    for name in names:
        y = np.asarray(series[name], dtype=float)
        ok = np.isfinite(y)
        if not ok.any():
            continue
        if np.any(y[ok] <= 0):
            all_pos = False
        same = next((n for n, yy in drawn if yy.shape == y.shape and
                     np.allclose(yy, y, rtol=1e-12, atol=0, equal_nan=True)), None)
        style = ("--" if same else "-") if ok.sum() > 1 else "o"
        label = f"{name} (= {same})" if same else name
        ax.plot(t[ok], y[ok], style, label=label, lw=1.4 if not same else 2.2, ms=4,
                alpha=1.0 if not same else 0.8)
        drawn.append((name, y))
    pos = t[t > 0]
    if drawn and pos.size:
        ax.set_xscale("symlog", linthresh=float(pos.min()), linscale=0.5)
    if drawn and all_pos:
        ax.set_yscale("log")
    if not drawn:
        ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("t (linear below the first observation, log above)" if pos.size else "t")
    ax.set_ylabel(YLABELS.get(title, names[0] if len(names) == 1 else "value"))
    ax.set_title(title)
    if drawn and len(names) > 1:
        ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)


def _pick_snapshots(n: int, k: int = 5) -> list[int]:
    if n <= k:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist()))


def _plot_marginals(plt, axes, loaded, field, prefix, labels, n_coord):
    """One row of histograms: marginals of ``snapshot.<field>`` coordinates at the snapshot times."""
    cmap = plt.get_cmap("viridis")
    for j, ax in enumerate(axes):
        if j >= n_coord:
            ax.axis("off")
            continue
        name = labels[j] if j < len(labels) else f"theta_{j}"
        spread = False
        for c, snap in enumerate(loaded):
            x = getattr(snap, field)[:, j]
            x = x[np.isfinite(x)]
            if x.size == 0:
                continue
            color = cmap(c / max(1, len(loaded) - 1))
            if np.ptp(x) <= 1e-12 * max(1.0, float(np.abs(x).max())):
                # a point mass (e.g. velocities at t = 0): a marker, not a spike that flattens
                # the other histograms
                ax.axvline(float(x[0]), color=color, lw=1.3, ls=":",
                           label=f"t = {snap.t:g} (all at {float(x[0]):g})")
                continue
            spread = True
            ax.hist(x, bins=min(60, max(10, int(np.sqrt(x.size)))), density=True,
                    histtype="step", color=color, lw=1.3, label=f"t = {snap.t:g}")
        ax.set_xlabel(f"{prefix}{name}")
        ax.set_ylabel("density" if spread else "")
        ax.set_title(f"marginal of {prefix}{name}")
        if j == 0:
            ax.legend(fontsize=7)


def _plot_grid(plt, axes, grid):
    """Grid-solver densities: 1-D curves at up to five snapshot times, or 2-D images of the first
    and last snapshot (phase space: theta horizontal, second axis vertical)."""
    dens, t = grid["density"], grid["t"]
    for ax in axes:
        ax.axis("off")
    if dens.ndim == 2:
        ax = axes[0]
        ax.axis("on")
        cmap = plt.get_cmap("viridis")
        picks = _pick_snapshots(len(t))
        for c, i in enumerate(picks):
            ax.plot(grid["axis0"], dens[i], color=cmap(c / max(1, len(picks) - 1)), label=f"t = {t[i]:g}")
        ax.set_xlabel("theta")
        ax.set_title("grid density")
        ax.legend(fontsize=7)
        return
    for ax, i in zip(axes[:2], (0, len(t) - 1)):
        ax.axis("on")
        e0, e1 = grid["edges0"], grid["edges1"]
        ax.imshow(dens[i].T, origin="lower", aspect="auto", extent=(e0[0], e0[-1], e1[0], e1[-1]))
        ax.set_xlabel("axis 0")
        ax.set_ylabel("axis 1")
        ax.set_title(f"grid density, t = {t[i]:g}")


def _plot_field_hists(plt, axes, run, snaps, names):
    """Histograms (densities) of every entry of each stored field (e.g. the Pham–Nguyen weights
    ``w1``, ``w2``, ``w3``) at up to five snapshot times."""
    cmap = plt.get_cmap("viridis")
    loaded = [(run.snapshot_times[i], run.fields(i)) for i in snaps]
    for ax in axes[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes, names):
        vals = [np.ravel(f[name]) for _, f in loaded]
        lo = min(float(v.min()) for v in vals)
        hi = max(float(v.max()) for v in vals)
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
        for c, ((t, _), v) in enumerate(zip(loaded, vals)):
            ax.hist(v, bins=bins, density=True, histtype="step", lw=1.3,
                    color=cmap(c / max(1, len(loaded) - 1)), label=f"t = {t:g}")
        ax.set_xlabel(f"entries of {name}")
        ax.set_ylabel("density")
        ax.set_title(f"{name} {tuple(loaded[0][1][name].shape)}")
        ax.legend(fontsize=7)


def plot_run(run, path: str | os.PathLike, *, coords: int = 3, dpi: int = 110) -> str:
    """Draw the standard figure of a stored run to ``path`` (PNG); returns the path.

    ``run`` is a :class:`mfpde.store.Run` or the path of a run file. Reads the series and at
    most five snapshots; ``coords`` is the number of particle coordinates shown.
    """
    from .store import Run, load

    if not isinstance(run, Run):
        run = load(run)
    if run.attrs.get("format") in ("mfpde-dropout", "mfpde-connect"):
        return plot_analysis(run, path, dpi=dpi)
    if run.attrs.get("format") == "mfpde-compare":
        return plot_compare(run.path, path, dpi=dpi)
    plt = _mpl()
    series = run.series
    t = np.asarray(series.get("t", np.zeros(0)), dtype=float)
    panels = series_panels(series) if t.size else []
    snaps = _pick_snapshots(run.n_snapshots)
    other = [] if "theta" in run.snapshot_fields else [f for f in run.snapshot_fields]
    field_snaps = snaps if other else []
    if other:
        snaps = []
    D = 0
    if snaps:
        first = run.snapshot(snaps[0])
        D = first.theta.shape[1]
    n_coord = min(coords, D)
    ncols = max(len(panels), n_coord, 1, min(len(other), 4))
    has_r = bool(snaps) and first.r is not None
    grid = run.grid()
    nrows = (1 if panels or not (snaps or grid or other) else 0) + (1 if snaps else 0) \
        + int(has_r) + int(grid is not None) + (1 if other else 0)
    if grid is not None:
        ncols = max(ncols, 2)
    nrows = max(nrows, 1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    row = 0
    if panels or not (snaps or grid):
        for j in range(ncols):
            ax = axes[row, j]
            if j < len(panels):
                title, names = panels[j]
                _plot_series(ax, t, series, names, title)
            else:
                ax.axis("off")
        if not panels:
            axes[row, 0].axis("on")
            axes[row, 0].text(0.5, 0.5, "no series recorded", ha="center", va="center",
                              transform=axes[row, 0].transAxes)
            axes[row, 0].set_xticks([])
            axes[row, 0].set_yticks([])
        row += 1
    if snaps:
        labels = coordinate_labels(run.config, D)
        loaded = [run.snapshot(i) for i in snaps]
        fields = [("theta", "")] + ([("r", "velocity ")] if has_r else [])
        for field, prefix in fields:
            _plot_marginals(plt, axes[row], loaded, field, prefix, labels, n_coord)
            row += 1
    if grid is not None:
        _plot_grid(plt, axes[row], grid)
        row += 1
    if other:
        _plot_field_hists(plt, axes[row], run, field_snaps, other[:ncols])
        row += 1
    kind = run.config.get("model", {}).get("kind", "") if run.config else ""
    fig.suptitle(f"{os.path.basename(run.path)}  ({kind}, status {run.status})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return os.fspath(path)


def plot_analysis(source, path: str | os.PathLike, *, dpi: int = 110) -> str:
    """Figure of a dropout or connectivity result file (``mfpde dropout`` / ``mfpde connect``,
    :mod:`mfpde.analysis`); returns the path.

    Dropout: the mean gap against ``M`` (log axes) with its standard errors, the exact-identity
    curve ``(1/M - 1/N) E_x s_x^2 / 2`` and the worst subsets; next to it the quantile spread
    ``q90 - q10`` with the exact s.d. of the linear term and reference slopes ``-1/2``, ``-1``.
    Connect: the loss along the path with its segments marked (affine segments shaded), the
    endpoint level ``max(L_A, L_B)`` and the bound ``max(L_A, L_B) + bound``; the straight line.
    """
    from .analysis import read_analysis
    from .store import Run

    r = read_analysis(source.path if isinstance(source, Run) else source)
    a = r["attrs"]
    plt = _mpl()
    name = os.path.basename(str(a.get("source", a.get("source_A", ""))))
    if r["format"] == "mfpde-dropout":
        g = r["dropout"]
        M = g["M"] if g["M"].ndim == 1 else g["M"][:, 1]
        xlab = "M (kept neurons)" if g["M"].ndim == 1 else "M2 (kept second-layer units)"
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10.4, 4.0))
        pos = g["mean"] > 0
        ax.errorbar(M[pos], g["mean"][pos], yerr=g["se"][pos], fmt="o", ms=4, capsize=2,
                    label=f"Monte Carlo mean ({a.get('n_subsets')} subsets) ± s.e.")
        if np.isfinite(g["exact"]).any():
            N = a.get("N", a.get("n2"))
            mm = np.geomspace(max(1.0, M.min() * 0.8), min(float(N), M.max() * 1.25), 200)
            ex = 0.5 * (1.0 / mm - 1.0 / N) * float(a.get("s2"))
            ok = ex > 0
            ax.plot(mm[ok], ex[ok], "k-", lw=1.2, label="exact: ½(1/M − 1/N) E_x s_x²")
        wp = g["worst"] > 0
        ax.plot(M[wp], g["worst"][wp], "v", color="C3", ms=4, label="worst sampled subset")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlab)
        ax.set_ylabel("L_M − L_N")
        ax.set_title("dropout gap")
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        lv = list(np.atleast_1d(a.get("quantile_levels", [])))
        if 0.1 in lv and 0.9 in lv:
            sp = g["quantiles"][:, lv.index(0.9)] - g["quantiles"][:, lv.index(0.1)]
            ok = sp > 0
            ax2.plot(M[ok], sp[ok], "o-", ms=4, label="quantile spread q90 − q10")
            if ok.any():
                m0, s0 = M[ok][0], sp[ok][0]
                ax2.plot(M, s0 * (M / m0) ** -0.5, "--", color="0.4", lw=0.9, label="slope −1/2")
                ax2.plot(M, s0 * (M / m0) ** -1.0, ":", color="0.4", lw=0.9, label="slope −1")
        ls = g["linear_sd"]
        if np.isfinite(ls).any() and (ls > 0).any():
            ok = ls > 0
            ax2.plot(M[ok], 2.563 * ls[ok], "s-", ms=3, color="C2",
                     label="2.563 × exact s.d. of the linear term")
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        import matplotlib.ticker as mticker
        for axis in (ax, ax2):
            axis.set_xticks(M)
            axis.set_xticklabels([f"{int(v)}" for v in M], fontsize=8)
            axis.xaxis.set_minor_locator(mticker.NullLocator())
        ax2.set_xlabel(xlab)
        ax2.set_title("spread over subsets")
        ax2.legend(fontsize=7)
        ax2.grid(True, which="both", alpha=0.3)
        width = f"{a['n1']}×{a['n2']}" if "n1" in a else f"N = {a.get('N')}"
        fig.suptitle(f"{name}: {a.get('kind')}, {width}, step {a.get('step')}", fontsize=10)
    else:
        p, st = r["path"], r.get("straight", {})
        segs, aff = a.get("segments", []), a.get("affine", [])
        fig, ax = plt.subplots(figsize=(8.4, 4.2))
        for j, (s, af) in enumerate(zip(segs, aff)):
            if af:
                ax.axvspan(j, j + 1, color="C0", alpha=0.07, lw=0)
            ax.axvline(j, color="0.6", lw=0.6)
            ax.text(j + 0.5, 1.01, s, transform=ax.get_xaxis_transform(), ha="center",
                    va="bottom", fontsize=8)
        ax.axvline(len(segs), color="0.6", lw=0.6)
        ax.plot(p["tau"], p["loss"], "-", color="C0", lw=1.5, label=f"{a.get('kind')} path")
        if st.get("loss") is not None and np.size(st["loss"]):
            ax.plot(st["tau"] * len(segs), st["loss"], "--", color="C3", lw=1.2,
                    label=f"straight line (barrier {a.get('straight_barrier'):.3g})")
        top = max(a.get("loss_A"), a.get("loss_B"))
        ax.axhline(top, color="k", lw=0.8, label="max(L_A, L_B)")
        ax.axhline(top + a.get("bound"), color="C2", lw=0.9, ls="-.",
                   label=f"max(L_A, L_B) + bound ({a.get('bound'):.3g}); barrier "
                         f"{a.get('barrier'):.3g}")
        if np.all(p["loss"] > 0) and (not np.size(st.get("loss", [])) or np.all(st["loss"] > 0)):
            ax.set_yscale("log")
        ax.set_xlim(0, len(segs))
        ax.set_xlabel("path parameter (segment j + s; shaded: output affine in s)")
        ax.set_ylabel("loss")
        ax.legend(fontsize=7, loc="best")
        width = f"{a['n1']}×{a['n2']}" if "n1" in a else f"N = {a.get('N')}"
        fig.suptitle(f"{name} ↔ {os.path.basename(str(a.get('source_B', '')))}: {width}",
                     fontsize=10, y=0.995)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return os.fspath(path)


def plot_compare(file, path: str | os.PathLike, *, dpi: int = 110) -> str:
    """The rate-fit figure of a comparison file (``mfpde compare``): every fit stored in it,
    rebuilt from ``/fits`` (:func:`plot_rate`)."""
    from .metrics.rates import RateFit
    from .store import read_compare
    r = read_compare(file)
    fits = []
    for fit in r["fits"].values():
        a = fit["attrs"]
        fits.append(RateFit(x=np.asarray(fit["x"]), err=np.asarray(fit["err"]),
                            agg=np.asarray(fit["agg"]), slope=float(a["slope"]), C=float(a["C"]),
                            ci_low=float(a["ci_low"]), ci_high=float(a["ci_high"]),
                            ci_level=float(a["ci_level"]), n_boot=int(a["n_boot"]),
                            boot=np.asarray(fit["boot"]), ref_slope=float(a["ref_slope"]),
                            x_name=str(a["x_name"]), quantity=str(a["quantity"]),
                            at=str(a["at"]), agg_kind=str(a["agg"]), fixed=str(a["fixed"])))
    if not fits:
        raise ValueError(f"{file}: the comparison has no rate fits to draw")
    name = r["config"].get("name", os.path.basename(os.fspath(file)))
    return plot_rate(fits, path, title=f"{os.path.basename(os.fspath(file))}: {name}")


def plot_rate(fits, path: str | os.PathLike, *, title: str | None = None,
              xlabel: str | None = None, ylabel: str | None = None, dpi: int = 110) -> str:
    """Rate-fit figure: error against ``x`` on log-log axes with the per-seed values, the seed
    aggregate, the fitted line ``C x^s`` (slope and bootstrap interval in the legend) and a
    dashed line of the reference slope through the aggregate's centre.

    ``fits`` is one :class:`~mfpde.metrics.rates.RateFit` or a list (one colour each). Returns
    the path written.
    """
    import math

    import matplotlib.ticker

    from .metrics.rates import RateFit

    plt = _mpl()
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
