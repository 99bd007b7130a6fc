"""Configuration -> objects: data, model (or potential), driver and observables.

:func:`build` turns a validated :class:`~mfpde.config.Config` into everything a run needs and
writes nothing, so that bad input is reported (:class:`~mfpde.config.ConfigError`, naming the
section) before any output file exists. The driver named by ``dynamics.solver`` is built by its
entry of :data:`BUILDERS` (one per driver of :data:`mfpde.rules.DRIVERS`):

==============  ===========================================================================
``langevin``    :class:`~mfpde.dynamics.LangevinSolver` (GD / SGD / noisy SGD, mean-field units)
``kinetic``     :class:`~mfpde.dynamics.KineticSolver` (BAOAB, OBABO, splitting, SHB)
``trainer``     :func:`~mfpde.dynamics.sgd.make_trainer` (gd, sgd, noisy_sgd, shb, shb_polyak;
                mean-field or raw framework units)
``pn``          ``PNDriver`` (Pham–Nguyen SGD / heavy ball)
``pn_kinetic``  ``PNKineticSolver`` (Pham–Nguyen kinetic ODE reference)
``quadrature``  :class:`~mfpde.meanfield.quadrature.QuadratureReference` (RK4 steps of ``dt``)
``fv``          :class:`~mfpde.meanfield.fv.FVSolver` on ``[grid]`` (OU, double well or a model
                potential), Gaussian initial law
``phase_grid``  :class:`~mfpde.meanfield.phase_grid.PhaseGridSolver` on ``[grid]``
``radial``      :func:`~mfpde.meanfield.radial.radial_solver` of ``[radial]``
==============  ===========================================================================

Adding a driver: an entry in :data:`mfpde.rules.DRIVERS`, its fields in
:class:`~mfpde.config.DynamicsConfig` (``only_for``), and one builder function here.
"""
from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .config import Config, ConfigError
from .models.readout import BLAS_BLOCK, KEEP_STATE, LOW_MEMORY_N
from .rules import DRIVERS, HEAVY_BALL, PN_KIND

__all__ = ["Built", "build", "resolve_config", "build_config_only", "snapshot_index",
           "BUILDERS", "build_data"]


@dataclass
class Built:
    """Everything a run needs, built from a config (nothing written yet).

    Attributes
    ----------
    config : Config
        The configuration with the fields resolved from the data (``model.q``).
    data, sampler, test
        Evaluation (and training, unless online) :class:`~mfpde.data.Dataset`, the
        :class:`~mfpde.data.OnlineSampler` of online runs, the held-out set (or None).
    model
        The model (read-out model or ``PNThreeLayer``); None for grid drivers on an external
        potential.
    potential
        The grid potential of grid drivers (None for particle drivers).
    driver
        The driver (the protocol of :mod:`mfpde.engine.protocol`).
    observers
        :class:`~mfpde.observers.Observers` of ``quantities``.
    n_steps : int or None
        Steps of a fixed-step run; None for adaptive (grid) drivers, which run to ``t_end``.
    t_end : float or None
        Final time (``dynamics.t_end``; fixed-step runs: ``n_steps * dt``).
    quantities : tuple of str
        Observed quantities (``observe.quantities``).
    beta : float
        Inverse temperature of the run (raw units: converted from the noise std).
    """

    config: Config
    data: Any = None
    sampler: Any = None
    test: Any = None
    model: Any = None
    driver: Any = None
    observers: Any = None
    n_steps: int | None = None
    t_end: float | None = None
    quantities: tuple[str, ...] = ()
    beta: float = math.inf
    potential: Any = None

    @property
    def solver(self):
        """The driver (former name)."""
        return self.driver

    @property
    def adaptive(self) -> bool:
        """True for drivers with adaptive steps (run to ``t_end``)."""
        return self.n_steps is None


def _bad(where: str, exc: Exception) -> ConfigError:
    msg = str(exc.args[0]) if getattr(exc, "args", None) else str(exc)
    return ConfigError(msg if msg.startswith(where) else f"{where}: {msg}")


