"""Tests of mfpde.data (theory: models.md §5)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from mfpde import data as D
from mfpde.data import Dataset, OnlineSampler

HAVE_SKLEARN = importlib.util.find_spec("sklearn") is not None
EXAMPLE_NC = Path(__file__).resolve().parents[1] / "data" / "example_nc.npz"


def _check_layout(ds: Dataset):
    for a in (ds.X, ds.Y):
        assert a.dtype == np.float64
        assert a.flags.c_contiguous
        assert a.ndim == 2
    assert ds.X.shape == (ds.n, ds.d)
    assert ds.Y.shape == (ds.n, ds.q)
    if ds.labels is not None:
        assert ds.labels.shape == (ds.n,)
        assert ds.labels.dtype == np.int64


def _max_norm(ds):
    return float(np.max(np.linalg.norm(ds.X, axis=1)))


def _check_sorted_one_hot(ds, q, m):
    assert ds.q == q
    np.testing.assert_array_equal(ds.labels, np.repeat(np.arange(q), m))
    np.testing.assert_array_equal(ds.Y, np.kron(np.eye(q), np.ones((m, 1))))
    assert ds.is_sorted_by_class
    np.testing.assert_array_equal(ds.class_counts, np.full(q, m))


# ---------------------------------------------------------------------------------------------
# shapes, dtypes, norms, sorting
# ---------------------------------------------------------------------------------------------

SMALL = {
    "teacher_student": dict(n=50, d=4),
    "gaussian_mixture": dict(q=3, m=7, d=4),
    "mmn_gaussians": dict(n=50, d=6),
    "separable": dict(q=4, m=5, d=6, delta_b=0.1),
    "well_separated": dict(q=3, m=4, d=5),
    "linear_gaussian": dict(n=50, d=3),
}


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_layout_and_reproducible(kind):
    a = D.make_dataset(kind, seed=3, **SMALL[kind])
    b = D.make_dataset(kind, seed=3, **SMALL[kind])
    c = D.make_dataset(kind, seed=4, **SMALL[kind])
    _check_layout(a)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.Y, b.Y)
    assert not np.array_equal(a.X, c.X)


def test_shapes_of_generators():
    ts = D.teacher_student(n=20, d=7, k_star=2, q=3, seed=0)
    assert (ts.n, ts.d, ts.q) == (20, 7, 3) and ts.labels is None
    assert ts.meta["u_star"].shape == (2, 7) and ts.meta["a_star"].shape == (2, 3)
    np.testing.assert_allclose(np.linalg.norm(ts.meta["u_star"], axis=1), np.sqrt(7))
    mm = D.mmn_gaussians(n=30, d=5, seed=0)
    assert mm.q == 1 and set(np.unique(mm.Y)) <= {-1.0, 1.0}
    np.testing.assert_array_equal(mm.labels, (mm.Y[:, 0] > 0).astype(int))
    lg = D.linear_gaussian(n=10, d=4, seed=0)
    assert (lg.n, lg.d, lg.q) == (10, 4, 1)


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "erf", "softplus", "relu", "identity", "mmn_pl"])
def test_teacher_matches_formula(act):
    ds = D.teacher_student(n=40, d=3, k_star=3, activation=act, q=2, seed=1)
    u, a = ds.meta["u_star"], ds.meta["a_star"]
    sig = D._np_activation(act)
    np.testing.assert_allclose(ds.Y, sig(ds.X @ u.T) @ a / 3, rtol=1e-12, atol=1e-14)


def test_np_activation_values():
    z = np.array([-1.0, 0.0, 0.5, 1.0, 1.5, 3.0])
    np.testing.assert_allclose(D._np_activation("mmn_pl")(z), [-2.5, -2.5, -2.5, 2.5, 7.5, 7.5])
    np.testing.assert_allclose(D._np_activation("sigmoid")(z), (1 + np.tanh(z / 2)) / 2)
    np.testing.assert_allclose(D._np_activation("softplus")(np.array([0.0])), [np.log(2)])


def test_teacher_inputs():
    g = D.teacher_student(n=4000, d=20, seed=2)
    # x ~ N(0, I/d): E||x||^2 = 1; u*^T x ~ N(0, 1) exactly
    assert abs(np.mean(np.sum(g.X**2, axis=1)) - 1) < 0.02
    pre = g.X @ g.meta["u_star"].T
    assert abs(np.var(pre) - 1) < 0.06
    s = D.teacher_student(n=100, d=20, input="sphere", seed=2)
    np.testing.assert_allclose(np.linalg.norm(s.X, axis=1), 1.0)
    noisy = D.teacher_student(n=4000, d=5, noise=0.5, seed=2)
    clean = D.teacher_student(n=4000, d=5, noise=0.0, seed=2)
    np.testing.assert_array_equal(noisy.meta["u_star"], clean.meta["u_star"])
    resid = noisy.Y - np.tanh(noisy.X @ noisy.meta["u_star"].T) @ noisy.meta["a_star"] / 3
    assert abs(np.std(resid) - 0.5) < 0.03


def test_gaussian_mixture_sorted_one_hot():
    ds = D.gaussian_mixture(q=4, m=6, d=5, sep=2.0, std=0.0, seed=0)
    _check_sorted_one_hot(ds, 4, 6)
    means = ds.meta["means"]
    np.testing.assert_allclose(np.linalg.norm(means, axis=1), 2.0)
    np.testing.assert_allclose(ds.X, np.repeat(means, 6, axis=0))


@pytest.mark.parametrize("q,d", [(2, 1), (3, 2), (3, 3), (5, 8)])
def test_simplex_etf(q, d):
    V = D._simplex_etf(q, d)
    G = V @ V.T
    expect = np.full((q, q), -1.0 / (q - 1))
    np.fill_diagonal(expect, 1.0)
    np.testing.assert_allclose(G, expect, atol=1e-12)


def test_separable_margin_and_norm():
    q, m = 3, 200
    ds = D.separable(q=q, m=m, d=10, r0=0.6, delta_b=0.27, seed=5)
    _check_layout(ds)
    _check_sorted_one_hot(ds, q, m)
    assert _max_norm(ds) <= 1.0 + 1e-12
    tau = ds.meta["tau"]
    assert tau == pytest.approx(0.6 / 2 - 0.27) and tau > 0
    S = ds.X @ ds.meta["etf"].T  # û_k^T x with M = 1, shape (n, q)
    own = S[np.arange(ds.n), ds.labels]
    assert np.all(own >= tau)
    other = np.where(ds.Y > 0, -np.inf, S)
    assert np.all(other.max(axis=1) < -tau)


def test_well_separated_nc_data():
    ds = D.well_separated(q=3, m=4, d=5, seed=0)
    _check_layout(ds)
    _check_sorted_one_hot(ds, 3, 4)
    assert ds.d == 5 and _max_norm(ds) <= 1.0 + 1e-12
    extra = ds.X[:, -1]
    assert ds.meta["extra_coordinate"] == 4
    assert np.unique(extra).size == ds.n and np.all((extra >= 0.05) & (extra <= 0.1))
    S = ds.X @ ds.meta["etf"].T
    tau = ds.meta["tau"]
    assert tau > 0
    assert np.all(S[np.arange(ds.n), ds.labels] >= tau)
    assert np.all(np.where(ds.Y > 0, -np.inf, S).max(axis=1) < -tau)


def test_bundled_example_nc():
    ds = D.load_npz(EXAMPLE_NC)
    _check_layout(ds)
    _check_sorted_one_hot(ds, 3, 4)
    assert ds.d == 5 and _max_norm(ds) <= 1.0 + 1e-12
    assert np.unique(ds.X[:, -1]).size == ds.n
    assert np.all(ds.X[:, -1] > 0)
    assert ds.name == "example_nc"
    # regenerable from its seed: the same draws; the generator's floating-point path (norms and
    # rescalings in NumPy) may round differently by one unit in the last place between NumPy
    # releases, so the regenerated inputs agree to 2 ulp (the labels and targets exactly)
    ref = D.well_separated(q=3, m=4, d=5, delta_b=0.1, seed=0)
    ulp = np.spacing(np.maximum(np.abs(ds.X), np.abs(ref.X)))
    assert np.all(np.abs(ds.X - ref.X) <= 2 * ulp)
    np.testing.assert_array_equal(ds.Y, ref.Y)


# ---------------------------------------------------------------------------------------------
# Dataset utilities
# ---------------------------------------------------------------------------------------------


def _toy():
    X = np.arange(12.0).reshape(6, 2)
    labels = np.array([2, 0, 1, 0, 2, 1])
    return Dataset(X, D.one_hot(labels, 3), labels, "toy", {"a": 1})


def test_sorted_by_class_stable():
    ds = _toy().sorted_by_class()
    np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(ds.X[:, 0], [2, 6, 4, 10, 0, 8])  # original order within class
    np.testing.assert_array_equal(ds.Y, D.one_hot(ds.labels, 3))
    assert ds.meta == {"a": 1}


def test_one_hot_and_counts():
    Y = Dataset.one_hot([0, 2, 2], 3)
    np.testing.assert_array_equal(Y, [[1, 0, 0], [0, 0, 1], [0, 0, 1]])
    np.testing.assert_array_equal(_toy().class_counts, [2, 2, 2])
    sub = _toy().subset(np.array([1, 3]))
    np.testing.assert_array_equal(sub.class_counts, [2, 0, 0])  # length q even if classes absent
    with pytest.raises(ValueError, match="labels"):
        D.one_hot([0, 3], 3)


def test_subset_mask_and_index():
    ds = _toy()
    a = ds.subset(ds.labels == 0)
    b = ds.subset([1, 3])
    np.testing.assert_array_equal(a.X, b.X)
    _check_layout(a)
    with pytest.raises(ValueError, match="idx"):
        ds.subset([0, 6])


def test_split_stratified():
    ds = D.gaussian_mixture(q=3, m=10, d=2, seed=0)
    tr, te = ds.split(4, seed=1)
    np.testing.assert_array_equal(tr.class_counts, [4, 4, 4])
    np.testing.assert_array_equal(te.class_counts, [6, 6, 6])
    assert tr.is_sorted_by_class and te.is_sorted_by_class
    assert tr.meta["part"] == "train" and te.meta["part"] == "test"
    allx = np.vstack([tr.X, te.X])
    assert np.unique(allx, axis=0).shape[0] == ds.n  # a partition
    tr2, te2, itr, ite = ds.split(4, seed=1, return_indices=True)
    np.testing.assert_array_equal(tr.X, tr2.X)
    np.testing.assert_array_equal(ds.X[itr], tr.X)
    np.testing.assert_array_equal(ds.X[ite], te.X)
    trf, tef = ds.split(0.3, seed=1)
    np.testing.assert_array_equal(trf.class_counts, [3, 3, 3])
    reg_tr, reg_te = D.linear_gaussian(n=20, d=2, seed=0).split(0.25, seed=0)
    assert (reg_tr.n, reg_te.n) == (5, 15)
    with pytest.raises(ValueError, match="train"):
        ds.split(11)
    with pytest.raises(ValueError, match="train"):
        ds.split(1.5)


def test_extra_coordinate_and_normalized():
    ds = D.gaussian_mixture(q=2, m=50, d=3, sep=3.0, seed=0)
    nz = ds.normalized(0.5)
    assert _max_norm(nz) == pytest.approx(0.5)
    assert nz.meta["input_scale"] == pytest.approx(0.5 / _max_norm(ds))
    ex = nz.with_extra_coordinate(seed=1)
    assert ex.d == 4 and ex.meta["extra_coordinate"] == 3
    c = ex.X[:, -1]
    assert np.unique(c).size == ex.n and c.min() >= 0.05 and c.max() <= 0.1
    np.testing.assert_array_equal(ex.X[:, :3], nz.X)
    with pytest.raises(ValueError, match="low"):
        ds.with_extra_coordinate(low=0.0)
    with pytest.raises(ValueError, match="high"):
        ds.with_extra_coordinate(low=0.2, high=0.1)
    with pytest.raises(ValueError, match="max_norm"):
        ds.normalized(-1.0)


def test_construction_validation():
    X = np.zeros((3, 2))
    with pytest.raises(ValueError, match="same number of rows"):
        Dataset(X, np.zeros((4, 1)))
    with pytest.raises(ValueError, match="finite"):
        Dataset(np.array([[np.nan, 0.0]]), np.zeros((1, 1)))
    with pytest.raises(ValueError, match="finite"):
        Dataset(X, np.array([0.0, np.inf, 0.0]))
    with pytest.raises(ValueError, match="labels"):
        Dataset(X, np.zeros(3), labels=np.array([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        Dataset(X, np.zeros(3), labels=np.array([0, -1, 0]))
    with pytest.raises(ValueError, match="X must have shape"):
        Dataset(np.zeros(3), np.zeros(3))
    ds = Dataset(np.ones((3, 2), dtype=np.float32, order="F"), np.zeros(3))
    _check_layout(ds)
    assert ds.q == 1


def test_npz_round_trip(tmp_path):
    ds = D.separable(q=3, m=4, d=5, seed=1)
    ds.meta["note"] = "hello"
    ds.meta["npint"] = np.int64(3)
    path = ds.save_npz(tmp_path / "s.npz")
    back = D.load_npz(path)
    _check_layout(back)
    np.testing.assert_array_equal(back.X, ds.X)
    np.testing.assert_array_equal(back.Y, ds.Y)
    np.testing.assert_array_equal(back.labels, ds.labels)
    assert back.name == ds.name
    assert set(back.meta) == set(ds.meta)
    np.testing.assert_array_equal(back.meta["etf"], ds.meta["etf"])
    assert back.meta["tau"] == ds.meta["tau"] and back.meta["note"] == "hello"
    assert back.meta["npint"] == 3
    # regression data (labels None) and the classmethod
    reg = D.teacher_student(n=5, d=2, seed=0)
    reg.save_npz(tmp_path / "r.dat")  # exact file name, no extension added
    back = Dataset.load_npz(tmp_path / "r.dat")
    assert back.labels is None
    np.testing.assert_array_equal(back.meta["u_star"], reg.meta["u_star"])
    # plain npz with labels only -> one-hot Y, via the registry
    np.savez(tmp_path / "plain.npz", X=np.eye(3), labels=np.array([0, 1, 1]))
    pl = D.make_dataset("npz", path=str(tmp_path / "plain.npz"))
    np.testing.assert_array_equal(pl.Y, [[1, 0], [0, 1], [0, 1]])
    with pytest.raises(ValueError, match="path"):
        D.load_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", Z=np.eye(2))
    with pytest.raises(ValueError, match="'X'"):
        D.load_npz(tmp_path / "bad.npz")


# ---------------------------------------------------------------------------------------------
# linear Gaussian
# ---------------------------------------------------------------------------------------------


def test_linear_gaussian_moments():
    Sigma = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.5]])
    b = np.array([1.0, -0.5, 0.3])
    ds = D.linear_gaussian(n=200_000, d=3, Sigma=Sigma, b=b, noise=0.3, seed=0)
    Eyx = ds.X.T @ ds.Y[:, 0] / ds.n
    np.testing.assert_allclose(Eyx, b, atol=0.02)
    np.testing.assert_allclose(ds.X.T @ ds.X / ds.n, Sigma, atol=0.02)
    assert np.mean(ds.Y**2) == pytest.approx(ds.meta["second_moment_y"], rel=0.02)
    S, bb = D.linear_gaussian_population(3, Sigma, b)
    np.testing.assert_array_equal(S, Sigma)
    np.testing.assert_array_equal(bb, b)
    S, bb = D.linear_gaussian_population(4)
    np.testing.assert_array_equal(S, np.eye(4))
    assert np.linalg.norm(bb) == pytest.approx(1.0)
    S, _ = D.linear_gaussian_population(2, Sigma=[1.0, 3.0])
    np.testing.assert_array_equal(S, np.diag([1.0, 3.0]))


def test_linear_gaussian_bad_sigma():
    with pytest.raises(ValueError, match="Sigma"):
        D.linear_gaussian_population(2, Sigma=[[1.0, 2.0], [2.0, 1.0]])  # indefinite
    with pytest.raises(ValueError, match="Sigma"):
        D.linear_gaussian_population(2, Sigma=[[1.0, 0.5], [0.0, 1.0]])  # asymmetric
    with pytest.raises(ValueError, match="Sigma"):
        D.linear_gaussian_population(2, Sigma=np.eye(3))
    with pytest.raises(ValueError, match="b must"):
        D.linear_gaussian_population(2, b=[1.0, 2.0, 3.0])


# ---------------------------------------------------------------------------------------------
# online samplers
# ---------------------------------------------------------------------------------------------


def test_sampler_shares_teacher_and_statistics():
    fin = D.make_dataset("teacher_student", seed=7, n=20_000, d=5, noise=0.1)
    smp = D.make_dataset("teacher_student", seed=7, n=20_000, d=5, noise=0.1, online=True)
    assert isinstance(smp, OnlineSampler) and (smp.d, smp.q) == (5, 1)
    np.testing.assert_array_equal(smp.meta["u_star"], fin.meta["u_star"])
    np.testing.assert_array_equal(smp.meta["a_star"], fin.meta["a_star"])
    X, Y = smp.sample(20_000, np.random.default_rng(0))
    assert X.shape == (20_000, 5) and Y.shape == (20_000, 1)
    assert X.flags.c_contiguous and Y.flags.c_contiguous and X.dtype == np.float64
    assert abs(np.mean(Y) - np.mean(fin.Y)) < 0.02
    assert np.var(Y) == pytest.approx(np.var(fin.Y), rel=0.05)
    # two fresh batches differ; the same generator state reproduces
    rng = np.random.default_rng(1)
    X1, _ = smp.sample(8, rng)
    X2, _ = smp.sample(8, rng)
    assert not np.array_equal(X1, X2)
    np.testing.assert_array_equal(smp.sample(8, np.random.default_rng(1))[0], X1)


def test_sampler_mmn_statistics():
    smp = D.make_dataset("mmn_gaussians", seed=0, d=4, delta=0.5, online=True)
    X, Y = smp.sample(40_000, np.random.default_rng(3))
    fin = D.mmn_gaussians(n=40_000, d=4, delta=0.5, seed=3)
    for data_x, data_y in ((X, Y), (fin.X, fin.Y)):
        assert abs(np.mean(data_y)) < 0.02
        plus, minus = data_x[data_y[:, 0] > 0], data_x[data_y[:, 0] < 0]
        assert np.var(plus) == pytest.approx(1.5**2, rel=0.03)
        assert np.var(minus) == pytest.approx(0.5**2, rel=0.03)


def test_sampler_mixture_and_separable():
    smp = D.make_dataset("gaussian_mixture", q=3, d=4, sep=2.0, std=0.5, online=True)
    fin = D.gaussian_mixture(q=3, m=3000, d=4, sep=2.0, std=0.5, seed=1)
    X, Y = smp.sample(9000, np.random.default_rng(2))
    np.testing.assert_allclose(Y.mean(axis=0), [1 / 3] * 3, atol=0.02)
    for k in range(3):
        np.testing.assert_allclose(X[Y[:, k] > 0].mean(axis=0), fin.X[fin.labels == k].mean(axis=0),
                                   atol=0.06)
    sep = D.make_dataset("separable", seed=0, online=True)
    te = sep.test_set(500, seed=9)
    assert isinstance(te, Dataset) and te.labels is not None and _max_norm(te) <= 1.0
    S = te.X @ sep.meta["etf"].T
    assert np.all(S[np.arange(te.n), te.labels] >= sep.meta["tau"])


def test_sampler_test_set_and_linear():
    smp = D.linear_gaussian_sampler(d=3, noise=0.0)
    te = smp.test_set(50, seed=4)
    _check_layout(te)
    np.testing.assert_allclose(te.Y[:, 0], te.X @ smp.meta["w"])
    np.testing.assert_array_equal(smp.test_set(50, seed=4).X, te.X)
    with pytest.raises(ValueError, match="B must"):
        smp.sample(0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="rng"):
        smp.sample(3, 123)


# ---------------------------------------------------------------------------------------------
# registry and error messages
# ---------------------------------------------------------------------------------------------


def test_registry_spec():
    assert set(D.DATA_KINDS) == {"teacher_student", "gaussian_mixture", "mmn_gaussians", "separable",
                                 "well_separated", "linear_gaussian", "digits_mod3", "npz"}
    spec = D.data_param_spec("teacher_student")
    assert spec["n"] == 1000 and spec["activation"] == "tanh" and spec["online"] is False
    assert "seed" not in spec and "rng" not in spec
    assert "online" not in D.data_param_spec("well_separated")
    assert D.data_param_spec("npz")["path"] is D.REQUIRED
    assert D.data_param_spec("digits_mod3") == {"n_train_per_class": 400, "part": "train"}
    for kind in D.DATA_KINDS:
        assert isinstance(D.data_param_spec(kind), dict)


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: D.make_dataset("teacher_studnet"), "did you mean 'teacher_student'"),
        (lambda: D.data_param_spec("seperable"), "did you mean 'separable'"),
        (lambda: D.make_dataset("separable", mm=3), "'mm'.*did you mean 'm'"),
        (lambda: D.make_dataset("well_separated", online=True), "online"),
        (lambda: D.make_dataset("npz"), "path"),
        (lambda: D.make_dataset("separable", seed=-1), "seed"),
        (lambda: D.make_dataset("separable", online="yes"), "online"),
        (lambda: D.teacher_student(n=0), r"n must be an integer >= 1, got 0"),
        (lambda: D.teacher_student(n=2.5), r"n must be an integer"),
        (lambda: D.teacher_student(activation="tahn"), "activation.*did you mean 'tanh'"),
        (lambda: D.teacher_student(input="ball"), "input"),
        (lambda: D.teacher_student(noise=-1.0), r"noise must be .*\[0.0, inf\).*-1.0"),
        (lambda: D.teacher_student(k_star=0), "k_star"),
        (lambda: D.mmn_gaussians(delta=1.0), r"delta must be .*\[0.0, 1.0\).*1.0"),
        (lambda: D.separable(delta_b=0.35), r"delta_b .*0.35"),
        (lambda: D.separable(r0=1.2), "r0"),
        (lambda: D.separable(q=1), "q must"),
        (lambda: D.gaussian_mixture(q=5, d=2), r"d must .*>= 4"),
        (lambda: D.gaussian_mixture(std=-0.1), "std"),
        (lambda: D.well_separated(q=3, d=2), "d must"),
        (lambda: D.well_separated(q=3, delta_b=0.6), "delta_b"),
        (lambda: D.digits_mod3(n_train_per_class=600), r"n_train_per_class .*\[1, 532\].*600"),
        (lambda: D.teacher_student(rng=np.random.RandomState(0)), "rng"),
    ],
)
def test_error_messages(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_integral_float_accepted():
    ds = D.make_dataset("teacher_student", n=10.0, d=2)
    assert ds.n == 10


def test_online_ignores_sample_size():
    s = D.make_dataset("separable", m=5, q=3, d=4, online=True)
    assert isinstance(s, OnlineSampler) and s.n_classes == 3


# ---------------------------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not HAVE_SKLEARN, reason="scikit-learn (extra 'data') not installed")
def test_digits_mod3():
    tr, te = D.digits_mod3(seed=0)
    _check_layout(tr)
    _check_layout(te)
    assert tr.d == te.d == 65 and tr.q == 3
    np.testing.assert_array_equal(tr.class_counts, [400, 400, 400])
    np.testing.assert_array_equal(te.class_counts, [322, 142, 133])
    assert tr.is_sorted_by_class and te.is_sorted_by_class
    assert max(_max_norm(tr), _max_norm(te)) <= 1.0 + 1e-12
    extra = np.concatenate([tr.X[:, -1], te.X[:, -1]])
    assert np.unique(extra).size == extra.size and extra.min() >= 0.05 and extra.max() <= 0.1
    idx = np.concatenate([tr.meta["source_index"], te.meta["source_index"]])
    assert idx.size == 1797 and np.unique(idx).size == 1797
    from sklearn.datasets import load_digits

    raw = load_digits()
    for part in (tr, te):
        src = part.meta["source_index"]
        np.testing.assert_array_equal(part.labels, raw.target[src] % 3)
        np.testing.assert_allclose(part.X[:, :64], raw.data[src] * part.meta["input_scale"] / 16)
    tr2 = D.make_dataset("digits_mod3", seed=0)
    np.testing.assert_array_equal(tr2.X, tr.X)
    te2 = D.make_dataset("digits_mod3", seed=0, part="test")
    np.testing.assert_array_equal(te2.X, te.X)


def test_digits_without_sklearn(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("no sklearn")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"mfpde\[data\]"):
        D.digits_mod3()


def test_package_layout_and_registry():
    """``mfpde.data`` is a package whose parts re-export one public API; the registry is the one
    list of data kinds; the NumPy activations of the generators have the model's names."""
    from mfpde.activations import ACTIVATIONS
    from mfpde.data import dataset, generators, io, registry, samplers
    assert D.Dataset is dataset.Dataset and D.OnlineSampler is samplers.OnlineSampler
    assert D.teacher_student is generators.teacher_student and D.load_npz is io.load_npz
    assert D.make_dataset is registry.make_dataset
    assert D.data_kinds() == D.DATA_KINDS == tuple(registry._REGISTRY)
    assert set(D.online_kinds()) == {"teacher_student", "gaussian_mixture", "mmn_gaussians",
                                     "separable", "linear_gaussian"}
    for kind in D.online_kinds():
        assert D.data_param_spec(kind)["online"] is False
    from mfpde.data._activations import _NP_ACTIVATIONS
    assert set(_NP_ACTIVATIONS) == set(ACTIVATIONS)


def test_save_npz_function_and_method_agree(tmp_path):
    ds = D.gaussian_mixture(q=3, m=4, d=5, seed=1)
    a = ds.save_npz(tmp_path / "a.npz")
    b = D.save_npz(ds, tmp_path / "b.npz")
    x, y = D.load_npz(a), Dataset.load_npz(b)
    assert np.array_equal(x.X, y.X) and np.array_equal(x.Y, y.Y)
    assert np.array_equal(x.labels, y.labels) and x.name == y.name
