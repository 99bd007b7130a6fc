"""Finite-volume grid solver (theory/grid.md §1; validation.md §U, §K2, §K3, §V4)."""
import math
import warnings

import numpy as np
import pytest

from mfpde.meanfield.grid import (BoundaryMassWarning, FVSolver, Grid1D, Grid2D,
                                  InteractionPotential, ModelPotential, cell_averages,
                                  double_well_potential, gaussian_cell_averages, ou_exact_moments,
                                  ou_potential, quantile_points, w2_samples_vs_grid_1d)


def _run_recording(s, T):
    F, mass, mins = [s.free_energy()], [s.mass()], [s.rho.min()]

    def cb(sol):
        F.append(sol.free_energy())
        mass.append(sol.mass())
        mins.append(sol.rho.min())

    s.run(T, callback=cb)
    return np.array(F), np.array(mass), np.array(mins)


# ---------------------------------------------------------------- grids and helpers
def test_grid_geometry_and_point_order():
    g = Grid2D((-1, 0), (1, 2), (4, 5))
    P = g.points
    assert P.shape == (20, 2)
    rho = np.arange(20.0).reshape(4, 5)
    # rho.ravel()[k] lives at points[k]
    k = 7
    i, j = np.unravel_index(k, (4, 5))
    assert P[k, 0] == g.axes[0][i] and P[k, 1] == g.axes[1][j]
    assert rho.ravel()[k] == rho[i, j]
    g1 = Grid1D(-2, 2, 8)
    assert g1.dx == 0.5 and np.allclose(g1.x, np.linspace(-1.75, 1.75, 8))


def test_gaussian_cell_averages_exact():
    g = Grid1D(-8, 8, 64)
    rho = gaussian_cell_averages(g, 0.3, 0.7)
    assert abs(rho.sum() * g.dx - 1) < 1e-12
    quad = cell_averages(g, lambda x: np.exp(-(x - 0.3) ** 2 / 1.4) / math.sqrt(1.4 * math.pi), nq=12)
    assert np.max(np.abs(rho - quad)) < 1e-12


# ---------------------------------------------------------------- mass / positivity / F decay
@pytest.mark.parametrize("beta", [1.0, 50.0])
@pytest.mark.parametrize("order,method", [(1, "euler"), (2, "euler"), (2, "ssprk2"),
                                          (1, "implicit")])
def test_random_positive_data_1d(beta, order, method):
    """validation.md §U: mass to round-off, rho >= 0, F_Delta non-increasing at every step."""
    g = Grid1D(-3, 3, 120)
    rho0 = np.random.default_rng(1).uniform(0.5, 1.5, g.J)
    s = FVSolver(g, double_well_potential(g), rho0, beta=beta, order=order, method=method,
                 boundary_cells=0, dt_max=(0.01 if method == "implicit" else np.inf))
    F, mass, mins = _run_recording(s, 0.3)
    assert s.k > 10
    assert np.max(np.abs(mass - 1)) < 1e-12
    assert mins.min() >= 0
    assert np.max(np.diff(F) / np.maximum(1, np.abs(F[:-1]))) <= 1e-12


@pytest.mark.parametrize("method", ["euler", "implicit"])
def test_random_positive_data_2d_interaction(method):
    """2-D with a symmetric PSD interaction kernel (nonlocal Psi): mass, positivity, F decay."""
    g = Grid2D((-2, -2), (2, 2), (14, 12))
    rng = np.random.default_rng(2)
    P = g.points
    V = 0.5 * (P ** 2).sum(1).reshape(g.shape)
    feats = np.tanh(P @ rng.standard_normal((2, 6)))
    U = feats @ feats.T                                   # PSD kernel
    pot = InteractionPotential(g, V, U, const=0.5)
    s = FVSolver(g, pot, rng.uniform(0.5, 1.5, g.shape), beta=5.0, method=method,
                 boundary_cells=0, dt_max=0.005)
    F, mass, mins = _run_recording(s, 0.2)
    assert np.max(np.abs(mass - 1)) < 1e-12
    assert mins.min() >= 0
    assert np.max(np.diff(F) / np.abs(F[:-1])) <= 1e-12


