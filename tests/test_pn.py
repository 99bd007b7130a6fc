"""Pham–Nguyen three-layer network (mfpde.models.three_layer_pn): gradients, trainers, state."""
import numpy as np
import pytest

from mfpde.data import make_dataset
from mfpde.dynamics import PNDriver
from mfpde.models.three_layer_pn import PNThreeLayer, PNWeights, pn_eps_from_raw, pn_raw_lrs


@pytest.fixture(scope="module")
def data():
    return make_dataset("teacher_student", seed=0, n=9, d=3, k_star=2)


@pytest.mark.parametrize("phis", [("tanh", "tanh", "identity"), ("sigmoid", "erf", "tanh")])
def test_matrix_form_equals_per_sample_loop(data, phis):
    m = PNThreeLayer(3, *phis, lam=0.01)
    w = m.init_weights(5, 4, np.random.default_rng(1))
    g = m.gradients(w, data.X, data.Y)
    gl = m.gradients_loop(w, data.X, data.Y)
    for a, b in ((g.g1, gl.g1), (g.g2, gl.g2), (g.g3, gl.g3)):
        assert np.abs(a - b).max() <= 1e-13 * max(1.0, np.abs(b).max())
    assert g.risk == pytest.approx(gl.risk, rel=1e-13)
    assert m.risk(w, data.X, data.Y) == pytest.approx(g.risk, rel=1e-13)


def test_rescaled_gradients_are_scaled_raw_gradients(data):
    m = PNThreeLayer(3)
    n1, n2 = 5, 4
    w = m.init_weights(n1, n2, np.random.default_rng(2))
    g = m.gradients(w, data.X, data.Y)
    h = 1e-6
    for arr, G, scale in ((w.w1, g.g1, n1), (w.w2, g.g2, n1 * n2), (w.w3, g.g3, n2)):
        fd = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + h
            lp = m.risk(w, data.X, data.Y)
            arr[i] = old - h
            lm = m.risk(w, data.X, data.Y)
            arr[i] = old
            fd[i] = (lp - lm) / (2 * h)
        assert np.abs(G - scale * fd).max() / np.abs(G).max() < 1e-7


def test_raw_learning_rates_roundtrip():
    eta = pn_raw_lrs(0.02, 16, 32, (1.0, 2.0, 0.5))
    assert eta == pytest.approx((16 * 0.02, 16 * 32 * 0.02 * 2, 32 * 0.02 * 0.5))
    eps, xi = pn_eps_from_raw(eta, 16, 32)
    assert eps == pytest.approx(0.02) and xi == pytest.approx((1.0, 2.0, 0.5))


def test_raw_sgd_step_equals_rescaled_step(data):
    """A framework SGD step with the raw learning rates equals the rescaled step."""
    m = PNThreeLayer(3)
    n1, n2, eps = 6, 5, 0.05
    drv = PNDriver(m, data, n1=n1, n2=n2, dt=eps, seed=4)
    w0 = drv.w.copy()
    drv.step(1)
    eta = pn_raw_lrs(eps, n1, n2)
    h = 1e-6
    for l, (arr, arr1) in enumerate(zip(w0.arrays(), drv.w.arrays())):
        raw = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + h
            lp = m.risk(w0, data.X, data.Y)
            arr[i] = old - h
            lm = m.risk(w0, data.X, data.Y)
            arr[i] = old
            raw[i] = (lp - lm) / (2 * h)
        assert np.abs(arr1 - (arr - eta[l] * raw)).max() < 1e-8


def test_shb_polyak_equals_velocity(data):
    m = PNThreeLayer(3)
    kw = dict(n1=8, n2=6, dt=0.05, gamma=2.0, batch=4, seed=5)
    a = PNDriver(m, data, method="shb", **kw)
    b = PNDriver(m, data, method="shb_polyak", **kw)
    a.step(200)
    b.step(200)
    for x, y in zip(a.w.arrays(), b.w.arrays()):
        assert np.abs(x - y).max() / np.abs(x).max() <= 1e-12


