r"""Compiled matrix products of the read-out pass, with the element-wise work fused around them.

Two products make the gradient pass of a read-out model when ``d_in`` is not small
(theory/dynamics.md §1.2, the row layout of :mod:`mfpde.kernels.readout`): for one block of
samples ``X_b`` (``nb x d_in``) and one chunk of particles with input weights ``U_c``
(``Nc x d_in``, rows of the particle state)

.. math::

    P = X_b U_c^\top \quad (P_{ij} = \textstyle\sum_k X_{ik} U_{jk}),\qquad
    \nabla_{U_c}\Psi \mathrel{+}= B^\top X_b \quad
    \bigl((\nabla_U\Psi)_{jk} \mathrel{+}= \textstyle\sum_i B_{ij} X_{ik}\bigr).

This module computes both without a BLAS call, so that the activation and the backward
element-wise work run on tiles that are still in the first cache levels (:func:`project`,
:func:`accumulate_gu`, called panel by panel by the fused kernels of
:mod:`mfpde.kernels.readout`).

**Arithmetic.** Every entry is one chain of fused multiply-adds in the order of the summation
index, from zero: ``a <- fma(x_k, u_k, a)`` for ``k = 0, 1, ..., d_in - 1`` (projection) and
``a <- fma(b_i, x_i, a)`` for the samples ``i`` of a block in order, continued from the chunk's
sum over the earlier blocks (``grad_U``: one chain over all samples). ``llvm.fma`` rounds once
on every target, so the result depends neither on the CPU nor on a BLAS build, and every entry
is the same whichever tile (full, narrower, or on zero-padded edges) computes it.

**Tiles.** The inner loops are LLVM vector code emitted by two intrinsics (:func:`_fwd_tile`,
:func:`_bwd_tile`) with twelve vector accumulators in registers: 4 particles x ``3 L`` samples
for the projection (each 4 x 4 block transposed in registers before its rows are stored), 6
particles x ``2 L`` inputs for ``grad_U``; narrower tiles take the edges, and the last
samples, particles or inputs that fill no tile are computed by a tile on zero-padded copies
into a scratch tile (a scalar chain per entry there, latency-bound, took 20-35 % of a kernel
whose shape is not a multiple of the tile: 209 samples or 65 inputs).
The vectors are :data:`~mfpde._numba.VECTOR_BYTES` wide: 512-bit on CPUs with AVX-512, else
256-bit, so ``L`` = :func:`lanes` is 8 or 4 float64 and 16 or 8 float32 entries; the width
changes no result (the chains are the same). Each tile reads its operands in order from packed
copies: ``X_b^T`` in groups of ``3 L`` samples (:func:`pack_samples`) and the chunk's ``u`` rows
in place for the projection; ``X_b`` in panels of ``2 L`` inputs (:func:`pack_inputs`) and
``B`` six particles at a time for ``grad_U``. One core runs them at the rate of OpenBLAS's
dgemm on the shapes of the pass (256-bit, d_in = 64: 33-41 GFLOP/s against 32-39; 512-bit on
an AVX-512 core: 89-97 GFLOP/s against 53-56 for the 256-bit tiles, docs/performance.md).

Shapes and strides: 2-D arrays of one float type (float64, or float32 for the mixed-precision
pass) whose last axis is contiguous; rows may be strided (the chunk's ``u`` rows are a view of
the ``(N, D)`` state). :func:`project` and :func:`accumulate_gu` check the shapes, the unit
strides of the last axes and the packed layouts (ValueError) before any vector access.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._numba import VECTOR_BYTES, jit

#: particles per projection tile (4 x 4 blocks are transposed in registers)
TILE_P = 4
#: particles per ``grad_U`` tile (6 particles x 2 vectors of inputs: 12 vector accumulators)
TILE_Q = 6

_I64 = ir.IntType(64)
_I32 = ir.IntType(32)


def _c(v):
    return ir.Constant(_I64, v)


def lanes(dtype) -> int:
    """Entries of one vector of :data:`~mfpde._numba.VECTOR_BYTES`: 4 float64, 8 float32
    (256-bit), or 8 and 16 (512-bit). A projection tile takes ``3 lanes`` samples
    (:func:`pack_samples`), a ``grad_U`` tile ``2 lanes`` inputs (:func:`pack_inputs`)."""
    return VECTOR_BYTES // np.dtype(dtype).itemsize


class _Vec:
    """The LLVM types of one float type's vector tiles."""

    def __init__(self, nbtype):
        self.f32 = nbtype == types.float32
        self.elem = ir.FloatType() if self.f32 else ir.DoubleType()
        self.size = 4 if self.f32 else 8
        self.L = VECTOR_BYTES // self.size
        self.vec = ir.VectorType(self.elem, self.L)
        self.vec4 = ir.VectorType(self.elem, 4)
        self.zero = ir.Constant(self.vec, [0.0] * self.L)

    def rows(self, context, builder, aty, aval):
        """(data pointer, row stride in entries, shape) of a 2-D array argument."""
        arr = context.make_array(aty)(context, builder, aval)
        shape = cgutils.unpack_tuple(builder, arr.shape)
        stride = cgutils.unpack_tuple(builder, arr.strides)[0]
        return arr.data, builder.ashr(stride, _c(2 if self.f32 else 3)), shape

    def load(self, builder, data, index, vty=None):
        p = builder.bitcast(builder.gep(data, [index]), (vty or self.vec).as_pointer())
        return builder.load(p, align=self.size)

    def store(self, builder, value, data, index):
        p = builder.bitcast(builder.gep(data, [index]), value.type.as_pointer())
        builder.store(value, p, align=self.size)

    def broadcast(self, builder, x):
        undef = ir.Constant(self.vec, ir.Undefined)
        v = builder.insert_element(undef, x, _c(0))
        return builder.shuffle_vector(v, undef, ir.Constant(ir.VectorType(_I32, self.L),
                                                            [0] * self.L))

    def fma(self, builder):
        name = f"llvm.fma.v{self.L}f{32 if self.f32 else 64}"
        fnty = ir.FunctionType(self.vec, [self.vec] * 3)
        return cgutils.get_or_insert_function(builder.module, fnty, name)

    def accumulators(self, builder, npart, nvec):
        """``npart x nvec`` zeroed vector accumulators (stack slots that LLVM keeps in
        registers)."""
        return [[cgutils.alloca_once_value(builder, self.zero) for _ in range(nvec)]
                for _ in range(npart)]

    def rank1(self, builder, vfma, acc, xv, data, indices):
        """One term of every chain of a tile: ``acc[r][c] <- fma(xv[c], data[indices[r]],
        acc[r][c])``, the scalar broadcast to a vector."""
        for r, idx in enumerate(indices):
            b = self.broadcast(builder, builder.load(builder.gep(data, [idx])))
            for c, x in enumerate(xv):
                a = acc[r][c]
                builder.store(builder.call(vfma, [x, b, builder.load(a)]), a)

    def quarter(self, builder, v, h):
        """Entries ``4 h .. 4 h + 3`` of a vector (the vector itself when it has four)."""
        if self.L == 4:
            return v
        return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, 4),
                                                        list(range(4 * h, 4 * h + 4))))

    def join(self, builder, parts):
        """The vector of the four-entry ``parts`` in order (the inverse of :meth:`quarter`):
        neighbours concatenated pairwise, 4 -> 8 -> 16 entries."""
        while len(parts) > 1:
            m = 2 * parts[0].type.count
            parts = [builder.shuffle_vector(parts[q], parts[q + 1],
                                            ir.Constant(ir.VectorType(_I32, m), list(range(m))))
                     for q in range(0, len(parts), 2)]
        return parts[0]


