r"""The two-stage algorithm of Wu & Mondelli (ICML 2025, Section 5) and its Stage-1 Gibbs reference.

Theory: dynamics.md §7, models.md §2 (truncated read-out), validation.md §K6, §V9.

- **Truncated read-out** :math:`h^R_\rho(x) = E_\rho[\tau_R(a)\sigma(u^\top x)]`
  (:class:`TruncatedNC`, :func:`tau_R`): :math:`\tau_R(z) = \mathrm{sign}(z)g(|z|)` with
  :math:`g(s) = s` for :math:`s\le R`, :math:`g(s) = R + R\int_0^{(s-R)/R}(1 - S(v))dv` on
  :math:`(R, 2R)`, :math:`g = 3R/2` beyond, :math:`S(v) = 10v^3 - 15v^4 + 6v^5` [choice,
  models.md §2]; :math:`\tau_R'\in[0, 1]`.
- **Stage 1**: ``W`` frozen at :math:`W_0` (orthonormal columns, A1); the particles follow the
  mean-field Langevin dynamics of :math:`F^R(\rho, W_0)` (strictly convex in :math:`\rho`) to its
  unique Gibbs minimiser :math:`\rho^*`. **Stage 2**: the joint flow from :math:`(\rho^*, W_0)`.
  Both stages use :class:`~mfpde.dynamics.langevin.LangevinSolver` (``train_W=False`` / ``True``,
  ``theta0``, ``W0``) and the engine's controller (:func:`run_stages`, :func:`two_stage`).
  Whether Stage 2 keeps :math:`\tau_R` is [unknown] in the paper; it does here unless a stage says
  ``truncated=False``.
- **Stage-1 Gibbs fixed point** (:func:`stage1_gibbs`), an independent reference for the particle
  Stage 1: :math:`\rho^* \propto \exp(-\beta\Psi(\theta;\rho^*, W_0))` solved by self-normalised
  importance sampling over ``u`` with the ``a | u`` law in closed form (untruncated: Gaussian;
  truncated: 1-D quadrature), a Newton-preconditioned fixed-point iteration on ``G``, and an error
  estimate (effective sample size, spread over independent proposal batches, fixed-point
  residual).

Configuration (proposal, see :func:`stages_from_config` and :func:`run_from_config`): a list of
``[[stages]]`` tables, each with ``name``, ``steps`` (or ``t_end``), ``train_W`` and optional
per-stage ``dt``, ``beta``, ``batch``, ``truncated``; the truncation radius is
``[model] readout_R``; an optional ``[gibbs]`` table asks for the fixed-point reference of the
first ``W``-frozen stage. Bundled examples: ``validation/example_two_stage.toml`` and
``validation/example_digits.toml``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .engine import SeriesTracker
from .models.three_layer_nc import NCThreeLayer
from .observables_nc import MAY_BE_NAN

__all__ = ["tau_R", "tau_R_prime", "tau_R_second", "TruncatedNC", "truncated", "GibbsStage1",
           "stage1_gibbs", "Stage", "StageResult", "StagedRun", "run_stages", "two_stage",
           "stages_from_config", "run_from_config", "driver_view", "NanTolerantSeries",
           "StagedDriver"]


# --------------------------------------------------------------------------------------------
# the truncation tau_R (models.md §2)
# --------------------------------------------------------------------------------------------
def _check_R(R) -> float:
    R = float(R)
    if not (R > 0) or math.isnan(R):
        raise ValueError(f"the truncation radius R must be > 0 (inf: no truncation), got {R!r}")
    return R


def tau_R(z, R) -> np.ndarray:
    r"""Truncation :math:`\tau_R(z) = \mathrm{sign}(z)\,g(|z|)` (models.md §2 [choice]), element-wise.

    :math:`g(s) = s` (:math:`s\le R`), :math:`R + R(w - \tfrac52w^4 + 3w^5 - w^6)` with
    :math:`w = (s - R)/R` (:math:`R < s < 2R`), :math:`3R/2` (:math:`s\ge 2R`). ``R = inf``: identity.
    """
    R = _check_R(R)
    z = np.asarray(z, dtype=np.float64)
    if math.isinf(R):
        return z.copy()
    s = np.abs(z)
    w = np.clip((s - R) / R, 0.0, 1.0)
    g = np.where(s <= R, s, R + R * (w - 2.5 * w**4 + 3.0 * w**5 - w**6))
    return np.sign(z) * g


def tau_R_prime(z, R) -> np.ndarray:
    r""":math:`\tau_R'(z) = g'(|z|) = 1 - S((|z| - R)/R)` clipped to ``[0, 1]`` (models.md §2)."""
    R = _check_R(R)
    z = np.asarray(z, dtype=np.float64)
    if math.isinf(R):
        return np.ones_like(z)
    w = np.clip((np.abs(z) - R) / R, 0.0, 1.0)
    return 1.0 - (10.0 * w**3 - 15.0 * w**4 + 6.0 * w**5)


def tau_R_second(z, R) -> np.ndarray:
    r""":math:`\tau_R''(z) = -\mathrm{sign}(z)\,S'(w)/R`, :math:`S'(w) = 30w^2(1 - w)^2`."""
    R = _check_R(R)
    z = np.asarray(z, dtype=np.float64)
    if math.isinf(R):
        return np.zeros_like(z)
    w = np.clip((np.abs(z) - R) / R, 0.0, 1.0)
    return -np.sign(z) * 30.0 * w**2 * (1.0 - w) ** 2 / R


class TruncatedNC(NCThreeLayer):
    r"""NC model with the truncated read-out of Section 5 (models.md §2; dynamics.md §1.3).

    .. math::

        H^R = \tfrac1N S\,\tau_R(A),\qquad
        \nabla_A\Psi = \tau_R'(A)\odot(S^\top G) + \lambda A,\qquad
        \nabla_U\Psi = (S'\odot G\tau_R(A)^\top)^\top X + \lambda U,

    :math:`\Delta\Psi` gains :math:`\sum_l\tau_R''(a_l)(S^\top G)_{jl}`; the regulariser acts on
    the untruncated :math:`\theta`. Every pass is the parent's pass on the particles with ``a``
    replaced by :math:`\tau_R(a)`, corrected for the chain rule, so the model shares the parent's
    kernels. Parameters: those of :class:`~mfpde.models.three_layer_nc.NCThreeLayer` plus ``R``
    (``> 0``; ``inf`` gives the untruncated model).
    """

    kind = "nc_truncated"

    def __init__(self, d, q, p=4, R=10.0, **kw):
        super().__init__(d, q, p=p, **kw)
        self.R = _check_R(R)

    @property
    def readout_truncation(self) -> float:
        """The radius ``R`` (marks the model as truncated for the NC metrics)."""
        return self.R

    def _truncate(self, theta):
        theta = self.check_theta(theta)
        out = np.array(theta, dtype=np.float64, order="C")
        out[:, :self.p] = tau_R(theta[:, :self.p], self.R)
        return out

    def features(self, theta, X, weights=None):
        """Truncated features :math:`h^R_N(x_i) = \\frac1N\\sum_j\\tau_R(a_j)\\sigma(u_j^\\top x_i)`, (n, p)."""
        return super().features(self._truncate(theta), X, weights)

    def risk(self, theta, X, Y, W=None, weights=None):
        return super().risk(self._truncate(theta), X, Y, W, weights)

    def gradient(self, theta, X, Y, W=None, weights=None, laplacian=False):
        """Force of the truncated model (class docstring); same return type as the parent."""
        theta = self.check_theta(theta)
        p, lam = self.p, self.lam
        A = theta[:, :p]
        tA = tau_R(A, self.R)
        tt = np.array(theta, dtype=np.float64, order="C")
        tt[:, :p] = tA
        g = super().gradient(tt, X, Y, W, weights, laplacian)
        GS = g.theta[:, :p] - lam * tA                      # S^T G, (N, p)
        g.theta[:, :p] = tau_R_prime(A, self.R) * GS + lam * A
        if g.lap is not None:
            g.lap = g.lap + np.einsum("jl,jl->j", tau_R_second(A, self.R), GS)
        return g

    def force_chunks(self, theta, X, Y, W, on_chunk, produce=None):
        """The force plan of the parent's interface (chunks ``[lo, hi)`` handed to
        ``on_chunk(lo, hi, force, item)`` in order, ``produce(lo, hi)`` called before each),
        with the truncated force of :meth:`gradient` computed first for all particles.
        Returns ``(risk, grad_W)`` at the state before any update."""
        g = self.gradient(theta, X, Y, W)
        N = g.theta.shape[0]
        try:
            from .kernels.readout import chunk_bounds
            bounds = [int(b) for b in chunk_bounds(N)]
        except ImportError:  # pragma: no cover - kernels layout changed
            bounds = [0, N]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            item = produce(lo, hi) if produce is not None else None
            on_chunk(lo, hi, np.ascontiguousarray(g.theta[lo:hi]), item)
        return g.risk, g.W

    def euler_step(self, theta, X, Y, W, step, noise=None, noise_scale=0.0, rng=None):
        """One Euler–Maruyama step in place through :meth:`gradient` (dynamics.md §3); the noise
        is ``noise`` (N, D) or, with ``rng``, ``rng.standard_normal((N, D))``. Returns
        ``(risk, grad_W)`` evaluated before the update."""
        g = self.gradient(theta, X, Y, W)
        theta -= float(step) * g.theta
        ns = float(noise_scale)
        if ns != 0.0:
            if rng is not None:
                if noise is not None:
                    raise ValueError("give either noise or rng, not both")
                noise = rng.standard_normal(theta.shape)
            theta += ns * np.asarray(noise, dtype=np.float64)
        return g.risk, g.W

    def potential(self, points, theta, X, Y, W=None, weights=None):
        """:math:`\\Psi(\\vartheta_m) = \\tau_R(a_m)^\\top\\sum_iG_i\\sigma(u_m^\\top x_i)
        + \\frac\\lambda2\\|\\vartheta_m\\|^2` at ``points`` (M, D), shape (M,)."""
        pts = self.check_theta(points)
        tp = self._truncate(pts)
        # the parent evaluates the data term at tau_R(a_m) (and the features through
        # self.features, i.e. truncated); the regulariser must use the untruncated points
        out = super().potential(tp, theta, X, Y, W, weights)
        return out + 0.5 * self.lam * (np.einsum("ij,ij->i", pts, pts)
                                       - np.einsum("ij,ij->i", tp, tp))

    def describe(self) -> dict:
        out = super().describe()
        out["readout_R"] = self.R
        return out


def truncated(model, R) -> TruncatedNC:
    """A :class:`TruncatedNC` with the parameters of the NC ``model`` and radius ``R``."""
    if not isinstance(model, NCThreeLayer):
        raise ValueError(f"the truncated read-out needs the NC model, got {type(model).__name__}")
    return TruncatedNC(model.d, model.q, p=model.p, R=R, activation=model.activation,
                       Gamma=model.Gamma, lam=model.lam, lam_W=model.lam_W, bias=model.bias,
                       init_scale_a=model.init_scale_a, init_scale_u=model.init_scale_u,
                       memory=model.memory)


def _untruncated(model) -> NCThreeLayer:
    if isinstance(model, TruncatedNC):
        return NCThreeLayer(model.d, model.q, p=model.p, activation=model.activation,
                            Gamma=model.Gamma, lam=model.lam, lam_W=model.lam_W, bias=model.bias,
                            init_scale_a=model.init_scale_a, init_scale_u=model.init_scale_u,
                            memory=model.memory)
    return model


# --------------------------------------------------------------------------------------------
# Stage-1 Gibbs fixed point (dynamics.md §7)
# --------------------------------------------------------------------------------------------
class _ALaw:
    r"""The conditional law :math:`p(a_l|u) \propto \exp(-\beta v_l\tau_R(a_l) - \beta\lambda a_l^2/2)`
    as a function of :math:`v_l = (G\sigma(X^\top u))_l` (dynamics.md §7): ``log Z(v)`` (up to a
    constant), :math:`E[\tau_R(a)|v]`, :math:`E[a|v]`, :math:`Var[a|v]`. Untruncated: closed forms
    (``log Z = beta v^2/(2 lam)``, mean ``-v/lam``, variance ``1/(beta lam)``); truncated: a table
    in ``v`` from trapezoidal quadrature in ``a``, linearly interpolated."""

    def __init__(self, beta, lam, R, n_v=1025, n_a=4001):
        self.beta, self.lam, self.R = float(beta), float(lam), float(R)
        self.n_v, self.n_a = int(n_v), int(n_a)
        self.vmax = -1.0

    def _table(self, vmax):
        b, lam, R = self.beta, self.lam, self.R
        self.vmax = vmax
        sa = 1.0 / math.sqrt(b * lam)
        # exponent <= beta |v| |a| - beta lam a^2 / 2 (|tau_R(a)| <= |a|): the mass lies within
        # |a| <= 2 |v| / lam + 14 sd, whatever R
        Amax = 2.0 * vmax / lam + 14.0 * sa
        a = np.linspace(-Amax, Amax, self.n_a)
        ta = tau_R(a, R)
        v = np.linspace(-vmax, vmax, self.n_v)
        E = -b * (np.outer(v, ta) + 0.5 * lam * a**2)           # (n_v, n_a)
        m = E.max(axis=1, keepdims=True)
        P = np.exp(E - m)
        P[:, 0] *= 0.5
        P[:, -1] *= 0.5
        Z = P.sum(axis=1)
        self.v = v
        self.logZ = np.log(Z) + m[:, 0] + math.log(a[1] - a[0])
        self.Et = (P @ ta) / Z
        self.Ea = (P @ a) / Z
        self.Ea2 = (P @ a**2) / Z

    def ensure(self, V):
        """(Re)build the table when ``max |V|`` leaves its range (50% headroom) or falls below a
        quarter of it (resolution)."""
        if math.isinf(self.R):
            return
        need = max(float(np.max(np.abs(V))) if V.size else 0.0, 1e-8)
        if need > self.vmax or need < 0.25 * self.vmax:
            self._table(1.5 * need)

    def log_weight(self, V):
        """:math:`\\sum_l\\log Z(v_l)` per row of ``V`` (M, p)."""
        if math.isinf(self.R):
            return (0.5 * self.beta / self.lam) * np.einsum("ij,ij->i", V, V)
        self.ensure(V)
        return np.interp(V, self.v, self.logZ).sum(axis=1)

    def mean_tau(self, V):
        if math.isinf(self.R):
            return -V / self.lam
        self.ensure(V)
        return np.interp(V, self.v, self.Et)

    def mean_a(self, V):
        if math.isinf(self.R):
            return -V / self.lam
        self.ensure(V)
        return np.interp(V, self.v, self.Ea)

    def var_a(self, V):
        if math.isinf(self.R):
            return np.full_like(V, 1.0 / (self.beta * self.lam))
        self.ensure(V)
        return np.interp(V, self.v, self.Ea2) - np.interp(V, self.v, self.Ea) ** 2


@dataclass
class GibbsStage1:
    r"""Result of :func:`stage1_gibbs` (row layout).

    Attributes
    ----------
    H : (n, p) features :math:`H^{(R)}_{\rho^*}`;  G : (n, p) :math:`\frac\Gamma n ZW^\top`
    K : (n, n) kernel :math:`E_{\pi_G}[\sigma\sigma^\top]`;  risk : :math:`R(\rho^*, W_0)`
    W : (p, q) the frozen last layer;  beta, lam, R : parameters
    residual : final relative fixed-point residual :math:`\|G - T(G)\|_F/\|G\|_F`
    iterations : fixed-point iterations;  history : residual per iteration
    n_samples : importance samples (all batches);  ess : effective sample size
    :math:`(\sum w)^2/\sum w^2` of the pooled estimate;  ess_fraction : ``ess / n_samples``
    H_se : (n, p) Monte Carlo standard error of ``H`` (spread of the ``batches`` independent
    solutions over :math:`\sqrt{B}`);  risk_se : the same for the risk
    H_rel_se : :math:`\|H_{se}\|_F/\|H\|_F`
    """

    H: np.ndarray
    G: np.ndarray
    K: np.ndarray
    risk: float
    W: np.ndarray
    beta: float
    lam: float
    R: float
    residual: float
    iterations: int
    history: list
    n_samples: int
    ess: float
    ess_fraction: float
    H_se: np.ndarray
    risk_se: float
    H_rel_se: float
    _law: Any = field(default=None, repr=False)
    _model: Any = field(default=None, repr=False)
    _X: Any = field(default=None, repr=False)

    def v(self, U, G=None) -> np.ndarray:
        """:math:`v = G\\sigma(X^\\top u)` at the points ``U`` (M, d_in) (rows), shape (M, p);
        ``G`` (n, p) defaults to the fixed point's."""
        from .activations import evaluate
        S = evaluate(self._model.activation, np.asarray(U, float) @ self._X.T)
        return S @ (self.G if G is None else np.asarray(G, float))

    def a_mean(self, U, G=None) -> np.ndarray:
        """:math:`E[a|u]` at ``U`` (M, d_in), shape (M, p): ``-v/lam`` untruncated (dynamics.md
        §7); ``G`` (n, p) as in :meth:`v` (e.g. a particle system's own ``G``)."""
        return self._law.mean_a(self.v(U, G))

    def a_var(self, U, G=None) -> np.ndarray:
        """:math:`Var[a_l|u]` at ``U`` (M, d_in), shape (M, p): ``1/(beta lam)`` untruncated."""
        return self._law.var_a(self.v(U, G))


