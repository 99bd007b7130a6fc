"""Run a configuration: config -> data + model -> driver -> controller with trackers -> HDF5.

:func:`run` builds every object from a validated :class:`~mfpde.config.Config` *before* the
output file is created (bad input never leaves a file behind), observes step 0, creates the file
(under a temporary name, renamed once it holds step 0 and a checkpoint) and hands the driver to
the :class:`~mfpde.engine.Controller` with these trackers, in this order at every event:

* finiteness: every field of the driver (particles, ``W``, velocities, densities) and the risk of
  the last step are finite, else :class:`NumericalError` (status ``failed``, the last good
  checkpoint is kept);
* series: every ``observe.every`` steps (and at the last step): observables -> ``/series``;
* snapshots: every ``observe.snapshot_every`` steps: the driver's fields -> ``/snapshots``
  (particles, sub-sampled to ``observe.snapshot_particles``) or ``/grid`` (densities);
* checkpoints: every ``output.checkpoint_every`` steps (and at step 0 and the end): the complete
  driver state -> ``/checkpoint`` (replaced atomically);
* progress: a bar on a terminal, log lines otherwise.

SIGINT / SIGTERM finish the current step, write a checkpoint, set status ``interrupted`` and raise
:class:`RunInterrupted` (exit code 130 / 143 in the CLI).

``resume=True`` reopens the file, restores the checkpoint with ``driver.load_state_dict``, drops
series rows and snapshots recorded after it and continues; the result is bitwise identical to an
uninterrupted run because every random draw comes from the driver's generator, whose state is
part of the checkpoint, and the observables draw no random numbers. A file of schema version 1
(no ``dynamics.noise_stream`` in its config) resumes with the single noise stream it was
written with.

Under MPI (``mpiexec -n R mfpde run ...``, or ``comm=`` an mpi4py communicator) the particles
are split over the ranks (:mod:`mfpde.parallel`): every rank builds its part of the driver and
runs the controller; rank 0 alone writes the file, from the full state gathered at the events;
the file is bitwise the one of a single process, for every ``R``. Ranks other than 0 of an MPI
launch write nothing to stdout / stderr (an error on any rank prints its traceback and aborts
the job).
"""

from __future__ import annotations

import copy
import os
import signal
import sys
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Iterable, TextIO

import numpy as np

from .config import Config, ConfigError, load_config, parse_config
from .build import Built, _snapshot_index, build, build_config_only  # noqa: F401
from .engine import (CheckpointTracker, Controller, FinitenessTracker, NumericalError,
                     ProgressTracker, SeriesTracker, SnapshotTracker, SteadyStateTracker,
                     StopFlag, WallClockTracker, every)
from .store import (SCHEMA_VERSION, SINGLE_STREAM_SCHEMA, RunStore, StoreError, StoreFullError,
                    _h5_reason, in_use, is_locked_error)

__all__ = ["run", "record", "build", "Built", "NumericalError", "RunInterrupted", "EXIT_CODES"]

#: Exit codes of ``mfpde run``.
EXIT_CODES = {"ok": 0, "numerical": 1, "bad_input": 2, "SIGINT": 130, "SIGTERM": 143}


class RunInterrupted(Exception):
    """The run stopped on SIGINT / SIGTERM, or at its wall-clock limit (``signum`` None), after
    writing a checkpoint."""

    #: exit code of a run stopped at its wall-clock limit (EX_TEMPFAIL: continue it later)
    TIME_LIMIT_EXIT = 75

    def __init__(self, signum: int | None, step: int, path: str, reason: str = ""):
        what = f"interrupted by {signal.Signals(signum).name}" if signum is not None else \
            (reason or f"stopped at the wall-clock limit at step {step}")
        super().__init__(f"{what}; checkpoint at step {step} written to {path} "
                         f"(continue with --resume)")
        self.signum, self.step, self.path = signum, step, path

    @property
    def exit_code(self) -> int:
        return self.TIME_LIMIT_EXIT if self.signum is None else 128 + int(self.signum)


class CompareInterrupted(RunInterrupted):
    """A comparison job stopped on SIGINT / SIGTERM with ``kept`` finished units in ``path``."""

    def __init__(self, signum: int, path: str, kept: int):
        what = f"interrupted by {signal.Signals(signum).name}"
        Exception.__init__(self, f"{what}; {kept} finished units of the comparison kept in "
                           f"{path} (continue with --resume)" if kept else
                           f"{what} before a unit of the comparison finished; nothing written")
        self.signum, self.step, self.path, self.kept = signum, 0, path, kept


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------

