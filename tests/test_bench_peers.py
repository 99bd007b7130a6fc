"""The compiled benchmark peers (JAX ``jax.jit`` and ``lax.scan``, ``torch.compile``) compute the
same numbers as the plain NumPy peer, and the suite runs without them (not timed).

The peers live in ``benchmarks/peers.py``; a peer's tests are skipped when its library is not
installed (``pip install -e '.[bench]'``). Tolerance: 1e-11 relative, as for the eager PyTorch peer
in tests/test_fast_paths.py (the libraries sum the products in their own order).
"""
import math
import types

import numpy as np
import pytest

from benchmarks import bench_cases
from benchmarks.__main__ import to_markdown
from benchmarks.peers import JaxPeer, NumpyPeer, TorchPeer, jax_available, torch_available
from mfpde.models import make_model

ACTS = ["tanh", "sigmoid", "erf", "softplus", "relu", "identity"]
RTOL = 1e-11
needs_jax = pytest.mark.skipif(not jax_available(), reason="jax not installed (optional peer)")
needs_torch = pytest.mark.skipif(not torch_available(),
                                 reason="torch not installed (optional peer)")


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _models(act):
    return [
        make_model("two_layer", d=5, q=1, activation=act, lam=0.01),
        make_model("two_layer", d=5, q=2, activation=act, bias=True, lam=0.02),
        make_model("two_layer", d=5, q=1, activation=act, output="fixed"),
        make_model("nc", d=5, q=3, p=4, Gamma=1.7, activation=act, lam=0.01, lam_W=0.03),
    ]


def _problem(model, N, n, seed):
    rng = np.random.default_rng(seed)
    theta = model.init_particles(N, rng)
    X = rng.standard_normal((n, model.d)) / math.sqrt(model.d)
    Y = rng.standard_normal((n, model.q))
    W = rng.standard_normal((model.p, model.q)) if model.has_W else None
    return theta, X, Y, W


def _steps_agree(peer, model, N, n, steps=3, chunk_bytes=None, seed=0):
    """``steps`` noiseless steps of ``peer.advance`` against the NumPy peer's; the NumPy peer
    uses the same ``chunk_bytes`` (several sample blocks when small)."""
    theta, X, Y, W = _problem(model, N, n, seed)
    npp = NumpyPeer(model) if chunk_bytes is None else NumpyPeer(model, chunk_bytes=chunk_bytes)
    th, Wn = theta.copy(), None if W is None else W.copy()
    pt, pW = peer.to_array(theta.copy()), peer.to_array(W)
    pX, pY = peer.to_array(X), peer.to_array(Y)
    for _ in range(steps):
        Wn = npp.step(th, X, Y, 0.05, Wn)
        pt, pW = peer.advance(pt, pX, pY, 0.05, pW)
        assert _rel(np.asarray(pt), th) < RTOL, model.describe()
        if W is not None:
            assert _rel(np.asarray(pW), Wn) < RTOL, model.describe()


@needs_jax
@pytest.mark.parametrize("act", ACTS)
def test_jax_gradient_matches_numpy_peer(act):
    for model in _models(act):
        theta, X, Y, W = _problem(model, 200, 30, seed=5)
        g, gW, risk = NumpyPeer(model).gradient(theta, X, Y, W)
        jp = JaxPeer(model)
        gj, gWj, riskj = jp.gradient(*(jp.to_array(a) for a in (theta, X, Y, W)))
        assert _rel(np.asarray(gj), g) < RTOL, (model.describe(), act)
        assert abs(riskj - risk) <= RTOL * abs(risk)
        if model.has_W:
            assert _rel(np.asarray(gWj), gW) < RTOL


@needs_jax
@pytest.mark.parametrize("kind", ["two_layer", "nc"])
def test_jax_jit_step_matches_numpy_peer(kind):
    """``jax.jit`` of the whole step, one sample block and several (small chunk budget)."""
    model = _models("tanh")[0 if kind == "two_layer" else 3]
    _steps_agree(JaxPeer(model), model, 300, 40)
    _steps_agree(JaxPeer(model, chunk_bytes=8 * 300 * 7), model, 300, 40,
                 chunk_bytes=8 * 300 * 7)