def test_beta_inf_transport_positive_and_conservative():
    g = Grid1D(-3, 3, 200)
    s = FVSolver(g, double_well_potential(g), gaussian_cell_averages(g, 0.2, 0.3), beta=np.inf)
    F, mass, mins = _run_recording(s, 2.0)
    assert np.max(np.abs(mass - 1)) < 1e-12 and mins.min() >= 0
    assert np.max(np.diff(F)) <= 1e-12
    # mass concentrates near the minima +-1 of the double well
    assert s.rho[np.abs(np.abs(g.x) - 1) < 0.3].sum() * g.dx > 0.75


def test_energy_derivative_is_cell_volume_times_psi():
    """d E_Delta/d rho_j = |C| Psi_j (needed for the dissipation identity, grid.md §1.1)."""
    g = Grid2D((-2, -2), (2, 2), (6, 5))
    rng = np.random.default_rng(3)
    feats = np.tanh(g.points @ rng.standard_normal((2, 3)))
    pot = InteractionPotential(g, rng.standard_normal(g.shape), feats @ feats.T)
    rho = rng.uniform(0.5, 1.5, g.shape)
    psi = pot.psi(rho)
    h = 1e-6
    for idx in [(0, 0), (3, 2), (5, 4)]:
        e = np.zeros(g.shape)
        e[idx] = h
        fd = (pot.energy(rho + e) - pot.energy(rho - e)) / (2 * h)
        assert abs(fd - g.cell_volume * psi[idx]) < 1e-7


# ---------------------------------------------------------------- OU closed form (K2)
@pytest.fixture(scope="module")
def ou_results():
    from mfpde.validation.cases_grid import experiment_ou_convergence
    return experiment_ou_convergence(Js=(100, 200, 400, 800), times=(0.5, 1.0, 2.0))


def test_ou_second_order_convergence(ou_results):
    """minmod + SSP-RK2: L1 error at t = 0.5, 1, 2 falls at order 2 (band 1.7 .. 2.3)."""
    orders = ou_results["order"]["minmod+ssprk2"]
    errs = ou_results["errors"]["minmod+ssprk2"]
    assert all(1.7 <= o <= 2.3 for o in orders), orders
    assert np.all(errs[-1] < 3e-4), errs[-1]
    assert ou_results["mass_err"] < 1e-12 and ou_results["min_rho"] >= 0


def test_ou_first_order_convergence(ou_results):
    """First-order upwind + Euler: order 1 (band 0.8 .. 1.2)."""
    orders = ou_results["order"]["upwind1+euler"]
    assert all(0.8 <= o <= 1.2 for o in orders), orders


def test_ou_noiseless_moments():
    """beta = inf: mean and variance follow m0 e^{-lam t}, v0 e^{-2 lam t}."""
    g = Grid1D(-3.5, 4.5, 800)
    s = FVSolver(g, ou_potential(g, 1.0), gaussian_cell_averages(g, 1.0, 0.25), beta=np.inf,
                 method="ssprk2")
    s.run(1.0)
    m = (s.rho * g.x).sum() * g.dx
    v = (s.rho * g.x ** 2).sum() * g.dx - m * m
    me, ve = ou_exact_moments(1.0, 1.0, 0.25, 1.0, np.inf)
    assert abs(m - me) < 1e-3 and abs(v - ve) < 2e-3


def test_ou_2d_matches_product_of_1d():
    g = Grid2D((-4, -4), (4, 4), (64, 64))
    s = FVSolver(g, ou_potential(g, 1.0), gaussian_cell_averages(g, [1.0, -0.5], [0.25, 0.25]),
                 beta=10.0, method="ssprk2")
    s.run(0.5)
    m, v = ou_exact_moments(0.5, np.array([1.0, -0.5]), 0.25, 1.0, 10.0)
    ex = gaussian_cell_averages(g, m, [v, v])
    assert np.abs(s.rho - ex).sum() * g.cell_volume < 0.02


# ---------------------------------------------------------------- double well (K3)
@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_double_well_stationary_state(beta):
    """Stationary grid state vs exp(-beta V)/Z: L1 < 1e-3 at J = 400 on [-3, 3]."""
    from mfpde.validation.cases_grid import experiment_double_well
    r = experiment_double_well(beta=beta, J=400, t_monotone=0.2)
    assert r["L1"] < 1e-3, r
    # the discrete steady state is exactly the point values exp(-beta V(theta_j))/Z
    assert r["L1_point"] < 1e-6
    assert r["max_rel_increase"] <= 1e-12
    assert r["mass_err"] < 1e-12


