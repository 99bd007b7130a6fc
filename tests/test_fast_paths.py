"""Every fast path of the step computes the same numbers as the plain NumPy peer (not timed).

The peers live in ``benchmarks/peers.py``; the PyTorch peer is checked only when torch is installed.
"""
import itertools
import math
import types

import numpy as np
import pytest

from benchmarks.peers import NumpyPeer, TorchPeer, torch_available
from mfpde.dynamics import LangevinSolver
from mfpde.models import make_model

ACTS = ["tanh", "sigmoid", "erf", "softplus", "relu", "identity"]
RTOL = 1e-12


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _models(act):
    return [
        ("two_layer", make_model("two_layer", d=5, q=1, activation=act, lam=0.01)),
        ("two_layer_q2_bias", make_model("two_layer", d=5, q=2, activation=act, bias=True,
                                         lam=0.02)),
        ("two_layer_fixed", make_model("two_layer", d=5, q=1, activation=act, output="fixed")),
        ("nc", make_model("nc", d=5, q=3, p=4, Gamma=1.7, activation=act, lam=0.01,
                          lam_W=0.03)),
    ]


def _problem(model, N, n, seed):
    rng = np.random.default_rng(seed)
    theta = model.init_particles(N, rng)
    X = rng.standard_normal((n, model.d)) / math.sqrt(model.d)
    Y = rng.standard_normal((n, model.q))
    W = model.init_W(rng) if model.has_W else None
    if model.has_W and W is None:
        W = rng.standard_normal((model.p, model.q))
    return theta, X, Y, W


@pytest.mark.parametrize("act", ACTS)
def test_gradient_matches_numpy_peer(act):
    for name, model in _models(act):
        for N, n in ((7, 11), (300, 50)):
            theta, X, Y, W = _problem(model, N, n, seed=N + n)
            g = model.gradient(theta, X, Y, W)
            gp, gWp, riskp = NumpyPeer(model).gradient(theta, X, Y, W)
            assert _rel(g.theta, gp) < RTOL, (name, act, N, n)
            assert abs(g.risk - riskp) <= RTOL * abs(riskp)
            if model.has_W:
                assert _rel(g.W, gWp) < RTOL, (name, act)


def test_gradient_matches_numpy_peer_several_blocks():
    """Small block buffers force the streamed path over many sample blocks."""
    for name, model in _models("tanh"):
        model.block_bytes = 8 * 300 * 3                  # 3 samples per block at N = 300
        theta, X, Y, W = _problem(model, 300, 40, seed=1)
        g = model.gradient(theta, X, Y, W)
        gp, gWp, _ = NumpyPeer(model, chunk_bytes=8 * 300 * 7).gradient(theta, X, Y, W)
        assert _rel(g.theta, gp) < RTOL, name
        if model.has_W:
            assert _rel(g.W, gWp) < RTOL


@pytest.mark.parametrize("kind", ["two_layer", "nc"])
@pytest.mark.parametrize("N", [50, 20_000])             # serial and parallel update kernels
def test_langevin_noiseless_step_matches_numpy_peer(kind, N):
    model = (make_model("two_layer", d=4, q=1, activation="tanh", lam=0.01) if kind == "two_layer"
             else make_model("nc", d=4, q=2, p=3, Gamma=1.3, lam=0.01, lam_W=0.02))
    rng = np.random.default_rng(3)
    data = types.SimpleNamespace(X=rng.standard_normal((30, 4)) / 2,
                                 Y=rng.standard_normal((30, model.q)))
    solver = LangevinSolver(model, data, N=N, dt=0.05, beta=np.inf, seed=0)
    theta = solver.theta.copy()
    W = None if solver.W is None else solver.W.copy()
    peer = NumpyPeer(model)
    for _ in range(3):
        solver.step(1)
        W = peer.step(theta, data.X, data.Y, 0.05, W)
        assert _rel(solver.theta, theta) < RTOL
        if W is not None:
            assert _rel(solver.W, W) < RTOL


