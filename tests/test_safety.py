"""Nothing lost: a full disk at any moment, overwriting a file in use, corrupt or truncated
files, resuming with fewer steps, impossible file names. Each case: one line on stderr, no
traceback, the previous checkpoint intact and resumable."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "validation" / "example_two_layer.toml"
SETS = ["--set", "dynamics.steps=300", "--set", "observe.snapshot_every=50",
        "--set", "output.checkpoint_every=100", "--set", "observe.every=10"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = dict(os.environ)
    e["MFPDE_NUMBA_CACHE"] = "1"
    e["NUMBA_CACHE_DIR"] = str(tmp_path_factory.mktemp("numba-cache"))
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("HDF5_USE_FILE_LOCKING", None)
    return e


def call(env, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "mfpde", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def one_line(r):
    err = r.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("mfpde: error:"), err
    return err


@pytest.fixture
def small_fs():
    """A small tmpfs (resizable with ``remount``); skipped where mounts are not allowed."""
    d = Path(tempfile.mkdtemp())
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(d)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(d, ignore_errors=True)
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.strip() or 'not permitted'}); "
                    f"the disk-full cases need one")

    def resize(size):
        subprocess.run(["mount", "-o", f"remount,size={size}", str(d)], check=True)

    yield d, resize
    subprocess.run(["umount", str(d)], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def reference(env, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    r = call(env, "run", EXAMPLE, "-o", out, "--quiet", *SETS)
    assert r.returncode == 0, r.stderr
    return out


def _same(a, b):
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        for k in ("series/step", "series/loss", "snapshots/theta", "checkpoint/theta"):
            assert np.array_equal(fa[k][()], fb[k][()]), k


def test_disk_full_at_many_points_then_resume_is_bitwise(env, small_fs, reference):
    d, resize = small_fs
    seen = set()
    # the run needs about 0.9 MB; with 2 MB and a filler the disk fills at various moments
    for filler_kb in (1900, 900, 700, 400):
        for p in d.iterdir():
            p.unlink()
        resize("2m")
        (d / "filler").write_bytes(b"\0" * (filler_kb * 1024))
        out = d / "run.h5"
        r = call(env, "run", EXAMPLE, "-o", out, "--quiet", *SETS)
        if r.returncode == 0:
            seen.add("complete")
            continue
        err = one_line(r)
        assert "no space" in err, err
        if not out.exists():
            seen.add("start")                              # nothing left behind
            assert not list(d.glob("*.part"))
            continue
        seen.add("mid-run")
        assert r.returncode == 3
        info = call(env, "info", out)
        assert info.returncode == 0 and "interrupted" in info.stdout, info.stderr
        # a resume on the still-full disk: refused in one line, the file stays resumable
        r2 = call(env, "run", EXAMPLE, "-o", out, "--quiet", "--resume", *SETS)
        if r2.returncode != 0:
            assert "no space" in one_line(r2)
        (d / "filler").unlink()
        resize("20m")
        r3 = call(env, "run", EXAMPLE, "-o", out, "--quiet", "--resume", *SETS)
        assert r3.returncode == 0, r3.stderr
        _same(out, reference)
    assert {"start", "mid-run"} <= seen, seen


def test_overwrite_refuses_a_file_in_use(env, tmp_path, reference):
    out = tmp_path / "busy.h5"
    shutil.copy(reference, out)
    with h5py.File(out, "r+"):                     # another process is writing it
        r = call(env, "run", EXAMPLE, "-o", out, "--quiet", *SETS,
                 "--set", "output.overwrite=true")
    assert r.returncode == 2 and "in use" in one_line(r)
    _same(out, reference)                           # untouched


def test_corrupt_checkpoint_is_reported_not_resumed(env, tmp_path, reference):
    out = tmp_path / "corrupt.h5"
    shutil.copy(reference, out)
    with h5py.File(out, "r") as f:
        ci = f["checkpoint/theta"].id.get_chunk_info(0)
        off, size = ci.byte_offset, ci.size
    with open(out, "r+b") as fh:                    # random bytes into the middle of the data
        fh.seek(off + size // 2)
        fh.write(np.random.default_rng(0).bytes(64))
    r = call(env, "run", EXAMPLE, "-o", out, "--quiet", "--resume", *SETS,
             "--set", "dynamics.steps=400")
    assert r.returncode == 2 and "corrupt" in one_line(r)


def test_corrupt_snapshot_is_reported_when_read(tmp_path, reference):
    from mfpde.store import StoreError, load

    out = tmp_path / "snap.h5"
    shutil.copy(reference, out)
    with h5py.File(out, "r") as f:
        ds = f["snapshots/theta"]
        off = ds.id.get_chunk_info(2).byte_offset
    with open(out, "r+b") as fh:
        fh.seek(off + 100)
        fh.write(b"\xff" * 32)
    run = load(out)
    run.snapshot(0)
    with pytest.raises(StoreError, match="snapshot 2 is corrupt"):
        run.snapshot(2)


def test_resume_with_fewer_steps_than_done_is_refused(env, tmp_path, reference):
    out = tmp_path / "done.h5"
    shutil.copy(reference, out)
    r = call(env, "run", EXAMPLE, "-o", out, "--quiet", "--resume", *SETS,
             "--set", "dynamics.steps=100")
    err = one_line(r)
    assert r.returncode == 2 and "already run 300 steps" in err, err
    _same(out, reference)


def test_truncated_file_is_not_called_in_use(env, tmp_path, reference):
    out = tmp_path / "trunc.h5"
    data = reference.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    r = call(env, "run", EXAMPLE, "-o", out, "--quiet", "--resume", *SETS)
    err = one_line(r)
    assert "truncated" in err and "in use" not in err, err
    r = call(env, "info", out)
    assert r.returncode == 2 and "truncated" in one_line(r)


def test_too_long_file_name(env, tmp_path):
    out = tmp_path / ("x" * 300 + ".h5")
    r = call(env, "run", EXAMPLE, "-o", out, "--quiet", *SETS)
    assert r.returncode == 2 and "too long" in one_line(r)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# mfpde compare: the output rules of mfpde run
# --------------------------------------------------------------------------------------------

SMALL_COMPARE = """
[compare]
name = "small"
method = "gd"
widths = [8, 16]
seeds = 2
dts = [0.05]
T = 0.2
n_records = 2
test_n = 32
figure = false
[compare.model]
kind = "two_layer"
d = 3
[compare.data]
kind = "teacher_student"
n = 32
d = 3
k_star = 2
seed = 0
[compare.reference]
N = 64
[compare.fit]
x = "N"
quantity = "coupling_rms"
n_boot = 50
"""


def test_compare_refuses_existing_output_and_missing_directory(env, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL_COMPARE)
    out = tmp_path / "c.h5"
    out.write_bytes(b"precious result")
    r = call(env, "compare", cfg, "-o", out, "--quiet")
    assert r.returncode == 2 and "exists" in one_line(r)
    assert out.read_bytes() == b"precious result"
    r = call(env, "compare", cfg, "-o", tmp_path / "no" / "such" / "c.h5", "--quiet")
    assert r.returncode == 2 and "does not exist" in one_line(r)
    assert not (tmp_path / "no").exists()
    r = call(env, "compare", cfg, "-o", out, "--quiet", "--set", "output.overwrite=true")
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete"
    assert not list(tmp_path.glob("*.part"))


def test_compare_bad_toml_one_line(env, tmp_path):
    for name, data in (("bad.toml", b"[compare\nname = 1\n"), ("latin.toml", "name = 'é'".encode("latin-1")),
                       ("huge.toml", SMALL_COMPARE.replace("N = 64", "N = 1000000000000").encode())):
        cfg = tmp_path / name
        cfg.write_bytes(data)
        r = call(env, "compare", cfg, "-o", tmp_path / "x.h5", "--quiet")
        assert r.returncode == 2, (name, r.stderr)
        one_line(r)
        assert not (tmp_path / "x.h5").exists()


def test_ctrl_c_during_compare_keeps_the_old_file(env, tmp_path):
    import signal
    import time

    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL_COMPARE.replace("T = 0.2", "T = 2000.0").replace("n_records = 2",
                                                                          "n_records = 4"))
    out = tmp_path / "c.h5"
    out.write_bytes(b"old result")
    p = subprocess.Popen([sys.executable, "-m", "mfpde", "compare", str(cfg), "-o", str(out),
                          "--set", "output.overwrite=true"], env=env, cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert out.read_bytes() == b"old result"
    assert not list(tmp_path.glob("*.part"))


def _same_compare(a, b):
    """Two comparison files hold the same runs, references and fits (bitwise)."""
    from mfpde.store import read_compare
    ra, rb = read_compare(a), read_compare(b)
    assert ra["attrs"]["status"] == rb["attrs"]["status"] == "complete"
    for top in ("runs", "references", "fits"):
        assert ra[top].keys() == rb[top].keys(), top
        for name, item in ra[top].items():
            other = rb[top][name]
            for key, val in item.items():
                if key == "attrs":
                    assert {k: v for k, v in val.items() if k != "seconds"} == \
                        {k: v for k, v in other[key].items() if k != "seconds"}, (top, name)
                elif isinstance(val, dict):
                    for q, arr in val.items():
                        assert np.array_equal(arr, other[key][q], equal_nan=True), (name, q)
                else:
                    assert np.array_equal(val, other[key], equal_nan=True), (name, key)


def test_sigterm_during_compare_keeps_finished_units_and_resume_completes_bitwise(env, tmp_path):
    import signal

    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL_COMPARE.replace("T = 0.2", "T = 100.0"))
    out = tmp_path / "c.h5"
    out.write_bytes(b"old result")
    p = subprocess.Popen([sys.executable, "-m", "mfpde", "compare", str(cfg), "-o", str(out),
                          "--set", "output.overwrite=true"], env=env, cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()                 # printed when the unit of seed 0 is written
    assert line.startswith("seed 0"), line
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    if p.returncode == 0:
        pytest.skip("the comparison finished before the signal arrived")
    assert p.returncode == 143, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "1 finished units" in err and "--resume" in err
    assert out.read_bytes() == b"old result"
    part = tmp_path / "c.h5.part"
    assert part.exists()
    # another [compare] table cannot continue it, and leaves it in place
    other = tmp_path / "other.toml"
    other.write_text(SMALL_COMPARE.replace("T = 0.2", "T = 50.0"))
    r = call(env, "compare", other, "-o", out, "--quiet", "--resume",
             "--set", "output.overwrite=true")
    assert r.returncode == 2 and "another [compare] table" in one_line(r)
    assert part.exists() and out.read_bytes() == b"old result"
    # resuming over an existing output needs overwrite
    r = call(env, "compare", cfg, "-o", out, "--quiet", "--resume")
    assert r.returncode == 2 and "overwrite" in one_line(r)
    r = call(env, "compare", cfg, "-o", out, "--resume", "--set", "output.overwrite=true")
    assert r.returncode == 0, r.stderr
    assert "seed 0, dt 0.05: kept from the interrupted job" in r.stdout
    assert not part.exists()
    ref = tmp_path / "ref.h5"
    assert call(env, "compare", cfg, "-o", ref, "--quiet").returncode == 0
    _same_compare(out, ref)
    r = call(env, "compare", cfg, "-o", out, "--resume")
    assert r.returncode == 0 and "nothing to resume" in r.stdout


def test_compare_writer_resume_drops_an_unfinished_unit(tmp_path):
    from mfpde.store import CompareWriter, StoreError, compare_units_done

    path = tmp_path / "c.h5"
    ref = {"t": np.arange(3.0), "seconds": 1.0}
    with CompareWriter(path, config='{"a": 1}', test_set="x") as w:
        w.add_reference("seed0", ref)
        w.unit_done("u0", ["references/seed0"], {"N8": 0.25})
        w.add_reference("seed1", ref)               # the job stopped while writing this unit
    assert compare_units_done(path) == 1
    with pytest.raises(StoreError, match="another"):
        CompareWriter(path, config='{"a": 2}', test_set="x", resume=True)
    with CompareWriter(path, config='{"a": 1}', test_set="x", resume=True) as w:
        assert w.done == {"u0": {"N8": 0.25}}
        assert list(w.f["references"]) == ["seed0"]
        w.finish(1.0)
    assert compare_units_done(path) == 0
    with pytest.raises(StoreError, match="already complete"):
        CompareWriter(path, config='{"a": 1}', test_set="x", resume=True)


# --------------------------------------------------------------------------------------------
# wall-clock limit and steady state from the configuration
# --------------------------------------------------------------------------------------------

def test_wall_clock_limit_stops_with_a_checkpoint_and_resumes_bitwise(env, tmp_path, reference):
    out = tmp_path / "wall.h5"
    r = call(env, "run", EXAMPLE, "-o", out, "--quiet", *SETS, "--set", "dynamics.steps=300",
             "--set", "output.time_limit=0.5", "--set", "output.time_margin=0.2")
    if r.returncode == 0:
        pytest.skip("the run finished within the limit on this machine")
    assert r.returncode == 75, r.stderr
    assert "wall-clock limit" in r.stderr and "Traceback" not in r.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "interrupted"
        assert f["checkpoint"].attrs["meta:step"] < 300
    r = call(env, "run", EXAMPLE, "-o", out, "--quiet", "--resume", *SETS)
    assert r.returncode == 0, r.stderr
    _same(out, reference)


def test_steady_state_stops_the_run(env, tmp_path):
    out = tmp_path / "steady.h5"
    r = call(env, "run", EXAMPLE, "-o", out, "--quiet", "--set", "dynamics.steps=100000",
             "--set", 'observe.steady_quantities=["loss"]', "--set", "observe.steady_atol=1e-3",
             "--set", "observe.steady_rtol=0", "--set", "observe.steady_patience=2",
             "--set", "observe.every=20")
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete" and "steady state" in f.attrs["message"]
        loss = f["series/loss"][()]
        assert f["series/step"][-1] < 100000
        assert abs(loss[-1] - loss[-2]) <= 1e-3 and abs(loss[-2] - loss[-3]) <= 1e-3
    r = call(env, "run", EXAMPLE, "-o", tmp_path / "x.h5", "--quiet",
             "--set", 'observe.steady_quantities=["nc1"]')
    assert r.returncode == 2 and "not observed" in one_line(r)


# --------------------------------------------------------------------------------------------
# what the docs and the CLI say
# --------------------------------------------------------------------------------------------

def test_bench_runs_from_the_installed_command_outside_the_checkout(env, tmp_path):
    r = subprocess.run([sys.executable, "-m", "mfpde", "bench", "--help"], env=env,
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0 and "benchmarks" in r.stdout, r.stderr


def test_info_and_plot_of_a_comparison_file(env, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL_COMPARE)
    out = tmp_path / "c.h5"
    assert call(env, "compare", cfg, "-o", out, "--quiet").returncode == 0
    r = call(env, "info", out)
    assert r.returncode == 0, r.stderr
    assert "seed None" not in r.stdout and "fit " in r.stdout and "s = " in r.stdout
    assert "widths [8, 16]" in r.stdout
    r = call(env, "plot", out, "-o", tmp_path / "c.png")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "c.png").stat().st_size > 10_000


def test_quick_start_command_is_re_runnable(env, tmp_path):
    line = next(ln for ln in (ROOT / "README.md").read_text().splitlines()
                if "mfpde run validation/example_two_layer.toml -o run.h5" in ln)
    assert "output.overwrite=true" in line
    for _ in range(2):
        r = call(env, "run", EXAMPLE, "-o", tmp_path / "run.h5", "--quiet", "--set",
                 "output.overwrite=true", "--set", "dynamics.steps=20")
        assert r.returncode == 0, r.stderr


def test_validation_report_directory_of_the_readme_is_ignored_by_git():
    lines = (ROOT / ".gitignore").read_text().splitlines()
    assert "/report/" in lines and "/validation-report/" in lines


def test_figures_label_every_panel_keep_t0_and_show_equal_curves(tmp_path, monkeypatch):
    import matplotlib.figure

    from mfpde.plotting import plot_run
    from mfpde.runner import run

    out = run(EXAMPLE, tmp_path / "k.h5", quiet=True,
              overrides=["dynamics.steps=60", "dynamics.solver=\"kinetic\"", "observe.every=10",
                         "observe.snapshot_every=20",
                         'observe.quantities=["loss", "reg_loss", "kinetic_energy"]'])
    figs = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda self, *a, **k: figs.append(self))
    plot_run(out, tmp_path / "k.png")
    axes = [ax for ax in figs[0].axes if ax.axison]
    assert axes and all(ax.get_ylabel() for ax in axes if ax.has_data())
    series_axes = [ax for ax in axes if ax.get_xscale() == "symlog"]
    assert series_axes, "time axes keep t = 0 (symlog)"
    for ax in series_axes:
        assert min(line.get_xdata().min() for line in ax.get_lines()) == 0.0
    labels = [t.get_text() for ax in axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert "reg_loss (= loss)" in labels                       # lambda = 0: equal, not hidden
    assert any("(all at 0)" in lab for lab in labels)         # r = 0 at t = 0: a marker
