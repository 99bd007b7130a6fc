"""HDF5 run store: layout, append, snapshots, atomic checkpoints, truncation, load()."""

import json
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

import mfpde
from mfpde.store import SCHEMA_VERSION, RunStore, StoreError, load

CONFIG = '[model]\nkind = "two_layer"\n\n[dynamics]\nN = 4\ndt = 0.1\nsteps = 3\n'


def make_state(rng, k):
    return {
        "theta": rng.standard_normal((5, 3)),
        "W": None,
        "k": k,
        "rng": json.dumps(np.random.default_rng(k).bit_generator.state),
        "perm": np.arange(4, dtype=np.int64),
        "cursor": 2,
    }


def test_create_append_and_load(tmp_path):
    path = tmp_path / "run.h5"
    rng = np.random.default_rng(0)
    with RunStore.create(path, config_text=CONFIG, seed=3, quantities=["loss", "nc1"]) as st:
        assert st.status == "running"
        for k in range(5):
            st.append_series(k * 10, k * 1.0, {"loss": 1.0 / (k + 1), "nc1": float(k)})
        st.init_snapshots(np.array([0, 2, 4]), D=3, W_shape=(4, 2))
        for k in range(2):
            st.append_snapshot(k * 10, k * 1.0, rng.standard_normal((3, 3)), np.ones((4, 2)) * k)
        state = make_state(rng, 7)
        st.write_checkpoint(state, step=40, t=4.0)
        st.set_status("complete")

    run = load(path)
    assert run.status == "complete"
    assert run.attrs["schema_version"] == SCHEMA_VERSION
    assert run.attrs["seed"] == 3
    assert run.attrs["mfpde_version"] == mfpde.__version__
    assert run.config_text == CONFIG
    assert run.config["dynamics"]["N"] == 4
    np.testing.assert_array_equal(run.series["step"], [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(run.series["t"], [0, 1, 2, 3, 4])
    np.testing.assert_allclose(run.series["loss"], 1 / np.arange(1, 6))
    assert run.series["step"].dtype == np.int64 and run.series["loss"].dtype == np.float64
    assert run.quantities == ["loss", "nc1"]
    assert len(run.snapshots) == 2
    snap = run.snapshot(-1)
    assert snap.step == 10 and snap.theta.shape == (3, 3) and snap.W.shape == (4, 2)
    np.testing.assert_array_equal(snap.index, [0, 2, 4])
    assert [s.step for s in run.snapshots] == [0, 10]
    with pytest.raises(IndexError):
        run.snapshot(2)
    ck = run.checkpoint()
    assert ck["meta"]["step"] == 40 and ck["meta"]["t"] == 4.0
    st2 = ck["state"]
    assert list(st2) == list(state)
    np.testing.assert_array_equal(st2["theta"], state["theta"])
    assert st2["W"] is None and st2["k"] == 7 and st2["cursor"] == 2
    assert st2["rng"] == state["rng"]
    np.testing.assert_array_equal(st2["perm"], state["perm"])
    assert mfpde.load is load or mfpde.load(path).status == "complete"
    assert "series/loss" in run.sizes()


def test_plain_h5py_layout(tmp_path):
    path = tmp_path / "run.h5"
    with RunStore.create(path, config_text=CONFIG, seed=0, quantities=["loss"]) as st:
        st.append_series(0, 0.0, {"loss": 2.0})
        st.write_checkpoint({"theta": np.zeros((2, 2)), "k": 0, "rng": "{}"}, step=0)
    with h5py.File(path, "r") as f:
        for key in ("schema_version", "mfpde_version", "config", "created", "seed", "status"):
            assert key in f.attrs
        d = f["series/loss"]
        assert d.chunks is not None and d.maxshape == (None,) and d.dtype == np.float64
        assert f["series/step"].dtype == np.int64
        assert "checkpoint" in f and "checkpoint_new" not in f
        assert f["checkpoint"].attrs["complete"] == 1


def test_new_quantity_is_backfilled(tmp_path):
    with RunStore.create(tmp_path / "r.h5", config_text="", seed=0, quantities=["loss"]) as st:
        st.append_series(0, 0.0, {"loss": 1.0})
        st.append_series(1, 0.1, {"loss": 0.5, "extra": 3.0})
        st.append_series(2, 0.2, {"extra": 4.0})
        s = st.series()
    np.testing.assert_array_equal(s["extra"], [np.nan, 3.0, 4.0])
    np.testing.assert_array_equal(s["loss"], [1.0, 0.5, np.nan])


def test_truncate_for_resume(tmp_path):
    path = tmp_path / "r.h5"
    with RunStore.create(path, config_text="", seed=0, quantities=["loss"]) as st:
        st.init_snapshots(np.arange(2), D=2, W_shape=None)
        for k in range(0, 100, 10):
            st.append_series(k, k * 0.1, {"loss": float(k)})
            if k % 20 == 0:
                st.append_snapshot(k, k * 0.1, np.full((2, 2), k, float))
    with RunStore.open(path) as st:
        st.truncate(50)
        assert st.n_series == 6 and st.n_snapshots == 3
    run = load(path)
    np.testing.assert_array_equal(run.series["step"], [0, 10, 20, 30, 40, 50])
    np.testing.assert_array_equal(run.snapshot_steps, [0, 20, 40])


def test_checkpoint_replacement_and_fallback(tmp_path):
    path = tmp_path / "r.h5"
    rng = np.random.default_rng(1)
    with RunStore.create(path, config_text="", seed=0) as st:
        for k in range(3):
            st.write_checkpoint(make_state(rng, k), step=k)
        assert st.read_checkpoint()["state"]["k"] == 2
    # simulate a crash between unlinking /checkpoint and the move: only /checkpoint_new is left
    with h5py.File(path, "r+") as f:
        f.move("checkpoint", "checkpoint_new")
    assert load(path).checkpoint()["state"]["k"] == 2
    # an incomplete new checkpoint (crash while writing it) is ignored
    with h5py.File(path, "r+") as f:
        f.move("checkpoint_new", "checkpoint")
        g = f.create_group("checkpoint_new")
        g.create_dataset("theta", data=np.zeros(3))
    assert load(path).checkpoint()["state"]["k"] == 2
    with RunStore.open(path) as st:  # the next write clears the leftover
        st.write_checkpoint(make_state(rng, 9), step=9)
    assert load(path).checkpoint()["state"]["k"] == 9


def test_file_size_stays_bounded_over_checkpoints(tmp_path):
    path = tmp_path / "r.h5"
    rng = np.random.default_rng(1)
    with RunStore.create(path, config_text="", seed=0) as st:
        st.write_checkpoint(make_state(rng, 0) | {"theta": np.zeros((1000, 4))})
        size1 = os.path.getsize(path)
        for k in range(20):
            st.write_checkpoint(make_state(rng, k) | {"theta": np.zeros((1000, 4))})
    assert os.path.getsize(path) < size1 + 3 * 32000


def test_refuses_to_overwrite_and_bad_files(tmp_path):
    path = tmp_path / "r.h5"
    RunStore.create(path, config_text="", seed=0).close()
    with pytest.raises(FileExistsError):
        RunStore.create(path, config_text="", seed=0)
    RunStore.create(path, config_text="", seed=1, overwrite=True).close()
    assert load(path).attrs["seed"] == 1
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(StoreError, match="not an mfpde run file"):
        load(tmp_path / "other.h5")
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(StoreError, match="newer"):
        load(path)
    with pytest.raises(ValueError):
        RunStore.create(tmp_path / "s.h5", config_text="", seed=0).set_status("weird")


def test_status_values(tmp_path):
    with RunStore.create(tmp_path / "r.h5", config_text="", seed=0) as st:
        for s in ("failed", "interrupted", "complete"):
            st.set_status(s, message=f"because {s}")
            assert load(tmp_path / "r.h5").status == s
    assert load(tmp_path / "r.h5").message == "because complete"


def test_load_while_another_process_writes(tmp_path):
    """A reader can open a file that a running process holds open for writing."""
    path = tmp_path / "r.h5"
    code = textwrap.dedent(f"""
        import sys, time
        from mfpde.store import RunStore
        st = RunStore.create({str(path)!r}, config_text="", seed=0, quantities=["loss"])
        st.append_series(0, 0.0, {{"loss": 1.0}})
        print("ready", flush=True)
        sys.stdin.readline()
        st.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        run = load(path)
        assert run.status == "running" and run.series["loss"].tolist() == [1.0]
    finally:
        proc.communicate("\n", timeout=30)