def _resolve(config: Config | str | os.PathLike, overrides: Iterable[str]) -> Config:
    if isinstance(config, Config):
        overrides = list(overrides)
        if overrides:
            return parse_config(config.to_dict(), overrides)
        return copy.deepcopy(config)  # the run fills in fields; leave the caller's object alone
    return load_config(config, overrides)


_IGNORED_ON_RESUME = {("output", "path"), ("output", "overwrite"), ("dynamics", "steps"),
                      ("dynamics", "t_end"), ("observe", "log_every"),
                      ("output", "checkpoint_every"), ("output", "time_limit"),
                      ("output", "time_margin")}


def _config_diff(a: dict, b: dict, ignore=frozenset()) -> list[str]:
    out = []
    for sec in sorted(set(a) | set(b)):
        sa, sb = a.get(sec, {}), b.get(sec, {})
        for key in sorted(set(sa) | set(sb)):
            if (sec, key) in _IGNORED_ON_RESUME or (sec, key) in ignore:
                continue
            if sa.get(key) != sb.get(key):
                out.append(f"{sec}.{key}: {sa.get(key)!r} in the file, {sb.get(key)!r} given")
    return out


def run(config: Config | str | os.PathLike, out_path: str | os.PathLike | None = None,
        resume: bool = False, quiet: bool = False, overrides: Iterable[str] = (),
        stream: TextIO | None = None, comm="auto", executor: str | None = None,
        jobs: int = 1) -> Path | None:
    """Run a configuration and write the HDF5 run file; returns its path.

    Parameters
    ----------
    config : Config or path of a TOML file
    out_path : output file (default ``output.path`` of the config)
    resume : continue the run stored in ``out_path`` from its last checkpoint (a missing file
        starts a new run)
    quiet : no progress bar or log lines
    overrides : ``section.key=value`` strings applied on top of the config
    stream : where progress goes (default stderr)
    comm : ``"auto"`` (default: ``MPI.COMM_WORLD`` when this process is one of several of an
        MPI launch, else this process alone), an mpi4py communicator (the run is split over its
        ranks, :mod:`mfpde.parallel`; rank 0 writes the file), or None (this process alone)
    executor, jobs : where the units of a ``[compare]`` job run (:mod:`mfpde.executors`:
        ``"local"`` with ``jobs`` processes, or ``"mpi"``: under ``mpiexec`` rank 0 writes the
        file and the other ranks run units; they return None). Only for comparison jobs.

    Raises
    ------
    ConfigError : bad input (nothing written)
    NumericalError : NaN/inf during the run (status ``failed``, last good checkpoint kept)
    RunInterrupted : SIGINT/SIGTERM (status ``interrupted``, checkpoint written)
    """
    if executor is not None:
        return _executor_job(config, out_path, resume, quiet, overrides, stream, executor, jobs)
    if isinstance(comm, str) and comm == "auto":
        from .parallel import auto_comm
        comm = auto_comm()
        if comm is not None and comm.Get_rank() != 0:
            _silence()
    if comm is not None:
        return _run_ranks(config, out_path, resume, quiet, overrides, stream, comm)
    cfg = _resolve(config, overrides)
    if out_path is not None:
        cfg = cfg.replace(output={"path": os.fspath(out_path)})
    path = Path(cfg.output.path)
    out = stream if stream is not None else sys.stderr
    if cfg.job == "sweep":
        raise ConfigError("the configuration has a [sweep] section: run it with 'mfpde sweep "
                          "run CONFIG -d DIR' (mfpde.sweep), or remove [sweep] to run its base")
    exists = _check_output(path, resume, cfg.output.overwrite)
    if cfg.job == "compare":
        return _compare_job(cfg, path, quiet, stream, resume)

    # non-finite values are detected and reported by the finiteness tracker (NumericalError)
    with StopFlag() as stop, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _run(cfg, path, resume and exists, quiet, out, stop)


def _check_output(path: Path, resume: bool, overwrite: bool) -> bool:
    """Check the output path before any work (one-line :class:`ConfigError`); returns whether
    the file exists. An existing file is replaced only with ``overwrite`` and only when no other
    process has it open."""
    try:
        exists = path.exists()
        if exists and path.is_dir():
            raise ConfigError(f"output.path = {str(path)!r}: is a directory")
        if exists and not resume and not overwrite:
            raise ConfigError(f"output file {path} exists; continue it with --resume or replace "
                              f"it with --set output.overwrite=true")
        if exists and not resume and in_use(path):
            raise ConfigError(f"output file {path} is in use by another process (a run is "
                              f"writing it); it is not replaced")
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise ConfigError(f"output.path = {str(path)!r}: directory {str(parent)!r} does "
                              f"not exist")
        if not exists and not os.access(parent, os.W_OK):
            raise ConfigError(f"output.path = {str(path)!r}: directory {str(parent)!r} is not "
                              f"writable")
        os.stat(parent)
        if len(path.name.encode()) + len(".part") > os.pathconf(parent, "PC_NAME_MAX"):
            raise ConfigError(f"output.path: the file name {path.name[:40]!r}... is too long "
                              f"({len(path.name)} characters; this file system allows "
                              f"{os.pathconf(parent, 'PC_NAME_MAX') - len('.part')})")
    except OSError as exc:
        raise ConfigError(f"output.path = {str(path)[:80]!r}: {os.strerror(exc.errno)}"
                          if exc.errno else f"output.path: {exc}") from None
    return exists


