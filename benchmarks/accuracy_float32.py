"""Accuracy of the float32 option against float64 on validation cases (docs/performance.md,
"float32 option"): ``python -m benchmarks.accuracy_float32 [--out DIR]``.

Each measurement of :mod:`mfpde.validation` below runs twice with the same seeds, once with the
models of the case as they are (float64) and once with ``precision = "float32"`` (the
mixed-precision gradient pass of :mod:`mfpde.models.readout`; the cases' ``make_model`` is
wrapped for the run), and the table lists both values, their difference and the case's
acceptance check in each precision:

- ``core.fd_gradients``: the force against central finite differences of the float64 objective
  (relative; the float32 pass's own rounding error shows here);
- ``core.linear_gibbs``: linear neuron, z-scores of the particle mean and covariance against the
  Gaussian law at t = 1 and the Gibbs state at t = 8 (dynamics.md §2.4);
- ``core.teacher_fit``: noiseless full-batch flow on a realizable tanh teacher: final risk and
  the largest relative increase of the regularised loss along the path;
- ``core.nc_stationary``: NC model, Lemma 4.5 residual x beta and the NC1 collapse;
- ``kinetic.gibbs``: underdamped Langevin (BAOAB), z-scores at the stationary Gibbs law;
- ``nc.v14_digits`` (b): digits (d = 64, the BLAS projections), noisy SGD with W trained, 60
  epochs: the Lemma 4.5 diagonal (worst of p) and residual, NB against the V7 bound.

Runs in about 2 minutes on 2 cores. Writes ``DIR/accuracy_float32.md`` and ``.json``.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time

import numpy as np


@contextlib.contextmanager
def models_in(precision):
    """Build the validation cases' models with ``precision`` (float64: unchanged)."""
    import mfpde.models
    import mfpde.validation.cases_core as core
    import mfpde.validation.cases_nc as nc
    orig = mfpde.models.make_model

    def make(*args, **kw):
        return orig(*args, **dict(kw, precision=precision))

    saved = [(mod, getattr(mod, "make_model")) for mod in (mfpde.models, core, nc)]
    try:
        for mod, _ in saved:
            mod.make_model = make
        yield
    finally:
        for mod, fn in saved:
            mod.make_model = fn


def _measure_fd():
    from mfpde.validation.cases_core import fd_gradient_errors
    r = fd_gradient_errors()
    return [(f"core.fd_gradients {k}", "max rel. error vs finite differences", v, "< 1e-6",
             v < 1e-6) for k, v in r.items()]


def _measure_linear():
    from mfpde.validation.cases_core import linear_gibbs
    r = linear_gibbs(N=4000, beta=10.0, lam=0.5, dt=0.01)
    out = []
    for row in r["rows"]:
        for key in ("z_mean", "z_cov"):
            out.append((f"core.linear_gibbs t = {row['t']:g}", key, row[key], "< 3", row[key] < 3))
    var = float(np.max(np.abs(r["theta"].var(0) / r["var_inf"] - 1)))
    tol = 4 * math.sqrt(2 / r["theta"].shape[0])
    out.append(("core.linear_gibbs t = 8", "max |var / var_inf - 1|", var, f"<= {tol:.3f}",
                var <= tol))
    return out


def _measure_teacher():
    from mfpde.validation.cases_core import teacher_fit
    r = teacher_fit(N=1000, n=200, dt=1.0, steps=300)
    return [("core.teacher_fit", "final risk", r["risk"], "< 1e-3", r["risk"] < 1e-3),
            ("core.teacher_fit", "max rel. increase of the reg. loss", r["max_increase"],
             "<= 1e-13 (float64 test)", r["max_increase"] <= 1e-13)]


def _measure_nc():
    from mfpde.validation.cases_core import nc_stationary
    r = nc_stationary(N=4000, beta=200.0, Gamma=3.0, dt=0.05, steps=10_000)
    res = r["avg_residual"] * r["beta"]
    return [("core.nc_stationary", "Lemma 4.5 residual x beta", res, "<= 0.1", res <= 0.1),
            ("core.nc_stationary", "NC1 ratio (init / end)", r["nc1_ratio"], ">= 100",
             r["nc1_ratio"] >= 100)]


def _measure_kinetic():
    from mfpde.validation.cases_kinetic import experiment_gibbs
    r = experiment_gibbs()
    z = max(float(np.max(np.abs(v))) for v in r["z_end"].values())
    zr = abs(r["var_r"] - 1 / r["beta"]) / r["var_r_se"]
    return [("kinetic.gibbs (BAOAB)", "max |z| of the moments at the Gibbs state", z, "<= 3",
             z <= 3),
            ("kinetic.gibbs (BAOAB)", "velocity variance z", zr, "<= 3", zr <= 3)]


def _measure_v14():
    from mfpde.validation.cases_nc import v14_run
    r = v14_run("b", epochs=60, seed=0, beta_inv=1e-2, observe_every=2)
    worst = float(r["diag"][np.argmax(np.abs(r["diag"] - 1))])
    nb = r["nb_avg"] / r["nb_bound"]
    return [("nc.v14_digits (b), d = 64", "Lemma 4.5 diagonal x beta (worst)", worst,
             "1 ± 0.15", abs(worst - 1) <= 0.15),
            ("nc.v14_digits (b), d = 64", "Lemma 4.5 residual x beta", r["lemma_rel"], "<= 0.5",
             r["lemma_rel"] <= 0.5),
            ("nc.v14_digits (b), d = 64", "NB / V7 bound", nb, ">= 0.9", nb >= 0.9)]


MEASUREMENTS = (_measure_fd, _measure_linear, _measure_teacher, _measure_nc, _measure_kinetic,
                _measure_v14)


def run() -> dict:
    rows, times = {}, {}
    for precision in ("float64", "float32"):
        t0 = time.perf_counter()
        with models_in(precision):
            rows[precision] = [r for m in MEASUREMENTS for r in m()]
        times[precision] = time.perf_counter() - t0
    out = []
    for a, b in zip(rows["float64"], rows["float32"]):
        assert a[:2] == b[:2] and a[3] == b[3]
        out.append(dict(case=a[0], quantity=a[1], float64=float(a[2]), float32=float(b[2]),
                        check=a[3], ok64=bool(a[4]), ok32=bool(b[4])))
    return dict(rows=out, seconds=times)


def to_markdown(res) -> str:
    L = ["| case | quantity | float64 | float32 | difference | check | passes (float64 / "
         "float32) |",
         "|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        L.append(f"| {r['case']} | {r['quantity']} | {r['float64']:.4g} | {r['float32']:.4g} | "
                 f"{r['float32'] - r['float64']:+.2g} | {r['check']} | "
                 f"{'pass' if r['ok64'] else 'FAIL'} / {'pass' if r['ok32'] else 'FAIL'} |")
    s = res["seconds"]
    L += ["", f"Wall time: float64 {s['float64']:.0f} s, float32 {s['float32']:.0f} s (the "
          "validation sizes are small: the time is not the float32 speed).", ""]
    return "\n".join(L)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.accuracy_float32",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmark-results", help="output directory")
    args = ap.parse_args(argv)
    from .bench_cases import write_outputs
    res = run()
    write_outputs(args.out, "accuracy_float32", res, to_markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
