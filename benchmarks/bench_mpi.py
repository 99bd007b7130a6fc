"""One particle run on MPI ranks against threads in one process (docs/hpc.md).

At the three regimes of the full-batch case (:data:`benchmarks.bench_cases.REGIMES`: two-layer
model, noisy full-batch Langevin step with block noise streams, the default of ``mfpde run``):

- ``1x1``: one process, one thread; ``1x2``: one process, two threads; ``2x1``: two MPI ranks
  (``mpiexec -n 2``) of one thread each. Time per step: median over steps of the slowest rank
  (every step starts after a barrier).
- bytes communicated per step and rank (the ``MPI_Allgatherv`` of the per-chunk partial features,
  one per block of samples), the number of collectives per step, and the fraction of a step a
  rank spends inside them (waiting for the other rank included);
- the same collectives timed alone (same message sizes, after a barrier): the transfer cost
  without load imbalance, and the latency ``alpha`` (64-byte allgathers) and bandwidth ``bw``
  (32 MiB, latency removed) of ``t = alpha + M / bw``, the inputs of the scaling model of
  docs/hpc.md.

Usage: ``python -m benchmarks.bench_mpi [--repeat 5] [--steps 5] [--rounds 3]`` (needs the
``mpi`` extra); the layouts are launched in alternation, ``rounds`` times each. The ``--worker``
form is what the launcher runs on each rank; ``--project FILE.json`` prints the scaling model's
projection from a saved result.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _launcher():
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def _solver(regime: str, part=None):
    from benchmarks.bench_cases import REGIMES
    from mfpde.dynamics import LangevinSolver
    from mfpde.models import make_model
    import types
    d, N, n, _, _ = REGIMES[regime]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d)) / math.sqrt(d)
    Y = rng.standard_normal((n, 1))
    model = make_model("two_layer", d=d, q=1, activation="tanh")
    data = types.SimpleNamespace(X=X, Y=Y)
    return LangevinSolver(model, data, N=N, dt=1e-3, beta=1e4, seed=0, noise_stream="blocks",
                          part=part)


def worker(regime: str, steps: int, repeat: int) -> dict | None:
    """One rank (or the single process): time ``steps`` steps, ``repeat`` times."""
    comm = None
    if int(os.environ.get("PMI_SIZE", "1")) > 1 or os.environ.get("OMPI_COMM_WORLD_SIZE"):
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
    if comm is None:
        s = _solver(regime)
        part, rank, size = None, 0, 1
    else:
        from mfpde.parallel import Layout
        from benchmarks.bench_cases import REGIMES
        rank, size = comm.Get_rank(), comm.Get_size()
        part = Layout(REGIMES[regime][1], size).partition(rank, comm)
        s = _solver(regime, part)
    s.step(2)                                             # JIT warm-up, excluded
    times, comm_s, calls, sent, recv = [], [], [], [], []
    for _ in range(repeat):
        if comm is not None:
            comm.Barrier()
            part.reset_counters()
        t0 = time.perf_counter()
        for _ in range(steps):
            s.step(1)
        t = time.perf_counter() - t0
        if comm is not None:
            t = comm.allreduce(t, op=MPI.MAX)             # the slowest rank sets the pace
            comm_s.append(part.seconds / steps)
            calls.append(part.calls / steps)
            sent.append(part.bytes_sent / steps)
            recv.append(part.bytes_received / steps)
        times.append(t / steps)
    out = {"regime": regime, "ranks": size, "threads": _threads(), "N": s.N,
           "n": int(s.X.shape[0]), "d": s.model.d, "D": s.model.D,
           "t_step": float(np.median(times))}
    if comm is None:
        return out
    out.update(comm_s_per_step=float(np.median(comm_s)), calls_per_step=float(np.median(calls)),
               bytes_sent_per_step=float(np.median(sent)),
               bytes_received_per_step=float(np.median(recv)),
               C=part.C, chunks=part.layout.chunks)
    out["comm_fraction"] = out["comm_s_per_step"] / out["t_step"]
    out["alone"] = _collectives_alone(comm, part, s, repeat)
    gathered = comm.gather(out, root=0)
    if rank != 0:
        return None
    out["comm_fraction_ranks"] = [g["comm_fraction"] for g in gathered]
    return out


def _threads():
    import numba
    return numba.get_num_threads()


def _collectives_alone(comm, part, s, repeat):
    """The collectives of one step timed alone (same sizes), and a latency / bandwidth fit."""
    n = s.X.shape[0]
    blk = s.model.block_size(n, s.N)
    blocks = [min(n, b + blk) - b for b in range(0, n, blk)]
    local = np.ones((part.c1 - part.c0, blk, s.model.p))
    times = []
    for _ in range(repeat):
        comm.Barrier()
        t0 = time.perf_counter()
        for nb in blocks:
            part.allgather_chunks(local, nb)
        times.append(time.perf_counter() - t0)
    step_alone = float(np.median(times))
    # latency / bandwidth: allgathers of 64 B to 32 MiB in total
    sizes, tm = [], []
    for k in range(0, 21, 2):
        m = max(1, (1 << k) // part.layout.size)
        buf = np.ones((max(1, part.c1 - part.c0), m, 1))
        reps = 50 if k < 14 else 10
        comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(reps):
            comm.Allgather(buf[:, :m].copy(), np.empty((part.layout.size * buf.shape[0], m, 1)))
        tm.append((time.perf_counter() - t0) / reps)
        sizes.append(8 * m * buf.shape[0] * part.layout.size)
    sizes, tm = np.array(sizes, float), np.array(tm)
    # latency: the smallest message (64 B); bandwidth: the largest (32 MiB), latency removed
    alpha = float(tm[0])
    bw = float(sizes[-1] / (tm[-1] - alpha)) if tm[-1] > alpha else None
    return {"t_step_collectives_alone": step_alone, "fit_alpha_s": alpha,
            "fit_bandwidth_Bps": bw, "sizes_bytes": sizes.tolist(), "times_s": tm.tolist()}


def _launch_env(threads: int) -> dict:
    """Environment of a launched layout: ``threads`` Numba threads, one BLAS thread, no
    inherited MPI launch."""
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for v in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE"):
        env.pop(v, None)
    return env


def _launch(regime, ranks, threads, steps, repeat):
    env = _launch_env(threads)
    cmd = [sys.executable, "-m", "benchmarks.bench_mpi", "--worker", regime, "--steps",
           str(steps), "--repeat", str(repeat)]
    if ranks > 1:
        cmd = [_launcher(), "-n", str(ranks), *cmd]
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    line = [x for x in r.stdout.splitlines() if x.startswith("{")][-1]
    return json.loads(line)


def run(quick: bool = True, repeat: int = 5, steps: int | None = None, rounds: int = 3) -> dict:
    """All three regimes in the three layouts; ``{"rows": [...], "available": bool}``. The
    layouts are launched in alternation, ``rounds`` times each (a loaded machine slows them
    alike); every time is the median over the rounds of the per-launch medians."""
    from benchmarks.bench_cases import REGIMES
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return {"available": False, "reason": "mpi4py is not installed (pip install "
                                              "-e '.[mpi]')", "rows": []}
    if _launcher() is None:
        return {"available": False, "reason": "no mpiexec found", "rows": []}
    rows = []
    layouts = {"1x1": (1, 1), "1x2": (1, 2), "2x1": (2, 1)}
    for regime in REGIMES:
        k = steps or (3 if quick else 5)
        runs = {lay: [] for lay in layouts}
        for _ in range(rounds):
            for lay, (r, t) in layouts.items():
                runs[lay].append(_launch(regime, r, t, k, repeat))
        res = {lay: _median_run(v) for lay, v in runs.items()}
        m = res["2x1"]
        rows.append({
            "regime": regime, "N": m["N"], "n": m["n"], "d": m["d"], "C": m["C"],
            "t_1x1": res["1x1"]["t_step"], "t_1x2": res["1x2"]["t_step"],
            "t_2x1": m["t_step"],
            "ratio_2x1_over_1x2": m["t_step"] / res["1x2"]["t_step"],
            "speedup_2x1": res["1x1"]["t_step"] / m["t_step"],
            "speedup_1x2": res["1x1"]["t_step"] / res["1x2"]["t_step"],
            "bytes_sent_per_step": m["bytes_sent_per_step"],
            "bytes_received_per_step": m["bytes_received_per_step"],
            "calls_per_step": m["calls_per_step"],
            "comm_s_per_step": m["comm_s_per_step"], "comm_fraction": m["comm_fraction"],
            "comm_fraction_ranks": m["comm_fraction_ranks"],
            "t_collectives_alone": m["alone"]["t_step_collectives_alone"],
            "fraction_collectives_alone": m["alone"]["t_step_collectives_alone"] / m["t_step"],
            "fit_alpha_s": m["alone"]["fit_alpha_s"],
            "fit_bandwidth_Bps": m["alone"]["fit_bandwidth_Bps"],
        })
    return {"available": True, "rows": rows, "steps": steps or (3 if quick else 5),
            "rounds": rounds, "repeat": repeat}


def _median_run(launches: list[dict]) -> dict:
    """The launch with the median step time (its counters belong to that launch)."""
    launches = sorted(launches, key=lambda x: x["t_step"])
    return launches[len(launches) // 2]


# ---------------------------------------------------------------------------- scaling model
#: assumed network of the projections: latency of one step of an allgather, bandwidth per node
NET_ALPHA = 5e-6
NET_BANDWIDTH = 10e9
#: assumed node: cores per node (one rank per node, one Numba thread per core)
NODE_CORES = 64
#: cost of one addition of the replicated sum of the chunks' partial features (s)
ADD_SECONDS = 1e-9


def model_step(tau_node: float, N: int, n: int, p: int, R: int, alpha: float,
               bandwidth: float) -> dict:
    """The step time of the scaling model (docs/hpc.md) for ``N`` particles on ``R`` ranks:

    ``T = tau_node * max_rank_particles + n_b (alpha ceil(log2 R) + (R-1)/R * 8 C b p / bw)
    + ADD_SECONDS * C n p``

    with the fixed chunks ``C(N)``, the block size ``b(n, N)`` and ``n_b = ceil(n / b)``
    collectives of the gradient pass (one per block), and the particles of the rank holding the
    most chunks."""
    from mfpde.models import make_model
    from mfpde.parallel import Layout
    lay = Layout(N, R)
    most = max(hi - lo for lo, hi in lay.rows)
    blk = make_model("two_layer", d=1, q=1).block_size(n, N)
    n_b = -(-n // blk)
    comm = 0.0
    if R > 1:
        comm = n_b * (alpha * math.ceil(math.log2(R))
                      + (R - 1) / R * 8.0 * lay.C * blk * p / bandwidth)
    comp = tau_node * most
    rep = ADD_SECONDS * lay.C * n * p
    return {"R": R, "N": N, "C": lay.C, "blocks": n_b, "t_comp": comp, "t_comm": comm,
            "t_rep": rep, "t_step": comp + comm + rep}


def project(res: dict, nodes=(1, 2, 4, 8, 16, 32, 64), strong_N: int = 1 << 23,
            weak_per_node: dict | None = None, alpha: float = NET_ALPHA,
            bandwidth: float = NET_BANDWIDTH, cores: int = NODE_CORES) -> dict:
    """Strong and weak scaling to 64 nodes from the measured rows (docs/hpc.md): per-particle
    time of one thread ``t_1x1 / N``, thread efficiency of the measured 2-thread run, a node of
    ``cores`` threads at that efficiency, the assumed network ``alpha``, ``bandwidth``; and the
    check of the model against the measured 2-rank step on this machine (its own latency and
    bandwidth)."""
    weak_per_node = weak_per_node or {"low": 200_000, "middle": 1 << 17, "high": 1 << 17}
    out = {"assumptions": {"alpha_s": alpha, "bandwidth_Bps": bandwidth, "cores": cores,
                           "strong_N": strong_N, "weak_per_node": weak_per_node}, "rows": []}
    for r in res["rows"]:
        tau1 = r["t_1x1"] / r["N"]                         # one thread, per particle
        eff = r["speedup_1x2"] / 2.0
        tau_node = tau1 / (cores * eff)
        p = 1
        check = model_step(tau1, r["N"], r["n"], p, 2, r["fit_alpha_s"],
                           r["fit_bandwidth_Bps"] or 1e10)
        strong = [model_step(tau_node, strong_N, r["n"], p, R, alpha, bandwidth) for R in nodes]
        t1 = strong[0]["t_step"]
        for m in strong:
            m["speedup"] = t1 / m["t_step"]
            m["efficiency"] = m["speedup"] / m["R"]
        N1 = weak_per_node[r["regime"]]
        weak = [model_step(tau_node, N1 * R, r["n"], p, R, alpha, bandwidth) for R in nodes]
        w1 = weak[0]["t_step"]
        for m in weak:
            m["efficiency"] = w1 / m["t_step"]
        out["rows"].append({"regime": r["regime"], "n": r["n"], "d": r["d"], "tau1": tau1,
                            "thread_efficiency": eff, "model_2x1": check["t_step"],
                            "measured_2x1": r["t_2x1"], "strong": strong, "weak": weak})
    return out


def projection_markdown(pr: dict) -> str:
    a = pr["assumptions"]
    L = ["", f"### Projection to 64 nodes (model of docs/hpc.md; {a['cores']} cores per node, "
         f"network latency {a['alpha_s'] * 1e6:.0f} µs per allgather step, bandwidth "
         f"{a['bandwidth_Bps'] / 1e9:.0f} GB/s)", "",
         "| regime | model 2x1 here | measured 2x1 | strong N | " + " | ".join(
             f"E({m['R']})" for m in pr["rows"][0]["strong"]) + " | weak N/node | " + " | ".join(
             f"E_w({m['R']})" for m in pr["rows"][0]["weak"]) + " |",
         "|---|---|---|---|" + "---|" * len(pr["rows"][0]["strong"]) + "---|"
         + "---|" * len(pr["rows"][0]["weak"])]
    for r in pr["rows"]:
        L.append(f"| {r['regime']} | {r['model_2x1'] * 1e3:.2f} ms | "
                 f"{r['measured_2x1'] * 1e3:.2f} ms | {r['strong'][0]['N']} | "
                 + " | ".join(f"{m['efficiency'] * 100:.0f} %" for m in r["strong"])
                 + f" | {r['weak'][0]['N']} | "
                 + " | ".join(f"{m['efficiency'] * 100:.0f} %" for m in r["weak"]) + " |")
    return "\n".join(L) + "\n"


#: the comparison of the split-reference case: noisy SGD networks sharing the batches and the
#: Brownian increments of a large reference (rank 0 holds the networks' rows: nothing is sent)
COMPARE_CASE = """
[compare]
name = "split reference benchmark"
method = "noisy_sgd"
batch = 256
widths = [512, 2048]
seeds = [0]
dts = [0.01]
beta = 1000.0
T = {T}
n_records = 2
test_n = 256
figure = false
[compare.model]
kind = "two_layer"
d = 16
[compare.data]
kind = "teacher_student"
n = 4096
d = 16
k_star = 4
seed = 0
[compare.reference]
N = {N}
[compare.fit]
x = "N"
n_boot = 50
"""


def _compare_launch(ranks: int, threads: int, N: int, T: float, tmp: Path) -> tuple:
    """Seconds of the job (``mfpde: wrote OUT (X s)``: the unit with its records, W2 values
    and fits; start-up aside) and of the reference's steps alone (``reference X s``)."""
    import re
    cfg = tmp / "cmp.toml"
    cfg.write_text(COMPARE_CASE.format(N=N, T=T))
    env = _launch_env(threads)
    cmd = [sys.executable, "-m", "mfpde", "compare", str(cfg), "-o", str(tmp / "cmp.h5"),
           "--set", "output.overwrite=true"]
    if ranks > 1:
        cmd = [_launcher(), "-n", str(ranks), *cmd]
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    job = re.search(r"wrote .* \(([0-9.]+) s\)", r.stdout)
    steps = re.search(r"reference ([0-9.]+) s", r.stdout)
    return float(job.group(1)), float(steps.group(1))


