"""Benchmark: time per sparse-recovery iteration, mfpde against a plain NumPy implementation.

Problem: Setup A proportions scaled up (theory/sparse.md §4): ``n = 2d``, ``k* = d/8``,
``k = d/2``, ``X_ij ~ N(0, 1/n)``, noiseless, dense ``U(-1/√d, 1/√d)`` start, the published step
scaling (Topk-I-OBS ``η = 2/n``, k-IHT ``η = 2/(nL)``), for ``d = 128 ... 4096``.

Both implementations perform the same iteration and record the same quantities every step (loss
before the update, ``||θ - θ*||``, support size and true positives after it):

- **mfpde**: :class:`mfpde.sparse.SparseDriver` (compiled quadratic steps: products over the
  support of the ``k``-sparse iterate, Newton point from the Cholesky factor computed once,
  ``O(d)`` selection);
- **NumPy**: the textbook code — ``r = Xθ - y``, ``g = Xᵀr/n``, Topk-I-OBS ``θ̃ = θ - η H^{-1}g``
  with ``H^{-1}`` formed once (``np.linalg.inv``), IHT ``θ̃ = θ - ηg``, ``T_k`` by a stable
  ``argsort`` (ties by lowest index, like mfpde) — timed with the BLAS default thread count and
  with one BLAS thread (on a shared machine either can be faster); ratios use the faster one.

Set-up (products, factorisations, inverses) is excluded. Each timed call runs ``steps``
iterations from the same start, the ``k``-sparse iterate after the first step (the steady state
of the iteration; the first step from the dense start is not timed); the implementations are timed in alternation (one call of each
per round, after one untimed warm-up round that also compiles the kernels) and every ratio is the
median of the per-round ratios (:func:`benchmarks.bench_cases.interleaved_times`).

Run: ``python -m benchmarks.bench_sparse [--quick] [--repeat 5] [--out DIR]``; ``run(quick,
repeat) -> dict`` and ``to_markdown(res) -> str`` are the suite's entry points.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

SIZES = (128, 256, 512, 1024, 2048, 4096)


def _steps_for(d: int, quick: bool) -> int:
    """Iterations per timed call: about 2e7 (quick) / 5e7 multiply-adds of the NumPy peer."""
    budget = 2e7 if quick else 5e7
    return int(max(10, min(300, budget // (5 * d * d))))


class NumpyPeer:
    """Plain NumPy k-IHT / Topk-I-OBS with the same per-step records as mfpde."""

    def __init__(self, X, y, theta_star, method, k, eta):
        self.X, self.y, self.ts = X, y, theta_star
        self.n = X.shape[0]
        self.method, self.k, self.eta = method, k, eta
        self.mask = theta_star != 0
        if method == "topk_iobs":
            self.Hinv = np.linalg.inv(X.T @ X / self.n)
        self.theta = None
        self.trace = []

    def reset(self, theta0):
        self.theta = theta0.copy()
        self.trace = []

    def step(self, steps):
        X, y, n, k, eta = self.X, self.y, self.n, self.k, self.eta
        th = self.theta
        for _ in range(steps):
            r = X @ th - y
            loss = 0.5 * float(r @ r) / n
            g = X.T @ r / n
            tt = th - eta * (self.Hinv @ g if self.method == "topk_iobs" else g)
            idx = np.argsort(-np.abs(tt), kind="stable")[:k]
            th = np.zeros_like(tt)
            th[idx] = tt[idx]
            nz = th != 0
            self.trace.append((loss, float(np.linalg.norm(th - self.ts)), int(nz.sum()),
                               int(np.sum(nz & self.mask))))
        self.theta = th


def case(d: int, repeat: int = 5, quick: bool = True, seed: int = 0) -> dict:
    """Time both methods at dimension ``d``; returns the sizes, medians and ratios."""
    from mfpde.sparse import (QuadraticProblem, SparseDriver, gaussian_design, gaussian_target,
                              uniform_init)

    from mfpde._blas import blas_threads

    from .bench_cases import interleaved_times, median_ratio
    rng = np.random.default_rng(seed)
    n, ks, k = 2 * d, d // 8, d // 2
    t0 = time.perf_counter()
    X = gaussian_design(n, d, rng)
    ts = gaussian_target(d, ks, rng)
    theta0 = uniform_init(d, rng)
    p = QuadraticProblem(X, X @ ts, ts)
    steps = _steps_for(d, quick)
    out = {"d": d, "n": n, "k_star": ks, "k": k, "steps_per_call": steps, "methods": {}}
    for method in ("topk_iobs", "iht"):
        drv = SparseDriver(p, method, k, eta="paper", theta0=theta0)
        drv.step(1)                                   # factor / Newton point / compile
        peer = NumpyPeer(X, p.y, ts, method, k, drv.eta)
        # timed calls start from the k-sparse iterate after the first (dense) step
        state1 = drv.state_dict()
        theta1 = state1["x"].copy()

        def run_mfpde():
            drv.load_state_dict(state1)
            drv.step(steps)

        def run_numpy():
            peer.reset(theta1)
            peer.step(steps)

        def run_numpy_1t():
            with blas_threads(0):
                run_numpy()

        med, rounds = interleaved_times({"mfpde": run_mfpde, "numpy": run_numpy,
                                         "numpy_1t": run_numpy_1t}, repeat=repeat)
        best = "numpy" if med["numpy"] <= med["numpy_1t"] else "numpy_1t"
        # the two implementations agree (same iteration)
        gap = float(np.max(np.abs(drv.theta - peer.theta)) / max(1e-300, np.abs(peer.theta).max()))
        out["methods"][method] = {
            "t_mfpde": med["mfpde"] / steps, "t_numpy": med["numpy"] / steps,
            "t_numpy_1t": med["numpy_1t"] / steps, "numpy_best": best,
            "speedup_vs_numpy": median_ratio(rounds, best, "mfpde"),
            "rel_gap_final_iterate": gap, "eta": drv.eta}
    out["setup_s"] = time.perf_counter() - t0
    return out


def run(quick: bool = True, repeat: int = 5, sizes=SIZES) -> dict:
    """All sizes; ``{"rows": [case(d) ...]}``."""
    rows = []
    for d in sizes:
        print(f"sparse: d = {d}", file=sys.stderr, flush=True)
        rows.append(case(d, repeat=repeat, quick=quick))
    return {"rows": rows, "repeat": repeat, "quick": quick}


def _us(t):
    return f"{t * 1e6:.0f}" if t < 1e-2 else f"{t * 1e3:.1f} ms"


def to_markdown(res: dict) -> str:
    L = ["", "## Sparse recovery: time per iteration (mfpde vs plain NumPy)", "",
         "Setup A proportions (n = 2d, k* = d/8, k = d/2), the published steps; per-step records "
         "in both (loss, distance, support). µs per iteration unless marked; NumPy with the BLAS "
         "default threads / one BLAS thread; speed-up = median over rounds of t_NumPy / t_mfpde "
         "against the faster NumPy variant (timed in alternation, warm-up excluded).", "",
         "| d | n | k | steps/call | Topk-I-OBS mfpde | NumPy | NumPy 1 thr | speed-up | "
         "k-IHT mfpde | NumPy | NumPy 1 thr | speed-up | max rel. gap of iterates |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        a, b = r["methods"]["topk_iobs"], r["methods"]["iht"]
        gap = max(a["rel_gap_final_iterate"], b["rel_gap_final_iterate"])
        L.append(f"| {r['d']} | {r['n']} | {r['k']} | {r['steps_per_call']} | {_us(a['t_mfpde'])} | "
                 f"{_us(a['t_numpy'])} | {_us(a['t_numpy_1t'])} | {a['speedup_vs_numpy']:.1f}x | "
                 f"{_us(b['t_mfpde'])} | {_us(b['t_numpy'])} | {_us(b['t_numpy_1t'])} | "
                 f"{b['speedup_vs_numpy']:.1f}x | {gap:.1e} |")
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_sparse",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations per timed call")
    ap.add_argument("--repeat", type=int, default=5, help="timed rounds (>= 5)")
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="dimensions d")
    ap.add_argument("--out", default=None, help="directory for bench_sparse.{md,json}")
    args = ap.parse_args(argv)
    if args.repeat < 5:
        ap.error("--repeat must be >= 5")
    if any(d < 16 or d % 8 for d in args.sizes):
        ap.error("every size must be a multiple of 8, >= 16")
    t0 = time.perf_counter()
    res = run(quick=args.quick, repeat=args.repeat, sizes=args.sizes)
    res["wall_s"] = time.perf_counter() - t0
    md = to_markdown(res)
    sys.stdout.write(md)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "bench_sparse.json"), "w") as f:
            json.dump(res, f, indent=1)
        with open(os.path.join(args.out, "bench_sparse.md"), "w") as f:
            f.write(md)
    return 0 if all(math.isfinite(m["t_mfpde"]) for r in res["rows"]
                    for m in r["methods"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
