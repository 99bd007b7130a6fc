"""Time of one full-batch particle step against the BLAS products inside it.

A step of the two-layer model (dynamics.md §1.2, row layout) is, per block of samples,
``P = X_b U^T``, ``H_b = S A``, ``grad_A += S^T G_b``, ``B = G_b A^T``, ``grad_U += B^T X_b``:
five BLAS calls around the fused element-wise kernels. The "BLAS products" time below runs
exactly those five calls on arrays of the same shapes and the same block size, nothing else; the
ratio step / BLAS shows how much the fused element-wise work, the noise and the update add.

Usage: ``python -m benchmarks.bench_step [--N 100000 --n 1000 --d 10 --repeat 5]``.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), times


def blas_products(model, theta, X, Y, dtype=np.float64):
    """Run exactly the BLAS products of one gradient pass (same shapes and block size), in
    ``dtype`` (``np.float32`` gives the ceiling of a float32 step: ``sgemm`` instead of
    ``dgemm``; pass arrays already of that dtype to keep the conversion out of the timing)."""
    N = theta.shape[0]
    n = X.shape[0]
    A, U = model.split(theta)
    Ac, Uc = np.ascontiguousarray(A, dtype=dtype), np.ascontiguousarray(U, dtype=dtype)
    X = np.asarray(X, dtype=dtype)
    blk = model.block_size(n, N, np.dtype(dtype).itemsize)
    P = np.empty((blk, N), dtype=dtype)
    S = np.full((blk, N), 0.5, dtype=dtype)
    G = np.full((blk, model.p), 1e-3, dtype=dtype)
    gA = np.zeros((N, model.p), dtype=dtype)
    gU = np.zeros((N, model.d_in), dtype=dtype)
    for s in range(0, n, blk):
        e = min(n, s + blk)
        nb = e - s
        Xb = X[s:e]
        np.dot(Xb, Uc.T, out=P[:nb])
        _ = S[:nb] @ Ac
        gA += S[:nb].T @ G[:nb]
        np.dot(G[:nb], Ac.T, out=S[:nb])
        gU += S[:nb].T @ Xb


# ---------------------------------------------------------------------------- machine limits
def step_flops(model, N, n):
    """Multiply-add FLOPs of the matrix products of one gradient pass (module docstring of
    :mod:`benchmarks.peers`): ``P = X U^T`` and ``grad_U += B^T X`` cost ``2 n N d_in`` each,
    ``H = S A``, ``grad_A += S^T G`` and ``B = G A^T`` ``2 n N p`` each; NC adds ``H W``,
    ``Z W^T`` and ``H^T Z``, ``2 n p q`` each::

        F = 2 n N (2 d_in + 3 p) + 6 n p q [NC]

    The element-wise work (``n N`` activations and derivatives) is counted by
    :func:`tanh_elements`, not here."""
    F = 2.0 * n * N * (2 * model.d_in + 3 * model.p)
    if model.has_W:
        F += 6.0 * n * model.p * model.q
    return F


def tanh_elements(model, N, n):
    """Activations evaluated by one pass: ``sigma(u_j . x_i)`` once per entry, ``n N``."""
    return float(n) * N


def make_dgemm(size=1536, dtype=np.float64):
    """A square ``size^3`` matrix product on all BLAS threads: returns ``(fn, flops)`` with
    ``flops = 2 size^3``; ``flops / time(fn)`` is the machine's dgemm rate."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    c = np.empty((size, size), dtype=dtype)
    return (lambda: np.dot(a, b, out=c)), 2.0 * size ** 3


def _np_tanh(a, out):
    np.tanh(a, out=out)


def make_tanh(elements=1 << 22, threads=None, tile=None, kernel=_np_tanh):
    """``kernel(src, dst)`` (default NumPy's ``tanh`` ufunc, SIMD where the CPU allows) of
    ``elements`` float64 values (standard normal) into an output buffer, split across ``threads``
    threads (default: Numba's count; the kernel must release the GIL, as NumPy's ufuncs and
    ``nogil`` compiled loops do). With ``tile`` (elements) every thread sweeps its share one
    cache-resident tile at a time (the same input and output tiles again and again), without it
    one pass over a large array. Returns ``(fn, elements)``; ``time(fn) / elements`` is the time
    per element on all threads."""
    from concurrent.futures import ThreadPoolExecutor
    if threads is None:
        import numba
        threads = numba.get_num_threads()
    rng = np.random.default_rng(0)
    per = elements // threads
    size = min(tile, per) if tile else per
    reps = per // size
    src = [rng.standard_normal(size) for _ in range(threads)]
    dst = [np.empty(size) for _ in range(threads)]

    def one(i):
        for _ in range(reps):
            kernel(src[i], dst[i])

    pool = ThreadPoolExecutor(threads)

    def fn():
        list(pool.map(one, range(threads)))
    return fn, float(reps * size * threads)