def run_compare_case(N: int = 1 << 18, T: float = 0.3, rounds: int = 3) -> dict:
    """The reference of one ``mfpde compare`` unit split over 2 ranks x 1 thread against one
    process with 2 threads (launched in alternation, ``rounds`` times; medians)."""
    import tempfile
    if _launcher() is None:
        return {"available": False, "reason": "no mpiexec found"}
    times = {"1x2": [], "2x1": []}
    with tempfile.TemporaryDirectory() as tmp:
        _compare_launch(1, 2, 4096, 0.02, Path(tmp))           # compile once (cache)
        for _ in range(rounds):
            for lay, (r, t) in (("1x2", (1, 2)), ("2x1", (2, 1))):
                times[lay].append(_compare_launch(r, t, N, T, Path(tmp)))
    med = {k: np.median(np.array(v), axis=0) for k, v in times.items()}
    return {"available": True, "N_ref": N, "steps": int(round(T / 0.01)), "times": times,
            "t_1x2": float(med["1x2"][0]), "t_2x1": float(med["2x1"][0]),
            "steps_1x2": float(med["1x2"][1]), "steps_2x1": float(med["2x1"][1]),
            "ratio_2x1_over_1x2": float(med["2x1"][0] / med["1x2"][0]),
            "steps_ratio": float(med["2x1"][1] / med["1x2"][1])}