@pytest.mark.skipif(not torch_available(), reason="torch not installed (optional peer)")
@pytest.mark.parametrize("act", ACTS)
def test_torch_peer_matches(act):
    for name, model in _models(act):
        theta, X, Y, W = _problem(model, 200, 30, seed=5)
        g = model.gradient(theta, X, Y, W)
        tp = TorchPeer(model)
        gt, gWt, risk = tp.gradient(tp.to_torch(theta), tp.to_torch(X), tp.to_torch(Y),
                                    tp.to_torch(W))
        assert _rel(gt.numpy(), g.theta) < 1e-11, (name, act)
        assert abs(risk - g.risk) <= 1e-11 * abs(g.risk)
        if model.has_W:
            assert _rel(gWt.numpy(), g.W) < 1e-11


def _dense_lap(model, theta, X, Y, W, weights):
    """Independent dense formula of the Laplacian of the potential (metrics.md §4):
    ``Delta Psi_j = sum_i (G_i . a_j) sigma''(u_j . x_i) |x_i|^2 + lam D``."""
    from mfpde.activations import evaluate
    Xa = model.prepare_X(X)
    A, U = model.split(theta)
    Z = Xa @ U.T
    w = weights if weights is not None else np.full(theta.shape[0], 1.0 / theta.shape[0])
    H = evaluate(model.activation, Z) @ (A * w[:, None])
    n = Xa.shape[0]
    G = (H - Y) / n if W is None else (model.Gamma / n) * ((model.Gamma * H @ W - Y) @ W.T)
    xn2 = np.einsum("ij,ij->i", Xa, Xa)
    return np.einsum("ik,jk,ij,i->j", G, A, evaluate(model.activation, Z, order=2), xn2) \
        + model.lam * model.D


@pytest.mark.parametrize("act", ACTS)
def test_several_chunks_and_blocks_match_numpy_peer(act):
    """Particle counts that split into 2 and 8 chunks, small and large input dimensions (the
    compiled projection and the BLAS path), several sample blocks with stored tiles and with the
    low-memory sweep; Laplacian with weights."""
    models = [make_model("two_layer", d=12, q=1, activation=act, lam=0.01),
              make_model("two_layer", d=3, q=1, activation=act, bias=True, output="fixed"),
              make_model("two_layer", d=3, q=2, activation=act, lam=0.02),
              make_model("nc", d=12, q=3, p=4, Gamma=1.3, activation=act, lam=0.01, lam_W=0.02)]
    for model, N, memory in itertools.product(models, (1100, 5000), ("fast", "low")):
        if True:
            model.block_bytes = 8 * N * 6                  # 6 samples per block
            model.memory = memory                          # stored tiles / recomputing sweep
            theta, X, Y, W = _problem(model, N, 37, seed=N)
            g = model.gradient(theta, X, Y, W)
            gp, gWp, riskp = NumpyPeer(model).gradient(theta, X, Y, W)
            assert _rel(g.theta, gp) < RTOL, (model.describe(), N)
            assert abs(g.risk - riskp) <= RTOL * abs(riskp)
            if model.has_W:
                assert _rel(g.W, gWp) < RTOL
            if act != "relu":
                w = np.random.default_rng(1).random(N)
                w /= w.sum()
                lap = model.gradient(theta, X, Y, W, weights=w, laplacian=True).lap
                assert _rel(lap, _dense_lap(model, theta, X, Y, W, w)) < 1e-11, model.describe()


@pytest.mark.parametrize("act", ["tanh", "erf"])
@pytest.mark.parametrize("N", [300, 5000])
def test_fused_euler_step_equals_gradient_then_update(act, N):
    """``euler_maruyama_step`` (the integrator's update applied to each chunk of the model's
    force plan) is bitwise the force followed by ``em_update``, with and without noise."""
    from mfpde.dynamics.langevin import euler_maruyama_step
    from mfpde.kernels.readout import em_update
    for model in (make_model("two_layer", d=12, q=1, activation=act, lam=0.01),
                  make_model("nc", d=3, q=2, p=3, activation=act, lam=0.01, lam_W=0.02)):
        theta, X, Y, W = _problem(model, N, 23, seed=2)
        noise = np.random.default_rng(3).standard_normal(theta.shape)
        for ns in (0.0, 0.03):
            ref = theta.copy()
            g = model.gradient(ref, X, Y, W)
            em_update(ref, g.theta, noise, 0.05, ns)
            th = theta.copy()
            risk, gW = euler_maruyama_step(model, th, X, Y, W, 0.05, noise, ns)
            assert np.array_equal(th, ref)
            assert risk == g.risk
            if model.has_W:
                assert np.array_equal(gW, g.W)
    with pytest.raises(ValueError, match="C-contiguous"):
        euler_maruyama_step(model, np.asfortranarray(theta), X, Y, W, 0.05)