def _precondition(Rr, kap, Vk, om, Vp, c):
    """Solve ``D + c K D (W W^T) = Rr`` (row layout) by the eigendecompositions of ``K`` and
    ``W W^T`` (the Jacobian of the untruncated map at fixed ``K``; eq. (6) structure)."""
    return Vk @ ((Vk.T @ Rr @ Vp) / (1.0 + c * np.outer(kap, om))) @ Vp.T


def _solve_fixed_point(S, law, W, Y, Gamma, lam, G0, tol, max_iter, damping, memory=6):
    """Fixed point ``G = T(G)`` on the importance samples with rows ``S`` (M, n).

    Iterates the preconditioned map ``P(G) = G - L_G^{-1}(G - T(G))`` (``L_G`` from the kernel
    at ``G``; the exact Newton step of the untruncated map at fixed ``K``) with Anderson
    acceleration over the last ``memory`` iterates (restarted when the residual grows)."""
    n = S.shape[1]
    c = Gamma**2 / (lam * n)
    WW = W @ W.T
    om, Vp = np.linalg.eigh(0.5 * (WW + WW.T))

    def evaluate(G):
        V = S @ G
        lw = law.log_weight(V)
        w = np.exp(lw - lw.max())
        w /= w.sum()
        Sw = S * w[:, None]
        K = S.T @ Sw
        H = Sw.T @ law.mean_tau(V)                  # (n, p)
        Z = Gamma * (H @ W) - Y
        Gn = (Gamma / n) * (Z @ W.T)
        return dict(H=H, K=0.5 * (K + K.T), Z=Z, Gn=Gn, w=w)

    def rel(ev, G):
        return float(np.linalg.norm(G - ev["Gn"]) / max(np.linalg.norm(ev["Gn"]), 1e-300))

    G = np.array(G0, dtype=float)
    ev = evaluate(G)
    r = rel(ev, G)
    hist = [r]
    dX, dF = [], []
    x_prev = f_prev = None
    it = 0
    while r > tol and it < max_iter:
        kap, Vk = np.linalg.eigh(ev["K"])
        f = -float(damping) * _precondition(G - ev["Gn"], kap, Vk, om, Vp, c)   # P(G) - G
        if x_prev is not None:
            dX.append(G - x_prev)
            dF.append(f - f_prev)
            if len(dX) > memory:
                dX.pop(0)
                dF.pop(0)
        x_prev, f_prev = G, f
        if dF:
            Fm = np.stack([d.ravel() for d in dF], axis=1)
            Xm = np.stack([d.ravel() for d in dX], axis=1)
            gam = np.linalg.lstsq(Fm, f.ravel(), rcond=None)[0]
            Gt = G + f - ((Xm + Fm) @ gam).reshape(G.shape)
        else:
            Gt = G + f
        evt = evaluate(Gt)
        rt = rel(evt, Gt)
        if rt > 2.0 * r and dF:                   # bad extrapolation: plain step, restart
            dX.clear()
            dF.clear()
            Gt = G + f
            evt = evaluate(Gt)
            rt = rel(evt, Gt)
        G, ev, r = Gt, evt, rt
        it += 1
        hist.append(r)
    return G, ev, r, it, hist


