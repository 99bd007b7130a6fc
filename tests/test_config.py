"""Configuration: parsing, validation messages, overrides, schedules, TOML round trip."""

import math
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfpde.config import (
    Config,
    ConfigError,
    Schedule,
    dumps,
    load_config,
    make_schedule,
    parse_config,
    parse_override,
)

SPEC = {
    "teacher_student": {"n": 100, "d": 5, "k": 3, "noise": 0.0, "sphere": False,
                        "online": False},
    "well_separated": {"q": 3, "m": 4, "d": 5, "sep": 4.0},
}
QUANTITIES = ["loss", "reg_loss", "free_energy", "nc1", "lemma45"]


def spec(kind):
    if kind not in SPEC:
        raise ValueError(f"unknown data kind {kind!r}; available: " + ", ".join(SPEC))
    return SPEC[kind]


BASE = """
[model]
kind = "two_layer"

[data]
kind = "teacher_student"
n = 50

[dynamics]
N = 10
dt = 0.1
steps = 20
"""

NC = """
[model]
kind = "nc"
p = 4
Gamma = 2.0
lam = 0.05
lam_W = 0.05

[data]
kind = "well_separated"

[dynamics]
N = 100
dt = 0.02
t_end = 1.0
beta = 20

[observe]
quantities = ["nc1", "loss"]
"""


def parse(text=BASE, overrides=()):
    return parse_config(text, overrides, data_spec=spec, quantities_available=lambda: QUANTITIES)


def error(text=BASE, overrides=()):
    with pytest.raises(ConfigError) as info:
        parse(text, overrides)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_defaults_are_filled():
    cfg = parse()
    assert cfg.model.activation == "tanh"
    assert cfg.model.bias is False
    assert cfg.dynamics.beta == math.inf
    assert cfg.dynamics.batch == 0
    assert cfg.dynamics.seed == 0
    assert cfg.data.seed == 1  # dynamics.seed + 1
    assert cfg.data.params == {"n": 50, "d": 5, "k": 3, "noise": 0.0, "sphere": False}
    assert cfg.observe.every == 10 and cfg.observe.quantities == ["loss"]
    assert cfg.output.path == "run.h5" and cfg.output.checkpoint_every == 0
    assert cfg.dynamics.n_steps == 20
    assert isinstance(cfg.dynamics.xi, Schedule) and cfg.dynamics.xi(3.0) == 1.0


def test_data_seed_follows_dynamics_seed():
    assert parse(overrides=["dynamics.seed=7"]).data.seed == 8
    assert parse(overrides=["dynamics.seed=7", "data.seed=3"]).data.seed == 3


def test_nc_config_and_t_end():
    cfg = parse(NC)
    assert cfg.model.kind == "nc" and cfg.model.Gamma == 2.0 and cfg.model.train_W is True
    assert cfg.dynamics.beta == 20.0
    assert cfg.dynamics.n_steps == 50
    kw = cfg.model.make_kwargs(d=5, q=3)
    assert set(kw) == {"kind", "d", "q", "activation", "bias", "output", "p", "Gamma", "lam",
                       "lam_W", "init_scale_a", "init_scale_u", "memory"}


@pytest.mark.parametrize("text", [BASE, NC])
def test_resolved_toml_round_trip(text):
    cfg = parse(text)
    resolved = cfg.to_toml()
    again = parse(resolved)
    assert again == cfg
    assert again.to_toml() == resolved
    # nc-only fields are left out of a two-layer config and vice versa
    if cfg.model.kind == "two_layer":
        assert "Gamma" not in resolved and "output" in resolved
    else:
        assert "Gamma" in resolved and "output =" not in resolved


def test_beta_inf_spellings():
    assert parse(overrides=["dynamics.beta=inf"]).dynamics.beta == math.inf
    assert parse(overrides=['dynamics.beta="inf"']).dynamics.beta == math.inf
    assert parse(overrides=["dynamics.beta=5"]).dynamics.beta == 5.0


