r"""The sparse-recovery iterations as a driver (theory/sparse.md §2; protocol of
:mod:`mfpde.engine.protocol`).

One :class:`SparseDriver` runs one method on one problem. Each step maps ``θ_t`` to ``θ_{t+1}``
with ``||θ_{t+1}||_0 <= k``:

================  ============================================================================
``iht``           k-IHT (§2.1): ``θ ← T_k(θ - η∇f(θ))``
``topk_iobs``     Topk-I-OBS (§2.4): ``θ ← T_k(θ - η C^{-1}∇f(θ))``
``iobs_exact``    I-OBS (§2.3) with the best support by enumeration (tiny ``d``):
                  ``θ ← argmin_{||θ'||_0 <= k} ||θ' - θ̃||_C²``, ``θ̃ = θ - η C^{-1}∇f``
                  (computed from ``Cθ̃ = Cθ - η∇f``: only the ``k x k`` blocks of ``C`` are
                  inverted, so ``damping = "auto"`` leaves the Hessian undamped)
``topk_obs``      top-k + OBS correction (§2.5 item 1): ``Q = topk(|θ̃|)``, ``θ ← θ_OBS(Q)``
                  (restricted Newton ``θ_Q = C_QQ^{-1}(Cθ - η∇f)_Q``; quadratic ``f``, ``η = 1``:
                  least squares on ``Q``)
``greedy_obs``    greedy OBS / OBC (§2.5 item 2) from ``θ̃`` with inverse downdates
``obd``           diagonal OBS (§2.5 item 3): ``θ̃ = θ - η∇f/c``, keep the largest ``c_j θ̃_j²/2``
================  ============================================================================

``C`` is the curvature: the Hessian ``∇²f(θ_t)`` (``curvature = "hessian"``; for a quadratic
problem the constant ``H = XᵀX/n``) or the empirical Fisher ``F̂ = δI + (1/m)Σ g_i g_iᵀ``
inverted by Woodbury updates (``curvature = "fisher"``), damped ``C + δI`` as in
:func:`mfpde.sparse.linalg.factor` and symmetrised.

Step sizes ``eta``: a number, or ``"1/L"``, ``"2/(3L)"`` (textbook IHT steps, with ``L =
λ_max(∇²f)`` at ``θ_0``, an upper bound of the restricted constant ``L_s`` [choice]), ``"2/n"``,
``"2/(nL)"``, ``"n"`` (the unit step of ``½||Xθ - y||²``, Blumensath–Davies), ``"1"``,
``"paper"`` (the scaling of the published code, sparse.md §4: ``2/(nL)`` for IHT, ``2/n`` for the
second-order methods) or ``"auto"`` (``1/L`` for IHT, ``1`` for the others).

Quadratic problems use their structure (same iteration, fewer operations):

- ``∇f = Hθ - b`` and the loss (from the residual ``Xθ - y``) touch only the rows of ``H`` and
  the columns of ``X`` on the support of the ``k``-sparse iterate: ``O((d + n) k)``;
- the damped Newton direction is ``(H + δI)^{-1}(Hθ - b) = θ - θ_N - δ(H + δI)^{-1}θ`` with the
  Newton point ``θ_N = (H + δI)^{-1}b`` computed once from the Cholesky factor: ``O(d)`` per step
  when ``δ = 0``, one triangular solve pair otherwise.

Recording (``record=True``, the default): after step ``s`` (``s = 0, 1, ...``) the trace holds
``loss[s] = f(θ_s)`` (before the update, as in the published code), ``dist[s] = ||θ_{s+1} - θ*||``,
the support precision / recall of ``θ_{s+1}`` against ``supp θ*`` and the cumulative wall time.
Under a controller, ``record=False`` leaves observation to the observables (``fields()["x"]``).
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import scipy.linalg as sla

from .._blas import blas_threads
from ..kernels.sparse import (fused_iht, fused_topk_newton, rows_matvec, sparse_residual_sq,
                      support_stats, topk_indices)
from .linalg import DEFAULT_DAMPING, best_subset, factor, greedy_obs, symmetrize, woodfisher_inverse

__all__ = ["SparseDriver", "METHODS", "SECOND_ORDER", "ETA_RULES", "CURVATURES", "resolve_eta",
           "SparseDivergence"]

#: method name -> one-line description (sparse.md section)
METHODS = {
    "iht": "k-IHT, theta <- T_k(theta - eta grad f) (sparse.md §2.1)",
    "topk_iobs": "Topk-I-OBS, theta <- T_k(theta - eta C^-1 grad f) (§2.4)",
    "iobs_exact": "I-OBS with the best support by enumeration (§2.3; tiny d)",
    "topk_obs": "top-k + OBS correction (restricted Newton / least-squares refit) (§2.5.1)",
    "greedy_obs": "greedy OBS (OBC) with inverse downdates (§2.5.2)",
    "obd": "diagonal OBS (OBD) (§2.5.3)",
}
SECOND_ORDER = ("topk_iobs", "iobs_exact", "topk_obs", "greedy_obs", "obd")
ETA_RULES = ("auto", "paper", "1", "1/L", "2/(3L)", "2/n", "2/(nL)", "n")
CURVATURES = ("hessian", "fisher")

#: the sparse kernels are used while ``nnz(θ) * SPARSE_FRACTION <= d``
SPARSE_FRACTION = 4


class SparseDivergence(FloatingPointError):
    """The iterate or its loss became NaN / inf."""


def resolve_eta(eta, method: str, problem, theta0=None) -> float:
    """The numeric step ``η`` of ``method`` on ``problem`` for a rule of :data:`ETA_RULES` or a
    number (see the module docstring)."""
    if isinstance(eta, (int, float, np.floating, np.integer)) and not isinstance(eta, bool):
        v = float(eta)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"eta must be a finite number > 0, got {eta!r}")
        return v
    if eta not in ETA_RULES:
        raise ValueError(f"eta must be a number > 0 or one of {', '.join(ETA_RULES)}; got {eta!r}")
    if eta == "auto":
        eta = "1/L" if method == "iht" else "1"
    elif eta == "paper":
        eta = "2/(nL)" if method == "iht" else "2/n"
    theta0 = np.zeros(problem.d) if theta0 is None else theta0
    if eta == "1":
        return 1.0
    if eta == "n":
        return float(problem.n)
    if eta == "2/n":
        return 2.0 / problem.n
    L = problem.smoothness(theta0)
    if not L > 0:
        raise ValueError(f"the smoothness constant L = {L} is not positive")
    return {"1/L": 1.0 / L, "2/(3L)": 2.0 / (3.0 * L), "2/(nL)": 2.0 / (problem.n * L)}[eta]


_WARM = False


def _warmup() -> None:
    """Compile the kernels once per process (their first call is then not timed)."""
    global _WARM
    if _WARM:
        return
    v = np.array([0.5, -1.0, 0.25])
    idx = topk_indices(v, 2)
    M = np.eye(3)
    out = np.empty(3)
    fused_iht(M, M, v, v, v, 0.1, 2, out)
    fused_topk_newton(M, v, v, v, 0.1, 2, out)
    rows_matvec(M, idx, v[idx], v, out)
    sparse_residual_sq(M, idx, v[idx], v, out)
    support_stats(v, v, np.ones(3, dtype=bool))
    greedy_obs(v, M, 1)
    _WARM = True


class _Curvature:
    """The damped curvature of one step: matrix ``C + δI``, its inverse / solves, diagonal."""

    def __init__(self, drv: "SparseDriver", theta: np.ndarray):
        p = drv.problem
        self.drv = drv
        self.theta = theta
        self._M = self._inv = self._fac = None
        self.fisher = drv.curvature == "fisher"
        self.quadratic_h = p.quadratic and not self.fisher
        if self.fisher:
            G = p.sample_grads(theta)
            m = G.shape[0]
            rel = DEFAULT_DAMPING if drv.damping in ("auto", None, 0, 0.0) else float(drv.damping)
            mean_diag = float(np.sum(G * G)) / (m * G.shape[1])
            self.delta = rel * mean_diag if mean_diag > 0 else rel
            self._G = G
            self._M = symmetrize(G.T @ G / m)
            self._M[np.diag_indices_from(self._M)] += self.delta
        elif self.quadratic_h:
            self._fac = p.factor(drv.damping)
            self.delta = self._fac.delta
        else:
            H = p.hess(theta)
            self._fac = factor(H, drv.damping)
            self._M = symmetrize(H)
            self.delta = self._fac.delta
            if self.delta:
                self._M[np.diag_indices_from(self._M)] += self.delta

    def matrix(self) -> np.ndarray:
        """``C + δI`` (d, d)."""
        if self._M is None:                       # quadratic Hessian
            H = self.drv.problem.H
            self._M = H + self.delta * np.eye(H.shape[0]) if self.delta else H
        return self._M

    def inverse(self) -> np.ndarray:
        """``(C + δI)^{-1}`` (d, d)."""
        if self._inv is None:
            if self.fisher:
                self._inv = woodfisher_inverse(self._G, self.delta, self.drv.fisher_block)
            elif self.quadratic_h:
                self._inv = self.drv.problem.inverse(self.drv.damping)
            else:
                self._inv = self._fac.inverse()
        return self._inv

    def diag(self) -> np.ndarray:
        return np.ascontiguousarray(np.diag(self.matrix()))

    def direction(self, g: np.ndarray) -> np.ndarray:
        """``(C + δI)^{-1} g``; quadratic Hessian: ``θ - θ_N - δ(H + δI)^{-1}θ`` (module docstring)."""
        if self.fisher:
            return self.inverse() @ g
        if self.quadratic_h:
            p = self.drv.problem
            out = self.theta - p.newton_point(self.drv.damping)
            if self.delta:
                out -= self.delta * self._fac.solve(self.theta)
            return out
        return self._fac.solve(g)


class SparseDriver:
    """Iterations of one sparse-recovery method (module docstring).

    Parameters
    ----------
    problem : QuadraticProblem, SmoothProblem or LogisticRegression
    method : str
        One of :data:`METHODS`.
    sparsity : int
        ``k``, the number of non-zeros kept (``1 <= k <= d``).
    eta : float or str
        Step size or rule (module docstring).
    damping : "auto", None or float
        Relative damping of the curvature (:func:`mfpde.sparse.linalg.factor`).
    curvature : {"hessian", "fisher"}
    fisher_block : int or None
        Block size of the block-diagonal WoodFisher inverse.
    theta0 : ndarray (d,), optional
        Initial iterate (default 0).
    record : bool
        Keep the per-step trace (module docstring).
    loss_scale : float
        Factor applied to the recorded loss and ``last_risk`` (2 records the published
        ``(1/n)||Xθ - y||²`` instead of ``f``).

    Protocol (:mod:`mfpde.engine.protocol`): ``k`` steps taken, ``t = k·dt`` with ``dt = 1``,
    ``step(n, t_end)``, ``state_dict()`` / ``load_state_dict()`` (``x``, ``k``, ``last_risk``; the
    iteration is deterministic, so this is the complete state), ``fields() = {"x": θ}``,
    ``last_risk`` = loss before the last update (scaled by ``loss_scale``).
    """

    dt = 1.0

    def __init__(self, problem, method: str = "topk_iobs", sparsity: int = 1, *, eta="auto",
                 damping="auto", curvature: str = "hessian", fisher_block: int | None = None,
                 theta0=None, record: bool = True, loss_scale: float = 1.0):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
        if curvature not in CURVATURES:
            raise ValueError(f"curvature must be one of {', '.join(CURVATURES)}, got {curvature!r}")
        d = problem.d
        if not isinstance(sparsity, (int, np.integer)) or isinstance(sparsity, bool) \
                or not 1 <= sparsity <= d:
            raise ValueError(f"sparsity k must be an integer in [1, d = {d}], got {sparsity!r}")
        if damping not in ("auto", None) and not (isinstance(damping, (int, float)) and damping >= 0):
            raise ValueError(f"damping must be 'auto', None or a number >= 0, got {damping!r}")
        if curvature == "fisher" and method == "iht":
            raise ValueError("curvature = 'fisher' applies to the second-order methods, not iht")
        self.problem = problem
        self.method = method
        self.sparsity = int(sparsity)
        self.damping = damping
        self.curvature = curvature
        self.fisher_block = fisher_block
        self.loss_scale = float(loss_scale)
        self.theta = np.zeros(d) if theta0 is None else np.array(theta0, dtype=np.float64)
        if self.theta.shape != (d,):
            raise ValueError(f"theta0 must have shape ({d},), got {self.theta.shape}")
        with blas_threads(d * d * max(d, getattr(problem, "n", d) or d)):
            self.eta = resolve_eta(eta, method, problem, self.theta)
        self.eta_rule = eta
        self.k = 0
        self.last_risk = float("nan")
        self.record = bool(record)
        ts = problem.theta_star
        self._target = None if ts is None else np.ascontiguousarray(ts, dtype=np.float64)
        self._mask = None if ts is None else (self._target != 0)
        self._kstar = None if ts is None else int(np.count_nonzero(self._mask))
        self._g = np.empty(d)
        self._work = np.empty(getattr(problem, "n", 0) if problem.quadratic else 0)
        self._trace: dict[str, list] = {k: [] for k in ("loss", "dist", "precision", "recall",
                                                        "nnz", "time")}
        self._elapsed = 0.0
        _warmup()

    # ------------------------------------------------------------------ protocol
    @property
    def t(self) -> float:
        return self.k * self.dt

    def step(self, n: int = 1, t_end: float = math.inf) -> None:
        """Advance ``n`` iterations (``t_end`` is ignored: the step is fixed, ``dt = 1``)."""
        d = self.problem.d
        with blas_threads(d * d * max(d, getattr(self.problem, "n", d) or d)):
            for _ in range(int(n)):
                self._step_once()

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.theta.copy(), "k": int(self.k), "last_risk": float(self.last_risk)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        x = np.asarray(state["x"], dtype=np.float64)
        if x.shape != self.theta.shape:
            raise ValueError(f"state x has shape {x.shape}, driver has {self.theta.shape}")
        self.theta = x.copy()
        self.k = int(state["k"])
        self.last_risk = float(state.get("last_risk", float("nan")))

    def fields(self) -> dict[str, np.ndarray]:
        return {"x": self.theta}

    # ------------------------------------------------------------------ trace
    def history(self) -> dict[str, np.ndarray]:
        """The trace as arrays of shape (steps,): ``step`` (0-based), ``loss`` (before the
        update), ``dist``, ``rel_dist``, ``precision``, ``recall``, ``nnz`` (after), ``time``
        (cumulative seconds)."""
        h = {k: np.asarray(v, dtype=np.float64) for k, v in self._trace.items()}
        h["step"] = np.arange(h["loss"].size, dtype=np.int64)
        nr = float(np.linalg.norm(self._target)) if self._target is not None else float("nan")
        h["rel_dist"] = h["dist"] / nr if nr > 0 else h["dist"]
        return h

    # ------------------------------------------------------------------ one step
    def _loss_grad(self, theta):
        """``(f(θ), ∇f(θ))``; quadratic problems use the support of ``θ`` (module docstring)."""
        p = self.problem
        if not p.quadratic:
            return p.loss(theta), p.grad(theta)
        idx = np.flatnonzero(theta)
        g = self._g
        if idx.size * SPARSE_FRACTION <= theta.size:
            vals = np.ascontiguousarray(theta[idx])
            rows_matvec(p.H, idx, vals, p.b, g)
            rss = sparse_residual_sq(p.XT, idx, vals, p.y, self._work)
        else:
            np.subtract(p.H @ theta, p.b, out=g)
            r = p.X @ theta - p.y
            rss = float(r @ r)
        return 0.5 * rss / p.n, g

    def _fused(self, theta):
        """Compiled one-call steps of the quadratic problem (module docstring), or None."""
        p, m = self.problem, self.method
        if not p.quadratic:
            return None
        if m == "iht":
            rss, new = fused_iht(p.H, p.XT, p.b, p.y, theta, self.eta, self.sparsity, self._work)
        elif m == "topk_iobs" and self.curvature == "hessian" and p.factor(self.damping).delta == 0:
            rss, new = fused_topk_newton(p.XT, p.y, theta, p.newton_point(self.damping), self.eta,
                                         self.sparsity, self._work)
        else:
            return None
        return 0.5 * rss / p.n, new

    def _update(self, theta):
        """``(f(θ_t), θ_{t+1})``."""
        k, eta, m = self.sparsity, self.eta, self.method
        out = self._fused(theta)
        if out is not None:
            return out
        loss, g = self._loss_grad(theta)
        if m == "iht":
            tt = theta - eta * g
            idx = topk_indices(tt, k)
            new = np.zeros_like(tt)
            new[idx] = tt[idx]
            return loss, new
        if m == "iobs_exact" and self.damping == "auto" and self.curvature == "hessian":
            # only the k x k blocks H_QQ must be invertible: no damping needed (§2.3)
            M = self.problem.H if self.problem.quadratic else self.problem.hess(theta)
            return loss, self._iobs_exact(M, theta, g)
        C = _Curvature(self, theta)
        if m == "obd":
            c = C.diag()
            if np.any(c <= 0):
                raise np.linalg.LinAlgError("OBD needs a positive curvature diagonal; use damping")
            tt = theta - eta * g / c
            idx = topk_indices(np.ascontiguousarray(np.sqrt(c) * np.abs(tt)), k)
            new = np.zeros_like(tt)
            new[idx] = tt[idx]
            return loss, new
        if m == "iobs_exact":
            return loss, self._iobs_exact(C.matrix(), theta, g)
        tt = theta - eta * C.direction(g)
        if m == "topk_iobs":
            idx = topk_indices(tt, k)
            new = np.zeros_like(tt)
            new[idx] = tt[idx]
            return loss, new
        if m == "topk_obs":
            Q = topk_indices(tt, k)
            if self.problem.quadratic and not C.fisher:
                # (C θ)_Q - η g_Q with C θ = g + b + δθ (module docstring)
                rhs = (1.0 - eta) * g[Q] + self.problem.b[Q] + C.delta * theta[Q]
            else:
                M = C.matrix()
                rhs = M[Q] @ theta - eta * g[Q]
            MQQ = C.matrix()[np.ix_(Q, Q)]
            new = np.zeros_like(theta)
            try:
                new[Q] = sla.cho_solve(sla.cho_factor(MQQ, check_finite=False), rhs,
                                       check_finite=False)
            except (np.linalg.LinAlgError, sla.LinAlgError):
                new[Q] = np.linalg.lstsq(MQQ, rhs, rcond=None)[0]
            return loss, new
        if m == "greedy_obs":
            return loss, greedy_obs(tt, C.inverse(), k).theta
        raise AssertionError(m)  # pragma: no cover

    def _iobs_exact(self, M, theta, g):
        """``argmin_{||θ'||_0 <= k} ||θ' - θ̃||_M²`` by enumeration: ``b = Mθ̃ = Mθ - ηg``, the
        support maximising ``b_Qᵀ M_QQ^{-1} b_Q``, ``θ'_Q = M_QQ^{-1} b_Q``."""
        b = M @ theta - self.eta * g
        Q, _ = best_subset(M, b, self.sparsity)
        new = np.zeros_like(theta)
        new[Q] = np.linalg.lstsq(M[np.ix_(Q, Q)], b[Q], rcond=None)[0]
        return new

    def _step_once(self) -> None:
        t0 = time.perf_counter()
        loss, new = self._update(self.theta)
        if not (math.isfinite(loss) and math.isfinite(float(np.sum(new)))):
            raise SparseDivergence(f"{self.method}: non-finite iterate or loss at step {self.k}")
        self.theta = new
        self.k += 1
        self.last_risk = loss * self.loss_scale
        if self.record:
            tr = self._trace
            if self._target is not None:
                dist, nnz, tp = support_stats(new, self._target, self._mask)
                tr["dist"].append(dist)
                tr["precision"].append(tp / nnz if nnz else float("nan"))
                tr["recall"].append(tp / self._kstar if self._kstar else float("nan"))
            else:
                nnz = int(np.count_nonzero(new))
                for q in ("dist", "precision", "recall"):
                    tr[q].append(float("nan"))
            tr["loss"].append(self.last_risk)
            tr["nnz"].append(nnz)
            self._elapsed += time.perf_counter() - t0
            tr["time"].append(self._elapsed)
