r"""Pruning of mean-field networks with second-order information (theory/sparse.md §5).

**Neuron pruning as group-sparse regression** (§5.1). With the first layer fixed, a two-layer or
NC network is linear in its *effective output weights* ``E`` (N, q):

.. math::

    f_N(X) = \frac{\Gamma}{N}\, S E,\qquad S = \sigma(\tilde X U^\top)\ (n\times N),\qquad
    E = A\ (\text{two-layer}),\quad E = A W\ (\text{NC, rows } e_j = W^\top a_j),

so keeping ``M`` neurons is sparse regression on the rows of ``E`` with design ``(Γ/N) S``:
``f(E) = (1/(2n))||(Γ/N) S E - Y||_F²``, Hessian ``C ⊗ I_q`` with ``C = Γ² SᵀS/(n N²)`` (N, N).
Neurons are groups (rows); the group saliency of removing the set ``P`` is
``½ tr(Ẽ_Pᵀ([C^{-1}]_PP)^{-1}Ẽ_P)`` (:mod:`mfpde.sparse.linalg` with ``(d, q)`` arrays), and the
OBS correction of the kept rows is the least-squares refit. The refit is the exact least-squares
solution on the kept neurons (SVD, minimal norm); ``C`` is damped only to choose the support.

**Width-M network.** The refitted function ``(Γ/N) S_J E'_J`` is the width-``M`` mean-field
network ``(Γ/M) Σ_{j∈J} ...`` with effective weights ``(M/N) E'_J``: two-layer ``a_j = (M/N)e'_j``;
NC ``a_j ← a_j + W(WᵀW)^{-1}((M/N)e'_j - Wᵀa_j)`` (the smallest change of ``a_j`` with
``Wᵀa_j = (M/N)e'_j``, ``W`` unchanged).

**Dropout** (metrics.md §7, sparse.md §5.2). Plain sub-network ``L_M(θ_J)`` (``1/M`` normalisation,
no refit); random-subset mean ``E_J L_M(θ_J) = L_N + ½(1/M - 1/N) E_x s_x²`` with
``s_x² = (1/(N-1)) Σ_j ||φ_j(x) - f_N(x)||²``, ``φ_j(x) = Γ σ(u_jᵀx̃) e_j``. Exact links:
(a) every refit loss on ``J`` is ``<= L_M(θ_J)`` (the plain sub-network is one candidate of the
least squares); (b) the best subset (enumeration) is ``<=`` the random-subset mean.

**First-layer pruning** (§5.3): layer-wise curvature ``H = X̃ᵀX̃/n`` (+ damping) shared by all
input-weight vectors ``u_j``, or the per-neuron Gauss–Newton curvature of the loss; OBC per
neuron, or one global threshold on the single-weight OBS saliencies followed by the joint OBS
correction of each ``u_j``, or plain magnitude.

**Iterate** (§5.4): prune to ``M`` (support + refit) → write the pruned function into the width-N
particles (pruned output weights 0) → a few mean-field (S)GD steps of
:class:`mfpde.dynamics.LangevinSolver` → re-estimate the curvature and re-prune; the iterate with
the best validation loss is kept.

Arrays: particles ``theta`` (N, D) in the model's row layout, ``X`` (n, d), ``Y`` (n, q).
"""
from __future__ import annotations

import inspect
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..activations import evaluate
from .linalg import (DEFAULT_DAMPING, factor, greedy_obs, obs_project, obs_saliency,
                     single_weight_saliency, symmetrize)

__all__ = ["Readout", "readout", "dropout_loss", "dropout_mean_loss", "dropout_mean_enumerated",
           "refit", "NeuronPruning", "prune_neurons", "prune_path", "FirstLayerPruning",
           "prune_first_layer", "first_layer_curvature", "IterativePruning", "iterative_prune", "load_network",
           "prune_run", "width_m_particles", "support_scores", "PRUNE_METHODS"]

