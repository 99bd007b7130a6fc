r"""Drivers of the Pham–Nguyen three-layer network (theory/dynamics.md §6; the model is
:class:`~mfpde.models.three_layer_pn.PNThreeLayer`).

Weights ``w1`` (n1, d), ``w2`` (n1, n2), ``w3`` (n2,); the rescaled gradients ``Grad_l`` of
:meth:`PNThreeLayer.gradients <mfpde.models.three_layer_pn.PNThreeLayer.gradients>` (§6.1) and
per-layer force multipliers :math:`\xi_\ell(t)`:

- :class:`PNDriver` -- finite-width training by SGD, :math:`w_\ell \leftarrow w_\ell -
  \varepsilon\xi_\ell\mathrm{Grad}_\ell`, or stochastic heavy ball (§6.3),
  :math:`r_\ell \leftarrow (1-\gamma\varepsilon) r_\ell - \varepsilon\xi_\ell\mathrm{Grad}_\ell`,
  :math:`w_\ell \leftarrow w_\ell + \varepsilon r_\ell` (or the equivalent Polyak form), with
  the data, mini-batch and generator machinery of :class:`~mfpde.dynamics.base.ParticleDriver`;
- :class:`PNKineticSolver` -- the velocity-augmented mean-field ODEs of §6.3 (exact-friction
  splitting or the same heavy-ball recursion on full-batch expectations).

Every heavy-ball and SGD update is :mod:`mfpde.dynamics.heavy_ball`, applied layer by layer.
Both are drivers (:mod:`mfpde.engine.protocol`): ``fields()`` shows ``w1, w2, w3`` and, with
velocities, ``r1, r2, r3``.
"""
from __future__ import annotations

import json
import math

import numpy as np

from ..rules import PN_METHODS
from .base import ParticleDriver, _as_schedule, make_rng
from .heavy_ball import descent_step, polyak_step, velocity_step

__all__ = ["PNDriver", "PNKineticSolver"]


def _layer_schedules(xi):
    """Three per-layer schedules ``(xi_1, xi_2, xi_3)`` from a number, a callable or three of them."""
    if xi is None:
        xi = (1.0, 1.0, 1.0)
    if callable(xi) or isinstance(xi, (int, float, np.floating)):
        xi = (xi, xi, xi)
    if len(xi) != 3:
        raise ValueError(f"xi must be a number, a callable or three of them (xi_1, xi_2, xi_3), got {xi!r}")
    return tuple(_as_schedule(v) for v in xi)


