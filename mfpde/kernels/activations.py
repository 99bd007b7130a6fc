r"""Compiled activation functions: :math:`\sigma, \sigma', \sigma''` by integer code, and their
element-wise evaluation over arrays, and :func:`tanh_simd`, the vectorisable ``tanh`` of the fused
kernels.

The activation table of theory/models.md §4 (names, properties, the public ``evaluate``) is
:mod:`mfpde.activations`; this module holds the compiled code it and the other kernels use. The
kernels dispatch on the integer code inside their fused loops, so one compiled kernel serves every
activation (and the on-disk Numba cache holds one version). The scalar functions are inlined into
the calling kernels.

Float32 (the mixed-precision gradient pass of :mod:`mfpde.models.readout`): :func:`tanh_simd32`
is the float32 counterpart of :func:`tanh_simd`, :func:`tanh_t` picks one of the two by the type
of its argument and :func:`lit` gives a literal in the float type of an argument, so one kernel
source compiles to float64 and to float32 arithmetic (a float64 argument leaves the float64 code
as it was).
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic, overload

from .._numba import jit

#: activation codes (the order of the table in :mod:`mfpde.activations`)
IDENTITY, TANH, SIGMOID, ERF, SOFTPLUS, RELU, MMN_PL = range(7)

#: MMN piecewise-linear constants (models.md §4).
MMN_T1, MMN_T2, MMN_S1, MMN_S2 = 0.5, 1.5, -2.5, 7.5
_MMN_SLOPE = (MMN_S2 - MMN_S1) / (MMN_T2 - MMN_T1)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


#: floating-point flags of the fused loops that evaluate :func:`tanh_simd`: fused multiply-add
#: contraction only (no reassociation), so every sum keeps its order and results are reproducible
CONTRACT = {"contract"}

@intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` with one rounding (``llvm.fma``) for three floats of one type: a
    multiply-add whose contraction does not depend on the optimiser, so that a fused loop keeps
    the bits of the separate loops it replaces (each of their ``o += c * m`` is one fused
    multiply-add)."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


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


#: ``1.5 * 2^52``: adding it to an integral double ``n`` (``|n| < 2^51``) leaves ``2^51 + n`` as
#: the integer in the mantissa bits
_ROUND_MAGIC = 6755399441055744.0


@intrinsic
def _pow2(typingctx, n):
    """``2.0 ** n`` for an integral double ``-1022 <= n <= 1023``, built from the exponent bits
    without a float-to-integer conversion (which has no vector instruction before AVX-512):
    the mantissa bits of ``n + 1.5 * 2^52`` hold ``2^51 + n``; ``+1023`` and the shift by 52 to
    the exponent field drop the ``2^51``."""
    if not isinstance(n, types.Float):
        return None
    sig = types.float64(n)

    def codegen(context, builder, signature, args):
        v = context.cast(builder, args[0], n, types.float64)
        i64 = ir.IntType(64)
        biased = builder.bitcast(builder.fadd(v, ir.Constant(ir.DoubleType(), _ROUND_MAGIC)), i64)
        bits = builder.shl(builder.add(biased, ir.Constant(i64, 1023)), ir.Constant(i64, 52))
        return builder.bitcast(bits, ir.DoubleType())

    return sig, codegen


@jit(inline="always", error_model="numpy")
def _exp_nonpos(x):
    """``exp(x)`` for ``-40 <= x <= 0`` without library calls: ``x = n ln 2 + r`` (Cody–Waite),
    Taylor polynomial of degree 13 in ``r``, times ``2^n`` (``n`` kept a double: vectorisable).

    The polynomial is ``1 + (r + r^2 q(r))`` with ``q = 1/2 + r/3! + ... + r^11/13!`` evaluated
    by Estrin's scheme (pairs, then powers ``r^2``, ``r^4``, ``r^8``): a chain of about 6
    dependent multiply-adds instead of Horner's 13, which let the vectorised loops overlap far
    fewer iterations (tanh 1.3-1.6x faster on this page's loops); the last two additions keep
    Horner's accuracy (the tanh test: within 2 ulp, more than 1 ulp off at 0.02 % of points)."""
    n = np.floor(x * _LOG2E + 0.5)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    r2 = r * r
    r4 = r2 * r2
    c0 = (0.5 + _E3 * r) + (_E4 + _E5 * r) * r2
    c1 = (_E6 + _E7 * r) + (_E8 + _E9 * r) * r2
    c2 = (_E10 + _E11 * r) + (_E12 + _E13 * r) * r2
    q = (c0 + c1 * r4) + c2 * (r4 * r4)
    p = 1.0 + (r + r2 * q)
    return p * _pow2(n)


@jit(inline="always", error_model="numpy")
def tanh_simd(z):
    """:math:`\\tanh z` within 2 ulp of the C library (tested), branch-free so that loops over it
    vectorise (in loops compiled with :data:`CONTRACT`): ``|z| + |z|^3 P/Q`` (rational
    approximation) below ``|z| = 0.625``, ``1 - 2e/(1+e)`` with ``e = exp(-2|z|)`` above (``|z|``
    clipped at 20, where ``tanh = 1`` in double precision). Both quotients are one division of
    the selected numerator and denominator."""
    a = min(abs(z), 20.0)
    s = a * a
    e = _exp_nonpos(-2.0 * a)
    small = a < 0.625
    num = (((_TP0 * s + _TP1) * s + _TP2) if small else 2.0 * e)
    den = ((((s + _TQ0) * s + _TQ1) * s + _TQ2) if small else 1.0 + e)
    q = num / den
    t = a + a * s * q if small else 1.0 - q
    return math.copysign(t, z)


# ---------------------------------------------------------------------------- float32 tanh
_F32 = np.float32
_LOG2E_F = _F32(_LOG2E)
# Cody–Waite split of ln 2 and the degree-7 polynomial of exp on |r| <= ln(2)/2 (Cephes expf.c)
_LN2_HI_F, _LN2_LO_F = _F32(0.693359375), _F32(-2.12194440e-4)
_EP0, _EP1, _EP2, _EP3, _EP4, _EP5 = (_F32(c) for c in (
    1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
    5.0000001201e-1))
# odd polynomial tanh(x) = x + x^3 P(x^2) on |x| < 0.625 (Cephes tanhf.c)
_TF0, _TF1, _TF2, _TF3, _TF4 = (_F32(c) for c in (
    -5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1,
    -3.33332819422e-1))
_HALF_F, _ONE_F, _TWO_F, _SMALL_F, _CLIP_F = (_F32(c) for c in (0.5, 1.0, 2.0, 0.625, 10.0))
#: ``1.5 * 2^23``: the float32 counterpart of :data:`_ROUND_MAGIC`
_ROUND_MAGIC_F = 12582912.0


@intrinsic
def _pow2_f32(typingctx, n):
    """``2.0f ** n`` for an integral float32 ``-126 <= n <= 127`` (:func:`_pow2` in float32: the
    mantissa bits of ``n + 1.5 * 2^23`` hold ``2^22 + n``; ``+127`` and the shift by 23)."""
    if n != types.float32:
        return None
    sig = types.float32(n)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        biased = builder.bitcast(builder.fadd(args[0], ir.Constant(ir.FloatType(),
                                                                   _ROUND_MAGIC_F)), i32)
        bits = builder.shl(builder.add(biased, ir.Constant(i32, 127)), ir.Constant(i32, 23))
        return builder.bitcast(bits, ir.FloatType())

    return sig, codegen


@jit(inline="always", error_model="numpy")
def _exp_nonpos32(x):
    """``exp(x)`` in float32 for ``-20 <= x <= 0``: ``x = n ln 2 + r``, the Cephes ``expf``
    polynomial in ``r``, times ``2^n``."""
    n = np.floor(x * _LOG2E_F + _HALF_F)
    r = (x - n * _LN2_HI_F) - n * _LN2_LO_F
    p = _EP0
    p = p * r + _EP1
    p = p * r + _EP2
    p = p * r + _EP3
    p = p * r + _EP4
    p = p * r + _EP5
    p = p * (r * r) + r + _ONE_F
    return p * _pow2_f32(n)


@jit(inline="always", error_model="numpy")
def tanh_simd32(z):
    """:math:`\\tanh z` in float32 arithmetic for a float32 ``z`` (a few float32 ulp; tested),
    branch-free like :func:`tanh_simd`: ``|z| + |z|^3 P(z^2)`` below ``|z| = 0.625``,
    ``1 - 2e/(1+e)`` with ``e = exp(-2|z|)`` above (``|z|`` clipped at 10, where ``tanh = 1``
    in single precision)."""
    a = min(abs(z), _CLIP_F)
    s = a * a
    poly = (((_TF0 * s + _TF1) * s + _TF2) * s + _TF3) * s + _TF4
    e = _exp_nonpos32(-_TWO_F * a)
    t = a + a * s * poly if a < _SMALL_F else _ONE_F - _TWO_F * e / (_ONE_F + e)
    return t if z >= 0 else -t


def tanh_t(z):
    """``tanh_simd32(z)`` for a float32 ``z``, else ``tanh_simd(z)`` (compiled code only)."""
    raise NotImplementedError("tanh_t is for compiled kernels")


@overload(tanh_t, inline="always")
def _tanh_t(z):
    if z == types.float32:
        return lambda z: tanh_simd32(z)
    return lambda z: tanh_simd(z)


def lit(x, v):
    """The literal ``v`` in the float type of ``x`` (a scalar or an array): float32 for float32,
    ``v`` unchanged otherwise (compiled code only)."""
    raise NotImplementedError("lit is for compiled kernels")


@overload(lit, inline="always")
def _lit(x, v):
    t = x.dtype if isinstance(x, types.Array) else x
    if t == types.float32:
        return lambda x, v: np.float32(v)
    return lambda x, v: v


@jit(error_model="numpy", fastmath=CONTRACT)
def tanh_array(z, out):
    """``out[i] = tanh_t(z[i])`` for 1-D arrays (the tests' view of the fused kernels' tanh:
    :func:`tanh_simd` for float64, :func:`tanh_simd32` for float32 ``z``)."""
    for i in range(z.shape[0]):
        out[i] = tanh_t(z[i])


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
           "MMN_S1", "MMN_S2", "CONTRACT", "sigma", "dsigma", "ddsigma", "apply", "tanh_simd",
           "tanh_simd32", "tanh_t", "lit", "tanh_array", "fma"]
