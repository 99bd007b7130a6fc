"""Pruning of mean-field networks (theory/sparse.md §5): exact links to dropout stability."""

import itertools

import numpy as np
import pytest

from mfpde.data import make_dataset
from mfpde.dynamics import LangevinSolver
from mfpde.models import make_model
from mfpde.sparse.linalg import obs_project
from mfpde.sparse.prune import (PRUNE_METHODS, dropout_loss, dropout_mean_enumerated,
                                dropout_mean_loss, first_layer_curvature, iterative_prune,
                                load_network,
                                prune_first_layer, prune_neurons, prune_path, prune_run, readout,
                                refit)

CONFIG = """[model]
kind = "two_layer"
activation = "tanh"
bias = false
output = "trainable"
lam = 0.0
init_scale_a = 1.0
init_scale_u = 1.0

[data]
kind = "teacher_student"
seed = 3
test_n = 0
n = 120
d = 4
k_star = 2
activation = "tanh"
noise = 0.0

[dynamics]
solver = "langevin"
N = {N}
dt = 0.1
steps = 200
beta = inf
batch = 0
seed = 0
"""


def nets(N=9, n=60, seed=0):
    """A two-layer (q = 2) and an NC (p = 4, q = 2) network with random particles and data."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    Y = rng.standard_normal((n, 2))
    out = []
    for model in (make_model("two_layer", d=3, q=2, activation="tanh"),
                  make_model("nc", d=3, q=2, p=4, activation="tanh", Gamma=1.7)):
        theta = model.init_particles(N, rng)
        W = model.init_W(rng)
        out.append((model, theta, W, X, Y))
    return out


@pytest.mark.parametrize("i", [0, 1])
def test_readout_is_the_network(i):
    model, theta, W, X, Y = nets()[i]
    R = readout(model, theta, X, Y, W)
    assert np.max(np.abs(R.scale * R.S @ R.E - model.forward(theta, X, W))) < 1e-14
    assert R.loss() == pytest.approx(model.risk(theta, X, Y, W), rel=1e-12)


@pytest.mark.parametrize("i", [0, 1])
def test_dropout_mean_closed_form(i):
    model, theta, W, X, Y = nets(N=8)[i]
    for M in (1, 3, 5, 8):
        a = dropout_mean_loss(model, theta, X, Y, M, W)
        b = dropout_mean_enumerated(model, theta, X, Y, M, W)
        assert abs(a - b) < 1e-12 * b


@pytest.mark.parametrize("i", [0, 1])
def test_link_a_refit_below_plain_dropout(i):
    """(a) exact: for every method and M the refitted loss on the chosen J is <= L_M(θ_J)."""
    model, theta, W, X, Y = nets()[i]
    for method in PRUNE_METHODS:
        for M in (1, 4, 7):
            P = prune_neurons(model, theta, X, Y, M, W, method=method,
                              rng=np.random.default_rng(M))
            assert P.keep.size == M
            assert P.loss_refit <= P.loss_plain * (1 + 1e-12)
            assert P.loss_plain == pytest.approx(dropout_loss(model, theta, X, Y, P.keep, W))


@pytest.mark.parametrize("i", [0, 1])
def test_link_b_best_subset_below_random_mean(i):
    """(b) exact for best-subset selection: min_J refit(J) <= random-dropout mean, and the
    enumeration is the minimum over all subsets (below every other method)."""
    model, theta, W, X, Y = nets(N=8)[i]
    R = readout(model, theta, X, Y, W)
    for M in range(1, 9):
        P = prune_neurons(model, theta, X, Y, M, W, method="exact")
        assert P.loss_refit <= dropout_mean_enumerated(model, theta, X, Y, M, W) * (1 + 1e-12)
        brute = min(refit(R, list(J))[1] for J in itertools.combinations(range(8), M))
        assert P.loss_refit == pytest.approx(brute, rel=1e-12)
        for method in ("greedy_obs", "topk_obs", "magnitude"):
            assert P.loss_refit <= prune_neurons(model, theta, X, Y, M, W,
                                                 method=method).loss_refit * (1 + 1e-12)


@pytest.mark.parametrize("i", [0, 1])
def test_obs_prediction_is_exact_undamped(i):
    """N < n, undamped C: the OBS prediction sal(P) - ½gᵀC⁻¹g equals the actual change of the
    loss (f is quadratic in E and the OBS projection is the least-squares refit)."""
    model, theta, W, X, Y = nets()[i]
    for method in ("greedy_obs", "topk_obs", "magnitude", "random"):
        P = prune_neurons(model, theta, X, Y, 4, W, method=method, damping=None)
        assert P.delta == 0.0
        assert abs(P.predicted - P.actual) < 1e-10 * max(1.0, abs(P.actual))


@pytest.mark.parametrize("i", [0, 1])
def test_width_m_particles_compute_the_refit(i):
    model, theta, W, X, Y = nets()[i]
    R = readout(model, theta, X, Y, W)
    P = prune_neurons(model, theta, X, Y, 4, W)
    assert P.theta.shape == (4, model.D)
    f = model.forward(P.theta, X, P.W)
    assert np.max(np.abs(f - R.scale * R.S[:, P.keep] @ P.E_keep)) < 1e-12
    assert model.risk(P.theta, X, Y, P.W) == pytest.approx(P.loss_refit, rel=1e-10)
    # input weights are untouched
    assert np.array_equal(P.theta[:, model.pa:], theta[P.keep, model.pa:])


def test_prune_path_nested_and_consistent():
    model, theta, W, X, Y = nets(N=12)[0]
    path = prune_path(model, theta, X, Y, W)
    assert path["M"].tolist() == list(range(1, 13))
    assert np.all(np.diff(path["loss_refit"]) <= 1e-12)         # nested supports
    assert np.all(path["loss_refit"] <= path["loss_plain"] * (1 + 1e-12))
    for M in (2, 5, 9):
        P = prune_neurons(model, theta, X, Y, M, W, method="greedy_obs")
        assert sorted(path["order"][:M].tolist()) == P.keep.tolist()
        assert path["loss_refit"][M - 1] == pytest.approx(P.loss_refit, rel=1e-12)
    assert path["loss_refit"][-1] == pytest.approx(path["loss_full"] + path["actual"][-1])


def test_planted_teacher_recovered():
    """Teacher–student: a width-N network holding the k* teacher neurons (scaled by N/k*) among
    random ones; pruning to M = k* finds exactly the teacher (recall 1) with zero loss."""
    data = make_dataset("teacher_student", seed=2, n=200, d=6, k_star=3)
    model = make_model("two_layer", d=6, q=1, activation="tanh")
    N, ks = 40, 3
    rng = np.random.default_rng(0)
    theta = model.init_particles(N, rng)
    planted = np.array([5, 17, 31])
    theta[planted, 1:] = data.meta["u_star"]
    theta[planted, 0] = (N / ks) * data.meta["a_star"][:, 0]
    R = readout(model, theta, data.X, data.Y)
    E, _ = refit(R, np.arange(N))                  # fitted read-out of the full network
    theta[:, :1] = E
    for method in ("greedy_obs", "exact") if N <= 20 else ("greedy_obs",):
        P = prune_neurons(model, theta, data.X, data.Y, ks, method=method)
        assert P.keep.tolist() == planted.tolist()
        assert P.loss_refit < 1e-25


def test_first_layer_obc_and_global():
    model, theta, W, X, Y = nets(N=6, n=80)[0]
    res = prune_first_layer(model, theta, X, Y, 0.5, method="obc", damping=0.0)
    assert res.curvature == "layer"
    assert res.mask.sum(axis=1).tolist() == [2] * 6 and res.sparsity == pytest.approx(1 / 3)
    Xa = model.prepare_X(X)
    Hinv = np.linalg.inv(Xa.T @ Xa / Xa.shape[0])
    U0, U1 = theta[:, model.pa:], res.theta[:, model.pa:]
    for j in range(6):
        Q = np.flatnonzero(res.mask[j])
        assert np.max(np.abs(U1[j] - obs_project(U0[j], Hinv, Q))) < 1e-12
        assert np.all(U1[j, ~res.mask[j]] == 0.0)
    assert res.predicted == pytest.approx(res.layer_error, rel=1e-12)   # undamped
    assert np.array_equal(res.theta[:, :model.pa], theta[:, :model.pa])
    g = prune_first_layer(model, theta, X, Y, 0.5, method="global", damping=0.0)
    assert g.mask.sum() == 9 and g.sparsity == pytest.approx(0.5)
    # the OBS correction minimises each neuron's layer-wise error on its mask: at most the error
    # of zeroing the same weights
    H = Xa.T @ Xa / Xa.shape[0]
    dU = np.where(g.mask, 0.0, -U0)
    assert g.layer_error <= 0.5 * np.sum(dU * (dU @ H)) * (1 + 1e-12)
    mg = prune_first_layer(model, theta, X, Y, 0.5, method="magnitude")
    assert mg.mask.sum() == 9
    assert np.array_equal(mg.theta[:, model.pa:], np.where(mg.mask, U0, 0.0))


@pytest.mark.parametrize("i", [0, 1])
def test_output_curvature_is_gauss_newton(i):
    """H_j = J_jᵀJ_j/n with J_j = ∂f_N/∂u_j (central finite differences of the model's forward)."""
    model, theta, W, X, Y = nets(N=5, n=30)[i]
    Hs = first_layer_curvature(model, theta, X, W, "output")
    pa, d_in, h = model.pa, model.d_in, 1e-6
    for j in range(5):
        J = np.zeros((X.shape[0] * model.q, d_in))
        for c in range(d_in):
            tp, tm = theta.copy(), theta.copy()
            tp[j, pa + c] += h
            tm[j, pa + c] -= h
            J[:, c] = ((model.forward(tp, X, W) - model.forward(tm, X, W)) / (2 * h)).ravel()
        ref = J.T @ J / X.shape[0]
        assert np.max(np.abs(Hs[j] - ref)) < 1e-7 * np.max(np.abs(ref))
    gl = prune_first_layer(model, theta, X, Y, 0.4, W, method="global", curvature="output")
    assert gl.curvature == "output" and gl.mask.sum() == round(0.6 * 5 * d_in)


def _trained(N=30, steps=150):
    data = make_dataset("teacher_student", seed=3, n=120, d=4, k_star=2)
    model = make_model("two_layer", d=4, q=1, activation="tanh")
    s = LangevinSolver(model, data, N=N, dt=0.1, seed=0)
    s.step(steps)
    return model, np.array(s.theta), data


def test_iterative_prune():
    model, theta, data = _trained()
    val = make_dataset("teacher_student", seed=3, n=120, d=4, k_star=2, online=True) \
        .test_set(200, seed=5)
    out = iterative_prune(model, theta, data, 6, rounds=3, sgd_steps=10, dt=0.1, val=val)
    assert [h["round"] for h in out.history] == [0, 1, 2, 3]
    one_shot = prune_neurons(model, theta, data.X, data.Y, 6)
    assert out.history[0]["train_loss"] == pytest.approx(one_shot.loss_refit, rel=1e-12)
    assert out.best.loss_refit == pytest.approx(out.history[out.best_round]["train_loss"])
    assert min(h["val_loss"] for h in out.history) == pytest.approx(
        model.risk(out.best.theta, val.X, val.Y))
    assert out.best.theta.shape == (6, model.D)


def test_prune_stored_run(tmp_path):
    """load_network / prune_run on a run file of the store schema (mfpde.load)."""
    from mfpde.store import RunStore
    model, theta, data = _trained()
    path = tmp_path / "run.h5"
    with RunStore.create(path, config_text=CONFIG.format(N=30), seed=0) as st:
        st.init_snapshots(np.arange(30), model.D, None)
        st.append_snapshot(150, 15.0, theta)
        st.set_status("complete")
    m2, th2, W2, data2, run = load_network(path)
    assert np.array_equal(th2, theta) and W2 is None and m2.D == model.D
    assert np.array_equal(data2.X, data.X)
    P = prune_run(path, 5)
    Q = prune_neurons(model, theta, data.X, data.Y, 5)
    assert P.keep.tolist() == Q.keep.tolist() and P.loss_refit == Q.loss_refit
    it = prune_run(path, 5, iterate=True, rounds=1, sgd_steps=5, dt=0.1)
    assert len(it.history) == 2
    # a subsampled snapshot is refused
    p2 = tmp_path / "sub.h5"
    with RunStore.create(p2, config_text=CONFIG.format(N=30), seed=0) as st:
        st.init_snapshots(np.arange(10), model.D, None)
        st.append_snapshot(150, 15.0, theta[:10])
    with pytest.raises(ValueError, match="snapshot_particles"):
        load_network(p2)


def test_fixed_output_refused():
    model = make_model("two_layer", d=3, q=1, output="fixed")
    theta = model.init_particles(5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="fixed"):
        prune_neurons(model, theta, np.ones((4, 3)), np.ones((4, 1)), 2)
