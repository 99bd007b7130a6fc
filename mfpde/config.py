"""Typed run configuration: TOML in, validated dataclasses out, TOML back.

A configuration file has one table per section::

    [model]      what a neuron is and how the network reads out  (ModelConfig)
    [data]       the data set or sampler                         (DataConfig)
    [dynamics]   the driver that moves the particles             (DynamicsConfig)
    [observe]    what to measure, how often, snapshots, logging  (ObserveConfig)
    [output]     where and how often to write                    (OutputConfig)

Every field is validated before any work starts. Errors are :class:`ConfigError` (a
``ValueError``) whose message names ``section.field``, the bad value and the allowed values or
range; unknown sections and keys get a "did you mean" hint.

Adding a section is one dataclass (fields declared with :func:`option`) plus one line in
:class:`Config` (``name: NewConfig = section(NewConfig)``); parsing, validation, overrides and
TOML output pick it up from there.

The resolved configuration (all defaults filled in) is written back with :func:`dumps` /
:meth:`Config.to_toml`; that text is stored in every output file and re-running it reproduces
the run.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

__all__ = [
    "ConfigError",
    "Config",
    "ModelConfig",
    "DataConfig",
    "DynamicsConfig",
    "ObserveConfig",
    "OutputConfig",
    "Schedule",
    "load_config",
    "parse_config",
    "apply_overrides",
    "parse_override",
    "make_schedule",
    "dumps",
    "ACTIVATIONS",
]


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


_MISSING = dataclasses.MISSING
REQUIRED = object()  # marker: the field has no default and must be given

ACTIVATIONS = ("tanh", "sigmoid", "erf", "softplus", "relu", "identity", "mmn_pl")
MODEL_KINDS = ("two_layer", "nc")
SOLVERS = ("langevin", "kinetic")
INTEGRATORS = ("baoab", "obabo", "splitting", "shb")


# --------------------------------------------------------------------------------------------
# field declarations
# --------------------------------------------------------------------------------------------

def option(default: Any = REQUIRED, *, type: str, doc: str = "", choices: tuple | None = None,
           ge: float | None = None, gt: float | None = None, le: float | None = None,
           only_for: tuple[str, ...] | None = None) -> Any:
    """Declare a config field.

    ``type`` is one of ``int``, ``float``, ``bool``, ``str``, ``float_or_inf`` (a float, TOML
    ``inf`` or the string ``"inf"``), ``str_list``, ``schedule`` (a positive number or a table
    ``{kind = ..., ...}``, see :func:`make_schedule`) or ``any``. ``only_for`` restricts the
    field to some values of the section's ``kind`` (setting it for another kind is an error and
    it is left out of the resolved TOML).
    """
    meta = dict(type=type, doc=doc, choices=choices, ge=ge, gt=gt, le=le, only_for=only_for,
                required=default is REQUIRED)
    if default is REQUIRED:
        return field(default=None, metadata=meta)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: _copy(d), metadata=meta)
    return field(default=default, metadata=meta)


def section(cls: type, *, optional: bool = False) -> Any:
    """Declare a section of :class:`Config`. Optional sections stay ``None`` when absent."""
    meta = {"section": cls, "optional": optional}
    if optional:
        return field(default=None, metadata=meta)
    return field(default_factory=cls, metadata=meta)


def _copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def _fmt(v: Any) -> str:
    """Short rendering of a user value for error messages."""
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_fmt(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _typename(v: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
            dict: "table"}.get(type(v), type(v).__name__)


def _hint(word: str, candidates: Iterable[str]) -> str:
    candidates = list(candidates)
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    if not close:
        lower = {c.lower(): c for c in candidates}
        if word.lower() in lower:
            close = [lower[word.lower()]]
    return f" (did you mean '{close[0]}'?)" if close else ""


def _range_text(meta: dict) -> str:
    parts = []
    if meta.get("gt") is not None:
        parts.append(f"> {meta['gt']:g}")
    if meta.get("ge") is not None:
        parts.append(f">= {meta['ge']:g}")
    if meta.get("le") is not None:
        parts.append(f"<= {meta['le']:g}")
    return " and ".join(parts)


def _expected_text(meta: dict) -> str:
    t = meta["type"]
    if meta.get("choices"):
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    base = {
        "int": "an integer",
        "float": "a number",
        "bool": "true or false",
        "str": "a string",
        "float_or_inf": "a number or inf",
        "str_list": "an array of strings",
        "schedule": "a number > 0 or a table {kind = ...} with kind in "
                    + ", ".join(repr(k) for k in SCHEDULES),
        "any": "a value",
    }[t]
    r = _range_text(meta)
    return f"{base} {r}" if r else base


def _check_value(where: str, value: Any, meta: dict) -> Any:
    """Validate and normalise one value; raise ConfigError naming ``where``."""
    t = meta["type"]
    original = value

    def bad(extra: str = "") -> ConfigError:
        got = f"{_fmt(original)} ({_typename(original)})"
        msg = f"{where} = {got}: expected {_expected_text(meta)}"
        return ConfigError(msg + extra)

    if t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and math.isfinite(value):
                value = int(value)
            else:
                raise bad()
    elif t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        value = float(value)
        if math.isnan(value):
            raise bad()
    elif t == "float_or_inf":
        if isinstance(value, str) and value.strip().lower() in ("inf", "+inf", "infinity"):
            value = math.inf
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        value = float(value)
        if math.isnan(value):
            raise bad()
    elif t == "bool":
        if not isinstance(value, bool):
            raise bad()
    elif t == "str":
        if not isinstance(value, str):
            raise bad()
    elif t == "str_list":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise bad()
        value = list(value)
    elif t == "schedule":
        return _check_schedule(where, value)
    elif t == "any":
        return value
    else:  # pragma: no cover - programming error
        raise TypeError(f"unknown option type {t!r}")

    if meta.get("choices") and value not in meta["choices"]:
        hint = _hint(str(value), [str(c) for c in meta["choices"]])
        raise bad(hint)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if meta.get("gt") is not None and not value > meta["gt"]:
            raise bad()
        if meta.get("ge") is not None and not value >= meta["ge"]:
            raise bad()
        if meta.get("le") is not None and not value <= meta["le"]:
            raise bad()
        if t in ("int", "float") and isinstance(value, float) and not math.isfinite(value):
            raise bad()
    return value


# --------------------------------------------------------------------------------------------
# schedules xi(t)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Schedule:
    """A time-rescaling schedule ``xi(t) > 0`` (theory README, convention 4).

    Kinds (parameters, defaults):

    * ``constant`` (``value = 1.0``): ``xi(t) = value``.
    * ``power`` (``value = 1.0``, ``t0 = 1.0``, ``alpha = 0.5``):
      ``xi(t) = value * (1 + t / t0) ** (-alpha)``.

    Instances are callables ``xi(t) -> float`` and picklable.
    """

    kind: str
    params: tuple[tuple[str, float], ...]

    def __call__(self, t: float) -> float:
        return SCHEDULES[self.kind][1](t, **self.kwargs)

    @property
    def kwargs(self) -> dict[str, float]:
        return dict(self.params)

    @property
    def is_constant(self) -> bool:
        return self.kind == "constant"

    def to_value(self) -> Any:
        """The TOML value: a bare number for constants, else an inline table."""
        if self.kind == "constant":
            return dict(self.params)["value"]
        return {"kind": self.kind, **dict(self.params)}


def _xi_constant(t: float, value: float) -> float:
    return value


def _xi_power(t: float, value: float, t0: float, alpha: float) -> float:
    return value * (1.0 + t / t0) ** (-alpha)


# name -> (parameter metadata {name: (default, option-meta)}, function)
_POS = dict(type="float", gt=0.0)
_NONNEG = dict(type="float", ge=0.0)
SCHEDULES: dict[str, tuple[dict[str, tuple[float, dict]], Callable[..., float]]] = {
    "constant": ({"value": (1.0, _POS)}, _xi_constant),
    "power": ({"value": (1.0, _POS), "t0": (1.0, _POS), "alpha": (0.5, _NONNEG)}, _xi_power),
}


def _check_schedule(where: str, value: Any) -> Schedule:
    if isinstance(value, Schedule):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        v = _check_value(where, value, dict(type="float", gt=0.0))
        return Schedule("constant", (("value", v),))
    if not isinstance(value, dict):
        raise ConfigError(f"{where} = {_fmt(value)} ({_typename(value)}): expected a number > 0 "
                          f"or a table {{kind = ...}} with kind in "
                          + ", ".join(repr(k) for k in SCHEDULES))
    kind = value.get("kind")
    if kind not in SCHEDULES:
        raise ConfigError(f"{where}.kind = {_fmt(kind)}: expected one of "
                          + ", ".join(repr(k) for k in SCHEDULES)
                          + (_hint(str(kind), SCHEDULES) if isinstance(kind, str) else ""))
    spec, _ = SCHEDULES[kind]
    params = []
    for key in value:
        if key != "kind" and key not in spec:
            raise ConfigError(f"unknown key {where}.{key}{_hint(key, spec)}; "
                              f"schedule '{kind}' takes: " + ", ".join(spec))
    for name, (default, meta) in spec.items():
        v = value.get(name, default)
        params.append((name, _check_value(f"{where}.{name}", v, dict(meta))))
    return Schedule(kind, tuple(params))


def make_schedule(value: Any) -> Schedule:
    """Build ``xi(t)`` from a config value: a number (constant) or a table ``{kind=...}``."""
    return _check_schedule("xi", value)


# --------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------

class _Section:
    """Mixin: generic parsing/serialisation for dataclass sections built with :func:`option`."""

    _name = "section"
    _extra_keys = False  # True: unknown keys are collected into `params` (see DataConfig)

    @classmethod
    def options(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls) if "type" in f.metadata}

    @classmethod
    def from_dict(cls, name: str, raw: Mapping[str, Any], cfg_raw: Mapping[str, Any]):
        if not isinstance(raw, Mapping):
            raise ConfigError(f"[{name}] must be a table, got {_fmt(raw)} ({_typename(raw)})")
        opts = cls.options()
        kind = raw.get("kind")
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in opts:
                if cls._extra_keys:
                    extra[key] = value
                    continue
                raise ConfigError(cls._unknown_key_message(name, key, opts))
            meta = opts[key].metadata
            values[key] = _check_value(f"{name}.{key}", value, meta)
            if key == "kind":
                kind = values[key]
        for key, f in opts.items():
            meta = f.metadata
            if key not in values:
                if meta["required"]:
                    raise ConfigError(f"{name}.{key} is required: expected {_expected_text(meta)}")
                continue
            only = meta.get("only_for")
            if only and kind not in only:
                raise ConfigError(
                    f"{name}.{key} = {_fmt(raw[key])}: applies only to {name}.kind in "
                    + ", ".join(repr(k) for k in only) + f", not {name}.kind = {_fmt(kind)}")
        obj = cls(**values)
        if extra:
            obj.params = extra  # type: ignore[attr-defined]
        return obj

    @classmethod
    def _unknown_key_message(cls, name: str, key: str, opts: Mapping[str, Any]) -> str:
        return (f"unknown key {name}.{key}{_hint(key, opts)}; allowed keys in [{name}]: "
                + ", ".join(opts))

    def check(self, cfg: "Config") -> None:
        """Cross-field checks; override in sections that need them."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        kind = getattr(self, "kind", None)
        for key, f in self.options().items():
            value = getattr(self, key)
            only = f.metadata.get("only_for")
            if only and kind not in only:
                continue
            if value is None:
                continue
            if isinstance(value, Schedule):
                value = value.to_value()
            out[key] = _copy(value)
        return out


