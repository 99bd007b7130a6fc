"""Validation cases: finite width against mean field (theory/validation.md §V1–§V3, §U).

=====================================  ========================================================
case                                   what
=====================================  ========================================================
``compare.shb_forms``                  heavy ball: Polyak form = velocity form (<= 1e-12 rel.);
                                       framework raw units = mean-field units (SGD, momentum,
                                       NC ``W``); Pham–Nguyen heavy-ball forms (§U)
``compare.two_layer_rate_N``           §V1: coupling distance ~ N^{-1/2} (noiseless full-batch
                                       GD, synchronous coupling with N_ref = 32 max N)
``compare.two_layer_rate_eps``         §V1: online SGD (B = 1) vs population GD: error ~ eps^{1/2}
``compare.shb_rate_N``                 §V3: heavy ball, phase-space coupling distance ~ N^{-1/2}
``compare.pn_rate_n``                  §V2: Pham–Nguyen sub-block coupling ~ n^{-1/2}
=====================================  ========================================================

Quick sizes run in minutes on two cores; ``full`` uses the sizes of the issue's "done means"
(N up to 4096, N_ref = 131072, 16 seeds; eps sweep at N = 4096). Configurations are the
``[compare]`` tables returned by the ``*_config(level)`` functions (also used by the slow tests).
"""
from __future__ import annotations

import math

import numpy as np

from ..compare import plot_rate, run_compare
from . import Check, register

SLOPE_TOL_QUICK = 0.15          # validation.md general protocol: predicted slope +- 0.15


def _model(d=5):
    return {"kind": "two_layer", "d": d, "activation": "tanh"}


def _ts(n, d=5):
    return {"kind": "teacher_student", "n": n, "d": d, "k_star": 3, "seed": 0}


def rate_N_config(level="quick") -> dict:
    """§V1 in N: two-layer tanh, teacher–student d = 5, noiseless full-batch GD, eps = 0.1,
    T = 2, synchronous coupling with N_ref = 32 max N (quick: 16 max N)."""
    quick = level == "quick"
    widths = [32, 64, 128, 256, 512] if quick else [64, 128, 256, 512, 1024, 2048, 4096]
    return {"compare": {
        "name": "V1 two-layer GD, rate in N", "method": "gd", "widths": widths,
        "seeds": 8 if quick else 16, "dts": [0.1], "T": 2.0, "n_records": 2, "test_n": 128,
        "model": _model(), "data": _ts(64),
        "reference": {"N": (16 if quick else 32) * max(widths)},
        "fit": {"x": "N", "quantity": "coupling_rms", "n_boot": 2000}, "figure": False}}


def rate_eps_config(level="quick") -> dict:
    """§V1 in eps: online SGD with batch 1 (i.i.d. draws from a pool of n samples) against the
    population (full-batch) GD flow of the same particles (N_ref = N) with a finer step."""
    quick = level == "quick"
    N = 1024 if quick else 4096
    dts = [0.2, 0.1, 0.05, 0.025] if quick else [0.2, 0.1, 0.05, 0.025, 0.0125]
    return {"compare": {
        "name": "V1 two-layer online SGD, rate in eps", "method": "sgd", "batch": 1,
        "sampling": "resample", "widths": [N], "seeds": 8 if quick else 16, "dts": dts,
        "T": 1.6, "n_records": 2, "test_n": 128, "model": _model(),
        "data": _ts(128 if quick else 256),
        "reference": {"N": N, "dt": min(dts) / 2, "batch": "full"},
        "fit": {"x": "dt", "quantity": "coupling_rms", "n_boot": 2000}, "figure": False}}


def shb_rate_config(level="quick") -> dict:
    """§V3: heavy ball (velocity form), gamma = 2, eps = 0.1, T = 2, noiseless full batch; the
    reference is the same recursion with N_ref particles; phase-space distance (theta, r)."""
    quick = level == "quick"
    widths = [32, 64, 128, 256, 512] if quick else [64, 128, 256, 512, 1024, 2048, 4096]
    return {"compare": {
        "name": "V3 heavy ball, rate in N", "method": "shb", "gamma": 2.0, "widths": widths,
        "seeds": 8 if quick else 16, "dts": [0.1], "T": 2.0, "n_records": 2, "test_n": 128,
        "model": _model(), "data": _ts(64), "reference": {"N": 16 * max(widths) if quick
                                                          else 32 * max(widths)},
        "fit": {"x": "N", "quantity": "phase_rms", "n_boot": 2000}, "figure": False}}


