r"""Trackers: what happens at the events of a run (py-pde's trackers are the model).

A :class:`Tracker` has an :class:`Interval` (when it is due) and four hooks, all optional:

``initialize(driver, info)``  before the first step (e.g. observe and store step 0)
``measure(driver, info)``     at a due event, first phase: compute, write nothing
``handle(driver, info)``      at a due event, second phase: check, write, or raise
                              :class:`~mfpde.engine.controller.StopRun`
``poll(driver, info)``        between chunks of steps, when ``polls`` is True (cheap checks)
``finalize(driver, info)``    after the loop, whatever the status

Trackers here: :class:`SeriesTracker` (observables -> a series sink), :class:`SnapshotTracker`
(fields -> snapshots), :class:`CheckpointTracker` (complete state), :class:`FinitenessTracker`,
:class:`ProgressTracker`, :class:`WallClockTracker` (stop cleanly before a batch job's limit),
:class:`SteadyStateTracker` (stop when observed quantities stop changing),
:class:`CallbackTracker` (user function). A *sink* is anything with the writer methods of
:class:`~mfpde.store.RunStore` that the tracker uses (``append_series``, ``append_snapshot``,
``append_fields``, ``write_checkpoint``); :class:`MemorySink` keeps everything in memory.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TextIO

import numpy as np

from .controller import NumericalError, StopRun, finite_fields

__all__ = ["Interval", "Tracker", "SeriesTracker", "SnapshotTracker", "CheckpointTracker",
           "FinitenessTracker", "ProgressTracker", "WallClockTracker", "SteadyStateTracker",
           "CallbackTracker", "MemorySink", "every", "EACH_EVENT"]


# --------------------------------------------------------------------------------------------
# schedules
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    """When a tracker is due: every ``steps`` steps (``k % steps == 0``) and/or every ``time``
    units of the driver's time (``t`` crosses a multiple of ``time``), plus at the end of the run
    when ``at_end``. ``each_event``: at every event some other tracker causes (a tracker that
    checks what the others just did, e.g. finiteness)."""

    steps: int = 0
    time: float = 0.0
    at_end: bool = True
    each_event: bool = False

    def next_step(self, k: int) -> float:
        return (k // self.steps + 1) * self.steps if self.steps > 0 else math.inf

    def next_time(self, t: float) -> float:
        if self.time <= 0:
            return math.inf
        n = math.floor(t / self.time + 1e-9) + 1
        return n * self.time

    def due(self, k: int, t: float) -> bool:
        if self.each_event:
            return True
        if self.steps > 0 and k % self.steps == 0:
            return True
        if self.time > 0:
            r = t / self.time
            return abs(r - round(r)) < 1e-9
        return False


def every(steps: int = 0, time: float = 0.0, at_end: bool = True) -> Interval | None:
    """An :class:`Interval`, or None when both ``steps`` and ``time`` are 0 and not ``at_end``."""
    if steps <= 0 and time <= 0 and not at_end:
        return None
    return Interval(int(steps), float(time), bool(at_end))


#: due at every event of the run (and at the end)
EACH_EVENT = Interval(each_event=True)


class Tracker:
    """Base class (see the module docstring); subclasses override the hooks they need."""

    interval: Interval | None = None
    polls = False

    def initialize(self, driver, info) -> None:
        pass

    def measure(self, driver, info) -> None:
        pass

    def handle(self, driver, info) -> None:
        pass

    def poll(self, driver, info) -> None:
        pass

    def finalize(self, driver, info) -> None:
        pass


# --------------------------------------------------------------------------------------------
# a sink in memory
# --------------------------------------------------------------------------------------------

class MemorySink:
    """Series, snapshots and the last checkpoint of a run, in memory.

    ``series`` maps ``step``, ``t`` and every quantity to lists (``arrays()`` gives arrays);
    ``snapshots`` is a list of ``(k, t, {field: array copy})``; ``checkpoint`` the last state.
    """

    def __init__(self):
        self.series: dict[str, list] = {"step": [], "t": []}
        self.snapshots: list[tuple[int, float, dict]] = []
        self.checkpoint: dict | None = None
        self.checkpoint_step: int | None = None

    def append_series(self, step: int, t: float, values: Mapping[str, float]) -> None:
        self.series["step"].append(int(step))
        self.series["t"].append(float(t))
        for k, v in values.items():
            self.series.setdefault(k, []).append(float(v))

    def append_fields(self, step: int, t: float, fields: Mapping[str, np.ndarray]) -> None:
        self.snapshots.append((int(step), float(t), {k: np.array(v) for k, v in fields.items()}))

    def write_checkpoint(self, state: Mapping[str, Any], step: int, t: float) -> None:
        self.checkpoint = dict(state)
        self.checkpoint_step = int(step)

    def arrays(self) -> dict[str, np.ndarray]:
        """The series as arrays."""
        return {k: np.asarray(v) for k, v in self.series.items()}


# --------------------------------------------------------------------------------------------
# the trackers
# --------------------------------------------------------------------------------------------

class SeriesTracker(Tracker):
    """Evaluate ``observe(driver) -> {name: float}`` (an :class:`~mfpde.observables.Observers`)
    at step 0 and on the interval, check the values are finite, and append them to ``sink``
    (``append_series(k, t, values)``). The latest values are in ``info.values``.

    ``initial``: observe at the start (a new run; False on resume, where step ``k`` is stored).
    """

    def __init__(self, observe: Callable, sink, interval: Interval, *, initial: bool = True):
        self.observe, self.sink, self.interval = observe, sink, interval
        self.initial = initial
        self.values: dict[str, float] | None = None

    @staticmethod
    def check_values(values: Mapping[str, float], k: int, nan_ok=()) -> None:
        """Raise :class:`~mfpde.engine.controller.NumericalError` for a non-finite value (a NaN
        of a quantity in ``nan_ok`` means "not defined here" and is recorded)."""
        for name, v in values.items():
            if name in nan_ok and math.isnan(v):
                continue
            if not math.isfinite(v):
                raise NumericalError(f"{name} = {v} at step {k}", k, name)

    def initialize(self, driver, info) -> None:
        if self.initial:
            values = self.observe(driver)
            self.check_values(values, driver.k, getattr(self.observe, "may_be_nan", ()))
            self.sink.append_series(driver.k, driver.t, values)
            info.values.update(values)

    def measure(self, driver, info) -> None:
        self.values = self.observe(driver)

    def handle(self, driver, info) -> None:
        values, self.values = self.values, None
        if values is None:
            return
        self.check_values(values, driver.k, getattr(self.observe, "may_be_nan", ()))
        self.sink.append_series(driver.k, driver.t, values)
        info.values.update(values)


class SnapshotTracker(Tracker):
    """Store ``driver.fields()`` (``select`` picks and sub-samples them) on the interval through
    ``write(k, t, fields)`` (default ``sink.append_fields``)."""

    def __init__(self, sink, interval: Interval, *, select: Callable | None = None,
                 write: Callable | None = None, initial: bool = False):
        self.sink, self.interval = sink, interval
        self.select = select
        self.write = write if write is not None else sink.append_fields
        self.initial = initial

    def _store(self, driver) -> None:
        fields = driver.fields()
        if self.select is not None:
            fields = self.select(fields)
        self.write(driver.k, driver.t, fields)

    def initialize(self, driver, info) -> None:
        if self.initial:
            self._store(driver)

    def handle(self, driver, info) -> None:
        self._store(driver)


class CheckpointTracker(Tracker):
    """Write ``driver.state_dict()`` through ``sink.write_checkpoint(state, step=k, t=t)`` on the
    interval, at the start (``initial``) and when the run ends early (stopped or interrupted) at
    a step not yet checkpointed. ``last_step`` is the step of the last checkpoint written."""

    def __init__(self, sink, interval: Interval, *, initial: bool = True):
        self.sink, self.interval, self.initial = sink, interval, initial
        self.last_step: int | None = None

    def _write(self, driver) -> None:
        self.sink.write_checkpoint(driver.state_dict(), step=driver.k, t=driver.t)
        self.last_step = driver.k

    def initialize(self, driver, info) -> None:
        if self.initial:
            self._write(driver)
        else:
            self.last_step = driver.k

    def handle(self, driver, info) -> None:
        self._write(driver)

    def finalize(self, driver, info) -> None:
        if info.status in ("stopped", "interrupted") and driver.k != self.last_step:
            self._write(driver)


class FinitenessTracker(Tracker):
    """At every event, and when a run is interrupted: every field of the driver and its
    ``last_risk`` are finite, else :class:`~mfpde.engine.controller.NumericalError` (the run
    fails; the last good checkpoint is kept)."""

    interval = EACH_EVENT

    def __init__(self):
        self.since: int | None = None

    def initialize(self, driver, info) -> None:
        finite_fields(driver, driver.k)
        self.since = driver.k

    def handle(self, driver, info) -> None:
        k = driver.k
        finite_fields(driver, k, since=self.since)
        # nan means "no risk defined" (grid drivers); with finite fields an overflow shows as inf
        risk = getattr(driver, "last_risk", float("nan"))
        if risk is not None and math.isinf(risk):
            raise NumericalError(f"risk = {risk} at step {k - 1}", k - 1, "risk")
        self.since = k

    def finalize(self, driver, info) -> None:
        if info.status == "interrupted":
            finite_fields(driver, driver.k, since=self.since)


class ProgressTracker(Tracker):
    """A tqdm bar on a terminal, a log line every ``log_every`` seconds otherwise, nothing when
    ``quiet``. Shows the step (or time), the last observed ``loss`` (else the driver's
    ``last_risk``), elapsed time and an estimate of the remaining time."""

    polls = True

    def __init__(self, total: int | float, *, quiet: bool = False, log_every: float = 10.0,
                 stream: TextIO | None = None, header: str | None = None, unit: str = "step"):
        self.total, self.quiet, self.log_every = total, quiet, float(log_every)
        self.stream = stream if stream is not None else sys.stderr
        self.header, self.unit = header, unit
        self.bar = None
        self.interval = EACH_EVENT

    def _pos(self, driver):
        return driver.k if self.unit == "step" else driver.t

    def _loss(self, driver, info):
        v = info.values.get("loss")
        if v is not None:
            return v
        r = getattr(driver, "last_risk", None)
        return r if r is not None and math.isfinite(r) else None

    def message(self, text: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def initialize(self, driver, info) -> None:
        now = time.monotonic()
        self.t0 = self.last_log = now
        self.last_ui = 0.0
        self.p0 = self.p = self._pos(driver)
        if self.quiet:
            return
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm
            self.bar = tqdm(total=self.total, initial=self.p0, file=self.stream, unit=self.unit,
                            dynamic_ncols=True, mininterval=0.2)
        if self.header and self.p0 < self.total:
            self.message(self.header)

    def poll(self, driver, info, force: bool = False) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        pos = self._pos(driver)
        loss = self._loss(driver, info)
        if self.bar is not None:
            if force or now - self.last_ui > 0.2:
                self.bar.update(pos - self.p)
                self.p = pos
                if loss is not None:
                    self.bar.set_postfix_str(f"loss={loss:.4g}", refresh=False)
                self.last_ui = now
            return
        self.p = pos
        if force or now - self.last_log >= self.log_every:
            self.last_log = now
            self._log(pos, loss)

    def handle(self, driver, info) -> None:
        self.poll(driver, info)

    def _log(self, pos, loss) -> None:
        elapsed = time.monotonic() - self.t0
        done = pos - self.p0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - pos) / rate if rate > 0 else float("nan")
        pct = 100.0 * pos / self.total if self.total else 100.0
        loss_s = f" loss={loss:.4g}" if loss is not None else ""
        where = f"step {pos}/{self.total}" if self.unit == "step" else \
            f"t = {pos:.4g}/{self.total:.4g}"
        print(f"{where} ({pct:.0f}%){loss_s} elapsed {elapsed:.1f}s eta {eta:.1f}s",
              file=self.stream, flush=True)

    def finalize(self, driver, info) -> None:
        if self.quiet:
            return
        pos = self._pos(driver)
        loss = self._loss(driver, info)
        if self.bar is not None:
            self.bar.update(pos - self.p)
            if loss is not None:
                self.bar.set_postfix_str(f"loss={loss:.4g}", refresh=False)
            self.bar.close()
            self.bar = None
        else:
            self._log(pos, loss)


class WallClockTracker(Tracker):
    """Stop the run cleanly (status ``stopped``, a checkpoint is written by the checkpoint
    tracker) when less than ``margin`` seconds are left of ``limit`` seconds of wall time
    counted from the start of the run, so that a batch job ends with its state saved."""

    polls = True

    def __init__(self, limit: float, margin: float = 0.0):
        if not (limit > 0):
            raise ValueError(f"wall-clock limit must be > 0 seconds, got {limit!r}")
        self.limit, self.margin = float(limit), float(margin)
        self.interval = EACH_EVENT

    fired = False

    def poll(self, driver, info) -> None:
        if info.elapsed >= self.limit - self.margin:
            self.fired = True
            raise StopRun(f"wall-clock limit {self.limit:g} s reached at step {driver.k}")

    handle = poll


class SteadyStateTracker(Tracker):
    """Stop (status ``stopped``) when every quantity in ``quantities`` (observed values in
    ``info.values``, so a series tracker must record them) changed by less than
    ``rtol * |value| + atol`` between two consecutive checks ``patience`` times in a row."""

    def __init__(self, quantities, interval: Interval, *, rtol: float = 1e-6, atol: float = 0.0,
                 patience: int = 1):
        self.quantities = list(quantities)
        self.interval = Interval(interval.steps, interval.time, at_end=False)
        self.rtol, self.atol, self.patience = float(rtol), float(atol), int(patience)
        self.prev: dict[str, float] | None = None
        self.count = 0

    def handle(self, driver, info) -> None:
        missing = [q for q in self.quantities if q not in info.values]
        if missing:
            raise ValueError(f"steady-state check needs observed quantities {missing}")
        now = {q: info.values[q] for q in self.quantities}
        if self.prev is not None:
            steady = all(abs(now[q] - self.prev[q]) <= self.rtol * abs(now[q]) + self.atol
                         for q in self.quantities)
            self.count = self.count + 1 if steady else 0
            if self.count >= self.patience:
                raise StopRun(f"steady state at step {driver.k}: "
                              + ", ".join(f"{q} = {now[q]:.6g}" for q in self.quantities))
        self.prev = now


class CallbackTracker(Tracker):
    """Call ``fn(driver, info)`` on the interval; returning True stops the run (``stopped``)."""

    def __init__(self, fn: Callable, interval: Interval, *, initial: bool = False):
        self.fn, self.interval, self.initial = fn, interval, initial

    def initialize(self, driver, info) -> None:
        if self.initial and self.fn(driver, info):
            raise StopRun(f"stopped by callback at step {driver.k}")

    def handle(self, driver, info) -> None:
        if self.fn(driver, info):
            raise StopRun(f"stopped by callback at step {driver.k}")