@dataclass
class ModelConfig(_Section):
    """``[model]``: the network, built with ``mfpde.models.make_model``."""

    kind: str = option(type="str", choices=MODEL_KINDS,
                       doc="network family: two_layer (theta = (a, u)) or nc (three-layer NC)")
    activation: str = option("tanh", type="str", choices=ACTIVATIONS, doc="activation sigma")
    bias: bool = option(False, type="bool", doc="add a bias coordinate to u")
    output: str = option("trainable", type="str", choices=("trainable", "fixed"),
                         only_for=("two_layer",),
                         doc="outgoing weights a trained (trainable) or frozen at init (fixed)")
    q: int | None = option(None, type="int", ge=1,
                           doc="output dimension; omitted: taken from the data")
    p: int = option(4, type="int", ge=1, only_for=("nc",), doc="feature width p (>= q)")
    Gamma: float = option(1.0, type="float", gt=0.0, only_for=("nc",),
                          doc="output multiplier Gamma")
    train_W: bool = option(True, type="bool", only_for=("nc",),
                           doc="train the last layer W (else frozen at init)")
    lam: float = option(0.0, type="float", ge=0.0, doc="weight decay lambda on particles")
    lam_W: float = option(0.0, type="float", ge=0.0, only_for=("nc",),
                          doc="weight decay lambda_W on W")
    init_scale_a: float = option(1.0, type="float", ge=0.0,
                                 doc="std of the initial outgoing weights a")
    init_scale_u: float = option(1.0, type="float", ge=0.0,
                                 doc="std of the initial incoming weights u")
    memory: str = option("auto", type="str", choices=("auto", "fast", "low"),
                         doc="passes over several sample blocks: keep block tiles and (N, D) "
                             "accumulators (fast), or recompute per particle chunk with memory "
                             "near the particle state (low); auto = low from 2^19 particles")

    _name = "model"

    def check(self, cfg: "Config") -> None:
        if self.kind == "nc" and self.q is not None and self.p < self.q:
            raise ConfigError(f"model.p = {self.p}: expected an integer >= model.q = {self.q}")

    def make_kwargs(self, d: int, q: int) -> dict[str, Any]:
        """Keyword arguments for ``mfpde.models.make_model``."""
        return dict(kind=self.kind, d=d, q=q, activation=self.activation, bias=self.bias,
                    output=self.output, p=self.p, Gamma=self.Gamma, lam=self.lam,
                    lam_W=self.lam_W, init_scale_a=self.init_scale_a,
                    init_scale_u=self.init_scale_u, memory=self.memory)


