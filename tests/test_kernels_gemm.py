"""The compiled products of the read-out pass (mfpde.kernels.gemm) and the fused kernels built on
them.

Every entry of both products is defined as one chain of fused multiply-adds in the order of its
summation index (from zero, or continued from the sums of the earlier blocks), whichever tile
computes it. The comparisons with that chain are exact, so a tile that reorders, splits or
re-rounds a sum fails here; the shapes cover the ``3 L``-, ``L``-sample and padded edges of the
projection, the ``2 L``-, ``L``-input and padded edges of ``grad_U`` (``L`` = 4 or 8 float64, 8
or 16 float32 entries: 256- and 512-bit vectors), input dimensions above the block of inputs
:data:`~mfpde.kernels.gemm.KB`, strided ``u`` rows and several panels. Both vector widths give
the same bits (:data:`~mfpde._numba.VECTOR_BYTES`, a subprocess per width).
"""
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.peers import NumpyPeer
from mfpde.kernels import gemm
from mfpde.kernels import readout as R
from mfpde.kernels.activations import IDENTITY, SIGMOID, TANH, fma, lit
from mfpde._numba import jit
from mfpde.models import make_model


@jit
def _chain_projection(X, U, Z):
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            a = lit(Z, 0.0)
            for k in range(U.shape[1]):
                a = fma(X[i, k], U[j, k], a)
            Z[i, j] = a


@jit
def _chain_gu(B, X, G, first):
    for j in range(G.shape[0]):
        for k in range(G.shape[1]):
            a = lit(G, 0.0) if first else G[j, k]
            for i in range(X.shape[0]):
                a = fma(B[i, j], X[i, k], a)
            G[j, k] = a


# (samples, particles, inputs): every edge of both tiles, K > KB, several panels
SHAPES = [(1, 1, 9), (3, 5, 9), (8, 4, 16), (13, 7, 17), (12, 260, 3), (25, 301, 600),
          (64, 784, 785), (209, 1250, 64), (17, 33, 12), (4, 6, 8), (130, 97, 40),
          (50, 26, 50)]


def _strided_rows(rng, m, K, dtype=np.float64):
    """``m x K`` rows of a wider array (the chunk's ``u`` rows are a view of the state)."""
    return rng.standard_normal((m, K + 3)).astype(dtype)[:, 2:K + 2]


def _unit(dtype):
    return 2.0 ** (-24 if dtype == np.float32 else -53)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("nb,m,K", SHAPES)
def test_projection_is_the_fma_chain(nb, m, K, dtype):
    rng = np.random.default_rng(nb * 1000 + m + K)
    X, U = rng.standard_normal((nb, K)).astype(dtype), _strided_rows(rng, m, K, dtype)
    Z, Zc = np.full((nb, m), np.nan, dtype), np.empty((nb, m), dtype)
    gemm.project_kernel(gemm.pack_samples(X), U, Z)
    _chain_projection(X, np.ascontiguousarray(U), Zc)
    assert np.array_equal(Z, Zc)
    # and it is the product: within the rounding bound K u sum |x_k u_k|
    X64, U64 = X.astype(np.float64), U.astype(np.float64)
    bound = K * _unit(dtype) * (np.abs(X64) @ np.abs(U64).T)
    assert np.all(np.abs(Z - X64 @ U64.T) <= 2 * bound)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("nb,m,K", SHAPES)