def compare_markdown(res: dict) -> str:
    L = ["", "## MPI: the reference of an `mfpde compare` unit split over 2 ranks x 1 thread "
         "against 1 rank x 2 threads", ""]
    if not res.get("available"):
        return "\n".join(L + [f"Skipped: {res.get('reason')}.", ""])
    L += ["| N_ref | steps | job 1x2 s | job 2x1 s | 2x1 / 1x2 | reference steps 1x2 s | "
          "2x1 s | 2x1 / 1x2 |", "|---|---|---|---|---|---|---|---|",
          f"| {res['N_ref']} | {res['steps']} | {res['t_1x2']:.2f} | {res['t_2x1']:.2f} | "
          f"{res['ratio_2x1_over_1x2']:.2f}x | {res['steps_1x2']:.2f} | "
          f"{res['steps_2x1']:.2f} | {res['steps_ratio']:.2f}x |", "",
          "Noisy SGD, batch 256 shared with the networks (widths 512 and 2048, on rank 0), "
          "d = 16, one unit. Job: the unit with its records (a forward pass of the reference "
          "over the held-out and training sets each), W2 values and fit, start-up aside; "
          "reference steps: the reference's steps alone (rank 0's wall time). Medians of "
          "the rounds, launched in alternation.", ""]
    return "\n".join(L)


