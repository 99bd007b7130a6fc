"""Comparison runs (mfpde.compare): rate fits, config, the HDF5 file, figures."""
import math

import h5py
import numpy as np
import pytest

from mfpde.compare import (CompareConfigError, fit_rate, parse_compare, plot_rate, read_compare,
                           run_compare, run_name)


# ----------------------------------------------------------------------------- rate fits
def test_fit_exact_power_law():
    x = np.array([64, 128, 256, 512, 1024.0])
    err = np.vstack([3.0 * x ** -0.5, 5.0 * x ** -0.5])
    f = fit_rate(x, err, n_boot=200)
    assert f.slope == pytest.approx(-0.5, abs=1e-12)
    assert f.C == pytest.approx(4.0, rel=1e-12)
    assert f.ci_low == pytest.approx(-0.5, abs=1e-12) and f.ci_high == pytest.approx(-0.5, abs=1e-12)


def test_fit_bootstrap_interval_covers_and_shrinks():
    rng = np.random.default_rng(0)
    x = np.array([64, 128, 256, 512, 1024, 2048.0])
    widths = []
    hits = 0
    for rep in range(20):
        err = 2.0 * x ** -0.5 * np.exp(0.4 * rng.standard_normal((16, x.size)))
        f = fit_rate(x, err, n_boot=400, seed=rep)
        hits += f.contains(-0.5)
        widths.append(f.ci_high - f.ci_low)
        assert f.ci_low < f.slope < f.ci_high
    assert hits >= 15                       # nominal 95 %: at least 15 of 20
    err4 = 2.0 * x ** -0.5 * np.exp(0.4 * rng.standard_normal((4, x.size)))
    f4 = fit_rate(x, err4, n_boot=400)
    assert f4.ci_high - f4.ci_low > np.median(widths)
    g = fit_rate(x, err, agg="geomean", n_boot=50)
    assert g.slope == pytest.approx(np.polyfit(np.log(x), np.log(err).mean(0), 1)[0])
    assert "bootstrap" in f.summary()


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError):
        fit_rate([1, 1], [[1.0, 2.0]])
    with pytest.raises(ValueError):
        fit_rate([1, 2], [[1.0, -2.0]])
    one = fit_rate([1, 2, 4], [[1.0, 0.7, 0.5]])
    assert math.isnan(one.ci_low)               # one seed: no interval


def test_plot_rate(tmp_path):
    x = np.array([10, 20, 40.0])
    f = fit_rate(x, [[1, 0.7, 0.5], [1.1, 0.8, 0.55]], n_boot=50)
    p = plot_rate(f, tmp_path / "r.png", title="t")
    assert (tmp_path / "r.png").stat().st_size > 1000 and p.endswith("r.png")


# ----------------------------------------------------------------------------- config
BASE = {"compare": {
    "method": "gd", "widths": [8, 16, 32], "seeds": 2, "dts": [0.1], "T": 0.2, "n_records": 2,
    "test_n": 20,
    "model": {"kind": "two_layer", "d": 3},
    "data": {"kind": "teacher_student", "n": 24, "d": 3, "k_star": 2, "seed": 1},
    "reference": {"N": 128},
}}


def _cfg(**kw):
    import copy
    c = copy.deepcopy(BASE)
    for k, v in kw.items():
        if "." in k:
            a, b = k.split(".")
            c["compare"][a][b] = v
        else:
            c["compare"][k] = v
    return c


@pytest.mark.parametrize("change,msg", [
    ({"widht": [1]}, "unknown key compare.widht (did you mean 'widths'"),
    ({"method": "adam"}, "compare.method"),
    ({"batch": 4}, "compare.batch: method 'gd' is full batch"),
    ({"method": "sgd"}, "compare.batch: method 'sgd' needs batch"),
    ({"widths": [8, 1000]}, "compare.widths: width 1000 exceeds"),
    ({"reference.N": -3}, "compare.reference.N"),
    ({"beta": 2.0}, "compare.beta"),
    ({"method": "shb"}, "compare.gamma"),
    ({"fit": {"x": "T"}}, "compare.fit.x"),
    ({"data.nn": 3}, "compare.data.nn"),
    ({"seeds": [1, 1]}, "compare.seeds: repeated"),
])
def test_config_errors_name_the_field(change, msg):
    with pytest.raises(CompareConfigError, match=msg.replace("(", "\\(").replace(")", "\\)")):
        parse_compare(_cfg(**change))


def test_config_defaults():
    s = parse_compare(BASE)
    assert s.seeds == [0, 1] and s.fit["x"] == "N" and s.fit["ref_slope"] == -0.5
    assert s.reference["batch"] == "same" and s.reference["dt"] is None
    s = parse_compare(_cfg(fit={"x": "dt"}, dts=[0.1, 0.05]))
    assert s.fit["ref_slope"] == 0.5
    pn = parse_compare(_cfg(model={"kind": "pham_nguyen", "d": 3}, method="sgd", widths=[4, [6, 8]],
                            **{"reference.N": [8, 8]}))
    assert pn.widths == [[4, 4], [6, 8]]