@pytest.mark.parametrize("first", [True, False])
def test_grad_u_is_the_fma_chain(nb, m, K, first, dtype):
    rng = np.random.default_rng(nb * 1000 + m + K + first)
    B, X = rng.standard_normal((nb, m)).astype(dtype), rng.standard_normal((nb, K)).astype(dtype)
    G0 = rng.standard_normal((m, K)).astype(dtype)
    G, Gc = G0.copy(), G0.copy()
    gemm.accumulate_gu_kernel(B, X, gemm.pack_inputs(X), G, first)
    _chain_gu(B, X, Gc, first)
    assert np.array_equal(G, Gc)
    B64, X64, G64 = (a.astype(np.float64) for a in (B, X, G0))
    ref = B64.T @ X64 + (0.0 if first else G64)
    bound = (nb + 1) * _unit(dtype) * (np.abs(B64).T @ np.abs(X64)
                                        + (0.0 if first else np.abs(G64)))
    assert np.all(np.abs(G - ref) <= 2 * bound)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_chain_continues_over_blocks(dtype):
    """Two blocks summed into ``grad_U`` one after the other are the one chain over both."""
    rng = np.random.default_rng(5)
    B, X = (rng.standard_normal(s).astype(dtype) for s in ((50, 37), (50, 21)))
    G1, G2 = np.empty((37, 21), dtype), np.empty((37, 21), dtype)
    gemm.accumulate_gu_kernel(B, X, gemm.pack_inputs(X), G1, True)
    gemm.accumulate_gu_kernel(B[:23], X[:23], gemm.pack_inputs(X[:23]), G2, True)
    gemm.accumulate_gu_kernel(B[23:], X[23:], gemm.pack_inputs(X[23:]), G2, False)
    assert np.array_equal(G1, G2)


def test_the_sum_order_is_checked():
    """The exact comparisons can fail: with terms ``1e16, 1, 1, 0, ...`` the chain in order
    gives ``1e16`` (each ``+ 1`` rounds away), any order that adds the ones first ``1e16 + 2``."""
    X = np.zeros((12, 9))
    X[:, :3] = [1e16, 1.0, 1.0]
    Z = np.empty((12, 4))
    gemm.project_kernel(gemm.pack_samples(X), np.ones((4, 9)), Z)
    assert np.all(Z == 1e16)
    assert math.fsum(X[0]) == 1e16 + 2 and float(np.sum(X[0][::-1])) == 1e16 + 2


def test_bad_shapes_raise():
    X, U = np.zeros((5, 8)), np.zeros((6, 8))
    with pytest.raises(ValueError):
        gemm.project(gemm.pack_samples(X), U, np.zeros((5, 4)), 0, 0, 6)    # Z too narrow
    with pytest.raises(ValueError):
        gemm.project(gemm.pack_samples(X), np.zeros((6, 7)), np.zeros((5, 6)), 0, 0, 6)
    with pytest.raises(ValueError):                  # u rows not contiguous (F order)
        gemm.project(gemm.pack_samples(X), np.asfortranarray(U), np.zeros((5, 6)), 0, 0, 6)
    with pytest.raises(ValueError):                  # a group of 13 samples is not a layout
        gemm.project(np.zeros((1, 8, 13)), U, np.zeros((5, 6)), 0, 0, 6)
    BP = np.zeros((1, 5, gemm.TILE_Q))
    with pytest.raises(ValueError):                  # 12 particles need two packing panels
        gemm.accumulate_gu(np.zeros((5, 12)), X, gemm.pack_inputs(X), np.zeros((12, 8)), 0, 12,
                           True, BP)
    with pytest.raises(ValueError):                  # 8 particles: a padded second panel
        gemm.accumulate_gu(np.zeros((5, 8)), X, gemm.pack_inputs(X), np.zeros((8, 8)), 0, 8,
                           True, BP)
    with pytest.raises(ValueError):                  # B with a reversed last axis
        gemm.accumulate_gu(np.zeros((5, 6))[:, ::-1], X, gemm.pack_inputs(X), np.zeros((6, 8)),
                           0, 6, True, np.zeros((1, 5, gemm.TILE_Q)))


@pytest.mark.parametrize("code,dtype", [(TANH, np.float64), (SIGMOID, np.float64),
                                        (IDENTITY, np.float64), (TANH, np.float32)])
