r"""Compiled activation functions: :math:`\sigma, \sigma', \sigma''` by integer code, and their
element-wise evaluation over arrays.

The activation table of theory/models.md §4 (names, properties, the public ``evaluate``) is
:mod:`mfpde.activations`; this module holds the compiled code it and the other kernels use. The
kernels dispatch on the integer code inside their fused loops, so one compiled kernel serves every
activation (and the on-disk Numba cache holds one version). The scalar functions are inlined into
the calling kernels.
"""
from __future__ import annotations

import math

from numba import prange

from .._numba import jit

#: activation codes (the order of the table in :mod:`mfpde.activations`)
IDENTITY, TANH, SIGMOID, ERF, SOFTPLUS, RELU, MMN_PL = range(7)

#: MMN piecewise-linear constants (models.md §4).
MMN_T1, MMN_T2, MMN_S1, MMN_S2 = 0.5, 1.5, -2.5, 7.5
_MMN_SLOPE = (MMN_S2 - MMN_S1) / (MMN_T2 - MMN_T1)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


@jit(inline="always")
def _sigmoid(z):
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@jit(inline="always")
def sigma(code, z):
    """:math:`\\sigma(z)` for the activation ``code`` (models.md §4)."""
    if code == TANH:
        return math.tanh(z)
    if code == SIGMOID:
        return _sigmoid(z)
    if code == ERF:
        return math.erf(z)
    if code == IDENTITY:
        return z
    if code == SOFTPLUS:
        return max(z, 0.0) + math.log1p(math.exp(-abs(z)))
    if code == RELU:
        return max(z, 0.0)
    # MMN piecewise linear
    if z <= MMN_T1:
        return MMN_S1
    if z >= MMN_T2:
        return MMN_S2
    return MMN_S1 + _MMN_SLOPE * (z - MMN_T1)


@jit(inline="always")
def dsigma(code, z):
    """:math:`\\sigma'(z)` for the activation ``code`` (models.md §4)."""
    if code == TANH:
        t = math.tanh(z)
        return 1.0 - t * t
    if code == SIGMOID:
        s = _sigmoid(z)
        return s * (1.0 - s)
    if code == ERF:
        return _TWO_OVER_SQRT_PI * math.exp(-z * z)
    if code == IDENTITY:
        return 1.0
    if code == SOFTPLUS:
        return _sigmoid(z)
    if code == RELU:
        return 1.0 if z > 0.0 else 0.0
    return _MMN_SLOPE if (MMN_T1 < z < MMN_T2) else 0.0


@jit(inline="always")
def ddsigma(code, z):
    """:math:`\\sigma''(z)` for the activation ``code`` (0 for relu/mmn_pl away from kinks)."""
    if code == TANH:
        t = math.tanh(z)
        return -2.0 * t * (1.0 - t * t)
    if code == SIGMOID or code == SOFTPLUS:
        s = _sigmoid(z)
        ds = s * (1.0 - s)
        if code == SOFTPLUS:
            return ds
        return ds * (1.0 - 2.0 * s)
    if code == ERF:
        return -2.0 * z * _TWO_OVER_SQRT_PI * math.exp(-z * z)
    return 0.0


@jit(parallel=True)
def apply(code, order, z, out):
    """``out = sigma^{(order)}(z)`` element-wise for the activation ``code`` (``order`` 0, 1, 2);
    ``z`` and ``out`` C-contiguous of the same shape (any), parallel over entries."""
    flat = z.ravel()
    res = out.ravel()
    for i in prange(flat.size):
        if order == 0:
            res[i] = sigma(code, flat[i])
        elif order == 1:
            res[i] = dsigma(code, flat[i])
        else:
            res[i] = ddsigma(code, flat[i])


__all__ = ["IDENTITY", "TANH", "SIGMOID", "ERF", "SOFTPLUS", "RELU", "MMN_PL", "MMN_T1", "MMN_T2",
           "MMN_S1", "MMN_S2", "sigma", "dsigma", "ddsigma", "apply"]