def make_library_tanh(library, elements=1 << 24):
    """``tanh`` of ``elements`` float64 values into an output buffer by PyTorch (its intra-op
    threads, set to Numba's count), JAX (``jax.jit(jnp.tanh)``, XLA's threads) or mfpde's own
    compiled ``tanh`` (``mfpde.kernels.activations.tanh_array``, the branch-free ``tanh`` of the
    fused kernels, one loop per thread, where the library has it). Returns ``(fn, elements)``, or
    None when the library (or the kernel) is not there."""
    from .peers import jax_available, torch_available
    if library == "mfpde":
        try:
            from mfpde.kernels.activations import tanh_array
        except ImportError:
            return None
        return make_tanh(elements, kernel=tanh_array)
    x = np.random.default_rng(0).standard_normal(elements)
    if library == "torch" and torch_available():
        import numba
        import torch
        torch.set_num_threads(numba.get_num_threads())
        a, o = torch.from_numpy(x), torch.empty(elements, dtype=torch.float64)
        return (lambda: torch.tanh(a, out=o)), float(elements)
    if library == "jax" and jax_available():
        import jax
        jax.config.update("jax_enable_x64", True)
        f, a = jax.jit(jax.numpy.tanh), jax.numpy.asarray(x)
        return (lambda: f(a).block_until_ready()), float(elements)
    return None


def machine_limits(repeat=5, sizes=(1024, 1536, 2048, 3072)):
    """Measured peaks of this machine on all threads:

    - square dgemm (NumPy's BLAS) at each size: ``GFLOP/s = 2 s^3 / t``; ``peak_gflops`` is the
      best size;
    - ``tanh`` in float64, ns per element: NumPy's ufunc (SIMD where the CPU has the
      instructions NumPy's kernel needs) over a large array (128 MiB) and over 1 MiB tiles, on
      one thread and on all; PyTorch's, JAX's and mfpde's compiled ``tanh`` over the large
      array when installed.
      ``tanh_ns`` is the fastest of them on all threads (the fastest tanh available),
      ``tanh_ns_numpy`` NumPy's best (the ufunc mfpde calls).
    """
    import numba
    out = {"threads": numba.get_num_threads(), "dgemm": [], "tanh": []}
    for s in sizes:
        fn, fl = make_dgemm(s)
        fn()
        t, _ = _median_time(fn, repeat)
        out["dgemm"].append({"size": s, "t": t, "gflops": fl / t / 1e9})
    cands = [("numpy", th, tile, make_tanh(1 << 24, threads=th, tile=tile))
             for th in sorted({1, out["threads"]}) for tile in (None, 1 << 17)]
    cands += [(lib, out["threads"], None, make_library_tanh(lib)) for lib in ("torch", "jax", "mfpde")]
    for lib, th, tile, made in cands:
        if made is None:
            continue
        fn, el = made
        fn()
        t, _ = _median_time(fn, repeat)
        out["tanh"].append({"library": lib, "threads": th,
                            "layout": "1 MiB tiles" if tile else "large array (128 MiB)",
                            "ns_per_element": t / el * 1e9})
    best_g = max(out["dgemm"], key=lambda r: r["gflops"])
    out["peak_gflops"], out["peak_size"] = best_g["gflops"], best_g["size"]
    alls = [r for r in out["tanh"] if r["threads"] == out["threads"]]
    best = min(alls, key=lambda r: r["ns_per_element"])
    out["tanh_ns"], out["tanh_best"] = best["ns_per_element"], f"{best['library']}, {best['layout']}"
    out["tanh_ns_numpy"] = min(r["ns_per_element"] for r in alls if r["library"] == "numpy")
    return out


def run(quick: bool = True, N: int = 100_000, n: int = 1000, d: int = 10, repeat: int = 5,
        beta: float = 100.0) -> dict:
    """Median time of one Langevin step and of its BLAS products (seconds)."""
    from mfpde.data import teacher_student
    from mfpde.dynamics import LangevinSolver
    from mfpde.models import make_model

    if quick:
        N, n = min(N, 20_000), min(n, 500)
    data = teacher_student(n=n, d=d, seed=0)
    model = make_model("two_layer", d=d, q=1, activation="tanh")
    solver = LangevinSolver(model, data, N=N, dt=0.01, beta=beta, seed=0)
    solver.step(2)                                   # JIT warm-up, excluded
    t_step, _ = _median_time(lambda: solver.step(1), repeat)
    blas_products(model, solver.theta, data.X, data.Y)
    t_blas, _ = _median_time(lambda: blas_products(model, solver.theta, data.X, data.Y), repeat)
    noise_buf = np.empty((N, model.D))
    t_noise, _ = _median_time(lambda: solver.rng.standard_normal(out=noise_buf), repeat)
    import numba
    return {
        "case": "two_layer full-batch Langevin step",
        "N": N, "n": n, "d": d, "D": model.D, "block": model.block_size(n, N),
        "threads_numba": numba.get_num_threads(),
        "omp_threads_env": os.environ.get("OMP_NUM_THREADS", ""),
        "t_step": t_step, "t_blas": t_blas, "t_noise": t_noise,
        "ratio_step_over_blas": t_step / t_blas,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=100_000)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--d", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    r = run(quick=False, N=args.N, n=args.n, d=args.d, repeat=args.repeat)
    print(f"N={r['N']} n={r['n']} d={r['d']} (block {r['block']}, numba threads {r['threads_numba']})")
    print(f"  one step            {r['t_step'] * 1e3:9.2f} ms")
    print(f"  its BLAS products   {r['t_blas'] * 1e3:9.2f} ms")
    print(f"  noise generation    {r['t_noise'] * 1e3:9.2f} ms")
    print(f"  step / BLAS         {r['ratio_step_over_blas']:9.2f}")


if __name__ == "__main__":
    main()
