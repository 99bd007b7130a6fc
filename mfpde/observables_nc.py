r"""Observables of the neural-collapse theory (Wu & Mondelli): registered on import by
:mod:`mfpde.observables`.

Every quantity is a registry entry (:func:`mfpde.observables.observable`), so any NC run records,
next to ``nc1``, the bound it must satisfy ("NC1 = x <= bound y") and the residuals of the
identities behind it, over time. Functions: :mod:`mfpde.metrics.stationarity`; theory:
validation.md §V5–§V7, §V9, metrics.md §3–§4; docs/neural-collapse.md.

==========================  ====================================================================
``eps_S``                   stationarity gap :math:`\varepsilon_S` of Definition 4.1 with the
                            entropy term: exact for beta = inf; for finite beta an ESTIMATE
                            (integration by parts + KDE Fisher information, metrics.md §4)
``eps_S_free``              entropy-free :math:`(\frac1N\sum_j\|\nabla\Psi(\theta_j)\|^2)^{1/2}`
``r12``                     :math:`\|H + KG/\lambda\|_F/\|H\|_F`, identity (12) (untruncated)
``r6``                      :math:`\|H - H_6(K, W)\|_F/\|H\|_F`, eq. (6) (untruncated)
``E2``                      :math:`\|H - \Gamma^{-1}W(W^\top W)^{-1}Y\|_F^2` (Theorem 4.2)
``E2_risk_part``            :math:`2nR/(\Gamma^2 s_{min}(W)^2)`, the :math:`\varepsilon_S`-free
                            term of the Theorem 4.2 bound
``E2_bound``                measured deterministic bound ``E2_risk_part + ||H + KG/lam||_F^2``
                            (untruncated)
``nc1_bound``               Corollary 4.4 bound :math:`16E_2/(T/2 - 4E_2)`; NaN where its
                            condition :math:`E_2\le T/8` fails
``nc1_bound_applicable``    1 where the condition of Corollary 4.4 holds, else 0
``lemma45_frozen``          :math:`\|\lambda E[aa^\top] + \mathrm{sym}(GH^\top) - \beta^{-1}I\|_{op}`
                            (Lemma 4.5, W frozen; snapshot, compare with ``1/beta``)
``lemma45_trained``         :math:`\|\lambda E[aa^\top] - \lambda_W WW^\top - \beta^{-1}I\|_{op}`
                            (= ``lemma45``; snapshot)
``nb_bound``                :math:`1/(1 + \beta\lambda_W s_{max}(W)^2)` (V7; 0 for beta = inf or
                            p <= q)
``train_error``             class-balanced training error (metrics.md §3)
``test_error``              class-balanced held-out error
``test_nc1``                NC1 of the held-out features under their labels
==========================  ====================================================================

NaN marks "not defined here" for the names in :data:`MAY_BE_NAN` (not a numerical failure).
Snapshots fluctuate at a noisy stationary state; the statements of Lemma 4.5 and of the
balancedness bound are about time averages (:class:`mfpde.engine.averages.TimeAverage`).
"""
from __future__ import annotations

import math

import numpy as np

from .metrics import collapse
from .metrics import stationarity as st
from .observables import observable

__all__ = ["MAY_BE_NAN"]

#: quantities that are NaN by design where they are not defined (``nc1_bound`` where the
#: condition of Corollary 4.4 fails; ``r12``, ``r6``, ``E2_bound`` for the truncated read-out or
#: ``lam = 0``); a series recorder must not treat their NaN as a numerical failure
MAY_BE_NAN = frozenset({"nc1_bound", "r12", "r6", "E2_bound"})   # registered with may_be_nan


def _A(ctx):
    return ctx.theta[:, :ctx.model.p]


def _untruncated(ctx) -> bool:
    return getattr(ctx.model, "readout_truncation", None) is None and ctx.model.lam > 0


def _kernel(ctx):
    return ctx._cached("nc_kernel", lambda: st.kernel_matrix(ctx.model, ctx.theta, ctx.data.X))


def _snap(ctx):
    """Row-layout ``(H, Z, G, R)`` of the evaluation data (cached)."""
    def make():
        H = ctx.features()
        Z, G, R = st.residual_matrices(H, ctx.W, ctx.data.Y, ctx.model.Gamma)
        return H, Z, G, R
    return ctx._cached("nc_snapshot", make)


@observable("eps_S", needs=("theta", "model", "data"),
            doc="stationarity gap eps_S with the entropy term (ESTIMATE for finite beta)")
def _eps_S(ctx):
    g = st.stationarity_gap(ctx.model, ctx.theta, ctx.data.X, ctx.data.Y, ctx.get("W"),
                            ctx.beta)
    return g.eps_S


@observable("eps_S_free", needs=("theta", "model", "data"), uses_gradient=True,
            doc="entropy-free stationarity gap (E|grad Psi|^2)^(1/2)")
def _eps_S_free(ctx):
    g = ctx.gradient().theta
    return math.sqrt(float(np.einsum("ij,ij->", g, g)) / g.shape[0])


@observable("r12", may_be_nan=True, needs=("theta", "W", "model", "data"),
            doc="identity (12) residual |H + K G/lam|_F/|H|_F")