def test_overrides_parse_toml_values():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a.b = 0.5") == (["a", "b"], 0.5)
    assert parse_override("a.b=true") == (["a", "b"], True)
    assert parse_override("a.b=tanh") == (["a", "b"], "tanh")  # fallback to a string
    assert parse_override('a.b=["x", "y"]') == (["a", "b"], ["x", "y"])
    assert parse_override("a.b={kind='power', alpha=1}") == (["a", "b"],
                                                             {"kind": "power", "alpha": 1})
    cfg = parse(overrides=["model.activation=relu", "dynamics.N=7", "observe.quantities=nc1"])
    assert cfg.model.activation == "relu" and cfg.dynamics.N == 7
    assert cfg.observe.quantities == ["nc1"]


def test_override_steps_replaces_t_end():
    cfg = parse(NC, ["dynamics.steps=7"])
    assert cfg.dynamics.n_steps == 7 and cfg.dynamics.t_end is None
    cfg = parse(BASE, ["dynamics.t_end=0.5"])
    assert cfg.dynamics.n_steps == 5 and cfg.dynamics.steps is None


def test_schedules():
    xi = make_schedule({"kind": "power", "t0": 2.0, "alpha": 0.5})
    assert xi(0.0) == 1.0
    assert xi(6.0) == pytest.approx(0.5)
    assert make_schedule(0.5)(10.0) == 0.5
    cfg = parse(overrides=["dynamics.xi={kind='power', t0=1, alpha=1}"])
    assert cfg.dynamics.xi(1.0) == pytest.approx(0.5)
    assert '[dynamics.xi]\nkind = "power"' in cfg.to_toml()  # a table (tomli-w)
    assert parse(cfg.to_toml()).dynamics.xi == cfg.dynamics.xi


@pytest.mark.parametrize("override, words", [
    ("dynamics.dt=-0.1", ["dynamics.dt", "-0.1", "> 0"]),
    ("dynamics.dt=0", ["dynamics.dt", "> 0"]),
    ("dynamics.N=0", ["dynamics.N", ">= 1"]),
    ("dynamics.N=2.5", ["dynamics.N", "2.5", "integer"]),
    ('dynamics.N="ten"', ["dynamics.N", "'ten'", "integer"]),
    ("dynamics.steps=-3", ["dynamics.steps", ">= 0"]),
    ("dynamics.beta=-1", ["dynamics.beta", "inf"]),
    ("dynamics.batch=-1", ["dynamics.batch", ">= 0"]),
    ("dynamics.online=3", ["dynamics.online", "true or false"]),
    ("dynamics.solver=euler", ["dynamics.solver", "'langevin'"]),
    ("dynamics.xi=-1", ["dynamics.xi", "> 0"]),
    ("dynamics.xi={kind='pow'}", ["dynamics.xi.kind", "did you mean 'power'"]),
    ("dynamics.xi={kind='power', alpah=1}", ["dynamics.xi.alpah", "did you mean 'alpha'"]),
    ("model.kind=three", ["model.kind", "'two_layer'", "'nc'"]),
    ("model.activation=tahn", ["model.activation", "'tahn'", "did you mean 'tanh'", "'relu'"]),
    ("model.bias=1", ["model.bias", "true or false"]),
    ("model.lam=-1", ["model.lam", ">= 0"]),
    ("model.output=free", ["model.output", "'trainable'", "'fixed'"]),
    ("model.Gamma=2", ["model.Gamma", "applies only to", "'nc'"]),
    ("model.q=0", ["model.q", ">= 1"]),
    ("observe.every=0", ["observe.every", ">= 1"]),
    ("observe.quantities=['loss', 'nc']", ["observe.quantities", "'nc'", "did you mean 'nc1'"]),
    ("observe.quantities=['loss', 'loss']", ["observe.quantities", "duplicate"]),
    ("observe.quantities=[1]", ["observe.quantities", "array of strings"]),
    ("observe.snapshot_particles=11", ["observe.snapshot_particles", "dynamics.N = 10"]),
    ("observe.log_every=0", ["observe.log_every", "> 0"]),
    ("output.checkpoint_every=-5", ["output.checkpoint_every", ">= 0"]),
    ("data.n=ten", ["data.n", "'ten'", "integer"]),
    ("data.noise=high", ["data.noise", "number"]),
    ("data.kind=mnist", ["data.kind", "'mnist'", "teacher_student"]),
    ("data.seed=-1", ["data.seed", ">= 0"]),
])
def test_bad_values_name_field_value_and_range(override, words):
    msg = error(overrides=[override])
    for w in words:
        assert w in msg, (w, msg)


