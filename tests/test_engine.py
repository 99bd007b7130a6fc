"""The stepping engine: controller, trackers, observable registry, and the three recipes of
docs/architecture.md (add a driver, add an observable, add a tracker)."""
import math

import numpy as np
import pytest

from mfpde.engine import (CallbackTracker, CheckpointTracker, Controller, FinitenessTracker,
                          Interval, MemorySink, NumericalError, SeriesTracker, SnapshotTracker,
                          SteadyStateTracker, StopFlag, Tracker, WallClockTracker, check_driver,
                          every)
from mfpde.observables import Observers, _REGISTRY, observable


# --------------------------------------------------------------------------------------------
# recipe 1: add a driver
# --------------------------------------------------------------------------------------------

class DecayDriver:
    """Exact flow of dx/dt = -a x on N particles, sampled every dt: x_k = x_0 exp(-a k dt).

    The smallest driver: ``k``, ``t``, ``dt``, ``step``, ``state_dict``, ``load_state_dict``,
    ``fields`` and ``last_risk``."""

    def __init__(self, x0, a=1.0, dt=0.1):
        self.theta = np.array(x0, dtype=float).reshape(-1, 1)
        self.a, self.dt, self.k = float(a), float(dt), 0
        self.last_risk = float("nan")
        self._c = math.exp(-self.a * self.dt)

    @property
    def t(self):
        return self.k * self.dt

    def step(self, n=1, t_end=math.inf):
        for _ in range(int(n)):
            self.theta *= self._c
            self.k += 1

    def state_dict(self):
        return {"theta": self.theta.copy(), "k": self.k}

    def load_state_dict(self, state):
        self.theta[...] = state["theta"]
        self.k = int(state["k"])

    def fields(self):
        return {"theta": self.theta}


# --------------------------------------------------------------------------------------------
# recipe 2: add an observable (one function, registered by name with what it needs)
# --------------------------------------------------------------------------------------------

@observable("test_mean_square", needs=("theta",), doc="E|theta|^2 (test observable)")
def _mean_square(ctx):
    return float(np.mean(ctx.theta ** 2))


# --------------------------------------------------------------------------------------------
# recipe 3: add a tracker
# --------------------------------------------------------------------------------------------

class MaxTracker(Tracker):
    """Keeps the largest |theta| seen at its events."""

    def __init__(self, interval):
        self.interval = interval
        self.max = 0.0
        self.steps = []

    def handle(self, driver, info):
        self.max = max(self.max, float(np.abs(driver.fields()["theta"]).max()))
        self.steps.append(driver.k)


def test_recipes_driver_observable_tracker_against_the_closed_form():
    drv = DecayDriver([1.0, -2.0, 3.0], a=0.5, dt=0.1)
    check_driver(drv)
    sink = MemorySink()
    obs = Observers(["test_mean_square"])
    mx = MaxTracker(every(steps=7))
    info = Controller(drv, [SeriesTracker(obs, sink, every(steps=5)), mx], n_steps=23).run()
    assert info.status == "complete" and drv.k == 23
    s = sink.arrays()
    assert list(s["step"]) == [0, 5, 10, 15, 20, 23]             # step 0, interval, the end
    expected = np.mean(np.array([1.0, 4.0, 9.0])) * np.exp(-2 * 0.5 * s["t"])
    np.testing.assert_allclose(s["test_mean_square"], expected, rtol=1e-13)
    assert mx.steps == [7, 14, 21, 23]
    assert mx.max == pytest.approx(3.0 * math.exp(-0.5 * 0.7), rel=1e-13)
    assert "test_mean_square" in _REGISTRY


def test_time_end_on_a_fixed_step_driver_and_time_interval():
    drv = DecayDriver([1.0], dt=0.1)
    sink = MemorySink()
    Controller(drv, [SeriesTracker(Observers(["test_mean_square"]), sink, every(time=0.5))],
               t_end=2.0).run()
    assert drv.k == 20
    np.testing.assert_allclose(sink.arrays()["t"], [0.0, 0.5, 1.0, 1.5, 2.0], atol=1e-12)


def test_chunked_stepping_is_bitwise_the_same_as_single_steps():
    """The controller steps in chunks; particle drivers give the same bits however the steps
    are split (online fused SGD, noisy Langevin, kinetic)."""
    from mfpde.data import make_dataset
    from mfpde.dynamics import KineticSolver, LangevinSolver
    from mfpde.models import make_model

    data = make_dataset("teacher_student", seed=1, n=64, d=3, k_star=2)
    sampler = make_dataset("teacher_student", seed=1, n=64, d=3, k_star=2, online=True)
    model = make_model("two_layer", d=3, q=1)
    makers = [lambda: LangevinSolver(model, None, N=50, dt=0.05, batch=4, sampler=sampler,
                                     beta=100.0, seed=2),
              lambda: LangevinSolver(model, data, N=50, dt=0.05, beta=50.0, seed=3),
              lambda: KineticSolver(model, data, N=50, dt=0.05, gamma=2.0, beta=50.0, seed=4)]
    for make in makers:
        a, b = make(), make()
        for _ in range(300):
            a.step(1)
        ctl = Controller(b, [], n_steps=300)
        ctl.chunk_seconds = 1e-4            # many chunk-size changes
        ctl.run()
        assert np.array_equal(a.theta, b.theta)


