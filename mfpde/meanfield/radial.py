r"""Mei–Montanari–Nguyen radial reduction (theory/grid.md §2; data models.md §5 D3).

Setting: neuron ``sigma(u^T x)`` with the output weight fixed to 1, ``u in R^d``; data
``y = ±1`` with probability 1/2 and ``x ~ N(0, s_±^2 I_d)``, ``s_± = 1 ± Delta``; rotation-invariant
``rho_0`` (default ``u ~ N(0, kappa^2/d I_d)``). Writing ``r = |u|`` and ``rho_bar`` for the law of
``r``, the potential is radial, ``Psi(u; rho) = Psi_bar(|u|; rho_bar)`` with (grid.md §2, exact for
every ``d``)

.. math::

    \bar\Psi(r;\bar\rho) = v(r) + \int\bar\rho(dr')\,\bar U_d(r, r') + \tfrac\lambda2 r^2,\qquad
    v(r) = -\tfrac12[m_+(r) - m_-(r)],\quad m_\pm(r) = E\,\sigma(s_\pm r Z),

    \bar U_d(r, r') = \int\nu_d(dc)\,\bar U(r, r', c),\qquad
    \bar U(r,r',c) = \tfrac12\sum_\pm E[\sigma(G_1^\pm)\sigma(G_2^\pm)],

``(G_1, G_2) ~ N(0, s^2 [[r^2, r r' c], [r r' c, r'^2]])``, ``nu_d(c) ∝ (1-c^2)^{(d-3)/2}``.

**Evaluation of the angle average** [derived here]. Mehler's expansion with the Hermite
coefficients ``h_k(a) = E[sigma(a Z) He_k(Z)] = a^k E sigma^{(k)}(a Z)`` gives
``E[sigma(G_1) sigma(G_2)] = sum_k c^k/k! h_k(s r) h_k(s r')``, and averaging over ``nu_d`` keeps
the even ``k`` with ``E c^{2m} = prod_{i<m} (2i+1)/(d+2i)`` (``c^2 ~ Beta(1/2, (d-1)/2)``):

.. math::

    \bar U_d(r, r') = \tfrac12\sum_\pm\sum_{k\ \mathrm{even}} \frac{E c^k}{k!}\,
    h_k(s_\pm r)\,h_k(s_\pm r'),

a separable (rank ``2 (k_max/2 + 1)``) kernel. The truncation error is below ``1e-12`` for
``d = 40``, ``k_max = 24`` (checked against direct quadrature in the tests). ``k = 0`` alone is
MMN's large-``d`` simplification (angle ``pi/2``). For the MMN piecewise-linear activation
(``sigma = s1`` below ``t1``, ``s2`` above ``t2``, linear between; models.md §4) the coefficients
are in closed form: with ``E[(aZ - t)^+ He_k(Z)] = a phi(t/a) - t Phibar(t/a)`` (``k = 0``),
``a Phibar(t/a)`` (``k = 1``), ``a phi(t/a) He_{k-2}(t/a)`` (``k >= 2``),
``h_k(a) = s1 [k=0] + slope (E[(aZ-t1)^+ He_k] - E[(aZ-t2)^+ He_k])``. Other activations use
Gauss–Hermite quadrature.

**Radial PDE** (grid.md §2): ``d_t rho_bar = d_r(rho_bar d_r phi)`` on ``(0, r_max]`` with zero
flux at both ends, ``phi = Psi_bar - beta^{-1}(d-1) log r + beta^{-1} log rho_bar`` (the noisy
version; ``beta = inf`` is the MMN noiseless dynamics), solved with :class:`~mfpde.meanfield.grid.
FVSolver` and :class:`RadialPotential`. Risk ``R(rho_bar) = 1/2 + int v drho_bar +
1/2 iint U_d drho_bar drho_bar``.

**Time convention** (dynamics.md §4.4): project time ``t`` with ``xi = 1``. MMN's distributional
dynamics with ``xi_MMN = 1`` at their time ``t_MMN`` equals the project solution at ``t = 2 t_MMN``;
their SGD step ``s_k`` corresponds to the project step ``eps = 2 s_k``.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from .fv import FVSolver
from .grids import Grid1D
from .potentials import Potential

__all__ = [
    "MMN_PL", "hermite_coeffs", "angle_moments", "MMNRadial", "RadialPotential",
    "chi_cell_averages", "radial_solver", "w1_samples_vs_grid_1d", "mmn_sgd_norms",
    "lagrangian_radial",
]

#: MMN piecewise-linear constants ``(t1, t2, s1, s2)`` (models.md §4, [recalled — verify]); the
#: model layer's ``mmn_pl`` activation uses the same values (checked in the tests).
MMN_PL = (0.5, 1.5, -2.5, 7.5)


def _hermite_e(k, x):
    """Probabilists' Hermite polynomial ``He_k(x)`` (recurrence; ``x`` any shape)."""
    x = np.asarray(x, dtype=float)
    if k == 0:
        return np.ones_like(x)
    h0, h1 = np.ones_like(x), x.copy()
    for j in range(1, k):
        h0, h1 = h1, x * h1 - j * h0
    return h1


