"""Drivers that move particles: integrators of the mean-field dynamics and finite-width training."""
from .base import ParticleDriver, make_rng
from .kinetic import KineticSolver, PNKineticSolver
from .langevin import LangevinSolver
from .sgd import SHBTrainer, make_trainer

__all__ = ["ParticleDriver", "LangevinSolver", "KineticSolver", "PNKineticSolver", "SHBTrainer",
           "make_trainer", "make_rng"]
