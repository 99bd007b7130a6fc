"""Parameter sweeps: many independent runs of one base configuration (docs/sweeps.md).

A configuration file with a ``[sweep]`` section (:class:`mfpde.config.SweepConfig`) is a base run
configuration (the other sections) plus axes::

    [sweep]
    name = "dt-width"
    seeds = 4                              # dynamics.seed = 0..3 (innermost axis)
    [sweep.grid]                           # every combination
    dynamics.dt = [0.01, 0.05]
    [sweep.zip]                            # varied together
    dynamics.N = [100, 200]
    model.lam = [0.0, 0.01]

:func:`init_sweep` expands it into a sweep directory::

    DIR/manifest.toml     format, version, name, axes, and one [[points]] table per point:
                          index, overrides {"section.key" = value}, run, config, hash
    DIR/sweep.toml        the sweep configuration as given (with --set overrides applied)
    DIR/base.toml         the resolved base configuration
    DIR/runs/00000.toml   the resolved configuration of each point (runnable with mfpde run)
    DIR/runs/00000.h5     its run file (written by :func:`mfpde.runner.run`)
    DIR/runs/00000.log    what the run printed (written by the executor, appended per attempt)
    DIR/runs/00000.err    the one-line error of its last failed attempt (removed on success)
    DIR/results.{h5,csv}  the table of :func:`collect`

A point is the base file with the point's overrides applied, exactly as
``mfpde run BASE --set section.key=value ...``: defaults that depend on a varied field are
resolved per point (``data.seed`` defaults to ``dynamics.seed + 1``; give ``data.seed`` in the
base to keep one data set across seeds). The hash of a point is the SHA-256 of its resolved
TOML without the fields that never change a result (:data:`EXECUTION_FIELDS`).

:func:`run_sweep` is idempotent: complete runs are skipped, interrupted (or killed) ones resumed
from their last checkpoint (bitwise, :func:`mfpde.runner.run` with ``resume=True``), failed ones
started anew only with ``retry_failed``. Every point is its own :func:`~mfpde.runner.run`; an
error in one never stops the others. Executors: ``local`` (a pool of ``jobs`` processes, one
``mfpde sweep run DIR --index I`` per point), ``mpi`` (``mpiexec -n R mfpde sweep run DIR
--executor mpi``: rank 0 hands the points to the other ranks through ``mpi4py.futures``), and
batch arrays (:func:`slurm_script`: one array task per point).

:func:`status` reads the run files' ``status`` / ``message`` attributes and the ``.err`` files;
:func:`collect` makes one table of the axes against the final, minimum and mean of every
observed quantity; :func:`load_sweep` returns it as a pandas DataFrame (or an xarray Dataset
over the axes).
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, TextIO

import numpy as np

from .config import EXCLUSIVE, Config, ConfigError, _copy, dumps, parse_config
from .executors import THREAD_VARS, check_executor

__all__ = ["Sweep", "PointState", "expand", "init_sweep", "open_sweep", "run_point",
           "run_sweep", "status", "collect", "load_sweep", "slurm_script", "parse_time",
           "EXECUTION_FIELDS", "RUN_SETTINGS"]

MANIFEST = "manifest.toml"
FORMAT = "mfpde-sweep"
VERSION = 1
RUNS = "runs"
TABLE = "results"

#: fields left out of a point's hash: they choose where and how long a run writes, never what
EXECUTION_FIELDS = (("output", "path"), ("output", "overwrite"), ("output", "time_limit"),
                    ("output", "time_margin"), ("observe", "log_every"))
#: fields ``sweep run --set`` may change at run time (a resumed run accepts them changed)
RUN_SETTINGS = ("output.time_limit", "output.time_margin", "output.checkpoint_every",
                "observe.log_every")
#: statuses of a point, in report order
STATUSES = ("complete", "running", "interrupted", "failed", "pending")


# --------------------------------------------------------------------------------------------
# expansion
# --------------------------------------------------------------------------------------------

def _read_raw(source: str | os.PathLike | Mapping[str, Any] | Config,
              overrides: Iterable[str] = ()) -> tuple[dict[str, Any], str]:
    """The raw (parsed, unresolved) sweep file and a name for messages."""
    from .config import apply_overrides, read_text
    if isinstance(source, Config):
        raw, name = source.to_dict(), "<config>"
    elif isinstance(source, Mapping):
        raw, name = _copy(dict(source)), "<config>"
    else:
        path = Path(source)
        text = read_text(path)
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        name = str(path)
    apply_overrides(raw, overrides)
    return raw, name


def _set(raw: dict[str, Any], key: str, value: Any, given: set[str]) -> None:
    """``raw[section][key...] = value`` as ``--set section.key=value`` does."""
    path = key.split(".")
    other = EXCLUSIVE.get(tuple(path))
    if other is not None and ".".join(other) not in given and isinstance(raw.get(other[0]), dict):
        raw[other[0]].pop(other[1], None)
    node = raw
    for p in path[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = node[p] = {}
        node = nxt
    node[path[-1]] = _copy(value)


def _axis_groups(sw) -> list[tuple[str, list[str], list[tuple]]]:
    """``[(kind, keys, values)]``: one group per grid axis, zipped group and the seeds."""
    out = [("grid", [k], [(v,) for v in vals]) for k, vals in sw.grid.items()]
    for g in sw.zip:
        out.append(("zip", list(g), list(zip(*g.values()))))
    if sw.seeds is not None:
        out.append(("seed", [sw.seed_key], [(s,) for s in sw.seeds]))
    return out


def _fmt_value(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return str(v).lower() if isinstance(v, bool) else str(v)


def point_hash(cfg: Config) -> str:
    """SHA-256 of the resolved TOML of a point without :data:`EXECUTION_FIELDS`."""
    d = cfg.to_dict()
    d.pop("sweep", None)
    for sec, key in EXECUTION_FIELDS:
        if isinstance(d.get(sec), dict):
            d[sec].pop(key, None)
    return hashlib.sha256(dumps(d).encode()).hexdigest()


@dataclass
class Expansion:
    """A validated sweep: the raw file, its configuration, the base and every point."""

    raw: dict[str, Any]
    config: Config
    base: Config
    groups: list[tuple[str, list[str], list[tuple]]]
    overrides: list[dict[str, Any]]
    configs: list[Config]


def expand(source, overrides: Iterable[str] = ()) -> Expansion:
    """Validate a sweep configuration (a TOML file, a parsed dict or a :class:`Config` with a
    ``[sweep]`` section) and every one of its points; nothing is written.

    Raises :class:`ConfigError` in one line: for the base, or naming the point and its axis
    values (``sweep point 3 (dynamics.dt = -1): dynamics.dt = -1.0 ...``).
    """
    raw, name = _read_raw(source, overrides)
    if "sweep" not in raw:
        raise ConfigError(f"{name}: has no [sweep] section (use 'mfpde run' for one run)")
    cfg = Config.from_dict(raw)
    sw = cfg.sweep
    base_raw = {k: v for k, v in raw.items() if k != "sweep"}
    groups = _axis_groups(sw)
    points, configs = [], []
    for combo in itertools.product(*[range(len(g[2])) for g in groups]):
        ov: dict[str, Any] = {}
        for (_, keys, values), j in zip(groups, combo):
            ov.update(zip(keys, values[j]))
        r = _copy(base_raw)
        for k, v in ov.items():
            _set(r, k, v, set(ov))
        try:
            pc = Config.from_dict(r)
        except ConfigError as exc:
            what = ", ".join(f"{k} = {_fmt_value(v)}" for k, v in ov.items())
            raise ConfigError(f"sweep point {len(points)} ({what}): {exc}") from None
        points.append(ov)
        configs.append(pc)
    return Expansion(raw, cfg, cfg.replace(sweep=None), groups, points, configs)


# --------------------------------------------------------------------------------------------
# the sweep directory
# --------------------------------------------------------------------------------------------

@dataclass
class PointState:
    """The state of one point: ``status`` in :data:`STATUSES`, the run's or the error file's
    one-line ``message``, the last step recorded."""

    index: int
    status: str
    message: str = ""
    step: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


class Sweep:
    """An initialised sweep directory (:func:`open_sweep`)."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        path = self.dir / MANIFEST
        if not path.is_file():
            hint = "" if self.dir.is_dir() else " (no such directory)"
            raise ConfigError(f"{self.dir}: not a sweep directory{hint}: no {MANIFEST}; create it "
                              f"with 'mfpde sweep init CONFIG.toml {self.dir}'")
        try:
            m = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the manifest: {exc}") from None
        if m.get("format") != FORMAT or int(m.get("version", 0)) > VERSION:
            raise ConfigError(f"{path}: not an mfpde sweep manifest of version <= {VERSION}")
        self.manifest = m
        self.name: str = m.get("name", "sweep")
        self.axes: list[dict[str, Any]] = m.get("axes", [])
        self.points: list[dict[str, Any]] = m.get("points", [])

    def __len__(self) -> int:
        return len(self.points)

    def __repr__(self) -> str:
        return f"Sweep({str(self.dir)!r}, {self.name!r}, {len(self)} points)"

    @property
    def keys(self) -> list[str]:
        """The varied fields in point order."""
        return [k for a in self.axes for k in a["keys"]]

    def path(self, i: int, what: str = "run") -> Path:
        """``run`` (.h5), ``config`` (.toml), ``log`` or ``err`` file of point ``i``."""
        p = self.points[self._check(i)]
        if what in ("run", "config"):
            return self.dir / p[what]
        return (self.dir / p["run"]).with_suffix("." + what)

    def _check(self, i: int) -> int:
        if not 0 <= i < len(self.points):
            raise ConfigError(f"--index {i}: the sweep {self.dir} has points 0..{len(self) - 1}")
        return i

    def config(self, i: int, settings: Iterable[str] = ()) -> Config:
        """The configuration of point ``i``, with run-time ``settings`` (:data:`RUN_SETTINGS`)."""
        from .config import load_config
        return load_config(self.path(i, "config"), _check_settings(settings))

    def state(self, i: int) -> PointState:
        from .store import StoreError, in_use, load
        run, err = self.path(i), self.path(i, "err")
        ov = dict(self.points[i].get("overrides", {}))
        if not run.exists():
            if err.exists():
                return PointState(i, "failed", _first_line(err), None, ov)
            return PointState(i, "pending", "", None, ov)
        try:
            r = load(run)
        except (StoreError, OSError) as exc:
            # e.g. killed in the middle of a write: 'sweep run' starts it anew
            return PointState(i, "interrupted", f"damaged run file, started anew by 'mfpde "
                                                f"sweep run' ({exc})", None, ov)
        step = int(r.series["step"][-1]) if len(r.series.get("step", [])) else None
        st, msg = r.status, r.message
        if st == "running" and not in_use(run):
            st, msg = "interrupted", "stopped while running (killed?); resumed from its last " \
                                     "checkpoint by 'mfpde sweep run'"
        if st == "failed" and err.exists() and not msg:
            msg = _first_line(err)
        return PointState(i, st if st in STATUSES else "failed", msg, step, ov)