#: neuron-selection methods of :func:`prune_neurons`
PRUNE_METHODS = ("greedy_obs", "topk_obs", "magnitude", "exact", "random")


# ------------------------------------------------------------------------------ read-out
@dataclass
class Readout:
    """Linear read-out of a network: ``f_N(X) = scale · S @ E``.

    ``S`` (n, N) first-layer features, ``E`` (N, q) effective output weights, ``scale = Γ/N``,
    ``Y`` (n, q) targets or None."""

    S: np.ndarray
    E: np.ndarray
    scale: float
    Y: np.ndarray | None = None

    @property
    def N(self) -> int:
        return self.S.shape[1]

    def loss(self, E=None, J=None) -> float:
        """``(1/(2n))||scale · S_J E - Y||²`` (all neurons when ``J`` is None)."""
        S = self.S if J is None else self.S[:, J]
        E = (self.E if J is None else self.E[J]) if E is None else E
        r = self.scale * (S @ E) - self.Y
        return 0.5 * float(np.sum(r * r)) / self.S.shape[0]

    def grad(self) -> np.ndarray:
        """``∇_E f = scale · Sᵀ(scale · S E - Y)/n`` (N, q)."""
        r = self.scale * (self.S @ self.E) - self.Y
        return self.scale * (self.S.T @ r) / self.S.shape[0]

    def curvature(self) -> np.ndarray:
        """``C = scale² SᵀS/n`` (N, N) (the Hessian is ``C ⊗ I_q``)."""
        return symmetrize(self.scale ** 2 * (self.S.T @ self.S) / self.S.shape[0])


def _check_prunable(model):
    if not getattr(model, "train_a", True):
        raise ValueError("the model's output weights are fixed (output = 'fixed'): neuron pruning "
                         "refits output weights, which this model does not have")


def readout(model, theta, X, Y=None, W=None) -> Readout:
    """The :class:`Readout` of a two-layer or NC network (module docstring).

    ``theta`` (N, D), ``X`` (n, d), ``Y`` (n, q) optional, ``W`` (p, q) for the NC model."""
    _check_prunable(model)
    theta = model.check_theta(theta)
    A, U = model.split(theta)
    Xa = model.prepare_X(X)
    S = evaluate(model.activation, Xa @ U.T)
    W = model.check_W(W)
    E = A @ W if W is not None else np.array(A)
    Yv = None if Y is None else model.prepare_Y(Y, Xa.shape[0])
    return Readout(np.ascontiguousarray(S), np.ascontiguousarray(E),
                   float(getattr(model, "Gamma", 1.0)) / theta.shape[0], Yv)


def _plain(R: Readout, J) -> float:
    """``L_M(θ_J)`` from the read-out: ``(1/(2n))||(Γ/M) S_J E_J - Y||²``."""
    J = np.asarray(J, dtype=np.int64)
    return R.loss(R.E[J] * (R.N / J.size), J)


def _dropout_mean(R: Readout, M: int) -> float:
    """Random-subset mean of ``L_M`` from the read-out (closed form, module docstring)."""
    N = R.N
    if not 1 <= M <= N:
        raise ValueError(f"M must be in [1, N = {N}], got {M}")
    if N == 1:
        return R.loss()
    f = R.scale * (R.S @ R.E)                                   # (n, q) = f_N
    Gs = N * R.scale                                            # phi_j = Gs s_ij e_j
    sq = (Gs ** 2) * ((R.S ** 2) @ np.sum(R.E ** 2, axis=1))    # sum_j ||phi_j(x_i)||^2 (n,)
    s2 = (sq - N * np.sum(f * f, axis=1)) / (N - 1)
    return R.loss() + 0.5 * (1.0 / M - 1.0 / N) * float(np.mean(s2))


