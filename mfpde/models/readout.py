r"""The shared read-out model: particles ``theta_j = (a_j, u_j)`` and features ``h = E_rho[a sigma(u^T x)]``.

Both network families of the library are instances of this one computation (theory/models.md §1–§2,
dynamics.md §1.2–§1.3, row layout):

.. math::

    P = X U^\top,\; S = \sigma(P)\ (n\times N),\qquad
    H = \tfrac1N S A\ (n\times p),\qquad
    \hat Y = \Gamma H W\ (n\times q),\qquad Z = \hat Y - Y,

    G = \tfrac{\Gamma}{n} Z W^\top,\qquad
    \nabla_A\Psi = S^\top G + \lambda A,\qquad
    \nabla_U\Psi = (S'\odot G A^\top)^\top X + \lambda U,\qquad
    \nabla_W F = \tfrac{\Gamma}{n} H^\top Z + \lambda_W W .

The two-layer network is the case ``W = I_q``, ``Gamma = 1``, ``p = q`` (``W`` is then not a
parameter). With the output weight fixed to 1 the particle is ``u`` alone and ``A = 1``.

The data are streamed in blocks of samples (:meth:`ReadoutModel.block_size`) so memory stays
``O(N*D + block*N)`` (``O(N*D)`` in the low-memory sweep, at most twice the particle state
when it keeps tiles, :meth:`ReadoutModel.kept_samples`): the ``n x N`` matrices are never
formed. The element-wise work is fused in :mod:`mfpde.kernels.readout`. The products ``X_b U^T``
and ``B^T X_b``: for a small ``d_in`` (:data:`SMALL_D`) and an activation of
:data:`~mfpde.kernels.readout.FROM_S`, loops of those kernels; for a larger ``d_in`` with such
an activation, the compiled tiles of :mod:`mfpde.kernels.gemm` around the element-wise rows
(one fused multiply-add chain per entry, in the order of the summation index: the results
depend neither on the CPU nor on a BLAS library); for the other activations BLAS calls.

Precision (``precision``): by default every array of the pass is float64. With ``precision =
"float32"`` the gradient pass (the force of :meth:`ReadoutModel.gradient` and
:meth:`ReadoutModel.force_chunks`) is mixed precision: the copies of ``X_b``, ``U`` (and ``A``,
``G``) it reads are float32, so the products ``X_b U^T`` and ``B^T X_b`` are float32 tiles
(sgemm calls for the other activations) and the tiles ``S``, ``B`` and the element-wise kernels
are float32 (the float32 tanh of
:func:`~mfpde.kernels.activations.tanh_simd32`); the partial features ``S A^w`` are summed in
float64 within a chunk and across chunks (in chunk order), the per-block sums ``grad_A``,
``grad_U`` (and Laplacian) of a chunk are float32 and are added over blocks in float64, and the
force is assembled in float64. The particle state, the update and the noise stay float64, as do
the passes without a gradient (:meth:`ReadoutModel.features`, :meth:`ReadoutModel.risk`).

Particles split over processes (``part``, e.g. :class:`mfpde.parallel.Partition` on MPI ranks):
the gradient pass of one process holds the rows of a contiguous range of the fixed chunks of
:func:`~mfpde.kernels.readout.chunk_bounds` ``(N)``; after each block's forward phase the
per-chunk partial features are exchanged (every process receives all ``C`` of them) and summed
in chunk order, exactly as in the single-process pass, so the force of every particle, the risk
and ``grad_W`` are bitwise those of one process holding all ``N`` particles.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..activations import activation_info, evaluate
from .._blas import blas_threads
from .._pool import run_tasks
from ..rules import MEMORY_MODES
from ..kernels.gemm import TILE_Q, pack_inputs, pack_samples, panel_width
from ..kernels.readout import (FROM_S, NO_U32, EMChunks, add_into, assemble_chunk,
                               backward_chunk, backward_g, backward_s, chunk_bounds, features_s,
                               forward_chunk, forward_g, forward_s, prepass, sweep_s)

#: input dimensions up to this use the projection of the element-wise kernels (low-dimension
#: regime) instead of matrix products
SMALL_D = 8

#: from this many particles on, gradient passes use the low-memory sweep
#: (``memory = "auto"``, see :meth:`ReadoutModel.low_memory`)
LOW_MEMORY_N = 1 << 19

#: bytes the sweep of ``memory = "auto"`` may keep in tiles, per byte of the float64 particle
#: state ``8 N D`` (:meth:`ReadoutModel.kept_samples`): the tiles of the leading blocks within
#: it are kept from the forward phase, the others evaluated again
KEEP_STATE = 1

#: bytes of one chunk's ``block x chunk`` tile where the products are BLAS calls or the tiles of
#: :mod:`mfpde.kernels.gemm` (blocks are at least :data:`BLAS_BLOCK` samples there)
TILE_BYTES = 1 << 21

#: bytes of one chunk's tile where the projection is compiled (:attr:`ReadoutModel.
#: compiled_projection`: a small ``d_in`` with a :data:`~mfpde.kernels.readout.FROM_S`
#: activation), where the element-wise kernels dominate. Every block costs two rounds of the
#: thread pool and the sum of the chunks' features; at d = 2, N = 2*10^5, n = 256 blocks of 40
#: samples (4 MiB) took 182-194 ms per step against 200-236 ms with 20 (2 MiB).
TILE_BYTES_COMPILED = 1 << 22

#: samples per block at least where the products are BLAS calls or compiled tiles (``d_in >
#: SMALL_D`` or another activation): the reduction of ``grad_U = B^T X_b`` runs over the block,
#: and each block reads and writes the chunk's ``(Nc, d_in)`` accumulator once
BLAS_BLOCK = 128

#: bytes of the sample groups that split the samples evenly where the products are the compiled
#: tiles (:meth:`ReadoutModel.block_size`): 3 cache lines, 24 float64 or 48 float32 samples, a
#: multiple of the tiles' panels of samples; equal blocks leave no short last block
SAMPLE_GROUP = 3 * 64

#: bytes of the blocks of points of :meth:`ReadoutModel.potential` (``n x block`` matrices)
BLOCK_BYTES = 1 << 25

#: precisions of the gradient pass (module docstring): float64, or the mixed float32 pass
PRECISIONS = ("float64", "float32")

_BUF_LOCK = threading.Lock()


@dataclass
class Gradient:
    """Result of :meth:`ReadoutModel.gradient`.

    Attributes
    ----------
    theta : ndarray (N, D)
        :math:`\\nabla_\\theta\\Psi(\\theta_j;\\rho_N, W)` for every particle, weight decay included
        (the N-rescaled gradient of the width-N objective, theory README convention 5).
    W : ndarray (p, q) or None
        :math:`\\nabla_W F = (\\Gamma/n) H^\\top Z + \\lambda_W W` (NC model), else None.
    risk : float
        :math:`R = \\|Z\\|_F^2/(2n)` on the data passed in.
    lap : ndarray (N,) or None
        :math:`\\Delta_\\theta\\Psi(\\theta_j)` (dynamics.md §1.2/§1.3) when requested.
    """

    theta: np.ndarray
    W: np.ndarray | None
    risk: float
    lap: np.ndarray | None = None


@dataclass(frozen=True)
class FusedPlan:
    """What the fused online kernel (:func:`mfpde.kernels.online.online_steps`) needs of a
    two-layer read-out model (:meth:`ReadoutModel.fused_plan`): activation ``code``, columns
    ``pa`` of ``a`` (``q``, or 0 for the fixed output ``a = 1``), ``bias`` (inputs
    ``x~ = (x, 1)``), weight decay ``lam``, input dimension ``d``, output dimension ``q``,
    particle dimension ``D``."""

    code: int
    pa: int
    bias: bool
    lam: float
    d: int
    q: int
    D: int


class _Tiles:
    """Work tiles of the stored pass: ``k`` buffers of ``block x N`` entries; chunk ``c``'s tiles
    are contiguous ``(nb, Nc)`` slices."""

    def __init__(self, bufs, bounds):
        self.bufs = bufs                 # k flat buffers of at least block x N entries
        self.bounds = bounds

    def get(self, c, nb, s=0):
        """Chunk ``c``'s tiles of a block of ``nb`` samples that starts at sample ``s`` of the
        buffers (the sweep keeps several blocks, one after the other; the stored pass one)."""
        j0, j1 = int(self.bounds[c]), int(self.bounds[c + 1])
        o = s * int(self.bounds[-1])
        return [b[o + nb * j0:o + nb * j1].reshape(nb, j1 - j0) for b in self.bufs]


class _Scratch:
    """Work tiles of the low-memory sweep: ``k`` buffers of ``size`` entries per thread."""

    def __init__(self, k, size, bounds, dtype=np.float64):
        self.k, self.size, self.bounds, self.dtype = k, size, bounds, dtype
        self.local = threading.local()

    def get(self, c, nb):
        bufs = getattr(self.local, "bufs", None)
        if bufs is None:
            bufs = self.local.bufs = [np.empty(self.size, self.dtype) for _ in range(self.k)]
        m = int(self.bounds[c + 1] - self.bounds[c])
        return [b[:nb * m].reshape(nb, m) for b in bufs]


def _as_matrix(name, arr, ncols=None):
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 1 and ncols == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {arr.shape}")
    if ncols is not None and arr.shape[1] != ncols:
        raise ValueError(f"{name} must have {ncols} columns, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


class ReadoutModel:
    """Mean-field read-out model (see module docstring for the equations).

    Parameters
    ----------
    d : int
        Input dimension (before the bias coordinate).
    p : int
        Feature dimension: rows of ``a`` (two-layer: ``p = q``; fixed output weight: ``p = 1``).
    q : int
        Output dimension.
    activation : str
        Activation name (:mod:`mfpde.activations`).
    bias : bool
        Append a constant 1 to every input (``x~ = (x, 1)``, models.md §1).
    train_a : bool
        Output weights ``a`` are particle coordinates (False: fixed to 1).
    Gamma : float
        Output multiplier (NC model).
    lam, lam_W : float
        Weight decay on particles and on ``W``.
    init_scale_a, init_scale_u : float
        Standard deviations of the Gaussian initialisation of ``a`` and ``u``.
    block_bytes : int or None
        Cap on the bytes of one ``block x N`` tile buffer of the stored pass (fewer samples per
        block, see :meth:`block_size`); None (default): the block rule alone.
    memory : {"auto", "fast", "low"}
        Gradient passes either keep a ``block x N`` tile buffer and (N, D) accumulators
        ("fast", the stored pass), or compute all features first and then each particle chunk
        on its own, evaluating the activations twice, with memory close to the particle state
        alone ("low", the sweep); "auto" picks the sweep from :data:`LOW_MEMORY_N` particles
        on and keeps the tiles of the leading blocks, up to the bytes of the particle state,
        so that those are evaluated once (:meth:`kept_samples`).
    precision : {"float64", "float32"}
        Arithmetic of the gradient pass (module docstring): "float64" (default), or "float32",
        the mixed-precision pass (float32 products and element-wise kernels, float64 sums over
        chunks and blocks, float64 force).
    """

    kind = "readout"
    has_W = False

    def __init__(self, d, p, q, activation="tanh", bias=False, train_a=True, Gamma=1.0,
                 lam=0.0, lam_W=0.0, init_scale_a=1.0, init_scale_u=1.0,
                 block_bytes=None, memory="auto", precision="float64"):
        for name, val in (("d", d), ("p", p), ("q", q)):
            if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {val!r}")
        for name, val in (("lam", lam), ("lam_W", lam_W)):
            if not np.isfinite(val) or val < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {val!r}")
        for name, val in (("Gamma", Gamma), ("init_scale_a", init_scale_a),
                          ("init_scale_u", init_scale_u)):
            if not np.isfinite(val) or val <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {val!r}")
        self.activation = activation
        self.info = activation_info(activation)
        self.code = self.info.code
        self.d, self.p, self.q = int(d), int(p), int(q)
        self.bias = bool(bias)
        self.train_a = bool(train_a)
        self.d_in = self.d + int(self.bias)
        self.Gamma = float(Gamma)
        self.lam, self.lam_W = float(lam), float(lam_W)
        self.init_scale_a, self.init_scale_u = float(init_scale_a), float(init_scale_u)
        self.block_bytes = None if block_bytes is None else int(block_bytes)
        if memory not in MEMORY_MODES:
            raise ValueError(f"memory must be one of {', '.join(map(repr, MEMORY_MODES))}, "
                             f"got {memory!r}")
        self.memory = memory
        self.set_precision(precision)
        self.pa = self.p if self.train_a else 0
        #: particle dimension D
        self.D = self.pa + self.d_in

    def set_precision(self, precision) -> None:
        """Set the arithmetic of the gradient pass, one of :data:`PRECISIONS` (module
        docstring); ``ValueError`` naming ``precision`` otherwise."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, "
                             f"got {precision!r}")
        self.precision = precision

    # ------------------------------------------------------------------ layout
    def split(self, theta):
        """Return ``(A, U)`` views of ``theta`` (N, D): ``A`` (N, p) (ones if fixed), ``U`` (N, d_in)."""
        theta = self.check_theta(theta)
        U = theta[:, self.pa:]
        A = theta[:, :self.pa] if self.train_a else np.ones((theta.shape[0], 1))
        return A, U

    def check_theta(self, theta, allow_empty=False):
        theta = np.asarray(theta, dtype=np.float64)
        if theta.ndim != 2 or theta.shape[1] != self.D or theta.shape[0] < (0 if allow_empty
                                                                             else 1):
            raise ValueError(f"theta must have shape (N, {self.D}) with N >= 1, got {theta.shape}")
        return theta

    def check_W(self, W):
        if not self.has_W:
            if W is not None:
                raise ValueError(f"{self.kind} model has no W; got W of shape {np.shape(W)}")
            return None
        if W is None:
            raise ValueError("the NC model needs W of shape (p, q)")
        W = np.ascontiguousarray(W, dtype=np.float64)
        if W.shape != (self.p, self.q):
            raise ValueError(f"W must have shape ({self.p}, {self.q}), got {W.shape}")
        return W

    def prepare_X(self, X):
        """Validate ``X`` (n, d) and append the bias coordinate if the model has one."""
        X = _as_matrix("X", X)
        if X.shape[1] != self.d:
            raise ValueError(f"X must have d = {self.d} columns, got shape {X.shape}")
        if self.bias:
            X = np.hstack([X, np.ones((X.shape[0], 1))])
        return X

    def prepare_Y(self, Y, n):
        Y = _as_matrix("Y", Y, ncols=self.q)
        if Y.shape[0] != n:
            raise ValueError(f"Y must have {n} rows to match X, got shape {Y.shape}")
        return Y

    def _weights(self, weights, N):
        if weights is None:
            return None
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (N,) or np.any(w < 0) or not np.isclose(w.sum(), 1.0, rtol=1e-10, atol=0):
            raise ValueError(f"weights must be a non-negative (N,) = ({N},) vector summing to 1")
        return w

    def block_size(self, n, N, itemsize=8):
        """Samples per block of a pass over ``n`` samples and ``N`` particles with tiles of
        ``itemsize``-byte entries (8, or 4 in the float32 gradient pass), a function of these
        and the model only (never of the thread or process count, so the sums over blocks have
        one order): as many as keep one chunk's ``block x chunk`` tile within
        :data:`TILE_BYTES_COMPILED` (counted in float64 entries) where the projection is
        compiled, else within :data:`TILE_BYTES` and at least :data:`BLAS_BLOCK` (the products
        are BLAS calls or the tiles of :mod:`mfpde.kernels.gemm`). Where the products are the
        compiled tiles
        the samples are then split into blocks of equal size, rounded up to a multiple of
        :data:`SAMPLE_GROUP` bytes of samples: no more blocks than the tile rule gives, and no
        short last block. In the stored pass (:meth:`low_memory` False), which allocates
        ``block x N`` buffers, the block is also at most ``block_bytes / (8 N)`` when
        ``block_bytes`` is set."""
        widest = int(np.max(np.diff(chunk_bounds(N))))
        if self.compiled_projection:
            # 8 bytes whatever the precision: float32 blocks of twice the samples were 5-8 %
            # slower (d = 2, N = 2*10^5, n = 256)
            blk = TILE_BYTES_COMPILED // (8 * widest)
        else:
            blk = max(TILE_BYTES // (itemsize * widest), BLAS_BLOCK)
            if self.code in FROM_S and blk < n:
                even = -(-n // -(-n // blk))
                group = SAMPLE_GROUP // itemsize
                blk = -(-even // group) * group
        if self.block_bytes is not None and not self.low_memory(N):
            blk = min(blk, self.block_bytes // (8 * N))
        return int(max(1, min(n, blk)))

    @property
    def compiled_projection(self) -> bool:
        """Whether the projection and ``grad_U`` are loops of the element-wise kernels (a small
        ``d_in`` and an activation of :data:`~mfpde.kernels.readout.FROM_S`) instead of products
        (the tiles of :mod:`mfpde.kernels.gemm` or BLAS calls, module docstring)."""
        return self.code in FROM_S and self.d_in <= SMALL_D

    # ------------------------------------------------------------------ init
    #: rows drawn per generator call by :meth:`init_particles` with ``rows``
    INIT_PIECE = 1 << 16

    def init_particles(self, N, rng, rows=None):
        """Draw ``theta`` (N, D): i.i.d. ``N(0, diag(s_a^2 I_p, s_u^2 I_d))`` (models.md §1).

        ``rows = (lo, hi)``: return only rows ``lo:hi`` (shape (hi - lo, D)) of the same draw.
        All ``N * D`` numbers are drawn (in pieces of :data:`INIT_PIECE` rows, which gives the
        numbers of one ``(N, D)`` call), so ``rng`` ends in the same state and every process
        of a split run holds its rows of the one initial cloud, with memory ``O(hi - lo)``.
        """
        if not isinstance(N, (int, np.integer)) or N < 1:
            raise ValueError(f"N must be an integer >= 1, got {N!r}")
        if rows is None:
            theta = rng.standard_normal((int(N), self.D))
        else:
            lo, hi = int(rows[0]), int(rows[1])
            if not 0 <= lo <= hi <= N:
                raise ValueError(f"rows must satisfy 0 <= lo <= hi <= N = {N}, got {rows!r}")
            theta = np.empty((hi - lo, self.D))
            for s in range(0, int(N), self.INIT_PIECE):
                e = min(int(N), s + self.INIT_PIECE)
                piece = rng.standard_normal((e - s, self.D))
                a, b = max(s, lo), min(e, hi)
                if a < b:
                    theta[a - lo:b - lo] = piece[a - s:b - s]
        theta[:, :self.pa] *= self.init_scale_a
        theta[:, self.pa:] *= self.init_scale_u
        return theta

    def init_W(self, rng):
        return None

    # ------------------------------------------------------------------ the pass
    def _pass(self, theta, X, Y, W, weights, grad=True, lap=False, features=False,
              on_chunk=None, produce=None, part=None):
        """One streamed pass over the data (see the module docstring for the equations).

        Particles are split in fixed chunks (:func:`~mfpde.kernels.readout.chunk_bounds`) run
        concurrently on the thread pool. Per block of samples, a forward phase computes each
        chunk's tile (``S``; ``sigma'``, ``sigma''`` for generic activations) and its partial
        features; after the features are summed in chunk order, a backward phase accumulates each
        chunk's ``grad_A``, ``grad_U`` (and Laplacian). The force of each chunk is assembled
        into the (N, D) result, or, with ``on_chunk`` (the force plan, :meth:`force_chunks`),
        into a per-thread buffer handed to ``on_chunk(lo, hi, force, item)`` as soon as it is
        complete (``item = produce(lo, hi)``, called in chunk order, or None).

        Low-memory sweep (:meth:`low_memory`): the features of every block are computed first
        and each chunk then recomputes its tiles block by block (for a small ``d_in`` one sample
        row at a time, :func:`~mfpde.kernels.readout.sweep_s`), so the ``block x N`` buffer and
        the (N, D) accumulators are replaced by per-chunk ones — one more forward evaluation for
        a memory of about the particle state alone; the block size is then not bounded by a
        ``block x N`` buffer (:meth:`block_size`). With ``memory = "auto"`` the tiles of the
        blocks within the first :meth:`kept_samples` samples are kept from the forward phase
        in ``(kept x N)`` buffers, and only the other blocks are evaluated again (the same
        products, so the same bits).

        With ``part`` (module docstring) ``theta`` holds rows ``[part.lo, part.hi)`` of the
        ``N = part.N`` particles, the chunks ``[part.c0, part.c1)``; each block's partial
        features go through ``part.allgather_chunks`` and every returned array (force, Laplacian)
        covers the rows held. ``weights`` are not supported with ``part``.
        """
        theta = self.check_theta(theta, allow_empty=part is not None)
        W = self.check_W(W) if Y is not None else None
        Xa = self.prepare_X(X)
        n = Xa.shape[0]
        Y = self.prepare_Y(Y, n) if Y is not None else None
        if part is None:
            N = theta.shape[0]
            gbounds = chunk_bounds(N)
            c0, c1 = 0, gbounds.size - 1
        else:
            N = int(part.N)
            gbounds = chunk_bounds(N)
            c0, c1 = int(part.c0), int(part.c1)
            if theta.shape[0] != gbounds[c1] - gbounds[c0]:
                raise ValueError(f"theta has {theta.shape[0]} rows; chunks {c0}:{c1} of N = {N} "
                                 f"particles have {gbounds[c1] - gbounds[c0]}")
            if weights is not None:
                raise ValueError("weights are not supported for particles split over processes")
        w = self._weights(weights, N)
        pa, p, d_in, code = self.pa, self.p, self.d_in, self.code
        grad = grad and Y is not None
        C = gbounds.size - 1                       # chunks of all N particles
        bounds = gbounds[c0:c1 + 1] - gbounds[c0]  # the chunks held here, in local rows
        CL = c1 - c0
        rows = [slice(int(bounds[c]), int(bounds[c + 1])) for c in range(CL)]
        widths = [r.stop - r.start for r in rows]
        NL = int(bounds[-1])
        # the mixed-precision gradient pass (module docstring): float32 copies of X, U, A, G
        f32 = grad and self.precision == "float32"
        ft = np.float32 if f32 else np.float64
        blk = self.block_size(n, N, np.dtype(ft).itemsize)
        blocks = [(s, min(n, s + blk)) for s in range(0, n, blk)]
        sweep = grad and self.low_memory(N)
        from_s = code in FROM_S                      # sigma', sigma'' from sigma: one tile
        low_d = self.compiled_projection             # projection and grad_U in the kernels
        no_dd = np.empty((0, 0), ft)
        Xk = np.ascontiguousarray(Xa, dtype=ft)
        # per-chunk contiguous (k, Nc) arrays: the kernels' inner loops run over particles
        AT = [np.ascontiguousarray(theta[r, :pa].T) if self.train_a else np.ones((1, m))
              for r, m in zip(rows, widths)]
        # weighted measure: features from w_j a_j; uniform: from a_j, divided by N per block
        AwT = AT if w is None else [a * w[r] for a, r in zip(AT, rows)]
        if f32:
            AT = [np.ascontiguousarray(a, dtype=ft) for a in AT]
            AwT = [np.ascontiguousarray(a, dtype=ft) for a in AwT]
        UT = [np.ascontiguousarray(theta[r, pa:].T, dtype=ft) for r in rows] if low_d else None
        # the compiled products (mfpde.kernels.gemm) with a larger d_in: the projection reads the
        # chunks' u rows (below), both products read packed copies of each block
        gemm = from_s and not low_d
        if gemm:
            XTPs, XPs = {}, {}              # the blocks' packed inputs, by first sample
            # panel width of grad_U (at most the widest chunk, rounded up to a multiple of 12)
            gw = min(panel_width(d_in, blk, np.dtype(ft).itemsize),
                     -(-max(widths, default=1) // 12) * 12)
            gscr = threading.local()
        # the chunks' u rows (Nc, d_in) of the projections: views of theta (last axis
        # contiguous), or float32 copies (in a buffer kept by the model between passes) made by
        # the chunk's first task; a pass whose update writes the copy of the updated U
        # (EMChunks chain and more) leaves it to the next pass of its chain, which reads it
        chain = on_chunk.chain if isinstance(on_chunk, EMChunks) else None
        more = chain is not None and on_chunk.more
        ukey = (theta.ctypes.data, theta.shape, c0, c1, d_in, pa)
        ubuf, carried = None, False
        if f32 and not low_d:
            with _BUF_LOCK:
                left = self.__dict__.pop("_u32_left", None)
            carried = (left is not None and chain is not None and left[0] is chain
                       and left[1] == ukey)
            if carried:
                ubuf = left[2]
            else:
                if left is not None:
                    self._give_buffer("u32", left[2])
                ubuf = self._take_buffer("u32", NL * d_in, ft)
        if not low_d and not f32 and theta.strides[1] != theta.itemsize:
            theta = np.ascontiguousarray(theta)
        if low_d:
            Uk = None
        elif f32:
            Uk = [ubuf[r.start * d_in:r.stop * d_in].reshape(r.stop - r.start, d_in)
                  for r in rows]
        else:
            Uk = [theta[r, pa:] for r in rows]
        Ufilled = [not f32 or carried] * CL
        xn2 = np.einsum("ij,ij->i", Xa, Xa) if lap else np.zeros(0)
        if f32:
            xn2 = xn2.astype(ft)
        n_tiles = 1 + (0 if from_s else 1) + (1 if (lap and not from_s) else 0)
        # the sweep keeps the tiles of the blocks within samples [0, kept) (kept by the model
        # between passes), the others are per-thread scratch, evaluated again
        kept = 0
        if sweep:
            cap = self.kept_samples(N, n_tiles, np.dtype(ft).itemsize)
            kept = max([e for _, e in blocks if e <= cap], default=0)
        keep = _Tiles([self._take_buffer(("kept", i), kept * NL, ft)
                       for i in range(n_tiles)], bounds) if kept else None
        if sweep or not grad:
            tiles = _Scratch(n_tiles, blk * max(widths, default=1), bounds, ft)  # per thread
        else:
            # one block x N buffer each, kept by the model between passes
            tiles = _Tiles([self._take_buffer(("tile", i), blk * NL, ft)
                            for i in range(n_tiles)], bounds)

        no_h = np.empty((blk, 0))

        def fwd(c, s, e, T, Hout):
            """Chunk ``c``, samples ``s:e``: tiles ``T = (S, [P], [Spp])`` and features into
            ``Hout`` (None: features known, not formed; ``T`` None: features only, no tile)."""
            Xb = Xk[s:e]
            if T is None:
                features_s(code, Xb, UT[c], AwT[c], Hout)
                return
            S = T[0]
            Aw = AwT[c] if Hout is not None else no_dd
            if Hout is None:
                Hout = no_h[:e - s]
            if not low_d and not Ufilled[c]:
                np.copyto(Uk[c], theta[rows[c], pa:])
                Ufilled[c] = True
            if gemm:
                forward_g(code, S, XTPs[s], Uk[c], Aw, Hout)
            elif from_s:
                if not low_d:
                    np.dot(Xb, Uk[c].T, out=S)
                forward_s(code, S, Xb, UT[c] if low_d else no_dd, Aw, Hout)
            else:
                P = T[1]
                np.dot(Xb, Uk[c].T, out=P)
                prepass(code, P, S)
                forward_chunk(code, P, S, lap, T[2] if lap else no_dd, Aw, Hout)

        # float32 pass: each block's sums go to zeroed float32 buffers of the thread and are
        # then added to the chunk's float64 sums (gU: BLAS sums over the block's samples); with
        # one block the chunk's sums are the float32 block sums themselves
        direct = not f32 or len(blocks) == 1
        adt = np.float64 if not direct else ft
        bsum = threading.local()

        def block_sums(m):
            bufs = getattr(bsum, "bufs", None)
            if bufs is None:
                wmax = max(widths, default=1)
                bufs = bsum.bufs = [np.empty(k * wmax, ft) for k in
                                    (pa, 0 if low_d else d_in, d_in if low_d else 0, int(lap))]
            out = (bufs[0][:pa * m].reshape(pa, m),
                   bufs[1][:(0 if low_d else m) * d_in].reshape(0 if low_d else m, d_in),
                   bufs[2][:(d_in if low_d else 0) * m].reshape(d_in if low_d else 0, m),
                   bufs[3][:m if lap else 0])
            for i in (0, 2, 3):               # gU is written by its first product
                out[i].fill(0)
            return out

        def summed(m, acc, first, kernel):
            """``kernel(sums)`` on the chunk's sums ``acc = (gAT, gU, gUT, lap)`` (float64),
            or, in the float32 pass, on the block sums, then added to ``acc`` in float64."""
            if direct:
                kernel(acc, first)
                return
            b = block_sums(m)
            kernel(b, True)
            gAT, gU, gUT, lapc = acc
            if first:
                gU[...] = b[1]
            else:
                add_into(gU, b[1])
            for tot, part in ((gAT, b[0]), (gUT, b[2]), (lapc, b[3])):
                add_into(tot, part)

        def bwd(c, s, e, T, Gb, acc, first):
            """Chunk ``c``, samples ``s:e``: accumulate ``acc = (gAT, gU, gUT, lap)``."""
            Xb, xb2 = Xk[s:e], (xn2[s:e] if lap else xn2)
            S = T[0]

            def kernel(sums, first):
                gAT, gU, gUT, lapc = sums
                if gemm:
                    backward_g(code, S, Gb, AT[c], self.train_a, gAT, lap, xb2, lapc, Xb,
                               XPs[s], gU, first, scratch(e - s))
                    return
                if from_s:
                    backward_s(code, S, Gb, AT[c], self.train_a, gAT, lap, xb2, lapc, Xb, gUT)
                else:
                    backward_chunk(T[1], S, Gb, AT[c], self.train_a, gAT, lap,
                                   T[2] if lap else no_dd, xb2, lapc)
                if low_d:
                    return
                if first:
                    np.dot(S.T, Xb, out=gU)
                else:
                    gU += S.T @ Xb

            summed(widths[c], acc, first, kernel)

        def scratch(nb):
            """This thread's packing panel of :func:`~mfpde.kernels.gemm.accumulate_gu`."""
            bp = getattr(gscr, "bp", None)
            if bp is None:
                bp = gscr.bp = np.empty((gw // TILE_Q, blk, TILE_Q), ft)
            return bp[:, :nb]

        def new_acc(m, out_gU=None):
            return (np.zeros((pa, m), adt),
                    np.empty((0 if low_d else m, d_in), adt) if out_gU is None else out_gU,
                    np.zeros((d_in if low_d else 0, m), adt), np.zeros(m if lap else 0, adt))

        H = np.empty((n, p)) if features else None
        G = np.empty((n, p), ft) if sweep else None
        Hparts = np.empty((CL, blk, p))
        gW = np.zeros((p, self.q)) if (grad and W is not None) else None
        sq = 0.0
        g_scale = self.Gamma / n
        accs = None
        if grad and not sweep:
            gbuf = self._take_buffer("gU", NL * d_in, adt) if not low_d else None
            gU_all = gbuf[:NL * d_in].reshape(NL, d_in) if not low_d else None
            accs = [new_acc(m, None if low_d else gU_all[r]) for m, r in zip(widths, rows)]
        # chunks run concurrently on single-threaded BLAS; one chunk keeps the BLAS default for
        # large products (see mfpde._blas)
        with blas_threads(0 if C > 1 else blk * N * max(d_in, p)):
            for bi, (s, e) in enumerate(blocks):
                nb = e - s
                if gemm:
                    XTPs[s] = pack_samples(Xk[s:e])
                    if grad:
                        XPs[s] = pack_inputs(Xk[s:e])
                # a small d_in with the tile needed no more: the features of rows in scratch
                rows_only = low_d and (sweep or not grad) and e > kept
                run_tasks(lambda c: fwd(c, s, e, keep.get(c, nb, s) if e <= kept
                                        else None if rows_only else tiles.get(c, nb),
                                        Hparts[c, :nb]), CL)
                if gemm and (not sweep or e <= kept):
                    # a block's packed inputs are read again only by the sweep's chunks that
                    # evaluate its tiles again
                    XTPs.pop(s)
                # every chunk's partial features, summed in chunk order (all processes alike)
                Hall = Hparts if part is None else part.allgather_chunks(Hparts, nb)
                Hb = Hall[0, :nb].copy()
                for c in range(1, C):
                    Hb += Hall[c, :nb]
                if w is None:
                    Hb /= N
                if features:
                    H[s:e] = Hb
                if Y is None:
                    continue
                if W is None:
                    Zb = Hb - Y[s:e]
                    Gb = Zb * (1.0 / n)
                else:
                    Zb = self.Gamma * (Hb @ W) - Y[s:e]
                    Gb = g_scale * (Zb @ W.T)                        # (nb, p)
                    if gW is not None:
                        gW += g_scale * (Hb.T @ Zb)
                sq += float(np.einsum("ij,ij->", Zb, Zb))
                if sweep:
                    G[s:e] = Gb
                elif grad:
                    Gk = Gb.astype(ft) if f32 else Gb
                    # the chunks in reverse order: the tiles the forward phase wrote last are
                    # still in the last-level cache (low regime 5 % faster; each chunk's sums
                    # are its own, so the order changes no result)
                    run_tasks(lambda r: bwd(CL - 1 - r, s, e, tiles.get(CL - 1 - r, nb), Gk,
                                            accs[CL - 1 - r], bi == 0), CL)
                if gemm and not sweep:
                    XPs.pop(s, None)
            res = {"risk": sq / (2.0 * n) if Y is not None else float("nan"), "H": H}
            if not grad:
                return res
            D, lam = self.D, self.lam
            if on_chunk is None:
                out = np.empty((NL, D))
            else:
                out = None

            def finish(c, item=None):
                r = rows[c]
                if sweep:                       # this chunk's force, block by block
                    # sized for the widest chunk: any buffer of the pool serves any chunk
                    gUc = None if low_d else self._take_buffer("gUc", max(widths) * d_in, adt)
                    acc = new_acc(widths[c], None if low_d else
                                  gUc[:widths[c] * d_in].reshape(widths[c], d_in))
                    for bi, (s, e) in enumerate(blocks):
                        if e <= kept:           # the tiles of the forward phase
                            bwd(c, s, e, keep.get(c, e - s, s), G[s:e], acc, bi == 0)
                            continue
                        if low_d:
                            def kernel(sums, first, s=s, e=e):
                                sweep_s(code, Xk[s:e], UT[c], G[s:e], AT[c], self.train_a,
                                        sums[0], lap, xn2[s:e] if lap else xn2, sums[3],
                                        sums[2])
                            summed(widths[c], acc, bi == 0, kernel)
                            continue
                        T = tiles.get(c, e - s)
                        fwd(c, s, e, T, None)
                        bwd(c, s, e, T, G[s:e], acc, bi == 0)
                else:
                    acc = accs[c]
                if lap:
                    lapv[r] = acc[3]
                if out is not None:
                    assemble_chunk(out[r], acc[0], acc[1], acc[2], theta[r], lam, pa)
                elif isinstance(on_chunk, EMChunks):    # the force and the update in one pass
                    on_chunk.assembled(r.start, r.stop, acc[0], acc[1], acc[2], lam, pa, item,
                                       Uk[c] if (more and ubuf is not None) else NO_U32)
                else:
                    fb = self._take_buffer("force", max(widths) * D, np.float64)
                    force = fb[:widths[c] * D].reshape(widths[c], D)
                    assemble_chunk(force, acc[0], acc[1], acc[2], theta[r], lam, pa)
                    on_chunk(r.start, r.stop, force, item)
                    self._give_buffer("force", fb)
                if sweep and not low_d:
                    self._give_buffer("gUc", gUc)

            lapv = np.empty(NL) if lap else None
            if produce is not None:
                # items made in chunk order as the threads claim the chunks
                run_tasks(finish, CL, lambda c: produce(rows[c].start, rows[c].stop))
            else:
                run_tasks(finish, CL)
        if ubuf is not None and more:
            # the copy of the updated U, for the next pass of the chain
            with _BUF_LOCK:
                self._u32_left = (chain, ukey, ubuf)
        elif ubuf is not None:
            self._give_buffer("u32", ubuf)
        if isinstance(tiles, _Tiles):
            for i, b in enumerate(tiles.bufs):
                self._give_buffer(("tile", i), b)
        if keep is not None:
            for i, b in enumerate(keep.bufs):
                self._give_buffer(("kept", i), b)
        if grad and not sweep and not low_d:
            self._give_buffer("gU", gbuf)
        res["grad"] = out
        if gW is not None:
            res["gW"] = gW + self.lam_W * W
        if lap:
            res["lap"] = lapv + self.lam * self.D
        return res

    def _take_buffer(self, key, size, dtype):
        """A flat work buffer of at least ``size`` entries of ``dtype`` for one gradient pass
        (``key``: the float32 copy of ``U``, each ``block x N`` tile of the stored pass and
        ``kept x N`` tile of the sweep, the ``(N, d_in)`` sums of ``grad_U``, the ``(Nc, d_in)``
        sums of a chunk of the sweep): one kept under ``key`` from a previous pass when it
        fits, else new. Buffers of megabytes are fresh pages from the system on every
        allocation; faulting them in cost a fixed 10-20 % of a step at n = 64 samples (d = 64,
        N = 10^5). Concurrent takers (passes of one model, threads of one pass) each take their
        own buffer."""
        with _BUF_LOCK:
            kept = self.__dict__.setdefault("_work", {}).get(key)
            buf = kept.pop() if kept else None
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = np.empty(size, dtype)
        return buf

    def _give_buffer(self, key, buf):
        """Keep ``buf`` under ``key`` for a next taker (:meth:`_take_buffer`)."""
        with _BUF_LOCK:
            self.__dict__.setdefault("_work", {}).setdefault(key, []).append(buf)

    def __getstate__(self):
        """Copies and pickles leave out the work buffers of :meth:`_take_buffer` (a copy of the
        model gets its own on its first pass)."""
        state = self.__dict__.copy()
        state.pop("_work", None)
        state.pop("_u32_left", None)
        return state

    def kept_samples(self, N, n_tiles=1, itemsize=8) -> int:
        """Samples whose tiles the sweep over ``N`` particles may keep from its forward phase
        (:meth:`_pass`): with ``memory = "auto"`` as many as fit ``n_tiles`` tiles of
        ``itemsize``-byte entries (one for tanh, sigmoid and the identity, two or three for the
        other activations; 8 bytes, 4 with ``precision = "float32"``) in :data:`KEEP_STATE`
        times the bytes ``8 N D`` of the particle state, that is
        ``KEEP_STATE * 8 D // (n_tiles * itemsize)``, whatever ``N``; else 0. Whole blocks are
        kept, from the first: the kept samples are those of the blocks that end within this."""
        if self.memory != "auto" or not self.low_memory(N):
            return 0
        return int(KEEP_STATE * 8 * self.D) // (int(n_tiles) * int(itemsize))

    def low_memory(self, N) -> bool:
        """Whether a gradient pass over ``N`` particles uses the low-memory sweep
        (``memory = "auto"``: from :data:`LOW_MEMORY_N` particles on)."""
        if self.memory == "auto":
            return N >= LOW_MEMORY_N
        return self.memory == "low"

    # ------------------------------------------------------------------ public API
    def features(self, theta, X, weights=None, part=None):
        """Features :math:`h_N(x_i) = \\frac1N\\sum_j a_j\\sigma(u_j^\\top x_i)`, shape (n, p).

        With ``weights`` (N,) the measure is :math:`\\sum_j w_j\\delta_{\\theta_j}`. With
        ``part`` (particles split over processes, :meth:`_pass`) ``theta`` holds the rows of
        this process and every process receives the features of all ``N`` particles
        (collective; the same bits as one process).
        """
        return self._pass(theta, X, None, None, weights, grad=False, features=True,
                          part=part)["H"]

    def forward(self, theta, X, W=None, weights=None, part=None):
        """Predictions :math:`f_N(x_i)`, shape (n, q) (models.md §1, §2); ``part`` as for
        :meth:`features`."""
        H = self.features(theta, X, weights, part)
        W = self.check_W(W)
        return H if W is None else self.Gamma * (H @ W)

    def risk(self, theta, X, Y, W=None, weights=None):
        """Risk :math:`R = \\frac{1}{2n}\\sum_i\\|f_N(x_i) - y_i\\|^2` (README convention 1)."""
        return self._pass(theta, X, Y, W, weights, grad=False)["risk"]

    def penalty(self, theta, W=None, weights=None):
        """:math:`\\frac\\lambda2 E_\\rho\\|\\theta\\|^2 + \\frac{\\lambda_W}2\\|W\\|_F^2`."""
        theta = self.check_theta(theta)
        sq = np.einsum("ij,ij->i", theta, theta)
        w = self._weights(weights, theta.shape[0])
        m2 = float(sq.mean() if w is None else w @ sq)
        out = 0.5 * self.lam * m2
        W = self.check_W(W)
        if W is not None:
            out += 0.5 * self.lam_W * float(np.sum(W * W))
        return out

    def regularized_risk(self, theta, X, Y, W=None, weights=None):
        """:math:`R + \\frac\\lambda2 E\\|\\theta\\|^2 + \\frac{\\lambda_W}2\\|W\\|^2` (Wu–Mondelli's
        :math:`L_{\\lambda,n}`; the free energy without entropy)."""
        return self.risk(theta, X, Y, W, weights) + self.penalty(theta, W, weights)

    def gradient(self, theta, X, Y, W=None, weights=None, laplacian=False, part=None):
        """Per-particle force and the ``W`` gradient in one streamed pass.

        Parameters
        ----------
        theta : ndarray (N, D)
        X : ndarray (n, d); Y : ndarray (n, q)
            Data (full set, mini-batch or fresh samples: averages are over the rows given).
        W : ndarray (p, q) or None
        weights : ndarray (N,) or None
            Weights of a weighted empirical measure (sum 1); None is uniform ``1/N``.
        laplacian : bool
            Also return :math:`\\Delta\\Psi(\\theta_j)` (metrics.md §4).
        part : Partition or None
            Particles split over processes (module docstring): ``theta`` holds rows
            ``[part.lo, part.hi)`` and ``theta`` / ``lap`` of the result cover those rows.

        Returns
        -------
        Gradient
            ``theta`` (N, D) = :math:`\\nabla\\Psi(\\theta_j)` (dynamics.md §1.2 / §1.3),
            ``W`` (p, q) or None, ``risk``, ``lap`` (N,) or None; float64 arrays in either
            ``precision`` (module docstring).
        """
        out = self._pass(theta, X, Y, W, weights, grad=True, lap=laplacian, part=part)
        return Gradient(out["grad"], out.get("gW"), out["risk"], out.get("lap"))

    # ------------------------------------------------------------------ force plans
    def force_chunks(self, theta, X, Y, W, on_chunk, produce=None, part=None):
        """The force plan of one streamed gradient pass, for an integrator that updates the
        particles chunk by chunk (dynamics.md §1.2 / §1.3; the pass of :meth:`gradient`).

        The particles are split in the fixed chunks ``[lo, hi)`` of
        :func:`~mfpde.kernels.readout.chunk_bounds` (a function of ``N`` only). As soon as the
        force :math:`\\nabla\\Psi(\\theta_j)` (weight decay included) of a chunk is complete it is
        handed to ``on_chunk(lo, hi, force, item)``: ``force`` (hi - lo, D) is a per-thread
        buffer, valid during the call only, equal bit for bit to ``gradient(...).theta[lo:hi]``.
        ``on_chunk`` may update ``theta[lo:hi]`` in place (the pass reads those rows no more);
        it runs on the pool threads, one call per chunk, concurrently for different chunks.
        ``produce(lo, hi) -> item`` (optional) is called in chunk order ``lo = 0, ...`` under the
        pool's claim lock, at most one live item per thread (e.g. the chunk's noise drawn from
        one generator: the same numbers as one ``(N, D)`` draw).

        Parameters
        ----------
        theta : ndarray (N, D)
        X : ndarray (n, d); Y : ndarray (n, q)
        W : ndarray (p, q) or None
        on_chunk : callable ``(lo, hi, force, item) -> None``
        produce : callable ``(lo, hi) -> item`` or None
        part : Partition or None
            Particles split over processes (module docstring): ``theta`` holds rows
            ``[part.lo, part.hi)``; ``lo, hi`` are rows of ``theta`` (add ``part.lo`` for the
            particle index), and only the chunks held are handed over.

        Returns
        -------
        (risk, grad_W)
            The risk on ``X, Y`` and :math:`\\nabla_W F` (p, q) (None without ``W``), both at
            the state before any update.
        """
        out = self._pass(theta, X, Y, W, None, grad=True, on_chunk=on_chunk, produce=produce,
                         part=part)
        return out["risk"], out.get("gW")

    def fused_plan(self) -> "FusedPlan | None":
        """The plain parameters the fused multi-step online kernel
        (:func:`mfpde.kernels.online.online_steps`) needs, or None when this model is not
        eligible: the kernel is the two-layer read-out without ``W`` (``p = q``), with the force
        of this class (a subclass that changes the force is not eligible), in float64 (the
        float32 pass runs on the generic path)."""
        cls = type(self)
        if self.has_W or self.p != self.q or self.precision != "float64" or not (
                cls.gradient is ReadoutModel.gradient and cls._pass is ReadoutModel._pass
                and cls.force_chunks is ReadoutModel.force_chunks):
            return None
        return FusedPlan(code=self.code, pa=self.pa, bias=self.bias, lam=self.lam, d=self.d,
                         q=self.q, D=self.D)

    def potential(self, points, theta, X, Y, W=None, weights=None):
        """Potential :math:`\\Psi(\\vartheta_m;\\rho) = a_m^\\top\\sum_i G_i\\,\\sigma(u_m^\\top x_i)
        + \\frac\\lambda2\\|\\vartheta_m\\|^2` at ``points`` (M, D) for the measure given by ``theta``
        (N, D) and ``weights`` (README convention 3; dynamics.md §1.3). The constant of the first
        variation is fixed so that :math:`\\Psi = \\delta R/\\delta\\rho + \\frac\\lambda2\\|\\theta\\|^2`
        with :math:`\\delta R/\\delta\\rho(\\theta) = E[(f - y)^\\top\\sigma_*(x;\\theta)]`.

        Returns ndarray (M,).
        """
        H = self.features(theta, X, weights)
        W = self.check_W(W)
        Xa = self.prepare_X(X)
        Y = self.prepare_Y(Y, Xa.shape[0])
        n = Xa.shape[0]
        if W is None:
            G = (H - Y) / n
        else:
            G = (self.Gamma / n) * ((self.Gamma * (H @ W) - Y) @ W.T)
        pts = self.check_theta(points)
        A, U = self.split(pts)
        out = np.empty(pts.shape[0])
        blk = max(1, (self.block_bytes or BLOCK_BYTES) // (8 * n))
        for s in range(0, pts.shape[0], blk):
            e = min(pts.shape[0], s + blk)
            S = evaluate(self.activation, Xa @ U[s:e].T)           # (n, m)
            out[s:e] = np.einsum("im,im->m", G @ A[s:e].T, S)
        return out + 0.5 * self.lam * np.einsum("ij,ij->i", pts, pts)

    def describe(self) -> dict:
        """Model parameters as a plain dict (stored with runs)."""
        return {"kind": self.kind, "d": self.d, "p": self.p, "q": self.q,
                "activation": self.activation, "bias": self.bias, "train_a": self.train_a,
                "Gamma": self.Gamma, "lam": self.lam, "lam_W": self.lam_W, "D": self.D}
