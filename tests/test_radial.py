"""MMN radial reduction (theory/grid.md §2; validation.md §V15)."""
import math

import numpy as np
import pytest
from scipy import integrate, special, stats

from mfpde.meanfield.radial import (MMN_PL, MMNRadial, angle_moments, chi_cell_averages,
                                    hermite_coeffs, lagrangian_radial, radial_solver,
                                    w1_samples_vs_grid_1d)


def _He(k, z):
    return special.eval_hermitenorm(k, z)


def test_pl_constants_match_the_model_layer():
    from mfpde.activations import evaluate
    t1, t2, s1, s2 = MMN_PL
    z = np.linspace(-3, 3, 601)
    mine = s1 + (s2 - s1) / (t2 - t1) * (np.clip(z, t1, t2) - t1)
    assert np.max(np.abs(evaluate("mmn_pl", z) - mine)) < 1e-12


@pytest.mark.parametrize("a", [0.05, 0.4, 1.0, 2.5])
def test_hermite_coefficients_closed_form(a):
    """h_k(a) = E[sigma(aZ) He_k(Z)] (closed form) vs adaptive quadrature; dh_k/da vs FD."""
    from mfpde.activations import evaluate
    kmax = 8
    H = hermite_coeffs("mmn_pl", np.array([a]), kmax)[:, 0]
    dH = hermite_coeffs("mmn_pl", np.array([a]), kmax, derivative=True)[:, 0]
    t1, t2 = MMN_PL[0] / a, MMN_PL[1] / a
    for k in range(kmax + 1):
        f = lambda z: evaluate("mmn_pl", np.array([a * z]))[0] * _He(k, z) * math.exp(-z * z / 2) \
            / math.sqrt(2 * math.pi)  # noqa: E731
        val = sum(integrate.quad(f, lo, hi, limit=200)[0]
                  for lo, hi in [(-40, t1), (t1, t2), (t2, t2 + 40)])
        assert abs(val - H[k]) < 1e-8, (k, val, H[k])
        h = 1e-6
        fd = (hermite_coeffs("mmn_pl", np.array([a + h]), kmax)[k, 0]
              - hermite_coeffs("mmn_pl", np.array([a - h]), kmax)[k, 0]) / (2 * h)
        assert abs(fd - dH[k]) < 1e-5 * max(1, abs(fd))


def test_hermite_quadrature_for_smooth_activation():
    # tanh: h_1(a) = a E[tanh'(aZ)], odd coefficients only
    H = hermite_coeffs("tanh", np.array([0.7]), 5)[:, 0]
    z, w = np.polynomial.hermite_e.hermegauss(200)
    ref = (0.7 * (1 - np.tanh(0.7 * z) ** 2) * w).sum() / math.sqrt(2 * math.pi)
    assert abs(H[1] - ref) < 1e-12 and abs(H[0]) < 1e-14 and abs(H[2]) < 1e-14


@pytest.mark.parametrize("d", [5, 40])
def test_angle_moments(d):
    m = angle_moments(d, 8)
    dens = lambda c: (1 - c * c) ** ((d - 3) / 2) / special.beta(0.5, (d - 1) / 2)  # noqa: E731
    for k in range(9):
        ref = integrate.quad(lambda c: dens(c) * c ** k, -1, 1)[0]
        assert abs(m[k] - ref) < 1e-12
    assert m[2] == pytest.approx(1 / d)


def test_v_and_U_against_monte_carlo():
    """v(r) = -E[y sigma(<u,x>)] and U_bar(r, r', c) against Monte Carlo over the data model."""
    from mfpde.activations import evaluate
    R = MMNRadial(d=40, delta=0.8)
    rng = np.random.default_rng(0)
    n = 400_000
    y = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    sc = np.where(y > 0, 1.8, 0.2)
    Z1, Z2 = rng.standard_normal(n), rng.standard_normal(n)
    r, rp, c = 0.9, 0.6, 0.3
    g1 = evaluate("mmn_pl", sc * r * Z1)
    g2 = evaluate("mmn_pl", sc * rp * (c * Z1 + math.sqrt(1 - c * c) * Z2))
    v_mc, v_se = -np.mean(y * g1), np.std(y * g1) / math.sqrt(n)
    u_mc, u_se = np.mean(g1 * g2), np.std(g1 * g2) / math.sqrt(n)
    assert abs(R.v(r)[0] - v_mc) < 4 * v_se
    assert abs(R.U_angle(r, rp, c) - u_mc) < 4 * u_se