# --------------------------------------------------------------------------------------------
# data and model
# --------------------------------------------------------------------------------------------

def build_data(dc, *, online: bool = False, where: str = "data"):
    """``(data, sampler, test)`` of a ``[data]`` section: the finite data set, the online sampler
    (only when ``online``) and the held-out set of ``data.test_n`` samples (or None)."""
    from .data import make_dataset

    try:
        data = make_dataset(dc.kind, seed=dc.seed, **dc.params)
        sampler = make_dataset(dc.kind, seed=dc.seed, online=True, **dc.params) \
            if (online or dc.test_n) else None
    except (ValueError, TypeError, OSError) as exc:
        raise _bad(f"[{where}] kind = {dc.kind!r}", exc) from None
    test = None
    if dc.test_n:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([dc.seed, 2])))
        test = sampler.test_set(dc.test_n, rng=rng)
    if not online:
        sampler = None
    return data, sampler, test


def _data_shape(data) -> tuple[int, int]:
    Y = np.asarray(data.Y)
    return int(data.X.shape[1]), 1 if Y.ndim == 1 else int(Y.shape[1])


def _resolve_model(cfg: Config, data, where: str = "model") -> Config:
    """Check ``model.d`` / ``model.q`` against the data; fill in ``model.q`` (read-out models)."""
    mc, dc = cfg.model, cfg.data
    d, q = _data_shape(data)
    if mc.d is not None and mc.d != d:
        raise ConfigError(f"{where}.d = {mc.d}: the data ({dc.kind}) have d = {d} inputs; "
                          f"remove {where}.d or set it to {d}")
    if mc.kind == PN_KIND:
        if q != 1:
            raise ConfigError(f"{where}.kind = {PN_KIND!r} has a scalar output; the data "
                              f"({dc.kind}) have q = {q} outputs")
        return cfg
    if mc.q is None:
        return cfg.replace(model={"q": q})
    if mc.q != q:
        raise ConfigError(f"{where}.q = {mc.q}: the data ({dc.kind}) have q = {q} outputs; "
                          f"remove {where}.q or set it to {q}")
    return cfg


def make_model(mc, d: int, q: int, where: str = "model"):
    """The model of a ``[model]`` section for data with ``d`` inputs and ``q`` outputs."""
    try:
        if mc.kind == PN_KIND:
            from .models.three_layer_pn import PNThreeLayer
            return PNThreeLayer(**mc.pn_kwargs(d=d))
        from .models import make_model as _make
        model = _make(**mc.make_kwargs(d=d, q=q))
        R = getattr(mc, "readout_R", math.inf)
        if R is not None and math.isfinite(R):
            from .two_stage import truncated
            model = truncated(model, R)
        return model
    except (ValueError, TypeError) as exc:
        raise _bad(f"[{where}]", exc) from None


def resolve_config(cfg: Config) -> Config:
    """The configuration with the fields that depend on the data (``model.q``) resolved,
    without building a driver (a new :class:`Config`; ``cfg`` is frozen)."""
    if cfg.model is None or cfg.data is None or cfg.model.kind == PN_KIND or \
            cfg.model.q is not None:
        return cfg
    data, _, _ = build_data(cfg.data)
    return _resolve_model(cfg, data)


#: former name of :func:`resolve_config`
build_config_only = resolve_config


def snapshot_index(cfg: Config) -> np.ndarray:
    """Particles kept in snapshots: all, or a fixed random subset (own seeded generator)."""
    N, k = cfg.dynamics.N, cfg.observe.snapshot_particles
    if N is None:
        raise ValueError(f"dynamics.solver = {cfg.dynamics.solver!r} has no particle count N")
    if k == 0 or k >= N:
        return np.arange(N, dtype=np.int64)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([cfg.dynamics.seed, 1])))
    return np.sort(rng.choice(N, size=k, replace=False)).astype(np.int64)


