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
  ``s = sigma(z)``: one ``nb x Nc`` tile per chunk. :func:`forward_s` forms ``S`` row by row
  — the projection (BLAS before the call, or compiled in the kernel for a small ``d_in``) and
  the activation in plain arithmetic (:func:`~mfpde.kernels.activations.tanh_simd`, vectorised)
  — and each row's partial features while the row is in the caches; :func:`backward_s`
  computes ``sigma'``,
  ``sigma''`` from ``S`` and, for a small ``d_in``, accumulates ``grad_U`` itself, so no BLAS
  call and no second buffer is needed. The low-memory sweep of a small ``d_in`` runs both per
  sample row in :func:`sweep_s`, without a tile. These kernels contract multiply-adds
  (``fastmath = CONTRACT``: fused multiply-add only, every sum keeps its order). With tanh at
  ``d_in = 2`` the projection and the activation are one loop and the backward pass takes two
  sample rows per pass (also with 2 to 4 outputs), in kernels of their own that give the bits
  of the general ones. For a larger ``d_in``, :func:`forward_g` and
  :func:`backward_g` form the two products themselves with the tiles of
  :mod:`mfpde.kernels.gemm`, panel by panel around the same element-wise rows.
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
from .gemm import TILE_Q, accumulate_gu, panel_width, project

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


