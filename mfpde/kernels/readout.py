r"""Fused kernels of the read-out models (theory/dynamics.md §1.2–§1.3, row layout).

For one block of samples ``X_b`` (``nb x d``) and particles ``U`` (``N x d``) the model computes

.. math::

    P = X_b U^\top,\quad S = \sigma(P),\quad S' = \sigma'(P),\quad
    B = G_b A^\top,\quad \nabla_U\Psi \mathrel{+}= (S'\odot B)^\top X_b

with the products on BLAS. The kernels below do the element-wise parts in one pass each:
:func:`activate_block` turns ``P`` into ``S`` and ``S'`` (and ``S''`` for Laplacians) with one
transcendental evaluation per entry; :func:`backprop_block` forms ``S' \odot B`` in place and
accumulates the Laplacian term :math:`\sum_i B_{ij}S''_{ij}\|x_i\|^2`.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .._numba import NUMBA_CACHE
from ..activations import SIGMOID, SOFTPLUS, TANH, ddsigma, dsigma, sigma

#: column tile used by kernels that reduce over the sample axis (deterministic per column)
TILE = 256


#: below this many entries a kernel runs serially: a parallel launch costs more than it saves
PARALLEL_MIN = 1 << 17


@njit(cache=NUMBA_CACHE, inline="always")
def _activate_entry(code, z, pre, want_dd):
    """Return ``(sigma, sigma', sigma'')`` at ``z``; ``pre`` is the NumPy pre-pass value
    (``tanh z`` for tanh, ``exp(-|z|)`` for sigmoid and softplus, unused otherwise)."""
    if code == TANH:
        ds = 1.0 - pre * pre
        return pre, ds, -2.0 * pre * ds
    if code == SIGMOID or code == SOFTPLUS:
        sg = 1.0 / (1.0 + pre) if z >= 0.0 else pre / (1.0 + pre)      # logistic(z), stable
        dsg = sg * (1.0 - sg)
        if code == SIGMOID:
            return sg, dsg, dsg * (1.0 - 2.0 * sg)
        return max(z, 0.0) + math.log1p(pre), sg, dsg
    dd = ddsigma(code, z) if want_dd else 0.0
    return sigma(code, z), dsigma(code, z), dd


@njit(cache=NUMBA_CACHE, inline="always")
def _activate_row(code, P, S, want_dd, Spp, i):
    for j in range(P.shape[1]):
        s, ds, dds = _activate_entry(code, P[i, j], S[i, j], want_dd)
        if want_dd:
            Spp[i, j] = dds
        S[i, j] = s
        P[i, j] = ds


@njit(cache=NUMBA_CACHE, parallel=True)
def _activate_par(code, P, S, want_dd, Spp):
    for i in prange(P.shape[0]):
        _activate_row(code, P, S, want_dd, Spp, i)


@njit(cache=NUMBA_CACHE)
def _activate_ser(code, P, S, want_dd, Spp):
    for i in range(P.shape[0]):
        _activate_row(code, P, S, want_dd, Spp, i)


def activate_block(code, P, S, want_dd, Spp):
    """In place: ``S <- sigma(P)``, ``Spp <- sigma''(P)`` (if ``want_dd``), then ``P <- sigma'(P)``.

    The transcendental part runs first as a NumPy SIMD ufunc into ``S`` (``tanh``, or
    ``exp(-|z|)`` for sigmoid and softplus: several times faster than scalar libm calls in a compiled
    loop), then one fused pass forms ``sigma, sigma', sigma''`` from it.

    Shapes: ``P``, ``S``, ``Spp`` are ``(nb, N)`` C-contiguous float64 (``Spp`` may be ``(0, 0)``
    when ``want_dd`` is False).
    """
    if code == TANH:
        np.tanh(P, out=S)
    elif code == SIGMOID or code == SOFTPLUS:
        np.abs(P, out=S)
        np.negative(S, out=S)
        np.exp(S, out=S)
    (_activate_par if P.size >= PARALLEL_MIN else _activate_ser)(code, P, S, want_dd, Spp)


@njit(cache=NUMBA_CACHE, inline="always")
def _backprop_tile(Sp, B, g_row, fixed, want_lap, Spp, xn2, lap, t):
    nb, N = Sp.shape
    j0 = t * TILE
    j1 = min(N, j0 + TILE)
    for i in range(nb):
        gi = g_row[i]
        xn = xn2[i]
        for j in range(j0, j1):
            b = gi if fixed else B[i, j]
            if want_lap:
                lap[j] += b * Spp[i, j] * xn
            B[i, j] = b * Sp[i, j]


@njit(cache=NUMBA_CACHE, parallel=True)
def _backprop_par(Sp, B, g_row, fixed, want_lap, Spp, xn2, lap):
    for t in prange((Sp.shape[1] + TILE - 1) // TILE):
        _backprop_tile(Sp, B, g_row, fixed, want_lap, Spp, xn2, lap, t)


@njit(cache=NUMBA_CACHE)
def _backprop_ser(Sp, B, g_row, fixed, want_lap, Spp, xn2, lap):
    for t in range((Sp.shape[1] + TILE - 1) // TILE):
        _backprop_tile(Sp, B, g_row, fixed, want_lap, Spp, xn2, lap, t)


def backprop_block(Sp, B, g_row, fixed, want_lap, Spp, xn2, lap):
    """In place ``B <- S' (.) B`` and, if ``want_lap``, ``lap[j] += sum_i B_ij S''_ij |x_i|^2``.

    When ``fixed`` is True (output weight fixed to 1, models.md §1) ``B`` is not read: the
    back-propagated residual is ``B_ij = g_row[i]`` for every particle, written into ``B``.

    Shapes: ``Sp, B, Spp`` ``(nb, N)``; ``g_row, xn2`` ``(nb,)``; ``lap`` ``(N,)``.
    Column tiles: each ``lap[j]`` is summed in a fixed order by one thread.
    """
    (_backprop_par if Sp.size >= PARALLEL_MIN else _backprop_ser)(
        Sp, B, g_row, fixed, want_lap, Spp, xn2, lap)


@njit(cache=NUMBA_CACHE, inline="always")
def _em_row(theta, grad, noise, step, noise_scale, i):
    use_noise = noise_scale != 0.0
    for j in range(theta.shape[1]):
        v = theta[i, j] - step * grad[i, j]
        if use_noise:
            v += noise_scale * noise[i, j]
        theta[i, j] = v


@njit(cache=NUMBA_CACHE, parallel=True)
def _em_par(theta, grad, noise, step, noise_scale):
    for i in prange(theta.shape[0]):
        _em_row(theta, grad, noise, step, noise_scale, i)


@njit(cache=NUMBA_CACHE)
def _em_ser(theta, grad, noise, step, noise_scale):
    for i in range(theta.shape[0]):
        _em_row(theta, grad, noise, step, noise_scale, i)


def em_update(theta, grad, noise, step, noise_scale):
    """Euler–Maruyama update ``theta <- theta - step*grad + noise_scale*noise`` in one pass.

    Implements dynamics.md §3: ``theta^{k+1} = theta^k - eps_k grad Psi + sqrt(2 eps_k/beta) g``.
    ``noise`` may be ``(0, 0)`` when ``noise_scale == 0`` (noiseless flow). Shapes ``(N, D)``.
    """
    (_em_par if theta.size >= PARALLEL_MIN else _em_ser)(theta, grad, noise, step, noise_scale)
