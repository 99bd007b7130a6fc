r"""Compiled kernel of the 1-D optimal transport distances (theory/metrics.md §6.1).

:func:`w2sq_merge_rows` evaluates the quantile formula
:math:`W_2^2(\mu,\nu) = \int_0^1 |F^{-1}(t) - G^{-1}(t)|^2 dt` of weighted 1-D measures by a
merge of their cumulative weights (used by :func:`mfpde.metrics.ot.w2_1d` and
:func:`~mfpde.metrics.ot.sliced_w2`). Strict IEEE arithmetic, serial.
"""
from __future__ import annotations

from .._numba import jit

__all__ = ["w2sq_merge_rows"]


@jit
def w2sq_merge_rows(P, CA, Q, CB, out):  # pragma: no cover - compiled
    """Row-wise ``int_0^1 (F^{-1}(t) - G^{-1}(t))^2 dt`` for sorted rows of ``P`` (c, n) and
    ``Q`` (c, m) with cumulative weights ``CA`` (1 or c, n), ``CB`` (1 or c, m), each row
    ending at exactly 1.  ``F^{-1}(u) = P[r, i]`` with ``i`` the first index such that
    ``CA[r, i] >= u``; the integral is a merge of the two cumulative sequences, O(n + m)."""
    c, n = P.shape
    m = Q.shape[1]
    for r in range(c):
        ra = r if CA.shape[0] > 1 else 0
        rb = r if CB.shape[0] > 1 else 0
        i = 0
        j = 0
        tprev = 0.0
        acc = 0.0
        while i < n and j < m:
            ti = CA[ra, i]
            tj = CB[rb, j]
            t = ti if ti < tj else tj
            d = P[r, i] - Q[r, j]
            acc += (t - tprev) * d * d
            tprev = t
            if ti <= t:
                i += 1
            if tj <= t:
                j += 1
        out[r] = acc
