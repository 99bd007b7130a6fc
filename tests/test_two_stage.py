"""Tests of mfpde.two_stage (the truncated read-out, the Stage-1 Gibbs fixed point, staged runs,
the proposed [[stages]] configuration) and of mfpde.engine.averages.TimeAverage
(theory: models.md §2, dynamics.md §1.3, §7; validation.md §K6, §V6, §V9)."""

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from mfpde.data import well_separated
from mfpde.dynamics.langevin import LangevinSolver
from mfpde.engine import Controller, every
from mfpde.engine.averages import TimeAverage
from mfpde.metrics import collapse as C
from mfpde.metrics import stationarity as S
from mfpde.models import make_model
from mfpde.two_stage import (Stage, TruncatedNC, _ALaw, driver_view, run_from_config, run_stages,
                             stage1_gibbs, stages_from_config, tau_R, tau_R_prime, tau_R_second,
                             truncated, two_stage)

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# tau_R
# --------------------------------------------------------------------------------------------
def test_tau_R_shape_and_derivatives():
    R = 0.7
    z = np.linspace(-3, 3, 60001)
    t, tp, tpp = tau_R(z, R), tau_R_prime(z, R), tau_R_second(z, R)
    inner = np.abs(z) <= R
    assert np.array_equal(t[inner], z[inner])                    # identity on [-R, R]
    assert np.allclose(t[np.abs(z) >= 2 * R], np.sign(z[np.abs(z) >= 2 * R]) * 1.5 * R)
    assert np.allclose(tau_R(-z, R), -t)                          # odd
    assert tp.min() >= 0.0 and tp.max() <= 1.0
    h = z[1] - z[0]
    assert np.abs(np.gradient(t, h) - tp)[1:-1].max() < 1e-6
    assert np.abs(np.gradient(tp, h) - tpp)[1:-1].max() < 1e-5
    # C^2 at the joints R and 2R
    for x in (R, 2 * R):
        e = 1e-9
        assert abs(tau_R_prime(x - e, R) - tau_R_prime(x + e, R)) < 1e-6
        assert abs(tau_R_second(x - e, R) - tau_R_second(x + e, R)) < 1e-6
    assert np.array_equal(tau_R(z, math.inf), z)
    with pytest.raises(ValueError, match="radius"):
        tau_R(z, 0.0)


# --------------------------------------------------------------------------------------------
# the truncated read-out model
# --------------------------------------------------------------------------------------------
def _fd_problem(seed=0, R=0.7):
    rng = np.random.default_rng(seed)
    m = TruncatedNC(3, 2, p=3, R=R, Gamma=1.3, lam=0.07, lam_W=0.1, activation="tanh")
    theta = 1.2 * rng.standard_normal((7, m.D))                # a in all three regimes of tau_R
    X = rng.standard_normal((5, 3)) / 2
    Y = np.eye(2)[rng.integers(0, 2, 5)]
    W = rng.standard_normal((3, 2))
    return m, theta, X, Y, W


def test_truncated_gradient_against_finite_differences():
    m, theta, X, Y, W = _fd_problem()
    N = theta.shape[0]
    g = m.gradient(theta, X, Y, W, laplacian=True)

    def J(th, W=W):
        return m.risk(th, X, Y, W) + m.lam / (2 * N) * np.sum(th**2) + m.lam_W / 2 * np.sum(W**2)

    h = 1e-6
    fd = np.zeros_like(theta)
    for i in range(N):
        for j in range(m.D):
            e = np.zeros_like(theta)
            e[i, j] = h
            fd[i, j] = (J(theta + e) - J(theta - e)) / (2 * h) * N   # N-rescaled gradient
    assert np.abs(fd - g.theta).max() <= 1e-7 * np.abs(g.theta).max()
    fdW = np.zeros_like(W)
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            e = np.zeros_like(W)
            e[i, j] = h
            fdW[i, j] = (J(theta, W + e) - J(theta, W - e)) / (2 * h)
    assert np.abs(fdW - g.W).max() <= 1e-7 * np.abs(g.W).max()
    # potential: its gradient is the force, its Laplacian the model's
    pts = theta[:3].copy()
    P0 = m.potential(pts, theta, X, Y, W)
    gp, lap = np.zeros_like(pts), np.zeros(3)
    for j in range(m.D):
        e = np.zeros_like(pts)
        e[:, j] = h
        gp[:, j] = (m.potential(pts + e, theta, X, Y, W) - m.potential(pts - e, theta, X, Y, W)) / (2 * h)
        e[:, j] = 1e-4
        lap += (m.potential(pts + e, theta, X, Y, W) - 2 * P0
                + m.potential(pts - e, theta, X, Y, W)) / 1e-8
    assert np.abs(gp - g.theta[:3]).max() < 1e-8
    assert np.abs(lap - g.lap[:3]).max() < 1e-4 * max(1.0, np.abs(g.lap[:3]).max())