def test_implicit_reaches_discrete_gibbs_with_large_steps():
    g = Grid1D(-3, 3, 200)
    s = FVSolver(g, double_well_potential(g), gaussian_cell_averages(g, 0.5, 0.25), beta=2.0,
                 method="implicit", dt_max=0.5)
    s.run(60.0)
    gibbs = s.gibbs_state()
    assert np.abs(s.rho - gibbs).sum() * g.dx < 1e-8
    assert abs(s.mass() - 1) < 1e-12


# ---------------------------------------------------------------- infrastructure
def test_boundary_warning():
    g = Grid1D(-2, 2, 80)
    with pytest.warns(BoundaryMassWarning):
        FVSolver(g, ou_potential(g), gaussian_cell_averages(g, 1.5, 0.25), beta=10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BoundaryMassWarning)
        FVSolver(g, ou_potential(g), gaussian_cell_averages(g, 0.0, 0.05), beta=10.0).run(0.1)


def test_state_dict_roundtrip_and_snapshot():
    g = Grid2D((-4, -4), (4, 4), (20, 24))
    s = FVSolver(g, ou_potential(g), gaussian_cell_averages(g, [0.5, 0], [0.3, 0.3]), beta=5.0)
    s.step(5)
    st = s.state_dict()
    s.step(7)
    ref = s.rho.copy()
    s2 = FVSolver(g, ou_potential(g), np.ones(g.shape), beta=5.0, boundary_cells=0)
    s2.load_state_dict(st)
    s2.step(7)
    assert np.array_equal(s2.rho, ref) and s2.k == s.k and s2.t == s.t
    snap = s.snapshot_arrays()
    assert snap["density"].shape == (20, 24)
    assert snap["axis0"].shape == (20,) and snap["axis1"].shape == (24,)
    assert snap["edges1"].shape == (25,)


def test_fused_loop_equals_python_steps():
    g = Grid1D(-3, 3, 100)
    r0 = gaussian_cell_averages(g, 0.3, 0.2)
    a = FVSolver(g, double_well_potential(g), r0, beta=3.0)
    b = FVSolver(g, double_well_potential(g), r0, beta=3.0)
    a.run(0.3)                       # fused compiled loop
    b.fused = False
    b.run(0.3, callback=lambda s: None)  # Python steps
    assert a.k == b.k
    assert np.max(np.abs(a.rho - b.rho)) < 1e-13
    # step(n, t_end) takes the same compiled steps as run, bitwise, however they are split
    c = FVSolver(g, double_well_potential(g), r0, beta=3.0)
    while c.t < 0.3:
        c.step(7, t_end=0.3)
    assert c.k == a.k and c.t == a.t and np.array_equal(c.rho, a.rho)
    d = FVSolver(g, double_well_potential(g), r0, beta=3.0)
    d.run(0.3, callback=lambda s: None)
    assert d.k == a.k and np.array_equal(d.rho, a.rho)


def test_quantile_w2_helper():
    g = Grid1D(-6, 6, 600)
    rho = gaussian_cell_averages(g, 0.0, 1.0)
    q = quantile_points(g.edges, rho, 1000)
    assert abs(q.mean()) < 1e-3 and abs(q.std() - 1) < 5e-3
    x = np.random.default_rng(0).standard_normal(20000)
    assert w2_samples_vs_grid_1d(x, g.edges, rho) < 0.03
    assert w2_samples_vs_grid_1d(x + 0.5, g.edges, rho) == pytest.approx(0.5, abs=0.03)


# ---------------------------------------------------------------- two-layer model (2-D)
def _toy_model(lam=0.1):
    from mfpde.validation.cases_grid import two_layer_setup
    return two_layer_setup(n=16, lam=lam)


