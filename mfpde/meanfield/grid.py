r"""Finite-volume solver of the nonlocal Wasserstein gradient flow with entropy (theory/grid.md §1),
and what it works with — one import for all of it.

The parts live in their own modules; every name is re-exported here:

- :mod:`mfpde.meanfield.grids` -- :class:`Grid1D`, :class:`Grid2D`, cell averages
  (:func:`gaussian_cell_averages`, :func:`cell_averages`);
- :mod:`mfpde.meanfield.potentials` -- :class:`Potential`, :class:`ExternalPotential`,
  :class:`InteractionPotential`, :class:`ModelPotential`, :func:`ou_potential`,
  :func:`double_well_potential`, :func:`ou_exact_moments`;
- :mod:`mfpde.meanfield.fv` -- the Carrillo–Chertock–Huang solver :class:`FVSolver`
  (grid.md §1.1, §1.2) and :class:`BoundaryMassWarning`;
- :mod:`mfpde.meanfield.sampling` -- comparisons with particles (:func:`quantile_points`,
  :func:`w2_samples_vs_grid_1d`, :func:`bin_samples`, :func:`sample_grid_law`);
- the compiled flux kernels are :mod:`mfpde.kernels.grid`.
"""
from __future__ import annotations

from .fv import BoundaryMassWarning, FVSolver
from .grids import Grid1D, Grid2D, cell_averages, gaussian_cell_averages
from .potentials import (ExternalPotential, InteractionPotential, ModelPotential, Potential,
                         double_well_potential, ou_exact_moments, ou_potential)
from .sampling import bin_samples, quantile_points, sample_grid_law, w2_samples_vs_grid_1d

__all__ = [
    "Grid1D", "Grid2D", "Potential", "ExternalPotential", "InteractionPotential",
    "ModelPotential", "ou_potential", "double_well_potential", "FVSolver", "BoundaryMassWarning",
    "gaussian_cell_averages", "cell_averages", "ou_exact_moments", "quantile_points",
    "w2_samples_vs_grid_1d", "bin_samples", "sample_grid_law",
]
