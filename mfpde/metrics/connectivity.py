r"""Connectivity of mean-field networks: low-loss paths between two solutions
(theory/metrics.md §7, validation.md §V11).

A path is a list of *knots* (parameter states of width ``N`` networks); segment ``j`` is the
straight line :math:`(1-s)K_j + sK_{j+1}`, ``s`` in ``[0, 1]``, in parameter space. The loss along
a path is computed from the parameters of every point by a forward pass.

**Five-segment path** (two-layer :math:`\sigma_* = a\sigma(u^\top\tilde x)` and NC networks that
share ``W``; even ``N``; halves ``I_1 = {0..N/2-1}``, ``I_2 = {N/2..N-1}``):

=====  ================================================  ==========================================
seg    moves (knot to knot)                              output along the segment
=====  ================================================  ==========================================
P1     :math:`(a_{I_1}, a_{I_2})\to(2a^A_{I_1}, 0)`       :math:`(1-s)f^A_N + s f^A_{N/2}(I_1)`
P2     :math:`u_{I_2}\to u^B_{I_2}` (``a_{I_2} = 0``)     constant
P3     :math:`(2a^A_{I_1}, 0)\to(0, 2a^B_{I_2})`          :math:`(1-s)f^A_{N/2}(I_1) + s f^B_{N/2}(I_2)`
P4     :math:`u_{I_1}\to u^B_{I_1}` (``a_{I_1} = 0``)     constant
P5     :math:`(0, 2a^B_{I_2})\to(a^B_{I_1}, a^B_{I_2})`   :math:`(1-s)f^B_{N/2}(I_2) + s f^B_N`
=====  ================================================  ==========================================

(``a`` holds the output weights: NC ``a`` in :math:`R^p` with ``W`` fixed, so the neuron output
:math:`\Gamma W^\top a\sigma(u^\top x)` is linear in ``a``.) The loss is convex in the output and
the output is affine (or constant) along every segment, so the loss on a segment is at most the
larger of its endpoint losses and

.. math::

    \text{barrier} = \max_\tau L(\pi(\tau)) - \max\{L_N(A), L_N(B)\}
    \le \max\{L_{N/2}(A_{I_1}) - L_N(A),\; L_{N/2}(B_{I_2}) - L_N(B),\; 0\},

the larger of the two half-dropout gaps (exact; :attr:`ConnectResult.holds` checks it to
round-off).

**Nine-segment path for the Pham–Nguyen network** [choice; the segment order is not given by the
papers]. Halves ``I_1, I_2`` of the first layer and ``J_1, J_2`` of the second (``n_1, n_2``
even). Only ``w_3`` enters the output affinely (with ``phi3`` the identity), so the path alternates
*affine* segments, which move ``w_3`` only (dropout of one half of the second layer, or a swap of
the active half), and *constant* segments, which move the weights of the silent second-layer half
(``w_3 = 0`` there) and of the first-layer units that no active unit reads:

=====  =========================================================================  ==============
seg    moves                                                                      output at end
=====  =========================================================================  ==============
1      :math:`w_3\to(0, 2w^A_{3,J_2})`                                            :math:`A[:, J_2]`
2      :math:`w_2(:, J_1)\to(2w^A_2(I_1, J_1); 0)`                                constant
3      :math:`w_3\to(2w^A_{3,J_1}, 0)`                                            :math:`A[I_1, J_1]`
4      :math:`w_1(I_2)\to w^B_1(I_2)`, :math:`w_2(:, J_2)\to(0; 2w^B_2(I_2, J_2))`  constant
5      :math:`w_3\to(0, 2w^B_{3,J_2})`                                            :math:`B[I_2, J_2]`
6      :math:`w_1(I_1)\to w^B_1(I_1)`, :math:`w_2(:, J_1)\to w^B_2(:, J_1)`         constant
7      :math:`w_3\to(2w^B_{3,J_1}, 0)`                                            :math:`B[:, J_1]`
8      :math:`w_2(:, J_2)\to w^B_2(:, J_2)`                                       constant
9      :math:`w_3\to w^B_3`                                                       :math:`B`
=====  =========================================================================  ==============

``A[K_1, K_2]`` is the dropout sub-network keeping first-layer units ``K_1`` (``:`` = all) and
second-layer units ``K_2``, normalisations ``1/M_1``, ``1/M_2``. In segment 4 the active units
``J_1`` read only ``I_1`` (``w_2(I_2, J_1) = 0`` since segment 2), in segment 6 the active units
``J_2`` read only ``I_2``, so every constant segment leaves the output unchanged. With ``phi3``
the identity the same convexity argument gives

.. math::

    \text{barrier}\le\max\{L(A[:,J_2]) - L(A),\ L(A[I_1,J_1]) - L(A),\ L(B[I_2,J_2]) - L(B),\
    L(B[:,J_1]) - L(B),\ 0\};

for another ``phi3`` the path is still computed but the inequality is not claimed
(:attr:`ConnectResult.applies` is False).

**Straight line** (baseline, :func:`straight_line`): :math:`(1-s)\theta^A + s\theta^B` in one
segment (neurons matched by index; no convexity argument applies).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..activations import evaluate
from ..models.three_layer_pn import PNWeights
from .dropout import Network

__all__ = ["Path", "ConnectResult", "five_segment_path", "pn_path", "straight_line", "make_path",
           "path_losses", "connect", "check_comparable"]


# ============================================================================ paths
@dataclass
class Path:
    """A piecewise-linear path in parameter space.

    Attributes
    ----------
    knots : list of ndarray (N, D) or PNWeights
        Parameter states ``K_0 = A, ..., K_J = B``; segment ``j`` is ``(1-s)K_j + sK_{j+1}``.
    segments : list of str
        Names of the ``J`` segments.
    affine : list of bool
        Whether the output is affine in ``s`` (True) or constant (False) along each segment.
    labels : list of str
        Names of the knots (``"A"``, ``"A[I1] (N/2)"``, ...).
    dropout_knots : list of (int, str)
        Knots that are dropout sub-networks and the endpoint (``"A"`` or ``"B"``) they are a
        sub-network of: their gaps form the bound.
    kind : str
        ``"five_segment"``, ``"pn_nine_segment"`` or ``"straight"``.
    """

    knots: list
    segments: list
    affine: list
    labels: list
    dropout_knots: list
    kind: str
    W: np.ndarray | None = None

    @property
    def n_segments(self) -> int:
        return len(self.segments)

    def point(self, j: int, s: float):
        """Parameters at ``s`` in ``[0, 1]`` on segment ``j``."""
        a, b = self.knots[j], self.knots[j + 1]
        if isinstance(a, PNWeights):
            return PNWeights(*((1.0 - s) * x + s * y for x, y in zip(a.arrays(), b.arrays())))
        return (1.0 - s) * a + s * b


def _halves(n: int, what: str) -> int:
    if n < 2 or n % 2:
        raise ValueError(f"the path needs an even {what} >= 2 (two halves), got {n}")
    return n // 2


def check_comparable(A: Network, B: Network) -> None:
    """Raise ``ValueError`` (one line) unless ``A`` and ``B`` are networks of the same model,
    width and (NC) the same ``W``."""
    if type(A.model) is not type(B.model) or A.model.describe() != B.model.describe():
        da, db = A.model.describe(), B.model.describe()
        diff = [k for k in sorted(set(da) | set(db)) if da.get(k) != db.get(k)]
        what = f"model.{diff[0]} = {da.get(diff[0])!r} vs {db.get(diff[0])!r}" if diff \
            else f"{type(A.model).__name__} vs {type(B.model).__name__}"
        raise ValueError(f"the two networks are not comparable: {what}")
    if A.width != B.width:
        raise ValueError(f"the two networks are not comparable: widths {A.width} vs {B.width}")
    if A.W is not None and not np.array_equal(A.W, B.W):
        raise ValueError("the two NC networks do not share W (max |W_A - W_B| = "
                         f"{float(np.abs(A.W - B.W).max()):.3g}); the five-segment path needs a "
                         "common W (e.g. train_W = false with the same W_0)")


def five_segment_path(A: Network, B: Network) -> Path:
    """The five-segment path of the module docstring (two-layer and NC networks sharing ``W``)."""
    check_comparable(A, B)
    if A.is_pn:
        raise ValueError("five_segment_path is for two-layer and NC networks; use pn_path")
    if not A.model.train_a:
        raise ValueError("the five-segment path scales the output weights a: it needs a model "
                         "with trainable output weights (output = 'trainable')")
    N = A.width
    h = _halves(N, "width N")
    pa = A.model.pa
    tA, tB = A.params, B.params
    aA, uA, aB, uB = tA[:, :pa], tA[:, pa:], tB[:, :pa], tB[:, pa:]

    def state(a1, a2, u1, u2):
        return np.ascontiguousarray(np.hstack([np.vstack([a1, a2]), np.vstack([u1, u2])]))

    z = np.zeros_like(aA[h:])
    zA = np.zeros_like(aA[:h])
    knots = [tA.copy(),
             state(2 * aA[:h], z, uA[:h], uA[h:]),
             state(2 * aA[:h], z, uA[:h], uB[h:]),
             state(zA, 2 * aB[h:], uA[:h], uB[h:]),
             state(zA, 2 * aB[h:], uB[:h], uB[h:]),
             tB.copy()]
    return Path(knots, ["P1", "P2", "P3", "P4", "P5"], [True, False, True, False, True],
                ["A", f"A[I1] (N/2 = {h})", "A[I1], u_I2 = u^B_I2", f"B[I2] (N/2 = {h})",
                 "B[I2], u_I1 = u^B_I1", "B"],
                [(1, "A"), (3, "B")], "five_segment", None if A.W is None else A.W.copy())


def pn_path(A: Network, B: Network) -> Path:
    """The nine-segment Pham–Nguyen path of the module docstring."""
    check_comparable(A, B)
    if not A.is_pn:
        raise ValueError("pn_path is for Pham–Nguyen networks; use five_segment_path")
    a, b = A.params, B.params
    h1 = _halves(a.n1, "first-layer width n1")
    h2 = _halves(a.n2, "second-layer width n2")
    I1, I2, J1, J2 = slice(0, h1), slice(h1, None), slice(0, h2), slice(h2, None)

    def w3(v1, v2):
        return np.concatenate([v1, v2])

    zJ1, zJ2 = np.zeros(h2), np.zeros(a.n2 - h2)
    K = [a.copy()]
    k1 = a.copy()
    k1.w3[...] = w3(zJ1, 2 * a.w3[J2])
    K.append(k1)
    k2 = k1.copy()
    k2.w2[I1, J1] = 2 * a.w2[I1, J1]
    k2.w2[I2, J1] = 0.0
    K.append(k2)
    k3 = k2.copy()
    k3.w3[...] = w3(2 * a.w3[J1], zJ2)
    K.append(k3)
    k4 = k3.copy()
    k4.w1[I2] = b.w1[I2]
    k4.w2[I1, J2] = 0.0
    k4.w2[I2, J2] = 2 * b.w2[I2, J2]
    K.append(k4)
    k5 = k4.copy()
    k5.w3[...] = w3(zJ1, 2 * b.w3[J2])
    K.append(k5)
    k6 = k5.copy()
    k6.w1[I1] = b.w1[I1]
    k6.w2[:, J1] = b.w2[:, J1]
    K.append(k6)
    k7 = k6.copy()
    k7.w3[...] = w3(2 * b.w3[J1], zJ2)
    K.append(k7)
    k8 = k7.copy()
    k8.w2[:, J2] = b.w2[:, J2]
    K.append(k8)
    K.append(b.copy())
    labels = ["A", "A[:, J2]", "A[:, J2] (J1 reads I1)", "A[I1, J1]", "A[I1, J1] (J2 <- B[I2, J2])",
              "B[I2, J2]", "B[I2, J2] (J1 <- B[:, J1])", "B[:, J1]", "B[:, J1] (J2 <- B)", "B"]
    return Path(K, [f"S{j}" for j in range(1, 10)],
                [True, False, True, False, True, False, True, False, True], labels,
                [(1, "A"), (3, "A"), (5, "B"), (7, "B")], "pn_nine_segment")


def straight_line(A: Network, B: Network) -> Path:
    """The straight line :math:`(1-s)\\theta^A + s\\theta^B` (one segment; ``W`` shared)."""
    check_comparable(A, B)
    ka = A.params.copy()
    kb = B.params.copy()
    return Path([ka, kb], ["line"], [False], ["A", "B"], [], "straight",
                None if A.W is None else A.W.copy())


def make_path(A: Network, B: Network) -> Path:
    """:func:`pn_path` for Pham–Nguyen networks, else :func:`five_segment_path`."""
    return pn_path(A, B) if A.is_pn else five_segment_path(A, B)


def _net_at(A: Network, params, W) -> Network:
    return Network(A.model, params, W)


#: entries of one ``(block, N)`` activation tile in :func:`_readout_segment`
_TILE = 1 << 22


def _readout_segment(model, Ka, Kb, W, s, Xa):
    r"""Outputs ``(P, n, q)`` of the read-out network at the parameters :math:`(1-s)K_a + sK_b`
    for every ``s``: the forward pass :math:`f(x) = rac1N\sum_i b_i(s)\,\sigma(u_i(s)^	op
    	ilde x)`, ``b = a`` (two-layer) or :math:`\Gamma W^	op a` (NC), organised so that the
    activations of neurons whose incoming weights ``u`` do not move along the segment are
    evaluated once, and neurons whose output weights are zero at both ends (hence all along the
    segment) are skipped: they contribute exactly zero."""
    N = Ka.shape[0]
    Aa, Ua = model.split(Ka)
    Ab, Ub = model.split(Kb)
    P = len(s)
    sv = np.asarray(s, dtype=np.float64)
    As = (1.0 - sv)[:, None, None] * Aa[None] + sv[:, None, None] * Ab[None]   # (P, N, pa)
    Bs = As if W is None else model.Gamma * (As @ W)                         # (P, N, q)
    q = Bs.shape[2]
    live = np.any(Aa != 0, axis=1) | np.any(Ab != 0, axis=1)
    moving = np.any(Ua != Ub, axis=1) & live
    fixed = live & ~moving
    n = Xa.shape[0]
    out = np.zeros((P, n, q))
    blk = max(1, _TILE // max(1, N))
    iF, iM = np.flatnonzero(fixed), np.flatnonzero(moving)
    for a in range(0, n, blk):
        e = min(n, a + blk)
        Xb = Xa[a:e]
        if iF.size:
            S = evaluate(model.activation, Xb @ Ua[iF].T)                    # (nb, Nf)
            BF = np.ascontiguousarray(Bs[:, iF].transpose(1, 0, 2)).reshape(iF.size, P * q)
            out[:, a:e] = (S @ BF).reshape(e - a, P, q).transpose(1, 0, 2)
        if iM.size:
            for k, v in enumerate(sv):
                U = (1.0 - v) * Ua[iM] + v * Ub[iM]
                out[k, a:e] += evaluate(model.activation, Xb @ U.T) @ Bs[k, iM]
    return out / N


def _pn_segment(model, Ka: PNWeights, Kb: PNWeights, s, X):
    """Outputs ``(P, n, 1)`` of the Pham–Nguyen network at ``(1-s)K_a + sK_b``: when only ``w3``
    moves, the second-layer activations are computed once (``yhat = phi3(P_2 w_3(s)/n_2)``);
    otherwise one full forward pass per point."""
    sv = np.asarray(s, dtype=np.float64)
    if np.array_equal(Ka.w1, Kb.w1) and np.array_equal(Ka.w2, Kb.w2):
        P1 = evaluate(model.phi1, X @ Ka.w1.T)
        P2 = evaluate(model.phi2, P1 @ Ka.w2 / Ka.n1)                         # (n, n2)
        W3 = (1.0 - sv)[:, None] * Ka.w3[None] + sv[:, None] * Kb.w3[None]    # (P, n2)
        H3 = (W3 @ P2.T) / Ka.n2                                              # (P, n)
        return evaluate(model.phi3, H3)[:, :, None]
    out = []
    for v in sv:
        w = PNWeights(*((1.0 - v) * x + v * y for x, y in zip(Ka.arrays(), Kb.arrays())))
        out.append(model.forward(w, X))
    return np.array(out)[:, :, None]


def path_losses(A: Network, path: Path, X, Y, points: int = 40):
    """Loss at ``points`` equally spaced values of ``s`` on every segment (endpoints included,
    each knot evaluated once). Returns ``(tau, loss, segment)``: ``tau = j + s`` in
    ``[0, J]``, arrays of length ``J (points - 1) + 1``.

    Every point is a forward pass of the network at its parameters (organised to reuse the
    activations of neurons that do not move along a segment, :func:`_readout_segment`,
    :func:`_pn_segment`); the output formulas of the module docstring are not used."""
    points = int(points)
    if points < 2:
        raise ValueError(f"points must be an integer >= 2 (per segment), got {points}")
    model = A.model
    if A.is_pn:
        Xa = model.prepare_X(X)
        Yf = model.prepare_Y(Y, Xa.shape[0])[:, None]
    else:
        Xa = model.prepare_X(X)
        Yf = model.prepare_Y(Y, Xa.shape[0])
    s = np.linspace(0.0, 1.0, points)
    taus, losses, segs = [], [], []
    for j in range(path.n_segments):
        sj = s if j == 0 else s[1:]
        Ka, Kb = path.knots[j], path.knots[j + 1]
        if A.is_pn:
            F = _pn_segment(model, Ka, Kb, sj, Xa)
        else:
            F = _readout_segment(model, Ka, Kb, path.W, sj, Xa)
        Z = F - Yf[None]
        losses.append(np.einsum("pxq,pxq->p", Z, Z) / (2.0 * Xa.shape[0]))
        taus.append(j + sj)
        segs.append(np.full(sj.size, j, dtype=np.int64))
    return np.concatenate(taus), np.concatenate(losses), np.concatenate(segs)


# ============================================================================ the analysis
@dataclass
class ConnectResult:
    """Output of :func:`connect`.

    Attributes
    ----------
    kind : str
        Path kind (``"five_segment"`` or ``"pn_nine_segment"``).
    loss_A, loss_B : float
    tau, loss, segment : ndarray
        The loss along the path (``tau = j + s``); ``segments`` their names, ``affine`` per
        segment.
    knot_labels : list of str; knot_loss : ndarray
        Loss of every knot network.
    gaps : dict[str, float]
        Dropout gap of every dropout knot (``L(knot) - L(endpoint)``).
    barrier : float
        ``max loss - max(loss_A, loss_B)`` over the sampled points.
    barrier_knots : float
        The same over the knots: the exact barrier when the loss is convex along the segments.
    bound : float
        ``max(gaps, 0)``.
    applies : bool
        Whether the inequality ``barrier <= bound`` is a theorem for this path (False for a
        Pham–Nguyen network with non-identity ``phi3``).
    holds : bool
        ``barrier <= bound + tol`` with ``tol`` the round-off level (``64 eps max |loss|``).
    straight_tau, straight_loss : ndarray; straight_barrier : float
        The straight-line baseline.
    """

    kind: str
    loss_A: float
    loss_B: float
    tau: np.ndarray
    loss: np.ndarray
    segment: np.ndarray
    segments: list
    affine: list
    knot_labels: list
    knot_loss: np.ndarray
    gaps: dict
    barrier: float
    barrier_knots: float
    bound: float
    applies: bool
    holds: bool
    tol: float
    straight_tau: np.ndarray
    straight_loss: np.ndarray
    straight_barrier: float
    points: int
    width: Any
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)

    @property
    def margin(self) -> float:
        """``bound - barrier`` (>= -tol when the inequality holds)."""
        return self.bound - self.barrier


def connect(A: Network, B: Network, X, Y, *, points: int = 40, straight: bool = True,
            straight_points: int | None = None) -> ConnectResult:
    """Loss along the path between ``A`` and ``B`` (:func:`make_path`), the barrier, the
    half-dropout-gap bound and the straight-line baseline (module docstring).

    Parameters
    ----------
    A, B : Network
        Comparable networks (:func:`check_comparable`).
    X : ndarray (n, d); Y : ndarray (n, q)
    points : int
        Points per segment, endpoints included (validation.md §V11 uses 40).
    straight : bool
        Also evaluate the straight line, with ``straight_points`` points (default ``points``).
    """
    t0 = time.perf_counter()
    path = make_path(A, B)
    tau, loss, seg = path_losses(A, path, X, Y, points)
    # the knots are the points tau = 0, 1, ..., J of the path (s = 0 and 1 of each segment)
    knot_loss = loss[np.searchsorted(tau, np.arange(path.n_segments + 1))]
    LA, LB = float(knot_loss[0]), float(knot_loss[-1])
    ref = {"A": LA, "B": LB}
    gaps = {path.labels[i]: float(knot_loss[i] - ref[e]) for i, e in path.dropout_knots}
    top = max(LA, LB)
    barrier = float(loss.max() - top)
    barrier_knots = float(knot_loss.max() - top)
    bound = max([0.0, *gaps.values()])
    applies = not (A.is_pn and getattr(A.model, "phi3", "identity") != "identity")
    tol = 64 * np.finfo(float).eps * float(max(np.abs(loss).max(), np.abs(knot_loss).max(), 1e-300))
    holds = bool(barrier <= bound + tol)
    if straight:
        sp = int(straight_points) if straight_points else int(points)
        st, sl, _ = path_losses(A, straight_line(A, B), X, Y, sp)
        sb = float(sl.max() - top)
    else:
        st, sl, sb = np.zeros(0), np.zeros(0), math.nan
    return ConnectResult(path.kind, float(LA), float(LB), tau, loss, seg, list(path.segments),
                         list(path.affine), list(path.labels), knot_loss, gaps, barrier,
                         barrier_knots, float(bound), applies, holds, float(tol), st, sl, sb,
                         int(points), A.width, time.perf_counter() - t0)
