"""Run a configuration: config -> data + model -> solver steps -> observers -> HDF5 store.

:func:`run` builds every object from a validated :class:`~mfpde.config.Config` *before* the
output file is created (bad input never leaves a file behind), then steps the solver in chunks
up to the next event:

* every ``observe.every`` steps (and at the first and last step): observers -> ``/series``;
* every ``observe.snapshot_every`` steps: particles -> ``/snapshots``;
* every ``output.checkpoint_every`` steps (and at step 0 and the end): the complete solver
  state -> ``/checkpoint`` (replaced atomically).

After each chunk the particles, ``W`` and the observed values are checked for NaN/inf; a
non-finite value stops the run with :class:`NumericalError` (status ``failed``, the last good
checkpoint is kept). SIGINT / SIGTERM finish the current step, write a checkpoint, set status
``interrupted`` and raise :class:`RunInterrupted` (exit code 130 / 143 in the CLI).

``resume=True`` reopens the file, restores the checkpoint with ``solver.load_state_dict``, drops
series rows and snapshots recorded after it and continues; the result is bitwise identical to an
uninterrupted run because every random draw comes from the solver's generator, whose state is
part of the checkpoint, and the observers draw no random numbers.
"""

from __future__ import annotations

import copy
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

import numpy as np

from .config import Config, ConfigError, load_config, parse_config
from .store import RunStore, StoreError, read_checkpoint

__all__ = ["run", "build", "Built", "NumericalError", "RunInterrupted", "EXIT_CODES"]

#: Exit codes of ``mfpde run``.
EXIT_CODES = {"ok": 0, "numerical": 1, "bad_input": 2, "SIGINT": 130, "SIGTERM": 143}


class NumericalError(RuntimeError):
    """A non-finite value appeared; ``step`` and ``quantity`` say where."""

    def __init__(self, message: str, step: int, quantity: str):
        super().__init__(message)
        self.step, self.quantity = step, quantity


class RunInterrupted(Exception):
    """The run stopped on SIGINT / SIGTERM after writing a checkpoint."""

    def __init__(self, signum: int, step: int, path: str):
        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name} at step {step}; checkpoint written to {path} "
                         f"(continue with --resume)")
        self.signum, self.step, self.path = signum, step, path

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)


# --------------------------------------------------------------------------------------------
# building the objects
# --------------------------------------------------------------------------------------------

@dataclass
class Built:
    """Everything a run needs, built from a config (nothing written yet)."""

    config: Config
    data: Any            # Dataset used for evaluation (and training unless online)
    sampler: Any         # OnlineSampler or None
    test: Any            # held-out Dataset or None
    model: Any
    solver: Any
    observers: Any
    n_steps: int


def _bad(where: str, exc: Exception) -> ConfigError:
    msg = str(exc.args[0]) if getattr(exc, "args", None) else str(exc)
    return ConfigError(f"{where}: {msg}")