def test_truncated_features_and_infinite_radius():
    m, theta, X, Y, W = _fd_problem(1)
    tt = theta.copy()
    tt[:, :3] = tau_R(theta[:, :3], m.R)
    base = make_model("nc", d=3, q=2, p=3, Gamma=1.3, lam=0.07, lam_W=0.1)
    assert np.abs(m.features(theta, X) - base.features(tt, X)).max() < 1e-15
    assert m.regularized_risk(theta, X, Y, W) == pytest.approx(
        base.risk(tt, X, Y, W) + base.penalty(theta, W), rel=1e-14)
    mi = truncated(base, math.inf)
    gi, gb = mi.gradient(theta, X, Y, W, laplacian=True), base.gradient(theta, X, Y, W, laplacian=True)
    assert np.abs(gi.theta - gb.theta).max() < 1e-14 and np.abs(gi.lap - gb.lap).max() < 1e-12
    assert m.readout_truncation == m.R and m.describe()["readout_R"] == m.R


def test_langevin_step_with_the_truncated_model_is_euler_maruyama():
    """One solver step equals grad + Euler–Maruyama by hand (whatever path the driver takes)."""
    data = well_separated(q=3, m=4, d=5, seed=0)
    m = truncated(make_model("nc", d=5, q=3, p=4, Gamma=2.0, lam=0.05, lam_W=0.05), 0.8)
    s = LangevinSolver(m, data, N=300, dt=0.02, beta=20.0, seed=3)
    s2 = LangevinSolver(m, data, N=300, dt=0.02, beta=20.0, seed=3)
    g = m.gradient(s2.theta, data.X, data.Y, s2.W)
    noise = s2.rng.standard_normal(s2.theta.shape)
    s.step(1)
    ref = s2.theta - 0.02 * g.theta + math.sqrt(2 * 0.02 / 20.0) * noise
    assert np.abs(ref - s.theta).max() < 1e-14
    assert np.abs((s2.W - 0.02 * g.W) - s.W).max() < 1e-15


# --------------------------------------------------------------------------------------------
# Stage-1 Gibbs fixed point
# --------------------------------------------------------------------------------------------
def test_a_law_table_against_closed_form_and_quadrature():
    beta, lam = 20.0, 0.05
    V = np.linspace(-0.08, 0.08, 7)[:, None] * np.ones((1, 2))
    big, exact = _ALaw(beta, lam, 1e6), _ALaw(beta, lam, math.inf)
    lw = big.log_weight(V) - big.log_weight(np.zeros_like(V))
    # linear interpolation in v on 1025 nodes: relative error ~ 1e-6
    assert np.abs(lw - (exact.log_weight(V) - exact.log_weight(np.zeros_like(V)))).max() < 1e-5
    assert np.abs(big.mean_a(V) - exact.mean_a(V)).max() < 1e-5
    assert np.abs(big.var_a(V) - exact.var_a(V)).max() < 1e-5
    R = 1.0
    law = _ALaw(beta, lam, R)
    a = np.linspace(-60, 60, 400_001)
    for v in (-0.07, 0.0, 0.03):
        w = np.exp(-beta * (v * tau_R(a, R) + 0.5 * lam * a**2) + 0.0)
        ref = np.sum(tau_R(a, R) * w) / np.sum(w)
        assert law.mean_tau(np.array([[v]]))[0, 0] == pytest.approx(ref, abs=1e-5)


