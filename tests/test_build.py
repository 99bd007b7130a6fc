"""mfpde.build: every bundled example builds its driver through build(), the driver steps and
restores its state; the raw-unit trainer converts its hyper-parameters; bad input names the
section."""
import math
from pathlib import Path

import numpy as np
import pytest

from mfpde.build import BUILDERS, Built, build, resolve_config
from mfpde.config import ConfigError, load_config, parse_config
from mfpde.engine.protocol import check_driver
from mfpde.rules import DRIVERS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "validation").glob("example_*.toml"))
RUNS = [p for p in EXAMPLES if "[compare]" not in p.read_text()
        and "[sparse]" not in p.read_text()]


def _fields(driver):
    return {k: np.array(v, copy=True) for k, v in driver.fields().items()}


def test_a_builder_for_every_driver():
    assert set(BUILDERS) == set(DRIVERS)


@pytest.mark.parametrize("path", RUNS, ids=[p.stem for p in RUNS])
def test_bundled_example_builds_and_steps(path):
    cfg = load_config(path)
    b = build(cfg)
    assert isinstance(b, Built) and b.config.frozen
    d = b.driver
    check_driver(d)
    assert b.quantities == tuple(cfg.observe.quantities)
    if cfg.dynamics.spec.fixed_step:
        assert b.n_steps == cfg.dynamics.n_steps > 0 and not b.adaptive
        assert math.isclose(b.t_end, b.n_steps * d.dt)
    else:
        assert b.n_steps is None and b.adaptive and b.t_end == cfg.dynamics.t_end
    t_end = b.t_end if b.adaptive else math.inf
    assert d.k == 0 and d.t == 0.0
    state = d.state_dict()
    d.step(2, t_end)
    d.step(1, t_end)
    assert d.k == 3 and d.t > 0
    after = _fields(d)
    values = b.observers(d)
    assert list(values) == list(b.quantities)
    assert all(math.isfinite(v) for q, v in values.items() if q not in b.observers.may_be_nan)
    # the complete state: restored, the driver repeats the same steps bitwise
    d.load_state_dict(state)
    assert d.k == 0
    d.step(3, t_end)
    again = _fields(d)
    assert set(again) == set(after)
    for name in after:
        assert np.array_equal(after[name], again[name]), name


def test_resolve_config_fills_q_from_the_data():
    cfg = load_config(ROOT / "validation" / "example_two_layer.toml")
    assert cfg.model.q is None
    r = resolve_config(cfg)
    assert r.model.q == 1 and cfg.model.q is None and r.frozen
    assert build(cfg).config == r


def test_raw_units_trainer_converts_hyper_parameters():
    b = build(load_config(ROOT / "validation" / "example_raw_sgd.toml"))
    d, dyn = b.driver, b.config.dynamics
    assert d.dt == pytest.approx(dyn.lr / dyn.N)                       # eps = lr / N
    assert d.model.lam == pytest.approx(dyn.N * dyn.weight_decay)      # lam = N wd
    assert b.beta == pytest.approx(2 * d.dt / dyn.noise_std ** 2)      # beta = 2 eps / s^2
    h = build(load_config(ROOT / "validation" / "example_raw_shb.toml"))
    dh, dyn = h.driver, h.config.dynamics
    eps = math.sqrt(dyn.lr / dyn.N)
    assert dh.dt == pytest.approx(eps) and dh.gamma == pytest.approx((1 - dyn.momentum) / eps)
    assert dh.form == "polyak"


def test_mean_field_trainer_is_the_langevin_driver():
    """make_trainer(method='sgd') in mean-field units steps exactly like solver = 'langevin'."""
    base = (ROOT / "validation" / "example_two_layer.toml").read_text()
    common = ["dynamics.steps=5", "dynamics.batch=16", "dynamics.N=50"]
    a = build(parse_config(base, common))
    b = build(parse_config(base, common + ["dynamics.solver=trainer", "dynamics.method=sgd"]))
    a.driver.step(5)
    b.driver.step(5)
    assert np.array_equal(a.driver.theta, b.driver.theta)


