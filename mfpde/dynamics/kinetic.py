r"""Kinetic (second-order in time) particle solver: heavy ball, Vlasov with friction, underdamped Langevin.

Implements theory/dynamics.md §5 (README convention 6). Particles carry a velocity ``r`` (N, D):

.. math::

    d\theta = r\,dt,\qquad dr = -\gamma r\,dt - \nabla\Psi(\theta;\rho^\theta_t, W_t)\,dt
        + \sqrt{2\gamma/\beta}\,dB_t ,

the McKean–Vlasov characteristics of the kinetic mean-field equation (§5.3; ``beta = inf`` is the
noiseless Vlasov equation with linear friction). For the NC model ``W`` either gets its own
velocity ``r_W`` (``W_momentum=True``, default: ``dW = r_W dt``, ``dr_W = -gamma r_W dt -
grad_W F dt``, no noise) or follows the first-order flow ``dW = -grad_W F dt``.

Time rescaling [choice]: a schedule ``xi(t)`` is a change of clock, as for the overdamped solver
(dynamics.md §2.5): the step of the particles is ``h = dt*xi`` and that of ``W`` is
``h_W = dt*xi*xi_W`` in every sub-step (drift, force *and* friction/noise), so ``xi`` never changes
the Gibbs law and the Lyapunov function below stays the same for every schedule.

Integrators (``integrator=``; ``h`` as above):

``"shb"``
    The stochastic-heavy-ball recursion itself (§5.1), first order, one force evaluation per step,
    needs ``gamma*h < 1``: ``r <- (1 - gamma h) r - h grad Psi + sqrt(2 gamma h/beta) g``,
    ``theta <- theta + h r``. This is what finite-width training with momentum
    ``mu = 1 - gamma*eps`` and Polyak step ``alpha = eps^2`` does (§5.2).
``"splitting"``
    Noiseless (``beta = inf`` only) symmetric splitting with exact friction, second order:
    ``O(h/2) B(h/2) A(h) B(h/2) O(h/2)`` with ``O: r <- exp(-gamma h/2) r`` (velocity Verlet
    between two exact friction half-steps, §5.6).
``"baoab"``, ``"obabo"``
    The splittings of §5.6 with the exact Ornstein–Uhlenbeck step
    ``O(h_O): r <- exp(-gamma h_O) r + sqrt((1 - exp(-2 gamma h_O))/beta) g``; any ``beta``.
    BAOAB (one Gaussian draw per step) has the smaller configurational bias at stationarity
    (exact ``theta``-marginal for a quadratic potential).

The splitting schemes evaluate the force once per step: the closing kick of step ``k`` and the
opening kick of step ``k+1`` share ``grad Psi(theta^{k+1})``, which is cached (and saved in the
checkpoint). With mini-batches the cached force is computed on the batch of step ``k+1`` (drawn
at the end of step ``k``), so each batch drives one full kick ``h``. The ``xi`` of a splitting
step is taken at its midpoint ``t + dt/2`` (keeps second order for a smooth schedule); the SHB
recursion takes it at ``t`` (as §5.1 and the overdamped solver).

Randomness: the run's one generator (PCG64) draws, in this order over the run, batch ``b_0``,
noise of step 0, batch ``b_1``, noise of step 1, ... (OBABO draws both of its noise arrays at the
start of the step), outside the compiled kernels: results do not depend on the thread count, and
:meth:`state_dict` / :meth:`load_state_dict` give a bitwise resume. Batches and noise go through
:meth:`~mfpde.dynamics.base.ParticleDriver.next_batch` and
:meth:`~mfpde.dynamics.base.ParticleDriver.draw_noise`, so the synchronous-coupling hooks
(``batch_source``, ``noise_source``) apply.

The Pham–Nguyen velocity-augmented ODEs (dynamics.md §6.3) are
:class:`~mfpde.dynamics.pham_nguyen.PNKineticSolver`.

Lyapunov functions (§5.4); they are measured by the observables ``hamiltonian``,
``kinetic_energy``, ``dissipation`` and ``kinetic_free_energy`` of :mod:`mfpde.observables`
(functions :func:`~mfpde.observables.hamiltonian`, :func:`~mfpde.observables.dissipation_rate`,
...), not by the driver:

.. math::

    H = R(\rho^\theta, W) + \tfrac\lambda2 E\|\theta\|^2 + \tfrac{\lambda_W}2\|W\|_F^2
        + \tfrac12 E\|r\|^2 + \tfrac12\|r_W\|_F^2,\qquad
    \frac{dH}{dt} = -\gamma\,\xi\,E\|r\|^2 - \gamma\,\xi_W\|r_W\|_F^2\ (\beta=\infty),

:math:`F_{kin} = H + \beta^{-1}E\log\rho` with the phase-space entropy ESTIMATED by the
Kozachenko–Leonenko kNN estimator in dimension ``2D`` (observable ``kinetic_free_energy``).
"""
from __future__ import annotations

