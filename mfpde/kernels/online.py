r"""Fused multi-step kernel of online / small-batch SGD for the two-layer read-out model.

Runs ``K`` consecutive Euler–Maruyama steps of theory/dynamics.md §3 (SGD and online SGD of §4.1)
for a read-out model without ``W`` (two-layer network: ``p = q``, trainable output ``a`` or ``a``
fixed to 1) in one compiled call, given the ``K`` mini-batches stacked. With ``X_k`` (B, d) the
batch of step ``k`` (``x~ = (x, 1)`` when the model has a bias), per step and for every particle
``j`` (all particles use the state of step ``k``: synchronous update):

.. math::

    z_{bj} = u_j^\top \tilde x_b,\quad s_{bj} = \sigma(z_{bj}),\quad
    H_b = \tfrac1N \textstyle\sum_j a_j s_{bj},\quad G_b = (H_b - y_b)/B,

    \nabla_{a_j}\Psi = \textstyle\sum_b s_{bj} G_b + \lambda a_j,\qquad
    \nabla_{u_j}\Psi = \textstyle\sum_b (G_b^\top a_j)\,\sigma'(z_{bj})\,\tilde x_b + \lambda u_j,

    \theta_j \leftarrow \theta_j - \varepsilon_k \nabla_{\theta_j}\Psi + \sqrt{2\varepsilon_k/\beta}\,g_j^k,

the model equations of :mod:`mfpde.models.readout` with ``W = I``, ``Gamma = 1`` and the batch
risk :math:`R = \|H - Y\|^2/(2B)`. The Gaussian noise ``g^k`` is drawn by the caller (outside the
kernel, from the run's generator) and passed in.

Inside the call the particles are held transposed (``u`` as ``d_in x N``, ``a`` as ``p x N``) so
that every inner loop runs over particles with unit stride and compiles to SIMD code; each
``z_{bj}`` and each gradient entry is summed in a fixed order, so results do not depend on how the
steps are split into calls. ``tanh`` uses :func:`~mfpde.kernels.activations.tanh_simd` (a
branch-free evaluation within 2 ulp of the C library's ``tanh``, which the compiler can
vectorise); the other activations use the scalar ``sigma`` / ``dsigma`` of
:mod:`mfpde.kernels.activations` by code. The kernel serves the small problems where a per-step
BLAS pass is dominated by fixed costs. From :data:`PARTS_MIN_N` particles it splits them into two
fixed parts, run on two threads with one exchange of ``2 B q`` numbers per step (the features'
sums; :func:`online_steps`), or in turn on one thread with the same arithmetic: the feature
``H_b`` is the sum of the parts' sums in part order, so the results depend on ``N`` only, never on
the thread count.
"""
from __future__ import annotations

import queue
import sys
import threading

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._numba import jit
from .._pool import num_threads
from .activations import CONTRACT, SIGMOID, TANH, dsigma, sigma, tanh_array, tanh_simd

#: floating-point flags of the compiled loops (:data:`~mfpde.kernels.activations.CONTRACT`)
_FASTMATH = CONTRACT

# ---------------------------------------------------------------------------- helpers
@jit(inline="always", error_model="numpy")
def _activate(code, z, S, Sp):
    """``S = sigma(z)``, ``Sp = sigma'(z)`` element-wise over ``z`` (N,)."""
    n = z.shape[0]
    if code == TANH:
        for j in range(n):
            t = tanh_simd(z[j])
            S[j] = t
            Sp[j] = 1.0 - t * t
    elif code == SIGMOID:
        for j in range(n):
            t = sigma(code, z[j])
            S[j] = t
            Sp[j] = t * (1.0 - t)
    else:
        for j in range(n):
            zz = z[j]
            S[j] = sigma(code, zz)
            Sp[j] = dsigma(code, zz)


@jit(inline="always", error_model="numpy")
def _sum(v):
    """``sum(v)`` with four interleaved partial sums (fixed order)."""
    n = v.shape[0]
    s0 = s1 = s2 = s3 = 0.0
    n4 = n - n % 4
    for j in range(0, n4, 4):
        s0 += v[j]
        s1 += v[j + 1]
        s2 += v[j + 2]
        s3 += v[j + 3]
    for j in range(n4, n):
        s0 += v[j]
    return (s0 + s1) + (s2 + s3)


