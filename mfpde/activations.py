r"""Activations: the table of theory/models.md §4, names, codes and properties.

Each activation has an integer code; the compiled scalar functions ``sigma(code, z)``,
``dsigma``, ``ddsigma`` (re-exported here) live with the other compiled kernels in
:mod:`mfpde.kernels.activations`, which dispatch on that code inside their fused loops, so a single
compiled kernel serves every activation (and the on-disk Numba cache holds one version).
:data:`ACTIVATIONS` is the one list of activation names (configuration choices come from it).

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

from dataclasses import dataclass

import numpy as np

from .kernels.activations import (ERF, IDENTITY, MMN_PL, MMN_S1, MMN_S2, MMN_T1, MMN_T2, RELU,
                                  SIGMOID, SOFTPLUS, TANH, apply, ddsigma, dsigma, sigma)


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


#: the activation names, in table order (the choices of the configuration)
ACTIVATION_NAMES: tuple[str, ...] = tuple(ACTIVATIONS)


def activation_info(name: str) -> ActivationInfo:
    """Look up an activation by name; raise ``ValueError`` listing the allowed names."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; allowed: {', '.join(sorted(ACTIVATIONS))}"
        ) from None


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
        apply(code, order, z, out)
    return out


def get_activation(name: str):
    """Return numpy-callables ``(s, ds, dds)`` for activation ``name`` (vectorised over arrays)."""
    activation_info(name)
    return (lambda z: evaluate(name, z, 0),
            lambda z: evaluate(name, z, 1),
            lambda z: evaluate(name, z, 2))


__all__ = ["ACTIVATIONS", "ACTIVATION_NAMES", "ActivationInfo", "activation_info", "evaluate",
           "get_activation", "sigma", "dsigma", "ddsigma", "IDENTITY", "TANH", "SIGMOID", "ERF",
           "SOFTPLUS", "RELU", "MMN_PL", "MMN_T1", "MMN_T2", "MMN_S1", "MMN_S2"]