def _transpose4(builder, a):
    """The 4x4 transpose of four 4-entry vectors (rows -> columns)."""
    def sh(x, y, idx):
        return builder.shuffle_vector(x, y, ir.Constant(ir.VectorType(_I32, 4), idx))
    t0, t1 = sh(a[0], a[1], [0, 4, 2, 6]), sh(a[0], a[1], [1, 5, 3, 7])
    t2, t3 = sh(a[2], a[3], [0, 4, 2, 6]), sh(a[2], a[3], [1, 5, 3, 7])
    return [sh(t0, t2, [0, 1, 4, 5]), sh(t1, t3, [0, 1, 4, 5]),
            sh(t0, t2, [2, 3, 6, 7]), sh(t1, t3, [2, 3, 6, 7])]


def _arrays(*arrs):
    """The one float type of 2-D array arguments, or None."""
    if not all(isinstance(a, types.Array) and a.ndim == 2 for a in arrs):
        return None
    t = arrs[0].dtype
    if t not in (types.float64, types.float32) or any(a.dtype != t for a in arrs):
        return None
    return t


def _fwd_tile(nvec):
    """Intrinsic ``tile(XT, U, Z, xi, zi, j0, zj, k0, k1, first)``: ``Z[zi + s, zj + r] <- a +
    sum_k XT[k, xi + s] U[j0 + r, k]`` over ``k0 <= k < k1`` for ``r < 4`` particles and
    ``s < nvec L`` samples (``L`` = :func:`lanes`), each a chain of fused multiply-adds in the
    order of ``k`` from ``a = 0`` (``first``) or from ``a = Z[zi + s, zj + r]`` (a later block of
    inputs: the same chain). ``XT`` (d_in, .) holds the samples' inputs in columns (a packed
    group of :func:`pack_samples`), ``U`` (Nc, d_in), ``Z`` (nb, Nc) or a scratch tile (``zj``:
    its column of particle ``j0``); float64 or float32."""
    @intrinsic
    def tile(typingctx, XT, U, Z, xi, zi, j0, zj, k0, k1, first):
        t = _arrays(XT, U, Z)
        if t is None:
            return None
        sig = types.void(XT, U, Z, xi, zi, j0, zj, k0, k1, first)

        def codegen(context, builder, signature, args):
            V = _Vec(t)
            xd, xs, _ = V.rows(context, builder, signature.args[0], args[0])
            ud, us, _ = V.rows(context, builder, signature.args[1], args[1])
            zd, zs, _ = V.rows(context, builder, signature.args[2], args[2])
            xiv, ziv, j0v, zjv, k0v, k1v = (context.cast(builder, args[q], signature.args[q],
                                                         types.int64) for q in range(3, 9))
            first = context.cast(builder, args[9], signature.args[9], types.boolean)
            vfma = V.fma(builder)
            nq = V.L // 4
            # Z row of sample (c, h, s): c-th vector, h-th quarter, s-th entry
            zidx = [[[builder.add(builder.mul(builder.add(ziv, _c(V.L * c + 4 * h + s)), zs),
                                  zjv) for s in range(4)] for h in range(nq)]
                    for c in range(nvec)]
            acc = V.accumulators(builder, TILE_P, nvec)
            for c in range(nvec):
                quarters = [_transpose4(builder, [V.load(builder, zd, zidx[c][h][s], V.vec4)
                                                  for s in range(4)]) for h in range(nq)]
                for r in range(TILE_P):
                    old = V.join(builder, [quarters[h][r] for h in range(nq)])
                    builder.store(builder.select(first, V.zero, old), acc[r][c])
            urow = [builder.mul(builder.add(j0v, _c(r)), us) for r in range(TILE_P)]
            with cgutils.for_range_slice(builder, k0v, k1v, _c(1)) as (k, _):
                xb = builder.add(builder.mul(k, xs), xiv)
                xv = [V.load(builder, xd, builder.add(xb, _c(V.L * c))) for c in range(nvec)]
                V.rank1(builder, vfma, acc, xv, ud, [builder.add(u, k) for u in urow])
            for c in range(nvec):
                vals = [builder.load(acc[r][c]) for r in range(TILE_P)]
                for h in range(nq):
                    rows = _transpose4(builder, [V.quarter(builder, v, h) for v in vals])
                    for s in range(4):
                        V.store(builder, rows[s], zd, zidx[c][h][s])
            return context.get_dummy_value()

        return sig, codegen

    return tile


