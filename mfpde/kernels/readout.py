r"""Fused kernels of the read-out models (theory/dynamics.md §1.2–§1.3, row layout).

The particles are split into fixed *chunks* (:func:`chunk_bounds`, a function of ``N`` only). For
one block of samples ``X_b`` (``nb x d_in``) and one chunk ``c`` of particles the model computes

.. math::

    P = X_b U_c^\top,\quad S = \sigma(P),\quad
    H_b^{(c)} = S\,A^w_c\quad(\text{partial features; summed over chunks in order}),

    \nabla_{A_c}\Psi \mathrel{+}= S^\top G_b,\quad B = \sigma'(P)\odot (G_b A_c^\top),\quad
    \nabla_{U_c}\Psi \mathrel{+}= B^\top X_b .

Two families of kernels do the element-wise work:

- :data:`FROM_S` activations (tanh, sigmoid, identity), whose derivatives are functions of
  ``s = sigma(z)``: one ``nb x Nc`` tile per chunk. :func:`forward_s` forms ``S`` strip by strip
  (:data:`STRIP`) — the projection (BLAS before the call, or compiled in the kernel for a small
  ``d_in``) and the activation in plain arithmetic (:func:`~mfpde.kernels.activations.tanh_simd`,
  vectorised) — and then the partial features; :func:`backward_s` computes ``sigma'``,
  ``sigma''`` from ``S`` and, for a small ``d_in``, accumulates ``grad_U`` itself, so no BLAS
  call and no second buffer is needed. The low-memory sweep of a small ``d_in`` runs both per
  sample row in :func:`sweep_s`, without a tile. These kernels contract multiply-adds
  (``fastmath = CONTRACT``: fused multiply-add only, every sum keeps its order).
- every other activation: :func:`prepass` + :func:`forward_chunk` keep ``S``, ``sigma'`` and
  (for Laplacians) ``sigma''`` in three tiles; :func:`backward_chunk` forms ``B``.

Precision: every kernel compiles for float64 and for float32 arrays (the mixed-precision pass
of :mod:`mfpde.models.readout`): in one call the tiles, ``X_b``, ``U^T``, ``A^T``, ``G`` and the
accumulators ``gAT``, ``gUT``, ``lap`` are all float64 or all float32, the literals of the
element-wise arithmetic take that type (:func:`~mfpde.kernels.activations.lit`, the tanh
:func:`~mfpde.kernels.activations.tanh_t`), and the partial features ``Hpart`` are float64 in
both (:func:`_dot` sums in float64). :func:`assemble_chunk` writes the float64 force from
float64 or float32 sums.

Each chunk's tile is bounded (``TILE_BYTES``, ``TILE_BYTES_COMPILED`` in
:mod:`mfpde.models.readout`), and the :data:`FROM_S` kernels run over it in strips that stay in
a core's first cache levels. All kernels are serial and release the GIL; the
model runs chunks concurrently on a thread pool (:mod:`mfpde._pool`). Every reduction is either
inside one chunk (fixed order) or across chunks in chunk order, so results do not depend on the
number of threads. :func:`assemble_chunk` adds the weight decay; the Euler–Maruyama update of the
integrator (:mod:`mfpde.dynamics.langevin`) is :func:`em_rows` / :func:`em_update`.
"""
from __future__ import annotations

import math

import numpy as np

from .._numba import jit
from .._pool import run_tasks
from .activations import (CONTRACT, IDENTITY, SIGMOID, SOFTPLUS, TANH, ddsigma, dsigma, fma, lit,
                          sigma, tanh_t)

#: below this many entries a parallel (prange) update kernel (mfpde.kernels.kinetic) runs serially:
#: a launch costs more than it saves
PARALLEL_MIN = 1 << 17

#: smallest chunk of particles handled by one task; see :func:`chunk_bounds`
CHUNK_MIN = 512
#: particles per group of 8 chunks for large N
CHUNK_GROUP = 1 << 17


