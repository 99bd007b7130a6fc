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
steps are split into calls. ``tanh`` uses :func:`tanh_simd` (a branch-free evaluation within 2 ulp
of the C library's ``tanh``, which the compiler can vectorise); the other activations use the
scalar ``sigma`` / ``dsigma`` of :mod:`mfpde.kernels.activations` by code. The kernel is serial (one
thread): it serves the small problems where a per-step BLAS pass is dominated by fixed costs.
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .._numba import jit
from .activations import SIGMOID, TANH, dsigma, sigma

#: floating-point flags of the compiled loops: fused multiply-add contraction only (no
#: reassociation), so every sum keeps its order and results are reproducible
_FASTMATH = {"contract"}

# ---------------------------------------------------------------------------- SIMD tanh
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
# 1/k! for the degree-13 Taylor polynomial of exp on |r| <= ln(2)/2 (truncation < 0.1 ulp)
_E2, _E3, _E4, _E5, _E6, _E7, _E8, _E9, _E10, _E11, _E12, _E13 = (
    1.0 / math.factorial(k) for k in range(2, 14))
# rational approximation tanh(x) = x + x^3 P(x^2)/Q(x^2) on |x| < 0.625 (Cephes tanh.c)
_TP0, _TP1, _TP2 = -9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3
_TQ0, _TQ1, _TQ2 = 1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3


@intrinsic
def _pow2(typingctx, n):
    """``2.0 ** n`` for an integer ``-1022 <= n <= 1023``, built from the exponent bits."""
    if not isinstance(n, types.Integer):
        return None
    sig = types.float64(n)

    def codegen(context, builder, signature, args):
        v = context.cast(builder, args[0], n, types.int64)
        i64 = ir.IntType(64)
        bits = builder.shl(builder.add(v, ir.Constant(i64, 1023)), ir.Constant(i64, 52))
        return builder.bitcast(bits, ir.DoubleType())

    return sig, codegen


@jit(inline="always", error_model="numpy")
def _exp_nonpos(x):
    """``exp(x)`` for ``-40 <= x <= 0`` without library calls: ``x = n ln 2 + r`` (Cody–Waite),
    Taylor polynomial of degree 13 in ``r``, times ``2^n``."""
    n = math.floor(x * _LOG2E + 0.5)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    p = _E13
    p = p * r + _E12
    p = p * r + _E11
    p = p * r + _E10
    p = p * r + _E9
    p = p * r + _E8
    p = p * r + _E7
    p = p * r + _E6
    p = p * r + _E5
    p = p * r + _E4
    p = p * r + _E3
    p = p * r + _E2
    p = p * r + 1.0
    p = p * r + 1.0
    return p * _pow2(np.int64(n))


@jit(inline="always", error_model="numpy")
def tanh_simd(z):
    """:math:`\\tanh z` within 2 ulp of the C library (tested), branch-free so that loops over it
    vectorise: the rational approximation below ``|z| = 0.625``, ``1 - 2e/(1+e)`` with
    ``e = exp(-2|z|)`` above (``|z|`` clipped at 20, where ``tanh = 1`` in double precision)."""
    a = min(abs(z), 20.0)
    s = a * a
    small = a + a * s * (((_TP0 * s + _TP1) * s + _TP2) / (((s + _TQ0) * s + _TQ1) * s + _TQ2))
    e = _exp_nonpos(-2.0 * a)
    big = 1.0 - 2.0 * e / (1.0 + e)
    t = small if a < 0.625 else big
    return math.copysign(t, z)


@jit(error_model="numpy", fastmath=_FASTMATH)
def tanh_array(z, out):
    """``out[i] = tanh_simd(z[i])`` for 1-D arrays (used by the tests)."""
    for i in range(z.shape[0]):
        out[i] = tanh_simd(z[i])


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


# ---------------------------------------------------------------------------- the kernel
@jit(error_model="numpy", fastmath=_FASTMATH)
def online_steps(code, theta, pa, bias, X, Y, eps, lam, noise, noise_scale):
    """Run ``K`` Euler–Maruyama steps of a two-layer read-out model in place (module docstring).

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
    din = D - pa
    noisy = noise.shape[0] > 0
    Ut = np.empty((din, N))
    At = np.empty((pa, N))
    for j in range(N):
        for r in range(pa):
            At[r, j] = theta[j, r]
        for i in range(din):
            Ut[i, j] = theta[j, pa + i]
    Z = np.zeros((B, N))
    Zn = np.empty((B, N))
    S = np.empty((B, N))
    Sp = np.empty((B, N))
    C = np.empty((B, N))
    tmp = np.empty(N)
    G = np.empty((B, q))
    invN = 1.0 / N
    invB = 1.0 / B
    risk = np.nan
    # pre-activations of the first step; later steps get theirs from the update pass
    for b in range(B):
        for i in range(din):
            xi = X[0, b, i] if i < d else 1.0
            for j in range(N):
                Z[b, j] += Ut[i, j] * xi
    for k in range(K):
        e = eps[k]
        sq = 0.0
        # ---- S = sigma(z), S' = sigma'(z), residual G = (H - y)/B
        for b in range(B):
            _activate(code, Z[b], S[b], Sp[b])
            for r in range(q):
                h = _dot(At[r], S[b]) if pa > 0 else _sum(S[b])
                zr = h * invN - Y[k, b, r]
                sq += zr * zr
                G[b, r] = zr * invB
        risk = sq / (2.0 * B)
        # ---- back-propagated residual C_bj = (G_b . a_j) sigma'(z_bj), with a of step k
        for b in range(B):
            if pa == 0:
                g0 = G[b, 0]
                for j in range(N):
                    C[b, j] = g0 * Sp[b, j]
            else:
                for j in range(N):
                    C[b, j] = 0.0
                for r in range(q):
                    gr = G[b, r]
                    for j in range(N):
                        C[b, j] += gr * At[r, j]
                for j in range(N):
                    C[b, j] *= Sp[b, j]
        # ---- update a: grad = sum_b s_bj G_br + lam a
        for r in range(pa):
            if B == 1:
                g0 = G[0, r]
                for j in range(N):
                    tmp[j] = S[0, j] * g0
            else:
                tmp[:] = 0.0
                for b in range(B):
                    gb = G[b, r]
                    for j in range(N):
                        tmp[j] += S[b, j] * gb
            for j in range(N):
                v = At[r, j] - e * (tmp[j] + lam * At[r, j])
                if noisy:
                    v += noise_scale[k] * noise[k, j, r]
                At[r, j] = v
        # ---- update u: grad = sum_b C_bj x~_bi + lam u. The same pass accumulates the next
        # step's pre-activations z = U x~, summed over i in order as for the first step (the
        # last step of the call accumulates an unused copy, so every step runs the same loops)
        kn = k + 1 if k + 1 < K else k
        Zn[:, :] = 0.0
        for i in range(din):
            if B == 1:
                xi = X[k, 0, i] if i < d else 1.0
                xn = X[kn, 0, i] if i < d else 1.0
                if noisy:
                    ns = noise_scale[k]
                    for j in range(N):
                        v = (Ut[i, j] - e * (C[0, j] * xi + lam * Ut[i, j])
                             + ns * noise[k, j, pa + i])
                        Ut[i, j] = v
                        Zn[0, j] += v * xn
                else:
                    for j in range(N):
                        v = Ut[i, j] - e * (C[0, j] * xi + lam * Ut[i, j])
                        Ut[i, j] = v
                        Zn[0, j] += v * xn
                continue
            tmp[:] = 0.0
            for b in range(B):
                xi = X[k, b, i] if i < d else 1.0
                for j in range(N):
                    tmp[j] += C[b, j] * xi
            if noisy:
                ns = noise_scale[k]
                for j in range(N):
                    Ut[i, j] = (Ut[i, j] - e * (tmp[j] + lam * Ut[i, j])
                                + ns * noise[k, j, pa + i])
            else:
                for j in range(N):
                    Ut[i, j] = Ut[i, j] - e * (tmp[j] + lam * Ut[i, j])
            for b in range(B):
                xn = X[kn, b, i] if i < d else 1.0
                for j in range(N):
                    Zn[b, j] += Ut[i, j] * xn
        Z, Zn = Zn, Z
    for j in range(N):
        for r in range(pa):
            theta[j, r] = At[r, j]
        for i in range(din):
            theta[j, pa + i] = Ut[i, j]
    return risk