class PNDriver(ParticleDriver):
    """SGD / stochastic heavy ball for the Pham–Nguyen network (dynamics.md §6.1, §6.3).

    Reuses the data / mini-batch / generator machinery of
    :class:`~mfpde.dynamics.base.ParticleDriver` (``next_batch``, the ``batch_source`` hook,
    ``t``); the state is the three weight arrays instead of a particle matrix, so the base
    ``__init__`` (which draws particles) is not called.

    Parameters
    ----------
    model : PNThreeLayer
    data : Dataset or None; sampler : OnlineSampler or None; batch : int or None
        As for the particle drivers (full batch when ``batch`` is None).
    n1, n2 : int
        Widths (ignored when ``weights0`` is given).
    dt : float
        Step :math:`\\varepsilon` (time ``t = k*dt``).
    method : {"sgd", "shb", "shb_polyak"}
    gamma : float
        Heavy-ball friction (``0 < gamma*dt < 1``).
    xi : number, callable or three of them
        Per-layer learning-rate schedules :math:`\\xi_\\ell(t)` (force multipliers, §6.1).
    seed : int or SeedSequence
    weights0 : PNWeights, optional
        Initial weights (default: ``model.init_weights(n1, n2, rng)``).
    """

    def __init__(self, model, data=None, *, n1=None, n2=None, dt, method="sgd", gamma=None,
                 batch=None, sampler=None, xi=None, seed=0, weights0=None):
        if method not in PN_METHODS:
            raise ValueError(f"PN method must be one of {', '.join(map(repr, PN_METHODS))}, "
                             f"got {method!r}")
        if not (isinstance(dt, (int, float, np.floating)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a finite number > 0, got {dt!r}")
        self.model = model
        self.dt = float(dt)
        self.beta = math.inf
        self.method = method
        self.xi_l = _layer_schedules(xi)
        self.xi = self.xi_l[0]
        self.xi_W, self.train_W, self.W = 0.0, False, None
        self._init_data(model, data, batch, sampler)
        self.rng = make_rng(seed)
        if weights0 is None:
            if n1 is None or n2 is None:
                raise ValueError("give the widths n1, n2 (or weights0)")
            self.w = model.init_weights(n1, n2, self.rng)
        else:
            self.w = model.check_weights(weights0).copy()
        self.n1, self.n2 = self.w.n1, self.w.n2
        self.N = self.n1
        self.k = 0
        self._perm = np.zeros(0, dtype=np.int64)
        self._cursor = 0
        self._noise = np.empty((0, 0))
        self.last_risk = float("nan")
        self.gamma = None
        if method != "sgd":
            if gamma is None:
                raise ValueError(f"method {method!r} needs gamma")
            gamma = float(gamma)
            if not (gamma > 0 and gamma * self.dt < 1):
                raise ValueError(f"heavy ball needs gamma > 0 and gamma*dt < 1, got {gamma!r}")
            self.gamma = gamma
        elif gamma is not None:
            raise ValueError("gamma is for heavy ball only")
        if method == "shb":
            self.r = [np.zeros_like(a) for a in self.w.arrays()]
        elif method == "shb_polyak":
            self.w_prev = self.w.copy()

    @property
    def velocity(self) -> list[np.ndarray] | None:
        """Velocities ``[r1, r2, r3]`` (heavy ball), else None."""
        if self.method == "shb":
            return self.r
        if self.method == "shb_polyak":
            return [(a - b) / self.dt for a, b in zip(self.w.arrays(), self.w_prev.arrays())]
        return None

    def step(self, n: int = 1, t_end: float = math.inf) -> None:
        """Advance ``n`` steps (``t_end`` ignored: fixed ``dt``)."""
        for _ in range(int(n)):
            t = self.t
            h = self.dt
            Xb, Yb = self.next_batch()
            g = self.model.gradients(self.w, Xb, Yb)
            self.last_risk = g.risk
            grads = (g.g1, g.g2, g.g3)
            xis = [f(t) for f in self.xi_l]
            if self.method == "sgd":
                for wl, gl, x in zip(self.w.arrays(), grads, xis):
                    descent_step(wl, gl, h * x)
            elif self.method == "shb":
                a = 1.0 - self.gamma * h
                for wl, rl, gl, x in zip(self.w.arrays(), self.r, grads, xis):
                    velocity_step(wl, rl, gl, a, h, force_step=h * x)
            else:
                mu = 1.0 - self.gamma * h
                for wl, pl, gl, x in zip(self.w.arrays(), self.w_prev.arrays(), grads, xis):
                    polyak_step(wl, pl, gl, mu, h * h * x)
            self.k += 1

    def fields(self) -> dict[str, np.ndarray]:
        """``w1`` (n1, d), ``w2`` (n1, n2), ``w3`` (n2,) (views) and, for heavy ball, the velocities
        ``r1, r2, r3`` (views; Polyak form: derived, new arrays)."""
        out = {f"w{i + 1}": a for i, a in enumerate(self.w.arrays())}
        v = self.velocity
        if v is not None:
            out.update({f"r{i + 1}": a for i, a in enumerate(v)})
        return out

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        out = {"w1": self.w.w1.copy(), "w2": self.w.w2.copy(), "w3": self.w.w3.copy(),
               "k": int(self.k), "rng": json.dumps(self.rng.bit_generator.state),
               "perm": self._perm.copy(), "cursor": int(self._cursor), "method": self.method}
        out.update(self._sample_state())
        if self.method == "shb":
            out.update({f"r{i + 1}": r.copy() for i, r in enumerate(self.r)})
        elif self.method == "shb_polyak":
            out.update({f"w{i + 1}_prev": a.copy() for i, a in enumerate(self.w_prev.arrays())})
        return out

    def load_state_dict(self, state: dict) -> None:
        for i, a in enumerate(self.w.arrays()):
            a[...] = np.asarray(state[f"w{i + 1}"], dtype=np.float64)
        self.k = int(state["k"])
        rs = state["rng"]
        self.rng.bit_generator.state = json.loads(rs) if isinstance(rs, (str, bytes)) else rs
        self._perm = np.asarray(state.get("perm", np.zeros(0)), dtype=np.int64).copy()
        self._cursor = int(state.get("cursor", 0))
        self._load_sample_state(state)
        if self.method == "shb":
            for i, r in enumerate(self.r):
                r[...] = np.asarray(state[f"r{i + 1}"], dtype=np.float64)
        elif self.method == "shb_polyak":
            for i, a in enumerate(self.w_prev.arrays()):
                a[...] = np.asarray(state[f"w{i + 1}_prev"], dtype=np.float64)


# ============================================================================ kinetic reference
class PNKineticSolver:
    r"""Velocity-augmented mean-field ODEs of the Pham–Nguyen three-layer network (dynamics.md §6.3).

    .. math::

        \partial_t w_\ell = r_\ell,\qquad
        \partial_t r_\ell = -\gamma r_\ell - \xi_\ell(t)\,\Delta_\ell,\qquad \ell = 1, 2, 3,
        \qquad r_\ell(0) = 0,

    with :math:`\Delta_\ell` the mean-field gradients of §6.2. Following the numerical reference of
    §6.2 [choice], the continuum indices ``(c_1, c_2)`` are represented by a width-``(n1, n2)``
    network driven by exact expectations over the data (full batch: the rescaled gradients
    ``Grad_l`` of :meth:`PNThreeLayer.gradients
    <mfpde.models.three_layer_pn.PNThreeLayer.gradients>` on the whole set). ``xi_l`` multiply the
    force only (as in §6.3 and :class:`PNDriver`; not a clock).
    Noiseless.

    Integrators: ``"splitting"`` — ``O(h/2) B(h/2) A(h) B(h/2) O(h/2)`` with exact friction
    ``r <- exp(-gamma h/2) r`` (second order, one gradient evaluation per step, cached between
    steps; ``xi_l`` at the step midpoint); ``"shb"`` — the heavy-ball recursion
    ``r <- (1 - gamma h) r - h xi_l Grad_l``, ``w <- w + h r`` (first order; the finite-width SHB
    of :class:`PNDriver` with full batch).

    Lyapunov function (constant ``xi_l``, §6.3, plus the optional weight decay [choice]):

    .. math::

        H = E_z L + \tfrac\lambda2\big(E\|w_1\|^2 + E w_2^2 + E w_3^2\big)
            + \tfrac12\sum_\ell E\|r_\ell\|^2/\xi_\ell,\qquad
        \frac{dH}{dt} = -\gamma\sum_\ell E\|r_\ell\|^2/\xi_\ell ,

    expectations over the neuron indices (``E|w_1|^2 = sum(w1**2)/n1``, ``E w_2^2 = mean(w2**2)``,
    ``E w_3^2 = mean(w3**2)``); measured by the observables ``hamiltonian``, ``kinetic_energy``
    and ``dissipation`` (:func:`mfpde.observables.pn_hamiltonian`), not by the driver.

    Parameters
    ----------
    model : PNThreeLayer
    data : Dataset
        The data whose average defines the expectations (a large fixed sample for a population
        reference).
    n1, n2 : int
        Widths (ignored when ``weights0`` is given).
    dt : float
        Step ``h`` (time ``t = k*dt``).
    gamma : float
        Friction > 0.
    integrator : {"splitting", "shb"}
    xi : number, callable or three of them
        Per-layer ``xi_l(t)`` (force multipliers).
    seed : int
        Seed of the initialisation when ``weights0`` is not given.
    weights0 : PNWeights, optional
    r0 : sequence of three arrays, optional
        Initial velocities (default 0).
    """

    INTEGRATORS = ("splitting", "shb")

    def __init__(self, model, data, *, n1=None, n2=None, dt, gamma, integrator="splitting",
                 xi=None, seed=0, weights0=None, r0=None):
        if integrator not in self.INTEGRATORS:
            raise ValueError(f"integrator must be one of {', '.join(self.INTEGRATORS)}, got {integrator!r}")
        if not (isinstance(dt, (int, float, np.floating)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a finite number > 0, got {dt!r}")
        gamma = float(gamma)
        if not (math.isfinite(gamma) and gamma > 0):
            raise ValueError(f"gamma must be a finite number > 0, got {gamma!r}")
        if integrator == "shb" and gamma * dt >= 1:
            raise ValueError(f"SHB needs gamma*dt < 1, got {gamma * dt:.4g}")
        self.model = model
        self.X = model.prepare_X(data.X)
        self.Y = model.prepare_Y(data.Y, self.X.shape[0])
        self.dt, self.gamma, self.integrator = float(dt), gamma, integrator
        self.order = 2 if integrator == "splitting" else 1
        self.xi_l = _layer_schedules(xi)
        if weights0 is None:
            if n1 is None or n2 is None:
                raise ValueError("give the widths n1, n2 (or weights0)")
            self.w = model.init_weights(n1, n2, make_rng(seed))
        else:
            self.w = model.check_weights(weights0).copy()
        if r0 is None:
            self.r = [np.zeros_like(a) for a in self.w.arrays()]
        else:
            self.r = [np.array(v, dtype=np.float64) for v in r0]
            if [v.shape for v in self.r] != [a.shape for a in self.w.arrays()]:
                raise ValueError("r0 must be three arrays shaped like (w1, w2, w3)")
        self.k = 0
        self._g = None
        self.n_force = 0
        self.last_risk = float("nan")

    @property
    def t(self) -> float:
        return self.k * self.dt

    def _force(self):
        g = self.model.gradients(self.w, self.X, self.Y)
        self._g = (g.g1, g.g2, g.g3)
        self.last_risk = g.risk
        self.n_force += 1

    def step(self, n: int = 1, t_end: float = math.inf) -> None:
        """Advance ``n`` steps of the chosen integrator (``t_end`` ignored: fixed ``dt``)."""
        for _ in range(int(n)):
            h = self.dt
            if self.integrator == "shb":
                self._force()
                xis = [f(self.t) for f in self.xi_l]
                a = 1.0 - self.gamma * h
                for wl, rl, gl, x in zip(self.w.arrays(), self.r, self._g, xis):
                    velocity_step(wl, rl, gl, a, h, force_step=h * x)
                self._g = None
            else:
                if self._g is None:
                    self._force()
                xis = [f(self.t + 0.5 * h) for f in self.xi_l]
                c = math.exp(-0.5 * self.gamma * h)
                for wl, rl, gl, x in zip(self.w.arrays(), self.r, self._g, xis):
                    rl *= c
                    rl -= (0.5 * h * x) * gl
                    wl += h * rl
                self._force()
                for rl, gl, x in zip(self.r, self._g, xis):
                    rl -= (0.5 * h * x) * gl
                    rl *= c
            self.k += 1

    # ------------------------------------------------------------------ what it shows
    # (the energies and the dissipation are observables: mfpde.observables)
    def snapshot_arrays(self) -> dict[str, np.ndarray]:
        """Copies of weights and velocities: ``w1, w2, w3, r1, r2, r3``."""
        out = {f"w{i + 1}": a.copy() for i, a in enumerate(self.w.arrays())}
        out.update({f"r{i + 1}": a.copy() for i, a in enumerate(self.r)})
        return out

    def fields(self) -> dict[str, np.ndarray]:
        """Views of the weights ``w1`` (n1, d), ``w2`` (n1, n2), ``w3`` (n2,) and velocities ``r1,
        r2, r3`` (same shapes)."""
        out = {f"w{i + 1}": a for i, a in enumerate(self.w.arrays())}
        out.update({f"r{i + 1}": a for i, a in enumerate(self.r)})
        return out

    def state_dict(self) -> dict:
        out = self.snapshot_arrays()
        out["k"] = int(self.k)
        out["force"] = None if self._g is None else [g.copy() for g in self._g]
        return out

    def load_state_dict(self, state: dict) -> None:
        for i, a in enumerate(self.w.arrays()):
            a[...] = np.asarray(state[f"w{i + 1}"], dtype=np.float64)
        for i, a in enumerate(self.r):
            a[...] = np.asarray(state[f"r{i + 1}"], dtype=np.float64)
        self.k = int(state["k"])
        f = state.get("force")
        self._g = None if f is None else tuple(np.array(g, dtype=np.float64) for g in f)
