"""Synchronous coupling (mfpde.coupling): shared initial particles, noise and batches."""
import math

import numpy as np
import pytest

from mfpde.coupling import (_SlicedToReference, couple_pn, couple_readout, pool_sampler,
                            record_times)
from mfpde.data import make_dataset
from mfpde.metrics.ot import sliced_w2, sphere_directions
from mfpde.models import make_model
from mfpde.models.three_layer_pn import PNThreeLayer


@pytest.fixture(scope="module")
def data():
    return make_dataset("teacher_student", seed=0, n=40, d=3, k_star=2)


@pytest.fixture(scope="module")
def test_set():
    s = make_dataset("teacher_student", seed=0, d=3, k_star=2, online=True)
    return s.test_set(30, seed=5)


@pytest.mark.parametrize("method,kw", [
    ("gd", {}),
    ("noisy_sgd", {"beta": 20.0, "batch": 8}),
    ("sgd", {"batch": 8, "sampling": "resample"}),
    ("shb", {"gamma": 2.0, "batch": 8, "beta": 50.0}),
    ("shb_polyak", {"gamma": 2.0}),
])
def test_full_width_network_is_the_reference(data, test_set, method, kw):
    """N = N_ref: same particles, same noise rows, same batches -> identical trajectories."""
    model = make_model("nc", d=3, q=1, p=2) if method == "noisy_sgd" else make_model("two_layer", d=3)
    run = couple_readout(model, data, N_ref=64, widths=[64, 16], dts=[0.05], T=0.5,
                         method=method, seed=3, test=test_set, n_records=2, **kw)
    full = run.results[(64, 0.05)]
    assert full.attrs["shared_batches"] == ("batch" in kw)
    tol = 1e-12 if method == "shb_polyak" else 0.0          # Polyak vs velocity reference
    for q in ("coupling_max", "output_gap", "loss_gap"):
        assert np.all(full.series[q] <= tol), (q, full.series[q])
    if "gamma" in kw:
        assert np.all(full.series["phase_max"] <= 1e-9)
    small = run.results[(16, 0.05)]
    assert small.series["coupling_rms"][0] == 0.0 and small.series["coupling_rms"][-1] > 1e-4
    # W2 to the coupled particles never exceeds the coupling distance (identity coupling)
    assert small.final["w2_T"] <= small.series["coupling_rms"][-1] * (1 + 1e-9)
    assert small.final["w2_method"] == "exact"
    assert np.all(np.isfinite(small.series["risk_ref"]))


def test_brownian_path_shared_across_step_sizes(data, test_set):
    """dt = 2 ref_dt: the network's noise is (g1 + g2)/sqrt(2) of the reference rows, so after
    one coarse step the gap is O(eps^{3/2}), far below the noise amplitude sqrt(2 dt / beta)."""
    model = make_model("two_layer", d=3)
    beta, dt = 0.5, 0.02
    run = couple_readout(model, data, N_ref=32, widths=[32], dts=[2 * dt], ref_dt=dt, T=2 * dt,
                         method="noisy_sgd", beta=beta, seed=1, test=test_set, n_records=1)
    gap = run.results[(32, 2 * dt)].series["coupling_rms"][-1]
    amp = math.sqrt(2 * 2 * dt / beta) * math.sqrt(model.D)       # rms size of the increment
    # (with independent noise the gap would be about sqrt(2) * amp)
    assert gap < 0.05 * amp, (gap, amp)


def test_sgd_against_full_batch_reference_not_shared(data, test_set):
    model = make_model("two_layer", d=3)
    run = couple_readout(model, data, N_ref=32, widths=[32], dts=[0.04, 0.02], ref_dt=0.01, T=0.4,
                         method="sgd", batch=1, sampling="resample", ref_batch="full", seed=2,
                         test=test_set, n_records=2)
    assert run.reference["ref_method"] == "gd" and run.reference["ref_batch"] == "full"
    e = [run.results[(32, dt)].series["coupling_rms"][-1] for dt in (0.04, 0.02)]
    assert all(v > 0 for v in e) and not run.results[(32, 0.02)].attrs["shared_batches"]


def test_record_times_checks():
    assert record_times(1.0, 0.1, [0.1, 0.2], 5) == (10, 2, [1, 2])
    with pytest.raises(ValueError, match="multiple"):
        record_times(1.0, 0.1, [0.15], 5)
    with pytest.raises(ValueError, match="divisible"):
        record_times(1.0, 0.1, [0.1], 3)
    with pytest.raises(ValueError, match="record interval"):
        record_times(1.0, 0.1, [0.5], 5)


def test_pool_sampler_draws_rows(data):
    s = pool_sampler(data)
    X, Y = s.sample(500, np.random.default_rng(0))
    rows = {tuple(r) for r in data.X}
    assert all(tuple(r) in rows for r in X) and X.shape == (500, 3)
    assert len({tuple(r) for r in X}) > 30


def test_sliced_to_reference_matches_sliced_w2():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((600, 4))
    proj = sphere_directions(4, 16, seed=1)
    f = _SlicedToReference(ref, proj)
    for N in (50, 600, 70):          # multiple, equal, not a multiple
        X = 0.3 + rng.standard_normal((N, 4))
        assert f(X) == pytest.approx(sliced_w2(X, ref, projections=proj), rel=1e-10)


def test_pn_coupling(data, test_set):
    model = PNThreeLayer(3)
    run = couple_pn(model, data, n_ref=(24, 20), widths=[(24, 20), 8, (12, 6)], dts=[0.05],
                    T=0.5, method="sgd", batch=10, seed=4, test=test_set, n_records=2)
    full = run.results[((24, 20), 0.05)]
    assert np.all(full.series["coupling_max"] == 0) and np.all(full.series["output_gap"] == 0)
    for key in (((8, 8), 0.05), ((12, 6), 0.05)):
        s = run.results[key].series
        assert s["coupling_max"][0] == 0 and s["coupling_max"][-1] > 0
        assert s["coupling_max"][-1] == pytest.approx(max(s["c1_max"][-1], s["c2_max"][-1],
                                                          s["c3_max"][-1]))
        assert s["coupling_rms"][-1] <= math.sqrt(3) * s["coupling_max"][-1]
    shb = couple_pn(model, data, n_ref=16, widths=[16, 8], dts=[0.05], T=0.5, method="shb",
                    gamma=2.0, seed=4, test=test_set, n_records=1)
    assert np.all(shb.results[((16, 16), 0.05)].series["phase_max"] == 0)
    assert shb.results[((8, 8), 0.05)].series["phase_max"][-1] > 0


def test_bad_arguments(data, test_set):
    model = make_model("two_layer", d=3)
    with pytest.raises(ValueError, match="N_ref"):
        couple_readout(model, data, N_ref=8, widths=[16], dts=[0.1], T=0.2, test=test_set)
    with pytest.raises(ValueError, match="ref_dt"):
        couple_readout(model, data, N_ref=8, widths=[4], dts=[0.1, 0.2], T=0.2, test=test_set)
    with pytest.raises(ValueError, match="sampling"):
        couple_readout(model, data, N_ref=8, widths=[4], dts=[0.1], T=0.2, sampling="x")
    with pytest.raises(ValueError, match="full batch"):
        couple_readout(model, data, N_ref=8, widths=[4], dts=[0.1], T=0.2, batch=4,
                       n_records=2, test=test_set)