def stage1_gibbs(model, data, W, beta, *, n_samples: int = 100_000, batches: int = 4,
                 seed=0, tol: float = 1e-11, max_iter: int = 100, damping: float = 1.0,
                 R=None) -> GibbsStage1:
    r"""Stage-1 Gibbs measure :math:`\rho^*\propto\exp(-\beta\Psi(\theta;\rho^*, W))` by importance
    sampling (dynamics.md §7, validation.md §K6); ``W`` frozen.

    Untruncated (:math:`R=\infty`): :math:`a|u\sim N(-G\sigma(X^\top u)/\lambda, (\beta\lambda)^{-1}I_p)`,
    :math:`u\sim\pi_G\propto\exp(-\beta\lambda\|u\|^2/2 + \frac\beta{2\lambda}\|G\sigma(X^\top u)\|^2)`,
    :math:`H = -GK/\lambda`. Truncated: :math:`a|u` factorises over coordinates,
    :math:`p(a_l|u)\propto\exp(-\beta v_l\tau_R(a_l) - \beta\lambda a_l^2/2)`, and :math:`u` has
    weight :math:`\prod_lZ(v_l)` (1-D quadrature). In both cases the self-consistency is in
    :math:`G = \frac\Gamma n W(\Gamma W^\top H_G - Y)`.

    Algorithm [derived here]: proposals :math:`u\sim N(0, (\beta\lambda)^{-1}I)` (``n_samples``, in
    ``batches`` independent batches; self-normalised weights); the map :math:`G\mapsto T(G)`
    evaluated on them; Newton-preconditioned iteration
    :math:`G\leftarrow G - \omega\,L^{-1}(G - T(G))` with
    :math:`L(\Delta) = \Delta + \frac{\Gamma^2}{\lambda n}WW^\top\Delta K` (the exact Jacobian of the
    untruncated map at fixed ``K``, inverted through the eigendecompositions of ``K`` and
    :math:`WW^\top` as in eq. (6)), with step halving when the residual grows. The pooled
    solution is the answer; each batch is solved again from it and the spread of the batch
    solutions gives the Monte Carlo error (``H_se``, ``risk_se``).

    Parameters
    ----------
    model : NCThreeLayer or TruncatedNC (``R`` from the model unless given)
    data : Dataset with ``X`` (n, d), ``Y`` (n, q)
    W : (p, q) the frozen last layer;  beta : finite inverse temperature
    n_samples, batches : importance samples in total and independent batches (``>= 2``)
    seed : seed of the proposals;  tol, max_iter, damping : fixed-point controls
    R : truncation radius (``inf`` = untruncated); default the model's

    Returns
    -------
    GibbsStage1
    """
    beta = float(beta)
    if not (0 < beta < math.inf):
        raise ValueError(f"the Gibbs measure needs a finite beta > 0, got {beta!r}")
    lam = float(model.lam)
    if not lam > 0:
        raise ValueError("the Stage-1 Gibbs measure needs lam > 0 (a confining weight decay)")
    if R is None:
        R = getattr(model, "readout_truncation", None) or math.inf
    R = _check_R(R)
    batches = int(batches)
    if batches < 2:
        raise ValueError(f"batches must be >= 2 (the error estimate), got {batches}")
    W = np.array(model.check_W(W), dtype=float)
    Xa = model.prepare_X(data.X)
    Y = model.prepare_Y(data.Y, Xa.shape[0])
    n, p = Xa.shape[0], model.p
    Gamma = model.Gamma
    from .activations import evaluate
    rng = np.random.default_rng(seed)
    m = max(1, int(n_samples) // batches)
    sd = 1.0 / math.sqrt(beta * lam)
    Ss = [evaluate(model.activation, (sd * rng.standard_normal((m, Xa.shape[1]))) @ Xa.T)
          for _ in range(batches)]
    S_all = np.vstack(Ss)
    law = _ALaw(beta, lam, R)
    G, ev, r, it, hist = _solve_fixed_point(S_all, law, W, Y, Gamma, lam, np.zeros((n, p)), tol,
                                            max_iter, damping)
    w = ev["w"]
    ess = float(1.0 / np.sum(w**2))
    if ess < 0.01 * w.size:
        warnings.warn(f"stage1_gibbs: effective sample size {ess:.0f} of {w.size} importance "
                      f"samples (beta = {beta:g}): the estimate is unreliable; use more samples or "
                      f"a smaller beta (dynamics.md §7: small d, moderate beta)", RuntimeWarning,
                      stacklevel=2)
    if r > tol:
        warnings.warn(f"stage1_gibbs: fixed point not reached after {it} iterations "
                      f"(residual {r:.2e} > tol {tol:.1e})", RuntimeWarning, stacklevel=2)
    Hb, Rb = [], []
    for S in Ss:
        _, evb, _, _, _ = _solve_fixed_point(S, law, W, Y, Gamma, lam, G, tol, max_iter, damping)
        Hb.append(evb["H"])
        Rb.append(float(np.sum(evb["Z"] ** 2)) / (2 * n))
    H_se = np.std(np.array(Hb), axis=0, ddof=1) / math.sqrt(batches)
    risk = float(np.sum(ev["Z"] ** 2)) / (2 * n)
    H = ev["H"]
    return GibbsStage1(H=H, G=G, K=ev["K"], risk=risk, W=W, beta=beta, lam=lam, R=R,
                       residual=r, iterations=it, history=hist, n_samples=m * batches, ess=ess,
                       ess_fraction=ess / (m * batches), H_se=H_se,
                       risk_se=float(np.std(Rb, ddof=1) / math.sqrt(batches)),
                       H_rel_se=float(np.linalg.norm(H_se) / max(np.linalg.norm(H), 1e-300)),
                       _law=law, _model=model, _X=Xa)


# --------------------------------------------------------------------------------------------
# staged runs on the engine
# --------------------------------------------------------------------------------------------
class _DriverView:
    """A particle solver seen through the engine's driver protocol (``fields()``, ``step(n,
    t_end)``), for solvers that do not implement the protocol themselves."""

    def __init__(self, solver):
        self.solver = solver

    def __getattr__(self, name):
        return getattr(self.solver, name)

    @property
    def k(self):
        return self.solver.k

    @property
    def t(self):
        return self.solver.t

    @property
    def dt(self):
        return self.solver.dt

    @property
    def last_risk(self):
        return self.solver.last_risk

    def step(self, n=1, t_end=math.inf):
        self.solver.step(n)

    def state_dict(self):
        return self.solver.state_dict()

    def load_state_dict(self, state):
        self.solver.load_state_dict(state)

    def fields(self):
        out = {"theta": self.solver.theta}
        if self.solver.W is not None:
            out["W"] = self.solver.W
        return out


def driver_view(solver):
    """``solver`` itself if it implements the engine's driver protocol (``fields``), else a thin
    view that does (``theta``, ``W``)."""
    return solver if callable(getattr(solver, "fields", None)) else _DriverView(solver)


@dataclass(frozen=True)
class Stage:
    """One stage of a staged run (``[[stages]]`` of the proposed configuration).

    ``steps``: number of steps; ``train_W``: move ``W`` (False: frozen at its value at the start
    of the stage); ``dt``, ``beta``, ``batch`` (0 = full batch): per-stage values, None = the
    run's; ``truncated``: use the run's truncated read-out (if any) in this stage.
    """

    name: str
    steps: int
    train_W: bool = True
    dt: float | None = None
    beta: float | None = None
    batch: int | None = None
    truncated: bool = True

    def __post_init__(self):
        if not isinstance(self.steps, (int, np.integer)) or self.steps < 0:
            raise ValueError(f"stage {self.name!r}: steps must be an integer >= 0, "
                             f"got {self.steps!r}")
        if self.dt is not None and not (math.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"stage {self.name!r}: dt must be a finite number > 0, got {self.dt!r}")
        if self.beta is not None and not (self.beta > 0):
            raise ValueError(f"stage {self.name!r}: beta must be > 0 (inf allowed), "
                             f"got {self.beta!r}")
        if self.batch is not None and (not isinstance(self.batch, (int, np.integer))
                                       or self.batch < 0):
            raise ValueError(f"stage {self.name!r}: batch must be an integer >= 0, "
                             f"got {self.batch!r}")


@dataclass
class StageResult:
    """One finished stage: its :class:`Stage`, the solver (final state), the series
    (``step`` and ``t`` continue across stages), the start offsets and the trackers' objects."""

    stage: Stage
    solver: Any
    series: dict
    k_start: int
    t_start: float
    trackers: list
    info: Any = None

    @property
    def t_end(self) -> float:
        return self.t_start + self.solver.t


@dataclass
class StagedRun:
    """A finished staged run: per-stage results, final particles ``theta`` (N, D) and ``W``."""

    stages: list
    model: Any
    data: Any
    gibbs: GibbsStage1 | None = None

    @property
    def theta(self) -> np.ndarray:
        return self.stages[-1].solver.theta

    @property
    def W(self):
        return self.stages[-1].solver.W

    def __getitem__(self, name) -> StageResult:
        for s in self.stages:
            if s.stage.name == name:
                return s
        raise KeyError(name)

    def series(self) -> dict:
        """All stages' series concatenated, plus a ``stage`` column (stage index)."""
        keys: list[str] = []
        for s in self.stages:
            keys += [k for k in s.series if k not in keys]
        out = {k: [] for k in keys}
        out["stage"] = []
        for i, s in enumerate(self.stages):
            m = len(s.series.get("t", []))
            for k in keys:
                v = s.series.get(k)
                out[k].append(np.asarray(v, float) if v is not None else np.full(m, np.nan))
            out["stage"].append(np.full(m, i))
        return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}


