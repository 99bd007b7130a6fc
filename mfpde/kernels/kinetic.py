r"""Fused update kernels of the kinetic (heavy-ball / underdamped Langevin) drivers.

Theory: theory/dynamics.md §5.1 (SHB recursion) and §5.6 (splitting integrators). Sub-steps on
particles ``theta`` and velocities ``r`` (both ``(N, D)``, C-contiguous float64), with the force
``f = grad Psi`` computed outside (BLAS) and the Gaussian noise drawn outside (NumPy generator):

- **B** (kick)   ``r <- r - h f``
- **A** (drift)  ``theta <- theta + h r``
- **O** (Ornstein–Uhlenbeck, exact) ``r <- c r + s g`` with ``c = exp(-gamma h)``,
  ``s = sqrt((1 - c^2)/beta)`` (``s = 0`` for ``beta = inf``).

Each kernel fuses the sub-steps that sit between two force evaluations, so one step of a scheme
reads and writes ``theta`` and ``r`` once or twice instead of once per sub-step:

=====================  ===================================================================
:func:`shb_update`     ``r <- a r - eps f + s g;  theta <- theta + eps r``  (SHB, §5.1)
:func:`baoa_update`    ``B(h/2) A(h/2) O(h) A(h/2)``                       (BAOAB, before the force)
:func:`oba_update`     ``O(h/2) B(h/2) A(h)``                              (OBABO, before the force)
:func:`bo_update`      ``B(h/2) O(h/2)`` (``c = 1, s = 0``: the closing kick ``B(h/2)``)
=====================  ===================================================================

Determinism: every kernel is element-wise (row ``i`` is written by one thread only and nothing
is reduced), so results are bitwise identical for any thread count and for the serial and
parallel variants. Below :data:`~mfpde.kernels.readout.PARALLEL_MIN` entries the serial variant
runs (a parallel launch costs more than it saves), as in :mod:`mfpde.kernels.readout`.

A noise array may be ``(0, 0)`` when its scale is 0 (noiseless schemes); it is then not read.
"""
from __future__ import annotations

from numba import prange

from .._numba import jit
from .readout import PARALLEL_MIN


# ---------------------------------------------------------------------------- SHB recursion
@jit(inline="always")
def _shb_row(theta, r, f, g, a, eps, s, i):
    noisy = s != 0.0
    for j in range(theta.shape[1]):
        v = a * r[i, j] - eps * f[i, j]
        if noisy:
            v += s * g[i, j]
        r[i, j] = v
        theta[i, j] += eps * v


@jit(parallel=True)
def _shb_par(theta, r, f, g, a, eps, s):
    for i in prange(theta.shape[0]):
        _shb_row(theta, r, f, g, a, eps, s, i)


@jit
def _shb_ser(theta, r, f, g, a, eps, s):
    for i in range(theta.shape[0]):
        _shb_row(theta, r, f, g, a, eps, s, i)


def shb_update(theta, r, f, g, a, eps, s):
    """Stochastic heavy ball in velocity form (dynamics.md §5.1), in place, one pass:

    ``r <- a r - eps f + s g``, then ``theta <- theta + eps r`` (new ``r``), with
    ``a = 1 - gamma*eps`` and ``s = sqrt(2 gamma eps / beta)`` (0 when noiseless).
    """
    (_shb_par if theta.size >= PARALLEL_MIN else _shb_ser)(theta, r, f, g, a, eps, s)


# ---------------------------------------------------------------------------- BAOAB
@jit(inline="always")
def _baoa_row(theta, r, f, g, hb, ha, c, s, i):
    noisy = s != 0.0
    for j in range(theta.shape[1]):
        v = r[i, j] - hb * f[i, j]          # B(h/2)
        x = theta[i, j] + ha * v            # A(h/2)
        v = c * v                           # O(h)
        if noisy:
            v += s * g[i, j]
        theta[i, j] = x + ha * v            # A(h/2)
        r[i, j] = v


@jit(parallel=True)
def _baoa_par(theta, r, f, g, hb, ha, c, s):
    for i in prange(theta.shape[0]):
        _baoa_row(theta, r, f, g, hb, ha, c, s, i)


@jit
def _baoa_ser(theta, r, f, g, hb, ha, c, s):
    for i in range(theta.shape[0]):
        _baoa_row(theta, r, f, g, hb, ha, c, s, i)


def baoa_update(theta, r, f, g, hb, ha, c, s):
    """BAOAB up to the force evaluation (dynamics.md §5.6), in place, one pass:

    ``r <- r - hb f``; ``theta <- theta + ha r``; ``r <- c r + s g``; ``theta <- theta + ha r``
    (``hb = ha = h/2``, ``c = exp(-gamma h)``, ``s = sqrt((1 - c^2)/beta)``).
    """
    (_baoa_par if theta.size >= PARALLEL_MIN else _baoa_ser)(theta, r, f, g, hb, ha, c, s)


# ---------------------------------------------------------------------------- OBABO
@jit(inline="always")
def _oba_row(theta, r, f, g, c, s, hb, ha, i):
    noisy = s != 0.0
    for j in range(theta.shape[1]):
        v = c * r[i, j]                     # O(h/2)
        if noisy:
            v += s * g[i, j]
        v -= hb * f[i, j]                   # B(h/2)
        r[i, j] = v
        theta[i, j] += ha * v               # A(h)


@jit(parallel=True)
def _oba_par(theta, r, f, g, c, s, hb, ha):
    for i in prange(theta.shape[0]):
        _oba_row(theta, r, f, g, c, s, hb, ha, i)


@jit
def _oba_ser(theta, r, f, g, c, s, hb, ha):
    for i in range(theta.shape[0]):
        _oba_row(theta, r, f, g, c, s, hb, ha, i)


def oba_update(theta, r, f, g, c, s, hb, ha):
    """OBABO up to the force evaluation (dynamics.md §5.6), in place, one pass:

    ``r <- c r + s g``; ``r <- r - hb f``; ``theta <- theta + ha r``
    (``c = exp(-gamma h/2)``, ``s = sqrt((1 - c^2)/beta)``, ``hb = h/2``, ``ha = h``).
    """
    (_oba_par if theta.size >= PARALLEL_MIN else _oba_ser)(theta, r, f, g, c, s, hb, ha)


# ---------------------------------------------------------------------------- closing B(O)
@jit(inline="always")
def _bo_row(r, f, g, hb, c, s, i):
    noisy = s != 0.0
    for j in range(r.shape[1]):
        v = c * (r[i, j] - hb * f[i, j])
        if noisy:
            v += s * g[i, j]
        r[i, j] = v


@jit(parallel=True)
def _bo_par(r, f, g, hb, c, s):
    for i in prange(r.shape[0]):
        _bo_row(r, f, g, hb, c, s, i)


@jit
def _bo_ser(r, f, g, hb, c, s):
    for i in range(r.shape[0]):
        _bo_row(r, f, g, hb, c, s, i)


def bo_update(r, f, g, hb, c, s):
    """Closing sub-steps after the force evaluation, in place, one pass:
    ``r <- c (r - hb f) + s g`` — ``B(h/2) O(h/2)`` of OBABO, or (``c = 1``, ``s = 0``) the
    closing kick ``B(h/2)`` of BAOAB and of the noiseless splitting.
    """
    (_bo_par if r.size >= PARALLEL_MIN else _bo_ser)(r, f, g, hb, c, s)


__all__ = ["shb_update", "baoa_update", "oba_update", "bo_update"]
