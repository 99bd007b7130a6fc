"""The ``mfpde dropout`` and ``mfpde connect`` commands, and ``mfpde info`` for their result
files (docs/dropout-connectivity.md).

``mfpde dropout RUN.h5 [-o OUT.h5] [--M M ...] [--subsets K] [--snapshot I]``: dropout gaps of
the network stored in a run file (Monte Carlo over random subsets and the exact identity), written
to ``OUT.h5`` with the figure ``OUT.png`` (gap against ``M`` with the exact-identity curve).

``mfpde connect A.h5 B.h5 [-o OUT.h5] [--points P] [--snapshot I]``: loss along the path between
the networks of two comparable runs, barrier and half-dropout-gap bound, the straight line as a
baseline; ``OUT.h5`` and ``OUT.png`` (loss along the path with its segments marked).

Exit codes: 0 success; 1 ``connect`` found the inequality ``barrier <= bound`` violated (where it
is a theorem); 2 bad input (one line ``mfpde: error: ...``, nothing written).
"""
from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["add_parsers", "cmd_dropout", "cmd_connect", "info_analysis", "COMMANDS"]

PROG = "mfpde"


def _fail(message: str, code: int = 2):
    text = " ".join(str(message).split())
    print(f"{PROG}: error: {text}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def add_parsers(sub) -> None:
    """Register ``dropout`` and ``connect`` on the sub-command parsers of ``mfpde``."""
    d = sub.add_parser("dropout", help="dropout stability of a stored network",
                       description="Dropout gaps of the network of a run file: K random subsets "
                       "of M neurons (mean-field renormalisation 1/M), mean, quantiles and worst "
                       "subset, next to the exact identity E_S L_M - L_N = (1/M - 1/N) E_x s_x^2 "
                       "/ 2. Writes OUT.h5 and the figure OUT.png. Exit 0 success, 2 bad input.")
    d.add_argument("run", metavar="RUN.h5", help="run file written by 'mfpde run'")
    d.add_argument("-o", "--output", metavar="OUT.h5", default="dropout.h5",
                   help="result file (default dropout.h5)")
    d.add_argument("--M", dest="M", metavar="M", nargs="+",
                   help="sub-network sizes (default 16, 32, ... up to N/2); Pham–Nguyen: M2 "
                        "(all first-layer units kept) or M1xM2")
    d.add_argument("--subsets", metavar="K", type=int, default=200,
                   help="random subsets per size (default 200)")
    d.add_argument("--snapshot", metavar="I", default=None,
                   help="snapshot index (negative counts from the end; default the last) or "
                        "'checkpoint' (the final state; default when there are no snapshots)")
    d.add_argument("--seed", type=int, default=0, help="seed of the subset draws (default 0)")
    d.add_argument("--figure", metavar="FIG.png", help="figure file (default OUT.png)")
    d.add_argument("-q", "--quiet", action="store_true", help="no summary table")

    c = sub.add_parser("connect", help="low-loss path between two stored networks",
                       description="Loss along the five-segment path (two-layer, NC sharing W) "
                       "or the nine-segment Pham–Nguyen path between the networks of two "
                       "comparable runs (same [model], [data] and width), the barrier against "
                       "the bound 'larger half-dropout gap', and the straight line. Writes "
                       "OUT.h5 and OUT.png. Exit 0 success, 1 inequality violated, 2 bad input.")
    c.add_argument("run_a", metavar="A.h5")
    c.add_argument("run_b", metavar="B.h5")
    c.add_argument("-o", "--output", metavar="OUT.h5", default="connect.h5",
                   help="result file (default connect.h5)")
    c.add_argument("--points", metavar="P", type=int, default=40,
                   help="points per segment, endpoints included (default 40)")
    c.add_argument("--snapshot", metavar="I", default=None,
                   help="snapshot of both runs (default the last; or 'checkpoint')")
    c.add_argument("--figure", metavar="FIG.png", help="figure file (default OUT.png)")
    c.add_argument("-q", "--quiet", action="store_true", help="no summary")


def _sizes(values):
    if values is None:
        return None
    out = []
    for v in values:
        s = str(v).lower()
        try:
            if "x" in s:
                a, b = s.split("x", 1)
                out.append((int(a), int(b)))
            else:
                out.append(int(s))
        except ValueError:
            _fail(f"--M {v!r}: expected an integer (or M1xM2 for a Pham–Nguyen network)")
    return out


def _figure_path(args) -> str:
    return args.figure or str(Path(args.output).with_suffix(".png"))


def _check_outputs(args) -> None:
    for p in (args.output, _figure_path(args)):
        parent = Path(p).parent
        if str(parent) and not parent.is_dir():
            _fail(f"cannot write {p}: directory {str(parent)!r} does not exist")


def _plot(out, fig) -> None:
    from .plotting import plot_analysis
    try:
        plot_analysis(out, fig)
    except OSError as exc:
        _fail(f"cannot write {fig}: {exc}")


def cmd_dropout(args) -> int:
    from .analysis import AnalysisError, dropout_run, write_dropout

    if args.subsets < 2:
        _fail(f"--subsets {args.subsets}: expected an integer >= 2")
    _check_outputs(args)
    try:
        res, src = dropout_run(args.run, snapshot=args.snapshot, Ms=_sizes(args.M),
                               n_subsets=args.subsets, seed=args.seed)
        out = write_dropout(args.output, res, src)
    except AnalysisError as exc:
        _fail(str(exc))
    fig = _figure_path(args)
    _plot(out, fig)
    if not args.quiet:
        w = res.width
        wtxt = f"n1 x n2 = {w[0]} x {w[1]}" if isinstance(w, tuple) else f"N = {w}"
        print(f"{res.kind} network, {wtxt}, {src['source']} at step {src['step']} "
              f"(t = {src['t']:g}); L_N = {res.loss_N:.6g}; {res.n_subsets} subsets per M "
              f"({res.seconds:.2f} s)")
        print(f"{'M':>10} {'mean gap':>11} {'s.e.':>9} {'exact':>11} {'z':>6} "
              f"{'q10':>11} {'q90':>11} {'worst':>11}")
        lv = list(res.quantile_levels)
        for j in range(len(res.mean)):
            m = res.M[j]
            mt = f"{m[0]}x{m[1]}" if isinstance(w, tuple) else f"{int(m)}"
            q10 = res.quantiles[j, lv.index(0.1)] if 0.1 in lv else float("nan")
            q90 = res.quantiles[j, lv.index(0.9)] if 0.9 in lv else float("nan")
            print(f"{mt:>10} {res.mean[j]:11.4e} {res.se[j]:9.2e} {res.exact[j]:11.4e} "
                  f"{res.z[j]:6.2f} {q10:11.4e} {q90:11.4e} {res.worst[j]:11.4e}")
        print(f"{PROG}: wrote {out}, {fig}")
    return 0


def cmd_connect(args) -> int:
    from .analysis import AnalysisError, connect_runs, write_connect

    if args.points < 2:
        _fail(f"--points {args.points}: expected an integer >= 2")
    _check_outputs(args)
    try:
        res, sa, sb = connect_runs(args.run_a, args.run_b, snapshot=args.snapshot,
                                   points=args.points)
        out = write_connect(args.output, res, sa, sb)
    except AnalysisError as exc:
        _fail(str(exc))
    fig = _figure_path(args)
    _plot(out, fig)
    if not args.quiet:
        print(f"{res.kind} path, width {res.width}: L_A = {res.loss_A:.6g}, L_B = {res.loss_B:.6g}")
        for name, g in res.gaps.items():
            print(f"  dropout gap of {name}: {g:.4e}")
        rel = "<=" if res.holds else ">"
        claim = "" if res.applies else " (not a theorem for this network: phi3 is not the identity)"
        print(f"barrier {res.barrier:.4e} {rel} bound {res.bound:.4e} (margin {res.margin:.3e}, "
              f"round-off {res.tol:.1e}){claim}")
        print(f"straight line: barrier {res.straight_barrier:.4e}")
        print(f"{PROG}: wrote {out}, {fig}")
    return 1 if (res.applies and not res.holds) else 0


COMMANDS = {"dropout": cmd_dropout, "connect": cmd_connect}


def info_analysis(path, out=None) -> bool:
    """Print the summary of a dropout / connect result file; False if ``path`` is not one."""
    from .analysis import analysis_format, read_analysis

    if analysis_format(path) is None:
        return False
    out = out if out is not None else sys.stdout
    r = read_analysis(path)
    a = r["attrs"]
    print(f"file        {path} ({r['format']})", file=out)
    print(f"status      {a.get('status')}", file=out)
    print(f"schema      {a.get('schema_version')}   mfpde {a.get('mfpde_version')}", file=out)
    print(f"created     {a.get('created', '')}", file=out)
    width = f"{a['n1']} x {a['n2']}" if "n1" in a else f"N = {a.get('N')}"
    if r["format"] == "mfpde-dropout":
        print(f"network     {a.get('kind')}, {width}, {a.get('source_kind')} at step "
              f"{a.get('step')} of {a.get('source')}", file=out)
        print(f"loss_N      {a.get('loss_N'):.6g}   E_x s_x^2 {a.get('s2'):.6g}   "
              f"{a.get('n_subsets')} subsets per M, seed {a.get('seed')}", file=out)
        g = r["dropout"]
        print(f"  {'M':>10} {'mean gap':>11} {'s.e.':>9} {'exact':>11} {'worst':>11}", file=out)
        for j in range(g["mean"].shape[0]):
            m = g["M"][j]
            mt = f"{m[0]}x{m[1]}" if g["M"].ndim == 2 else f"{int(m)}"
            print(f"  {mt:>10} {g['mean'][j]:11.4e} {g['se'][j]:9.2e} {g['exact'][j]:11.4e} "
                  f"{g['worst'][j]:11.4e}", file=out)
    else:
        print(f"path        {a.get('kind')}, {width}, {len(a.get('segments', []))} segments, "
              f"{a.get('points')} points per segment", file=out)
        print(f"runs        A = {a.get('source_A')} (step {a.get('step_A')}), "
              f"B = {a.get('source_B')} (step {a.get('step_B')})", file=out)
        print(f"losses      L_A = {a.get('loss_A'):.6g}   L_B = {a.get('loss_B'):.6g}", file=out)
        for name, v in (a.get("gaps") or {}).items():
            print(f"  gap {name}: {v:.4e}", file=out)
        print(f"barrier     {a.get('barrier'):.4e}   bound {a.get('bound'):.4e}   holds "
              f"{bool(a.get('holds'))} (applies {bool(a.get('applies'))})", file=out)
        print(f"straight    barrier {a.get('straight_barrier'):.4e}", file=out)
    cfg = str(a.get("config", ""))
    if cfg:
        print("config (analysed run" + (" A" if r["format"] == "mfpde-connect" else "") + ")",
              file=out)
        for line in cfg.rstrip().splitlines():
            print(f"  {line}", file=out)
    return True
