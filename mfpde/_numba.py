"""The one compile policy of every compiled kernel (:mod:`mfpde.kernels`).

Every kernel is decorated with :func:`jit`, which fixes what all kernels share:

- Numba's on-disk cache (``cache=True``) is on by default, so only the first run on a machine
  pays the JIT compilation; set ``MFPDE_NUMBA_CACHE=0`` to turn it off. The cache directory
  follows Numba's own rules (``__pycache__`` beside the sources, a user-wide directory when that
  is not writable, or ``NUMBA_CACHE_DIR``); entries are invalidated when a source file changes.
- ``nopython`` mode and ``nogil=True``: a kernel releases the GIL, so the thread pool
  (:mod:`mfpde._pool`) runs kernels of different chunks concurrently. Releasing the GIL never
  changes a result.

What changes the arithmetic is stated at each kernel and nowhere else: ``fastmath`` flags
(``{"contract"}`` — fused multiply-add only, sums keep their order — or ``{"reassoc",
"contract"}`` for a vectorised dot product whose order is fixed by the build), ``parallel=True``
(element-wise loops only, so the thread count never changes a result), ``error_model`` and
``inline``. Without flags a kernel is strict IEEE arithmetic (no contraction), so its results
equal the same NumPy sequence of operations bit for bit.
"""
from __future__ import annotations

import os

import numba

NUMBA_CACHE: bool = os.environ.get("MFPDE_NUMBA_CACHE", "1").lower() not in ("0", "false", "no")


def jit(fn=None, **options):
    """Compile ``fn`` under the policy above: ``@jit`` or ``@jit(parallel=True, ...)``.

    ``options`` are Numba's (``parallel``, ``fastmath``, ``inline``, ``error_model``, ...);
    ``cache`` is not an option (it follows ``MFPDE_NUMBA_CACHE``) and ``nogil`` defaults to True.
    """
    if "cache" in options:
        raise TypeError("the on-disk cache is set by MFPDE_NUMBA_CACHE for every kernel; "
                        "do not pass cache=")
    options.setdefault("nogil", True)
    decorator = numba.njit(cache=NUMBA_CACHE, **options)
    return decorator if fn is None else decorator(fn)


__all__ = ["NUMBA_CACHE", "jit"]