def test_stage1_gibbs_fixed_point_is_self_consistent():
    data = well_separated(q=3, m=3, d=4, seed=2)
    beta = 20.0
    model = make_model("nc", d=4, q=3, p=3, Gamma=2.0, lam=1 / beta, lam_W=1 / beta)
    W = model.init_W(np.random.default_rng(0))
    g = stage1_gibbs(model, data, W, beta, n_samples=20_000, batches=4, seed=1)
    assert g.residual < 1e-10 and g.iterations < 60
    n = data.X.shape[0]
    Z = model.Gamma * g.H @ W - data.Y
    assert np.abs(g.G - model.Gamma / n * Z @ W.T).max() < 1e-9 * np.abs(g.G).max()
    assert np.abs(g.H + g.K @ g.G / model.lam).max() < 1e-12     # H = -G K / lam (untruncated)
    assert g.risk == pytest.approx(np.sum(Z**2) / (2 * n), rel=1e-9)
    assert 0 < g.ess <= g.n_samples and 0 < g.H_rel_se < 0.05
    # Lemma 4.5, W frozen, holds exactly for the Gibbs form
    E = g.G.T @ g.K @ g.G / model.lam**2 + np.eye(3) / (beta * model.lam)
    assert S.lemma45_frozen(E, g.G.T @ g.H, model.lam, beta) < 1e-12
    U = np.random.default_rng(3).standard_normal((5, 4))
    assert np.allclose(g.a_mean(U), -np.tanh(U @ data.X.T) @ g.G / model.lam)
    assert np.allclose(g.a_var(U), 1 / (beta * model.lam))
    gt = stage1_gibbs(truncated(model, 0.5), data, W, beta, n_samples=20_000, seed=1)
    assert gt.R == 0.5 and gt.residual < 1e-10
    assert np.all(gt.a_var(U) < 1 / (beta * model.lam) + 1e-9)
    with pytest.raises(ValueError, match="finite beta"):
        stage1_gibbs(model, data, W, math.inf)


# --------------------------------------------------------------------------------------------
# staged runs
# --------------------------------------------------------------------------------------------
def test_run_stages_continuity_frozen_W_and_series():
    data = well_separated(q=3, m=3, d=4, seed=4)
    model = make_model("nc", d=4, q=3, p=4, Gamma=1.0, lam=0.05, lam_W=0.05)
    stages = [Stage("s1", 20, train_W=False), Stage("s2", 30, train_W=True, dt=0.01)]
    run = run_stages(model, data, stages, N=64, dt=0.02, beta=50.0, seed=7,
                     observe=("loss", "nc1", "nc1_bound"), every=10)
    s1, s2 = run["s1"].solver, run["s2"].solver
    W0 = LangevinSolver(model, data, N=64, dt=0.02, seed=np.random.SeedSequence(7, spawn_key=(0,))).W
    assert np.array_equal(s1.W, W0)                               # frozen in stage 1
    assert not np.array_equal(s2.W, W0)
    ser = run.series()
    assert list(ser["step"]) == [0, 10, 20, 20, 30, 40, 50]
    assert np.allclose(ser["t"], [0, 0.2, 0.4, 0.4, 0.5, 0.6, 0.7])
    assert list(ser["stage"]) == [0, 0, 0, 1, 1, 1, 1]
    assert ser["loss"][2] == ser["loss"][3]                       # stage 2 starts at stage 1's end
    again = run_stages(model, data, stages, N=64, dt=0.02, beta=50.0, seed=7)
    assert np.array_equal(again.theta, run.theta) and np.array_equal(again.W, run.W)
    with pytest.raises(ValueError, match="distinct"):
        run_stages(model, data, [Stage("a", 1), Stage("a", 1)], N=8, dt=0.1)


def test_two_stage_uses_the_truncated_readout_and_the_gibbs_reference():
    data = well_separated(q=3, m=3, d=4, seed=5)
    beta = 20.0
    model = make_model("nc", d=4, q=3, p=3, Gamma=1.0, lam=1 / beta, lam_W=1 / beta,
                       activation="sigmoid")
    run = two_stage(model, data, N=64, dt=0.05, beta=beta, stage1_steps=10, stage2_steps=10,
                    R=2.0, gibbs=dict(n_samples=4000, batches=2))
    assert isinstance(run["stage1"].solver.model, TruncatedNC)
    assert isinstance(run["stage2"].solver.model, TruncatedNC)
    assert run.gibbs is not None and run.gibbs.R == 2.0
    assert np.array_equal(run.gibbs.W, run["stage1"].solver.W)
    run2 = two_stage(model, data, N=64, dt=0.05, beta=beta, stage1_steps=5, stage2_steps=5,
                     R=2.0, stage2_truncated=False)
    assert type(run2["stage2"].solver.model).__name__ == "NCThreeLayer"


