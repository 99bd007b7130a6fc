"""Deterministic mean-field solvers on grids (theory/grid.md).

Submodules (imported lazily, so ``import mfpde.meanfield`` is cheap):

- :mod:`mfpde.meanfield.grid` -- finite-volume solver for the nonlocal Wasserstein gradient flow
  with entropy in one and two dimensions (grid.md §1, Carrillo–Chertock–Huang); one import for
  its parts :mod:`~mfpde.meanfield.grids` (grids, cell averages),
  :mod:`~mfpde.meanfield.potentials`, :mod:`~mfpde.meanfield.fv` (the solver) and
  :mod:`~mfpde.meanfield.sampling` (comparisons with particles).
- :mod:`mfpde.meanfield.radial` -- Mei–Montanari–Nguyen radial reduction (grid.md §2).
- :mod:`mfpde.meanfield.phase_grid` -- phase-space ``(theta, r)`` grid for the kinetic equation
  with noise, ``D = 1`` (grid.md §4).
- :mod:`mfpde.meanfield.quadrature` -- weighted Gauss–Hermite Lagrangian reference for the
  noiseless (kinetic or overdamped) dynamics in low dimension.
"""
from __future__ import annotations

import importlib

_SUBMODULES = ("grid", "grids", "potentials", "fv", "sampling", "radial", "phase_grid",
               "quadrature")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_SUBMODULES)