def test_euler_step_draws_chunked_noise_like_one_draw():
    """Noise drawn chunk by chunk inside the pass equals one ``standard_normal((N, D))`` draw."""
    from mfpde.dynamics.langevin import euler_maruyama_step
    model = make_model("two_layer", d=3, q=1, activation="tanh", lam=0.01)
    model.block_bytes = 8 * 5000 * 6                       # several blocks
    theta, X, Y, _ = _problem(model, 5000, 20, seed=4)
    ref = theta.copy()
    noise = np.random.default_rng(9).standard_normal(theta.shape)
    euler_maruyama_step(model, ref, X, Y, None, 0.05, noise, 0.1)
    for memory in ("fast", "low"):
        model.memory = memory
        th = theta.copy()
        rng = np.random.default_rng(9)
        euler_maruyama_step(model, th, X, Y, None, 0.05, None, 0.1, rng=rng)
        assert np.array_equal(th, ref), memory
    assert np.array_equal(rng.standard_normal(3), np.random.default_rng(9).standard_normal(
        theta.size + 3)[-3:])


def test_force_plan_chunks_equal_the_gradient():
    """The force plan hands each chunk's force (bitwise the rows of ``gradient``) to the
    consumer once, in chunks covering ``[0, N)``; ``produce`` is called in chunk order; the
    fused-kernel plan is offered by the two-layer model only."""
    from mfpde.kernels.readout import chunk_bounds
    for model in (make_model("two_layer", d=4, q=1, activation="tanh", lam=0.01),
                  make_model("nc", d=3, q=2, p=3, activation="erf", lam=0.01, lam_W=0.02)):
        theta, X, Y, W = _problem(model, 3000, 17, seed=5)
        g = model.gradient(theta, X, Y, W)
        got = np.full_like(theta, np.nan)
        seen, made = [], []

        def produce(lo, hi):
            made.append(lo)
            return lo

        def on_chunk(lo, hi, force, item):
            assert item == lo and force.shape == (hi - lo, model.D)
            got[lo:hi] = force
            seen.append((lo, hi))

        risk, gW = model.force_chunks(theta, X, Y, W, on_chunk, produce)
        b = chunk_bounds(theta.shape[0])
        assert sorted(seen) == list(zip(b[:-1], b[1:])) and made == list(b[:-1])
        assert np.array_equal(got, g.theta) and risk == g.risk
        assert (gW is None) == (not model.has_W) and (gW is None or np.array_equal(gW, g.W))
        plan = model.fused_plan()
        if model.has_W:
            assert plan is None
        else:
            assert (plan.code, plan.pa, plan.bias, plan.lam, plan.D) == (
                model.code, model.pa, model.bias, model.lam, model.D)


@pytest.mark.parametrize("d", [3, 12])
def test_work_buffers_kept_between_passes_give_the_same_numbers(d):
    """The stored pass keeps its ``block x N`` tiles and ``grad_U`` sums between passes
    (``ReadoutModel._take_buffer``): passes of one model over other and then the first sizes
    reuse them (the larger buffer serves the smaller passes) and give, bit for bit, the numbers of a
    fresh model."""
    kept = make_model("two_layer", d=d, q=2, activation="tanh", lam=0.01)
    shapes = [(1100, 300), (5000, 37), (1100, 300), (1100, 5)]    # the first is the largest
    first = {}
    for N, n in shapes:
        theta, X, Y, W = _problem(kept, N, n, seed=N + n)
        g = kept.gradient(theta, X, Y, W)
        fresh = make_model("two_layer", d=d, q=2, activation="tanh", lam=0.01)
        g0 = fresh.gradient(theta, X, Y, W)
        assert np.array_equal(g.theta, g0.theta) and g.risk == g0.risk
        [tile] = kept.__dict__["_work"][("tile", 0)]               # one buffer, kept
        assert tile.size >= min(n, kept.block_size(n, N)) * N
        first.setdefault("tile", tile)
    [tile] = kept.__dict__["_work"][("tile", 0)]
    assert tile is first["tile"]                                  # never reallocated
    if d > 8:
        assert "gU" in kept.__dict__["_work"]
