r"""Comparisons of grid densities with particles: quantile points, 1-D ``W_2`` between samples and a
grid law, binning of samples on a grid, i.i.d. samples of a grid law (theory/grid.md §1.3).

Densities are piecewise constant (cell averages on the cells of a :mod:`~mfpde.meanfield.grids`
grid, unit mass).
"""
from __future__ import annotations

import numpy as np

__all__ = ["quantile_points", "w2_samples_vs_grid_1d", "bin_samples", "sample_grid_law"]


def quantile_points(edges, density, M=20000):
    """``M`` quantile points ``G^{-1}((k - 1/2)/M)`` of a piecewise-constant 1-D density.

    ``density`` holds cell averages on cells with the given ``edges``; the CDF ``G`` is piecewise
    linear, so the points represent the grid law up to ``W_2 = O(spread/M)``.
    """
    mass = np.maximum(np.asarray(density, float), 0) * np.diff(edges)
    cdf = np.concatenate([[0.0], np.cumsum(mass)])
    cdf /= cdf[-1]
    t = (np.arange(M) + 0.5) / M
    return np.interp(t, cdf, edges)


def w2_samples_vs_grid_1d(samples, edges, density, M=20000):
    """Quantile ``W_2`` between 1-D samples and a piecewise-constant grid density (not squared).

    The grid law is represented by ``M`` quantile points (:func:`quantile_points`) and the
    distance is :func:`mfpde.metrics.ot.w2_1d` between the two point sets (equal weights).
    """
    from ..metrics.ot import w2_1d
    q = quantile_points(edges, density, M)
    return float(w2_1d(np.asarray(samples, float).ravel(), q))


def bin_samples(samples, grid):
    """Histogram of 2-D samples on ``grid`` cells as masses (shape ``grid.shape``, sum 1).

    Samples outside the domain are assigned to the nearest boundary cell.
    """
    idx = []
    for k in range(2):
        i = np.floor((samples[:, k] - grid.lo[k]) / grid.dxs[k]).astype(np.int64)
        idx.append(np.clip(i, 0, grid.J[k] - 1))
    H = np.zeros(grid.shape)
    np.add.at(H, (idx[0], idx[1]), 1.0)
    return H / samples.shape[0]


def sample_grid_law(grid, rho, n, rng):
    """``n`` i.i.d. samples of the piecewise-constant grid law (cell by mass, uniform inside).

    Returns ``(n,)`` (1-D) or ``(n, 2)`` (2-D). Used for two-sample comparisons with particles
    (an i.i.d. grid sample has the same sampling fluctuations as ``n`` particles).
    """
    p = np.maximum(np.asarray(rho, float).ravel(), 0)
    p = p / p.sum()
    idx = rng.choice(p.size, size=n, p=p)
    if grid.ndim == 1:
        return grid.edges[idx] + grid.dx * rng.random(n)
    i0, i1 = np.unravel_index(idx, grid.shape)
    x0 = grid.axis_edges[0][i0] + grid.dxs[0] * rng.random(n)
    x1 = grid.axis_edges[1][i1] + grid.dxs[1] * rng.random(n)
    return np.column_stack([x0, x1])
