r"""Finite-width trainers: (S)GD, noisy SGD, stochastic heavy ball, and raw <-> mean-field units.

Theory: theory/dynamics.md §4 (finite width, raw hyper-parameters) and §5.1–§5.2 (heavy ball).

**GD / SGD / noisy SGD are the Euler–Maruyama particle step.** A width-N network whose neurons move
with per-neuron step :math:`\varepsilon` on the N-rescaled gradient :math:`N\partial J_N/\partial
\theta_i = \nabla\Psi(\theta_i;\hat\rho_N)` performs exactly the update of
:class:`~mfpde.dynamics.langevin.LangevinSolver` (README convention 5), so these trainers *are*
that solver; :func:`make_trainer` only converts hyper-parameters and picks the driver:

==============  ==========================================================================
method          update (mean-field units, dynamics.md §4.1)
==============  ==========================================================================
``gd``          :math:`\theta_i \leftarrow \theta_i - \varepsilon\nabla\Psi` (full data)
``sgd``         same with the data average over a mini-batch ``b_k`` (epochs or online)
``noisy_sgd``   :math:`\ldots + \sqrt{2\varepsilon/\beta}\,g_i`
``shb``         heavy ball, velocity form (§5.1), :class:`SHBTrainer`
``shb_polyak``  heavy ball, Polyak form (§5.2), :class:`SHBTrainer`
==============  ==========================================================================

**Raw (framework) units** (dynamics.md §4.2). A framework minimises
:math:`J_N = L_N + \frac{wd}2\sum_i\|\theta_i\|^2 + \frac{wd_W}2\|W\|^2` of the 1/N-scaled network
with raw learning rate :math:`\eta` on :math:`\partial J_N/\partial\theta_i`:

- neuron step (SGD): raw :math:`\eta` -> :math:`\varepsilon = \eta/N`;
- weight decay: raw :math:`wd` -> :math:`\lambda = N\,wd`;
- noise std per step on :math:`\theta`: raw :math:`s` -> :math:`\beta = 2\varepsilon/s^2`;
- ``W`` step and decay: raw :math:`\eta_W`, :math:`wd_W` -> :math:`\xi_W = \eta_W/\varepsilon`,
  :math:`\lambda_W = wd_W`;
- heavy ball: raw :math:`(\alpha_{raw}, \mu)` -> :math:`\varepsilon = \sqrt{\alpha_{raw}/N}`,
  :math:`\gamma = (1-\mu)/\varepsilon`; heavy-ball noise std :math:`s` ->
  :math:`\beta = 2\gamma\varepsilon^3/s^2`;
- time: step ``k`` -> :math:`t = k\varepsilon`.

**Heavy ball** (dynamics.md §5.1–§5.2), with :math:`h_k = \varepsilon\,\xi(k\varepsilon)` (a schedule
is a change of clock, as in the overdamped and kinetic solvers):

.. math::

    \text{velocity:}\quad r^{k+1} = (1-\gamma h_k) r^k - h_k\nabla\hat\Psi(\theta^k)
        + \sqrt{2\gamma h_k/\beta}\,g^k,\qquad \theta^{k+1} = \theta^k + h_k r^{k+1},

    \text{Polyak:}\quad \theta^{k+1} = \theta^k - \alpha_k\nabla\hat\Psi(\theta^k)
        + \mu_k(\theta^k - \theta^{k-1}) + \sqrt{2\gamma h_k^3/\beta}\,g^k,

    \alpha_k = h_k^2,\qquad \mu_k = \frac{h_k}{h_{k-1}}(1-\gamma h_k)\quad(= 1-\gamma\varepsilon
    \text{ for } \xi\equiv 1),\qquad \theta^{-1} = \theta^0 - h_0 r^0 .

The two forms produce the same iterates (to round-off) under this mapping. ``W`` (NC model) gets
its own heavy ball with step :math:`h_W = h\,\xi_W` and friction ``gamma_W`` (default ``gamma``),
i.e. :math:`\alpha_W = h_W^2`, :math:`\mu_W = 1-\gamma_W h_W`.

:class:`RawTrainer` is an independent, framework-style implementation (explicit raw gradients of
:math:`J_N`, PyTorch-style momentum buffer ``buf <- mu*buf + grad``, ``p <- p - lr*buf``) used to
check the mappings; it is not meant for large runs.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import numpy as np

from ..activations import evaluate
from ..rules import METHODS, method_violation  # METHODS: declared once, in mfpde.rules
from .base import ParticleDriver
from .heavy_ball import HeavyBall
from .langevin import LangevinSolver

__all__ = [
    "Hyper", "SHBTrainer", "RawTrainer", "make_trainer", "raw_gradient", "METHODS",
    "eps_from_raw_lr", "raw_lr_from_eps", "lam_from_weight_decay", "weight_decay_from_lam",
    "beta_from_noise_std", "noise_std_from_beta", "xi_W_from_raw_lr",
    "shb_polyak_from_velocity", "shb_velocity_from_polyak", "shb_from_raw", "shb_raw_from_velocity",
    "shb_noise_std", "shb_beta_from_noise_std",
]


# ============================================================================ unit conversions
def _pos(name, v, allow_zero=False):
    v = float(v)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {v!r}")
    return v


def _width(N):
    if not isinstance(N, (int, np.integer)) or isinstance(N, bool) or N < 1:
        raise ValueError(f"N must be an integer >= 1, got {N!r}")
    return int(N)


def eps_from_raw_lr(lr, N) -> float:
    """Per-neuron (mean-field) step :math:`\\varepsilon = \\eta/N` from a raw SGD learning rate."""
    return _pos("lr", lr) / _width(N)


def raw_lr_from_eps(eps, N) -> float:
    """Raw SGD learning rate :math:`\\eta = N\\varepsilon`."""
    return _pos("eps", eps) * _width(N)


def lam_from_weight_decay(wd, N) -> float:
    """Mean-field weight decay :math:`\\lambda = N\\,wd` from a raw (coupled) weight decay."""
    return _pos("weight_decay", wd, True) * _width(N)


def weight_decay_from_lam(lam, N) -> float:
    """Raw weight decay :math:`wd = \\lambda/N`."""
    return _pos("lam", lam, True) / _width(N)


def beta_from_noise_std(noise_std, eps) -> float:
    """:math:`\\beta = 2\\varepsilon/s^2` for a Gaussian of std ``s`` added to each neuron per SGD
    step (``s = 0`` gives ``inf``)."""
    s = _pos("noise_std", noise_std, True)
    return math.inf if s == 0 else 2.0 * _pos("eps", eps) / (s * s)


def noise_std_from_beta(eps, beta) -> float:
    """Per-step noise std :math:`\\sqrt{2\\varepsilon/\\beta}` of noisy SGD (0 for ``beta = inf``)."""
    beta = float(beta)
    return 0.0 if math.isinf(beta) else math.sqrt(2.0 * _pos("eps", eps) / _pos("beta", beta))


def xi_W_from_raw_lr(lr_W, step) -> float:
    """Ratio :math:`\\xi_W = \\eta_W/\\varepsilon` of the ``W`` step to the neuron step (the neuron
    step is :math:`\\varepsilon = \\eta/N` for SGD)."""
    return _pos("lr_W", lr_W, True) / _pos("step", step)


def shb_polyak_from_velocity(eps, gamma) -> tuple[float, float]:
    """``(alpha, mu) = (eps^2, 1 - gamma*eps)`` (dynamics.md §5.2); needs ``0 < gamma*eps < 1``."""
    eps, gamma = _pos("eps", eps), _pos("gamma", gamma)
    if not gamma * eps < 1:
        raise ValueError(f"heavy ball needs gamma*eps < 1, got {gamma * eps:.4g}")
    return eps * eps, 1.0 - gamma * eps


def shb_velocity_from_polyak(alpha, mu) -> tuple[float, float]:
    """``(eps, gamma) = (sqrt(alpha), (1 - mu)/sqrt(alpha))``; needs ``0 <= mu < 1``."""
    alpha = _pos("alpha", alpha)
    mu = float(mu)
    if not 0 <= mu < 1:
        raise ValueError(f"momentum mu must be in [0, 1), got {mu!r}")
    eps = math.sqrt(alpha)
    return eps, (1.0 - mu) / eps


def shb_from_raw(alpha_raw, mu, N) -> tuple[float, float]:
    """Mean-field ``(eps, gamma)`` from a framework's heavy ball ``(alpha_raw, mu)`` at width N:
    ``eps = sqrt(alpha_raw/N)``, ``gamma = (1 - mu)/eps``. Example: N = 1000, alpha_raw = 0.1,
    mu = 0.9 give eps = 0.01, gamma = 10."""
    return shb_velocity_from_polyak(_pos("alpha_raw", alpha_raw) / _width(N), mu)


def shb_raw_from_velocity(eps, gamma, N) -> tuple[float, float]:
    """Framework ``(alpha_raw, mu) = (N eps^2, 1 - gamma eps)``."""
    alpha, mu = shb_polyak_from_velocity(eps, gamma)
    return alpha * _width(N), mu


def shb_noise_std(eps, gamma, beta) -> float:
    """Std of the noise on ``theta`` per heavy-ball step, :math:`\\sqrt{2\\gamma\\varepsilon^3/\\beta}`
    (Polyak form; the velocity form adds :math:`\\sqrt{2\\gamma\\varepsilon/\\beta}` to ``r``)."""
    beta = float(beta)
    if math.isinf(beta):
        return 0.0
    return math.sqrt(2.0 * _pos("gamma", gamma) * _pos("eps", eps) ** 3 / _pos("beta", beta))


def shb_beta_from_noise_std(noise_std, eps, gamma) -> float:
    """:math:`\\beta = 2\\gamma\\varepsilon^3/s^2` (inverse of :func:`shb_noise_std`)."""
    s = _pos("noise_std", noise_std, True)
    return math.inf if s == 0 else 2.0 * _pos("gamma", gamma) * _pos("eps", eps) ** 3 / (s * s)


@dataclass(frozen=True)
class Hyper:
    """One set of training hyper-parameters in both unit systems (dynamics.md §4.2, §5.2).

    Mean-field: ``eps`` (per-neuron step), ``gamma`` (friction, heavy ball), ``alpha = eps^2`` and
    ``mu = 1 - gamma eps`` (Polyak form), ``lam``, ``lam_W``, ``beta``, ``xi_W``, ``gamma_W``.
    Raw: ``lr`` (``eta = N eps`` for SGD, ``alpha_raw = N eps^2`` for heavy ball), ``momentum``,
    ``weight_decay`` (``lam/N``), ``weight_decay_W`` (``= lam_W``), ``noise_std`` (per step, on
    ``theta``), ``lr_W``.
    """

    N: int
    method: str
    eps: float
    lam: float
    lam_W: float
    beta: float
    xi_W: float
    gamma: float | None
    gamma_W: float | None
    alpha: float | None
    mu: float | None
    lr: float
    momentum: float
    weight_decay: float
    weight_decay_W: float
    noise_std: float
    lr_W: float

    @property
    def heavy_ball(self) -> bool:
        return self.method in ("shb", "shb_polyak")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_mean_field(cls, N, method, eps, *, gamma=None, lam=0.0, lam_W=0.0, beta=math.inf,
                        xi_W=1.0, gamma_W=None):
        """From mean-field values (``gamma`` needed for heavy ball)."""
        N = _width(N)
        _check_method(method)
        eps = _pos("eps", eps)
        lam, lam_W = _pos("lam", lam, True), _pos("lam_W", lam_W, True)
        beta = float(beta)
        if not beta > 0:
            raise ValueError(f"beta must be > 0 (or inf), got {beta!r}")
        xi_W = _pos("xi_W", xi_W, True)
        if method in ("shb", "shb_polyak"):
            if gamma is None:
                raise ValueError(f"method {method!r} needs gamma (or momentum)")
            alpha, mu = shb_polyak_from_velocity(eps, gamma)
            gamma = float(gamma)
            gamma_W = gamma if gamma_W is None else _pos("gamma_W", gamma_W)
            h_W = eps * xi_W
            if _W_step_invalid(gamma_W, h_W):
                raise ValueError(f"heavy ball on W needs gamma_W*eps*xi_W < 1, got {gamma_W * h_W:.4g}")
            return cls(N, method, eps, lam, lam_W, beta, xi_W, gamma, gamma_W, alpha, mu,
                       lr=N * alpha, momentum=mu, weight_decay=lam / N, weight_decay_W=lam_W,
                       noise_std=shb_noise_std(eps, gamma, beta), lr_W=h_W * h_W)
        if gamma is not None:
            raise ValueError(f"gamma is a heavy-ball parameter; method {method!r} has none")
        return cls(N, method, eps, lam, lam_W, beta, xi_W, None, None, None, None,
                   lr=N * eps, momentum=0.0, weight_decay=lam / N, weight_decay_W=lam_W,
                   noise_std=noise_std_from_beta(eps, beta), lr_W=xi_W * eps)

    @classmethod
    def from_raw(cls, N, method, lr, *, momentum=None, weight_decay=0.0, weight_decay_W=0.0,
                 noise_std=0.0, lr_W=None):
        """From framework values (``lr`` is ``eta`` for SGD and ``alpha_raw`` for heavy ball;
        ``lr_W`` defaults to ``lr``, i.e. one learning rate for all parameters)."""
        N = _width(N)
        _check_method(method)
        lr = _pos("lr", lr)
        lr_W = lr if lr_W is None else _pos("lr_W", lr_W, True)
        wd = _pos("weight_decay", weight_decay, True)
        wd_W = _pos("weight_decay_W", weight_decay_W, True)
        s = _pos("noise_std", noise_std, True)
        if method in ("shb", "shb_polyak"):
            if momentum is None:
                raise ValueError(f"method {method!r} needs momentum")
            eps, gamma = shb_from_raw(lr, momentum, N)
            h_W = math.sqrt(lr_W)
            gamma_W = (1.0 - float(momentum)) / h_W if h_W > 0 else gamma
            return cls(N, method, eps, N * wd, wd_W, shb_beta_from_noise_std(s, eps, gamma),
                       h_W / eps, gamma, gamma_W, eps * eps, float(momentum),
                       lr=lr, momentum=float(momentum), weight_decay=wd, weight_decay_W=wd_W,
                       noise_std=s, lr_W=lr_W)
        if momentum not in (None, 0, 0.0):
            raise ValueError(f"momentum needs method 'shb' or 'shb_polyak', not {method!r}")
        eps = lr / N
        return cls(N, method, eps, N * wd, wd_W, beta_from_noise_std(s, eps), lr_W / eps,
                   None, None, None, None, lr=lr, momentum=0.0, weight_decay=wd,
                   weight_decay_W=wd_W, noise_std=s, lr_W=lr_W)


def _W_step_invalid(gamma_W, h_W) -> bool:
    return h_W > 0 and not gamma_W * h_W < 1


def _check_method(method):
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")


# ============================================================================ heavy ball
class SHBTrainer(HeavyBall, ParticleDriver):
    """Stochastic heavy ball for a width-N network, in velocity or Polyak form (module docstring).

    Parameters
    ----------
    model, data, N, beta, batch, sampler, xi, xi_W, train_W, seed, theta0, W0, noise_stream, part
        As for :class:`~mfpde.dynamics.base.ParticleDriver` (on a split run, ``part``, the
        velocities and ``theta_prev`` cover the rows held).
    dt, gamma : float
        Per-neuron step :math:`\\varepsilon` and friction :math:`\\gamma` (``0 < gamma*dt < 1``).
    alpha, mu : float
        Alternatively the Polyak parameters (``dt = sqrt(alpha)``, ``gamma = (1 - mu)/dt``);
        give either ``(dt, gamma)`` or ``(alpha, mu)``.
    form : {"velocity", "polyak"}
        Which recursion is iterated (the iterates agree to round-off).
    gamma_W : float, optional
        Friction of the ``W`` heavy ball (default ``gamma``).
    r0 : ndarray (N, D), optional
        Initial velocity (default 0); in Polyak form ``theta^{-1} = theta^0 - h_0 r0``.
    """

    def __init__(self, model, data=None, *, N, dt=None, gamma=None, alpha=None, mu=None,
                 form="velocity", beta=np.inf, batch=None, sampler=None, xi=None, xi_W=1.0,
                 gamma_W=None, train_W=True, seed=0, theta0=None, W0=None, r0=None,
                 noise_stream="single", part=None):
        if form not in ("velocity", "polyak"):
            raise ValueError(f"form must be 'velocity' or 'polyak', got {form!r}")
        if (dt is None) == (alpha is None):
            raise ValueError("give either (dt, gamma) or (alpha, mu)")
        if dt is not None:
            if gamma is None or mu is not None:
                raise ValueError("with dt give gamma (not mu)")
            shb_polyak_from_velocity(dt, gamma)          # validates gamma*dt < 1
        else:
            if mu is None or gamma is not None:
                raise ValueError("with alpha give mu (not gamma)")
            dt, gamma = shb_velocity_from_polyak(alpha, mu)
        super().__init__(model, data, N=N, dt=dt, beta=beta, batch=batch, sampler=sampler, xi=xi,
                         xi_W=xi_W, train_W=train_W, seed=seed, theta0=theta0, W0=W0,
                         noise_stream=noise_stream, part=part)
        self.gamma = float(gamma)
        self.gamma_W = self.gamma if gamma_W is None else _pos("gamma_W", gamma_W)
        self.form = form
        h0 = self.dt * self.xi(0.0)
        if not self.gamma * h0 < 1:
            raise ValueError(f"heavy ball needs gamma*dt*xi(0) < 1, got {self.gamma * h0:.4g}")
        if self.train_W and _W_step_invalid(self.gamma_W, h0 * self.xi_W):
            raise ValueError("heavy ball on W needs gamma_W*dt*xi*xi_W < 1")
        r = np.zeros_like(self.theta)
        if r0 is not None:
            r0 = np.asarray(r0, dtype=np.float64)
            if r0.shape != (self.N, self.model.D):
                raise ValueError(f"r0 must have shape {(self.N, self.model.D)}, got {r0.shape}")
            r[...] = r0[self._rows[0]:self._rows[1]]
        self._h_prev = h0
        #: ``W`` (NC model, trained) has its own heavy ball in both forms
        self.W_momentum = self.train_W
        if form == "velocity":
            self.r = r
            self.r_W = np.zeros_like(self.W) if self.train_W else None
        else:
            self.theta_prev = self.theta - h0 * r
            self.W_prev = self.W.copy() if self.train_W else None

    @property
    def alpha(self) -> float:
        """Polyak step ``alpha = eps^2`` (at ``xi = 1``)."""
        return self.dt * self.dt

    @property
    def mu(self) -> float:
        """Momentum ``mu = 1 - gamma*eps`` (at ``xi = 1``)."""
        return 1.0 - self.gamma * self.dt

    @property
    def velocity(self) -> np.ndarray:
        """Velocities ``r`` (N, D) (Polyak form: ``(theta^k - theta^{k-1})/h_{k-1}``)."""
        if self.form == "velocity":
            return self.r
        return (self.theta - self.theta_prev) / self._h_prev

    def step(self, n: int = 1, t_end: float = math.inf) -> None:
        """Advance ``n`` heavy-ball steps (velocity or Polyak recursion,
        :class:`~mfpde.dynamics.heavy_ball.HeavyBall`); ``t_end`` is ignored."""
        model = self.model
        for _ in range(int(n)):
            h, a = self._shb_step(self.t)
            Xb, Yb = self.next_batch()
            g = self._gradient(Xb, Yb)
            self.last_risk = g.risk
            self._heavy_ball_update(h, a, g.theta, g.W)
            self._h_prev = h
            self.k += 1

    def fields(self) -> dict[str, np.ndarray]:
        """``theta`` (N, D), ``r`` (N, D) (velocity form: a view; Polyak form: the derived
        :attr:`velocity`, a new array) and, for the NC model, ``W`` (p, q) and, in velocity form
        with ``W`` trained, ``r_W`` (p, q)."""
        out = super().fields()
        out["r"] = self.velocity
        if self.form == "velocity" and self.r_W is not None:
            out["r_W"] = self.r_W
        return out

    def _extra_state(self) -> dict:
        out = {"form": self.form, "h_prev": float(self._h_prev)}
        if self.form == "velocity":
            out["r"] = self.r.copy()
            out["r_W"] = None if self.r_W is None else self.r_W.copy()
        else:
            out["theta_prev"] = self.theta_prev.copy()
            out["W_prev"] = None if self.W_prev is None else self.W_prev.copy()
        return out

    def _load_extra_state(self, state: dict) -> None:
        if state.get("form", self.form) != self.form:
            raise ValueError(f"checkpoint is of form {state['form']!r}, trainer is {self.form!r}")
        self._h_prev = float(state.get("h_prev", self.dt * self.xi(0.0)))
        if self.form == "velocity":
            self.r[...] = np.asarray(state["r"], dtype=np.float64)
            if self.r_W is not None:
                self.r_W[...] = np.asarray(state["r_W"], dtype=np.float64)
        else:
            self.theta_prev[...] = np.asarray(state["theta_prev"], dtype=np.float64)
            if self.W_prev is not None:
                self.W_prev[...] = np.asarray(state["W_prev"], dtype=np.float64)


# ============================================================================ framework reference
def raw_gradient(model, theta, X, Y, W=None):
    """Raw gradients of the unscaled objective, written out densely (independent of the kernels).

    With ``L_N = ||Gamma W^T (1/N) A S^T - Y||^2 / (2n)`` (two-layer: ``W = I``, ``Gamma = 1``)
    returns ``(dL/dtheta (N, D), dL/dW (p, q) or None, L_N)`` -- no weight decay. Dense ``n x N``
    matrices: for tests and small problems only.
    """
    theta = model.check_theta(theta)
    Xa = model.prepare_X(X)
    n = Xa.shape[0]
    Y = model.prepare_Y(Y, n)
    N = theta.shape[0]
    A, U = model.split(theta)
    P = Xa @ U.T
    S = evaluate(model.activation, P, 0)
    Sp = evaluate(model.activation, P, 1)
    H = S @ A / N                                        # (n, p)
    if model.has_W:
        W = model.check_W(W)
        Z = model.Gamma * (H @ W) - Y
        dH = model.Gamma * (Z @ W.T) / n                 # dL/dH (n, p)
        gW = model.Gamma * (H.T @ Z) / n
    else:
        Z = H - Y
        dH = Z / n
        gW = None
    loss = float(np.sum(Z * Z)) / (2.0 * n)
    g = np.empty_like(theta)
    if model.train_a:
        g[:, :model.pa] = S.T @ dH / N
    g[:, model.pa:] = ((dH @ A.T) * Sp).T @ Xa / N
    return g, gW, loss


class RawTrainer(ParticleDriver):
    """Framework-style trainer in raw units (reference implementation for the mappings).

    Per step: ``g = dL_N/dtheta_i + wd*theta_i - (s/lr) xi_i`` (noise injected into the gradient,
    as SGLD implementations do, so momentum carries it), ``buf <- mu*buf + g``,
    ``theta <- theta - lr*buf``; for ``W``: ``buf_W <- mu*buf_W + dL/dW + wd_W W``,
    ``W <- W - lr_W buf_W``. With ``momentum = 0`` this is plain (noisy) SGD. The generator draws
    the batch, then the noise ``(N, D)``, as every driver does.

    Parameters: ``model, data, N, lr, momentum=0, weight_decay=0, noise_std=0, lr_W=None (= lr),
    weight_decay_W=0, batch, sampler, train_W, seed, theta0, W0`` (raw units; see :class:`Hyper`).
    The model's own ``lam``/``lam_W`` are ignored (``weight_decay`` is used).
    """

    def __init__(self, model, data=None, *, N, lr, momentum=0.0, weight_decay=0.0, noise_std=0.0,
                 lr_W=None, weight_decay_W=0.0, batch=None, sampler=None, train_W=True, seed=0,
                 theta0=None, W0=None):
        method = "shb_polyak" if momentum else "sgd"
        hyp = Hyper.from_raw(N, method, lr, momentum=momentum if momentum else None,
                             weight_decay=weight_decay, weight_decay_W=weight_decay_W,
                             noise_std=noise_std, lr_W=lr_W)
        super().__init__(model, data, N=N, dt=hyp.eps, beta=hyp.beta, batch=batch,
                         sampler=sampler, train_W=train_W, seed=seed, theta0=theta0, W0=W0)
        self.hyper = hyp
        self.lr, self.momentum = float(lr), float(momentum)
        self.lr_W = hyp.lr_W
        self.weight_decay, self.weight_decay_W = hyp.weight_decay, hyp.weight_decay_W
        self.noise_std = hyp.noise_std
        self.buf = np.zeros_like(self.theta)
        self.buf_W = np.zeros_like(self.W) if self.train_W else None

    def step(self, n: int = 1, t_end: float = math.inf) -> None:
        """Advance ``n`` framework-style steps (``t_end`` ignored: fixed step)."""
        for _ in range(int(n)):
            Xb, Yb = self.next_batch()
            g, gW, loss = raw_gradient(self.model, self.theta, Xb, Yb, self.W)
            self.last_risk = loss
            g += self.weight_decay * self.theta
            if self.noise_std > 0:
                g -= (self.noise_std / self.lr) * self.draw_noise()
            self.buf *= self.momentum
            self.buf += g
            self.theta -= self.lr * self.buf
            if self.train_W:
                gW = gW + self.weight_decay_W * self.W
                self.buf_W *= self.momentum
                self.buf_W += gW
                self.W -= self.lr_W * self.buf_W
            self.k += 1

    def _extra_state(self) -> dict:
        return {"buf": self.buf.copy(), "buf_W": None if self.buf_W is None else self.buf_W.copy()}

    def _load_extra_state(self, state: dict) -> None:
        self.buf[...] = np.asarray(state["buf"], dtype=np.float64)
        if self.buf_W is not None:
            self.buf_W[...] = np.asarray(state["buf_W"], dtype=np.float64)


# ============================================================================ constructor
def _with_decay(model, lam, lam_W):
    if lam == model.lam and lam_W == model.lam_W:
        return model
    m = copy.copy(model)
    m.lam, m.lam_W = float(lam), float(lam_W)
    return m


def make_trainer(model, data=None, *, N, method="gd", dt=None, lr=None, units="mean_field",
                 momentum=None, gamma=None, weight_decay=None, weight_decay_W=None, beta=None,
                 noise_std=None, lr_W=None, xi_W=None, gamma_W=None, batch=None, sampler=None,
                 xi=None, train_W=True, seed=0, theta0=None, W0=None, r0=None,
                 noise_stream="single", part=None, fused=None):
    """Build a finite-width trainer from mean-field or raw (framework) hyper-parameters.

    Parameters
    ----------
    model : ReadoutModel
        Two-layer or NC model. Its ``lam``/``lam_W`` are used unless ``weight_decay`` /
        ``weight_decay_W`` are given (then a shallow copy of the model carries the converted
        values).
    data, sampler, batch, xi, train_W, seed, theta0, W0
        As for :class:`~mfpde.dynamics.base.ParticleDriver` (``gd`` requires full batch).
    N : int
        Width.
    method : {"gd", "sgd", "noisy_sgd", "shb", "shb_polyak"}
    dt : float
        ``units="mean_field"``: the per-neuron step ``eps`` (the driver's ``dt``; time
        ``t = k*dt``).
    lr : float
        ``units="raw"``: the framework learning rate (``eta = N eps`` for (S)GD,
        ``alpha_raw = N eps^2`` for heavy ball). In mean-field units ``lr`` is accepted as
        another name of ``dt``.
    units : {"mean_field", "raw"}
    momentum, gamma : float
        Heavy ball: ``momentum`` mu (either units; mean-field ``gamma = (1 - mu)/eps``) or
        ``gamma`` (mean-field units only).
    weight_decay, weight_decay_W : float
        Mean field: ``lam``, ``lam_W``. Raw: ``wd`` (``lam = N wd``), ``wd_W`` (``lam_W = wd_W``).
    beta, noise_std : float
        ``noisy_sgd`` (or noisy heavy ball): ``beta`` in mean-field units, ``noise_std`` (per step,
        on ``theta``) in raw units.
    lr_W, xi_W, gamma_W : float
        ``W`` step: raw ``lr_W`` (default: ``lr``) or mean-field ratio ``xi_W`` (default 1);
        ``gamma_W`` friction of the ``W`` heavy ball (mean field; default ``gamma``).
    r0 : ndarray, optional
        Initial velocity (heavy ball).
    noise_stream, part
        Noise stream and split over processes (:class:`~mfpde.dynamics.base.ParticleDriver`).
    fused : bool, optional
        False: never the fused small-batch kernel (:attr:`LangevinSolver.fused`), so that a
        split run really splits (e.g. a driver whose batches and noise come from hooks).

    Returns
    -------
    LangevinSolver or SHBTrainer
        With attribute ``hyper`` (:class:`Hyper`: the values in both unit systems).
    """
    _check_method(method)
    if units not in ("mean_field", "raw"):
        raise ValueError(f"units must be 'mean_field' or 'raw', got {units!r}")
    if units == "raw":
        if dt is not None:
            raise ValueError("units='raw' takes the framework learning rate lr (not dt)")
        if lr is None:
            raise ValueError("units='raw' needs the framework learning rate lr")
    else:
        if dt is not None and lr is not None:
            raise ValueError("give the mean-field step dt (or its other name lr), not both")
        if dt is None and lr is None:
            raise ValueError("give the mean-field step dt")
        lr = dt if dt is not None else lr
    hb = method in ("shb", "shb_polyak")
    if units == "raw":
        if gamma is not None or beta is not None or xi_W is not None or gamma_W is not None:
            raise ValueError("units='raw' takes momentum, noise_std, lr_W (not gamma, beta, xi_W, "
                             "gamma_W)")
        hyp = Hyper.from_raw(N, method, lr, momentum=momentum,
                             weight_decay=0.0 if weight_decay is None else weight_decay,
                             weight_decay_W=(model.lam_W if weight_decay_W is None
                                             else weight_decay_W),
                             noise_std=0.0 if noise_std is None else noise_std, lr_W=lr_W)
        if weight_decay is None:                         # keep the model's own lam
            hyp = _replace(hyp, lam=model.lam, weight_decay=model.lam / hyp.N)
    else:
        if noise_std is not None or lr_W is not None:
            raise ValueError("units='mean_field' takes beta and xi_W (not noise_std, lr_W)")
        if hb and gamma is None:
            if momentum is None:
                raise ValueError(f"method {method!r} needs gamma or momentum")
            gamma = (1.0 - float(momentum)) / _pos("dt", lr)
        elif hb and momentum is not None:
            raise ValueError("give gamma or momentum, not both")
        hyp = Hyper.from_mean_field(
            N, method, lr, gamma=gamma if hb else None,
            lam=model.lam if weight_decay is None else weight_decay,
            lam_W=model.lam_W if weight_decay_W is None else weight_decay_W,
            beta=math.inf if beta is None else beta, xi_W=1.0 if xi_W is None else xi_W,
            gamma_W=gamma_W)
    broken = method_violation(method, batch=batch, beta=hyp.beta, gamma=hyp.gamma,
                              online=sampler is not None)
    if broken is not None:
        raise ValueError(broken.message)
    m = _with_decay(model, hyp.lam, hyp.lam_W)
    common = dict(N=N, beta=hyp.beta, batch=batch, sampler=sampler, xi=xi, xi_W=hyp.xi_W,
                  train_W=train_W, seed=seed, theta0=theta0, W0=W0, noise_stream=noise_stream,
                  part=part)
    if hb:
        tr = SHBTrainer(m, data, dt=hyp.eps, gamma=hyp.gamma, gamma_W=hyp.gamma_W,
                        form="velocity" if method == "shb" else "polyak", r0=r0, **common)
    else:
        if r0 is not None:
            raise ValueError("r0 is for heavy ball only")
        tr = LangevinSolver(m, data, dt=hyp.eps, fused=fused, **common)
    tr.hyper = hyp
    return tr


def _replace(h: Hyper, **kw) -> Hyper:
    d = h.to_dict()
    d.update(kw)
    return Hyper(**d)
