"""The ``mfpde`` command: ``run | info | plot | validate | compare | sweep | bench`` (and the
analysis and sparse commands).

Exit codes: 0 success; 1 numerical failure (``run``) or a failed validation check
(``validate``); 2 bad input (one line ``mfpde: error: ...``, nothing written); 130 / 143 a run
stopped by SIGINT / SIGTERM after writing a checkpoint. See docs/cli.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Sequence

__all__ = ["main", "build_parser"]

PROG = "mfpde"


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message and exit code 2."""

    def error(self, message: str):  # noqa: D401
        sub = self.prog.split()[1:] if self.prog else []
        hint = f" (see '{PROG} {' '.join(sub)} --help')" if sub else f" (see '{PROG} --help')"
        _fail(f"{message}{hint}", 2)


def _fail(message: str, code: int) -> "NoReturn":  # type: ignore[name-defined]
    """One line ``mfpde: error: ...`` and exit ``code``; under ``mpiexec`` every rank meets the
    same bad input and rank 0 alone prints it."""
    from .parallel import launched_rank
    if launched_rank() == 0:
        text = " ".join(str(message).split())
        print(f"{PROG}: error: {text}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def build_parser() -> argparse.ArgumentParser:
    from mfpde import __version__

    p = _Parser(prog=PROG, description="Mean-field theory of neural networks: run particle "
                "solvers from TOML configs, inspect and plot HDF5 run files, validate.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser("run", help="run a configuration and write an HDF5 run file",
                       description="Run CONFIG (TOML) and write the run file; any driver "
                       "(dynamics.solver). A file with a [compare] section runs the comparison "
                       "job (as 'mfpde compare'). Exit 0 success, 1 numerical failure (NaN/inf), "
                       "2 bad input, 130/143 SIGINT/SIGTERM.")
    r.add_argument("config", metavar="CONFIG", help="TOML configuration file")
    r.add_argument("-o", "--output", metavar="OUT.h5",
                   help="output file (default: output.path of the config, else run.h5)")
    r.add_argument("--set", dest="overrides", metavar="SECTION.KEY=VALUE", action="append",
                   default=[], help="override a config field (value read as TOML); repeatable")
    r.add_argument("--resume", action="store_true",
                   help="continue OUT.h5 from its last checkpoint (starts anew if it is missing)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar or log lines")

    i = sub.add_parser("info", help="summary of a run file",
                       description="Print config, status, sizes and the last value of every "
                       "series of a run file.")
    i.add_argument("path", metavar="OUT.h5")

    pl = sub.add_parser("plot", help="standard figures of a run file",
                        description="Loss, free energy, NC1 against time (log axes) and "
                        "particle marginals at the snapshot times.")
    pl.add_argument("path", metavar="OUT.h5")
    pl.add_argument("-o", "--output", metavar="FIG.png", help="figure file (default OUT.png)")

    v = sub.add_parser("validate", help="run the registered validation cases",
                       description="Run validation cases; writes DIR/report.md, DIR/results.h5 "
                       "and DIR/*.png. Exit 1 if any check fails.")
    lv = v.add_mutually_exclusive_group()
    lv.add_argument("--quick", dest="level", action="store_const", const="quick",
                    help="small experiments, minutes on 2 cores (default)")
    lv.add_argument("--full", dest="level", action="store_const", const="full",
                    help="the full-size experiments")
    v.add_argument("--only", metavar="NAME", help="run only this case (name, prefix or glob)")
    v.add_argument("-o", "--output", metavar="DIR", default="validation-report",
                   help="report directory (default: validation-report)")
    v.add_argument("--seed", type=int, default=0, help="base seed of the cases (default 0)")
    v.add_argument("--list", action="store_true", help="list the registered cases and exit")
    v.add_argument("-j", "--jobs", type=int, default=1, metavar="K",
                   help="run the cases in K local processes (default 1)")
    v.add_argument("--executor", choices=("local", "mpi"), default="local",
                   help="where the cases run: local processes (-j) or an MPI pool "
                   "('mpiexec -n R mfpde validate --full --executor mpi')")

    c = sub.add_parser("compare", help="finite-width networks against the mean-field reference",
                       description="Run a [compare] configuration (widths x seeds x step sizes, "
                       "synchronous coupling to a mean-field reference) into one HDF5 file with a "
                       "group per run, rate fits with bootstrap intervals and a figure. Schema: "
                       "docs/finite-width.md. Exit 0 success, 2 bad input.")
    c.add_argument("config", metavar="CONFIG", help="TOML file with a [compare] section")
    c.add_argument("-o", "--output", metavar="OUT.h5", default="compare.h5",
                   help="output file (default compare.h5); an existing file is replaced only "
                   "with --set output.overwrite=true, never while another process has it open")
    c.add_argument("--set", dest="overrides", metavar="SECTION.KEY=VALUE", action="append",
                   default=[], help="override a config field (value read as TOML); repeatable")
    c.add_argument("--resume", action="store_true",
                   help="continue OUT.h5.part, the file of an interrupted comparison, without "
                   "running its finished units again (a missing file starts a new job)")
    c.add_argument("-j", "--jobs", type=int, default=1, metavar="K",
                   help="run the units (seed x step-size groups) in K local processes "
                   "(default 1); the file is the same")
    c.add_argument("--executor", choices=("local", "mpi"), default=None,
                   help="where the units run: local processes (-j) or an MPI pool "
                   "('mpiexec -n R mfpde compare ... --executor mpi': rank 0 writes, R - 1 "
                   "ranks run units)")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress lines")

    from .cli_analysis import add_parsers as add_analysis_parsers
    add_analysis_parsers(sub)

    from .cli_sparse import add_parser as add_sparse_parser
    add_sparse_parser(sub)

    from .cli_sweep import add_parser as add_sweep_parser
    add_sweep_parser(sub)

    b = sub.add_parser("bench", help="performance benchmarks (source checkout)",
                       description="Dispatch to the benchmarks package.", add_help=False)
    b.add_argument("args", nargs=argparse.REMAINDER)
    return p


# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------

def cmd_run(args) -> int:
    """``mfpde run`` (and ``mfpde compare``): one run, or the comparison job of a file with a
    ``[compare]`` section, under the same output rules (see :func:`mfpde.runner.run`)."""
    from .config import ConfigError, load_config
    from .runner import NumericalError, RunInterrupted, run
    from .store import StoreError, StoreFullError

    t0 = time.monotonic()
    try:
        cfg = load_config(args.config, getattr(args, "overrides", ()))
        if cfg.job == "sweep":
            _fail(f"{args.config}: has a [sweep] section; run it with 'mfpde sweep run "
                  f"{args.config} -d DIR'", 2)
        jobs = getattr(args, "jobs", 1)
        executor = getattr(args, "executor", None) or ("local" if jobs != 1 else None)
        path = run(cfg, args.output, resume=getattr(args, "resume", False), quiet=args.quiet,
                   executor=executor, jobs=jobs)
        if path is None:          # a worker rank of the MPI executor
            return 0
    except (ConfigError, StoreError) as exc:
        _fail(str(exc), 2)
    except NumericalError as exc:
        _fail(f"numerical failure: {exc}", 1)
    except StoreFullError as exc:
        _fail(exc.strerror or str(exc), 3)
    except RunInterrupted as exc:
        print(f"{PROG}: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted (nothing written over the output file)", file=sys.stderr,
              flush=True)
        return 130
    if not args.quiet:
        if cfg.job == "compare":
            print(f"{PROG}: wrote {path} ({time.monotonic() - t0:.1f} s)", flush=True)
            return 0
        from .store import load
        r = load(path)
        steps = int(r.series["step"][-1]) if len(r.series.get("step", [])) else 0
        print(f"{PROG}: wrote {path} (status {r.status}, {steps} steps, "
              f"{time.monotonic() - t0:.1f} s)", flush=True)
    return 0


def cmd_compare(args) -> int:
    """``mfpde compare CMP.toml -o OUT.h5``: :func:`cmd_run` of a comparison file."""
    from .config import load_config
    from .errors import ConfigError
    try:
        if load_config(args.config).job != "compare":
            _fail(f"{args.config}: has no [compare] section (use 'mfpde run' for a run)", 2)
    except ConfigError as exc:
        _fail(str(exc), 2)
    return cmd_run(args)


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n}"


