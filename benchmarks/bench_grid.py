"""Benchmark: mfpde's finite-volume solver against py-pde at equal accuracy (1-D Fokker–Planck).

Problem (theory/grid.md §1, validation.md §K2): the Ornstein–Uhlenbeck Fokker–Planck equation
``d_t rho = d_x(lam x rho) + beta^{-1} d_xx rho`` on ``[-L, L]`` (``L = 4``, ``lam = 1``,
``beta = 10``), ``rho_0 = N(1, 1/4)``, solved to ``t = 1``; the exact solution is the Gaussian
``N(m(t), v(t))`` of :func:`mfpde.meanfield.grid.ou_exact_moments`.

- mfpde: :class:`mfpde.meanfield.grid.FVSolver` (CCH fluxes on ``phi = Psi + beta^{-1} log rho``,
  adaptive CFL / diffusive steps, default ``cfl``, ``c_diff`` 0.25 or 0.5) for the schemes of
  :data:`MFPDE_SCHEMES` on ``J`` cells; error: ``L1 = dx sum_j |rho_j - exact cell average_j|``.
- py-pde (optional extra ``bench``): ``PDE({"c": "d_dx(lam*x*c) + D*laplace(c)"})`` with a
  zero-value boundary condition (central differences), its compiled fixed-step Euler and RK4
  steppers (``make_stepper(state, dt)``; one call advances ``0 -> 1``) with ``dt = 1/n``; error:
  ``L1 = dx sum_j |c_j - exact density(x_j)|`` (py-pde holds point values).

Every configuration is run once for its error and a first time; then the cheapest configurations
reaching ``L1 <= 1e-3`` and ``L1 <= 1e-4`` (the two cheapest of each code per target) are timed in
alternation, ``repeat`` rounds, and the time to solution is the median. The ratio is mfpde's time
over py-pde's. JIT: the first call of a configuration (compilation, or loading numba's on-disk
cache for mfpde) minus its median, reported separately and excluded from the times. ``quick``
scans fewer grids and only the py-pde configurations of :data:`PYPDE_QUICK` (the cheapest ones of
the full scan on the development machine), since py-pde compiles every ``(J, dt)`` anew (5–20 s).

Run ``python benchmarks/bench_grid.py [--quick] [--repeat 5]``; ``run(quick=True, repeat=5) ->
dict`` and ``to_markdown(result) -> str`` are the suite's entry points.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings

import numpy as np

L, LAM, BETA, M0, V0, T_END = 4.0, 1.0, 10.0, 1.0, 0.25, 1.0
TARGETS = (1e-3, 1e-4)
#: (label, order, method, c_diff) of the mfpde schemes: the default diffusive limit
#: ``c_diff = 0.25`` and grid.md's bound 1/2 (the default is smaller for rough data, where the
#: discrete free energy must decrease; the benchmark's data are smooth)
MFPDE_SCHEMES = (("minmod+ssprk2", 2, "ssprk2", 0.25), ("minmod+ssprk2", 2, "ssprk2", 0.5),
                 ("minmod+euler", 2, "euler", 0.25), ("minmod+euler", 2, "euler", 0.5),
                 ("upwind1+euler", 1, "euler", 0.25))
MFPDE_J = {"full": (100, 140, 170, 200, 240, 280, 400, 480, 560, 680, 800, 1130),
           "quick": (100, 170, 200, 240, 480, 560, 680)}


def _steps(J, fac):
    """Fixed steps to ``t = 1`` with ``dt = fac beta dx^2`` (py-pde's central scheme is stable
    for ``fac < 1/2`` with Euler, ``fac < 0.69`` with RK4)."""
    return int(math.ceil(T_END / (fac * BETA * (2 * L / J) ** 2)))


#: py-pde (scheme, J, steps to t = 1) of the full scan: grids around the ones reaching the
#: targets, Euler with ``dt = (0.1, 0.2, 0.3) beta dx^2`` (its time error partly cancels the
#: spatial one near 0.1) and RK4 with ``dt = 0.6 beta dx^2``
PYPDE_FULL = tuple((s, J, _steps(J, f)) for J in (290, 320, 850, 950)
                   for s, f in (("euler", 0.1), ("euler", 0.2), ("euler", 0.3), ("rk4", 0.6)))
#: py-pde configurations of the quick run (the cheapest of the full scan for each target)
PYPDE_QUICK = (("euler", 290, _steps(290, 0.2)), ("euler", 950, _steps(950, 0.2)))


def _exact():
    from mfpde.meanfield.grid import ou_exact_moments
    return ou_exact_moments(T_END, M0, V0, LAM, BETA)


class _Mfpde:
    """One mfpde configuration: ``run()`` solves from the initial state to ``T_END``."""

    code = "mfpde"

    def __init__(self, label, order, method, c_diff, J):
        from mfpde.meanfield.grid import FVSolver, Grid1D, gaussian_cell_averages, ou_potential
        self.label, self.J = f"{label}, c_diff = {c_diff:g}", J
        self.grid = Grid1D(-L, L, J)
        self.solver = FVSolver(self.grid, ou_potential(self.grid, LAM),
                               gaussian_cell_averages(self.grid, M0, V0), beta=BETA,
                               order=order, method=method, c_diff=c_diff, boundary_cells=0)
        self.state = self.solver.state_dict()
        self.exact = gaussian_cell_averages(self.grid, *_exact())

    def run(self):
        self.solver.load_state_dict(self.state)
        self.solver.run(T_END)

    def error(self):
        return float(np.abs(self.solver.rho - self.exact).sum() * self.grid.dx)

    def describe(self):
        return {"code": "mfpde", "scheme": self.label, "J": self.J, "steps": self.solver.k}


class _PyPDE:
    """One py-pde configuration (fixed-step ``scheme`` with ``n`` steps of ``1/n``)."""

    code = "py-pde"

    def __init__(self, scheme, J, n):
        import pde
        from pde.solvers import EulerSolver, RungeKuttaSolver
        self.scheme, self.J, self.n = scheme, J, n
        grid = pde.CartesianGrid([[-L, L]], [J])
        expr = f"d_dx({LAM}*x*c) + {1.0 / BETA}*laplace(c)"
        init = f"exp(-(x-{M0})**2/(2*{V0}))/sqrt(2*pi*{V0})"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            eq = pde.PDE({"c": expr}, bc={"value": 0})
            self.state = pde.ScalarField.from_expression(grid, init)
            solver = (EulerSolver if scheme == "euler" else RungeKuttaSolver)(eq)
            self.stepper = solver.make_stepper(self.state, dt=T_END / n)
        self.field = self.state.copy()
        self.x, self.dx = grid.axes_coords[0], 2 * L / J

    def run(self):
        self.field.data[...] = self.state.data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.stepper(self.field, 0.0, T_END)

    def error(self):
        m, v = _exact()
        ex = np.exp(-(self.x - m) ** 2 / (2 * v)) / math.sqrt(2 * math.pi * v)
        return float(np.abs(self.field.data - ex).sum() * self.dx)

    def describe(self):
        return {"code": "py-pde", "scheme": self.scheme, "J": self.J, "steps": self.n}


def _first(cfg):
    t0 = time.perf_counter()
    cfg.run()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    cfg.run()
    return first, time.perf_counter() - t0


def _scan(configs):
    """Run every configuration twice: rows with its error, first-call and second-call times."""
    rows = []
    for make in configs:
        t0 = time.perf_counter()
        cfg = make()
        setup = time.perf_counter() - t0
        first, second = _first(cfg)
        row = dict(cfg.describe(), L1=cfg.error(), t_first=setup + first, t_scan=second)
        rows.append((row, cfg))
    return rows


def _alternate(cfgs, repeat):
    """Median time of each configuration, timed in alternation (``repeat`` rounds)."""
    times = [[] for _ in cfgs]
    for _ in range(repeat):
        for k, cfg in enumerate(cfgs):
            t0 = time.perf_counter()
            cfg.run()
            times[k].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def _have_pypde():
    try:
        import pde  # noqa: F401
        return True
    except ImportError:
        return False


def run(quick=True, repeat=5):
    """The equal-accuracy comparison (module docstring).

    Returns a dict: ``scan`` (one row per configuration: ``code``, ``scheme``, ``J``, ``steps``,
    ``L1``, ``t_first``, ``t_scan``), ``targets`` (per ``L1`` target: the chosen ``mfpde`` and
    ``py-pde`` rows with the median ``t`` and the JIT time ``t_jit``, and ``ratio`` = mfpde /
    py-pde, None without py-pde), ``jit_first`` (per code, the JIT time of its first
    configuration), ``py_pde_available``, ``repeat``, ``quick``.
    """
    repeat = max(5, int(repeat))
    have = _have_pypde()
    if not have:
        print("py-pde is not installed (optional extra: pip install -e '.[bench]'); "
              "timing mfpde only", file=sys.stderr)
    Js = MFPDE_J["quick" if quick else "full"]
    makers = [lambda lab=lab, o=o, m=m, c=c, J=J: _Mfpde(lab, o, m, c, J)
              for lab, o, m, c in MFPDE_SCHEMES for J in Js]
    if have:
        pp = PYPDE_QUICK if quick else PYPDE_FULL
        makers += [lambda s=s, J=J, n=n: _PyPDE(s, J, n) for s, J, n in pp]
    rows = _scan(makers)
    out = {"quick": bool(quick), "repeat": repeat, "py_pde_available": have,
           "scan": [r for r, _ in rows], "targets": {},
           # the first call of each code in this process: mfpde loads (or compiles) its kernels
           # once, py-pde compiles every configuration
           "jit_first": {code: next((max(0.0, r["t_first"] - r["t_scan"]) for r, _ in rows
                                     if r["code"] == code), None)
                         for code in ("mfpde", "py-pde")}}
    for target in TARGETS:
        chosen = {}
        cand = []
        for code in ("mfpde", "py-pde"):
            ok = sorted((r for r in rows if r[0]["code"] == code and r[0]["L1"] <= target),
                        key=lambda r: r[0]["t_scan"])[:2]
            cand += ok
        med = _alternate([c for _, c in cand], repeat)
        for (row, _), t in zip(cand, med):
            best = chosen.get(row["code"])
            if best is None or t < best["t"]:
                chosen[row["code"]] = dict(row, t=t, t_jit=max(0.0, row["t_first"] - t))
        res = {"mfpde": chosen.get("mfpde"), "py-pde": chosen.get("py-pde")}
        res["ratio"] = (res["mfpde"]["t"] / res["py-pde"]["t"]
                        if res["mfpde"] and res["py-pde"] else None)
        out["targets"][f"{target:g}"] = res
    return out


def _cfg(r):
    return "—" if r is None else f"{r['scheme']}, J = {r['J']}, {r['steps']} steps"


def _t(r, key="t"):
    return "—" if r is None or r[key] is None else f"{r[key] * 1e3:.3g} ms"


def to_markdown(res) -> str:
    """The equal-accuracy table and the scan (Markdown)."""
    out = ["## Grid solver vs py-pde at equal accuracy (1-D OU Fokker–Planck to t = 1)", "",
           "| L1 target | mfpde configuration | L1 | time | py-pde configuration | L1 | time "
           "| mfpde / py-pde |", "|---|---|---|---|---|---|---|---|"]
    for tg, r in res["targets"].items():
        m, p = r["mfpde"], r["py-pde"]
        out.append(f"| {tg} | {_cfg(m)} | {'—' if m is None else format(m['L1'], '.2e')} | "
                   f"{_t(m)} | {_cfg(p)} | {'—' if p is None else format(p['L1'], '.2e')} | "
                   f"{_t(p)} | {'—' if r['ratio'] is None else format(r['ratio'], '.2f')} |")
    out += ["", "JIT (first call minus the median; excluded above): "
            + "; ".join(f"L1 {tg}: mfpde {_t(r['mfpde'], 't_jit')}, py-pde "
                        f"{_t(r['py-pde'], 't_jit')}" for tg, r in res["targets"].items())
            + f"; first call of the process: mfpde {_t(res['jit_first'], 'mfpde')}, py-pde "
            f"{_t(res['jit_first'], 'py-pde')}. Medians of {res['repeat']} alternated runs.", "",
            "| code | scheme | J | steps | L1 | time (scan) |", "|---|---|---|---|---|---|"]
    for r in res["scan"]:
        out.append(f"| {r['code']} | {r['scheme']} | {r['J']} | {r['steps']} | {r['L1']:.2e} | "
                   f"{r['t_scan'] * 1e3:.3g} ms |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer grids, two py-pde configurations")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    sys.stdout.write(to_markdown(run(quick=args.quick, repeat=args.repeat)))
