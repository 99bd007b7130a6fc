"""Benchmark cases 1–5 of the performance issue, each with its peers measured in the same run.

1. ``full_batch``: one noiseless full-batch particle step (two-layer and NC) in the low, middle
   and high regimes; peers: BLAS roofline (:func:`benchmarks.bench_step.blas_products` on the same
   arrays and block size — it covers the NC model too, whose extra products ``H W``, ``Z W^T``,
   ``H^T Z`` are ``n x p x q`` and negligible), plain NumPy, PyTorch (CPU, float64).
2. ``online_sgd``: online SGD with batch 1 in the MMN regime (N = 800, d = 40, fixed output,
   tanh), steps per second of ``LangevinSolver`` vs NumPy vs PyTorch; every implementation draws
   its sample with the same sampler, so the sampler's cost is in all three.
3. ``noise``: time of ``rng.standard_normal((N, D))`` at N = 10^6 vs one (noiseless) step.
4. ``ot``: ``mfpde.metrics.ot.sliced_w2`` vs POT ``ot.emd2(a, b, ot.dist(X, Y))`` as the cloud grows.
5. ``jit``: ``import + first step`` in a fresh subprocess with an empty ``NUMBA_CACHE_DIR`` (cold)
   and again with the same directory (cached); peak RSS of a 10^6-particle run in a subprocess.

Every time is the median of ``repeat >= 5`` calls after one warm-up call. In cases 1 and 2 the
implementations are timed in alternation (one call of each per round) and every ratio is the
median of the per-round ratios, so a machine whose speed drifts (a shared virtual machine) affects
all of them alike.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import types

import numpy as np

from .bench_step import blas_products
from .peers import NumpyPeer, TorchPeer, torch_available


def median_time(fn, repeat=5, warmup=1):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def interleaved_times(fns, repeat=5, warmup=1):
    """Time several implementations in alternation: ``repeat`` rounds, each calling every
    function once (after ``warmup`` untimed rounds). Returns ``(medians, rounds)``: the median
    time of each name and the list of per-round ``{name: seconds}``. On a shared machine whose
    speed drifts, per-round ratios compare implementations under the same conditions."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    rounds = []
    for _ in range(repeat):
        r = {}
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            r[name] = time.perf_counter() - t0
        rounds.append(r)
    med = {name: float(np.median([r[name] for r in rounds])) for name in fns}
    return med, rounds


def median_ratio(rounds, num, den):
    """Median over rounds of ``t[num] / t[den]``."""
    return float(np.median([r[num] / r[den] for r in rounds]))


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- case 1
REGIMES = {
    # name: (d, N, n, NC p, NC q)
    "low": (2, 200_000, 256, 4, 2),
    "middle": (64, 10_000, 2048, 4, 2),
    "high": (784, 6272, 64, 10, 10),
}


def _make(kind, d, p, q):
    from mfpde.models import make_model
    if kind == "two_layer":
        return make_model("two_layer", d=d, q=1, activation="tanh")
    return make_model("nc", d=d, q=q, p=p, Gamma=1.0, lam=1e-3, lam_W=1e-3, activation="tanh")


def full_batch(regime, kind, repeat=5, seed=0):
    from mfpde.dynamics import LangevinSolver
    d, N, n, p, q = REGIMES[regime]
    model = _make(kind, d, p, q)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) / math.sqrt(d)
    Y = rng.standard_normal((n, model.q))
    data = types.SimpleNamespace(X=X, Y=Y)
    eps = 1e-3
    solver = LangevinSolver(model, data, N=N, dt=eps, beta=np.inf, seed=seed)
    out = {"case": "full_batch", "regime": regime, "model": kind, "N": N, "n": n, "d": d,
           "D": model.D, "p": model.p, "q": model.q, "block": model.block_size(n, N)}
    theta0 = solver.theta.copy()
    npp = NumpyPeer(model)
    th = theta0.copy()
    W = None if solver.W is None else solver.W.copy()
    fns = {"mfpde": lambda: solver.step(1),
           "blas": lambda: blas_products(model, theta0, X, Y),
           "numpy": lambda: npp.step(th, X, Y, eps, W)}
    if torch_available():
        tp = TorchPeer(model)
        tth, tX, tY, tW = (tp.to_torch(theta0.copy()), tp.to_torch(X), tp.to_torch(Y),
                           tp.to_torch(W))
        fns["torch"] = lambda: tp.step(tth, tX, tY, eps, tW)
        fns["torch_blas"] = lambda: tp.products(tth, tX, tY)
    med, rounds = interleaved_times(fns, repeat)
    for name in ("mfpde", "blas", "numpy", "torch", "torch_blas"):
        out[f"t_{name}"] = med.get(name)
    # ratios: median over rounds of the per-round ratio (same machine conditions in a round)
    out["ratio_mfpde_over_blas"] = median_ratio(rounds, "mfpde", "blas")
    out["speedup_vs_numpy"] = median_ratio(rounds, "numpy", "mfpde")
    out["speedup_vs_torch"] = (median_ratio(rounds, "torch", "mfpde") if "torch" in fns
                               else None)
    return out


