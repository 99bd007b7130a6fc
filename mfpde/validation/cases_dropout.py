r"""Validation cases: dropout stability, connectivity and global convergence of SGD and heavy-ball
solutions (Wu, Kungurtsev & Mondelli, TMLR 2023), and the heavy-ball rate in the step.

Theory: theory/metrics.md §7, validation.md §V3, §V10–§V12, dynamics.md §5 (heavy ball), §6.3.

==================================  ==========================================================
case                                what is measured
==================================  ==========================================================
``dropout.stability``               §V10: networks trained by SGD and by heavy ball at 3+
                                    widths; Monte Carlo dropout gap over random subsets against
                                    the exact identity (z-scores); collapse of the gap curves
                                    across N for M << N; slopes -1 (mean) and -1/2 (quantile
                                    spread) in M; SGD against SHB
``dropout.connectivity``            §V11: pairs of independently trained networks at 3+
                                    widths: barrier <= larger half-dropout gap (exact, every
                                    pair); mean barrier ~ N^-1; the straight line is worse
``dropout.global_convergence``      §V12: realizable teacher, two-layer and Pham–Nguyen
                                    networks under GD and heavy ball: R(T)/R(0) <= 1e-3;
                                    negative controls (initial law without full support: all
                                    neurons at one point; width n1 = 1) fail
``dropout.shb_rate_eps``            §V3: online heavy ball (batch 1) against its population
                                    (full-batch) limit: phase-space coupling distance ~ eps^{1/2}
                                    (the N-rate case is ``compare.shb_rate_N``)
==================================  ==========================================================

Regimes (docs/dropout-connectivity.md). The gap of one subset is a linear term of mean 0 and
s.d. :math:`\sqrt{1/M - 1/N}\,\mathrm{sd}_i(\ell_i)` plus a quadratic term of mean
:math:`\frac12(1/M - 1/N)E_x s_x^2` (metrics/dropout.py). §V10 uses the networks of
validation.md (SGD at ``eps = 0.05``, ``T = 10``, still learning): the linear term dominates the
spread, whose slope is then ``-1/2``. §V11 needs the half gaps to be dominated by their mean
``E_x s_x^2/(2N)`` (slope ``-1``); its networks are trained close to a stationary point (step
``0.5``, ``T = 50``), where the linear coefficients :math:`\ell_i` are small; the ratio
``kappa = linear s.d./mean gap`` at ``M = N/2`` is reported with the slope.

The ``experiment_*`` functions return the measured numbers (reused by the tests).
"""
from __future__ import annotations

import math

import numpy as np

from . import Check, register

Z_MAX = 4.0             # Bonferroni-style bound for |z| over ~40-100 (method, N, M) cells
SLOPE_TOL = 0.15        # validation.md general protocol: predicted slope +- 0.15
SLOPE_TOL_BARRIER = 0.2  # barrier slope: pre-asymptotic bias from the linear term (kappa)
COLLAPSE_TOL = 0.25     # relative spread over N of the mean gap at M << N
RATIO_RANGE = (0.5, 2.0)  # "SGD and SHB comparable"
CONVERGED = 1e-3        # §V12: R(T)/R(0) <= 1e-3
FAILED = 5e-3           # negative controls stay above 5 x the success threshold ...
STALLED = 0.85          # ... and stall: R(T)/R(T/2) > 0.85 (converging runs: about 0.4-0.5)


