"""Finite-width trainers (mfpde.dynamics.sgd): unit conversions, heavy-ball forms, raw units."""
import math

import numpy as np
import pytest

from mfpde.data import make_dataset
from mfpde.dynamics.langevin import LangevinSolver
from mfpde.dynamics.sgd import (Hyper, RawTrainer, SHBTrainer, beta_from_noise_std,
                                eps_from_raw_lr, lam_from_weight_decay, make_trainer,
                                noise_std_from_beta, raw_gradient, raw_lr_from_eps, shb_from_raw,
                                shb_polyak_from_velocity, shb_raw_from_velocity,
                                shb_velocity_from_polyak, weight_decay_from_lam)
from mfpde.models import make_model


@pytest.fixture(scope="module")
def data():
    return make_dataset("teacher_student", seed=0, n=48, d=4, k_star=3)


def _models():
    return [make_model("two_layer", d=4, lam=0.01),
            make_model("two_layer", d=4, output="fixed", bias=True),
            make_model("nc", d=4, q=1, p=3, lam=0.02, lam_W=0.05, Gamma=1.5)]


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(a).max())


# ----------------------------------------------------------------------------- conversions
def test_conversions_roundtrip_and_doc_example():
    N = 1000
    assert eps_from_raw_lr(raw_lr_from_eps(0.02, N), N) == pytest.approx(0.02, rel=1e-15)
    assert lam_from_weight_decay(weight_decay_from_lam(0.3, N), N) == pytest.approx(0.3)
    assert noise_std_from_beta(0.01, beta_from_noise_std(0.05, 0.01)) == pytest.approx(0.05)
    assert math.isinf(beta_from_noise_std(0.0, 0.01))
    eps, gamma = shb_from_raw(0.1, 0.9, 1000)               # dynamics.md §5.2 example
    assert eps == pytest.approx(0.01) and gamma == pytest.approx(10.0)
    a, mu = shb_polyak_from_velocity(0.01, 10.0)
    assert (a, mu) == (pytest.approx(1e-4), pytest.approx(0.9))
    assert shb_velocity_from_polyak(a, mu) == (pytest.approx(0.01), pytest.approx(10.0))
    assert shb_raw_from_velocity(0.01, 10.0, 1000) == (pytest.approx(0.1), pytest.approx(0.9))
    with pytest.raises(ValueError, match="gamma\\*eps < 1"):
        shb_polyak_from_velocity(0.5, 2.0)
    with pytest.raises(ValueError, match="mu"):
        shb_velocity_from_polyak(0.01, 1.0)


def test_hyper_both_directions_agree():
    N = 200
    for method, kw in (("noisy_sgd", {}), ("shb", {"momentum": 0.8})):
        raw = Hyper.from_raw(N, method, 0.4, weight_decay=1e-3, noise_std=0.02, lr_W=0.3, **kw)
        mf = Hyper.from_mean_field(N, method, raw.eps, gamma=raw.gamma, lam=raw.lam,
                                   lam_W=raw.lam_W, beta=raw.beta, xi_W=raw.xi_W,
                                   gamma_W=raw.gamma_W)
        for k in ("lr", "momentum", "weight_decay", "noise_std", "lr_W", "eps", "lam", "beta"):
            assert getattr(mf, k) == pytest.approx(getattr(raw, k), rel=1e-12), (method, k)
    h = Hyper.from_raw(N, "sgd", 2.0)
    assert h.eps == pytest.approx(0.01) and h.xi_W == pytest.approx(N)   # one lr for all layers