def build(cfg: Config) -> Built:
    """Build data, model, solver and observers; input errors become :class:`ConfigError`."""
    from .data import make_dataset
    from .dynamics import KineticSolver, LangevinSolver
    from .models import make_model
    from .observers import Observers

    dc, mc, dyn, obs = cfg.data, cfg.model, cfg.dynamics, cfg.observe
    try:
        data = make_dataset(dc.kind, seed=dc.seed, **dc.params)
        sampler = make_dataset(dc.kind, seed=dc.seed, online=True, **dc.params) \
            if (dyn.online or dc.test_n) else None
    except (ValueError, TypeError, OSError) as exc:
        raise _bad(f"[data] kind = {dc.kind!r}", exc) from None
    test = None
    if dc.test_n:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([dc.seed, 2])))
        test = sampler.test_set(dc.test_n, rng=rng)
    if not dyn.online:
        sampler = None

    q = int(data.Y.shape[1])
    d = int(data.X.shape[1])
    if mc.q is None:
        mc.q = q
    elif mc.q != q:
        raise ConfigError(f"model.q = {mc.q}: the data ({dc.kind}) have q = {q} outputs; "
                          f"remove model.q or set it to {q}")
    mc.check(cfg)
    try:
        model = make_model(**mc.make_kwargs(d=d, q=q))
    except (ValueError, TypeError) as exc:
        raise _bad("[model]", exc) from None
    if dyn.batch and not dyn.online and dyn.batch > data.X.shape[0]:
        raise ConfigError(f"dynamics.batch = {dyn.batch}: expected an integer between 0 and the "
                          f"number of samples n = {data.X.shape[0]}")
    try:
        common = dict(N=dyn.N, dt=dyn.dt, beta=dyn.beta, batch=dyn.batch or None,
                      sampler=sampler, xi=dyn.xi, xi_W=dyn.xi_W, train_W=mc.train_W, seed=dyn.seed)
        if dyn.solver == "kinetic":
            solver = KineticSolver(model, None if dyn.online else data, gamma=dyn.gamma,
                                   integrator=dyn.integrator, **common)
        else:
            solver = LangevinSolver(model, None if dyn.online else data, **common)
    except (ValueError, TypeError) as exc:
        raise _bad("[dynamics]", exc) from None
    kinetic_q = sorted(set(obs.quantities) & set(Observers.KINETIC))
    if kinetic_q and dyn.solver != "kinetic":
        raise ConfigError(f"observe.quantities = {kinetic_q}: need dynamics.solver = \"kinetic\"")
    try:
        observers = Observers(obs.quantities, model, data, test=test, beta=dyn.beta)
    except (ValueError, TypeError) as exc:
        raise _bad("observe.quantities", exc) from None
    return Built(cfg, data, sampler, test, model, solver, observers, dyn.n_steps)


def _snapshot_index(cfg: Config) -> np.ndarray:
    """Particles kept in snapshots: all, or a fixed random subset (own seeded generator)."""
    N, k = cfg.dynamics.N, cfg.observe.snapshot_particles
    if k == 0 or k >= N:
        return np.arange(N, dtype=np.int64)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([cfg.dynamics.seed, 1])))
    return np.sort(rng.choice(N, size=k, replace=False)).astype(np.int64)


# --------------------------------------------------------------------------------------------
# progress reporting
# --------------------------------------------------------------------------------------------

class _Progress:
    """tqdm bar on a terminal, periodic log lines otherwise, nothing when quiet."""

    def __init__(self, total: int, initial: int, quiet: bool, log_every: float,
                 stream: TextIO | None = None):
        self.total, self.quiet, self.log_every = total, quiet, log_every
        self.stream = stream if stream is not None else sys.stderr
        self.bar = None
        self.t0 = time.monotonic()
        self.k0 = initial
        self.last_log = self.t0
        self.last_ui = 0.0
        self.k = initial
        if quiet:
            return
        isatty = getattr(self.stream, "isatty", lambda: False)()
        if isatty:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, file=self.stream, unit="step",
                            dynamic_ncols=True, mininterval=0.2)

    def update(self, k: int, loss: float | None, force: bool = False) -> None:
        if self.quiet:
            self.k = k
            return
        now = time.monotonic()
        if self.bar is not None:
            if force or now - self.last_ui > 0.2:
                self.bar.update(k - self.k)
                self.k = k
                if loss is not None:
                    self.bar.set_postfix_str(f"loss={loss:.4g}", refresh=False)
                self.last_ui = now
            return
        self.k = k
        if force or now - self.last_log >= self.log_every:
            self.last_log = now
            self.log(k, loss)

    def log(self, k: int, loss: float | None) -> None:
        elapsed = time.monotonic() - self.t0
        done = k - self.k0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - k) / rate if rate > 0 else float("nan")
        pct = 100.0 * k / self.total if self.total else 100.0
        loss_s = f" loss={loss:.4g}" if loss is not None else ""
        print(f"step {k}/{self.total} ({pct:.0f}%){loss_s} elapsed {elapsed:.1f}s "
              f"eta {eta:.1f}s", file=self.stream, flush=True)

    def message(self, text: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self, k: int, loss: float | None) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(k - self.k)
            if loss is not None:
                self.bar.set_postfix_str(f"loss={loss:.4g}", refresh=False)
            self.bar.close()
        else:
            self.log(k, loss)