def _small(fn):
    """Run ``fn`` with one BLAS thread when its products are small (:mod:`mfpde._blas`)."""
    import functools

    from .._blas import blas_threads

    @functools.wraps(fn)
    def wrapper(model, theta, X, *args, **kw):
        n, N = np.shape(X)[0], np.shape(theta)[0]
        with blas_threads(n * N * max(N, np.shape(X)[1])):
            return fn(model, theta, X, *args, **kw)
    return wrapper


def dropout_loss(model, theta, X, Y, J, W=None) -> float:
    """Plain sub-network loss ``L_M(θ_J)`` (``1/M`` normalisation, ``W`` unchanged, no refit;
    metrics.md §7), evaluated by the model itself."""
    J = np.asarray(J, dtype=np.int64)
    return float(model.risk(np.ascontiguousarray(theta[J]), X, Y, W))


def dropout_mean_loss(model, theta, X, Y, M: int, W=None) -> float:
    """Random-subset mean ``E_J L_M(θ_J) = L_N + ½(1/M - 1/N) mean_i s_{x_i}²`` (exact, ``J``
    uniform without replacement; module docstring)."""
    return _dropout_mean(readout(model, theta, X, Y, W), int(M))


def dropout_mean_enumerated(model, theta, X, Y, M: int, W=None) -> float:
    """The same mean by enumerating all ``C(N, M)`` subsets (tests, tiny ``N``)."""
    N = theta.shape[0]
    vals = [dropout_loss(model, theta, X, Y, list(J), W)
            for J in itertools.combinations(range(N), M)]
    return float(np.mean(vals))


def refit(R: Readout, J) -> tuple[np.ndarray, float]:
    """Exact least-squares output weights on the kept neurons ``J``: ``(E'_J (M, q), loss)``
    (minimal-norm SVD solution of ``min ||scale S_J E - Y||``)."""
    J = np.asarray(J, dtype=np.int64)
    E = np.linalg.lstsq(R.scale * R.S[:, J], R.Y, rcond=None)[0]
    return E, R.loss(E, J)


def width_m_particles(model, theta, J, E_J, W=None) -> np.ndarray:
    """Width-``M`` particles (M, D) computing ``scale · S_J E_J`` of the width-N read-out
    (module docstring): ``theta[J]`` with output weights mapped from ``(M/N) E_J``."""
    N = theta.shape[0]
    J = np.asarray(J, dtype=np.int64)
    M = J.size
    out = np.array(theta[J], dtype=np.float64, order="C")
    target = (M / N) * np.asarray(E_J, dtype=np.float64)
    pa = model.pa
    if W is None:
        out[:, :pa] = target
    else:
        A = out[:, :pa]
        proj = np.linalg.solve(W.T @ W, W.T)                   # (q, p) = (WᵀW)^{-1}Wᵀ
        out[:, :pa] = A + (target - A @ W) @ proj
    return out


def _full_particles(model, theta, J, E_J, W=None) -> np.ndarray:
    """Width-N particles computing the pruned function: output weights of ``J`` from ``E_J``
    (width-N scale), all others 0."""
    N = theta.shape[0]
    out = np.array(theta, dtype=np.float64, order="C")
    part = width_m_particles(model, theta, J, E_J * (N / len(J)), W)
    out[:, :model.pa] = 0.0
    out[np.asarray(J, dtype=np.int64)] = part
    return out


# ------------------------------------------------------------------------------ neurons
@dataclass
class NeuronPruning:
    """Result of :func:`prune_neurons`.

    ``keep`` (M,) kept neuron indices (increasing); ``E_keep`` (M, q) refitted effective output
    weights (width-N scale); ``theta`` (M, D) width-M particles and ``W`` (unchanged) computing the
    pruned network; losses on the training data: ``loss_full`` (``L_N``), ``loss_refit``,
    ``loss_plain`` (``L_M(θ_J)``, no refit), ``dropout_mean`` (random-subset mean at this ``M``);
    ``predicted`` = OBS prediction of ``loss_refit - loss_full`` (``sal(P) - ½ tr(GᵀC^{-1}G)``)
    and ``actual`` = ``loss_refit - loss_full``; ``delta`` the absolute damping of ``C``."""

    method: str
    keep: np.ndarray
    E_keep: np.ndarray
    theta: np.ndarray
    W: np.ndarray | None
    loss_full: float
    loss_refit: float
    loss_plain: float
    dropout_mean: float
    predicted: float
    actual: float
    delta: float
    seconds: float = 0.0

    @property
    def M(self) -> int:
        return int(self.keep.size)