def _open_run(path: str):
    from .store import StoreError, load

    try:
        return load(path)
    except FileNotFoundError:
        _fail(f"{path}: no such file", 2)
    except StoreError as exc:
        _fail(str(exc), 2)
    except OSError as exc:
        _fail(f"{path}: not a readable HDF5 file ({str(exc).splitlines()[0]})", 2)


def _info_compare(path: str) -> bool:
    """Summary of a comparison file (``mfpde compare``); False if ``path`` is not one."""
    from .store import COMPARE_FORMAT, StoreError, read_compare
    try:
        import h5py
        with h5py.File(path, "r", locking=False) as f:
            if f.attrs.get("format") != COMPARE_FORMAT:
                return False
        r = read_compare(path)
    except (OSError, StoreError):
        return False
    a, c = r["attrs"], r["config"]
    out = sys.stdout
    print(f"file        {path} (mfpde compare, {_human(os.path.getsize(path))})", file=out)
    print(f"status      {a.get('status')}   {a.get('seconds', float('nan')):.1f} s", file=out)
    print(f"schema      {a.get('schema_version')}   mfpde {a.get('mfpde_version')}", file=out)
    print(f"created     {a.get('created', '')}", file=out)
    seeds = c.get("seeds")
    print(f"comparison  {c.get('name')!r}: method {c.get('method')}, widths {c.get('widths')}, "
          f"seeds {seeds}, dts {c.get('dts')}, T = {c.get('T')}, reference N = "
          f"{c.get('reference', {}).get('N')}", file=out)
    print(f"runs        {len(r['runs'])} networks, {len(r['references'])} references; held-out "
          f"set: {a.get('test_set', '')}", file=out)
    for name, fit in r["fits"].items():
        fa = fit["attrs"]
        print(f"fit {name:<10} {fa.get('quantity')} ~ C {fa.get('x_name')}^s: s = "
              f"{fa.get('slope'):.4g} ({100 * fa.get('ci_level', 0.95):.0f}% CI "
              f"[{fa.get('ci_low'):.4g}, {fa.get('ci_high'):.4g}]; reference "
              f"{fa.get('ref_slope'):g}; {fa.get('fixed', '')})", file=out)
    return True