@needs_jax
def test_jax_scan_matches_numpy_online_sgd():
    """One ``lax.scan`` over pre-drawn batch-1 samples equals the NumPy peer stepping through
    the same samples one by one."""
    from mfpde.data import mmn_gaussians_sampler
    model = make_model("two_layer", d=6, q=1, activation="tanh", output="fixed")
    sampler = mmn_gaussians_sampler(d=6, delta=0.8)
    rng = np.random.default_rng(2)
    theta = model.init_particles(50, rng)
    draws = [sampler.sample(1, rng) for _ in range(40)]
    th, npp = theta.copy(), NumpyPeer(model)
    for Xb, Yb in draws:
        npp.step(th, Xb, Yb, 0.1)
    jp = JaxPeer(model)
    Xs = jp.to_array(np.stack([x for x, _ in draws]))
    Ys = jp.to_array(np.stack([np.reshape(y, (1, -1)) for _, y in draws]))
    tj, _ = jp.scan(jp.to_array(theta), Xs, Ys, 0.1)
    assert _rel(np.asarray(tj), th) < RTOL


@needs_torch
def test_torch_compile_step_matches_numpy_peer():
    """``torch.compile`` of the whole step (one compilation per model: the slow part)."""
    for model in (_models("tanh")[0], _models("tanh")[3]):
        _steps_agree(TorchPeer(model, compile=True), model, 300, 40,
                     chunk_bytes=8 * 300 * 7)


@needs_torch
def test_torch_eager_advance_matches_numpy_peer():
    for model in _models("sigmoid"):
        _steps_agree(TorchPeer(model), model, 300, 40, chunk_bytes=8 * 300 * 7)


def test_numpy_peer_step_is_in_place():
    model = _models("tanh")[3]
    theta, X, Y, W = _problem(model, 40, 9, seed=1)
    th = theta.copy()
    W1 = NumpyPeer(model).step(th, X, Y, 0.1, W)
    g, gW, _ = NumpyPeer(model).gradient(theta, X, Y, W)
    np.testing.assert_array_equal(th, theta - 0.1 * g)
    np.testing.assert_array_equal(W1, W - 0.1 * gW)


def test_suite_runs_without_the_optional_peers(monkeypatch):
    """With torch and jax reported missing, case 1 still runs (tiny sizes here) and its table
    says so in their columns; the machine-limit ratios are filled from the same rounds."""
    monkeypatch.setattr(bench_cases, "torch_available", lambda: False)
    monkeypatch.setattr(bench_cases, "jax_available", lambda: False)
    monkeypatch.setitem(bench_cases.REGIMES, "low", (2, 400, 16, 4, 2))
    probes = {"dgemm": bench_cases.make_dgemm(64), "tanh": bench_cases.make_tanh(1 << 12)}
    row = bench_cases.full_batch("low", "two_layer", repeat=5, limits=probes)
    assert row["t_jax"] is None and row["t_torch"] is None and row["speedup_vs_jax"] is None
    assert row["t_jax_whole"] is None and row["speedup_vs_jax_best"] is None
    assert row["t_numpy"] > 0 and row["ratio_mfpde_over_flop"] > 0
    assert row["flops"] == 2.0 * 16 * 400 * (2 * 2 + 3)
    res = {"machine": {"platform": "x", "cpu_count": 2, "python": "3", "numpy": "2",
                       "numba": "0", "numba_threads": 2, "blas": [], "torch": None,
                       "jax": None},
           "repeat": 5, "quick": True, "wall_s": 1.0, "cases": {"full_batch": [row]}}
    md = to_markdown(res)
    assert "jax not installed" in md and "torch not installed" in md


def test_scaling_slope_and_skipped_points():
    """The log-log slope of an exactly linear series is 1; a point over the memory limit is
    skipped with the reason, before anything is allocated."""
    rows = [{"N": N, "t_step": 3e-9 * N} for N in (1e4, 1e5, 1e6)] + [{"N": 1e7, "skipped": "x"}]
    assert bench_cases._slope(rows, "N") == pytest.approx(1.0, abs=1e-12)
    r = bench_cases._scaling_point(784, 10 ** 9, 64, 5, 10.0, None, 2.5, mem_limit=2 ** 30)
    assert "skipped" in r and "memory" in r["skipped"]
    r = bench_cases._scaling_point(2, 1000, 8, 5, 10.0, 100.0, 2.5, mem_limit=None)
    assert "skipped" in r and "budget" in r["skipped"]
    r = bench_cases._scaling_point(2, 1000, 8, 5, 10.0, None, 2.5, mem_limit=None)
    assert r["t_step"] > 0 and r["updates_per_s"] == pytest.approx(8000 / r["t_step"])
