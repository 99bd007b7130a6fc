"""Executors of independent tasks (mfpde.executors): the units of ``mfpde compare`` and the
cases of ``mfpde validate`` give the same results in one process, in local worker processes
and in an MPI pool under ``mpiexec``."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mfpde.errors import ConfigError
from mfpde.executors import imap_tasks, task_pool

from test_safety import SMALL_COMPARE, _same_compare

ROOT = Path(__file__).resolve().parent.parent


def _square(x):
    return x * x


def _fail_on(x, bad):
    if x == bad:
        raise ValueError(f"task {x} failed")
    return x


def test_serial_and_local_pool_give_every_result():
    tasks = [(i,) for i in range(7)]
    serial = list(imap_tasks(_square, tasks))
    assert serial == [(i, i * i) for i in range(7)]          # in order in one process
    pooled = dict(imap_tasks(_square, tasks, jobs=2))
    assert pooled == dict(serial)


def test_a_failing_task_raises_its_error():
    with pytest.raises(ValueError, match="task 3 failed"):
        list(imap_tasks(_fail_on, [(i, 3) for i in range(5)], jobs=2))
    with pytest.raises(ValueError, match="task 1 failed"):
        list(imap_tasks(_fail_on, [(i, 1) for i in range(5)]))


@pytest.mark.parametrize("executor, jobs, match", [("slurm", 1, "expected one of"),
                                                   ("local", 0, ">= 1")])
def test_bad_executor_is_a_config_error(executor, jobs, match):
    with pytest.raises(ConfigError, match=match):
        with task_pool(executor, jobs):
            pass


def test_compare_units_in_local_processes_equal_one_process(tmp_path):
    from mfpde.runner import run
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL_COMPARE.replace("seeds = 2", "seeds = 3"))
    one = run(cfg, tmp_path / "one.h5", quiet=True)
    two = run(cfg, tmp_path / "two.h5", quiet=True, executor="local", jobs=2)
    _same_compare(one, two)
    with pytest.raises(ConfigError, match="units of a \\[compare\\] job"):
        run(ROOT / "validation" / "example_two_layer.toml", tmp_path / "r.h5", executor="local",
            jobs=2)
    assert not (tmp_path / "r.h5").exists()


def test_validate_cases_in_local_processes(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mfpde", "validate", "--quick", "--only",
                        "core.erf*", "-j", "2", "-o", str(tmp_path / "rep")],
                       cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASSED" in r.stdout and (tmp_path / "rep" / "report.md").exists()
    r = subprocess.run([sys.executable, "-m", "mfpde", "validate", "--quick", "-j", "0"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 2 and r.stderr.strip().startswith("mfpde: error: -j 0")


def _mpiexec() -> str:
    """The MPI launcher of the ``mpi`` extra (the test is skipped without mpi4py or one)."""
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py is not installed (pip install -e '.[mpi]')")
    beside = Path(sys.executable).parent / "mpiexec"
    launcher = str(beside) if beside.exists() else shutil.which("mpiexec")
    if launcher is None:
        pytest.skip("no MPI launcher (mpiexec) found: pip install -e '.[mpi]' installs MPICH's")
    return launcher


@pytest.mark.mpi
def test_compare_units_on_an_mpi_pool_equal_one_process(tmp_path):
    launcher = _mpiexec()
    ranks = max(int(r) for r in os.environ.get("MFPDE_TEST_MPI_RANKS", "2").split(","))
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL_COMPARE.replace("seeds = 2", "seeds = 3"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    r = subprocess.run([launcher, "-n", str(ranks), sys.executable, "-m", "mfpde", "compare",
                        str(cfg), "-o", str(tmp_path / "mpi.h5"), "--executor", "mpi"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"3 units on {ranks - 1} processes" in r.stdout
    assert r.stdout.count("mfpde: wrote") == 1            # rank 0 alone writes
    r = subprocess.run([sys.executable, "-m", "mfpde", "compare", str(cfg), "-o",
                        str(tmp_path / "one.h5"), "-q"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    _same_compare(tmp_path / "mpi.h5", tmp_path / "one.h5")


@pytest.mark.mpi
def test_bad_input_under_mpiexec_is_one_line(tmp_path):
    launcher = _mpiexec()
    bad = tmp_path / "bad.toml"
    bad.write_text("[dynamics]\nN = -3\n")
    r = subprocess.run([launcher, "-n", "2", sys.executable, "-m", "mfpde", "run", str(bad),
                        "-o", str(tmp_path / "x.h5")], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mfpde: error:") and "N" in lines[0], lines
    assert not (tmp_path / "x.h5").exists()