#: particles per strip of the backward and sweep kernels of :data:`FROM_S`: each runs over the
#: chunk strip by strip and, within a strip, over the block's samples, so the strip's rows of
#: ``U^T``, ``A^T`` and of the sums ``gAT``, ``gUT``, ``lap`` stay in the first cache levels
#: while every sample uses them (the low-memory sweep :func:`sweep_s` gains most, 10-15 % at
#: d = 2). Every entry is computed, and every sum over samples taken, as without strips: the
#: bits do not depend on the strip. The forward kernels run row by row over the whole chunk
#: instead: a row's features are summed over the whole row (:func:`_dot`), at once while the
#: row is in the caches (the NC step at d = 2, four features per row, 4 % faster than with strips
#: and the features summed over the tile read back).
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
    first when ``UT`` is not empty, else ``Si`` holds it on entry)."""
    if UT.shape[0] > 0:
        _combine_rows(xi, UT, Si, j0, j1)
    _sigma_s_row(code, Si, j0, j1)


@jit(inline="always")
def _backward_row1(code, s, g0, a0, ga, train_a):
    """:func:`_backward_row` for one output and no Laplacian, ``B`` into the row: ``ga +=
    g0 s`` (if ``train_a``), ``s <- (g0 a0) sigma'(s)``, one loop over the entries of the
    (sliced) rows ``s``, ``a0``, ``ga``, with no branch inside (vectorised)."""
    if train_a:
        for j in range(s.shape[0]):
            sj = s[j]
            ga[j] += sj * g0
            ds, _ = _d_from_s(code, sj)
            s[j] = (g0 * a0[j]) * ds
    else:
        for j in range(s.shape[0]):
            ds, _ = _d_from_s(code, s[j])
            s[j] = (g0 * a0[j]) * ds


@jit(inline="always")
def _backward_row4(code, s, gi, AT, j0, j1):
    """``s <- sigma'(s) (.) (gi A^T)`` for ``2 <= p <= 4`` outputs in one loop over the entries
    (``s`` the sliced row): ``G_i A^T`` as :func:`_combine_rows` forms it, ``c_0 A_0`` and then
    one fused multiply-add per row in row order (rows past ``p`` not taken)."""
    p = AT.shape[0]
    c0, c1 = gi[0], gi[1]
    c2, c3 = gi[min(2, p - 1)], gi[min(3, p - 1)]
    A0, A1 = AT[0][j0:j1], AT[1][j0:j1]
    A2, A3 = AT[min(2, p - 1)][j0:j1], AT[min(3, p - 1)][j0:j1]
    for j in range(s.shape[0]):
        b = fma(c1, A1[j], c0 * A0[j])
        b2 = fma(c2, A2[j], b)
        b = b2 if p > 2 else b
        b3 = fma(c3, A3[j], b)
        b = b3 if p > 3 else b
        ds, _ = _d_from_s(code, s[j])
        s[j] = b * ds


@jit(inline="always")
def _backward_row(code, Si, gi, AT, train_a, gAT, want_lap, xn, lap, xi, gUT, Brow, j0, j1):
    """One sample, entries ``j0 <= j < j1``: ``gAT += gi (x) Si`` (if ``train_a``),
    ``B = sigma'(Si) (.) (gi A^T)``, ``lap += B sigma''(Si) |x_i|^2``; then ``gUT += xi (x) B``
    (``gUT`` not empty) or ``Si <- B``. One loop per output row of ``gAT`` and of ``G A^T``,
    then one for ``B``; :func:`_backward_g` takes one-loop rows with the same arithmetic
    (:func:`_backward_row1`, :func:`_backward_row4`)."""
    if train_a:
        _add_outer(gAT, gi, Si, j0, j1)
    _combine_rows(gi, AT, Brow, j0, j1)
    s = Si[j0:j1]
    br = Brow[j0:j1]
    lp = lap[j0:j1] if want_lap else lap
    for j in range(s.shape[0]):
        ds, dds = _d_from_s(code, s[j])
        b = br[j]
        if want_lap:
            lp[j] += b * dds * xn
        br[j] = b * ds
    if gUT.shape[0] > 0:
        _add_outer(gUT, xi, Brow, j0, j1)
    else:
        for j in range(s.shape[0]):
            s[j] = br[j]


@jit(inline="always")
def _backward_pairs_p(code, S, G, AT, gAT, Xb, gUT, B1, B2, zrow, j0, j1):
    """:func:`_backward_row` for ``2 <= p <= 4`` trainable outputs, no Laplacian, ``gUT`` not
    empty, entries ``j0 <= j < j1`` of every row of ``S``, two sample rows per pass (the sums
    as in :func:`_backward_pairs2`, the same bits), ``G_i A^T`` formed in registers as
    :func:`_combine_rows` forms it (``c_0 A_0``, then one fused multiply-add per row; rows past
    ``p`` at weight 0). ``B1``, ``B2`` (Nc,): scratch rows of ``B``; ``zrow`` (p,): zeros, the
    residual of the weight-0 partner of an odd last row."""
    nb = S.shape[0]
    p = AT.shape[0]
    zero = lit(G, 0.0)
    A0, A1 = AT[0][j0:j1], AT[1][j0:j1]
    A2 = AT[min(2, p - 1)][j0:j1]
    A3 = AT[min(3, p - 1)][j0:j1]
    b1 = B1[j0:j1]
    b2 = B2[j0:j1]
    for i in range(0, nb, 2):
        i2 = min(i + 1, nb - 1)
        two = i2 > i
        G1 = G[i]
        G2 = G[i2] if two else zrow
        s1 = S[i][j0:j1]
        s2 = S[i2][j0:j1]
        for r in range(p):
            gr = gAT[r][j0:j1]
            h1 = G1[r]
            h2 = G2[r]
            for j in range(s1.shape[0]):
                gr[j] = (gr[j] + s1[j] * h1) + s2[j] * h2
        e0, e1 = G1[0], G1[1]
        e2 = G1[2] if p > 2 else zero
        e3 = G1[3] if p > 3 else zero
        f0, f1 = G2[0], G2[1]
        f2 = G2[2] if p > 2 else zero
        f3 = G2[3] if p > 3 else zero
        for j in range(s1.shape[0]):
            ds1, _ = _d_from_s(code, s1[j])
            ds2, _ = _d_from_s(code, s2[j])
            c1 = fma(e3, A3[j], fma(e2, A2[j], fma(e1, A1[j], e0 * A0[j])))
            c2 = fma(f3, A3[j], fma(f2, A2[j], fma(f1, A1[j], f0 * A0[j])))
            b1[j] = c1 * ds1
            b2[j] = c2 * ds2
        for k in range(gUT.shape[0]):
            xa = Xb[i, k]
            xb = Xb[i2, k] if two else zero
            g = gUT[k][j0:j1]
            for j in range(s1.shape[0]):
                g[j] = (g[j] + b1[j] * xa) + b2[j] * xb


@jit(inline="always")
def _features(S, AwT, Hpart):
    """``Hpart[i, k] = sum_j S[i, j] AwT[k, j]`` (the partial features of a tile)."""
    for i in range(Hpart.shape[0]):
        Hi = Hpart[i]
        for k in range(Hi.shape[0]):
            Hi[k] = _dot(S[i], AwT[k])


@jit(inline="always")
def _forward_s(code, S, Xb, UT, AwT, Hpart, d2=False):
    """The forward kernel; ``d2`` (a constant of the calling kernel): the rows of
    :func:`_forward_row2` (``d_in = 2``)."""
    for i in range(S.shape[0]):
        _forward_features_row(code, S[i], Xb[i], UT, AwT, Hpart[i], d2)


@jit(inline="always")
def _backward_s(code, S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, gUT):
    nb, Nc = S.shape
    Brow = np.empty(Nc, S.dtype)
    for j0 in range(0, Nc, STRIP):
        j1 = min(j0 + STRIP, Nc)
        for i in range(nb):
            xn = xn2[i] if want_lap else lit(xn2, 0.0)
            _backward_row(code, S[i], G[i], AT, train_a, gAT, want_lap, xn, lap, Xb[i], gUT,
                          Brow, j0, j1)


@jit(inline="always")
def _sweep_s(code, Xb, UT, G, AT, train_a, gAT, want_lap, xn2, lap, gUT):
    Nc = UT.shape[1]
    Srow = np.empty(Nc, UT.dtype)
    Brow = np.empty(Nc, UT.dtype)
    for j0 in range(0, Nc, STRIP):
        j1 = min(j0 + STRIP, Nc)
        for i in range(Xb.shape[0]):
            xi = Xb[i]
            _forward_row(code, Srow, xi, UT, j0, j1)
            xn = xn2[i] if want_lap else lit(xn2, 0.0)
            _backward_row(code, Srow, G[i], AT, train_a, gAT, want_lap, xn, lap, xi, gUT, Brow,
                          j0, j1)


@jit(inline="always")
def _features_s(code, Xb, UT, AwT, Hpart, d2=False):
    """The features of :func:`_forward_s` without its tile: per sample row, the row
    ``sigma(x_i U^T)`` of the whole chunk in a scratch row (in the second-level cache) and at
    once its sums ``Hpart[i, k] = sum_j S[i, j] AwT[k, j]`` (:func:`_dot`: the same numbers)."""
    Srow = np.empty(UT.shape[1], UT.dtype)
    for i in range(Xb.shape[0]):
        _forward_features_row(code, Srow, Xb[i], UT, AwT, Hpart[i], d2)


@jit(inline="always")
def _forward_features_row(code, Si, xi, UT, AwT, Hi, d2):
    """One sample: ``Si <- sigma(x_i U^T)`` over the whole chunk, then at once its partial
    features ``Hi[k] = sum_j Si[j] AwT[k, j]`` (:func:`_dot`) while the row is in the caches."""
    if d2:
        _forward_row2(code, Si, xi, UT, 0, Si.shape[0])
    else:
        _forward_row(code, Si, xi, UT, 0, Si.shape[0])
    for k in range(Hi.shape[0]):
        Hi[k] = _dot(Si, AwT[k])


@jit(inline="always")
def _forward_row2(code, Si, xi, UT, j0, j1):
    """:func:`_forward_row` for ``d_in = 2`` with the projection and the activation in one loop,
    ``z = fma(x_1, U_1, x_0 U_0)`` kept in a register: the operations of :func:`_combine_rows`
    (the same bits) without storing and reloading ``z`` (forward kernel 4.3 -> 3.5 ns per
    entry, one thread)."""
    r = Si[j0:j1]
    U0, U1 = UT[0][j0:j1], UT[1][j0:j1]
    x0, x1 = xi[0], xi[1]
    for j in range(r.shape[0]):
        r[j] = _sigma_s(code, fma(x1, U1[j], x0 * U0[j]))


@jit(inline="always")
def _backward_pairs2(code, S, G, AT, gAT, Xb, gUT, j0, j1):
    """:func:`_backward_row` for one trainable output (``p = 1``), ``d_in = 2``, no Laplacian,
    entries ``j0 <= j < j1`` of every row of ``S``, two sample rows per pass in one loop: each
    sum takes the two rows' terms in turn, ``gA[j] = (gA[j] + s_i g_i) + s_{i+1} g_{i+1}``, the
    operations of the row-by-row loops in their order (the same bits) with a quarter of their
    loads and stores (backward kernel 2.2 -> 0.74 ns per entry, one thread). An odd last row is
    paired with itself at weight 0, which adds zeros."""
    nb = S.shape[0]
    zero = lit(G, 0.0)
    A = AT[0][j0:j1]
    gA = gAT[0][j0:j1]
    u0 = gUT[0][j0:j1]
    u1 = gUT[1][j0:j1]
    for i in range(0, nb, 2):
        i2 = min(i + 1, nb - 1)
        two = i2 > i
        g1 = G[i, 0]
        g2 = G[i2, 0] if two else zero
        xa0, xa1 = Xb[i, 0], Xb[i, 1]
        xb0 = Xb[i2, 0] if two else zero
        xb1 = Xb[i2, 1] if two else zero
        s1 = S[i][j0:j1]
        s2 = S[i2][j0:j1]
        for j in range(s1.shape[0]):
            u = s1[j]
            v = s2[j]
            a = A[j]
            gA[j] = (gA[j] + u * g1) + v * g2
            ds1, _ = _d_from_s(code, u)
            ds2, _ = _d_from_s(code, v)
            c1 = (g1 * a) * ds1
            c2 = (g2 * a) * ds2
            u0[j] = (u0[j] + c1 * xa0) + c2 * xb0
            u1[j] = (u1[j] + c1 * xa1) + c2 * xb1


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
def _features_tanh(Xb, UT, AwT, Hpart):
    _features_s(TANH, Xb, UT, AwT, Hpart)


@jit(error_model="numpy", fastmath=CONTRACT)
def _features_sigmoid(Xb, UT, AwT, Hpart):
    _features_s(SIGMOID, Xb, UT, AwT, Hpart)


@jit(error_model="numpy", fastmath=CONTRACT)
def _features_identity(Xb, UT, AwT, Hpart):
    _features_s(IDENTITY, Xb, UT, AwT, Hpart)


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


# The tanh pass at d_in = 2 (the low regime, the bundled examples) and the backward pass of 2-4
# outputs (NC): kernels of their own with the bits of the general ones (tests/
# test_kernels_readout.py), chosen by forward_s / backward_s / sweep_s; in the general kernels
# their loops would compile for every pass (the cold start 16.7 s instead of 6.1 s)
@jit(error_model="numpy", fastmath=CONTRACT)
def _forward2_tanh(S, Xb, UT, AwT, Hpart):
    _forward_s(TANH, S, Xb, UT, AwT, Hpart, True)


@jit(error_model="numpy", fastmath=CONTRACT)
def _features2_tanh(Xb, UT, AwT, Hpart):
    _features_s(TANH, Xb, UT, AwT, Hpart, True)


@jit(error_model="numpy", fastmath=CONTRACT)
def _backward2_tanh(S, G, AT, gAT, Xb, gUT):
    Nc = S.shape[1]
    for j0 in range(0, Nc, STRIP):
        _backward_pairs2(TANH, S, G, AT, gAT, Xb, gUT, j0, min(j0 + STRIP, Nc))


@jit(error_model="numpy", fastmath=CONTRACT)
def _sweep2_tanh(Xb, UT, G, AT, gAT, gUT):
    Nc = UT.shape[1]
    nb = Xb.shape[0]
    Srows = np.empty((2, Nc), UT.dtype)
    for j0 in range(0, Nc, STRIP):
        j1 = min(j0 + STRIP, Nc)
        for i in range(0, nb, 2):
            e = min(i + 2, nb)
            for r in range(e - i):
                _forward_row2(TANH, Srows[r], Xb[i + r], UT, j0, j1)
            _backward_pairs2(TANH, Srows[:e - i], G[i:e], AT, gAT, Xb[i:e], gUT, j0, j1)


@jit(error_model="numpy", fastmath=CONTRACT)
def _backwardp_tanh(S, G, AT, gAT, Xb, gUT):
    Nc = S.shape[1]
    B = np.empty((2, Nc), S.dtype)
    zrow = np.zeros(AT.shape[0], G.dtype)
    for j0 in range(0, Nc, STRIP):
        _backward_pairs_p(TANH, S, G, AT, gAT, Xb, gUT, B[0], B[1], zrow, j0,
                          min(j0 + STRIP, Nc))


# The compiled products (d_in > SMALL_D of mfpde.models.readout; mfpde.kernels.gemm): the
# projection and grad_U panel by panel around the element-wise rows, one kernel per activation
@jit(inline="always")
def _forward_g(code, S, XTP, U, AwT, Hpart):
    """:func:`_forward_s` with the projection ``S = X_b U^T`` formed here by
    :func:`~mfpde.kernels.gemm.project`, one packed group of sample rows of a panel at a time,
    each row's activation taken while its entries are in the first-level cache."""
    nb, Nc = S.shape
    W = XTP.shape[2]
    w = panel_width(U.shape[1], nb, S.itemsize)
    for j0 in range(0, Nc, w):
        j1 = min(j0 + w, Nc)
        for g in range(XTP.shape[0]):
            project(XTP, U, S, g, j0, j1)
            for i in range(W * g, min(nb, W * g + W)):
                _sigma_s_row(code, S[i], j0, j1)
    _features(S, AwT, Hpart)