def test_angle_average_truncation():
    """Mehler series averaged over nu_d (k <= 24) vs quadrature over c of the k <= 60 series."""
    d = 40
    R = MMNRadial(d=d, delta=0.8, kmax=24)
    dens = lambda c: (1 - c * c) ** ((d - 3) / 2) / special.beta(0.5, (d - 1) / 2)  # noqa: E731
    for r, rp in [(0.9, 0.6), (1.4, 1.2)]:
        ref = integrate.quad(lambda c: dens(c) * R.U_angle(r, rp, c), -1, 1, epsabs=1e-13)[0]
        assert abs(R.U(np.array([r]), np.array([rp]))[0, 0] - ref) < 1e-10


def _particles_around(u, N, d, kappa, rng):
    """N particles whose cosines with u are the nu_d midpoint quantiles and whose radii are the
    scaled-chi_d quantiles (random pairing): a stratified rotation-invariant measure as seen
    from u (the directional fluctuation O(N^{-1/2} d^{-1/2}) of an i.i.d. cloud is removed)."""
    q = (np.arange(N) + 0.5) / N
    c2 = stats.beta(0.5, (d - 1) / 2).ppf(q)
    c = np.sqrt(c2) * np.where(np.arange(N) % 2 == 0, 1.0, -1.0)
    r = stats.chi(d).ppf(rng.permutation(q)) * kappa / math.sqrt(d)
    uh = u / np.linalg.norm(u)
    v = rng.standard_normal((N, d))
    v -= np.outer(v @ uh, uh)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return r[:, None] * (c[:, None] * uh[None, :] + np.sqrt(1 - c * c)[:, None] * v)


def test_radial_potential_against_model_layer():
    """Psi_bar(|u|) and d_r Psi_bar vs the model layer's potential and force on a large data
    sample: the reduction's formulas checked through the ONE model layer. Tolerance: 4 standard
    errors of the data average (from the per-sample terms) + 5e-3 (stratification)."""
    from mfpde.activations import evaluate
    from mfpde.data import make_dataset
    from mfpde.models import make_model
    d, N, n, kappa = 40, 300, 60_000, 0.9
    rng = np.random.default_rng(5)
    X, Y = make_dataset("mmn_gaussians", seed=1, d=d, delta=0.8, online=True).sample(n, rng)
    model = make_model("two_layer", d=d, q=1, activation="mmn_pl", output="fixed")
    R = MMNRadial(d=d, delta=0.8)
    for rp in (0.7, 1.3):
        u = rng.standard_normal(d)
        u *= rp / np.linalg.norm(u)
        theta = _particles_around(u, N, d, kappa, rng)
        r_atoms = np.linalg.norm(theta, axis=1)
        w = np.full(N, 1.0 / N)
        psi_model = model.potential(u[None, :], theta, X, Y)[0]
        Zr = model.forward(theta, X)[:, 0] - Y[:, 0]                   # f_N(x_i) - y_i
        p = X @ u
        terms = Zr * evaluate("mmn_pl", p)
        assert abs(terms.mean() - psi_model) < 1e-10
        se = terms.std() / math.sqrt(n)
        psi_rad = R.psi(np.array([rp]), r_atoms, w)[0]
        assert abs(psi_model - psi_rad) < 4 * se + 5e-3, (rp, psi_model, psi_rad, se)
        # force: grad Psi(u) = d_r Psi_bar(|u|) u/|u|; its radial component, per sample
        fterms = Zr * evaluate("mmn_pl", p, order=1) * (p / rp)
        dse = fterms.std() / math.sqrt(n)
        dpsi = R.dpsi(np.array([rp]), r_atoms, w)[0]
        assert abs(fterms.mean() - dpsi) < 4 * dse + 5e-3, (rp, fterms.mean(), dpsi, dse)
        # and the model's own force on a particle equals the per-sample formula
        g = model.gradient(np.vstack([theta, u]), X[:5000], Y[:5000],
                           weights=np.r_[np.full(N, 1.0 / N), 0.0]).theta[-1]
        Z5 = model.forward(theta, X[:5000])[:, 0] - Y[:5000, 0]
        ref = ((Z5 * evaluate("mmn_pl", X[:5000] @ u, order=1))[:, None] * X[:5000]).mean(0)
        assert np.allclose(g, ref, atol=1e-10)