#: the engine's series tracker records the NaN of quantities undefined by design (registered
#: with ``may_be_nan``, e.g. ``nc1_bound`` where Corollary 4.4 does not apply); kept as a name
NanTolerantSeries = SeriesTracker


class _OffsetSink:
    """Series sink adding the stage's step/time offsets (series continue across stages)."""

    def __init__(self, k0, t0):
        self.k0, self.t0 = int(k0), float(t0)
        self.series: dict[str, list] = {"step": [], "t": []}

    def append_series(self, step, t, values):
        self.series["step"].append(self.k0 + int(step))
        self.series["t"].append(self.t0 + float(t))
        for k, v in values.items():
            self.series.setdefault(k, []).append(float(v))


def run_stages(model, data, stages: Sequence[Stage], *, N: int, dt: float, beta=math.inf,
               batch=None, seed=0, theta0=None, W0=None, R=None, observe: Iterable[str] = (),
               every: int = 100, test=None, trackers: Callable | None = None,
               quiet: bool = True) -> StagedRun:
    r"""Run ``stages`` one after the other, each a :class:`~mfpde.dynamics.langevin.LangevinSolver`
    under the engine's :class:`~mfpde.engine.Controller`; the particles and ``W`` of the end of
    a stage start the next (``theta0``, ``W0``).

    Parameters
    ----------
    model : NC (or any read-out) model; with ``R`` finite the NC model gets the truncated
        read-out :math:`\tau_R` (:class:`TruncatedNC`) in the stages with ``truncated=True``
    data : Dataset (training data, also the evaluation data of the observables)
    stages : sequence of :class:`Stage`
    N, dt, beta, batch : the run's defaults (a stage may override ``dt``, ``beta``, ``batch``)
    seed : the run's seed; stage ``i`` uses ``SeedSequence(seed, spawn_key=(i,))``
    theta0 (N, D), W0 (p, q) : initial state (default: the model's initialisation, drawn by the
        first stage's generator; ``W_0`` orthonormal, A1)
    observe : observable names (:mod:`mfpde.observables`), recorded every ``every`` steps and at
        the end of each stage, with ``step`` and ``t`` continuing across stages
    test : held-out Dataset for the observables that need one
    trackers : optional ``fn(stage_index, stage, solver) -> list of trackers`` added to the stage

    Returns
    -------
    StagedRun
    """
    from .dynamics.langevin import LangevinSolver
    from .engine import Controller, every as every_iv
    from .observables import Observers

    stages = list(stages)
    if not stages:
        raise ValueError("give at least one stage")
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be distinct, got {names}")
    R = None if R is None or math.isinf(float(R)) else _check_R(R)
    base = _untruncated(model)
    trunc = truncated(base, R) if (R is not None) else None
    results = []
    theta, W = theta0, W0
    k0, t0 = 0, 0.0
    for i, st in enumerate(stages):
        m = trunc if (trunc is not None and st.truncated) else base
        b = beta if st.beta is None else st.beta
        bt = batch if st.batch is None else (st.batch or None)
        solver = LangevinSolver(m, data, N=N, dt=st.dt or dt, beta=b, batch=bt,
                                train_W=st.train_W, seed=np.random.SeedSequence(seed,
                                                                                spawn_key=(i,)),
                                theta0=theta, W0=W)
        drv = driver_view(solver)
        sink = _OffsetSink(k0, t0)
        trs = []
        if observe:
            obs = Observers(list(observe), m, data, test=test, beta=b)
            trs.append(NanTolerantSeries(obs, sink, every_iv(int(every)), initial=True))
        extra = list(trackers(i, st, solver)) if trackers is not None else []
        info = Controller(drv, trs + extra, n_steps=st.steps).run()
        results.append(StageResult(st, solver, {k: np.asarray(v) for k, v in sink.series.items()},
                                   k0, t0, extra, info))
        theta = solver.theta.copy()
        W = None if solver.W is None else solver.W.copy()
        k0 += solver.k
        t0 += solver.t
    return StagedRun(results, base, data)