def _bwd_tile(nvec, npart=TILE_Q):
    """Intrinsic ``tile(B, X, G, jb, kx, jg, kg, first)``: ``G[jg + r, kg + t] <- a + sum_i
    B[i, jb + r] X[i, kx + t]`` for ``r < npart`` particles and ``t < nvec L`` inputs, each a
    chain of fused multiply-adds over the samples ``i`` in order from ``a = 0`` (``first``) or
    from ``a = G[jg + r, kg + t]``. ``B`` (nb, .), ``X`` (nb, .), ``G`` (., .): the operands may
    be packed panels (offsets ``jb``, ``kx``) of the arrays whose entries ``G`` holds; float64 or
    float32."""
    @intrinsic
    def tile(typingctx, B, X, G, jb, kx, jg, kg, first):
        t = _arrays(B, X, G)
        if t is None:
            return None
        sig = types.void(B, X, G, jb, kx, jg, kg, first)

        def codegen(context, builder, signature, args):
            V = _Vec(t)
            bd, bs, _ = V.rows(context, builder, signature.args[0], args[0])
            xd, xs, xshape = V.rows(context, builder, signature.args[1], args[1])
            gd, gs, _ = V.rows(context, builder, signature.args[2], args[2])
            nb = xshape[0]
            jbv, kxv, jgv, kgv = (context.cast(builder, args[q], signature.args[q], types.int64)
                                  for q in range(3, 7))
            first = context.cast(builder, args[7], signature.args[7], types.boolean)
            vfma = V.fma(builder)
            gidx = [[builder.add(builder.mul(builder.add(jgv, _c(r)), gs),
                                 builder.add(kgv, _c(V.L * c))) for c in range(nvec)]
                    for r in range(npart)]
            acc = V.accumulators(builder, npart, nvec)
            for r in range(npart):
                for c in range(nvec):
                    old = V.load(builder, gd, gidx[r][c])
                    builder.store(builder.select(first, V.zero, old), acc[r][c])
            with cgutils.for_range(builder, nb) as loop:
                i = loop.index
                xb = builder.add(builder.mul(i, xs), kxv)
                xv = [V.load(builder, xd, builder.add(xb, _c(V.L * c))) for c in range(nvec)]
                bb = builder.add(builder.mul(i, bs), jbv)
                V.rank1(builder, vfma, acc, xv, bd, [builder.add(bb, _c(r)) for r in range(npart)])
            for r in range(npart):
                for c in range(nvec):
                    V.store(builder, builder.load(acc[r][c]), gd, gidx[r][c])
            return context.get_dummy_value()

        return sig, codegen

    return tile