@pytest.mark.parametrize("override, words", [
    (["model.d=3"], ["model.d = 3", "d = 5"]),
    (["model.q=2"], ["model.q = 2", "q = 1"]),
    (["dynamics.batch=1000"], ["dynamics.batch = 1000", "n = 500"]),
    (["observe.quantities=['hamiltonian']"], ["need dynamics.solver"]),
    (["observe.quantities=['nc1']"], ["observe.quantities", "labels"]),
])
def test_bad_input_names_the_field(override, words):
    cfg = load_config(ROOT / "validation" / "example_two_layer.toml", override)
    with pytest.raises(ConfigError) as info:
        build(cfg)
    msg = str(info.value)
    for w in words:
        assert w in msg, (w, msg)


def test_grid_model_potential_dimension_is_checked():
    text = (ROOT / "validation" / "example_fv_model.toml").read_text()
    cfg = parse_config(text, ["grid.lo=-3.0", "grid.hi=3.0", "grid.J=20", "grid.init_mean=0.0",
                              "grid.init_var=0.5"])
    with pytest.raises(ConfigError, match=r"\[grid\].*dimension"):
        build(cfg)


def test_compare_configs_are_jobs():
    cfg = load_config(ROOT / "validation" / "example_compare.toml")
    with pytest.raises(ConfigError, match="comparison job"):
        build(cfg)


def test_memory_estimate_of_a_split_run_counts_the_rows_of_each_rank():
    from mfpde.build import STATE_COPIES, memory_estimate
    from mfpde.config import load_config
    from mfpde.models.readout import KEEP_STATE
    from mfpde.parallel import Layout

    cfg = load_config(Path(__file__).resolve().parent.parent / "validation" /
                      "example_two_layer.toml", ["dynamics.N=1000000"])
    whole, top = memory_estimate(cfg)
    assert top == "particles"
    assert memory_estimate(cfg, Layout(1_000_000, 1).partition(0))[0] == whole
    layout = Layout(1_000_000, 4)
    parts = [memory_estimate(cfg, layout.partition(r)) for r in range(4)]
    fixed = memory_estimate(load_config(Path(__file__).resolve().parent.parent / "validation" /
                                        "example_two_layer.toml", ["dynamics.N=1"]))[0]
    state = whole - fixed                          # what grows with N
    for r in (1, 2, 3):                            # the other ranks hold their rows only
        lo, hi = layout.rows[r]
        assert parts[r][0] - fixed == pytest.approx(state * (hi - lo) / 1_000_000, rel=1e-4)
    # the term of N: the Langevin state's copies and the kept tiles of the sweep (memory
    # "auto" at 10^6 particles); rank 0 also holds two copies of the gathered state
    copies = STATE_COPIES["langevin"] + KEEP_STATE
    lo, hi = layout.rows[0]                        # rank 0: its rows and the gathered state
    assert parts[0][0] - fixed == pytest.approx(state * (hi - lo) / 1e6 + state * 2 / copies,
                                                rel=1e-3)


def test_memory_estimate_of_a_split_comparison_reference():
    """A rank of a split ``[compare]`` reference counts its rows; rank 0 also the networks,
    the gathered reference and the sorted projections of ``sw2_ref``; one process counts
    the projections too."""
    from mfpde.build import memory_estimate
    from mfpde.parallel import Layout

    N = 2_000_000
    cfg = load_config(ROOT / "validation" / "example_compare.toml",
                      [f"compare.reference.N={N}"])
    cc = cfg.compare
    D = 5 + max(cc.model.p, 1) + 1               # as the estimate counts it
    whole = memory_estimate(cfg)[0]
    small = memory_estimate(load_config(ROOT / "validation" / "example_compare.toml",
                                        ["compare.reference.N=256"]))[0]
    per_particle = (whole - small) / (N - 256)
    assert per_particle == pytest.approx(8 * 3 * D + 16 * cc.n_projections)
    layout = Layout(N, 4)
    parts = [memory_estimate(cfg, layout.partition(r))[0] for r in range(4)]
    lo, hi = layout.rows[1]
    assert parts[1] < whole / 3
    assert parts[1] - parts[2] == pytest.approx(8 * 3 * D * ((hi - lo) - (layout.rows[2][1]
                                                                        - layout.rows[2][0])))
    lo, hi = layout.rows[0]
    net = sum(cc.widths) * len(cc.dts)
    assert parts[0] - parts[1] == pytest.approx(
        8 * 3 * D * ((hi - lo) + net - (layout.rows[1][1] - layout.rows[1][0]))
        + 16 * cc.n_projections * N + 8 * D * N)