@pytest.mark.parametrize("nb,m,K", [(37, 301, 40), (13, 1250, 64), (64, 90, 300)])
def test_fused_kernels_equal_product_then_element_wise(code, nb, m, K, dtype):
    """forward_g = the chain product, then forward_s; backward_g = backward_s (B), then the chain
    product ``B^T X_b`` — exactly, with a Laplacian and with 3 outputs."""
    rng = np.random.default_rng(nb + m + K + code)
    p = 3
    f = lambda *s: rng.standard_normal(s).astype(dtype)
    X, U = f(nb, K) / dtype(math.sqrt(K)), _strided_rows(rng, m, K, dtype)
    AT, G = f(p, m), f(nb, p) * dtype(0.1)
    S1, S2 = np.empty((nb, m), dtype), np.empty((nb, m), dtype)
    H1, H2 = np.empty((nb, p)), np.empty((nb, p))
    R.forward_g(code, S1, gemm.pack_samples(X), U, AT, H1)
    _chain_projection(X, np.ascontiguousarray(U), S2)
    R.forward_s(code, S2, X, np.empty((0, 0), dtype), AT, H2)
    assert np.array_equal(S1, S2) and np.array_equal(H1, H2)

    xn2 = np.einsum("ij,ij->i", X, X)
    gAT1, gAT2 = np.zeros((p, m), dtype), np.zeros((p, m), dtype)
    lap1, lap2 = np.zeros(m, dtype), np.zeros(m, dtype)
    G0 = f(m, K)
    gU1, gU2 = G0.copy(), G0.copy()
    w = gemm.panel_width(K, nb)
    BP = np.empty((w // gemm.TILE_Q, nb, gemm.TILE_Q), dtype)
    R.backward_g(code, S1, G, AT, True, gAT1, True, xn2, lap1, X, gemm.pack_inputs(X), gU1,
                 False, BP)
    R.backward_s(code, S2, G, AT, True, gAT2, True, xn2, lap2, X, np.empty((0, 0), dtype))
    _chain_gu(S2, X, gU2, False)
    assert np.array_equal(S1, S2)                     # B
    assert np.array_equal(gAT1, gAT2) and np.array_equal(lap1, lap2)
    assert np.array_equal(gU1, gU2)


def _model(kind, d, **kw):
    if kind == "two_layer":
        return make_model("two_layer", d=d, q=1, lam=1e-3, **kw)
    return make_model("nc", d=d, q=3, p=4, lam=1e-3, lam_W=1e-3, **kw)


def _against_peer(model, N, n, d, rng):
    """The model's gradient and the NumPy peer's ``(grad, risk)`` on random particles and data."""
    theta = model.init_particles(N, rng)
    X = rng.standard_normal((n, d)) / math.sqrt(d)
    Y = rng.standard_normal((n, model.q))
    W = rng.standard_normal((model.p, model.q)) if model.has_W else None
    gp, _, riskp = NumpyPeer(model).gradient(theta, X, Y, W)
    return model.gradient(theta, X, Y, W), gp, riskp


@pytest.mark.parametrize("kind", ["two_layer", "nc", "fixed"])
@pytest.mark.parametrize("d,N,n", [(9, 700, 37), (64, 3000, 700), (100, 1100, 64), (64, 3000, 1),
                                   (16, 1100, 1)])
def test_models_match_numpy_peer(kind, d, N, n):
    if kind == "fixed":
        model = make_model("two_layer", d=d, q=1, lam=1e-3, output="fixed", activation="sigmoid")
    else:
        model = _model(kind, d, bias=(d == 9))
    g, gp, riskp = _against_peer(model, N, n, d, np.random.default_rng(d + N))
    assert float(np.max(np.abs(g.theta - gp)) / np.max(np.abs(gp))) < 1e-12
    assert abs(g.risk - riskp) <= 1e-12 * abs(riskp)


@pytest.mark.parametrize("d", [24, 9])
@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["two_layer", "nc"])
def test_last_block_of_one_sample(kind, precision, d):
    """Blocks of 100 samples and n = 201: the last block holds one sample (packed operands with
    a length-1 axis); with d = 9 in float32 the packed inputs of grad_U are empty (no panel of
    16 inputs)."""
    N, n = 1500, 201
    model = _model(kind, d, precision=precision)
    model.block_bytes = 8 * N * 100
    assert model.block_size(n, N) == 100
    g, gp, _ = _against_peer(model, N, n, d, np.random.default_rng(5))
    tol = 1e-5 if precision == "float32" else 1e-12
    assert float(np.max(np.abs(g.theta - gp)) / np.max(np.abs(gp))) < tol


@pytest.mark.parametrize("kind", ["two_layer", "nc"])
def test_force_does_not_depend_on_blocks_or_memory_mode(kind):
    """Every sum of the force runs over the samples in order across blocks, so the force is the
    same bits for any block size and in the low-memory sweep (the risk's sum over blocks
    regroups, so it is compared to round-off)."""
    rng = np.random.default_rng(11)
    N, n, d = 2100, 900, 30
    X = rng.standard_normal((n, d)) / math.sqrt(d)
    ref = None
    for memory, block_bytes in [("fast", None), ("fast", 8 * N * 100), ("fast", 8 * N * 37),
                                ("low", None)]:
        model = _model(kind, d, memory=memory)
        model.block_bytes = block_bytes
        theta = model.init_particles(N, np.random.default_rng(3))
        Y = np.random.default_rng(4).standard_normal((n, model.q))
        W = np.random.default_rng(6).standard_normal((model.p, model.q)) if model.has_W else None
        g = model.gradient(theta, X, Y, W, laplacian=True)
        if ref is None:
            ref, blk0 = g, model.block_size(n, N)
            continue
        assert model.block_size(n, N) != blk0 or memory == "low"
        assert np.array_equal(g.theta, ref.theta) and np.array_equal(g.lap, ref.lap)
        assert abs(g.risk - ref.risk) <= 1e-14 * abs(ref.risk)


_WIDTH_SCRIPT = """
import hashlib, math, numpy as np
from mfpde._numba import VECTOR_BYTES
from mfpde.kernels import gemm
from mfpde.models import make_model
h = hashlib.sha256()
for dtype in (np.float64, np.float32):
    for nb, m, K in ((50, 26, 50), (64, 97, 785), (209, 130, 64), (17, 33, 12)):
        rng = np.random.default_rng(nb + m + K)
        X = rng.standard_normal((nb, K)).astype(dtype)
        U = rng.standard_normal((m, K)).astype(dtype)
        Z = np.empty((nb, m), dtype)
        gemm.project_kernel(gemm.pack_samples(X), U, Z)
        G = rng.standard_normal((m, K)).astype(dtype)
        gemm.accumulate_gu_kernel(Z, X, gemm.pack_inputs(X), G, False)
        h.update(Z.tobytes() + G.tobytes())
m = make_model("two_layer", d=40, q=1, lam=1e-3)
rng = np.random.default_rng(2)
theta = m.init_particles(1500, rng)
X = rng.standard_normal((300, 40)) / math.sqrt(40)
g = m.gradient(theta, X, rng.standard_normal((300, 1)))
h.update(g.theta.tobytes())
print(VECTOR_BYTES, h.hexdigest())
"""


def test_both_vector_widths_give_the_same_bits(tmp_path):
    """The products (both precisions, edges of both widths) and a model's force (float64)
    computed with 256-bit and with 512-bit tiles (``MFPDE_VECTOR_BITS``; 512-bit code also runs
    where the CPU has no AVX-512) are the same bits. Each width compiles into a cache of its own,
    so the shared cache keeps the compiled code of the machine's width."""
    root = str(Path(__file__).resolve().parents[1])
    out = {}
    for bits in ("256", "512"):
        env = dict(os.environ, MFPDE_VECTOR_BITS=bits, NUMBA_CACHE_DIR=str(tmp_path / bits),
                   PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
        res = subprocess.run([sys.executable, "-c", _WIDTH_SCRIPT], env=env,
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
        width, digest = res.stdout.split()
        assert int(width) == int(bits) // 8
        out[bits] = digest
    assert out["256"] == out["512"]
