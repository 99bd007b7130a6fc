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


def run_tasks(fn, n_tasks: int, produce=None) -> None:
    """Call ``fn(c)`` — or ``fn(c, produce(c))`` — for ``c in range(n_tasks)``, concurrently when
    there are several threads: this thread and ``T - 1`` pool workers take the next task index
    until none is left (one hand-off per worker, not per task). ``produce`` runs under a lock
    together with the claim of the index, so it is called in order ``c = 0, 1, ...`` (e.g. draws
    from one random generator give the same numbers as one big draw) and at most ``T`` of its
    results are alive at a time. Exceptions propagate."""
    T = num_threads()
    if T <= 1 or n_tasks <= 1 or threading.current_thread().name.startswith("mfpde"):
        for c in range(n_tasks):
            fn(c) if produce is None else fn(c, produce(c))
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
                item = None if produce is None else produce(c)
            fn(c) if produce is None else fn(c, item)

    futures = [_get_pool(T - 1).submit(work) for _ in range(min(T, n_tasks) - 1)]
    try:
        work()
    finally:
        for f in futures:
            f.result()