@jit(inline="always", error_model="numpy")
def _dot(v, w):
    """``v . w`` with four interleaved partial sums (fixed order)."""
    n = v.shape[0]
    s0 = s1 = s2 = s3 = 0.0
    n4 = n - n % 4
    for j in range(0, n4, 4):
        s0 += v[j] * w[j]
        s1 += v[j + 1] * w[j + 1]
        s2 += v[j + 2] * w[j + 2]
        s3 += v[j + 3] * w[j + 3]
    for j in range(n4, n):
        s0 += v[j] * w[j]
    return (s0 + s1) + (s2 + s3)


@jit(inline="always", error_model="numpy")
def _update_u_row(Ut, c, x, xn, d, e, lam, noisy, ns, noise, k, pa, zn, lo, hi):
    """Batch 1, particles ``lo:hi``: ``u <- u - e (c x~ + lam u) [+ ns g^k]``, and the next
    step's pre-activations ``zn += u x~_next`` (``zn`` zero on entry), summed over ``i`` in
    order.

    The rows of ``Ut`` (``d_in x N``) are taken four at a time: each pass over the particles
    updates four rows and adds their four terms to ``zn[j]`` (in the order of ``i``), so ``zn``
    is read and written once per four rows instead of once per row; the state, the largest
    array, is read and written once per step."""
    din = Ut.shape[0]
    n = hi - lo
    cc = c[lo:hi]
    z = zn[lo:hi]
    i = 0
    while i + 3 < din:
        x0 = x[i] if i < d else 1.0
        x1 = x[i + 1] if i + 1 < d else 1.0
        x2 = x[i + 2] if i + 2 < d else 1.0
        x3 = x[i + 3] if i + 3 < d else 1.0
        y0 = xn[i] if i < d else 1.0
        y1 = xn[i + 1] if i + 1 < d else 1.0
        y2 = xn[i + 2] if i + 2 < d else 1.0
        y3 = xn[i + 3] if i + 3 < d else 1.0
        U0, U1, U2, U3 = Ut[i][lo:hi], Ut[i + 1][lo:hi], Ut[i + 2][lo:hi], Ut[i + 3][lo:hi]
        if noisy:
            q = pa + i
            for j in range(n):
                cj = cc[j]
                v0 = U0[j] - e * (cj * x0 + lam * U0[j]) + ns * noise[k, lo + j, q]
                v1 = U1[j] - e * (cj * x1 + lam * U1[j]) + ns * noise[k, lo + j, q + 1]
                v2 = U2[j] - e * (cj * x2 + lam * U2[j]) + ns * noise[k, lo + j, q + 2]
                v3 = U3[j] - e * (cj * x3 + lam * U3[j]) + ns * noise[k, lo + j, q + 3]
                U0[j] = v0
                U1[j] = v1
                U2[j] = v2
                U3[j] = v3
                z[j] = (((z[j] + v0 * y0) + v1 * y1) + v2 * y2) + v3 * y3
        else:
            for j in range(n):
                cj = cc[j]
                v0 = U0[j] - e * (cj * x0 + lam * U0[j])
                v1 = U1[j] - e * (cj * x1 + lam * U1[j])
                v2 = U2[j] - e * (cj * x2 + lam * U2[j])
                v3 = U3[j] - e * (cj * x3 + lam * U3[j])
                U0[j] = v0
                U1[j] = v1
                U2[j] = v2
                U3[j] = v3
                z[j] = (((z[j] + v0 * y0) + v1 * y1) + v2 * y2) + v3 * y3
        i += 4
    while i < din:
        xi = x[i] if i < d else 1.0
        yi = xn[i] if i < d else 1.0
        Ui = Ut[i][lo:hi]
        if noisy:
            q = pa + i
            for j in range(n):
                v = Ui[j] - e * (cc[j] * xi + lam * Ui[j]) + ns * noise[k, lo + j, q]
                Ui[j] = v
                z[j] += v * yi
        else:
            for j in range(n):
                v = Ui[j] - e * (cc[j] * xi + lam * Ui[j])
                Ui[j] = v
                z[j] += v * yi
        i += 1