def _hermite_all(kmax, x):
    """``He_0(x) .. He_kmax(x)`` stacked (shape (kmax+1,) + x.shape), one recurrence."""
    x = np.asarray(x, dtype=float)
    out = np.empty((kmax + 1,) + x.shape)
    out[0] = 1.0
    if kmax >= 1:
        out[1] = x
    for j in range(1, kmax):
        out[j + 1] = x * out[j] - j * out[j - 1]
    return out


def _ramp_coeffs(a, t, kmax):
    """``E[(aZ - t)^+ He_k(Z)]`` for ``k = 0..kmax`` and ``a > 0`` (closed form, module doc)."""
    a = np.asarray(a, dtype=float)
    out = np.zeros((kmax + 1,) + a.shape)
    pos = a > 0
    ap = np.where(pos, a, 1.0)
    z0 = t / ap
    phi = np.where(pos, np.exp(-0.5 * z0 * z0) / math.sqrt(2 * math.pi), 0.0)
    tail = np.where(pos, special.ndtr(-z0), 0.0)
    out[0] = np.where(pos, ap * phi - t * tail, max(-t, 0.0))
    if kmax >= 1:
        out[1] = np.where(pos, ap * tail, 0.0)
    if kmax >= 2:
        He = _hermite_all(kmax - 2, z0)
        out[2:] = np.where(pos, ap * phi * He, 0.0)
    return out


def _ramp_dcoeffs(a, t, kmax):
    """``d/da E[(aZ - t)^+ He_k(Z)] = E[1{aZ > t} Z He_k(Z)]``, ``k = 0..kmax``."""
    a = np.asarray(a, dtype=float)
    pos = a > 0
    ap = np.where(pos, a, 1.0)
    z0 = t / ap
    phi = np.where(pos, np.exp(-0.5 * z0 * z0) / math.sqrt(2 * math.pi), 0.0)
    tail = np.where(pos, special.ndtr(-z0), 0.0)
    # I_m = E[1{Z > z0} He_m(Z)] = tail (m = 0), phi He_{m-1}(z0) (m >= 1)
    I = np.zeros((kmax + 2,) + a.shape)
    I[0] = tail
    I[1:] = phi * _hermite_all(kmax, z0)
    out = np.zeros((kmax + 1,) + a.shape)
    for k in range(kmax + 1):          # Z He_k = He_{k+1} + k He_{k-1}
        out[k] = I[k + 1] + (k * I[k - 1] if k >= 1 else 0.0)
    return np.where(pos, out, 0.0)


def hermite_coeffs(activation, a, kmax, derivative=False, pl=MMN_PL, n_quad=160):
    """Hermite coefficients ``h_k(a) = E[sigma(aZ) He_k(Z)]``, ``k = 0..kmax`` (shape (kmax+1,)+a.shape).

    ``derivative=True`` returns ``d h_k/da = E[sigma'(aZ) Z He_k(Z)]``. ``activation="mmn_pl"``
    uses the closed form (module docstring; ``pl = (t1, t2, s1, s2)``); any other name of
    :mod:`mfpde.activations` uses ``n_quad``-point Gauss–Hermite quadrature (smooth activations).
    """
    a = np.asarray(a, dtype=float)
    if activation == "mmn_pl":
        t1, t2, s1, s2 = pl
        slope = (s2 - s1) / (t2 - t1)
        if derivative:
            return slope * (_ramp_dcoeffs(a, t1, kmax) - _ramp_dcoeffs(a, t2, kmax))
        out = slope * (_ramp_coeffs(a, t1, kmax) - _ramp_coeffs(a, t2, kmax))
        out[0] += s1
        return out
    from ..activations import get_activation
    s, ds, _ = get_activation(activation)
    z, w = np.polynomial.hermite_e.hermegauss(n_quad)
    w = w / math.sqrt(2 * math.pi)
    arg = a[..., None] * z
    vals = (ds(arg) * z) if derivative else s(arg)
    return np.stack([(vals * _hermite_e(k, z) * w).sum(-1) for k in range(kmax + 1)])


