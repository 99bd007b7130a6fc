"""Run the benchmark suite: ``python -m benchmarks [--quick] [--out DIR] [--repeat 5] [--cases ...]``.

Writes ``DIR/benchmarks.md`` (Markdown tables) and ``DIR/benchmarks.json`` (machine, versions,
thread counts, sizes, medians, ratios, the CPU steal of the run). Every time is the median of
``--repeat`` (>= 5) calls after one warm-up call. ``--cases`` runs a subset (comma-separated names
of :data:`CASES`), e.g. ``--cases scaling`` for the scaling series alone. See docs/performance.md
for how to read the tables.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def load_average():
    """The 1-minute load average (runnable processes; other work on a shared machine), or
    None."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def machine_info() -> dict:
    import numba
    import numpy as np
    from mfpde._numba import VECTOR_BYTES
    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "vector_bits": 8 * VECTOR_BYTES,
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
        import jax
        info["jax"] = jax.__version__
        info["jax_devices"] = [str(dv) for dv in jax.devices()]
    except Exception:
        info["jax"] = None
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


CASES = ("limits", "full_batch", "float32", "online_sgd", "noise", "ot", "jit_memory", "scaling",
         "grid", "sparse", "mpi", "scaling_N", "scaling_n")
DEFAULT_CASES = CASES[:11]
#: cases run by their own modules (``benchmarks/bench_<name>.py``: ``run(quick, repeat)``, and
#: ``to_markdown(result)`` for the tables)
MODULE_CASES = ("grid", "sparse", "mpi")


def _ms(t):
    return "—" if t is None else f"{t * 1e3:.2f}"


def _x(r):
    return "—" if r is None else f"{r:.2f}x"


def _s(t):
    return "—" if t is None else f"{t:.1f} s"


def _missing(name, m):
    return f"{name} not installed" if not m.get(name) else "—"


def _peer_ms(r, name, m):
    """A peer's time, or why it has none (library missing, or not run for this row)."""
    t = r.get(f"t_{name}")
    if t is not None:
        return _ms(t)
    lib = "torch" if name.startswith("torch") else name
    return _missing(lib, m) if lib in ("torch", "jax") else "—"


def _limits_md(lim):
    L = ["## 6. Machine limits (all threads)", "",
         "| square dgemm size | time | GFLOP/s |", "|---|---|---|"]
    for r in lim["dgemm"]:
        L.append(f"| {r['size']} | {_ms(r['t'])} ms | {r['gflops']:.1f} |")
    L += ["", "| tanh (float64) | threads | layout | ns per element |", "|---|---|---|---|"]
    for r in lim["tanh"]:
        L.append(f"| {r['library']} | {r['threads']} | {r['layout']} | "
                 f"{r['ns_per_element']:.2f} |")
    L += ["", f"Peak dgemm {lim['peak_gflops']:.1f} GFLOP/s (size {lim['peak_size']}); fastest "
          f"tanh {lim['tanh_ns']:.2f} ns per element ({lim['tanh_best']}), NumPy's best "
          f"{lim['tanh_ns_numpy']:.2f} ns. Case 1 measures the same dgemm and tanh in every round "
          "and uses that round's rates.", ""]
    return L