@jit(inline="always")
def _backward_g(code, one, S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, XP, gU, first, BP):
    """:func:`_backward_s` (``B`` into ``S``) panel by panel, each panel's ``B`` columns then
    summed into ``gU`` by :func:`~mfpde.kernels.gemm.accumulate_gu` while in the second-level
    cache; the panel width is that of the scratch ``BP``. ``one`` (a constant of the kernel):
    the kernel of one output without a Laplacian, compiled without the other rows (each set of
    rows adds seconds to the first compilation)."""
    nb, Nc = S.shape
    w = BP.shape[0] * TILE_Q
    if one and (AT.shape[0] != 1 or want_lap):
        raise ValueError("the one-output backward kernel takes one output and no Laplacian")
    p = 1 if one else AT.shape[0]
    Brow = np.empty(Nc, S.dtype)
    none = np.empty((0, 0), S.dtype)
    a, ga = AT[0], gAT[0] if train_a else AT[0]
    for j0 in range(0, Nc, w):
        j1 = min(j0 + w, Nc)
        if one:
            # one output (the two-layer pass): one loop per row, without the general path's
            # per-row set-up (together 20-30 % of this kernel)
            a0, ga0 = a[j0:j1], ga[j0:j1]
            for i in range(nb):
                _backward_row1(code, S[i][j0:j1], G[i, 0], a0, ga0, train_a)
        elif 2 <= p <= 4 and not want_lap:
            # 2-4 outputs: G A^T and B in one loop (no scratch row)
            for i in range(nb):
                if train_a:
                    _add_outer(gAT, G[i], S[i], j0, j1)
                _backward_row4(code, S[i][j0:j1], G[i], AT, j0, j1)
        else:
            for i in range(nb):
                xn = xn2[i] if want_lap else lit(xn2, 0.0)
                _backward_row(code, S[i], G[i], AT, train_a, gAT, want_lap, xn, lap, Xb[i],
                              none, Brow, j0, j1)
        # one call site: the product tiles are compiled once into this kernel
        accumulate_gu(S, Xb, XP, gU, j0, j1, first, BP)