def angle_moments(d, kmax):
    """``E c^k`` under ``nu_d(c) ∝ (1-c^2)^{(d-3)/2}``, ``k = 0..kmax`` (odd moments vanish)."""
    m = np.zeros(kmax + 1)
    m[0] = 1.0
    for k in range(2, kmax + 1, 2):
        j = k // 2 - 1
        m[k] = m[k - 2] * (2 * j + 1) / (d + 2 * j)
    return m


class MMNRadial:
    """Radial potential pieces of the MMN isotropic-Gaussian problem (module docstring).

    Parameters
    ----------
    d : int  input dimension
    delta : float  ``Delta`` (``s_± = 1 ± Delta``)
    activation : str  (``"mmn_pl"`` closed form; others by quadrature)
    lam : float  weight decay
    kmax : int  even truncation order of the Mehler series
    large_d : bool  keep only ``k = 0`` (MMN's angle ``pi/2`` simplification)
    """

    def __init__(self, d=40, delta=0.8, activation="mmn_pl", lam=0.0, kmax=24, large_d=False):
        if d < 2:
            raise ValueError(f"d must be >= 2, got {d}")
        if not 0 <= delta < 1:
            raise ValueError(f"delta must be in [0, 1), got {delta}")
        self.d, self.delta, self.activation, self.lam = int(d), float(delta), activation, float(lam)
        self.kmax = 0 if large_d else int(kmax) - int(kmax) % 2
        self.large_d = bool(large_d)
        self.s = np.array([1.0 + self.delta, 1.0 - self.delta])      # y = +1, y = -1
        self.y = np.array([1.0, -1.0])
        mom = angle_moments(self.d, self.kmax)
        fact = special.factorial(np.arange(self.kmax + 1))
        self.ks = np.arange(0, self.kmax + 1, 2)
        self.wk = (mom / fact)[self.ks]                              # E c^k / k!, even k

    # -- building blocks --------------------------------------------------------------
    def coeffs(self, r, derivative=False):
        """``h_k(s_± r)`` for even ``k``: array (2, K, len(r)) (``d/dr`` if ``derivative``)."""
        r = np.atleast_1d(np.asarray(r, dtype=float))
        out = []
        for s in self.s:
            h = hermite_coeffs(self.activation, s * r, self.kmax, derivative=derivative)[self.ks]
            out.append(s * h if derivative else h)
        return np.stack(out)

    def v(self, r):
        """``v(r) = -E[y sigma(<u, x>)] = -1/2 [m_+(r) - m_-(r)]``."""
        h = self.coeffs(r)
        return -0.5 * (h[0, 0] - h[1, 0])

    def dv(self, r):
        h = self.coeffs(r, derivative=True)
        return -0.5 * (h[0, 0] - h[1, 0])

    def U_angle(self, r, rp, c, kmax=60):
        """``U_bar(r, r', c)`` at a fixed cosine ``c`` by the Mehler series to ``kmax`` (tests)."""
        ks = np.arange(kmax + 1)
        tot = 0.0
        for s in self.s:
            h1 = hermite_coeffs(self.activation, s * np.atleast_1d(r), kmax)[:, 0]
            h2 = hermite_coeffs(self.activation, s * np.atleast_1d(rp), kmax)[:, 0]
            tot += np.sum(c ** ks / special.factorial(ks) * h1 * h2)
        return 0.5 * tot

    def U(self, r, rp):
        """Angle-averaged kernel ``U_d(r, r')`` (matrix (len(r), len(rp)))."""
        h, hp = self.coeffs(r), self.coeffs(rp)
        return 0.5 * np.einsum("k,ski,skj->ij", self.wk, h, hp)

    def moments(self, r, weights):
        """``M_{±,k} = sum_l weights_l h_k(s_± r_l)`` (2, K): the measure enters only through these."""
        return np.einsum("skl,l->sk", self.coeffs(r), weights)

    def psi(self, r, r_atoms, weights):
        """``Psi_bar(r; rho_bar)`` for ``rho_bar = sum_l weights_l delta_{r_l}`` (no entropy terms)."""
        M = self.moments(r_atoms, weights)
        h = self.coeffs(r)
        inter = 0.5 * np.einsum("k,sk,ski->i", self.wk, M, h)
        return self.v(r) + inter + 0.5 * self.lam * np.asarray(r) ** 2

    def dpsi(self, r, r_atoms, weights):
        """``d Psi_bar/dr`` at ``r`` (for Lagrangian particles, grid.md §2)."""
        M = self.moments(r_atoms, weights)
        dh = self.coeffs(r, derivative=True)
        return self.dv(r) + 0.5 * np.einsum("k,sk,ski->i", self.wk, M, dh) + self.lam * np.asarray(r)

    def risk(self, r_atoms, weights):
        """``R = 1/2 + int v drho_bar + 1/2 iint U_d drho_bar drho_bar`` (grid.md §2)."""
        M = self.moments(r_atoms, weights)
        return 0.5 + float(weights @ self.v(r_atoms)) + 0.25 * float(np.einsum("k,sk,sk->", self.wk, M, M))