def _r12(ctx):
    if not _untruncated(ctx):
        return math.nan
    H, _, G, _ = _snap(ctx)
    nH = float(np.linalg.norm(H))
    return float(np.linalg.norm(H + _kernel(ctx) @ G / ctx.model.lam)) / nH if nH else math.nan


@observable("r6", may_be_nan=True, needs=("theta", "W", "model", "data"),
            doc="eq. (6) residual |H - H_6(K, W)|_F/|H|_F")
def _r6(ctx):
    if not _untruncated(ctx):
        return math.nan
    H = _snap(ctx)[0]
    return st.r6(H, _kernel(ctx), ctx.W, ctx.data.Y, ctx.model.Gamma, ctx.model.lam)


@observable("E2", needs=("theta", "W", "model", "data"),
            doc="|E_2|_F^2 = |H - W (W^T W)^-1 Y / Gamma|_F^2 (Theorem 4.2)")
def _E2(ctx):
    return ctx._cached("nc_E2", lambda: st.e2(_snap(ctx)[0], ctx.W, ctx.data.Y,
                                             ctx.model.Gamma))


@observable("E2_risk_part", needs=("theta", "W", "model", "data"),
            doc="2 n R/(Gamma^2 s_min(W)^2), the eps_S-free term of the E_2 bound")
def _E2_risk_part(ctx):
    R = _snap(ctx)[3]
    smin = collapse.singular_values(ctx.W)[0]
    return 2.0 * ctx.data.X.shape[0] * R / (ctx.model.Gamma**2 * smin**2)


@observable("E2_bound", may_be_nan=True, needs=("theta", "W", "model", "data"),
            doc="measured bound of |E_2|^2: E2_risk_part + |H + K G/lam|_F^2")
def _E2_bound(ctx):
    if not _untruncated(ctx):
        return math.nan
    H, _, G, _ = _snap(ctx)
    E = H + _kernel(ctx) @ G / ctx.model.lam
    return _E2_risk_part(ctx) + float(np.einsum("ij,ij->", E, E))


def _cor44(ctx):
    return ctx._cached("nc_cor44", lambda: st.nc1_bound(_E2(ctx), ctx.W, ctx.model.Gamma,
                                                      ctx.data.labels))


@observable("nc1_bound", may_be_nan=True, needs=("theta", "W", "model", "labels"),
            doc="Corollary 4.4 bound on NC1 with the measured E_2 (NaN where not applicable)")
def _nc1_bound(ctx):
    return _cor44(ctx)[0]


@observable("nc1_bound_applicable", needs=("theta", "W", "model", "labels"),
            doc="1 if the condition E_2 <= T/8 of Corollary 4.4 holds, else 0")
def _nc1_bound_ok(ctx):
    return 1.0 if _cor44(ctx)[1] else 0.0


@observable("lemma45_frozen", needs=("theta", "W", "model", "data"),
            doc="|lam E[aa^T] + sym(G H^T) - I/beta|_op (Lemma 4.5, W frozen)")
def _lemma45_frozen(ctx):
    s = ctx._cached("nc_moments", lambda: st.second_moments(ctx.model, ctx.theta, ctx.data.X,
                                                           ctx.data.Y, ctx.W))
    return st.lemma45_frozen(s["EaaT"], s["GHt"], ctx.model.lam, ctx.beta)


@observable("lemma45_trained", needs=("theta", "W", "model"),
            doc="|lam E[aa^T] - lam_W W W^T - I/beta|_op (Lemma 4.5, W trained)")
def _lemma45_trained(ctx):
    A = _A(ctx)
    return st.lemma45_trained(A.T @ A / A.shape[0], ctx.W @ ctx.W.T, ctx.model.lam,
                              ctx.model.lam_W, ctx.beta)


@observable("nb_bound", needs=("W", "model"),
            doc="V7 lower bound 1/(1 + beta lam_W s_max(W)^2) of NB (0: no bound)")
def _nb_bound(ctx):
    return st.nb_lower_bound(ctx.W @ ctx.W.T, ctx.beta, ctx.model.lam_W, q=ctx.W.shape[1])


def _test_features(ctx):
    return ctx._cached("nc_test_features", lambda: ctx.model.features(ctx.theta, ctx.test.X))


def _outputs(ctx, H):
    """Network outputs from features (n, p): ``Gamma H W`` with ``W``, else ``H`` (two-layer)."""
    W = ctx.get("W")
    return ctx.model.Gamma * (H @ W) if W is not None else H


@observable("train_error", needs=("theta", "model", "labels"),
            doc="class-balanced training error")
def _train_error(ctx):
    return collapse.balanced_error(_outputs(ctx, ctx.features()), ctx.data.labels)


@observable("test_error", needs=("theta", "model", "test"),
            doc="class-balanced held-out error")
def _test_error(ctx):
    return collapse.balanced_error(_outputs(ctx, _test_features(ctx)), ctx.test.labels)


@observable("test_nc1", needs=("theta", "model", "test"),
            doc="NC1 of the held-out features")
def _test_nc1(ctx):
    return collapse.nc1(_test_features(ctx), ctx.test.labels)
