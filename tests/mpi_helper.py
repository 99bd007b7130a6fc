"""Programs the MPI tests (tests/test_mpi.py) launch with ``mpiexec -n R python mpi_helper.py``.

``contract OUT``    every case of :data:`CASES` on R' = 1 .. R ranks of one launch (sub-
                    communicators split from COMM_WORLD, a different thread count per R') and
                    in one process with 1 and 2 threads: every file's contents must be
                    identical (the output path in the stored config aside)
``resume OUT``      runs on R - 1 ranks stopped halfway, resumed on all R ranks; equal to one
                    uninterrupted single-process run
``fail OUT``        rank 1 raises during a step: the job must abort (non-zero exit, seconds)
``compare OUT``     every comparison of :data:`COMPARES` with its reference split over R' = 1 ..
                    R ranks of one launch and in one process: identical files, and the
                    reference really split on every R' > 1

Rank 0 prints ``OK ...`` and the program exits 0 on success; differences are listed, exit 1.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import h5py
import numpy as np

#: attributes that change from run to run (times, versions)
VOLATILE = {"created", "updated", "mfpde_version", "written", "message"}

BASE = """
[model]
kind = "two_layer"
activation = "tanh"

[data]
kind = "teacher_student"
n = 200
d = 4

[dynamics]
N = 4096
dt = 0.05
steps = 24
beta = 200.0
seed = 3

[observe]
every = 6
quantities = ["loss", "reg_loss"]
snapshot_every = 12
snapshot_particles = 64

[output]
checkpoint_every = 12
"""

NC = """
[model]
kind = "nc"
p = 4
Gamma = 2.0
lam = 0.05
lam_W = 0.05

[data]
kind = "well_separated"
q = 3
m = 8
d = 5

[dynamics]
N = 3000
dt = 0.02
steps = 20
beta = 300.0
batch = 6
seed = 1

[observe]
every = 5
quantities = ["loss", "nc1"]
snapshot_every = 10
snapshot_particles = 50
"""

#: (name, config text, overrides): full batch, mini-batches and online samples of the Langevin,
#: kinetic and trainer drivers, the NC model (W), a small-batch run of the fused path (held
#: whole on every rank), the single noise stream of schema-1 files, and the low-memory sweep
#: over several sample blocks with a generic activation (BLAS projection)
CASES = [
    ("langevin_full", BASE, []),
    ("langevin_minibatch", BASE, ["dynamics.batch=40"]),
    ("langevin_online", BASE, ["dynamics.online=true", "dynamics.batch=32"]),
    ("kinetic_baoab_minibatch", BASE, ['dynamics.solver="kinetic"', "dynamics.batch=50"]),
    ("kinetic_obabo_online", BASE, ['dynamics.solver="kinetic"', 'dynamics.integrator="obabo"',
                                    "dynamics.online=true", "dynamics.batch=32"]),
    ("trainer_shb_polyak", BASE, ['dynamics.solver="trainer"', 'dynamics.method="shb_polyak"',
                                  "dynamics.gamma=2.0", "dynamics.batch=25"]),
    ("nc_minibatch", NC, []),
    ("fused_online_replicated", BASE, ["dynamics.online=true", "dynamics.batch=4",
                                       "dynamics.N=700"]),
    ("single_stream_minibatch", BASE, ['dynamics.noise_stream="single"', "dynamics.batch=40"]),
    ("low_memory_sweep_relu", BASE, ['model.memory="low"', 'model.activation="relu"',
                                     "data.n=1500", "data.d=12"]),
    ("kept_tiles_sweep", BASE, ["data.n=1500", "data.d=12"]),
    ("kept_tiles_sweep_float32", BASE, ["data.n=1500", "data.d=12",
                                        'dynamics.precision="float32"']),
]

#: module constants of :mod:`mfpde.models.readout` set while a case runs: ``memory = "auto"``
#: takes the sweep from 1000 particles on and keeps the tiles of the first of its sample blocks
#: (float64: blocks of 504 samples, 600 kept at most; float32: blocks of 768, 1200 kept at most),
#: evaluating the others again
PATCHES = {"kept_tiles_sweep": {"LOW_MEMORY_N": 1000, "KEEP_STATE": 600 / 13},
           "kept_tiles_sweep_float32": {"LOW_MEMORY_N": 1000, "KEEP_STATE": 600 / 13}}


COMPARE = """
[compare]
name = "split reference"
method = "noisy_sgd"
batch = 8
widths = [8, 24]
seeds = [0, 5]
dts = [0.05, 0.1]
beta = 50.0
T = 0.2
n_records = 2
test_n = 32
figure = false
[compare.model]
kind = "two_layer"
d = 3
[compare.data]
kind = "teacher_student"
n = 40
d = 3
k_star = 2
seed = 0
[compare.reference]
N = 3000
dt = 0.05
[compare.fit]
x = "N"
quantity = "coupling_rms"
n_boot = 50
"""

#: (name, overrides of :data:`COMPARE`): noisy SGD whose networks share the reference's batches
#: and Brownian increments (the coarser step through the accumulated increments), the single
#: stream, heavy ball (gathered velocities), online samples, NC with W, and networks wider than
#: rank 0's rows (their rows gathered from several ranks every step)
COMPARES = [
    ("noisy_sgd", []),
    ("noisy_sgd_single_stream", ['compare.reference.noise_stream="single"']),
    ("shb_full_batch", ['compare.method="shb"', "compare.gamma=2.0", "compare.batch=0",
                        "compare.beta=inf", "compare.dts=[0.05]"]),
    ("sgd_online", ['compare.method="sgd"', 'compare.sampling="online"', "compare.beta=inf",
                    'compare.reference.batch="full"']),
    ("nc_noisy", ['compare.model={kind="nc", p=3, d=5}', 'compare.data={kind="well_separated", '
                  'q=3, m=6, d=5, seed=0}', "compare.widths=[16]"]),
    ("wide_networks", ["compare.widths=[16, 2000]"]),
]



def _report(rank, bad, ok) -> int:
    """Rank 0 prints ``DIFFERENT`` and the differences ``bad`` (exit code 1), or ``ok`` (0);
    the other ranks print nothing and return 0."""
    if rank != 0:
        return 0
    if bad:
        print("DIFFERENT\n" + "\n".join(bad), flush=True)
        return 1
    print(ok, flush=True)
    return 0

def digest(path, volatile=VOLATILE) -> dict:
    """SHA-256 of every dataset and the value of every attribute of a run file, apart from the
    ``volatile`` attributes and the output path in the stored config."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                a = np.asarray(obj[()])
                out[name] = hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode()
                                           + a.tobytes()).hexdigest()
            for k, v in obj.attrs.items():
                if k in volatile:
                    continue
                if k == "config":
                    v = "\n".join(line for line in str(v).splitlines()
                                  if not line.startswith("path = "))
                out[f"{name}@{k}"] = str(v)
        visit("/", f)
        f.visititems(visit)
    return out


