"""Run the benchmark suite: ``python -m benchmarks [--quick] [--out DIR] [--repeat 5]``.

Writes ``DIR/benchmarks.md`` (Markdown tables) and ``DIR/benchmarks.json`` (machine, versions,
thread counts, sizes, medians, ratios). Every time is the median of ``--repeat`` (>= 5) calls after
one warm-up call. See docs/performance.md for how to read the tables.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time


def machine_info() -> dict:
    import numba
    import numpy as np
    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "numba_threading_layer_env": os.environ.get("NUMBA_THREADING_LAYER", ""),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS", ""),
    }
    try:
        info["affinity_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        from threadpoolctl import threadpool_info
        info["blas"] = [{"api": d.get("user_api"), "lib": d.get("internal_api"),
                         "threads": d.get("num_threads"), "version": d.get("version")}
                        for d in threadpool_info()]
    except Exception:
        info["blas"] = []
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_threads_default"] = torch.get_num_threads()
    except Exception:
        info["torch"] = None
    try:
        import ot
        info["pot"] = ot.__version__
    except Exception:
        info["pot"] = None
    return info


def cpu_steal():
    """Cumulative ``(steal, total)`` CPU jiffies from ``/proc/stat`` (Linux; None elsewhere): the
    time a virtual machine's CPUs were runnable but served another guest."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (vals[7] if len(vals) > 7 else 0), sum(vals)


def _ms(t):
    return "—" if t is None else f"{t * 1e3:.2f}"


def _x(r):
    return "—" if r is None else f"{r:.2f}x"