def test_gd_decreases_risk_and_shb_lyapunov(data):
    m = PNThreeLayer(3)
    d = PNDriver(m, data, n1=20, n2=20, dt=0.05, seed=6)
    risks = []
    for _ in range(40):
        risks.append(m.risk(d.w, data.X, data.Y))
        d.step(1)
    assert np.all(np.diff(risks) <= 1e-12) and risks[-1] < 0.9 * risks[0]
    s = PNDriver(m, data, n1=20, n2=20, dt=0.02, gamma=3.0, method="shb", seed=6)
    H = []
    for _ in range(100):
        r = s.velocity
        H.append(m.risk(s.w, data.X, data.Y) + 0.5 * sum(float(np.mean(v * v)) for v in r))
        s.step(1)
    # dynamics.md §6.3: H non-increasing up to O(eps) wiggles of the discrete recursion
    assert H[-1] < H[0] and np.max(np.diff(H)) < 1e-3 * H[0]


def test_sub_block_and_state(data):
    m = PNThreeLayer(3)
    w = m.init_weights(10, 8, np.random.default_rng(0))
    sb = w.sub_block(4, 3)
    assert np.array_equal(sb.w1, w.w1[:4]) and np.array_equal(sb.w2, w.w2[:4, :3])
    assert np.array_equal(sb.w3, w.w3[:3])
    with pytest.raises(ValueError):
        w.sub_block(11, 3)
    # init: bounded w2, w3 (Pham–Nguyen assumption), w2 mean 1
    big = m.init_weights(300, 300, np.random.default_rng(1))
    assert np.abs(big.w2 - 1).max() <= 1 and np.abs(big.w3).max() <= 1
    assert abs(big.w2.mean() - 1) < 0.01
    for method in ("sgd", "shb", "shb_polyak"):
        kw = dict(n1=6, n2=5, dt=0.05, batch=3, seed=3, method=method,
                  gamma=None if method == "sgd" else 2.0)
        a = PNDriver(m, data, **kw)
        a.step(7)
        st = a.state_dict()
        a.step(5)
        b = PNDriver(m, data, **kw)
        b.load_state_dict(st)
        b.step(5)
        for x, y in zip(a.w.arrays(), b.w.arrays()):
            assert np.array_equal(x, y)


def test_validation(data):
    m = PNThreeLayer(3)
    with pytest.raises(ValueError, match="gamma"):
        PNDriver(m, data, n1=3, n2=3, dt=0.1, method="shb")
    with pytest.raises(ValueError, match="method"):
        PNDriver(m, data, n1=3, n2=3, dt=0.1, method="adam")
    with pytest.raises(ValueError, match="shape"):
        m.prepare_Y(np.zeros((9, 2)), 9)
    with pytest.raises(ValueError, match="inconsistent"):
        m.check_weights(PNWeights(np.zeros((3, 3)), np.zeros((4, 2)), np.zeros(2)))
    with pytest.raises(ValueError):
        PNThreeLayer(3, phi1="nope")


def test_pn_driver_is_a_driver(data):
    """Engine protocol: fields ``w1, w2, w3`` (+ velocities for heavy ball), ``t_end`` ignored."""
    from mfpde.engine.protocol import check_driver
    m = PNThreeLayer(3)
    for method, names in (("sgd", {"w1", "w2", "w3"}),
                          ("shb", {"w1", "w2", "w3", "r1", "r2", "r3"}),
                          ("shb_polyak", {"w1", "w2", "w3", "r1", "r2", "r3"})):
        d = PNDriver(m, data, n1=6, n2=5, dt=0.05, method=method,
                     gamma=None if method == "sgd" else 2.0, seed=1)
        check_driver(d)
        d.step(4, t_end=0.0)
        assert d.k == 4 and d.t == pytest.approx(0.2)
        f = d.fields()
        assert set(f) == names and f["w2"] is d.w.w2 and f["w3"].shape == (5,)
        if method == "shb":
            assert f["r1"] is d.r[0]