@dataclass
class DataConfig(_Section):
    """``[data]``: ``kind``, ``seed`` and the kind's own parameters.

    The parameters of each kind and their defaults come from ``mfpde.data.data_param_spec``;
    any other key is an error. ``seed`` defaults to ``dynamics.seed + 1``.
    """

    kind: str = option(type="str", doc="data set kind (see mfpde.data)")
    seed: int | None = option(None, type="int", ge=0,
                              doc="seed of the data generator; default dynamics.seed + 1")
    test_n: int = option(0, type="int", ge=0,
                         doc="size of a held-out set drawn from the kind's population sampler "
                             "(for test_loss); 0 = none")
    params: dict[str, Any] = field(default_factory=dict)
    has_sampler: bool = field(default=False, compare=False, repr=False)

    _name = "data"
    _extra_keys = True

    def check(self, cfg: "Config") -> None:
        if self.seed is None:
            self.seed = cfg.dynamics.seed + 1
        spec = cfg._data_spec(self.kind)
        if spec is None:
            return
        spec = dict(spec)
        # `online` is chosen in [dynamics] (one place); the data spec only says if it is possible
        self.has_sampler = "online" in spec
        spec.pop("online", None)
        if cfg.dynamics.online and not self.has_sampler:
            raise ConfigError(f"dynamics.online = true: data.kind = '{self.kind}' has no online "
                              f"sampler; use dynamics.online = false or a kind with one")
        if self.test_n and not self.has_sampler:
            raise ConfigError(f"data.test_n = {self.test_n}: data.kind = '{self.kind}' has no "
                              f"population sampler to draw a held-out set from; use test_n = 0")
        resolved: dict[str, Any] = {}
        for key, value in self.params.items():
            if key == "online":
                raise ConfigError("unknown key data.online; online sampling is set with "
                                  "dynamics.online = true")
            if key not in spec:
                allowed = ", ".join(["kind", "seed", *spec]) or "kind, seed"
                raise ConfigError(f"unknown key data.{key}{_hint(key, spec)}; "
                                  f"allowed keys for data.kind = '{self.kind}': {allowed}")
            resolved[key] = _check_like(f"data.{key}", value, spec[key])
        for key, default in spec.items():
            if key not in resolved:
                if default is REQUIRED:
                    raise ConfigError(f"data.{key} is required for data.kind = '{self.kind}'")
                resolved[key] = _copy(default)
        self.params = resolved

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.seed is not None:
            out["seed"] = self.seed
        out["test_n"] = self.test_n
        for key, value in self.params.items():
            if value is not None:
                out[key] = _copy(value)
        return out


