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


def blas_products(model, theta, X, Y):
    """Run exactly the BLAS products of one gradient pass (same shapes and block size)."""
    N = theta.shape[0]
    n = X.shape[0]
    A, U = model.split(theta)
    Ac, Uc = np.ascontiguousarray(A), np.ascontiguousarray(U)
    blk = model.block_size(n, N)
    P = np.empty((blk, N))
    S = np.ones((blk, N)) * 0.5
    G = np.ones((blk, model.p)) * 1e-3
    gA = np.zeros((N, model.p))
    gU = np.zeros((N, model.d_in))
    for s in range(0, n, blk):
        e = min(n, s + blk)
        nb = e - s
        Xb = X[s:e]
        np.dot(Xb, Uc.T, out=P[:nb])
        _ = S[:nb] @ Ac
        gA += S[:nb].T @ G[:nb]
        np.dot(G[:nb], Ac.T, out=S[:nb])
        gU += S[:nb].T @ Xb


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