def _executor_job(config, out_path, resume, quiet, overrides, stream, executor: str,
                  jobs: int) -> Path | None:
    """:func:`run` of a ``[compare]`` job whose units run on an executor; the worker ranks of
    the MPI executor return None once the root has finished."""
    from .executors import check_executor, task_pool
    check_executor(executor, jobs)
    with task_pool(executor, jobs) as pool:
        if not pool.root:
            return None
        cfg = _resolve(config, overrides)
        if cfg.job != "compare":
            raise ConfigError("--executor and -j hand out the units of a [compare] job; a run "
                              "is split over MPI ranks by 'mpiexec -n R mfpde run' and a sweep "
                              "has 'mfpde sweep run --executor'")
        if out_path is not None:
            cfg = cfg.replace(output={"path": os.fspath(out_path)})
        path = Path(cfg.output.path)
        _check_output(path, resume, cfg.output.overwrite)
        return _compare_job(cfg, path, quiet, stream, resume, pool)


class _RaiseOnSignal:
    """SIGINT and SIGTERM raise :class:`_Signalled` (main thread only) while a comparison runs:
    its units are short-lived and independent, so it stops at once and keeps its finished
    units rather than finishing the current one."""

    def __enter__(self):
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise _Signalled(signum)

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


class _Signalled(BaseException):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _compare_job(cfg: Config, path: Path, quiet: bool, stream, resume: bool = False,
                 pool=None, memory_checked: bool = False) -> Path:
    """A ``[compare]`` job (:func:`mfpde.compare.run_compare`) under the output rules of a run:
    built in ``OUT.h5.part`` and renamed when complete, so an old ``OUT.h5`` is replaced only by
    a complete file (and never one that another process has open).

    If the job stops (a signal, an error) after finishing some of its units (a seed and a group
    of step sizes), ``OUT.h5.part`` is kept and ``resume`` continues it without running them
    again (:class:`RunInterrupted` on a signal); otherwise the partial file is removed. The old
    ``OUT.h5`` is untouched either way."""
    from .build import check_memory
    from .compare import run_compare
    from .store import compare_units_done
    from .compare import unit_count
    from .coupling import CouplingInterrupted
    if not memory_checked:
        at_once = pool.workers if pool is not None and pool.kind == "local" else 1
        check_memory(cfg, copies=min(at_once, unit_count(cfg.compare)))  # units held at once
    partial = path.with_name(path.name + ".part")
    if partial.exists() and in_use(partial):
        raise ConfigError(f"{partial} is being written by another process; not started")
    if resume and not partial.exists() and path.exists():
        if compare_units_done(path) or not _complete_compare(path):
            raise ConfigError(f"{path}: not a complete comparison file; nothing to resume")
        if not quiet:
            print(f"mfpde: {path} is complete; nothing to resume", file=stream or sys.stdout)
        return path
    continuing = resume and partial.exists()
    if continuing and path.exists() and not cfg.output.overwrite:
        raise ConfigError(f"output file {path} exists: continuing {partial} would replace it "
                          f"(set output.overwrite = true)")
    if partial.exists() and not continuing and compare_units_done(partial) and not quiet:
        print(f"mfpde: starting over; the interrupted comparison in {partial} is replaced "
              f"(--resume continues it)", file=stream or sys.stdout, flush=True)
    finished = False
    # a split job stops at an agreed step (the ranks' StopFlag), any other at once
    on_signal = _RaiseOnSignal() if getattr(pool, "kind", None) != "split" else nullcontext()
    try:
        with on_signal, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            run_compare(cfg, partial, quiet=quiet, stream=stream, figure_path=path,
                        resume=continuing, pool=pool)
        finished = True
        if path.exists() and (not cfg.output.overwrite or in_use(path)):
            raise ConfigError(f"output file {path} appeared or was opened by another process "
                              f"while the comparison ran; it is not replaced (the result is in "
                              f"{partial})")
        os.replace(partial, path)
    except BaseException as exc:
        if finished:
            raise
        kept = compare_units_done(partial) if partial.exists() else 0
        if partial.exists() and not kept:
            partial.unlink()
        if isinstance(exc, (_Signalled, CouplingInterrupted)):
            raise CompareInterrupted(exc.signum, str(partial), kept) from None
        if kept and not isinstance(exc, (ConfigError, StoreError)):
            print(f"mfpde: {kept} finished units of the comparison kept in {partial} "
                  f"(continue with --resume)", file=sys.stderr, flush=True)
        raise
    return path