def _full_batch_md(rows, m, lim=None):
    L = ["## 1. Full-batch step (noiseless; ms per step)", "",
         "| regime | model | N | n | d | D | mfpde | BLAS roofline | NumPy | PyTorch | "
         "torch.compile | JAX jit | JAX jit, one block | PyTorch products |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['regime']} | {r['model']} | {r['N']} | {r['n']} | {r['d']} | {r['D']} | "
                 f"{_ms(r['t_mfpde'])} | {_ms(r['t_blas'])} | "
                 + " | ".join(_peer_ms(r, k, m) for k in ("numpy", "torch", "torch_compile",
                                                           "jax", "jax_whole", "torch_blas"))
                 + " |")
    L += ["", "BLAS roofline: the step's matrix products alone, through numpy on the same arrays "
          "and blocks. PyTorch products: the PyTorch peer's matrix products alone (its floor). "
          "torch.compile runs on the two-layer rows (a compilation of 30 s or more per shape). "
          "JAX jit blocks the samples like the NumPy peer (buffers near 32 MB); \"one block\" "
          "takes the whole batch at once (where n N doubles fit in 512 MiB).",
          "", "Speed-ups of mfpde (peer time / mfpde time, median of per-round ratios; > 1: mfpde "
          "is faster) and the first call of the compiled peers (compilation + one step, "
          "excluded from the times):", "",
          "| regime | model | NumPy/mfpde | PyTorch/mfpde | torch.compile/mfpde | JAX/mfpde | "
          "JAX one block/mfpde | best JAX/mfpde | mfpde/roofline | torch.compile first call | "
          "JAX first call |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['regime']} | {r['model']} | "
                 + " | ".join(_x(r.get(f"speedup_vs_{k}")) for k in (
                     "numpy", "torch", "torch_compile", "jax", "jax_whole", "jax_best"))
                 + f" | {_x(r['ratio_mfpde_over_blas'])} | "
                 f"{_s(r.get('compile_s_torch_compile'))} | {_s(r.get('compile_s_jax'))} |")
    L += ["", "best JAX/mfpde: against the faster of the two JAX variants in each round."]
    if rows and rows[0].get("t_flop_limit") is not None:
        L += ["", "Against the machine's limits, measured in the same rounds: FLOP time = the "
              "step's matrix-product FLOPs at the round's square-dgemm rate; tanh time = n N "
              "entries at the round's fastest-tanh rate; limit = their sum (both use the same "
              "cores). BLAS f64/f32: the roofline in float64 over the same products in float32 "
              "(the ceiling of a float32 step).", "",
              "| regime | model | GFLOP | dgemm GFLOP/s | FLOP time | tanh time | mfpde | "
              "mfpde / FLOP time | mfpde / (FLOP + tanh) | BLAS f64/f32 |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            L.append(f"| {r['regime']} | {r['model']} | {r['flops'] / 1e9:.2f} | "
                     f"{r['dgemm_gflops']:.1f} | {_ms(r['t_flop_limit'])} ms | "
                     f"{_ms(r['t_tanh_limit'])} ms | {_ms(r['t_mfpde'])} ms | "
                     f"{_x(r['ratio_mfpde_over_flop'])} | {_x(r['ratio_mfpde_over_limit'])} | "
                     f"{_x(r['ratio_blas64_over_blas32'])} |")
    if rows and lim is not None:
        L += ["", f"The same against the peaks of case 6 (dgemm {lim['peak_gflops']:.1f} GFLOP/s, "
              f"tanh {lim['tanh_ns']:.2f} ns per element, each measured alone; in the rounds the "
              "tanh probe runs right after other multi-threaded calls and is slower), with "
              "mfpde's median time:", "",
              "| regime | model | FLOP time at peak | tanh time at peak | mfpde / FLOP time | "
              "mfpde / (FLOP + tanh) |", "|---|---|---|---|---|---|"]
        for r in rows:
            tf = r["flops"] / (lim["peak_gflops"] * 1e9)
            tt = r["tanh_elements"] * lim["tanh_ns"] * 1e-9
            L.append(f"| {r['regime']} | {r['model']} | {_ms(tf)} ms | {_ms(tt)} ms | "
                     f"{_x(r['t_mfpde'] / tf)} | {_x(r['t_mfpde'] / (tf + tt))} |")
    return L + [""]


