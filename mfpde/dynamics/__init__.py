"""Drivers that move particles: integrators of the mean-field dynamics and finite-width training."""
from .langevin import LangevinSolver, make_rng

__all__ = ["LangevinSolver", "make_rng"]