def pn_rate_config(level="quick") -> dict:
    """§V2: Pham–Nguyen (tanh, tanh, identity), full-batch SGD, sub-block coupling with a
    1024 x 1024 reference; n1 = n2 = n in 16..128 (below n = 16 the slope is visibly
    pre-asymptotic: -0.38 for n = 8..64)."""
    quick = level == "quick"
    return {"compare": {
        "name": "V2 Pham-Nguyen, rate in n", "method": "sgd", "widths": [16, 32, 64, 128],
        "seeds": 8, "dts": [0.05] if quick else [0.02], "T": 1.0 if quick else 2.0,
        "n_records": 2, "test_n": 128, "model": {"kind": "pham_nguyen", "d": 5},
        "data": _ts(128 if quick else 500), "reference": {"N": 1024},
        "fit": {"x": "N", "quantity": "coupling_rms", "n_boot": 2000}, "figure": False}}


def _rate_case(ctx, name, cfg, fit_name, lo, hi, extra=None):
    level = ctx.level
    res = run_compare(cfg, ctx.outdir / f"{name.replace('.', '_')}.h5", quiet=True)
    f = res.fits[fit_name]
    plot_rate(f, ctx.figure("rate"), title=f"{cfg['compare']['name']} ({level})")
    ci = f"95% bootstrap CI [{f.ci_low:.3f}, {f.ci_high:.3f}], {f.err.shape[0]} seeds, " \
         f"{f.x_name} in [{f.x.min():g}, {f.x.max():g}]; {res.seconds:.0f} s"
    checks = [Check(name, f"slope of {f.quantity} vs {f.x_name}", round(f.slope, 4),
                    f"in [{lo}, {hi}] (theory {f.ref_slope:+g})", lo <= f.slope <= hi, note=ci)]
    if extra:
        checks += extra(name, res, f)
    return checks


def _w2_bound(name, res, f):
    """W2 to the coupled particles <= the coupling distance (identity coupling), every run."""
    import h5py
    worst = 0.0
    with h5py.File(res.path, "r") as h5:
        for g in h5["compare"].values():
            worst = max(worst, g.attrs["w2_T"] / g["series/coupling_rms"][-1] - 1.0)
    return [Check(name, "max (W2 / D_sync - 1) over runs", worst, "<= 1e-9", worst <= 1e-9,
                  note="W2(cloud_N, coupled reference particles) at T")]


