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
:mod:`mfpde.kernels.activations` by code. The kernel is serial (one
thread): it serves the small problems where a per-step BLAS pass is dominated by fixed costs.
"""
from __future__ import annotations

import numpy as np

from .._numba import jit
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
def _update_u_row(Ut, c, x, xn, d, e, lam, noisy, ns, noise, k, pa, zn):
    """Batch 1: ``u <- u - e (c x~ + lam u) [+ ns g^k]`` for every particle, and the next step's
    pre-activations ``zn += u x~_next`` (``zn`` zero on entry), summed over ``i`` in order.

    The rows of ``Ut`` (``d_in x N``) are taken four at a time: each pass over the particles
    updates four rows and adds their four terms to ``zn[j]`` (in the order of ``i``), so ``zn``
    is read and written once per four rows instead of once per row; the state, the largest
    array, is read and written once per step."""
    din, N = Ut.shape
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
        U0, U1, U2, U3 = Ut[i], Ut[i + 1], Ut[i + 2], Ut[i + 3]
        if noisy:
            q = pa + i
            for j in range(N):
                cj = c[j]
                v0 = U0[j] - e * (cj * x0 + lam * U0[j]) + ns * noise[k, j, q]
                v1 = U1[j] - e * (cj * x1 + lam * U1[j]) + ns * noise[k, j, q + 1]
                v2 = U2[j] - e * (cj * x2 + lam * U2[j]) + ns * noise[k, j, q + 2]
                v3 = U3[j] - e * (cj * x3 + lam * U3[j]) + ns * noise[k, j, q + 3]
                U0[j] = v0
                U1[j] = v1
                U2[j] = v2
                U3[j] = v3
                zn[j] = (((zn[j] + v0 * y0) + v1 * y1) + v2 * y2) + v3 * y3
        else:
            for j in range(N):
                cj = c[j]
                v0 = U0[j] - e * (cj * x0 + lam * U0[j])
                v1 = U1[j] - e * (cj * x1 + lam * U1[j])
                v2 = U2[j] - e * (cj * x2 + lam * U2[j])
                v3 = U3[j] - e * (cj * x3 + lam * U3[j])
                U0[j] = v0
                U1[j] = v1
                U2[j] = v2
                U3[j] = v3
                zn[j] = (((zn[j] + v0 * y0) + v1 * y1) + v2 * y2) + v3 * y3
        i += 4
    while i < din:
        xi = x[i] if i < d else 1.0
        yi = xn[i] if i < d else 1.0
        Ui = Ut[i]
        if noisy:
            q = pa + i
            for j in range(N):
                v = Ui[j] - e * (c[j] * xi + lam * Ui[j]) + ns * noise[k, j, q]
                Ui[j] = v
                zn[j] += v * yi
        else:
            for j in range(N):
                v = Ui[j] - e * (c[j] * xi + lam * Ui[j])
                Ui[j] = v
                zn[j] += v * yi
        i += 1


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
        if B == 1:
            _update_u_row(Ut, C[0], X[k, 0], X[kn, 0], d, e, lam, noisy,
                          noise_scale[k] if noisy else 0.0, noise, k, pa, Zn[0])
            Z, Zn = Zn, Z
            continue
        for i in range(din):
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


__all__ = ["online_steps", "tanh_array", "tanh_simd"]
