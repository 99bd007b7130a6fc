"""Benchmark: the linear Fokker–Planck (Ornstein–Uhlenbeck) grid problem in py-pde and in mfpde.

Problem (theory/grid.md §1, validation.md §K2): ``d_t rho = d_x(lam x rho) + beta^{-1} d_xx rho``
on ``[-L, L]`` with ``J`` cells (1-D) or ``J x J`` cells (2-D), ``lam = 1``, ``beta = 10``, initial
Gaussian ``N(1, 0.25)``, the same explicit Euler time step ``dt`` in both codes.

- py-pde (optional extra ``bench``): ``PDE({"c": "d_dx(lam*x*c) + D*laplace(c)"})`` (1-D; 2-D adds
  the ``y`` terms) with a zero-value boundary condition, integrated by its compiled Euler stepper
  (``EulerSolver(eq).make_stepper(state, dt)``); one call advances ``n`` steps, and the time per step
  is that call's time divided by ``n``.
- mfpde: :class:`mfpde.meanfield.grid.FVSolver` (CCH upwind fluxes on ``phi = Psi + beta^{-1} log
  rho``, minmod, forward Euler, ``dt_max = dt``) through (a) ``step()`` (Python-level step, the
  path used with nonlocal potentials) and (b) ``run()``, which for a ``rho``-independent potential in
  1-D uses the fused compiled loop.

Timings are the median of ``repeats >= 5`` calls after one warm-up call (compilation excluded).
Run ``python benchmarks/bench_grid.py [--full]``; ``run(quick=True) -> dict`` is the entry point of the
benchmark suite.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time



def _median_time(fn, repeats):
    fn()                                    # warm-up (compilation, caches)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _mfpde_times(ndim, J, L, lam, beta, dt, n_steps, repeats):
    from mfpde.meanfield.grid import FVSolver, Grid1D, Grid2D, gaussian_cell_averages, ou_potential
    grid = Grid1D(-L, L, J) if ndim == 1 else Grid2D((-L, -L), (L, L), (J, J))
    rho0 = gaussian_cell_averages(grid, 1.0, 0.25)
    solver = FVSolver(grid, ou_potential(grid, lam), rho0, beta=beta, order=2, method="euler",
                      dt_max=dt, boundary_cells=0)
    state = solver.state_dict()

    def steps():
        solver.load_state_dict(state)
        solver.step(n_steps)

    t_step = _median_time(steps, repeats) / n_steps
    dt_used = solver.dt_last
    out = {"mfpde_step_s": t_step, "mfpde_dt": dt_used}
    if ndim == 1:
        def fused():
            solver.load_state_dict(state)
            solver.run(solver.t + n_steps * dt_used * (1 - 1e-9))
        t_run = _median_time(fused, repeats)
        out["mfpde_run_s"] = t_run / max(1, solver.k)
    return out


def _pypde_time(ndim, J, L, lam, beta, dt, n_steps, repeats):
    import warnings
    import pde
    from pde.solvers import EulerSolver
    lim = [[-L, L]] * ndim
    grid = pde.CartesianGrid(lim, [J] * ndim)
    if ndim == 1:
        expr = f"d_dx({lam}*x*c) + {1.0 / beta}*laplace(c)"
        init = "exp(-(x-1)**2/(2*0.25))"
    else:
        expr = f"d_dx({lam}*x*c) + d_dy({lam}*y*c) + {1.0 / beta}*laplace(c)"
        init = "exp(-((x-1)**2 + (y-1)**2)/(2*0.25))"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eq = pde.PDE({"c": expr}, bc={"value": 0})
        state = pde.ScalarField.from_expression(grid, init)
        solver = EulerSolver(eq)
        stepper = solver.make_stepper(state, dt=dt)
    field = state.copy()

    def steps():
        field.data[...] = state.data
        stepper(field, 0.0, n_steps * dt * (1 - 1e-9))

    return {"pypde_step_s": _median_time(steps, repeats) / n_steps}


def run(quick=True, repeats=5):
    """Time both codes on the 1-D (and, unless ``quick``, 2-D) OU problem.

    Returns a dict with, per case, ``pypde_step_s`` (None if py-pde is missing), ``mfpde_step_s``,
    ``mfpde_run_s`` (1-D fused loop) and the ratios ``mfpde/pypde``.
    """
    repeats = max(5, int(repeats))
    try:
        import pde  # noqa: F401
        have_pypde = True
    except ImportError:
        have_pypde = False
        print("py-pde is not installed (optional extra: pip install -e '.[bench]'); "
              "timing mfpde only", file=sys.stderr)
    cases = [("ou_1d", 1, 400, 2000)]
    if not quick:
        cases += [("ou_1d_J1600", 1, 1600, 1000), ("ou_2d", 2, 128, 100)]
    L, lam, beta = 4.0, 1.0, 10.0
    results = {"py_pde_available": have_pypde, "repeats": repeats}
    for name, ndim, J, n_steps in cases:
        dx = 2 * L / J
        dt = 0.2 * beta * dx * dx / ndim          # below both codes' explicit stability limits
        res = {"J": J, "ndim": ndim, "n_steps": n_steps, "dt": dt}
        res.update(_mfpde_times(ndim, J, L, lam, beta, dt, n_steps, repeats))
        if have_pypde:
            res.update(_pypde_time(ndim, J, L, lam, beta, dt, n_steps, repeats))
            res["ratio_step"] = res["mfpde_step_s"] / res["pypde_step_s"]
            if "mfpde_run_s" in res:
                res["ratio_run"] = res["mfpde_run_s"] / res["pypde_step_s"]
        else:
            res["pypde_step_s"] = None
        results[name] = res
        line = (f"{name}: J={J}{'x' + str(J) if ndim == 2 else ''} dt={dt:.3g}  "
                f"mfpde step() {res['mfpde_step_s'] * 1e6:.2f} us/step")
        if "mfpde_run_s" in res:
            line += f", run() fused {res['mfpde_run_s'] * 1e6:.2f} us/step"
        if have_pypde:
            line += (f"; py-pde {res['pypde_step_s'] * 1e6:.2f} us/step; ratio mfpde/py-pde: "
                     f"step() {res['ratio_step']:.2f}")
            if "ratio_run" in res:
                line += f", run() {res['ratio_run']:.2f}"
        print(line)
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="also the larger 1-D and the 2-D case")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    run(quick=not args.full, repeats=args.repeats)