# ---------------------------------------------------------------------------- two parts
#: from this many particles the kernel splits the particles into two parts (:func:`part_bounds`)
PARTS_MIN_N = 512
#: the boundary of the two parts is a multiple of this many particles
PART_ALIGN = 8
#: busy-wait iterations of a part before it yields the processor at each further check
SPIN_BEFORE_YIELD = 1000


def part_bounds(N: int) -> np.ndarray:
    """Boundaries ``[0, m, N]`` of the two parts of ``N >= PARTS_MIN_N`` particles (``m`` the
    largest multiple of :data:`PART_ALIGN` at or below ``N / 2``), ``[0, N]`` below. A function of
    ``N`` only: the sums over particles, and so the results, never depend on the thread count."""
    if N < PARTS_MIN_N:
        return np.array([0, N], dtype=np.int64)
    return np.array([0, (N // 2) // PART_ALIGN * PART_ALIGN, N], dtype=np.int64)


@intrinsic
def _load_acquire(typingctx, arr, idx):
    """``arr[idx]`` of an int64 array as an atomic load with acquire ordering: the writes the
    other part made before its matching :func:`_store_release` are visible after it."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64
            and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(arr)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, arr, ary, [args[1]], wraparound=False)
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(arr, idx), codegen


@intrinsic
def _store_release(typingctx, arr, idx, val):
    """``arr[idx] = val`` (int64) as an atomic store with release ordering."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64
            and isinstance(idx, types.Integer) and isinstance(val, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(arr)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, arr, ary, [args[1]], wraparound=False)
        v = context.cast(builder, args[2], signature.args[2], types.int64)
        builder.store_atomic(v, ptr, "release", 8)
        return context.get_dummy_value()

    return types.void(arr, idx, val), codegen


@intrinsic
def _yield_cpu(typingctx):
    """``sched_yield()`` (POSIX; nothing elsewhere): let the other part's thread run when it
    holds the processor."""
    def codegen(context, builder, signature, args):
        if sys.platform != "win32":
            fnty = ir.FunctionType(ir.IntType(32), [])
            builder.call(cgutils.get_or_insert_function(builder.module, fnty, "sched_yield"), [])
        return context.get_dummy_value()

    return types.void(), codegen


@jit
def _set_abort(sync, i):
    """Set the abort word ``sync[i]`` of :func:`_online_run` (a release store)."""
    _store_release(sync, i, 1)


# ---------------------------------------------------------------------------- the phases
@jit(inline="always", error_model="numpy")
def _move_part(theta, pa, Ut, At, lo, hi, load):
    """Columns ``lo:hi`` of the transposed state from the rows ``lo:hi`` of ``theta``
    (``load``), or back."""
    din = Ut.shape[0]
    for j in range(lo, hi):
        for r in range(pa):
            if load:
                At[r, j] = theta[j, r]
            else:
                theta[j, r] = At[r, j]
        for i in range(din):
            if load:
                Ut[i, j] = theta[j, pa + i]
            else:
                theta[j, pa + i] = Ut[i, j]


@jit(inline="always", error_model="numpy")
def _first_z(x0, d, Ut, Z, lo, hi):
    """Pre-activations ``Z[b, lo:hi] = sum_i Ut[i, lo:hi] x~_bi`` of the first step (``Z`` zero
    on entry), summed over ``i`` in order."""
    for b in range(Z.shape[0]):
        z = Z[b][lo:hi]
        for i in range(Ut.shape[0]):
            xi = x0[b, i] if i < d else 1.0
            u = Ut[i][lo:hi]
            for j in range(z.shape[0]):
                z[j] += u[j] * xi


@jit(inline="always", error_model="numpy")
def _phase_a(code, pa, Z, S, Sp, At, hk, bounds, p0, p1):
    """Parts ``p0 <= p < p1``: ``S = sigma(z)``, ``S' = sigma'(z)`` over their particles (one
    element-wise loop) and each part's sums ``hk[p, b, r] = sum_j a_rj s_bj`` over its own
    particles (``sum_j s_bj`` for ``a = 1``)."""
    lo, hi = bounds[p0], bounds[p1]
    for b in range(Z.shape[0]):
        _activate(code, Z[b][lo:hi], S[b][lo:hi], Sp[b][lo:hi])
        for pp in range(p0, p1):
            s = S[b][bounds[pp]:bounds[pp + 1]]
            for r in range(hk.shape[2]):
                hk[pp, b, r] = _dot(At[r][bounds[pp]:bounds[pp + 1]], s) if pa > 0 else _sum(s)


@jit(inline="always", error_model="numpy")
def _residual(hk, y, invN, invB, G):
    """``H_b = (sum of the parts' sums, in part order) / N``, ``G_b = (H_b - y_b) / B`` from
    ``hk`` (P, B, q); returns ``sum_b |H_b - y_b|^2``."""
    sq = 0.0
    for b in range(G.shape[0]):
        for r in range(G.shape[1]):
            h = hk[0, b, r]
            for p in range(1, hk.shape[0]):
                h += hk[p, b, r]
            zr = h * invN - y[b, r]
            sq += zr * zr
            G[b, r] = zr * invB
    return sq


@jit(inline="always", error_model="numpy")
def _phase_b(pa, Ut, At, Zn, S, Sp, C, tmp, G, x, xn, d, e, lam, noisy, ns, noise, k, lo, hi):
    """Particles ``lo:hi`` of the update of step ``k`` (module docstring) with the next step's
    pre-activations accumulated into ``Zn`` (``x``, ``xn``: this and the next step's batch)."""
    B = Zn.shape[0]
    q = G.shape[1]
    din = Ut.shape[0]
    n = hi - lo
    tp = tmp[lo:hi]
    # back-propagated residual C_bj = (G_b . a_j) sigma'(z_bj), with a of step k
    for b in range(B):
        c = C[b][lo:hi]
        sp = Sp[b][lo:hi]
        if pa == 0:
            g0 = G[b, 0]
            for j in range(n):
                c[j] = g0 * sp[j]
        else:
            for j in range(n):
                c[j] = 0.0
            for r in range(q):
                gr = G[b, r]
                a = At[r][lo:hi]
                for j in range(n):
                    c[j] += gr * a[j]
            for j in range(n):
                c[j] *= sp[j]
    # update a: grad = sum_b s_bj G_br + lam a
    for r in range(pa):
        a = At[r][lo:hi]
        if B == 1:
            g0 = G[0, r]
            s0 = S[0][lo:hi]
            for j in range(n):
                tp[j] = s0[j] * g0
        else:
            for j in range(n):
                tp[j] = 0.0
            for b in range(B):
                gb = G[b, r]
                sb = S[b][lo:hi]
                for j in range(n):
                    tp[j] += sb[j] * gb
        for j in range(n):
            v = a[j] - e * (tp[j] + lam * a[j])
            if noisy:
                v += ns * noise[k, lo + j, r]
            a[j] = v
    # update u: grad = sum_b C_bj x~_bi + lam u; the same pass accumulates the next step's
    # pre-activations z = U x~, summed over i in order as for the first step
    for b in range(B):
        zb = Zn[b][lo:hi]
        for j in range(n):
            zb[j] = 0.0
    if B == 1:
        _update_u_row(Ut, C[0], x[0], xn[0], d, e, lam, noisy, ns, noise, k, pa, Zn[0], lo, hi)
        return
    for i in range(din):
        u = Ut[i][lo:hi]
        for j in range(n):
            tp[j] = 0.0
        for b in range(B):
            xi = x[b, i] if i < d else 1.0
            cb = C[b][lo:hi]
            for j in range(n):
                tp[j] += cb[j] * xi
        if noisy:
            for j in range(n):
                u[j] = u[j] - e * (tp[j] + lam * u[j]) + ns * noise[k, lo + j, pa + i]
        else:
            for j in range(n):
                u[j] = u[j] - e * (tp[j] + lam * u[j])
        for b in range(B):
            xnb = xn[b, i] if i < d else 1.0
            zb = Zn[b][lo:hi]
            for j in range(n):
                zb[j] += u[j] * xnb


# ---------------------------------------------------------------------------- the kernel
@jit(error_model="numpy", fastmath=_FASTMATH)
def _online_run(code, theta, pa, X, Y, eps, lam, noise, noise_scale, bounds, p, work, sync,
                hbuf, out):
    """The ``K`` steps of :func:`online_steps` for part ``p`` of ``bounds`` (its particles
    ``bounds[p]:bounds[p + 1]``), exchanging each step's sums with the other parts through
    ``hbuf`` (2, P, B, q) and the step counters ``sync[8 p]`` (``sync`` (8 (P + 1),); a part
    returns early once the abort word ``sync[8 P]`` is set, by the caller when another part
    failed); ``p = -1``: every part in turn in this thread. ``work = (Ut, At, Z, Zn, S, Sp, C,
    tmp, G)`` holds the full-width work arrays (this part uses its columns only). Part 0 (or
    ``p = -1``) writes the risk of the last step to ``out[0]``. No allocation, so nothing can
    fail between the barriers."""
    Ut, At, Z, Zn, S, Sp, C, tmp, G = work
    N = theta.shape[0]
    K, B, d = X.shape
    P = bounds.shape[0] - 1
    p0, p1 = (0, P) if p < 0 else (p, p + 1)
    noisy = noise.shape[0] > 0
    invN = 1.0 / N
    invB = 1.0 / B
    risk = np.nan
    # the element-wise work runs over all particles of the parts p0 <= p < p1 at once: every
    # entry is the same whichever parts a loop covers; only the sums are taken part by part
    lo, hi = bounds[p0], bounds[p1]
    _move_part(theta, pa, Ut, At, lo, hi, True)
    for b in range(B):
        for j in range(lo, hi):
            Z[b, j] = 0.0
    _first_z(X[0], d, Ut, Z, lo, hi)
    for k in range(K):
        hk = hbuf[k % 2]
        _phase_a(code, pa, Z, S, Sp, At, hk, bounds, p0, p1)
        if p >= 0:
            # publish this part's sums of step k, then wait for every other part's
            _store_release(sync, 8 * p, k + 1)
            for o in range(P):
                if o != p:
                    spins = 0
                    while _load_acquire(sync, 8 * o) < k + 1:
                        if _load_acquire(sync, 8 * P) != 0:
                            return
                        spins += 1
                        if spins > SPIN_BEFORE_YIELD:
                            _yield_cpu()
        risk = _residual(hk, Y[k], invN, invB, G) / (2.0 * B)
        kn = k + 1 if k + 1 < K else k
        ns = noise_scale[k] if noisy else 0.0
        _phase_b(pa, Ut, At, Zn, S, Sp, C, tmp, G, X[k], X[kn], d, eps[k], lam, noisy, ns,
                 noise, k, lo, hi)
        Z, Zn = Zn, Z
    _move_part(theta, pa, Ut, At, lo, hi, False)
    if p <= 0:
        out[0] = risk


_side_lock = threading.Lock()
_side = None


def _side_queue():
    """The job queue of the thread that runs part 1 (started once per process, a daemon; a
    forked child starts its own). Calls from several threads queue their part 1 one after the
    other: a later call's part 0 waits (spinning, then yielding) until its part 1 runs."""
    global _side
    with _side_lock:
        if _side is None or not _side[0].is_alive():
            jobs = queue.SimpleQueue()

            def serve():
                while True:
                    jobs.get()()

            t = threading.Thread(target=serve, name="mfpde-online-1", daemon=True)
            t.start()
            _side = (t, jobs)
        return _side[1]


def _wait_through_interrupts(event):
    """``event.wait()``, deferring a KeyboardInterrupt raised meanwhile until the event is set."""
    interrupted = None
    while not event.is_set():
        try:
            event.wait()
        except KeyboardInterrupt as exc:          # pragma: no cover - timing dependent
            interrupted = exc
    if interrupted is not None:
        raise interrupted


def _work(N, D, pa, B, q):
    return (np.empty((D - pa, N)), np.empty((pa, N)), np.empty((B, N)), np.empty((B, N)),
            np.empty((B, N)), np.empty((B, N)), np.empty((B, N)), np.empty(N), np.empty((B, q)))


def online_steps(code, theta, pa, bias, X, Y, eps, lam, noise, noise_scale):
    """Run ``K`` Euler–Maruyama steps of a two-layer read-out model in place (module docstring).

    From :data:`PARTS_MIN_N` particles the particles are split into two fixed parts
    (:func:`part_bounds`); when Numba has two or more threads and the call is not made from a
    worker of :mod:`mfpde._pool`, part 1 runs on a thread kept for it (:func:`_side_queue`),
    concurrently with part 0 on this thread. Each step the parts exchange their sums of the
    features (``2 B q`` numbers) and wait for each other (an acquire/release step counter; a
    part that waits long yields the processor), and every part forms the residual from the sums
    in part order; if one part fails the other stops at its next exchange, and the call returns
    (raising) only when both have stopped.
    The parts' arithmetic is the same when they run in turn on one thread, so the results do
    not depend on the thread count.

    Parameters
    ----------
    code : int
        Activation code (:mod:`mfpde.activations`).
    theta : ndarray (N, D), C-contiguous
        Particles ``[a (pa columns), u (d_in columns)]``, updated in place.
    pa : int
        Columns of ``a`` (``q`` for a trainable output, 0 for ``a`` fixed to 1 with ``q = 1``).
    bias : bool
        Inputs are ``x~ = (x, 1)``: the last column of ``u`` multiplies a constant 1 not stored
        in ``X`` (``d_in = d + 1``).
    X : ndarray (K, B, d); Y : ndarray (K, B, q)
        The batches of the ``K`` steps, in step order.
    eps : ndarray (K,)
        Steps :math:`\\varepsilon_k = \\varepsilon\\,\\xi(t_k)`.
    lam : float
        Weight decay :math:`\\lambda`.
    noise : ndarray (K, N, D) or (0, 0, 0)
        Standard Gaussians ``g^k`` (finite ``beta``); empty for the noiseless flow.
    noise_scale : ndarray (K,)
        :math:`\\sqrt{2\\varepsilon_k/\\beta}` (unused when ``noise`` is empty).

    Returns
    -------
    float
        Batch risk :math:`\\|H - Y\\|^2/(2B)` of the last step, before its update.
    """
    N, D = theta.shape
    K, B, d = X.shape
    q = Y.shape[2]
    if D - pa != d + (1 if bias else 0):
        raise ValueError(f"theta has {D - pa} input columns, the samples {d} (bias {bias})")
    bounds = part_bounds(N)
    P = bounds.size - 1
    hbuf = np.empty((2, P, B, q))
    sync = np.zeros(8 * (P + 1), dtype=np.int64)     # the parts' step counters, the abort word
    out = np.full(1, np.nan)
    if P > 1 and num_threads() > 1 and not threading.current_thread().name.startswith("mfpde"):
        works = [_work(N, D, pa, B, q) for _ in range(P)]
        errors = []
        done = threading.Event()

        def part(p):
            _online_run(code, theta, pa, X, Y, eps, lam, noise, noise_scale, bounds, p,
                        works[p], sync, hbuf, out)

        def side():
            try:
                part(1)
            except BaseException as exc:          # e.g. a failed compilation: stop part 0
                errors.append(exc)
                _set_abort(sync, 8 * P)
            finally:
                done.set()

        _side_queue().put(side)
        try:
            part(0)
        except BaseException:
            _set_abort(sync, 8 * P)               # part 1 stops at its next exchange
            raise
        finally:
            _wait_through_interrupts(done)        # part 1 writes theta: never return before it
        if errors:
            raise errors[0]
    else:
        _online_run(code, theta, pa, X, Y, eps, lam, noise, noise_scale, bounds, -1,
                    _work(N, D, pa, B, q), sync, hbuf, out)
    return float(out[0])


__all__ = ["online_steps", "tanh_array", "tanh_simd"]