@jit(error_model="numpy", fastmath=CONTRACT)
def _forwardg_tanh(S, XTP, U, AwT, Hpart):
    _forward_g(TANH, S, XTP, U, AwT, Hpart)


@jit(error_model="numpy", fastmath=CONTRACT)
def _forwardg_sigmoid(S, XTP, U, AwT, Hpart):
    _forward_g(SIGMOID, S, XTP, U, AwT, Hpart)


@jit(error_model="numpy", fastmath=CONTRACT)
def _forwardg_identity(S, XTP, U, AwT, Hpart):
    _forward_g(IDENTITY, S, XTP, U, AwT, Hpart)


@jit(error_model="numpy", fastmath=CONTRACT)
def _backwardg_tanh(S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, XP, gU, first, BP):
    _backward_g(TANH, False, S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, XP, gU, first, BP)


@jit(error_model="numpy", fastmath=CONTRACT)
def _backwardg1_tanh(S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, XP, gU, first, BP):
    _backward_g(TANH, True, S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, XP, gU, first, BP)


@jit(error_model="numpy", fastmath=CONTRACT)
def _backwardg_sigmoid(S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, XP, gU, first, BP):
    _backward_g(SIGMOID, False, S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, XP, gU, first, BP)


@jit(error_model="numpy", fastmath=CONTRACT)
def _backwardg1_sigmoid(S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, XP, gU, first, BP):
    _backward_g(SIGMOID, True, S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, XP, gU, first, BP)


