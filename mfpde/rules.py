"""Rules and choice lists shared by the configuration, the builder and the trainers.

Each list and each rule is declared once, here, in a module that imports nothing from mfpde, so
that every layer can use it: :mod:`mfpde.config` validates with it, :mod:`mfpde.build` builds from
it, and the trainers (:func:`mfpde.dynamics.sgd.make_trainer`) check their arguments with it.

* :data:`METHODS`, :data:`PN_METHODS`, :data:`HEAVY_BALL`, :data:`UNITS`: finite-width training
  methods (dynamics.md §4, §5.2, §6) and unit systems (mean field or raw framework units);
* :func:`method_violation`: the method / batch / noise / friction rules of those methods;
* :data:`DRIVERS`: every driver ``mfpde run`` can build (``dynamics.solver``), with its family
  (particle or grid), the model family it moves, whether it has a fixed step, and the default
  observed quantities;
* :data:`PN_KIND`: the model kind of the Pham–Nguyen network (its own model family);
  :data:`OUTPUTS`, :data:`MEMORY_MODES`: choice lists of the read-out models;
* :data:`GRID_POTENTIALS`, :data:`GRID_SCHEMES`, :data:`VELOCITY_METHODS`: choice lists of the
  grid drivers; :data:`FIT_X`, :data:`FIT_AT`, :data:`FIT_QUANTITIES`: of comparison rate fits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["METHODS", "PN_METHODS", "HEAVY_BALL", "UNITS", "PN_KIND", "OUTPUTS", "MEMORY_MODES",
           "Violation",
           "method_violation", "DriverSpec", "DRIVERS", "driver_spec", "GRID_POTENTIALS",
           "GRID_SCHEMES", "VELOCITY_METHODS",
           "FIT_X", "FIT_AT", "FIT_QUANTITIES"]

#: finite-width training methods of the read-out models (two-layer, NC)
METHODS = ("gd", "sgd", "noisy_sgd", "shb", "shb_polyak")
#: training methods of the Pham–Nguyen network (noiseless)
PN_METHODS = ("sgd", "shb", "shb_polyak")
#: heavy-ball methods (velocity form, Polyak form)
HEAVY_BALL = ("shb", "shb_polyak")
#: hyper-parameter units: mean field (per-neuron step eps, lam, beta) or raw framework units
UNITS = ("mean_field", "raw")
#: model kind of the Pham–Nguyen three-layer network (models/three_layer_pn.py)
PN_KIND = "pham_nguyen"
#: outgoing weights of the two-layer network: trained, or fixed to 1 (TwoLayer ``output``)
OUTPUTS = ("trainable", "fixed")
#: memory modes of the read-out models' passes over sample blocks (ReadoutModel ``memory``)
MEMORY_MODES = ("auto", "fast", "low")


class Violation(NamedTuple):
    """A broken rule: the argument it concerns (``"batch"``, ``"beta"``, ...) and why."""

    field: str
    message: str


def method_violation(method: str, *, batch: int | None = 0, beta: float = math.inf,
                     gamma: float | None = None, momentum: float | None = None,
                     online: bool = False, pn: bool = False,
                     momentum_allowed: bool = False) -> Violation | None:
    """The first rule of a finite-width training method that the arguments break, else None.

    Rules (dynamics.md §4.1, §5.2, §6.1):

    * ``method`` is one of :data:`METHODS` (:data:`PN_METHODS` for the Pham–Nguyen network);
    * ``gd`` is full batch: no mini-batch and no online samples;
    * ``sgd`` of a read-out model needs a mini-batch (``batch >= 1``); the Pham–Nguyen ``sgd``
      may be full batch;
    * ``gd`` and ``sgd`` are noiseless (``beta = inf``); ``noisy_sgd`` needs ``beta < inf``;
      the Pham–Nguyen trainers are noiseless;
    * heavy ball (:data:`HEAVY_BALL`) needs the friction ``gamma`` (or, where
      ``momentum_allowed``, the momentum ``mu``, not both); other methods take neither.

    Callers turn the violation into their own error (``ConfigError`` naming
    ``section.field``, ``ValueError``), e.g. ``f"{prefix}.{v.field}: {v.message}"``.
    """
    allowed = PN_METHODS if pn else METHODS
    if method not in allowed:
        what = "Pham–Nguyen method" if pn else "method"
        return Violation("method", f"unknown {what} {method!r}; allowed: {', '.join(allowed)}")
    batch = batch or 0
    if method == "gd" and (batch or online):
        return Violation("batch", "method 'gd' is full batch (batch = 0); use method = 'sgd' "
                                  "for mini-batches / online samples")
    if method == "sgd" and not pn and not batch:
        return Violation("batch", "method 'sgd' needs batch >= 1")
    if pn and math.isfinite(beta):
        return Violation("beta", "the Pham–Nguyen trainers are noiseless (SGD / heavy ball); "
                                 "use beta = inf")
    if method in ("gd", "sgd") and math.isfinite(beta):
        return Violation("beta", f"method {method!r} is noiseless; use 'noisy_sgd' for "
                                 f"beta < inf")
    if method == "noisy_sgd" and not math.isfinite(beta):
        return Violation("beta", "method 'noisy_sgd' needs beta < inf (or noise_std > 0 in raw "
                                 "units)")
    if method in HEAVY_BALL:
        if gamma is None and momentum is None:
            need = "gamma or momentum" if momentum_allowed else "the friction gamma"
            return Violation("gamma", f"method {method!r} needs {need}")
        if gamma is not None and momentum is not None:
            return Violation("momentum", "give gamma or momentum, not both")
        if momentum is not None and not momentum_allowed:
            return Violation("momentum", f"method {method!r} takes the friction gamma here, "
                                         f"not a momentum")
    else:
        if gamma is not None:
            return Violation("gamma", f"gamma is a heavy-ball parameter (method "
                                      f"{' / '.join(map(repr, HEAVY_BALL))}); method "
                                      f"{method!r} has none")
        if momentum is not None:
            return Violation("momentum", f"momentum needs method "
                                         f"{' or '.join(map(repr, HEAVY_BALL))}, not {method!r}")
    return None


# --------------------------------------------------------------------------------------------
# drivers
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DriverSpec:
    """What the configuration and the builder need to know about a driver.

    Attributes
    ----------
    name : str
        The value of ``dynamics.solver``.
    family : {"particle", "grid"}
        Particles (neurons, nodes) or a density on a grid.
    models : {"readout", "pham_nguyen", "optional", "none"}
        The model it moves: a read-out model (``two_layer``, ``nc``), the Pham–Nguyen network,
        a read-out model only for ``grid.potential = "model"``, or none (its own problem).
    fixed_step : bool
        A fixed step ``dynamics.dt`` (``t = k dt``); else adaptive steps up to
        ``dynamics.t_end``.
    quantities : tuple of str
        Default ``observe.quantities``.
    doc : str
        One line for the documentation and error messages.
    """

    name: str
    family: str
    models: str
    fixed_step: bool
    quantities: tuple[str, ...]
    doc: str


DRIVERS: dict[str, DriverSpec] = {d.name: d for d in (
    DriverSpec("langevin", "particle", "readout", True, ("loss",),
               "overdamped Langevin / GD / SGD / noisy SGD (Euler–Maruyama), mean-field units"),
    DriverSpec("kinetic", "particle", "readout", True, ("loss",),
               "kinetic (underdamped) Langevin: BAOAB, OBABO, exact-friction splitting, SHB"),
    DriverSpec("trainer", "particle", "readout", True, ("loss",),
               "finite-width trainer (make_trainer): gd, sgd, noisy_sgd, shb, shb_polyak in "
               "mean-field or raw framework units"),
    DriverSpec("pn", "particle", "pham_nguyen", True, ("loss",),
               "Pham–Nguyen three-layer network: SGD or stochastic heavy ball (PNDriver)"),
    DriverSpec("pn_kinetic", "particle", "pham_nguyen", True, ("loss",),
               "Pham–Nguyen kinetic mean-field ODE reference (PNKineticSolver)"),
    DriverSpec("quadrature", "particle", "readout", True, (),
               "weighted Gauss–Hermite quadrature reference of the noiseless flow"),
    DriverSpec("fv", "grid", "optional", False, ("free_energy",),
               "finite-volume solver, 1-D / 2-D (FVSolver): external or model potential"),
    DriverSpec("phase_grid", "grid", "optional", False, ("free_energy",),
               "phase-space (theta, r) finite-volume solver of the kinetic equation"),
    DriverSpec("radial", "grid", "none", False, ("free_energy",),
               "radial reduction of the MMN isotropic-Gaussian problem (finite volume in r)"),
)}


def driver_spec(name: str) -> DriverSpec:
    """The :class:`DriverSpec` of ``name`` (``KeyError`` naming the allowed drivers)."""
    try:
        return DRIVERS[name]
    except KeyError:
        raise KeyError(f"unknown driver {name!r}; allowed: {', '.join(DRIVERS)}") from None


#: potentials of the grid drivers: Ornstein–Uhlenbeck, double well, a read-out model (D <= 2)
GRID_POTENTIALS = ("ou", "double_well", "model")
#: time stepping of the finite-volume solver (FVSolver ``method``)
GRID_SCHEMES = ("euler", "ssprk2", "implicit")
#: velocity sub-step of the phase-space solver (PhaseGridSolver ``velocity_method``)
VELOCITY_METHODS = ("implicit", "explicit")

#: abscissa of a comparison rate fit: the width or the step
FIT_X = ("N", "dt")
#: which value of a coupling series a rate fit uses: at T, or the sup over the record times
FIT_AT = ("final", "sup")
#: coupling quantities a rate fit can use (series of mfpde.coupling and the W2 values at T)
FIT_QUANTITIES = ("coupling_rms", "coupling_mean", "coupling_max", "output_gap", "loss_gap",
                  "phase_rms", "phase_max", "W_gap", "w2", "sw2_ref")
