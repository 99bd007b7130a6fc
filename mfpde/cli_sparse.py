"""``mfpde sparse CONFIG.toml -o OUT.h5``: run a sparse-recovery experiment (docs/sparse.md).

The configuration holds one ``[sparse]`` table (:mod:`mfpde.sparse.experiment`). Every field is
validated before any work starts: a bad value prints one line ``mfpde: error: sparse.<field>
...`` and exits with code 2, and nothing is written. On success the HDF5 results file (layout in
docs/sparse.md) and, with ``figure = true``, ``OUT.png`` are written; exit 0.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

__all__ = ["add_parser", "main"]

PROG = "mfpde"


def add_parser(subparsers):
    """Register the ``sparse`` sub-command on an ``argparse`` sub-parsers object."""
    p = subparsers.add_parser(
        "sparse", help="sparse recovery: k-IHT, Topk-I-OBS and the OBS family",
        description="Run a [sparse] configuration (runs x methods) into one HDF5 file with a "
                    "figure of loss and distance against the iteration (mean ± std over runs). "
                    "Exit 0 success, 2 bad input (nothing written).")
    p.add_argument("config", metavar="CONFIG", help="TOML file with a [sparse] table")
    p.add_argument("-o", "--output", metavar="OUT.h5", default="sparse.h5",
                   help="output file (default sparse.h5); the figure goes to OUT.png")
    p.add_argument("--set", dest="overrides", metavar="sparse.KEY=VALUE", action="append",
                   default=[], help="override a field (value read as TOML); repeatable")
    p.add_argument("--figure", metavar="FIG.png", help="figure file (default: OUT.png)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return p


def _fail(message: str, code: int = 2) -> int:
    text = " ".join(str(message).split())
    print(f"{PROG}: error: {text}", file=sys.stderr, flush=True)
    return code


def main(args) -> int:
    """Run the command for parsed ``args`` (``config``, ``output``, ``overrides``, ``figure``,
    ``quiet``); returns the exit code."""
    from .config import ConfigError
    from .sparse.experiment import load_spec, run_experiment, spec_to_toml
    from .sparse.results import plot_results, write_results

    t0 = time.monotonic()
    try:
        spec = load_spec(args.config, args.overrides)
    except ConfigError as exc:
        return _fail(str(exc))
    out = Path(args.output)
    fig = Path(args.figure) if args.figure else out.with_suffix(".png")
    for path, what in ((out, "output"), (fig, "figure")):
        parent = path.parent if str(path.parent) else Path(".")
        if path.is_dir():
            return _fail(f"{what} {path} is a directory")
        if not parent.is_dir():
            return _fail(f"cannot write {path}: directory {str(parent)!r} does not exist")
        if not os.access(parent, os.W_OK):
            return _fail(f"cannot write {path}: directory {str(parent)!r} is not writable")
    quiet = bool(args.quiet)
    if not quiet:
        print(f"{PROG}: {spec.name}: {spec.runs} runs x {len(spec.methods)} methods "
              f"({', '.join(spec.methods)}), {spec.steps} steps", flush=True)
    try:
        result = run_experiment(spec, quiet=quiet)
    except (ValueError, OSError) as exc:
        return _fail(str(exc), 2)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted (nothing written)", file=sys.stderr, flush=True)
        return 130
    write_results(result, out)
    wrote = [str(out)]
    if spec.figure:
        from .sparse.experiment import PAPER_SETUP_A
        ref = PAPER_SETUP_A if _is_setup_a(spec_to_toml(spec)) else None
        plot_results(result, fig, reference=ref)
        wrote.append(str(fig))
    if not quiet:
        for m, s in result.summary().items():
            print(f"  {m:<11} final loss {s['loss_mean']:.3g} ± {s['loss_std']:.2g}   "
                  f"||x - x*|| {s['dist_mean']:.3g} ± {s['dist_std']:.2g}   exact "
                  f"{s['exact']}/{s['runs']}   {s['s_per_iter'] * 1e6:.0f} us/iter", flush=True)
        print(f"{PROG}: wrote {', '.join(wrote)} ({time.monotonic() - t0:.1f} s)", flush=True)
    return 0


def _is_setup_a(toml_text: str) -> bool:
    """Whether the resolved spec is the published Setup A with its logging (draw the paper's
    points in the figure)."""
    import tomllib
    s = tomllib.loads(toml_text)["sparse"]
    want = {"problem": "regression", "prior": "gaussian", "d": 128, "n": 256, "k_star": 16,
            "k": 64, "noise": 0.0, "design": "1/n", "init": "uniform", "eta": "paper",
            "loss": "mse"}
    return all(s.get(k) == v for k, v in want.items()) and s.get("steps", 0) >= 750