# ----------------------------------------------------------------------------- raw gradients
@pytest.mark.parametrize("model", _models(), ids=["two_layer", "fixed_bias", "nc"])
def test_raw_gradient_finite_differences(model, data):
    rng = np.random.default_rng(1)
    N = 7
    theta = model.init_particles(N, rng)
    W = model.init_W(rng)
    g, gW, loss = raw_gradient(model, theta, data.X, data.Y, W)
    assert loss == pytest.approx(model.risk(theta, data.X, data.Y, W), rel=1e-13)
    h = 1e-6
    fd = np.zeros_like(theta)
    for i in range(N):
        for j in range(model.D):
            tp, tm = theta.copy(), theta.copy()
            tp[i, j] += h
            tm[i, j] -= h
            fd[i, j] = (model.risk(tp, data.X, data.Y, W) - model.risk(tm, data.X, data.Y, W)) / (2 * h)
    assert _rel(fd, g) < 1e-6
    # N-rescaled raw gradient (+ lam theta) is the mean-field force
    assert _rel(model.gradient(theta, data.X, data.Y, W).theta, N * g + model.lam * theta) < 1e-12
    if W is not None:
        fdW = np.zeros_like(W)
        for i in np.ndindex(W.shape):
            Wp, Wm = W.copy(), W.copy()
            Wp[i] += h
            Wm[i] -= h
            fdW[i] = (model.risk(theta, data.X, data.Y, Wp) - model.risk(theta, data.X, data.Y, Wm)) / (2 * h)
        assert _rel(fdW, gW) < 1e-6


# ----------------------------------------------------------------------------- heavy ball forms
@pytest.mark.parametrize("model", _models(), ids=["two_layer", "fixed_bias", "nc"])
@pytest.mark.parametrize("beta", [math.inf, 40.0])
def test_shb_polyak_equals_velocity(model, data, beta):
    kw = dict(N=40, batch=12, beta=beta, seed=3)
    v = SHBTrainer(model, data, dt=0.05, gamma=2.0, form="velocity", **kw)
    alpha, mu = shb_polyak_from_velocity(0.05, 2.0)
    p = SHBTrainer(model, data, alpha=alpha, mu=mu, form="polyak", **kw)
    assert p.dt == pytest.approx(0.05, rel=1e-15) and p.gamma == pytest.approx(2.0, rel=1e-14)
    v.step(200)
    p.step(200)
    assert np.abs(v.theta - v.model.init_particles(40, np.random.default_rng(0))).max() > 0.1
    rel = _rel(v.theta, p.theta)
    assert rel <= 1e-12, rel
    if model.has_W:
        assert _rel(v.W, p.W) <= 1e-12
    assert _rel(v.velocity, p.velocity) <= 1e-9


def test_shb_forms_agree_with_schedule(data):
    model = _models()[0]
    xi = lambda t: 1.0 / (1.0 + t)  # noqa: E731
    kw = dict(N=30, dt=0.05, gamma=3.0, xi=xi, seed=1, r0=0.1 * np.ones((30, model.D)))
    v = SHBTrainer(model, data, form="velocity", **kw)
    p = SHBTrainer(model, data, form="polyak", **kw)
    v.step(150)
    p.step(150)
    assert _rel(v.theta, p.theta) <= 1e-12


def test_shb_matches_kinetic_solver_if_available(data):
    kinetic = pytest.importorskip("mfpde.dynamics.kinetic")
    if not hasattr(kinetic, "KineticSolver"):
        pytest.skip("KineticSolver not available")
    model = _models()[2]
    kw = dict(N=25, dt=0.04, gamma=2.5, batch=8, beta=30.0, seed=7, xi_W=0.5)
    a = SHBTrainer(model, data, form="velocity", **kw)
    b = kinetic.KineticSolver(model, data, integrator="shb", **kw)
    a.step(100)
    b.step(100)
    assert _rel(b.theta, a.theta) <= 1e-12
    assert _rel(b.W, a.W) <= 1e-12


def test_shb_resume_bitwise(data):
    model = _models()[2]
    for form in ("velocity", "polyak"):
        kw = dict(N=20, dt=0.05, gamma=2.0, batch=10, beta=50.0, seed=11, form=form)
        a = SHBTrainer(model, data, **kw)
        a.step(30)
        st = a.state_dict()
        a.step(20)
        b = SHBTrainer(model, data, **kw)
        b.load_state_dict(st)
        b.step(20)
        assert np.array_equal(a.theta, b.theta) and np.array_equal(a.W, b.W)


