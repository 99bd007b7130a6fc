"""Parameter sweeps (mfpde.sweep, ``mfpde sweep``; docs/sweeps.md): the [sweep] section and its
expansion, idempotent re-runs after a SIGKILL of the executor, the local pool against serial
runs (bitwise), status and collect of a sweep with a failing point, the SLURM array script (one
task run locally) and the MPI pool under ``mpiexec -n 2``."""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from mfpde.config import ConfigError, load_config, parse_config
from mfpde.store import in_use, load
from mfpde.sweep import (collect, expand, format_status, init_sweep, load_sweep, open_sweep,
                         parse_time, run_point, slurm_script, status)

ROOT = Path(__file__).resolve().parent.parent
MFPDE = [sys.executable, "-m", "mfpde"]

BASE = """
[model]
kind = "two_layer"
activation = "tanh"
output = "trainable"

[data]
kind = "teacher_student"
n = {n}
d = {d}
k_star = 3
activation = "tanh"
noise = 0.0
seed = 7

[dynamics]
solver = "langevin"
N = {N}
dt = 0.05
steps = {steps}
beta = 1e4
seed = 0

[observe]
every = 10
quantities = ["loss", "grad_sq"]

[output]
checkpoint_every = 20
"""
#: quick runs (well under a second of stepping)
LIGHT = BASE.format(n=100, d=5, N=100, steps=100)
#: runs of a few seconds (long enough to be killed half-way)
SLOW = BASE.format(n=2000, d=20, N=200, steps=200)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for var in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "MFPDE_MPI"):
        env.pop(var, None)
    return env