def cmd_info(args) -> int:
    from .cli_analysis import info_analysis
    if info_analysis(args.path):      # a dropout / connect result file
        return 0
    if _info_compare(args.path):      # a comparison file
        return 0
    run = _open_run(args.path)
    sizes = run.sizes()
    a = run.attrs
    out = sys.stdout
    print(f"file        {run.path} ({_human(sizes['file_bytes'])})", file=out)
    status = run.status + (f" ({run.message})" if run.message else "")
    print(f"status      {status}", file=out)
    print(f"schema      {a.get('schema_version')}   mfpde {a.get('mfpde_version')}   "
          f"seed {a.get('seed')}", file=out)
    print(f"created     {a.get('created', '')}   updated {a.get('updated', '')}", file=out)
    s = run.series
    n = len(s.get("t", []))
    if n:
        print(f"series      {n} rows, step {int(s['step'][0])}..{int(s['step'][-1])}, "
              f"t {s['t'][0]:g}..{s['t'][-1]:g}", file=out)
        width = max(len(q) for q in run.quantities) if run.quantities else 4
        for q in run.quantities:
            print(f"  {q:<{width}}  {s[q][-1]:.6g}", file=out)
    else:
        print("series      (none)", file=out)
    if run.n_snapshots:
        shapes = ", ".join(f"{k} {tuple(sizes[f'snapshots/{k}'][1:])}"
                           for k in run.snapshot_fields if f"snapshots/{k}" in sizes)
        print(f"snapshots   {run.n_snapshots} x ({shapes})  at t = "
              + ", ".join(f"{t:g}" for t in run.snapshot_times[:8])
              + (" ..." if run.n_snapshots > 8 else ""), file=out)
    else:
        grid = sizes.get("grid/density")
        print(f"snapshots   {grid[0]} densities {tuple(grid[1:])}" if grid else
              "snapshots   (none)", file=out)
    ck = run.checkpoint()
    if ck is not None:
        meta = ck["meta"]
        print(f"checkpoint  step {meta.get('step')}  t {meta.get('t', float('nan')):g}  "
              f"written {meta.get('written', '')}", file=out)
    else:
        print("checkpoint  (none)", file=out)
    print("datasets", file=out)
    for name, shape in sizes.items():
        if name != "file_bytes":
            print(f"  /{name}  {shape}", file=out)
    print("config", file=out)
    for line in run.config_text.rstrip().splitlines():
        print(f"  {line}", file=out)
    return 0


