"""Registry of validation cases and the runner behind ``mfpde validate``.

A *case* is a function ``case(ctx) -> list[Check]`` registered under a dotted name::

    from mfpde.validation import Check, register

    @register("core.linear_gibbs", quick=True, full=True)
    def linear_gibbs(ctx):
        ...                                   # ctx.level is "quick" or "full"
        fig = ctx.figure("density")           # path of a PNG to write (optional)
        return [Check("core.linear_gibbs", "mean", measured, "0 ± 0.05", abs(measured) < 0.05)]

Each capability keeps its cases in its own module and adds the module name to
:data:`CASE_MODULES`; :func:`discover` imports them lazily. A module that fails to import is
reported as a failing case (``import:<module>``), not a crash.

:func:`run_validation` runs the selected cases, prints one line per check as it goes and writes
``DIR/report.md`` (table: case, quantity, measured, expected, pass/fail, time), ``DIR/results.h5``
(one group per case) and the figures the cases made; it returns the exit code (0 all passed,
1 a check failed).
"""

from __future__ import annotations

import fnmatch
import importlib
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

__all__ = ["Check", "Context", "Case", "register", "discover", "cases", "select",
           "run_validation", "CASE_MODULES", "LEVELS", "CaseResult"]

#: Modules holding registered cases, imported by :func:`discover` (in this order).
CASE_MODULES: list[str] = [
    "mfpde.validation.cases_core",
    "mfpde.validation.cases_kinetic",
    "mfpde.validation.cases_compare",
    "mfpde.validation.cases_grid",
    "mfpde.validation.cases_sparse",
    "mfpde.validation.cases_nc",
    "mfpde.validation.cases_dropout",
]

LEVELS = ("quick", "full")


@dataclass
class Check:
    """One measured quantity of a case against its expectation.

    ``measured`` is a number (or a short text); ``expected`` describes the target and tolerance
    in words or symbols (``"0.12 ± 0.01"``, ``"< 1e-6"``, ``"decreasing"``).
    """

    case: str
    quantity: str
    measured: Any
    expected: str
    passed: bool
    note: str = ""

    def __post_init__(self) -> None:
        self.passed = bool(self.passed)


@dataclass
class Case:
    name: str
    fn: Callable[["Context"], list[Check]]
    quick: bool = True
    full: bool = True
    module: str = ""

    def runs_at(self, level: str) -> bool:
        return self.quick if level == "quick" else self.full


@dataclass
class Context:
    """What a case gets: output directory, level (``quick`` | ``full``) and a base seed."""

    outdir: Path
    level: str = "quick"
    seed: int = 0
    case: str = ""
    figures: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.outdir = Path(self.outdir)

    @property
    def quick(self) -> bool:
        return self.level == "quick"

    def save(self, fig, name: str, dpi: int = 90) -> Path:
        """Lay out, write (:meth:`figure` path) and close a matplotlib figure."""
        import matplotlib.pyplot as plt
        fig.tight_layout()
        path = self.figure(name)
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        return path

    def figure(self, name: str) -> Path:
        """Path of a figure file for this case (``DIR/<case>_<name>.png``); remembered for the
        report."""
        stem = name[:-4] if name.endswith(".png") else name
        prefix = self.case.replace("/", "_")
        path = self.outdir / (f"{prefix}_{stem}.png" if prefix else f"{stem}.png")
        self.outdir.mkdir(parents=True, exist_ok=True)
        if path not in self.figures:
            self.figures.append(path)
        return path


_REGISTRY: dict[str, Case] = {}
_IMPORT_ERRORS: dict[str, str] = {}
_DISCOVERED = False


def register(name: str, quick: bool = True, full: bool = True):
    """Decorator registering ``fn(ctx) -> list[Check]`` as validation case ``name``."""

    def deco(fn):
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            old = _REGISTRY[name]
            if (old.module, old.fn.__qualname__) != (fn.__module__, fn.__qualname__):
                raise ValueError(f"validation case {name!r} is registered twice "
                                 f"({old.module} and {fn.__module__})")
        _REGISTRY[name] = Case(name, fn, quick=quick, full=full, module=fn.__module__)
        return fn

    return deco


def discover(modules: list[str] | None = None) -> dict[str, str]:
    """Import the case modules; returns ``{module: error text}`` for those that failed."""
    global _DISCOVERED
    for mod in (CASE_MODULES if modules is None else modules):
        if mod in sys.modules or mod in _IMPORT_ERRORS:
            continue
        try:
            importlib.import_module(mod)
        except Exception as exc:  # a broken case module must not stop the others
            _IMPORT_ERRORS[mod] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    _DISCOVERED = True
    return dict(_IMPORT_ERRORS)


def cases() -> dict[str, Case]:
    """All registered cases (after :func:`discover`)."""
    if not _DISCOVERED:
        discover()
    return dict(_REGISTRY)