def _newton_rows(R: Readout, damping):
    """Damped curvature factor, ``C_d^{-1}`` (N, N), gradient ``G`` and Newton point
    ``Ẽ = E - C_d^{-1}G`` (N, q)."""
    fac = factor(R.curvature(), damping)
    G = R.grad()
    step = fac.solve(G)
    return fac, fac.inverse(), G, R.E - step, float(np.sum(G * step))


def support_scores(R: Readout, method: str, damping="auto"):
    """Per-neuron ranking data: ``(scores, Ẽ, C_d^{-1}, gCg, delta)`` where ``scores`` (N,) orders
    neurons for the top-k methods (larger = keep): ``magnitude``: ``||e_j|| ||s_j||``;
    ``topk_obs``: ``||ẽ_j||`` of the Newton point."""
    fac, Cinv, G, Et, gCg = _newton_rows(R, damping)
    if method == "magnitude":
        scores = np.linalg.norm(R.E, axis=1) * np.linalg.norm(R.S, axis=0)
    else:
        scores = np.linalg.norm(Et, axis=1)
    return scores, Et, Cinv, gCg, fac.delta


def _top(scores, M):
    """Indices of the ``M`` largest scores (ties: lowest index), increasing."""
    order = np.lexsort((np.arange(scores.size), -scores))
    return np.sort(order[:M])


@_small
def prune_neurons(model, theta, X, Y, M: int, W=None, *, method: str = "greedy_obs",
                  damping="auto", rng: np.random.Generator | None = None) -> NeuronPruning:
    """Keep ``M`` of the ``N`` neurons and refit their output weights (module docstring).

    ``method``: ``greedy_obs`` (group OBC from the Newton point with inverse downdates),
    ``topk_obs`` (the ``M`` largest Newton-point rows), ``magnitude`` (largest output
    contributions ``||e_j|| ||s_j||``), ``exact`` (best subset by enumeration, tiny ``N``),
    ``random`` (uniform subset from ``rng``). ``damping`` of ``C`` as in
    :func:`mfpde.sparse.linalg.factor`.
    """
    t0 = time.perf_counter()
    if method not in PRUNE_METHODS:
        raise ValueError(f"unknown pruning method {method!r}; allowed: {', '.join(PRUNE_METHODS)}")
    R = readout(model, theta, X, Y, W)
    N = R.N
    if not isinstance(M, (int, np.integer)) or not 1 <= M <= N:
        raise ValueError(f"M must be an integer in [1, N = {N}], got {M!r}")
    loss_full = R.loss()
    _, Et, Cinv, gCg, delta = support_scores(R, "topk_obs", damping)
    if method == "greedy_obs":
        J = greedy_obs(Et, Cinv, int(M)).keep
    elif method == "topk_obs":
        J = _top(np.linalg.norm(Et, axis=1), M)
    elif method == "magnitude":
        J = _top(np.linalg.norm(R.E, axis=1) * np.linalg.norm(R.S, axis=0), M)
    elif method == "random":
        rng = np.random.default_rng(0) if rng is None else rng
        J = np.sort(rng.choice(N, size=M, replace=False))
    else:
        count = math.comb(N, M)
        if count > 200_000:
            raise ValueError(f"exact pruning enumerates C({N}, {M}) = {count} subsets; use N <= 20")
        best = (np.inf, None)
        for Jt in itertools.combinations(range(N), M):
            v = refit(R, list(Jt))[1]
            if v < best[0]:
                best = (v, np.array(Jt, dtype=np.int64))
        J = best[1]
    J = np.asarray(J, dtype=np.int64)
    E_J, loss_refit = refit(R, J)
    predicted = obs_saliency(Et, Cinv, J) - 0.5 * gCg
    W_out = None if W is None else np.array(W, dtype=np.float64)
    theta_M = width_m_particles(model, theta, J, E_J, W_out)
    return NeuronPruning(method=method, keep=J, E_keep=E_J, theta=theta_M, W=W_out,
                         loss_full=loss_full, loss_refit=loss_refit,
                         loss_plain=_plain(R, J), dropout_mean=_dropout_mean(R, int(M)),
                         predicted=float(predicted), actual=loss_refit - loss_full,
                         delta=float(delta), seconds=time.perf_counter() - t0)


