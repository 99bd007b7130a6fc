"""One run split over MPI ranks (docs/hpc.md): the rank-count contract, resume with a changed
rank count, SIGTERM, the abort of a failing rank, ``mpiexec mfpde run`` against one process.

Each test launches ``mpiexec`` itself (the MPICH of the ``mpi`` extra, next to the interpreter, or
one on PATH) on ``tests/mpi_helper.py`` or on the ``mfpde`` command. The largest rank count is
``MFPDE_TEST_MPI_RANKS`` (default 3; ``.ci/run`` runs the tests with 2 and then 3). Skipped with a
message when mpi4py or an MPI launcher is missing.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from mpi_helper import differences, digest  # noqa: E402

pytestmark = pytest.mark.mpi


def _launcher() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    return shutil.which("mpiexec")


MPIEXEC = _launcher()
RANKS = int(os.environ.get("MFPDE_TEST_MPI_RANKS", "3"))
MFPDE = [sys.executable, "-m", "mfpde"]

if importlib.util.find_spec("mpi4py") is not None and MPIEXEC is None:
    pytestmark = [pytestmark, pytest.mark.skip(
        reason="no MPI launcher (mpiexec) found: pip install -e '.[mpi]' installs MPICH's")]


def _env(threads: int = 1) -> dict:
    env = dict(os.environ)
    env["NUMBA_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for var in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "MFPDE_MPI"):
        env.pop(var, None)
    return env


def _mpi(n: int, *args, threads: int = 1, timeout: float = 600, **kw):
    return subprocess.run([MPIEXEC, "-n", str(n), *args], env=_env(threads), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, **kw)


def _helper(n: int, mode: str, out: Path, threads: int = 1):
    return _mpi(n, sys.executable, str(HERE / "mpi_helper.py"), mode, str(out), threads=threads)


CONFIG = """
[model]
kind = "two_layer"
activation = "tanh"

[data]
kind = "teacher_student"
n = 200
d = 4

[dynamics]
N = 4096
dt = 0.05
steps = {steps}
beta = 200.0
batch = 50

[observe]
every = 5
quantities = ["loss", "reg_loss"]
snapshot_every = 10
snapshot_particles = 64
log_every = 0.2

[output]
checkpoint_every = 10
"""


def test_results_do_not_depend_on_the_rank_count(tmp_path):
    """R = 1 .. RANKS ranks (sub-communicators of one launch), thread counts 1 and 2, and one
    process: the files are identical for every driver and batch mode of the helper's cases."""
    r = _helper(max(2, RANKS), "contract", tmp_path, threads=2)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK" in r.stdout and "identical" in r.stdout, r.stdout + r.stderr


