"""Fuzzing the configuration: random ``--set`` overrides and damaged TOML files given to
``mfpde run``. Whatever the input, the command ends with exit 0 (a valid run, complete file),
1 (a valid run that diverged: one line, status failed), 2 (bad input: one line naming the
problem, no traceback, and no file left behind) or 75 (a drawn ``output.time_limit`` reached:
one line naming the wall-clock limit, status interrupted, a checkpoint to resume from)."""
import contextlib
import io
import string
from pathlib import Path

import h5py
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mfpde.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "validation" / "example_two_layer.toml"
BASE = ["--set", "dynamics.N=40", "--set", "data.n=60", "--set", "observe.every=1",
        "--set", "observe.snapshot_every=1"]

KEYS = ["model.kind", "model.activation", "model.bias", "model.output", "model.q", "model.p",
        "model.lam", "model.init_scale_a", "model.memory", "model.Gamma", "model.readout_R",
        "data.kind", "data.n", "data.d", "data.k_star", "data.noise", "data.seed", "data.test_n",
        "dynamics.solver", "dynamics.N", "dynamics.dt", "dynamics.beta", "dynamics.batch",
        "dynamics.online", "dynamics.xi", "dynamics.seed", "dynamics.gamma",
        "dynamics.integrator", "dynamics.stages", "observe.every", "observe.quantities",
        "observe.snapshot_every", "observe.snapshot_particles", "observe.steady_quantities",
        "output.checkpoint_every", "output.time_limit", "grid.J", "compare.T", "nosuch.key",
        "model.nosuch", "dynamics", "model..kind", ".x"]

ident = st.text(string.ascii_letters + "_", min_size=1, max_size=8)
toml_values = st.one_of(
    st.sampled_from(["-1", "0", "1", "2", "3", "1000000000000", "1e30", "2.5", "-0.0", "nan",
                     "inf", "-inf", "1e-320", "true", "false", '""', '"tanh"', '"relu"',
                     '"nc"', '"two_layer"', '"kinetic"', '"pn"', '"fv"', '"teacher_student"',
                     '"no such thing"', "[]", '["loss"]', '["nc1", "loss"]', "[1, 2]",
                     "{kind = \"power\", alpha = 0.5}", "{kind = \"nope\"}",
                     "[{steps = 2, train_W = false}]", "[{steps = 0}]", "{}", "[[]]"]),
    st.integers(min_value=-10, max_value=10).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda v: repr(v).replace("nan", "nan")),
    st.text(min_size=0, max_size=12).map(lambda s: s.replace("\n", " ")),
)
#: plausible values, so that many drawn configurations are valid runs (and run)
PLAUSIBLE = {
    "model.activation": ['"tanh"', '"relu"', '"sigmoid"', '"erf"', '"softplus"'],
    "model.lam": ["0.0", "0.1", "1e-3"], "model.bias": ["true", "false"],
    "model.kind": ['"nc"', '"two_layer"'], "model.output": ['"fixed"', '"trainable"'],
    "dynamics.beta": ["inf", "10.0", "1e6"], "dynamics.batch": ["0", "4", "10"],
    "dynamics.dt": ["0.01", "0.5", "1e4"], "dynamics.solver": ['"kinetic"', '"langevin"'],
    "dynamics.xi": ["2.0", '{kind = "power", alpha = 0.5}'],
    "dynamics.online": ["true", "false"], "data.noise": ["0.0", "0.1"],
    "observe.quantities": ['["loss", "grad_sq"]', '["loss", "entropy", "free_energy"]',
                           '["reg_loss"]', '["hamiltonian"]'],
    "observe.snapshot_particles": ["0", "5", "41"], "output.checkpoint_every": ["0", "1"],
    "data.test_n": ["0", "10"],
}
plausible = st.sampled_from(sorted(PLAUSIBLE)).flatmap(
    lambda k: st.sampled_from(PLAUSIBLE[k]).map(lambda v: f"{k}={v}"))
override = st.one_of(
    plausible, plausible, plausible,
    st.tuples(st.sampled_from(KEYS), toml_values).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.tuples(ident, ident, toml_values).map(lambda t: f"{t[0]}.{t[1]}={t[2]}"),
    st.text(max_size=20).map(lambda s: s.replace("\n", " ")),
)


def _run(args, out: Path) -> tuple[int, str]:
    err = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return code, err.getvalue().strip()


def _check(code: int, err: str, out: Path) -> None:
    assert code in (0, 1, 2, 75), (code, err)
    assert "Traceback" not in err, err
    part = out.with_name(out.name + ".part")
    assert not part.exists(), "a partial file was left behind"
    if code == 2:
        assert len(err.splitlines()) == 1 and err.startswith("mfpde: error:"), err
        assert not out.exists(), "bad input left a file"
    elif code == 1:
        assert len(err.splitlines()) == 1, err
        with h5py.File(out, "r") as f:
            assert f.attrs["status"] == "failed"
    elif code == 75:
        assert len(err.splitlines()) == 1 and "wall-clock limit" in err, err
        with h5py.File(out, "r") as f:
            assert f.attrs["status"] == "interrupted" and "checkpoint" in f
    else:
        with h5py.File(out, "r") as f:
            assert f.attrs["status"] == "complete"


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(sets=st.lists(override, min_size=1, max_size=3))
def test_random_overrides_end_in_one_line_or_a_complete_run(tmp_path_factory, sets):
    out = tmp_path_factory.mktemp("fuzz") / "run.h5"
    args = ["run", str(EXAMPLE), "-o", str(out), "-q", *BASE]
    for s in sets:
        args += ["--set", s]
    args += ["--set", "dynamics.steps=2"]
    code, err = _run(args, out)
    _check(code, err, out)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(cut=st.integers(min_value=0, max_value=10_000), junk=st.binary(max_size=16),
       drop=st.integers(min_value=0, max_value=40))
def test_damaged_config_files_end_in_one_line_or_a_complete_run(tmp_path_factory, cut, junk,
                                                                 drop):
    d = tmp_path_factory.mktemp("fuzzfile")
    text = EXAMPLE.read_bytes()
    cut %= len(text)
    damaged = text[:cut] + junk + text[cut + drop:]
    cfg = d / "c.toml"
    cfg.write_bytes(damaged)
    out = d / "run.h5"
    code, err = _run(["run", str(cfg), "-o", str(out), "-q", *BASE,
                      "--set", "dynamics.steps=2"], out)
    _check(code, err, out)