import math

import numpy as np

from ..kernels.kinetic import baoa_update, bo_update, oba_update
from .base import ParticleDriver
from .heavy_ball import HeavyBall, descent_step
from .pham_nguyen import PNKineticSolver  # noqa: F401  (its former home; re-exported)

INTEGRATORS = ("shb", "splitting", "baoab", "obabo")
_ORDER = {"shb": 1, "splitting": 2, "baoab": 2, "obabo": 2}


class KineticSolver(HeavyBall, ParticleDriver):
    """Kinetic mean-field particle solver (see module docstring for equations and schemes).

    Parameters
    ----------
    model, data, N, dt, beta, batch, sampler, xi, xi_W, train_W, seed, theta0, W0, noise_stream, part
        As for :class:`~mfpde.dynamics.base.ParticleDriver` (``dt`` is the step ``h`` of the
        splitting schemes and the per-neuron step ``eps`` of SHB; time ``t = k*dt``). On a split
        run (``part``) ``r``, the cached force and the noise cover the rows held.
    gamma : float
        Friction :math:`\\gamma > 0` (heavy-ball momentum ``mu = 1 - gamma*dt``).
    integrator : {"shb", "splitting", "baoab", "obabo"}
        Time integrator (module docstring). ``"splitting"`` needs ``beta = inf``.
    r0 : ndarray (N, D), optional
        Initial velocities (default 0, README convention 6).
    W_momentum : bool
        NC model: ``W`` has its own velocity ``r_W`` (default) or follows the first-order flow.
    rW0 : ndarray (p, q), optional
        Initial ``r_W`` (default 0).
    """

    def __init__(self, model, data=None, *, N, dt, gamma, integrator="baoab", beta=np.inf,
                 batch=None, sampler=None, xi=None, xi_W=1.0, train_W=True, seed=0,
                 theta0=None, W0=None, r0=None, W_momentum=True, rW0=None,
                 noise_stream="single", part=None):
        super().__init__(model, data, N=N, dt=dt, beta=beta, batch=batch, sampler=sampler,
                         xi=xi, xi_W=xi_W, train_W=train_W, seed=seed, theta0=theta0, W0=W0,
                         noise_stream=noise_stream, part=part)
        if integrator not in INTEGRATORS:
            raise ValueError(f"integrator must be one of {', '.join(INTEGRATORS)}, got {integrator!r}")
        if integrator == "splitting" and math.isfinite(self.beta):
            raise ValueError("integrator 'splitting' is the noiseless scheme (beta = inf); "
                             "use 'baoab' or 'obabo' with noise")
        gamma = float(gamma)
        if not (math.isfinite(gamma) and gamma > 0):
            raise ValueError(f"gamma must be a finite number > 0, got {gamma!r}")
        self.gamma = gamma
        #: the heavy ball of ``integrator="shb"`` (:class:`~mfpde.dynamics.heavy_ball.HeavyBall`):
        #: velocity form, ``W`` with the particles' friction
        self.gamma_W = gamma
        self.form = "velocity"
        self.integrator = integrator
        self.order = _ORDER[integrator]
        if integrator == "shb" and gamma * self.dt * self.xi(0.0) >= 1.0:
            raise ValueError(f"SHB needs gamma*dt*xi < 1 (momentum mu = 1 - gamma*dt*xi > 0); "
                             f"got gamma*dt*xi = {gamma * self.dt * self.xi(0.0):.4g}")
        D = model.D
        lo, hi = self._rows
        if r0 is None:
            self.r = np.zeros((self.n_rows, D))
        else:
            r0 = np.asarray(r0, dtype=np.float64)
            if r0.shape != (self.N, D):
                raise ValueError(f"r0 must have shape ({self.N}, {D}), got {r0.shape}")
            self.r = np.array(r0[lo:hi], order="C")
        self.W_momentum = bool(W_momentum) and self.train_W
        if self.W_momentum:
            self.r_W = np.zeros_like(self.W) if rW0 is None else np.array(
                model.check_W(rW0), dtype=np.float64, order="C")
        else:
            if rW0 is not None:
                raise ValueError("rW0 given but W has no velocity (NC model with train_W and "
                                 "W_momentum only)")
            self.r_W = None
        noisy = math.isfinite(self.beta)
        self._g1 = np.empty((self.n_rows, D)) if noisy else np.empty((0, 0))
        # cached force at the current positions (splitting schemes; first-same-as-last)
        self._f = np.zeros((self.n_rows, D))
        self._fW = None
        self._f_risk = float("nan")
        self._f_valid = False
        #: number of force evaluations so far (diagnostic: one per step for the schemes here)
        self.n_force = 0

    # ------------------------------------------------------------------ forces
    def _eval_force(self) -> None:
        """Draw the next batch and evaluate ``grad Psi`` (and ``grad_W F``) at the current state."""
        Xb, Yb = self.next_batch()
        g = self._gradient(Xb, Yb)
        self._f[...] = g.theta
        self._fW = None if g.W is None else np.array(g.W)
        self._f_risk = g.risk
        self._f_valid = True
        self.n_force += 1

    # ------------------------------------------------------------------ stepping
    def step(self, n: int = 1, t_end: float = math.inf) -> None:
        """Advance ``n`` steps of the chosen integrator (``t_end`` ignored: fixed ``dt``)."""
        fn = {"shb": self._step_shb, "splitting": self._step_obabo,
              "baoab": self._step_baoab, "obabo": self._step_obabo}[self.integrator]
        for _ in range(int(n)):
            fn()
            self.k += 1

    def _step_shb(self) -> None:
        """The SHB recursion (§5.1) through :class:`~mfpde.dynamics.heavy_ball.HeavyBall`
        (velocity form; ``W`` with its velocity or first order)."""
        h, a = self._shb_step(self.t)
        self._eval_force()                                   # batch b_k, force at theta^k
        self.last_risk = self._f_risk
        self._heavy_ball_update(h, a, self._f, self._fW)
        self._f_valid = False                                # positions moved

    def _step_baoab(self) -> None:
        h = self.dt * self.xi(self.t + 0.5 * self.dt)
        if not self._f_valid:
            self._eval_force()
        self.last_risk = self._f_risk
        c = math.exp(-self.gamma * h)
        if math.isfinite(self.beta):
            g = self.draw_noise()
            s = math.sqrt(-math.expm1(-2.0 * self.gamma * h) / self.beta)
        else:
            g, s = self._g1, 0.0
        baoa_update(self.theta, self.r, self._f, g, 0.5 * h, 0.5 * h, c, s)
        if self.train_W:
            hW = h * self.xi_W
            if self.W_momentum:
                self.r_W -= 0.5 * hW * self._fW
                self.W += 0.5 * hW * self.r_W
                self.r_W *= math.exp(-self.gamma * hW)
                self.W += 0.5 * hW * self.r_W
            else:
                descent_step(self.W, self._fW, hW)
        self._eval_force()                                   # batch b_{k+1}, force at theta^{k+1}
        bo_update(self.r, self._f, self._g1, 0.5 * h, 1.0, 0.0)
        if self.W_momentum:
            self.r_W -= 0.5 * h * self.xi_W * self._fW

    def _step_obabo(self) -> None:
        h = self.dt * self.xi(self.t + 0.5 * self.dt)
        if not self._f_valid:
            self._eval_force()
        self.last_risk = self._f_risk
        c = math.exp(-0.5 * self.gamma * h)
        if math.isfinite(self.beta):
            g1 = self._g1
            g1[...] = self.draw_noise()
            g2 = self.draw_noise()
            s = math.sqrt(-math.expm1(-self.gamma * h) / self.beta)
        else:
            g1 = g2 = self._g1
            s = 0.0
        oba_update(self.theta, self.r, self._f, g1, c, s, 0.5 * h, h)
        if self.train_W:
            hW = h * self.xi_W
            if self.W_momentum:
                cW = math.exp(-0.5 * self.gamma * hW)
                self.r_W *= cW
                self.r_W -= 0.5 * hW * self._fW
                self.W += hW * self.r_W
            else:
                descent_step(self.W, self._fW, hW)
        self._eval_force()
        bo_update(self.r, self._f, g2, 0.5 * h, c, s)
        if self.W_momentum:
            hW = h * self.xi_W
            self.r_W -= 0.5 * hW * self._fW
            self.r_W *= math.exp(-0.5 * self.gamma * hW)

    # ------------------------------------------------------------------ what it shows
    # (energies, free energies and dissipation are observables: mfpde.observables)
    def snapshot_arrays(self) -> dict[str, np.ndarray]:
        """Copies of the per-particle arrays for a snapshot: ``{"theta": (N, D), "r": (N, D)}``."""
        return {"theta": self.theta.copy(), "r": self.r.copy()}

    def fields(self) -> dict[str, np.ndarray]:
        """Views: ``theta`` (N, D), ``r`` (N, D) and, for the NC model, ``W`` (p, q) and ``r_W``
        (p, q) when ``W`` has a velocity."""
        out = {"theta": self.theta, "r": self.r}
        if self.W is not None:
            out["W"] = self.W
        if self.r_W is not None:
            out["r_W"] = self.r_W
        return out

    # ------------------------------------------------------------------ state
    def _extra_state(self) -> dict:
        return {
            "r": self.r.copy(),
            "r_W": None if self.r_W is None else self.r_W.copy(),
            "force": self._f.copy(),
            "force_W": None if self._fW is None else self._fW.copy(),
            "force_risk": float(self._f_risk),
            "force_valid": bool(self._f_valid),
            "n_force": int(self.n_force),
        }

    def _load_extra_state(self, state: dict) -> None:
        r = np.asarray(state["r"], dtype=np.float64)
        if r.shape != self.r.shape:
            raise ValueError(f"checkpoint r has shape {r.shape}, solver has {self.r.shape}")
        self.r[...] = r
        if self.r_W is not None:
            self.r_W[...] = np.asarray(state["r_W"], dtype=np.float64)
        valid = bool(state.get("force_valid", False)) and state.get("force") is not None
        if valid:
            self._f[...] = np.asarray(state["force"], dtype=np.float64)
            fW = state.get("force_W")
            self._fW = None if fW is None else np.array(fW, dtype=np.float64)
            self._f_risk = float(state.get("force_risk", float("nan")))
        self._f_valid = valid
        self.n_force = int(state.get("n_force", 0))


__all__ = ["KineticSolver", "PNKineticSolver", "INTEGRATORS"]