#: former name of :func:`snapshot_index`
_snapshot_index = snapshot_index


# --------------------------------------------------------------------------------------------
# drivers
# --------------------------------------------------------------------------------------------

@dataclass
class _Parts:
    """What the builders get: the config and the objects built before the driver."""

    cfg: Config
    model: Any
    data: Any
    sampler: Any
    #: the particles this process holds of a run split over MPI ranks (mfpde.parallel)
    part: Any = None

    @property
    def train_data(self):
        """The data the driver trains on (None for online runs: samples from the sampler)."""
        return None if self.cfg.dynamics.online else self.data


def _pn_classes():
    try:
        from .dynamics import PNDriver, PNKineticSolver  # type: ignore[attr-defined]
    except ImportError:
        from .dynamics import PNKineticSolver
        from .models.three_layer_pn import PNDriver
    return PNDriver, PNKineticSolver


def _particle_common(p: _Parts) -> dict[str, Any]:
    dyn = p.cfg.dynamics
    return dict(N=dyn.N, dt=dyn.dt, beta=dyn.beta, batch=dyn.batch or None, sampler=p.sampler,
                xi=dyn.xi, xi_W=dyn.xi_W, train_W=p.cfg.model.train_W, seed=dyn.seed,
                noise_stream=dyn.noise_stream, part=p.part)


def _langevin(p: _Parts):
    from .dynamics import LangevinSolver
    driver = LangevinSolver(p.model, p.train_data, **_particle_common(p))
    if p.cfg.dynamics.stages:
        from .two_stage import StagedDriver
        driver = StagedDriver(driver, p.cfg.dynamics.stages)
    return driver, None


def _kinetic(p: _Parts):
    from .dynamics import KineticSolver
    dyn = p.cfg.dynamics
    return KineticSolver(p.model, p.train_data, gamma=dyn.gamma, integrator=dyn.integrator,
                         **_particle_common(p)), None


def _trainer(p: _Parts):
    from .dynamics.sgd import make_trainer
    dyn = p.cfg.dynamics
    kw = dict(N=dyn.N, method=dyn.method, units=dyn.units, batch=dyn.batch or None,
              sampler=p.sampler, xi=dyn.xi, train_W=p.cfg.model.train_W, seed=dyn.seed,
              momentum=dyn.momentum, noise_stream=dyn.noise_stream, part=p.part)
    if dyn.raw_units:
        kw.update(lr=dyn.lr, weight_decay=dyn.weight_decay, weight_decay_W=dyn.weight_decay_W,
                  noise_std=dyn.noise_std, lr_W=dyn.lr_W)
    else:
        kw.update(lr=dyn.dt, gamma=dyn.gamma if dyn.method in HEAVY_BALL else None,
                  beta=dyn.beta, xi_W=dyn.xi_W, gamma_W=dyn.gamma_W)
    return make_trainer(p.model, p.train_data, **kw), None


def _pn(p: _Parts):
    PNDriver, _ = _pn_classes()
    dyn = p.cfg.dynamics
    return PNDriver(p.model, p.train_data, n1=dyn.n1, n2=dyn.n2, dt=dyn.dt, method=dyn.method,
                    gamma=dyn.gamma, batch=dyn.batch or None, sampler=p.sampler, xi=dyn.xi,
                    seed=dyn.seed), None


def _pn_kinetic(p: _Parts):
    _, PNKineticSolver = _pn_classes()
    dyn = p.cfg.dynamics
    return PNKineticSolver(p.model, p.data, n1=dyn.n1, n2=dyn.n2, dt=dyn.dt, gamma=dyn.gamma,
                           integrator=dyn.integrator, xi=dyn.xi, seed=dyn.seed), None