def _cli(*args, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(MFPDE + [str(a) for a in args], capture_output=True, text=True,
                          env=_env(), cwd=ROOT, timeout=timeout, **kw)


def _write(tmp: Path, name: str, base: str, sweep: str) -> Path:
    p = tmp / name
    p.write_text(base + "\n" + sweep, encoding="utf-8")
    return p


def _datasets(path: Path) -> dict[str, bytes]:
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                a = obj[()]
                out[name] = (str(obj.dtype), np.asarray(a).tobytes())
        f.visititems(visit)
        if "checkpoint" in f:
            out["checkpoint@sha256"] = f["checkpoint"].attrs["sha256"]
    return out


def _same_files(a: Path, b: Path) -> None:
    da, db = _datasets(a), _datasets(b)
    assert sorted(da) == sorted(db), (a, b)
    diff = [k for k in da if da[k] != db[k]]
    assert not diff, f"{a} and {b} differ in {diff}"


# --------------------------------------------------------------------------------------------
# the [sweep] section and the expansion
# --------------------------------------------------------------------------------------------

SECTION = """
[sweep]
name = "demo"
seeds = 2
[sweep.grid]
dynamics.dt = [0.05, 0.1]
[sweep.zip]
"dynamics.N" = [50, 100]
model.lam = [0.0, 0.01]
"""


def test_section_is_a_job_and_round_trips():
    cfg = parse_config(LIGHT + SECTION)
    assert cfg.job == "sweep"
    assert cfg.sweep.axes == ["dynamics.dt", "dynamics.N", "model.lam", "dynamics.seed"]
    assert cfg.sweep.n_points == 8
    assert parse_config(cfg.to_toml()) == cfg
    assert cfg.replace(sweep=None).job == "run"
    assert cfg.with_values(["sweep.seeds=3"]).sweep.n_points == 12


@pytest.mark.parametrize("override, words", [
    ('sweep.grid={"dynamics.dtt" = [1.0]}', "did you mean 'dt'"),
    ('sweep.grid={"nosuch.x" = [1]}', "unknown section [nosuch]"),
    ('sweep.grid={"output.path" = ["a.h5"]}', "cannot be varied"),
    ('sweep.grid={"dynamics.seed" = [1, 2]}', "more than one axis"),
    ('sweep.zip={"dynamics.N" = [10, 20], "model.lam" = [0.0]}', "one length"),
    ("sweep.seeds=0", "count >= 1"),
    ('sweep.grid={"dynamics.dt" = 0.1}', "non-empty array"),
])
def test_section_errors_name_the_field(override, words):
    with pytest.raises(ConfigError) as e:
        parse_config(LIGHT + SECTION, [override])
    assert words in str(e.value) and "\n" not in str(e.value)


def test_expansion_order_and_point_configs(tmp_path):
    ex = expand(parse_config(LIGHT + SECTION).to_dict())
    assert len(ex.configs) == 8
    # grid outermost, then the zipped group, the seeds innermost
    assert [(o["dynamics.dt"], o["dynamics.N"], o["dynamics.seed"]) for o in ex.overrides[:4]] \
        == [(0.05, 50, 0), (0.05, 50, 1), (0.05, 100, 0), (0.05, 100, 1)]
    c = ex.configs[3]
    assert (c.dynamics.dt, c.dynamics.N, c.model.lam, c.dynamics.seed) == (0.05, 100, 0.01, 1)
    assert c.sweep is None and c.job == "run"
    # a point is the base file with --set overrides: unresolved defaults follow the point
    raw = LIGHT.replace("seed = 7\n", "")
    ex2 = expand(parse_config(raw + "[sweep]\nseeds = 2\n").to_dict())
    # (from the resolved base the data seed is fixed; from the file it follows dynamics.seed)
    p = _write(tmp_path, "s.toml", raw, "[sweep]\nseeds = 2\n")
    ex3 = expand(p)
    assert [c.data.seed for c in ex3.configs] == [1, 2]
    assert [c.data.seed for c in ex2.configs] == [1, 1]


def test_init_writes_manifest_and_refuses_bad_input(tmp_path):
    cfg = _write(tmp_path, "s.toml", LIGHT, SECTION)
    sw = init_sweep(cfg, tmp_path / "D")
    assert len(sw) == 8 and sw.keys == ["dynamics.dt", "dynamics.N", "model.lam",
                                        "dynamics.seed"]
    p = sw.points[5]
    assert p["run"] == "runs/00005.h5" and len(p["hash"]) == 64
    assert load_config(sw.path(5, "config")).dynamics.N == p["overrides"]["dynamics.N"]
    assert [s.status for s in status(sw.dir)] == ["pending"] * 8
    # the same sweep again: left as it is; another one: refused
    assert len(init_sweep(cfg, tmp_path / "D")) == 8
    with pytest.raises(ConfigError, match="holds another sweep"):
        init_sweep(cfg, tmp_path / "D", ["dynamics.steps=50"])
    # a bad axis value: one line naming the point, nothing created, exit 2
    r = _cli("sweep", "init", cfg, tmp_path / "E", "--set",
             'sweep.grid={"dynamics.dt" = [0.05, -1.0]}')
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and "sweep point" in line and "dynamics.dt" in line, line
    assert not (tmp_path / "E").exists()
    # a bad base: one line, exit 2
    r = _cli("sweep", "run", cfg, "-d", tmp_path / "F", "--set", "dynamics.N=0")
    assert r.returncode == 2 and "dynamics.N" in r.stderr and not (tmp_path / "F").exists()
    # `mfpde run` refuses a sweep file
    r = _cli("run", cfg, "-o", tmp_path / "x.h5")
    assert r.returncode == 2 and "mfpde sweep run" in r.stderr
    # run-time --set may only change how long / where a run writes
    with pytest.raises(ConfigError, match="may set only"):
        run_point(sw, 0, settings=["dynamics.dt=0.2"])


def test_bundled_example_expands_and_runs_a_point(tmp_path):
    example = ROOT / "validation" / "example_sweep.toml"
    assert load_config(example).job == "sweep"
    sw = init_sweep(example, tmp_path / "D", ["dynamics.steps=20", "observe.every=10"])
    assert len(sw) == 12
    assert run_point(sw, 11) == (0, "complete")
    assert status(sw.dir)[11].status == "complete"
    assert load_config(sw.path(11, "config")).model.lam == 0.001


def test_parse_time():
    assert parse_time("30") == 1800
    assert parse_time("10:00") == 600
    assert parse_time("01:00:00") == 3600
    assert parse_time("1-02:00:00") == 93600
    with pytest.raises(ConfigError):
        parse_time("soon")


# --------------------------------------------------------------------------------------------
# running: serial and the local pool, bitwise
# --------------------------------------------------------------------------------------------

GRID4 = """
[sweep]
name = "dt-seed"
seeds = 2
[sweep.grid]
dynamics.dt = [0.05, 0.1]
"""


@pytest.fixture(scope="module")
def serial_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serial")
    cfg = _write(tmp, "s.toml", LIGHT, GRID4)
    r = _cli("sweep", "run", cfg, "-d", tmp / "D", "-j", "1")
    assert r.returncode == 0, r.stderr
    return cfg, tmp / "D"


def test_pool_and_serial_give_identical_files(serial_sweep, tmp_path):
    cfg, serial = serial_sweep
    r = _cli("sweep", "run", cfg, "-d", tmp_path / "P", "-j", "2")
    assert r.returncode == 0, r.stderr
    assert "4 complete" in r.stderr
    for i in range(4):
        _same_files(serial / "runs" / f"{i:05d}.h5", tmp_path / "P" / "runs" / f"{i:05d}.h5")
    # idempotent: a second run does nothing
    before = [os.stat(serial / "runs" / f"{i:05d}.h5").st_mtime_ns for i in range(4)]
    r = _cli("sweep", "run", serial)
    assert r.returncode == 0 and "0 of 4 points to run" in r.stderr, r.stderr
    assert before == [os.stat(serial / "runs" / f"{i:05d}.h5").st_mtime_ns for i in range(4)]


def test_collect_and_load_sweep(serial_sweep):
    _, d = serial_sweep
    r = _cli("sweep", "collect", d)
    assert r.returncode == 0, r.stderr
    header = (d / "results.csv").read_text().splitlines()[0].split(",")
    for col in ("index", "dynamics.dt", "dynamics.seed", "status", "step", "loss.final",
                "loss.min", "loss.mean", "grad_sq.final"):
        assert col in header
    with h5py.File(d / "results.h5", "r") as f:
        assert f["table/loss.final"].shape == (4,)
    df = load_sweep(d)
    assert list(df["status"]) == ["complete"] * 4
    run = load(d / "runs" / "00003.h5")
    assert df.loc[3, "loss.final"] == run.series["loss"][-1]
    assert df.loc[3, "loss.min"] == run.series["loss"].min()
    assert df.loc[3, "loss.mean"] == run.series["loss"].mean()
    assert (df.loc[3, "dynamics.dt"], df.loc[3, "dynamics.seed"]) == (0.1, 1)
    import mfpde
    assert mfpde.load_sweep is load_sweep
    pytest.importorskip("xarray")
    ds = load_sweep(d, as_xarray=True)
    assert ds["loss.final"].dims == ("dynamics.dt", "dynamics.seed")
    assert float(ds["loss.final"].sel({"dynamics.dt": 0.1, "dynamics.seed": 1})) == \
        df.loc[3, "loss.final"]


def test_load_sweep_zip_axes_as_coordinates(tmp_path):
    pytest.importorskip("xarray")
    sw = init_sweep(_write(tmp_path, "s.toml", LIGHT, SECTION), tmp_path / "D")
    df = load_sweep(sw.dir)
    assert len(df) == 8 and set(df["status"]) == {"pending"}
    ds = load_sweep(sw.dir, as_xarray=True)
    assert set(ds.dims) == {"dynamics.dt", "dynamics.N", "dynamics.seed"}
    assert list(ds["model.lam"].values) == [0.0, 0.01]
    assert ds["model.lam"].dims == ("dynamics.N",)


# --------------------------------------------------------------------------------------------
# SIGKILL of the executor mid-way, then a re-run
# --------------------------------------------------------------------------------------------

def _progress(path: Path) -> int:
    """Last recorded step of a run file being written (-1 when unreadable)."""
    try:
        return int(load(path).series["step"][-1])
    except Exception:  # noqa: BLE001 - the file is being written
        return -1


def test_killed_sweep_resumes_without_redoing_finished_runs(tmp_path):
    cfg = _write(tmp_path, "s.toml", SLOW,
                 '[sweep]\nname = "kill"\n[sweep.grid]\ndynamics.dt = [0.05, 0.04, 0.03]\n')
    d = tmp_path / "D"
    init_sweep(cfg, d)
    runs = d / "runs"
    p = subprocess.Popen(MFPDE + ["sweep", "run", str(d), "-j", "1"], env=_env(), cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if (runs / "00001.h5").exists() and _progress(runs / "00001.h5") >= 40:
                break
            assert p.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.02)
        else:
            pytest.fail("point 1 did not reach step 40")
    finally:
        os.killpg(p.pid, signal.SIGKILL)     # the executor and its run, as a lost node
        p.wait()
    # the run process (a child of the executor) is gone once it no longer holds its file lock
    deadline = time.monotonic() + 30
    while in_use(runs / "00001.h5") and time.monotonic() < deadline:
        time.sleep(0.05)
    states = status(d)
    assert states[0].status == "complete"
    assert states[1].status == "interrupted" and "killed" in states[1].message, states[1]
    assert states[2].status == "pending"
    mtime0 = os.stat(runs / "00000.h5").st_mtime_ns

    r = _cli("sweep", "run", d, "-j", "1")
    assert r.returncode == 0, r.stderr
    assert "2 of 3 points to run" in r.stderr
    assert [s.status for s in status(d)] == ["complete"] * 3
    assert os.stat(runs / "00000.h5").st_mtime_ns == mtime0          # not redone
    assert (runs / "00000.log").read_text().count("=== mfpde sweep: point 0: start") == 1
    log1 = (runs / "00001.log").read_text()
    assert log1.count("=== mfpde sweep: point 1: start") == 2
    resumed = re.findall(r"running \d+ steps from step (\d+)", log1)
    assert len(resumed) == 2 and resumed[0] == "0" and int(resumed[1]) >= 20, log1
    # the resumed run is bitwise the uninterrupted one
    ref = init_sweep(cfg, tmp_path / "R")
    assert run_point(ref, 1) == (0, "complete")
    _same_files(runs / "00001.h5", ref.path(1))


def test_damaged_run_file_is_started_anew(tmp_path):
    sw = init_sweep(_write(tmp_path, "s.toml", LIGHT, "[sweep]\nseeds = 1\n"), tmp_path / "D")
    sw.path(0).write_bytes(b"not an HDF5 file")     # e.g. killed in the middle of a write
    st = status(sw.dir)[0]
    assert st.status == "interrupted" and "damaged" in st.message
    assert run_point(sw, 0) == (0, "complete")
    assert status(sw.dir)[0].status == "complete"


# --------------------------------------------------------------------------------------------
# a failing point: status, collect, retry
# --------------------------------------------------------------------------------------------

def test_failing_point_is_reported_and_does_not_stop_the_others(tmp_path):
    cfg = _write(tmp_path, "s.toml", LIGHT,
                 '[sweep]\nname = "diverge"\n[sweep.grid]\ndynamics.dt = [500.0, 0.05]\n')
    d = tmp_path / "D"
    r = _cli("sweep", "run", cfg, "-d", d)
    assert r.returncode == 1, r.stderr
    assert "point 0 failed" in r.stderr and "1 complete" in r.stderr
    states = status(d)
    assert [s.status for s in states] == ["failed", "complete"]
    assert "non-finite" in states[0].message
    assert "exit 1" in (d / "runs" / "00000.err").read_text()
    r = _cli("sweep", "status", d)
    assert r.returncode == 0
    assert re.search(r"failed\s+1", r.stdout) and re.search(r"complete\s+1", r.stdout)
    assert "[0] dynamics.dt=500" in r.stdout and "non-finite" in r.stdout
    assert format_status(d) == r.stdout.rstrip("\n")
    table = collect(d)
    assert list(table["status"]) == ["failed", "complete"]
    assert "non-finite" in table["message"][0]
    assert np.isfinite(table["loss.final"][1])
    import csv
    rows = list(csv.DictReader((d / "results.csv").open()))
    assert [row["status"] for row in rows] == ["failed", "complete"]
    assert rows[0]["dynamics.dt"] == "500.0" and float(rows[1]["loss.final"]) > 0
    # one task of a batch array: the run's exit code; failed points only on request
    r = _cli("sweep", "run", d, "--index", "0")
    assert r.returncode == 1 and "--retry-failed" in r.stderr
    r = _cli("sweep", "run", d, "--index", "0", "--retry-failed", "-q")
    assert r.returncode == 1 and "non-finite" in r.stderr
    assert r.stderr.count("\n") == 1
    assert _cli("sweep", "run", d, "--index", "1").returncode == 0
    assert _cli("sweep", "run", d, "--index", "2").returncode == 2


# --------------------------------------------------------------------------------------------
# SLURM job arrays
# --------------------------------------------------------------------------------------------

def test_slurm_script_and_one_task_run_locally(tmp_path, serial_sweep):
    cfg = _write(tmp_path, "s.toml", LIGHT, GRID4)
    d = tmp_path / "D"
    init_sweep(cfg, d)
    r = _cli("sweep", "slurm", d, "--time", "00:10:00", "--cpus-per-task", "2", "--requeue",
             "--max-parallel", "3", "--mem", "2G", "--sbatch=--qos=short")
    assert r.returncode == 0, r.stderr
    text = (d / "sweep.slurm").read_text()
    ad = str(d.resolve())
    for line in ("#SBATCH --array=0-3%3", "#SBATCH --cpus-per-task=2", "#SBATCH --time=00:10:00",
                 "#SBATCH --mem=2G", "#SBATCH --requeue", "#SBATCH --signal=B:TERM@60",
                 "#SBATCH --qos=short", f"#SBATCH --output={ad}/slurm/%A_%a.out",
                 "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-2}",
                 "export NUMBA_NUM_THREADS=${SLURM_CPUS_PER_TASK:-2}",
                 "export OPENBLAS_NUM_THREADS=${SLURM_CPUS_PER_TASK:-2}",
                 'scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"'):
        assert line in text.splitlines() or line in text, line
    cmd = [x for x in text.splitlines() if " sweep run " in x]
    assert len(cmd) == 1
    assert f'-m mfpde sweep run {ad} --index "$SLURM_ARRAY_TASK_ID" ' \
           f'--set output.time_limit=480 &' in cmd[0]
    # run task 2 locally: the script is plain bash (#SBATCH lines are comments)
    env = _env()
    env.update(SLURM_ARRAY_TASK_ID="2", SLURM_CPUS_PER_TASK="1", SLURM_ARRAY_JOB_ID="1")
    r = subprocess.run(["bash", str(d / "sweep.slurm")], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert [s.status for s in status(d)] == ["pending", "pending", "complete", "pending"]
    run = load(d / "runs" / "00002.h5")
    assert run.config["output"]["time_limit"] == 480.0
    _same_files(d / "runs" / "00002.h5", serial_sweep[1] / "runs" / "00002.h5")
    # the same task again is a no-op; an array of the pending points only
    assert subprocess.run(["bash", str(d / "sweep.slurm")], env=env, capture_output=True,
                          timeout=300).returncode == 0
    assert "#SBATCH --array=0-1,3" in slurm_script(d, pending_only=True)
    plain = slurm_script(d)
    assert "--requeue" not in plain and "--time" not in plain and "time_limit" not in plain


# --------------------------------------------------------------------------------------------
# the MPI pool
# --------------------------------------------------------------------------------------------

def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


@pytest.mark.mpi
def test_mpi_pool_executor(tmp_path, serial_sweep):
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py is not installed (pip install -e '.[mpi]')")
    launcher = _mpiexec()
    if launcher is None:
        pytest.skip("no MPI launcher (mpiexec) found: pip install -e '.[mpi]' installs MPICH's")
    cfg = _write(tmp_path, "s.toml", LIGHT, GRID4)
    d = tmp_path / "D"
    init_sweep(cfg, d)
    r = subprocess.run([launcher, "-n", "2"] + MFPDE + ["sweep", "run", str(d), "--executor",
                                                       "mpi"],
                       env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "on 1 MPI worker" in r.stderr and "4 complete" in r.stderr
    for i in range(4):
        _same_files(d / "runs" / f"{i:05d}.h5", serial_sweep[1] / "runs" / f"{i:05d}.h5")
    assert "mpi worker" in (d / "runs" / "00000.log").read_text()
