r"""Uniform Cartesian grids in one and two dimensions and cell averages on them (theory/grid.md §1.1, §1.2).

A grid has ``J`` (1-D) or ``J0 x J1`` (2-D) cells; densities are arrays of cell averages of shape
``grid.shape`` (axis 0 is the first parameter coordinate).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import special

__all__ = ["Grid1D", "Grid2D", "gaussian_cell_averages", "cell_averages"]


class Grid1D:
    """Uniform 1-D grid of ``J`` cells on ``[lo, hi]`` (grid.md §1.1).

    Attributes
    ----------
    edges : ndarray (J+1,)
    x : ndarray (J,)  cell centres ``theta_j``
    dx : float  cell width
    shape : (J,)
    cell_volume : float  ``dx``
    points : ndarray (J, 1)  cell centres as particle rows
    """

    ndim = 1

    def __init__(self, lo, hi, J):
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ValueError(f"need finite lo < hi, got lo={lo!r}, hi={hi!r}")
        if not isinstance(J, (int, np.integer)) or J < 3:
            raise ValueError(f"J must be an integer >= 3, got {J!r}")
        self.lo, self.hi, self.J = float(lo), float(hi), int(J)
        self.edges = np.linspace(self.lo, self.hi, self.J + 1)
        self.dx = (self.hi - self.lo) / self.J
        self.x = 0.5 * (self.edges[:-1] + self.edges[1:])
        self.shape = (self.J,)
        self.cell_volume = self.dx
        self.dxs = (self.dx,)
        self.axes = (self.x,)
        self.axis_edges = (self.edges,)

    @property
    def points(self):
        return self.x[:, None].copy()

    def __repr__(self):
        return f"Grid1D(lo={self.lo}, hi={self.hi}, J={self.J})"

    def describe(self):
        return {"ndim": 1, "lo": [self.lo], "hi": [self.hi], "J": [self.J]}


class Grid2D:
    """Uniform 2-D grid: ``J0 x J1`` cells on ``[lo0, hi0] x [lo1, hi1]`` (grid.md §1.2).

    ``rho`` has shape ``(J0, J1)``; axis 0 is the first parameter coordinate. ``points`` lists
    the cell centres as particle rows ``(J0*J1, 2)`` in C order (axis 1 fastest), matching
    ``rho.ravel()``.
    """

    ndim = 2

    def __init__(self, lo, hi, J):
        lo, hi, J = tuple(lo), tuple(hi), tuple(J)
        if len(lo) != 2 or len(hi) != 2 or len(J) != 2:
            raise ValueError("Grid2D needs lo, hi, J of length 2")
        self.g = (Grid1D(lo[0], hi[0], J[0]), Grid1D(lo[1], hi[1], J[1]))
        self.lo = tuple(g.lo for g in self.g)
        self.hi = tuple(g.hi for g in self.g)
        self.J = tuple(g.J for g in self.g)
        self.shape = self.J
        self.dxs = tuple(g.dx for g in self.g)
        self.cell_volume = self.dxs[0] * self.dxs[1]
        self.axes = tuple(g.x for g in self.g)
        self.axis_edges = tuple(g.edges for g in self.g)

    @property
    def points(self):
        A, B = np.meshgrid(self.axes[0], self.axes[1], indexing="ij")
        return np.column_stack([A.ravel(), B.ravel()])

    def __repr__(self):
        return f"Grid2D(lo={self.lo}, hi={self.hi}, J={self.J})"

    def describe(self):
        return {"ndim": 2, "lo": list(self.lo), "hi": list(self.hi), "J": list(self.J)}


# ============================================================================ cell averages
def gaussian_cell_averages(grid, mean, var):
    """Exact cell averages of the Gaussian density ``N(mean, diag(var))`` on ``grid``.

    ``rho_j = (Phi((e_{j+1}-m)/s) - Phi((e_j-m)/s)) / dx`` per axis (product over axes in 2-D).
    Returns an array of shape ``grid.shape`` (not renormalised: the mass outside the domain is
    lost).
    """
    mean = np.atleast_1d(np.asarray(mean, dtype=float))
    var = np.atleast_1d(np.asarray(var, dtype=float))
    if mean.size == 1 and grid.ndim == 2:
        mean = np.repeat(mean, 2)
    if var.size == 1 and grid.ndim == 2:
        var = np.repeat(var, 2)
    out = None
    for k in range(grid.ndim):
        e = grid.axis_edges[k]
        s = math.sqrt(var[k])
        c = special.ndtr((e - mean[k]) / s)
        p = np.diff(c) / grid.dxs[k]
        # upper tail form avoids cancellation far to the right of the mean
        cu = special.ndtr(-(e - mean[k]) / s)
        pu = -np.diff(cu) / grid.dxs[k]
        p = np.where(grid.axes[k] > mean[k], pu, p)
        out = p if out is None else np.multiply.outer(out, p)
    return np.maximum(out, 0.0)


def cell_averages(grid, f, nq=6):
    """Cell averages of a function ``f`` by ``nq``-point Gauss–Legendre quadrature per cell.

    ``f`` takes the coordinates (1-D: ``f(x)``; 2-D: ``f(x0, x1)``) as broadcastable arrays.
    Returns an array of shape ``grid.shape``.
    """
    z, w = np.polynomial.legendre.leggauss(nq)
    w = w / 2.0
    if grid.ndim == 1:
        x = grid.x[:, None] + 0.5 * grid.dx * z[None, :]
        return f(x) @ w
    x0 = grid.axes[0][:, None, None, None] + 0.5 * grid.dxs[0] * z[None, None, :, None]
    x1 = grid.axes[1][None, :, None, None] + 0.5 * grid.dxs[1] * z[None, None, None, :]
    vals = f(x0, x1)
    return np.einsum("ijab,a,b->ij", vals, w, w)
