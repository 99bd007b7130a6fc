"""Online / small-batch SGD: chunked sample draws and the fused multi-step kernel.

Checks: the SIMD tanh against the C library; the fused path against the generic (one model
gradient per step) path; bitwise invariance under splitting ``step(n)``; bitwise resume from a
state dict taken in the middle of the sample buffer (also through an HDF5 checkpoint); the chunk
rule of the sample draws, shared by every driver.
"""

import math

import numpy as np
import pytest

from mfpde.data import (gaussian_mixture_sampler, mmn_gaussians, mmn_gaussians_sampler,
                        teacher_student_sampler)
from mfpde.dynamics import KineticSolver, LangevinSolver
from mfpde.dynamics.base import ONLINE_CHUNK, online_chunk_steps
from mfpde.kernels.online import tanh_array
from mfpde.models import make_model
from mfpde.store import RunStore

D_IN = 6


def _model(case):
    if case == "fixed":
        return make_model("two_layer", d=D_IN, q=1, activation="tanh", output="fixed")
    if case == "trainable_bias":
        return make_model("two_layer", d=D_IN, q=1, activation="tanh", bias=True, lam=0.05)
    if case == "vector_q2":
        return make_model("two_layer", d=D_IN, q=2, activation="tanh", bias=True, lam=0.02)
    if case == "erf_batch":
        return make_model("two_layer", d=D_IN, q=1, activation="erf", bias=True, lam=0.01)
    if case == "sigmoid_fixed":
        return make_model("two_layer", d=D_IN, q=1, activation="sigmoid", output="fixed", lam=0.1)
    raise AssertionError(case)


def _sampler(case):
    if case == "vector_q2":
        return gaussian_mixture_sampler(q=2, d=D_IN, sep=1.0, std=0.5)
    return mmn_gaussians_sampler(d=D_IN, delta=0.6)


def _solver(case, *, fused=True, N=67, batch=1, beta=np.inf, xi=None, seed=3, data=None):
    model = _model(case)
    sampler = None if data is not None else _sampler(case)
    s = LangevinSolver(model, data, N=N, dt=0.05, beta=beta, batch=batch, sampler=sampler,
                       xi=xi, seed=seed)
    s.fused = fused
    return s


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# ---------------------------------------------------------------------------- SIMD tanh
def test_tanh_simd_within_two_ulp_of_libm():
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.standard_normal(20000) * s for s in (1e-9, 1e-3, 0.3, 1.0, 3.0, 12.0)]
                       + [np.linspace(-25.0, 25.0, 20001), [0.625, -0.625, 0.6249999999999999]])
    out = np.empty_like(z)
    tanh_array(z, out)
    ref = np.array([math.tanh(v) for v in z])
    ulp = np.abs(out - ref) / np.spacing(np.abs(ref))
    assert ulp.max() <= 2.0
    special = np.array([0.0, -0.0, 20.0, -20.0, 700.0, -1e300, np.inf, -np.inf, 5e-324])
    out = np.empty_like(special)
    tanh_array(special, out)
    np.testing.assert_array_equal(out, np.tanh(special))
    assert np.signbit(out[1])
    nan = np.full(67, np.nan)                  # vectorised body and scalar remainder
    out = np.empty_like(nan)
    tanh_array(nan, out)
    assert np.all(np.isnan(out))


# ---------------------------------------------------------------------------- fused == generic
CASES = [
    # case, batch, beta, xi, epochs (finite data instead of the sampler)
    ("fixed", 1, np.inf, None, False),
    ("trainable_bias", 1, np.inf, (lambda t: 1.0 / (1.0 + t)), False),
    ("vector_q2", 1, np.inf, 1.5, False),
    ("vector_q2", 3, np.inf, None, False),
    ("erf_batch", 5, np.inf, None, True),
    ("sigmoid_fixed", 2, np.inf, None, False),
    ("trainable_bias", 1, 40.0, (lambda t: 1.0 / (1.0 + t)), False),
    ("vector_q2", 4, 25.0, None, False),
    ("fixed", 3, 30.0, None, True),
]


@pytest.mark.parametrize("case,batch,beta,xi,epochs", CASES)
def test_fused_equals_generic(case, batch, beta, xi, epochs):
    data = mmn_gaussians(n=45, d=D_IN, delta=0.6, seed=2) if epochs else None
    runs = []
    for fused in (True, False):
        s = _solver(case, fused=fused, batch=batch, beta=beta, xi=xi, data=data)
        assert s._fused_ok() is fused
        s.step(300)
        runs.append(s)
    a, b = runs
    assert a.k == b.k == 300 and a.t == b.t
    assert _rel(a.theta, b.theta) <= 1e-12
    assert a.last_risk == pytest.approx(b.last_risk, rel=1e-11)
    # same random stream consumed
    assert a.rng.bit_generator.state == b.rng.bit_generator.state
    assert np.array_equal(a._perm, b._perm) and a._cursor == b._cursor