def _quadrature(p: _Parts):
    from .meanfield.quadrature import QuadratureReference
    dyn = p.cfg.dynamics
    return QuadratureReference(p.model, p.data, n_q=dyn.n_q, gamma=dyn.gamma, xi=dyn.xi,
                               xi_W=dyn.xi_W, train_W=p.cfg.model.train_W, seed=dyn.seed,
                               dt=dyn.dt), None


def _grid(gc, ndim: int | None = None):
    from .meanfield import grid as G
    if len(gc.lo) == 1:
        return G.Grid1D(gc.lo[0], gc.hi[0], gc.J[0])
    return G.Grid2D(list(gc.lo), list(gc.hi), list(gc.J))


def _potential(p: _Parts, grid):
    from .meanfield import grid as G
    gc = p.cfg.grid
    if gc.potential == "model":
        return G.ModelPotential(p.model, p.data.X, p.data.Y, grid)
    if gc.potential == "ou":
        return G.ou_potential(grid, gc.lam)
    return G.double_well_potential(grid, gc.lam)


def _initial_density(gc, grid):
    from .meanfield import grid as G
    return G.gaussian_cell_averages(grid, list(gc.init_mean), list(gc.init_var))


def _fv(p: _Parts):
    from .meanfield import grid as G
    gc = p.cfg.grid
    grid = _grid(gc)
    pot = _potential(p, grid)
    return G.FVSolver(grid, pot, _initial_density(gc, grid), beta=p.cfg.dynamics.beta,
                      **gc.scheme_kwargs()), pot


def _phase_grid(p: _Parts):
    from .meanfield import grid as G
    from .meanfield.phase_grid import PhaseGridSolver, maxwellian_product
    gc, dyn = p.cfg.grid, p.cfg.dynamics
    tg = _grid(gc)
    pot = _potential(p, tg)
    rho0 = maxwellian_product(tg, G.Grid1D(gc.r_lo, gc.r_hi, gc.J_r),
                              _initial_density(gc, tg), gc.init_r_var)
    return PhaseGridSolver(tg, gc.r_lo, gc.r_hi, gc.J_r, pot, gamma=dyn.gamma, beta=dyn.beta,
                           rho0=rho0, **gc.scheme_kwargs()), pot


def _radial(p: _Parts):
    from .meanfield.radial import radial_solver
    rc, gc = p.cfg.radial, p.cfg.grid
    kw: dict[str, Any] = dict(d=rc.d, delta=rc.delta, kappa=rc.kappa, lam=rc.lam,
                              beta=p.cfg.dynamics.beta, activation=rc.activation,
                              large_d=rc.large_d)
    if rc.kmax is not None:
        kw["kmax"] = rc.kmax
    if gc is not None:
        if gc.J is not None:
            kw["J"] = gc.J[0]
        if gc.hi is not None:
            kw["r_max"] = gc.hi[0]
        kw.update(gc.scheme_kwargs())
    solver = radial_solver(**kw)
    return solver, solver.potential


#: driver name (``dynamics.solver``) -> builder ``fn(parts) -> (driver, potential or None)``
BUILDERS: dict[str, Callable[[_Parts], tuple[Any, Any]]] = {
    "langevin": _langevin,
    "kinetic": _kinetic,
    "trainer": _trainer,
    "pn": _pn,
    "pn_kinetic": _pn_kinetic,
    "quadrature": _quadrature,
    "fv": _fv,
    "phase_grid": _phase_grid,
    "radial": _radial,
}
assert set(BUILDERS) == set(DRIVERS), "every driver of mfpde.rules.DRIVERS needs a builder"


# --------------------------------------------------------------------------------------------
# observables
# --------------------------------------------------------------------------------------------

def _make_observers(quantities, model, data, test, beta, driver, potential):
    """The one place the observers of a run are made (``Observers(quantities, model, data,
    test=, beta=)``; ``driver=`` / ``potential=`` where the registry takes them)."""
    from .observers import Observers

    extra: dict[str, Any] = {}
    try:
        params = inspect.signature(Observers).parameters
    except (TypeError, ValueError):  # pragma: no cover
        params = {}
    for name, value in (("driver", driver), ("potential", potential)):
        if name in params and value is not None:
            extra[name] = value
    return Observers(list(quantities), model, data, test=test, beta=beta, **extra)


