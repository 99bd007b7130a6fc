"""The float32 option of the read-out models (``precision = "float32"``; mfpde.models.readout,
docs/performance.md "float32") against known answers.

- the float32 tanh within 2 float32 ulp of the float64 tanh;
- the force (and Laplacian) of the mixed-precision pass against the float64 pass within the
  rounding-error bound of the pass (:func:`_bound`), for both models, compiled and BLAS
  projections, one and several blocks and chunks, the stored pass and the low-memory sweep;
- the Gibbs-state and stationary checks of the float64 tests (linear neuron: Gaussian law and
  Gibbs state, overdamped and kinetic; NC: Lemma 4.5 and the collapse) in float32;
- full-batch, mini-batch and online Langevin, kinetic and trainer runs near their float64 runs;
- fixed seeds: the same bits for 1 and 2 threads and for 1 and 2 MPI ranks; a resumed run is
  bitwise the uninterrupted one, and the run file's config holds the precision;
- bad values and unsupported solvers: one line naming ``dynamics.precision`` (exit 2).
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from test_kinetic import check_linear_kinetic_moments  # noqa: E402  (tests/ is on the path)

from mfpde.activations import evaluate
from mfpde.data import gaussian_mixture, teacher_student
from mfpde.dynamics import KineticSolver, LangevinSolver
from mfpde.dynamics.langevin import euler_maruyama_step
from mfpde.kernels.activations import tanh_array
from mfpde.models import NCThreeLayer, TwoLayer, make_model

ROOT = Path(__file__).resolve().parent.parent
#: unit roundoff of float32
U32 = 2.0 ** -24


# ----------------------------------------------------------------------------- tanh
def test_float32_tanh_within_two_ulp():
    rng = np.random.default_rng(0)
    z = np.concatenate([3 * rng.standard_normal(1 << 18), np.linspace(-12, 12, 1 << 16),
                        [0.0, 0.624, 0.625, 0.626, 9.9, 10.0, 10.1, 1e-30, -1e-30]])
    z = z.astype(np.float32)
    out = np.empty_like(z)
    tanh_array(z, out)
    assert out.dtype == np.float32
    ref = np.tanh(z.astype(np.float64))
    ulp = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(out - ref) / ulp) <= 2.0


# ----------------------------------------------------------------------------- forces
def _bound(model, theta, X, Y, W, n_b):
    """The rounding-error bound of the float32 pass, ``(d_in + n_b + 16) u max|g|_abs``.

    Every float32 operation of the pass perturbs its result by a relative ``u = 2^-24`` at
    most; a float32 sum of ``k`` terms is off by at most ``k u`` times the sum of the absolute
    values of its terms (Higham, gamma_k). The longest float32 sums are the projection
    ``u . x`` (``d_in`` terms) and the block sums of ``grad_A``, ``grad_U`` (``n_b`` samples of a
    block; blocks are added in float64); the activation, its derivatives and the products with
    ``G`` and ``A`` are a fixed number of operations (16 covers them). Perturbations of the
    projection reach ``S`` and ``sigma'`` through ``sigma'`` and ``sigma''`` (``P_abs = |X||U|^T``),
    and those of the features reach the residual: ``g_abs`` is the force with every quantity
    replaced by the sum of the absolute values of what makes it up, computed in float64."""
    A, Uu = model.split(theta)
    Xa = model.prepare_X(X)
    N, n = theta.shape[0], Xa.shape[0]
    P = Xa @ Uu.T
    S, S1, S2 = (evaluate(model.activation, P, k) for k in (0, 1, 2))
    Pabs = np.abs(Xa) @ np.abs(Uu).T
    Sabs = np.abs(S) + np.abs(S1) * Pabs
    S1abs = np.abs(S1) + np.abs(S2) * Pabs
    H = S @ A / N
    Habs = Sabs @ np.abs(A) / N
    if W is None:
        Zabs = np.abs(H - Y) + Habs
        Gabs = Zabs / n
    else:
        G = model.Gamma
        Zabs = np.abs(G * H @ W - Y) + G * Habs @ np.abs(W)
        Gabs = G / n * Zabs @ np.abs(W).T
    parts = [(S1abs * (Gabs @ np.abs(A).T)).T @ np.abs(Xa)]
    if model.train_a:
        parts.insert(0, Sabs.T @ Gabs)
    gabs = np.hstack(parts)
    return (model.d_in + n_b + 16) * U32 * float(np.max(gabs))


CASES = [  # kind, d, N, n, activation, memory
    ("two_layer", 3, 1500, 300, "tanh", "fast"),        # compiled projection, one block
    ("two_layer", 3, 3000, 900, "sigmoid", "low"),      # compiled, several blocks, sweep
    ("two_layer", 40, 3000, 700, "tanh", "fast"),       # BLAS, 4 chunks, 2 blocks
    ("two_layer", 40, 600, 200, "identity", "low"),     # BLAS, one chunk, sweep
    ("nc", 40, 3000, 700, "tanh", "low"),
    ("nc", 5, 1500, 500, "softplus", "fast"),           # generic activation (three tiles)
    ("nc", 12, 2500, 300, "erf", "low"),
]


def _model(kind, d, activation, memory, precision, q=3):
    if kind == "two_layer":
        return TwoLayer(d, q=1, activation=activation, lam=0.01, memory=memory,
                        precision=precision)
    return NCThreeLayer(d, q, p=4, activation=activation, Gamma=2.0, lam=0.01, lam_W=0.01,
                        memory=memory, precision=precision)


def _problem(model, N, n, seed=0):
    rng = np.random.default_rng(seed)
    theta = model.init_particles(N, rng)
    W = model.init_W(rng)
    X = rng.standard_normal((n, model.d)) / math.sqrt(model.d)
    Y = rng.standard_normal((n, model.q))
    return theta, X, Y, W


@pytest.mark.parametrize("kind,d,N,n,activation,memory", CASES)
def test_float32_force_within_the_rounding_bound(kind, d, N, n, activation, memory):
    m64 = _model(kind, d, activation, memory, "float64")
    m32 = _model(kind, d, activation, memory, "float32")
    theta, X, Y, W = _problem(m64, N, n)
    g64 = m64.gradient(theta, X, Y, W)
    g32 = m32.gradient(theta, X, Y, W)
    assert g32.theta.dtype == np.float64 and g32.theta.shape == g64.theta.shape
    err = np.max(np.abs(g32.theta - g64.theta))
    bound = _bound(m64, theta, X, Y, W, m32.block_size(n, N, 4))
    assert 0 < err <= bound, (err, bound)           # float32 arithmetic ran, within the bound
    # the risk and grad_W come from the features, summed in float64
    assert abs(g32.risk - g64.risk) <= bound * np.abs(Y).sum() / len(Y)
    if W is not None:
        assert np.max(np.abs(g32.W - g64.W)) <= bound * m64.Gamma * np.abs(Y).max()
    # the force plan hands over the same float32 force, chunk by chunk
    seen = np.empty_like(theta)
    m32.force_chunks(theta, X, Y, W, lambda lo, hi, f, item: seen.__setitem__(
        slice(lo, hi), f))
    assert np.array_equal(seen, g32.theta)
    # passes without a gradient stay float64
    assert np.array_equal(m32.features(theta, X), m64.features(theta, X))


@pytest.mark.parametrize("memory", ["fast", "low"])
@pytest.mark.parametrize("d", [3, 30])
def test_float32_laplacian_within_the_rounding_bound(d, memory):
    """tanh: ``Delta Psi_j = sum_i (G A^T)_ij sigma''_ij |x_i|^2 + lam D``; the bound as for the
    force, with ``sigma'''`` for the perturbed projection."""
    m64 = _model("two_layer", d, "tanh", memory, "float64")
    m32 = _model("two_layer", d, "tanh", memory, "float32")
    N, n = 2500, 600
    theta, X, Y, W = _problem(m64, N, n, seed=4)
    l64 = m64.gradient(theta, X, Y, laplacian=True).lap
    l32 = m32.gradient(theta, X, Y, laplacian=True).lap
    A, Uu = m64.split(theta)
    Xa = m64.prepare_X(X)
    P = Xa @ Uu.T
    s = np.tanh(P)
    s1 = 1 - s * s
    s2, s3 = -2 * s * s1, -2 * (s1 * s1 - 2 * s * s * s1)
    Pabs = np.abs(Xa) @ np.abs(Uu).T
    Habs = (np.abs(s) + np.abs(s1) * Pabs) @ np.abs(A) / N
    Gabs = (np.abs(s @ A / N - Y) + Habs) / n
    labs = np.einsum("ij,i->j", (Gabs @ np.abs(A).T) * (np.abs(s2) + np.abs(s3) * Pabs),
                     np.einsum("ij,ij->i", Xa, Xa))
    bound = (m64.d_in + m64.block_size(n, N, 4) + 16) * U32 * labs.max()
    err = np.max(np.abs(l32 - l64))
    assert 0 < err <= bound, (err, bound)


def test_precision_is_checked_and_opt_in():
    assert TwoLayer(3).precision == "float64"
    assert make_model("nc", d=3, q=2, precision="float32").precision == "float32"
    with pytest.raises(ValueError, match="precision must be one of 'float64', 'float32'"):
        TwoLayer(3, precision="float16")
    m = TwoLayer(3, q=1)
    with pytest.raises(ValueError, match="precision"):
        m.set_precision(np.float32)
    # the float32 pass keeps its work buffers; copies and pickles of the model leave them out
    import copy
    import pickle
    m32 = TwoLayer(20, q=1, precision="float32")
    theta, X, Y, _ = _problem(m32, 700, 50)
    g = m32.gradient(theta, X, Y).theta
    assert "u32" in m32.__dict__["_work"]
    for twin in (copy.copy(m32), pickle.loads(pickle.dumps(m32))):
        assert "_work" not in twin.__dict__
        assert np.array_equal(twin.gradient(theta, X, Y).theta, g)
    # the fused online kernel is float64: a float32 model takes the generic path
    assert m.fused_plan() is not None
    m.set_precision("float32")
    assert m.fused_plan() is None


# ----------------------------------------------------------------------------- Gibbs states
@pytest.fixture
def float32_cases(monkeypatch):
    """The validation cases' models built with ``precision = "float32"``."""
    import mfpde.validation.cases_core as core
    import mfpde.validation.cases_kinetic as kin

    def f32(*args, **kw):
        return make_model(*args, **dict(kw, precision="float32"))

    monkeypatch.setattr(core, "make_model", f32)
    monkeypatch.setattr("mfpde.models.make_model", f32)      # imported inside toy_linear
    return core, kin


def test_float32_linear_gaussian_law_and_gibbs_state(float32_cases):
    """The checks of tests/test_langevin.py (dynamics.md §2.4) with the float32 pass: particle
    mean and covariance within 3 standard errors of N(m(t), C(t)) at t = 1 and of the Gibbs
    state at t = 8."""
    core, _ = float32_cases
    r = core.linear_gibbs(N=4000, beta=10.0, lam=0.5, dt=0.01)
    for row in r["rows"]:
        assert row["z_mean"] < 3 and row["z_cov"] < 3, row
    N = r["theta"].shape[0]
    assert np.allclose(r["theta"].var(0), r["var_inf"], rtol=4 * np.sqrt(2 / N))


def test_float32_nc_lemma45_and_collapse(float32_cases):
    """As tests/test_langevin.py (validation.md §V5, §V6): the residual of the time-averaged
    Lemma 4.5 matrix is at most 10% of 1/beta and NC1 falls at least 100x."""
    core, _ = float32_cases
    r = core.nc_stationary(N=4000, beta=200.0, Gamma=3.0, dt=0.05, steps=10_000)
    assert r["avg_residual"] <= 0.1 / r["beta"], r["avg_residual"] * r["beta"]
    assert r["nc1_ratio"] >= 100, r["nc1"][[0, -1]]


def test_float32_kinetic_gibbs_and_transient_moments_linear(float32_cases):
    """As tests/test_kinetic.py (K2): underdamped Langevin for the linear neuron, mean and
    variances against the exact linear ODE and the Gibbs law within 4 standard errors."""
    _, kin = float32_cases
    model, data = kin.toy_linear()
    assert model.precision == "float32"
    check_linear_kinetic_moments(model, data, kin.linear_kinetic_moments)


# ----------------------------------------------------------------------------- drivers
DRIVERS = [  # name, kind, driver keywords
    ("langevin full batch", "nc", dict(solver="langevin")),
    ("langevin mini-batch noisy", "two_layer", dict(solver="langevin", batch=32, beta=200.0)),
    ("langevin online", "two_layer", dict(solver="langevin", batch=4, online=True)),
    ("kinetic baoab mini-batch", "nc", dict(solver="kinetic", batch=32, beta=200.0)),
    ("kinetic full batch", "nc", dict(solver="kinetic")),
    ("kinetic online", "two_layer", dict(solver="kinetic", batch=4, online=True, beta=200.0)),
    ("trainer shb", "two_layer", dict(solver="trainer", method="shb")),
    ("trainer noisy sgd", "nc", dict(solver="trainer", method="noisy_sgd", batch=16,
                                     beta=200.0)),
]


def _driver(kind, precision, solver, batch=None, beta=math.inf, online=False, method=None,
            N=2100, steps=0):
    from mfpde.data.samplers import teacher_student_sampler
    from mfpde.dynamics.sgd import make_trainer
    if kind == "two_layer":
        data = teacher_student(n=300, d=12, k_star=3, seed=1)
        model = make_model("two_layer", d=12, q=1, lam=0.01, precision=precision)
    else:
        data = gaussian_mixture(q=3, m=60, d=12, sep=1.0, std=0.5, seed=1).normalized(0.99)
        model = make_model("nc", d=12, q=3, p=4, Gamma=2.0, lam=0.02, lam_W=0.02,
                           precision=precision)
    sampler = teacher_student_sampler(d=12, k_star=3) if online else None
    kw = dict(N=N, beta=beta, batch=batch, seed=7, noise_stream="blocks")
    if online:
        kw["sampler"] = sampler
    src = None if online else data
    if solver == "langevin":
        return LangevinSolver(model, src, dt=0.05, **kw)
    if solver == "kinetic":
        return KineticSolver(model, src, dt=0.05, gamma=2.0, **kw)
    return make_trainer(model, src, method=method, dt=0.05,
                        gamma=2.0 if method == "shb" else None, **kw)


@pytest.mark.parametrize("name,kind,kw", DRIVERS, ids=[d[0] for d in DRIVERS])
def test_float32_runs_stay_near_float64(name, kind, kw):
    """Same seeds, same data and noise: after ``k`` steps the float32 run differs from the
    float64 run by the accumulated force errors. Each step adds at most ``dt`` times the force
    error, at most the bound ``B`` of :func:`_bound` (at the initial state, on the full data set
    or 300 fresh samples, with the run's block of ``n_b`` samples), and the flow amplifies
    earlier errors by at most ``exp(L t)``; the test allows ``exp(L t) <= 10`` at
    ``t = k dt = 1``: ``|theta_32 - theta_64| <= 10 k dt B``."""
    k, dt = 20, 0.05
    runs = {}
    for precision in ("float64", "float32"):
        runs[precision] = s = _driver(kind, precision, **kw)
        if precision == "float64":
            theta0, W0 = s.theta.copy(), None if s.W is None else s.W.copy()
            X, Y = (s.X, s.Y) if s.sampler is None else \
                s.sampler.sample(300, np.random.default_rng(0))
        s.step(k)
    m = runs["float64"].model
    n_b = m.block_size(X.shape[0] if kw.get("batch") is None else kw["batch"], theta0.shape[0],
                       4)
    bound = 10 * k * dt * _bound(m, theta0, X, Y, W0, n_b)
    a, b = runs["float64"].theta, runs["float32"].theta
    diff = np.abs(a - b).max()
    assert 0 < diff <= bound, (diff, bound)
    if runs["float64"].W is not None:
        assert np.abs(runs["float64"].W - runs["float32"].W).max() <= bound


@pytest.mark.parametrize("kind,memory", [("two_layer", "fast"), ("nc", "low")])
def test_float32_copy_left_by_the_update_is_the_fresh_copy(kind, memory):
    """The update of a float32 step writes the float32 copy of the updated ``U`` that the next
    step of the same ``step(n)`` call reads (``EMChunks`` ``chain``, ``more``): ``step(3)``
    gives the bits of three calls of ``step(1)``, each of which copies ``U`` afresh; a write to
    ``theta`` between two calls is seen by the next step; the copy left is ``U`` rounded to
    float32, and the last step of a call leaves none."""
    if kind == "two_layer":
        data = teacher_student(n=300, d=12, k_star=3, seed=1)
        kw = dict(q=1, lam=0.01)
    else:
        data = gaussian_mixture(q=3, m=100, d=12, sep=1.0, std=0.5, seed=1).normalized(0.99)
        kw = dict(q=3, p=4, Gamma=2.0, lam=0.02, lam_W=0.02)

    def run(calls):
        model = make_model(kind, d=12, memory=memory, precision="float32", **kw)
        s = LangevinSolver(model, data, N=3000, dt=0.05, beta=50.0, batch=100, seed=4)
        for k in calls:
            s.step(k)
        return s

    one, three = run([1, 1, 1]), run([3])
    assert np.array_equal(one.theta, three.theta)
    assert "_u32_left" not in three.model.__dict__        # the last step writes no copy
    # a step with another to follow leaves U rounded to float32
    m, W = three.model, three.W
    euler_maruyama_step(m, three.theta, data.X, data.Y, W, 0.05, chain=object(), more=True)
    u = three.theta[:, m.pa:]
    assert np.array_equal(m._u32_left[2][:u.size], u.astype(np.float32).ravel())
    # a write to theta after a copy was left: a step of another chain copies the written U
    ends = []
    for forget in (False, True):
        s = run([1])
        m = s.model
        euler_maruyama_step(m, s.theta, data.X, data.Y, s.W, 0.05, chain=object(), more=True)
        s.theta[:, -1] += 0.25                          # in place: the same array
        if forget:                                      # as a new model: no copy left
            m.__dict__.pop("_u32_left")
        euler_maruyama_step(m, s.theta, data.X, data.Y, s.W, 0.05, chain=object())
        ends.append(s.theta)
    assert np.array_equal(*ends)


# ----------------------------------------------------------------------------- threads
_REPRO = textwrap.dedent("""
    import hashlib, sys
    from mfpde.data import gaussian_mixture
    from mfpde.dynamics import LangevinSolver, KineticSolver
    from mfpde.models import make_model
    data = gaussian_mixture(q=3, m=300, d=20, sep=1.0, std=0.5, seed=0).normalized(0.99)
    h = hashlib.sha256()
    for memory, Solver, batch in (("fast", LangevinSolver, 0), ("low", LangevinSolver, 400),
                                  ("fast", KineticSolver, 300)):
        model = make_model("nc", d=20, q=3, p=4, Gamma=2.0, lam=0.02, lam_W=0.02,
                           memory=memory, precision="float32")
        kw = dict(gamma=2.0) if Solver is KineticSolver else {}
        s = Solver(model, data, N=15000, dt=0.05, beta=50.0, batch=batch or None, seed=11, **kw)
        s.step(4)
        g = model.gradient(s.theta, data.X, data.Y, s.W, laplacian=True)
        h.update(s.theta.tobytes() + s.W.tobytes() + g.lap.tobytes())
    sys.stdout.write(h.hexdigest())
""")


def test_float32_same_seed_same_bits_for_any_thread_count():
    """N = 15000: 8 particle chunks on the thread pool; 900 samples: several blocks."""
    from mfpde.kernels.readout import chunk_bounds
    assert chunk_bounds(15000).size - 1 == 8
    digests = []
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads,
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        out = subprocess.run([sys.executable, "-c", _REPRO], env=env, capture_output=True,
                             text=True, check=True, cwd=ROOT)
        digests.append(out.stdout.strip())
    assert len(digests[0]) == 64 and digests[0] == digests[1]


# ----------------------------------------------------------------------------- run files
CONFIG = """
[model]
kind = "{kind}"
{model}
[data]
kind = "{data}"
{data_params}
[dynamics]
solver = "{solver}"
N = 2100
dt = 0.05
steps = {steps}
beta = 100.0
batch = {batch}
precision = "float32"
{dyn}
[observe]
every = 5
quantities = ["loss", "reg_loss"]
snapshot_every = 10
[output]
checkpoint_every = 10
"""

RUNS = {
    "langevin": dict(kind="two_layer", model="", data="teacher_student",
                     data_params="n = 200\nd = 6", solver="langevin", batch=20, dyn=""),
    "kinetic": dict(kind="nc", model="p = 4\nlam = 0.05\nlam_W = 0.05", data="gaussian_mixture",
                    data_params="q = 3\nm = 20\nd = 5", solver="kinetic", batch=0,
                    dyn='integrator = "baoab"\ngamma = 2.0'),
    "trainer": dict(kind="nc", model="p = 4\nlam = 0.05\nlam_W = 0.05",
                    data="gaussian_mixture", data_params="q = 3\nm = 20\nd = 5",
                    solver="trainer", batch=10, dyn='method = "noisy_sgd"'),
}


def _cfg(tmp_path, name, steps, **kw):
    p = tmp_path / f"{name}.toml"
    p.write_text(CONFIG.format(steps=steps, **kw))
    return p


@pytest.mark.parametrize("solver", sorted(RUNS))
def test_float32_run_resume_is_bitwise_and_stores_the_precision(tmp_path, solver):
    from mfpde.runner import run
    from mfpde.store import load
    kw = RUNS[solver]
    full = run(_cfg(tmp_path, "a", 40, **kw), tmp_path / "a.h5", quiet=True)
    run(_cfg(tmp_path, "b", 20, **kw), tmp_path / "b.h5", quiet=True)
    run(_cfg(tmp_path, "b", 40, **kw), tmp_path / "b.h5", resume=True, quiet=True)
    a, b = load(full), load(tmp_path / "b.h5")
    assert a.status == b.status == "complete"
    assert a.config["dynamics"]["precision"] == b.config["dynamics"]["precision"] == "float32"
    assert np.array_equal(a.snapshot(-1).theta, b.snapshot(-1).theta)
    for key in a.series:
        assert np.array_equal(a.series[key], b.series[key]), key


def _mfpde(*args, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "mfpde", *map(str, args)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300, **kw)


def test_float32_and_float64_runs_differ_and_resume_keeps_the_stored_precision(tmp_path):
    cfg = _cfg(tmp_path, "r", 30, **RUNS["langevin"])
    f32, f64 = tmp_path / "f32.h5", tmp_path / "f64.h5"
    assert _mfpde("run", cfg, "-o", f32, "-q").returncode == 0
    r = _mfpde("run", cfg, "-o", f64, "-q", "--set", 'dynamics.precision="float64"')
    assert r.returncode == 0, r.stderr
    from mfpde.store import load
    a, b = load(f32), load(f64)
    assert a.config["dynamics"]["precision"] == "float32"
    assert b.config["dynamics"]["precision"] == "float64"
    ta, tb = a.snapshot(-1).theta, b.snapshot(-1).theta
    assert not np.array_equal(ta, tb)
    # a resume with another precision is a different configuration: refused, one line
    r = _mfpde("run", cfg, "-o", f32, "--resume", "--set", 'dynamics.precision="float64"')
    assert r.returncode == 2
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "dynamics.precision" in err, err


@pytest.mark.parametrize("value,needle", [("float16", "expected one of 'float64', 'float32'"),
                                          ("64", "dynamics.precision")])
def test_bad_precision_exits_2_with_one_line(tmp_path, value, needle):
    cfg = _cfg(tmp_path, "bad", 5, **RUNS["langevin"])
    r = _mfpde("run", cfg, "-o", tmp_path / "x.h5", "--set", f"dynamics.precision={value}")
    assert r.returncode == 2
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "dynamics.precision" in err and needle in err, err
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("example", ["example_pn.toml", "example_fv.toml",
                                     "example_quadrature.toml"])
def test_solvers_without_a_float32_pass_refuse_it(tmp_path, example):
    r = _mfpde("run", ROOT / "validation" / example, "-o", tmp_path / "x.h5", "--set",
               'dynamics.precision="float32"')
    assert r.returncode == 2
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "dynamics.precision" in err, err


def test_memory_estimate_counts_the_float32_copy():
    from mfpde.build import memory_estimate
    from mfpde.config import parse_config
    kw = dict(RUNS["langevin"], steps=10)
    text = CONFIG.format(**kw).replace("N = 2100", "N = 100000")
    e32 = memory_estimate(parse_config(text))[0]
    cfg64 = parse_config(text.replace('"float32"', '"float64"'))
    e64 = memory_estimate(cfg64)[0]
    # the copy of u (4 N D with memory_estimate's D) and 4-byte block x N buffers (blocks of 20)
    D = 6 + max(int(getattr(cfg64.model, "p", 0) or 0), 1) + 1
    assert e32 - e64 == 4 * 100000 * D - 3 * 4 * 100000 * 20


# ----------------------------------------------------------------------------- MPI
def _launcher():
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


@pytest.mark.mpi
@pytest.mark.parametrize("solver", ["langevin", "kinetic", "trainer"])
def test_float32_split_over_two_ranks_is_the_one_process_run(tmp_path, solver):
    """``mpiexec -n 2 mfpde run``: the per-chunk partial features (float64) are exchanged and
    summed in chunk order, so the float32 run is bitwise the one-process run."""
    pytest.importorskip("mpi4py")
    mpiexec = _launcher()
    if mpiexec is None:
        pytest.skip("no MPI launcher (mpiexec)")
    sys.path.insert(0, str(ROOT / "tests"))
    from mpi_helper import differences, digest
    cfg = _cfg(tmp_path, "m", 20, **RUNS[solver])
    serial, split = tmp_path / "serial.h5", tmp_path / "split.h5"
    r = _mfpde("run", cfg, "-o", serial, "-q")
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, NUMBA_NUM_THREADS="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for var in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "MFPDE_MPI"):
        env.pop(var, None)
    r = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "mfpde", "run", str(cfg),
                        "-o", str(split), "-q"], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert differences(digest(serial), digest(split)) == []
