"""Langevin particle solver (dynamics.md §2–§3) against known answers.

- noiseless full-batch flow: the regularised loss never increases at a small step (§2.2);
- a realizable teacher is fitted (validation.md §V12 at test size);
- linear neuron: the Gaussian law N(m(t), C(t)) and the Gibbs state N(m_inf, I/(beta lam)) of §2.4;
- NC model: Lemma 4.5 of Wu–Mondelli and the collapse of NC1 (validation.md §V5–§V6);
- reproducibility: same seed, same bits, for NUMBA_NUM_THREADS = 1 and 2; bitwise resume.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mfpde.data import gaussian_mixture, teacher_student
from mfpde.dynamics import LangevinSolver
from mfpde.models import make_model
from mfpde.validation.cases_core import erf_kernel, linear_gibbs, nc_stationary, teacher_fit


def _reg_loss_path(solver, steps):
    m = solver.model
    X, Y = solver.X, solver.Y
    vals = [m.regularized_risk(solver.theta, X, Y, solver.W)]
    for _ in range(steps):
        solver.step()
        vals.append(m.regularized_risk(solver.theta, X, Y, solver.W))
    return np.array(vals)


@pytest.mark.parametrize("kind", ["two_layer", "nc"])
def test_noiseless_flow_decreases_regularized_loss(kind):
    if kind == "two_layer":
        data = teacher_student(n=100, d=5, k_star=3, seed=1)
        model = make_model("two_layer", d=5, q=1, activation="tanh", lam=0.01)
    else:
        data = gaussian_mixture(q=3, m=10, d=5, sep=1.0, std=0.3, seed=1).normalized(0.99)
        model = make_model("nc", d=5, q=3, p=4, Gamma=2.0, lam=0.01, lam_W=0.01)
    solver = LangevinSolver(model, data, N=300, dt=0.05, seed=2)
    vals = _reg_loss_path(solver, 300)
    incr = np.diff(vals)
    assert np.all(incr <= 1e-13 * np.abs(vals[1:])), incr.max()
    assert vals[-1] < 0.5 * vals[0]


def test_realizable_teacher_is_fitted():
    r = teacher_fit(N=1000, n=200, dt=1.0, steps=300)
    assert r["risk"] < 1e-3 and r["risk"] < 1e-2 * r["reg_loss"][0], r["risk"]
    assert r["max_increase"] <= 1e-13


def test_linear_gaussian_law_and_gibbs_state():
    """rho_t = N(m(t), C(t)) (dynamics.md §2.4) at t = 1 and the Gibbs state at t = 8: particle mean
    and covariance within 3 standard errors (see ``linear_gibbs`` for the standard errors)."""
    r = linear_gibbs(N=4000, beta=10.0, lam=0.5, dt=0.01)
    for row in r["rows"]:
        assert row["z_mean"] < 3 and row["z_cov"] < 3, row
    N = r["theta"].shape[0]
    assert np.allclose(r["theta"].var(0), r["var_inf"], rtol=4 * np.sqrt(2 / N))


def test_noise_scale_negative_control():
    """A noise amplitude sqrt(eps/beta) instead of sqrt(2 eps/beta) halves the stationary variance:
    the Gibbs test above distinguishes the two (dynamics.md §3)."""
    r = linear_gibbs(N=4000, beta=20.0, lam=0.5, dt=0.01, times=(8.0,))   # = sqrt(eps/beta) at beta=10
    var_wrong = r["theta"].var(0)
    assert np.all(np.abs(var_wrong - 1 / (10.0 * 0.5)) > 10 * np.sqrt(2 / 4000) / (10.0 * 0.5))


def test_nc_lemma45_and_collapse():
    """NC model, W trained, beta = 200, lam = lam_W = 1/beta, Gamma = 3 (validation.md §V5, §V6):
    the residual of the time-averaged Lemma 4.5 matrix is at most 10% of 1/beta, and NC1 of the
    features falls at least 100x from its initial value."""
    r = nc_stationary(N=4000, beta=200.0, Gamma=3.0, dt=0.05, steps=10_000)
    assert r["avg_residual"] <= 0.1 / r["beta"], r["avg_residual"] * r["beta"]
    assert r["nc1_ratio"] >= 100, r["nc1"][[0, -1]]


def test_erf_kernel_known_answer():
    r = erf_kernel(N=100_000)
    assert r["err"] < 5 * r["se"] and r["lam_min"] > 0 and abs(r["lam_min_dup"]) < 1e-12


_REPRO = textwrap.dedent("""
    import hashlib, sys
    import numpy as np
    from mfpde.data import gaussian_mixture
    from mfpde.dynamics import LangevinSolver
    from mfpde.models import make_model
    data = gaussian_mixture(q=3, m=40, d=6, sep=1.0, std=0.5, seed=0).normalized(0.99)
    model = make_model("nc", d=6, q=3, p=4, Gamma=2.0, lam=0.02, lam_W=0.02)
    s = LangevinSolver(model, data, N=15000, dt=0.05, beta=50.0, batch=32, seed=11)
    s.step(15)
    g = model.gradient(s.theta, data.X, data.Y, s.W, laplacian=True)
    h = hashlib.sha256(s.theta.tobytes() + s.W.tobytes() + g.lap.tobytes()).hexdigest()
    sys.stdout.write(h)