def two_stage(model, data, *, N: int, dt: float, beta: float, stage1_steps: int,
              stage2_steps: int, R=10.0, seed=0, theta0=None, W0=None, batch=None,
              stage2_truncated: bool = True, observe: Iterable[str] = (), every: int = 100,
              test=None, trackers: Callable | None = None, gibbs: dict | None = None) -> StagedRun:
    r"""The two-stage algorithm of Wu–Mondelli Section 5 (dynamics.md §7).

    Stage 1: ``W`` frozen at :math:`W_0` (default orthonormal, A1), ``stage1_steps`` Langevin steps
    towards the Gibbs minimiser of :math:`F^R(\cdot, W_0)`; Stage 2: ``stage2_steps`` steps of the
    joint flow from there. Theorem 5.3's setting is ``Gamma = 1``, sigmoid, ``lam = lam_W = 1/beta``
    and ``R`` large (the caller builds the model). ``gibbs``: keyword arguments of
    :func:`stage1_gibbs` to also compute the Stage-1 fixed-point reference at :math:`W_0`
    (stored in ``run.gibbs``). Other parameters as in :func:`run_stages`.
    """
    stages = [Stage("stage1", int(stage1_steps), train_W=False),
              Stage("stage2", int(stage2_steps), train_W=True, truncated=stage2_truncated)]
    run = run_stages(model, data, stages, N=N, dt=dt, beta=beta, batch=batch, seed=seed,
                     theta0=theta0, W0=W0, R=R, observe=observe, every=every, test=test,
                     trackers=trackers)
    if gibbs is not None:
        s1 = run["stage1"].solver
        run.gibbs = stage1_gibbs(s1.model, data, s1.W, beta, **dict(gibbs))
    return run


