r"""The controller: runs any driver with trackers on schedules.

The loop (py-pde's ``Controller`` with trackers is the model)::

    trackers.initialize(driver, info)             # e.g. observe and store step 0
    while not at the end:
        advance the driver to the next event (in chunks; polls between chunks)
        for each tracker due now: tracker.measure(driver, info)   # compute, write nothing
        for each tracker due now: tracker.handle(driver, info)    # check, write; may stop
    trackers.finalize(driver, info)               # final checkpoint, status, progress line

An *event* is a step (or a time, for drivers with adaptive steps) at which some tracker's
:class:`~mfpde.engine.trackers.Interval` is due, or the end of the run. Between events the driver
is stepped in chunks whose size adapts so that one chunk takes about :attr:`Controller.chunk_seconds`
(the particle drivers give bitwise the same result however their steps are split); between chunks
the controller polls the trackers that ask for it (progress, wall-clock limit) and the stop flag
(SIGINT / SIGTERM, see :class:`StopFlag`).

A tracker stops a run by raising :class:`StopRun` (steady state reached, wall-clock limit); the
controller then finalizes every tracker with ``info.status = "stopped"`` and returns. A signal
gives ``"interrupted"``; a :class:`NumericalError` (finiteness tracker) or any other exception
gives ``"failed"`` and is re-raised after the trackers were finalized.

A run split over MPI ranks (``team``, a :class:`mfpde.parallel.Team`) runs the same loop on every
rank over the same steps: the trackers' hooks (initialize, the events, finalize) run on rank 0
while the other ranks serve its gathers (:meth:`~mfpde.parallel.Team.on_root`), and at every chunk
boundary one collective agrees on the stop flag (a signal on any rank), on a stop raised by a
tracker's poll and on the next chunk size (:meth:`~mfpde.parallel.Team.agree`), so every rank
stops at the same step. An exception that is not raised alike on every rank is re-raised at once
(no finalization: the caller aborts the job).
"""
from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from .protocol import check_driver

__all__ = ["Controller", "RunInfo", "StopRun", "NumericalError", "StopFlag"]