_fwd3 = _fwd_tile(3)
_fwd1 = _fwd_tile(1)
_bwd2 = _bwd_tile(2)
_bwd1 = _bwd_tile(1)

#: inputs per block of the projection's chains: the block's ``X_b^T`` rows of a tile
#: (``KB x 3 lanes`` entries, 24 KiB: 256 inputs with 256-bit vectors, 128 with 512-bit) stay in
#: the first-level cache; each block continues the chains of the one before (the same bits as
#: one chain)
KB = (24 << 10) // (3 * VECTOR_BYTES)


@jit(inline="always")
def _steps(a, ax, n):
    """Whether axis ``ax`` of ``a`` steps ``n`` elements, or is never stepped (length <= 1, or
    ``a`` empty: NumPy gives such axes any stride, zero for empty arrays)."""
    return a.size == 0 or a.shape[ax] <= 1 or a.strides[ax] == n * a.itemsize


@jit
def panel_width(d_in, nb, itemsize=8):
    """Particles per panel of the fused kernels for ``d_in`` inputs and ``nb`` samples of
    ``itemsize`` bytes (8, or 4 in float32): the panel's ``u`` rows (projection, counted as
    doubles) and packed ``B`` columns (``grad_U``, ``nb`` entries of ``itemsize`` bytes per
    particle), within 256 KiB of a core's second-level cache; a multiple of 12 (of
    :data:`TILE_P` and :data:`TILE_Q`) between 24 and 252. Measured: float32 panels of twice
    the particles (144 against 72) made the float32 step at d_in = 64, nb = 432 faster
    (38.5-41.3 against 45.6-48.9 ms), but counting the ``u`` rows in float32 too made it 8 %
    slower at d_in = 784, nb = 64, hence the ``u`` rows as doubles. The panels
    split the particles only: every particle's sums are the same for any width."""
    w = (1 << 18) // max(8 * d_in, itemsize * nb, 8)
    return max(24, min(252, w)) // 12 * 12


