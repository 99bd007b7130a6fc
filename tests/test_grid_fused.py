"""The compiled multi-step loop of the finite-volume solver (theory/grid.md §1.1, §1.2).

The reference below is the solver's per-stage step written in NumPy (``phi`` with the solver's
logarithm :func:`~mfpde.kernels.grid.log_floor`, itself checked against ``np.log`` to 1 ulp in
tests/test_kernels_grid_log.py; velocities by ``np.diff``, the divergence kernels, the positivity / CFL rejection loop): the fused
loop must reproduce it bit for bit, for both schemes in 1-D and 2-D, however its steps are split.
"""
import numpy as np
import pytest

from mfpde.kernels.grid import div_axis0, div_axis1, log_floor
from mfpde.meanfield.grid import (FVSolver, Grid1D, Grid2D, InteractionPotential,
                                  double_well_potential, gaussian_cell_averages, ou_potential)


def _log(rho, floor):
    out = np.empty(rho.shape)
    log_floor(np.ascontiguousarray(rho), floor, out)
    return out


def _ref_rhs(s, rho, psi):
    """``d rho/dt`` and the maximal speeds, in NumPy (the solver's scheme, stage by stage)."""
    phi = psi + s.beta_inv * _log(rho, s.floor) if s.beta_inv > 0 else psi
    vel = [-np.diff(phi, axis=k) / s.grid.dxs[k] for k in range(s.ndim)]
    a = [float(np.max(np.abs(v))) for v in vel]
    if s.ndim == 1:
        out = np.empty((rho.size, 1))
        div_axis0(rho.reshape(-1, 1), vel[0].reshape(-1, 1), s.grid.dx, s.order, s.kappa, out,
                  False)
        return out.reshape(rho.shape), a
    out = np.empty(rho.shape)
    div_axis0(rho, np.ascontiguousarray(vel[0]), s.grid.dxs[0], s.order, s.kappa, out, False)
    div_axis1(rho, np.ascontiguousarray(vel[1]), s.grid.dxs[1], s.order, s.kappa, out, True)
    return out, a


def _ref_dt(s, a):
    dxs, dt = s.grid.dxs, s.dt_max
    if s.ndim == 1:
        if a[0] > 0:
            dt = min(dt, s.cfl * dxs[0] / (2.0 * a[0]))
        if s.beta_inv > 0:
            dt = min(dt, s.c_diff * s.beta * dxs[0] ** 2)
    else:
        for k in range(2):
            if a[k] > 0:
                dt = min(dt, s.cfl * dxs[k] / (4.0 * a[k]))
        if s.beta_inv > 0:
            dt = min(dt, s.c_diff * s.beta * min(dxs) ** 2 / 2.0)
    return dt


def _ref_run(s, t_end):
    """The per-stage steps to ``t_end``; returns ``(rho, t, k, n_rejected)``. 1-D Euler takes
    the flux-difference form ``rho - (dt/dx)(F_{j+1/2} - F_{j-1/2})`` of the compiled loop."""
    rho, t, k, rej = s.rho.copy(), s.t, 0, 0
    flux_form = s.method == "euler" and s.ndim == 1
    while t < t_end:
        psi = s.potential.psi(rho)
        r1, a = _ref_rhs(s, rho, psi)
        dt = min(_ref_dt(s, a), t_end - t)
        for _ in range(40):
            new = _flux_form_step(s, rho, psi, dt) if flux_form else rho + dt * r1
            if s.method == "ssprk2" and np.all(new >= 0):
                r2, a2 = _ref_rhs(s, new, s.potential.psi(new))
                new = 0.5 * (rho + new + dt * r2) if _ref_dt(s, a2) >= dt * (1 - 1e-12) else None
            if new is not None and np.all(new >= 0) and (s.beta_inv == 0 or np.all(new > 0)):
                break
            dt *= 0.5
            rej += 1
        rho = new
        t = t_end if t + dt >= t_end else t + dt
        k += 1
    return rho, t, k, rej


def _flux_form_step(s, rho, psi, dt):
    """1-D Euler ``rho_j - (dt/dx)(F_{j+1/2} - F_{j-1/2})`` with the fluxes of ``div_axis0``
    (taken with ``dx = -1``: ``-(F - F_prev)/(-1) = F - F_prev`` exactly)."""
    phi = psi + s.beta_inv * _log(rho, s.floor) if s.beta_inv > 0 else psi
    u = -np.diff(phi) / s.grid.dx
    dF = np.empty((rho.size, 1))
    div_axis0(rho.reshape(-1, 1), u.reshape(-1, 1), -1.0, s.order, s.kappa, dF, False)
    return rho - (dt / s.grid.dx) * dF.ravel()