@jit(error_model="numpy", fastmath=CONTRACT)
def _backwardg_identity(S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, XP, gU, first, BP):
    _backward_g(IDENTITY, False, S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, XP, gU, first, BP)


@jit(error_model="numpy", fastmath=CONTRACT)
def _backwardg1_identity(S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, XP, gU, first, BP):
    _backward_g(IDENTITY, True, S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, XP, gU, first, BP)


def _pairs2(code, AT, train_a, want_lap, gUT):
    """Whether a pass takes the kernels of the two-layer pass at ``d_in = 2``."""
    return code == TANH and AT.shape[0] == 1 and train_a and not want_lap and gUT.shape[0] == 2


_FORWARD = {TANH: _forward_tanh, SIGMOID: _forward_sigmoid, IDENTITY: _forward_identity}
_BACKWARD = {TANH: _backward_tanh, SIGMOID: _backward_sigmoid, IDENTITY: _backward_identity}
_SWEEP = {TANH: _sweep_tanh, SIGMOID: _sweep_sigmoid, IDENTITY: _sweep_identity}
_FEATURES = {TANH: _features_tanh, SIGMOID: _features_sigmoid, IDENTITY: _features_identity}
_FORWARD_G = {TANH: _forwardg_tanh, SIGMOID: _forwardg_sigmoid, IDENTITY: _forwardg_identity}
_BACKWARD_G = {TANH: _backwardg_tanh, SIGMOID: _backwardg_sigmoid, IDENTITY: _backwardg_identity}
_BACKWARD_G1 = {TANH: _backwardg1_tanh, SIGMOID: _backwardg1_sigmoid,
                IDENTITY: _backwardg1_identity}


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
    if code == TANH and UT.shape[0] == 2:
        _forward2_tanh(S, Xb, UT, AwT, Hpart)
    else:
        _FORWARD[code](S, Xb, UT, AwT, Hpart)