def test_resume_with_a_changed_rank_count(tmp_path):
    """Runs on R - 1 ranks resumed on R ranks equal one uninterrupted process."""
    r = _helper(max(2, RANKS), "resume", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("OK"), r.stdout + r.stderr


def test_a_failing_rank_aborts_the_job(tmp_path):
    """An exception on rank 1 prints its rank and traceback once and ends the whole job with a
    non-zero exit within seconds (rank 0 waits in a collective: without the abort it hangs)."""
    t0 = time.monotonic()
    r = _helper(2, "fail", tmp_path)
    elapsed = time.monotonic() - t0
    assert r.returncode != 0 and r.returncode != 3, r.stdout + r.stderr
    assert elapsed < 60, elapsed
    text = r.stdout + r.stderr
    assert text.count("mfpde: rank 1 of 2 failed; aborting the job") == 1, text
    assert "RuntimeError: injected failure on this rank" in text, text
    assert "Traceback" in text
    assert "did not fail" not in text


def test_mpiexec_mfpde_run_writes_the_file_of_one_process_and_stops_on_sigterm(tmp_path):
    """``mpiexec -n 2 mfpde run`` writes what one process writes; SIGTERM to the launcher stops
    every rank at the same step with a checkpoint (exit 143); the run resumes on another rank
    count and ends with the file of one uninterrupted process."""
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG.format(steps=30))
    serial = tmp_path / "serial.h5"
    r = subprocess.run([*MFPDE, "run", str(cfg), "-o", str(serial), "-q"], env=_env(),
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    split = tmp_path / "split.h5"
    r = _mpi(2, *MFPDE, "run", str(cfg), "-o", str(split))
    assert r.returncode == 0, r.stdout + r.stderr
    assert differences(digest(serial), digest(split)) == []
    # rank 0 alone reports: one header line and one summary line
    assert r.stderr.count("mfpde: running 30 steps") == 1, r.stderr
    assert r.stdout.count("mfpde: wrote") == 1, r.stdout

    # SIGTERM from the batch system
    cfg.write_text(CONFIG.format(steps=1_000_000))
    long = tmp_path / "long.h5"
    p = subprocess.Popen([MPIEXEC, "-n", "2", *MFPDE, "run", str(cfg), "-o", str(long)],
                         env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not long.exists():
        time.sleep(0.2)
    time.sleep(1.5)                                       # a few chunks of steps
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 143, out + err
    assert err.count("interrupted by SIGTERM") == 1, err
    import mfpde
    run = mfpde.load(long)
    assert run.status == "interrupted"
    k = int(run.checkpoint()["state"]["k"])
    assert k > 0 and int(run.series["step"][-1]) <= k
    total = k + 25
    r = _mpi(max(1, RANKS), *MFPDE, "run", str(cfg), "-o", str(long), "--resume", "-q",
             "--set", f"dynamics.steps={total}")
    assert r.returncode == 0, r.stdout + r.stderr
    straight = tmp_path / "straight.h5"
    r = subprocess.run([*MFPDE, "run", str(cfg), "-o", str(straight), "-q", "--set",
                        f"dynamics.steps={total}"], env=_env(), cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert differences(digest(straight), digest(long)) == []


def test_compare_reference_split_does_not_depend_on_the_rank_count(tmp_path):
    """The reference of ``mfpde compare`` split over R = 2 .. RANKS ranks (sub-communicators of
    one launch): noisy SGD with shared batches and Brownian increments, both noise streams,
    heavy ball, online samples, NC, and networks wider than rank 0's rows — every file equals
    one process's, and the reference was split on every R."""
    r = _helper(max(2, RANKS), "compare", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("OK"), r.stdout + r.stderr


def test_mpiexec_mfpde_compare_splits_the_reference_stops_on_sigterm_and_resumes(tmp_path):
    """``mpiexec -n 2 mfpde compare``: SIGTERM after the first unit stops every rank at an agreed
    step (exit 143, one line, the finished unit kept in ``OUT.h5.part``); ``--resume`` on another
    rank count completes it; the file equals one uninterrupted process's."""
    from mpi_helper import COMPARE
    volatile = {"created", "updated", "mfpde_version", "seconds"}
    cfg = tmp_path / "c.toml"
    cfg.write_text(COMPARE.replace("T = 0.2", "T = 40.0"))
    out = tmp_path / "c.h5"
    p = subprocess.Popen([MPIEXEC, "-n", "2", *MFPDE, "compare", str(cfg), "-o", str(out)],
                         env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    line = p.stdout.readline()                  # rank 0 prints it when seed 0 is written
    assert line.startswith("seed 0"), line + p.stderr.read()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    if p.returncode == 0:
        pytest.skip("the comparison finished before the signal arrived")
    assert p.returncode == 143, err
    assert err.count("interrupted by SIGTERM") == 1 and "1 finished units" in err, err
    assert "Traceback" not in err and "aborting" not in err, err
    assert (tmp_path / "c.h5.part").exists() and not out.exists()
    r = _mpi(max(2, RANKS), *MFPDE, "compare", str(cfg), "-o", str(out), "--resume")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("kept from the interrupted job") == 1, r.stdout
    assert r.stdout.count("mfpde: wrote") == 1, r.stdout
    one = tmp_path / "one.h5"
    r = subprocess.run([*MFPDE, "compare", str(cfg), "-o", str(one), "-q"], env=_env(),
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert differences(digest(one, volatile), digest(out, volatile)) == []
    # the Pham–Nguyen reference is not split: one line, exit 2, nothing written
    pn = tmp_path / "pn.toml"
    pn.write_text(COMPARE.replace('kind = "two_layer"', 'kind = "pham_nguyen"')
                  .replace('method = "noisy_sgd"', 'method = "sgd"').replace("beta = 50.0", ""))
    r = _mpi(2, *MFPDE, "compare", str(pn), "-o", str(tmp_path / "pn.h5"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().count("\n") == 0 and "pham_nguyen" in r.stderr, r.stderr
    assert not (tmp_path / "pn.h5").exists()
