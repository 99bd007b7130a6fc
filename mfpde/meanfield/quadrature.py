r"""Weighted-quadrature Lagrangian reference for the noiseless mean-field dynamics (theory/grid.md §3).

For ``beta = inf`` the mean-field solution is a push-forward of the initial law along the
characteristics, :math:`\rho_t = (\Phi_t)_\#\rho_0`. Discretise a Gaussian
:math:`\rho_0 = N(m_0, C_0)` by a tensor Gauss–Hermite rule and carry its nodes along the
characteristics *with their weights*:

.. math::

    \rho_0 \approx \sum_k w_k\,\delta_{\theta_k(0)},\quad
    \theta_k(0) = m_0 + C_0^{1/2} z_k,\qquad
    \rho_t \approx \sum_k w_k\,\delta_{\theta_k(t)} ,

with :math:`(z_k, w_k)` the probabilists' Hermite rule (``numpy.polynomial.hermite_e.hermegauss``,
weights divided by :math:`\sqrt{2\pi}` per dimension), ``n_q`` nodes per dimension, ``n_q**D``
nodes. The force is the model's weighted-measure force :meth:`ReadoutModel.gradient(...,
weights=w) <mfpde.models.readout.ReadoutModel.gradient>` (the matrix formulas of dynamics.md §1
with ``1/N`` replaced by ``diag(w)``). Characteristics:

- first-order flow (``gamma=None``): :math:`\dot\theta_k = -\xi(t)\nabla\Psi(\theta_k;\rho_t, W)`,
  :math:`\dot W = -\xi(t)\xi_W\nabla_W F` (NC model);
- kinetic flow (``gamma > 0``, dynamics.md §5.3, ``beta = inf``): :math:`\dot\theta_k = \xi r_k`,
  :math:`\dot r_k = -\xi(\gamma r_k + \nabla\Psi(\theta_k;\rho^\theta_t, W))`, ``r_k(0) = 0`` (or
  a given ``r0``); ``W`` with its own velocity (``W_momentum=True``) or first-order.

The system is a smooth ODE integrated with an adaptive Runge–Kutta method (``DOP853``, tight
tolerances) or fixed-step RK4 (:meth:`QuadratureReference.solve`). The reference is also a driver
(:mod:`mfpde.engine.protocol`): with a fixed step ``dt`` its state (nodes, velocities, ``W``) is
advanced by :meth:`QuadratureReference.step`, the same RK4 step, so the controller can run it;
``fields()`` shows ``nodes`` (K, D), ``node_weights`` (K,) and ``r``, ``W``, ``r_W`` when present. There is no sampling error: the reference's errors are the
quadrature error (spectral in ``n_q`` while the flow map is smooth; check by refining ``n_q``,
:func:`refinement_gap`) and the ODE tolerance. Practical for ``D <= 3-4``; ``max_nodes`` guards the
size. Noiseless only: with noise the law is not a push-forward.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy.integrate import solve_ivp

__all__ = ["gauss_hermite_rule", "QuadratureReference", "QuadratureSolution", "refinement_gap"]


def gauss_hermite_rule(n_q: int, D: int, mean=None, cov=None):
    """Tensor Gauss–Hermite rule for :math:`N(m, C)` in dimension ``D``.

    Parameters
    ----------
    n_q : int
        Nodes per dimension (``>= 1``).
    D : int
        Dimension.
    mean : array_like (D,), optional
        Mean (default 0).
    cov : array_like (D, D) or (D,), optional
        Covariance matrix, or its diagonal (default identity).

    Returns
    -------
    nodes : ndarray (n_q**D, D)
        :math:`m + L z_k`, ``L`` the Cholesky factor of ``C``.
    weights : ndarray (n_q**D,)
        Positive, summing to 1 (exact for polynomials of degree ``<= 2 n_q - 1`` per coordinate).
    """
    if not isinstance(n_q, (int, np.integer)) or n_q < 1:
        raise ValueError(f"n_q must be an integer >= 1, got {n_q!r}")
    if not isinstance(D, (int, np.integer)) or D < 1:
        raise ValueError(f"D must be an integer >= 1, got {D!r}")
    z1, w1 = hermegauss(int(n_q))
    w1 = w1 / math.sqrt(2.0 * math.pi)
    grids = np.meshgrid(*([z1] * D), indexing="ij")
    Z = np.stack([g.ravel() for g in grids], axis=1)
    wg = np.meshgrid(*([w1] * D), indexing="ij")
    w = np.prod(np.stack([g.ravel() for g in wg], axis=1), axis=1)
    w = w / w.sum()
    m = np.zeros(D) if mean is None else np.asarray(mean, dtype=np.float64).reshape(D)
    if cov is None:
        L = np.eye(D)
    else:
        C = np.asarray(cov, dtype=np.float64)
        if C.ndim == 1:
            C = np.diag(C)
        if C.shape != (D, D):
            raise ValueError(f"cov must have shape ({D}, {D}) or ({D},), got {C.shape}")
        L = np.linalg.cholesky(C)
    return np.ascontiguousarray(m + Z @ L.T), w


@dataclass
class QuadratureSolution:
    """Trajectory of the weighted nodes at the requested times.

    Attributes
    ----------
    t : ndarray (T,)
    weights : ndarray (K,)
    theta : ndarray (T, K, D)
    r : ndarray (T, K, D) or None (first-order flow)
    W : ndarray (T, p, q) or None
    r_W : ndarray (T, p, q) or None
    nfev : int
        Force evaluations used.
    """

    t: np.ndarray
    weights: np.ndarray
    theta: np.ndarray
    r: np.ndarray | None
    W: np.ndarray | None
    r_W: np.ndarray | None
    nfev: int

    def _W(self, i):
        return None if self.W is None else self.W[i]

    def risk(self, model, X, Y) -> np.ndarray:
        """:math:`R(\\rho_t, W_t)` at every stored time, shape (T,)."""
        return np.array([model.risk(self.theta[i], X, Y, self._W(i), weights=self.weights)
                         for i in range(self.t.size)])

    def regularized_risk(self, model, X, Y) -> np.ndarray:
        return np.array([model.regularized_risk(self.theta[i], X, Y, self._W(i),
                                                weights=self.weights)
                         for i in range(self.t.size)])

    def hamiltonian(self, model, X, Y) -> np.ndarray:
        """:math:`H = R + \\frac\\lambda2E\\|\\theta\\|^2 + \\frac{\\lambda_W}2\\|W\\|^2 +
        \\frac12E\\|r\\|^2 + \\frac12\\|r_W\\|^2` (dynamics.md §5.4) at every stored time."""
        H = self.regularized_risk(model, X, Y)
        if self.r is not None:
            H = H + 0.5 * np.einsum("k,tkd,tkd->t", self.weights, self.r, self.r)
        if self.r_W is not None:
            H = H + 0.5 * np.einsum("tij,tij->t", self.r_W, self.r_W)
        return H

    def forward(self, model, X) -> np.ndarray:
        """Predictor :math:`f(x_i;\\rho_t)` at every stored time, shape (T, n, q)."""
        return np.stack([model.forward(self.theta[i], X, self._W(i), weights=self.weights)
                         for i in range(self.t.size)])

    def mean(self) -> np.ndarray:
        """:math:`E_{\\rho_t}\\theta`, shape (T, D)."""
        return np.einsum("k,tkd->td", self.weights, self.theta)

    def moment2(self) -> np.ndarray:
        """:math:`E_{\\rho_t}\\|\\theta\\|^2`, shape (T,)."""
        return np.einsum("k,tkd,tkd->t", self.weights, self.theta, self.theta)


class QuadratureReference:
    """Gauss–Hermite Lagrangian reference of the noiseless mean-field flow (module docstring).

    Parameters
    ----------
    model : ReadoutModel
    data : Dataset or None
        Training data ``X`` (n, d), ``Y`` (n, q) (population reference: a large fixed sample).
    n_q : int
        Nodes per dimension (``n_q**D`` nodes in all).
    mean, cov : array_like, optional
        Initial Gaussian law (default the model's initialisation
        ``N(0, diag(s_a^2 I_p, s_u^2 I_d))``, models.md §1).
    gamma : float or None
        None: first-order flow (overdamped, ``beta = inf``); ``gamma > 0``: kinetic flow with
        friction ``gamma``.
    xi : float or callable, optional
        Clock :math:`\\xi(t)` (default 1), as in the particle solvers.
    xi_W : float
        :math:`\\xi_W/\\xi` for ``W``.
    train_W : bool
        NC model: move ``W``.
    W0 : ndarray (p, q), optional
        Initial ``W`` (NC model; default ``model.init_W`` with generator seed ``seed``).
    W_momentum : bool
        Kinetic NC model: ``W`` has a velocity (default) or follows the first-order flow.
    r0 : ndarray (K, D), optional
        Initial node velocities (default 0).
    max_nodes : int
        Refuse rules with more nodes (the method is for low dimension).
    X, Y : ndarray, optional
        Data given directly instead of ``data``.
    dt : float, optional
        Fixed step of the driver interface (:meth:`step`: classical RK4, time ``t = k*dt``);
        not needed by :meth:`solve`.

    Driver attributes: ``k`` (steps taken), ``t``, ``dt``, ``last_risk`` (risk of the nodes at the
    start of the last step), :meth:`step`, :meth:`state_dict`, :meth:`load_state_dict`,
    :meth:`fields`.
    """

    def __init__(self, model, data=None, *, n_q, mean=None, cov=None, gamma=None, xi=None,
                 xi_W=1.0, train_W=True, W0=None, W_momentum=True, r0=None, seed=0,
                 max_nodes=200_000, X=None, Y=None, dt=None):
        self.model = model
        if data is not None:
            X, Y = data.X, data.Y
        if X is None or Y is None:
            raise ValueError("give the data (data=Dataset or X=..., Y=...)")
        self.X = np.ascontiguousarray(X, dtype=np.float64)
        model.prepare_X(self.X)
        self.Y = model.prepare_Y(Y, self.X.shape[0])
        D = model.D
        if n_q ** D > max_nodes:
            raise ValueError(f"n_q**D = {n_q}**{D} = {n_q ** D} nodes exceeds max_nodes = "
                             f"{max_nodes}; the tensor rule is for low dimension (grid.md §3)")
        if cov is None and mean is None:
            sd = np.r_[np.full(model.pa, model.init_scale_a), np.full(model.d_in, model.init_scale_u)]
            cov = sd ** 2
        self.nodes0, self.weights = gauss_hermite_rule(n_q, D, mean, cov)
        self.n_q = int(n_q)
        self.K = self.nodes0.shape[0]
        self.gamma = None if gamma is None else float(gamma)
        if self.gamma is not None and not (math.isfinite(self.gamma) and self.gamma > 0):
            raise ValueError(f"gamma must be None (first-order flow) or a number > 0, got {gamma!r}")
        if xi is None:
            self.xi = lambda t: 1.0
        elif callable(xi):
            self.xi = xi
        else:
            v = float(xi)
            self.xi = lambda t: v
        self.xi_W = float(xi_W)
        self.train_W = bool(train_W) and model.has_W
        if model.has_W:
            W0 = model.init_W(np.random.default_rng(seed)) if W0 is None else W0
            self.W0 = np.array(model.check_W(W0), dtype=np.float64)
        else:
            self.W0 = None
        self.kinetic = self.gamma is not None
        self.W_momentum = self.kinetic and self.train_W and bool(W_momentum)
        if r0 is None:
            self.r0 = np.zeros_like(self.nodes0) if self.kinetic else None
        else:
            if not self.kinetic:
                raise ValueError("r0 given for the first-order flow (gamma=None)")
            self.r0 = np.array(r0, dtype=np.float64).reshape(self.nodes0.shape)
        self.nfev = 0
        self._shapes()
        if dt is not None and not (isinstance(dt, (int, float, np.floating)) and math.isfinite(dt)
                                   and dt > 0):
            raise ValueError(f"dt must be a finite number > 0 (or None), got {dt!r}")
        self.dt = None if dt is None else float(dt)
        self.k = 0
        self.last_risk = float("nan")
        self._rhs_risk = float("nan")
        self._y = self.initial_state()

    # ------------------------------------------------------------------ packing
    def _shapes(self):
        K, D = self.nodes0.shape
        parts = [("theta", (K, D))]
        if self.kinetic:
            parts.append(("r", (K, D)))
        if self.W0 is not None:
            parts.append(("W", self.W0.shape))
            if self.W_momentum:
                parts.append(("r_W", self.W0.shape))
        self._parts = parts

    def _pack(self, **arrs):
        return np.concatenate([np.ravel(arrs[name]) for name, _ in self._parts])

    def _unpack(self, y):
        out, i = {}, 0
        for name, shp in self._parts:
            size = int(np.prod(shp))
            out[name] = y[i:i + size].reshape(shp)
            i += size
        return out

    def initial_state(self) -> np.ndarray:
        arrs = {"theta": self.nodes0}
        if self.kinetic:
            arrs["r"] = self.r0
        if self.W0 is not None:
            arrs["W"] = self.W0
            if self.W_momentum:
                arrs["r_W"] = np.zeros_like(self.W0)
        return self._pack(**arrs)

    # ------------------------------------------------------------------ the ODE
    def rhs(self, t: float, y: np.ndarray) -> np.ndarray:
        """Right-hand side of the characteristic ODE system (flattened state)."""
        s = self._unpack(y)
        theta = np.ascontiguousarray(s["theta"])
        W = s.get("W")
        g = self.model.gradient(theta, self.X, self.Y, None if W is None else np.ascontiguousarray(W),
                                weights=self.weights)
        self.nfev += 1
        self._rhs_risk = g.risk
        xi = self.xi(t)
        d = {}
        if self.kinetic:
            r = s["r"]
            d["theta"] = xi * r
            d["r"] = -xi * (self.gamma * r + g.theta)
        else:
            d["theta"] = -xi * g.theta
        if W is not None:
            xw = xi * self.xi_W
            if not self.train_W:
                d["W"] = np.zeros_like(W)
            elif self.W_momentum:
                d["W"] = xw * s["r_W"]
                d["r_W"] = -xw * (self.gamma * s["r_W"] + g.W)
            else:
                d["W"] = -xw * g.W
        return self._pack(**d)

    def _rk4_step(self, t: float, y: np.ndarray, h: float) -> np.ndarray:
        """One classical RK4 step of the characteristic ODE from ``(t, y)``; returns the new state
        (``last_risk`` becomes the risk at ``(t, y)``)."""
        k1 = self.rhs(t, y)
        self.last_risk = self._rhs_risk
        k2 = self.rhs(t + h / 2, y + h / 2 * k1)
        k3 = self.rhs(t + h / 2, y + h / 2 * k2)
        k4 = self.rhs(t + h, y + h * k3)
        return y + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)

    # ------------------------------------------------------------------ driver
    @property
    def t(self) -> float:
        """Time of the driver state, ``k * dt`` (0 without ``dt``)."""
        return 0.0 if self.dt is None else self.k * self.dt

    def step(self, n: int = 1, t_end: float = math.inf) -> None:
        """Advance the driver state ``n`` RK4 steps of the fixed ``dt`` (``t_end`` ignored)."""
        if self.dt is None:
            raise ValueError("the quadrature reference steps with a fixed dt: construct it with "
                             "dt=... (or use solve(t_eval))")
        for _ in range(int(n)):
            self._y = self._rk4_step(self.k * self.dt, self._y, self.dt)
            self.k += 1

    def fields(self) -> dict[str, np.ndarray]:
        """Views of the driver state: ``nodes`` (K, D), ``node_weights`` (K,) and, when present,
        ``r`` (K, D) (kinetic flow), ``W`` (p, q), ``r_W`` (p, q)."""
        s = self._unpack(self._y)
        out = {"nodes": s["theta"], "node_weights": self.weights}
        for name in ("r", "W", "r_W"):
            if name in s:
                out[name] = s[name]
        return out

    def state_dict(self) -> dict:
        """Complete driver state (copies): ``y`` (the flattened nodes, velocities, ``W``), ``k``,
        ``nfev``, ``last_risk``."""
        return {"y": self._y.copy(), "k": int(self.k), "nfev": int(self.nfev),
                "last_risk": float(self.last_risk)}

    def load_state_dict(self, state: dict) -> None:
        y = np.array(state["y"], dtype=np.float64)
        if y.shape != self._y.shape:
            raise ValueError(f"state y has shape {y.shape}, the reference has {self._y.shape}")
        self._y = y
        self.k = int(state["k"])
        self.nfev = int(state.get("nfev", self.nfev))
        self.last_risk = float(state.get("last_risk", float("nan")))

    # ------------------------------------------------------------------ reference solution
    def solve(self, t_eval, method: str = "DOP853", rtol: float = 1e-10, atol: float = 1e-12,
              dt: float | None = None) -> QuadratureSolution:
        """Integrate from ``t = 0`` and store the nodes at the times ``t_eval`` (increasing, ``>= 0``).

        ``method`` is a :func:`scipy.integrate.solve_ivp` method (default ``DOP853`` with
        ``rtol``, ``atol``) or ``"rk4"`` (classical fixed-step RK4 with step ``dt``; the step is
        shortened to land exactly on every ``t_eval``).
        """
        t_eval = np.atleast_1d(np.asarray(t_eval, dtype=np.float64))
        if t_eval.ndim != 1 or np.any(np.diff(t_eval) < 0) or t_eval[0] < 0:
            raise ValueError("t_eval must be a non-decreasing 1-D array of times >= 0")
        y0 = self.initial_state()
        n0 = self.nfev
        if method == "rk4":
            if dt is None or not dt > 0:
                raise ValueError("method 'rk4' needs a step dt > 0")
            ys, y, t = [], y0, 0.0
            for te in t_eval:
                nsteps = int(math.ceil((te - t) / dt - 1e-12)) if te > t else 0
                if nsteps:
                    h = (te - t) / nsteps
                    for _ in range(nsteps):
                        y = self._rk4_step(t, y, h)
                        t += h
                    t = te
                ys.append(y.copy())
            Ysol = np.stack(ys)
        else:
            t_end = float(t_eval[-1])
            if t_end == 0.0:
                Ysol = np.repeat(y0[None], t_eval.size, axis=0)
            else:
                sol = solve_ivp(self.rhs, (0.0, t_end), y0, method=method, t_eval=t_eval,
                                rtol=rtol, atol=atol)
                if not sol.success:
                    raise RuntimeError(f"quadrature ODE solve failed: {sol.message}")
                Ysol = sol.y.T
        parts = [self._unpack(y) for y in Ysol]
        stack = lambda name: (np.stack([p[name] for p in parts]) if name in parts[0] else None)  # noqa: E731
        return QuadratureSolution(t=t_eval.copy(), weights=self.weights.copy(), theta=stack("theta"),
                                  r=stack("r"), W=stack("W"), r_W=stack("r_W"),
                                  nfev=self.nfev - n0)


def refinement_gap(model, data, t_eval, n_q_pair=(12, 16), observable="forward", X_test=None,
                   **kw) -> float:
    """Self-consistency of the reference: max over ``t_eval`` of the RMS difference of the
    predictor on ``X_test`` (default the training inputs) between rules with ``n_q_pair[0]`` and
    ``n_q_pair[1]`` nodes per dimension (``observable="forward"``), or of the risk
    (``observable="risk"``). Keyword arguments go to :class:`QuadratureReference`."""
    X = data.X if X_test is None else X_test
    vals = []
    for nq in n_q_pair:
        sol = QuadratureReference(model, data, n_q=nq, **kw).solve(t_eval)
        vals.append(sol.forward(model, X) if observable == "forward" else sol.risk(model, data.X, data.Y))
    diff = vals[1] - vals[0]
    if observable == "forward":
        return float(np.max(np.sqrt(np.mean(diff.reshape(diff.shape[0], -1) ** 2, axis=1))))
    return float(np.max(np.abs(diff)))
