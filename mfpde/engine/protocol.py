r"""The driver protocol: what every driver (particle or grid) offers the controller.

A *driver* moves a state forward in time: the Langevin / noisy-SGD particle solver, the kinetic
(heavy-ball) solver and trainers, the Pham–Nguyen network, the finite-volume and phase-space grid
solvers, the radial reduction, the quadrature reference, a coupled set of runs, the sparse-recovery
iterations. The :class:`~mfpde.engine.controller.Controller` runs any of them with trackers on
schedules, so a driver only has to say how to advance and what it holds:

==========================  ================================================================
``k``                       int, steps taken so far
``t``                       float, the driver's time (mean-field time ``k*dt`` for particles)
``dt``                      float or None: the fixed step (``t = t0 + k*dt``), or None when the
                            steps are adaptive (grid solvers with a CFL / stability limit)
``step(n=1, t_end=inf)``    advance ``n`` steps, never past ``t_end`` (a driver with a fixed
                            ``dt`` ignores ``t_end``: the controller converts times to steps)
``state_dict()``            the complete state as a dict of arrays and scalars (copies); a
                            driver restored from it continues bitwise like the original
``load_state_dict(s)``      restore it
``fields()``                what the driver can show, ``{name: array}`` (views, no copies);
                            names from :data:`FIELDS`
``last_risk``               float: risk of the data of the last step (nan if not defined)
==========================  ================================================================

Drivers do not observe themselves (no energies, no series): observables
(:mod:`mfpde.observables`) read ``fields()`` and the model / data of the run.
"""
from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Driver", "FIELDS", "check_driver", "shows"]

#: field names a driver may show through ``fields()``, with their shapes
FIELDS = {
    "theta": "(N, D) particles (neurons)",
    "r": "(N, D) particle velocities (kinetic drivers)",
    "W": "(p, q) last-layer matrix of the NC model",
    "r_W": "(p, q) velocity of W (kinetic drivers with W momentum)",
    "density": "grid shape: cell averages of the density (grid drivers)",
    "w1": "(n1, d) Pham–Nguyen first-layer weights",
    "w2": "(n1, n2) Pham–Nguyen second-layer weights",
    "w3": "(n2,) Pham–Nguyen third-layer weights",
    "r1": "(n1, d) velocity of w1", "r2": "(n1, n2) velocity of w2", "r3": "(n2,) velocity of w3",
    "nodes": "(K, D) quadrature nodes", "node_weights": "(K,) quadrature weights",
    "x": "(d,) iterate of a sparse-recovery driver",
}


@runtime_checkable
class Driver(Protocol):
    """Structural type of a driver (see the module docstring)."""

    k: int
    last_risk: float

    @property
    def t(self) -> float: ...

    def step(self, n: int = 1, t_end: float = math.inf) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def fields(self) -> dict[str, np.ndarray]: ...


def shows(driver) -> frozenset[str]:
    """The field names ``driver`` can show."""
    return frozenset(driver.fields())


def check_driver(driver) -> None:
    """Raise ``TypeError`` naming what is missing if ``driver`` does not implement the protocol."""
    missing = [name for name in ("k", "t", "dt", "step", "state_dict", "load_state_dict",
                                 "fields", "last_risk") if not hasattr(driver, name)]
    if missing:
        raise TypeError(f"{type(driver).__name__} is not a driver: missing {', '.join(missing)} "
                        f"(see mfpde.engine.protocol)")
    unknown = sorted(set(driver.fields()) - set(FIELDS))
    if unknown:
        raise TypeError(f"{type(driver).__name__}.fields() shows unknown names {unknown}; "
                        f"allowed: {', '.join(FIELDS)}")
