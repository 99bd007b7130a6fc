"""``mfpde sweep init | run | status | collect | slurm``: parameter sweeps (docs/sweeps.md).

Exit codes: 0 success (``run``: every selected point complete); 1 some point failed; 2 bad
input (one line ``mfpde: error: ...``, nothing created); 75 some point stopped at its wall-clock
limit (continue with ``sweep run`` again); 130 / 143 the executor was stopped by SIGINT /
SIGTERM (the running points wrote a checkpoint). ``sweep run DIR --index I`` exits with the code
of that one run (as ``mfpde run``).
"""
from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["add_parser", "main"]

PROG = "mfpde"


def add_parser(subparsers):
    """Register ``sweep`` and its sub-commands on an ``argparse`` sub-parsers object."""
    p = subparsers.add_parser(
        "sweep", help="parameter sweeps: many runs of one configuration",
        description="Expand a configuration with a [sweep] section (grid and zipped axes over "
                    "config fields, seeds) into a directory with a manifest and one run file per "
                    "point; run the points (local pool, MPI pool, SLURM job array), report and "
                    "collect them. See docs/sweeps.md.")
    sub = p.add_subparsers(dest="sweep_command", metavar="SUBCOMMAND",
                           parser_class=subparsers._parser_class)

    i = sub.add_parser("init", help="create the sweep directory (manifest, one config per point)",
                       description="Validate CONFIG and every point, then create DIR: "
                       "manifest.toml, sweep.toml, base.toml and runs/NNNNN.toml. A DIR that holds "
                       "the same sweep is left as it is; one holding another sweep is an error.")
    i.add_argument("config", metavar="CONFIG", help="TOML file with a [sweep] section")
    i.add_argument("directory", metavar="DIR", help="the sweep directory (new or empty)")
    i.add_argument("--set", dest="overrides", metavar="SECTION.KEY=VALUE", action="append",
                   default=[], help="override a field of CONFIG (value read as TOML); repeatable")

    r = sub.add_parser("run", help="run the points that are not complete",
                       description="Run the points of DIR (or of CONFIG into -d DIR, created "
                       "first): complete runs are skipped, interrupted or killed ones resumed from "
                       "their last checkpoint, failed ones run again only with --retry-failed. "
                       "Every point is its own process. Exit 0 all complete, 1 some failed, 75 "
                       "some stopped at their wall-clock limit, 130/143 stopped by a signal; with "
                       "--index, the exit code of that run.")
    r.add_argument("target", metavar="DIR|CONFIG",
                   help="a sweep directory, or a TOML file with a [sweep] section (with -d)")
    r.add_argument("-d", "--directory", metavar="DIR",
                   help="with CONFIG: the sweep directory (created, or checked to hold this "
                   "sweep)")
    r.add_argument("-j", "--jobs", type=int, default=1, metavar="K",
                   help="local executor: processes at a time (default 1); MPI executor in a "
                   "single process: workers to spawn")
    r.add_argument("--executor", choices=("local", "mpi"), default="local",
                   help="local process pool (default) or MPI pool (mpiexec -n R mfpde sweep run "
                   "DIR --executor mpi; rank 0 schedules, ranks 1..R-1 run points)")
    r.add_argument("--index", type=int, metavar="I",
                   help="run only point I, in this process (a batch array task)")
    r.add_argument("--retry-failed", action="store_true",
                   help="start failed points anew")
    r.add_argument("--set", dest="overrides", metavar="SECTION.KEY=VALUE", action="append",
                   default=[], help="with DIR: run-time settings (output.time_limit, "
                   "output.time_margin, output.checkpoint_every, observe.log_every); with "
                   "CONFIG: overrides of the configuration")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress lines")

    s = sub.add_parser("status", help="counts per status and the failing points",
                       description="Counts of complete / running / interrupted / failed / "
                       "pending points, then each point that is not complete with its one-line "
                       "message (from the run file's status and message, or its .err file).")
    s.add_argument("directory", metavar="DIR")

    c = sub.add_parser("collect", help="one table of the axes against the observed quantities",
                       description="Write DIR/results.h5 and DIR/results.csv: per point the axis "
                       "values, status, last step and time, and the final, minimum and mean of "
                       "every observed quantity (q.final, q.min, q.mean). Python: "
                       "mfpde.load_sweep(DIR).")
    c.add_argument("directory", metavar="DIR")

    b = sub.add_parser("slurm", help="write an sbatch job-array script (one task per point)",
                       description="Write DIR/sweep.slurm (or -o FILE): an sbatch --array script "
                       "whose task I runs 'mfpde sweep run DIR --index I' with the thread "
                       "variables set from --cpus-per-task. --time also stops each run cleanly "
                       "with a checkpoint before the limit; --requeue continues unfinished points "
                       "in a new allocation. Submit it with sbatch.")
    b.add_argument("directory", metavar="DIR")
    b.add_argument("-o", "--output", metavar="FILE", help="script file (default DIR/sweep.slurm)")
    b.add_argument("--time", metavar="TIME", help="wall-clock limit per task (HH:MM:SS, "
                   "D-HH:MM:SS, MM); the run stops cleanly --slack seconds before it")
    b.add_argument("--slack", type=int, default=120, metavar="S",
                   help="seconds between the run's own limit and the task's (default 120)")
    b.add_argument("--cpus-per-task", type=int, default=1, metavar="C",
                   help="cores per task; OMP/NUMBA/OPENBLAS/MKL threads (default 1)")
    b.add_argument("--mem", metavar="MEM", help="memory per task (e.g. 4G)")
    b.add_argument("--partition", metavar="NAME")
    b.add_argument("--account", metavar="NAME")
    b.add_argument("--max-parallel", type=int, metavar="M",
                   help="at most M tasks at a time (--array=...%%M)")
    b.add_argument("--requeue", action="store_true",
                   help="requeue a task whose run stopped at its limit or on SIGTERM")
    b.add_argument("--pending", action="store_true",
                   help="array of the points not yet complete only")
    b.add_argument("--sbatch", dest="sbatch", metavar="OPTION", action="append", default=[],
                   help="an extra '#SBATCH OPTION' line (e.g. --sbatch=--qos=short); repeatable")
    b.add_argument("--command", dest="task_command", metavar="CMD",
                   help="how a task calls mfpde (default: this interpreter -m mfpde)")
    return p