class RadialPotential(Potential):
    """Grid potential of the radial PDE: ``Psi_bar - beta^{-1}(d-1) log r`` on a :class:`Grid1D` in ``r``.

    ``energy = R(rho_bar) + lam/2 int r^2 - beta^{-1}(d-1) int log r drho_bar`` (the entropy
    ``beta^{-1} int rho_bar log rho_bar`` is added by the solver), so ``d energy/d rho_j = dr Psi_j``.
    Requires ``grid.lo >= 0``.
    """

    local = False

    def __init__(self, grid, radial: MMNRadial, beta=np.inf):
        if grid.ndim != 1 or grid.lo < 0:
            raise ValueError("the radial potential needs a 1-D grid on r >= 0")
        self.grid, self.radial = grid, radial
        self.beta_inv = 0.0 if np.isinf(beta) else 1.0 / float(beta)
        r = grid.x
        self.h = radial.coeffs(r)                                    # (2, K, J)
        self.vloc = radial.v(r) + 0.5 * radial.lam * r ** 2
        if self.beta_inv > 0:
            self.vloc = self.vloc - self.beta_inv * (radial.d - 1) * np.log(r)
        self.local_part = self.vloc

    def _M(self, rho):
        return np.einsum("skl,l->sk", self.h, rho) * self.grid.dx

    def psi(self, rho):
        M = self._M(rho)
        return self.vloc + 0.5 * np.einsum("k,sk,ski->i", self.radial.wk, M, self.h)

    def energy(self, rho):
        M = self._M(rho)
        return 0.5 + self.grid.dx * float(self.vloc @ rho) \
            + 0.25 * float(np.einsum("k,sk,sk->", self.radial.wk, M, M))

    def risk(self, rho):
        w = rho * self.grid.dx
        return self.radial.risk(self.grid.x, w / w.sum())


def chi_cell_averages(grid, d, kappa):
    """Cell averages of the law of ``r = |u|``, ``u ~ N(0, kappa^2/d I_d)`` (scaled chi_d)."""
    scale = kappa / math.sqrt(d)
    c = stats.chi(d).cdf(grid.edges / scale)
    return np.diff(c) / grid.dx


def radial_solver(d=40, delta=0.8, kappa=0.8, lam=0.0, beta=np.inf, J=400, r_max=None,
                  activation="mmn_pl", kmax=24, large_d=False, **solver_kw):
    """Build the radial FV solver (grid.md §2 numerics) started from ``u ~ N(0, kappa^2/d I_d)``.

    ``r_max`` defaults to ``3 kappa``. Extra keywords go to :class:`FVSolver` (default
    ``order=2``, explicit Euler). Returns the solver; its ``potential`` is a
    :class:`RadialPotential` (``.risk(rho)``).
    """
    r_max = 3.0 * kappa if r_max is None else r_max
    grid = Grid1D(0.0, r_max, J)
    rad = MMNRadial(d, delta, activation, lam, kmax, large_d)
    pot = RadialPotential(grid, rad, beta)
    rho0 = chi_cell_averages(grid, d, kappa)
    if np.isfinite(beta):
        # log rho needs rho > 0: r^{d-1} underflows near r = 0 for large d
        rho0 = np.maximum(rho0, 1e-250 * rho0.max())
    solver_kw.setdefault("boundary_faces", ("hi0",))
    return FVSolver(grid, pot, rho0, beta=beta, **solver_kw)