def _check_kinetic_quantities(cfg: Config, driver) -> None:
    from .observers import Observers
    kinetic = sorted(set(cfg.observe.quantities) & set(getattr(Observers, "KINETIC", ())))
    if not kinetic:
        return
    fields = getattr(driver, "fields", None)
    shows_r = "r" in fields() if callable(fields) else cfg.dynamics.solver == "kinetic"
    if not shows_r:
        raise ConfigError(f"observe.quantities = {kinetic}: need dynamics.solver = \"kinetic\" "
                          f"(a driver with velocities; solver is {cfg.dynamics.solver!r})")


# --------------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------------

#: float64 copies of the particle state a driver keeps per particle coordinate (positions,
#: force or gradient, noise; kinetic drivers also velocities, the cached force and a second
#: noise array; trainers a momentum buffer), an upper bound used by :func:`memory_estimate`
STATE_COPIES = {"langevin": 3, "kinetic": 6, "trainer": 5, "pn": 6, "pn_kinetic": 6}
#: bytes of the block tiles of one gradient pass (the model's ``block_bytes``), plus slack
PASS_BYTES = 96 << 20


def _int_param(params, key, default=0) -> int:
    v = params.get(key, default) if params else default
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default


def memory_estimate(cfg: Config, part=None) -> tuple[int, str]:
    """Upper estimate of the memory a run needs before anything is allocated, in bytes, and the
    term that dominates (docs/configuration.md, "Memory"). With ``part`` (this process's
    :class:`~mfpde.parallel.Partition` of a run split over MPI ranks) the particle term counts
    its rows only, and rank 0 adds the full state it gathers for observations and checkpoints.

    - data: ``8 (n + test_n)(d + q)`` bytes for the samples, twice (the set and a copy or the
      sampler's chunk);
    - particles: ``8 N D c`` with ``D = d + max(p, q) + 1`` and ``c`` = :data:`STATE_COPIES` of
      the driver, plus :data:`PASS_BYTES` for the tiles of a gradient pass, plus
      ``3 * 8 N min(n, BLAS_BLOCK)`` for the ``block x N`` buffers of the stored pass (memory
      "fast", or "auto" below ``LOW_MEMORY_N`` particles), or ``8 N D`` (``KEEP_STATE`` = 1
      times the state) for the tiles the sweep of "auto" keeps from ``LOW_MEMORY_N`` particles
      on; with ``dynamics.precision = "float32"`` the buffers hold 4-byte entries and the pass
      adds a float32 copy of the particles' ``u`` (``4 N D``);
    - Pham–Nguyen: ``8 n1 n2 c`` (the ``w2`` matrix dominates);
    - grids: 16 arrays of the grid's cells.
    """
    terms = {}
    cc = getattr(cfg, "compare", None)
    if cc is not None:
        return _compare_memory(cc, part)
    dc = cfg.data
    if dc is not None:
        n = _int_param(dc.params, "n") + _int_param(dc.params, "m") * _int_param(dc.params, "q")
        d = _int_param(dc.params, "d", 64)
        q = max(1, _int_param(dc.params, "q", 1))
        terms["data"] = 16 * (n + int(dc.test_n or 0)) * (d + q)
    dyn = cfg.dynamics
    solver = dyn.solver
    if getattr(dyn, "N", None):
        d = _int_param(dc.params, "d", 64) if dc is not None else 64
        mc = cfg.model
        width = max(int(getattr(mc, "p", 0) or 0), int(getattr(mc, "q", 0) or 1)) if mc else 1
        D = d + width + 1
        rows = int(dyn.N) if part is None else part.hi - part.lo
        terms["particles"] = 8 * rows * D * STATE_COPIES.get(solver, 4) + PASS_BYTES
        f32 = getattr(dyn, "precision", "float64") == "float32"
        item = 4 if f32 else 8                  # bytes of an entry of the pass's buffers
        if f32:
            terms["particles"] += 4 * rows * D    # the float32 copy of u of the pass
        memory = getattr(mc, "memory", "auto") if mc is not None else "auto"
        if memory == "fast" or (memory == "auto" and int(dyn.N) < LOW_MEMORY_N):
            # the stored pass: up to three block x N buffers, blocks of BLAS_BLOCK samples
            n_block = int(dyn.batch or 0) or (_int_param(dc.params, "n") if dc else BLAS_BLOCK)
            terms["particles"] += 3 * item * rows * min(max(n_block, 1), BLAS_BLOCK)
        elif memory == "auto":
            # the sweep's kept tiles: at most KEEP_STATE times the bytes of the float64 state
            terms["particles"] += int(KEEP_STATE * 8 * rows * D)
        if part is not None and part.rank == 0 and part.layout.size > 1:
            terms["gathered state"] = 8 * 2 * int(dyn.N) * D      # fields and checkpoint
    n1 = getattr(dyn, "n1", None)
    if n1:
        n2 = getattr(dyn, "n2", None) or n1
        terms["Pham–Nguyen weights"] = 8 * int(n1) * int(n2) * STATE_COPIES.get(solver, 6)
    gc = getattr(cfg, "grid", None)
    if gc is not None and getattr(gc, "J", None):
        cells = 1
        for J in gc.J:
            cells *= int(J)
        terms["grid"] = 16 * 8 * cells
    total = int(sum(terms.values()))
    top = max(terms, key=terms.get) if terms else "nothing"
    return total, top