def _complete_compare(path: Path) -> bool:
    try:
        from .store import read_compare
        return read_compare(path)["attrs"].get("status") == "complete"
    except (OSError, ValueError, KeyError):
        return False


def _open_store(path: Path) -> RunStore:
    """Open a run file for resuming; one-line :class:`ConfigError` naming why it cannot be."""
    try:
        return RunStore.open(path)
    except (OSError, StoreError) as exc:
        msg = ("the file is in use by another process" if is_locked_error(exc)
               else _h5_reason(exc) if isinstance(exc, OSError) else str(exc))
        raise ConfigError(f"cannot resume {path}: {msg}") from None


def _open_resume(cfg: Config, path: Path) -> tuple[RunStore, Built]:
    """Open ``path`` for resuming and build the stored run (steps, output and logging options
    follow the command line)."""
    store = _open_store(path)
    try:
        built = _resume_build(cfg, path, store.config_text, _schema(store), build)
    except BaseException:
        store.close()
        raise
    return store, built


def _schema(store: RunStore) -> int:
    return int(store.f.attrs.get("schema_version", SCHEMA_VERSION))


def _stored_config(text: str, schema: int, path: Path) -> Config:
    """The stored config of a run file; files of schema version 1 drew their noise from the
    single stream (``dynamics.noise_stream = "single"``)."""
    stored = parse_config(text, name=f"{path} (stored config)")
    if schema <= SINGLE_STREAM_SCHEMA and stored.dynamics.solver in _STREAM_DRIVERS:
        stored = stored.replace(dynamics={"noise_stream": "single"})
    return stored


#: drivers with a noise stream (``dynamics.noise_stream``)
_STREAM_DRIVERS = ("langevin", "kinetic", "trainer")


def _resume_build(cfg: Config, path: Path, text: str, schema: int, make) -> Built:
    """Build the stored run with ``make(config)`` and check it against the given config; steps,
    output and logging options follow the command line."""
    stored = _stored_config(text, schema, path)
    built = make(stored)
    given = build_config_only(cfg)
    ignore = {("dynamics", "noise_stream")} if schema <= SINGLE_STREAM_SCHEMA else set()
    diff = _config_diff(stored.to_dict(), given.to_dict(), ignore)
    if diff:
        raise ConfigError(f"cannot resume {path}: the config differs from the stored "
                          f"one ({diff[0]})")
    # steps / t_end may be extended on resume; output options follow the command line
    stored = stored.replace(dynamics={"steps": cfg.dynamics.steps,
                                      "t_end": cfg.dynamics.t_end},
                            output=cfg.output, observe={"log_every": cfg.observe.log_every})
    built.n_steps = stored.dynamics.n_steps
    built.config = stored
    return built


def _snapshot_writer(store: RunStore, cfg: Config, driver):
    """Create the snapshot datasets for what ``driver`` shows (if not there yet) and return
    ``write(k, t, fields)``: particles (``theta``, ``r``, ``W``) sub-sampled to the
    snapshot index; a grid density in ``/grid``; any other fields (Pham–Nguyen weights, ...)
    under ``/snapshots/<name>``."""
    fields = driver.fields()
    if "theta" in fields:
        if "snapshots" not in store.f:
            W = fields.get("W")
            index = _snapshot_index(cfg) if cfg is not None else \
                np.arange(fields["theta"].shape[0], dtype=np.int64)
            store.init_snapshots(index, fields["theta"].shape[1],
                                 None if W is None else W.shape, velocities="r" in fields)
        idx = store.snapshot_index
        full = idx.size == fields["theta"].shape[0]

        def write(k, t, f):
            theta, r = f["theta"], f.get("r")
            if not full:
                theta = theta[idx]
                r = None if r is None else r[idx]
            store.append_snapshot(k, t, theta, f.get("W"), r=r)
        return write
    if "density" in fields:
        if "grid" not in store.f:
            g = driver.grid
            arrays = {}
            for i, (ax, ed) in enumerate(zip(g.axes, g.axis_edges)):
                arrays[f"axis{i}"], arrays[f"edges{i}"] = ax, ed
            arrays["density"] = fields["density"]
            store.init_grid(arrays)
        return lambda k, t, f: store.append_grid(k, t, f["density"])
    if "snapshots" not in store.f:
        store.init_fields({name: np.shape(a) for name, a in fields.items()})
    return store.append_fields