def _float32_md(rows):
    L = ["## 8. float32 option: the step of case 1 in float64 and with the float32 gradient pass",
         "", "| regime | model | N | n | d | block f64 / f32 | float64 step | float32 step | "
         "float64/float32 | per step of step(5): f64 / f32 | float64/float32 in step(5) | "
         "BLAS f64/f32 (ceiling) | force rel. diff. |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['regime']} | {r['model']} | {r['N']} | {r['n']} | {r['d']} | "
                 f"{r['block']} / {r['block32']} | {_ms(r['t_float64'])} ms | "
                 f"{_ms(r['t_float32'])} ms | **{_x(r['ratio_float64_over_float32'])}** | "
                 f"{_ms(r['t_float64_5'])} / {_ms(r['t_float32_5'])} ms | "
                 f"**{_x(r['ratio_float64_over_float32_5'])}** | "
                 f"{_x(r['ratio_blas64_over_blas32'])} | {r['force_rel_diff']:.1e} |")
    L += ["", "Noiseless full-batch Langevin step (`precision = \"float64\"` and `\"float32\"`), "
          "timed in alternation in max(7, --repeat) rounds after one untimed round, as one "
          "call of `step(1)` and as five steps in one call of `step(5)` (a float32 step then "
          "reads the float32 copy of U that the previous step's update wrote), then the "
          "step's BLAS products in float64 and float32 in rounds of their own; ratios are "
          "medians of the per-round ratios. force rel. diff.: "
          "max |g32 - g64| / max |g64| at the initial state.", ""]
    return L


def _online_md(o, m):
    names = [("mfpde", "mfpde"), ("numpy", "NumPy"), ("torch", "PyTorch"),
             ("torch_compile", "torch.compile"), ("jax", "JAX lax.scan")]
    sps = lambda v: "—" if v is None else f"{v:.0f}"  # noqa: E731
    us = lambda v: "—" if v is None else f"{v * 1e6:.1f}"  # noqa: E731
    L = [f"## 2. Online SGD, batch 1, MMN (N = {o['N']}, d = {o['d']}, {o['steps']} steps "
         "per timed call)", "",
         "| | " + " | ".join(t for _, t in names) + " |", "|---" * (len(names) + 1) + "|",
         "| steps/s | " + " | ".join(sps(o.get(f"steps_per_s_{k}")) for k, _ in names) + " |",
         "| µs/step | " + " | ".join(us(o.get(f"t_{k}")) for k, _ in names) + " |",
         "| mfpde speed-up | | " + " | ".join(_x(o.get(f"speedup_vs_{k}")) for k, _ in names[1:])
         + " |",
         "", f"The sampler alone costs {o['t_sampler'] * 1e6:.1f} µs/step with a call per sample "
         "(included in NumPy and PyTorch) and "
         + ("—" if o.get("t_sampler_256") is None else f"{o['t_sampler_256'] * 1e6:.2f}")
         + " µs/step drawing 256 samples per call (mfpde's way, included in its time); the JAX "
         "scan runs over samples drawn beforehand, so its time has none. First call (compilation + one timed "
         f"call): torch.compile {_s(o.get('compile_s_torch_compile'))}, JAX "
         f"{_s(o.get('compile_s_jax'))}." + ("" if m.get("jax") else " JAX not installed.")
         + ("" if m.get("torch") else " torch not installed."), ""]
    return L