def _check_like(where: str, value: Any, default: Any) -> Any:
    """Check ``value`` has the type of ``default`` (int, float, bool, str, list; None: any)."""
    if default is None or default is REQUIRED:
        return value
    if isinstance(default, bool):
        return _check_value(where, value, dict(type="bool"))
    if isinstance(default, int):
        return _check_value(where, value, dict(type="int"))
    if isinstance(default, float):
        return _check_value(where, value, dict(type="float_or_inf"))
    if isinstance(default, str):
        return _check_value(where, value, dict(type="str"))
    if isinstance(default, (list, tuple)):
        if not isinstance(value, list):
            raise ConfigError(f"{where} = {_fmt(value)} ({_typename(value)}): expected an array")
        return value
    return value


@dataclass
class DynamicsConfig(_Section):
    """``[dynamics]``: the particle driver (overdamped Langevin, Euler–Maruyama; or kinetic
    heavy-ball dynamics with friction ``gamma``)."""

    solver: str = option("langevin", type="str", choices=SOLVERS,
                         doc="driver: langevin (overdamped) or kinetic (heavy ball)")
    gamma: float = option(1.0, type="float", gt=0.0, doc="friction (kinetic solver only)")
    integrator: str = option("baoab", type="str", choices=INTEGRATORS,
                             doc="kinetic integrator; splitting needs beta = inf")
    N: int = option(type="int", ge=1, doc="number of particles (network width)")
    dt: float = option(type="float", gt=0.0, doc="time step epsilon (mean-field time t = k dt)")
    steps: int | None = option(None, type="int", ge=0, doc="number of steps (or give t_end)")
    t_end: float | None = option(None, type="float", ge=0.0,
                                 doc="final time; steps = round(t_end / dt) (or give steps)")
    beta: float = option(math.inf, type="float_or_inf", gt=0.0,
                         doc="inverse temperature; inf = noiseless")
    batch: int = option(0, type="int", ge=0, doc="mini-batch size; 0 = full batch")
    online: bool = option(False, type="bool",
                          doc="fresh samples every step from the data kind's sampler")
    xi: Schedule = option(1.0, type="schedule", doc="time-rescaling schedule xi(t)")
    xi_W: float = option(1.0, type="float", gt=0.0, doc="xi_W(t) / xi(t) (NC model only)")
    seed: int = option(0, type="int", ge=0, doc="seed of the run's random generator")

    _name = "dynamics"

    def __post_init__(self) -> None:
        if not isinstance(self.xi, Schedule):
            self.xi = _check_schedule("dynamics.xi", self.xi)

    @classmethod
    def _unknown_key_message(cls, name, key, opts):
        msg = super()._unknown_key_message(name, key, opts)
        if key == "train_W":
            msg += " (train_W is set in [model])"
        return msg

    def check(self, cfg: "Config") -> None:
        if (self.steps is None) == (self.t_end is None):
            given = "both" if self.steps is not None else "neither"
            raise ConfigError(f"dynamics.steps / dynamics.t_end: give exactly one of them "
                              f"({given} given)")
        if self.solver == "langevin":
            for key, default in (("gamma", 1.0), ("integrator", "baoab")):
                if getattr(self, key) != default:
                    raise ConfigError(f"dynamics.{key} = {_fmt(getattr(self, key))}: only used by "
                                      f"solver = \"kinetic\" (solver is \"langevin\")")
        if self.online and self.batch == 0:
            raise ConfigError("dynamics.batch = 0: expected an integer >= 1 when "
                              "dynamics.online = true (samples drawn per step)")

    @property
    def n_steps(self) -> int:
        """Total number of steps of the run."""
        if self.steps is not None:
            return int(self.steps)
        return int(round(self.t_end / self.dt))