def _trackers(store: RunStore, built: Built, quiet: bool, out: TextIO, write_snapshot):
    """The trackers of a stored run, in the order they act at an event."""
    cfg, driver = built.config, built.driver
    trackers = [FinitenessTracker(),
                SeriesTracker(built.observers, store, every(cfg.observe.every), initial=False)]
    if cfg.observe.snapshot_every:
        trackers.append(SnapshotTracker(store, every(cfg.observe.snapshot_every),
                                        write=write_snapshot))
    ob = cfg.observe
    if ob.steady_quantities:
        trackers.append(SteadyStateTracker(ob.steady_quantities, every(ob.every),
                                           rtol=ob.steady_rtol, atol=ob.steady_atol,
                                           patience=ob.steady_patience))
    if cfg.output.time_limit > 0:
        trackers.append(WallClockTracker(cfg.output.time_limit,
                                         margin=min(cfg.output.time_margin,
                                                    0.5 * cfg.output.time_limit)))
    checkpoints = CheckpointTracker(store, every(cfg.output.checkpoint_every), initial=False)
    trackers.append(checkpoints)
    header = None
    what = ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}"
                     for k, v in (("N", getattr(driver, "N", None)), ("dt", driver.dt))
                     if v is not None) or "adaptive steps"
    if built.n_steps is not None:
        total, unit = built.n_steps, "step"
        if driver.k < built.n_steps:
            header = (f"mfpde: running {built.n_steps} steps from step {driver.k} ({what}) "
                      f"-> {store.path}")
    else:
        total, unit = built.t_end, "time"
        if driver.t < built.t_end:
            header = (f"mfpde: running to t = {built.t_end:g} from t = {driver.t:g} "
                      f"({type(driver).__name__}, {what}) -> {store.path}")
    trackers.append(ProgressTracker(total, quiet=quiet, log_every=cfg.observe.log_every,
                                    stream=out, header=header, unit=unit))
    return trackers, checkpoints


def _first_observation(driver, observers) -> dict[str, float]:
    """Observe step 0 and check it (before any file exists)."""
    values = observers(driver)
    FinitenessTracker().initialize(driver, None)
    SeriesTracker.check_values(values, driver.k, getattr(observers, "may_be_nan", ()))
    return values


def _start(store: RunStore, built: Built, write_snapshot, first: dict[str, float]) -> None:
    """Step 0 of a new run: series row, snapshot and checkpoint (the observation was made
    before the file existed)."""
    cfg, driver = built.config, built.driver
    store.append_series(driver.k, driver.t, first)
    if cfg.observe.snapshot_every:
        write_snapshot(driver.k, driver.t, driver.fields())
    store.write_checkpoint(driver.state_dict(), step=driver.k, t=driver.t)


def _run(cfg: Config, path: Path, resuming: bool, quiet: bool, out: TextIO,
         stop: StopFlag) -> Path:
    store = None
    if resuming:
        store, built = _open_resume(cfg, path)
    else:
        built = build(cfg)
    store, write_snapshot = _prepare(built, path, resuming, store)
    try:
        _control(store, built, quiet, out, stop, write_snapshot)
    except BaseException:
        store.close()
        raise
    store.close()
    return path