# --------------------------------------------------------------------------------------------
# signals
# --------------------------------------------------------------------------------------------

class _StopFlag:
    """SIGINT / SIGTERM set a flag; the loop finishes the current step and stops cleanly."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def _handler(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            # a second Ctrl-C while stopping: give up waiting
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)

    def __bool__(self) -> bool:
        return self.signum is not None


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
                      ("output", "checkpoint_every")}


def _config_diff(a: dict, b: dict) -> list[str]:
    out = []
    for sec in sorted(set(a) | set(b)):
        sa, sb = a.get(sec, {}), b.get(sec, {})
        for key in sorted(set(sa) | set(sb)):
            if (sec, key) in _IGNORED_ON_RESUME:
                continue
            if sa.get(key) != sb.get(key):
                out.append(f"{sec}.{key}: {sa.get(key)!r} in the file, {sb.get(key)!r} given")
    return out


def run(config: Config | str | os.PathLike, out_path: str | os.PathLike | None = None,
        resume: bool = False, quiet: bool = False, overrides: Iterable[str] = (),
        stream: TextIO | None = None) -> Path:
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

    Raises
    ------
    ConfigError : bad input (nothing written)
    NumericalError : NaN/inf during the run (status ``failed``, last good checkpoint kept)
    RunInterrupted : SIGINT/SIGTERM (status ``interrupted``, checkpoint written)
    """
    cfg = _resolve(config, overrides)
    if out_path is not None:
        cfg.output.path = os.fspath(out_path)
    path = Path(cfg.output.path)
    out = stream if stream is not None else sys.stderr

    exists = path.exists()
    if exists and path.is_dir():
        raise ConfigError(f"output.path = {str(path)!r}: is a directory")
    if exists and not resume and not cfg.output.overwrite:
        raise ConfigError(f"output file {path} exists; continue it with --resume or replace it "
                          f"with --set output.overwrite=true")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"output.path = {str(path)!r}: directory {str(parent)!r} does not exist")
    if not exists and not os.access(parent, os.W_OK):
        raise ConfigError(f"output.path = {str(path)!r}: directory {str(parent)!r} is not writable")

    # non-finite values are detected and reported by the runner itself (NumericalError)
    with _StopFlag() as stop, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _run(cfg, path, resume and exists, quiet, out, stop)


def _run(cfg: Config, path: Path, resuming: bool, quiet: bool, out: TextIO,
         stop: "_StopFlag") -> Path:
    store = None
    if resuming:
        try:
            store = RunStore.open(path)
        except (OSError, StoreError) as exc:
            msg = str(exc)
            if "lock" in msg.lower():
                msg = "the file is in use by another process"
            raise ConfigError(f"cannot resume {path}: {msg}") from None
        try:
            stored = parse_config(store.config_text, name=f"{path} (stored config)")
            built = build(stored)
            given = build_config_only(cfg)
            diff = _config_diff(stored.to_dict(), given.to_dict())
            if diff:
                raise ConfigError(f"cannot resume {path}: the config differs from the stored "
                                  f"one ({diff[0]})")
            # steps / t_end may be extended on resume; output options follow the command line
            stored.dynamics.steps, stored.dynamics.t_end = cfg.dynamics.steps, cfg.dynamics.t_end
            stored.output = cfg.output
            stored.observe.log_every = cfg.observe.log_every
            built.n_steps = stored.dynamics.n_steps
            built.config = stored
        except BaseException:
            store.close()
            raise
    else:
        built = build(cfg)

    solver, observers = built.solver, built.observers
    cfg = built.config
    partial: Path | None = None  # the file being created, until it is complete
    try:
        if not resuming:
            # the first observation is computed before the file exists (bad input: no file)
            first = _observe(observers, solver)
            _check_finite(solver, first, 0)
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
            if cfg.observe.snapshot_every:
                store.init_snapshots(_snapshot_index(cfg), solver.theta.shape[1],
                                     None if solver.W is None else solver.W.shape,
                                     velocities=hasattr(solver, "r"))
            _record(store, cfg, solver, first, built)
            store.write_checkpoint(solver.state_dict(), step=0, t=0.0)
            if path.exists() and not cfg.output.overwrite:
                raise ConfigError(f"output file {path} appeared while the run was starting")
            os.replace(partial, path)
            store.path = str(path)
            partial = None
        else:
            store.set_attrs(config=cfg.to_toml())
            ck = store.read_checkpoint()
            if ck is None:
                # killed before the first checkpoint: start again from step 0
                store.truncate(-1)
                first = _observe(observers, solver)
                _check_finite(solver, first, 0)
                _record(store, cfg, solver, first, built)
                store.write_checkpoint(solver.state_dict(), step=0, t=0.0)
            else:
                solver.load_state_dict(ck["state"])
                store.truncate(solver.k)
            if cfg.observe.snapshot_every and "snapshots" not in store.f:
                store.init_snapshots(_snapshot_index(cfg), solver.theta.shape[1],
                                     None if solver.W is None else solver.W.shape,
                                     velocities=hasattr(solver, "r"))
            store.set_status("running")
        _loop(store, built, quiet, out, stop)
    except BaseException:
        if store is not None:
            store.close()
        if partial is not None and partial.exists():
            partial.unlink()
        raise
    store.close()
    return path


