r"""Compiled kernels of the grid solvers (theory/grid.md §1, §4).

- :func:`div_axis0`, :func:`div_axis1`: the Carrillo–Chertock–Huang flux divergence
  ``-(F_{i+1/2} - F_{i-1/2})/dx`` along one axis of a 2-D array, first-order or minmod point
  values, zero flux at both ends (grid.md §1.1, §1.2; the transport and velocity sub-steps of the
  phase-space grid, §4);
- :func:`cch_rhs`: ``d rho/dt`` of the finite-volume solver (``phi``, interface velocities,
  maximal speeds and both divergences in one call), :func:`dt_limit`: its explicit step limit;
- :func:`run_local`: the finite-volume steps (forward Euler or SSP-RK2, 1-D or 2-D, every stage,
  step rejection) in one compiled loop for a ``rho``-independent potential (grid.md §1.1, §1.2);
- :func:`thomas_rows`: tridiagonal solves row by row (the implicit velocity step of the
  phase-space grid, §4).

- :func:`log_simd`: the natural logarithm without a library call (so that the loop computing
  ``phi`` vectorises), :func:`log_floor`: ``log max(x, floor)`` of an array with it.

Used by :mod:`mfpde.meanfield.fv` and :mod:`mfpde.meanfield.phase_grid`. Strict IEEE arithmetic
(no fastmath), serial.
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .._numba import jit

__all__ = ["minmod3", "div_axis0", "div_axis1", "cch_rhs", "dt_limit", "run_local",
           "thomas_rows", "log_simd", "log_floor"]


# ---------------------------------------------------------------------------- vectorisable log
@intrinsic
def _bits(typingctx, x):
    """The IEEE-754 bits of a double as an int64 (a bitcast, no conversion)."""
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, signature, args):
        v = context.cast(builder, args[0], x, types.float64)
        return builder.bitcast(v, ir.IntType(64))

    return types.int64(x), codegen


@intrinsic
def _double(typingctx, i):
    """The double whose IEEE-754 bits are the int64 ``i`` (a bitcast)."""
    if not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = context.cast(builder, args[0], i, types.int64)
        return builder.bitcast(v, ir.DoubleType())

    return types.float64(i), codegen


_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
# fdlibm e_log.c: log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2)), s = f / (2 + f), on
# sqrt(2)/2 <= 1 + f < sqrt(2)
_LG1, _LG2, _LG3, _LG4 = (6.666666666666735130e-01, 3.999999999940941908e-01,
                          2.857142874366239149e-01, 2.222219843214978396e-01)
_LG5, _LG6, _LG7 = 1.818357216161805012e-01, 1.531383769920937332e-01, 1.479819860511658591e-01
_TWO54 = 18014398509481984.0
_TWO52 = 4503599627370496.0
_MIN_NORMAL = 2.2250738585072014e-308
_MANT = 0x000fffffffffffff
_HALF_SQRT2_SHIFT = 0x00095f6400000000     # moves the mantissa of [sqrt(2), 2) past 2^52
_BIT52 = 0x0010000000000000
_ONE = 0x3ff0000000000000
_INT_MAGIC = 0x4330000000000000             # the bits of 2^52: 2^52 + e has e in its mantissa


@jit(inline="always", error_model="numpy")
def log_simd(x):
    """Natural logarithm of a double, within 1 ulp of the C library (tested; fdlibm's ``e_log.c``
    reduction ``x = 2^k (1 + f)``, ``sqrt(2)/2 <= 1 + f < sqrt(2)``, and its polynomial),
    branch-free so that loops over it vectorise: the exponent and mantissa come from the bits
    (:func:`_bits`), the integer ``k`` becomes a double through the mantissa of ``2^52 + k``
    (no integer-to-float instruction). Subnormal ``x`` are scaled by ``2^54`` first; ``log 0 =
    -inf``, ``log(inf) = inf``, NaN stays NaN; negative ``x`` are not handled (the callers
    clamp at a positive floor)."""
    sub = x < _MIN_NORMAL
    y = x * _TWO54 if sub else x
    hx = _bits(y)
    m = hx & _MANT
    i = (m + _HALF_SQRT2_SHIFT) & _BIT52
    f = _double(m | (i ^ _ONE)) - 1.0
    e = (hx >> 52) + (i >> 52)                              # biased exponent of 2^k, 0 .. 2048
    k = (_double(e | _INT_MAGIC) - _TWO52) - (1077.0 if sub else 1023.0)
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    r = t2 + t1
    hfsq = 0.5 * f * f
    out = k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)
    if x == 0.0:
        out = -math.inf
    if not x < math.inf:                                    # inf, NaN
        out = x
    return out


@jit(error_model="numpy")
def log_floor(x, floor, out):
    """``out = log max(x, floor)`` element-wise (:func:`log_simd`) for C-contiguous arrays of
    one shape; ``out`` may be ``x``. The logarithm of ``phi`` (grid.md §1.1) in NumPy code,
    with the same bits as the compiled steps (:func:`run_local`)."""
    xf, of = x.reshape(x.size), out.reshape(out.size)
    for k in range(xf.shape[0]):
        of[k] = log_simd(max(xf[k], floor))


@jit(inline="always")
def minmod3(a, b, c):
    if a > 0.0 and b > 0.0 and c > 0.0:
        return min(a, min(b, c))
    if a < 0.0 and b < 0.0 and c < 0.0:
        return max(a, max(b, c))
    return 0.0


@jit(inline="always")
def _half_slope(xm, x0, xp, kappa):
    """``(dx/2) s_j`` with the minmod slope ``s_j`` of grid.md §1.1 from ``x_{j-1}, x_j, x_{j+1}``."""
    return 0.5 * minmod3(kappa * (xp - x0), 0.5 * (xp - xm), kappa * (x0 - xm))


@jit
def div_axis0(rho, U, dx, order, kappa, out, accumulate):
    """``out (+)= -(F_{i+1/2,j} - F_{i-1/2,j})/dx`` along axis 0 (grid.md §1.1/§1.2).

    rho (J0, J1); U (J0-1, J1) interface velocities ``u_{i+1/2,j}``; zero flux at both ends.
    Point values: first order (``order=1``) or minmod with parameter ``kappa`` (``order=2``).
    """
    J0, J1 = rho.shape
    Fprev = np.zeros(J1)    # F_{i-1/2,j} of the row before (rows in memory order)
    for i in range(J0):
        for j in range(J1):
            if i < J0 - 1:
                u = U[i, j]
                if u > 0.0:
                    k = i  # east point value of cell i
                    r = rho[k, j]
                    if order == 2 and 0 < k < J0 - 1:
                        r += _half_slope(rho[k - 1, j], r, rho[k + 1, j], kappa)
                    F = u * r
                elif u < 0.0:
                    k = i + 1  # west point value of cell i+1
                    r = rho[k, j]
                    if order == 2 and 0 < k < J0 - 1:
                        r -= _half_slope(rho[k - 1, j], r, rho[k + 1, j], kappa)
                    F = u * r
                else:
                    F = 0.0
            else:
                F = 0.0
            v = -(F - Fprev[j]) / dx
            if accumulate:
                out[i, j] += v
            else:
                out[i, j] = v
            Fprev[j] = F


@jit
def div_axis1(rho, V, dx, order, kappa, out, accumulate):
    """As :func:`div_axis0` along axis 1; V (J0, J1-1) velocities ``v_{i,j+1/2}``."""
    J0, J1 = rho.shape
    for i in range(J0):
        Fprev = 0.0
        for j in range(J1):
            if j < J1 - 1:
                u = V[i, j]
                if u > 0.0:
                    k = j
                    r = rho[i, k]
                    if order == 2 and 0 < k < J1 - 1:
                        r += _half_slope(rho[i, k - 1], r, rho[i, k + 1], kappa)
                    F = u * r
                elif u < 0.0:
                    k = j + 1
                    r = rho[i, k]
                    if order == 2 and 0 < k < J1 - 1:
                        r -= _half_slope(rho[i, k - 1], r, rho[i, k + 1], kappa)
                    F = u * r
                else:
                    F = 0.0
            else:
                F = 0.0
            v = -(F - Fprev) / dx
            if accumulate:
                out[i, j] += v
            else:
                out[i, j] = v
            Fprev = F


#: what :func:`_update` writes: ``d rho/dt``, the Euler step, the Euler step in flux-difference
#: form (1-D), the second SSP-RK2 stage
RHS, EULER, EULER_FLUX_DIFF, RK2 = 0, 1, 2, 3


@jit
def _prepare(x, psi, ndim, dx0, dx1, beta_inv, floor, order, kappa, phi, hs, U0, U1, r):
    """What a step needs of a state ``x``; returns the maximal speeds ``(a0, a1)``.

    ``phi = Psi + beta^{-1} log max(x, floor)`` (``Psi`` for ``beta_inv = 0``) and the
    interface velocities ``U0 = -(phi_{i+1,j} - phi_{i,j})/dx0`` (2-D also ``U1 = -(phi_{i,j+1}
    - phi_{i,j})/dx1``), ``a_k = max |U_k|``: the NumPy expressions of
    :meth:`mfpde.meanfield.fv.FVSolver.phi` and ``velocities``. 1-D: the half-slopes ``hs``
    (``order = 2``, interior cells); 2-D: ``r = d x/dt`` by :func:`div_axis0` +
    :func:`div_axis1`. x, psi, phi, hs, r: (J0, J1) (1-D: (J, 1)); U0 (J0-1, J1), U1 (J0, J1-1).
    """
    J0, J1 = x.shape
    n = J0 * J1
    xf, pf, phf, uf = x.reshape(n), psi.reshape(n), phi.reshape(n), U0.reshape(n - J1)
    if beta_inv > 0.0:
        log_floor(xf, floor, phf)                # vectorised (numpy error model: no checks)
        for k in range(n):
            phf[k] = pf[k] + beta_inv * phf[k]
    else:
        for k in range(n):
            phf[k] = pf[k]
    for k in range(n - J1):
        uf[k] = -(phf[k + J1] - phf[k]) / dx0
    a0 = 0.0
    for k in range(n - J1):
        a0 = max(a0, abs(uf[k]))
    if ndim == 1:
        if order == 2:
            hf = hs.reshape(n)
            for k in range(1, n - 1):
                hf[k] = _half_slope(xf[k - 1], xf[k], xf[k + 1], kappa)
        return a0, 0.0
    a1 = 0.0
    for i in range(J0):
        for j in range(J1 - 1):
            v = -(phi[i, j + 1] - phi[i, j]) / dx1
            U1[i, j] = v
            a1 = max(a1, abs(v))
    div_axis0(x, U0, dx0, order, kappa, r, False)
    div_axis1(x, U1, dx1, order, kappa, r, True)
    return a0, a1


@jit
def _update(x, ndim, dx0, order, mode, rho, dt, hs, U0, r, out):
    """``out`` from the state ``x`` prepared by :func:`_prepare`, with ``d = d x/dt``:
    ``d`` (``RHS``), ``rho + dt d`` (``EULER``), ``rho - (dt/dx0)(F_{j+1/2} - F_{j-1/2})``
    (``EULER_FLUX_DIFF``, 1-D) or ``0.5 (rho + x + dt d)`` (``RK2``; ``out`` may be ``x``).
    1-D: the fluxes and ``d = -(F_{j+1/2} - F_{j-1/2})/dx0`` in this pass (the operations of
    :func:`div_axis0`). Returns ``(all(out >= 0), all(out > 0))``."""
    J0, J1 = x.shape
    n = J0 * J1
    xf, rf, of, hf, df = x.reshape(n), rho.reshape(n), out.reshape(n), hs.reshape(n), r.reshape(n)
    uf = U0.reshape(U0.size)
    c = dt / dx0
    nonneg, pos = True, True
    Fprev = 0.0
    for k in range(n):
        if ndim == 1:  # the fluxes in this pass
            F = 0.0
            if k < n - 1:
                u = uf[k]
                if u > 0.0:
                    F = u * (xf[k] + hf[k] if order == 2 and k > 0 else xf[k])
                elif u < 0.0:
                    F = u * (xf[k + 1] - hf[k + 1] if order == 2 and k + 1 < n - 1
                             else xf[k + 1])
            dF = F - Fprev
            Fprev = F
            if mode == EULER_FLUX_DIFF:
                v = rf[k] - c * dF
            else:
                d = -dF / dx0
        else:
            d = df[k]
        if mode == RHS:
            v = d
        elif mode == EULER:
            v = rf[k] + dt * d
        elif mode == RK2:
            v = 0.5 * (rf[k] + xf[k] + dt * d)
        of[k] = v
        if not v > 0.0:
            pos = False
            if not v >= 0.0:
                nonneg = False
    return nonneg, pos


@jit
def cch_rhs(rho, psi, ndim, dx0, dx1, beta_inv, floor, order, kappa, work, U0, U1, out):
    """``out = d rho/dt`` of the CCH scheme (grid.md §1.1, §1.2) by :func:`_prepare` and
    :func:`_update`; returns the maximal speeds ``(a0, a1)`` (``a1 = 0`` in 1-D).

    rho, psi, out: (J0, J1) (1-D: (J, 1)); work (4, J0, J1), U0 (J0-1, J1), U1 (J0, J1-1)
    scratch.
    """
    a = _prepare(rho, psi, ndim, dx0, dx1, beta_inv, floor, order, kappa, work[0], work[1], U0,
                 U1, out)
    _update(rho, ndim, dx0, order, RHS, rho, 0.0, work[1], U0, out, out)
    return a


@jit
def dt_limit(a0, a1, ndim, dx0, dx1, cfl, dt_diff, dt_max):
    """Explicit step limit (grid.md §1.1, §1.2): ``min(dt_max, cfl dx0/(2 a0), dt_diff)`` in 1-D,
    ``min(dt_max, cfl dx_k/(4 a_k), dt_diff)`` in 2-D (a term with ``a_k = 0`` is dropped);
    ``dt_diff`` is the diffusive limit (``inf`` for ``beta = inf``)."""
    dt = dt_max
    if ndim == 1:
        if a0 > 0.0:
            dt = min(dt, cfl * dx0 / (2.0 * a0))
    else:
        if a0 > 0.0:
            dt = min(dt, cfl * dx0 / (4.0 * a0))
        if a1 > 0.0:
            dt = min(dt, cfl * dx1 / (4.0 * a1))
    return min(dt, dt_diff)


@jit
def run_local(rho, psi, ndim, dx0, dx1, beta_inv, floor, order, kappa, cfl, dt_diff, dt_max,
              ssprk2, flux_diff, t, t_end, max_steps, work, U0, U1):
    """Explicit CCH steps for a ``rho``-independent ``Psi`` (grid.md §1.1, §1.2), all stages in
    one compiled loop: at most ``max_steps`` steps, never beyond ``t_end``.

    Each step is the one of :meth:`mfpde.meanfield.fv.FVSolver._attempt`, operation for
    operation: ``a`` at ``rho``, ``dt = min(dt_limit(a), t_end - t)``, then up to 40 tries
    with ``dt`` halved after each failure (a rejection): forward Euler ``rho + dt d rho/dt`` or
    SSP-RK2 ``0.5 (rho + s + dt d s/dt)``, ``s = rho + dt d rho/dt`` (rejected if ``s`` has a
    negative cell or ``dt_limit`` at ``s`` is below ``dt (1 - 1e-12)``); a result is accepted
    when it is ``>= 0`` (``> 0`` for ``beta_inv > 0``). ``t`` becomes ``t_end`` when
    ``t + dt >= t_end``. ``flux_diff`` (1-D Euler) takes the update in the form
    ``rho - (dt/dx) (F_{j+1/2} - F_{j-1/2})``.

    rho (J0, J1), advanced in place (1-D: (J, 1)); psi (J0, J1); work (4, J0, J1), U0 (J0-1, J1),
    U1 (J0, J1-1) scratch. Returns ``(t, steps, dt_last, rejected, status)``, ``status`` 0 (done),
    1 (no finite step: zero speed, ``dt_diff = dt_max = inf``) or 2 (40 halvings without a
    positive step); the steps before a failure are kept.
    """
    phi, hs, r, s = work[0], work[1], work[2], work[3]
    rf, sf = rho.reshape(rho.size), s.reshape(s.size)
    steps, rejected, dt_last = 0, 0, 0.0
    mode = EULER_FLUX_DIFF if flux_diff else EULER
    while t < t_end and steps < max_steps:
        a0, a1 = _prepare(rho, psi, ndim, dx0, dx1, beta_inv, floor, order, kappa, phi, hs,
                          U0, U1, r)
        dt = dt_limit(a0, a1, ndim, dx0, dx1, cfl, dt_diff, dt_max)
        if not math.isfinite(dt):
            return t, steps, dt_last, rejected, 1
        dt = min(dt, t_end - t)
        accepted = False
        for attempt in range(40):
            if attempt > 0 and ssprk2:  # the second stage prepared s: prepare rho again
                _prepare(rho, psi, ndim, dx0, dx1, beta_inv, floor, order, kappa, phi, hs, U0,
                         U1, r)
            nonneg, pos = _update(rho, ndim, dx0, order, mode, rho, dt, hs, U0, r, s)
            if ssprk2 and nonneg:
                b0, b1 = _prepare(s, psi, ndim, dx0, dx1, beta_inv, floor, order, kappa, phi,
                                  hs, U0, U1, r)
                dt2 = dt_limit(b0, b1, ndim, dx0, dx1, cfl, dt_diff, dt_max)
                if not math.isfinite(dt2):
                    return t, steps, dt_last, rejected, 1
                if dt2 >= dt * (1 - 1e-12):
                    nonneg, pos = _update(s, ndim, dx0, order, RK2, rho, dt, hs, U0, r, s)
                else:
                    nonneg = False
            if nonneg and (beta_inv == 0.0 or pos):
                accepted = True
                break
            dt *= 0.5
            rejected += 1
        if not accepted:
            return t, steps, dt_last, rejected, 2
        rf[:] = sf
        t = t_end if t + dt >= t_end else t + dt
        steps += 1
        dt_last = dt
    return t, steps, dt_last, rejected, 0


@jit
def thomas_rows(lo, di, up, rhs, out):
    """Solve the tridiagonal systems of every row ``i`` (Thomas algorithm, no pivoting).

    Row ``i``: ``lo[i, j] x_{j-1} + di[i, j] x_j + up[i, j] x_{j+1} = rhs[i, j]`` (``lo[i, 0]`` and
    ``up[i, -1]`` unused). The matrices here are column-diagonally-dominant M-matrices, for which
    elimination without pivoting is stable.
    """
    n0, n1 = rhs.shape
    c = np.empty(n1)
    d = np.empty(n1)
    for i in range(n0):
        c[0] = up[i, 0] / di[i, 0]
        d[0] = rhs[i, 0] / di[i, 0]
        for j in range(1, n1):
            m = di[i, j] - lo[i, j] * c[j - 1]
            c[j] = up[i, j] / m if j < n1 - 1 else 0.0
            d[j] = (rhs[i, j] - lo[i, j] * d[j - 1]) / m
        out[i, n1 - 1] = d[n1 - 1]
        for j in range(n1 - 2, -1, -1):
            out[i, j] = d[j] - c[j] * out[i, j + 1]
