"""The on-disk kernel cache (:mod:`mfpde._numba`): a kernel compiled from several modules is
recompiled when any module of its package directory changes, and loaded from the cache when
none does."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import pkg.kern as k
print(k.kernel(1.0), sum(k.kernel.stats.cache_hits.values()))
"""


def _run(tmp_path, **extra):
    env = dict(os.environ, MFPDE_NUMBA_CACHE="1", NUMBA_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]), **extra)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    value, hits = out.stdout.split()
    return float(value), int(hits)


def _helper(tmp_path, step):
    (tmp_path / "pkg" / "helpers.py").write_text(textwrap.dedent(f"""
        from mfpde._numba import jit

        @jit(inline="always")
        def helper(x):
            return x + {step}
        """))


def _package(tmp_path):
    """A package ``pkg`` whose kernel inlines the helper of another module (step 1.0)."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    _helper(tmp_path, "1.0")
    (pkg / "kern.py").write_text(textwrap.dedent("""
        from mfpde._numba import jit
        from .helpers import helper

        @jit
        def kernel(x):
            return helper(x)
        """))
    return pkg


def test_kernel_recompiled_when_an_inlined_module_changes(tmp_path):
    pkg = _package(tmp_path)
    assert _run(tmp_path) == (2.0, 0)          # compiled, saved
    assert _run(tmp_path) == (2.0, 1)          # loaded from the cache
    _helper(tmp_path, "2.0")                   # kern.py unchanged, its inlined helper changed
    assert _run(tmp_path) == (3.0, 0)          # recompiled from the new sources
    assert _run(tmp_path) == (3.0, 1)
    (pkg / "unrelated.py").write_text("X = 1\n")   # any module of the directory counts
    assert _run(tmp_path) == (3.0, 0)


def test_library_kernels_take_the_package_cache():
    from mfpde import _numba
    from mfpde.kernels import readout

    if not _numba.NUMBA_CACHE:
        pytest.skip("the kernel cache is off (MFPDE_NUMBA_CACHE=0)")
    cache = readout.assemble_chunk._cache
    assert isinstance(cache, _numba.KernelCache)
    stamp = cache._impl.locator.get_source_stamp()
    assert stamp[1] == _numba.sources_stamp(str(Path(readout.__file__).parent))
    assert stamp[2] == _numba.VECTOR_BYTES          # one width's code never loads at the other


def test_kernel_recompiled_for_the_other_vector_width(tmp_path):
    """The script of the same width loads the second time from the cache, the other width
    recompiles (the stamp holds the width)."""
    _package(tmp_path)
    for bits, hits in (("256", 0), ("256", 1), ("512", 0), ("512", 1), ("256", 0)):
        assert _run(tmp_path, MFPDE_VECTOR_BITS=bits) == (2.0, hits), bits


def test_vector_width_choice(monkeypatch):
    """``MFPDE_VECTOR_BITS`` = 256 or 512 sets the width, anything else is refused; unset, the
    width follows the CPU's AVX-512 (``NUMBA_CPU_FEATURES`` when set)."""
    import numba
    from mfpde import _numba

    for bits, want in (("256", 32), ("512", 64), (" 512 ", 64)):
        monkeypatch.setenv("MFPDE_VECTOR_BITS", bits)
        assert _numba._vector_bytes() == want
    for bad in ("128", "avx512", "1024"):
        monkeypatch.setenv("MFPDE_VECTOR_BITS", bad)
        with pytest.raises(ValueError, match="MFPDE_VECTOR_BITS must be 256 or 512"):
            _numba._vector_bytes()
    monkeypatch.delenv("MFPDE_VECTOR_BITS")
    monkeypatch.setattr(numba.core.config, "CPU_FEATURES", "+avx2,+fma,+avx512f,+avx512bw")
    assert _numba._vector_bytes() == 64
    monkeypatch.setattr(numba.core.config, "CPU_FEATURES", "+avx2,+fma,-avx512f")
    assert _numba._vector_bytes() == 32