def features_s(code, Xb, UT, AwT, Hpart):
    """One chunk, forward, for :data:`FROM_S` activations and a small ``d_in``, when only the
    features are wanted: ``Hpart[i, k] = sum_j sigma(x_i U^T)_j AwT[k, j]``, the numbers of
    :func:`forward_s` without its ``(nb, Nc)`` tile (each row in a scratch row; the forward
    phase of the low-memory sweep and of a pass of features). Shapes and dtypes as
    :func:`forward_s`, ``UT`` (d_in, Nc)."""
    if code == TANH and UT.shape[0] == 2:
        _features2_tanh(Xb, UT, AwT, Hpart)
    else:
        _FEATURES[code](Xb, UT, AwT, Hpart)


def backward_s(code, S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, gUT):
    """One chunk, backward, for :data:`FROM_S` activations, in place: ``gAT[k, j] += sum_i S[i, j]
    G[i, k]`` (if ``train_a``), then ``S <- B = sigma'(S) (.) (G A^T)`` and ``lap[j] += sum_i
    B[i, j] sigma''(S)[i, j] |x_i|^2`` with the derivatives computed from ``s = sigma(z)``; when
    ``gUT`` is not empty (small ``d_in``) ``gUT[k, j] += sum_i B[i, j] Xb[i, k]`` instead, and ``S``
    is left unchanged.

    Shapes as :func:`backward_chunk`; ``Xb`` (nb, d_in); ``gUT`` (d_in, Nc) or (0, 0). Dtypes:
    every array float64, or every array float32.
    """
    if _pairs2(code, AT, train_a, want_lap, gUT):
        _backward2_tanh(S, G, AT, gAT, Xb, gUT)
    elif (code == TANH and 2 <= AT.shape[0] <= 4 and train_a and not want_lap
          and gUT.shape[0] > 0):
        _backwardp_tanh(S, G, AT, gAT, Xb, gUT)
    else:
        _BACKWARD[code](S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, gUT)


def sweep_s(code, Xb, UT, G, AT, train_a, gAT, want_lap, xn2, lap, gUT):
    """One chunk of the low-memory sweep for :data:`FROM_S` activations and a small ``d_in``:
    per sample row, :func:`forward_s` (without the features, which are known) followed at once
    by :func:`backward_s`, the row ``sigma(x_i U^T)`` held in a scratch row instead of a tile.
    The same numbers as the two kernels. Shapes as :func:`backward_s`, ``UT`` (d_in, Nc)."""
    if _pairs2(code, AT, train_a, want_lap, gUT):
        _sweep2_tanh(Xb, UT, G, AT, gAT, gUT)
    else:
        _SWEEP[code](Xb, UT, G, AT, train_a, gAT, want_lap, xn2, lap, gUT)


