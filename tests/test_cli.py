"""The ``mfpde`` command end to end (subprocesses), resume equivalence, signals, bad input.

Numba compilation dominates the cost of a subprocess; the session shares an on-disk kernel
cache (``MFPDE_NUMBA_CACHE=1`` with a per-session ``NUMBA_CACHE_DIR``) so only the first run
compiles.
"""

import io
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mfpde
from mfpde.store import load

ROOT = Path(__file__).resolve().parents[1]

TINY = """
[model]
kind = "two_layer"
activation = "tanh"

[data]
kind = "teacher_student"
n = 40
d = 3

[dynamics]
N = 16
dt = 0.05
steps = {steps}
beta = 100.0
batch = 10
seed = 3

[observe]
every = 5
quantities = ["loss", "reg_loss"]
snapshot_every = 100
snapshot_particles = 8
log_every = 0.05

[output]
checkpoint_every = 20
"""


@pytest.fixture(scope="session")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("numba-cache")
    e = dict(os.environ)
    e["MFPDE_NUMBA_CACHE"] = "1"
    e["NUMBA_CACHE_DIR"] = str(cache)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("HDF5_USE_FILE_LOCKING", None)
    return e


def mfpde_cmd(*args):
    return [sys.executable, "-m", "mfpde", *map(str, args)]