@_small
def prune_path(model, theta, X, Y, W=None, *, method: str = "greedy_obs", Ms=None,
               damping="auto") -> dict[str, np.ndarray]:
    """Neuron pruning at every ``M`` in ``Ms`` (default ``1..N``) with nested supports.

    ``greedy_obs`` runs one OBC sweep down to one neuron (its removal order gives the support at
    every ``M``); ``topk_obs`` / ``magnitude`` rank once. Returns arrays over ``M``: ``M``,
    ``loss_refit``, ``loss_plain`` (``L_M`` of the same subset), ``dropout_mean``, ``predicted``,
    ``actual``, ``loss_full`` (scalar), and ``order`` (N,) — neurons from most to least kept.
    """
    R = readout(model, theta, X, Y, W)
    N = R.N
    Ms = np.arange(1, N + 1) if Ms is None else np.asarray(sorted(set(int(m) for m in Ms)))
    if Ms[0] < 1 or Ms[-1] > N:
        raise ValueError(f"every M must be in [1, N = {N}]")
    _, Et, Cinv, gCg, _ = support_scores(R, "topk_obs", damping)
    if method == "greedy_obs":
        res = greedy_obs(Et, Cinv, 1)
        order = np.concatenate([res.keep, res.order[::-1]])   # last removed first
    elif method in ("topk_obs", "magnitude"):
        sc = np.linalg.norm(Et, axis=1) if method == "topk_obs" else \
            np.linalg.norm(R.E, axis=1) * np.linalg.norm(R.S, axis=0)
        order = np.lexsort((np.arange(N), -sc))
    else:
        raise ValueError(f"prune_path supports greedy_obs, topk_obs, magnitude; got {method!r}")
    out = {k: np.zeros(Ms.size) for k in ("loss_refit", "loss_plain", "dropout_mean",
                                          "predicted", "actual")}
    loss_full = R.loss()
    for i, M in enumerate(Ms):
        J = np.sort(order[:M])
        out["loss_refit"][i] = refit(R, J)[1]
        out["loss_plain"][i] = _plain(R, J)
        out["dropout_mean"][i] = _dropout_mean(R, int(M))
        out["predicted"][i] = obs_saliency(Et, Cinv, J) - 0.5 * gCg
        out["actual"][i] = out["loss_refit"][i] - loss_full
    out["M"] = Ms
    out["loss_full"] = loss_full
    out["order"] = order
    return out


# ------------------------------------------------------------------------------ first layer
@dataclass
class FirstLayerPruning:
    """Result of :func:`prune_first_layer`: ``theta`` (N, D) with pruned input weights, ``mask``
    (N, d_in) kept weights; ``predicted`` = Σ_j ``½ δu_jᵀ H_j δu_j`` with the (damped) curvature
    used (``layer``: the layer-wise reconstruction error of the pre-activations; ``output``: the
    Gauss–Newton prediction of the loss increase), ``layer_error`` = ``½ Σ_j δu_jᵀ H δu_j`` with
    the undamped shared ``H = X̃ᵀX̃/n``; network losses ``loss_before``, ``loss_after``;
    ``sparsity`` achieved."""

    method: str
    curvature: str
    theta: np.ndarray
    mask: np.ndarray
    predicted: float
    layer_error: float
    loss_before: float
    loss_after: float
    sparsity: float


