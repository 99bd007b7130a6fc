"""The thread pool that runs particle chunks concurrently.

The chunk kernels (:mod:`mfpde.kernels.readout`) release the GIL, and so do NumPy's ufuncs and
BLAS calls, so Python threads run them in parallel. ``T = numba.get_num_threads()``
(``NUMBA_NUM_THREADS`` sets it) threads share the work: the calling thread and ``T - 1`` pool
workers; with one thread, or one task, tasks run inline.
Results never depend on the number of workers: each task owns its outputs.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

_lock = threading.Lock()
_pool = None
_pool_size = 0


def num_threads() -> int:
    import numba
    return int(numba.get_num_threads())


def _get_pool(size):
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != size:
            if _pool is not None:
                _pool.shutdown(wait=True)
            _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="mfpde")
            _pool_size = size
        return _pool


def run_tasks(fn, n_tasks: int) -> None:
    """Call ``fn(c)`` for ``c in range(n_tasks)``, concurrently when there are several threads:
    this thread and ``T - 1`` pool workers take the next task index until none is left (one
    hand-off per worker, not per task). Exceptions propagate."""
    T = num_threads()
    if T <= 1 or n_tasks <= 1 or threading.current_thread().name.startswith("mfpde"):
        for c in range(n_tasks):
            fn(c)
        return
    lock = threading.Lock()
    nxt = [0]

    def work():
        while True:
            with lock:
                c = nxt[0]
                nxt[0] += 1
            if c >= n_tasks:
                return
            fn(c)

    futures = [_get_pool(T - 1).submit(work) for _ in range(min(T, n_tasks) - 1)]
    try:
        work()
    finally:
        for f in futures:
            f.result()


def run_pipelined(fn, n_tasks: int, produce, ahead: int = 2) -> None:
    """Call ``fn(c, produce(c))`` for ``c in range(n_tasks)``: ``produce`` runs in this thread in
    order (e.g. draws from a random generator), ``fn`` on the pool, with at most ``ahead``
    products waiting, so their memory stays that of a few tasks."""
    T = num_threads()
    if T <= 1 or n_tasks <= 1 or threading.current_thread().name.startswith("mfpde"):
        for c in range(n_tasks):
            fn(c, produce(c))
        return
    pool = _get_pool(T - 1)
    pending = []
    for c in range(n_tasks):
        item = produce(c)
        pending.append(pool.submit(fn, c, item))
        while len(pending) > ahead:
            pending.pop(0).result()
    for f in pending:
        f.result()