def test_stages_from_config_and_errors():
    st = stages_from_config([{"name": "a", "steps": 5, "train_W": False},
                             {"t_end": 1.0, "dt": 0.25, "beta": "inf", "batch": 0}], dt=0.1)
    assert st[0] == Stage("a", 5, train_W=False)
    assert st[1].steps == 4 and st[1].beta == math.inf and st[1].name == "stage2"
    with pytest.raises(ValueError, match=r"stages\[0\]: unknown key"):
        stages_from_config([{"steps": 1, "stepz": 2}])
    with pytest.raises(ValueError, match=r"stages\[0\]: give exactly one of steps and t_end"):
        stages_from_config([{"name": "x"}])
    with pytest.raises(ValueError, match=r"stages\[1\].train_W"):
        stages_from_config([{"steps": 1}, {"steps": 1, "train_W": "no"}])
    with pytest.raises(ValueError, match="non-empty"):
        stages_from_config([])


@pytest.mark.parametrize("name", ["example_two_stage.toml", "example_digits.toml"])
def test_bundled_stage_examples_run(name):
    raw = tomllib.loads((ROOT / "validation" / name).read_text())
    raw["dynamics"]["N"] = 64
    raw["observe"]["every"] = 2
    run = run_from_config(raw, scale_steps=0.004)
    ser = run.series()
    assert set(raw["observe"]["quantities"]) <= set(ser)
    assert run.test is not None or name == "example_digits.toml"
    if name == "example_two_stage.toml":
        assert isinstance(run.stages[0].solver.model, TruncatedNC)
        assert not run.stages[0].stage.train_W and run.stages[1].stage.train_W
    else:
        assert not run.stages[0].stage.train_W and not run.stages[1].stage.train_W
        assert math.isinf(run.stages[0].solver.beta)


def test_run_from_config_with_the_gibbs_reference():
    raw = {"model": {"kind": "nc", "p": 3, "Gamma": 2.0, "lam": 0.05, "lam_W": 0.05,
                     "readout_R": 1.5},
           "data": {"kind": "well_separated", "q": 3, "m": 3, "d": 4},
           "dynamics": {"N": 64, "dt": 0.02, "beta": 20.0, "seed": 1},
           "stages": [{"name": "s1", "steps": 10, "train_W": False}, {"steps": 5}],
           "observe": {"every": 5, "quantities": ["loss", "nc1_bound"]},
           "gibbs": {"n_samples": 4000, "batches": 2}}
    run = run_from_config(raw)
    assert run.gibbs.R == 1.5 and run.gibbs.residual < 1e-9
    assert np.array_equal(run.gibbs.W, run["s1"].solver.W)
    raw["stages"][0]["train_W"] = True
    with pytest.raises(ValueError, match="train_W = false"):
        run_from_config(raw)


