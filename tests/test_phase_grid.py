"""Phase-space (theta, r) grid for the kinetic equation, D = 1 (theory/grid.md §4; §V4e)."""
import numpy as np
import pytest

from mfpde.meanfield.grid import (Grid1D, InteractionPotential, cell_averages,
                                  double_well_potential, gaussian_cell_averages, ou_potential)
from mfpde.meanfield.phase_grid import PhaseGridSolver, maxwellian_product


def _solver(J=40, beta=2.0, gamma=1.0, pot="dw", **kw):
    tg = Grid1D(-3, 3, J)
    rg = Grid1D(-4.5, 4.5, J)
    p = double_well_potential(tg) if pot == "dw" else ou_potential(tg, 1.0)
    rho0 = maxwellian_product(tg, rg, gaussian_cell_averages(tg, 0.8, 0.09), 0.25)
    return PhaseGridSolver(tg, -4.5, 4.5, J, p, gamma=gamma, beta=beta, rho0=rho0, **kw)


def _record(s, T):
    F, mass, mins = [s.free_energy()], [s.mass()], [s.rho.min()]

    def cb(sol):
        F.append(sol.free_energy())
        mass.append(sol.mass())
        mins.append(sol.rho.min())

    s.run(T, callback=cb)
    return np.array(F), np.array(mass), np.array(mins)


@pytest.mark.parametrize("velocity_method", ["implicit", "explicit"])
def test_mass_positivity_and_kinetic_free_energy(velocity_method):
    s = _solver(J=32, velocity_method=velocity_method)
    F, mass, mins = _record(s, 1.0)
    assert np.max(np.abs(mass - 1)) < 1e-12
    assert mins.min() >= 0
    # F_kin non-increasing up to the splitting error
    assert np.max(np.diff(F) / np.abs(F[:-1])) <= 1e-3
    assert F[-1] < F[0]


def test_noiseless_hamiltonian_decreases():
    """beta = inf: H = E_pot + 1/2 int r^2 rho decreases (friction) up to splitting error."""
    s = _solver(J=40, beta=np.inf)
    F, mass, mins = _record(s, 2.0)
    assert np.max(np.abs(mass - 1)) < 1e-12 and mins.min() >= 0
    assert np.max(np.diff(F) / np.abs(F[:-1])) <= 1e-3
    assert F[-1] < F[0]


def test_converges_to_gibbs_under_refinement():
    """rho -> exp(-beta [V + r^2/2])/Z; the L1 error falls with the grid size."""
    from mfpde.validation.cases_grid import experiment_phase_gibbs
    r = experiment_phase_gibbs(Js=(32, 64), T=20.0, T_monotone=0.5)
    assert r["L1"][1] < 0.7 * r["L1"][0], r["L1"]
    assert r["L1"][1] < 0.06, r["L1"]
    assert max(r["mass_err"]) < 1e-12 and min(r["min_rho"]) >= 0


def test_nonlocal_potential_marginal_gibbs():
    """A nonlocal Psi on the theta grid: at stationarity the theta-marginal is the
    self-consistent Gibbs state exp(-beta Psi(.; rho^theta))/Z (up to discretisation)."""
    tg = Grid1D(-4, 4, 40)
    rg = Grid1D(-4.5, 4.5, 40)
    x = tg.x
    U = 0.5 * np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2)
    pot = InteractionPotential(tg, 0.5 * x * x, U)
    rho0 = maxwellian_product(tg, rg, gaussian_cell_averages(tg, 0.5, 0.2), 0.5)
    s = PhaseGridSolver(tg, -4.5, 4.5, 40, pot, gamma=2.0, beta=2.0, rho0=rho0)
    s.run(15.0)
    rt = s.rho_theta()
    psi = pot.psi(rt)
    g = np.exp(-2.0 * (psi - psi.min()))
    g /= g.sum() * tg.dx
    assert np.abs(rt - g).sum() * tg.dx < 0.03
    # r-marginal is the Maxwellian N(0, 1/beta)
    rr = s.rho_r()
    mw = cell_averages(rg, lambda r: np.exp(-r * r))
    mw /= mw.sum() * rg.dx
    assert np.abs(rr - mw).sum() * rg.dx < 0.03


def test_state_dict_and_snapshot():
    s = _solver(J=24)
    s.step(3)
    st = s.state_dict()
    s.step(4)
    ref = s.rho.copy()
    s2 = _solver(J=24)
    s2.load_state_dict(st)
    s2.step(4)
    assert np.array_equal(s2.rho, ref) and s2.t == s.t
    snap = s.snapshot_arrays()
    assert snap["density"].shape == (24, 24)
    assert snap["axis0"].shape == (24,) and snap["axis1"].shape == (24,)


@pytest.mark.slow
def test_explicit_velocity_second_order_gibbs():
    from mfpde.validation.cases_grid import experiment_phase_gibbs
    r = experiment_phase_gibbs(Js=(40, 80), velocity_method="explicit")
    assert r["order"] > 1.6, r


def test_phase_grid_is_a_driver():
    from mfpde.engine.protocol import check_driver
    s = _solver(J=24)
    check_driver(s)
    assert s.dt is None
    s.step(50, t_end=0.02)
    assert s.t == 0.02
    assert s.fields()["density"] is s.rho and s.rho.shape == (24, 24)