def _prepare(built: Built, path: Path, resuming: bool, store: RunStore | None):
    """A new run: observe step 0, create the file (``OUT.h5.part``, renamed once it holds step 0
    and a checkpoint); a resumed one: restore the checkpoint and drop what was recorded after
    it. Returns ``(store, write_snapshot)``; on failure the store is closed and a partial file
    removed."""
    driver, observers = built.driver, built.observers
    cfg = built.config
    partial: Path | None = None  # the file being created, until it is complete
    try:
        if not resuming:
            # the first observation is computed before the file exists (bad input: no file)
            first = _first_observation(driver, observers)
            # build the file under a temporary name and rename it once it holds step 0 and a
            # checkpoint: OUT.h5 never exists in a half-created state (it may be replaced
            # atomically when output.overwrite is set)
            partial = path.with_name(path.name + ".part")
            try:
                store = RunStore.create(partial, config_text=cfg.to_toml(),
                                        seed=cfg.dynamics.seed,
                                        quantities=cfg.observe.quantities, overwrite=True)
            except OSError as exc:
                partial = None
                raise ConfigError(f"cannot create output file {path}: "
                                  f"{_os_reason(exc)}") from None
            write_snapshot = _snapshot_writer(store, cfg, driver) if cfg.observe.snapshot_every \
                else None
            _start(store, built, write_snapshot, first)
            if path.exists() and (not cfg.output.overwrite or in_use(path)):
                raise ConfigError(f"output file {path} appeared or was opened by another "
                                  f"process while the run was starting; it is not replaced")
            os.replace(partial, path)
            store.path = str(path)
            partial = None
        else:
            ck = store.read_checkpoint()          # verified: a corrupt one is an error
            if ck is not None and built.n_steps is not None and \
                    int(ck["meta"].get("step", 0)) > built.n_steps:
                raise ConfigError(
                    f"dynamics.steps = {built.n_steps}: {path} has already run "
                    f"{ck['meta']['step']} steps; give at least that many to resume it")
            store._space(_checkpoint_bytes(ck), "resuming")
            store.set_attrs(config=cfg.to_toml())
            write_snapshot = _snapshot_writer(store, cfg, driver) if cfg.observe.snapshot_every \
                else None
            if ck is None:
                # killed before the first checkpoint: start again from step 0
                store.truncate(-1)
                _start(store, built, write_snapshot, _first_observation(driver, observers))
            else:
                driver.load_state_dict(ck["state"])
                store.truncate(driver.k)
            store.set_status("running")
    except BaseException:
        if store is not None:
            store.close()
        if partial is not None and partial.exists():
            partial.unlink()
        raise
    return store, write_snapshot


def _control(store: RunStore, built: Built, quiet: bool, out: TextIO, stop: StopFlag,
             write_snapshot, trackers=None, checkpoints=None, t_end=None, team=None) -> None:
    """Run the controller on the driver with the trackers of a stored run (default: those of
    :func:`_trackers`); set the status."""
    driver = built.driver
    if trackers is None:
        trackers, checkpoints = _trackers(store, built, quiet, out, write_snapshot)
        if built.n_steps is None:
            t_end = built.t_end
    ctl = Controller(driver, trackers, n_steps=None if t_end is not None else built.n_steps,
                     t_end=t_end, stop=stop, team=team)
    try:
        info = ctl.run()
    except StoreFullError as exc:
        last = checkpoints.last_step
        store.set_status("interrupted", f"{exc.strerror} at step {driver.k} (last checkpoint: "
                                        f"step {last})")
        raise StoreFullError(exc.errno, f"{exc.strerror}; the run stopped at step {driver.k} and "
                                        f"its last checkpoint (step {last}) is intact: free "
                                        f"space and continue with --resume") from None
    except NumericalError as exc:
        last = checkpoints.last_step
        store.set_status("failed", f"{exc} (last good checkpoint: step {last})")
        exc.args = (f"{exc.args[0]}; last good checkpoint at step {last} kept in "
                    f"{store.path}",)
        raise
    except KeyboardInterrupt:
        store.set_status("interrupted", ctl.info.reason)
        raise
    except BaseException as exc:
        store.set_status("failed", f"{type(exc).__name__}: {exc}")
        raise
    if info.status == "interrupted":
        store.set_status("interrupted", info.reason)
        raise RunInterrupted(info.signum, driver.k, str(store.path))
    wall = next((t for t in trackers if isinstance(t, WallClockTracker) and t.fired), None)
    if info.status == "stopped" and wall is not None:
        store.set_status("interrupted", info.reason)
        raise RunInterrupted(None, driver.k, str(store.path), reason=info.reason)
    store.set_status("complete", info.reason)


# --------------------------------------------------------------------------------------------
# one run on the ranks of an MPI communicator
# --------------------------------------------------------------------------------------------

def _silence() -> None:
    """Ranks other than 0 of an MPI launch write nothing (rank 0 reports for the job; an error
    report goes to the original stderr, :meth:`mfpde.parallel.Team.abort`)."""
    sys.stdout = sys.stderr = open(os.devnull, "w")


class _NullSink:
    """The store of the ranks that do not write: every method does nothing."""

    path = ""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _run_ranks(config, out_path, resume: bool, quiet: bool, overrides, stream, comm) -> Path:
    """:func:`run` split over the ranks of ``comm`` (module docstring, :mod:`mfpde.parallel`)."""
    from .parallel import Team
    team = Team(comm, expected=(ConfigError, StoreError, StoreFullError, NumericalError,
                                RunInterrupted, FileNotFoundError))
    with team.guard():
        cfg = team.collective(lambda: _resolve(config, overrides))
        if out_path is not None:
            cfg = cfg.replace(output={"path": os.fspath(out_path)})
        if cfg.job == "compare":
            return _compare_team(cfg, Path(cfg.output.path), resume, quiet, stream, team)
        path = Path(cfg.output.path)
        out = stream if stream is not None else sys.stderr
        exists = team.on_root(lambda: _check_output(path, resume, cfg.output.overwrite),
                              share=True)
        with StopFlag() as stop, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return _run_team(cfg, path, resume and exists, quiet, out, stop, team)


