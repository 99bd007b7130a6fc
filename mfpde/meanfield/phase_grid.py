r"""Phase-space ``(theta, r)`` grid for the kinetic mean-field equation with noise, ``D = 1``.

Equation (theory/grid.md §4; dynamics.md §5.3; README convention 6) on
``[theta_lo, theta_hi] x [r_lo, r_hi]``, cells ``(i, j)``, density ``rho`` of shape ``(J_theta, J_r)``:

.. math::

    \partial_t\rho + r\,\partial_\theta\rho
      = \partial_r\big[(\gamma r + \partial_\theta\Psi(\theta;\rho^\theta))\rho\big]
        + \tfrac{\gamma}{\beta}\partial_r^2\rho,\qquad
    \rho^\theta_i = \Delta r\sum_j\rho_{ij}.

Strang splitting per step ``dt`` (grid.md §4):

1. ``A(dt/2)``: transport in ``theta``; row ``j`` has the constant speed ``r_j``; upwind flux
   ``F_{i+1/2,j} = r_j^+ rho^E_{ij} + r_j^- rho^W_{i+1,j}`` (minmod point values), zero flux at the
   ``theta`` ends.
2. ``B(dt)``: compute ``rho^theta``, ``Psi_i`` (any :class:`~mfpde.meanfield.grid.Potential` on the
   ``theta`` grid) and ``d_theta Psi_i`` (centred differences, one-sided at the ends, or an
   analytic ``dpsi``); then a CCH step in ``r`` with
   ``phi_ij = gamma r_j^2/2 + r_j d_theta Psi_i + (gamma/beta) log rho_ij``,
   ``u_{i,j+1/2} = -(phi_{i,j+1} - phi_ij)/dr``. ``B`` conserves every column mass, hence
   ``rho^theta`` and ``Psi`` are exact during the sub-step.
3. ``A(dt/2)``.

The transport sub-steps ``A`` use SSP-RK2 (Heun; convex combination of Euler steps, so
positivity is kept), ``dt <= cfl * dtheta / max|r|`` (grid.md §4). For ``B`` two options:

- ``velocity_method="implicit"`` (default) [choice]: during ``B`` the column equation is the
  *linear* Fokker–Planck equation ``d_t rho = d_r(rho d_r W_i + (gamma/beta) d_r rho)`` with the
  exact (not lagged) potential ``W_i(r) = gamma r^2/2 + r d_theta Psi_i``; one backward-Euler step
  with Scharfetter–Gummel fluxes ``F = (gamma/(beta dr)) [B(x) rho_j - B(-x) rho_{j+1}]``,
  ``x = (beta/gamma)(W_{j+1} - W_j)`` (pure upwind for ``beta = inf``). Positive and mass
  conserving for every ``dt``; per column its fixed point is exactly
  ``exp(-beta [r^2/2 + r d_theta Psi_i/gamma])``. First order in time (the splitting is then first
  order overall).
- ``velocity_method="explicit"``: the CCH flux with
  ``phi_ij = gamma r_j^2/2 + r_j d_theta Psi_i + (gamma/beta) log rho_ij`` and SSP-RK2, sub-cycled
  under ``dt_B <= cfl * dr/(2 a_r)`` and ``dt_B <= c_diff * beta dr^2/gamma`` (grid.md §4);
  second order, but the sub-cycling is costly where ``|d_theta Psi|`` is large at the edges of
  the ``theta`` domain.

Kinetic free energy (dynamics.md §5.4), discrete:

.. math::

    F_{kin,\Delta} = E_\Delta(\rho^\theta)
      + \Delta\theta\Delta r\sum_{ij}\big[\tfrac12 r_j^2\rho_{ij} + \beta^{-1}\rho_{ij}\log\rho_{ij}\big],

``E_Delta`` the potential's energy on the ``theta`` grid. It is non-increasing up to the splitting
error; its minimiser is ``rho* ∝ exp(-beta[Psi(theta; rho*^theta) + r^2/2])``.

Use this grid with ``beta < inf``: in the noiseless case with ``r_0 = 0`` the solution lives on a
curve and any Eulerian grid smears it (grid.md §4 caveat); ``beta = inf`` is accepted but the
entropy term is then dropped.
"""
from __future__ import annotations

import numpy as np
from scipy import special

from ..kernels.grid import div_axis0, div_axis1, thomas_rows
from ..rules import VELOCITY_METHODS
from .fv import GridSolverBase, bernoulli
from .grids import Grid1D, Grid2D, gaussian_cell_averages