def _compare_memory(cc, part=None) -> tuple[int, str]:
    """:func:`memory_estimate` of a ``[compare]`` job: the reference and every coupled network
    of one unit are held at once, and at ``t = 0`` and ``T`` the ``n_projections x N_ref``
    sorted projections of the reference (``sw2_ref``). With ``part`` (a read-out reference
    split over MPI ranks) a rank holds its rows of the reference; rank 0 also holds the
    networks, the gathered reference and the projections."""
    dc, mc = cc.data, cc.model
    d = _int_param(dc.params, "d", 64) if dc is not None else 64
    n = (_int_param(dc.params, "n") + int(getattr(cc, "test_n", 0) or 0)) if dc is not None else 0
    terms = {"data": 16 * n * (d + 1)}
    copies = 6 if cc.method in HEAVY_BALL else 3
    widths = [w if isinstance(w, (list, tuple)) else [w] for w in cc.widths]
    N = cc.reference.N
    if mc is not None and getattr(mc, "kind", None) == PN_KIND:
        n1, n2 = (N, N) if not isinstance(N, (list, tuple)) else N
        net = sum(int(w[0]) * int(w[-1]) for w in widths) * len(cc.dts)
        terms["reference"] = 8 * copies * (int(n1) * int(n2) + net)
    else:
        D = d + max(int(getattr(mc, "p", 0) or 0), 1) + 1
        net = sum(int(w[0]) for w in widths) * len(cc.dts)
        rows = int(N) if part is None else part.hi - part.lo
        root = part is None or part.rank == 0
        terms["reference"] = 8 * copies * D * (rows + (net if root else 0)) + PASS_BYTES
        if root:
            sliced = 16 * int(cc.n_projections) * int(N)
            gathered = 8 * D * int(N) * (2 if cc.method in HEAVY_BALL else 1) \
                if part is not None and part.layout.size > 1 else 0
            terms["reference"] += sliced + gathered
    top = max(terms, key=terms.get)
    return int(sum(terms.values())), top


