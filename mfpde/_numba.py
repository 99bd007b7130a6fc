"""Numba settings shared by every compiled kernel.

Numba's on-disk cache (``cache=True``) is on by default, so only the first run on a machine pays
the JIT compilation; set ``MFPDE_NUMBA_CACHE=0`` to turn it off. The cache directory follows
Numba's own rules (``__pycache__`` beside the sources, a user-wide directory when that is not
writable, or ``NUMBA_CACHE_DIR``); entries are invalidated when a source file changes.
"""
import os

NUMBA_CACHE: bool = os.environ.get("MFPDE_NUMBA_CACHE", "1").lower() not in ("0", "false", "no")