def forward_g(code, S, XTP, U, AwT, Hpart):
    """One chunk, forward, for :data:`FROM_S` activations with the projection compiled here
    (:mod:`mfpde.kernels.gemm`): ``S = sigma(X_b U^T)``, ``Hpart[i, k] = sum_j S[i, j]
    AwT[k, j]`` — :func:`forward_s` without the BLAS product before it.

    Shapes: ``S`` (nb, Nc) C-contiguous; ``XTP`` the packed ``X_b^T``
    (:func:`~mfpde.kernels.gemm.pack_samples`); ``U`` (Nc, d_in) the chunk's ``u`` rows (rows
    may be strided, the last axis contiguous); ``AwT``, ``Hpart`` as :func:`forward_s`. Dtypes
    as :func:`forward_s`.
    """
    _FORWARD_G[code](S, XTP, U, AwT, Hpart)


def backward_g(code, S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, XP, gU, first, BP):
    """One chunk, backward, for :data:`FROM_S` activations with ``grad_U`` compiled here:
    :func:`backward_s` (``gAT``, ``lap``; ``B`` into ``S``) and ``gU[j, k] <- (0 if first else
    gU[j, k]) + sum_i B[i, j] Xb[i, k]`` (:func:`~mfpde.kernels.gemm.accumulate_gu`), panel by
    panel.

    Shapes: as :func:`backward_s`; ``XP`` the packed ``Xb``
    (:func:`~mfpde.kernels.gemm.pack_inputs`); ``gU`` (Nc, d_in) C-contiguous; ``BP``
    (w // 6, nb, 6) scratch, ``w`` the panel width (:func:`~mfpde.kernels.gemm.panel_width`).
    Every array float64, or every array float32.
    """
    kernels = _BACKWARD_G1 if (AT.shape[0] == 1 and not want_lap) else _BACKWARD_G
    kernels[code](S, G, AT, train_a, gAT, want_lap, xn2, lap, Xb, XP, gU, first, BP)


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
    du = theta.shape[1] - pa
    transposed = gU.shape[0] == 0
    for j in range(theta.shape[0]):
        # one loop per part, without a branch per entry: the u part vectorises
        for k in range(pa):
            out[j, k] = gAT[k, j] + lam * theta[j, k]
        if transposed:
            for k in range(du):
                out[j, pa + k] = gUT[k, j] + lam * theta[j, pa + k]
        else:
            for k in range(du):
                out[j, pa + k] = gU[j, k] + lam * theta[j, pa + k]


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


@jit
def assemble_em(theta, gAT, gU, gUT, lam, pa, step, noise, noise_scale, u32):
    """:func:`assemble_chunk` and :func:`em_rows` of one chunk in one pass over its rows: the
    force ``g_j = [gAT[:, j]^T, gU[j]] + lam * theta_j`` (dynamics.md §1.2) and the update
    ``theta_j <- theta_j - step * g_j + noise_scale * noise_j`` (dynamics.md §3), in place,
    without writing the force (the same operations in the same order: the same bits). With a
    non-empty ``u32`` the updated ``u`` part of each row is also written there, rounded to
    float32: the float32 copy of ``U`` that the next float32 pass reads
    (:class:`EMChunks` ``chain``).

    Shapes ``theta`` (Nc, D) (a row block, float64), ``gAT`` (pa, Nc), ``gU`` (Nc, d_in) or
    (0, 0) with ``gUT`` (d_in, Nc); ``noise`` (Nc, D), or (0, 0) when ``noise_scale == 0``;
    ``u32`` (Nc, D - pa) float32, or (0, 0) (:data:`NO_U32`; always so with ``gUT``)."""
    du = theta.shape[1] - pa
    transposed = gU.shape[0] == 0
    use_noise = noise_scale != 0.0
    copy = u32.shape[0] != 0 and not transposed
    for j in range(theta.shape[0]):
        for k in range(pa):
            g = gAT[k, j] + lam * theta[j, k]
            v = theta[j, k] - step * g
            if use_noise:
                v += noise_scale * noise[j, k]
            theta[j, k] = v
        # the u part: one loop per case, without a branch per entry (the loops vectorise)
        if transposed:
            for k in range(du):
                g = gUT[k, j] + lam * theta[j, pa + k]
                v = theta[j, pa + k] - step * g
                if use_noise:
                    v += noise_scale * noise[j, pa + k]
                theta[j, pa + k] = v
            continue
        t = theta[j, pa:]
        gu = gU[j]
        if use_noise:
            z = noise[j, pa:]
            if copy:
                c = u32[j]
                for k in range(du):
                    v = (t[k] - step * (gu[k] + lam * t[k])) + noise_scale * z[k]
                    t[k] = v
                    c[k] = np.float32(v)
            else:
                for k in range(du):
                    t[k] = (t[k] - step * (gu[k] + lam * t[k])) + noise_scale * z[k]
        elif copy:
            c = u32[j]
            for k in range(du):
                v = t[k] - step * (gu[k] + lam * t[k])
                t[k] = v
                c[k] = np.float32(v)
        else:
            for k in range(du):
                t[k] = t[k] - step * (gu[k] + lam * t[k])