def first_layer_curvature(model, theta, X, W=None, curvature: str = "layer") -> list[np.ndarray]:
    """Undamped curvatures of :func:`prune_first_layer`: ``[H]`` (``"layer"``, shared) or one
    ``H_j`` (d_in, d_in) per neuron (``"output"``, Gauss–Newton block of the loss in ``u_j``)."""
    theta = model.check_theta(theta)
    Xa = model.prepare_X(X)
    n = Xa.shape[0]
    if curvature == "layer":
        return [symmetrize(Xa.T @ Xa / n)]
    if curvature != "output":
        raise ValueError(f"curvature must be 'layer' or 'output', got {curvature!r}")
    R = readout(model, theta, X, None, W)
    U = theta[:, model.pa:]
    D1 = evaluate(model.activation, Xa @ U.T, 1)                 # (n, N) sigma'
    w = (R.scale ** 2) * np.sum(R.E ** 2, axis=1)                # Γ²||e_j||²/N²
    return [symmetrize(w[j] * ((Xa.T * D1[:, j] ** 2) @ Xa) / n) for j in range(theta.shape[0])]


@_small
def prune_first_layer(model, theta, X, Y, sparsity: float, W=None, *, method: str = "global",
                      curvature: str = "layer",
                      damping: float = DEFAULT_DAMPING) -> FirstLayerPruning:
    r"""Unstructured pruning of the input weights ``u_j`` (sparse.md §5.3).

    Curvature of neuron ``j`` (damped ``H_j + δ_j I``, ``δ_j = damping · mean(diag H_j)``):

    - ``"layer"`` (§5.3): ``H = X̃ᵀX̃/n`` shared by all neurons — the layer-wise objective
      ``½ (u - u_j)ᵀ H (u - u_j)`` preserves the pre-activations;
    - ``"output"`` [derived here]: the Gauss–Newton block of the training loss in ``u_j``,
      ``H_j = (Γ²||e_j||²/N²) (1/n) Σ_i σ'(u_jᵀx̃_i)² x̃_i x̃_iᵀ`` (``e_j`` the effective output
      weight), so saliencies of different neurons are comparable.

    ``method``: ``obc`` (greedy OBS per neuron, ``round((1 - sparsity) d_in)`` weights kept in
    each), ``global`` (remove the ``round(sparsity N d_in)`` smallest single-weight saliencies
    ``u_ji²/(2[H_j^{-1}]_ii)`` over all neurons, then the joint OBS correction of each ``u_j`` on
    its kept set), ``magnitude`` (global magnitude threshold, no correction).
    """
    if method not in ("obc", "global", "magnitude"):
        raise ValueError(f"method must be 'obc', 'global' or 'magnitude', got {method!r}")
    if curvature not in ("layer", "output"):
        raise ValueError(f"curvature must be 'layer' or 'output', got {curvature!r}")
    if not (0.0 <= sparsity < 1.0):
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    theta = np.array(model.check_theta(theta), dtype=np.float64, order="C")
    Xa = model.prepare_X(X)
    n, d_in = Xa.shape
    N = theta.shape[0]
    pa = model.pa
    U = theta[:, pa:].copy()
    H = symmetrize(Xa.T @ Xa / n)
    Hs = first_layer_curvature(model, theta, X, W, curvature)
    Hd, Hinv = [], []
    for Hj in Hs:
        scale = float(np.mean(np.diag(Hj)))
        if scale > 0:
            f = factor(Hj, float(damping) if damping else None)
            Hd.append(Hj + f.delta * np.eye(d_in))
            Hinv.append(f.inverse())
        else:                                                    # a neuron without output
            Hd.append(np.zeros((d_in, d_in)))
            Hinv.append(np.eye(d_in) * np.inf)
    cur = (lambda j: 0) if curvature == "layer" else (lambda j: j)
    loss_before = float(model.risk(theta, X, Y, W))
    newU = np.zeros_like(U)
    mask = np.zeros_like(U, dtype=bool)
    if method == "obc":
        keep = int(round((1.0 - sparsity) * d_in))
        for j in range(N):
            if not np.all(np.isfinite(Hinv[cur(j)])):
                mask[j, :keep] = True
                newU[j, :keep] = U[j, :keep]
                continue
            r = greedy_obs(U[j], Hinv[cur(j)], keep)
            newU[j] = r.theta
            mask[j, r.keep] = True
    else:
        n_rm = int(round(sparsity * N * d_in))
        if method == "global":
            with np.errstate(divide="ignore"):
                score = np.array([single_weight_saliency(U[j], Hinv[cur(j)]) for j in range(N)])
        else:
            score = np.abs(U)
        order = np.lexsort((np.arange(N * d_in), score.ravel()))   # smallest first
        mask.ravel()[:] = True
        mask.ravel()[order[:n_rm]] = False
        for j in range(N):
            Q = np.flatnonzero(mask[j])
            if method == "global" and Q.size < d_in and np.all(np.isfinite(Hinv[cur(j)])):
                newU[j] = obs_project(U[j], Hinv[cur(j)], Q)
            else:
                newU[j, Q] = U[j, Q]
    dU = newU - U
    predicted = 0.5 * sum(float(dU[j] @ Hd[cur(j)] @ dU[j]) for j in range(N))
    layer_error = 0.5 * float(np.sum(dU * (dU @ H)))
    theta[:, pa:] = newU
    loss_after = float(model.risk(theta, X, Y, W))
    return FirstLayerPruning(method, curvature, theta, mask, predicted, layer_error, loss_before,
                             loss_after, 1.0 - float(mask.mean()))


