"""Benchmark cases of the performance targets, each with its peers measured in the same run.

1. ``full_batch``: one noiseless full-batch particle step (two-layer and NC) in the low, middle
   and high regimes; peers: BLAS roofline (:func:`benchmarks.bench_step.blas_products` on the same
   arrays and block size — it covers the NC model too, whose extra products ``H W``, ``Z W^T``,
   ``H^T Z`` are ``n x p x q`` and negligible) in float64 and float32, plain NumPy, PyTorch (CPU,
   float64, eager and ``torch.compile``), JAX (``jax.jit`` of the whole step, float64). In every
   round the machine limits are measured too: a square dgemm on all threads (the step's FLOP time
   ``F / rate``, :func:`benchmarks.bench_step.step_flops`) and the fastest tanh (``n N`` entries).
2. ``online_sgd``: online SGD with batch 1 in the MMN regime (N = 800, d = 40, fixed output,
   tanh), steps per second of ``LangevinSolver`` vs NumPy vs PyTorch (eager, compiled), each
   drawing its sample with the same sampler per step, and vs one ``jax.lax.scan`` over the same
   number of samples drawn beforehand (the sampler is outside JAX's time).
3. ``noise``: time of ``rng.standard_normal((N, D))`` at N = 10^6 vs one (noiseless) step.
4. ``ot``: ``mfpde.metrics.ot.sliced_w2`` vs POT ``ot.emd2(a, b, ot.dist(X, Y))`` as the cloud grows.
5. ``jit``: ``import + first step`` in a fresh subprocess with an empty ``NUMBA_CACHE_DIR`` (cold)
   and again with the same directory (cached); peak RSS of a 10^6-particle run in a subprocess.
6. ``limits``: the machine's peak dgemm rate by matrix size and its tanh throughput
   (:func:`benchmarks.bench_step.machine_limits`).
7. ``scaling``: per-update throughput ``N n / t`` of one noiseless step as N and n grow, with the
   fitted log-log slopes of ``t`` in N and in n.
8. ``float32``: the step of case 1 in the BLAS-bound regimes (middle, high; two-layer and NC)
   with ``precision = "float64"`` and ``"float32"`` (the mixed-precision gradient pass of
   :mod:`mfpde.models.readout`), timed in alternation with the BLAS products in float64 and
   float32 (the ceiling ``BLAS f64/f32``); the ratio is the median of the per-round
   ``t_float64 / t_float32``.

Every time is the median of ``repeat >= 5`` calls after one warm-up call (case 7: fewer runs for
steps longer than 2 s, see :func:`scaling`); the first call of a compiled peer (JIT compilation)
is timed on its own and reported apart. In cases 1 and 2 the implementations are timed in
alternation (one call of each per round) and every ratio is the median of the per-round ratios,
so a machine whose speed drifts (a shared virtual machine) affects all of them alike.
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

from .bench_step import (blas_products, machine_limits, make_dgemm, make_library_tanh, make_tanh,
                         step_flops, tanh_elements)
from .peers import JaxPeer, NumpyPeer, TorchPeer, jax_available, torch_available


def median_time(fn, repeat=5, warmup=1):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


#: seconds of idle time before each timed call of :func:`interleaved_times`: the worker
#: threads of the previous call (OpenBLAS, XLA's and PyTorch's pools) keep spinning for a while
#: after their work and would slow whichever implementation comes next
PAUSE = 0.1

#: seconds of untimed calls of the same function (at least one call) between the pause and
#: each timed call of :func:`interleaved_times`: after the idle pause the first 10-20 ms of work
#: on both threads run slower (mfpde's float32 middle step 52 ms against 42 back to back, the
#: float64 step 71 against 68; the 12 ms float32 high step read 12-25 ms after one call), a
#: fixed cost that weighs on the shorter calls; calls of the same function first time the step
#: as it runs in a sequence of steps
SETTLE = 0.05


def interleaved_times(fns, repeat=5, warmup=1, settle=None):
    """Time several implementations in alternation: ``repeat`` rounds, each timing every
    function once (after ``warmup`` untimed rounds), each timed call preceded by :data:`PAUSE`
    seconds of idle time and then untimed calls of the same function for ``settle`` seconds
    (default :data:`SETTLE`; at least one call). Returns ``(medians, rounds)``: the median time
    of each name and the list of per-round ``{name: seconds}``. On a shared machine whose speed
    drifts, per-round ratios compare implementations under the same conditions."""
    settle = SETTLE if settle is None else float(settle)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    rounds = []
    for _ in range(repeat):
        r = {}
        for name, fn in fns.items():
            time.sleep(PAUSE)
            t_end = time.perf_counter() + settle
            fn()
            while time.perf_counter() < t_end:
                fn()
            t0 = time.perf_counter()
            fn()
            r[name] = time.perf_counter() - t0
        rounds.append(r)
    med = {name: float(np.median([r[name] for r in rounds])) for name in fns}
    return med, rounds


def write_outputs(out, stem, res, markdown):
    """Write ``res`` to ``OUT/STEM.json`` first (kept if the tables fail), then the tables
    ``markdown(res)`` to ``OUT/STEM.md``, and print them."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{stem}.json"), "w") as f:
        json.dump(res, f, indent=1)
    md = markdown(res)
    with open(os.path.join(out, f"{stem}.md"), "w") as f:
        f.write(md)
    sys.stdout.write(md)