def test_shb_validation(data):
    model = _models()[0]
    with pytest.raises(ValueError, match="gamma\\*eps < 1"):
        SHBTrainer(model, data, N=5, dt=0.5, gamma=2.0)
    with pytest.raises(ValueError, match="either"):
        SHBTrainer(model, data, N=5, dt=0.1, gamma=2.0, alpha=0.01, mu=0.8)
    with pytest.raises(ValueError, match="form"):
        SHBTrainer(model, data, N=5, dt=0.1, gamma=2.0, form="nesterov")


# ----------------------------------------------------------------------------- raw units
@pytest.mark.parametrize("model", _models(), ids=["two_layer", "fixed_bias", "nc"])
def test_raw_framework_sgd_equals_mean_field(model, data):
    N, eta, wd, s = 30, 1.5, 2e-3, 0.03
    raw = RawTrainer(model, data, N=N, lr=eta, weight_decay=wd, noise_std=s, lr_W=0.2,
                     weight_decay_W=0.01, batch=8, seed=5)
    mf = make_trainer(model, data, N=N, method="noisy_sgd", lr=eta / N, weight_decay=N * wd,
                      weight_decay_W=0.01, beta=2 * (eta / N) / s**2, xi_W=0.2 / (eta / N),
                      batch=8, seed=5)
    via_raw = make_trainer(model, data, N=N, method="noisy_sgd", units="raw", lr=eta,
                           weight_decay=wd, weight_decay_W=0.01, noise_std=s, lr_W=0.2,
                           batch=8, seed=5)
    for tr in (raw, mf, via_raw):
        tr.step(150)
    assert _rel(mf.theta, raw.theta) <= 1e-12
    assert np.array_equal(mf.theta, via_raw.theta)
    assert isinstance(mf, LangevinSolver) and mf.model.lam == pytest.approx(N * wd)
    assert via_raw.hyper.eps == pytest.approx(eta / N) and via_raw.hyper.lam == pytest.approx(N * wd)
    if model.has_W:
        assert _rel(mf.W, raw.W) <= 1e-12
        assert np.array_equal(mf.W, via_raw.W)


@pytest.mark.parametrize("model", _models(), ids=["two_layer", "fixed_bias", "nc"])
def test_raw_framework_momentum_equals_shb(model, data):
    N, alpha_raw, mu, s = 40, 0.1, 0.9, 0.002
    raw = RawTrainer(model, data, N=N, lr=alpha_raw, momentum=mu, noise_std=s, batch=8, seed=2)
    shb = make_trainer(model, data, N=N, method="shb", units="raw", lr=alpha_raw, momentum=mu,
                       noise_std=s, batch=8, seed=2, weight_decay=0.0,
                       weight_decay_W=0.0)
    pol = make_trainer(model, data, N=N, method="shb_polyak", units="raw", lr=alpha_raw,
                       momentum=mu, noise_std=s, batch=8, seed=2, weight_decay=0.0,
                       weight_decay_W=0.0)
    eps, gamma = shb_from_raw(alpha_raw, mu, N)
    assert shb.dt == pytest.approx(eps) and shb.gamma == pytest.approx(gamma)
    for tr in (raw, shb, pol):
        tr.step(200)
    assert _rel(shb.theta, raw.theta) <= 1e-12
    assert _rel(shb.theta, pol.theta) <= 1e-12
    if model.has_W:
        assert _rel(shb.W, raw.W) <= 1e-12


def test_make_trainer_units_identical_iterates(data):
    model = _models()[0]
    N = 64
    a = make_trainer(model, data, N=N, method="sgd", units="raw", lr=3.2, batch=6, seed=9)
    b = make_trainer(model, data, N=N, method="sgd", lr=3.2 / N, batch=6, seed=9)
    a.step(100)
    b.step(100)
    assert np.array_equal(a.theta, b.theta)
    c = make_trainer(model, data, N=N, method="shb", units="raw", lr=0.064, momentum=0.9, seed=9)
    d = make_trainer(model, data, N=N, method="shb", lr=math.sqrt(0.064 / N), momentum=0.9, seed=9)
    c.step(50)
    d.step(50)
    assert _rel(c.theta, d.theta) < 1e-13


