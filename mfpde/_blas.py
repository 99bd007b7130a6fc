"""BLAS thread control for the hot loop.

A gradient pass alternates BLAS products with Numba's parallel kernels. When a product is small,
a multi-threaded BLAS gains nothing, and its threads (which spin-wait after each call) compete with
Numba's threads for the same cores: on 2 cores a step became 2.5x slower. :func:`blas_threads`
runs small products on one BLAS thread and leaves large ones to the BLAS default. Thread counts
never change results here: every product's reduction order is fixed by the BLAS kernel, not by the
number of threads that share its output blocks.
"""
from __future__ import annotations

import contextlib

#: a block product with fewer multiply-adds than this runs on one BLAS thread
SMALL_PRODUCT = 1 << 23

_libs = None


def _blas_libs():
    global _libs
    if _libs is None:
        try:
            from threadpoolctl import ThreadpoolController
            _libs = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
        except Exception:                      # threadpoolctl missing or unsupported BLAS
            _libs = []
    return _libs


@contextlib.contextmanager
def blas_threads(n_madds: float):
    """Run the enclosed products on one BLAS thread if ``n_madds < SMALL_PRODUCT``."""
    libs = _blas_libs() if n_madds < SMALL_PRODUCT else []
    saved = [lib.num_threads for lib in libs]
    try:
        for lib in libs:
            if lib.num_threads != 1:
                lib.set_num_threads(1)
        yield
    finally:
        for lib, n in zip(libs, saved):
            if n != 1:
                lib.set_num_threads(n)