def differences(a: dict, b: dict) -> list[str]:
    return [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _run(text, overrides, path, comm, threads, patch=None):
    import numba

    import mfpde.models.readout as readout
    from mfpde.config import parse_config
    from mfpde.runner import run
    numba.set_num_threads(threads)
    cfg = parse_config(text, list(overrides) + ["output.overwrite=true"])
    saved = {k: getattr(readout, k) for k in patch or {}}
    try:
        for k, v in (patch or {}).items():
            setattr(readout, k, v)
        if patch:
            _check_kept(cfg)
        run(cfg, path, quiet=True, comm=comm)
    finally:
        for k, v in saved.items():
            setattr(readout, k, v)


def _check_kept(cfg):
    """A case of :data:`PATCHES` runs the sweep and keeps some but not all of its blocks."""
    from mfpde.models import make_model
    prec = cfg.dynamics.precision
    d, n = cfg.data.params["d"], cfg.data.params["n"]
    m = make_model(**cfg.model.make_kwargs(d, 1), precision=prec)
    N = cfg.dynamics.N
    isz = 4 if prec == "float32" else 8
    blk, kept = m.block_size(n, N, isz), m.kept_samples(N, 1, isz)
    assert m.low_memory(N) and blk <= kept < min(2 * blk, n), (blk, kept)


def contract(out: Path) -> int:
    from mpi4py import MPI
    world = MPI.COMM_WORLD
    size, rank = world.Get_size(), world.Get_rank()
    assert size > 1, f"the contract needs several ranks, COMM_WORLD has {size}"
    max_threads = int(os.environ.get("NUMBA_NUM_THREADS", "1"))
    bad = []
    for name, text, sets in CASES:
        for R in range(1, size + 1):
            sub = world.Split(0 if rank < R else MPI.UNDEFINED, rank)
            if sub != MPI.COMM_NULL:
                assert sub.Get_size() == R
                threads = 1 + (R % 2) * (max_threads - 1)      # R odd: all threads, even: 1
                _run(text, sets, out / f"{name}_R{R}.h5", sub, threads, PATCHES.get(name))
                sub.Free()
            world.Barrier()
        if rank == 0:
            ref = None
            for threads in sorted({1, max_threads}):
                p = out / f"{name}_serial_T{threads}.h5"
                _run(text, sets, p, None, threads, PATCHES.get(name))
                ref = ref or digest(p)
                if differences(ref, digest(p)):
                    bad.append(f"{name}: one process, {threads} threads: "
                               f"{differences(ref, digest(p))[:5]}")
            for R in range(1, size + 1):
                diff = differences(ref, digest(out / f"{name}_R{R}.h5"))
                if diff:
                    bad.append(f"{name}: R = {R}: {diff[:5]}")
        world.Barrier()
    return _report(rank, bad, f"OK {len(CASES)} cases identical on R = 1..{size} ranks and in "
                              f"one process (threads 1..{max_threads})")


def resume(out: Path) -> int:
    from mpi4py import MPI
    world = MPI.COMM_WORLD
    size, rank = world.Get_size(), world.Get_rank()
    assert size > 1, f"resume with a changed rank count needs 2 ranks or more, got {size}"
    bad = []
    for name, text, sets in CASES[2:5]:
        half = [*sets, "dynamics.steps=12"]
        path = out / f"{name}_resumed.h5"
        sub = world.Split(0 if rank < size - 1 else MPI.UNDEFINED, rank)
        if sub != MPI.COMM_NULL:
            _run(text, half, path, sub, 1)                 # steps 0..12 on R - 1 ranks
            sub.Free()
        world.Barrier()
        from mfpde.config import parse_config
        from mfpde.runner import run
        run(parse_config(text, [*sets, "output.overwrite=true"]), path, resume=True,
            quiet=True, comm=world)                        # steps 12..24 on R ranks
        if rank == 0:
            straight = out / f"{name}_straight.h5"
            _run(text, sets, straight, None, 1)
            diff = differences(digest(straight), digest(path))
            if diff:
                bad.append(f"{name}: {diff[:5]}")
        world.Barrier()
    return _report(rank, bad, f"OK resumed on {size} ranks after {size - 1} ranks: identical "
                              f"to one uninterrupted process")


def fail(out: Path) -> int:
    from mpi4py import MPI

    from mfpde.dynamics import LangevinSolver
    world = MPI.COMM_WORLD
    if world.Get_rank() == 1:
        step = LangevinSolver.step

        def failing(self, n=1, t_end=float("inf")):
            if self.k >= 5:
                raise RuntimeError("injected failure on this rank")
            step(self, n, t_end)
        LangevinSolver.step = failing
    _run(BASE, ["dynamics.steps=100000"], out / "fail.h5", world, 1)
    print("the run did not fail", flush=True)
    return 3


def _compare(overrides, path, comm, splits: list):
    from mfpde import coupling
    from mfpde.config import parse_config
    from mfpde.runner import run

    init = coupling.CoupledDriver.__init__

    def noting(self, ref, *args, **kw):
        splits.append(bool(getattr(ref, "split", False)))
        init(self, ref, *args, **kw)
    coupling.CoupledDriver.__init__ = noting
    try:
        run(parse_config(COMPARE, list(overrides) + ["output.overwrite=true"]), path,
            quiet=True, comm=comm)
    finally:
        coupling.CoupledDriver.__init__ = init


def compare(out: Path) -> int:
    from mpi4py import MPI
    world = MPI.COMM_WORLD
    size, rank = world.Get_size(), world.Get_rank()
    assert size > 1, f"the contract needs several ranks, COMM_WORLD has {size}"
    volatile = VOLATILE | {"seconds"}
    bad = []
    for name, sets in COMPARES:
        for R in range(2, size + 1):
            sub = world.Split(0 if rank < R else MPI.UNDEFINED, rank)
            if sub != MPI.COMM_NULL:
                splits: list = []
                _compare(sets, out / f"{name}_R{R}.h5", sub, splits)
                if not (splits and all(splits)):
                    bad.append(f"{name}: R = {R}: the reference was not split ({splits})")
                sub.Free()
            world.Barrier()
        if rank == 0:
            one = out / f"{name}_serial.h5"
            _compare(sets, one, None, [])
            ref = digest(one, volatile)
            for R in range(2, size + 1):
                diff = differences(ref, digest(out / f"{name}_R{R}.h5", volatile))
                if diff:
                    bad.append(f"{name}: R = {R}: {diff[:5]}")
        world.Barrier()
    bad = [b for part in world.gather(bad) or [] for b in part]
    return _report(rank, bad, f"OK {len(COMPARES)} comparisons identical with the reference "
                              f"split over R = 2..{size} ranks and in one process")


if __name__ == "__main__":
    mode, out = sys.argv[1], Path(sys.argv[2])
    sys.exit({"contract": contract, "resume": resume, "fail": fail,
              "compare": compare}[mode](out))
