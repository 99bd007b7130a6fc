r"""Compiled kernels of the grid solvers (theory/grid.md §1, §4).

- :func:`div_axis0`, :func:`div_axis1`: the Carrillo–Chertock–Huang flux divergence
  ``-(F_{i+1/2} - F_{i-1/2})/dx`` along one axis of a 2-D array, first-order or minmod point
  values, zero flux at both ends (grid.md §1.1, §1.2; the transport and velocity sub-steps of the
  phase-space grid, §4);
- :func:`run_local_1d`: the fused explicit-Euler CCH loop of the 1-D finite-volume solver for a
  ``rho``-independent potential (grid.md §1.1);
- :func:`thomas_rows`: tridiagonal solves row by row (the implicit velocity step of the
  phase-space grid, §4).

Used by :mod:`mfpde.meanfield.fv` and :mod:`mfpde.meanfield.phase_grid`. Strict IEEE arithmetic
(no fastmath), serial.
"""
from __future__ import annotations

import math

import numpy as np

from .._numba import jit

__all__ = ["minmod3", "div_axis0", "div_axis1", "run_local_1d", "thomas_rows"]


@jit(inline="always")
def minmod3(a, b, c):
    if a > 0.0 and b > 0.0 and c > 0.0:
        return min(a, min(b, c))
    if a < 0.0 and b < 0.0 and c < 0.0:
        return max(a, max(b, c))
    return 0.0


@jit
def div_axis0(rho, U, dx, order, kappa, out, accumulate):
    """``out (+)= -(F_{i+1/2,j} - F_{i-1/2,j})/dx`` along axis 0 (grid.md §1.1/§1.2).

    rho (J0, J1); U (J0-1, J1) interface velocities ``u_{i+1/2,j}``; zero flux at both ends.
    Point values: first order (``order=1``) or minmod with parameter ``kappa`` (``order=2``).
    """
    J0, J1 = rho.shape
    for j in range(J1):
        Fprev = 0.0
        for i in range(J0):
            if i < J0 - 1:
                u = U[i, j]
                if u > 0.0:
                    k = i  # east point value of cell i
                    r = rho[k, j]
                    if order == 2 and 0 < k < J0 - 1:
                        r += 0.5 * minmod3(kappa * (rho[k + 1, j] - r),
                                            0.5 * (rho[k + 1, j] - rho[k - 1, j]),
                                            kappa * (r - rho[k - 1, j]))
                    F = u * r
                elif u < 0.0:
                    k = i + 1  # west point value of cell i+1
                    r = rho[k, j]
                    if order == 2 and 0 < k < J0 - 1:
                        r -= 0.5 * minmod3(kappa * (rho[k + 1, j] - r),
                                            0.5 * (rho[k + 1, j] - rho[k - 1, j]),
                                            kappa * (r - rho[k - 1, j]))
                    F = u * r
                else:
                    F = 0.0
            else:
                F = 0.0
            v = -(F - Fprev) / dx
            if accumulate:
                out[i, j] += v
            else:
                out[i, j] = v
            Fprev = F


@jit
def div_axis1(rho, V, dx, order, kappa, out, accumulate):
    """As :func:`div_axis0` along axis 1; V (J0, J1-1) velocities ``v_{i,j+1/2}``."""
    J0, J1 = rho.shape
    for i in range(J0):
        Fprev = 0.0
        for j in range(J1):
            if j < J1 - 1:
                u = V[i, j]
                if u > 0.0:
                    k = j
                    r = rho[i, k]
                    if order == 2 and 0 < k < J1 - 1:
                        r += 0.5 * minmod3(kappa * (rho[i, k + 1] - r),
                                            0.5 * (rho[i, k + 1] - rho[i, k - 1]),
                                            kappa * (r - rho[i, k - 1]))
                    F = u * r
                elif u < 0.0:
                    k = j + 1
                    r = rho[i, k]
                    if order == 2 and 0 < k < J1 - 1:
                        r -= 0.5 * minmod3(kappa * (rho[i, k + 1] - r),
                                            0.5 * (rho[i, k + 1] - rho[i, k - 1]),
                                            kappa * (r - rho[i, k - 1]))
                    F = u * r
                else:
                    F = 0.0
            else:
                F = 0.0
            v = -(F - Fprev) / dx
            if accumulate:
                out[i, j] += v
            else:
                out[i, j] = v
            Fprev = F