# ---------------------------------------------------------------------------- case 2
def online_sgd(N=800, d=40, steps=2000, repeat=5, seed=0):
    from mfpde.data import mmn_gaussians_sampler
    from mfpde.dynamics import LangevinSolver
    from mfpde.models import make_model
    model = make_model("two_layer", d=d, q=1, activation="tanh", output="fixed")
    sampler = mmn_gaussians_sampler(d=d, delta=0.8)
    eps = 1e-2
    solver = LangevinSolver(model, None, N=N, dt=eps, beta=np.inf, batch=1, sampler=sampler,
                            seed=seed)
    out = {"case": "online_sgd", "N": N, "d": d, "D": model.D, "batch": 1, "steps": steps}
    npp = NumpyPeer(model)
    th = solver.theta.copy()
    rng = np.random.default_rng(seed)

    def np_run():
        for _ in range(steps):
            Xb, Yb = sampler.sample(1, rng)
            npp.step(th, Xb, Yb, eps)

    fns = {"mfpde": lambda: solver.step(steps), "numpy": np_run}
    if torch_available():
        tp = TorchPeer(model)
        tth = tp.to_torch(solver.theta.copy())

        def torch_run():
            for _ in range(steps):
                Xb, Yb = sampler.sample(1, rng)
                tp.step(tth, tp.to_torch(Xb), tp.to_torch(Yb), eps)
        fns["torch"] = torch_run
    med, rounds = interleaved_times(fns, repeat)
    for name in ("mfpde", "numpy", "torch"):
        out[f"t_{name}"] = med[name] / steps if name in med else None
    t_s = median_time(lambda: [sampler.sample(1, rng) for _ in range(steps)], repeat) / steps
    out["t_sampler"] = t_s
    for k in ("mfpde", "numpy", "torch"):
        t = out[f"t_{k}"]
        out[f"steps_per_s_{k}"] = (1.0 / t) if t else None
    out["speedup_vs_numpy"] = median_ratio(rounds, "numpy", "mfpde")
    out["speedup_vs_torch"] = median_ratio(rounds, "torch", "mfpde") if "torch" in fns else None
    return out


# ---------------------------------------------------------------------------- case 3
def noise(N=1_000_000, d=2, n=32, repeat=5, seed=0):
    from mfpde.dynamics import LangevinSolver
    model = _make("two_layer", d, 1, 1)
    rng = np.random.default_rng(seed)
    data = types.SimpleNamespace(X=rng.standard_normal((n, d)) / math.sqrt(d),
                                 Y=rng.standard_normal((n, 1)))
    s0 = LangevinSolver(model, data, N=N, dt=1e-3, beta=np.inf, seed=seed)
    s1 = LangevinSolver(model, data, N=N, dt=1e-3, beta=1e4, seed=seed)
    out = {"case": "noise", "N": N, "d": d, "D": model.D, "n": n,
           "memory_mode": "low" if model.low_memory(N) else "fast"}
    out["t_step_noiseless"] = median_time(lambda: s0.step(1), repeat)
    out["t_step_langevin"] = median_time(lambda: s1.step(1), repeat)
    model.memory = "fast"                  # the same steps keeping block tiles / accumulators
    out["t_step_noiseless_fast"] = median_time(lambda: s0.step(1), repeat)
    out["t_step_langevin_fast"] = median_time(lambda: s1.step(1), repeat)
    model.memory = "auto"
    g = np.random.default_rng(1)
    out["t_noise_alloc"] = median_time(lambda: g.standard_normal((N, model.D)), repeat)
    buf = np.empty((N, model.D))
    out["t_noise_inplace"] = median_time(lambda: g.standard_normal(out=buf), repeat)
    out["noise_fraction_of_step"] = out["t_noise_alloc"] / out["t_step_langevin"]
    out["langevin_over_noiseless"] = out["t_step_langevin"] / out["t_step_noiseless"]
    return out