# ----------------------------------------------------------------------------- runs
def test_run_compare_file_layout(tmp_path):
    out = tmp_path / "cmp.h5"
    res = run_compare(BASE, out, quiet=True)
    assert res.path == str(out) and set(res.fits) == {"N_dt0.1"}
    with h5py.File(out, "r") as h5:
        assert h5.attrs["format"] == "mfpde-compare" and h5.attrs["status"] == "complete"
        runs = set(h5["compare"])
        assert runs == {run_name(N, s, 0.1) for N in (8, 16, 32) for s in (0, 1)}
        g = h5["compare/N16_seed1_dt0.1"]
        assert g.attrs["N"] == 16 and g.attrs["seed"] == 1 and g.attrs["N_ref"] == 128
        gs = g["series"]
        assert gs["t"][()].tolist() == pytest.approx([0.0, 0.1, 0.2])
        for q in ("coupling_mean", "coupling_rms", "coupling_max", "output_gap", "loss_gap",
                  "loss_N", "risk_ref"):
            assert gs[q].shape == (3,)
        assert gs["coupling_rms"][0] == 0 and gs["coupling_rms"][-1] > 0
        assert g.attrs["w2_method"] == "exact" and g.attrs["sw2_ref_T"] > 0
        assert set(h5["references"]) == {"seed0_dt0.1", "seed1_dt0.1"}
        fg = h5["fits/N_dt0.1"]
        assert fg["err"].shape == (2, 3) and fg.attrs["slope"] == pytest.approx(res.fits["N_dt0.1"].slope)
        # the fitted errors are the stored final coupling distances
        assert fg["err"][1, 1] == pytest.approx(gs["coupling_rms"][-1])
    back = read_compare(out)
    assert back["config"]["widths"] == [8, 16, 32]
    assert back["runs"]["N8_seed0_dt0.1"]["series"]["coupling_rms"].shape == (3,)
    assert back["fits"]["N_dt0.1"]["attrs"]["quantity"] == "coupling_rms"
    assert len(res.figures) == 1 and (tmp_path / "cmp_N_dt0.1.png").exists()


def test_run_compare_toml_eps_sweep_and_pn(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("""
[compare]
method = "sgd"
batch = 2
sampling = "resample"
widths = [16]
seeds = [0, 3]
dts = [0.1, 0.05]
T = 0.2
n_records = 1
test_n = 10
figure = false
[compare.model]
kind = "two_layer"
d = 3
[compare.data]
kind = "teacher_student"
n = 20
d = 3
k_star = 2
[compare.reference]
N = 16
dt = 0.025
batch = "full"
[compare.fit]
x = "dt"
quantity = "output_gap"
""")
    res = run_compare(toml, tmp_path / "e.h5", quiet=True)
    f = res.fits["dt_N16"]
    assert f.x.tolist() == [0.1, 0.05] and f.err.shape == (2, 2) and f.ref_slope == 0.5
    assert res.figures == []
    pn = _cfg(model={"kind": "pham_nguyen", "d": 3}, method="shb", gamma=2.0, widths=[4, 8],
              **{"reference.N": [16, 12]})
    r2 = run_compare(pn, tmp_path / "pn.h5", quiet=True)
    with h5py.File(tmp_path / "pn.h5", "r") as h5:
        g = h5["compare/n8x8_seed0_dt0.1"]
        assert g.attrs["n1"] == 8 and g.attrs["n1_ref"] == 16 and "phase_max" in g["series"]
    assert r2.fits["N_dt0.1"].x_name == "n_min"


# ----------------------------------------------------------------------------- the rates (slow)
@pytest.mark.slow
def test_two_layer_rate_in_N(tmp_path):
    """Done-means: noiseless full-batch GD, N = 64..4096, 16 seeds, N_ref = 32 max N."""
    from mfpde.validation.cases_compare import rate_N_config
    res = run_compare(rate_N_config("full"), tmp_path / "n.h5")
    f = res.fits["N_dt0.1"]
    print(f.summary())
    assert -0.6 <= f.slope <= -0.4


@pytest.mark.slow
def test_two_layer_rate_in_eps(tmp_path):
    """Done-means: online SGD (B = 1) at N = 4096, error against eps has slope in [0.35, 0.65]."""
    from mfpde.validation.cases_compare import rate_eps_config
    res = run_compare(rate_eps_config("full"), tmp_path / "e.h5")
    f = res.fits["dt_N4096"]
    print(f.summary())
    assert 0.35 <= f.slope <= 0.65