# --------------------------------------------------------------------------------------------
# configuration (proposal)
# --------------------------------------------------------------------------------------------
_STAGE_KEYS = {"name", "steps", "t_end", "train_W", "dt", "beta", "batch", "truncated"}


def stages_from_config(items, *, dt: float | None = None) -> list[Stage]:
    """Stages from the ``[[stages]]`` tables of a configuration (a list of dicts).

    Keys: ``name`` (default ``stage<i>``), ``steps`` or ``t_end`` (exactly one; ``t_end`` is a
    duration of the stage, ``steps = round(t_end / dt)`` with the stage's or the run's ``dt``),
    ``train_W`` (default true), ``dt``, ``beta`` (``"inf"`` allowed), ``batch``, ``truncated``.
    Errors name ``stages[i].key``.
    """
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError("stages: expected a non-empty array of tables ([[stages]])")
    out = []
    for i, it in enumerate(items):
        where = f"stages[{i}]"
        if not isinstance(it, dict):
            raise ValueError(f"{where}: expected a table, got {type(it).__name__}")
        bad = sorted(set(it) - _STAGE_KEYS)
        if bad:
            raise ValueError(f"{where}: unknown key(s) {bad}; allowed: {sorted(_STAGE_KEYS)}")
        if ("steps" in it) == ("t_end" in it):
            raise ValueError(f"{where}: give exactly one of steps and t_end")
        sdt = it.get("dt", dt)
        if "t_end" in it:
            if sdt is None:
                raise ValueError(f"{where}.t_end needs a dt (stage or run)")
            steps = int(round(float(it["t_end"]) / float(sdt)))
        else:
            steps = it["steps"]
            if isinstance(steps, bool) or not isinstance(steps, int):
                raise ValueError(f"{where}.steps = {steps!r}: expected an integer >= 0")
        beta = it.get("beta")
        if isinstance(beta, str):
            if beta.lower() not in ("inf", "infinity"):
                raise ValueError(f"{where}.beta = {beta!r}: expected a number > 0 or \"inf\"")
            beta = math.inf
        for key in ("train_W", "truncated"):
            if key in it and not isinstance(it[key], bool):
                raise ValueError(f"{where}.{key} = {it[key]!r}: expected true or false")
        try:
            out.append(Stage(name=str(it.get("name", f"stage{i + 1}")), steps=steps,
                             train_W=it.get("train_W", True),
                             dt=None if it.get("dt") is None else float(it["dt"]),
                             beta=None if beta is None else float(beta),
                             batch=it.get("batch"), truncated=it.get("truncated", True)))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError(f"stages: names must be distinct, got {names}")
    return out