def lagrangian_radial(r0, weights, radial: MMNRadial, t_end, dt, times=()):
    """Noiseless 1-D Lagrangian particles ``dr_i/dt = -d_r Psi_bar(r_i; sum_l w_l delta_{r_l})`` (RK4).

    Exact characteristics of the radial PDE for ``beta = inf`` (grid.md §2). Returns
    ``{t: r (copy)}`` for the requested ``times`` (and ``t_end``).
    """
    r = np.array(r0, dtype=float)
    w = np.asarray(weights, dtype=float)
    w = w / w.sum()
    out = {}
    want = sorted(set(float(t) for t in times) | {float(t_end)})

    def f(x):
        return -radial.dpsi(x, x, w)

    t = 0.0
    for tw in want:
        while t < tw - 1e-14:
            h = min(dt, tw - t)
            k1 = f(r)
            k2 = f(r + 0.5 * h * k1)
            k3 = f(r + 0.5 * h * k2)
            k4 = f(r + h * k3)
            r = np.maximum(r + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4), 0.0)
            t += h
        out[tw] = r.copy()
    return out


def w1_samples_vs_grid_1d(samples, edges, density):
    """Exact ``W_1 = int |F_N(x) - G(x)| dx`` between samples and a piecewise-constant density.

    ``F_N`` is the empirical CDF, ``G`` the (piecewise-linear) CDF of the cell averages
    ``density`` on ``edges``.
    """
    x = np.sort(np.asarray(samples, dtype=float).ravel())
    N = x.size
    mass = np.maximum(np.asarray(density, float), 0) * np.diff(edges)
    cdf = np.concatenate([[0.0], np.cumsum(mass)])
    cdf /= cdf[-1]
    pts = np.unique(np.concatenate([edges, x]))
    G = np.interp(pts, edges, cdf)
    F = np.searchsorted(x, pts, side="right") / N          # F_N on [pts_i, pts_{i+1})
    a, b = G[:-1] - F[:-1], G[1:] - F[:-1]
    L = np.diff(pts)
    same = a * b >= 0
    area = np.where(same, 0.5 * L * np.abs(a + b), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(same, 0.0, np.abs(a) / (np.abs(a) + np.abs(b)))
    area = area + np.where(same, 0.0, 0.5 * L * (frac * np.abs(a) + (1 - frac) * np.abs(b)))
    return float(area.sum())


def mmn_sgd_norms(d=40, N=800, delta=0.8, kappa=0.8, lam=0.0, eps=1e-3, batch=16, times=(1.0,),
                  seed=0, activation="mmn_pl", return_theta=False):
    """Online SGD (fixed output weight, mean-field units) on the MMN data; norms ``|u_i|`` at ``times``.

    ``u_i <- u_i - eps grad Psi_hat(u_i; rho_N)`` with ``grad Psi_hat`` the model force
    (``make_model(kind="two_layer", output="fixed")``) on a mini-batch of ``batch`` fresh
    samples from ``make_dataset("mmn_gaussians", online=True)``; time ``t = k eps``
    (dynamics.md §4.1). This is :class:`~mfpde.dynamics.langevin.LangevinSolver` with
    ``beta = inf`` and an online sampler, run by the :class:`~mfpde.engine.Controller` to each
    time. Initialisation ``u ~ N(0, kappa^2/d I_d)`` drawn by ``PCG64(SeedSequence([seed, N]))``;
    the driver's generator ``SeedSequence([seed, N, 1])`` draws the samples.

    Returns ``{t: norms (N,)}`` including ``t = 0`` (and ``{t: theta}`` as second value if
    ``return_theta``).
    """
    from ..data import make_dataset
    from ..dynamics import LangevinSolver
    from ..engine import Controller
    from ..models import make_model
    model = make_model("two_layer", d=d, q=1, activation=activation, output="fixed", lam=lam)
    sampler = make_dataset("mmn_gaussians", seed=seed, d=d, delta=delta, online=True)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(N)])))
    theta0 = rng.standard_normal((N, d)) * (kappa / math.sqrt(d))
    drv = LangevinSolver(model, None, N=N, dt=eps, batch=batch, sampler=sampler,
                         seed=np.random.SeedSequence([int(seed), int(N), 1]), theta0=theta0)
    norms = {0.0: np.linalg.norm(drv.theta, axis=1)}
    thetas = {0.0: drv.theta.copy()}
    for t in sorted(float(x) for x in times):
        Controller(drv, n_steps=max(drv.k, int(round(t / eps)))).run()
        norms[t] = np.linalg.norm(drv.theta, axis=1)
        if return_theta:
            thetas[t] = drv.theta.copy()
    return (norms, thetas) if return_theta else norms
