"""Sparse-recovery experiments: [sparse] validation, HDF5 results (store schema), figure, CLI."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import h5py
import numpy as np
import pytest

import mfpde
from mfpde.config import ConfigError
from mfpde.sparse import (parse_spec, plot_results, read_results, run_experiment, spec_to_toml,
                          write_results)
from mfpde.store import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]

SMALL = {"sparse": {"d": 32, "n": 64, "k_star": 4, "k": 12, "steps": 40, "runs": 3,
                    "methods": ["topk_iobs", "iht", "topk_obs"], "loss": "mse"}}


@pytest.fixture(scope="module")
def small_result():
    return run_experiment(parse_spec(SMALL))


def test_spec_defaults_are_setup_a():
    s = parse_spec({"sparse": {}})
    assert (s.d, s.n, s.k_star, s.k, s.steps, s.runs, s.seed) == (128, 256, 16, 64, 750, 20, 1234)
    assert s.methods == ["topk_iobs", "iht"] and s.eta == "paper" and s.init == "uniform"
    d = parse_spec({"sparse": {"prior": "digits"}})
    assert d.d == 64 and d.n is None and d.k is None and d.k_factor == 2.0


def test_resolved_toml_round_trip():
    for raw in (SMALL, {"sparse": {"prior": "digits", "steps": 10}},
                {"sparse": {"problem": "logistic", "d": 20, "n": 80, "k_star": 3, "k": 6,
                            "design": "1", "eta": 1.0, "methods": ["topk_iobs"]}},
                {"sparse": {"methods": ["iht", "topk_obs"], "options": {"topk_obs": {
                    "eta": 1.0, "damping": 0.01}}}}):
        s = parse_spec(raw)
        assert parse_spec(tomllib.loads(spec_to_toml(s))) == s


@pytest.mark.parametrize("raw, field", [
    ({"k": 200}, "sparse.k"), ({"k": 8}, "sparse.k"), ({"methds": ["iht"]}, "sparse.methds"),
    ({"methods": ["foo"]}, "sparse.methods"), ({"methods": []}, "sparse.methods"),
    ({"eta": "1/M"}, "sparse.eta"), ({"eta": -1.0}, "sparse.eta"), ({"steps": 0}, "sparse.steps"),
    ({"runs": 1.5}, "sparse.runs"), ({"prior": "mnist"}, "sparse.prior"),
    ({"damping": "big"}, "sparse.damping"), ({"noise": -0.1}, "sparse.noise"),
    ({"prior": "images"}, "sparse.images"), ({"prior": "digits", "d": 32}, "sparse.d"),
    ({"prior": "digits", "k_star": 3}, "sparse.k_star"), ({"k": 20, "k_factor": 2.0}, "sparse.k"),
    ({"loss": "l1"}, "sparse.loss"), ({"curvature": "fisher", "methods": ["iht"]},
                                      "sparse.curvature"),
    ({"options": {"obd": {"eta": 1.0}}}, "sparse.options.obd"),
    ({"options": {"iht": {"etaa": 1.0}}}, "sparse.options.iht.etaa"),
    ({"methods": ["iobs_exact"]}, "sparse.methods"), ({"labels": "soft"}, "sparse.labels"),
    ({"problem": "logistic", "loss": "mse"}, "sparse.loss"),
])
def test_spec_errors_name_the_field(raw, field):
    with pytest.raises(ConfigError) as exc:
        parse_spec({"sparse": raw})
    msg = str(exc.value)
    assert field in msg and "\n" not in msg


def test_unknown_section():
    with pytest.raises(ConfigError, match=r"\[model\]"):
        parse_spec({"sparse": {}, "model": {}})


def test_result_arrays(small_result):
    r = small_result
    assert r.theta_star.shape == (3, 32) and r.k.tolist() == [12, 12, 12]
    for m, res in r.methods.items():
        for q in ("loss", "dist", "rel_dist", "precision", "recall", "time"):
            assert getattr(res, q).shape == (3, 40)
        assert np.all(np.diff(res.time, axis=1) >= 0)
        # distances recomputed from the stored final iterates
        assert np.allclose(res.dist[:, -1], np.linalg.norm(res.x_final - r.theta_star, axis=1),
                           rtol=1e-13)
        # recall / precision against supp θ* of the final iterate
        for i in range(3):
            S, T = set(np.flatnonzero(res.x_final[i])), set(np.flatnonzero(r.theta_star[i]))
            assert res.recall[i, -1] == pytest.approx(len(S & T) / len(T))
            assert res.precision[i, -1] == pytest.approx(len(S & T) / len(S))
        # the recorded loss at step 0 is (1/n)||X θ_0 - y||² of the shared start
        assert np.allclose(res.loss[:, 0], r.methods["iht"].loss[:, 0], rtol=1e-12, atol=0)


def test_hdf5_layout_and_round_trip(small_result, tmp_path):
    path = tmp_path / "s.h5"
    write_results(small_result, path)
    assert not (tmp_path / "s.h5.part").exists()
    with h5py.File(path, "r") as f:
        a = f.attrs
        assert int(a["schema_version"]) == SCHEMA_VERSION and a["kind"] == "sparse"
        assert a["status"] == "complete" and int(a["sparse_layout"]) == 1
        assert int(a["seed"]) == 1234 and a["created"] and a["mfpde_version"]
        assert parse_spec(tomllib.loads(a["config"])) == small_result.spec
        assert f["sparse/iht/dist"].shape == (3, 40)
        assert f["series/iht.dist"].shape == (40,)
        assert np.allclose(f["series/iht.dist"][:], small_result.methods["iht"].dist.mean(0))
    back = read_results(path)
    for m, res in small_result.methods.items():
        for q in ("loss", "dist", "precision", "recall", "time", "x_final", "eta", "diverged"):
            assert np.array_equal(getattr(back.methods[m], q), getattr(res, q))
    run = mfpde.load(path)
    assert run.status == "complete" and len(run.t) == 40
    assert run.config["sparse"]["k"] == 12
    png = plot_results(small_result, tmp_path / "s.png")
    assert os.path.getsize(png) > 1000


def test_divergent_run_is_recorded():
    res = run_experiment(parse_spec({"sparse": {"d": 256, "n": 128, "k_star": 8, "k": 16,
                                                "steps": 2000, "runs": 1, "init": "zero",
                                                "methods": ["iht"], "eta": "n"}}))
    r = res.methods["iht"]
    assert r.diverged.tolist() == [True]
    assert np.isinf(r.dist[0, -1])


def _cli(args, cwd):
    env = dict(os.environ, MFPDE_NUMBA_CACHE="1")
    return subprocess.run([sys.executable, "-m", "mfpde", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_cli_sparse(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[sparse]\nd = 32\nn = 64\nk_star = 4\nk = 12\nsteps = 30\nruns = 2\n")
    p = _cli(["sparse", str(cfg), "-o", str(tmp_path / "o.h5"), "-q"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "o.h5").exists() and (tmp_path / "o.png").exists()
    assert read_results(tmp_path / "o.h5").methods["topk_iobs"].dist.shape == (2, 30)
    # bad field: exit 2, one line naming it, nothing written
    p = _cli(["sparse", str(cfg), "-o", str(tmp_path / "bad.h5"), "--set", "sparse.k=100"],
             tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mfpde: error: sparse.k")
    assert not (tmp_path / "bad.h5").exists() and not (tmp_path / "bad.png").exists()
    p = _cli(["sparse", str(tmp_path / "missing.toml")], tmp_path)
    assert p.returncode == 2 and "no such file" in p.stderr
    p = _cli(["sparse", str(cfg), "-o", str(tmp_path / "nodir" / "o.h5")], tmp_path)
    assert p.returncode == 2 and "does not exist" in p.stderr


def test_example_config_is_setup_a():
    s = parse_spec(tomllib.loads((ROOT / "validation" / "example_sparse.toml").read_text()))
    assert (s.d, s.n, s.k_star, s.k, s.steps, s.runs, s.seed, s.loss) == \
        (128, 256, 16, 64, 750, 20, 1234, "mse")