def test_radial_solver_conservation_and_risk_decay():
    s = radial_solver(d=40, delta=0.8, kappa=0.8, J=400, r_max=2.0)
    F = [s.free_energy()]
    s.run(0.5, callback=lambda sol: F.append(sol.free_energy()))
    F = np.array(F)
    assert abs(s.mass() - 1) < 1e-12 and s.rho.min() >= 0
    assert np.max(np.diff(F)) <= 1e-12
    # beta = inf: F_Delta is the risk R(rho_bar)
    assert F[-1] == pytest.approx(s.potential.risk(s.rho), abs=1e-12)
    assert F[-1] < F[0] - 0.2


def test_energy_derivative_radial():
    s = radial_solver(d=5, J=60, r_max=3.0, beta=20.0)
    pot = s.potential
    rho = s.rho
    psi = pot.psi(rho)
    h = 1e-6
    for j in [10, 25, 40]:
        e = np.zeros_like(rho)
        e[j] = h
        fd = (pot.energy(rho + e) - pot.energy(rho - e)) / (2 * h)
        assert abs(fd - s.grid.dx * psi[j]) < 1e-8


def test_noisy_radial_stationary_law():
    """beta < inf: stationary radial law ∝ r^{d-1} exp(-beta Psi_bar) (self-consistent)."""
    s = radial_solver(d=5, delta=0.5, kappa=0.8, lam=1.0, beta=4.0, J=200, r_max=4.0,
                      method="implicit", dt_max=0.05)
    s.run(40.0)
    g = s.grid
    psi_bar = s.potential.psi(s.rho) + (5 - 1) / 4.0 * np.log(g.x)   # remove the log r term
    target = g.x ** 4 * np.exp(-4.0 * (psi_bar - psi_bar.min()))
    target /= target.sum() * g.dx
    assert np.abs(s.rho - target).sum() * g.dx < 1e-6


def test_grid_matches_lagrangian_characteristics():
    d, kappa = 40, 0.8
    s = radial_solver(d=d, kappa=kappa, J=1000, r_max=2.0)
    s.run(0.5)
    M = 300
    r0 = stats.chi(d).ppf((np.arange(M) + 0.5) / M) * kappa / math.sqrt(d)
    lag = lagrangian_radial(r0, np.ones(M), s.potential.radial, 0.5, 0.01)
    assert w1_samples_vs_grid_1d(lag[0.5], s.grid.edges, s.rho) < 2e-3


def test_w1_helper():
    from mfpde.meanfield.grid import Grid1D, gaussian_cell_averages
    g = Grid1D(-6, 6, 1200)
    rho = gaussian_cell_averages(g, 0.0, 1.0)
    x = np.random.default_rng(0).standard_normal(50000)
    assert w1_samples_vs_grid_1d(x, g.edges, rho) < 0.01
    assert w1_samples_vs_grid_1d(x + 0.3, g.edges, rho) == pytest.approx(0.3, abs=0.01)
    assert chi_cell_averages(Grid1D(0, 3, 300), 40, 0.8).sum() * 0.01 == pytest.approx(1, abs=1e-9)


def test_radial_vs_sgd_reduced():
    """Reduced grid.radial_sgd: d = 40 online SGD; W1 of |u_i| vs the PDE law shrinks with N."""
    from mfpde.validation.cases_grid import experiment_radial
    r = experiment_radial(Ns=(100, 1600), seeds=1, times=(0.5,), eps=1e-3, J=800, M_lagr=100,
                          dt_lagr=0.02)
    W1 = r["W1"][:, 0, :]            # (N, time)
    assert np.all(W1[1] < W1[0]), W1
    assert W1[1, 1] < 0.006, W1


@pytest.mark.slow
def test_radial_vs_sgd_full():
    """d = 40, N = 800 at t = 0.5, 1, 2: W1 at sampling level, shrinking with N."""
    from mfpde.validation.cases_grid import experiment_radial
    r = experiment_radial(Ns=(200, 800, 3200), seeds=2, times=(0.5, 1.0, 2.0), eps=2.5e-4,
                          J=2000)
    m = r["W1"].mean(axis=1)
    assert np.all(m[-1] < m[0]), m
    assert np.all(m[1] < 0.01), m