def _refuse(message: str):
    raise ConfigError(message)


class _TeamUnits:
    """The units of a ``[compare]`` job run one after the other, each by every rank of a team
    with the reference split over the ranks (:func:`mfpde.coupling.couple_readout`). Rank 0
    runs :func:`mfpde.compare.run_compare` with this pool: before each unit it broadcasts the
    unit, which the other ranks run in :meth:`serve`, and at the end ``("end", error)``.
    ``left``: a unit raised (alike on every rank), so the other ranks have left :meth:`serve`."""

    kind = "split"
    in_process = True
    root = True
    workers = 1

    def __init__(self, team, stop):
        self.team, self.stop = team, stop
        self.left = False

    def imap(self, fn, tasks):
        for j, args in enumerate(tasks):
            self.team.bcast(("unit", fn, tuple(args)))
            try:
                result = fn(*args, team=self.team, stop=self.stop)
            except BaseException:
                self.left = True
                raise
            yield j, result

    def serve(self) -> None:
        """The other ranks: run the units rank 0 broadcasts until it ends the job (raising
        the error it ended with)."""
        from .parallel import _unpack
        while True:
            cmd = self.team.bcast()
            if cmd[0] == "end":
                if cmd[1] is not None:
                    raise _unpack(cmd[1])
                return
            cmd[1](*cmd[2], team=self.team, stop=self.stop)


def _compare_team(cfg: Config, path: Path, resume: bool, quiet: bool, stream, team):
    """A ``[compare]`` job under ``mpiexec`` without ``--executor``: its units run in turn,
    each with the reference split over the ranks of ``team``; rank 0 writes the file (the
    output rules of :func:`_compare_job`). Returns the path on rank 0, None elsewhere."""
    from .build import check_memory
    from .coupling import CouplingInterrupted
    from .parallel import Layout, _pack, mark_agreed
    if cfg.compare.is_pn:
        raise team.collective(lambda: _refuse(
            "compare.model.kind = 'pham_nguyen': its reference runs in one process; run the "
            "comparison without mpiexec, or hand its units to the ranks with --executor mpi"))
    N = int(cfg.compare.reference.N)
    part = Layout(N, team.size).partition(team.rank, team.comm)
    team.collective(lambda: check_memory(cfg, part=part))
    team.on_root(lambda: _check_output(path, resume, cfg.output.overwrite))
    with StopFlag() as stop:
        units = _TeamUnits(team, stop)
        if not team.is_root:
            try:
                units.serve()
            except CouplingInterrupted as exc:
                raise mark_agreed(CompareInterrupted(exc.signum, str(path), 0)) from None
            return None
        try:
            _compare_job(cfg, path, quiet, stream, resume, units, memory_checked=True)
        except BaseException as exc:
            if units.left:
                raise mark_agreed(exc)
            if isinstance(exc, team.expected):
                team.bcast(("end", _pack(exc)))
                raise mark_agreed(exc)
            raise                                 # the job is aborted
        team.bcast(("end", None))
    return path


def _split_build(cfg: Config, team):
    """Build this rank's part of the run (its :class:`~mfpde.parallel.Partition` of the
    particles) and wrap the driver for the team."""
    from .parallel import SPLIT_DRIVERS, DistributedDriver, Layout
    solver = cfg.dynamics.solver
    if solver in SPLIT_DRIVERS:
        part = Layout(int(cfg.dynamics.N), team.size).partition(team.rank, team.comm)
        built = build(cfg, part=part)
    elif team.size > 1:
        raise ConfigError(f"dynamics.solver = {solver!r} runs in one process; MPI runs split "
                          f"the particles of solver = " + ", ".join(map(repr, SPLIT_DRIVERS))
                          + " (run it without mpiexec)")
    else:
        built = build(cfg)
    built.driver = DistributedDriver(built.driver, team)
    return built


