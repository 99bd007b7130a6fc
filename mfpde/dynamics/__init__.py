"""Drivers that move particles: integrators of the mean-field dynamics and finite-width training."""
from .base import ParticleDriver, make_rng
from .langevin import LangevinSolver

__all__ = ["ParticleDriver", "LangevinSolver", "make_rng"]