def _fail(message: str, code: int = 2):
    text = " ".join(str(message).split())
    print(f"{PROG}: error: {text}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def main(args) -> int:
    """Run the ``sweep`` sub-command of parsed ``args``; returns the exit code."""
    from .config import ConfigError
    from .store import StoreError

    handler = {"init": _init, "run": _run, "status": _status, "collect": _collect,
               "slurm": _slurm}.get(getattr(args, "sweep_command", None))
    if handler is None:
        _fail("expected a sub-command: init, run, status, collect or slurm (see "
              "'mfpde sweep --help')")
    try:
        return handler(args)
    except (ConfigError, StoreError) as exc:
        _fail(str(exc), 2)


def _init(args) -> int:
    from .sweep import init_sweep
    sw = init_sweep(args.config, args.directory, args.overrides)
    print(f"{PROG}: sweep {sw.name}: {len(sw)} points in {sw.dir} (axes: "
          + ", ".join(sw.keys) + ")", flush=True)
    return 0


def _run(args) -> int:
    from .sweep import MANIFEST, init_sweep, run_point, run_sweep
    target = Path(args.target)
    settings = list(args.overrides)
    if target.is_file():
        if not args.directory:
            _fail(f"{target} is a configuration file: give the sweep directory with -d DIR")
        sw = init_sweep(target, args.directory, args.overrides)
        directory, settings = sw.dir, []
    else:
        if args.directory:
            _fail(f"-d {args.directory}: only with a configuration file (got the directory "
                  f"{target})")
        if not (target / MANIFEST).exists():
            _fail(f"{target}: neither a configuration file nor a sweep directory")
        directory = target
    if args.index is not None:
        code, msg = run_point(directory, args.index, retry_failed=args.retry_failed,
                              settings=settings, quiet=args.quiet, comm="auto")
        if code:
            print(f"{PROG}: sweep point {args.index}: {msg}", file=sys.stderr, flush=True)
        elif not args.quiet:
            print(f"{PROG}: sweep point {args.index}: {msg}", file=sys.stderr, flush=True)
        return code
    res = run_sweep(directory, jobs=args.jobs, executor=args.executor,
                    retry_failed=args.retry_failed, settings=settings, quiet=args.quiet)
    return 0 if res is None else res.exit_code


def _status(args) -> int:
    from .sweep import format_status
    print(format_status(args.directory), flush=True)
    return 0


def _collect(args) -> int:
    from .sweep import TABLE, collect
    table = collect(args.directory)
    d = Path(args.directory)
    n = len(table["index"])
    done = int(sum(s == "complete" for s in table["status"]))
    print(f"{PROG}: wrote {d / (TABLE + '.h5')} and {d / (TABLE + '.csv')} ({n} points, {done} "
          f"complete, {len(table)} columns)", flush=True)
    return 0


def _slurm(args) -> int:
    from .sweep import slurm_script
    text = slurm_script(args.directory, time_limit=args.time, cpus_per_task=args.cpus_per_task,
                        mem=args.mem, partition=args.partition, account=args.account,
                        max_parallel=args.max_parallel, requeue=args.requeue, slack=args.slack,
                        pending_only=args.pending, sbatch=args.sbatch, command=args.task_command)
    out = Path(args.output) if args.output else Path(args.directory) / "sweep.slurm"
    try:
        (Path(args.directory) / "slurm").mkdir(exist_ok=True)   # the tasks' --output files
        out.write_text(text, encoding="utf-8")
        out.chmod(0o755)
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror}")
    print(f"{PROG}: wrote {out}; submit it with: sbatch {out}", flush=True)
    return 0