# ------------------------------------------------------------------------------ iterate
@dataclass
class IterativePruning:
    """Result of :func:`iterative_prune`: ``best`` (:class:`NeuronPruning` of the round with the
    lowest validation loss), ``best_round``, ``history`` (one dict per round: ``round``,
    ``train_loss`` (refit, width M), ``val_loss``, ``changed`` (neurons entering the support),
    ``keep``, ``seconds``)."""

    best: NeuronPruning
    best_round: int
    history: list[dict[str, Any]] = field(default_factory=list)


def iterative_prune(model, theta, data, M: int, W=None, *, rounds: int = 5, sgd_steps: int = 20,
                    dt: float = 0.05, batch: int | None = None, method: str = "greedy_obs",
                    val=None, seed: int = 0, damping="auto") -> IterativePruning:
    """Prune → a few mean-field (S)GD steps → re-prune (module docstring, sparse.md §5.4).

    ``data``: training :class:`~mfpde.data.Dataset` (``X``, ``Y``); ``val``: validation set
    (default: the training set). Round 0 is the one-shot pruning of ``theta``; each further round
    writes the pruned function into the width-N particles (pruned output weights 0), runs
    ``sgd_steps`` noiseless :class:`~mfpde.dynamics.LangevinSolver` steps of size ``dt`` (full
    batch, or mini-batches of ``batch``; seed ``seed + round``; ``W`` moves for the NC model) and
    prunes again with the re-estimated curvature.
    """
    from ..dynamics import LangevinSolver
    X, Y = data.X, data.Y
    Xv, Yv = (X, Y) if val is None else (val.X, val.Y)
    theta_cur = np.array(theta, dtype=np.float64, order="C")
    W_cur = None if W is None else np.array(W, dtype=np.float64, order="C")
    history: list[dict[str, Any]] = []
    best, best_round, best_val = None, -1, np.inf
    prev = None
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        P = prune_neurons(model, theta_cur, X, Y, M, W_cur, method=method, damping=damping)
        v = float(model.risk(P.theta, Xv, Yv, P.W))
        changed = 0 if prev is None else int(np.setdiff1d(P.keep, prev).size)
        history.append({"round": r, "train_loss": P.loss_refit, "val_loss": v,
                        "changed": changed, "keep": P.keep.copy(),
                        "seconds": time.perf_counter() - t0})
        if v < best_val:
            best, best_round, best_val = P, r, v
        prev = P.keep
        if r == rounds:
            break
        theta0 = _full_particles(model, theta_cur, P.keep, P.E_keep, W_cur)
        solver = LangevinSolver(model, data, N=theta0.shape[0], dt=dt, beta=np.inf, batch=batch,
                                seed=seed + r, theta0=theta0, W0=W_cur)
        solver.step(int(sgd_steps))
        theta_cur = np.array(solver.theta)
        W_cur = None if solver.W is None else np.array(solver.W)
        history[-1]["seconds"] = time.perf_counter() - t0
    return IterativePruning(best, best_round, history)