def build_config_only(cfg: Config) -> Config:
    """Resolve the fields that depend on the data (``model.q``) without building a solver."""
    if cfg.model.q is None:
        from .data import make_dataset
        dc = cfg.data
        try:
            data = make_dataset(dc.kind, seed=dc.seed, **dc.params)
        except (ValueError, TypeError, OSError) as exc:
            raise _bad(f"[data] kind = {dc.kind!r}", exc) from None
        cfg.model.q = int(data.Y.shape[1])
    return cfg


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


def _observe(observers, solver) -> dict[str, float]:
    return observers(solver)


def _check_finite(solver, values: dict[str, float] | None, step: int,
                  since: int | None = None) -> None:
    where = f"at step {step}" if since is None or since >= step else \
        f"between steps {since} and {step}"
    for name, arr in (("theta", solver.theta), ("W", solver.W)):
        if arr is not None and not np.isfinite(arr).all():
            bad = int(np.count_nonzero(~np.isfinite(arr)))
            raise NumericalError(f"non-finite {name} ({bad} entries) {where}", step, name)
    if values:
        for name, v in values.items():
            if not math.isfinite(v):
                raise NumericalError(f"{name} = {v} at step {step}", step, name)


def _record(store: RunStore, cfg: Config, solver, values: dict[str, float], built: Built) -> None:
    """Events at the current step except the checkpoint: series row and snapshot."""
    k = solver.k
    if values is not None:
        store.append_series(k, solver.t, values)
    se = cfg.observe.snapshot_every
    if se and (k % se == 0 or k == built.n_steps):
        idx = store.snapshot_index
        full = idx.size == solver.theta.shape[0]
        theta = solver.theta if full else solver.theta[idx]
        r = getattr(solver, "r", None)
        if r is not None and not full:
            r = r[idx]
        store.append_snapshot(k, solver.t, theta, solver.W, r=r)