__all__ = ["PhaseGridSolver", "maxwellian_product"]


def maxwellian_product(theta_grid, r_edges_grid, rho_theta, r_var):
    """``rho0(theta, r) = rho^theta(theta) * N(0, r_var)(r)`` as cell averages (shape (J_theta, J_r))."""
    pr = gaussian_cell_averages(r_edges_grid, 0.0, r_var)
    return np.multiply.outer(np.asarray(rho_theta, float), pr)


class PhaseGridSolver(GridSolverBase):
    """Strang-split finite-volume solver of the kinetic equation (module docstring, grid.md §4).

    Parameters
    ----------
    theta_grid : Grid1D
        Grid in ``theta`` (the potential lives on it).
    r_lo, r_hi : float; J_r : int
        Velocity grid ``[r_lo, r_hi]`` with ``J_r`` cells.
    potential : Potential on ``theta_grid``
        ``psi(rho_theta)``, ``energy(rho_theta)``.
    gamma : float  friction ``> 0``
    beta : float  inverse temperature (``np.inf`` allowed, see the caveat)
    rho0 : ndarray (J_theta, J_r), ``>= 0``; renormalised to unit mass
    order, kappa : reconstruction (as :class:`~mfpde.meanfield.grid.FVSolver`)
    cfl, c_diff, dt_max : step control
    velocity_method : {"implicit", "explicit"}  integrator of the velocity sub-step ``B``
    dpsi : callable ``dpsi(theta, rho_theta) -> d_theta Psi`` or None (centred differences)
    boundary_tol, boundary_cells : warning when mass approaches a face (any of the four)
    floor : floor inside ``log`` only

    Attributes
    ----------
    rho, t, k, dt_last, grid (:class:`Grid2D` with axes ``(theta, r)``)
    """

    _grid_label = "phase-space grid"

    def __init__(self, theta_grid, r_lo, r_hi, J_r, potential, gamma=1.0, beta=np.inf,
                 rho0=None, order=2, kappa=2.0, cfl=0.9, c_diff=0.4, dt_max=np.inf,
                 dpsi=None, velocity_method="implicit", boundary_tol=1e-6, boundary_cells=2,
                 floor=1e-300, t0=0.0):
        if theta_grid.ndim != 1:
            raise ValueError("theta_grid must be a Grid1D (D = 1)")
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma!r}")
        if not beta > 0:
            raise ValueError(f"beta must be > 0 (np.inf allowed), got {beta!r}")
        if order not in (1, 2) or not 1.0 <= kappa <= 2.0:
            raise ValueError("order must be 1 or 2 and kappa in [1, 2]")
        self.theta_grid = theta_grid
        self.r_grid = Grid1D(r_lo, r_hi, J_r)
        self.grid = Grid2D((theta_grid.lo, r_lo), (theta_grid.hi, r_hi), (theta_grid.J, J_r))
        self.potential = potential
        self.gamma, self.beta = float(gamma), float(beta)
        self.beta_inv = 0.0 if np.isinf(self.beta) else 1.0 / self.beta
        self.order, self.kappa = int(order), float(kappa)
        self.cfl, self.c_diff, self.dt_max = float(cfl), float(c_diff), float(dt_max)
        self.dpsi = dpsi
        if velocity_method not in VELOCITY_METHODS:
            raise ValueError(f"velocity_method must be one of "
                             f"{', '.join(map(repr, VELOCITY_METHODS))}, got {velocity_method!r}")
        self.velocity_method = velocity_method
        self.boundary_tol, self.boundary_cells = float(boundary_tol), int(boundary_cells)
        self.floor = float(floor)
        if rho0 is None:
            raise ValueError("give rho0 (e.g. maxwellian_product(...))")
        rho0 = np.array(rho0, dtype=float)
        if rho0.shape != self.grid.shape:
            raise ValueError(f"rho0 must have shape {self.grid.shape}, got {rho0.shape}")
        if np.any(rho0 < 0) or not np.all(np.isfinite(rho0)):
            raise ValueError("rho0 must be finite and non-negative")
        if self.beta_inv > 0 and np.any(rho0 <= 0):
            raise ValueError("rho0 must be strictly positive when beta < inf")
        self.rho = np.ascontiguousarray(rho0 / (rho0.sum() * self.grid.cell_volume))
        self.r = self.r_grid.x
        self.t, self.k, self.dt_last = float(t0), 0, 0.0
        self.n_substeps_B = 0
        self._warned = False
        self._U = np.ascontiguousarray(np.broadcast_to(self.r[None, :],
                                                       (theta_grid.J - 1, J_r)))
        self._check_boundary()

    # ------------------------------------------------------------------ diagnostics
    def mass(self, rho=None):
        rho = self.rho if rho is None else rho
        return float(rho.sum()) * self.grid.cell_volume

    def rho_theta(self, rho=None):
        """``theta``-marginal ``rho^theta_i = dr sum_j rho_ij`` (J_theta,)."""
        rho = self.rho if rho is None else rho
        return rho.sum(axis=1) * self.r_grid.dx

    def rho_r(self, rho=None):
        """``r``-marginal (J_r,)."""
        rho = self.rho if rho is None else rho
        return rho.sum(axis=0) * self.theta_grid.dx

    def psi_and_grad(self, rho=None):
        """``(Psi_i, d_theta Psi_i)`` on the ``theta`` grid for the current ``theta``-marginal."""
        rt = self.rho_theta(rho)
        psi = np.asarray(self.potential.psi(rt), dtype=float)
        if self.dpsi is not None:
            return psi, np.asarray(self.dpsi(self.theta_grid.x, rt), dtype=float)
        return psi, np.gradient(psi, self.theta_grid.dx, edge_order=2)

    def free_energy(self, rho=None):
        """Discrete kinetic free energy ``F_kin,Delta`` (module docstring; ``H`` for beta = inf)."""
        rho = self.rho if rho is None else rho
        vol = self.grid.cell_volume
        F = self.potential.energy(self.rho_theta(rho))
        F += 0.5 * vol * float(np.sum(rho * (self.r ** 2)[None, :]))
        if self.beta_inv > 0:
            F += self.beta_inv * vol * float(np.sum(special.xlogy(rho, rho)))
        return F

    def gibbs_state(self, rho=None):
        """``exp(-beta [Psi(theta; rho^theta) + r^2/2]) / Z`` on the grid (point values, unit mass)."""
        if self.beta_inv == 0:
            raise ValueError("the Gibbs state needs beta < inf")
        psi, _ = self.psi_and_grad(rho)
        e = -self.beta * (psi[:, None] - psi.min() + 0.5 * (self.r ** 2)[None, :])
        g = np.exp(e)
        return g / (g.sum() * self.grid.cell_volume)

    def boundary_mass_fraction(self, rho=None):
        rho = self.rho if rho is None else rho
        nb = self.boundary_cells
        if nb <= 0:
            return 0.0
        tot = float(rho.sum())
        parts = [rho[:nb].sum(), rho[-nb:].sum(), rho[:, :nb].sum(), rho[:, -nb:].sum()]
        return max(float(p) for p in parts) / tot

    # ------------------------------------------------------------------ sub-steps
    def _rhs_A(self, rho):
        out = np.empty_like(rho)
        div_axis0(rho, self._U, self.theta_grid.dx, self.order, self.kappa, out, False)
        return out

    def _A(self, h):
        """Transport in ``theta`` for ``h`` (SSP-RK2), ``h <= cfl dtheta/(2 max|r|)``."""
        rho = self.rho
        r1 = rho + h * self._rhs_A(rho)
        self.rho = np.ascontiguousarray(0.5 * (rho + r1 + h * self._rhs_A(r1)))

    def _velocities_B(self, rho, dpsi):
        phi = 0.5 * self.gamma * (self.r ** 2)[None, :] + self.r[None, :] * dpsi[:, None]
        if self.beta_inv > 0:
            phi = phi + self.gamma * self.beta_inv * np.log(np.maximum(rho, self.floor))
        return np.ascontiguousarray(-np.diff(phi, axis=1) / self.r_grid.dx)

    def _rhs_B(self, rho, dpsi):
        V = self._velocities_B(rho, dpsi)
        out = np.empty_like(rho)
        div_axis1(rho, V, self.r_grid.dx, self.order, self.kappa, out, False)
        return out, float(np.max(np.abs(V)))

    def _limit_B(self, a):
        dr = self.r_grid.dx
        lim = np.inf
        if a > 0:
            lim = self.cfl * dr / (2.0 * a)
        if self.beta_inv > 0:
            lim = min(lim, self.c_diff * self.beta * dr * dr / self.gamma)
        return lim

    def _B_implicit(self, h, dpsi):
        """Backward-Euler Scharfetter–Gummel step of the velocity part (module docstring)."""
        dr = self.r_grid.dx
        Wp = 0.5 * self.gamma * (self.r ** 2)[None, :] + self.r[None, :] * dpsi[:, None]
        dW = np.diff(Wp, axis=1)                                   # (J_theta, J_r - 1)
        if self.beta_inv > 0:
            x = (self.beta / self.gamma) * dW
            c = self.gamma * self.beta_inv / dr
            al, ga = c * bernoulli(x), c * bernoulli(-x)
        else:
            u = -dW / dr
            al, ga = np.maximum(u, 0.0), np.maximum(-u, 0.0)
        cc = h / dr
        J0, J1 = self.rho.shape
        di = np.ones((J0, J1))
        di[:, :-1] += cc * al
        di[:, 1:] += cc * ga
        up = np.zeros((J0, J1))
        up[:, :-1] = -cc * ga
        lo = np.zeros((J0, J1))
        lo[:, 1:] = -cc * al
        out = np.empty_like(self.rho)
        thomas_rows(lo, di, up, self.rho, out)
        # unit column sums: mass conserved up to the round-off of the solve, removed here
        colmass, newmass = self.rho.sum(axis=1), out.sum(axis=1)
        out *= np.where(newmass > 0, colmass / np.where(newmass > 0, newmass, 1.0), 1.0)[:, None]
        self.rho = np.ascontiguousarray(np.maximum(out, 0.0))
        self.n_substeps_B += 1

    def _B(self, h):
        """Velocity part for ``h``: implicit SG, or explicit CCH in ``r`` (SSP-RK2, sub-cycled)."""
        _, dpsi = self.psi_and_grad()
        if self.velocity_method == "implicit":
            self._B_implicit(h, dpsi)
            return
        done = 0.0
        while done < h * (1 - 1e-14):
            rho = self.rho
            k1, a1 = self._rhs_B(rho, dpsi)
            hs = min(h - done, self._limit_B(a1))
            for _ in range(40):
                r1 = rho + hs * k1
                if np.all(r1 >= 0):
                    k2, a2 = self._rhs_B(r1, dpsi)
                    if self._limit_B(a2) >= hs * (1 - 1e-12):
                        new = 0.5 * (rho + r1 + hs * k2)
                        if np.all(new >= 0) and (self.beta_inv == 0 or np.all(new > 0)):
                            break
                hs *= 0.5
            else:
                raise RuntimeError("no positivity-preserving velocity sub-step found")
            self.rho = np.ascontiguousarray(new)
            done += hs
            self.n_substeps_B += 1

    def dt_limit(self):
        a = float(np.max(np.abs(self.r)))
        dt = self.dt_max
        if a > 0:
            dt = min(dt, self.cfl * self.theta_grid.dx / a)
        return dt

    def step(self, n=1, t_end=np.inf):
        """``n`` Strang steps ``A(dt/2) B(dt) A(dt/2)`` (never beyond ``t_end``)."""
        for _ in range(int(n)):
            if self.t >= t_end:
                break
            dt = min(self.dt_limit(), t_end - self.t)
            self._A(0.5 * dt)
            self._B(dt)
            self._A(0.5 * dt)
            self.t = t_end if self.t + dt >= t_end else self.t + dt
            self.k += 1
            self.dt_last = dt
            self._check_boundary()
        return self

    def run(self, t_end, callback=None, callback_every=1, max_steps=None):
        """Advance to ``t_end``; ``callback(solver)`` every ``callback_every`` steps (True stops)."""
        max_steps = int(max_steps) if max_steps is not None else 10 ** 12
        return self._advance(t_end, callback, callback_every, max_steps)

    # ------------------------------------------------------------------ state
    def state_dict(self):
        return {"rho": self.rho.copy(), "t": self.t, "k": self.k, "dt_last": self.dt_last}

    def load_state_dict(self, state):
        rho = np.array(state["rho"], dtype=float)
        if rho.shape != self.grid.shape:
            raise ValueError(f"state rho has shape {rho.shape}, grid is {self.grid.shape}")
        self.rho = np.ascontiguousarray(rho)
        self.t, self.k = float(state["t"]), int(state["k"])
        self.dt_last = float(state.get("dt_last", 0.0))
        self._warned = False

    def snapshot_arrays(self):
        """``axis0`` (theta centres), ``edges0``, ``axis1`` (r centres), ``edges1``, ``density``."""
        return {"axis0": self.theta_grid.x.copy(), "edges0": self.theta_grid.edges.copy(),
                "axis1": self.r.copy(), "edges1": self.r_grid.edges.copy(),
                "density": self.rho.copy()}