@jit
def run_local_1d(rho, psi, beta_inv, dx, order, kappa, cfl, dt_diff, dt_max, t, t_end,
                  max_steps, floor):
    """Fused explicit-Euler CCH loop for an ``rho``-independent ``Psi`` in 1-D (grid.md §1.1).

    Same scheme as :meth:`mfpde.meanfield.fv.FVSolver.step` with ``method="euler"`` (half-slopes computed once per
    cell instead of once per interface; identical up to round-off). Advances ``rho`` in place
    until ``t_end`` or ``max_steps``; returns ``(t, steps, dt_last)``.
    """
    J = rho.size
    phi = np.empty(J)
    hs = np.zeros(J)          # half-slopes (dx/2) s_j, zero in the boundary cells
    U = np.empty(J - 1)
    steps = 0
    dt = 0.0
    while t < t_end and steps < max_steps:
        for j in range(J):
            if beta_inv > 0.0:
                phi[j] = psi[j] + beta_inv * math.log(max(rho[j], floor))
            else:
                phi[j] = psi[j]
        if order == 2:
            for j in range(1, J - 1):
                hs[j] = 0.5 * minmod3(kappa * (rho[j + 1] - rho[j]),
                                       0.5 * (rho[j + 1] - rho[j - 1]),
                                       kappa * (rho[j] - rho[j - 1]))
        a = 0.0
        for j in range(J - 1):
            u = -(phi[j + 1] - phi[j]) / dx
            U[j] = u
            if abs(u) > a:
                a = abs(u)
        dt = min(dt_max, dt_diff)
        if a > 0.0:
            dt = min(dt, cfl * dx / (2.0 * a))
        if t + dt >= t_end:
            dt = t_end - t
        c = dt / dx
        Fprev = 0.0
        for j in range(J):
            if j < J - 1:
                u = U[j]
                if u > 0.0:
                    F = u * (rho[j] + hs[j])
                elif u < 0.0:
                    F = u * (rho[j + 1] - hs[j + 1])
                else:
                    F = 0.0
            else:
                F = 0.0
            rho[j] -= c * (F - Fprev)
            Fprev = F
        t = t + dt if t + dt < t_end else t_end
        steps += 1
    return t, steps, dt


@jit
def thomas_rows(lo, di, up, rhs, out):
    """Solve the tridiagonal systems of every row ``i`` (Thomas algorithm, no pivoting).

    Row ``i``: ``lo[i, j] x_{j-1} + di[i, j] x_j + up[i, j] x_{j+1} = rhs[i, j]`` (``lo[i, 0]`` and
    ``up[i, -1]`` unused). The matrices here are column-diagonally-dominant M-matrices, for which
    elimination without pivoting is stable.
    """
    n0, n1 = rhs.shape
    c = np.empty(n1)
    d = np.empty(n1)
    for i in range(n0):
        c[0] = up[i, 0] / di[i, 0]
        d[0] = rhs[i, 0] / di[i, 0]
        for j in range(1, n1):
            m = di[i, j] - lo[i, j] * c[j - 1]
            c[j] = up[i, j] / m if j < n1 - 1 else 0.0
            d[j] = (rhs[i, j] - lo[i, j] * d[j - 1]) / m
        out[i, n1 - 1] = d[n1 - 1]
        for j in range(n1 - 2, -1, -1):
            out[i, j] = d[j] - c[j] * out[i, j + 1]
