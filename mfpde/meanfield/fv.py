r"""Finite-volume solver for the nonlocal Wasserstein gradient flow with entropy (theory/grid.md §1).

Equation (``xi = 1``; a schedule ``xi(t)`` is a pure change of clock, dynamics.md §2.5):

.. math::

    \partial_t\rho = \nabla\cdot(\rho\nabla\phi),\qquad
    \phi = \beta^{-1}\log\rho + \Psi(\theta;\rho),\qquad
    \Psi(\theta;\rho) = V(\theta) + \int U(\theta,\theta')\rho(d\theta') + \tfrac\lambda2\|\theta\|^2 .

This is the Carrillo–Chertock–Huang (CCH) scheme of grid.md §1.1 (one dimension) and §1.2 (two
dimensions) on a uniform Cartesian grid with cell averages ``rho`` (shape ``grid.shape``):

.. math::

    \frac{d\rho_j}{dt} = -\frac{F_{j+1/2}-F_{j-1/2}}{\Delta\theta},\quad
    u_{j+1/2} = -\frac{\phi_{j+1}-\phi_j}{\Delta\theta},\quad
    F_{j+1/2} = u^+_{j+1/2}\rho^E_j + u^-_{j+1/2}\rho^W_{j+1},\quad F_{1/2}=F_{J+1/2}=0,

with first-order (``order=1``: ``rho^E = rho^W = rho``) or minmod (``order=2``) point values,
``s_j = minmod(kappa (rho_{j+1}-rho_j)/dx, (rho_{j+1}-rho_{j-1})/(2dx), kappa (rho_j-rho_{j-1})/dx)``.

Time stepping (grid.md §1.1 "Time-step limits", recomputed every step):

- ``method="euler"`` (default) or ``"ssprk2"``: explicit, ``dt <= cfl * dx/(2a)`` in 1-D and
  ``dt <= cfl * min(dx_k/(4 a_k))`` in 2-D (positivity), ``dt <= c_diff * beta * min(dx^2)``
  (1-D) or ``c_diff * beta * min(dx^2)/2`` (2-D) (diffusive limit), ``a = max |u|``.
- ``method="implicit"``: semi-implicit step for stiff diffusion [choice]: backward Euler in
  ``rho`` with ``Psi`` frozen at the start of the step and the Scharfetter–Gummel flux
  ``F_{j+1/2} = (1/(beta dx)) [B(x) rho_j - B(-x) rho_{j+1}]``, ``x = beta (Psi_{j+1}-Psi_j)``,
  ``B(x) = x/(e^x - 1)`` (pure upwind for ``beta = inf``). The matrix is an M-matrix with unit
  column sums, so the step is positive and mass conserving for every ``dt``; its zero-flux states
  are exactly ``rho_j ∝ exp(-beta Psi_j)`` and, for an ``rho``-independent ``Psi``, the discrete
  free energy decreases for every ``dt`` (the step is a Markov kernel with invariant law
  ``exp(-beta Psi_j)``; relative entropy contracts). Only ``dt <= cfl * dx/(2 max|grad Psi|)``
  (accuracy of the lagged ``Psi``, only when ``Psi`` depends on ``rho``) and ``dt_max`` limit the
  step. First order in time; the SG flux is second order in space where the cell Peclet number
  ``beta |Psi_{j+1}-Psi_j|`` is small.

Discrete free energy (grid.md §1.1):

.. math::

    F_\Delta(\rho) = E_\Delta(\rho) + \beta^{-1}\,|C|\sum_j \rho_j\log\rho_j ,

``E_Delta`` = :meth:`Potential.energy` (``|C| sum (V + lam/2 theta^2) rho + 1/2 |C|^2 sum U rho rho
+ 1/2 E y^2``, or for finite data ``R(f) + |C| sum lam/2 |theta|^2 rho``), ``|C|`` the cell volume.

The density is normalised to unit mass (``|C| sum rho = 1``) on construction. ``log`` is applied to
``max(rho, floor)`` only (the floor never changes ``rho``).
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import special

from ..kernels import grid as kernels
from ..rules import GRID_SCHEMES

__all__ = ["FVSolver", "BoundaryMassWarning", "GridSolverBase", "bernoulli"]


class BoundaryMassWarning(UserWarning):
    """Mass near a no-flux boundary exceeds the solver's ``boundary_tol`` (enlarge the domain)."""


