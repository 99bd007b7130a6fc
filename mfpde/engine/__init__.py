"""The stepping engine: the driver protocol, one controller, trackers on schedules.

- :mod:`mfpde.engine.protocol`: what every driver implements (``step``, ``k``, ``t``, ``dt``,
  ``state_dict``, ``load_state_dict``, ``fields``, ``last_risk``);
- :mod:`mfpde.engine.controller`: :class:`Controller` runs any driver with trackers;
- :mod:`mfpde.engine.trackers`: series, snapshots, checkpoints, finiteness, progress,
  wall-clock limit, steady state, callbacks; :class:`MemorySink` for runs kept in memory.
"""
from .controller import Controller, NumericalError, RunInfo, StopFlag, StopRun
from .protocol import FIELDS, Driver, check_driver, shows
from .trackers import (EACH_EVENT, CallbackTracker, CheckpointTracker, FinitenessTracker,
                       Interval, MemorySink, ProgressTracker, SeriesTracker, SnapshotTracker,
                       SteadyStateTracker, Tracker, WallClockTracker, every)

__all__ = ["Controller", "NumericalError", "RunInfo", "StopFlag", "StopRun", "FIELDS", "Driver",
           "check_driver", "shows", "EACH_EVENT", "CallbackTracker", "CheckpointTracker",
           "FinitenessTracker", "Interval", "MemorySink", "ProgressTracker", "SeriesTracker",
           "SnapshotTracker", "SteadyStateTracker", "Tracker", "WallClockTracker", "every"]