def test_fused_path_selection():
    s = _solver("fixed")
    assert s._fused_ok()
    s.batch_source = lambda: (np.zeros((1, D_IN)), np.zeros((1, 1)))
    assert not s._fused_ok()
    s = _solver("fixed", beta=10.0)
    s.noise_source = lambda: np.zeros((s.N, s.model.D))
    assert not s._fused_ok()
    nc = make_model("nc", d=D_IN, q=2, p=3)
    s = LangevinSolver(nc, None, N=20, dt=0.05, batch=1, seed=0,
                       sampler=gaussian_mixture_sampler(q=2, d=D_IN))
    assert not s._fused_ok()
    s.step(3)                                   # generic path
    assert s.k == 3
    data = mmn_gaussians(n=45, d=D_IN, delta=0.6, seed=2)
    full = LangevinSolver(_model("fixed"), data, N=20, dt=0.05, seed=0)
    assert not full._fused_ok()


# ---------------------------------------------------------------------------- reproducibility
@pytest.mark.parametrize("case,batch,beta,epochs", [
    ("fixed", 1, np.inf, False),
    ("trainable_bias", 3, 40.0, False),
    ("vector_q2", 1, np.inf, False),
    ("erf_batch", 4, np.inf, True),
])
def test_split_steps_bitwise(case, batch, beta, epochs):
    data = mmn_gaussians(n=45, d=D_IN, delta=0.6, seed=2) if epochs else None
    kw = dict(batch=batch, beta=beta, data=data, xi=lambda t: 1.0 / (1.0 + 0.5 * t))
    a = _solver(case, **kw)
    a.step(300)
    b = _solver(case, **kw)
    for m in (1, 128, 171):
        b.step(m)
    assert a.k == b.k == 300
    assert np.array_equal(a.theta, b.theta)
    assert a.last_risk == b.last_risk


@pytest.mark.parametrize("fused", [True, False])
def test_resume_mid_buffer_bitwise(fused, tmp_path):
    kw = dict(case="trainable_bias", batch=2, fused=fused)
    a = _solver(**kw)
    a.step(300)
    b = _solver(**kw)
    b.step(100)                       # 100 < ONLINE_CHUNK: the buffer is partly used
    state = b.state_dict()
    assert state["sample_X"].shape == ((online_chunk_steps(2, D_IN, 1) - 100) * 2, D_IN)
    c = _solver(**dict(kw, seed=99))
    c.load_state_dict(state)
    c.step(200)
    assert c.k == 300 and np.array_equal(c.theta, a.theta)
    # through an HDF5 checkpoint
    path = tmp_path / "run.h5"
    with RunStore.create(path, config_text="", seed=0, quantities=["loss"]) as st:
        st.write_checkpoint(state, step=100, t=b.t)
        ck = st.read_checkpoint()
    e = _solver(**dict(kw, seed=7))
    e.load_state_dict(ck["state"])
    e.step(200)
    assert np.array_equal(e.theta, a.theta)
    # an empty buffer is stored as None and restored as empty
    f = _solver(**kw)
    st0 = f.state_dict()
    assert st0["sample_X"] is None and st0["sample_Y"] is None
    with RunStore.create(tmp_path / "r0.h5", config_text="", seed=0, quantities=["loss"]) as st:
        st.write_checkpoint(st0, step=0, t=0.0)
        ck0 = st.read_checkpoint()
    g = _solver(**dict(kw, seed=5))
    g.load_state_dict(ck0["state"])
    g.step(300)
    assert np.array_equal(g.theta, a.theta)


def test_old_checkpoint_without_sample_buffer_loads():
    s = _solver("fixed")
    s.step(10)
    state = s.state_dict()
    del state["sample_X"], state["sample_Y"]
    t = _solver("fixed", seed=1)
    t.load_state_dict(state)
    assert t._sX is None
    t.step(5)                          # draws a new chunk
    assert t.k == 15 and np.all(np.isfinite(t.theta))


# ---------------------------------------------------------------------------- chunk rule
class _Recorder:
    """Wraps a sampler and records the sizes it is asked for."""

    def __init__(self, sampler):
        self.inner, self.calls = sampler, []
        self.d, self.q = sampler.d, sampler.q

    def sample(self, n, rng):
        self.calls.append(n)
        return self.inner.sample(n, rng)


@pytest.mark.parametrize("fused", [True, False])
def test_chunked_draws_rule(fused):
    rec = _Recorder(mmn_gaussians_sampler(d=D_IN, delta=0.6))
    s = LangevinSolver(_model("fixed"), None, N=30, dt=0.05, batch=3, sampler=rec, seed=0)
    s.fused = fused
    K = online_chunk_steps(3, D_IN, 1)
    assert K == ONLINE_CHUNK
    s.step(1)
    s.step(2 * K)
    assert rec.calls == [3 * K] * 3
    # the rows served are the chunk's rows in order
    rng = np.random.default_rng(0)
    ref = LangevinSolver(_model("fixed"), None, N=30, dt=0.05, batch=3, sampler=rec, seed=0)
    rng.bit_generator.state = ref.rng.bit_generator.state
    X, Y = rec.inner.sample(3 * K, rng)
    X0, Y0 = ref.sample_batch()
    X1, _ = ref.sample_batch()
    np.testing.assert_array_equal(X0, X[:3])
    np.testing.assert_array_equal(Y0, Y[:3])
    np.testing.assert_array_equal(X1, X[3:6])