def test_model_potential_matches_model_layer():
    model, data = _toy_model()
    g = Grid2D((-4, -4), (4, 4), (20, 18))
    rho = gaussian_cell_averages(g, [0.2, -0.1], [1.0, 0.8])
    cached = ModelPotential(model, data.X, data.Y, g, cache=True)
    direct = ModelPotential(model, data.X, data.Y, g, cache=False)
    assert np.max(np.abs(cached.psi(rho) - direct.psi(rho))) < 1e-12
    assert abs(cached.energy(rho) - direct.energy(rho)) < 1e-12
    # own formula: Psi(a, w) = a mean_i (f_i - y_i) tanh(w x_i) + lam/2 (a^2 + w^2)
    P = g.points
    w = rho.ravel() * g.cell_volume
    w /= w.sum()
    S = np.tanh(data.X @ P[:, 1:2].T)
    f = S @ (P[:, 0] * w)
    own = P[:, 0] * (((f - data.Y[:, 0]) / data.X.shape[0]) @ S) + 0.05 * (P ** 2).sum(1)
    assert np.max(np.abs(own - cached.psi(rho).ravel())) < 1e-12
    # d E/d rho_j = |C| Psi_j up to a constant: the cell masses are renormalised to 1, so the
    # derivative of R at unit mass is |C| (Psi_data_j - E_rho Psi_data)
    rho = rho / (rho.sum() * g.cell_volume)
    psi = cached.psi(rho)
    psi_data = psi - 0.05 * (P ** 2).sum(1).reshape(g.shape)
    shift = (psi_data * rho).sum() * g.cell_volume
    h = 1e-6
    for idx in [(3, 4), (10, 9)]:
        e = np.zeros(g.shape)
        e[idx] = h
        fd = (cached.energy(rho + e) - cached.energy(rho - e)) / (2 * h)
        assert abs(fd - g.cell_volume * (psi[idx] - shift)) < 1e-7


def test_two_layer_grid_free_energy_decreases():
    model, data = _toy_model()
    g = Grid2D((-6, -6), (6, 6), (48, 48))
    s = FVSolver(g, ModelPotential(model, data.X, data.Y, g),
                 gaussian_cell_averages(g, [0, 0], [1, 1]), beta=10.0)
    F, mass, mins = _run_recording(s, 0.3)
    assert np.max(np.diff(F) / np.abs(F[:-1])) <= 1e-12
    assert np.max(np.abs(mass - 1)) < 1e-12 and mins.min() >= 0


def test_two_layer_grid_vs_particles_reduced():
    """Reduced grid.two_layer_particles: W2 of the 1-D marginals falls at slope -1/2 +- 0.15;
    the 2-D POT distance equals the pure sampling floor (ratio ~ 1)."""
    from mfpde.validation.cases_grid import experiment_two_layer
    r = experiment_two_layer(Ns=(200, 800, 3200), seeds=2, J=70, T=0.5, dt_particles=0.01,
                             N_max_2d=800)
    s = r["slope_marg"][0]
    assert abs(s + 0.5) <= 0.15, r["slope_marg"]
    assert all(0.75 <= x <= 1.33 for x in r["ratio_2d_floor"]), r["ratio_2d_floor"]
    assert r["F_max_rel_increase"] <= 1e-12


@pytest.mark.slow
def test_two_layer_grid_vs_particles_full():
    """Full grid.two_layer_particles: marginal and 2-D (POT) W2 slopes -1/2 +- 0.15."""
    from mfpde.validation.cases_grid import experiment_two_layer
    r = experiment_two_layer(Ns=(250, 500, 1000, 2000, 4000), seeds=6, J=100, N_max_2d=4000)
    assert abs(r["slope_marg"][0] + 0.5) <= 0.15, r["slope_marg"]
    assert abs(r["slope_2d"][0] + 0.5) <= 0.15, r["slope_2d"]


def test_fv_solver_is_a_driver():
    """Engine protocol: adaptive steps (``dt is None``), ``step(n, t_end)`` never passes
    ``t_end``, ``fields()`` is a view of the density, no risk."""
    from mfpde.engine.protocol import check_driver
    g = Grid1D(-5.0, 5.0, 80)
    s = FVSolver(g, ou_potential(g, 1.0), gaussian_cell_averages(g, 0.5, 0.4), beta=3.0)
    check_driver(s)
    assert s.dt is None and math.isnan(s.last_risk)
    s.step(1000, t_end=0.05)
    assert s.t == 0.05 and 0 < s.k < 1000
    assert s.fields()["density"] is s.rho