def _beta(v):
    if isinstance(v, str) and v.lower() in ("inf", "infinity"):
        return math.inf
    return math.inf if v is None else float(v)


def run_from_config(raw: dict, *, scale_steps: float = 1.0) -> StagedRun:
    """Run a staged configuration (the proposed format) from Python.

    ``raw`` is the parsed TOML (``tomllib.load``) with ``[model]`` (``kind = "nc"``, the model
    keys of :func:`mfpde.models.make_model`, ``readout_R``), ``[data]`` (``kind``, ``seed``,
    the kind's parameters, ``test_n`` for a held-out sample of a population sampler, or a
    sub-table ``[data.test]`` built like ``[data]``), ``[dynamics]`` (``N``, ``dt``, ``beta``,
    ``batch``, ``seed``), ``[[stages]]``, ``[observe]`` (``every``, ``quantities``) and optionally
    ``[gibbs]`` (keyword arguments of :func:`stage1_gibbs`, computed at the ``W`` of the first
    stage with ``train_W = false``). ``scale_steps`` multiplies every stage's steps (quick
    checks). This is the interim entry point until ``mfpde run`` reads ``[[stages]]``.
    """
    from .data import make_dataset
    from .models import make_model

    model_cfg = dict(raw.get("model", {}))
    data_cfg = dict(raw.get("data", {}))
    dyn = dict(raw.get("dynamics", {}))
    if "stages" in dyn:                    # the [[dynamics.stages]] of a run file
        raw = {**raw, "stages": dyn.pop("stages")}
    dyn.pop("solver", None)
    obs = dict(raw.get("observe", {}))
    seed = int(dyn.get("seed", 0))
    test_cfg = data_cfg.pop("test", None)
    test_n = int(data_cfg.pop("test_n", 0))
    dkind = data_cfg.pop("kind")
    dseed = int(data_cfg.pop("seed", seed + 1))
    data = make_dataset(dkind, seed=dseed, **data_cfg)
    test = None
    if test_cfg is not None:
        tc = dict(test_cfg)
        test = make_dataset(tc.pop("kind", dkind), seed=int(tc.pop("seed", dseed)), **tc)
    elif test_n:
        sampler = make_dataset(dkind, seed=dseed, online=True, **{
            k: v for k, v in data_cfg.items() if k not in ("m", "n")})
        test = sampler.test_set(test_n, seed=dseed + 7919)
    R = model_cfg.pop("readout_R", None)
    model_cfg.pop("train_W", None)
    kind = model_cfg.pop("kind", "nc")
    model = make_model(kind, d=data.X.shape[1], q=data.Y.shape[1], **model_cfg)
    dt = float(dyn["dt"])
    stages = stages_from_config(raw.get("stages"), dt=dt)
    if scale_steps != 1.0:
        stages = [replace(s, steps=max(1, int(round(s.steps * scale_steps)))) for s in stages]
    beta = _beta(dyn.get("beta"))
    batch = dyn.get("batch") or None
    run = run_stages(model, data, stages, N=int(dyn["N"]), dt=dt, beta=beta, batch=batch,
                     seed=seed, R=R, observe=obs.get("quantities", ()),
                     every=int(obs.get("every", 100)), test=test)
    run.test = test
    gcfg = raw.get("gibbs")
    if gcfg is not None:
        frozen = [s for s in run.stages if not s.stage.train_W]
        if not frozen:
            raise ValueError("[gibbs] needs a stage with train_W = false (Stage 1)")
        s1 = frozen[0]
        b1 = beta if s1.stage.beta is None else s1.stage.beta
        run.gibbs = stage1_gibbs(s1.solver.model, data, s1.solver.W, b1, **dict(gcfg))
    return run


