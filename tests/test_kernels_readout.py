"""The kernels of the tanh pass at d_in = 2 (fused projection, two sample rows per pass) give the
bits of the general kernels, and the models that take them match the NumPy peer; the one-loop
backward rows (``B`` into ``S``, up to four outputs) give the bits of the separate loops; the
features computed row by row without a tile give those of the tile kernels.

The special kernels exist for speed only: any difference from the general kernels, however
small, is a failure here (the comparison is exact), for odd and even blocks (an odd last row is
paired with itself at weight 0), chunks of one and of several strips, float64 and float32.
"""
import math

import numpy as np
import pytest

from benchmarks.peers import NumpyPeer
from mfpde.kernels import readout as R
from mfpde.kernels.activations import IDENTITY, SIGMOID, TANH
from mfpde.kernels.gemm import pack_inputs, panel_width
from mfpde.models import make_model

SHAPES = [(1, 5), (2, 700), (7, 1024), (40, 2500)]     # (samples in the block, particles)


def _inputs(nb, Nc, p, dtype, seed):
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal(s).astype(dtype)
    return dict(Xb=f(nb, 2), UT=f(2, Nc), AT=f(p, Nc), G=f(nb, p) * dtype(0.1),
                gAT=f(p, Nc), gUT=f(2, Nc))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("nb,Nc", SHAPES)