def _run_team(cfg: Config, path: Path, resuming: bool, quiet: bool, out: TextIO,
              stop: StopFlag, team) -> Path:
    from .parallel import agreed
    root = team.is_root
    store = None
    if resuming:
        def open_store():
            nonlocal store
            store = _open_store(path)
            return store.config_text, _schema(store)
        text, schema = team.on_root(open_store, share=True)
        try:
            built = team.collective(lambda: _resume_build(
                cfg, path, text, schema, lambda c: _split_build(c, team)))
        except BaseException:
            if store is not None:
                store.close()
            raise
    else:
        built = team.collective(lambda: _split_build(cfg, team))
    if root and team.size > 1 and not built.driver.split and not quiet:
        print(f"mfpde: this run holds every particle on each of the {team.size} ranks (the "
              f"fused small-batch path needs them in one process); MPI gives no speed-up here",
              file=out, flush=True)
    prepared = team.on_root(lambda: _prepare(built, path, resuming, store))
    if root:
        store, write_snapshot = prepared
    else:
        store, write_snapshot = _NullSink(), (lambda k, t, f: None)
    result = None
    try:
        _control(store, built, quiet or not root, out, stop, write_snapshot, team=team)
    except BaseException as exc:
        ctx = exc.__context__
        if not (agreed(exc) or isinstance(exc, RunInterrupted)
                or (ctx is not None and agreed(ctx))):
            raise                                # one rank's failure: the job is aborted
        result = exc
    finally:
        store.close()
    team.outcome(result if root else None)       # every rank ends as rank 0 did
    return path


def _checkpoint_bytes(ck) -> int:
    if ck is None:
        return 0
    return sum(np.asarray(v).nbytes for v in ck["state"].values() if isinstance(v, np.ndarray))


def _os_reason(exc: Exception) -> str:
    text = str(exc)
    if isinstance(exc, FileExistsError):
        return "file exists"
    for marker in ("errno = 2", "No such file"):
        if marker in text:
            return "no such directory"
    for marker in ("errno = 13", "Permission denied"):
        if marker in text:
            return "permission denied"
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# any driver built in Python, into a run file
# --------------------------------------------------------------------------------------------

def record(driver, path: str | os.PathLike, *, observers=None, n_steps: int | None = None,
           t_end: float | None = None, every_steps: int = 0, every_time: float = 0.0,
           snapshot_every_steps: int = 0, snapshot_every_time: float = 0.0,
           checkpoint_every: int = 0, description: str = "", overwrite: bool = False,
           trackers=(), quiet: bool = True, stream: TextIO | None = None) -> Path:
    """Run a driver built in Python (any driver of :mod:`mfpde.engine.protocol`) with the
    controller and write one run file: the series of ``observers`` (an
    :class:`~mfpde.observables.Observers`; default for grid drivers: ``free_energy`` and
    ``mass_drift``) every ``every_steps`` steps / ``every_time`` time units and at the end,
    snapshots of the driver's fields (particles in ``/snapshots``, densities in ``/grid``, other
    fields in ``/snapshots/<name>``) at step 0, on their interval and at the end, checkpoints
    at step 0, every ``checkpoint_every`` steps and at the end. ``trackers`` are added after
    these (e.g. a steady-state stop). Give ``n_steps`` or ``t_end``. ``mfpde info`` and
    ``mfpde plot`` read the file like any run file.
    """
    from .config import dumps
    from .observables import Observers
    if (n_steps is None) == (t_end is None):
        raise ValueError("give exactly one of n_steps and t_end")
    if t_end is not None and not (np.isfinite(t_end) and t_end > driver.t):
        raise ValueError(f"t_end must be a finite time after the driver's t = {driver.t}, "
                         f"got {t_end!r}")
    if observers is None:
        observers = Observers(["free_energy", "mass_drift"] if "density" in driver.fields()
                              else [], None, None)
    text = dumps({"driver": {"kind": type(driver).__name__,
                             **({"n_steps": int(n_steps)} if n_steps is not None
                                else {"t_end": float(t_end)})}})
    text += "".join(f"# {line}\n" for line in description.splitlines())
    path = Path(path)
    with StopFlag() as stop, RunStore.create(path, config_text=text, seed=0,
                                             quantities=observers.quantities,
                                             overwrite=overwrite) as store:
        write = _snapshot_writer(store, None, driver)
        checkpoints = CheckpointTracker(store, every(checkpoint_every))
        tr = [FinitenessTracker(),
              SeriesTracker(observers, store, every(every_steps, every_time)),
              SnapshotTracker(store, every(snapshot_every_steps, snapshot_every_time),
                              write=write, initial=True),
              checkpoints, *trackers]
        total = n_steps if n_steps is not None else t_end
        tr.append(ProgressTracker(total, quiet=quiet, stream=stream,
                                  unit="step" if n_steps is not None else "time"))
        built = Built(None, driver=driver, observers=observers, n_steps=n_steps, t_end=t_end)
        _control(store, built, quiet, stream, stop, None, trackers=tr, checkpoints=checkpoints,
                 t_end=t_end)
    return path
