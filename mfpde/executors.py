"""Executors of independent tasks: this process, a pool of local processes, or an MPI pool.

:func:`task_pool` is how a job made of independent runs (the units of ``mfpde compare``, the
cases of ``mfpde validate``) hands them out; ``mfpde sweep run`` uses the same two executors
for its points (:mod:`mfpde.sweep`):

- ``"local"`` with ``jobs = 1``: every task in this process, in order;
- ``"local"`` with ``jobs = K > 1``: ``K`` worker processes on this machine (started with
  ``spawn``, so no thread pool or open file is inherited), each with ``cpu_count // K``
  compute threads;
- ``"mpi"``: under ``mpiexec -n R``, rank 0 hands the tasks to the ``R - 1`` other ranks
  (``mpi4py.futures.MPICommExecutor``); in a single process ``MPIPoolExecutor`` spawns ``jobs``
  workers. Needs the ``mpi`` extra.

A task is ``fn(*args)`` with a module-level ``fn`` and picklable arguments and result. Results
are the same whichever executor runs them: every task of mfpde is seeded by its own arguments
and the numerics do not depend on the thread count.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Sequence

from .errors import ConfigError

__all__ = ["EXECUTORS", "THREAD_VARS", "TaskPool", "task_pool", "check_executor"]

#: executor names
EXECUTORS = ("local", "mpi")
#: environment variables that set the compute threads of a worker process
THREAD_VARS = ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def check_executor(executor: str, jobs: int) -> None:
    """One-line :class:`ConfigError` for an unknown executor or a bad process count."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor!r}: expected one of "
                          + ", ".join(map(repr, EXECUTORS)))
    if not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"-j {jobs}: expected a number of processes >= 1")


def _init_worker(threads: int | None) -> None:
    """Start of a local worker process: one process per task, never split over MPI ranks;
    Ctrl-C (sent to the whole process group) is left to the parent, which ends the workers;
    ``threads`` compute threads (set before NumPy's BLAS or Numba start, and again through
    their run-time controls in case one was already loaded)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the parent's to handle
    os.environ["MFPDE_MPI"] = "0"
    if threads is None:
        return
    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    try:
        import numba
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except ImportError:  # pragma: no cover
        pass
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads)
    except ImportError:  # pragma: no cover
        pass


class TaskPool:
    """Runs tasks on one executor; see the module docstring. Made by :func:`task_pool`.

    Attributes
    ----------
    root : bool
        False on the worker ranks of the MPI executor, which served the tasks and have nothing
        more to do when :func:`task_pool` returns them the pool.
    workers : int
        Processes that run the tasks.
    kind : str
        ``"local"`` or ``"mpi"``.
    in_process : bool
        The tasks run in this process, in order.
    """

    def __init__(self, executor, workers: int, root: bool = True, kind: str = "local"):
        self._ex = executor
        self.workers = workers
        self.root = root
        self.kind = kind
        self.in_process = executor is None

    def imap(self, fn: Callable, tasks: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        """``(i, fn(*tasks[i]))`` for every task, in the order they finish (in order on one
        process). An exception of a task is raised when its turn comes; the tasks not yet
        started are then cancelled."""
        if self._ex is None:
            for i, args in enumerate(tasks):
                yield i, fn(*args)
            return
        from concurrent.futures import as_completed
        futures = {self._ex.submit(fn, *args): i for i, args in enumerate(tasks)}
        try:
            for f in as_completed(futures):
                yield futures[f], f.result()
        finally:
            for f in futures:
                f.cancel()


@contextmanager
def task_pool(executor: str = "local", jobs: int = 1) -> Iterator[TaskPool]:
    """A :class:`TaskPool` of ``executor`` (``"local"`` or ``"mpi"``) with ``jobs`` processes
    (local; the MPI executor in one process). On the worker ranks of ``mpiexec`` the pool is
    returned with ``root = False`` after the root has finished."""
    check_executor(executor, jobs)
    if executor == "local":
        if jobs == 1:
            yield TaskPool(None, 1)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        threads = max(1, (os.cpu_count() or 1) // jobs)
        ex = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,))
        try:
            yield TaskPool(ex, jobs)
        except BaseException:
            # a signal or an error of the job: the workers' tasks are abandoned, not awaited
            procs = list((getattr(ex, "_processes", None) or {}).values())
            ex.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                proc.terminate()
            raise
        ex.shutdown(wait=True)
        return
    try:
        from mpi4py import MPI
        from mpi4py.futures import MPICommExecutor, MPIPoolExecutor
    except ImportError:
        raise ConfigError("--executor mpi needs mpi4py: pip install 'mfpde[mpi]'") from None
    comm = MPI.COMM_WORLD
    if comm.Get_size() > 1:
        with MPICommExecutor(comm, root=0) as ex:
            yield TaskPool(ex, comm.Get_size() - 1, root=ex is not None, kind="mpi")
    else:
        with MPIPoolExecutor(max_workers=jobs) as ex:
            yield TaskPool(ex, jobs, kind="mpi")


def imap_tasks(fn: Callable, tasks: Iterable[tuple], executor: str = "local",
               jobs: int = 1) -> Iterator[tuple[int, Any]]:
    """Shorthand: ``task_pool(executor, jobs).imap(fn, tasks)`` (nothing on MPI worker ranks)."""
    with task_pool(executor, jobs) as pool:
        if pool.root:
            yield from pool.imap(fn, list(tasks))