""")


def test_same_seed_same_bits_for_any_thread_count():
    """At N = 15000 the pass runs 8 particle chunks on the thread pool."""
    from mfpde.kernels.readout import chunk_bounds
    assert chunk_bounds(15000).size - 1 == 8
    digests = []
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        out = subprocess.run([sys.executable, "-c", _REPRO], env=env, capture_output=True,
                             text=True, check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
        digests.append(out.stdout.strip())
    assert len(digests[0]) == 64 and digests[0] == digests[1]


def test_state_dict_resume_is_bitwise():
    data = gaussian_mixture(q=3, m=20, d=5, sep=1.0, std=0.5, seed=0)
    model = make_model("nc", d=5, q=3, p=4, lam=0.05, lam_W=0.05)
    kw = dict(N=200, dt=0.05, beta=20.0, batch=16, seed=5)
    a = LangevinSolver(model, data, **kw)
    a.step(37)
    b = LangevinSolver(model, data, **kw)
    b.step(20)
    state = b.state_dict()
    c = LangevinSolver(model, data, **dict(kw, seed=999))
    c.load_state_dict(state)
    c.step(17)
    assert c.k == a.k == 37
    assert np.array_equal(c.theta, a.theta) and np.array_equal(c.W, a.W)


def test_online_sampler_and_schedule():
    from mfpde.data import teacher_student_sampler
    sampler = teacher_student_sampler(d=5, k_star=2, seed=0)
    model = make_model("two_layer", d=5, q=1)
    s = LangevinSolver(model, None, sampler=sampler, batch=8, N=100, dt=0.1, xi=lambda t: 1 / (1 + t), seed=0)
    theta0 = s.theta.copy()
    s.step(5)
    assert s.k == 5 and np.isclose(s.t, 0.5) and not np.array_equal(theta0, s.theta)


def test_time_rescaling_is_a_change_of_clock():
    """dynamics.md §2.5: with constant xi, xi = 2 and dt = h equals xi = 1 and dt = 2h."""
    data = teacher_student(n=50, d=3, seed=0)
    model = make_model("two_layer", d=3)
    a = LangevinSolver(model, data, N=50, dt=0.01, xi=2.0, seed=0)
    b = LangevinSolver(model, data, N=50, dt=0.02, seed=0)
    a.step(10)
    b.step(10)
    assert np.allclose(a.theta, b.theta, rtol=0, atol=1e-14)


def test_bad_arguments():
    data = teacher_student(n=20, d=3, seed=0)
    model = make_model("two_layer", d=3)
    with pytest.raises(ValueError, match="N must be"):
        LangevinSolver(model, data, N=0, dt=0.1)
    with pytest.raises(ValueError, match="dt must be"):
        LangevinSolver(model, data, N=10, dt=-1.0)
    with pytest.raises(ValueError, match="beta must be"):
        LangevinSolver(model, data, N=10, dt=0.1, beta=0.0)
    with pytest.raises(ValueError, match="exceeds the number of samples"):
        LangevinSolver(model, data, N=10, dt=0.1, batch=21)
    with pytest.raises(ValueError, match="either a data set"):
        LangevinSolver(model, None, N=10, dt=0.1)
    with pytest.raises(ValueError, match="d = 4 columns"):
        LangevinSolver(make_model("two_layer", d=4), data, N=10, dt=0.1)


def test_langevin_is_a_driver():
    """Engine protocol: ``k``, ``t = k*dt``, ``dt``, ``step(n, t_end)`` (``t_end`` ignored),
    ``fields()`` views ``theta`` [+ ``W``]."""
    from mfpde.engine.protocol import check_driver
    data = gaussian_mixture(q=2, m=6, d=3, seed=0)
    for kind in ("two_layer", "nc"):
        model = make_model(kind, d=3, q=2, p=2)
        s = LangevinSolver(model, data, N=12, dt=0.05, seed=0)
        check_driver(s)
        s.step(3, t_end=0.0)
        assert s.k == 3 and s.t == pytest.approx(0.15) and s.dt == 0.05
        f = s.fields()
        assert f["theta"] is s.theta
        assert ("W" in f) == model.has_W and (not model.has_W or f["W"] is s.W)