def test_forward_d2_equals_general_kernel(nb, Nc, dtype):
    a = _inputs(nb, Nc, 1, dtype, nb + Nc)
    S1, S2 = np.empty((nb, Nc), dtype), np.empty((nb, Nc), dtype)
    H1, H2 = np.empty((nb, 1)), np.empty((nb, 1))
    R.forward_s(TANH, S1, a["Xb"], a["UT"], a["AT"], H1)           # takes _forward2_tanh
    R._FORWARD[TANH](S2, a["Xb"], a["UT"], a["AT"], H2)
    assert np.array_equal(S1, S2) and np.array_equal(H1, H2)
    assert np.allclose(S1, np.tanh(a["Xb"] @ a["UT"]), rtol=1e-5 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("code,d_in,p", [(TANH, 2, 1), (TANH, 2, 3), (TANH, 3, 2),
                                          (SIGMOID, 2, 1), (IDENTITY, 5, 2)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("nb,Nc", SHAPES)
def test_features_without_tile_equal_forward_kernel(nb, Nc, dtype, code, d_in, p):
    """The features of rows in scratch (the sweep's forward phase) are those of the tile
    kernel (``d_in = 2`` tanh takes the special kernels on both sides)."""
    rng = np.random.default_rng(3 * nb + Nc + d_in)
    Xb, UT, AwT = (rng.standard_normal(s).astype(dtype) for s in ((nb, d_in), (d_in, Nc),
                                                                   (p, Nc)))
    H1, H2 = np.empty((nb, p)), np.full((nb, p), np.nan)
    R.forward_s(code, np.empty((nb, Nc), dtype), Xb, UT, AwT, H1)
    R.features_s(code, Xb, UT, AwT, H2)
    assert np.array_equal(H1, H2)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("p", [1, 2, 3, 4])
@pytest.mark.parametrize("nb,Nc", SHAPES)
def test_backward_pairs_equal_general_kernel(nb, Nc, p, dtype):
    a = _inputs(nb, Nc, p, dtype, 10 * p + nb)
    S = np.tanh(a["Xb"] @ a["UT"]).astype(dtype)
    out = []
    for kernel in ("dispatch", "general"):
        gAT, gUT, Sk = a["gAT"].copy(), a["gUT"].copy(), S.copy()
        args = (Sk, a["G"], a["AT"], True, gAT, False, np.zeros(0, dtype), np.zeros(0, dtype),
                a["Xb"], gUT)
        if kernel == "dispatch":
            R.backward_s(TANH, *args)
        else:
            R._BACKWARD[TANH](*args)
        out.append((gAT, gUT, Sk))
    for x, y in zip(*out):
        assert np.array_equal(x, y)
    # and the sums themselves: grad_A += S^T G, grad_U += ((G A^T) (1 - S^2))^T X
    B = (a["G"].astype(np.float64) @ a["AT"]) * (1 - S.astype(np.float64) ** 2)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    assert np.allclose(out[0][0], a["gAT"] + (S.T @ a["G"]).T, rtol=tol, atol=tol)
    assert np.allclose(out[0][1], a["gUT"] + (B.T @ a["Xb"]).T, rtol=tol, atol=tol)


# every kernel compiles in seconds: tanh in both precisions, the other activations (whose rows
# differ in sigma' only) in float64
@pytest.mark.parametrize("code,dtype", [(TANH, np.float64), (TANH, np.float32),
                                        (SIGMOID, np.float64), (IDENTITY, np.float64)])
@pytest.mark.parametrize("train_a", [True, False])
@pytest.mark.parametrize("p", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("nb,Nc", [(1, 5), (7, 1024), (40, 1500)])
def test_one_loop_rows_equal_separate_loops(nb, Nc, p, train_a, code, dtype):
    """The compiled-product kernel without a Laplacian takes one loop per row for up to four
    outputs; with a Laplacian the separate loops of the other kernels (``gAT``, ``G A^T`` into
    a scratch row, then ``B``); and for any panel width. ``B``, the sums and ``grad_U`` must
    agree bit for bit (signed
    zeros included), and with the general kernel of a small ``d_in``."""
    rng = np.random.default_rng(100 * p + nb)
    f = lambda *s: rng.standard_normal(s).astype(dtype)
    d_in = 16
    S0 = np.tanh(f(nb, Nc)).astype(dtype)
    G, AT, gA0, Xb = f(nb, p) * dtype(0.1), f(p, Nc), f(p, Nc), f(nb, d_in)
    G[0] = 0.0                                          # exact zeros: -0.0 products
    xn2 = f(nb)
    w = panel_width(d_in, nb)
    outs = {}
    for lap in (False, True):
        S, gA, lp = S0.copy(), gA0.copy(), np.zeros(Nc, dtype)
        R._BACKWARD[code](S, G, AT, train_a, gA, lap, xn2, lp, Xb, np.empty((0, 0), dtype))
        Sg, gAg, lpg, gU = S0.copy(), gA0.copy(), np.zeros(Nc, dtype), np.empty((Nc, d_in), dtype)
        R.backward_g(code, Sg, G, AT, train_a, gAg, lap, xn2, lpg, Xb, pack_inputs(Xb), gU, True,
                     np.empty((w // 6, nb, 6), dtype))
        outs[lap] = (S, gA, Sg, gAg, gU)
    for x, y in zip(outs[False], outs[True]):
        assert x.tobytes() == y.tobytes()
    S, gA, Sg, gAg, _ = outs[False]
    assert S.tobytes() == Sg.tobytes() and gA.tobytes() == gAg.tobytes()
    for w2 in (24, 252):                                # panels split the particles only
        Sg, gAg, gU = S0.copy(), gA0.copy(), np.empty((Nc, d_in), dtype)
        R.backward_g(code, Sg, G, AT, train_a, gAg, False, xn2, np.zeros(Nc, dtype), Xb,
                     pack_inputs(Xb), gU, True, np.empty((w2 // 6, nb, 6), dtype))
        assert (Sg.tobytes(), gAg.tobytes(), gU.tobytes()) == tuple(
            x.tobytes() for x in outs[False][2:])
    ds = {TANH: 1 - S0.astype(np.float64) ** 2, SIGMOID: S0 * (1.0 - S0), IDENTITY: 1.0}[code]
    tol = 1e-5 if dtype == np.float32 else 1e-13
    assert np.allclose(outs[False][0], (G.astype(np.float64) @ AT) * ds, rtol=tol, atol=tol)
    if train_a:
        assert np.allclose(outs[False][1], gA0 + (S0.T @ G).T, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("nb,Nc", SHAPES)
def test_sweep_d2_equals_general_kernel(nb, Nc, dtype):
    a = _inputs(nb, Nc, 1, dtype, 7 * nb + Nc)
    out = []
    for kernel in (R.sweep_s, lambda code, *args: R._SWEEP[code](*args)):
        gAT, gUT = a["gAT"].copy(), a["gUT"].copy()
        kernel(TANH, a["Xb"], a["UT"], a["G"], a["AT"], True, gAT, False, np.zeros(0, dtype),
               np.zeros(0, dtype), gUT)
        out.append((gAT, gUT))
    for x, y in zip(*out):
        assert np.array_equal(x, y)


@pytest.mark.parametrize("memory", ["fast", "low"])
@pytest.mark.parametrize("kind", ["two_layer", "nc"])
def test_models_at_d2_match_numpy_peer(kind, memory):
    """Several chunks (N = 3000: 4 chunks of 750) and blocks of odd size, stored and low-memory
    passes, against the NumPy peer."""
    kw = dict(d=2, activation="tanh", memory=memory, lam=0.01)
    model = (make_model("two_layer", q=1, **kw) if kind == "two_layer"
             else make_model("nc", q=2, p=4, Gamma=1.3, lam_W=0.02, **kw))
    model.block_bytes = 8 * 3000 * 13                       # blocks of 13 samples (stored pass)
    rng = np.random.default_rng(3)
    theta = model.init_particles(3000, rng)
    X = rng.standard_normal((101, 2)) / math.sqrt(2)
    Y = rng.standard_normal((101, model.q))
    W = rng.standard_normal((model.p, model.q)) if model.has_W else None
    g = model.gradient(theta, X, Y, W)
    gp, gWp, riskp = NumpyPeer(model).gradient(theta, X, Y, W)
    assert float(np.max(np.abs(g.theta - gp)) / np.max(np.abs(gp))) < 1e-12
    assert abs(g.risk - riskp) <= 1e-12 * abs(riskp)


def test_one_output_kernel_refuses_other_passes():
    """The one-output backward kernel (no Laplacian) raises instead of using the first row only."""
    rng = np.random.default_rng(0)
    nb, Nc, d_in = 7, 40, 16
    S, Xb, AT = rng.standard_normal((nb, Nc)), rng.standard_normal((nb, d_in)), np.ones((2, Nc))
    w = panel_width(d_in, nb)
    for G, A, lap in ((np.ones((nb, 2)), AT, False), (np.ones((nb, 1)), AT[:1], True)):
        with pytest.raises(ValueError, match="one output"):
            R._BACKWARD_G1[TANH](S, G, A, True, np.zeros_like(A), lap, np.ones(nb), np.zeros(Nc),
                                 Xb, pack_inputs(Xb), np.empty((Nc, d_in)), True,
                                 np.empty((w // 6, nb, 6)))


@pytest.mark.parametrize("sums", [np.float64, np.float32])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("ns", [0.0, 0.07])
@pytest.mark.parametrize("pa", [0, 1, 3])
def test_force_and_update_in_one_pass_equal_the_two_passes(sums, transposed, ns, pa):
    """``assemble_em`` (the force from its sums and the Euler–Maruyama update in one pass over
    the rows) gives the bits of ``assemble_chunk`` followed by ``em_rows``, for every layout of
    the ``u`` sums and float32 sums, also when it writes the float32 copy of the updated ``u``
    (which is then the updated ``u`` rounded to float32); ``EMChunks`` takes either route to
    the same rows."""
    rng = np.random.default_rng(11)
    Nc, d_in = 37, 19
    theta = rng.standard_normal((Nc, pa + d_in))
    gAT = rng.standard_normal((pa, Nc)).astype(sums)
    gU = rng.standard_normal((Nc, d_in)).astype(sums)
    gUT = np.ascontiguousarray(gU.T)
    if transposed:
        gU = np.empty((0, 0), sums)
    noise = rng.standard_normal(theta.shape) if ns else np.empty((0, 0))
    lam, step = 0.013, 0.05
    force = np.empty_like(theta)
    R.assemble_chunk(force, gAT, gU, gUT, theta, lam, pa)
    ref = theta.copy()
    R.em_rows(ref, force, noise, step, ns, 0, Nc)
    got = theta.copy()
    R.assemble_em(got, gAT, gU, gUT, lam, pa, step, noise, ns, R.NO_U32)
    assert np.array_equal(got, ref)
    if not transposed:
        got = theta.copy()
        u32 = np.full((Nc, d_in), np.nan, np.float32)
        R.assemble_em(got, gAT, gU, gUT, lam, pa, step, noise, ns, u32)
        assert np.array_equal(got, ref)
        assert np.array_equal(u32, ref[:, pa:].astype(np.float32))
    for route in ("force", "sums"):
        th = np.vstack([theta, theta])
        em = R.EMChunks(th, step, ns, np.vstack([noise, noise]) if ns else None)
        if route == "force":
            em(Nc, 2 * Nc, force, None)
        else:
            em.assembled(Nc, 2 * Nc, gAT, gU, gUT, lam, pa, None)
        assert np.array_equal(th[Nc:], ref) and np.array_equal(th[:Nc], theta)