def test_make_trainer_validation(data):
    model = _models()[0]
    with pytest.raises(ValueError, match="full batch"):
        make_trainer(model, data, N=4, method="gd", lr=0.1, batch=4)
    with pytest.raises(ValueError, match="batch"):
        make_trainer(model, data, N=4, method="sgd", lr=0.1)
    with pytest.raises(ValueError, match="beta"):
        make_trainer(model, data, N=4, method="noisy_sgd", lr=0.1)
    with pytest.raises(ValueError, match="noiseless"):
        make_trainer(model, data, N=4, method="gd", lr=0.1, beta=10.0)
    with pytest.raises(ValueError, match="unknown method"):
        make_trainer(model, data, N=4, method="adam", lr=0.1)
    with pytest.raises(ValueError, match="gamma or momentum"):
        make_trainer(model, data, N=4, method="shb", lr=0.1)
    with pytest.raises(ValueError, match="raw"):
        make_trainer(model, data, N=4, method="noisy_sgd", units="raw", lr=0.1, beta=3.0)


@pytest.mark.parametrize("method,kw", [("sgd", {"batch": 8}), ("shb", {"gamma": 2.0}),
                                       ("shb_polyak", {"gamma": 2.0})])
def test_frozen_W(data, method, kw):
    model = _models()[2]
    tr = make_trainer(model, data, N=20, method=method, lr=0.05, train_W=False, seed=1, **kw)
    W0 = tr.W.copy()
    th0 = tr.theta.copy()
    tr.step(20)
    assert np.array_equal(tr.W, W0) and not np.array_equal(tr.theta, th0)


def test_trainers_are_drivers(data):
    """Engine protocol: ``fields()`` views (Polyak form: the derived velocity), ``t_end``
    accepted and ignored, state round-trips."""
    from mfpde.engine.protocol import check_driver
    nc = make_model("nc", d=4, q=1, p=2)
    v = SHBTrainer(nc, data, N=10, dt=0.05, gamma=2.0, seed=1)
    p = SHBTrainer(nc, data, N=10, dt=0.05, gamma=2.0, seed=1, form="polyak")
    raw = RawTrainer(_models()[0], data, N=10, lr=0.5, momentum=0.5)
    for tr in (v, p, raw):
        check_driver(tr)
        tr.step(3, t_end=0.0)
        assert tr.k == 3 and tr.t == pytest.approx(3 * tr.dt)
        assert tr.fields()["theta"] is tr.theta
    fv, fp = v.fields(), p.fields()
    assert set(fv) == {"theta", "r", "W", "r_W"} and set(fp) == {"theta", "r", "W"}
    assert fv["r"] is v.r and fv["W"] is v.W and fv["r_W"] is v.r_W
    assert np.array_equal(fp["r"], p.velocity)
    assert set(raw.fields()) == {"theta"}


def test_make_trainer_takes_dt(data):
    """The configured step is ``dt`` in mean-field units (``lr`` its other name there; the
    framework learning rate in raw units); the rules come from ``mfpde.rules``."""
    from mfpde import rules
    model = _models()[0]
    a = make_trainer(model, data, N=12, method="sgd", dt=0.05, batch=6, seed=2)
    b = make_trainer(model, data, N=12, method="sgd", lr=0.05, batch=6, seed=2)
    assert a.dt == b.dt == 0.05
    a.step(5)
    b.step(5)
    assert np.array_equal(a.theta, b.theta)
    with pytest.raises(ValueError, match="not both"):
        make_trainer(model, data, N=12, method="gd", dt=0.05, lr=0.05)
    with pytest.raises(ValueError, match="lr"):
        make_trainer(model, data, N=12, method="sgd", units="raw", dt=0.05, batch=6)
    with pytest.raises(ValueError, match="dt"):
        make_trainer(model, data, N=12, method="gd")
    from mfpde.dynamics.sgd import METHODS
    assert METHODS is rules.METHODS