#: the empty noise array of a noiseless update (``noise_scale == 0``)
NO_NOISE = np.empty((0, 0))

#: the empty float32 copy of an update that writes none (:func:`assemble_em`)
NO_U32 = np.empty((0, 0), np.float32)


class EMChunks:
    """The Euler–Maruyama update of dynamics.md §3, ``theta <- theta - step * force +
    noise_scale * noise``, applied chunk by chunk of particles as a force plan hands the chunks
    over (``on_chunk`` of :meth:`mfpde.models.readout.ReadoutModel.force_chunks`).

    Called as ``(lo, hi, force, item)`` it updates ``theta[lo:hi]`` from the chunk's force
    (:func:`em_rows`); a model that holds the force as its sums may call :meth:`assembled`
    instead, which forms the force and updates the rows in one pass (:func:`assemble_em`, the
    same bits). The chunk's noise is ``item`` (made by the plan's ``produce``) when given, else
    ``noise[lo:hi]`` of the (N, D) array ``noise``; none when ``noise_scale == 0``.

    ``chain``: a token shared by the updates of consecutive steps of one run (any object, e.g.
    one ``object()`` per call of a solver's ``step``), or None. Between two updates of one chain
    nothing else writes ``theta``, so a float32 gradient pass may write the float32 copy of the
    updated ``U`` as it updates the rows (:meth:`assembled` ``u32``) and the next pass of the
    chain reads it instead of copying ``U`` again (:meth:`mfpde.models.readout.ReadoutModel.
    force_chunks`). ``more``: whether another update of the chain follows this one (the copy is
    written only then; the last update of a chain writes none).
    """

    def __init__(self, theta, step, noise_scale, noise=None, chain=None, more=False):
        self.theta, self.step, self.noise_scale, self.noise = theta, step, noise_scale, noise
        self.chain, self.more = chain, bool(more) and chain is not None

    def _noise(self, lo, hi, item):
        if self.noise_scale == 0.0:
            return NO_NOISE
        return item if item is not None else self.noise[lo:hi]

    def __call__(self, lo, hi, force, item):
        em_rows(self.theta[lo:hi], force, self._noise(lo, hi, item), self.step,
                self.noise_scale, 0, hi - lo)

    def assembled(self, lo, hi, gAT, gU, gUT, lam, pa, item, u32=NO_U32):
        """Rows ``[lo, hi)`` updated from the parts of their force (:func:`assemble_chunk`'s
        arguments ``gAT, gU, gUT, lam, pa``); with ``u32`` ((hi - lo, D - pa) float32) their
        updated ``u`` parts are also written there, rounded to float32."""
        assemble_em(self.theta[lo:hi], gAT, gU, gUT, lam, pa, self.step,
                    self._noise(lo, hi, item), self.noise_scale, u32)


def em_update(theta, grad, noise, step, noise_scale):
    """Euler–Maruyama update ``theta <- theta - step*grad + noise_scale*noise`` in one pass.

    Implements dynamics.md §3: ``theta^{k+1} = theta^k - eps_k grad Psi + sqrt(2 eps_k/beta) g``.
    ``noise`` may be ``(0, 0)`` when ``noise_scale == 0`` (noiseless flow). Shapes ``(N, D)``.
    Rows are updated by particle chunks on the thread pool (:mod:`mfpde._pool`).
    """
    b = chunk_bounds(theta.shape[0])
    run_tasks(lambda c: em_rows(theta, grad, noise, step, noise_scale, b[c], b[c + 1]),
              b.size - 1)
