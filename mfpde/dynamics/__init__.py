"""Drivers that move particles: integrators of the mean-field dynamics and finite-width training.

Every driver implements the protocol of :mod:`mfpde.engine.protocol`; the heavy-ball update of all
of them is :mod:`mfpde.dynamics.heavy_ball`.
"""
from .base import ParticleDriver, make_rng
from .kinetic import KineticSolver
from .langevin import LangevinSolver
from .pham_nguyen import PNDriver, PNKineticSolver
from .sgd import RawTrainer, SHBTrainer, make_trainer

__all__ = ["ParticleDriver", "LangevinSolver", "KineticSolver", "PNDriver", "PNKineticSolver",
           "SHBTrainer", "RawTrainer", "make_trainer", "make_rng"]
