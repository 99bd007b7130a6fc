"""The parts of MPI runs that need no MPI: block noise streams (schema 2), files of schema 1 with
the single stream, the layout of particle chunks over ranks, MPI staying optional."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import mfpde
from mfpde.config import parse_config
from mfpde.data import make_dataset
from mfpde.dynamics import KineticSolver, LangevinSolver
from mfpde.dynamics.base import noise_seed, pcg64_words, set_pcg64_words
from mfpde.kernels.readout import chunk_bounds
from mfpde.models import make_model
from mfpde.parallel import Layout
from mfpde.runner import run
from mfpde.store import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
[model]
kind = "two_layer"

[data]
kind = "teacher_student"
n = 120
d = 3

[dynamics]
N = 2048
dt = 0.05
steps = 20
beta = 50.0
batch = 30

[observe]
every = 5
quantities = ["loss"]

[output]
checkpoint_every = 10
"""


@pytest.fixture(scope="module")
def two_layer():
    data = make_dataset("teacher_student", seed=0, n=80, d=3)
    return make_model("two_layer", d=3, q=1), data


# ----------------------------------------------------------------------------- block streams
def test_block_streams_draw_each_chunks_noise_from_its_own_generator(two_layer):
    """noise_stream = "blocks": chunk c of chunk_bounds(N) draws its rows from PCG64 seeded with
    noise_seed(seed, c), step after step; the run's generator draws no noise."""
    model, data = two_layer
    N, seed = 3000, 7
    s = KineticSolver(model, data, N=N, dt=0.05, gamma=1.0, beta=10.0, seed=seed,
                      noise_stream="blocks")
    rng_before = s.rng.bit_generator.state
    g1 = s.sample_noise().copy()
    g2 = s.sample_noise().copy()
    assert s.rng.bit_generator.state == rng_before
    b = chunk_bounds(N)
    assert b.size - 1 == 4
    for c in range(b.size - 1):
        gen = np.random.Generator(np.random.PCG64(noise_seed(seed, c)))
        np.testing.assert_array_equal(g1[b[c]:b[c + 1]], gen.standard_normal((b[c + 1] - b[c],
                                                                              model.D)))
        np.testing.assert_array_equal(g2[b[c]:b[c + 1]], gen.standard_normal((b[c + 1] - b[c],
                                                                              model.D)))
    # the streams are independent of each other and of the run's generator
    assert not np.array_equal(g1[:b[1]], g1[b[1]:2 * b[1]])
    assert noise_seed(seed, 0).spawn_key != np.random.SeedSequence(seed).spawn(1)[0].spawn_key


def test_pcg64_words_round_trip():
    g = np.random.Generator(np.random.PCG64(noise_seed(3, 2)))
    g.standard_normal(5)
    g.integers(0, 7, size=3, dtype=np.uint32)          # fills the 32-bit cache
    w = pcg64_words(g)
    h = np.random.Generator(np.random.PCG64(0))
    set_pcg64_words(h, w)
    assert h.bit_generator.state == g.bit_generator.state
    np.testing.assert_array_equal(h.standard_normal(4), g.standard_normal(4))


@pytest.mark.parametrize("fused", [True, False])
def test_block_streams_fused_and_generic_paths_draw_the_same_noise(fused):
    """The fused small-batch path and the generic path consume the block streams alike and end
    at the same state (and the run's generator at the same state)."""
    from mfpde.data import mmn_gaussians_sampler
    model = make_model("two_layer", d=3, q=1)
    runs = []
    for f in (True, False):
        s = LangevinSolver(model, None, N=1100, dt=0.05, beta=20.0, batch=3, seed=2,
                           sampler=mmn_gaussians_sampler(d=3, delta=0.5), noise_stream="blocks")
        s.fused = f
        assert s._fused_ok() is f
        s.step(40)
        runs.append(s)
    a, b = runs
    np.testing.assert_allclose(a.theta, b.theta, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(a.state_dict()["noise_streams"],
                                  b.state_dict()["noise_streams"])
    assert a.rng.bit_generator.state == b.rng.bit_generator.state


def test_block_stream_checkpoint_resumes_bitwise(two_layer):
    model, data = two_layer
    kw = dict(N=1500, dt=0.05, gamma=1.5, beta=30.0, batch=20, seed=4, noise_stream="blocks",
              integrator="obabo")
    a = KineticSolver(model, data, **kw)
    a.step(15)
    state = a.state_dict()
    assert state["noise_streams"].shape == (chunk_bounds(1500).size - 1, 6)
    a.step(10)
    b = KineticSolver(model, data, **{**kw, "seed": 99})
    b.load_state_dict(state)
    b.step(10)
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.r, b.r)
    # a checkpoint of the other stream is refused
    c = KineticSolver(model, data, **{**kw, "noise_stream": "single"})
    with pytest.raises(ValueError, match="block noise streams"):
        c.load_state_dict(state)
    with pytest.raises(ValueError, match="no block noise streams"):
        b.load_state_dict(c.state_dict())