class StopRun(Exception):
    """Raised by a tracker to end the run cleanly (``reason`` is stored as the run's message)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class NumericalError(RuntimeError):
    """A non-finite value appeared; ``step`` and ``quantity`` say where."""

    def __init__(self, message: str, step: int, quantity: str):
        super().__init__(message)
        self.step, self.quantity = step, quantity


class StopFlag:
    """SIGINT / SIGTERM set a flag; the controller finishes the current step and stops cleanly.

    Use as a context manager around :meth:`Controller.run` (signal handlers are installed only in
    the main thread). A second SIGINT while stopping raises ``KeyboardInterrupt``.
    """

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def _handler(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()

    def __bool__(self) -> bool:
        return self.signum is not None


@dataclass
class RunInfo:
    """What the controller tells the trackers.

    Attributes
    ----------
    n_steps : int or None
        Last step of the run (fixed-step drivers).
    t_end : float or None
        End time (drivers with adaptive steps, or a time-limited run).
    k_start : int
        Step at which this call of :meth:`Controller.run` started (> 0 on resume).
    values : dict
        Latest observed values (set by the series tracker; progress shows ``loss``).
    status : str
        ``"running"``, then ``"complete"``, ``"stopped"``, ``"interrupted"`` or ``"failed"``.
    reason : str
        Why the run ended early (tracker message, signal name, error).
    signum : int or None
        The signal that interrupted the run.
    started : float
        ``time.monotonic()`` at the start.
    last : bool
        True while the trackers handle the final event of the run.
    """

    n_steps: int | None = None
    t_end: float | None = None
    k_start: int = 0
    values: dict = field(default_factory=dict)
    status: str = "running"
    reason: str = ""
    signum: int | None = None
    started: float = field(default_factory=time.monotonic)
    last: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


class Controller:
    """Run ``driver`` to ``n_steps`` (or ``t_end``) with ``trackers``.

    Parameters
    ----------
    driver : a driver (:mod:`mfpde.engine.protocol`)
    trackers : iterable of :class:`~mfpde.engine.trackers.Tracker`
        Handled in this order at every event (measure phase, then handle phase).
    n_steps : int, optional
        Run until ``driver.k == n_steps``.
    t_end : float, optional
        Run until ``driver.t == t_end`` (fixed-``dt`` drivers: converted to steps,
        ``round(t_end / dt)``).
    stop : StopFlag, optional
        Signal flag polled between chunks (default: none).
    team : Team, optional
        The ranks of a run split over MPI (module docstring); None for one process.

    Exactly one of ``n_steps`` / ``t_end`` is given.
    """

    #: target wall time of one chunk of steps between polls
    chunk_seconds = 0.1
    #: largest chunk
    max_chunk = 1 << 16

    def __init__(self, driver, trackers: Iterable = (), *, n_steps: int | None = None,
                 t_end: float | None = None, stop: StopFlag | None = None, team=None):
        check_driver(driver)
        if (n_steps is None) == (t_end is None):
            raise ValueError("give exactly one of n_steps and t_end")
        self.driver = driver
        self.trackers = list(trackers)
        dt = driver.dt
        if t_end is not None and dt is not None:
            n_steps, t_end = int(round(float(t_end) / dt)), None
        if n_steps is not None:
            n_steps = int(n_steps)
            if n_steps < 0:
                raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        elif not math.isfinite(t_end):
            raise ValueError(f"t_end must be finite, got {t_end!r}")
        self.n_steps, self.t_end = n_steps, (None if t_end is None else float(t_end))
        self.stop = stop
        self.team = team
        self.info = RunInfo(self.n_steps, self.t_end)
        self._chunk = 1
        self._pending: str | None = None      # a poll's stop reason, to agree on (team)

    # ------------------------------------------------------------------ schedule
    def done(self) -> bool:
        d = self.driver
        if self.n_steps is not None:
            return d.k >= self.n_steps
        return d.t >= self.t_end

    def _next_event(self) -> tuple[float, float]:
        """``(k_next, t_next)``: the nearest step / time at which a tracker is due (inf if none)."""
        d = self.driver
        k_next = float(self.n_steps) if self.n_steps is not None else math.inf
        t_next = self.t_end if self.t_end is not None else math.inf
        for tr in self.trackers:
            iv = tr.interval
            if iv is None:
                continue
            k_next = min(k_next, iv.next_step(d.k))
            t_next = min(t_next, iv.next_time(d.t))
        return k_next, t_next

    def _due(self, tr, last: bool) -> bool:
        iv = tr.interval
        if iv is None:
            return False
        if last and iv.at_end:
            return True
        d = self.driver
        return iv.due(d.k, d.t)

    def _poll(self) -> None:
        for tr in self.trackers:
            if tr.polls:
                try:
                    tr.poll(self.driver, self.info)
                except StopRun as exc:
                    # taken before the next chunk: the trackers due at the step just reached
                    # (a series row, a snapshot) still act, so a resumed run misses nothing
                    if self._pending is None:
                        self._pending = exc.reason

    def _stopped(self) -> bool:
        """Whether to stop before the next chunk (a signal; a poll's stop raises
        :class:`StopRun`); with a team, the collective that agrees on the signal flag, a poll's
        stop and the chunk size."""
        if self.team is None:
            if self._pending is not None:
                reason, self._pending = self._pending, None
                raise StopRun(reason)
            return bool(self.stop)
        mine = self.stop.signum if self.stop is not None else None
        sig, chunk, reason = self.team.agree(mine or 0, self._chunk, self._pending)
        self._pending = None
        self._chunk = chunk
        if reason is not None:
            from ..parallel import mark_agreed
            raise mark_agreed(StopRun(reason))
        if sig:
            if self.stop is not None and self.stop.signum is None:
                self.stop.signum = sig
            return True
        return False

    def _section(self, fn) -> None:
        """Run the trackers' hooks ``fn()`` (on rank 0 of a team, the others serving it)."""
        if self.team is None:
            fn()
        else:
            self.team.on_root(fn)

    def _unshared(self, exc: BaseException) -> bool:
        """An exception of one rank only (a team; the caller aborts the job)."""
        if self.team is None:
            return False
        from ..parallel import agreed
        return not agreed(exc)

    # ------------------------------------------------------------------ stepping
    def _advance(self, k_target: float, t_target: float) -> bool:
        """Step to ``k_target`` / ``t_target``; False if stopped by a signal first."""
        d = self.driver
        fixed = d.dt is not None
        while True:
            if fixed:
                left = k_target - d.k
                if math.isfinite(t_target):
                    left = min(left, math.ceil((t_target - d.t) / d.dt - 1e-9))
                if left <= 0:
                    return True
            else:
                if d.t >= t_target or d.k >= k_target:
                    return True
                left = k_target - d.k
            if self._stopped():
                return False
            n = int(min(left, self._chunk))
            t0 = time.perf_counter()
            d.step(n, t_end=t_target) if not fixed else d.step(n)
            spent = time.perf_counter() - t0
            # adapt the chunk to about chunk_seconds of work
            if spent < 0.5 * self.chunk_seconds and n == self._chunk:
                self._chunk = min(self.max_chunk, 2 * self._chunk)
            elif spent > 2 * self.chunk_seconds and self._chunk > 1:
                self._chunk = max(1, self._chunk // 2)
            self._poll()

    # ------------------------------------------------------------------ the run
    def run(self) -> RunInfo:
        """Run to the end (or until a tracker, a signal or an error stops it); returns the
        :class:`RunInfo` with the final ``status``."""
        d, info = self.driver, self.info
        info.k_start = d.k
        info.started = time.monotonic()
        try:
            self._section(lambda: [tr.initialize(d, info) for tr in self.trackers])
            while not self.done():
                k_next, t_next = self._next_event()
                if not self._advance(k_next, t_next):
                    break
                last = self.done()
                info.last = last
                due = [tr for tr in self.trackers if self._due(tr, last)]
                if due:
                    self._section(lambda: self._event(due))
            if self.stop and not self.done():
                info.status = "interrupted"
                info.signum = self.stop.signum
                info.reason = f"{signal.Signals(self.stop.signum).name} at step {d.k}"
            else:
                info.status = "complete"
        except StopRun as exc:
            info.status, info.reason = "stopped", exc.reason
        except KeyboardInterrupt as exc:
            if self._unshared(exc):
                raise
            info.status, info.reason = "interrupted", f"SIGINT at step {d.k} (no checkpoint written)"
            info.signum = signal.SIGINT
            self._finalize(abort=True)
            raise
        except BaseException as exc:
            if self._unshared(exc):
                raise
            info.status = "failed"
            info.reason = (str(exc) if isinstance(exc, NumericalError)
                           else f"{type(exc).__name__}: {exc}")
            self._finalize(abort=True)
            raise
        self._finalize()
        return info

    def _event(self, due) -> None:
        d, info = self.driver, self.info
        for tr in due:
            tr.measure(d, info)
        for tr in due:
            tr.handle(d, info)

    def _finalize(self, abort: bool = False) -> None:
        def fin():
            for tr in self.trackers:
                try:
                    tr.finalize(self.driver, self.info)
                except Exception:
                    if not abort:
                        raise
        self._section(fin)


def finite_fields(driver, step: int, since: int | None = None) -> None:
    """Raise :class:`NumericalError` if a field of ``driver`` holds NaN/inf."""
    where = f"at step {step}" if since is None or since >= step else \
        f"between steps {since} and {step}"
    for name, arr in driver.fields().items():
        if arr is not None and not np.isfinite(arr).all():
            bad = int(np.count_nonzero(~np.isfinite(arr)))
            raise NumericalError(f"non-finite {name} ({bad} entries) {where}", step, name)