def chunk_bounds(N: int) -> np.ndarray:
    """Boundaries ``b`` (C+1,) of the particle chunks ``[b[c], b[c+1])``.

    The count depends on ``N`` only (never on the thread count), so every reduction has the same
    order on any machine size: 1 chunk below 1024 particles, then 2, 4 or 8 chunks of at least
    :data:`CHUNK_MIN` particles, and ``8 * ceil(N / CHUNK_GROUP)`` chunks for large ``N``.
    """
    if N < 2 * CHUNK_MIN:
        C = 1
    elif N <= CHUNK_GROUP:
        C = 1 << min(3, int(math.log2(N // CHUNK_MIN)))
    else:
        C = 8 * (-(-N // CHUNK_GROUP))
    return np.linspace(0, N, C + 1).round().astype(np.int64)


#: activations whose derivatives are functions of the value: sigma' = 1 - s^2 (tanh),
#: s (1 - s) (sigmoid), 1 (identity). Their pass keeps one buffer (``S``) instead of three.
FROM_S = (TANH, SIGMOID, IDENTITY)


#: particles per strip of the :data:`FROM_S` kernels: each kernel runs over the chunk strip by
#: strip and, within a strip, over the block's samples, so the strip's rows of ``U^T``, ``A^T``
#: and of the sums ``gAT``, ``gUT``, ``lap`` stay in the first cache levels while every sample
#: uses them (the low-memory sweep :func:`sweep_s` gains most, 10-15 % at d = 2). Every entry is
#: computed, and every sum over samples taken, as without strips: the bits do not depend on the
#: strip. The features of :func:`forward_s` are summed over whole rows after the strips.
STRIP = 1024


@jit(inline="always")
def _sigma_s(code, z):
    """``sigma(z)`` for a :data:`FROM_S` activation in the float type of ``z``: the vectorised
    tanh (:func:`~mfpde.kernels.activations.tanh_t`: float64 or float32), ``1/2 + tanh(z/2)/2``
    for the sigmoid, ``z`` for the identity."""
    if code == TANH:
        return tanh_t(z)
    if code == SIGMOID:
        half = lit(z, 0.5)
        return half + half * tanh_t(half * z)
    return z


@jit(inline="always")
def _sigma_s_row(code, row, j0, j1):
    """In place ``row[j] <- sigma(row[j])``, ``j0 <= j < j1``, for a :data:`FROM_S` activation
    (:func:`_sigma_s`; identity: nothing)."""
    r = row[j0:j1]
    if code != IDENTITY:
        for j in range(r.shape[0]):
            r[j] = _sigma_s(code, r[j])


@jit(inline="always")
def _d_from_s(code, s):
    """``(sigma', sigma'')`` as functions of ``s = sigma(z)`` (codes in :data:`FROM_S`), in the
    float type of ``s``."""
    one, two = lit(s, 1.0), lit(s, 2.0)
    if code == TANH:
        ds = one - s * s
        return ds, -two * s * ds
    if code == SIGMOID:
        ds = s * (one - s)
        return ds, ds * (one - two * s)
    return one, lit(s, 0.0)


@jit(inline="always")
def _combine_rows(c, M, out, j0, j1):
    """``out[j] = sum_k c[k] M[k, j]``, ``j0 <= j < j1`` (a combination of the rows of ``M``),
    vectorised over ``j``: the back-propagated residual ``(G A^T)[i]`` (``c = G[i]``,
    ``M = A^T``) and the projection ``(X U^T)[i]`` (``c = X[i]``, ``M = U^T``)."""
    c0 = c[0]
    o = out[j0:j1]
    M0 = M[0][j0:j1]
    for j in range(o.shape[0]):
        o[j] = c0 * M0[j]
    for k in range(1, M.shape[0]):
        ck = c[k]
        Mk = M[k][j0:j1]
        for j in range(o.shape[0]):
            o[j] += ck * Mk[j]


@jit(inline="always")
def _add_outer(M, c, row, j0, j1):
    """``M[k, j] += c[k] row[j]``, ``j0 <= j < j1`` (accumulate ``grad_A`` or ``grad_U`` of one
    sample)."""
    r = row[j0:j1]
    for k in range(M.shape[0]):
        ck = c[k]
        Mk = M[k][j0:j1]
        for j in range(r.shape[0]):
            Mk[j] += r[j] * ck


@jit(inline="always")
def _forward_row(code, Si, xi, UT, j0, j1):
    """One sample, entries ``j0 <= j < j1``: ``Si <- sigma(x_i U^T)`` (the projection formed
    first when ``UT`` is not empty, else ``Si`` holds it on entry).

    For ``d_in <= 4`` the projection and the activation are one loop, the projection kept in a
    register: ``z = x_0 U_0`` then ``z = fma(x_k, U_k, z)`` for ``k = 1, ...``, the operations of
    :func:`_combine_rows` (the same bits) without storing and reloading ``z`` (the forward
    kernel 1.2x faster at ``d_in = 2``)."""
    d = UT.shape[0]
    if d == 0 or d > 4:
        if d > 0:
            _combine_rows(xi, UT, Si, j0, j1)
        _sigma_s_row(code, Si, j0, j1)
        return
    r = Si[j0:j1]
    U0 = UT[0][j0:j1]
    x0 = xi[0]
    if d == 1:
        for j in range(r.shape[0]):
            r[j] = _sigma_s(code, x0 * U0[j])
        return
    U1, x1 = UT[1][j0:j1], xi[1]
    if d == 2:
        for j in range(r.shape[0]):
            r[j] = _sigma_s(code, fma(x1, U1[j], x0 * U0[j]))
        return
    U2, x2 = UT[2][j0:j1], xi[2]
    if d == 3:
        for j in range(r.shape[0]):
            r[j] = _sigma_s(code, fma(x2, U2[j], fma(x1, U1[j], x0 * U0[j])))
        return
    U3, x3 = UT[3][j0:j1], xi[3]
    for j in range(r.shape[0]):
        r[j] = _sigma_s(code, fma(x3, U3[j], fma(x2, U2[j], fma(x1, U1[j], x0 * U0[j]))))


@jit(inline="always")
def _backward_pairs(code, S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, gUT, B1, B2, j0, j1):
    """Entries ``j0 <= j < j1`` of every row ``i`` of ``S`` (nb, Nc): ``gAT += g_i (x) s_i`` (if
    ``train_a``), ``B = sigma'(s_i) (.) (g_i A^T)``, ``lap += B sigma''(s_i) |x_i|^2``, then
    ``gUT += x_i (x) B`` (``gUT`` not empty) or ``s_i <- B``. Two sample rows per pass, each
    sum taking the two rows' terms in turn, ``gA[j] = (gA[j] + s_i g_i) + s_{i+1} g_{i+1}``:
    the operations of row-by-row loops in their order (the same bits) with half the loads and
    stores of the sums. With one output
    (``p = 1``) ``grad_A``, ``B`` and the Laplacian are one loop instead of three (the backward
    kernel 2.4x faster at ``d_in = 2``); with ``p > 1`` the rows ``G_i A^T`` are formed first
    (:func:`_combine_rows`). ``B`` goes to the scratch rows ``B1``, ``B2`` (Nc,) when ``gUT``
    is not empty, else into ``S``. An odd last row is paired with itself at weight 0, which
    adds zeros."""
    nb = S.shape[0]
    p = AT.shape[0]
    zero = lit(G, 0.0)
    zrow = np.zeros(p, G.dtype)
    m = j1 - j0
    A = AT[0][j0:j1]
    lp = lap[j0:j1] if want_lap else lap
    to_s = gUT.shape[0] == 0
    b1 = B1[j0:j1]
    b2 = B2[j0:j1]
    for i in range(0, nb, 2):
        i2 = min(i + 1, nb - 1)
        two = i2 > i
        G2 = G[i2] if two else zrow
        g1 = G[i, 0]
        g2 = G2[0]
        xn_1 = xn2[i] if want_lap else zero
        xn_2 = xn2[i2] if (want_lap and two) else zero
        s1 = S[i][j0:j1]
        s2 = S[i2][j0:j1]
        o1 = s1 if to_s else b1
        o2 = s2 if (to_s and two) else b2
        if p == 1 and gUT.shape[0] == 2 and train_a and not want_lap:
            # the two-layer pass at d_in = 2: grad_U's rows in the same loop (the same
            # operations as the loops over its rows below)
            gA = gAT[0][j0:j1]
            u0 = gUT[0][j0:j1]
            u1 = gUT[1][j0:j1]
            xa0, xa1 = Xb[i, 0], Xb[i, 1]
            xb0 = Xb[i2, 0] if two else zero
            xb1 = Xb[i2, 1] if two else zero
            for j in range(m):
                u = s1[j]
                v = s2[j]
                a = A[j]
                gA[j] = (gA[j] + u * g1) + v * g2
                ds1, dds1 = _d_from_s(code, u)
                ds2, dds2 = _d_from_s(code, v)
                c1 = (g1 * a) * ds1
                c2 = (g2 * a) * ds2
                u0[j] = (u0[j] + c1 * xa0) + c2 * xb0
                u1[j] = (u1[j] + c1 * xa1) + c2 * xb1
            continue
        if p == 1:
            gA = gAT[0][j0:j1] if train_a else A
            for j in range(m):
                u = s1[j]
                v = s2[j]
                a = A[j]
                if train_a:
                    gA[j] = (gA[j] + u * g1) + v * g2
                ds1, dds1 = _d_from_s(code, u)
                ds2, dds2 = _d_from_s(code, v)
                c1 = g1 * a
                c2 = g2 * a
                if want_lap:
                    lp[j] = (lp[j] + c1 * dds1 * xn_1) + c2 * dds2 * xn_2
                o1[j] = c1 * ds1
                o2[j] = c2 * ds2
        else:
            if train_a:
                for r in range(p):
                    gr = gAT[r][j0:j1]
                    h1 = G[i, r]
                    h2 = G2[r]
                    for j in range(m):
                        gr[j] = (gr[j] + s1[j] * h1) + s2[j] * h2
            if p > 4:
                _combine_rows(G[i], AT, B1, j0, j1)
                _combine_rows(G2, AT, B2, j0, j1)
            # p <= 4: G_i A^T formed in the loop below as _combine_rows forms it (c_0 A_0, then
            # one fused multiply-add per row: the same bits), rows past p at weight 0
            A1 = AT[1][j0:j1]
            A2 = AT[min(2, p - 1)][j0:j1]
            A3 = AT[min(3, p - 1)][j0:j1]
            e0, e1 = G[i, 0], G[i, 1]
            e2 = G[i, 2] if p > 2 else zero
            e3 = G[i, 3] if p > 3 else zero
            f0, f1 = G2[0], G2[1]
            f2 = G2[2] if p > 2 else zero
            f3 = G2[3] if p > 3 else zero
            for j in range(m):
                u = s1[j]
                v = s2[j]
                ds1, dds1 = _d_from_s(code, u)
                ds2, dds2 = _d_from_s(code, v)
                if p > 4:
                    c1 = b1[j]
                    c2 = b2[j]
                else:
                    c1 = fma(e3, A3[j], fma(e2, A2[j], fma(e1, A1[j], e0 * A[j])))
                    c2 = fma(f3, A3[j], fma(f2, A2[j], fma(f1, A1[j], f0 * A[j])))
                if want_lap:
                    lp[j] = (lp[j] + c1 * dds1 * xn_1) + c2 * dds2 * xn_2
                o1[j] = c1 * ds1
                o2[j] = c2 * ds2
        for k in range(gUT.shape[0]):
            xa = Xb[i, k]
            xb = Xb[i2, k] if two else zero
            g = gUT[k][j0:j1]
            for j in range(m):
                g[j] = (g[j] + o1[j] * xa) + o2[j] * xb


@jit(inline="always")
def _forward_s(code, S, Xb, UT, AwT, Hpart):
    nb, Nc = S.shape
    for j0 in range(0, Nc, STRIP):
        j1 = min(j0 + STRIP, Nc)
        for i in range(nb):
            _forward_row(code, S[i], Xb[i], UT, j0, j1)
    for i in range(Hpart.shape[0]):
        Hi = Hpart[i]
        for k in range(Hi.shape[0]):
            Hi[k] = _dot(S[i], AwT[k])


@jit(inline="always")
def _backward_s(code, S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, gUT):
    Nc = S.shape[1]
    B = np.empty((2, Nc), S.dtype)
    for j0 in range(0, Nc, STRIP):
        _backward_pairs(code, S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, gUT, B[0], B[1],
                        j0, min(j0 + STRIP, Nc))


@jit(inline="always")
def _sweep_s(code, Xb, UT, G, AT, train_a, gAT, want_lap, xn2, lap, gUT):
    Nc = UT.shape[1]
    nb = Xb.shape[0]
    Srows = np.empty((2, Nc), UT.dtype)         # two rows at a time, for _backward_pairs
    B = np.empty((2, Nc), UT.dtype)
    for j0 in range(0, Nc, STRIP):
        j1 = min(j0 + STRIP, Nc)
        for i in range(0, nb, 2):
            e = min(i + 2, nb)
            for r in range(e - i):
                _forward_row(code, Srows[r], Xb[i + r], UT, j0, j1)
            _backward_pairs(code, Srows[:e - i], G[i:e], AT, train_a, gAT, want_lap,
                            xn2[i:e] if want_lap else xn2, lap, Xb[i:e], gUT, B[0], B[1], j0,
                            j1)


@jit(error_model="numpy", fastmath=CONTRACT)
def prepass_s(code, P):
    """In place ``P <- sigma(P)`` over a tile ``P`` (nb, Nc) for a :data:`FROM_S` activation
    (:func:`~mfpde.kernels.activations.tanh_simd`; the sigmoid as ``1/2 + tanh(z/2)/2``): the
    activation step that :func:`forward_s` fuses with the projection and the features."""
    for i in range(P.shape[0]):
        _sigma_s_row(code, P[i], 0, P.shape[1])


# One compiled kernel per activation of FROM_S (the code a constant in each, so the loops
# vectorise and a run compiles only the kernels of its activation); forward_s, backward_s and
# sweep_s pick one.
@jit(error_model="numpy", fastmath=CONTRACT)
def _forward_tanh(S, Xb, UT, AwT, Hpart):
    _forward_s(TANH, S, Xb, UT, AwT, Hpart)


@jit(error_model="numpy", fastmath=CONTRACT)
def _forward_sigmoid(S, Xb, UT, AwT, Hpart):
    _forward_s(SIGMOID, S, Xb, UT, AwT, Hpart)


@jit(error_model="numpy", fastmath=CONTRACT)
def _forward_identity(S, Xb, UT, AwT, Hpart):
    _forward_s(IDENTITY, S, Xb, UT, AwT, Hpart)


@jit(error_model="numpy", fastmath=CONTRACT)
def _backward_tanh(S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, gUT):
    _backward_s(TANH, S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, gUT)


@jit(error_model="numpy", fastmath=CONTRACT)
def _backward_sigmoid(S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, gUT):
    _backward_s(SIGMOID, S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, gUT)


@jit(error_model="numpy", fastmath=CONTRACT)
def _backward_identity(S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, gUT):
    _backward_s(IDENTITY, S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, gUT)


@jit(error_model="numpy", fastmath=CONTRACT)
def _sweep_tanh(Xb, UT, G, AT, train_a, gAT, want_lap, xn2, lap, gUT):
    _sweep_s(TANH, Xb, UT, G, AT, train_a, gAT, want_lap, xn2, lap, gUT)


@jit(error_model="numpy", fastmath=CONTRACT)
def _sweep_sigmoid(Xb, UT, G, AT, train_a, gAT, want_lap, xn2, lap, gUT):
    _sweep_s(SIGMOID, Xb, UT, G, AT, train_a, gAT, want_lap, xn2, lap, gUT)


@jit(error_model="numpy", fastmath=CONTRACT)
def _sweep_identity(Xb, UT, G, AT, train_a, gAT, want_lap, xn2, lap, gUT):
    _sweep_s(IDENTITY, Xb, UT, G, AT, train_a, gAT, want_lap, xn2, lap, gUT)


_FORWARD = {TANH: _forward_tanh, SIGMOID: _forward_sigmoid, IDENTITY: _forward_identity}
_BACKWARD = {TANH: _backward_tanh, SIGMOID: _backward_sigmoid, IDENTITY: _backward_identity}
_SWEEP = {TANH: _sweep_tanh, SIGMOID: _sweep_sigmoid, IDENTITY: _sweep_identity}


def forward_s(code, S, Xb, UT, AwT, Hpart):
    """One chunk, forward, for :data:`FROM_S` activations, one pass per sample row:
    ``S = sigma(X_b U^T)`` and ``Hpart[i, k] = sum_j S[i, j] AwT[k, j]``. With ``UT`` (d_in, Nc)
    (small ``d_in``) the projection is formed here; with ``UT`` (0, 0) ``S`` holds it on entry
    (a BLAS product). ``sigma`` is :func:`prepass_s`'s.

    Shapes: ``S`` (nb, Nc) C-contiguous; ``Xb`` (nb, d_in); ``AwT`` (p, Nc) the chunk's weighted
    output weights ``w_j a_j`` transposed; ``Hpart`` (nb, p), or (nb, 0) with ``AwT`` (0, 0) when
    the features are known (the second pass of the low-memory sweep). Dtypes: ``S``, ``Xb``,
    ``UT``, ``AwT`` all float64 or all float32; ``Hpart`` float64.
    """
    _FORWARD[code](S, Xb, UT, AwT, Hpart)


def backward_s(code, S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, gUT):
    """One chunk, backward, for :data:`FROM_S` activations, in place: ``gAT[k, j] += sum_i S[i, j]
    G[i, k]`` (if ``train_a``), then ``S <- B = sigma'(S) (.) (G A^T)`` and ``lap[j] += sum_i
    B[i, j] sigma''(S)[i, j] |x_i|^2`` with the derivatives computed from ``s = sigma(z)``; when
    ``gUT`` is not empty (small ``d_in``) ``gUT[k, j] += sum_i B[i, j] Xb[i, k]`` instead, and ``S``
    is left unchanged.

    Shapes as :func:`backward_chunk`; ``Xb`` (nb, d_in); ``gUT`` (d_in, Nc) or (0, 0). Dtypes:
    every array float64, or every array float32.
    """
    _BACKWARD[code](S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, gUT)


def sweep_s(code, Xb, UT, G, AT, train_a, gAT, want_lap, xn2, lap, gUT):
    """One chunk of the low-memory sweep for :data:`FROM_S` activations and a small ``d_in``:
    per sample row, :func:`forward_s` (without the features, which are known) followed at once
    by :func:`backward_s`, the row ``sigma(x_i U^T)`` held in a scratch row instead of a tile.
    The same numbers as the two kernels. Shapes as :func:`backward_s`, ``UT`` (d_in, Nc)."""
    _SWEEP[code](Xb, UT, G, AT, train_a, gAT, want_lap, xn2, lap, gUT)


def prepass(code, P, S):
    """The transcendental part of a generic activation as a NumPy SIMD ufunc into ``S``:
    ``exp(-|z|)`` for softplus, nothing otherwise (tanh and sigmoid take :func:`prepass_s`)."""
    if code == SOFTPLUS:
        np.abs(P, out=S)
        np.negative(S, out=S)
        np.exp(S, out=S)


@jit(inline="always")
def _activate_entry(code, z, pre, want_dd):
    """Return ``(sigma, sigma', sigma'')`` at ``z``; ``pre`` is the :func:`prepass` value."""
    if code == SOFTPLUS:
        sg = 1.0 / (1.0 + pre) if z >= 0.0 else pre / (1.0 + pre)      # logistic(z), stable
        return max(z, 0.0) + math.log1p(pre), sg, sg * (1.0 - sg)
    dd = ddsigma(code, z) if want_dd else 0.0
    return sigma(code, z), dsigma(code, z), dd


@jit(fastmath={"reassoc", "contract"})
def _dot(x, y):
    """``sum_j x_j y_j`` of two rows (reassociated: vectorised; the order is fixed by the build),
    summed in float64 for float64 and float32 rows alike (the partial features)."""
    acc = 0.0
    for j in range(x.shape[0]):
        acc += x[j] * y[j]
    return acc


@jit(error_model="numpy")
def forward_chunk(code, P, S, want_dd, Spp, AwT, Hpart):
    """One chunk, forward: ``S <- sigma(P)``, ``Spp <- sigma''(P)`` (if ``want_dd``),
    ``P <- sigma'(P)``, ``Hpart[i, k] = sum_j S[i, j] AwT[k, j]``.

    Shapes: ``P, S, Spp`` (nb, Nc) C-contiguous (``Spp`` (0, 0) without ``want_dd``; ``S`` holds
    the :func:`prepass` values on entry); ``AwT`` (p, Nc) = the chunk's weighted output weights
    ``w_j a_j`` transposed; ``Hpart`` (nb, p) (``AwT`` (0, 0): no features). Dtypes: the tiles
    and ``AwT`` float64 or float32 (the activation is evaluated in float64 and rounded to the
    tiles' type), ``Hpart`` float64.
    """
    nb, Nc = P.shape
    for i in range(nb):
        for j in range(Nc):
            s, ds, dds = _activate_entry(code, P[i, j], S[i, j], want_dd)
            if want_dd:
                Spp[i, j] = dds
            S[i, j] = s
            P[i, j] = ds
        for k in range(AwT.shape[0]):
            Hpart[i, k] = _dot(S[i], AwT[k])


@jit(error_model="numpy")
def backward_chunk(Sp, S, G, AT, train_a, gAT, want_lap, Spp, xn2, lap):
    """One chunk, backward, in place: ``gAT[k, j] += sum_i S[i, j] G[i, k]`` (if ``train_a``),
    then ``S <- B = S' (.) (G A^T)`` and ``lap[j] += sum_i (G A^T)[i, j] S''[i, j] |x_i|^2``.

    Shapes: ``Sp, S, Spp`` (nb, Nc); ``G`` (nb, p); ``AT`` (p, Nc) the chunk's output weights
    transposed (ones for a fixed output); ``gAT`` (p, Nc); ``xn2`` (nb,); ``lap`` (Nc,).
    Every ``gAT[k, j]`` and ``lap[j]`` is summed over ``i`` in order. Dtypes: every array float64,
    or every array float32.
    """
    nb, Nc = S.shape
    Brow = np.empty(Nc, S.dtype)
    for i in range(nb):
        Si = S[i]
        if train_a:
            _add_outer(gAT, G[i], Si, 0, Nc)
        _combine_rows(G[i], AT, Brow, 0, Nc)
        Spi = Sp[i]
        if want_lap:
            xn = xn2[i]
            Sppi = Spp[i]
            for j in range(Nc):
                lap[j] += Brow[j] * Sppi[j] * xn
        for j in range(Nc):
            Si[j] = Brow[j] * Spi[j]


@jit
def assemble_chunk(out, gAT, gU, gUT, theta, lam, pa):
    """The force of one chunk of rows, ``g_j = [gAT[:, j]^T, gU[j]] + lam * theta_j`` (the weight
    decay of dynamics.md §1.2), written to ``out`` (the rows of the (N, D) force, or a chunk
    buffer handed to the integrator, :meth:`mfpde.models.readout.ReadoutModel.force_chunks`).

    Shapes ``out, theta`` (Nc, D) (row blocks of the full arrays), ``gAT`` (pa, Nc); the
    ``u`` part comes from ``gU`` (Nc, d_in) or, when that is empty, from its transpose ``gUT``
    (d_in, Nc). ``out`` and ``theta`` float64; the sums ``gAT``, ``gU``, ``gUT`` float64, or float32
    (the float32 pass with one block of samples)."""
    D = theta.shape[1]
    transposed = gU.shape[0] == 0
    for j in range(theta.shape[0]):
        for k in range(D):
            if k < pa:
                g = gAT[k, j]
            else:
                g = gUT[k - pa, j] if transposed else gU[j, k - pa]
            g += lam * theta[j, k]
            out[j, k] = g


@jit
def add_into(acc, part):
    """``acc += part`` for C-contiguous arrays of one shape: a float32 block sum ``part`` added
    to the float64 sum ``acc`` of a chunk (the float32 pass of
    :mod:`mfpde.models.readout`), each entry rounded once."""
    a = acc.reshape(-1)
    b = part.reshape(-1)
    for i in range(a.shape[0]):
        a[i] += b[i]


@jit
def em_rows(theta, grad, noise, step, noise_scale, j0, j1):
    """Rows ``j0 <= i < j1`` of the Euler–Maruyama update of :func:`em_update` (in place)."""
    use_noise = noise_scale != 0.0
    for i in range(j0, j1):
        for j in range(theta.shape[1]):
            v = theta[i, j] - step * grad[i, j]
            if use_noise:
                v += noise_scale * noise[i, j]
            theta[i, j] = v


def em_update(theta, grad, noise, step, noise_scale):
    """Euler–Maruyama update ``theta <- theta - step*grad + noise_scale*noise`` in one pass.

    Implements dynamics.md §3: ``theta^{k+1} = theta^k - eps_k grad Psi + sqrt(2 eps_k/beta) g``.
    ``noise`` may be ``(0, 0)`` when ``noise_scale == 0`` (noiseless flow). Shapes ``(N, D)``.
    Rows are updated by particle chunks on the thread pool (:mod:`mfpde._pool`).
    """
    b = chunk_bounds(theta.shape[0])
    run_tasks(lambda c: em_rows(theta, grad, noise, step, noise_scale, b[c], b[c + 1]),
              b.size - 1)