@pytest.mark.parametrize("override, words", [
    ("dynamics.sed=1", ["dynamics.sed", "did you mean 'seed'"]),
    ("dynamics.train_W=false", ["dynamics.train_W", "[model]"]),
    ("model.activaton=relu", ["model.activaton", "did you mean 'activation'"]),
    ("data.nn=3", ["data.nn", "did you mean 'n'"]),
    ("ouput.path=x.h5", ["[ouput]", "did you mean 'output'"]),
])
def test_unknown_keys_get_a_hint(override, words):
    msg = error(overrides=[override])
    for w in words:
        assert w in msg, (w, msg)


def test_unknown_section_in_file():
    msg = error(BASE + "\n[dynamcs]\nN = 3\n")
    assert "[dynamcs]" in msg and "did you mean 'dynamics'" in msg
    msg = error("seed = 3\n" + BASE)
    assert "'seed'" in msg


def test_missing_and_exclusive_fields():
    assert "missing section [data]" in error("[model]\nkind='nc'\n[dynamics]\nN=1\ndt=1\nsteps=1")
    assert "dynamics.N is required" in error(BASE.replace("N = 10", ""))
    assert "model.kind is required" in error(BASE.replace('kind = "two_layer"', ""))
    msg = error(BASE.replace("steps = 20", ""))
    assert "steps" in msg and "t_end" in msg and "neither" in msg
    msg = error(BASE.replace("steps = 20", "steps = 20\nt_end = 1.0"))
    assert "both" in msg
    assert "dynamics.batch" in error(overrides=["dynamics.online=true"])
    assert "model.p" in error(NC, ["model.q=5"])


def test_malformed_toml_and_files(tmp_path):
    with pytest.raises(ConfigError, match="invalid TOML"):
        parse("[model\nkind = 'nc'")
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    p = tmp_path / "c.toml"
    p.write_text(BASE)
    cfg = load_config(p, ["dynamics.N=3"], data_spec=spec, quantities_available=lambda: ["loss"])
    assert cfg.dynamics.N == 3
    with pytest.raises(ConfigError, match="section.key=value"):
        parse(overrides=["dynamics.N"])
    with pytest.raises(ConfigError, match="section.key=value"):
        parse(overrides=["N=3"])


def test_section_must_be_a_table():
    assert "[observe] must be a table" in error(BASE.replace("[model]", "observe = 3\n[model]"))


def test_new_section_is_one_dataclass_and_one_line():
    import dataclasses

    from mfpde.config import _Section, option, section

    @dataclasses.dataclass
    class CompareConfig(_Section):
        runs: list = option(["a"], type="str_list")
        metric: str = option("w2", type="str", choices=("w2", "sliced"))

    @dataclasses.dataclass
    class Extended(Config):
        compare: CompareConfig = section(CompareConfig, optional=True)

    raw = tomllib.loads(BASE + "\n[compare]\nmetric = 'sliced'\n")
    cfg = Extended.from_dict(raw, data_spec=spec, quantities_available=lambda: QUANTITIES)
    assert cfg.compare.metric == "sliced"
    assert "[compare]" in cfg.to_toml()
    with pytest.raises(ConfigError, match="did you mean 'sliced'"):
        Extended.from_dict(tomllib.loads(BASE + "\n[compare]\nmetric = 'slicd'\n"),
                           data_spec=spec, quantities_available=lambda: QUANTITIES)
    cfg = Extended.from_dict(tomllib.loads(BASE), data_spec=spec,
                             quantities_available=lambda: QUANTITIES)
    assert cfg.compare is None and "[compare]" not in cfg.to_toml()


# ------------------------------------------------------------------ the TOML writer

_keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,8}", fullmatch=True) | st.text(min_size=1,
                                                                               max_size=6)
_scalars = (st.booleans() | st.integers(min_value=-2**63, max_value=2**63 - 1)
            | st.floats(allow_nan=False) | st.text(max_size=20))