def _next_event(k: int, n_steps: int, cadences: list[int]) -> int:
    nxt = n_steps
    for c in cadences:
        if c > 0:
            nxt = min(nxt, (k // c + 1) * c)
    return nxt


def _loop(store: RunStore, built: Built, quiet: bool, out: TextIO, stop: "_StopFlag") -> None:
    cfg, solver, observers = built.config, built.solver, built.observers
    n_steps = built.n_steps
    every = cfg.observe.every
    snap = cfg.observe.snapshot_every
    ckpt = cfg.output.checkpoint_every
    last_ckpt = solver.k
    series = store.series()
    loss = float(series["loss"][-1]) if "loss" in series and len(series["loss"]) else None
    progress = _Progress(n_steps, solver.k, quiet, cfg.observe.log_every, out)
    if solver.k < n_steps:
        where = f"from step {solver.k}" if solver.k else "from step 0"
        progress.message(f"mfpde: running {n_steps} steps {where} (N = {cfg.dynamics.N}, "
                         f"dt = {cfg.dynamics.dt:g}) -> {store.path}")
    try:
        while solver.k < n_steps and not stop:
            target = _next_event(solver.k, n_steps, [every, snap, ckpt])
            start = solver.k
            while solver.k < target and not stop:
                solver.step(1)
                progress.update(solver.k, loss if loss is not None else solver.last_risk)
            k = solver.k
            if k < target:  # stopped by a signal between events
                _check_finite(solver, None, k, since=start)
                break
            values = None
            if k % every == 0 or k == n_steps:
                values = observers(solver)
                loss = values.get("loss", loss)
            _check_finite(solver, values, k, since=start)
            if not math.isfinite(solver.last_risk):
                raise NumericalError(f"risk = {solver.last_risk} at step {k - 1}",
                                     k - 1, "risk")
            _record(store, cfg, solver, values, built)
            if (ckpt and k % ckpt == 0) or k == n_steps:
                store.write_checkpoint(solver.state_dict(), step=k, t=solver.t)
                last_ckpt = k
        if stop and solver.k < n_steps:
            k = solver.k
            if k != last_ckpt:
                store.write_checkpoint(solver.state_dict(), step=k, t=solver.t)
            name = signal.Signals(stop.signum).name
            store.set_status("interrupted", f"{name} at step {k}")
            progress.close(k, loss)
            raise RunInterrupted(stop.signum, k, str(store.path))
    except NumericalError as exc:
        store.set_status("failed", f"{exc} (last good checkpoint: step {last_ckpt})")
        progress.close(solver.k, loss)
        exc.args = (f"{exc.args[0]}; last good checkpoint at step {last_ckpt} kept in "
                    f"{store.path}",)
        raise
    except KeyboardInterrupt:
        store.set_status("interrupted", f"SIGINT at step {solver.k} (no checkpoint written)")
        raise
    except RunInterrupted:
        raise
    except BaseException as exc:
        store.set_status("failed", f"{type(exc).__name__}: {exc}")
        raise
    store.set_status("complete")
    progress.close(solver.k, loss)


def record_grid(solver, path: str | os.PathLike, t_end: float, n_snapshots: int = 10, *,
                description: str = "", overwrite: bool = False) -> Path:
    """Run a grid solver (:mod:`mfpde.meanfield.grid` / ``phase_grid``) to ``t_end`` and write one
    run file: ``/grid`` density snapshots at ``n_snapshots + 1`` equally spaced times, and the
    series ``free_energy`` (the discrete free energy) and ``mass_drift`` (``|mass/mass_0 - 1|``,
    round-off only for a conservative scheme). ``mfpde info`` and
    ``mfpde plot`` read it like any run file.

    ``solver`` needs ``t``, ``run(t)``, ``free_energy()``, ``mass()`` and ``snapshot_arrays()``.
    """
    if not (math.isfinite(t_end) and t_end > solver.t):
        raise ValueError(f"t_end must be a finite time after the solver's t = {solver.t}, got {t_end!r}")
    if not (isinstance(n_snapshots, int) and n_snapshots >= 1):
        raise ValueError(f"n_snapshots must be an integer >= 1, got {n_snapshots!r}")
    text = (f'[grid]\nsolver = "{type(solver).__name__}"\nt_end = {float(t_end)!r}\n'
            f'n_snapshots = {n_snapshots}\n' + "".join(f"# {line}\n" for line in description.splitlines()))
    path = Path(path)
    times = np.linspace(solver.t, t_end, n_snapshots + 1)
    mass0 = solver.mass()
    with RunStore.create(path, config_text=text, seed=0, quantities=("free_energy", "mass_drift"),
                         overwrite=overwrite) as store:
        store.init_grid(solver.snapshot_arrays())
        for k, t in enumerate(times):
            if k:
                solver.run(float(t))
            store.append_series(k, solver.t, {"free_energy": solver.free_energy(),
                                              "mass_drift": abs(solver.mass() / mass0 - 1.0)})
            store.append_grid(k, solver.t, solver.snapshot_arrays()["density"])
        store.set_status("complete")
    return path