def test_noiseless_runs_do_not_depend_on_the_stream(two_layer):
    """beta = inf: no noise is drawn; both streams give the same bits and the same state keys."""
    model, data = two_layer
    out = []
    for stream in ("single", "blocks"):
        s = LangevinSolver(model, data, N=2100, dt=0.05, batch=16, seed=1, noise_stream=stream)
        s.step(12)
        out.append(s.state_dict())
    assert list(out[0]) == list(out[1]) and "noise_streams" not in out[0]
    np.testing.assert_array_equal(out[0]["theta"], out[1]["theta"])


# ----------------------------------------------------------------------------- layout
@pytest.mark.parametrize("N", [1, 700, 1024, 5000, 131072, 300000])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 64])
def test_layout_splits_the_fixed_chunks_into_contiguous_ranges(N, size):
    lay = Layout(N, size)
    b = chunk_bounds(N)
    assert lay.C == b.size - 1
    assert lay.chunks[0][0] == 0 and lay.chunks[-1][1] == lay.C
    for (a0, a1), (b0, _) in zip(lay.chunks, lay.chunks[1:]):
        assert a1 == b0 and a0 <= a1
    sizes = [c1 - c0 for c0, c1 in lay.chunks]
    assert max(sizes) - min(sizes) <= 1                      # balanced
    assert [r for r in lay.rows] == [(int(b[c0]), int(b[c1])) for c0, c1 in lay.chunks]


def test_init_particles_rows_are_rows_of_the_one_draw():
    model = make_model("two_layer", d=3, q=2, init_scale_a=0.5)
    model.INIT_PIECE = 7                                     # several pieces
    full = model.init_particles(50, np.random.default_rng(3))
    for lo, hi in ((0, 50), (0, 13), (13, 30), (44, 50), (20, 20)):
        g = np.random.default_rng(3)
        part = model.init_particles(50, g, rows=(lo, hi))
        np.testing.assert_array_equal(part, full[lo:hi])
        assert g.bit_generator.state == _after(50, model.D, 3)


def _after(N, D, seed):
    g = np.random.default_rng(seed)
    g.standard_normal((N, D))
    return g.bit_generator.state


# ----------------------------------------------------------------------------- run files
def test_new_run_files_are_schema_2_with_block_streams(tmp_path):
    path = run(parse_config(CONFIG), tmp_path / "new.h5", quiet=True)
    r = mfpde.load(path)
    assert r.schema_version == SCHEMA_VERSION == 2
    assert r.config["dynamics"]["noise_stream"] == "blocks"
    ck = r.checkpoint()["state"]
    assert ck["noise_streams"].shape == (chunk_bounds(2048).size - 1, 6)
    assert ck["noise_streams"].dtype == np.uint64


def _as_schema_1(path: Path) -> None:
    """Turn a single-stream run file into the file an mfpde of schema 1 wrote: version 1 and no
    noise_stream in the stored config."""
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = np.int64(1)
        text = str(f.attrs["config"])
        f.attrs["config"] = "\n".join(line for line in text.splitlines()
                                      if not line.startswith("noise_stream"))


@pytest.mark.parametrize("solver", ["langevin", "kinetic"])
def test_schema_1_files_load_and_resume_with_the_single_stream(tmp_path, solver):
    sets = [f'dynamics.solver="{solver}"']
    old = tmp_path / "old.h5"
    run(parse_config(CONFIG, sets + ['dynamics.noise_stream="single"', "dynamics.steps=10"]),
        old, quiet=True)
    _as_schema_1(old)
    r = mfpde.load(old)
    assert r.schema_version == 1 and "noise_stream" not in r.config["dynamics"]
    # resumed with the config as it is given today (no noise_stream: the default is blocks)
    run(parse_config(CONFIG, sets), old, resume=True, quiet=True)
    straight = run(parse_config(CONFIG, sets + ['dynamics.noise_stream="single"']),
                   tmp_path / "straight.h5", quiet=True)
    a, b = mfpde.load(old), mfpde.load(straight)
    assert a.status == "complete" and a.schema_version == 1
    assert a.config["dynamics"]["noise_stream"] == "single"
    for q in ("step", "t", "loss"):
        np.testing.assert_array_equal(a.series[q], b.series[q])
    sa, sb = a.checkpoint()["state"], b.checkpoint()["state"]
    assert list(sa) == list(sb) and "noise_streams" not in sa
    for key in sa:
        if isinstance(sa[key], np.ndarray):
            np.testing.assert_array_equal(sa[key], sb[key])
        else:
            assert sa[key] == sb[key], key
    # with block streams the noise differs (the file's stream was followed, not the default)
    blocks = run(parse_config(CONFIG, sets), tmp_path / "blocks.h5", quiet=True)
    assert not np.array_equal(mfpde.load(blocks).series["loss"], a.series["loss"])


# ----------------------------------------------------------------------------- optional MPI
def test_a_serial_run_never_imports_mpi4py(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    code = ("import sys, mfpde.runner\n"
            "assert 'mpi4py' not in sys.modules\n"
            f"mfpde.runner.run({str(cfg)!r}, {str(tmp_path / 'r.h5')!r}, quiet=True)\n"
            "assert 'mpi4py' not in sys.modules, 'a serial run imported mpi4py'\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "OMPI_", "PMIX_", "MV2_", "MPI_LOCAL"))}
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
