"""Drivers that move particles: integrators of the mean-field dynamics and finite-width training."""
from .base import ParticleDriver, make_rng
from .kinetic import KineticSolver, PNKineticSolver
from .langevin import LangevinSolver

__all__ = ["ParticleDriver", "LangevinSolver", "KineticSolver", "PNKineticSolver", "make_rng"]