def bernoulli(x):
    """``B(x) = x/(e^x - 1)`` (Scharfetter–Gummel), stable for all ``x``."""
    x = np.asarray(x, dtype=float)
    out = np.empty_like(x)
    small = np.abs(x) < 1e-6
    out[small] = 1.0 - 0.5 * x[small] + x[small] ** 2 / 12.0
    xl = x[~small]
    with np.errstate(over="ignore"):
        out[~small] = np.where(xl > 700.0, 0.0, xl / np.expm1(np.minimum(xl, 700.0)))
    return out


class GridSolverBase:
    """What the grid solvers share: the step-by-step advance to a time, a warning (once,
    until the mass leaves again) when more than ``boundary_tol`` of the mass lies in the outer
    ``boundary_cells`` cells, where the no-flux boundary shapes the solution, and the driver
    protocol of :mod:`mfpde.engine.protocol` (``dt = None``: adaptive steps, ``step(n, t_end)``
    never passes ``t_end``; ``fields()`` shows the ``density``; ``last_risk`` is nan). Needs
    ``t``, ``k``, ``rho``, ``step(1, t_end=...)``, ``boundary_cells``, ``boundary_tol``,
    ``_warned`` and ``boundary_mass_fraction()``."""

    _grid_label = "grid"
    #: adaptive steps (CFL / stability limits): no fixed step
    dt = None
    #: grid drivers define no risk of a step
    last_risk = float("nan")

    def fields(self) -> dict[str, np.ndarray]:
        """``{"density": rho}`` (a view; cell averages, shape ``grid.shape``, unit mass)."""
        return {"density": self.rho}

    def _check_boundary(self):
        if self.boundary_cells <= 0:
            return
        frac = self.boundary_mass_fraction()
        if frac > self.boundary_tol:
            if not self._warned:
                warnings.warn(
                    f"{frac:.3g} of the mass lies in the outer {self.boundary_cells} cells of the "
                    f"{self._grid_label} at t = {self.t:.4g} (threshold {self.boundary_tol:g}): the "
                    "no-flux boundary is felt; enlarge the domain", BoundaryMassWarning, stacklevel=3)
                self._warned = True
        else:
            self._warned = False

    def _advance(self, t_end, callback, callback_every, max_steps):
        """Step to ``t_end`` with the :class:`~mfpde.engine.Controller`; ``callback(solver)``
        every ``callback_every`` steps and at the end (returning True stops), at most
        ``max_steps`` steps."""
        from ..engine import CallbackTracker, Controller, every
        if self.t >= t_end:
            return self
        k0 = self.k
        trackers = []
        if callback is not None:
            trackers.append(CallbackTracker(lambda d, info: bool(callback(d)),
                                            every(steps=int(callback_every))))
        if max_steps < 10 ** 12:
            trackers.append(CallbackTracker(lambda d, info: d.k - k0 >= max_steps,
                                            every(steps=1, at_end=False)))
        Controller(self, trackers, t_end=float(t_end)).run()
        return self


