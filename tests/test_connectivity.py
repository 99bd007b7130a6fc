"""Paths between networks: endpoints, segment formulas, the exact inequality
"barrier <= larger half-dropout gap" (mfpde.metrics.connectivity; theory/metrics.md §7)."""
import numpy as np
import pytest

from mfpde.data import make_dataset
from mfpde.metrics.connectivity import (check_comparable, connect, five_segment_path, make_path,
                                        path_losses, pn_path, straight_line)
from mfpde.metrics.dropout import Network
from mfpde.models import make_model
from mfpde.models.three_layer_pn import PNThreeLayer


@pytest.fixture(scope="module")
def data():
    return make_dataset("teacher_student", seed=0, n=80, d=3, k_star=2)


@pytest.fixture(scope="module")
def data_q2():
    return make_dataset("teacher_student", seed=1, n=70, d=3, k_star=2, q=2)


def _pair(kind, N=10, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "two_layer":
        m = make_model("two_layer", d=3, bias=True)
        W = None
    elif kind == "two_layer_q2":
        m = make_model("two_layer", d=3, q=2)
        W = None
    else:
        m = make_model("nc", d=3, q=2, p=3, Gamma=1.3)
        W = m.init_W(rng)
    return (Network(m, m.init_particles(N, rng), W), Network(m, m.init_particles(N, rng), W))


def _data_for(kind, data, data_q2):
    return data if kind == "two_layer" else data_q2


def _f(net, params, X):
    return Network(net.model, params, net.W).forward(X)


@pytest.mark.parametrize("kind", ["two_layer", "two_layer_q2", "nc"])
def test_five_segment_endpoints_and_segment_formulas(kind, data, data_q2):
    A, B = _pair(kind)
    d = _data_for(kind, data, data_q2)
    X = d.X
    path = five_segment_path(A, B)
    assert path.n_segments == 5 and len(path.knots) == 6
    np.testing.assert_array_equal(path.point(0, 0.0), A.params)
    np.testing.assert_array_equal(path.point(4, 1.0), B.params)
    for j in range(4):                                       # continuity at the knots
        np.testing.assert_array_equal(path.point(j, 1.0), path.point(j + 1, 0.0))
    I1, I2 = np.arange(5), np.arange(5, 10)
    fA, fB = A.forward(X), B.forward(X)
    fA1, fB2 = A.sub(I1).forward(X), B.sub(I2).forward(X)     # f^A_{N/2}(I1), f^B_{N/2}(I2)
    for s in (0.0, 0.3, 0.75, 1.0):
        np.testing.assert_allclose(_f(A, path.point(0, s), X), (1 - s) * fA + s * fA1, atol=1e-13)
        np.testing.assert_allclose(_f(A, path.point(1, s), X), fA1, atol=1e-13)        # P2
        np.testing.assert_allclose(_f(A, path.point(2, s), X), (1 - s) * fA1 + s * fB2,
                                   atol=1e-13)
        np.testing.assert_allclose(_f(A, path.point(3, s), X), fB2, atol=1e-13)        # P4
        np.testing.assert_allclose(_f(A, path.point(4, s), X), (1 - s) * fB2 + s * fB, atol=1e-13)
    # only the documented coordinates move on the constant segments
    pa = A.model.pa
    K = path.knots
    assert np.all(K[1][5:, :pa] == 0) and np.array_equal(K[1][:, pa:], A.params[:, pa:])
    np.testing.assert_array_equal(K[2][5:, pa:], B.params[5:, pa:])
    np.testing.assert_array_equal(K[2][:5, pa:], A.params[:5, pa:])
    np.testing.assert_array_equal(K[4][:, pa:], B.params[:, pa:])


@pytest.mark.parametrize("kind", ["two_layer", "nc"])
def test_path_losses_are_forward_passes(kind, data, data_q2):
    A, B = _pair(kind, N=12, seed=3)
    d = _data_for(kind, data, data_q2)
    for path in (make_path(A, B), straight_line(A, B)):
        tau, L, seg = path_losses(A, path, d.X, d.Y, points=6)
        assert tau.size == path.n_segments * 5 + 1 and np.all(np.diff(tau) > 0)
        for t, l, j in zip(tau, L, seg):
            p = path.point(int(j), float(t - j))
            assert l == pytest.approx(Network(A.model, p, A.W).risk(d.X, d.Y), abs=1e-14)


@pytest.mark.parametrize("kind", ["two_layer", "two_layer_q2", "nc"])
def test_inequality_holds_and_the_maximum_is_at_a_knot(kind, data, data_q2):
    d = _data_for(kind, data, data_q2)
    for seed in range(6):
        A, B = _pair(kind, N=16, seed=seed)
        r = connect(A, B, d.X, d.Y, points=25)
        assert r.applies and r.holds, (seed, r.barrier, r.bound)
        assert r.barrier <= r.bound + r.tol
        # convex loss along affine segments: the sampled maximum is a knot's loss
        assert r.barrier == pytest.approx(r.barrier_knots, abs=r.tol)
        # the bound is the larger half-dropout gap (or 0)
        gA = A.sub(np.arange(8)).risk(d.X, d.Y) - A.risk(d.X, d.Y)
        gB = B.sub(np.arange(8, 16)).risk(d.X, d.Y) - B.risk(d.X, d.Y)
        assert r.bound == pytest.approx(max(gA, gB, 0.0), abs=1e-14)
        assert r.loss_A == pytest.approx(A.risk(d.X, d.Y), abs=1e-14)


def test_the_inequality_can_fail_on_a_path_without_the_convexity_argument(data):
    """The same bound does not hold for the straight line: between a trained network and a
    permutation of its neurons (the same function, L_A = L_B) the straight line leaves the
    low-loss set, the five-segment path stays below the bound."""
    from mfpde.dynamics.sgd import make_trainer
    m = make_model("two_layer", d=3)
    tr = make_trainer(m, data, N=64, method="gd", dt=0.5, seed=0)
    tr.step(300)
    A = Network(m, tr.theta.copy())
    B = Network(m, tr.theta[np.random.default_rng(1).permutation(64)].copy())
    r = connect(A, B, data.X, data.Y, points=20)
    assert r.loss_A == pytest.approx(r.loss_B, rel=1e-12)
    assert r.holds
    assert r.straight_barrier > r.bound + r.tol


def test_pn_path_knots_are_dropout_subnetworks(data):
    pm = PNThreeLayer(3)
    rng = np.random.default_rng(0)
    A = Network(pm, pm.init_weights(6, 8, rng))
    B = Network(pm, pm.init_weights(6, 8, rng))
    path = pn_path(A, B)
    assert path.n_segments == 9
    X = data.X
    I1, I2, J1, J2 = np.arange(3), np.arange(3, 6), np.arange(4), np.arange(4, 8)
    allI = np.arange(6)
    expect = {1: A.sub((allI, J2)), 3: A.sub((I1, J1)), 5: B.sub((I2, J2)), 7: B.sub((allI, J1))}
    for k, sub in expect.items():
        np.testing.assert_allclose(Network(pm, path.knots[k]).forward(X), sub.forward(X),
                                   atol=1e-13)
    for a, b in zip(path.knots[0].arrays(), A.params.arrays()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(path.knots[-1].arrays(), B.params.arrays()):
        np.testing.assert_array_equal(a, b)
    for j, affine in enumerate(path.affine):
        f0 = Network(pm, path.point(j, 0.0)).forward(X)
        f1 = Network(pm, path.point(j, 1.0)).forward(X)
        for s in (0.25, 0.6):
            fs = Network(pm, path.point(j, s)).forward(X)
            target = (1 - s) * f0 + s * f1 if affine else f0
            np.testing.assert_allclose(fs, target, atol=1e-13)
        if not affine:
            np.testing.assert_allclose(f1, f0, atol=1e-13)
    # affine segments move w3 only
    for j in (0, 2, 4, 6, 8):
        a, b = path.knots[j], path.knots[j + 1]
        assert np.array_equal(a.w1, b.w1) and np.array_equal(a.w2, b.w2)


def test_pn_connect(data):
    rng = np.random.default_rng(1)
    pm = PNThreeLayer(3)
    for _ in range(4):
        A = Network(pm, pm.init_weights(6, 8, rng))
        B = Network(pm, pm.init_weights(6, 8, rng))
        r = connect(A, B, data.X, data.Y, points=9)
        assert r.kind == "pn_nine_segment" and r.applies and r.holds
        assert len(r.gaps) == 4
        # sampled points are forward passes
        tau, L, seg = path_losses(A, make_path(A, B), data.X, data.Y, points=4)
        for t, l, j in zip(tau, L, seg):
            p = make_path(A, B).point(int(j), float(t - j))
            assert l == pytest.approx(pm.risk(p, data.X, data.Y), abs=1e-14)
    pt = PNThreeLayer(3, phi3="tanh")
    A = Network(pt, pt.init_weights(4, 4, rng))
    B = Network(pt, pt.init_weights(4, 4, rng))
    assert not connect(A, B, data.X, data.Y, points=4).applies


def test_comparability_errors(data):
    A, B = _pair("two_layer", N=10)
    with pytest.raises(ValueError, match="widths"):
        five_segment_path(A, Network(A.model, B.params[:8]))
    with pytest.raises(ValueError, match="even"):
        five_segment_path(Network(A.model, A.params[:9]), Network(A.model, B.params[:9]))
    other = make_model("two_layer", d=3, bias=True, activation="sigmoid")
    with pytest.raises(ValueError, match="activation"):
        check_comparable(A, Network(other, B.params))
    An, Bn = _pair("nc", N=10)
    with pytest.raises(ValueError, match="share W"):
        five_segment_path(An, Network(Bn.model, Bn.params, Bn.W + 0.1))
    fixed = make_model("two_layer", d=3, output="fixed")
    rng = np.random.default_rng(0)
    Af = Network(fixed, fixed.init_particles(10, rng))
    Bf = Network(fixed, fixed.init_particles(10, rng))
    with pytest.raises(ValueError, match="trainable output"):
        five_segment_path(Af, Bf)
    assert straight_line(Af, Bf).n_segments == 1
    with pytest.raises(ValueError, match="points"):
        path_losses(A, make_path(A, B), data.X, data.Y, points=1)
