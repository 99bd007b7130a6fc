"""The one compile policy of every compiled kernel (:mod:`mfpde.kernels`).

Every kernel is decorated with :func:`jit`, which fixes what all kernels share:

- Numba's on-disk cache (``cache=True``) is on by default, so only the first run on a machine
  pays the JIT compilation; set ``MFPDE_NUMBA_CACHE=0`` to turn it off. The cache directory
  follows Numba's own rules (``__pycache__`` beside the sources, a user-wide directory when that
  is not writable, or ``NUMBA_CACHE_DIR``). An entry is invalidated when its kernel's file
  changes *or any other module of the kernel's package directory, or this module*: kernels
  inline helpers, constants and intrinsics of their neighbours (the tanh of
  :mod:`mfpde.kernels.activations`, the product tiles of :mod:`mfpde.kernels.gemm`), and Numba's
  own check looks at the kernel's file only, so an edit of a neighbour would otherwise leave
  compiled code of the old sources in use. The stamp also holds :data:`VECTOR_BYTES`, so a
  kernel compiled for one vector width is never loaded at the other.
- :data:`VECTOR_BYTES`: the width of the explicit vector tiles of :mod:`mfpde.kernels.gemm`,
  64 bytes (512-bit) where the CPU Numba compiles for has AVX-512 (``+avx512f`` among its
  features: ``NUMBA_CPU_FEATURES`` when set, else the host's), 32 bytes (256-bit) elsewhere;
  ``MFPDE_VECTOR_BITS`` = 256 or 512 overrides the choice. The width changes the speed only:
  every entry of those tiles is one chain of fused multiply-adds in a fixed order, so both
  widths give the same bits (512-bit code runs on any x86-64 CPU, split into halves by LLVM
  where the CPU lacks AVX-512, and is slower there: the middle-regime step of the benchmark
  suite took 256-262 ms against 179 ms with 256-bit tiles on an AVX2 core).
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

import functools
import hashlib
import os

import numba
from numba.core import caching, dispatcher

NUMBA_CACHE: bool = os.environ.get("MFPDE_NUMBA_CACHE", "1").lower() not in ("0", "false", "no")


def _vector_bytes() -> int:
    """Bytes of one vector of the explicit tiles (module docstring, :data:`VECTOR_BYTES`)."""
    bits = os.environ.get("MFPDE_VECTOR_BITS", "").strip()
    if bits:
        if bits not in ("256", "512"):
            raise ValueError(f"MFPDE_VECTOR_BITS must be 256 or 512, got {bits!r}")
        return int(bits) // 8
    features = numba.core.config.CPU_FEATURES
    if features is None:
        from llvmlite import binding
        features = binding.get_host_cpu_features().flatten()
    return 64 if "+avx512f" in features.split(",") else 32


#: bytes of one vector of the tiles of :mod:`mfpde.kernels.gemm`: 64 with AVX-512, else 32
VECTOR_BYTES: int = _vector_bytes()


@functools.lru_cache(maxsize=None)
def sources_stamp(directory: str) -> str:
    """SHA-256 of the ``.py`` files of ``directory`` (names and contents, in name order) and of
    this module: the part of a kernel's cache stamp that covers the modules it may inline."""
    h = hashlib.sha256()
    try:
        names = os.listdir(directory)
    except OSError:                      # not a directory (a zip archive): this module only
        names = []
    paths = sorted(os.path.join(directory, f) for f in names if f.endswith(".py"))
    for path in [os.path.abspath(__file__)] + paths:
        with open(path, "rb") as f:
            data = f.read()
        h.update(os.path.basename(path).encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


class _PackageLocator(caching._CacheLocator):
    """Numba's locator for the kernel's file (its cache directory and disambiguator), with the
    source stamp extended by :func:`sources_stamp` of the file's directory."""

    def __init__(self, inner, py_file):
        self._inner = inner
        self._py_file = py_file          # read by Numba's warnings

    def get_cache_path(self):
        return self._inner.get_cache_path()

    def get_source_stamp(self):
        return (self._inner.get_source_stamp(),
                sources_stamp(os.path.dirname(os.path.abspath(self._py_file))), VECTOR_BYTES)

    def get_disambiguator(self):
        return self._inner.get_disambiguator()

    @classmethod
    def from_function(cls, py_func, py_file):
        for base in caching.CacheImpl._locator_classes:
            inner = base.from_function(py_func, py_file)
            if inner is not None:
                return cls(inner, py_file)
        return None


class _PackageCacheImpl(caching.CompileResultCacheImpl):
    _locator_classes = [_PackageLocator]


class KernelCache(caching.FunctionCache):
    """Numba's on-disk function cache with the package-wide source stamp of
    :class:`_PackageLocator`."""
    _impl_class = _PackageCacheImpl


def jit(fn=None, **options):
    """Compile ``fn`` under the policy above: ``@jit`` or ``@jit(parallel=True, ...)``.

    ``options`` are Numba's (``parallel``, ``fastmath``, ``inline``, ``error_model``, ...);
    ``cache`` is not an option (it follows ``MFPDE_NUMBA_CACHE``) and ``nogil`` defaults to True.
    """
    if "cache" in options:
        raise TypeError("the on-disk cache is set by MFPDE_NUMBA_CACHE for every kernel; "
                        "do not pass cache=")
    options.setdefault("nogil", True)
    decorator = numba.njit(**options)

    def compile_(f):
        disp = decorator(f)
        if NUMBA_CACHE and isinstance(disp, dispatcher.Dispatcher):
            disp._cache = KernelCache(disp.py_func)      # what enable_caching() sets
        return disp

    return compile_ if fn is None else compile_(fn)


__all__ = ["NUMBA_CACHE", "VECTOR_BYTES", "KernelCache", "jit", "sources_stamp"]