# ============================================================================ staged driver
class StagedDriver:
    r"""A particle driver run in stages (``[[dynamics.stages]]``): one
    :class:`~mfpde.dynamics.langevin.LangevinSolver` whose ``train_W`` (and ``beta``) change at
    the stage boundaries, so the controller, the observables, snapshots and checkpoints see one
    run (one time axis ``t = k dt``, one series). The two-stage algorithm of Section 5 is
    ``[{train_W = false, steps = K_1}, {train_W = true, steps = K_2}]``: Stage 1 relaxes the
    particles to the Gibbs minimiser of :math:`F^R(\cdot, W_0)` with ``W`` frozen, Stage 2 is the
    joint flow (dynamics.md §7).

    Parameters
    ----------
    base : LangevinSolver
    stages : list of dict
        ``{"name", "steps", "train_W", "beta" (optional)}`` in order.

    The stage of step ``k`` is a function of ``k`` alone, so a checkpoint (the base driver's
    state) resumes bitwise in the right stage.
    """

    def __init__(self, base, stages):
        self.base = base
        self.stages = [dict(s) for s in stages]
        self.ends = np.cumsum([int(s["steps"]) for s in self.stages])
        self._beta0 = base.beta
        self._apply(self.stage_index(base.k))

    # protocol
    @property
    def k(self) -> int:
        return self.base.k

    @property
    def t(self) -> float:
        return self.base.t

    @property
    def dt(self):
        return self.base.dt

    @property
    def last_risk(self) -> float:
        return self.base.last_risk

    def __getattr__(self, name):
        # model, N, W, theta, rng ... of the base driver (read by observables and the runner)
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def stage_index(self, k: int) -> int:
        """Index of the stage that step ``k -> k + 1`` belongs to (the last one past the end)."""
        return int(min(np.searchsorted(self.ends, k, side="right"), len(self.stages) - 1))

    @property
    def stage(self) -> dict:
        return self.stages[self.stage_index(self.base.k)]

    def _apply(self, i: int) -> None:
        st = self.stages[i]
        self.base.train_W = bool(st["train_W"]) and self.base.model.has_W
        self.base.beta = float(st.get("beta", self._beta0))

    def step(self, n: int = 1, t_end: float = math.inf) -> None:
        """Advance ``n`` steps, switching the stage's settings at its first step."""
        left = int(n)
        while left > 0:
            i = self.stage_index(self.base.k)
            self._apply(i)
            room = int(self.ends[i]) - self.base.k if i < len(self.stages) - 1 else left
            m = max(1, min(left, room))
            self.base.step(m)
            left -= m

    def state_dict(self) -> dict:
        return self.base.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.base.load_state_dict(state)
        self._apply(self.stage_index(self.base.k))

    def fields(self) -> dict:
        return self.base.fields()