def _first_line(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    return text.splitlines()[-1] if text else ""


def _check_settings(settings: Iterable[str]) -> list[str]:
    out = []
    for s in settings:
        key = s.partition("=")[0].strip()
        if key not in RUN_SETTINGS:
            raise ConfigError(f"--set {s!r}: a sweep run may set only " + ", ".join(RUN_SETTINGS)
                              + " (other fields change the results: put them in the sweep "
                                "configuration)")
        out.append(s)
    return out


def _width(n: int) -> int:
    return max(5, len(str(max(n - 1, 0))))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _manifest_points(ex: Expansion) -> list[dict[str, Any]]:
    w = _width(len(ex.configs))
    return [{"index": i, "run": f"{RUNS}/{i:0{w}d}.h5", "config": f"{RUNS}/{i:0{w}d}.toml",
             "hash": point_hash(c), "overrides": ov}
            for i, (ov, c) in enumerate(zip(ex.overrides, ex.configs))]


def init_sweep(source, directory: str | os.PathLike, overrides: Iterable[str] = ()) -> Sweep:
    """Expand a sweep configuration into ``directory`` (created; it must be new or empty) and
    return the :class:`Sweep`. A directory that already holds the same sweep (same point
    hashes) is returned as it is; one holding another sweep is an error. Every point is
    validated before anything is written."""
    from . import __version__
    ex = expand(source, overrides)
    d = Path(directory)
    points = _manifest_points(ex)
    if (d / MANIFEST).exists():
        sw = Sweep(d)
        _same_sweep(sw, points)
        return sw
    if d.exists() and (not d.is_dir() or any(d.iterdir())):
        raise ConfigError(f"{d}: exists and is not an empty directory nor a sweep directory")
    try:
        (d / RUNS).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the sweep directory {d}: {exc.strerror}") from None
    for p, c in zip(points, ex.configs):
        c = c.replace(output={"path": Path(p["run"]).name, "overwrite": False})
        _write_atomic(d / p["config"], c.to_toml())
    _write_atomic(d / "sweep.toml", dumps(ex.raw))
    _write_atomic(d / "base.toml", ex.base.to_toml())
    manifest = {
        "format": FORMAT, "version": VERSION, "name": ex.config.sweep.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "mfpde_version": __version__,
        "config": "sweep.toml", "base": "base.toml", "n_points": len(points),
        "axes": [{"kind": kind, "keys": keys, "size": len(values)}
                 for kind, keys, values in ex.groups],
        "points": points,
    }
    _write_atomic(d / MANIFEST, dumps(manifest))
    return Sweep(d)


def _same_sweep(sw: Sweep, points: list[dict[str, Any]]) -> None:
    if len(points) != len(sw.points):
        raise ConfigError(f"{sw.dir} holds another sweep ({len(sw.points)} points, the "
                          f"configuration has {len(points)}); use a new directory")
    for a, b in zip(points, sw.points):
        if a["hash"] != b.get("hash"):
            what = ", ".join(f"{k} = {_fmt_value(v)}" for k, v in a["overrides"].items())
            raise ConfigError(f"{sw.dir} holds another sweep: point {a['index']} ({what}) has "
                              f"another configuration; use a new directory")


def open_sweep(directory: str | os.PathLike) -> Sweep:
    """Open an initialised sweep directory."""
    return Sweep(directory)


# --------------------------------------------------------------------------------------------
# one point
# --------------------------------------------------------------------------------------------

#: exit codes of one point (as ``mfpde run``)
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NO_SPACE = 0, 1, 2, 3


def _plan(sw: Sweep, i: int, retry_failed: bool) -> str:
    """What ``sweep run`` does with point ``i``: ``skip`` | ``skip_failed`` | ``busy`` |
    ``new`` | ``resume`` | ``retry`` | ``restart`` (a damaged run file: start anew)."""
    from .store import StoreError, in_use, load
    run = sw.path(i)
    if not run.exists():
        if sw.path(i, "err").exists() and not retry_failed:
            return "skip_failed"
        return "new"
    try:
        st = load(run).status
    except (StoreError, OSError):
        return "busy" if in_use(run) else "restart"
    if st == "complete":
        return "skip"
    if st == "failed":
        return "retry" if retry_failed else "skip_failed"
    if st == "running" and in_use(run):
        return "busy"
    return "resume"


def _runner_kwargs(comm: Any) -> dict[str, Any]:
    from .runner import run
    return {"comm": comm} if "comm" in inspect.signature(run).parameters else {}


def run_point(sweep: Sweep | str | os.PathLike, i: int, *, retry_failed: bool = False,
              settings: Iterable[str] = (), quiet: bool = True, stream: TextIO | None = None,
              comm: Any = None) -> tuple[int, str]:
    """Run point ``i`` of a sweep in this process; returns ``(exit code, message)``.

    A complete run is skipped (0), a failed one too (1) unless ``retry_failed`` (then it starts
    anew), an interrupted or killed one is resumed from its last checkpoint, a missing one
    started. The exit code is that of ``mfpde run`` (0, 1 numerical failure, 2 bad input,
    3 no space, 75 wall-clock limit, 130 / 143 SIGINT / SIGTERM). Errors are written, in one
    line, to the point's ``.err`` file (removed once the point completes). ``comm`` is passed to
    :func:`mfpde.runner.run` (None: this process alone; ``"auto"``: the ranks of an MPI launch).
    """
    from .runner import NumericalError, RunInterrupted, run
    from .store import StoreError, StoreFullError
    sw = sweep if isinstance(sweep, Sweep) else Sweep(sweep)
    plan = _plan(sw, i, retry_failed)
    err = sw.path(i, "err")
    if plan == "skip":
        return EXIT_OK, "complete"
    if plan == "skip_failed":
        return EXIT_FAILED, (f"failed earlier: {sw.state(i).message} (run it again with "
                             f"--retry-failed)")
    if plan == "busy":
        return EXIT_BAD_INPUT, f"{sw.path(i)} is being written by another process"
    cfg = sw.config(i, settings)
    if plan in ("retry", "restart"):
        cfg = cfg.replace(output={"overwrite": True})
        if stream is not None or not quiet:
            what = "failed run" if plan == "retry" else "damaged run file"
            print(f"mfpde sweep: point {i}: {what} {sw.path(i)}: starting it anew",
                  file=stream if stream is not None else sys.stderr, flush=True)
    code, msg = EXIT_OK, "complete"
    try:
        run(cfg, sw.path(i), resume=(plan == "resume"), quiet=quiet, stream=stream,
            **_runner_kwargs(comm))
    except (ConfigError, StoreError) as exc:
        code, msg = EXIT_BAD_INPUT, str(exc)
    except NumericalError as exc:
        code, msg = EXIT_FAILED, f"numerical failure: {exc}"
    except StoreFullError as exc:
        code, msg = EXIT_NO_SPACE, exc.strerror or str(exc)
    except RunInterrupted as exc:
        return exc.exit_code, str(exc)
    except Exception as exc:  # noqa: BLE001 - one point's error never stops the others
        code, msg = EXIT_FAILED, f"{type(exc).__name__}: {exc}"
    if code == EXIT_OK:
        err.unlink(missing_ok=True)
    else:
        _write_atomic(err, " ".join(f"exit {code}: {msg}".split()) + "\n")
    return code, msg


# --------------------------------------------------------------------------------------------
# executors
# --------------------------------------------------------------------------------------------

@dataclass
class SweepResult:
    """What :func:`run_sweep` did: exit codes by point, and the overall exit code."""

    codes: dict[int, int]
    skipped: list[int]
    signal: int | None = None

    @property
    def exit_code(self) -> int:
        """0 every point complete; 1 some failed; 75 some interrupted (continue later);
        128 + signal when the executor was stopped."""
        if self.signal is not None:
            return 128 + self.signal
        codes = set(self.codes.values())
        if codes - {0, 75, 130, 143}:
            return 1
        return 75 if codes - {0} else 0


def _todo(sw: Sweep, indices: Iterable[int] | None, retry_failed: bool) -> tuple[list, list]:
    todo, skipped = [], []
    for i in (range(len(sw)) if indices is None else indices):
        plan = _plan(sw, sw._check(i), retry_failed)
        (skipped if plan in ("skip", "skip_failed", "busy") else todo).append(i)
    return todo, skipped


def _child_env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env["MFPDE_MPI"] = "0"            # each point is one process, never split over ranks
    if threads is not None:
        for var in THREAD_VARS:
            env.setdefault(var, str(threads))
    return env


def _log_header(log: TextIO, i: int, what: str) -> None:
    log.write(f"=== mfpde sweep: point {i}: {what} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    log.flush()


def run_sweep(directory: str | os.PathLike, *, jobs: int = 1, executor: str = "local",
              retry_failed: bool = False, settings: Sequence[str] = (),
              indices: Iterable[int] | None = None, out: TextIO | None = None,
              quiet: bool = False) -> SweepResult | None:
    """Run the points of a sweep that are not complete (idempotent; see the module docstring).

    ``executor``: ``"local"`` (``jobs`` processes on this machine, one process per point) or
    ``"mpi"`` (under ``mpiexec -n R``: rank 0 hands points to the R - 1 other ranks with
    ``mpi4py.futures.MPICommExecutor``; in a single process, ``MPIPoolExecutor`` spawns
    ``jobs`` workers). ``settings`` are ``--set`` strings of :data:`RUN_SETTINGS`. Returns a
    :class:`SweepResult` (None on the worker ranks of the MPI executor).
    """
    sw = Sweep(directory)
    settings = _check_settings(settings)
    out = sys.stderr if out is None else out
    check_executor(executor, jobs)
    if executor == "mpi":
        return _run_mpi(sw, jobs, retry_failed, settings, indices, out, quiet)
    todo, skipped = _todo(sw, indices, retry_failed)
    if not quiet:
        print(f"mfpde sweep: {sw.name}: {len(todo)} of {len(sw)} points to run, {jobs} at a "
              f"time ({len(skipped)} complete or failed skipped)", file=out, flush=True)
    threads = None if jobs == 1 else max(1, (os.cpu_count() or 1) // jobs)
    env = _child_env(threads)
    base = [sys.executable, "-m", "mfpde", "sweep", "run", str(sw.dir)]
    extra = (["--retry-failed"] if retry_failed else []) + \
        [a for s in settings for a in ("--set", s)]
    codes: dict[int, int] = {}
    procs: dict[int, subprocess.Popen] = {}
    lock = threading.Lock()
    stop = threading.Event()
    caught: list[int] = []
    queue = list(todo)
    t0 = time.monotonic()

    def worker():
        while not stop.is_set():
            with lock:
                if not queue:
                    return
                i = queue.pop(0)
            log_path = sw.path(i, "log")
            with open(log_path, "a", encoding="utf-8") as log:
                _log_header(log, i, "start")
                with lock:
                    if stop.is_set():
                        return
                    p = subprocess.Popen(base + ["--index", str(i)] + extra, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env)
                    procs[i] = p
                rc = p.wait()
                log.write(f"=== exit {rc}\n")
            with lock:
                procs.pop(i, None)
                codes[i] = rc
                done = len(codes)
            if not quiet:
                st = sw.state(i)
                msg = f": {st.message}" if st.status != "complete" and st.message else ""
                print(f"[{done}/{len(todo)}] point {i} {st.status} (exit {rc}, "
                      f"{time.monotonic() - t0:.1f} s){msg}", file=out, flush=True)

    def on_signal(signum, frame):
        if not caught:
            caught.append(signum)
        stop.set()
        with lock:
            for p in procs.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)   # each run checkpoints and stops

    old = {}
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            old[s] = signal.signal(s, on_signal)
    try:
        pool = [threading.Thread(target=worker, daemon=True) for _ in range(min(jobs, len(todo)))]
        for t in pool:
            t.start()
        while any(t.is_alive() for t in pool):
            for t in pool:
                t.join(0.2)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    res = SweepResult(codes, skipped, caught[0] if caught else None)
    if not quiet:
        _print_counts(sw, out)
    return res


def _mpi_task(directory: str, i: int, retry_failed: bool, settings: list[str]) -> tuple:
    """One point on an MPI worker (in that process, never split over ranks)."""
    sw = Sweep(directory)
    t0 = time.monotonic()
    with open(sw.path(i, "log"), "a", encoding="utf-8") as log:
        _log_header(log, i, "start (mpi worker)")
        code, msg = run_point(sw, i, retry_failed=retry_failed, settings=settings, quiet=False,
                              stream=log, comm=None)
        log.write(f"=== exit {code}{': ' + msg if code else ''}\n")
    return i, code, time.monotonic() - t0


def _run_mpi(sw: Sweep, jobs: int, retry_failed: bool, settings, indices, out,
             quiet) -> SweepResult | None:
    from .executors import task_pool
    codes: dict[int, int] = {}
    with task_pool("mpi", max(1, jobs)) as pool:
        if not pool.root:       # a worker rank: it served the tasks
            return None
        todo, skipped = _todo(sw, indices, retry_failed)
        if not quiet:
            print(f"mfpde sweep: {sw.name}: {len(todo)} of {len(sw)} points to run on "
                  f"{pool.workers} MPI worker(s) ({len(skipped)} complete or failed skipped)",
                  file=out, flush=True)
        for _, (i, code, secs) in pool.imap(_mpi_task, [(str(sw.dir), i, retry_failed,
                                                         list(settings)) for i in todo]):
            codes[i] = code
            if not quiet:
                print(f"[{len(codes)}/{len(todo)}] point {i} {sw.state(i).status} (exit {code}, "
                      f"{secs:.1f} s)", file=out, flush=True)
    if not quiet:
        _print_counts(sw, out)
    return SweepResult(codes, skipped)


# --------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------

def status(directory: str | os.PathLike) -> list[PointState]:
    """The :class:`PointState` of every point."""
    sw = Sweep(directory)
    return [sw.state(i) for i in range(len(sw))]


def _counts(states: Sequence[PointState]) -> dict[str, int]:
    return {s: sum(p.status == s for p in states) for s in STATUSES}


def _print_counts(sw: Sweep, out: TextIO) -> None:
    c = _counts([sw.state(i) for i in range(len(sw))])
    print(f"mfpde sweep: {sw.name}: " + ", ".join(f"{n} {s}" for s, n in c.items() if n),
          file=out, flush=True)


def format_status(directory: str | os.PathLike) -> str:
    """The report of ``mfpde sweep status``: counts per status, then every point that is not
    complete with its one-line message."""
    sw = Sweep(directory)
    states = [sw.state(i) for i in range(len(sw))]
    lines = [f"sweep {sw.name}: {len(sw)} points in {sw.dir}  (axes: "
             + ", ".join(sw.keys) + ")"]
    for s, n in _counts(states).items():
        lines.append(f"  {s:<12} {n}")
    for head in ("failed", "interrupted", "running"):
        sel = [p for p in states if p.status == head]
        if not sel:
            continue
        lines.append(f"{head}:")
        for p in sel:
            what = ", ".join(f"{k}={_fmt_value(v)}" for k, v in p.overrides.items())
            step = f" at step {p.step}" if p.step is not None else ""
            lines.append(f"  [{p.index}] {what}{step}: {p.message}  ({sw.points[p.index]['run']})")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# collect
# --------------------------------------------------------------------------------------------

SUMMARIES = ("final", "min", "mean")


def _axis_column(values: list) -> np.ndarray:
    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=bool)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int64)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.float64)
    return np.array([_fmt_value(v) for v in values], dtype=object)