def pack_samples(Xb):
    """``X_b`` (nb, d_in) as the packed groups of :func:`project`: (ceil(nb / W), d_in, W) with
    ``W = 3 lanes`` (12 or 24 float64, 24 or 48 float32 samples), group ``g`` holding ``X_b^T``
    of the samples ``W g .. W g + W - 1`` (zeros past ``nb``), so that a tile reads its inputs in
    order, whatever ``nb`` (a power-of-two row stride of ``X_b^T`` would map the rows a tile
    reads to a few sets of the first-level cache)."""
    nb, d_in = Xb.shape
    W = 3 * lanes(Xb.dtype)
    ng = -(-nb // W)
    rows = np.zeros((ng, W, d_in), Xb.dtype)
    rows.reshape(ng * W, d_in)[:nb] = Xb
    out = np.empty((ng, d_in, W), Xb.dtype)      # the canonical strides, also of length-1 axes
    out[...] = rows.transpose(0, 2, 1)
    return out


def pack_inputs(Xb):
    """``X_b`` (nb, d_in) as the packed panels of :func:`accumulate_gu`: (d_in // T, nb, T) with
    ``T = 2 lanes`` (8 or 16 float64, 16 or 32 float32 inputs), panel ``t`` holding the inputs
    ``T t .. T t + T - 1`` contiguous per sample."""
    nb, d_in = Xb.shape
    T = 2 * lanes(Xb.dtype)
    nt = d_in // T
    out = np.empty((nt, nb, T), Xb.dtype)        # the canonical strides, also for nb = 1
    out[...] = Xb[:, :nt * T].reshape(nb, nt, T).transpose(1, 0, 2)
    return out


@jit(error_model="numpy")
def project(XTP, U, Z, g, j0, j1):
    r"""``Z[i, j] = sum_k X_b[i, k] U[j, k]`` (:math:`P = X_b U^\top`) for the samples
    ``i`` of group ``g`` (``W g <= i < min(nb, W g + W)``, ``W = XTP.shape[2]``) and
    ``j0 <= j < j1`` (module docstring: one chain per entry). ``XTP`` the packed groups of
    ``X_b`` (:func:`pack_samples`), ``U`` (Nc, d_in) the chunk's ``u`` rows, ``Z`` (nb, Nc); one
    float type, last axes contiguous. Tiles of 4 particles x ``W`` (at the last group
    ``W / 3``) samples, :data:`KB` inputs at a time; the edges (a last group of fewer than ``W``
    samples, fewer than 4 particles) by the same tiles on zero-padded copies into a scratch
    tile."""
    K = U.shape[1]
    nb = Z.shape[0]
    W = XTP.shape[2]
    L = W // 3
    i0 = W * g
    if not (0 <= i0 < nb and 0 <= j0 <= j1 <= min(Z.shape[1], U.shape[0])
            and XTP.shape[0] * W >= nb and XTP.shape[1] == K and W == 3 * L
            and L * Z.itemsize == VECTOR_BYTES and _steps(XTP, 2, 1)
            and _steps(XTP, 1, W) and _steps(U, 1, 1)
            and _steps(Z, 1, 1)):
        raise ValueError("project: shapes or strides of XTP, U, Z or the ranges do not match")
    XT = XTP[g]
    rows = min(W, nb - i0)
    rl = rows // L * L if rows < W else rows
    jt = j0 + (j1 - j0) // TILE_P * TILE_P
    for k0 in range(0, K, KB):
        k1 = min(K, k0 + KB)
        for j in range(j0, jt, TILE_P):
            if rows == W:
                _fwd3(XT, U, Z, 0, i0, j, j, k0, k1, k0 == 0)
            else:
                for s in range(0, rl, L):
                    _fwd1(XT, U, Z, s, i0 + s, j, j, k0, k1, k0 == 0)
    if rl < rows:
        # the last rows of a last group: L samples of the zero-padded group into a scratch tile
        T = np.empty((L, TILE_P), Z.dtype)
        for j in range(j0, jt, TILE_P):
            for k0 in range(0, K, KB):
                _fwd1(XT, U, T, rl, 0, j, 0, k0, min(K, k0 + KB), k0 == 0)
            for s in range(rows - rl):
                for r in range(TILE_P):
                    Z[i0 + rl + s, j + r] = T[s, r]
    if jt < j1:
        # the last particles: their u rows and zero rows into a scratch tile of the group
        Up = np.zeros((TILE_P, K), Z.dtype)
        for r in range(j1 - jt):
            Up[r] = U[jt + r]
        T = np.empty((W, TILE_P), Z.dtype)
        for k0 in range(0, K, KB):
            k1 = min(K, k0 + KB)
            if rows == W:
                _fwd3(XT, Up, T, 0, 0, 0, 0, k0, k1, k0 == 0)
            else:
                for s in range(0, rows, L):
                    _fwd1(XT, Up, T, s, s, 0, 0, k0, k1, k0 == 0)
        for s in range(rows):
            for r in range(j1 - jt):
                Z[i0 + s, jt + r] = T[s, r]


@jit(error_model="numpy")
def accumulate_gu(B, X, XP, G, j0, j1, first, BP):
    r"""``G[j, k] <- (0 if first else G[j, k]) + sum_i B[i, j] X[i, k]``
    (:math:`\nabla_U\Psi \mathrel{+}= B^\top X_b`) for ``j0 <= j < j1`` and every input ``k``,
    over the samples ``i`` of the block in order (module docstring). ``B`` (nb, Nc), ``X``
    (nb, d_in), ``XP`` its packed panels (:func:`pack_inputs`, ``T = XP.shape[2]`` inputs each),
    ``G`` (Nc, d_in), one float type; ``BP`` (>= ceil((j1 - j0) / 6), nb, 6) scratch: the
    range's ``B`` columns are packed six particles at a time (zero columns past ``j1``), so that
    every tile reads both operands in order; tiles of 6 particles x ``T`` (then ``T / 2``)
    inputs; the edges (fewer than ``T / 2`` inputs, fewer than 6 particles) by the same tiles
    on zero-padded copies into a scratch tile."""
    nb = X.shape[0]
    K = X.shape[1]
    T = XP.shape[2]
    L = T // 2
    nq = (j1 - j0) // TILE_Q
    jr = j0 + TILE_Q * nq                 # the particles [jr, j1) of a last, partial group
    if not (0 <= j0 <= j1 <= min(B.shape[1], G.shape[0]) and B.shape[0] == nb and G.shape[1] == K
            and nq + (jr < j1) <= BP.shape[0] and BP.shape[1] == nb and BP.shape[2] == TILE_Q
            and XP.shape[0] == K // T and XP.shape[1] == nb and T == 2 * L
            and L * G.itemsize == VECTOR_BYTES and _steps(B, 1, 1)
            and _steps(X, 1, 1) and _steps(G, 1, 1)
            and _steps(XP, 2, 1) and _steps(XP, 1, T)
            and _steps(BP, 2, 1) and _steps(BP, 1, TILE_Q)):
        raise ValueError("accumulate_gu: shapes or strides of B, X, XP, G, BP or the range do "
                         "not match")
    for q in range(nq + (jr < j1)):
        Bq = BP[q]
        m = min(TILE_Q, j1 - j0 - TILE_Q * q)
        for i in range(nb):
            Bi = B[i]
            for r in range(m):
                Bq[i, r] = Bi[j0 + TILE_Q * q + r]
            for r in range(m, TILE_Q):
                Bq[i, r] = 0.0
    kt = XP.shape[0] * T
    kl = kt + (K - kt) // L * L
    for t in range(XP.shape[0]):
        Xt = XP[t]
        for q in range(nq):
            _bwd2(BP[q], Xt, G, 0, 0, j0 + TILE_Q * q, T * t, first)
    for q in range(nq):
        for k in range(kt, kl, L):
            _bwd1(BP[q], X, G, 0, k, j0 + TILE_Q * q, k, first)
    # the last inputs [kl, K) of every group, L of the zero-padded inputs into a scratch tile
    XR = np.zeros((nb if kl < K else 0, L), G.dtype)
    for i in range(XR.shape[0]):
        for k in range(kl, K):
            XR[i, k - kl] = X[i, k]
    GR = np.zeros((TILE_Q, L), G.dtype)
    if kl < K:
        for q in range(nq):
            _gu_rest(BP[q], XR, GR, G, j0 + TILE_Q * q, kl, first)
    if jr < j1:
        # the last particles: every input of the zero-padded group into a scratch tile
        Bq = BP[nq]
        GS = np.zeros((TILE_Q, K), G.dtype)
        if not first:
            for r in range(j1 - jr):
                GS[r] = G[jr + r]
        for t in range(XP.shape[0]):
            _bwd2(Bq, XP[t], GS, 0, 0, 0, T * t, first)
        for k in range(kt, kl, L):
            _bwd1(Bq, X, GS, 0, k, 0, k, first)
        if kl < K:
            _gu_rest(Bq, XR, GR, GS, 0, kl, first)
        for r in range(j1 - jr):
            G[jr + r] = GS[r]


@jit(inline="always")
def _gu_rest(Bq, XR, GR, G, jg, kl, first):
    """Inputs ``kl ..`` of the six particles ``jg ..`` of :func:`accumulate_gu`: one
    ``L``-input tile on the zero-padded inputs ``XR`` (nb, L) into the scratch ``GR`` (6, L),
    continued from ``G`` unless ``first``."""
    nr = G.shape[1] - kl
    if not first:
        for r in range(TILE_Q):
            for k in range(nr):
                GR[r, k] = G[jg + r, kl + k]
    _bwd1(Bq, XR, GR, 0, 0, 0, 0, first)
    for r in range(TILE_Q):
        for k in range(nr):
            G[jg + r, kl + k] = GR[r, k]


@jit(error_model="numpy")
def project_kernel(XTP, U, Z):
    """:func:`project` over the whole of ``Z``, a panel (:func:`panel_width`) at a time (tests
    and benchmarks)."""
    nb, m = Z.shape
    w = panel_width(U.shape[1], nb, U.itemsize)
    for j0 in range(0, m, w):
        for g in range(XTP.shape[0]):
            project(XTP, U, Z, g, j0, min(m, j0 + w))


@jit(error_model="numpy")
def accumulate_gu_kernel(B, X, XP, G, first):
    """:func:`accumulate_gu` over every particle of ``G``, a panel at a time (tests and
    benchmarks)."""
    nb, K = X.shape
    m = G.shape[0]
    w = panel_width(K, nb, G.itemsize)
    BP = np.empty((w // TILE_Q, nb, TILE_Q), G.dtype)
    for j0 in range(0, m, w):
        accumulate_gu(B, X, XP, G, j0, min(m, j0 + w), first, BP)


__all__ = ["KB", "TILE_P", "TILE_Q", "VECTOR_BYTES", "accumulate_gu", "accumulate_gu_kernel",
           "lanes", "pack_inputs", "pack_samples", "panel_width", "project", "project_kernel"]