def to_markdown(res: dict) -> str:
    m = res["machine"]
    L = ["# mfpde benchmarks", "",
         f"Machine: {m['platform']}, {m['cpu_count']} CPUs; Python {m['python']}, numpy "
         f"{m['numpy']}, numba {m['numba']} ({m['numba_threads']} threads), torch "
         f"{m.get('torch') or 'not installed'}, POT {m.get('pot') or 'not installed'}; BLAS: "
         + ", ".join(f"{b['lib']} {b['version']} ({b['threads']} threads)" for b in m["blas"]
                     if b["api"] == "blas") + ".",
         f"Median of {res['repeat']} runs after one warm-up; quick={res['quick']}; "
         f"total wall time {res['wall_s']:.0f} s"
         + ("" if res.get("steal_fraction") is None else
            f"; CPU steal during the run {res['steal_fraction'] * 100:.0f} % (time the virtual "
            "CPUs waited for the host: a noisy machine)") + ".", "",
         "## 1. Full-batch step (noiseless; ms per step)", "",
         "| regime | model | N | n | d | D | mfpde | BLAS roofline | NumPy | PyTorch | "
         "PyTorch products | mfpde/roofline | NumPy/mfpde | PyTorch/mfpde |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["cases"]["full_batch"]:
        L.append(f"| {r['regime']} | {r['model']} | {r['N']} | {r['n']} | {r['d']} | {r['D']} | "
                 f"{_ms(r['t_mfpde'])} | {_ms(r['t_blas'])} | {_ms(r['t_numpy'])} | "
                 f"{_ms(r['t_torch'])} | {_ms(r.get('t_torch_blas'))} | "
                 f"{_x(r['ratio_mfpde_over_blas'])} | "
                 f"{_x(r['speedup_vs_numpy'])} | {_x(r['speedup_vs_torch'])} |")
    L += ["", "BLAS roofline: the step's matrix products alone, through numpy on the same arrays "
          "and blocks. PyTorch products: the PyTorch peer's matrix products alone (its floor)."]
    o = res["cases"]["online_sgd"]
    sps = lambda v: "—" if v is None else f"{v:.0f}"  # noqa: E731
    L += ["", f"## 2. Online SGD, batch 1, MMN (N = {o['N']}, d = {o['d']}, {o['steps']} steps "
          "per timed call)", "",
          "| | mfpde | NumPy | PyTorch |", "|---|---|---|---|",
          f"| steps/s | {sps(o['steps_per_s_mfpde'])} | {sps(o['steps_per_s_numpy'])} | "
          f"{sps(o['steps_per_s_torch'])} |",
          f"| µs/step | {o['t_mfpde'] * 1e6:.1f} | {o['t_numpy'] * 1e6:.1f} | "
          + ("—" if o['t_torch'] is None else f"{o['t_torch'] * 1e6:.1f}") + " |",
          "", f"mfpde speed-up: {_x(o['speedup_vs_numpy'])} vs NumPy, "
          f"{_x(o['speedup_vs_torch'])} vs PyTorch; the sampler alone costs "
          f"{o['t_sampler'] * 1e6:.1f} µs/step (included in all three)."]
    z = res["cases"]["noise"]
    L += ["", f"## 3. Noise generation at N = {z['N']} (D = {z['D']}, n = {z['n']})", "",
          "| memory mode | noiseless step | Langevin step | standard_normal((N, D)) | "
          "in-place into buffer | noise / Langevin step |", "|---|---|---|---|---|---|",
          f"| {z['memory_mode']} (default) | {_ms(z['t_step_noiseless'])} ms | "
          f"{_ms(z['t_step_langevin'])} ms | "
          f"{_ms(z['t_noise_alloc'])} ms | {_ms(z['t_noise_inplace'])} ms | "
          f"{z['noise_fraction_of_step'] * 100:.1f} % |",
          f"| fast | {_ms(z['t_step_noiseless_fast'])} ms | {_ms(z['t_step_langevin_fast'])} ms "
          "| | | |"]
    ot = res["cases"]["ot"]
    L += ["", f"## 4. Sliced W2 ({ot['n_projections']} projections) vs POT emd2 (ms)", "",
          "| M (per cloud) | D | sliced_w2 | emd2 + dist | emd2 / sliced |", "|---|---|---|---|---|"]
    for r in ot["rows"]:
        L.append(f"| {r['M']} | {r['D']} | {_ms(r['t_sliced_w2'])} | {_ms(r.get('t_emd2'))} | "
                 f"{_x(r.get('emd2_over_sliced'))} |")
    j = res["cases"]["jit_memory"]
    mem = j["memory"]
    MB = 2.0 ** 20
    L += ["", "## 5. JIT warm-up (import + first step, fresh subprocess) and peak memory", "",
          "| | import | import + first step | process wall |", "|---|---|---|---|",
          f"| cold (empty NUMBA_CACHE_DIR) | {j['cold']['t_import']:.2f} s | "
          f"{j['cold']['t_import_first_step']:.2f} s | {j['cold']['wall']:.2f} s |",
          f"| cached (same dir, 2nd run) | {j['cached']['t_import']:.2f} s | "
          f"{j['cached']['t_import_first_step']:.2f} s | {j['cached']['wall']:.2f} s |",
          "",
          f"Peak memory, N = {mem['N']}, d = {mem['d']}, n = {mem['n']}, 3 Langevin steps: "
          f"particle state {mem['state_bytes'] / MB:.1f} MiB + one data block "
          f"({mem['block']} x N buffer) {mem['block_buffer_bytes'] / MB:.1f} MiB = "
          f"{(mem['state_bytes'] + mem['block_buffer_bytes'] + mem['data_bytes']) / MB:.1f} MiB; "
          f"RSS before the run {mem['base_rss'] / MB:.0f} MiB, peak during it "
          f"{mem['peak_rss_sampled'] / MB:.0f} MiB, increment {mem['increment'] / MB:.1f} MiB "
          f"= **{mem['ratio_increment']:.2f}x** (memory mode {mem['memory_mode']}); read as "
          f"1.5 x state + one block ({mem['budget_strict'] / MB:.1f} MiB): "
          f"**{mem['ratio_strict']:.2f}x** of that budget; getrusage maxrss of the whole process "
          f"{mem['maxrss_after'] / MB:.0f} MiB (before the run {mem['maxrss_before'] / MB:.0f} "
          "MiB)."]
    return "\n".join(L) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs (default sizes kept)")
    ap.add_argument("--out", default="benchmark-results", help="output directory")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per median (>= 5)")
    args = ap.parse_args(argv)
    if args.repeat < 5:
        ap.error("--repeat must be >= 5")
    from . import bench_cases, bench_sparse
    t0 = time.perf_counter()
    res = {"quick": args.quick, "repeat": args.repeat, "machine": machine_info()}
    s0 = cpu_steal()
    res["cases"] = bench_cases.run(quick=args.quick, repeat=args.repeat)
    res["cases"]["sparse"] = bench_sparse.run(quick=args.quick, repeat=args.repeat)
    from . import bench_mpi
    res["cases"]["mpi"] = bench_mpi.run(quick=args.quick, repeat=args.repeat)
    res["wall_s"] = time.perf_counter() - t0
    s1 = cpu_steal()
    res["steal_fraction"] = (None if s0 is None or s1 is None or s1[1] == s0[1]
                             else (s1[0] - s0[0]) / (s1[1] - s0[1]))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "benchmarks.json"), "w") as f:
        json.dump(res, f, indent=1)
    md = to_markdown(res) + bench_sparse.to_markdown(res["cases"]["sparse"])
    md += bench_mpi.to_markdown(res["cases"]["mpi"])
    with open(os.path.join(args.out, "benchmarks.md"), "w") as f:
        f.write(md)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