def collect(directory: str | os.PathLike, *, write: bool = True) -> dict[str, np.ndarray]:
    """One table of the sweep: ``{column: array}`` with, per point, ``index``, the axes (one
    column per varied field), ``status``, ``message``, ``step`` and ``t`` (last recorded), and for
    every observed quantity ``q``: ``q.final``, ``q.min``, ``q.mean`` over its series (NaN where
    a point has no value: pending runs, quantities it does not observe). With ``write``, also
    ``DIR/results.h5`` (group ``/table``, one dataset per column, attribute ``columns``) and
    ``DIR/results.csv``."""
    from .store import StoreError, load
    sw = Sweep(directory)
    n = len(sw)
    table: dict[str, Any] = {"index": np.arange(n, dtype=np.int64)}
    for k in sw.keys:
        table[k] = _axis_column([p["overrides"].get(k) for p in sw.points])
    states = [sw.state(i) for i in range(n)]
    table["status"] = np.array([s.status for s in states], dtype=object)
    table["message"] = np.array([s.message for s in states], dtype=object)
    steps = np.full(n, -1, dtype=np.int64)
    times = np.full(n, np.nan)
    values: dict[str, np.ndarray] = {}
    for i in range(n):
        path = sw.path(i)
        if not path.exists():
            continue
        try:
            series = load(path).series
        except (StoreError, OSError):
            continue
        if len(series.get("step", [])):
            steps[i] = int(series["step"][-1])
            times[i] = float(series["t"][-1])
        for q, x in series.items():
            if q in ("t", "step"):
                continue
            x = np.asarray(x, dtype=np.float64)
            for s in SUMMARIES:
                col = values.setdefault(f"{q}.{s}", np.full(n, np.nan))
                if len(x) == 0:
                    continue
                with np.errstate(all="ignore"):
                    fin = x[np.isfinite(x)]
                    col[i] = (x[-1] if s == "final" else
                              (fin.min() if len(fin) else np.nan) if s == "min" else
                              (fin.mean() if len(fin) else np.nan))
    table["step"] = steps
    table["t"] = times
    table.update(values)
    if write:
        _write_table(sw, table)
    return table