@dataclass
class ObserveConfig(_Section):
    """``[observe]``: scalar series, particle snapshots and progress logging."""

    every: int = option(10, type="int", ge=1, doc="observe every this many steps")
    quantities: list[str] = option(["loss"], type="str_list",
                                   doc="names of observed scalars (mfpde.observers)")
    snapshot_every: int = option(0, type="int", ge=0,
                                 doc="store particles every this many steps; 0 = off")
    snapshot_particles: int = option(0, type="int", ge=0,
                                     doc="particles per snapshot; 0 = all, else a fixed "
                                         "random subset chosen once")
    log_every: float = option(10.0, type="float", gt=0.0,
                              doc="seconds between log lines when not on a terminal")

    _name = "observe"

    def check(self, cfg: "Config") -> None:
        if len(set(self.quantities)) != len(self.quantities):
            dup = sorted({q for q in self.quantities if self.quantities.count(q) > 1})
            raise ConfigError(f"observe.quantities = {_fmt(self.quantities)}: duplicate "
                              + ", ".join(repr(d) for d in dup))
        for q in self.quantities:
            if q in ("t", "step"):
                raise ConfigError(f"observe.quantities: {q!r} is always recorded; remove it")
        available = cfg._available_quantities()
        if available is not None:
            for q in self.quantities:
                if q not in available:
                    raise ConfigError(f"observe.quantities: unknown quantity {q!r}"
                                      f"{_hint(q, available)}; available: "
                                      + ", ".join(available))
        if self.snapshot_particles > cfg.dynamics.N:
            raise ConfigError(f"observe.snapshot_particles = {self.snapshot_particles}: "
                              f"expected an integer between 0 and dynamics.N = {cfg.dynamics.N}")