def call(env, *args, cwd=None, timeout=180):
    return subprocess.run(mfpde_cmd(*args), env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def write_config(path, steps=400, extra=""):
    path.write_text(TINY.format(steps=steps) + extra)
    return path


def assert_same_run(a, b):
    """Bitwise equality of the final state and every series / snapshot."""
    ra, rb = load(a), load(b)
    assert ra.status == rb.status == "complete"
    assert set(ra.series) == set(rb.series)
    for k in ra.series:
        np.testing.assert_array_equal(ra.series[k], rb.series[k], err_msg=k)
        assert ra.series[k].tobytes() == rb.series[k].tobytes(), k
    ca, cb = ra.checkpoint()["state"], rb.checkpoint()["state"]
    assert ca["theta"].tobytes() == cb["theta"].tobytes()
    assert (ca["W"] is None and cb["W"] is None) or ca["W"].tobytes() == cb["W"].tobytes()
    assert ca["rng"] == cb["rng"] and ca["k"] == cb["k"]
    assert len(ra.snapshots) == len(rb.snapshots)
    for sa, sb in zip(ra.snapshots, rb.snapshots):
        assert sa.step == sb.step and sa.theta.tobytes() == sb.theta.tobytes()


@pytest.fixture(scope="session")
def reference(env, tmp_path_factory):
    """An uninterrupted run (also warms the kernel cache for the other tests)."""
    d = tmp_path_factory.mktemp("ref")
    cfg = write_config(d / "tiny.toml", steps=1500)
    t0 = time.monotonic()
    r = call(env, "run", cfg, "-o", d / "ref.h5", "--quiet", timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""  # --quiet silences progress and summary
    return cfg, d / "ref.h5", time.monotonic() - t0


# --------------------------------------------------------------------------------------------
# a complete run, info, plot, load
# --------------------------------------------------------------------------------------------

def test_run_schema_round_trip(reference):
    cfg, path, _ = reference
    assert not path.with_name(path.name + ".part").exists()
    run = mfpde.load(path)
    assert run.status == "complete"
    # schema 2: the noise comes from the stream named in the stored config (block streams)
    assert run.attrs["schema_version"] == 2 and run.attrs["seed"] == 3
    assert run.config["dynamics"]["noise_stream"] == "blocks"
    assert run.attrs["mfpde_version"] == mfpde.__version__
    assert run.config["dynamics"]["N"] == 16 and run.config["model"]["q"] == 1
    assert run.config["data"]["seed"] == 4  # dynamics.seed + 1
    assert list(run.quantities) == ["loss", "reg_loss"]
    np.testing.assert_array_equal(run.series["step"], np.arange(0, 1501, 5))
    np.testing.assert_allclose(run.series["t"], run.series["step"] * 0.05)
    assert np.all(np.isfinite(run.series["loss"])) and run.series["loss"][-1] < run.series[
        "loss"][0]
    assert len(run.snapshots) == 16 and run.snapshot(0).theta.shape == (8, 4)
    idx = run.snapshot_index
    assert len(set(idx.tolist())) == 8 and idx.max() < 16
    ck = run.checkpoint()
    assert ck["meta"]["step"] == 1500 and ck["state"]["k"] == 1500
    # the stored snapshot of the last step equals the checkpointed particles
    np.testing.assert_array_equal(run.snapshot(-1).theta, ck["state"]["theta"][idx])


def test_info_and_plot(env, reference, tmp_path):
    _, path, _ = reference
    r = call(env, "info", path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "status      complete" in out
    assert "loss" in out and "reg_loss" in out and "/snapshots/theta  (16, 8, 4)" in out
    assert 'kind = "teacher_student"' in out
    last = load(path).series["loss"][-1]
    assert f"{last:.6g}" in out
    fig = tmp_path / "fig.png"
    r = call(env, "plot", path, "-o", fig)
    assert r.returncode == 0, r.stderr
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------
# reliability: SIGKILL + resume, SIGTERM / SIGINT
# --------------------------------------------------------------------------------------------

def _wait_for_rows(path, proc, rows=1, timeout=120):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            return False
        if path.exists():
            try:
                if len(load(path).series.get("step", [])) >= rows:
                    return True
            except Exception:
                pass
        time.sleep(0.02)
    return False


def test_sigkill_then_resume_is_bitwise_identical(env, reference, tmp_path):
    """The stored config re-runs as is; SIGKILL at a random moment + --resume changes nothing."""
    _, ref, _ = reference
    stored = tmp_path / "stored.toml"
    stored.write_text(load(ref).config_text)
    out = tmp_path / "killed.h5"
    seed = int.from_bytes(os.urandom(4), "little")
    delay = random.Random(seed).uniform(0.0, 1.0)
    note = f"(random delay {delay:.3f} s, seed {seed})"
    proc = subprocess.Popen(mfpde_cmd("run", stored, "-o", out, "--quiet"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    started = _wait_for_rows(out, proc)
    time.sleep(delay)
    proc.kill()
    proc.wait()
    if started:
        killed = load(out)  # the killed file opens and holds what was flushed
        assert killed.status in ("running", "complete"), note
        assert len(killed.series["t"]) >= 1, note
    r = call(env, "run", stored, "-o", out, "--resume")
    assert r.returncode == 0, (r.stderr, note)
    assert "wrote" in r.stdout and "status complete" in r.stdout and "1500 steps" in r.stdout
    assert "1500/1500 (100%)" in r.stderr.strip().splitlines()[-1], r.stderr
    assert_same_run(ref, out)


def test_sigterm_and_sigint_interrupt_and_resume(env, reference, tmp_path):
    cfg, ref, _ = reference
    signals = ((signal.SIGTERM, 143), (signal.SIGINT, 130))
    procs = []
    for sig, code in signals:  # both runs at once (2 cores)
        out = tmp_path / f"{sig.name}.h5"
        procs.append((sig, code, out, subprocess.Popen(
            mfpde_cmd("run", cfg, "-o", out), env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)))
    for sig, code, out, proc in procs:
        assert _wait_for_rows(out, proc, rows=3), proc.communicate()
        proc.send_signal(sig)
    resumed = []
    for sig, code, out, proc in procs:
        _, err = proc.communicate(timeout=60)
        run = load(out)
        if proc.returncode == 0:  # finished before the signal arrived
            assert run.status == "complete"
            continue
        assert proc.returncode == code, err
        assert run.status == "interrupted" and sig.name in run.message
        lines = err.strip().splitlines()
        assert f"interrupted by {sig.name}" in lines[-1]
        # not on a terminal: a start line, then plain periodic log lines on stderr
        assert lines[0].startswith("mfpde: running 1500 steps from step 0"), err
        assert lines[1].startswith("step ") and "loss=" in lines[1] and "eta" in lines[1], err
        ck = run.checkpoint()
        assert ck is not None and ck["state"]["k"] == ck["meta"]["step"]
        if sig == signal.SIGINT:
            continue  # resuming works the same way after either signal; resume one of them
        resumed.append((out, subprocess.Popen(
            mfpde_cmd("run", cfg, "-o", out, "--resume", "--quiet"), env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for out, proc in resumed:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert_same_run(ref, out)


@pytest.mark.slow
def test_resume_extends_a_complete_run(env, reference, tmp_path):
    cfg, ref, _ = reference
    short = write_config(tmp_path / "short.toml", steps=1000)
    out = tmp_path / "ext.h5"
    r = call(env, "run", short, "-o", out, "--quiet")
    assert r.returncode == 0, r.stderr
    r = call(env, "run", cfg, "-o", out, "--resume", "--quiet")
    assert r.returncode == 0, r.stderr
    assert_same_run(ref, out)


def test_resume_refuses_a_different_config(reference, tmp_path, capsys):
    from mfpde.cli import main

    cfg, ref, _ = reference
    out = tmp_path / "copy.h5"
    out.write_bytes(ref.read_bytes())
    with pytest.raises(SystemExit) as info:
        main(["run", str(cfg), "-o", str(out), "--resume", "--set", "dynamics.dt=0.01"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "dynamics.dt" in err and "differs" in err
    assert out.read_bytes() == ref.read_bytes() or load(out).status == "complete"


# --------------------------------------------------------------------------------------------
# numerical failure
# --------------------------------------------------------------------------------------------

def test_numerical_failure_exit_1_keeps_last_checkpoint(env, tmp_path):
    cfg = write_config(tmp_path / "c.toml", steps=400)
    out = tmp_path / "nan.h5"
    out.write_bytes(b"old file")  # replaced because of output.overwrite = true
    r = call(env, "run", cfg, "-o", out, "--quiet", "--set", "dynamics.dt=200.0",
             "--set", "model.activation=identity", "--set", "dynamics.beta=inf",
             "--set", "output.checkpoint_every=5", "--set", "output.overwrite=true")
    assert r.returncode == 1, r.stderr
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert line.startswith("mfpde: error: numerical failure:") and "step" in line
    assert any(q in line for q in ("theta", "loss", "reg_loss", "risk")), line
    run = load(out)
    assert run.status == "failed" and "step" in run.message
    ck = run.checkpoint()
    assert ck is not None and np.isfinite(ck["state"]["theta"]).all()
    assert ck["meta"]["step"] % 5 == 0


# --------------------------------------------------------------------------------------------
# bad input: exit 2, one line, no traceback, no output file
# --------------------------------------------------------------------------------------------

BAD = {
    "malformed TOML": ("[model\nkind = 'two_layer'\n", [], ["invalid TOML"]),
    "unknown key": (None, ["--set", "dynamics.sed=1"], ["dynamics.sed", "did you mean 'seed'"]),
    "unknown section": (None, ["--set", "dynamcs.N=1"], ["dynamcs", "did you mean 'dynamics'"]),
    "wrong type": (None, ["--set", "dynamics.N=many"], ["dynamics.N", "'many'", "integer"]),
    "out of range": (None, ["--set", "dynamics.dt=-0.5"], ["dynamics.dt", "-0.5", "> 0"]),
    "bad choice": (None, ["--set", "model.activation=tanhh"], ["model.activation",
                                                                 "did you mean 'tanh'"]),
    "missing file": ("MISSING", [], ["no such file"]),
    "bad option": (None, ["--frobnicate"], ["unrecognized arguments"]),
}


def _bad_case(tmp_path, text, args):
    cfg = tmp_path / "c.toml"
    if text == "MISSING":
        cfg = tmp_path / "nope.toml"
    else:
        cfg.write_text(text if text is not None else TINY.format(steps=10))
    return cfg, args


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_input_in_process(kind, tmp_path, capsys):
    """Every kind of bad input through the CLI entry point (fast, same code path)."""
    from mfpde.cli import main

    text, args, words = BAD[kind]
    cfg, args = _bad_case(tmp_path, text, args)
    out = tmp_path / "out.h5"
    with pytest.raises(SystemExit) as info:
        main(["run", str(cfg), "-o", str(out), *args])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mfpde: error:"), err
    for w in words:
        assert w in err, (w, err)
    assert not out.exists() and not out.with_name("out.h5.part").exists()


@pytest.mark.parametrize("where", ["missing dir", "parent is a file", "is a directory"])
def test_unwritable_output_in_process(where, tmp_path, capsys):
    from mfpde.cli import main

    cfg = write_config(tmp_path / "c.toml", steps=10)
    (tmp_path / "afile").write_text("x")
    out = {"missing dir": tmp_path / "no" / "such" / "out.h5",
           "parent is a file": tmp_path / "afile" / "out.h5",
           "is a directory": tmp_path}[where]
    with pytest.raises(SystemExit) as info:
        main(["run", str(cfg), "-o", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mfpde: error:"), err
    assert "directory" in err, err
    assert not (tmp_path / "out.h5").exists()


def test_existing_output_is_kept(tmp_path, capsys):
    from mfpde.cli import main

    cfg = write_config(tmp_path / "c.toml", steps=10)
    out = tmp_path / "out.h5"
    out.write_bytes(b"precious")
    with pytest.raises(SystemExit) as info:
        main(["run", str(cfg), "-o", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--resume" in err
    assert out.read_bytes() == b"precious"


def test_bad_input_through_subprocess(env, tmp_path):
    """The same errors as real processes: exit 2, one line on stderr, no traceback, no file."""
    cases = [("malformed TOML", BAD["malformed TOML"]), ("wrong type", BAD["wrong type"]),
             ("missing file", BAD["missing file"])]
    procs = []
    for i, (name, (text, args, words)) in enumerate(cases):
        sub = tmp_path / str(i)
        sub.mkdir()
        cfg, args = _bad_case(sub, text, args)
        out = sub / "out.h5"
        procs.append((name, words, out, subprocess.Popen(
            mfpde_cmd("run", cfg, "-o", out, *args), env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)))
    unwritable = tmp_path / "no" / "dir" / "out.h5"
    procs.append(("unwritable", ["no", "dir"], unwritable, subprocess.Popen(
        mfpde_cmd("run", write_config(tmp_path / "ok.toml", 10), "-o", unwritable), env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for name, words, out, proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 2, (name, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mfpde: error:"), (name, stderr)
        assert "Traceback" not in stderr
        for w in words:
            assert w in lines[0], (name, w, lines[0])
        assert not out.exists(), name


def test_info_and_plot_bad_files(tmp_path, capsys):
    from mfpde.cli import main

    (tmp_path / "x.h5").write_text("not hdf5")
    for argv in (["info", str(tmp_path / "missing.h5")], ["info", str(tmp_path / "x.h5")],
                 ["plot", str(tmp_path / "missing.h5")]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("mfpde: error:"), err


# --------------------------------------------------------------------------------------------
# progress bar, validation framework, bench
# --------------------------------------------------------------------------------------------

def test_progress_bar_on_a_terminal():
    from types import SimpleNamespace

    from mfpde.engine import ProgressTracker, RunInfo

    class TTY(io.StringIO):
        def isatty(self):
            return True

    s = TTY()
    drv = SimpleNamespace(k=0, t=0.0, last_risk=float("nan"))
    p = ProgressTracker(100, quiet=False, log_every=1.0, stream=s)
    p.initialize(drv, RunInfo())
    drv.k = 50
    p.poll(drv, RunInfo(values={"loss": 0.25}), force=True)
    drv.k = 100
    p.finalize(drv, RunInfo(values={"loss": 0.125}))
    text = s.getvalue()
    assert "100/100" in text and "loss=0.125" in text
    q = TTY()
    drv.k = 0
    p = ProgressTracker(100, quiet=True, log_every=1.0, stream=q)
    p.initialize(drv, RunInfo())
    drv.k = 50
    p.poll(drv, RunInfo(values={"loss": 0.25}), force=True)
    p.finalize(drv, RunInfo(values={"loss": 0.1}))
    assert q.getvalue() == ""


def test_validation_framework(tmp_path, monkeypatch, capsys):
    import h5py

    from mfpde import validation as V

    monkeypatch.setattr(V, "_REGISTRY", {})
    monkeypatch.setattr(V, "_IMPORT_ERRORS", {})
    monkeypatch.setattr(V, "_DISCOVERED", False)
    mod = "mfpde_test_cases_fake"
    (tmp_path / f"{mod}.py").write_text(
        "from mfpde.validation import Check, register\n"
        "@register('fake.good', quick=True, full=True)\n"
        "def good(ctx):\n"
        "    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt\n"
        "    fig = plt.figure(); plt.plot([0, 1]); fig.savefig(ctx.figure('line')); plt.close(fig)\n"
        "    return [Check('fake.good', 'x', 0.5, '0.5 ± 0.1', True)]\n"
        "@register('fake.bad', quick=True)\n"
        "def bad(ctx):\n"
        "    return [Check('fake.bad', 'y', 2.0, '< 1', False, note='too big')]\n"
        "@register('fake.crash', quick=False, full=True)\n"
        "def crash(ctx):\n"
        "    raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(V, "CASE_MODULES", [mod, "mfpde_test_cases_missing"])
    outdir = tmp_path / "rep"
    assert V.run_validation("quick", only="fake.good", outdir=outdir) == 0
    assert (outdir / "fake.good_line.png").exists()
    code = V.run_validation("full", outdir=outdir)
    assert code == 1
    printed = capsys.readouterr().out
    assert "PASS  fake.good" in printed and "FAIL  fake.crash" in printed
    assert "import:mfpde_test_cases_missing" in printed
    report = (outdir / "report.md").read_text()
    assert "| case | quantity | measured | expected | result | time (s) |" in report
    assert "fake.crash" in report and "boom" in report and "fake.good_line.png" in report
    with h5py.File(outdir / "results.h5") as f:
        assert bool(f["fake.good"].attrs["passed"]) and not bool(f["fake.crash"].attrs["passed"])
        assert f["fake.good/measured"][0] == 0.5
    assert V.run_validation("quick", only="nothing.here", outdir=outdir) == 2
    assert [c.name for c in V.select("quick")] == ["fake.good", "fake.bad"]


def test_bench_dispatches_to_the_benchmarks(env, tmp_path):
    """`mfpde bench ARGS` hands ARGS (options included) to the benchmark suite's own parser; a
    clear exit 2 where the suite (source checkout only) is not importable."""
    r = call(env, "bench", "--help", cwd=tmp_path)
    if r.returncode == 2:
        assert r.stderr.startswith("mfpde: error:") and "bench" in r.stderr
    else:
        assert r.returncode == 0 and "python -m benchmarks" in r.stdout, r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["example_two_layer", "example_nc"])
def test_bundled_example_runs(env, name, tmp_path):
    out = tmp_path / f"{name}.h5"
    r = call(env, "run", ROOT / "validation" / f"{name}.toml", "-o", out, "--quiet",
             timeout=3600)
    assert r.returncode == 0, r.stderr
    run = load(out)
    assert run.status == "complete" and np.isfinite(run.series["loss"]).all()
    assert run.series["loss"][-1] < run.series["loss"][0]
    r = call(env, "plot", out, "-o", tmp_path / f"{name}.png")
    assert r.returncode == 0, r.stderr


def test_bad_vector_width_is_one_line_and_exit_2():
    """``MFPDE_VECTOR_BITS`` other than 256 or 512: one line naming it, exit 2."""
    env = dict(os.environ, MFPDE_VECTOR_BITS="128")
    out = subprocess.run([sys.executable, "-m", "mfpde.cli", "validate", "--list"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "mfpde: MFPDE_VECTOR_BITS must be 256 or 512, got '128'"]