@register("compare.shb_forms", quick=True, full=True)
def shb_forms(ctx):
    from ..data import make_dataset
    from ..dynamics.sgd import RawTrainer, SHBTrainer, make_trainer, shb_polyak_from_velocity
    from ..models import make_model
    from ..dynamics import PNDriver
    from ..models.three_layer_pn import PNThreeLayer

    name = "compare.shb_forms"
    data = make_dataset("teacher_student", seed=0, n=64, d=4, k_star=3)
    steps = 400 if ctx.quick else 2000
    checks = []

    def rel(a, b):
        return float(np.abs(a - b).max() / np.abs(a).max())

    worst = 0.0
    for model in (make_model("two_layer", d=4, lam=0.01),
                  make_model("nc", d=4, q=1, p=3, lam=0.01, lam_W=0.02)):
        for beta in (math.inf, 40.0):
            kw = dict(N=64, batch=16, beta=beta, seed=1)
            v = SHBTrainer(model, data, dt=0.05, gamma=2.0, form="velocity", **kw)
            a, mu = shb_polyak_from_velocity(0.05, 2.0)
            p = SHBTrainer(model, data, alpha=a, mu=mu, form="polyak", **kw)
            v.step(steps)
            p.step(steps)
            worst = max(worst, rel(v.theta, p.theta), rel(v.W, p.W) if model.has_W else 0.0)
    checks.append(Check(name, f"max rel. diff Polyak vs velocity form ({steps} steps)", worst,
                        "<= 1e-12", worst <= 1e-12, note="two-layer and NC (W with momentum), "
                        "noiseless and beta = 40, batch 16"))
    model = make_model("nc", d=4, q=1, p=3)
    N, eta, wd, s = 64, 3.2, 1e-3, 0.01
    raw = RawTrainer(model, data, N=N, lr=eta, weight_decay=wd, noise_std=s, batch=8, seed=2)
    mf = make_trainer(model, data, N=N, method="noisy_sgd", lr=eta / N, weight_decay=N * wd,
                      beta=2 * (eta / N) / s**2, xi_W=N * 1.0, batch=8, seed=2)
    raw.step(steps)
    mf.step(steps)
    e1 = max(rel(mf.theta, raw.theta), rel(mf.W, raw.W))
    checks.append(Check(name, "rel. diff framework raw SGD vs per-neuron eps = eta/N", e1,
                        "<= 1e-12", e1 <= 1e-12, note=f"eta={eta}, wd={wd}, noise std={s}, N={N}"))
    raw = RawTrainer(model, data, N=N, lr=0.1, momentum=0.9, batch=8, seed=3)
    shb = make_trainer(model, data, N=N, method="shb", units="raw", lr=0.1, momentum=0.9,
                       batch=8, seed=3, weight_decay=0.0, weight_decay_W=0.0)
    raw.step(steps)
    shb.step(steps)
    e2 = max(rel(shb.theta, raw.theta), rel(shb.W, raw.W))
    checks.append(Check(name, "rel. diff framework momentum vs SHB (eps = sqrt(a/N))", e2,
                        "<= 1e-12", e2 <= 1e-12, note="alpha_raw = 0.1, mu = 0.9"))
    pm = PNThreeLayer(4)
    kw = dict(n1=16, n2=12, dt=0.05, gamma=2.0, batch=8, seed=4)
    a = PNDriver(pm, data, method="shb", **kw)
    b = PNDriver(pm, data, method="shb_polyak", **kw)
    a.step(steps)
    b.step(steps)
    e3 = max(rel(x, y) for x, y in zip(a.w.arrays(), b.w.arrays()))
    checks.append(Check(name, "rel. diff Pham–Nguyen SHB Polyak vs velocity", e3, "<= 1e-12",
                        e3 <= 1e-12))
    return checks


@register("compare.two_layer_rate_N", quick=True, full=True)
def two_layer_rate_N(ctx):
    lo, hi = (-0.5 - SLOPE_TOL_QUICK, -0.5 + SLOPE_TOL_QUICK) if ctx.quick else (-0.6, -0.4)
    return _rate_case(ctx, "compare.two_layer_rate_N", rate_N_config(ctx.level), "N_dt0.1",
                      lo, hi, extra=_w2_bound)


@register("compare.two_layer_rate_eps", quick=True, full=True)
def two_layer_rate_eps(ctx):
    cfg = rate_eps_config(ctx.level)
    N = cfg["compare"]["widths"][0]
    return _rate_case(ctx, "compare.two_layer_rate_eps", cfg, f"dt_N{N}", 0.35, 0.65)


@register("compare.shb_rate_N", quick=True, full=True)
def shb_rate_N(ctx):
    lo, hi = (-0.5 - SLOPE_TOL_QUICK, -0.5 + SLOPE_TOL_QUICK) if ctx.quick else (-0.6, -0.4)
    return _rate_case(ctx, "compare.shb_rate_N", shb_rate_config(ctx.level), "N_dt0.1", lo, hi)


@register("compare.pn_rate_n", quick=True, full=True)
def pn_rate_n(ctx):
    cfg = pn_rate_config(ctx.level)
    dt = cfg["compare"]["dts"][0]
    return _rate_case(ctx, "compare.pn_rate_n", cfg, f"N_dt{dt:g}",
                      -0.5 - SLOPE_TOL_QUICK, -0.5 + SLOPE_TOL_QUICK)