class FVSolver(GridSolverBase):
    """CCH finite-volume solver for ``d_t rho = div(rho grad(Psi[rho] + beta^{-1} log rho))``.

    See the module docstring for the scheme (grid.md §1.1–§1.2).

    Parameters
    ----------
    grid : Grid1D or Grid2D
    potential : Potential
    rho0 : ndarray, shape ``grid.shape``
        Initial cell averages, ``>= 0`` (strictly positive when ``beta < inf``); renormalised to
        unit mass.
    beta : float
        Inverse temperature (``np.inf``: no entropy).
    order : {1, 2}
        Point-value reconstruction (first order or minmod).
    kappa : float in [1, 2]
        Minmod parameter.
    method : {"euler", "ssprk2", "implicit"}
    cfl : float in (0, 1]
        Fraction of the positivity limit used.
    c_diff : float in (0, 1/2]
        Diffusive limit ``dt <= c_diff * beta * dx^2`` (1-D; halved in 2-D). grid.md §1.1 allows
        ``c <= 1/2``; the default 0.25 [choice] keeps ``F_Delta`` decreasing also on rough data:
        the upwind flux of ``beta^{-1} log rho`` diffuses with the effective coefficient
        ``beta^{-1} rho_up log(rho_up/rho_dn)/(rho_up - rho_dn) > beta^{-1}``, and with ``c = 0.4``
        ``F_Delta`` was seen to increase on i.i.d. uniform(0.5, 1.5) data (``c <= 0.3`` decreased).
    dt_max : float
        Upper bound on every step (required to be finite for ``beta = inf`` with a
        ``rho``-independent zero potential).
    boundary_tol : float
        Warn (:class:`BoundaryMassWarning`) when the fraction of mass in the outer
        ``boundary_cells`` cells of any face exceeds this.
    boundary_cells : int
        ``0`` disables the check.
    boundary_faces : sequence of str, optional
        Faces to watch, among ``"lo0", "hi0", "lo1", "hi1"`` (default: all).
    floor : float
        Floor inside ``log`` only.
    t0 : float

    Attributes
    ----------
    rho : ndarray ``grid.shape``; t : float; k : int (steps taken); dt_last : float
    """

    def __init__(self, grid, potential, rho0, beta=np.inf, order=2, kappa=2.0, method="euler",
                 cfl=0.9, c_diff=0.25, dt_max=np.inf, boundary_tol=1e-6, boundary_cells=2,
                 boundary_faces=None, floor=1e-300, t0=0.0):
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order!r}")
        if not 1.0 <= kappa <= 2.0:
            raise ValueError(f"kappa must be in [1, 2] (positivity), got {kappa!r}")
        if method not in GRID_SCHEMES:
            raise ValueError(f"method must be one of {', '.join(map(repr, GRID_SCHEMES))}, "
                             f"got {method!r}")
        if not 0.0 < cfl <= 1.0:
            raise ValueError(f"cfl must be in (0, 1], got {cfl!r}")
        if not 0.0 < c_diff <= 0.5:
            raise ValueError(f"c_diff must be in (0, 1/2], got {c_diff!r}")
        if not beta > 0:
            raise ValueError(f"beta must be > 0 (np.inf allowed), got {beta!r}")
        self.grid, self.potential = grid, potential
        self.beta = float(beta)
        self.beta_inv = 0.0 if np.isinf(self.beta) else 1.0 / self.beta
        self.order, self.kappa, self.method = int(order), float(kappa), method
        self.cfl, self.c_diff, self.dt_max = float(cfl), float(c_diff), float(dt_max)
        self.boundary_tol, self.boundary_cells = float(boundary_tol), int(boundary_cells)
        faces = ("lo0", "hi0", "lo1", "hi1")[:2 * grid.ndim]
        self.boundary_faces = tuple(boundary_faces) if boundary_faces is not None else faces
        self.floor = float(floor)
        rho0 = np.array(rho0, dtype=float)
        if rho0.shape != tuple(grid.shape):
            raise ValueError(f"rho0 must have shape {grid.shape}, got {rho0.shape}")
        if not np.all(np.isfinite(rho0)) or np.any(rho0 < 0):
            raise ValueError("rho0 must be finite and non-negative")
        if self.beta_inv > 0 and np.any(rho0 <= 0):
            raise ValueError("rho0 must be strictly positive when beta < inf (log rho)")
        m = rho0.sum() * grid.cell_volume
        if m <= 0:
            raise ValueError("rho0 has zero mass")
        self.rho = np.ascontiguousarray(rho0 / m)
        self.t, self.k, self.dt_last = float(t0), 0, 0.0
        self._warned = False
        self._psi_cache = None
        self._work = None
        self.n_rejected = 0
        # diffusive step limit (grid.md §1.1): c beta dx^2 in 1-D, c beta min(dx)^2 / 2 in 2-D
        if self.beta_inv == 0:
            self._dt_diff = np.inf
        elif grid.ndim == 1:
            self._dt_diff = self.c_diff * self.beta * grid.dxs[0] ** 2
        else:
            self._dt_diff = self.c_diff * self.beta * min(grid.dxs) ** 2 / 2.0
        self._check_boundary()

    # ------------------------------------------------------------------ helpers
    @property
    def ndim(self):
        return self.grid.ndim

    def mass(self, rho=None):
        """``|C| sum_j rho_j``."""
        rho = self.rho if rho is None else rho
        return float(rho.sum()) * self.grid.cell_volume

    def psi(self, rho=None):
        """``Psi_j`` on the grid for ``rho`` (cached for a local potential)."""
        if self.potential.local:
            if self._psi_cache is None:
                self._psi_cache = np.ascontiguousarray(self.potential.psi(self.rho), dtype=float)
            return self._psi_cache
        rho = self.rho if rho is None else rho
        return np.ascontiguousarray(self.potential.psi(rho), dtype=float)

    def phi(self, rho=None, psi=None):
        """``phi_j = beta^{-1} log max(rho_j, floor) + Psi_j`` (grid.md §1.1)."""
        rho = self.rho if rho is None else rho
        psi = self.psi(rho) if psi is None else psi
        if self.beta_inv > 0:
            lg = np.empty(np.shape(rho))
            kernels.log_floor(np.ascontiguousarray(rho, dtype=float), self.floor, lg)
            return psi + self.beta_inv * lg
        return psi

    def velocities(self, phi):
        """Interface velocities ``u = -(phi_{+1} - phi)/dx`` per axis (interior interfaces)."""
        return [-np.diff(phi, axis=k) / self.grid.dxs[k] for k in range(self.ndim)]

    def _shape2(self):
        """The grid shape as a 2-D shape (1-D grids: ``(J, 1)``) for the compiled kernels."""
        return tuple(self.grid.shape) if self.ndim == 2 else (self.grid.shape[0], 1)

    def _scratch(self):
        """Work arrays of the kernels (created once): ``work`` (4, J0, J1) and the interface
        velocities ``U0`` (J0-1, J1), ``U1`` (J0, J1-1)."""
        if self._work is None:
            J0, J1 = self._shape2()
            self._work = (np.empty((4, J0, J1)), np.empty((J0 - 1, J1)),
                          np.empty((J0, max(J1 - 1, 0))))
        return self._work

    def rhs(self, rho=None, psi=None):
        """``d rho/dt`` of the semi-discrete scheme and the maximal speeds per axis.

        One call of :func:`mfpde.kernels.grid.cch_rhs` (``phi`` as :meth:`phi`, the
        interface velocities as :meth:`velocities`). Returns ``(drho (grid.shape), a (ndim,))``.
        """
        rho = self.rho if rho is None else rho
        psi = self.psi(rho) if psi is None else psi
        shape2 = self._shape2()
        work, U0, U1 = self._scratch()
        out = np.empty(shape2)
        a = kernels.cch_rhs(np.ascontiguousarray(rho, dtype=float).reshape(shape2),
                            np.ascontiguousarray(psi, dtype=float).reshape(shape2), self.ndim,
                            self.grid.dxs[0], self.grid.dxs[-1], self.beta_inv, self.floor,
                            self.order, self.kappa, work, U0, U1, out)
        return out.reshape(rho.shape), np.array(a[:self.ndim])

    def dt_limit(self, a):
        """Explicit step limit from the maximal speeds ``a`` (grid.md §1.1, §1.2;
        :func:`mfpde.kernels.grid.dt_limit`)."""
        dxs = self.grid.dxs
        dt = kernels.dt_limit(float(a[0]), float(a[-1]), self.ndim, dxs[0], dxs[-1], self.cfl,
                              self._dt_diff, self.dt_max)
        if not np.isfinite(dt):
            raise RuntimeError("no finite time step: set dt_max (zero velocity and beta = inf)")
        return dt

    def free_energy(self, rho=None):
        """Discrete free energy ``F_Delta = E_Delta(rho) + beta^{-1} |C| sum rho log rho``."""
        rho = self.rho if rho is None else rho
        F = self.potential.energy(rho)
        if self.beta_inv > 0:
            F += self.beta_inv * self.grid.cell_volume * float(np.sum(special.xlogy(rho, rho)))
        return F

    def dissipation(self, rho=None):
        """Semi-discrete dissipation ``-dF_Delta/dt = |C| sum (u+)^2 rho^E + (u-)^2 rho^W`` (1st order pts)."""
        rho = self.rho if rho is None else rho
        vel = self.velocities(self.phi(rho))
        tot = 0.0
        for k, u in enumerate(vel):
            lo = [slice(None)] * self.ndim
            hi = [slice(None)] * self.ndim
            lo[k] = slice(0, -1)
            hi[k] = slice(1, None)
            tot += float(np.sum(np.maximum(u, 0) ** 2 * rho[tuple(lo)]
                                + np.minimum(u, 0) ** 2 * rho[tuple(hi)]))
        return tot * self.grid.cell_volume

    def residual(self, rho=None):
        """``|C| sum |d rho/dt|`` (L1 norm of the time derivative; 0 at a discrete steady state)."""
        r, _ = self.rhs(rho)
        return float(np.abs(r).sum()) * self.grid.cell_volume

    def gibbs_state(self, rho=None):
        """Proximal Gibbs state ``exp(-beta Psi(.; rho))/Z`` on the grid (point values, unit mass)."""
        if self.beta_inv == 0:
            raise ValueError("the Gibbs state needs beta < inf")
        psi = self.psi(rho)
        g = np.exp(-self.beta * (psi - psi.min()))
        return g / (g.sum() * self.grid.cell_volume)

    def boundary_mass_fraction(self, rho=None):
        """Largest fraction of mass in the outer ``boundary_cells`` cells over the watched faces."""
        rho = self.rho if rho is None else rho
        nb = self.boundary_cells
        if nb <= 0:
            return 0.0
        tot = float(rho.sum())
        worst = 0.0
        for face in self.boundary_faces:
            ax = int(face[-1])
            sl = [slice(None)] * self.ndim
            sl[ax] = slice(0, nb) if face.startswith("lo") else slice(-nb, None)
            worst = max(worst, float(rho[tuple(sl)].sum()) / tot)
        return worst

    # ------------------------------------------------------------------ implicit step
    def _sg_coefficients(self, psi, axis):
        """Scharfetter–Gummel flux ``F = alpha rho_left - gamma rho_right`` per interface."""
        dx = self.grid.dxs[axis]
        dpsi = np.diff(psi, axis=axis)
        if self.beta_inv > 0:
            x = self.beta * dpsi
            c = self.beta_inv / dx
            return c * bernoulli(x), c * bernoulli(-x)
        u = -dpsi / dx
        return np.maximum(u, 0.0), np.maximum(-u, 0.0)

    def _implicit_step(self, dt, psi):
        """Backward Euler in ``rho`` with frozen ``Psi`` and SG fluxes (module docstring)."""
        from scipy import linalg, sparse
        from scipy.sparse import linalg as splinalg
        rho = self.rho
        if self.ndim == 1:
            al, ga = self._sg_coefficients(psi, 0)
            c = dt / self.grid.dx
            J = rho.size
            ab = np.zeros((3, J))
            diag = np.ones(J)
            diag[:-1] += c * al
            diag[1:] += c * ga
            ab[1] = diag
            ab[0, 1:] = -c * ga          # upper: coefficient of rho_{j+1} in row j
            ab[2, :-1] = -c * al         # lower: coefficient of rho_{j-1} in row j
            new = linalg.solve_banded((1, 1), ab, rho)
            return new
        J0, J1 = rho.shape
        a0, g0 = self._sg_coefficients(psi, 0)   # (J0-1, J1)
        a1, g1 = self._sg_coefficients(psi, 1)   # (J0, J1-1)
        c0, c1 = dt / self.grid.dxs[0], dt / self.grid.dxs[1]
        diag = np.ones((J0, J1))
        diag[:-1, :] += c0 * a0
        diag[1:, :] += c0 * g0
        diag[:, :-1] += c1 * a1
        diag[:, 1:] += c1 * g1
        up1 = np.zeros((J0, J1))
        up1[:, :-1] = -c1 * g1
        lo1 = np.zeros((J0, J1))
        lo1[:, 1:] = -c1 * a1
        upJ = -c0 * g0                           # (k, k+J1) for i <= J0-2
        loJ = -c0 * a0                           # (k, k-J1) for i >= 1
        M = J0 * J1
        A = sparse.diags(
            [diag.ravel(), up1.ravel()[:-1], lo1.ravel()[1:], upJ.ravel(), loJ.ravel()],
            [0, 1, -1, J1, -J1], shape=(M, M), format="csc")
        return splinalg.spsolve(A, rho.ravel()).reshape(rho.shape)

    # ------------------------------------------------------------------ stepping
    def _attempt(self, t_end=np.inf):
        """One step; returns ``(new_rho, dt)`` (positivity enforced by step rejection)."""
        psi = self.psi()
        remaining = t_end - self.t
        if self.method == "implicit":
            vel = self.velocities(psi)
            a = np.array([float(np.max(np.abs(v))) for v in vel])
            dt = self.dt_max
            if not self.potential.local:   # Psi lagged over the step: drift CFL for accuracy
                # only the rho-dependent part of Psi is lagged (``local_part``, if given)
                loc = getattr(self.potential, "local_part", None)
                if loc is not None:
                    vel = self.velocities(psi - loc)
                    a = np.array([float(np.max(np.abs(v))) for v in vel])
                for k in range(self.ndim):
                    if a[k] > 0:
                        dt = min(dt, self.cfl * self.grid.dxs[k] / (2.0 * a[k]))
            if not np.isfinite(dt):
                raise RuntimeError("implicit method needs a finite dt_max for a flat potential")
            dt = min(dt, remaining)
            new = self._implicit_step(dt, psi)
            # the matrix has unit column sums: mass is conserved exactly up to the round-off of
            # the linear solve, which is removed here (a relative correction of ~1e-16)
            new *= float(self.rho.sum()) / float(new.sum())
            return new, dt
        r1, a = self.rhs(self.rho, psi)
        dt = min(self.dt_limit(a), remaining)
        for _ in range(40):
            new = self.rho + dt * r1
            if self.method == "ssprk2" and np.all(new >= 0):
                r2, a2 = self.rhs(new)
                if self.dt_limit(a2) >= dt * (1 - 1e-12):
                    new = 0.5 * (self.rho + new + dt * r2)
                else:
                    new = None
            if new is not None and np.all(new >= 0) and (self.beta_inv == 0 or np.all(new > 0)):
                return new, dt
            dt *= 0.5
            self.n_rejected += 1
        raise RuntimeError("could not find a positivity-preserving step (40 halvings)")

    #: take the compiled loop when the configuration allows it (:meth:`fused_ok`); set False on
    #: an instance for the Python steps
    fused = True

    def fused_ok(self):
        """Whether :meth:`step` and :meth:`run` use the compiled loop
        :func:`mfpde.kernels.grid.run_local` (every stage of many steps in one call): a local
        (``rho``-independent) potential, ``method`` ``"euler"`` or ``"ssprk2"`` and :attr:`fused`
        set. Its steps are the Python steps operation for operation, bit for bit (1-D Euler:
        the update ``rho - (dt/dx)(F_{j+1/2} - F_{j-1/2})``, equal to ``rho + dt drho`` up to
        round-off)."""
        return bool(self.fused and self.potential.local and self.method in ("euler", "ssprk2"))

    def _run_fused(self, t_end, max_steps):
        """At most ``max_steps`` steps of the compiled loop, never beyond ``t_end``. Its state is
        ``(rho, t)`` alone, so splitting the steps over several calls changes no bit."""
        if self.t >= t_end or max_steps <= 0:
            return self
        shape2 = self._shape2()
        work, U0, U1 = self._scratch()
        dxs = self.grid.dxs
        t, steps, dt, rejected, status = kernels.run_local(
            self.rho.reshape(shape2), self.psi().reshape(shape2), self.ndim, dxs[0], dxs[-1],
            self.beta_inv, self.floor, self.order, self.kappa, self.cfl, self._dt_diff,
            self.dt_max, self.method == "ssprk2", self.method == "euler" and self.ndim == 1,
            self.t, float(t_end), int(max_steps), work, U0, U1)
        self.n_rejected += int(rejected)
        if steps > 0:
            self.t, self.k, self.dt_last = float(t), self.k + int(steps), float(dt)
        if status == 1:
            raise RuntimeError("no finite time step: set dt_max (zero velocity and beta = inf)")
        if status == 2:
            raise RuntimeError("could not find a positivity-preserving step (40 halvings)")
        self._check_boundary()
        return self

    def step(self, n=1, t_end=np.inf):
        """Take ``n`` adaptive steps (never beyond ``t_end``). Returns ``self``.

        Uses the compiled loop when :meth:`fused_ok` (the same steps as :meth:`run`, bit for
        bit, however they are split), else Python steps.
        """
        if self.fused_ok():
            return self._run_fused(t_end, int(n))
        for _ in range(int(n)):
            if self.t >= t_end:
                break
            new, dt = self._attempt(t_end)
            self.rho = np.ascontiguousarray(new)
            self.t = t_end if self.t + dt >= t_end else self.t + dt
            self.k += 1
            self.dt_last = dt
            self._check_boundary()
        return self

    def run(self, t_end, callback=None, callback_every=1, max_steps=None):
        """Advance to exactly ``t_end``.

        Parameters
        ----------
        t_end : float
        callback : callable ``callback(solver)`` or None
            Called after every ``callback_every`` steps and at the end. Returning ``True`` stops
            the run early.
        callback_every : int
        max_steps : int or None
            Safety bound on the number of steps.

        Without a callback and when :meth:`fused_ok`, one call of the compiled loop
        :func:`mfpde.kernels.grid.run_local` takes all the steps; with a callback the same
        steps are taken one :meth:`step` at a time.
        """
        max_steps = int(max_steps) if max_steps is not None else 10 ** 12
        if callback is None and self.fused_ok():
            return self._run_fused(t_end, max_steps)
        return self._advance(t_end, callback, callback_every, max_steps)

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """Complete state: ``{"rho", "t", "k", "dt_last", "n_rejected"}`` (copies)."""
        return {"rho": self.rho.copy(), "t": self.t, "k": self.k, "dt_last": self.dt_last,
                "n_rejected": self.n_rejected}

    def load_state_dict(self, state):
        rho = np.array(state["rho"], dtype=float)
        if rho.shape != tuple(self.grid.shape):
            raise ValueError(f"state rho has shape {rho.shape}, grid is {self.grid.shape}")
        self.rho = np.ascontiguousarray(rho)
        self.t = float(state["t"])
        self.k = int(state["k"])
        self.dt_last = float(state.get("dt_last", 0.0))
        self.n_rejected = int(state.get("n_rejected", 0))
        self._warned = False

    def snapshot_arrays(self):
        """Arrays for the run store: grid axes (centres and edges) and the density.

        Keys: ``axis0`` (J0,), ``edges0`` (J0+1,), [``axis1``, ``edges1``], ``density``
        (``grid.shape``, cell averages, unit mass).
        """
        out = {}
        for k in range(self.ndim):
            out[f"axis{k}"] = self.grid.axes[k].copy()
            out[f"edges{k}"] = self.grid.axis_edges[k].copy()
        out["density"] = self.rho.copy()
        return out

    def marginal(self, axis):
        """1-D marginal density along ``axis`` (2-D grids), cell averages with unit mass."""
        if self.ndim == 1:
            return self.rho.copy()
        other = 1 - axis
        return self.rho.sum(axis=other) * self.grid.dxs[other]
