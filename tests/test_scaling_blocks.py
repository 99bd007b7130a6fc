"""Sample blocks of the gradient pass and the compiled tanh of the fused kernels.

The block size is a function of ``n``, ``N`` and the model only (never of the thread or process
count); the ``block x N`` cap (``block_bytes``) binds in the stored pass only, so the low-memory
sweep keeps blocks of a useful size at any ``N``. The compiled tanh
(:func:`mfpde.kernels.activations.tanh_simd`) is within 2 ulp of the C library, and so are the
derivatives the kernels form from it.
"""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.peers import NumpyPeer
from mfpde.kernels.activations import tanh_array
from mfpde.kernels.readout import backward_s, chunk_bounds, forward_s, prepass_s
from mfpde.models import make_model
from mfpde.models import readout as readout_mod
from mfpde.models.readout import BLAS_BLOCK, SAMPLE_GROUP, TILE_BYTES, TILE_BYTES_COMPILED

RTOL = 1e-12


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _problem(model, N, n, seed):
    rng = np.random.default_rng(seed)
    theta = model.init_particles(N, rng)
    X = rng.standard_normal((n, model.d)) / math.sqrt(model.d)
    Y = rng.standard_normal((n, model.q))
    W = rng.standard_normal((model.p, model.q)) if model.has_W else None
    return theta, X, Y, W


def _tile_rule(N, tile=TILE_BYTES_COMPILED):
    """Samples per block of the tile rule (the compiled projection's tile by default)."""
    return tile // (8 * int(np.max(np.diff(chunk_bounds(N)))))


# ---------------------------------------------------------------------------- block size rule
def test_block_cap_binds_in_the_stored_pass_only():
    """A ``block_bytes`` that allows 2 samples per block bounds the stored pass ("fast", and
    "auto" below LOW_MEMORY_N) but not the sweep ("low"), whose block follows the tile rule."""
    N, n = 5000, 300
    for memory, expect in (("fast", 2), ("auto", 2), ("low", min(n, _tile_rule(N)))):
        m = make_model("two_layer", d=3, q=1, activation="tanh")
        m.memory, m.block_bytes = memory, 8 * N * 2
        assert m.block_size(n, N) == expect, memory
    m.block_bytes = None                            # default: the rule alone, in every mode
    for memory in ("fast", "auto", "low"):
        m.memory = memory
        assert m.block_size(n, N) == min(n, _tile_rule(N))


def test_blas_path_blocks_at_least_blas_block_and_never_depend_on_threads():
    """Where the products are BLAS calls the block holds at least BLAS_BLOCK samples, also at
    sizes whose tiles would allow fewer; small ``d_in`` with tanh keeps the tile rule."""
    blas = make_model("two_layer", d=12, q=1, activation="tanh")
    low_d = make_model("two_layer", d=3, q=1, activation="tanh")
    generic = make_model("two_layer", d=3, q=1, activation="erf")
    for N in (20_000, 300_000, 10_000_000):
        assert _tile_rule(N, TILE_BYTES) < BLAS_BLOCK
        # 8 blocks of 128 split evenly (125), rounded up to 24-sample groups: 7 blocks of 144
        assert blas.block_size(1000, N) == 144
        assert math.ceil(1000 / 144) <= math.ceil(1000 / BLAS_BLOCK)
        assert generic.block_size(1000, N) == BLAS_BLOCK
        assert low_d.block_size(1000, N) == _tile_rule(N) >= 16
        assert blas.block_size(50, N) == 50
    # at N = 10^7 the old cap (32 MiB / 8N) allowed no more than 0 samples, i.e. one
    assert low_d.block_size(256, 10_000_000) == 32
    code = ("from mfpde.models import make_model;"
            "m = make_model('two_layer', d=12, q=1, activation='tanh');"
            "print([m.block_size(n, N) for n in (7, 300, 5000) for N in (50, 5000, 600000)])")
    outs = set()
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        outs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                text=True, check=True).stdout)
    assert len(outs) == 1