def test_chunk_size_bounded_for_large_batches():
    assert online_chunk_steps(1, 40, 1) == ONLINE_CHUNK
    K = online_chunk_steps(512, 3072, 10)
    assert 1 <= K < ONLINE_CHUNK and K * 512 * 3082 * 8 <= 1 << 24
    assert online_chunk_steps(10 ** 6, 10 ** 3, 1) == 1


def test_kinetic_online_split_bitwise():
    """Chunked draws serve every driver: the heavy-ball solver is split-invariant too."""
    sampler = teacher_student_sampler(d=D_IN, k_star=2, seed=0)
    model = make_model("two_layer", d=D_IN, q=1, bias=True)

    def make():
        return KineticSolver(model, None, N=40, dt=0.05, gamma=2.0, beta=50.0, batch=2,
                             sampler=sampler, seed=4)
    a = make()
    a.step(300)
    b = make()
    for m in (1, 128, 171):
        b.step(m)
    assert np.array_equal(a.theta, b.theta) and np.array_equal(a.r, b.r)


# ---------------------------------------------------------------------------- two parts
def test_part_bounds_depend_on_N_only():
    from mfpde.kernels.online import PART_ALIGN, PARTS_MIN_N, part_bounds
    assert part_bounds(PARTS_MIN_N - 1).tolist() == [0, PARTS_MIN_N - 1]
    for N in (PARTS_MIN_N, 800, 1003, 4097):
        b = part_bounds(N)
        assert b[0] == 0 and b[2] == N and b[1] % PART_ALIGN == 0 and abs(N - 2 * b[1]) < 2 * PART_ALIGN


@pytest.mark.parametrize("case,batch,beta", [
    ("fixed", 1, np.inf),
    ("trainable_bias", 1, 40.0),
    ("vector_q2", 3, 25.0),
    ("sigmoid_fixed", 2, np.inf),
    ("erf_batch", 1, np.inf),
])
def test_two_parts_equal_the_generic_path_on_one_and_two_threads(case, batch, beta):
    """From PARTS_MIN_N particles the fused kernel runs two parts, on two threads when Numba
    has two: the same bits as on one thread, and the generic path's numbers to 1e-12."""
    import numba
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two Numba threads")
    N = 1003
    runs = {}
    saved = numba.get_num_threads()
    try:
        for fused, threads in ((False, 2), (True, 1), (True, 2)):
            numba.set_num_threads(threads)
            s = _solver(case, fused=fused, N=N, batch=batch, beta=beta)
            assert s._fused_ok() is fused
            s.step(200)
            runs[fused, threads] = s
    finally:
        numba.set_num_threads(saved)
    one, two, generic = runs[True, 1], runs[True, 2], runs[False, 2]
    assert np.array_equal(one.theta, two.theta) and one.last_risk == two.last_risk
    assert _rel(two.theta, generic.theta) <= 1e-12
    assert two.last_risk == pytest.approx(generic.last_risk, rel=1e-11)


def test_two_parts_run_on_two_threads(monkeypatch):
    """With two Numba threads part 1 of a large enough problem runs on the thread kept for it;
    from a worker of the mfpde pool both parts run in turn on the calling thread."""
    import threading

    import numba
    from mfpde.kernels import online
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two Numba threads")
    real = online._side_queue
    ran = []

    class Spy:
        def put(self, job):
            def wrapped():
                ran.append(threading.current_thread().name)
                job()
            real().put(wrapped)

    monkeypatch.setattr(online, "_side_queue", Spy)
    _solver("fixed", N=1003).step(10)
    assert ran and all(name == "mfpde-online-1" for name in ran)
    ran.clear()
    box = []
    t = threading.Thread(target=lambda: box.append(_solver("fixed", N=1003).step(10)),
                         name="mfpde-test")
    t.start()
    t.join()
    assert box and not ran


@pytest.mark.parametrize("failing", [0, 1])
def test_a_failing_part_stops_the_other(monkeypatch, failing):
    """If one part of the two-thread kernel fails, the other stops at its next exchange: the
    call raises instead of hanging, and the next call runs normally."""
    import threading

    import numba
    from mfpde.kernels import online
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two Numba threads")
    real = online._online_run

    def flaky(*args):
        if args[10] == failing:                   # the part index
            raise RuntimeError("part failed")
        return real(*args)

    monkeypatch.setattr(online, "_online_run", flaky)
    result = []

    def run():
        try:
            _solver("fixed", N=1003).step(50)
        except RuntimeError as exc:
            result.append(str(exc))

    t = threading.Thread(target=run, name="test-caller", daemon=True)
    t.start()
    t.join(timeout=120)
    assert not t.is_alive(), "the kernel hung"
    assert result == ["part failed"]
    monkeypatch.setattr(online, "_online_run", real)
    a, b = _solver("fixed", N=1003), _solver("fixed", N=1003)
    a.step(50)
    saved = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        b.step(50)
    finally:
        numba.set_num_threads(saved)
    assert np.array_equal(a.theta, b.theta)