def to_markdown(res: dict) -> str:
    L = ["", "## MPI: 2 ranks x 1 thread against 1 rank x 2 threads (noisy full-batch "
         "Langevin step, block noise streams)", ""]
    if not res.get("available"):
        return "\n".join(L + [f"Skipped: {res.get('reason')}.", ""])
    L += ["| regime | N | n | d | chunks | 1x1 ms | 1x2 ms | 2x1 ms | 2x1 / 1x2 | speed-up "
          "1x2 | speed-up 2x1 | collectives / step | bytes / step / rank (sent, received) | "
          "comm fraction (in collective) | comm fraction (alone) |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        L.append(f"| {r['regime']} | {r['N']} | {r['n']} | {r['d']} | {r['C']} | "
                 f"{r['t_1x1'] * 1e3:.2f} | {r['t_1x2'] * 1e3:.2f} | {r['t_2x1'] * 1e3:.2f} | "
                 f"{r['ratio_2x1_over_1x2']:.2f}x | {r['speedup_1x2']:.2f}x | "
                 f"{r['speedup_2x1']:.2f}x | {r['calls_per_step']:.0f} | "
                 f"{r['bytes_sent_per_step']:.0f}, {r['bytes_received_per_step']:.0f} | "
                 f"{r['comm_fraction'] * 100:.1f} % | "
                 f"{r['fraction_collectives_alone'] * 100:.2f} % |")
    fit = res["rows"][0]
    L += ["", f"Collective alone (shared memory, this machine): latency "
          f"{fit['fit_alpha_s'] * 1e6:.1f} µs, bandwidth "
          + ("—" if not fit["fit_bandwidth_Bps"] else f"{fit['fit_bandwidth_Bps'] / 1e9:.2f} GB/s")
          + ". In collective: the time a rank spends in MPI_Allgatherv, waiting for the other "
          "rank included; alone: the same collectives after a barrier.", ""]
    return "\n".join(L) + projection_markdown(project(res))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_mpi")
    ap.add_argument("--worker", metavar="REGIME")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None, help="write bench_mpi.json and .md here")
    ap.add_argument("--project", metavar="FILE.json", help="print the projection of a result")
    ap.add_argument("--compare", action="store_true",
                    help="the split reference of an mfpde compare unit instead")
    args = ap.parse_args(argv)
    if args.compare:
        res = run_compare_case(rounds=args.rounds)
        sys.stdout.write(compare_markdown(res))
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            Path(args.out, "bench_mpi_compare.json").write_text(json.dumps(res, indent=1))
        return 0
    if args.project:
        res = json.loads(Path(args.project).read_text())
        sys.stdout.write(to_markdown(res))
        print(json.dumps(project(res), indent=1))
        return 0
    if args.worker:
        out = worker(args.worker, args.steps or 3, args.repeat)
        if out is not None:
            print(json.dumps(out), flush=True)
        return 0
    res = run(quick=args.quick, repeat=args.repeat, steps=args.steps, rounds=args.rounds)
    md = to_markdown(res)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        Path(args.out, "bench_mpi.json").write_text(json.dumps(res, indent=1))
        Path(args.out, "bench_mpi.md").write_text(md)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