def median_ratio(rounds, num, den):
    """Median over rounds of ``t[num] / t[den]``."""
    return float(np.median([r[num] / r[den] for r in rounds]))


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def first_call(fn):
    """Seconds of the first call of ``fn`` (a compiled peer's JIT compilation and one run)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------- limits
def limit_fns(limits, max_size=2048):
    """The per-round probes of the machine limits of case 1: ``{"dgemm": (fn, flops), "tanh":
    (fn, elements)}``: a square dgemm of the size (at most ``max_size``, to keep a round short)
    that reached the highest rate in :func:`benchmarks.bench_step.machine_limits`, and the
    fastest tanh found there, on all threads over ``2^22`` entries."""
    size = max((r for r in limits["dgemm"] if r["size"] <= max_size),
               key=lambda r: r["gflops"])["size"]
    lib = limits["tanh_best"].split(",")[0]
    tiles = "tiles" in limits["tanh_best"]
    tanh = (make_tanh(1 << 22, tile=(1 << 17) if tiles else None) if lib == "numpy"
            else make_library_tanh(lib, 1 << 22))
    return {"dgemm": make_dgemm(size), "tanh": tanh}


# ---------------------------------------------------------------------------- case 1
REGIMES = {
    # name: (d, N, n, NC p, NC q)
    "low": (2, 200_000, 256, 4, 2),
    "middle": (64, 10_000, 2048, 4, 2),
    "high": (784, 6272, 64, 10, 10),
}


def _make(kind, d, p, q, precision="float64"):
    from mfpde.models import make_model
    if kind == "two_layer":
        return make_model("two_layer", d=d, q=1, activation="tanh", precision=precision)
    return make_model("nc", d=d, q=q, p=p, Gamma=1.0, lam=1e-3, lam_W=1e-3, activation="tanh",
                      precision=precision)


def full_batch(regime, kind, repeat=5, seed=0, limits=None, compiled_torch=True):
    """Case 1 for one regime and model: every implementation's median time (``t_<name>``), the
    speed-ups ``t_peer / t_mfpde`` (median of per-round ratios), the first-call (compile) time of
    the compiled peers, and with ``limits`` (:func:`limit_fns`) the step's FLOP time at the
    dgemm rate of the same round, ``t_flop = F t_dgemm / (2 s^3)``, its tanh time
    ``t_tanh = n N t_tanh_probe / elements``, and ``mfpde / t_flop``, ``mfpde / (t_flop +
    t_tanh)`` (the two run on the same cores, so their sum bounds the step from below)."""
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
           "D": model.D, "p": model.p, "q": model.q, "block": model.block_size(n, N),
           "flops": step_flops(model, N, n), "tanh_elements": tanh_elements(model, N, n)}
    theta0 = solver.theta.copy()
    W = None if solver.W is None else solver.W.copy()
    th32, X32 = theta0.astype(np.float32), X.astype(np.float32)
    fns = {"mfpde": lambda: solver.step(1),
           "blas": lambda: blas_products(model, theta0, X, Y),
           "blas32": lambda: blas_products(model, th32, X32, Y, dtype=np.float32)}
    # one block of the whole batch for JAX while its buffers stay small (n N doubles each)
    for peer in _peers(model, compiled_torch, jax_whole=8.0 * n * N <= 1 << 29):
        fns.update(_peer_step_fns(peer, theta0, X, Y, eps, W, out))
    if limits is not None:
        fns.update({k: fn for k, (fn, _) in limits.items()})
    med, rounds = interleaved_times(fns, repeat)
    for name in PEER_NAMES + ("mfpde", "blas", "blas32", "torch_blas", "dgemm", "tanh"):
        out[f"t_{name}"] = med.get(name)
    # ratios: median over rounds of the per-round ratio (same machine conditions in a round)
    out["ratio_mfpde_over_blas"] = median_ratio(rounds, "mfpde", "blas")
    out["ratio_blas64_over_blas32"] = median_ratio(rounds, "blas", "blas32")
    for name in PEER_NAMES:
        out[f"speedup_vs_{name}"] = median_ratio(rounds, name, "mfpde") if name in fns else None
    jx = [k for k in ("jax", "jax_whole") if k in fns]
    out["speedup_vs_jax_best"] = (float(np.median([min(r[k] for k in jx) / r["mfpde"]
                                                   for r in rounds])) if jx else None)
    if limits is not None:
        (_, dg_flops), (_, el) = limits["dgemm"], limits["tanh"]
        t_flop = [out["flops"] * r["dgemm"] / dg_flops for r in rounds]
        t_tanh = [out["tanh_elements"] * r["tanh"] / el for r in rounds]
        out["dgemm_gflops"] = float(np.median([dg_flops / r["dgemm"] / 1e9 for r in rounds]))
        out["t_flop_limit"], out["t_tanh_limit"] = float(np.median(t_flop)), float(np.median(t_tanh))
        out["ratio_mfpde_over_flop"] = float(np.median(
            [r["mfpde"] / f for r, f in zip(rounds, t_flop)]))
        out["ratio_mfpde_over_limit"] = float(np.median(
            [r["mfpde"] / (f + t) for r, f, t in zip(rounds, t_flop, t_tanh)]))
    return out


PEER_NAMES = ("numpy", "torch", "torch_compile", "jax", "jax_whole")


# ---------------------------------------------------------------------------- case 8
def float32_step(regime, kind, repeat=5, seed=0):
    """Case 8 for one regime and model: one noiseless full-batch step of the solver of case 1
    in float64 and with the float32 gradient pass (the same data and initial particles), and
    five steps in one call (``step(5)``, as a controller runs them: per step ``t_float64_5``,
    ``t_float32_5``), timed in alternation after one untimed round (JIT compilation of both
    precisions excluded), and then the step's BLAS products in float64 and float32, in
    alternation too. Returns the medians ``t_float64``, ``t_float32``, ``t_blas``,
    ``t_blas32``, the median per-round ratios ``ratio_float64_over_float32``,
    ``ratio_float64_over_float32_5`` and ``ratio_blas64_over_blas32``, and the relative force
    difference of the two passes at the initial state, ``max|g32 - g64| / max|g64|``."""
    from mfpde.dynamics import LangevinSolver
    d, N, n, p, q = REGIMES[regime]
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) / math.sqrt(d)
    models = {prec: _make(kind, d, p, q, prec) for prec in ("float64", "float32")}
    Y = rng.standard_normal((n, models["float64"].q))
    data = types.SimpleNamespace(X=X, Y=Y)
    solvers = {prec: LangevinSolver(m, data, N=N, dt=1e-3, beta=np.inf, seed=seed)
               for prec, m in models.items()}
    m64, s64 = models["float64"], solvers["float64"]
    theta0 = s64.theta.copy()
    g64 = m64.gradient(theta0, X, Y, s64.W).theta
    g32 = models["float32"].gradient(theta0, X, Y, s64.W).theta
    th32, X32 = theta0.astype(np.float32), X.astype(np.float32)
    steps = {"float64": lambda: solvers["float64"].step(1),
             "float32": lambda: solvers["float32"].step(1),
             # five steps in one call, as a controller runs them between its trackers
             "float64_5": lambda: solvers["float64"].step(5),
             "float32_5": lambda: solvers["float32"].step(5)}
    blas = {"blas": lambda: blas_products(m64, theta0, X, Y),
            "blas32": lambda: blas_products(m64, th32, X32, Y, dtype=np.float32)}
    # the BLAS products run in rounds of their own: after a call on both BLAS threads the
    # OpenBLAS workers spin for a while and slow whatever runs next on the chunk threads
    med, rounds = interleaved_times(steps, repeat)
    med_b, rounds_b = interleaved_times(blas, repeat)
    out = {"case": "float32", "regime": regime, "model": kind, "N": N, "n": n, "d": d,
           "D": m64.D, "p": m64.p, "q": m64.q, "block": m64.block_size(n, N),
           "block32": m64.block_size(n, N, 4),
           "force_rel_diff": float(np.abs(g32 - g64).max() / np.abs(g64).max())}
    for name in steps:
        out[f"t_{name}"] = med[name] / (5 if name.endswith("_5") else 1)
    for name in blas:
        out[f"t_{name}"] = med_b[name]
    out["ratio_float64_over_float32"] = median_ratio(rounds, "float64", "float32")
    out["ratio_float64_over_float32_5"] = median_ratio(rounds, "float64_5", "float32_5")
    out["ratio_blas64_over_blas32"] = median_ratio(rounds_b, "blas", "blas32")
    out["rounds"] = rounds
    return out


def _peers(model, compiled_torch=True, jax_whole=False, torch_threads=None):
    """The peers that can run here: NumPy always, PyTorch (eager; compiled when
    ``compiled_torch``; ``torch_threads`` threads, default Numba's count) when torch is
    installed, JAX when jax is installed; with ``jax_whole`` also JAX with the whole batch as one
    block (``jax_whole``: XLA then fuses over all samples, faster in the low regime, at ``n N``
    doubles per buffer)."""
    out = [NumpyPeer(model)]
    if torch_available():
        out.append(TorchPeer(model, threads=torch_threads))
        if compiled_torch:
            out.append(TorchPeer(model, threads=torch_threads, compile=True))
    if jax_available():
        out.append(JaxPeer(model))
        if jax_whole:
            whole = JaxPeer(model, chunk_bytes=1 << 62)
            whole.name = "jax_whole"
            out.append(whole)
    return out


def _peer_step_fns(peer, theta, X, Y, eps, W, out):
    """``{peer.name: one step}`` on the peer's own copies of the arrays (the state advances from
    call to call, as mfpde's does); compiled peers are called once here and the time of that
    first call is stored in ``out["compile_s_<name>"]``. The eager PyTorch peer also gives
    ``torch_blas``, its matrix products alone."""
    st = [peer.to_array(theta.copy()), peer.to_array(None if W is None else W.copy())]
    Xa, Ya = peer.to_array(X), peer.to_array(Y)

    def step():
        st[0], st[1] = peer.advance(st[0], Xa, Ya, eps, st[1])
        if peer.name.startswith("jax"):
            st[0].block_until_ready()
    fns = {peer.name: step}
    if peer.name in ("jax", "jax_whole", "torch_compile"):
        out[f"compile_s_{peer.name}"] = first_call(step)
    if peer.name == "torch":
        fns["torch_blas"] = lambda: peer.products(st[0], Xa, Ya)
    return fns


# ---------------------------------------------------------------------------- case 2
def online_sgd(N=800, d=40, steps=2000, repeat=5, seed=0):
    """Case 2: ``steps`` online SGD steps of batch 1 per timed call. mfpde, NumPy and PyTorch
    (eager, compiled; one thread, its fastest for batch 1) draw each sample with the sampler
    inside the call; JAX runs one ``jax.lax.scan`` over ``steps`` samples ``Xs (steps, 1, d)``,
    ``Ys (steps, 1, 1)`` drawn beforehand (the sampler cannot run inside the scan), so its time
    has no sampler in it."""
    from mfpde.data import mmn_gaussians_sampler
    from mfpde.dynamics import LangevinSolver
    from mfpde.models import make_model
    model = make_model("two_layer", d=d, q=1, activation="tanh", output="fixed")
    sampler = mmn_gaussians_sampler(d=d, delta=0.8)
    eps = 1e-2
    solver = LangevinSolver(model, None, N=N, dt=eps, beta=np.inf, batch=1, sampler=sampler,
                            seed=seed)
    out = {"case": "online_sgd", "N": N, "d": d, "D": model.D, "batch": 1, "steps": steps}
    rng = np.random.default_rng(seed)
    fns = {"mfpde": lambda: solver.step(steps)}
    # PyTorch on one thread: with two, its batch-1 step is 5-10x slower on a loaded machine
    for peer in _peers(model, torch_threads=1):
        st = [peer.to_array(solver.theta.copy())]
        if peer.name == "jax":
            draws = [sampler.sample(1, rng) for _ in range(steps)]
            Xs = peer.to_array(np.stack([x for x, _ in draws]))
            Ys = peer.to_array(np.stack([np.reshape(y, (1, -1)) for _, y in draws]))

            def run(peer=peer, st=st, Xs=Xs, Ys=Ys):
                st[0] = peer.scan(st[0], Xs, Ys, eps)[0]
                st[0].block_until_ready()
        else:
            def run(peer=peer, st=st):
                for _ in range(steps):
                    Xb, Yb = sampler.sample(1, rng)
                    st[0] = peer.advance(st[0], peer.to_array(Xb), peer.to_array(Yb), eps)[0]
        if peer.name in ("jax", "torch_compile"):
            out[f"compile_s_{peer.name}"] = first_call(run)
        fns[peer.name] = run
    med, rounds = interleaved_times(fns, repeat)
    out["t_sampler"] = median_time(lambda: [sampler.sample(1, rng) for _ in range(steps)],
                                   repeat) / steps
    # mfpde's share: the same number of samples drawn 256 per call
    calls = max(1, steps // 256)
    out["t_sampler_256"] = median_time(lambda: [sampler.sample(256, rng) for _ in range(calls)],
                                       repeat) / (256 * calls)
    for name in ("mfpde",) + PEER_NAMES:
        t = med[name] / steps if name in med else None
        out[f"t_{name}"] = t
        out[f"steps_per_s_{name}"] = (1.0 / t) if t else None
        if name != "mfpde":
            out[f"speedup_vs_{name}"] = median_ratio(rounds, name, "mfpde") if t else None
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


# ---------------------------------------------------------------------------- case 7
SCALING_N = {2: (10_000, 100_000, 1_000_000, 10_000_000),
             64: (10_000, 100_000, 1_000_000, 10_000_000),
             784: (10_000, 30_000, 100_000, 300_000, 1_000_000)}
SCALING_N_QUICK = {2: (10_000, 100_000, 1_000_000), 64: (10_000, 100_000, 1_000_000),
                   784: (10_000, 30_000, 100_000)}
SCALING_n = {2: 100_000, 64: 100_000, 784: 10_000}      # d: the fixed N of the series in n
SCALING_n_SIZES, SCALING_n_QUICK = (64, 256, 1024, 4096), (64, 256, 1024)
SCALING_n_FIXED = 64                                     # the fixed n of the series in N


def _ram_bytes():
    """``(total, available)`` bytes of RAM (``/proc/meminfo``; None elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            kv = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in f}
        return kv["MemTotal"], kv.get("MemAvailable", kv["MemTotal"])
    except (OSError, KeyError, ValueError):
        return None, None


class _PeakRSS:
    """Peak resident set size while the block runs, sampled every 2 ms from ``/proc/self/statm``
    (``peak - before`` in ``.increment``; 0 where statm does not exist)."""

    def __enter__(self):
        import threading
        self.page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self.before = self.peak = self._rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _rss(self):
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self.page
        except OSError:
            return 0

    def _run(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._rss())
        self.increment = self.peak - self.before


def _scaling_point(d, N, n, repeat, budget_s, t_guess, mem_factor, mem_limit, seed=0,
                   block=True):
    """One point of the scaling series: a noiseless two-layer step (tanh, q = 1,
    ``LangevinSolver(..., beta=inf)`` as in case 1) at ``(d, N, n)``. Skipped, with the reason,
    when the estimated memory ``mem_factor x`` the particle state ``N D 8`` bytes (plus one
    ``n x N`` block with ``block``: a guessed factor; a factor measured at the previous point
    holds the pass's buffers) exceeds ``mem_limit``, or when the predicted time of the runs
    (``t_guess`` seconds per step, from the previous point) exceeds ``budget_s``. Steps predicted longer than
    2 s get 3 runs instead of ``repeat``."""
    from mfpde.dynamics import LangevinSolver
    model = _make("two_layer", d, 1, 1)
    state = N * model.D * 8
    row = {"d": d, "N": N, "n": n, "D": model.D, "state_bytes": state,
           "mem_estimate": mem_factor * state + (8.0 * min(n, 512) * N if block else 0.0)}
    if mem_limit is not None and row["mem_estimate"] > mem_limit:
        row["skipped"] = (f"estimated memory {row['mem_estimate'] / 2 ** 30:.1f} GiB > "
                          f"{mem_limit / 2 ** 30:.1f} GiB (half of the RAM)")
        return row
    runs = repeat if t_guess is None or t_guess <= 2.0 else 3
    if t_guess is not None and t_guess * (runs + 1) > budget_s:
        row["skipped"] = (f"predicted {t_guess:.1f} s per step: {runs + 1} calls exceed the "
                          f"{budget_s:.0f} s budget of a point")
        return row
    rng = np.random.default_rng(seed)
    data = types.SimpleNamespace(X=rng.standard_normal((n, d)) / math.sqrt(d),
                                 Y=rng.standard_normal((n, 1)))
    with _PeakRSS() as mem:
        solver = LangevinSolver(model, data, N=N, dt=1e-3, beta=np.inf, seed=seed)
        t = median_time(lambda: solver.step(1), runs)
        del solver
    row.update({"runs": runs, "t_step": t, "updates_per_s": N * n / t,
                "ns_per_update": t / (N * n) * 1e9, "rss_increment": mem.increment,
                "mem_factor": mem.increment / state})
    return row


def _slope(rows, key):
    """Least-squares slope of ``log t_step`` against ``log rows[key]`` over the measured rows
    (None with fewer than two)."""
    pts = [(r[key], r["t_step"]) for r in rows if "t_step" in r]
    if len(pts) < 2:
        return None
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def scaling(quick=True, repeat=5, series=("N", "n")):
    """Case 7: per-update throughput ``N n / t_step`` of one noiseless full-batch step, in N at
    ``n = 64`` for ``d = 2, 64, 784`` and in n at a fixed N per d (:data:`SCALING_n`), with the
    fitted log-log slopes ``dlog t / dlog N`` and ``dlog t / dlog n`` (1 for a step whose cost
    is proportional to ``N n``), and ``throughput(N_max) / throughput(10^5)``.

    The memory estimate of a point is the RSS increase per byte of particle state measured at
    the previous point of the same d times its state (before the first: 2.5 times, plus one
    block; in the series in n always so); a
    point is skipped when that exceeds half of the RAM or the RAM available now. A point is also
    skipped when its predicted time (the previous point's time scaled by ``N n``) exceeds the
    budget: 20 s per point under ``quick`` (a series of about 2 minutes), 100 s otherwise.
    ``series`` chooses the series in N, in n, or both."""
    total, avail = _ram_bytes()
    mem_limit = None if total is None else min(total / 2, 0.8 * avail)
    budget = 20.0 if quick else 100.0
    out = {"case": "scaling", "n_fixed": SCALING_n_FIXED, "ram_bytes": total,
           "mem_limit": mem_limit, "budget_s": budget, "in_N": {}, "in_n": {}}
    t0 = time.perf_counter()
    for d, sizes in (SCALING_N_QUICK if quick else SCALING_N).items() if "N" in series else ():
        rows, prev, factor = [], None, 2.5
        for N in sizes:
            guess = None if prev is None else prev["t_step"] * N / prev["N"]
            _log(f"  scaling in N: d = {d}, N = {N}")
            r = _scaling_point(d, N, SCALING_n_FIXED, repeat, budget, guess, factor, mem_limit,
                               block=prev is None)
            rows.append(r)
            if "t_step" in r:
                prev, factor = r, max(1.0, r["mem_factor"])
        ref = next((r for r in rows if r["N"] == 100_000 and "t_step" in r), None)
        for r in rows:
            if ref is not None and "t_step" in r:
                r["throughput_over_1e5"] = r["updates_per_s"] / ref["updates_per_s"]
        out["in_N"][d] = {"rows": rows, "slope": _slope(rows, "N")}
    for d, N in SCALING_n.items() if "n" in series else ():
        rows, prev = [], None
        for n in (SCALING_n_QUICK if quick else SCALING_n_SIZES):
            guess = None if prev is None else prev["t_step"] * n / prev["n"]
            _log(f"  scaling in n: d = {d}, N = {N}, n = {n}")
            r = _scaling_point(d, N, n, repeat, budget, guess, 2.5, mem_limit)
            rows.append(r)
            prev = r if "t_step" in r else prev
        out["in_n"][d] = {"N": N, "rows": rows, "slope": _slope(rows, "n")}
    out["wall_s"] = time.perf_counter() - t0
    return out


CASES = ("limits", "full_batch", "float32", "online_sgd", "noise", "ot", "jit_memory",
         "scaling", "scaling_N", "scaling_n")


def run(quick=True, repeat=5, cases=CASES) -> dict:
    """Run the chosen cases (all by default); returns ``{"limits": {...}, "full_batch": [...],
    "online_sgd": {...}, ...}`` with one entry per case run."""
    res = {}
    for lib, ok in (("torch", torch_available()), ("jax", jax_available())):
        if not ok:
            _log(f"{lib} is not installed: its peers are skipped (pip install -e '.[bench]')")
    if "limits" in cases or "full_batch" in cases:
        _log("case 6: machine limits (dgemm, tanh)")
        res["limits"] = machine_limits(repeat=repeat)
    if "full_batch" in cases:
        probes = limit_fns(res["limits"])
        res["full_batch"] = []
        for regime in ("low", "middle", "high"):
            for kind in ("two_layer", "nc"):
                _log(f"case 1: full-batch step, {regime}, {kind}")
                res["full_batch"].append(full_batch(regime, kind, repeat, limits=probes,
                                                    compiled_torch=kind == "two_layer"))
    if "float32" in cases:
        res["float32"] = []
        for regime in ("middle", "high"):
            for kind in ("two_layer", "nc"):
                _log(f"case 8: float32 step, {regime}, {kind}")
                res["float32"].append(float32_step(regime, kind, max(repeat, 7)))
    if "online_sgd" in cases:
        _log("case 2: online SGD batch 1")
        res["online_sgd"] = online_sgd(steps=1000 if quick else 5000, repeat=repeat)
    if "noise" in cases:
        _log("case 3: noise at N = 1e6")
        res["noise"] = noise(repeat=repeat)
    if "ot" in cases:
        _log("case 4: sliced W2 vs emd2")
        res["ot"] = ot_case(sizes=(250, 500, 1000, 2000) if quick else
                            (250, 500, 1000, 2000, 4000), repeat=repeat)
    if "jit_memory" in cases:
        _log("case 5: JIT warm-up and peak memory")
        res["jit_memory"] = jit_and_memory()
    series = [k for k in ("N", "n") if "scaling" in cases or f"scaling_{k}" in cases]
    if series:
        _log(f"case 7: scaling in {' and '.join(series)}")
        res["scaling"] = scaling(quick=quick, repeat=repeat, series=series)
    return res


# ---------------------------------------------------------------------------- profile
def profile_step(regime="middle", kind="two_layer", steps=3, top=10, size=None,
                 precision="float64"):
    """cProfile breakdown of ``steps`` full-batch steps (the evidence for a missed target).

    Returns ``[(function, calls, total_s, per_step_s), ...]`` sorted by total time (tottime),
    e.g. ``numpy dot`` (the BLAS products), ``forward_s`` / ``backward_s`` / ``sweep_s`` (the fused
    element-wise Numba kernels), ``em_update``. Chunks run on worker threads, which cProfile does
    not see: run with ``NUMBA_NUM_THREADS=1`` so that all the work is in the profiled thread.
    ``size = (d, N, n)`` profiles that size instead of a regime of case 1 (a point of the
    scaling series: two-layer, ``p = q = 1``); ``precision = "float32"`` profiles the float32
    gradient pass (case 8).
    Run: ``python -c "from benchmarks.bench_cases import profile_step as p; print(*p(), sep='\\n')"``.
    """
    import cProfile
    import pstats
    from mfpde.dynamics import LangevinSolver
    d, N, n, p, q = REGIMES[regime] if size is None else (*size, 1, 1)
    model = _make(kind, d, p, q, precision)
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