_values = _scalars | st.lists(_scalars, max_size=4) | st.dictionaries(_keys, _scalars,
                                                                       max_size=3)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(_keys, st.dictionaries(_keys, _values, max_size=5), max_size=4))
def test_toml_writer_round_trip(data):
    assert tomllib.loads(dumps(data)) == data


def test_toml_writer_special_floats():
    out = tomllib.loads(dumps({"s": {"a": math.inf, "b": -math.inf, "c": 1e-300, "d": 1e300}}))
    assert out["s"] == {"a": math.inf, "b": -math.inf, "c": 1e-300, "d": 1e300}
    assert math.isnan(tomllib.loads(dumps({"s": {"x": math.nan}}))["s"]["x"])


def test_online_and_test_set_options():
    cfg = parse(overrides=["dynamics.online=true", "dynamics.batch=8", "data.test_n=100"])
    assert cfg.dynamics.online and cfg.data.test_n == 100
    assert "online" not in cfg.data.params  # chosen in [dynamics] only
    assert "dynamics.online" in error(overrides=["data.online=true"])
    msg = error(NC, ["dynamics.online=true", "dynamics.batch=4"])
    assert "has no online sampler" in msg
    assert "data.test_n" in error(NC, ["data.test_n=10"])


EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "validation").glob("example_*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_bundled_examples_are_valid(path):
    """The bundled examples validate against the real data kinds, observers and registries
    (comparison configs through the same Config, as a [compare] job; [sparse] experiments
    through their own loader)."""
    text = path.read_text()
    if "[sparse]" in text:
        from mfpde.sparse.experiment import load_spec
        load_spec(path)
        return
    if "[compare]" in text:
        from mfpde.compare import parse_compare
        parse_compare(tomllib.loads(text))
        cfg = load_config(path)
        assert cfg.job == "compare" and cfg.dynamics is None and cfg.compare.T > 0
        return
    cfg = load_config(path)
    if cfg.dynamics.spec.fixed_step:
        assert cfg.dynamics.n_steps > 0
        assert load_config(path, ["dynamics.steps=1"]).dynamics.n_steps == 1
    else:  # adaptive grid drivers run to t_end
        assert cfg.dynamics.n_steps is None and cfg.dynamics.t_end > 0
        assert load_config(path, ["dynamics.t_end=0.01"]).dynamics.t_end == 0.01
    again = parse_config(cfg.to_toml())
    assert again == cfg and again.to_toml() == cfg.to_toml()


def test_every_driver_has_a_bundled_example():
    from mfpde.rules import DRIVERS
    solvers = {load_config(p).dynamics.solver for p in EXAMPLES
               if "[compare]" not in p.read_text() and "[sparse]" not in p.read_text()}
    assert solvers == set(DRIVERS)


def test_examples_exist():
    names = {p.stem for p in EXAMPLES}
    assert {"example_two_layer", "example_nc"} <= names


# ------------------------------------------------------------------ frozen, replace, with_values

def test_config_is_frozen_after_validation():
    import copy
    import dataclasses
    import pickle

    cfg = parse_config(BASE)  # the default hooks (the data module, the observable registry)
    assert cfg.frozen and cfg.dynamics.frozen
    with pytest.raises(dataclasses.FrozenInstanceError, match="replace"):
        cfg.dynamics.steps = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.output = cfg.output
    with pytest.raises(TypeError, match="frozen"):
        cfg.observe.quantities.append("nc1")
    with pytest.raises(TypeError, match="frozen"):
        cfg.data.params["n"] = 3
    assert cfg.dynamics.steps == 20 and cfg.observe.quantities == ["loss"]
    for other in (copy.deepcopy(cfg), pickle.loads(pickle.dumps(cfg))):
        assert other == cfg and other.frozen
        with pytest.raises(dataclasses.FrozenInstanceError):
            other.model.q = 3


def test_replace_returns_a_new_validated_config():
    cfg = parse()
    new = cfg.replace(model={"q": 1}, output={"path": "other.h5"})
    assert new.model.q == 1 and new.output.path == "other.h5" and new.frozen
    assert cfg.model.q is None and cfg.output.path == "run.h5"      # unchanged
    assert cfg.replace(model={"q": 1}).replace(model={"q": None}) == cfg  # None: the default
    # steps and t_end exclude each other; the resolved data seed stays
    t = cfg.replace(dynamics={"t_end": 0.5, "seed": 4})
    assert t.dynamics.steps is None and t.dynamics.n_steps == 5 and t.data.seed == 1
    both = cfg.replace(dynamics={"steps": None, "t_end": 1.0})
    assert both.dynamics.n_steps == 10
    # a whole section from another config
    other = parse(overrides=["output.path=x.h5", "output.checkpoint_every=7"])
    assert cfg.replace(output=other.output).output == other.output
    # changes are validated like the file
    with pytest.raises(ConfigError, match="dynamics.dt"):
        cfg.replace(dynamics={"dt": -1.0})
    with pytest.raises(ConfigError, match="did you mean 'dynamics'"):
        cfg.replace(dynamcs={"dt": 1.0})


def test_with_values():
    cfg = parse()
    a = cfg.with_values({"dynamics.steps": 7, "observe.every": 2})
    assert a.dynamics.n_steps == 7 and a.observe.every == 2
    b = cfg.with_values(["dynamics.steps=7", "observe.every=2"])
    assert a == b
    with pytest.raises(ConfigError, match="section.key"):
        cfg.with_values({"steps": 7})


def test_round_trip_with_inf_schedules_and_tables():
    cfg = parse(NC, ["dynamics.xi={kind='power', t0=2, alpha=0.25}", "dynamics.beta=inf"])
    text = cfg.to_toml()
    assert "beta = inf" in text
    again = parse(text)
    assert again == cfg and again.to_toml() == text
    assert again.dynamics.xi(2.0) == pytest.approx(2.0 ** -0.25)


# ------------------------------------------------------------------ choice lists, registries

def test_choice_lists_come_from_their_registries():
    from mfpde.activations import ACTIVATIONS
    from mfpde.dynamics.kinetic import INTEGRATORS
    from mfpde.models import MODEL_KINDS
    from mfpde.rules import DRIVERS, PN_KIND

    msg = error(overrides=["model.activation=nope"])
    assert all(repr(a) in msg for a in ACTIVATIONS)
    msg = error(overrides=["model.kind=nope"])
    assert all(repr(k) in msg for k in (*MODEL_KINDS, PN_KIND))
    msg = error(overrides=["dynamics.solver=nope"])
    assert all(repr(d) in msg for d in DRIVERS)
    msg = error(overrides=["dynamics.solver=kinetic", "dynamics.integrator=nope"])
    assert all(repr(i) in msg for i in INTEGRATORS)


PN = """
[model]
kind = "pham_nguyen"

[data]
kind = "teacher_student"

[dynamics]
n1 = 8
dt = 0.1
steps = 10
"""


def test_only_for_fields_follow_the_driver():
    # legacy resolved configs wrote gamma / integrator for the Langevin driver: accepted
    cfg = parse(BASE.replace("steps = 20", 'steps = 20\ngamma = 1.0\nintegrator = "baoab"'))
    assert cfg.dynamics.gamma is None and "gamma" not in cfg.to_toml()
    msg = error(overrides=["dynamics.gamma=2"])
    assert "only used by solver" in msg and "'kinetic'" in msg and "'langevin'" in msg
    kin = parse(overrides=["dynamics.solver=kinetic"])
    assert kin.dynamics.gamma == 1.0 and kin.dynamics.integrator == "baoab"
    msg = error(PN, ["dynamics.solver=pn_kinetic", "dynamics.integrator=baoab"])
    assert "dynamics.integrator" in msg and "'splitting'" in msg
    assert "dynamics.units" in error(overrides=["dynamics.units=raw"])


GRID = """
[dynamics]
solver = "fv"
beta = 4.0
t_end = 1.0

[grid]
lo = -6.0
hi = 6.0
J = 200
potential = "ou"
"""


def test_grid_sections():
    cfg = parse(GRID)
    assert cfg.model is None and cfg.data is None and cfg.grid.lam == 1.0  # ou default
    assert cfg.grid.lo == [-6.0] and cfg.grid.J == [200] and cfg.observe.quantities == [
        "free_energy"]
    assert cfg.dynamics.n_steps is None and cfg.grid.ndim == 1
    assert parse(cfg.to_toml()) == cfg and "init_r_var" not in cfg.to_toml()
    two = parse(GRID.replace("lo = -6.0", "lo = [-6.0, -5.0]").replace("hi = 6.0", "hi = 6.0")
                .replace("J = 200", "J = [20, 30]"))
    assert two.grid.hi == [6.0, 6.0] and two.grid.J == [20, 30] and two.grid.ndim == 2
    assert "missing section [grid]" in error(GRID.split("[grid]")[0])
    assert "[model] is not used" in error(GRID + '\n[model]\nkind = "two_layer"\n')
    assert "grid.r_lo" in error(GRID, ["grid.r_lo=-1"])
    assert "dynamics.N" in error(GRID, ["dynamics.N=10"])
    assert "dynamics.t_end is required" in error(GRID.replace("t_end = 1.0", ""))
    assert "grid.hi" in error(GRID, ["grid.hi=-7.0"])
    assert "double_well" in error(GRID.replace("lo = -6.0", "lo = [-6.0, -6.0]")
                                  .replace('"ou"', '"double_well"'))
    model = parse(GRID.replace('"ou"', '"model"') + BASE.split("[dynamics]")[0])
    assert model.model.kind == "two_layer" and model.grid.lam is None
    assert "[grid] is not used" in error(BASE + "\n[grid]\nlo = -1\nhi = 1\nJ = 10\n")
    assert "missing section [radial]" in error(
        GRID.replace('"fv"', '"radial"').split("[grid]")[0])


def test_driver_rules_come_from_mfpde_rules():
    trainer = ["dynamics.solver=trainer"]
    assert parse(overrides=trainer).dynamics.method == "gd"
    msg = error(overrides=trainer + ["dynamics.batch=4"])
    assert msg.startswith("dynamics.batch: method 'gd' is full batch")
    assert "needs batch" in error(overrides=trainer + ["dynamics.method=sgd"])
    assert "noiseless" in error(overrides=trainer + ["dynamics.beta=10"])
    assert "gamma or momentum" in error(overrides=trainer + ["dynamics.method=shb"])
    raw = trainer + ["dynamics.units=raw", "dynamics.method=sgd", "dynamics.batch=4"]
    assert "dynamics.lr" in error(overrides=raw)
    ok = parse(BASE.replace("dt = 0.1\n", ""), raw + ["dynamics.lr=1.0"])
    assert ok.dynamics.raw_units and ok.dynamics.dt is None and ok.dynamics.n_steps == 20
    assert "raw units set the step" in error(overrides=raw + ["dynamics.lr=1.0"])
    assert "noise_std" in error(BASE.replace("dt = 0.1\n", ""),
                                raw + ["dynamics.lr=1.0", "dynamics.beta=5"])
    assert "noise_std" in error(BASE.replace("dt = 0.1\n", ""),
                                raw + ["dynamics.lr=1.0", "dynamics.method=noisy_sgd"])
    assert "units = 'raw'" in error(overrides=trainer + ["dynamics.lr=1.0"])


def test_pham_nguyen_config():
    cfg = parse(PN)
    assert cfg.dynamics.solver == "pn" and cfg.dynamics.method == "sgd"   # the PN defaults
    assert cfg.dynamics.n2 == 8 and cfg.model.phi3 == "identity"
    text = cfg.to_toml()
    assert "activation" not in text and "init_scale_a" not in text and "phi1" in text
    assert parse(text) == cfg
    assert "model.activation" in error(PN, ["model.activation=relu"])
    assert "unknown Pham–Nguyen method" in error(PN, ["dynamics.method=noisy_sgd"])
    assert "noiseless" in error(PN, ["dynamics.beta=3"])
    assert "needs the friction gamma" in error(PN, ["dynamics.method=shb"])
    assert "Pham–Nguyen" in error(PN.replace("n1 = 8", "N = 3"), ["dynamics.solver=langevin"])
    assert "model.kind" in error(BASE, ["dynamics.solver=pn", "dynamics.n1=4"])
