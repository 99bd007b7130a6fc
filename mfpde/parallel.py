r"""One run on many MPI ranks (mpi4py): particles split in fixed blocks, fixed-order reductions.

``mpiexec -n R mfpde run CONFIG.toml -o OUT.h5`` runs one particle run on ``R`` ranks; the file
is bitwise the one a single process writes, for every ``R`` and every thread count (docs/hpc.md).

**Layout** (:class:`Layout`). The particles are split in the fixed chunks of the gradient pass,
:func:`~mfpde.kernels.readout.chunk_bounds` ``(N)`` — their number ``C`` depends on ``N`` only
(1 below 1024 particles, 2 to 8 up to :data:`~mfpde.kernels.readout.CHUNK_GROUP`, then 8 per
``CHUNK_GROUP`` particles). Rank ``r`` of ``R`` holds the contiguous chunks
``[floor(r C / R), floor((r + 1) C / R))`` and their rows ``[lo_r, hi_r)`` of every
per-particle array (particles, velocities, cached forces); ranks beyond ``C`` hold none.

**One step** (:class:`Partition`). Per block of samples each rank computes its chunks' partial
features ``H^{(c)}`` (``n_b x p``), every rank receives all ``C`` of them (``MPI_Allgatherv``,
:meth:`Partition.allgather_chunks`) and sums them in chunk order ``c = 0, 1, ..., C - 1`` — the
order of the single-process pass — so the residual, the risk, ``grad_W`` and every particle's
force are bitwise those of one process. Small replicated state (``W``, the run's generator,
mini-batch permutations, online samples) is computed identically on every rank; Numba threads
and the chunk thread pool work inside each rank as in a single process.

**Randomness.** With ``dynamics.noise_stream = "blocks"`` (the default of ``mfpde run``) every
chunk has its own noise generator (:func:`mfpde.dynamics.base.noise_seed`), so a rank draws only
its chunks' noise. The initial particles come from the run's generator: every rank draws all of
them (in pieces) and keeps its rows. The ``"single"`` stream of files of schema version 1 also
runs split (each rank draws all ``N * D`` numbers of a step and keeps its rows), so such files
resume on any number of ranks, bitwise, at the cost of drawing the whole noise on every rank.

**Rank 0 writes** (:class:`Team`, :class:`DistributedDriver`). Every rank runs the controller
over the same steps; at an event (observation, snapshot, checkpoint, the start and the end) rank
0 runs the trackers on a :class:`DistributedDriver` whose ``fields()`` / ``state_dict()`` gather
the full arrays from all ranks (``MPI_Gatherv``) while the other ranks serve these requests
(:meth:`Team.on_root`); ``load_state_dict`` scatters a full checkpoint, so a run resumes on any
number of ranks. Rank 0's verdict (continue, stop, a numerical failure, a full disk, ...) is
broadcast, so every rank ends the same way. Between chunks of steps the ranks agree on the
signal flag (SIGINT / SIGTERM on any rank), on a tracker's stop and on the next chunk size
(:meth:`Team.agree`), so all stop at the same step and rank 0 writes the checkpoint. An
unexpected exception on any rank prints the rank and its traceback and aborts the whole job
(``MPI_Abort``, :meth:`Team.abort`).

mpi4py is imported only when a communicator is used: a serial run never imports it.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any, Callable

import numpy as np

from .dynamics.base import CHUNK_ROWS, PARTICLE_ROWS
from .engine.controller import NumericalError, StopRun
from .kernels.readout import chunk_bounds

__all__ = ["Layout", "Partition", "Team", "DistributedDriver", "launched_size", "world",
           "auto_comm", "agreed", "mark_agreed", "SPLIT_DRIVERS", "ROW_FIELDS"]

#: drivers (``dynamics.solver``) that run split over ranks
SPLIT_DRIVERS = ("langevin", "kinetic", "trainer")
#: fields of :meth:`~mfpde.engine.protocol.Driver.fields` with one row per particle
ROW_FIELDS = frozenset({"theta", "r"})

#: environment variables that give the number of processes of an MPI launch
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE",
              "MPI_LOCALNRANKS")


def launched_size() -> int:
    """Number of processes of the MPI launch this process belongs to, from the launcher's
    environment (``mpiexec`` of MPICH / Intel MPI / Open MPI / MVAPICH, ``srun``); 1 when not
    launched by MPI. ``MFPDE_MPI=0`` forces 1 (serial), ``MFPDE_MPI=1`` asks MPI itself."""
    flag = os.environ.get("MFPDE_MPI", "").lower()
    if flag in ("0", "false", "no"):
        return 1
    if flag in ("1", "true", "yes"):
        return world().Get_size()
    for var in _SIZE_VARS:
        v = os.environ.get(var)
        if v and v.isdigit():
            return int(v)
    if "PMIX_RANK" in os.environ:        # srun --mpi=pmix sets the rank, not always the size
        return world().Get_size()
    return 1


#: environment variables that give this process's rank in an MPI launch
_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK")


def launched_rank() -> int:
    """Rank of this process in its MPI launch, from the launcher's environment (0 when not
    launched by MPI, or with ``MFPDE_MPI=0``); no MPI call."""
    if os.environ.get("MFPDE_MPI", "").lower() in ("0", "false", "no"):
        return 0
    for var in _RANK_VARS:
        v = os.environ.get(var)
        if v and v.isdigit():
            return int(v)
    return 0


def world():
    """``MPI.COMM_WORLD`` (imports mpi4py; ``ImportError`` names the extra to install)."""
    try:
        from mpi4py import MPI
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("this process was launched by MPI but mpi4py is not installed: "
                          "pip install 'mfpde[mpi]'") from exc
    return MPI.COMM_WORLD


def auto_comm():
    """``COMM_WORLD`` when this process is one of several of an MPI launch, else None."""
    return world() if launched_size() > 1 else None


def mark_agreed(exc: BaseException) -> BaseException:
    """Mark an exception as raised alike on every rank (the run ends normally, no abort)."""
    try:
        exc._mfpde_agreed = True  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover
        pass
    return exc


def agreed(exc: BaseException) -> bool:
    """Whether ``exc`` was raised alike on every rank (:func:`mark_agreed`)."""
    return bool(getattr(exc, "_mfpde_agreed", False))


def _pack(exc: BaseException) -> tuple:
    d = {k: v for k, v in getattr(exc, "__dict__", {}).items() if k != "_mfpde_agreed"}
    return (type(exc), exc.args, d)


def _unpack(packed) -> BaseException:
    cls, args, d = packed
    exc = cls.__new__(cls)
    exc.args = args
    if isinstance(exc, OSError) and len(args) >= 2:
        exc = cls(*args)
    exc.__dict__.update(d)
    return mark_agreed(exc)


def _mpi():
    from mpi4py import MPI
    return MPI


def _dtype(arr: np.ndarray):
    from mpi4py.util.dtlib import from_numpy_dtype
    return from_numpy_dtype(arr.dtype)


# --------------------------------------------------------------------------------------------
# the layout
# --------------------------------------------------------------------------------------------

class Layout:
    """Fixed chunks of ``N`` particles (:func:`~mfpde.kernels.readout.chunk_bounds`) and the
    contiguous range of chunks of each of ``size`` ranks (module docstring).

    Attributes: ``N``, ``size``, ``bounds`` (C+1,), ``C``, ``chunks`` (``[(c0, c1)]`` per rank),
    ``rows`` (``[(lo, hi)]`` per rank).
    """

    def __init__(self, N: int, size: int):
        if not isinstance(N, (int, np.integer)) or N < 1:
            raise ValueError(f"N must be an integer >= 1, got {N!r}")
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size!r}")
        self.N, self.size = int(N), int(size)
        self.bounds = chunk_bounds(self.N)
        self.C = self.bounds.size - 1
        self.chunks = [(r * self.C // size, (r + 1) * self.C // size) for r in range(size)]
        self.rows = [(int(self.bounds[a]), int(self.bounds[b])) for a, b in self.chunks]

    def partition(self, rank: int, comm=None) -> "Partition":
        """The :class:`Partition` of ``rank`` (communicating over ``comm``)."""
        return Partition(self, rank, comm)

    def __repr__(self) -> str:
        return f"Layout(N={self.N}, C={self.C}, size={self.size})"


class Partition:
    """What one rank holds of a split run (the ``part`` of the model's gradient pass and of the
    particle drivers): chunks ``[c0, c1)``, rows ``[lo, hi)`` of the ``N`` particles.

    :meth:`allgather_chunks` is the one collective of a step (per block of samples). It counts
    what it moves: ``calls``, ``bytes_sent``, ``bytes_received`` and ``seconds`` (wall time in
    the collective, waiting for slower ranks included).
    """

    def __init__(self, layout: Layout, rank: int, comm=None):
        self.layout = layout
        self.rank = int(rank)
        self.comm = comm
        self.N, self.C = layout.N, layout.C
        self.c0, self.c1 = layout.chunks[self.rank]
        self.lo, self.hi = layout.rows[self.rank]
        self.calls = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.seconds = 0.0

    def reset_counters(self) -> None:
        self.calls, self.bytes_sent, self.bytes_received, self.seconds = 0, 0, 0, 0.0

    def allgather_chunks(self, parts: np.ndarray, nb: int) -> np.ndarray:
        """All ``C`` chunks' partial sums ``(C, nb, p)`` from this rank's ``parts[:, :nb]``
        (``(c1 - c0, >= nb, p)``), in chunk order."""
        send = np.ascontiguousarray(parts[:, :nb])
        if self.comm is None or self.layout.size == 1:
            return send
        p = send.shape[2]
        out = np.empty((self.C, nb, p))
        unit = nb * p
        counts = [(b - a) * unit for a, b in self.layout.chunks]
        displs = [a * unit for a, _ in self.layout.chunks]
        MPI = _mpi()
        t0 = time.perf_counter()
        self.comm.Allgatherv([send, MPI.DOUBLE], [out, (counts, displs), MPI.DOUBLE])
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        self.bytes_sent += send.nbytes
        self.bytes_received += out.nbytes - send.nbytes
        return out

    def head_is_local(self, n: int) -> bool:
        """Whether rank 0 holds the first ``n`` rows itself (no collective is needed for
        :meth:`gather_head`); the same answer on every rank."""
        return self.layout.size == 1 or n <= self.layout.rows[0][1]

    def gather_head(self, local: np.ndarray, n: int) -> np.ndarray | None:
        """Rows ``[0, n)`` of a per-particle array (this rank's rows ``local``,
        ``(hi - lo, ...)``) on rank 0 — a view of ``local`` when rank 0 holds them
        (:meth:`head_is_local`), else gathered from the ranks that hold them (collective);
        None on the other ranks. The coupled networks of ``mfpde compare`` take their initial
        particles and Gaussian increments from the first rows of a split reference this way."""
        if self.head_is_local(n):
            return local[:n] if self.rank == 0 else None
        trail = local.shape[1:]
        unit = int(np.prod(trail, dtype=np.int64)) if trail else 1
        take = [max(0, min(hi, n) - lo) for lo, hi in self.layout.rows]
        mine = np.ascontiguousarray(local[:take[self.rank]])
        dt = _dtype(mine)
        t0 = time.perf_counter()
        if self.rank == 0:
            out = np.empty((n, *trail), dtype=local.dtype)
            counts = [t * unit for t in take]
            displs = [min(lo, n) * unit for lo, _ in self.layout.rows]
            self.comm.Gatherv([mine, dt], [out, (counts, displs), dt], root=0)
        else:
            out = None
            self.comm.Gatherv([mine, dt], None, root=0)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        self.bytes_sent += mine.nbytes
        if out is not None:
            self.bytes_received += out.nbytes - mine.nbytes
        return out

    def __repr__(self) -> str:
        return (f"Partition(rank={self.rank}, chunks={self.c0}:{self.c1}, rows={self.lo}:"
                f"{self.hi}, N={self.N})")


# --------------------------------------------------------------------------------------------
# the team of ranks
# --------------------------------------------------------------------------------------------

class Team:
    """The ranks of one run over ``comm`` (module docstring): agreement between chunks of steps,
    sections that rank 0 runs while the others serve its requests, the abort on failure.

    ``expected``: exception types that end a run normally (a bad input, a numerical failure, a
    full disk, a signal, a tracker's stop); raised on rank 0 in a section they are raised alike
    on every rank (:func:`agreed`). Any other exception aborts the job.
    """

    root = 0

    def __init__(self, comm, expected: tuple = ()):
        self.comm = comm
        self.rank = int(comm.Get_rank())
        self.size = int(comm.Get_size())
        self.expected = tuple(expected) + (StopRun, NumericalError)
        self.in_section = False
        self.server: Callable | None = None

    @property
    def is_root(self) -> bool:
        return self.rank == self.root

    def bcast(self, obj=None):
        return self.comm.bcast(obj, root=self.root)

    # ------------------------------------------------------------------ agreement
    def agree(self, signum: int, chunk: int, reason: str | None) -> tuple[int, int, str | None]:
        """One collective between chunks of steps: the largest signal number seen by any rank
        (0: none), the smallest proposed chunk size, and rank 0's stop reason (or None): rank 0
        runs the trackers, so its trackers' polls (a wall-clock limit) decide for every rank."""
        vals = self.comm.allgather((int(signum or 0), int(chunk), reason))
        sig = max(v[0] for v in vals)
        n = min(v[1] for v in vals)
        return sig, n, vals[self.root][2]

    def outcome(self, exc: BaseException | None) -> None:
        """End every rank the way rank 0 ended (``exc``: its exception or None): the others
        raise rank 0's exception, or return when it returned."""
        if self.is_root:
            self.bcast(None if exc is None else _pack(exc))
            if exc is not None:
                raise mark_agreed(exc)
            return
        packed = self.bcast()
        if packed is not None:
            raise _unpack(packed)

    def collective(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` on every rank and agree on success: if it raised on some rank, every
        rank raises the first failing rank's exception (an expected one; otherwise the job is
        aborted)."""
        try:
            result, err = fn(), None
        except BaseException as exc:  # noqa: BLE001 - sent to the other ranks
            result, err = None, exc
        packed = None if err is None else (_pack(err) if isinstance(err, self.expected)
                                           else "unexpected")
        outcomes = self.comm.allgather(packed)
        first = next((o for o in outcomes if o is not None), None)
        if first is None:
            return result
        if err is not None and not isinstance(err, self.expected):
            self.abort(err)
        if first == "unexpected":
            # another rank aborts the job; wait for it
            self.comm.Barrier()
            raise RuntimeError("another rank failed")  # pragma: no cover
        if err is not None:
            raise mark_agreed(err)
        raise _unpack(first)

    def on_root(self, fn: Callable[[], Any], share: bool = False) -> Any:
        """Rank 0 runs ``fn()`` while the other ranks serve its requests (``self.server``, the
        :class:`DistributedDriver` gathers); then rank 0's verdict is broadcast. Returns
        ``fn()``'s result on rank 0 (on every rank with ``share``), None elsewhere. An expected
        exception of ``fn`` is raised on every rank; any other aborts the job."""
        if self.is_root:
            self.in_section = True
            try:
                result = fn()
            except BaseException as exc:  # noqa: BLE001
                if not isinstance(exc, self.expected):
                    self.abort(exc)
                self.in_section = False
                self.bcast(("done", _pack(exc)))
                raise mark_agreed(exc)
            finally:
                self.in_section = False
            self.bcast(("done", None))
            return self.bcast(result) if share else result
        while True:
            cmd = self.bcast()
            if cmd[0] == "done":
                if cmd[1] is not None:
                    raise _unpack(cmd[1])
                return self.bcast() if share else None
            if self.server is None:  # pragma: no cover - a protocol error
                raise RuntimeError(f"rank {self.rank}: request {cmd[0]!r} with no server")
            self.server(cmd)

    # ------------------------------------------------------------------ failure
    def abort(self, exc: BaseException) -> None:
        """Print this rank's traceback (once, to the original stderr) and abort the job."""
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        err = sys.__stderr__ or sys.stderr
        try:
            err.write(f"mfpde: rank {self.rank} of {self.size} failed; aborting the job\n{text}")
            err.flush()
        finally:
            self.comm.Abort(1)

    def guard(self):
        """Context manager: an exception that is not :func:`agreed` aborts the job."""
        team = self

        class _Guard:
            def __enter__(self):
                return team

            def __exit__(self, typ, exc, tb):
                if exc is not None and not agreed(exc):
                    team.abort(exc)
                return False

        return _Guard()


# --------------------------------------------------------------------------------------------
# the driver of one rank
# --------------------------------------------------------------------------------------------

class DistributedDriver:
    """The driver protocol (:mod:`mfpde.engine.protocol`) for one rank of a split run.

    Wraps the rank's particle driver ``local`` (built with the rank's :class:`Partition`, or
    holding every particle when it does not split, e.g. the fused small-batch path: then the
    run is replicated on every rank). ``step`` steps the local driver (the collectives of a step
    are inside its gradient pass). Inside a section of rank 0 (:meth:`Team.on_root`),
    ``fields()``, ``state_dict()`` and ``load_state_dict()`` on rank 0 gather / scatter the full
    arrays (the other ranks serve); elsewhere ``fields()`` gives the local views. Other
    attributes are the local driver's (``theta`` and ``r`` are the gathered fields on rank 0
    inside a section, so observables that read the driver see every particle).
    """

    def __init__(self, local, team: Team):
        self.local = local
        self.team = team
        self.part = getattr(local, "part", None)
        self._fields = None
        team.server = self.serve

    # ------------------------------------------------------------------ protocol
    @property
    def k(self) -> int:
        return self.local.k

    @property
    def t(self) -> float:
        return self.local.t

    @property
    def dt(self):
        return self.local.dt

    @property
    def last_risk(self) -> float:
        return self.local.last_risk

    @property
    def split(self) -> bool:
        """True when the particles are split over the ranks (False: replicated)."""
        return self.part is not None

    def step(self, n: int = 1, t_end: float = float("inf")) -> None:
        self._fields = None
        self.local.step(n)

    def _requesting(self) -> bool:
        return self.team.is_root and self.team.in_section and self.team.size > 1

    def fields(self) -> dict:
        if not self._requesting():
            return self.local.fields()
        if self._fields is None:
            self.team.bcast(("fields",))
            self._fields = self._gather(self.local.fields(), fields=True)
        return self._fields

    def state_dict(self) -> dict:
        if not self._requesting():
            return self.local.state_dict()
        self.team.bcast(("state",))
        return self._gather(self.local.state_dict(), fields=False)

    def load_state_dict(self, state: dict) -> None:
        self._fields = None
        if not self._requesting():
            self.local.load_state_dict(state)
            return
        self.team.bcast(("load",))
        self._scatter(state)

    def forward(self, X: np.ndarray) -> np.ndarray:
        """Predictions of the read-out model at all ``N`` particles on ``X`` (n, q): every rank
        computes its chunks' partial features, summed in chunk order (the bits of one
        process). Collective: called by rank 0 inside a section (the others join through
        :meth:`serve`), or by every rank."""
        if self._requesting():
            self.team.bcast(("forward", X))
        return self._forward(X)

    def _forward(self, X):
        loc = self.local
        if self.part is None:
            return loc.model.forward(loc.theta, X, loc.W)
        return loc.model.forward(loc.theta, X, loc.W, part=self.part)

    def head(self, n: int) -> dict | None:
        """Rows ``[0, n)`` of the per-particle fields (``theta``, and ``r`` when the driver
        has velocities) on rank 0 (:meth:`Partition.gather_head`; None on the other ranks);
        collective as :meth:`forward`."""
        if self._requesting():
            self.team.bcast(("head", n))
        return self._head(n)

    def _head(self, n):
        f = self.local.fields()
        out = {}
        for key in sorted(ROW_FIELDS & set(f)):
            a = f[key] if self.part is None else self.part.gather_head(f[key], n)
            if a is not None:
                out[key] = a[:n]
        return out if self.team.is_root else None

    def __getattr__(self, name):
        if name in ROW_FIELDS and self._requesting():
            f = self.fields()
            if name in f:
                return f[name]
        return getattr(self.local, name)

    # ------------------------------------------------------------------ serving rank 0
    def serve(self, cmd) -> None:
        """Answer rank 0's request ``cmd`` (on the other ranks)."""
        kind = cmd[0]
        if kind == "fields":
            self._gather(self.local.fields(), fields=True)
        elif kind == "state":
            self._gather(self.local.state_dict(), fields=False)
        elif kind == "load":
            self._fields = None
            self._scatter(None)
        elif kind == "forward":
            self._forward(cmd[1])
        elif kind == "head":
            self._head(cmd[1])
        else:  # pragma: no cover - a protocol error
            raise RuntimeError(f"unknown request {kind!r}")

    def _row_kind(self, key: str, fields: bool) -> str | None:
        if self.part is None:
            return None
        if fields:
            return "particle" if key in ROW_FIELDS else None
        if key in PARTICLE_ROWS:
            return "particle"
        if key in CHUNK_ROWS:
            return "chunk"
        return None

    def _counts(self, kind: str) -> list[tuple[int, int]]:
        lay = self.part.layout
        return lay.rows if kind == "particle" else lay.chunks

    def _gather(self, local: dict, fields: bool):
        """Collective: rank 0 gets the full dict (its own values for replicated entries and
        every rank's rows for per-particle / per-chunk arrays), the others None."""
        team = self.team
        root = team.is_root
        out = {} if root else None
        for key, value in local.items():
            kind = self._row_kind(key, fields)
            if kind is None or not isinstance(value, np.ndarray):
                if root:
                    out[key] = value
                continue
            value = np.ascontiguousarray(value)
            trail = value.shape[1:]
            unit = int(np.prod(trail, dtype=np.int64)) if trail else 1
            ranges = self._counts(kind)
            counts = [(b - a) * unit for a, b in ranges]
            displs = [a * unit for a, _ in ranges]
            total = ranges[-1][1]
            dt = _dtype(value)
            if root:
                full = np.empty((total, *trail), dtype=value.dtype)
                team.comm.Gatherv([value, dt], [full, (counts, displs), dt], root=team.root)
                out[key] = full
            else:
                team.comm.Gatherv([value, dt], None, root=team.root)
        return out

    def _scatter(self, state: dict | None) -> None:
        """Collective: rank 0 passes a full state, every rank loads its rows of it."""
        team = self.team
        root = team.is_root
        if self.part is None:                       # replicated: everyone loads everything
            self.local.load_state_dict(team.bcast(state if root else None))
            return
        plan = None
        if root:
            plan = []
            for key, value in state.items():
                kind = self._row_kind(key, fields=False)
                if kind is not None and isinstance(value, np.ndarray) and value.ndim >= 1:
                    plan.append((key, kind, value.dtype.str, value.shape[1:], None))
                else:
                    plan.append((key, None, None, None, value))
        plan = team.bcast(plan)
        local = {}
        for key, kind, dtype, trail, value in plan:
            if kind is None:
                local[key] = value
                continue
            ranges = self._counts(kind)
            unit = int(np.prod(trail, dtype=np.int64)) if trail else 1
            counts = [(b - a) * unit for a, b in ranges]
            displs = [a * unit for a, _ in ranges]
            a, b = ranges[self.part.rank]
            mine = np.empty((b - a, *trail), dtype=np.dtype(dtype))
            dt = _dtype(mine)
            if root:
                full = np.ascontiguousarray(state[key])
                if full.shape[0] != ranges[-1][1]:
                    raise ValueError(f"checkpoint {key} has {full.shape[0]} rows, the run has "
                                     f"{ranges[-1][1]}")
                team.comm.Scatterv([full, (counts, displs), dt], [mine, dt], root=team.root)
            else:
                team.comm.Scatterv(None, [mine, dt], root=team.root)
            local[key] = mine
        self.local.load_state_dict(local)