# ------------------------------------------------------------------------------ run files
def _filter_kwargs(fn, values: dict) -> dict:
    names = set(inspect.signature(fn).parameters)
    return {k: v for k, v in values.items() if k in names}


def load_network(path, snapshot: int = -1):
    """Model, particles and data of a stored run file (``mfpde run`` output).

    Returns ``(model, theta (N, D), W (p, q) or None, data (Dataset), run)``: ``run =
    mfpde.load(path)``, ``theta = run.snapshot(snapshot).theta`` (the snapshot must keep every
    particle: ``observe.snapshot_particles = 0``), the model from ``run.config["model"]`` and the
    training data rebuilt from ``run.config["data"]`` (``make_dataset(kind, seed, **params)``).
    """
    from ..data import make_dataset
    from ..models import make_model
    from ..store import load
    run = load(path)
    if run.n_snapshots == 0:
        raise ValueError(f"{path}: no snapshots (set observe.snapshot_every > 0)")
    snap = run.snapshot(snapshot)
    N = int(run.config.get("dynamics", {}).get("N", snap.theta.shape[0]))
    if snap.theta.shape[0] != N or not np.array_equal(snap.index, np.arange(N)):
        raise ValueError(f"{path}: the snapshot keeps {snap.theta.shape[0]} of {N} particles; "
                         f"pruning needs all of them (observe.snapshot_particles = 0)")
    dc = dict(run.config.get("data", {}))
    kind = dc.pop("kind")
    seed = dc.pop("seed", 0)
    dc.pop("test_n", None)
    data = make_dataset(kind, seed=seed, **dc)
    if isinstance(data, tuple):
        data = data[0]
    mc = dict(run.config.get("model", {}))
    mkind = mc.pop("kind", "two_layer")
    mc.pop("train_W", None)
    mc.update(d=int(data.X.shape[1]), q=int(data.Y.shape[1]))
    model = make_model(mkind, **_filter_kwargs(make_model, mc))
    if model.D != snap.theta.shape[1]:
        raise ValueError(f"{path}: particles have D = {snap.theta.shape[1]}, the stored model "
                         f"has D = {model.D}")
    return model, np.array(snap.theta), (None if snap.W is None else np.array(snap.W)), data, run


def prune_run(path, M: int, *, method: str = "greedy_obs", snapshot: int = -1, iterate: bool = False,
              **kw):
    """Neuron pruning (or, with ``iterate=True``, :func:`iterative_prune` with ``kw``) of the
    network stored in a run file (:func:`load_network`)."""
    model, theta, W, data, _ = load_network(path, snapshot)
    if iterate:
        return iterative_prune(model, theta, data, M, W, method=method, **kw)
    return prune_neurons(model, theta, data.X, data.Y, M, W, method=method, **kw)
