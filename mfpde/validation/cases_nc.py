"""Validation cases of Wu & Mondelli (ICML 2025): neural collapse in the mean-field regime.

Theory: validation.md §K4, §K6, §V5–§V9, §V14; metrics.md §1, §3, §4; dynamics.md §7.
Measurements: :mod:`mfpde.metrics.stationarity`, :mod:`mfpde.metrics.collapse`,
:mod:`mfpde.engine.averages`; algorithms: :mod:`mfpde.two_stage`; docs/neural-collapse.md.

Each experiment is a plain function returning its measurements (the tests call them at small
sizes); each case prints every bound next to the measured value. Sizes: ``quick`` runs on 2 cores
in minutes; ``full`` uses the sizes validation.md lists under HPC.

- ``nc.k4_oracle`` [§K4]: NC1 (Wu–Mondelli) and NC1_P (Papyan) of the synthetic oracle within 2%
  of the population values; NC2 -> 0, NC4 = 0 for ``s_w << s_b``.
- ``nc.k6_stage1_gibbs`` [§K6]: long particle Stage 1 (``W`` frozen) against the importance
  sampling fixed point, untruncated and with the truncated read-out.
- ``nc.v5_stationary`` [§V5]: ``r12``, ``r6`` fall along the run and scale like ``N^{-1/2}`` at
  stationarity; Corollary 4.4 and the measured ``E_2`` bound at every recorded time.
- ``nc.v6_lemma45`` [§V6, §V7]: Lemma 4.5 (``W`` trained and frozen) and the balancedness bound
  on time averages; negative control at the wrong temperature.
- ``nc.v8_beta_sweep`` [§V8]: plateau ``P(beta) ~ 1/beta``, ``t_0(beta) ~ beta``, final NC1
  decreasing in ``beta``, early decay rate ~ ``Gamma^2``.
- ``nc.v9_separable`` [§V9]: the two-stage algorithm on bounded separable data: balanced test
  error decreasing with ``n``, NC1 small after Stage 2; random-label control.
- ``nc.v14_digits`` [§V14]: the offline analogue of the MNIST-mod-3 experiment (runs a, b, c).
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..data import Dataset, digits_mod3, gaussian_mixture, one_hot, separable, separable_sampler
from ..dynamics.langevin import LangevinSolver
from ..engine import Controller, MemorySink, every
from ..engine.averages import TimeAverage
from ..metrics import collapse as col
from ..metrics import stationarity as st
from ..models import make_model
from ..observables import Observers
from ..two_stage import (NanTolerantSeries, Stage, driver_view, run_stages, stage1_gibbs,
                         truncated, two_stage)
from . import Check, register

#: the paper's normalised balancedness of its four MNIST-mod-3 runs (W frozen, noiseless SGD)
PAPER_MNIST_NB = (0.81, 0.71, 0.59, 0.85)


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------
def nc_data(q=3, m=4, d=4, seed=0) -> Dataset:
    """The small NC problem of validation.md §V5–§V8: Gaussian classes (sep 1, std 0.8),
    normalised to ``|x| <= 0.99``, plus the distinct coordinate of Assumption 2 (``d + 1``
    inputs)."""
    data = gaussian_mixture(q=q, m=m, d=d, sep=1.0, std=0.8, seed=seed).normalized(0.99)
    return data.with_extra_coordinate(seed=seed + 1)


def run_langevin(model, data, *, N, dt, beta, steps, seed=0, train_W=True, observe=(),
                 every_steps=50, test=None, trackers=(), W0=None, theta0=None, batch=None,
                 beta_noise=None):
    """One Langevin run under the controller. ``beta_noise``: the solver's temperature when it
    differs from the nominal ``beta`` of the observables (negative controls). Returns
    ``(solver, series)`` with the series as arrays."""
    bn = beta if beta_noise is None else beta_noise
    solver = LangevinSolver(model, data, N=N, dt=dt, beta=bn, train_W=train_W, seed=seed,
                            W0=W0, theta0=theta0, batch=batch)
    sink = MemorySink()
    trs = list(trackers)
    if observe:
        obs = Observers(list(observe), model, data, test=test, beta=beta)
        trs = [NanTolerantSeries(obs, sink, every(steps=int(every_steps)))] + trs
    Controller(driver_view(solver), trs, n_steps=int(steps)).run()
    return solver, sink.arrays()


def fit_slope(x, y) -> float:
    """Least-squares slope of ``log y`` against ``log x``."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _fmt(x) -> str:
    return f"{x:.4g}"


