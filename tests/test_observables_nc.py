"""Tests of the neural-collapse observables (mfpde.observables_nc) against the library functions
they wrap (mfpde.metrics.stationarity, mfpde.metrics.collapse)."""

import math

import numpy as np
import pytest

from mfpde.data import well_separated
from mfpde.dynamics.langevin import LangevinSolver
from mfpde.engine import Controller, MemorySink, SeriesTracker, every
from mfpde.metrics import collapse as C
from mfpde.metrics import stationarity as S
from mfpde.models import make_model
from mfpde.observables import Observers, available
from mfpde.observables_nc import MAY_BE_NAN
from mfpde.two_stage import NanTolerantSeries, driver_view, truncated

NC_NAMES = ("eps_S", "eps_S_free", "r12", "r6", "E2", "E2_risk_part", "E2_bound", "nc1_bound",
            "nc1_bound_applicable", "lemma45_frozen", "lemma45_trained", "nb_bound", "train_error",
            "test_error", "test_nc1")


def _state(seed=0, beta=20.0, model=None, steps=0):
    data = well_separated(q=3, m=4, d=5, seed=seed)
    test = well_separated(q=3, m=6, d=5, seed=seed + 100)
    if model is None:
        model = make_model("nc", d=5, q=3, p=4, Gamma=2.0, lam=1 / beta, lam_W=1 / beta)
    s = LangevinSolver(model, data, N=300, dt=0.05, beta=beta, seed=seed)
    s.step(steps)
    return model, data, test, s


def test_every_nc_observable_is_registered():
    names = available()
    for n in NC_NAMES:
        assert n in names
    assert MAY_BE_NAN <= set(names)


def test_values_equal_the_library_functions():
    beta = 20.0
    model, data, test, s = _state(steps=40)
    obs = Observers(list(NC_NAMES) + ["nc1", "nb", "lemma45"], model, data, test=test, beta=beta)
    v = obs(driver_view(s))
    snap = S.nc_snapshot(model, s.theta, data.X, data.Y, s.W)
    G, lam = model.Gamma, model.lam
    assert v["r12"] == pytest.approx(S.r12(snap.H, snap.K, s.W, data.Y, G, lam), rel=1e-12)
    assert v["r6"] == pytest.approx(S.r6(snap.H, snap.K, s.W, data.Y, G, lam), rel=1e-12)
    e2 = S.e2(snap.H, s.W, data.Y, G)
    assert v["E2"] == pytest.approx(e2, rel=1e-12)
    b = S.e2_bound_measured(snap.H, snap.K, s.W, data.Y, G, lam)
    assert v["E2_risk_part"] == pytest.approx(b["risk_part"], rel=1e-12)
    assert v["E2_bound"] == pytest.approx(b["bound"], rel=1e-12)
    bound, ok = S.nc1_bound(e2, s.W, G, data.labels)
    assert v["nc1_bound_applicable"] == float(ok)
    if ok:
        assert v["nc1_bound"] == pytest.approx(bound) and v["nc1"] <= v["nc1_bound"]
    else:
        assert math.isnan(v["nc1_bound"])
    assert v["lemma45_frozen"] == pytest.approx(S.lemma45_frozen(snap.EaaT, snap.GHt, lam, beta))
    assert v["lemma45_trained"] == pytest.approx(v["lemma45"], rel=1e-12)
    assert v["nb_bound"] == pytest.approx(S.nb_lower_bound(s.W @ s.W.T, beta, model.lam_W))
    assert v["nb"] == pytest.approx(C.balancedness(s.theta[:, :4], s.W))
    F = model.forward(s.theta, test.X, s.W)
    assert v["test_error"] == C.balanced_error(F, test.labels)
    assert v["train_error"] == C.balanced_error(model.forward(s.theta, data.X, s.W), data.labels)
    assert v["test_nc1"] == pytest.approx(C.nc1(model.features(s.theta, test.X), test.labels))
    g = model.gradient(s.theta, data.X, data.Y, s.W)
    assert v["eps_S_free"] == pytest.approx(math.sqrt(np.mean(np.sum(g.theta**2, 1))), rel=1e-12)
    gap = S.stationarity_gap(model, s.theta, data.X, data.Y, s.W, beta)
    assert v["eps_S"] == pytest.approx(gap.eps_S, rel=1e-12)


def test_noiseless_eps_S_is_entropy_free_and_nb_bound_zero():
    model = make_model("nc", d=5, q=3, p=4, Gamma=2.0, lam=0.01, lam_W=0.01)
    model, data, test, s = _state(model=model, beta=math.inf, steps=10)
    v = Observers(["eps_S", "eps_S_free", "nb_bound"], model, data, beta=math.inf)(driver_view(s))
    assert v["eps_S"] == pytest.approx(v["eps_S_free"], rel=1e-12)
    assert v["nb_bound"] == 0.0


def test_nc1_bound_nan_where_not_applicable_and_recorded_over_a_run():
    model, data, test, s = _state(steps=0)
    obs = Observers(["nc1", "nc1_bound", "nc1_bound_applicable"], model, data, beta=20.0)
    v = obs(driver_view(s))
    assert v["nc1_bound_applicable"] == 0.0 and math.isnan(v["nc1_bound"])  # at initialisation
    sink = MemorySink()
    Controller(driver_view(s), [NanTolerantSeries(obs, sink, every(steps=20))], n_steps=400).run()
    a = sink.arrays()
    ok = a["nc1_bound_applicable"] > 0.5
    assert ok.any() and not ok.all()
    assert np.all(a["nc1"][ok] <= a["nc1_bound"][ok])
    assert np.all(np.isnan(a["nc1_bound"][~ok]))
    # the engine's tracker records the NaN of a quantity registered with may_be_nan, and still
    # stops on the NaN of any other quantity
    assert obs.may_be_nan == {"nc1_bound"}
    s2 = _state(steps=0)[3]
    sink2 = MemorySink()
    Controller(driver_view(s2), [SeriesTracker(obs, sink2, every(steps=20))], n_steps=20).run()
    assert np.isnan(sink2.arrays()["nc1_bound"][0])
    from mfpde.engine import NumericalError
    with pytest.raises(NumericalError, match="nc1 = nan"):
        SeriesTracker.check_values({"nc1": float("nan"), "nc1_bound": float("nan")}, 0,
                                   obs.may_be_nan)


def test_truncated_readout_identity_observables_are_nan():
    base = make_model("nc", d=5, q=3, p=4, Gamma=2.0, lam=0.05, lam_W=0.05)
    model, data, test, s = _state(model=truncated(base, 1.0), steps=5)
    v = Observers(["r12", "r6", "E2_bound", "E2", "lemma45_frozen"], model, data,
                  beta=20.0)(driver_view(s))
    assert math.isnan(v["r12"]) and math.isnan(v["r6"]) and math.isnan(v["E2_bound"])
    assert math.isfinite(v["E2"]) and math.isfinite(v["lemma45_frozen"])


def test_observables_need_the_nc_model_and_a_test_set():
    data = well_separated(q=3, m=4, d=5, seed=0)
    two = make_model("two_layer", d=5, q=3)
    with pytest.raises(ValueError, match="W"):
        Observers(["r12"], two, data)
    nc = make_model("nc", d=5, q=3, p=4)
    s = LangevinSolver(nc, data, N=10, dt=0.1)
    with pytest.raises(ValueError, match="held-out"):
        Observers(["test_error"], nc, data).check(driver_view(s))