@pytest.mark.parametrize("itemsize,group", [(8, 24), (4, 48)])
def test_compiled_tiles_split_the_samples_into_equal_groups(itemsize, group):
    """Where the products are the compiled tiles, the samples are split into equal blocks of
    whole SAMPLE_GROUP-byte groups (24 float64 or 48 float32 samples), no more blocks than the
    tile rule gives; tiles of 4-byte entries hold twice the samples; ``block_bytes`` still
    caps the stored pass."""
    assert SAMPLE_GROUP // itemsize == group
    m = make_model("two_layer", d=64, q=1, activation="tanh")
    N, n = 10_000, 2048
    rule = TILE_BYTES // (itemsize * int(np.max(np.diff(chunk_bounds(N)))))
    blk = m.block_size(n, N, itemsize)
    assert blk == {8: 216, 4: 432}[itemsize]
    assert blk % group == 0 and math.ceil(n / blk) <= math.ceil(n / rule)
    assert math.ceil(n / blk) * blk - n < group * math.ceil(n / blk)      # no short last block
    m.memory, m.block_bytes = "fast", 8 * N * 100
    assert m.block_size(n, N, itemsize) == 100


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "identity", "erf"])
def test_large_blocks_where_the_old_cap_bound_match_numpy_peer(act):
    """With a cap of 3 samples per block, the stored pass runs 3-sample blocks and the sweep
    blocks of the tile / BLAS rule (more than 100 samples); both match the NumPy peer. For a
    small ``d_in`` with a FROM_S activation the sums over samples do not depend on the blocks:
    the two are bitwise equal."""
    N, n = 5000, 150
    for model in (make_model("two_layer", d=3, q=1, activation=act, lam=0.01),
                  make_model("two_layer", d=3, q=2, activation=act, bias=True),
                  make_model("two_layer", d=12, q=1, activation=act, lam=0.01),
                  make_model("nc", d=12, q=3, p=4, Gamma=1.3, activation=act, lam=0.01,
                             lam_W=0.02)):
        model.block_bytes = 8 * N * 3
        theta, X, Y, W = _problem(model, N, n, seed=3)
        gp, gWp, riskp = NumpyPeer(model).gradient(theta, X, Y, W)
        res = {}
        for memory in ("fast", "low"):
            model.memory = memory
            res[memory] = g = model.gradient(theta, X, Y, W)
            assert _rel(g.theta, gp) < RTOL, (model.describe(), memory)
            assert abs(g.risk - riskp) <= RTOL * abs(riskp)
            if model.has_W:
                assert _rel(g.W, gWp) < RTOL
        model.memory = "fast"
        assert model.block_size(n, N) == 3
        model.memory = "low"
        assert model.block_size(n, N) > 100
        if model.compiled_projection:
            assert np.array_equal(res["fast"].theta, res["low"].theta)


@pytest.mark.parametrize("kind, d, act", [("two_layer", 30, "tanh"), ("nc", 30, "tanh"),
                                           ("two_layer", 3, "tanh"), ("two_layer", 12, "erf"),
                                           ("nc", 3, "sigmoid")])
def test_sweep_keeping_tiles_equals_both_memory_modes(monkeypatch, kind, d, act):
    """``memory = "auto"`` from LOW_MEMORY_N on: the sweep keeps the tiles of the leading blocks
    within :meth:`kept_samples` and evaluates only the others again. With no block, the first
    block and every block kept, the force and Laplacian are the bits of the sweep ("low") and of
    the stored pass ("fast"); the kept buffer holds ``kept x N`` entries per tile and is kept
    by the model for the next pass; "low" and "fast" keep nothing."""
    monkeypatch.setattr(readout_mod, "LOW_MEMORY_N", 1000)
    N = 2100
    model = make_model(kind, d=d, q=1 if kind == "two_layer" else 3,
                       **({} if kind == "two_layer" else {"p": 4, "Gamma": 1.3, "lam_W": 0.02}),
                       activation=act, lam=0.01)
    n = model.block_size(10 ** 6, N) * 3 // 2         # one block and a half
    theta, X, Y, W = _problem(model, N, n, seed=8)
    model.memory = "low"
    ref = model.gradient(theta, X, Y, W, laplacian=True)
    assert model.kept_samples(N) == 0 and ("kept", 0) not in model.__dict__.get("_work", {})
    model.memory = "fast"
    fast = model.gradient(theta, X, Y, W, laplacian=True)
    assert np.array_equal(fast.theta, ref.theta) and np.array_equal(fast.lap, ref.lap)
    model.memory = "auto"
    blk = model.block_size(n, N)
    assert blk < n < 2 * blk                           # two blocks: [0, blk), [blk, n)
    n_tiles = 1 if act in ("tanh", "sigmoid") else 3   # with the Laplacian
    seen = []
    for target in (blk - 1, blk, n):                   # no block, the first, both
        # KEEP_STATE giving kept_samples = target
        monkeypatch.setattr(readout_mod, "KEEP_STATE", (target + 0.5) * n_tiles / model.D)
        assert model.kept_samples(N, n_tiles) == target
        g = model.gradient(theta, X, Y, W, laplacian=True)
        assert np.array_equal(g.theta, ref.theta) and np.array_equal(g.lap, ref.lap), target
        assert abs(g.risk - ref.risk) <= 1e-14 * abs(ref.risk)
        kept = model.__dict__.get("_work", {}).get(("kept", 0), [])
        seen.append(sum(b.size for b in kept))
    assert seen == [0, blk * N, n * N]
    monkeypatch.setattr(readout_mod, "KEEP_STATE", 1)
    assert model.kept_samples(N, 1, 8) == model.D and model.kept_samples(N, 2, 4) == model.D
    assert model.kept_samples(999) == 0                # the stored pass below LOW_MEMORY_N