def fit_slope(x, y) -> float:
    """Least-squares slope of ``log y`` against ``log x``."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def _figure(ncols=1, width=5.0, height=3.8):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width * ncols, height))
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def _rng_seed(*parts) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(p) for p in parts])


# ============================================================================ set-ups
def teacher_data(level="quick", n=None, d=10):
    """D2 teacher–student data (tanh teacher, ``k* = 3``, noiseless: realizable)."""
    from ..data import make_dataset
    return make_dataset("teacher_student", seed=0, n=1000 if n is None else n, d=d, k_star=3)


#: trainers of §V10 (validation.md: SGD batch 32, eps = 0.05, T = 10; heavy ball with
#: gamma = 2 at the same step, i.e. momentum mu = 1 - gamma eps = 0.9)
V10_METHODS = {"SGD": dict(method="sgd", dt=0.05, batch=32, T=10.0),
               "SHB": dict(method="shb", dt=0.05, gamma=2.0, batch=32, T=10.0)}
#: trainers of §V11: close to a stationary point (step 0.5, T = 50; heavy ball mu = 0.5)
V11_METHODS = {"SGD": dict(method="sgd", dt=0.5, batch=32, T=50.0),
               "SHB": dict(method="shb", dt=0.5, gamma=1.0, batch=32, T=50.0)}


def train(model, data, N, spec, seed):
    """Train a width-``N`` network with ``spec`` (a :data:`V10_METHODS` entry); returns the
    :class:`~mfpde.metrics.dropout.Network`."""
    from ..dynamics.sgd import make_trainer
    from ..metrics.dropout import Network
    kw = {k: v for k, v in spec.items() if k != "T"}
    tr = make_trainer(model, data, N=int(N), seed=seed, **kw)
    tr.step(int(round(spec["T"] / spec["dt"])))
    return Network(model, tr.theta.copy(), None if tr.W is None else tr.W.copy())


# ============================================================================ V10
def v10_sizes(level):
    quick = level == "quick"
    return dict(widths=[256, 1024, 4096] if quick else [256, 512, 1024, 2048, 4096, 8192],
                K=200 if quick else 1000)


def experiment_stability(level="quick", seed=0, widths=None, K=None, methods=None):
    """§V10. Returns ``{(method, N): DropoutResult}``."""
    from ..metrics.dropout import dropout_gaps
    from ..models import make_model
    sz = v10_sizes(level)
    widths = sz["widths"] if widths is None else widths
    K = sz["K"] if K is None else K
    data = teacher_data(level)
    model = make_model("two_layer", d=data.X.shape[1], activation="tanh")
    out = {}
    for mi, (label, spec) in enumerate((methods or V10_METHODS).items()):
        for N in widths:
            net = train(model, data, N, spec, _rng_seed(seed, 10, mi, N))
            Ms = [2 ** k for k in range(4, int(math.log2(N)))]          # 16 .. N/2
            sub_seed = int(_rng_seed(seed, 11, mi, N).generate_state(1)[0])
            out[(label, N)] = dropout_gaps(net, data.X, data.Y, Ms, n_subsets=K, seed=sub_seed)
    return out


def _meff(r):
    return 1.0 / (1.0 / r.M - 1.0 / r.width)


def stability_checks(name, res):
    checks = []
    zs = np.concatenate([r.z for r in res.values()])
    zmax = float(np.max(np.abs(zs)))
    checks.append(Check(name, "max |z| of Monte Carlo mean gap vs exact identity", zmax,
                        f"<= {Z_MAX:g} ({zs.size} (method, N, M) cells)", zmax <= Z_MAX,
                        note="z = (mean - exact)/s.e.; exact = (1/M - 1/N) E_x s_x^2 / 2"))
    mz2 = float(np.mean(zs ** 2))
    checks.append(Check(name, "mean z^2 (calibration of the standard errors)", mz2,
                        "in [0.4, 1.8] (chi^2/dof of independent cells)", 0.4 <= mz2 <= 1.8))
    methods = sorted({k[0] for k in res})
    widths = sorted({k[1] for k in res})
    for label in methods:
        rels, rels_mc = [], []
        for M in (16, 32):
            j = [list(res[(label, N)].M).index(M) for N in widths]
            g = np.array([res[(label, N)].exact[i] for N, i in zip(widths, j)])
            h = np.array([res[(label, N)].mean[i] for N, i in zip(widths, j)])
            rels.append(float((g.max() - g.min()) / g.mean()))
            rels_mc.append(float((h.max() - h.min()) / h.mean()))
        checks.append(Check(name, f"{label}: collapse across N: (max - min)/mean over N of the "
                            f"expected gap at M = 16, 32", max(rels),
                            f"<= {COLLAPSE_TOL} (N = {widths})", max(rels) <= COLLAPSE_TOL,
                            note=f"exact identity: M=16 {rels[0]:.3f}, M=32 {rels[1]:.3f}; Monte "
                            f"Carlo means (with their s.e.): {rels_mc[0]:.3f}, {rels_mc[1]:.3f}"))
    worst_mean, worst_spread, notes_m, notes_s, kap = 0.0, 0.0, [], [], []
    for (label, N), r in sorted(res.items()):
        me = _meff(r)
        ok = r.mean > 3 * r.se                       # resolved means
        sm = fit_slope(me[ok], r.mean[ok]) if ok.sum() >= 2 else math.nan
        sp = r.spread()
        ss = fit_slope(me[sp > 0], sp[sp > 0])
        worst_mean = max(worst_mean, abs(sm + 1.0)) if math.isfinite(sm) else math.inf
        worst_spread = max(worst_spread, abs(ss + 0.5))
        notes_m.append(f"{label} N={N}: {sm:.3f}")
        notes_s.append(f"{label} N={N}: {ss:.3f}")
        kap.append(float(r.linear_sd[0] / r.exact[0]))
    checks.append(Check(name, "max |slope + 1| of the mean gap vs M_eff = (1/M - 1/N)^-1",
                        worst_mean, f"<= {SLOPE_TOL} (slope -1)", worst_mean <= SLOPE_TOL,
                        note="; ".join(notes_m) + " (M with mean > 3 s.e.)"))
    checks.append(Check(name, "max |slope + 1/2| of the quantile spread q90 - q10 vs M_eff",
                        worst_spread, f"<= {SLOPE_TOL} (slope -1/2)", worst_spread <= SLOPE_TOL,
                        note="; ".join(notes_s) + "; linear s.d./mean gap at M = 16: "
                        + ", ".join(f"{k:.2f}" for k in kap)))
    if len(methods) == 2:
        a, b = methods
        ratios = [res[(b, N)].s2 / res[(a, N)].s2 for N in widths]
        sp_r = [res[(b, N)].spread()[0] / res[(a, N)].spread()[0] for N in widths]
        allr = ratios + sp_r
        ok = all(RATIO_RANGE[0] <= v <= RATIO_RANGE[1] for v in allr)
        checks.append(Check(name, f"{b}/{a}: ratios of E_x s_x^2 and of the spread at M = 16",
                            f"[{min(allr):.3f}, {max(allr):.3f}]",
                            f"in [{RATIO_RANGE[0]}, {RATIO_RANGE[1]}] for every N", ok,
                            note="E s^2: " + ", ".join(f"{v:.3f}" for v in ratios)
                            + "; spread: " + ", ".join(f"{v:.3f}" for v in sp_r)))
    return checks


def _plot_stability(ctx, res):
    fig, (ax, ax2) = _figure(2)
    methods = sorted({k[0] for k in res})
    widths = sorted({k[1] for k in res})
    for mi, label in enumerate(methods):
        for ni, N in enumerate(widths):
            r = res[(label, N)]
            c = f"C{ni}"
            mk = "o" if mi == 0 else "s"
            ok = r.mean > 0
            ax.errorbar(r.M[ok], r.mean[ok], yerr=r.se[ok], fmt=mk, color=c, ms=3.5,
                        mfc="none" if mi else c, capsize=1.5, label=f"{label} N={N}")
            ax.plot(r.M, r.exact, "-", color=c, lw=0.8)
            sp = r.spread()
            ax2.plot(r.M, sp, mk + "-", color=c, ms=3.5, mfc="none" if mi else c, lw=0.8,
                     label=f"{label} N={N}")
    s16 = float(np.mean([r.spread()[0] for r in res.values()]))
    M = np.array([16.0, max(max(r.M) for r in res.values())])
    ax2.plot(M, 1.3 * s16 * (M / 16.0) ** -0.5, "k--", lw=0.8, label="slope -1/2")
    ax2.plot(M, 1.3 * s16 * (M / 16.0) ** -1.0, "k:", lw=0.8, label="slope -1")
    for a, t in ((ax, "mean gap (markers) and exact identity (lines)"),
                 (ax2, "quantile spread q90 - q10")):
        a.set_xscale("log", base=2)
        a.set_yscale("log")
        a.set_xlabel("M")
        a.set_title(t, fontsize=9)
        a.legend(fontsize=6, ncol=2)
    ctx.save(fig, "gaps")


@register("dropout.stability", quick=True, full=True)
def case_stability(ctx):
    name = "dropout.stability"
    res = experiment_stability(ctx.level, ctx.seed)
    _plot_stability(ctx, res)
    return stability_checks(name, res)


# ============================================================================ V11
def v11_sizes(level):
    quick = level == "quick"
    return dict(widths=[64, 128, 256, 512, 1024] if quick
                else [64, 128, 256, 512, 1024, 2048, 4096],
                pairs=8 if quick else 16, straight_points=11 if quick else 40)


def experiment_connectivity(level="quick", seed=0, widths=None, pairs=None, methods=None,
                            straight_points=None):
    """§V11. Returns ``{(method, N): [ConnectResult, ...]}`` and ``kappa`` per (method, N)
    (linear s.d./mean of the half gap, averaged over the networks)."""
    from ..metrics.connectivity import connect
    from ..metrics.dropout import dropout_gaps
    from ..models import make_model
    sz = v11_sizes(level)
    widths = sz["widths"] if widths is None else widths
    pairs = sz["pairs"] if pairs is None else pairs
    sp = sz["straight_points"] if straight_points is None else straight_points
    data = teacher_data(level)
    model = make_model("two_layer", d=data.X.shape[1], activation="tanh")
    out, kappa = {}, {}
    for mi, (label, spec) in enumerate((methods or V11_METHODS).items()):
        for N in widths:
            nets = [train(model, data, N, spec, _rng_seed(seed, 20, mi, N, s))
                    for s in range(2 * pairs)]
            out[(label, N)] = [connect(nets[2 * p], nets[2 * p + 1], data.X, data.Y, points=40,
                                       straight_points=sp) for p in range(pairs)]
            ks = []
            for net in nets[:2]:
                r = dropout_gaps(net, data.X, data.Y, [N // 2], n_subsets=2)
                ks.append(float(r.linear_sd[0] / r.exact[0]))
            kappa[(label, N)] = float(np.mean(ks))
    return out, kappa


def connectivity_checks(name, res, kappa):
    from ..metrics.rates import fit_rate
    checks = []
    allr = [r for rs in res.values() for r in rs]
    excess = max(r.barrier - r.bound for r in allr)
    tol = max(r.tol for r in allr)
    n_fail = sum(not r.holds for r in allr)
    checks.append(Check(name, "max over pairs of (barrier - bound)", excess,
                        f"<= round-off ({tol:.1e}) for all {len(allr)} pairs", n_fail == 0,
                        note="bound = max(half-dropout gaps of A[I1] and B[I2], 0); "
                        f"{n_fail} violations"))
    methods = sorted({k[0] for k in res})
    widths = sorted({k[1] for k in res})
    for label in methods:
        B = np.array([[r.barrier for r in res[(label, N)]] for N in widths]).T   # (pairs, n_N)
        mean = B.mean(axis=0)
        if np.all(B > 0):
            f = fit_rate(np.array(widths, float), B, ref_slope=-1.0, quantity="barrier",
                         n_boot=2000)
            slope, lo, hi = f.slope, f.ci_low, f.ci_high
        else:
            slope, lo, hi = fit_slope(widths, mean), math.nan, math.nan
        ks = ", ".join(f"{kappa[(label, N)]:.2f}" for N in widths)
        ok = abs(slope + 1.0) <= SLOPE_TOL_BARRIER
        checks.append(Check(name, f"{label}: slope of the mean barrier in N", round(slope, 4),
                            f"-1 ± {SLOPE_TOL_BARRIER}", ok,
                            note=f"95% bootstrap CI over {B.shape[0]} pairs [{lo:.3f}, {hi:.3f}]; "
                            "N x mean barrier = "
                            + ", ".join(f"{N * m:.3f}" for N, m in zip(widths, mean))
                            + f"; kappa(N/2) = {ks}"))
        st = np.array([[r.straight_barrier for r in res[(label, N)]] for N in widths])
        ratios = st.mean(axis=1) / mean
        checks.append(Check(name, f"{label}: min over N of mean straight-line / mean path barrier",
                            float(ratios.min()), "> 1 at every N (straight line worse)",
                            bool(np.all(ratios > 1.0)),
                            note="ratios " + ", ".join(f"{v:.3g}" for v in ratios)
                            + f"; pairs with a lower straight-line barrier: "
                            f"{int(np.sum(st <= B.T))} of {st.size}"))
    return checks


def _plot_connectivity(ctx, res):
    fig, (ax, ax2) = _figure(2)
    methods = sorted({k[0] for k in res})
    widths = sorted({k[1] for k in res})
    for mi, label in enumerate(methods):
        B = np.array([[r.barrier for r in res[(label, N)]] for N in widths])
        S = np.array([[r.straight_barrier for r in res[(label, N)]] for N in widths])
        ax.plot(np.repeat(widths, B.shape[1]), B.ravel(), ".", color=f"C{mi}", alpha=0.4)
        ax.plot(widths, B.mean(axis=1), "o-", color=f"C{mi}", label=f"{label}: five-segment")
        ax.plot(widths, S.mean(axis=1), "s--", color=f"C{mi}", mfc="none",
                label=f"{label}: straight line")
    w = np.array(widths, float)
    B0 = np.mean([r.barrier for r in res[(methods[0], widths[0])]])
    ax.plot(w, B0 * (w / w[0]) ** -1.0, "k:", lw=0.8, label="slope -1")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("N")
    ax.set_ylabel("barrier")
    ax.legend(fontsize=7)
    r = res[(methods[0], widths[-1])][0]
    ax2.plot(r.tau, r.loss, "-", label="five-segment path")
    ax2.plot(r.straight_tau * 5, r.straight_loss, "--", label="straight line")
    for j in range(6):
        ax2.axvline(j, color="0.7", lw=0.6)
    top = max(r.loss_A, r.loss_B)
    ax2.axhline(top + r.bound, color="C2", lw=0.8, ls="-.", label="max(L_A, L_B) + bound")
    ax2.set_yscale("log")
    ax2.set_xlabel(f"path parameter (segments P1..P5), N = {widths[-1]}")
    ax2.set_ylabel("loss")
    ax2.legend(fontsize=7)
    ctx.save(fig, "barrier")


@register("dropout.connectivity", quick=True, full=True)
def case_connectivity(ctx):
    name = "dropout.connectivity"
    res, kappa = experiment_connectivity(ctx.level, ctx.seed)
    _plot_connectivity(ctx, res)
    return connectivity_checks(name, res, kappa)


# ============================================================================ V12
def v12_sizes(level):
    if level == "quick":
        return dict(n=200, N=256, eps=1.0, T=1600.0, gamma=0.4, n_pn=32, eps_pn=2.0,
                    T_pn=3200.0, n_records=32)
    return dict(n=1000, N=2000, eps=0.5, T=2000.0, gamma=0.4, n_pn=128, eps_pn=2.0,
                T_pn=4000.0, n_records=40)


def _run_curve(driver, risk, steps, n_records):
    """Risk at ``n_records + 1`` equally spaced step counts (0 included)."""
    ks = np.unique(np.round(np.linspace(0, steps, n_records + 1)).astype(int))
    R = [risk()]
    for a, b in zip(ks[:-1], ks[1:]):
        driver.step(int(b - a))
        R.append(risk())
    return ks, np.array(R)


def experiment_global(level="quick", seed=0):
    """§V12. Returns ``{label: dict(t, R, ratio, control, extra)}``."""
    from .._blas import blas_threads
    from ..dynamics import PNDriver
    from ..dynamics.sgd import make_trainer
    from ..models import make_model
    from ..models.three_layer_pn import PNThreeLayer
    sz = v12_sizes(level)
    data = teacher_data(level, n=sz["n"], d=5)
    X, Y = data.X, data.Y
    m = make_model("two_layer", d=5, activation="tanh")
    pm = PNThreeLayer(5)
    out = {}
    eps, T, g = sz["eps"], sz["T"], sz["gamma"]
    steps = int(round(T / eps))
    rng = np.random.default_rng(_rng_seed(seed, 30))
    theta_full = m.init_particles(sz["N"], rng)
    one = m.init_particles(1, rng)
    theta_dirac = np.repeat(one, 16, axis=0)         # all neurons at one point (no full support)
    runs = [("two-layer GD", dict(method="gd"), theta_full, False),
            ("two-layer SHB", dict(method="shb", gamma=g), theta_full, False),
            ("two-layer GD, all neurons at one point", dict(method="gd"), theta_dirac, True),
            ("two-layer SHB, all neurons at one point", dict(method="shb", gamma=g), theta_dirac,
             True)]
    with blas_threads(0):
        for label, kw, th0, control in runs:
            tr = make_trainer(m, data, N=th0.shape[0], dt=eps, theta0=th0, seed=seed, **kw)
            ks, R = _run_curve(tr, lambda: m.risk(tr.theta, X, Y), steps, sz["n_records"])
            extra = {}
            if control:
                extra["spread"] = float(np.abs(tr.theta - tr.theta[0]).max())
            out[label] = dict(t=ks * eps, R=R, ratio=float(R[-1] / R[0]), control=control,
                              extra=extra, N=th0.shape[0], T=T)
        e2, T2 = sz["eps_pn"], sz["T_pn"]
        steps2 = int(round(T2 / e2))
        w_full = pm.init_weights(sz["n_pn"], sz["n_pn"], np.random.default_rng(_rng_seed(seed, 31)))
        w_one = pm.init_weights(1, sz["n_pn"], np.random.default_rng(_rng_seed(seed, 32)))
        for label, kw, w0, control in [
                ("Pham–Nguyen GD", dict(method="sgd"), w_full, False),
                ("Pham–Nguyen SHB", dict(method="shb", gamma=g), w_full, False),
                ("Pham–Nguyen GD, n1 = 1", dict(method="sgd"), w_one, True),
                ("Pham–Nguyen SHB, n1 = 1", dict(method="shb", gamma=g), w_one, True)]:
            dr = PNDriver(pm, data, dt=e2, weights0=w0, seed=seed, **kw)
            ks, R = _run_curve(dr, lambda: pm.risk(dr.w, X, Y), steps2, sz["n_records"])
            out[label] = dict(t=ks * e2, R=R, ratio=float(R[-1] / R[0]), control=control,
                              extra={}, N=(w0.n1, w0.n2), T=T2)
    return out


def global_checks(name, res):
    checks = []
    for label, r in res.items():
        half = float(r["R"][-1] / r["R"][(len(r["R"]) - 1) // 2])
        if not r["control"]:
            checks.append(Check(name, f"{label}: R(T)/R(0)", r["ratio"], f"<= {CONVERGED:g}",
                                r["ratio"] <= CONVERGED,
                                note=f"width {r['N']}, T = {r['T']:g}, R(0) = {r['R'][0]:.3g}, "
                                f"R(T)/R(T/2) = {half:.3f}"))
        else:
            ok = r["ratio"] > FAILED and half > STALLED
            checks.append(Check(name, f"{label} (negative control): R(T)/R(0); R(T)/R(T/2)",
                                f"{r['ratio']:.4g}; {half:.3f}",
                                f"> {FAILED:g}; > {STALLED} (stalled, fails to converge)", ok,
                                note=f"width {r['N']}, T = {r['T']:g}"))
            if "spread" in r["extra"]:
                s = r["extra"]["spread"]
                checks.append(Check(name, f"{label}: max |theta_i - theta_1| at T", s,
                                    "= 0 (the neurons never separate)", s == 0.0))
    return checks


def _plot_global(ctx, res):
    fig, (ax,) = _figure(1, width=6.4, height=4.2)
    for i, (label, r) in enumerate(res.items()):
        ax.plot(r["t"] / r["T"], r["R"] / r["R"][0], "--" if r["control"] else "-",
                color=f"C{i // 2 * 2 + (i % 2)}", label=label)
    ax.axhline(CONVERGED, color="k", lw=0.8, ls=":", label="1e-3")
    ax.set_yscale("log")
    ax.set_xlabel("t / T")
    ax.set_ylabel("R(t)/R(0)")
    ax.legend(fontsize=6)
    ctx.save(fig, "risk")


@register("dropout.global_convergence", quick=True, full=True)
def case_global(ctx):
    name = "dropout.global_convergence"
    res = experiment_global(ctx.level, ctx.seed)
    _plot_global(ctx, res)
    return global_checks(name, res)


# ============================================================================ V3 in eps
def shb_rate_eps_config(level="quick") -> dict:
    """§V3 in eps: the ``[compare]`` table of ``compare.two_layer_rate_eps`` (online SGD with
    batch 1 against its full-batch population flow, ``N_ref = N``, reference step ``min(dts)/2``)
    with heavy ball instead of SGD: ``gamma = 2``, velocity form, phase-space distance
    ``(theta, r)``."""
    from .cases_compare import rate_eps_config
    cfg = rate_eps_config(level)
    c = cfg["compare"]
    c.update(name="V3 online heavy ball, rate in eps", method="shb", gamma=2.0)
    c["fit"] = dict(c["fit"], quantity="phase_rms")
    return cfg


@register("dropout.shb_rate_eps", quick=True, full=True)
def case_shb_rate_eps(ctx):
    from ..compare import run_compare
    from ..plotting import plot_rate
    name = "dropout.shb_rate_eps"
    cfg = shb_rate_eps_config(ctx.level)
    res = run_compare(cfg, ctx.outdir / "dropout_shb_rate_eps.h5", quiet=True)
    N = cfg["compare"]["widths"][0]
    f = res.fits[f"dt_N{N}"]
    plot_rate(f, ctx.figure("rate"), title=f"{cfg['compare']['name']} ({ctx.level})")
    lo, hi = 0.5 - SLOPE_TOL, 0.5 + SLOPE_TOL
    return [Check(name, f"slope of {f.quantity} vs {f.x_name}", round(f.slope, 4),
                  f"in [{lo}, {hi}] (theory +0.5)", lo <= f.slope <= hi,
                  note=f"95% bootstrap CI [{f.ci_low:.3f}, {f.ci_high:.3f}], {f.err.shape[0]} "
                  f"seeds, N = {N}, gamma = 2, dt in [{f.x.min():g}, {f.x.max():g}]; "
                  f"{res.seconds:.0f} s")]