def test_checkpoint_resume_through_the_controller_is_bitwise():
    from mfpde.data import make_dataset
    from mfpde.dynamics import LangevinSolver
    from mfpde.models import make_model

    data = make_dataset("teacher_student", seed=1, n=64, d=3, k_star=2)
    model = make_model("two_layer", d=3, q=1)
    ref = LangevinSolver(model, data, N=40, dt=0.05, beta=30.0, batch=8, seed=5)
    Controller(ref, n_steps=120).run()
    a = LangevinSolver(model, data, N=40, dt=0.05, beta=30.0, batch=8, seed=5)
    sink = MemorySink()
    stop = {"at": 47}
    cb = CallbackTracker(lambda d, info: d.k >= stop["at"], Interval(each_event=True))
    info = Controller(a, [CheckpointTracker(sink, every(steps=10)), cb,
                          MaxTracker(every(steps=1))], n_steps=120).run()
    assert info.status == "stopped" and a.k == 47
    assert sink.checkpoint_step == 47                      # stopped runs are checkpointed
    b = LangevinSolver(model, data, N=40, dt=0.05, beta=30.0, batch=8, seed=99)
    b.load_state_dict(sink.checkpoint)
    Controller(b, n_steps=120).run()
    assert np.array_equal(b.theta, ref.theta)


def test_wall_clock_limit_stops_cleanly_with_a_checkpoint():
    import time

    class Slow(DecayDriver):
        def step(self, n=1, t_end=math.inf):
            time.sleep(0.01 * n)
            super().step(n)

    drv = Slow([1.0])
    sink = MemorySink()
    info = Controller(drv, [CheckpointTracker(sink, every(steps=1000)),
                            WallClockTracker(0.3, margin=0.1)], n_steps=10_000).run()
    assert info.status == "stopped" and "wall-clock" in info.reason
    assert 5 <= drv.k < 10_000 and sink.checkpoint_step == drv.k


def test_steady_state_stop():
    drv = DecayDriver([1.0], a=2.0, dt=0.1)
    sink = MemorySink()
    obs = Observers(["test_mean_square"])
    info = Controller(drv, [SeriesTracker(obs, sink, every(steps=10)),
                            SteadyStateTracker(["test_mean_square"], every(steps=10),
                                               atol=1e-6, patience=2)], n_steps=10_000).run()
    assert info.status == "stopped" and "steady state" in info.reason
    v = sink.arrays()["test_mean_square"]
    assert abs(v[-1] - v[-2]) <= 1e-6 and abs(v[-2] - v[-3]) <= 1e-6 and drv.k < 1000


def test_finiteness_tracker_stops_on_nan_and_names_the_field():
    drv = DecayDriver([1.0, 2.0], a=-300.0, dt=1.0)              # grows like exp(300 k)
    sink = MemorySink()
    with np.errstate(over="ignore"), pytest.raises(NumericalError, match="non-finite theta"):
        Controller(drv, [FinitenessTracker(), CheckpointTracker(sink, every(steps=1))],
                   n_steps=5).run()
    assert np.isfinite(sink.checkpoint["theta"]).all()          # last good state kept


def test_snapshot_tracker_and_memory_sink():
    drv = DecayDriver([1.0, 2.0])
    sink = MemorySink()
    Controller(drv, [SnapshotTracker(sink, every(steps=4), initial=True)], n_steps=10).run()
    assert [k for k, _, _ in sink.snapshots] == [0, 4, 8, 10]
    np.testing.assert_allclose(sink.snapshots[-1][2]["theta"][:, 0],
                               [math.exp(-1.0), 2 * math.exp(-1.0)], rtol=1e-13)


def test_adaptive_grid_driver_hits_the_interval_times():
    from mfpde.meanfield.grid import FVSolver, Grid1D, gaussian_cell_averages, ou_potential

    g = Grid1D(-5.0, 5.0, 80)
    s = FVSolver(g, ou_potential(g, 1.0), gaussian_cell_averages(g, 0.5, 0.3), beta=2.0)
    assert s.dt is None
    sink = MemorySink()
    obs = Observers(["free_energy", "mass_drift"])
    Controller(s, [SeriesTracker(obs, sink, every(time=0.1))], t_end=0.5).run()
    a = sink.arrays()
    np.testing.assert_allclose(a["t"], [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], atol=1e-12)
    assert np.all(np.diff(a["free_energy"]) <= 0) and np.all(a["mass_drift"] < 1e-12)


def test_observers_need_errors():
    drv = DecayDriver([1.0])
    with pytest.raises(ValueError, match="free_energy"):
        Observers(["free_energy"]).check(drv)
    with pytest.raises(ValueError, match="unknown observed quantities"):
        Observers(["no_such_quantity"])


def test_stop_flag_interrupts_between_chunks():
    import os
    import signal

    drv = DecayDriver([1.0])
    sink = MemorySink()

    def kill(d, info):
        if d.k == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return False

    with StopFlag() as stop:
        info = Controller(drv, [CallbackTracker(kill, every(steps=1)),
                                CheckpointTracker(sink, every(steps=100))],
                          n_steps=100, stop=stop).run()
    assert info.status == "interrupted" and info.signum == signal.SIGTERM
    assert sink.checkpoint_step == drv.k and drv.k < 100


def test_a_poll_stop_at_an_event_step_lets_the_event_happen_first():
    """A wall-clock style stop raised between chunks exactly at an event step: the series row
    and the checkpoint of that step are both written (a resumed run misses no row)."""
    from mfpde.engine import StopRun

    class StopAt(Tracker):
        polls = True

        def poll(self, driver, info):
            if driver.k >= 10:
                raise StopRun(f"stop at {driver.k}")

    drv = DecayDriver([1.0])
    sink = MemorySink()
    info = Controller(drv, [SeriesTracker(Observers(["test_mean_square"]), sink, every(steps=10)),
                            StopAt(), CheckpointTracker(sink, every(steps=100))],
                      n_steps=100).run()
    assert info.status == "stopped" and drv.k == 10
    assert list(sink.arrays()["step"]) == [0, 10]
    assert sink.checkpoint_step == 10
