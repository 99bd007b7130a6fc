"""Dropout sub-networks, the exact expected gap and its Monte Carlo counterpart
(mfpde.metrics.dropout; theory/metrics.md §7, validation.md §U)."""
import itertools
import math

import numpy as np
import pytest

from mfpde.data import make_dataset
from mfpde.metrics.dropout import (Network, default_Ms, dropout_gaps, expected_gap, gap_of_subset,
                                   neuron_outputs, random_subsets)
from mfpde.models import make_model
from mfpde.models.three_layer_pn import PNThreeLayer, PNWeights


@pytest.fixture(scope="module")
def data():
    return make_dataset("teacher_student", seed=0, n=60, d=3, k_star=2)


@pytest.fixture(scope="module")
def data_q2():
    return make_dataset("teacher_student", seed=1, n=50, d=3, k_star=2, q=2)


def _nets(data, data_q2, N=7, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    m = make_model("two_layer", d=3)
    out.append((Network(m, m.init_particles(N, rng)), data))
    m = make_model("two_layer", d=3, q=2, bias=True)
    out.append((Network(m, m.init_particles(N, rng)), data_q2))
    m = make_model("two_layer", d=3, output="fixed")
    out.append((Network(m, m.init_particles(N, rng)), data))
    m = make_model("nc", d=3, q=2, p=3, Gamma=1.7)
    out.append((Network(m, m.init_particles(N, rng), m.init_W(rng)), data_q2))
    return out


def _brute(net, data, M):
    """Mean of L_M(theta_S) - L_N over ALL subsets of size M (forward pass of each sub-network)."""
    L = net.risk(data.X, data.Y)
    N = net.width
    gaps = [net.sub(list(S)).risk(data.X, data.Y) - L for S in itertools.combinations(range(N), M)]
    return float(np.mean(gaps)), np.array(gaps)


def test_neuron_outputs_average_to_the_forward_pass(data, data_q2):
    for net, d in _nets(data, data_q2, N=11):
        C = neuron_outputs(net, d.X)
        f = net.forward(d.X)
        assert C.shape == (d.X.shape[0] * net.q, 11)
        np.testing.assert_allclose(C.mean(axis=1).reshape(f.shape), f, rtol=0, atol=1e-14)


def test_subnetwork_is_the_width_M_network_of_the_same_kind(data, data_q2):
    for net, d in _nets(data, data_q2, N=9):
        keep = np.array([0, 3, 4, 8])
        sub = net.sub(keep)
        assert sub.width == 4 and sub.kind == net.kind
        # f_M = (1/M) sum_{i in S} sigma_*(x; theta_i) (metrics.md §7)
        C = neuron_outputs(net, d.X)
        np.testing.assert_allclose(C[:, keep].mean(axis=1).reshape(-1), sub.forward(d.X).ravel(),
                                   atol=1e-14)
        assert np.allclose(net.sub(np.arange(9)).forward(d.X), net.forward(d.X), atol=1e-15)
    with pytest.raises(ValueError, match="distinct"):
        net.sub([0, 0, 1])
    with pytest.raises(ValueError):
        net.sub([9])


def test_exact_identity_equals_enumeration_of_all_subsets(data, data_q2):
    for net, d in _nets(data, data_q2, N=7):
        for M in range(1, 8):
            brute, _ = _brute(net, d, M)
            exact = expected_gap(net, d.X, d.Y, M)
            assert exact == pytest.approx(brute, rel=1e-10, abs=1e-15), (net.kind, M)
    # M = N: no gap
    assert expected_gap(net, d.X, d.Y, 7) == 0.0


def test_linear_term_sd_equals_enumeration(data):
    """Exact s.d. of the linear term -(1/n) sum_x r_x (f_S - f_N)(x) over all subsets."""
    net, d = _nets(data, data, N=8)[0]
    C = neuron_outputs(net, d.X)
    fN = C.mean(axis=1)
    R = d.Y[:, 0] - fN
    n = d.X.shape[0]
    res = dropout_gaps(net, d.X, d.Y, [2, 3, 5], n_subsets=4)
    for j, M in enumerate([2, 3, 5]):
        lin = [-(R @ (C[:, list(S)].mean(axis=1) - fN)) / n
               for S in itertools.combinations(range(8), M)]
        assert res.linear_sd[j] == pytest.approx(np.std(lin), rel=1e-10)
        # and the quadratic part's mean is the identity
        quad = [0.5 * np.sum((C[:, list(S)].mean(axis=1) - fN) ** 2) / n
                for S in itertools.combinations(range(8), M)]
        assert res.exact[j] == pytest.approx(np.mean(quad), rel=1e-10)


def test_monte_carlo_gaps_are_subset_losses(data, data_q2):
    """The vectorised gaps (one BLAS product for all subsets) equal the forward pass of each
    sub-network; the worst subset realises the worst gap."""
    for net, d in _nets(data, data_q2, N=40):
        res = dropout_gaps(net, d.X, d.Y, [5, 20], n_subsets=30, seed=3)
        for j in range(2):
            S = res.worst_subsets[j]
            assert res.worst[j] == pytest.approx(gap_of_subset(net, d.X, d.Y, S), abs=1e-13)
            assert res.worst[j] == res.gaps[j].max()
        # the same seed draws the same subsets
        res2 = dropout_gaps(net, d.X, d.Y, [5, 20], n_subsets=30, seed=3)
        np.testing.assert_array_equal(res.gaps, res2.gaps)


def test_monte_carlo_mean_converges_to_the_identity(data):
    net, d = _nets(data, data, N=64, seed=5)[0]
    res = dropout_gaps(net, d.X, d.Y, [2, 4, 8], n_subsets=20000, seed=1)
    assert np.all(np.abs(res.z) < 4.0)
    assert np.all(res.se < 0.03 * res.exact)            # the test has power: s.e. < 3%
    # the standard error is right: the z-scores of many independent repetitions have variance 1
    zs = np.concatenate([dropout_gaps(net, d.X, d.Y, [8], n_subsets=200, seed=s).z
                         for s in range(60)])
    assert 0.6 < np.mean(zs ** 2) < 1.5


def test_mean_and_spread_scale_with_M(data):
    net, d = _nets(data, data, N=512, seed=2)[0]
    res = dropout_gaps(net, d.X, d.Y, [8, 16, 32, 64], n_subsets=400, seed=0)
    meff = 1.0 / (1.0 / res.M - 1.0 / 512)
    # exact: gap * M_eff is constant
    assert np.ptp(res.exact * meff) < 1e-12 * res.exact[0] * meff[0]
    np.testing.assert_allclose(res.exact * meff, 0.5 * res.s2, rtol=1e-12)
    # an untrained network is far from stationary: the linear term dominates the spread
    sd = res.linear_sd * np.sqrt(meff)
    np.testing.assert_allclose(sd, sd[0], rtol=1e-12)
    slope = np.polyfit(np.log(meff), np.log(res.spread()), 1)[0]
    assert -0.65 < slope < -0.35


def test_random_subsets():
    rng = np.random.default_rng(0)
    S = random_subsets(20, 5, 4000, rng)
    assert S.shape == (4000, 5)
    assert np.all(np.diff(S, axis=1) > 0)                    # distinct, sorted
    counts = np.bincount(S.ravel(), minlength=20)
    expect = 4000 * 5 / 20
    assert np.all(np.abs(counts - expect) < 5 * math.sqrt(expect))
    np.testing.assert_array_equal(random_subsets(6, 6, 3, rng), np.tile(np.arange(6), (3, 1)))
    with pytest.raises(ValueError):
        random_subsets(5, 6, 1, rng)


def test_bad_input(data):
    net, d = _nets(data, data, N=10)[0]
    with pytest.raises(ValueError, match="M must be"):
        dropout_gaps(net, d.X, d.Y, [0])
    with pytest.raises(ValueError, match="M must be"):
        dropout_gaps(net, d.X, d.Y, [11])
    with pytest.raises(ValueError, match="n_subsets"):
        dropout_gaps(net, d.X, d.Y, [3], n_subsets=1)
    with pytest.raises(ValueError):
        Network(make_model("nc", d=3, q=1, p=2), np.zeros((4, 5)))     # NC needs W


def test_default_sizes():
    assert default_Ms(4096) == [16, 32, 64, 128, 256, 512, 1024, 2048]
    assert default_Ms(256) == [16, 32, 64, 128]
    assert all(2 <= m <= 15 for m in default_Ms(30))
    assert default_Ms((40, 30)) == [(40, m) for m in default_Ms(30)]


# ------------------------------------------------------------------ Pham–Nguyen
def _pn(n1=5, n2=6, phi3="identity", seed=0):
    pm = PNThreeLayer(3, phi3=phi3)
    return Network(pm, pm.init_weights(n1, n2, np.random.default_rng(seed)))


def test_pn_subnetwork_normalisations(data):
    net = _pn(6, 5)
    w = net.params
    k1, k2 = np.array([0, 2, 5]), np.array([1, 4])
    sub = net.sub((k1, k2))
    assert sub.width == (3, 2)
    # H2 = (1/M1) sum_{j1 in K1} w2 phi1, H3 = (1/M2) sum_{j2 in K2} w3 phi2(H2)
    P1 = np.tanh(data.X @ w.w1[k1].T)
    H2 = P1 @ w.w2[np.ix_(k1, k2)] / 3
    H3 = np.tanh(H2) @ w.w3[k2] / 2
    np.testing.assert_allclose(sub.forward(data.X)[:, 0], H3, atol=1e-14)
    # an index array alone keeps all first-layer units
    assert net.sub(k2).width == (6, 2)


def test_pn_identity_for_second_layer_dropout(data):
    net = _pn(4, 6)
    for M2 in range(1, 7):
        L = net.risk(data.X, data.Y)
        brute = np.mean([net.sub(list(S)).risk(data.X, data.Y) - L
                         for S in itertools.combinations(range(6), M2)])
        assert expected_gap(net, data.X, data.Y, M2) == pytest.approx(brute, rel=1e-10, abs=1e-15)
        assert expected_gap(net, data.X, data.Y, (4, M2)) == pytest.approx(brute, rel=1e-10,
                                                                            abs=1e-15)
    # no closed form with first-layer dropout or a non-identity phi3
    assert math.isnan(expected_gap(net, data.X, data.Y, (3, 4)))
    assert math.isnan(expected_gap(_pn(4, 6, phi3="tanh"), data.X, data.Y, 3))


def test_pn_monte_carlo(data):
    net = _pn(8, 10, seed=3)
    res = dropout_gaps(net, data.X, data.Y, [(8, 5), (4, 5)], n_subsets=50, seed=0)
    assert np.isfinite(res.exact[0]) and math.isnan(res.exact[1])
    for j in range(2):
        S = res.worst_subsets[j]
        assert res.worst[j] == pytest.approx(gap_of_subset(net, data.X, data.Y, S), abs=1e-13)
    res_t = dropout_gaps(_pn(8, 10, phi3="tanh"), data.X, data.Y, [5], n_subsets=10)
    assert math.isnan(res_t.exact[0]) and math.isnan(res_t.s2)
    with pytest.raises(ValueError, match="fit in the widths"):
        dropout_gaps(net, data.X, data.Y, [(9, 5)])
    with pytest.raises(ValueError, match="PNWeights"):
        Network(PNThreeLayer(3), np.zeros((3, 3)))
    assert isinstance(net.params, PNWeights)