def select(level: str = "quick", only: str | None = None) -> list[Case]:
    """Cases run at ``level``; ``only`` is a name, a dotted prefix (``core``) or a glob."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    chosen = []
    for name, case in cases().items():
        if only is not None and not _matches(name, only):
            continue
        if only is None and not case.runs_at(level):
            continue
        chosen.append(case)
    return chosen


def _matches(name: str, pattern: str) -> bool:
    return (name == pattern or name.startswith(pattern + ".")
            or fnmatch.fnmatchcase(name, pattern))


@dataclass
class CaseResult:
    name: str
    checks: list[Check]
    seconds: float
    figures: list[Path]
    error: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)


def format_value(v: Any) -> str:
    """Short text for a measured value."""
    try:
        import numpy as np
        if isinstance(v, np.generic):
            v = v.item()
        elif isinstance(v, np.ndarray):
            return "[" + ", ".join(format_value(x) for x in v.ravel()[:6]) + (
                ", ...]" if v.size > 6 else "]")
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.4g}"
    return str(v)


def run_case(case: Case, outdir: Path, level: str, seed: int = 0) -> CaseResult:
    """Run one case; exceptions become one failing check."""
    ctx = Context(outdir=outdir, level=level, seed=seed, case=case.name)
    t0 = time.perf_counter()
    error = ""
    try:
        checks = case.fn(ctx)
        if checks is None:
            checks = []
        checks = list(checks)
        if not checks:
            checks = [Check(case.name, "checks", "none", "at least one check", False,
                            note="the case returned no checks")]
    except Exception as exc:
        error = traceback.format_exc()
        last = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()[-1]
        checks = [Check(case.name, "run", "exception", "completes", False, note=last)]
    seconds = time.perf_counter() - t0
    figures = [p for p in ctx.figures if p.exists()]
    return CaseResult(case.name, checks, seconds, figures, error)


def _case_task(name: str, outdir: str, level: str, seed: int) -> CaseResult:
    """One case as a task of :mod:`mfpde.executors` (looked up by name in the worker)."""
    discover()
    return run_case(cases()[name], Path(outdir), level, seed)


def run_validation(level: str = "quick", only: str | None = None,
                   outdir: str | os.PathLike = "validation-report", seed: int = 0,
                   stream: TextIO | None = None, executor: str = "local",
                   jobs: int = 1) -> int:
    """Run the validation cases and write the report; returns the exit code.

    0: every check passed; 1: a check failed (or a case module did not import); 2: ``only``
    matches no case. ``executor`` / ``jobs``: where the cases run (:mod:`mfpde.executors`:
    ``jobs`` local processes, or ``"mpi"`` under ``mpiexec``, rank 0 writing the report and the
    other ranks running cases). Every case draws from generators seeded by ``seed`` (no global
    random state), so its values do not depend on the executor; cases are printed as they
    finish and the report lists them in their usual order.
    """
    from . import report
    from ..executors import task_pool

    out = stream if stream is not None else sys.stdout
    outdir = Path(outdir)
    with task_pool(executor, jobs) as pool:
        if not pool.root:
            return 0
        errors = discover()
        chosen = select(level, only)
        results: list[CaseResult] = []
        for mod, err in errors.items():
            name = f"import:{mod}"
            if only is not None and not _matches(name, only) and not _matches(mod, only):
                continue
            chk = Check(name, "import", "failed", "module imports", False,
                        note=err.splitlines()[-1])
            results.append(CaseResult(name, [chk], 0.0, [], err))
        if not chosen and not results:
            print(f"mfpde: error: no validation case matches {only!r}; known cases: "
                  + ", ".join(sorted(cases())), file=sys.stderr)
            return 2
        outdir.mkdir(parents=True, exist_ok=True)
        for r in results:
            _print_checks(r, out)
        total0 = time.perf_counter()
        if not pool.in_process:
            print(f"--- {len(chosen)} cases on {pool.workers} processes", file=out, flush=True)
        done: dict[int, CaseResult] = {}
        for i, r in pool.imap(_case_task, [(c.name, str(outdir), level, seed) for c in chosen]):
            if pool.in_process:
                print(f"--- {chosen[i].name}", file=out, flush=True)
            done[i] = r
            _print_checks(r, out)
        results += [done[i] for i in sorted(done)]
    total = time.perf_counter() - total0
    report.write_report(results, outdir, level=level, seconds=total)
    n_checks = sum(len(r.checks) for r in results)
    n_failed = sum(1 for r in results for c in r.checks if not c.passed)
    status = "PASSED" if n_failed == 0 else "FAILED"
    print(f"{status}: {n_checks - n_failed}/{n_checks} checks passed in {len(results)} cases "
          f"({total:.1f} s); report: {outdir / 'report.md'}", file=out, flush=True)
    return 0 if n_failed == 0 else 1


def _print_checks(r: CaseResult, out: TextIO) -> None:
    for c in r.checks:
        mark = "PASS" if c.passed else "FAIL"
        note = f"  ({c.note})" if c.note else ""
        print(f"{mark}  {c.case}  {c.quantity}: measured {format_value(c.measured)}, "
              f"expected {c.expected}{note}", file=out, flush=True)
    if r.checks:
        print(f"      {r.name}: {r.seconds:.1f} s", file=out, flush=True)