# --------------------------------------------------------------------------------------------
# TimeAverage tracker
# --------------------------------------------------------------------------------------------
def test_time_average_equals_the_mean_of_snapshots_in_the_window():
    data = well_separated(q=3, m=3, d=4, seed=6)
    model = make_model("nc", d=4, q=3, p=4, Gamma=2.0, lam=0.05, lam_W=0.05)
    ta = TimeAverage(model, data, every(steps=5), start=0.3, stop=0.8, kernel=True)
    s = LangevinSolver(model, data, N=100, dt=0.02, beta=20.0, seed=9)
    Controller(driver_view(s), [ta], n_steps=50).run()
    ref = LangevinSolver(model, data, N=100, dt=0.02, beta=20.0, seed=9)
    snaps = []
    for k in range(1, 51):
        ref.step(1)
        if k % 5 == 0 and 0.3 - 1e-12 <= ref.t <= 0.8 + 1e-12:
            snaps.append(S.nc_snapshot(model, ref.theta, data.X, data.Y, ref.W))
    a = ta.averages()
    assert a["count"] == len(snaps) == 6                          # t = 0.3, 0.4, ..., 0.8
    assert a["t_first"] == pytest.approx(0.3) and a["t_last"] == pytest.approx(0.8)
    for key in ("EaaT", "WWT", "GHt", "H", "K"):
        m = np.mean([getattr(x, key) for x in snaps], axis=0)
        assert np.abs(a[key] - m).max() < 1e-12 * max(1.0, np.abs(m).max())
    r12 = np.mean([np.linalg.norm(x.H + x.KG / 0.05) / np.linalg.norm(x.H) for x in snaps])
    assert a["r12_mean"] == pytest.approx(r12, rel=1e-12)
    assert ta.lemma45_trained(20.0) == pytest.approx(
        S.lemma45_trained(a["EaaT"], a["WWT"], 0.05, 0.05, 20.0, relative=True))
    assert ta.lemma45_frozen(20.0) == pytest.approx(
        S.lemma45_frozen(a["EaaT"], a["GHt"], 0.05, 20.0, relative=True))
    assert ta.nb() == pytest.approx(C.balancedness_moments(a["EaaT"], a["WWT"]))
    assert ta.nb_bound(20.0) == pytest.approx(S.nb_lower_bound(a["WWT"], 20.0, 0.05, q=3))
    empty = TimeAverage(model, data, every(steps=5), start=5.0)
    with pytest.raises(ValueError, match="no sample"):
        empty.averages()


def test_staged_driver_switches_W_at_the_boundary_and_resumes_bitwise(tmp_path):
    """``[[dynamics.stages]]`` through mfpde run: W frozen in stage 1, trained in stage 2; a run
    interrupted inside stage 1 resumes bitwise into stage 2."""
    import h5py

    from mfpde.cli import main
    cfg = tmp_path / "staged.toml"
    cfg.write_text('''
[model]
kind = "nc"
p = 4
Gamma = 2.0
lam = 0.01
lam_W = 0.01
readout_R = 5.0
[data]
kind = "well_separated"
q = 3
m = 4
d = 5
[dynamics]
N = 200
dt = 0.05
beta = 100.0
seed = 3
[[dynamics.stages]]
name = "one"
steps = 30
train_W = false
[[dynamics.stages]]
name = "two"
steps = 30
[observe]
every = 10
quantities = ["loss", "nc1"]
snapshot_every = 10
[output]
checkpoint_every = 10
''')
    a = tmp_path / "a.h5"
    assert main(["run", str(cfg), "-o", str(a), "-q"]) == 0
    with h5py.File(a, "r") as f:
        W, steps = f["snapshots/W"][()], f["snapshots/step"][()]
    assert list(steps) == [0, 10, 20, 30, 40, 50, 60]
    assert all(np.array_equal(W[0], W[i]) for i in range(4))          # stage 1: W frozen
    assert not np.array_equal(W[3], W[4])                             # stage 2: trained
    # dynamics.steps of a run in stages defaults to their sum; fewer stop inside a stage, and a
    # resume with the default continues into stage 2, bitwise as the uninterrupted run
    b = tmp_path / "b.h5"
    assert main(["run", str(cfg), "-o", str(b), "-q", "--set", "dynamics.steps=20"]) == 0
    with h5py.File(b, "r") as f:
        assert f["snapshots/step"][-1] == 20
        assert all(np.array_equal(f["snapshots/W"][0], w) for w in f["snapshots/W"][()])
    assert main(["run", str(cfg), "-o", str(b), "-q", "--resume"]) == 0
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        for k in ("series/loss", "snapshots/theta", "snapshots/W", "checkpoint/theta"):
            assert np.array_equal(fa[k][()], fb[k][()]), k
    # a checkpoint inside stage 1 continues bitwise through the switch to stage 2
    from mfpde.build import build
    from mfpde.config import load_config
    c = load_config(cfg)
    drv = build(c).driver
    drv.step(15)
    mid = drv.state_dict()
    drv2 = build(c).driver
    drv2.load_state_dict(mid)
    drv2.step(45)
    drv.step(45)
    assert np.array_equal(drv.theta, drv2.theta) and np.array_equal(drv.W, drv2.W)
    with h5py.File(a, "r") as f:
        assert np.array_equal(f["checkpoint/theta"][()], drv.theta)