def _make(kind, order, method, beta, **kw):
    if kind == "1d":
        g = Grid1D(-4, 4, 90)
        return FVSolver(g, ou_potential(g), gaussian_cell_averages(g, 1.0, 0.25), beta=beta,
                        order=order, method=method, boundary_cells=0, **kw)
    if kind == "dw":
        g = Grid1D(-3, 3, 70)
        rho0 = np.random.default_rng(1).uniform(0.5, 1.5, g.shape)
        return FVSolver(g, double_well_potential(g), rho0, beta=beta, order=order,
                        method=method, boundary_cells=0, **kw)
    g = Grid2D((-4, -4), (4, 4), (26, 30))
    return FVSolver(g, ou_potential(g), gaussian_cell_averages(g, [0.5, -0.3], [0.4, 0.3]),
                    beta=beta, order=order, method=method, boundary_cells=0, **kw)


CASES = [(kind, order, method, beta) for kind in ("1d", "dw", "2d") for order in (1, 2)
         for method in ("euler", "ssprk2") for beta in (10.0, np.inf)]


@pytest.mark.parametrize("kind,order,method,beta", CASES)
def test_fused_equals_per_stage_reference_bitwise(kind, order, method, beta):
    T = 0.3 if kind == "2d" else 0.6
    s = _make(kind, order, method, beta)
    assert s.fused_ok()
    rho, t, k, rej = _ref_run(s, T)
    s.run(T)
    assert (s.t, s.k, s.n_rejected) == (t, k, rej)
    assert np.array_equal(s.rho, rho)
    if not (kind != "2d" and method == "euler"):
        # the Python steps (fused = False) are the same steps, bit for bit
        p = _make(kind, order, method, beta)
        p.fused = False
        p.run(T, callback=lambda sol: None)
        assert p.k == k and np.array_equal(p.rho, rho)


@pytest.mark.parametrize("kind,method", [("1d", "euler"), ("1d", "ssprk2"), ("2d", "euler"),
                                         ("2d", "ssprk2")])
def test_fused_step_splitting_is_bitwise_invariant(kind, method):
    T = 0.2
    ref = _make(kind, 2, method, 10.0)
    ref.run(T)
    for chunks in ((1,), (7,), (3, 11, 2)):
        s = _make(kind, 2, method, 10.0)
        i = 0
        while s.t < T:
            s.step(chunks[i % len(chunks)], t_end=T)
            i += 1
        assert s.k == ref.k and s.t == ref.t == T and np.array_equal(s.rho, ref.rho)
    # through the controller (callback: steps in chunks), and resumed from a state dict
    c = _make(kind, 2, method, 10.0)
    c.run(T, callback=lambda sol: None, callback_every=5)
    assert c.k == ref.k and np.array_equal(c.rho, ref.rho)
    a = _make(kind, 2, method, 10.0)
    a.step(4, t_end=T)
    b = _make(kind, 2, method, 10.0)
    b.load_state_dict(a.state_dict())
    b.run(T)
    assert b.k == ref.k and np.array_equal(b.rho, ref.rho)


def test_fused_rejections_match_reference():
    """Rough data, cfl = 1: the SSP-RK2 stage-2 speed check rejects steps; the fused loop
    rejects the same ones."""
    g = Grid1D(-2, 2, 60)
    rho0 = np.random.default_rng(7).uniform(0.05, 2.0, g.shape)
    s = FVSolver(g, ou_potential(g), rho0, beta=0.5, method="ssprk2", cfl=1.0, c_diff=0.5,
                 boundary_cells=0)
    rho, t, k, rej = _ref_run(s, 0.05)
    s.run(0.05)
    assert rej > 0
    assert (s.k, s.n_rejected) == (k, rej) and np.array_equal(s.rho, rho)


@pytest.mark.parametrize("kind,method", [("1d", "ssprk2"), ("2d", "euler"), ("2d", "ssprk2")])
def test_fused_mass_and_positivity(kind, method):
    for beta in (10.0, np.inf):
        s = _make(kind, 2, method, beta)
        s.run(0.5)
        assert abs(s.mass() - 1.0) < 1e-13
        assert s.rho.min() >= 0 and (beta == np.inf or s.rho.min() > 0)


def test_fused_no_finite_step_raises():
    g = Grid1D(-1, 1, 20)
    for method in ("euler", "ssprk2"):
        s = FVSolver(g, ou_potential(g, 0.0), np.ones(20), beta=np.inf, method=method,
                     boundary_cells=0)
        assert s.fused_ok()
        with pytest.raises(RuntimeError, match="no finite time step"):
            s.run(1.0)


def test_nonlocal_python_steps_equal_reference():
    """A ``rho``-dependent potential takes the Python steps (compiled ``rhs``): the same steps
    as the NumPy reference, bit for bit."""
    g = Grid2D((-2, -2), (2, 2), (8, 7))
    rng = np.random.default_rng(3)
    feats = np.tanh(g.points @ rng.standard_normal((2, 3)))
    V = 0.5 * (g.points ** 2).sum(1).reshape(g.shape)
    rho0 = rng.uniform(0.5, 1.5, g.shape)
    for method in ("euler", "ssprk2"):
        s = FVSolver(g, InteractionPotential(g, V, feats @ feats.T), rho0, beta=5.0,
                     method=method, boundary_cells=0)
        assert not s.fused_ok()
        rho, t, k, rej = _ref_run(s, 0.2)
        s.run(0.2)
        assert s.k == k and np.array_equal(s.rho, rho)