def _write_table(sw: Sweep, table: Mapping[str, np.ndarray]) -> None:
    import h5py
    cols = list(table)
    tmp = sw.dir / f"{TABLE}.h5.tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = "mfpde-sweep-table"
        f.attrs["version"] = np.int64(VERSION)
        f.attrs["name"] = sw.name
        f.attrs["axes"] = json.dumps(sw.axes)
        g = f.create_group("table")
        g.attrs["columns"] = json.dumps(cols)
        for c in cols:
            a = table[c]
            if a.dtype == object:
                g.create_dataset(c, data=[str(x) for x in a], dtype=h5py.string_dtype())
            else:
                g.create_dataset(c, data=a)
    os.replace(tmp, sw.dir / f"{TABLE}.h5")
    tmp = sw.dir / f"{TABLE}.csv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for i in range(len(table["index"])):
            w.writerow([_csv_cell(table[c][i]) for c in cols])
    os.replace(tmp, sw.dir / f"{TABLE}.csv")


def _csv_cell(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return "" if math.isnan(v) else repr(float(v))
    if isinstance(v, (np.bool_, bool)):
        return "true" if v else "false"
    return str(v)


def _read_table(directory: Path) -> tuple[dict[str, np.ndarray], list[dict]]:
    import h5py
    path = directory / f"{TABLE}.h5"
    with h5py.File(path, "r") as f:
        g = f["table"]
        cols = json.loads(g.attrs["columns"])
        table = {}
        for c in cols:
            d = g[c]
            table[c] = (np.array(d.asstr()[:], dtype=object) if h5py.check_string_dtype(d.dtype)
                        else d[:])
        axes = json.loads(f.attrs["axes"])
    return table, axes


def load_sweep(directory: str | os.PathLike, *, as_xarray: bool = False):
    """The table of :func:`collect` of a sweep directory as a ``pandas.DataFrame`` (one row per
    point, indexed by ``index``), or with ``as_xarray`` as an ``xarray.Dataset`` over the sweep
    axes (one dimension per grid axis, per zipped group (named by its first field, the others
    are coordinates along it) and for the seeds; the data variables are the other columns).

    The table is read from the run files when the sweep has them, else from ``results.h5``.
    Needs pandas (``pip install 'mfpde[sweep]'``); ``as_xarray`` needs xarray.
    """
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("load_sweep needs pandas: pip install 'mfpde[sweep]'") from None
    d = Path(directory)
    if (d / MANIFEST).exists() and (d / RUNS).is_dir():
        table, axes = collect(d, write=False), Sweep(d).axes
    elif (d / f"{TABLE}.h5").exists():
        table, axes = _read_table(d)
    else:
        raise FileNotFoundError(f"{d}: neither a sweep directory nor one with {TABLE}.h5")
    df = pd.DataFrame({k: (list(v) if v.dtype == object else v) for k, v in table.items()})
    df = df.set_index("index")
    if not as_xarray:
        return df
    try:
        import xarray  # noqa: F401
    except ImportError:
        raise ImportError("load_sweep(..., as_xarray=True) needs xarray: "
                          "pip install 'mfpde[sweep]'") from None
    dims = [a["keys"][0] for a in axes]
    coords = [k for a in axes for k in a["keys"][1:]]
    ds = df.reset_index().set_index(dims).to_xarray()
    for c in coords:   # zipped fields: one value along their group's dimension
        dim = next(a["keys"][0] for a in axes if c in a["keys"])
        other = [x for x in dims if x != dim]
        vals = ds[c].isel({x: 0 for x in other}).values
        ds = ds.drop_vars(c).assign_coords({c: (dim, vals)})
    return ds


# --------------------------------------------------------------------------------------------
# batch arrays
# --------------------------------------------------------------------------------------------

def parse_time(text: str) -> int:
    """Seconds of a SLURM time: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``,
    ``D-HH:MM:SS``."""
    s = str(text).strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", s)
    if not m:
        raise ConfigError(f"--time {text!r}: expected MM, MM:SS, HH:MM:SS or D-HH:MM:SS")
    d, a, b, c = m.groups()
    if d is not None:        # D-HH[:MM[:SS]]
        secs = int(d) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    elif c is not None:      # HH:MM:SS
        secs = int(a) * 3600 + int(b) * 60 + int(c)
    elif b is not None:      # MM:SS
        secs = int(a) * 60 + int(b)
    else:                    # MM
        secs = int(a) * 60
    if secs <= 0:
        raise ConfigError(f"--time {text!r}: expected a positive time")
    return secs


def _array_spec(indices: Sequence[int]) -> str:
    """``0-3,7,9-11`` of sorted indices."""
    parts, start, prev = [], None, None
    for i in sorted(indices):
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            parts.append(f"{start}-{prev}" if prev > start else f"{start}")
            start = prev = i
    if start is not None:
        parts.append(f"{start}-{prev}" if prev > start else f"{start}")
    return ",".join(parts)


def slurm_script(directory: str | os.PathLike, *, time_limit: str | None = None,
                 cpus_per_task: int = 1, mem: str | None = None, partition: str | None = None,
                 account: str | None = None, max_parallel: int | None = None,
                 requeue: bool = False, slack: int = 120, pending_only: bool = False,
                 sbatch: Sequence[str] = (), command: str | None = None) -> str:
    """The text of an ``sbatch`` job-array script: task ``$SLURM_ARRAY_TASK_ID`` runs
    ``mfpde sweep run DIR --index $SLURM_ARRAY_TASK_ID`` (idempotent: a finished point is
    skipped, an interrupted one resumed).

    ``time_limit`` (SLURM ``--time``) also sets ``output.time_limit`` ``slack`` seconds below it,
    so a run stops cleanly with a checkpoint (exit 75) before the job's end. ``requeue`` adds
    ``#SBATCH --requeue`` and ``--signal=B:TERM@...``: the script forwards SIGTERM to the run
    (checkpoint, exit 143) and requeues the task when it exits 75 or 143, so the point continues
    in a new allocation. ``pending_only``: an array of the points not yet complete only.
    ``command`` replaces ``<this python> -m mfpde``.
    """
    sw = Sweep(directory)
    if pending_only:
        indices = [i for i in range(len(sw)) if sw.state(i).status != "complete"]
    else:
        indices = list(range(len(sw)))
    if not indices:
        raise ConfigError(f"{sw.dir}: every point is complete; nothing to submit")
    if cpus_per_task < 1:
        raise ConfigError(f"--cpus-per-task {cpus_per_task}: expected >= 1")
    d = sw.dir.resolve()
    array = (f"0-{len(sw) - 1}" if len(indices) == len(sw) else _array_spec(indices))
    if max_parallel:
        array += f"%{max_parallel}"
    cmd = command or f"{_sh(sys.executable)} -m mfpde"
    job = re.sub(r"[^A-Za-z0-9_.-]", "_", sw.name) or "sweep"
    lines = ["#!/bin/bash", f"# mfpde sweep '{sw.name}': {len(sw)} points, one array task each "
             f"(submit with sbatch; the directory {d / 'slurm'} must exist)",
             f"#SBATCH --job-name={job}", f"#SBATCH --array={array}",
             f"#SBATCH --cpus-per-task={cpus_per_task}", "#SBATCH --ntasks=1",
             f"#SBATCH --output={d / 'slurm'}/%A_%a.out", "#SBATCH --open-mode=append"]
    settings = []
    if time_limit is not None:
        secs = parse_time(time_limit)
        lines.append(f"#SBATCH --time={time_limit}")
        run_limit = max(secs - slack, secs // 2)
        settings.append(f"output.time_limit={run_limit}")
    if mem:
        lines.append(f"#SBATCH --mem={mem}")
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    if account:
        lines.append(f"#SBATCH --account={account}")
    if requeue:
        lines += ["#SBATCH --requeue", f"#SBATCH --signal=B:TERM@{max(30, slack // 2)}"]
    lines += [f"#SBATCH {s}" for s in sbatch]
    threads = "${SLURM_CPUS_PER_TASK:-%d}" % cpus_per_task
    lines += ["", "set -u", f"mkdir -p {_sh(str(d / 'slurm'))}",
              "# one process per task; its threads from --cpus-per-task"]
    lines += [f"export {v}={threads}" for v in THREAD_VARS]
    lines += ["export MFPDE_MPI=0", "",
              f"# exit codes: 0 complete, 1 failed, 2 bad input, 75 wall-clock limit "
              f"(checkpoint written), 143 SIGTERM",
              f"{cmd} sweep run {_sh(str(d))} --index \"$SLURM_ARRAY_TASK_ID\""
              + "".join(f" --set {s}" for s in settings) + " &",
              "pid=$!",
              "trap 'kill -TERM $pid 2>/dev/null' TERM",
              "wait $pid; rc=$?",
              "while kill -0 $pid 2>/dev/null; do wait $pid; rc=$?; done"]
    if requeue:
        lines += ["if [ \"$rc\" -eq 75 ] || [ \"$rc\" -eq 143 ]; then",
                  "    # not finished: continue this point in a new allocation (it resumes)",
                  "    scontrol requeue \"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"",
                  "fi"]
    lines += ["exit $rc", ""]
    return "\n".join(lines)


def _sh(s: str) -> str:
    import shlex
    return shlex.quote(s)