# ---------------------------------------------------------------------------- case 4
def ot_case(sizes=(250, 500, 1000, 2000), D=3, repeat=5, seed=0):
    from mfpde.metrics.ot import sliced_w2
    rng = np.random.default_rng(seed)
    rows = []
    try:
        import ot
    except Exception:
        ot = None
        _log("  POT not installed: emd2 skipped")
    for m in sizes:
        X = rng.standard_normal((m, D))
        Y = rng.standard_normal((m, D)) + 0.5
        r = {"M": m, "D": D}
        r["t_sliced_w2"] = median_time(lambda: sliced_w2(X, Y, n_projections=128, seed=0), repeat)
        if ot is not None:
            a = np.full(m, 1.0 / m)
            r["t_emd2"] = median_time(lambda: ot.emd2(a, a, ot.dist(X, Y)), repeat)
            r["emd2_over_sliced"] = r["t_emd2"] / r["t_sliced_w2"]
        rows.append(r)
    return {"case": "ot", "n_projections": 128, "rows": rows}


# ---------------------------------------------------------------------------- case 5
_WARMUP_SCRIPT = textwrap.dedent("""
    import time, json
    t0 = time.perf_counter()
    import numpy as np
    from mfpde.models import make_model
    from mfpde.dynamics import LangevinSolver
    from mfpde.data import teacher_student
    t_import = time.perf_counter() - t0
    data = teacher_student(n=64, d=8, seed=0)
    model = make_model("two_layer", d=8, q=1, activation="tanh")
    s = LangevinSolver(model, data, N=20000, dt=0.01, beta=100.0, seed=0)
    s.step(1)
    t_total = time.perf_counter() - t0
    print(json.dumps({"t_import": t_import, "t_import_first_step": t_total}))
""")

_MEMORY_SCRIPT = textwrap.dedent("""
    import json, os, resource, sys, threading, time
    import numpy as np
    from mfpde.models import make_model
    from mfpde.dynamics import LangevinSolver
    PAGE = os.sysconf("SC_PAGE_SIZE")
    def rss():
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * PAGE
        except OSError:
            return 0
    N, d, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(0)
    class D: pass
    data = D(); data.X = rng.standard_normal((n, d)) / d ** 0.5; data.Y = rng.standard_normal((n, 1))
    model = make_model("two_layer", d=d, q=1, activation="tanh")
    w = LangevinSolver(model, data, N=1000, dt=0.01, beta=100.0, seed=0); w.step(1)   # JIT, libs
    del w
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    base = rss()
    peak = [base]
    stop = []
    def sample():
        while not stop:
            peak[0] = max(peak[0], rss())
            time.sleep(0.0005)
    th = threading.Thread(target=sample, daemon=True); th.start()
    s = LangevinSolver(model, data, N=N, dt=0.01, beta=100.0, seed=0)
    s.step(3)
    peak[0] = max(peak[0], rss())
    stop.append(1); th.join()
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"base_rss": base, "peak_rss_sampled": peak[0],
                      "maxrss_before": maxrss_before, "maxrss_after": maxrss_after,
                      "D": model.D, "block": model.block_size(n, N),
                      "memory_mode": "low" if model.low_memory(N) else "fast",
                      "block_bytes": model.block_bytes}))
""")


def _run_py(script, env, args=()):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env,
                       capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["wall"] = wall
    return out