_THREADS_SCRIPT = """
import hashlib, math, numpy as np
from mfpde.models import make_model
out = []
for d, act, memory in ((3, 'tanh', 'low'), (3, 'tanh', 'fast'), (12, 'tanh', 'low'),
                       (3, 'sigmoid', 'low'), (12, 'erf', 'low')):
    m = make_model('two_layer', d=d, q=1, activation=act, lam=0.01)
    m.memory = memory
    rng = np.random.default_rng(1)
    for N in (700, 6000):
        theta = m.init_particles(N, rng)
        X = rng.standard_normal((300, d)) / math.sqrt(d)
        Y = rng.standard_normal((300, 1))
        g = m.gradient(theta, X, Y, laplacian=True)
        out.append(hashlib.sha256(g.theta.tobytes() + g.lap.tobytes()).hexdigest() + repr(g.risk))
print(' '.join(out))
"""


def test_gradient_bitwise_independent_of_thread_count():
    """The sweep with large blocks (compiled and BLAS), the stored pass: one and two threads
    give the same bits."""
    outs = set()
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        outs.add(subprocess.run([sys.executable, "-c", _THREADS_SCRIPT], env=env,
                                capture_output=True, text=True, check=True).stdout)
    assert len(outs) == 1


# ---------------------------------------------------------------------------- compiled tanh
def _ulp(got, ref):
    return np.abs(got - ref) / np.spacing(np.maximum(np.abs(ref), np.finfo(float).tiny))


def _dense_z():
    rng = np.random.default_rng(7)
    return np.concatenate(
        [rng.standard_normal(50_000) * s for s in (1e-300, 1e-150, 1e-12, 1e-5, 0.01, 0.3, 0.6,
                                                    1.0, 2.0, 5.0, 10.0, 19.0, 30.0)]
        + [np.linspace(-40.0, 40.0, 400_001), np.linspace(-0.7, 0.7, 100_001),
           [0.625, -0.625, np.nextafter(0.625, 0), np.nextafter(-0.625, 0), 20.0, -20.0,
            np.nextafter(20.0, 0), 1e308, -1e308, 5e-324, -5e-324, 0.0, -0.0]])


def test_tanh_simd_within_two_ulp_over_a_dense_range():
    z = _dense_z()
    out = np.empty_like(z)
    tanh_array(z, out)
    assert _ulp(out, np.tanh(z)).max() <= 2.0
    assert np.array_equal(np.signbit(out), np.signbit(z))
    assert np.all(np.abs(out) <= 1.0)
    # the tile kernel evaluates the same function (rows, vectorised body and remainder)
    P = np.ascontiguousarray(z[:3 * 100_003].reshape(3, 100_003))
    prepass_s(1, P)                                               # code 1: tanh
    assert np.array_equal(P.ravel(), out[:P.size])


def test_sigmoid_from_tanh_simd_within_a_few_eps():
    """``1/2 + tanh(z/2)/2``: absolute errors of a few ``eps`` (the form cancels for negative
    ``z``, as it does with the C library's tanh)."""
    z = _dense_z()
    P = z.copy()[None, :]
    prepass_s(2, P)                                               # code 2: sigmoid
    eps = np.finfo(float).eps
    assert np.max(np.abs(P[0] - (0.5 + 0.5 * np.tanh(0.5 * z)))) <= 2 * eps
    with np.errstate(over="ignore"):
        assert np.max(np.abs(P[0] - 1.0 / (1.0 + np.exp(-z)))) <= 4 * eps
    assert np.all((P[0] >= 0.0) & (P[0] <= 1.0))


def test_derivatives_from_tanh_simd():
    """What backward_s forms from ``s = tanh_simd(z)``: ``sigma' = 1 - s^2`` and
    ``sigma'' = -2 s (1 - s^2)`` (with ``G = 1, a = 1`` the back-propagated tile is ``sigma'``
    and the Laplacian with ``|x|^2 = 1`` is ``sigma''``), against the C library: absolute errors
    of a few ``eps`` (``1 - s^2`` is formed from a rounded ``s``)."""
    z = np.linspace(-25.0, 25.0, 20_001)
    S = z[:, None].copy()                          # nb = 20001 samples, one particle
    H = np.empty((S.shape[0], 1))
    forward_s(1, S, np.empty((0, 0)), np.empty((0, 0)), np.ones((1, 1)), H)
    assert np.array_equal(H[:, 0], S[:, 0])
    t = np.tanh(z)
    ds, dds = 1.0 - t * t, -2.0 * t * (1.0 - t * t)
    eps = np.finfo(float).eps
    lap = np.zeros(1)
    lap_rows = np.empty(S.shape[0])
    for i in range(S.shape[0]):                    # the Laplacian of each sample on its own
        lap[0] = 0.0
        row = S[i:i + 1].copy()
        backward_s(1, row, np.ones((1, 1)), np.ones((1, 1)), False, np.zeros((1, 1)), True,
                   np.ones(1), lap, np.empty((1, 0)), np.empty((0, 0)))
        lap_rows[i] = lap[0]
        S[i] = row[0]
    assert np.max(np.abs(S[:, 0] - ds)) <= 4 * eps
    assert np.max(np.abs(lap_rows - dds)) <= 8 * eps