# --------------------------------------------------------------------------------------------
# K4: synthetic oracle, both NC1 conventions
# --------------------------------------------------------------------------------------------
def k4_oracle(n=10_000, s_w=0.5, s_b=2.0, seed=0) -> list[dict]:
    """NC1 and NC1_P of :func:`~mfpde.metrics.collapse.nc_oracle` features against their
    population values for ``q in {2, 3, 10}``, ``p in {q, 4q}`` (validation.md §K4); plus NC2 and
    NC4 at ``s_w = 0.01 s_b``."""
    rows = []
    rng = np.random.default_rng(seed)
    for q in (2, 3, 10):
        for p in (q, 4 * q):
            H, lab, means = col.nc_oracle(q, p, n // q, s_w, s_b, rng)
            H2, lab2, means2 = col.nc_oracle(q, p, n // q, 0.01 * s_b, s_b, rng)
            nc2 = col.nc2(H2, lab2)
            out = H2 @ (means2 - means2.mean(0)).T           # linear read-out by the class means
            rows.append(dict(q=q, p=p, nc1=col.nc1(H, lab), nc1_pop=col.nc1_population(p, s_w, s_b),
                             nc1p=col.nc1_papyan(H, lab),
                             nc1p_pop=col.nc1_papyan_population(q, s_w, s_b),
                             equinorm=nc2["equinorm_means"], equiangular=nc2["equiangular_means"],
                             nc4=col.nc4(H2, lab2, out)))
    return rows


@register("nc.k4_oracle", quick=True)
def case_k4(ctx):
    name = "nc.k4_oracle"
    rows = k4_oracle(n=10_000 if ctx.quick else 100_000, seed=ctx.seed)
    checks = []
    for r in rows:
        tag = f"q={r['q']}, p={r['p']}"
        e1 = abs(r["nc1"] / r["nc1_pop"] - 1)
        e2 = abs(r["nc1p"] / r["nc1p_pop"] - 1)
        checks.append(Check(name, f"NC1 (Wu–Mondelli) {tag}", r["nc1"],
                            f"{_fmt(r['nc1_pop'])} ± 2%", e1 <= 0.02))
        checks.append(Check(name, f"NC1_P (Papyan, 1/q tr(S_W S_B^+)) {tag}", r["nc1p"],
                            f"{_fmt(r['nc1p_pop'])} ± 2%", e2 <= 0.02))
        checks.append(Check(name, f"NC2 equinorm, equiangularity, NC4 at s_w = 0.01 s_b {tag}",
                            max(r["equinorm"], r["equiangular"], r["nc4"]), "<= 0.01",
                            max(r["equinorm"], r["equiangular"], r["nc4"]) <= 0.01))
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    lab = [f"q={r['q']},p={r['p']}" for r in rows]
    x = np.arange(len(rows))
    for a, key, pop, title in ((ax[0], "nc1", "nc1_pop", "NC1 (Wu–Mondelli, in [0, 1])"),
                               (ax[1], "nc1p", "nc1p_pop", "NC1_P (Papyan, unbounded)")):
        a.bar(x - 0.2, [r[key] for r in rows], 0.4, label="measured")
        a.bar(x + 0.2, [r[pop] for r in rows], 0.4, label="population")
        a.set_xticks(x, lab, rotation=45, fontsize=7)
        a.set_title(title, fontsize=9)
        a.legend(fontsize=7)
    ctx.save(fig, "oracle")
    return checks


# --------------------------------------------------------------------------------------------
# K6: Stage-1 Gibbs measure, particles vs the fixed point
# --------------------------------------------------------------------------------------------
def k6_stage1(R=math.inf, *, N=1000, steps=5000, dt=0.025, beta=20.0, Gamma=2.0, samples=100_000,
              seed=0) -> dict:
    """Particle Stage 1 (``W`` frozen at ``W_0``) on the small NC problem, time-averaged over the
    last two thirds, against :func:`~mfpde.two_stage.stage1_gibbs` (validation.md §K6)."""
    lam = 1.0 / beta
    data = nc_data()
    model = make_model("nc", d=5, q=3, p=4, Gamma=Gamma, lam=lam, lam_W=lam)
    if math.isfinite(R):
        model = truncated(model, R)
    T = steps * dt
    ta = TimeAverage(model, data, every(steps=10), start=T / 3)
    t0 = time.perf_counter()
    solver, _ = run_langevin(model, data, N=N, dt=dt, beta=beta, steps=steps, seed=seed + 11,
                             train_W=False, trackers=[ta])
    t_part = time.perf_counter() - t0
    t0 = time.perf_counter()
    g = stage1_gibbs(model, data, solver.W, beta, n_samples=samples, batches=4, seed=seed + 5)
    t_gibbs = time.perf_counter() - t0
    a = ta.averages()
    A, U = solver.theta[:, :model.p], solver.theta[:, model.p:]
    # the conditional law a | u of the Gibbs form, at the particles' own G (their H fluctuates
    # at O(N^-1/2) around the fixed point's, and the a_j follow it)
    Gp = st.nc_snapshot(model, solver.theta, data.X, data.Y, solver.W, kernel=False).G
    mu, var = g.a_mean(U, Gp), g.a_var(U, Gp)
    dev = A - mu
    z = np.abs(dev.mean(0)) / (dev.std(0) / math.sqrt(N))
    return dict(R=R, N=N, H_rel=float(np.linalg.norm(a["H"] - g.H) / np.linalg.norm(g.H)),
                risk_p=a["risk"], risk_fp=g.risk, risk_se=g.risk_se,
                risk_rel=abs(a["risk"] - g.risk) / g.risk, z_mean=float(z.max()),
                var_ratio=(dev**2).mean(0) / var.mean(0), ess=g.ess, ess_fraction=g.ess_fraction,
                residual=g.residual, iterations=g.iterations, H_rel_se=g.H_rel_se,
                lemma_frozen=ta.lemma45_frozen(beta), H_p=a["H"], H_fp=g.H, A=A, mu=mu,
                history=g.history, seconds=(t_part, t_gibbs), count=a["count"])


@register("nc.k6_stage1_gibbs", quick=True)
def case_k6(ctx):
    name = "nc.k6_stage1_gibbs"
    kw = (dict(N=1000, steps=5000, samples=100_000) if ctx.quick
          else dict(N=4000, steps=20_000, samples=400_000))
    res = [k6_stage1(math.inf, seed=ctx.seed, **kw), k6_stage1(1.0, seed=ctx.seed, **kw)]
    checks = []
    for r in res:
        tag = "untruncated" if math.isinf(r["R"]) else f"tau_R, R={r['R']:g}"
        checks += [
            Check(name, f"{tag}: |H_particles - H_fixed point|_F / |H_fp|_F", r["H_rel"],
                  f"<= 0.05 (fixed point's own MC error {r['H_rel_se']:.1e})", r["H_rel"] <= 0.05),
            Check(name, f"{tag}: risk particles vs fixed point", r["risk_p"],
                  f"{_fmt(r['risk_fp'])} ± 5% (fp MC error {r['risk_se']:.1e})", r["risk_rel"] <= 0.05),
            Check(name, f"{tag}: max z-score of mean_j(a_j - E[a|u_j]) (Gibbs form at the "
                  f"particles' G)", r["z_mean"],
                  "< 4 (standard errors)", r["z_mean"] < 4),
            Check(name, f"{tag}: Var(a - E[a|u]) / Var[a|u] (worst coordinate; 1/(beta lam) "
                  f"untruncated)", float(r["var_ratio"][np.argmax(np.abs(r["var_ratio"] - 1))]),
                  f"1 ± {4 * math.sqrt(2 / r['N']):.3f} (4 standard errors of a variance of N)",
                  bool(np.all(np.abs(r["var_ratio"] - 1) <= 4 * math.sqrt(2 / r["N"])))),
            Check(name, f"{tag}: fixed point residual |G - T(G)|/|G| ({r['iterations']} iterations)",
                  r["residual"], "<= 1e-8", r["residual"] <= 1e-8),
            Check(name, f"{tag}: importance sampling ESS / samples", r["ess_fraction"],
                  f">= 0.05 (ESS {r['ess']:.0f})", r["ess_fraction"] >= 0.05),
        ]
    plt = _plt()
    fig, ax = plt.subplots(1, 3, figsize=(11, 3.4))
    for r, mk in zip(res, ("o", "s")):
        tag = "R = inf" if math.isinf(r["R"]) else f"R = {r['R']:g}"
        ax[0].plot(r["H_fp"].ravel(), r["H_p"].ravel(), mk, ms=3, label=tag)
        ax[2].semilogy(r["history"], mk + "-", ms=3, label=tag)
    lim = np.abs(res[0]["H_fp"]).max() * 1.1
    ax[0].plot([-lim, lim], [-lim, lim], "k:", lw=0.8)
    ax[0].set_xlabel("H, fixed point")
    ax[0].set_ylabel("H, particles (time average)")
    ax[0].legend(fontsize=7)
    r = res[0]
    ax[1].plot(r["mu"][:, 0], r["A"][:, 0], ".", ms=1, alpha=0.4)
    ax[1].plot(r["mu"][:, 0], r["mu"][:, 0], "k-", lw=0.8)
    ax[1].set_xlabel("E_fp[a_1 | u_j]")
    ax[1].set_ylabel("a_1 of particle j")
    ax[1].set_title("a | u ~ N(-G sigma/lam, 1/(beta lam))", fontsize=8)
    ax[2].set_xlabel("fixed-point iteration")
    ax[2].set_ylabel("|G - T(G)| / |G|")
    ax[2].legend(fontsize=7)
    fig.suptitle(f"Stage-1 Gibbs state (W frozen, beta = 20, N = {kw['N']})", fontsize=9)
    ctx.save(fig, "stage1")
    return checks


# --------------------------------------------------------------------------------------------
# V5: near-stationary points (Theorem 4.2, eqs. (6), (12), Corollary 4.4)
# --------------------------------------------------------------------------------------------
V5_OBSERVE = ("loss", "nc1", "r12", "r6", "E2", "E2_risk_part", "E2_bound", "nc1_bound",
              "nc1_bound_applicable", "eps_S_free")


def v5_width_sweep(Ns=(250, 1000, 4000), *, beta=20.0, Gamma=2.0, dt=0.05, steps=3000,
                   t_stat=50.0, every_steps=50, seed=0) -> dict:
    """``r12``, ``r6`` along a run and their stationary means (``t >= t_stat``) against ``N``
    (validation.md §V5, ``W`` trained, ``lam = lam_W = 1/beta``)."""
    data = nc_data()
    out = {}
    for N in Ns:
        model = make_model("nc", d=5, q=3, p=4, Gamma=Gamma, lam=1 / beta, lam_W=1 / beta)
        _, s = run_langevin(model, data, N=N, dt=dt, beta=beta, steps=steps, seed=seed + 1,
                            observe=V5_OBSERVE, every_steps=every_steps)
        stat = s["t"] >= t_stat
        q1 = (s["t"] > 0) & (s["t"] <= s["t"][-1] / 4)
        out[N] = dict(series=s, r12=float(s["r12"][stat].mean()), r6=float(s["r6"][stat].mean()),
                      r12_q1=float(s["r12"][q1].mean()), r6_q1=float(s["r6"][q1].mean()),
                      r12_half=float(s["r12"][s["t"] >= s["t"][-1] / 2].mean()),
                      r6_half=float(s["r6"][s["t"] >= s["t"][-1] / 2].mean()))
    Ns = list(out)
    return dict(rows=out, slope_r12=fit_slope(Ns, [out[n]["r12"] for n in Ns]),
                slope_r6=fit_slope(Ns, [out[n]["r6"] for n in Ns]))


def v5_collapse_run(*, N=1000, beta=200.0, Gamma=3.0, dt=0.05, steps=6000, every_steps=50,
                    seed=0) -> dict:
    """A run that reaches the collapsed regime (NC1 ~ 1e-3): Corollary 4.4 and the measured
    ``E_2`` bound at every recorded time, and the stationarity gap at the end with the paper's
    ``E_2`` bound evaluated with it (validation.md §V5)."""
    data = nc_data()
    model = make_model("nc", d=5, q=3, p=4, Gamma=Gamma, lam=1 / beta, lam_W=1 / beta)
    solver, s = run_langevin(model, data, N=N, dt=dt, beta=beta, steps=steps, seed=seed + 2,
                             observe=V5_OBSERVE, every_steps=every_steps)
    app = s["nc1_bound_applicable"] > 0.5
    viol = int(np.sum(s["nc1"][app] > s["nc1_bound"][app] * (1 + 1e-12)))
    e2_viol = int(np.sum(s["E2"] > s["E2_bound"] * (1 + 1e-12)))
    gap = st.stationarity_gap(model, solver.theta, data.X, data.Y, solver.W, beta)
    paper = st.e2_bound_paper(data.X.shape[0], s["loss"][-1], solver.W, Gamma, model.lam,
                              gap.eps_S, st.sigma_sup(model.activation))
    return dict(series=s, applicable=int(app.sum()), records=int(app.size), violations=viol,
                e2_violations=e2_viol, gap=gap, paper=paper, e2_end=float(s["E2"][-1]),
                nc1_end=float(s["nc1"][-1]), bound_end=float(s["nc1_bound"][-1]))


@register("nc.v5_stationary", quick=True)
def case_v5(ctx):
    name = "nc.v5_stationary"
    if ctx.quick:
        sw = v5_width_sweep(seed=ctx.seed)
        cr = v5_collapse_run(seed=ctx.seed)
    else:
        sw = v5_width_sweep(Ns=(1000, 4000, 16000, 64000), steps=10_000, seed=ctx.seed)
        cr = v5_collapse_run(N=4000, steps=30_000, seed=ctx.seed)
    rows = sw["rows"]
    checks = []
    for N, r in rows.items():
        checks.append(Check(name, f"r12 falls along the run, N={N}: mean over the first quarter "
                            f"-> last half", r["r12_half"], f"< {_fmt(r['r12_q1'])} (first quarter)",
                            r["r12_half"] < r["r12_q1"]))
        checks.append(Check(name, f"r6 falls along the run, N={N}", r["r6_half"],
                            f"< {_fmt(r['r6_q1'])} (first quarter)", r["r6_half"] < r["r6_q1"]))
    Ns = list(rows)
    checks += [
        Check(name, f"stationary mean r12 vs N ({', '.join(_fmt(rows[n]['r12']) for n in Ns)}): "
              f"log-log slope over N = {Ns}", sw["slope_r12"], "-0.5 ± 0.15",
              abs(sw["slope_r12"] + 0.5) <= 0.15),
        Check(name, f"stationary mean r6 vs N ({', '.join(_fmt(rows[n]['r6']) for n in Ns)}): "
              f"log-log slope", sw["slope_r6"], "-0.5 ± 0.15", abs(sw["slope_r6"] + 0.5) <= 0.15),
        Check(name, f"Corollary 4.4: NC1 <= bound at every recorded time where it applies "
              f"(applicable at {cr['applicable']} of {cr['records']} times)", cr["violations"],
              "0 violations, applicable >= 1", cr["violations"] == 0 and cr["applicable"] >= 1),
        Check(name, f"Corollary 4.4 at the end: NC1 = {_fmt(cr['nc1_end'])}", cr["nc1_end"],
              f"<= bound {_fmt(cr['bound_end'])}",
              math.isfinite(cr["bound_end"]) and cr["nc1_end"] <= cr["bound_end"]),
        Check(name, "|E_2|^2 <= 2nR/(Gamma^2 s_min^2) + |H + KG/lam|^2 at every recorded time "
              "(violations)", cr["e2_violations"], "0", cr["e2_violations"] == 0),
        Check(name, f"|E_2|^2 at the end vs the paper's bound with the estimated eps_S = "
              f"{_fmt(cr['gap'].eps_S)} (entropy-free {_fmt(cr['gap'].eps_S_free)})",
              cr["e2_end"], f"<= {_fmt(cr['paper']['bound'])} (eps_S-free part "
              f"{_fmt(cr['paper']['risk_part'])})", cr["e2_end"] <= cr["paper"]["bound"]),
    ]
    plt = _plt()
    fig, ax = plt.subplots(1, 3, figsize=(12, 3.5))
    for N, r in rows.items():
        s = r["series"]
        ax[0].semilogy(s["t"][1:], s["r12"][1:], lw=0.8, label=f"r12, N={N}")
        ax[0].semilogy(s["t"][1:], s["r6"][1:], lw=0.8, ls="--", label=f"r6, N={N}")
    ax[0].set_xlabel("t")
    ax[0].legend(fontsize=6)
    ax[0].set_title("beta = 20, Gamma = 2, W trained", fontsize=8)
    ax[1].loglog(Ns, [rows[n]["r12"] for n in Ns], "o-", label=f"r12 (slope {sw['slope_r12']:.2f})")
    ax[1].loglog(Ns, [rows[n]["r6"] for n in Ns], "s-", label=f"r6 (slope {sw['slope_r6']:.2f})")
    ref = rows[Ns[0]]["r12"] * (np.array(Ns, float) / Ns[0]) ** -0.5
    ax[1].loglog(Ns, ref, "k:", label="N^-1/2")
    ax[1].set_xticks(Ns, [str(n) for n in Ns])
    ax[1].minorticks_off()
    ax[1].set_xlabel("N")
    ax[1].set_ylabel("stationary mean")
    ax[1].legend(fontsize=7)
    s = cr["series"]
    ax[2].semilogy(s["t"], s["nc1"], label="NC1")
    ax[2].semilogy(s["t"], s["nc1_bound"], label="Cor. 4.4 bound")
    ax[2].semilogy(s["t"], s["E2"], lw=0.8, label="|E_2|^2")
    ax[2].semilogy(s["t"], s["E2_risk_part"], lw=0.8, ls="--", label="2nR/(Gamma s_min)^2")
    ax[2].set_xlabel("t")
    ax[2].legend(fontsize=6)
    ax[2].set_title("beta = 200, Gamma = 3: NC1 <= bound", fontsize=8)
    ctx.save(fig, "stationary")
    return checks


# --------------------------------------------------------------------------------------------
# V6 / V7: Lemma 4.5 and the balancedness bound on time averages
# --------------------------------------------------------------------------------------------
def v6_run(*, train_W=True, beta=20.0, beta_noise=None, N=2000, Gamma=2.0, dt=0.05, steps=3000,
           t_avg=50.0, seed=0, q=3, p=4, m=4, d=4) -> dict:
    """Time averages of ``E[aa^T]``, ``W W^T``, ``G H^T`` over ``t >= t_avg``
    (validation.md §V6–§V7). ``beta_noise``: the temperature of the noise actually used (the
    negative control sets ``2 beta``: noise amplitude ``sqrt(eps/beta)`` instead of
    ``sqrt(2 eps/beta)``)."""
    data = nc_data(q=q, m=m, d=d)
    model = make_model("nc", d=d + 1, q=q, p=p, Gamma=Gamma, lam=1 / beta, lam_W=1 / beta)
    ta = TimeAverage(model, data, every(steps=10), start=t_avg)
    solver, s = run_langevin(model, data, N=N, dt=dt, beta=beta, steps=steps, seed=seed + 3,
                             train_W=train_W, trackers=[ta], beta_noise=beta_noise,
                             observe=("nb", "lemma45", "nc1"), every_steps=50)
    a = ta.averages()
    Mt = st.lemma45_trained_matrix(a["EaaT"], a["WWT"], model.lam, model.lam_W, beta)
    Mf = st.lemma45_frozen_matrix(a["EaaT"], a["GHt"], model.lam, beta)
    return dict(trained=ta.lemma45_trained(beta), frozen=ta.lemma45_frozen(beta),
                diag_trained=(np.diag(Mt) + 1 / beta) * beta, diag_frozen=(np.diag(Mf) + 1 / beta) * beta,
                offdiag=float(np.max(np.abs(Mt - np.diag(np.diag(Mt))))) * beta,
                nb=ta.nb(), nb_bound=ta.nb_bound(beta), nb_snap=float(s["nb"][-1]),
                count=a["count"], series=s, beta=beta)


@register("nc.v6_lemma45", quick=True)
def case_v6(ctx):
    name = "nc.v6_lemma45"
    if ctx.quick:
        kw, tol = dict(N=2000, steps=3000), 0.10
    else:
        kw, tol = dict(N=100_000, steps=20_000, q=10, p=64, m=5, d=20), 0.01
    tr = v6_run(train_W=True, seed=ctx.seed, **kw)
    fr = v6_run(train_W=False, seed=ctx.seed, **kw)
    kw_neg = dict(kw, steps=kw["steps"] // 2, t_avg=25.0)
    neg = v6_run(train_W=True, beta_noise=40.0, seed=ctx.seed, **kw_neg)
    rel = f"beta |.|_op of the time average ({tr['count']} samples)"
    checks = [
        Check(name, f"W trained: lam E[aa^T] - lam_W WW^T = I/beta, {rel}", tr["trained"],
              f"<= {tol:g}", tr["trained"] <= tol),
        Check(name, "W trained: diagonal x beta (worst)",
              float(tr["diag_trained"][np.argmax(np.abs(tr["diag_trained"] - 1))]), f"1 ± {tol:g}",
              bool(np.all(np.abs(tr["diag_trained"] - 1) <= tol))),
        Check(name, "W trained: frozen form lam E[aa^T] + G H^T = I/beta (also holds)",
              tr["frozen"], f"<= {tol:g}", tr["frozen"] <= tol),
        Check(name, f"W frozen: lam E[aa^T] = I/beta - G H^T, {rel}", fr["frozen"],
              f"<= {tol:g}", fr["frozen"] <= tol),
        Check(name, "negative control (noise sqrt(eps/beta), i.e. temperature 1/(2 beta)): "
              "trained form residual", neg["trained"], ">= 0.3 (detected; diagonal ~ 1/2)",
              neg["trained"] >= 0.3),
        Check(name, "negative control: frozen form residual", neg["frozen"], ">= 0.3 (detected)",
              neg["frozen"] >= 0.3),
        Check(name, f"V7, W trained, p > q: NB of the time averages (W frozen: {_fmt(fr['nb'])}, "
              f"bound not applicable)", tr["nb"],
              f">= 0.9 x bound 1/(1 + beta lam_W s_max^2) = {_fmt(tr['nb_bound'])}",
              tr["nb"] >= 0.9 * tr["nb_bound"]),
    ]
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    x = np.arange(len(tr["diag_trained"]))
    ax[0].plot(x, tr["diag_trained"], "o", label="W trained: diag(lam E[aa^T] - lam_W WW^T) beta")
    ax[0].plot(x, fr["diag_frozen"], "s", label="W frozen: diag(lam E[aa^T] + GH^T) beta")
    ax[0].plot(x, neg["diag_trained"], "x", label="wrong temperature (control)")
    ax[0].axhline(1.0, color="k", lw=0.8)
    ax[0].axhspan(1 - tol, 1 + tol, color="g", alpha=0.1)
    ax[0].set_xlabel("coordinate l of a")
    ax[0].legend(fontsize=6)
    s = tr["series"]
    ax[1].plot(s["t"], s["nb"], label="NB (snapshot), W trained")
    ax[1].plot(fr["series"]["t"], fr["series"]["nb"], label="NB (snapshot), W frozen")
    ax[1].axhline(tr["nb_bound"], color="k", ls=":", label="V7 bound (time average of WW^T)")
    ax[1].set_xlabel("t")
    ax[1].legend(fontsize=6)
    ctx.save(fig, "lemma45")
    return checks


# --------------------------------------------------------------------------------------------
# V8: beta sweep (Theorem 4.8, Corollary 4.9)
# --------------------------------------------------------------------------------------------
def v8_sweep(betas=(20.0, 50.0, 100.0, 200.0), *, Gamma=4.0, N=500, dt=0.1, T_factor=10.0,
             seed=0, data=None, p=4) -> dict:
    """Plateau ``P(beta)`` (mean regularised risk over the last 20%), ``t_0(beta)`` (first time
    the regularised risk is within a factor 2 of ``P``) and the final NC1, ``lam = lam_W = 1/beta``,
    ``T = T_factor beta`` (validation.md §V8)."""
    data = nc_data() if data is None else data
    rows = []
    for beta in betas:
        model = make_model("nc", d=data.X.shape[1], q=data.Y.shape[1], p=p, Gamma=Gamma,
                           lam=1 / beta, lam_W=1 / beta)
        steps = int(round(T_factor * beta / dt))
        _, s = run_langevin(model, data, N=N, dt=dt, beta=beta, steps=steps, seed=seed + 4,
                            observe=("reg_loss", "loss", "nc1"), every_steps=10)
        last = s["t"] >= 0.8 * s["t"][-1]
        P = float(s["reg_loss"][last].mean())
        i0 = int(np.argmax(s["reg_loss"] <= 2 * P))
        rows.append(dict(beta=beta, P=P, t0=float(s["t"][i0]), risk=float(s["loss"][last].mean()),
                         nc1=float(s["nc1"][last].mean()), series=s))
    b = np.array([r["beta"] for r in rows])
    P = np.array([r["P"] for r in rows])
    t0 = np.array([r["t0"] for r in rows])
    pos = t0 > 0
    return dict(rows=rows, slope_P=fit_slope(b, P),
                slope_t0=fit_slope(b[pos], t0[pos]) if pos.sum() >= 2 else math.nan)


def v8_gamma_rates(Gammas=(1.0, 2.0, 4.0), *, beta=100.0, N=500, dt=0.01, seed=0) -> dict:
    """Early decay rate of the risk, ``1/t_{1/e}`` (``t_{1/e}``: first time ``R <= R(0)/e``),
    against ``Gamma`` (Theorem 4.8: ``R(t) <= exp(-Gamma^2 A_1 t) + ...``)."""
    data = nc_data()
    rates = []
    for G in Gammas:
        model = make_model("nc", d=5, q=3, p=4, Gamma=G, lam=1 / beta, lam_W=1 / beta)
        s = LangevinSolver(model, data, N=N, dt=dt, beta=beta, seed=seed + 6)
        R0 = model.risk(s.theta, data.X, data.Y, s.W)
        R = R0
        while R > R0 / math.e and s.t < 50:
            s.step(2)
            R = model.risk(s.theta, data.X, data.Y, s.W)
        rates.append(1.0 / s.t)
    return dict(Gammas=list(Gammas), rates=rates, slope=fit_slope(Gammas, rates))


@register("nc.v8_beta_sweep", quick=True)
def case_v8(ctx):
    name = "nc.v8_beta_sweep"
    if ctx.quick:
        sw = v8_sweep(seed=ctx.seed)
        gr = v8_gamma_rates(seed=ctx.seed)
    else:
        data = nc_data(m=100, d=19)                     # n = 300, d = 20
        sw = v8_sweep(betas=(20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 10_000.0), N=10_000,
                      seed=ctx.seed, data=data, p=8)
        gr = v8_gamma_rates(N=10_000, seed=ctx.seed)
    rows = sw["rows"]
    bl = ", ".join(f"{r['beta']:g}" for r in rows)
    nc1 = [r["nc1"] for r in rows]
    mono = all(b <= a * 1.1 for a, b in zip(nc1, nc1[1:]))
    t0b = [r["t0"] / r["beta"] for r in rows]
    checks = [
        Check(name, f"plateau P(beta) = {', '.join(_fmt(r['P']) for r in rows)} (beta P = "
              f"{', '.join(_fmt(r['P'] * r['beta']) for r in rows)}): log-log slope over beta = {bl}",
              sw["slope_P"], "-1 ± 0.15", abs(sw["slope_P"] + 1) <= 0.15),
        Check(name, f"t_0(beta) = {', '.join(_fmt(r['t0']) for r in rows)}; t_0/beta = "
              f"{', '.join(_fmt(x) for x in t0b)}: log-log slope of t_0", sw["slope_t0"],
              "1 ± 0.5 (t_0/beta bounded)", abs(sw["slope_t0"] - 1) <= 0.5),
        Check(name, f"final NC1 = {', '.join(_fmt(x) for x in nc1)}: decreasing in beta",
              nc1[-1] / nc1[0], "each step <= x1.1 and NC1(beta_max)/NC1(beta_min) <= 0.2",
              mono and nc1[-1] <= 0.2 * nc1[0]),
        Check(name, f"early decay rate 1/t_(1/e) = {', '.join(_fmt(x) for x in gr['rates'])} for "
              f"Gamma = {gr['Gammas']}: log-log slope", gr["slope"], "increasing, 2 ± 0.5 (Gamma^2)",
              all(b > a for a, b in zip(gr["rates"], gr["rates"][1:])) and abs(gr["slope"] - 2) <= 0.5),
    ]
    plt = _plt()
    fig, ax = plt.subplots(1, 3, figsize=(12, 3.4))
    for r in rows:
        s = r["series"]
        ax[0].loglog(s["t"][1:], s["reg_loss"][1:], lw=0.8, label=f"beta={r['beta']:g}")
        ax[0].axhline(r["P"], color="k", lw=0.4, ls=":")
    ax[0].set_xlabel("t")
    ax[0].set_ylabel("regularised risk")
    ax[0].legend(fontsize=6)
    b = [r["beta"] for r in rows]
    ax[1].loglog(b, [r["P"] for r in rows], "o-", label=f"P (slope {sw['slope_P']:.2f})")
    ax[1].loglog(b, [r["nc1"] for r in rows], "s-", label="final NC1")
    ax[1].loglog(b, [r["t0"] / r["beta"] for r in rows], "^-", label="t_0 / beta")
    ax[1].set_xlabel("beta")
    ax[1].legend(fontsize=7)
    ax[2].loglog(gr["Gammas"], gr["rates"], "o-", label=f"slope {gr['slope']:.2f}")
    ax[2].set_xlabel("Gamma")
    ax[2].set_ylabel("early decay rate")
    ax[2].legend(fontsize=7)
    ctx.save(fig, "beta_sweep")
    return checks


# --------------------------------------------------------------------------------------------
# V9: generalisation on separable data (Theorem 5.3), two-stage algorithm
# --------------------------------------------------------------------------------------------
def _ball(n, d, r, rng):
    g = rng.standard_normal((n, d))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    return g * (r * rng.random(n) ** (1.0 / d))[:, None]


def separable_nuisance(m=None, *, n_test=None, r0=0.2, frac=0.9, d_nuisance=37, rho=0.95,
                       seed=0, labels=None) -> Dataset:
    """Bounded ``(tau, M)``-separable data with nuisance coordinates [choice] (V9).

    The D4 construction of models.md §5 in ``R^3`` (``q = 3``: ``x = r0 v_k + zeta``, ``zeta``
    uniform in the ball of radius ``delta_b = frac r0/(q-1)``, margin ``tau/M = r0/2 - delta_b``
    for ``u_k = M (v_k, 0)``) followed by ``d_nuisance`` coordinates uniform in a ball of radius
    ``rho`` (independent of the class): still ``(tau, M)``-separable (Definition 5.2) and bounded,
    ``|x|^2 <= (r0 + delta_b)^2 + rho^2 <= 1``, but the class signal is small against the
    nuisance, so errors occur at small ``n`` (with the pure D4 data every run of this size has
    zero test error). ``m`` per class (sorted), or ``n_test`` fresh population samples.
    """
    db = frac * r0 / 2
    if m is not None:
        base = separable(q=3, m=m, d=3, r0=r0, delta_b=db, seed=seed)
    else:
        base = separable_sampler(q=3, d=3, r0=r0, delta_b=db).test_set(n_test, seed=seed)
    rng = np.random.default_rng(seed + 104_729)
    X = np.hstack([base.X, _ball(base.X.shape[0], d_nuisance, rho, rng)])
    meta = {"kind": "separable+nuisance", "r0": r0, "delta_b": db, "tau_over_M": r0 / 2 - db,
            "d_nuisance": d_nuisance, "rho": rho}
    return Dataset(np.ascontiguousarray(X), base.Y, base.labels, "separable_nuisance", meta)


def _random_labels(data: Dataset, seed) -> Dataset:
    lab = np.random.default_rng(seed).permutation(data.labels)
    o = np.argsort(lab, kind="stable")
    return Dataset(data.X[o], one_hot(lab[o], 3), lab[o], "random_labels", {})


def v9_run(n, *, test, N=500, steps=1000, dt=0.05, beta_factor=2.0, R=10.0, seed=0,
           random_labels=False) -> dict:
    """Two-stage algorithm (Section 5) at ``beta = beta_factor n``, ``lam = lam_W = 1/beta``,
    sigmoid, ``Gamma = 1``, ``p = 8``, truncation ``R``; balanced test error, NC1, loss after
    each stage (validation.md §V9)."""
    data = separable_nuisance(n // 3, seed=1000 + n + seed)
    if random_labels:
        data = _random_labels(data, seed + 77)
    beta = beta_factor * n
    model = make_model("nc", d=data.X.shape[1], q=3, p=8, Gamma=1.0, lam=1 / beta, lam_W=1 / beta,
                       activation="sigmoid")
    run = two_stage(model, data, N=N, dt=dt, beta=beta, stage1_steps=steps, stage2_steps=steps,
                    R=R, seed=seed + n)
    s1, s2 = run["stage1"].solver, run["stage2"].solver
    m1 = st.heldout_metrics(s1.model, s1.theta, s1.W, data, test)
    m2 = st.heldout_metrics(s2.model, s2.theta, s2.W, data, test)
    nc1_0 = col.nc1(s1.model.features(s1.model.init_particles(N, np.random.default_rng(seed)),
                                      data.X), data.labels)
    return dict(n=n, beta=beta, stage1=m1, stage2=m2, nc1_init=nc1_0)


@register("nc.v9_separable", quick=True)
def case_v9(ctx):
    name = "nc.v9_separable"
    if ctx.quick:
        ns, kw, n_test = (15, 30, 60, 120), dict(N=500, steps=1000), 10_000
    else:
        ns, kw, n_test = (15, 30, 60, 120, 240, 480, 960), dict(N=2000, steps=5000), 10_000
    test = separable_nuisance(n_test=n_test, seed=987_654 + ctx.seed)
    rows = [v9_run(n, test=test, seed=ctx.seed, **kw) for n in ns]
    ctrl = v9_run(60, test=test, seed=ctx.seed, random_labels=True, beta_factor=20.0,
                  dt=0.2, **kw)
    err = [r["stage2"]["test_error"] for r in rows]
    err1 = [r["stage1"]["test_error"] for r in rows]
    nc1 = [r["stage2"]["train_nc1"] for r in rows]
    dec = all(b < a for a, b in zip(err, err[1:]))
    checks = [
        Check(name, f"balanced test error after Stage 2 for n = {list(ns)}: "
              f"{', '.join(_fmt(e) for e in err)}", err[-1], "strictly decreasing in n", dec),
        Check(name, f"balanced test error after Stage 1 (W frozen): {', '.join(_fmt(e) for e in err1)}",
              err1[-1], f"<= {_fmt(err1[0])} (n = {ns[0]})", err1[-1] <= err1[0]),
        Check(name, f"NC1 of the training features after Stage 2: {', '.join(_fmt(x) for x in nc1)}",
              max(nc1), f"<= 0.15 (NC1 at initialisation ~ {_fmt(rows[0]['nc1_init'])})",
              max(nc1) <= 0.15),
        Check(name, "training error after Stage 2 (all n)",
              max(r["stage2"]["train_error"] for r in rows), "0", all(r["stage2"]["train_error"] == 0
                                                                      for r in rows)),
        Check(name, "random labels (n = 60, beta = 20 n): NC1 after Stage 2",
              ctrl["stage2"]["train_nc1"], "<= 0.15 (fits: NC1 small)", ctrl["stage2"]["train_nc1"] <= 0.15),
        Check(name, "random labels: balanced test error", ctrl["stage2"]["test_error"],
              ">= 0.55 (chance 2/3)", ctrl["stage2"]["test_error"] >= 0.55),
    ]
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    eps = 1e-4
    ax[0].semilogx(ns, np.maximum(err, eps), "o-", label="after Stage 2")
    ax[0].semilogx(ns, np.maximum(err1, eps), "s--", label="after Stage 1 (W frozen)")
    ax[0].axhline(ctrl["stage2"]["test_error"], color="r", ls=":", label="random labels (n=60)")
    ax[0].axhline(2 / 3, color="k", lw=0.5, ls=":")
    ax[0].set_xlabel("n")
    ax[0].set_ylabel("balanced test error")
    ax[0].legend(fontsize=7)
    ax[1].semilogx(ns, nc1, "o-", label="NC1 after Stage 2")
    ax[1].semilogx(ns, [r["stage1"]["train_nc1"] for r in rows], "s--", label="NC1 after Stage 1")
    ax[1].axhline(ctrl["stage2"]["train_nc1"], color="r", ls=":", label="random labels")
    ax[1].set_xlabel("n")
    ax[1].legend(fontsize=7)
    ctx.save(fig, "separable")
    return checks


# --------------------------------------------------------------------------------------------
# V14: the digits analogue of the MNIST-mod-3 experiment
# --------------------------------------------------------------------------------------------
V14_OBSERVE = ("loss", "grad_sq", "nc1", "nb", "train_error", "test_error", "test_loss",
               "test_nc1")


def v14_run(kind="a", *, epochs=60, seed=0, beta_inv=1e-2, N=2048, eps=(0.1, 1.0),
            raw_lr=(1e-3, 1e-2), raw_wd=1e-4, batch=64, observe_every=1) -> dict:
    """One run of validation.md §V14 on the bundled digits (labels mod 3, n = 1200):

    Observables every ``observe_every`` epochs (an epoch is ``n // batch`` steps).
    (a) ``W`` frozen, ``beta = inf``, ``lam = 1e-4``, SGD batch 64, mean-field step ``eps[0]`` in
    the first half of the epochs and ``eps[1]`` in the second; (b) noisy SGD, ``W`` trained,
    ``lam = lam_W = 1/beta = beta_inv`` (time averages of the last third for Lemma 4.5 and the V7
    bound); (c) as (a) with the paper's hyper-parameters read as raw (framework) values
    (dynamics.md §4.2): ``eps = lr/N``, ``lam = N wd``.
    """
    from ..dynamics.sgd import eps_from_raw_lr, lam_from_weight_decay
    train, test = digits_mod3(400, seed=0)
    spe = train.X.shape[0] // batch
    half = spe * epochs // 2
    if kind == "a":
        lam, lam_W, beta, trainW, e = 1e-4, 0.0, math.inf, False, eps
    elif kind == "b":
        lam = lam_W = beta_inv
        beta, trainW, e = 1.0 / beta_inv, True, (eps[0], 0.5 * eps[1])
    elif kind == "c":
        lam, lam_W, beta, trainW = lam_from_weight_decay(raw_wd, N), 0.0, math.inf, False
        e = (eps_from_raw_lr(raw_lr[0], N), eps_from_raw_lr(raw_lr[1], N))
    else:
        raise ValueError(f"kind must be 'a', 'b' or 'c', got {kind!r}")
    model = make_model("nc", d=train.X.shape[1], q=3, p=16, Gamma=1.0, lam=lam, lam_W=lam_W,
                       activation="tanh")
    stages = [Stage("first half", half, train_W=trainW, dt=e[0]),
              Stage("second half", half, train_W=trainW, dt=e[1])]
    T = half * (e[0] + e[1])
    # the last third of the second half (the driver's time starts at 0 in each stage)
    ta = TimeAverage(model, train, every(steps=spe), start=(2 / 3) * half * e[1])
    observe = V14_OBSERVE + (("lemma45_trained", "nb_bound") if kind == "b" else ())
    run = run_stages(model, train, stages, N=N, dt=e[0], beta=beta, batch=batch, seed=seed,
                     observe=observe, every=spe * int(observe_every), test=test,
                     trackers=lambda i, s, solver: [ta] if i == 1 else [])
    s = run.series()
    out = dict(kind=kind, series=s, T=T, eps=e, lam=lam, beta=beta, epochs=epochs,
               epoch=np.asarray(s["step"], float) / spe)
    if kind == "b":
        a = ta.averages()
        M = st.lemma45_trained_matrix(a["EaaT"], a["WWT"], lam, lam_W, beta)
        out.update(lemma_rel=ta.lemma45_trained(beta), diag=(np.diag(M) + 1 / beta) * beta,
                   nb_avg=ta.nb(), nb_bound=ta.nb_bound(beta), count=a["count"])
    return out


def _spearman(x, y) -> float:
    rx = np.argsort(np.argsort(x))
    ry = np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


@register("nc.v14_digits", quick=True)
def case_v14(ctx):
    name = "nc.v14_digits"
    if ctx.quick:
        seeds, ep_a, ep_b, ep_c, binv, oe = (0, 1), 60, 60, 20, (1e-2,), 2
    else:
        seeds, ep_a, ep_b, ep_c, binv, oe = (0, 1, 2, 3), 200, 1000, 200, (1e-2, 1e-3), 1
    runs_a = [v14_run("a", epochs=ep_a, seed=ctx.seed + s, observe_every=oe) for s in seeds]
    runs_b = [v14_run("b", epochs=ep_b, seed=ctx.seed, beta_inv=b, observe_every=oe) for b in binv]
    run_c = v14_run("c", epochs=ep_c, seed=ctx.seed, observe_every=5)
    checks = []
    nbs = []
    for r in runs_a:
        s = r["series"]
        nbs.append(float(s["nb"][-1]))
        g = np.sqrt(s["grad_sq"])
        checks += [
            Check(name, f"(a) run {len(nbs)}: NC1 {_fmt(s['nc1'][0])} -> {_fmt(s['nc1'][-1])}, loss "
                  f"{_fmt(s['loss'][0])} -> {_fmt(s['loss'][-1])}, |grad| {_fmt(g[0])} -> {_fmt(g[-1])}",
                  s["nc1"][-1] / s["nc1"][0], "NC1, loss, |grad| each fall >= 2x",
                  max(s["nc1"][-1] / s["nc1"][0], s["loss"][-1] / s["loss"][0], g[-1] / g[0]) <= 0.5),
            Check(name, f"(a) run {len(nbs)}: rank correlation of NC1 with the loss over epochs",
                  _spearman(s["nc1"], s["loss"]), ">= 0.8", _spearman(s["nc1"], s["loss"]) >= 0.8),
            Check(name, f"(a) run {len(nbs)}: NB at the end (W frozen, noiseless); paper's MNIST "
                  f"values {', '.join(str(x) for x in PAPER_MNIST_NB)}", nbs[-1], ">= 0.2 (away from 0)",
                  nbs[-1] >= 0.2),
            Check(name, f"(a) run {len(nbs)}: balanced test error at the end", float(s["test_error"][-1]),
                  f"< 0.5 x initial {_fmt(s['test_error'][0])}", s["test_error"][-1] < 0.5 * s["test_error"][0]),
        ]
    for r in runs_b:
        tag = f"(b) 1/beta = lam = lam_W = {1 / r['beta']:g}, {r['epochs']} epochs"
        worst = float(r["diag"][np.argmax(np.abs(r["diag"] - 1))])
        checks += [
            Check(name, f"{tag}: Lemma 4.5 diagonal of lam <E[aa^T]> - lam_W <WW^T>, x beta (worst of "
                  f"{len(r['diag'])}; time average of {r['count']} epochs)", worst, "1 ± 0.15",
                  bool(np.all(np.abs(r["diag"] - 1) <= 0.15))),
            Check(name, f"{tag}: Lemma 4.5 residual beta |.|_op (off-diagonal included)", r["lemma_rel"],
                  "<= 0.5 (approximate: minibatch noise, finite time)", r["lemma_rel"] <= 0.5),
            Check(name, f"{tag}: NB of the time averages", r["nb_avg"],
                  f">= 0.9 x V7 bound {_fmt(r['nb_bound'])}", r["nb_avg"] >= 0.9 * r["nb_bound"]),
        ]
    sc = run_c["series"]
    checks.append(Check(name, f"(c) raw reading (eps = lr/N = {run_c['eps'][0]:.2g}/{run_c['eps'][1]:.2g}, "
                        f"lam = N wd = {run_c['lam']:.3g}): NC1 after {ep_c} epochs", float(sc["nc1"][-1]),
                        f"~ NC1 at init {_fmt(sc['nc1'][0])} (mean-field time {run_c['T']:.2g}: no training)",
                        abs(sc["nc1"][-1] / sc["nc1"][0] - 1) <= 0.05))
    plt = _plt()
    fig, ax = plt.subplots(1, 3, figsize=(12, 3.5))
    for i, r in enumerate(runs_a):
        s = r["series"]
        ep = r["epoch"]
        ax[0].semilogy(ep, s["nc1"], "C0", lw=0.9, label="NC1" if i == 0 else None)
        ax[0].semilogy(ep, s["loss"], "C1", lw=0.9, label="loss" if i == 0 else None)
        ax[0].semilogy(ep, np.sqrt(s["grad_sq"]), "C2", lw=0.9, label="|grad| (entropy-free)" if i == 0 else None)
        ax[0].semilogy(ep, s["test_error"], "C3", lw=0.9, label="test error" if i == 0 else None)
        ax[1].plot(ep, s["nb"], "C0", lw=0.9, label="NB, run (a)" if i == 0 else None)
    for x in PAPER_MNIST_NB:
        ax[1].axhline(x, color="k", lw=0.5, ls=":")
    for r in runs_b:
        s = r["series"]
        ax[1].plot(r["epoch"], s["nb"], "C1", lw=0.9, label=f"NB, run (b) 1/beta={1 / r['beta']:g}")
        ax[1].axhline(r["nb_bound"], color="C1", lw=0.8, ls="--", label="V7 bound (b)")
    ax[0].set_xlabel("epoch")
    ax[0].legend(fontsize=6)
    ax[0].set_title("(a) W frozen, noiseless SGD", fontsize=8)
    ax[1].set_xlabel("epoch")
    ax[1].set_title("NB (dotted: the paper's MNIST values)", fontsize=8)
    ax[1].legend(fontsize=6)
    ax[2].semilogy(run_c["epoch"], sc["nc1"], label="NC1, raw reading (c)")
    ax[2].semilogy(runs_a[0]["epoch"], runs_a[0]["series"]["nc1"], label="NC1, (a)")
    ax[2].set_xlabel("epoch")
    ax[2].legend(fontsize=7)
    ctx.save(fig, "digits")
    return checks
