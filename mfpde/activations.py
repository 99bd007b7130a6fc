r"""Scalar activations with first and second derivatives, compiled with Numba.

Implements the activation table of theory/models.md §4. Each activation has an integer code; the
compiled kernels in :mod:`mfpde.kernels` dispatch on that code inside their fused loops, so a single
compiled kernel serves every activation (and the on-disk Numba cache holds one version).

=============  ==========================  ==========================  ============================
name           :math:`\sigma(z)`           :math:`\sigma'(z)`          :math:`\sigma''(z)`
=============  ==========================  ==========================  ============================
identity       :math:`z`                   1                           0
tanh           :math:`\tanh z`             :math:`1-\sigma^2`          :math:`-2\sigma(1-\sigma^2)`
sigmoid        :math:`1/(1+e^{-z})`        :math:`\sigma(1-\sigma)`    :math:`\sigma'(1-2\sigma)`
erf            :math:`\mathrm{erf}\,z`     :math:`(2/\sqrt\pi)e^{-z^2}` :math:`-2z\sigma'(z)`
softplus       :math:`\log(1+e^z)`         sigmoid                     sigmoid'
relu           :math:`\max(z,0)`           :math:`1_{z>0}`             0 (non-smooth)
mmn_pl         piecewise linear (MMN)      piecewise constant          0 (non-smooth)
=============  ==========================  ==========================  ============================

``relu`` and ``mmn_pl`` are flagged non-smooth: their second derivative is returned as 0 away from
the kinks (the Dirac masses are dropped), so Laplacian-based diagnostics are not exact for them.
The MMN piecewise-linear activation uses ``t1 = 0.5, t2 = 1.5, s1 = -2.5, s2 = 7.5``
(models.md §4, [recalled — verify]).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from ._numba import NUMBA_CACHE

IDENTITY, TANH, SIGMOID, ERF, SOFTPLUS, RELU, MMN_PL = range(7)

#: MMN piecewise-linear constants (models.md §4).
MMN_T1, MMN_T2, MMN_S1, MMN_S2 = 0.5, 1.5, -2.5, 7.5
_MMN_SLOPE = (MMN_S2 - MMN_S1) / (MMN_T2 - MMN_T1)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


@dataclass(frozen=True)
class ActivationInfo:
    """Properties of an activation (models.md §4 table)."""

    name: str
    code: int
    smooth: bool      #: C^2 everywhere (second derivative exact)
    bounded: bool     #: sup |sigma| < inf
    wm_a3: bool       #: meets Wu–Mondelli (A3)


ACTIVATIONS: dict[str, ActivationInfo] = {
    "identity": ActivationInfo("identity", IDENTITY, True, False, False),
    "tanh": ActivationInfo("tanh", TANH, True, True, True),
    "sigmoid": ActivationInfo("sigmoid", SIGMOID, True, True, True),
    "erf": ActivationInfo("erf", ERF, True, True, True),
    "softplus": ActivationInfo("softplus", SOFTPLUS, True, False, False),
    "relu": ActivationInfo("relu", RELU, False, False, False),
    "mmn_pl": ActivationInfo("mmn_pl", MMN_PL, False, True, False),
}


def activation_info(name: str) -> ActivationInfo:
    """Look up an activation by name; raise ``ValueError`` listing the allowed names."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; allowed: {', '.join(sorted(ACTIVATIONS))}"
        ) from None


@njit(cache=NUMBA_CACHE, inline="always")
def _sigmoid(z):
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(cache=NUMBA_CACHE, inline="always")
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


@njit(cache=NUMBA_CACHE, inline="always")
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


@njit(cache=NUMBA_CACHE, inline="always")
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


@njit(cache=NUMBA_CACHE, parallel=True)
def _apply(code, order, z, out):
    flat = z.ravel()
    res = out.ravel()
    for i in prange(flat.size):
        if order == 0:
            res[i] = sigma(code, flat[i])
        elif order == 1:
            res[i] = dsigma(code, flat[i])
        else:
            res[i] = ddsigma(code, flat[i])


def evaluate(name: str, z, order: int = 0) -> np.ndarray:
    """Evaluate the ``order``-th derivative (0, 1 or 2) of activation ``name`` element-wise.

    Parameters
    ----------
    name : str
        Activation name (see :data:`ACTIVATIONS`).
    z : array_like, any shape
    order : {0, 1, 2}

    Returns
    -------
    ndarray of float64, same shape as ``z``.
    """
    if order not in (0, 1, 2):
        raise ValueError(f"order must be 0, 1 or 2, got {order!r}")
    code = activation_info(name).code
    z = np.ascontiguousarray(z, dtype=np.float64)
    out = np.empty_like(z)
    if z.size:
        _apply(code, order, z, out)
    return out


def get_activation(name: str):
    """Return numpy-callables ``(s, ds, dds)`` for activation ``name`` (vectorised over arrays)."""
    activation_info(name)
    return (lambda z: evaluate(name, z, 0),
            lambda z: evaluate(name, z, 1),
            lambda z: evaluate(name, z, 2))