def _scaling_md(sc):
    L = [f"## 7. Scaling: per-update throughput N n / t of one noiseless step (n = "
         f"{sc['n_fixed']} in the series in N)", "",
         "| series | d | N | n | runs | step | ns per update | updates/s | vs N = 10^5 | "
         "RSS increase | note |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, key in (("N", "in_N"), ("n", "in_n")):
        for d, ser in sc[key].items():
            for r in ser["rows"]:
                if "t_step" in r:
                    L.append(f"| {label} | {d} | {r['N']} | {r['n']} | {r['runs']} | "
                             f"{_ms(r['t_step'])} ms | {r['ns_per_update']:.2f} | "
                             f"{r['updates_per_s']:.3g} | {_x(r.get('throughput_over_1e5'))} | "
                             f"{r['rss_increment'] / 2 ** 20:.0f} MiB | |")
                else:
                    L.append(f"| {label} | {d} | {r['N']} | {r['n']} | | | | | | | "
                             f"skipped: {r['skipped']} |")
    L += ["", "| d | slope of log t in N | slope of log t in n (N) |", "|---|---|---|"]
    f = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    for d in dict.fromkeys([*sc["in_N"], *sc["in_n"]]):
        nn, nN = sc["in_n"].get(d), sc["in_N"].get(d)
        L.append(f"| {d} | {'—' if nN is None else f(nN['slope'])} | "
                 + ("—" if nn is None else f"{f(nn['slope'])} (N = {nn['N']})") + " |")
    lim = sc.get("mem_limit")
    L += ["", f"Series wall time {sc['wall_s']:.0f} s; time budget {sc['budget_s']:.0f} s per "
          "point; memory limit " + ("—" if lim is None else f"{lim / 2 ** 30:.1f} GiB") + ".", ""]
    return L


def to_markdown(res: dict) -> str:
    m, c = res["machine"], res["cases"]
    L = ["# mfpde benchmarks", "",
         f"Machine: {m['platform']}, {m['cpu_count']} CPUs ({m.get('processor') or '?'}); "
         f"Python {m['python']}, numpy {m['numpy']}, numba {m['numba']} ({m['numba_threads']} "
         f"threads; product tiles {m.get('vector_bits', '?')}-bit), "
         f"torch {m.get('torch') or 'not installed'}, jax "
         f"{m.get('jax') or 'not installed'}, POT {m.get('pot') or 'not installed'}; BLAS: "
         + ", ".join(f"{b['lib']} {b['version']} ({b['threads']} threads)" for b in m["blas"]
                     if b["api"] == "blas") + ".",
         f"Median of {res['repeat']} runs after one warm-up; quick={res['quick']}; cases "
         f"{', '.join(res.get('case_names', c))}; total wall time {res['wall_s']:.0f} s"
         + ("" if res.get("steal_fraction") is None else
            f"; CPU steal during the run {res['steal_fraction'] * 100:.0f} % (time the virtual "
            "CPUs waited for the host: a noisy machine)")
         + ("" if res.get("load_start") is None else
            f"; 1-minute load average {res['load_start']:.1f} at the start, "
            f"{res.get('load_end') or 0:.1f} at the end (on {m['cpu_count']} CPUs: other "
            "processes shared them)") + ".", ""]
    if "limits" in c:
        L += _limits_md(c["limits"])
    if "full_batch" in c:
        L += _full_batch_md(c["full_batch"], m, c.get("limits"))
    if "float32" in c:
        L += _float32_md(c["float32"])
    if "online_sgd" in c:
        L += _online_md(c["online_sgd"], m)
    if "noise" in c:
        z = c["noise"]
        L += [f"## 3. Noise generation at N = {z['N']} (D = {z['D']}, n = {z['n']})", "",
              "| memory mode | noiseless step | Langevin step | standard_normal((N, D)) | "
              "in-place into buffer | noise / Langevin step |", "|---|---|---|---|---|---|",
              f"| {z['memory_mode']} (default) | {_ms(z['t_step_noiseless'])} ms | "
              f"{_ms(z['t_step_langevin'])} ms | "
              f"{_ms(z['t_noise_alloc'])} ms | {_ms(z['t_noise_inplace'])} ms | "
              f"{z['noise_fraction_of_step'] * 100:.1f} % |",
              f"| fast | {_ms(z['t_step_noiseless_fast'])} ms | "
              f"{_ms(z['t_step_langevin_fast'])} ms | | | |", ""]
    if "ot" in c:
        ot = c["ot"]
        L += [f"## 4. Sliced W2 ({ot['n_projections']} projections) vs POT emd2 (ms)", "",
              "| M (per cloud) | D | sliced_w2 | emd2 + dist | emd2 / sliced |",
              "|---|---|---|---|---|"]
        for r in ot["rows"]:
            L.append(f"| {r['M']} | {r['D']} | {_ms(r['t_sliced_w2'])} | "
                     f"{_ms(r.get('t_emd2'))} | {_x(r.get('emd2_over_sliced'))} |")
        L.append("")
    if "jit_memory" in c:
        j = c["jit_memory"]
        mem = j["memory"]
        MB = 2.0 ** 20
        L += ["## 5. JIT warm-up (import + first step, fresh subprocess) and peak memory", "",
              "| | import | import + first step | process wall |", "|---|---|---|---|",
              f"| cold (empty NUMBA_CACHE_DIR) | {j['cold']['t_import']:.2f} s | "
              f"{j['cold']['t_import_first_step']:.2f} s | {j['cold']['wall']:.2f} s |",
              f"| cached (same dir, 2nd run) | {j['cached']['t_import']:.2f} s | "
              f"{j['cached']['t_import_first_step']:.2f} s | {j['cached']['wall']:.2f} s |",
              "",
              f"Peak memory, N = {mem['N']}, d = {mem['d']}, n = {mem['n']}, 3 Langevin steps: "
              f"particle state {mem['state_bytes'] / MB:.1f} MiB + one data block "
              f"({mem['block']} x N buffer) {mem['block_buffer_bytes'] / MB:.1f} MiB = "
              f"{(mem['state_bytes'] + mem['block_buffer_bytes'] + mem['data_bytes']) / MB:.1f} "
              f"MiB; RSS before the run {mem['base_rss'] / MB:.0f} MiB, peak during it "
              f"{mem['peak_rss_sampled'] / MB:.0f} MiB, increment {mem['increment'] / MB:.1f} MiB "
              f"= **{mem['ratio_increment']:.2f}x** (memory mode {mem['memory_mode']}); read as "
              f"1.5 x state + one block ({mem['budget_strict'] / MB:.1f} MiB): "
              f"**{mem['ratio_strict']:.2f}x** of that budget; getrusage maxrss of the whole "
              f"process {mem['maxrss_after'] / MB:.0f} MiB (before the run "
              f"{mem['maxrss_before'] / MB:.0f} MiB).", ""]
    if "scaling" in c:
        L += _scaling_md(c["scaling"])
    return "\n".join(L) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="shorter runs (case 1 sizes kept; reduced scaling series)")
    ap.add_argument("--out", default="benchmark-results", help="output directory")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per median (>= 5)")
    ap.add_argument("--cases", default=",".join(DEFAULT_CASES),
                    help="comma-separated cases to run (default: all, in this order): "
                    + ", ".join(DEFAULT_CASES) + "; scaling_N, scaling_n: one series of the "
                    "scaling case")
    args = ap.parse_args(argv)
    if args.repeat < 5:
        ap.error("--repeat must be >= 5")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    bad = sorted(set(cases) - set(CASES))
    if bad:
        ap.error(f"unknown case(s) {', '.join(bad)}; choose from {', '.join(CASES)}")
    from . import bench_cases
    t0 = time.perf_counter()
    res = {"quick": args.quick, "repeat": args.repeat, "case_names": cases,
           "machine": machine_info()}
    s0, res["load_start"] = cpu_steal(), load_average()
    res["cases"] = bench_cases.run(quick=args.quick, repeat=args.repeat,
                                   cases=[c for c in cases if c in bench_cases.CASES])
    import importlib
    mods = {c: importlib.import_module(f".bench_{c}", __package__) for c in MODULE_CASES
            if c in cases}
    for c, mod in mods.items():
        _log(f"case {c}")
        try:
            res["cases"][c] = mod.run(args.quick, args.repeat)
        except Exception as e:             # keep the other cases' results; the table says why
            import traceback
            traceback.print_exc()
            res["cases"][c] = {"error": f"{type(e).__name__}: {e}"}
    res["wall_s"] = time.perf_counter() - t0
    s1, res["load_end"] = cpu_steal(), load_average()
    res["steal_fraction"] = (None if s0 is None or s1 is None or s1[1] == s0[1]
                             else (s1[0] - s0[0]) / (s1[1] - s0[1]))

    def tables(res):
        md = to_markdown(res)
        for c, mod in mods.items():
            if "error" in res["cases"][c]:
                md += f"## {c}\n\nThe {c} case failed: {res['cases'][c]['error']}\n\n"
            elif hasattr(mod, "to_markdown"):
                md += mod.to_markdown(res["cases"][c])
        return md

    bench_cases.write_outputs(args.out, "benchmarks", res, tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