@dataclass
class OutputConfig(_Section):
    """``[output]``: the HDF5 run file."""

    path: str = option("run.h5", type="str", doc="output HDF5 file (-o on the command line)")
    checkpoint_every: int = option(0, type="int", ge=0,
                                   doc="checkpoint every this many steps; 0 = only at the end")
    overwrite: bool = option(False, type="bool", doc="replace an existing output file")

    _name = "output"

    def check(self, cfg: "Config") -> None:
        if not self.path:
            raise ConfigError("output.path = '': expected a file name")


# --------------------------------------------------------------------------------------------
# the whole configuration
# --------------------------------------------------------------------------------------------

@dataclass
class Config:
    """A validated run configuration. Sections are attributes (``cfg.dynamics.dt``)."""

    model: ModelConfig = section(ModelConfig)
    data: DataConfig = section(DataConfig)
    dynamics: DynamicsConfig = section(DynamicsConfig)
    observe: ObserveConfig = section(ObserveConfig)
    output: OutputConfig = section(OutputConfig)
    # future: compare: CompareConfig | None = section(CompareConfig, optional=True)

    # validation hooks (injectable for tests; default: ask mfpde.data / mfpde.observers)
    data_spec: Callable[[str], Mapping[str, Any]] | None = field(
        default=None, repr=False, compare=False)
    quantities_available: Callable[[], Iterable[str]] | None = field(
        default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ registry
    @classmethod
    def sections(cls) -> dict[str, tuple[type, bool]]:
        """``{name: (section class, optional)}`` in file order."""
        return {f.name: (f.metadata["section"], f.metadata["optional"])
                for f in dataclasses.fields(cls) if "section" in f.metadata}

    REQUIRED_SECTIONS = ("model", "data", "dynamics")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, data_spec=None,
                  quantities_available=None) -> "Config":
        sections = cls.sections()
        for key, value in raw.items():
            if key not in sections:
                what = f"section [{key}]" if isinstance(value, Mapping) else f"top-level key {key!r}"
                raise ConfigError(f"unknown {what}{_hint(key, sections)}; "
                                  f"allowed sections: " + ", ".join(sections))
        for name in cls.REQUIRED_SECTIONS:
            if name not in raw:
                raise ConfigError(f"missing section [{name}]")
        kwargs: dict[str, Any] = {}
        for name, (scls, optional) in sections.items():
            if name in raw:
                kwargs[name] = scls.from_dict(name, raw[name], raw)
            elif not optional:
                kwargs[name] = scls.from_dict(name, {}, raw)
        cfg = cls(**kwargs, data_spec=data_spec, quantities_available=quantities_available)
        # dynamics first: other sections refer to it (data.seed, snapshot_particles)
        order = ["dynamics"] + [n for n in sections if n != "dynamics"]
        for name in order:
            sec = getattr(cfg, name)
            if sec is not None:
                sec.check(cfg)
        return cfg

    # ------------------------------------------------------------------ hooks
    def _data_spec(self, kind: str) -> Mapping[str, Any] | None:
        fn = self.data_spec
        required = REQUIRED
        if fn is None:
            try:
                from mfpde import data as _data  # type: ignore
            except ImportError:
                return None
            fn = _data.data_param_spec
            required = getattr(_data, "REQUIRED", REQUIRED)
        try:
            spec = fn(kind)
        except (KeyError, ValueError) as exc:
            msg = str(exc.args[0]) if exc.args else str(exc)
            raise ConfigError(f"data.kind = {kind!r}: {msg}") from None
        return {k: (REQUIRED if v is required else v) for k, v in spec.items()}

    def _available_quantities(self) -> list[str] | None:
        fn = self.quantities_available
        if fn is None:
            try:
                from mfpde.observers import Observers  # type: ignore
            except ImportError:
                return None
            fn = Observers.available
        return list(fn())

    # ------------------------------------------------------------------ output
    def to_dict(self) -> dict[str, Any]:
        out = {}
        for name in self.sections():
            sec = getattr(self, name)
            if sec is not None:
                out[name] = sec.to_dict()
        return out

    def to_toml(self) -> str:
        """The resolved configuration as TOML text (all defaults filled in)."""
        return dumps(self.to_dict())

    @property
    def seed(self) -> int:
        return self.dynamics.seed