def cmd_plot(args) -> int:
    run = _open_run(args.path)
    out = args.output or str(Path(args.path).with_suffix(".png"))
    parent = Path(out).parent
    if str(parent) and not parent.is_dir():
        _fail(f"cannot write {out}: directory {str(parent)!r} does not exist", 2)
    from .plotting import plot_run
    try:
        plot_run(run, out)
    except OSError as exc:
        _fail(f"cannot write {out}: {exc}", 2)
    print(f"{PROG}: wrote {out}")
    return 0


def cmd_validate(args) -> int:
    from . import validation

    if args.list:
        errors = validation.discover()
        for name, case in sorted(validation.cases().items()):
            levels = "+".join(lv for lv in ("quick", "full") if case.runs_at(lv))
            print(f"{name:<40} {levels:<12} {case.module}")
        for mod, err in errors.items():
            print(f"import:{mod:<33} FAILED       {err.splitlines()[-1]}")
        return 0
    from .errors import ConfigError
    try:
        return validation.run_validation(level=args.level or "quick", only=args.only,
                                         outdir=args.output, seed=args.seed,
                                         executor=args.executor, jobs=args.jobs)
    except ConfigError as exc:
        _fail(str(exc), 2)


def cmd_bench(args) -> int:
    import importlib

    # the benchmarks ship with the source tree next to the package (an editable install, or
    # a checkout on the path); they are not part of an installed wheel
    root = Path(__file__).resolve().parent.parent
    if (root / "benchmarks" / "__init__.py").is_file() and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        bench = importlib.import_module("benchmarks")
    except ImportError:
        _fail("the benchmarks ship with the source tree: install mfpde from a checkout "
              "(pip install -e '.[bench]') and run 'mfpde bench', or 'python -m benchmarks' "
              "in the checkout", 2)
    main = getattr(bench, "main", None)
    if main is None:
        try:
            main = importlib.import_module("benchmarks.__main__").main
        except (ImportError, AttributeError):
            _fail("the benchmarks package has no main() entry point", 2)
    rc = main(list(args.args))
    return int(rc or 0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:                                   # the compile settings read from the environment
        from . import _numba  # noqa: F401
    except ValueError as exc:              # e.g. MFPDE_VECTOR_BITS=128
        print(f"mfpde: {exc}", file=sys.stderr)
        return 2
    if argv[:1] == ["bench"]:
        # everything after `bench` (options included) belongs to the benchmarks' own parser
        return cmd_bench(argparse.Namespace(args=argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "sparse":
        from .cli_sparse import main as cmd_sparse
        return cmd_sparse(args)
    if args.command == "sweep":
        from .cli_sweep import main as cmd_sweep
        return cmd_sweep(args)
    from .cli_analysis import COMMANDS as analysis_commands
    handler = {"run": cmd_run, "info": cmd_info, "plot": cmd_plot, "validate": cmd_validate,
               "compare": cmd_compare, "bench": cmd_bench, **analysis_commands}[args.command]
    try:
        return handler(args)
    except BrokenPipeError:  # e.g. `mfpde info run.h5 | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
