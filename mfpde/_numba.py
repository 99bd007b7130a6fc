"""Numba settings shared by every compiled kernel.

``MFPDE_NUMBA_CACHE=1`` turns on Numba's on-disk cache (``cache=True``) for all kernels; the cache
directory follows Numba's own ``NUMBA_CACHE_DIR``. It is off by default so that a source checkout
never depends on stale cache files.
"""
import os

NUMBA_CACHE: bool = os.environ.get("MFPDE_NUMBA_CACHE", "0").lower() in ("1", "true", "yes")