# --------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------

def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value``; the value is read as TOML, else kept as a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    key, _, value = text.partition("=")
    key = key.strip()
    path = [p.strip() for p in key.split(".")]
    if len(path) < 2 or not all(path):
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    value = value.strip()
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return path, parsed


# Setting one of these with --set removes the other from the file's values (unless it is set too).
EXCLUSIVE = {("dynamics", "steps"): ("dynamics", "t_end"),
             ("dynamics", "t_end"): ("dynamics", "steps")}


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``--set section.key=value`` overrides to a raw (parsed TOML) dict, in place.

    ``dynamics.steps`` and ``dynamics.t_end`` exclude each other: overriding one drops the other.
    """
    sections = Config.sections()
    parsed = [(text, *parse_override(text)) for text in overrides]
    given = {tuple(path) for _, path, _ in parsed}
    for text, path, value in parsed:
        other = EXCLUSIVE.get(tuple(path))
        if other is not None and other not in given:
            node = raw.get(other[0])
            if isinstance(node, dict):
                node.pop(other[1], None)
        if path[0] not in sections:
            raise ConfigError(f"--set {text!r}: unknown section [{path[0]}]"
                              f"{_hint(path[0], sections)}; allowed sections: "
                              + ", ".join(sections))
        node = raw
        for p in path[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                # e.g. dynamics.xi = 1.0 and --set dynamics.xi.kind=power
                nxt = {}
                node[p] = nxt
            node = nxt
        node[path[-1]] = value
    return raw


def parse_config(source: str | Mapping[str, Any], overrides: Iterable[str] = (), *,
                 name: str = "<config>", data_spec=None,
                 quantities_available=None) -> Config:
    """Parse TOML text (or an already parsed dict), apply overrides and validate."""
    if isinstance(source, str):
        try:
            raw = tomllib.loads(source)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{name}: invalid TOML: {exc}") from None
    else:
        raw = _copy(dict(source))
    apply_overrides(raw, overrides)
    return Config.from_dict(raw, data_spec=data_spec, quantities_available=quantities_available)


def load_config(path: str | Path, overrides: Iterable[str] = (), **hooks) -> Config:
    """Read and validate a TOML configuration file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a TOML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_config(text, overrides, name=str(path), **hooks)


# --------------------------------------------------------------------------------------------
# a tiny TOML writer (str, bool, int, float incl. inf/nan, arrays, tables)
# --------------------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")  # \Z, not $: "$" also matches before a final newline


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else _str(k)


def _str(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\u{o:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _str(v)
    if isinstance(v, Schedule):
        return _value(v.to_value())
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_key(str(k))} = {_value(x)}" for k, x in v.items()) + "}"
    if hasattr(v, "item"):  # numpy scalars
        return _value(v.item())
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps(data: Mapping[str, Any]) -> str:
    """Write a dict as TOML: top-level tables become ``[sections]``, nested tables inline."""
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    for k, v in scalars.items():
        lines.append(f"{_key(str(k))} = {_value(v)}")
    for name, table in tables.items():
        if lines:
            lines.append("")
        lines.append(f"[{_key(str(name))}]")
        for k, v in table.items():
            lines.append(f"{_key(str(k))} = {_value(v)}")
    return "\n".join(lines) + "\n"
