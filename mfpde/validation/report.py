"""Report builder for ``mfpde validate``: ``report.md`` and ``results.h5``.

``report.md``: a summary line and one table row per check (case, quantity, measured, expected,
pass/fail, time of the case), then the figures. ``results.h5``: root attributes ``level``,
``created``, ``mfpde_version``, ``passed``; one group per case (name with ``/`` replaced by
``_``) with attributes ``passed``, ``seconds``, ``error`` and, per check, the datasets
``quantity`` (str), ``measured`` (float64; NaN if not a number), ``measured_text`` (str),
``expected`` (str), ``passed`` (bool), ``note`` (str).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from . import CaseResult, format_value


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _as_float(v) -> float:
    try:
        if isinstance(v, (bool, np.bool_)):
            return float(v)
        x = float(v)
        return x
    except (TypeError, ValueError):
        return math.nan


def write_markdown(results: Sequence[CaseResult], path: Path, *, level: str,
                   seconds: float) -> None:
    from mfpde import __version__

    n = sum(len(r.checks) for r in results)
    failed = sum(1 for r in results for c in r.checks if not c.passed)
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    lines = [
        "# mfpde validation report",
        "",
        f"Level: **{level}** · mfpde {__version__} · {created} · total {seconds:.1f} s",
        "",
        f"**{'PASSED' if failed == 0 else 'FAILED'}**: {n - failed} of {n} checks passed "
        f"in {len(results)} cases.",
        "",
        "| case | quantity | measured | expected | result | time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        for i, c in enumerate(r.checks):
            result = "pass" if c.passed else "**FAIL**"
            if c.note:
                result += f" ({_md(c.note)})"
            t = f"{r.seconds:.1f}" if i == 0 else ""
            lines.append(f"| {_md(c.case)} | {_md(c.quantity)} | {_md(format_value(c.measured))}"
                         f" | {_md(c.expected)} | {result} | {t} |")
    figs = [(r.name, f) for r in results for f in r.figures]
    if figs:
        lines += ["", "## Figures", ""]
        for name, f in figs:
            rel = os.path.relpath(f, path.parent)
            lines += [f"### {name}: {Path(f).stem}", "", f"![{Path(f).stem}]({rel})", ""]
    errors = [r for r in results if r.error]
    if errors:
        lines += ["", "## Errors", ""]
        for r in errors:
            lines += [f"### {r.name}", "", "```", r.error.rstrip(), "```", ""]
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")


def write_h5(results: Sequence[CaseResult], path: Path, *, level: str) -> None:
    import h5py

    from mfpde import __version__

    str_dt = h5py.string_dtype()
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["level"] = level
        f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        f.attrs["mfpde_version"] = __version__
        f.attrs["passed"] = bool(all(r.passed for r in results))
        for r in results:
            g = f.create_group(r.name.replace("/", "_"))
            g.attrs["passed"] = bool(r.passed)
            g.attrs["seconds"] = float(r.seconds)
            g.attrs["error"] = r.error
            g.attrs["figures"] = [Path(p).name for p in r.figures] if r.figures else ""
            checks = r.checks
            g.create_dataset("quantity", data=[c.quantity for c in checks], dtype=str_dt)
            g.create_dataset("measured", data=np.array([_as_float(c.measured) for c in checks],
                                                       dtype=np.float64))
            g.create_dataset("measured_text", data=[format_value(c.measured) for c in checks],
                             dtype=str_dt)
            g.create_dataset("expected", data=[str(c.expected) for c in checks], dtype=str_dt)
            g.create_dataset("passed", data=np.array([c.passed for c in checks], dtype=bool))
            g.create_dataset("note", data=[c.note for c in checks], dtype=str_dt)
    os.replace(tmp, path)


def write_report(results: Sequence[CaseResult], outdir: Path, *, level: str,
                 seconds: float) -> None:
    """Write ``outdir/report.md`` and ``outdir/results.h5``."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    write_markdown(results, outdir / "report.md", level=level, seconds=seconds)
    write_h5(results, outdir / "results.h5", level=level)