def available_memory() -> int:
    """Bytes of memory available to a new allocation (``MemAvailable``; else physical memory)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_memory(cfg: Config, estimate: tuple[int, str] | None = None, part=None,
                 copies: int = 1) -> None:
    """:class:`ConfigError` (one line) when :func:`memory_estimate` (``part``: of this process
    of a split run; ``copies`` runs of it at once, e.g. the units of a comparison in local
    processes) exceeds the available memory, before anything is allocated."""
    need, top = estimate if estimate is not None else memory_estimate(cfg, part)
    need *= copies
    have = available_memory()
    if need > have:
        where = {"particles": "dynamics.N", "gathered state": "dynamics.N", "data": "data.n",
                 "reference": "compare.reference.N",
                 "Pham–Nguyen weights": "dynamics.n1 / n2", "grid": "grid.J"}.get(top, top)
        raise ConfigError(f"{where}: the run needs about {need / 2**30:.3g} GiB of memory "
                          f"(mostly {top}), {have / 2**30:.3g} GiB are available; make it "
                          f"smaller or run it on a larger machine (or over MPI ranks)")


def build(cfg: Config, part=None) -> Built:
    """Build data, model (or potential), driver and observers of a run configuration; input
    errors become :class:`ConfigError` naming the section. Nothing is written, and a run that
    cannot fit in memory is refused before anything is allocated (:func:`check_memory`).
    ``part``: the particles of this process of a run split over MPI ranks (a
    :class:`mfpde.parallel.Partition`, passed to the particle drivers)."""
    if cfg.compare is not None:
        raise ConfigError("a [compare] configuration is a comparison job: run it with "
                          "'mfpde compare' or 'mfpde run' (mfpde.compare.run_compare)")
    check_memory(cfg, part=part)
    dyn, obs = cfg.dynamics, cfg.observe
    spec = DRIVERS[dyn.solver]
    data = sampler = test = model = None
    if cfg.data is not None:
        data, sampler, test = build_data(cfg.data, online=dyn.online)
    if cfg.model is not None:
        cfg = _resolve_model(cfg, data)
        d, q = _data_shape(data)
        model = make_model(cfg.model, d, q)
        precision = getattr(dyn, "precision", "float64")
        if precision != "float64":
            if not callable(getattr(model, "set_precision", None)):
                raise ConfigError(f"dynamics.precision = {precision!r}: the "
                                  f"{cfg.model.kind!r} model has only a float64 gradient pass")
            model.set_precision(precision)
        if dyn.batch and not dyn.online and dyn.batch > data.X.shape[0]:
            raise ConfigError(f"dynamics.batch = {dyn.batch}: expected an integer between 0 and "
                              f"the number of samples n = {data.X.shape[0]}")
    parts = _Parts(cfg, model, data, sampler, part)
    where = "[grid]" if spec.family == "grid" and cfg.grid is not None else "[dynamics]"
    if dyn.solver == "radial":
        where = "[radial]"
    try:
        driver, potential = BUILDERS[dyn.solver](parts)
    except (ValueError, TypeError) as exc:
        raise _bad(where, exc) from None
    _check_kinetic_quantities(cfg, driver)
    beta = float(getattr(driver, "beta", dyn.beta)) if dyn.raw_units else dyn.beta
    try:
        observers = _make_observers(obs.quantities, model, data, test, beta, driver, potential)
        check = getattr(observers, "check", None)
        if callable(check) and callable(getattr(driver, "fields", None)):
            check(driver)
    except (ValueError, TypeError) as exc:
        raise _bad("observe.quantities", exc) from None
    if spec.fixed_step:
        n_steps = dyn.n_steps
        step = getattr(driver, "dt", None) if dyn.raw_units else dyn.dt
        t_end = dyn.t_end if dyn.t_end is not None else \
            (None if step is None else n_steps * float(step))
    else:
        n_steps, t_end = None, dyn.t_end
    return Built(config=cfg, data=data, sampler=sampler, test=test, model=model, driver=driver,
                 observers=observers, n_steps=n_steps, t_end=t_end,
                 quantities=tuple(obs.quantities), beta=beta,
                 potential=potential if potential is not None else None)