def _env(**extra):
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def jit_and_memory(N_mem=1_000_000, d_mem=2, n_mem=32):
    out = {"case": "jit_memory"}
    with tempfile.TemporaryDirectory() as cache:
        env = _env(NUMBA_CACHE_DIR=cache, MFPDE_NUMBA_CACHE="1")
        cold = _run_py(_WARMUP_SCRIPT, env)
        cached = _run_py(_WARMUP_SCRIPT, env)
    out["cold"] = cold
    out["cached"] = cached
    mem = _run_py(_MEMORY_SCRIPT, _env(), (N_mem, d_mem, n_mem))
    D = mem["D"]
    state = N_mem * D * 8
    block = mem["block"] * N_mem * 8
    data = n_mem * (d_mem + 1) * 8
    mem.update({"N": N_mem, "d": d_mem, "n": n_mem, "state_bytes": state,
                "block_buffer_bytes": block, "data_bytes": data,
                "increment": mem["peak_rss_sampled"] - mem["base_rss"]})
    mem["ratio_increment"] = mem["increment"] / (state + block + data)
    # the target read as "1.5 x the particle state, plus one data block"
    mem["budget_strict"] = 1.5 * state + block + data
    mem["ratio_strict"] = mem["increment"] / mem["budget_strict"]
    mem["ratio_maxrss_total"] = mem["maxrss_after"] / (state + block + data)
    out["memory"] = mem
    return out


def run(quick=True, repeat=5) -> dict:
    """Run all cases; returns ``{"full_batch": [...], "online_sgd": {...}, ...}``."""
    res = {}
    if not torch_available():
        _log("torch is not installed: the PyTorch peer is skipped "
             "(pip install torch for the CPU build)")
    res["full_batch"] = []
    for regime in ("low", "middle", "high"):
        for kind in ("two_layer", "nc"):
            _log(f"case 1: full-batch step, {regime}, {kind}")
            res["full_batch"].append(full_batch(regime, kind, repeat))
    _log("case 2: online SGD batch 1")
    res["online_sgd"] = online_sgd(steps=1000 if quick else 5000, repeat=repeat)
    _log("case 3: noise at N = 1e6")
    res["noise"] = noise(repeat=repeat)
    _log("case 4: sliced W2 vs emd2")
    res["ot"] = ot_case(sizes=(250, 500, 1000, 2000) if quick else (250, 500, 1000, 2000, 4000),
                        repeat=repeat)
    _log("case 5: JIT warm-up and peak memory")
    res["jit_memory"] = jit_and_memory()
    return res


# ---------------------------------------------------------------------------- profile
def profile_step(regime="middle", kind="two_layer", steps=3, top=10):
    """cProfile breakdown of ``steps`` full-batch steps (the evidence for a missed target).

    Returns ``[(function, calls, total_s, per_step_s), ...]`` sorted by total time (tottime),
    e.g. ``numpy dot`` (the BLAS products), ``prepass_s`` / ``forward_s`` / ``backward_s`` (the fused
    element-wise Numba kernels), ``em_update``. Chunks run on worker threads, which cProfile does
    not see: run with ``NUMBA_NUM_THREADS=1`` so that all the work is in the profiled thread.
    Run: ``python -c "from benchmarks.bench_cases import profile_step as p; print(*p(), sep='\\n')"``.
    """
    import cProfile
    import pstats
    from mfpde.dynamics import LangevinSolver
    d, N, n, p, q = REGIMES[regime]
    model = _make(kind, d, p, q)
    rng = np.random.default_rng(0)
    data = types.SimpleNamespace(X=rng.standard_normal((n, d)) / math.sqrt(d),
                                 Y=rng.standard_normal((n, model.q)))
    solver = LangevinSolver(model, data, N=N, dt=1e-3, beta=np.inf, seed=0)
    solver.step(1)
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    solver.step(steps)
    pr.disable()
    wall = time.perf_counter() - t0
    st = pstats.Stats(pr)
    rows = []
    for (fname, line, func), (cc, nc, tt, ct, _) in st.stats.items():
        rows.append((f"{os.path.basename(fname)}:{func}", nc, tt, tt / steps))
    rows.sort(key=lambda r: -r[2])
    return [("wall per step", steps, wall, wall / steps)] + rows[:top]
