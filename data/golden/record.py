"""Output hashes of the bundled examples and of one run of every driver kind.

Used around refactors: ``python data/golden/record.py record`` writes ``hashes.json`` (one
SHA-256 per dataset of every run file, and per state array of the library-level runs);
``python data/golden/record.py check`` recomputes them and lists every difference. Hashes
depend on the machine's BLAS and CPU, so they are compared on the machine that recorded them
(the file names the numpy / numba versions, the CPU and the commit they were made with).
The hashes were last recorded after the fused online kernel split its particles into two
parts from 512 particles (the features summed part by part): the online run moved by round-off
(largest change of its particle state 3.8e-16 of its largest entry), nothing else changed.
Before that, after the polynomial of the vectorised tanh's exponential was
evaluated by Estrin's scheme (the same polynomial, within 2 ulp of the C library as before) and
the compiled-projection pass took blocks of 4 MiB tiles (which regroups the risk's sum over
blocks): every tanh run moved by round-off (largest change of a particle state 1.8e-15 of its
largest entry, of any stored array 9.4e-15, in a loss gap, a difference of two losses; the
quadrature reference 8.1e-16); the grid, radial and phase-grid runs are bitwise unchanged. The
strips of the element-wise
kernels and the buffers kept between passes alone gave 0 differences. Before that: after the
finite-volume solver's logarithm became the vectorisable ``log_simd`` (largest change of
``rho`` 4.4e-16 of its maximum), and after the vectorised tanh with FMA contraction of the
read-out pass (largest relative change of a stored array 6e-14, of a particle state 2e-15).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VOLATILE = {"created", "updated", "mfpde_version", "config", "message", "wall_time", "written", "seconds",
            "elapsed"}

#: (name, config file, overrides) of the run-file cases
RUNS = [
    ("two_layer", "validation/example_two_layer.toml", []),
    ("nc", "validation/example_nc.toml", []),
    ("kinetic", "validation/example_kinetic.toml", []),
    ("two_layer_online", "validation/example_two_layer.toml",
     ["dynamics.batch=4", "dynamics.online=true", "dynamics.steps=600", "dynamics.beta=500"]),
    ("two_layer_minibatch_noisy", "validation/example_two_layer.toml",
     ["dynamics.batch=64", "dynamics.beta=200", "dynamics.steps=600"]),
    ("nc_frozen_W", "validation/example_nc.toml", ["model.train_W=false", "dynamics.steps=600"]),
    ("kinetic_shb", "validation/example_kinetic.toml",
     ["dynamics.integrator=\"shb\"", "dynamics.steps=600"]),
    ("kinetic_obabo", "validation/example_kinetic.toml",
     ["dynamics.integrator=\"obabo\"", "dynamics.steps=600"]),
]


def _h(a) -> str:
    a = np.ascontiguousarray(a)
    m = hashlib.sha256()
    m.update(str(a.dtype).encode() + str(a.shape).encode())
    m.update(a.tobytes())
    return m.hexdigest()[:24]


def hash_h5(path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                if obj.dtype.kind in "OSU":
                    data = np.array([str(x) for x in np.atleast_1d(data)])
                out[name] = _h(data)
            for k, v in obj.attrs.items():
                if k in VOLATILE:
                    continue
                out[f"{name}@{k}"] = _h(np.asarray(str(v) if isinstance(v, (str, bytes)) else v))
        visit("", f)
        f.visititems(visit)
    return out


def _cli(*args):
    subprocess.run([sys.executable, "-m", "mfpde", *args], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


#: extra overrides of every run
EXTRA: list[str] = []


def run_files(tmp: Path) -> dict:
    out = {}
    for name, cfg, sets in RUNS:
        p = tmp / f"{name}.h5"
        args = ["run", cfg, "-o", str(p), "--quiet"]
        for s in sets + EXTRA:
            args += ["--set", s]
        _cli(*args)
        out[name] = hash_h5(p)
    p = tmp / "compare.h5"
    _cli("compare", "validation/example_compare.toml", "-o", str(p), "--quiet")
    out["compare"] = hash_h5(p)
    return out


def _state_hashes(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        if isinstance(v, np.ndarray):
            out[k] = _h(v)
        elif isinstance(v, (list, tuple)) and v and isinstance(v[0], np.ndarray):
            out[k] = [_h(a) for a in v]
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[k] = repr(v)
    return out


def library_runs() -> dict:
    from mfpde.data import make_dataset
    out = {}
    # Pham-Nguyen: SGD, SHB (mini-batch) and the kinetic ODE reference
    from mfpde.models.three_layer_pn import PNThreeLayer as PN
    from mfpde.dynamics import PNDriver, PNKineticSolver
    data = make_dataset("teacher_student", seed=0, n=128, d=4, k_star=2)
    model = PN(d=4)
    for method, kw in (("sgd", {}), ("shb", {"gamma": 2.0}), ("shb_polyak", {"gamma": 2.0})):
        drv = PNDriver(model, data, n1=40, n2=30, dt=0.05, method=method, batch=16, seed=3, **kw)
        drv.step(150)
        out[f"pn_{method}"] = _state_hashes(drv.state_dict())
    ref = PNKineticSolver(model, data, n1=40, n2=30, dt=0.05, gamma=2.0, seed=1)
    ref.step(100)
    out["pn_kinetic"] = _state_hashes(ref.state_dict())
    # grid: finite volume 1-D (OU), 2-D, radial reduction, phase space
    from mfpde.meanfield import grid as G
    from mfpde.meanfield.phase_grid import PhaseGridSolver
    from mfpde.meanfield.radial import radial_solver
    g1 = G.Grid1D(-6.0, 6.0, 200)
    s = G.FVSolver(g1, G.ou_potential(g1, 1.0), G.gaussian_cell_averages(g1, 1.0, 0.5), beta=4.0)
    s.run(1.0)
    out["fv1d"] = _state_hashes({"rho": s.rho, "t": float(s.t), "k": int(getattr(s, "k", -1))})
    g2 = G.Grid2D([-4.0, -4.0], [4.0, 4.0], [40, 40])
    s = G.FVSolver(g2, G.ou_potential(g2, 1.0), G.gaussian_cell_averages(g2, [0.5, 0.0], [1.0, 1.0]),
                   beta=2.0)
    s.run(0.5)
    out["fv2d"] = _state_hashes({"rho": s.rho, "t": float(s.t)})
    s = radial_solver(d=20, delta=0.8, kappa=0.8, J=120)
    s.run(0.5)
    out["radial"] = _state_hashes({"rho": s.rho, "t": float(s.t)})
    from mfpde.meanfield.phase_grid import maxwellian_product
    tg = G.Grid1D(-3.0, 3.0, 60)
    s = PhaseGridSolver(tg, -4.0, 4.0, 60, G.double_well_potential(tg), gamma=1.0, beta=2.0,
                        rho0=maxwellian_product(tg, G.Grid1D(-4.0, 4.0, 60),
                                                G.gaussian_cell_averages(tg, 0.3, 0.4), 0.5))
    s.run(0.3)
    out["phase_grid"] = _state_hashes({"rho": s.rho, "t": float(s.t)})
    # quadrature reference
    from mfpde.meanfield.quadrature import QuadratureReference
    from mfpde.models import make_model
    qd = make_dataset("teacher_student", seed=0, n=16, d=1, k_star=1)
    qm = make_model(kind="two_layer", d=1, q=1, activation="tanh", lam=0.1)
    sol = QuadratureReference(qm, qd, n_q=6, gamma=1.0).solve([0.0, 0.5, 1.0])
    out["quadrature"] = {k: _h(np.asarray(v)) for k, v in vars(sol).items()
                         if isinstance(v, np.ndarray)}
    # the grid run file
    from mfpde import runner
    rg = getattr(runner, "record_grid", None)
    with tempfile.TemporaryDirectory() as tmp:
        s = G.FVSolver(g1, G.ou_potential(g1, 1.0), G.gaussian_cell_averages(g1, 1.0, 0.5),
                       beta=4.0)
        if rg is not None:
            rg(s, Path(tmp) / "g.h5", 1.0, n_snapshots=5)
        else:
            runner.record(s, Path(tmp) / "g.h5", t_end=1.0, every_time=0.2,
                          snapshot_every_time=0.2)
        if True:
            h = hash_h5(Path(tmp) / "g.h5")
            out["grid_file"] = {k: v for k, v in h.items() if k.startswith("grid/")
                                or k.startswith("series/")}
    return out


def compute() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        res = {"runs": run_files(Path(tmp)), "library": library_runs()}
    import numba
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                            capture_output=True).stdout.strip()
    res["env"] = {"numpy": np.__version__, "numba": numba.__version__,
                  "cpu": platform.processor() or platform.machine(), "commit": commit}
    return res


def _volatile(key: str) -> bool:
    return "@" in key and key.rsplit("@", 1)[1] in VOLATILE


def diff(a, b, where=""):
    out = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if _volatile(k):
                continue
            if k not in a:
                out.append(f"{where}/{k}: new")
            elif k not in b:
                out.append(f"{where}/{k}: missing")
            else:
                out += diff(a[k], b[k], f"{where}/{k}")
    elif a != b:
        out.append(f"{where}: {a} -> {b}")
    return out


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "check"
    os.environ.setdefault("NUMBA_NUM_THREADS", "2")
    res = compute()
    path = HERE / "hashes.json"
    if mode == "record":
        path.write_text(json.dumps(res, indent=1, sort_keys=True))
        print(f"recorded {sum(len(v) for v in res['runs'].values())} run-file hashes and "
              f"{len(res['library'])} library runs -> {path}")
    else:
        old = json.loads(path.read_text())
        d = [x for x in diff(old["runs"], res["runs"], "runs") + diff(old["library"], res["library"], "library")]
        for line in d:
            print(line)
        print(f"{len(d)} differences")
        sys.exit(1 if d else 0)
