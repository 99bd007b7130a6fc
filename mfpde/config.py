"""Typed run configuration: TOML in, validated and frozen dataclasses out, TOML back.

A configuration file has one table per section::

    [model]      what a neuron is and how the network reads out  (ModelConfig)
    [data]       the data set or sampler                         (DataConfig)
    [dynamics]   the driver: dynamics.solver names it            (DynamicsConfig)
    [grid]       grid drivers: geometry, potential, initial law  (GridConfig)
    [radial]     the MMN problem of the radial reduction          (RadialConfig)
    [observe]    what to measure, how often, snapshots, logging  (ObserveConfig)
    [output]     where and how often to write                    (OutputConfig)
    [compare]    a comparison job: finite widths against the     (CompareConfig)
                 mean-field reference (with [output] only)
    [sweep]      a sweep job: many runs of the rest of the file  (SweepConfig)
                 over grid / zipped axes and seeds (docs/sweeps.md)

Which sections a run needs follows from its driver (``dynamics.solver``, the registry
:data:`mfpde.rules.DRIVERS`): particle drivers need ``[model]`` and ``[data]``, the grid drivers
``[grid]`` (and ``[model]`` / ``[data]`` only for a model potential), the radial reduction
``[radial]``. A ``[compare]`` section makes the file a comparison job (``mfpde compare`` or
``mfpde run``).

Every field is validated before any work starts. Errors are :class:`ConfigError` (a
``ValueError``) whose message names ``section.field``, the bad value and the allowed values or
range; unknown sections and keys get a "did you mean" hint. Choice lists come from the
registries they choose from (activations, model kinds, drivers, integrators, data kinds); the
rules of the training methods from :mod:`mfpde.rules`.

Defaults that depend on other fields (``data.seed``, the data kind's parameters, the driver's
friction, integrator, method and observed quantities) are resolved while the configuration is
built; then it is **frozen**: assigning a field raises ``dataclasses.FrozenInstanceError``.
:meth:`Config.replace` / :meth:`Config.with_values` return a new validated configuration
(``model.q`` from the data, a resumed run's ``dynamics.steps``).

Adding a section is one dataclass (fields declared with :func:`option`) plus one line in
:class:`Config` (``name: NewConfig = section(NewConfig)``); parsing, validation, overrides and
TOML output pick it up from there.

The resolved configuration is written back with :func:`dumps` / :meth:`Config.to_toml` (tomli-w);
that text is stored in every output file and re-running it reproduces the run.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import tomli_w

from .rules import (DRIVERS, FIT_AT, FIT_QUANTITIES, FIT_X, GRID_POTENTIALS, GRID_SCHEMES,
                    MEMORY_MODES, METHODS, OUTPUTS, PN_KIND, UNITS, VELOCITY_METHODS,
                    method_violation)

__all__ = [
    "ConfigError",
    "Config",
    "ModelConfig",
    "DataConfig",
    "DynamicsConfig",
    "GridConfig",
    "RadialConfig",
    "ObserveConfig",
    "OutputConfig",
    "CompareConfig",
    "CompareReferenceConfig",
    "CompareFitConfig",
    "SweepConfig",
    "Schedule",
    "load_config",
    "parse_config",
    "apply_overrides",
    "parse_override",
    "make_schedule",
    "dumps",
    "option",
    "section",
]


from .errors import ConfigError  # noqa: E402  (defined low so that every layer can raise it)


_MISSING = dataclasses.MISSING
REQUIRED = object()  # marker: the field has no default and must be given
_FROZEN = "_frozen_"
_FROZEN_MSG = "the configuration is frozen after validation; use Config.replace(...)"


# --------------------------------------------------------------------------------------------
# choice lists from their registries (looked up lazily: the registries live in lower layers)
# --------------------------------------------------------------------------------------------

def _activations() -> tuple[str, ...]:
    from .activations import ACTIVATIONS
    return tuple(ACTIVATIONS)


def _model_kinds() -> tuple[str, ...]:
    from .models import MODEL_KINDS
    kinds = tuple(MODEL_KINDS)
    return kinds if PN_KIND in kinds else kinds + (PN_KIND,)


def _drivers() -> tuple[str, ...]:
    return tuple(DRIVERS)


def _driver_integrators() -> dict[str, tuple[tuple[str, ...], str]]:
    """``{driver: (integrators, default)}`` of the drivers with a choice of integrator
    (``dynamics.integrator``), from the drivers themselves."""
    from inspect import signature

    from .dynamics import KineticSolver, PNKineticSolver
    from .dynamics.kinetic import INTEGRATORS
    out = {}
    for name, cls, names in (("kinetic", KineticSolver, INTEGRATORS),
                             ("pn_kinetic", PNKineticSolver, PNKineticSolver.INTEGRATORS)):
        out[name] = (tuple(names), signature(cls).parameters["integrator"].default)
    return out


def _integrators() -> tuple[str, ...]:
    out: list[str] = []
    for names, _ in _driver_integrators().values():
        out += [n for n in names if n not in out]
    return tuple(out)


def _sampling() -> tuple[str, ...]:
    from .coupling import SAMPLING
    return tuple(SAMPLING)


def _ref_batch() -> tuple[str, ...]:
    from .coupling import REF_BATCH
    return tuple(REF_BATCH)


def _aggregates() -> tuple[str, ...]:
    from .metrics.rates import AGGREGATES
    return tuple(AGGREGATES)


def _choices(meta: Mapping[str, Any]) -> tuple | None:
    c = meta.get("choices")
    return c() if callable(c) else c


# --------------------------------------------------------------------------------------------
# frozen containers
# --------------------------------------------------------------------------------------------

def _blocked(self, *args, **kwargs):
    raise TypeError(_FROZEN_MSG)


class FrozenList(list):
    """A list that refuses changes (lists held by a frozen configuration)."""

    append = extend = insert = remove = pop = clear = sort = reverse = _blocked
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _blocked

    def __reduce_ex__(self, protocol):
        return (FrozenList, (list(self),))


class FrozenDict(dict):
    """A dict that refuses changes (tables held by a frozen configuration)."""

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _blocked
    __ior__ = _blocked

    def __reduce_ex__(self, protocol):
        return (FrozenDict, (dict(self),))


def _freeze_value(v: Any) -> Any:
    if isinstance(v, dict) and not isinstance(v, FrozenDict):
        return FrozenDict({k: _freeze_value(x) for k, x in v.items()})
    if isinstance(v, list) and not isinstance(v, FrozenList):
        return FrozenList(_freeze_value(x) for x in v)
    if isinstance(v, _Frozen):
        v._freeze()
    return v


class _Frozen:
    """Mixin: attribute assignment is refused once :meth:`_freeze` was called."""

    def __setattr__(self, name: str, value: Any) -> None:
        if self.__dict__.get(_FROZEN, False):
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}: "
                                                  + _FROZEN_MSG)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if self.__dict__.get(_FROZEN, False):
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}: " + _FROZEN_MSG)
        object.__delattr__(self, name)

    def _freeze(self) -> None:
        if self.__dict__.get(_FROZEN, False):
            return
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, _freeze_value(getattr(self, f.name)))
        object.__setattr__(self, _FROZEN, True)

    @property
    def frozen(self) -> bool:
        """True once the configuration is validated."""
        return bool(self.__dict__.get(_FROZEN, False))


# --------------------------------------------------------------------------------------------
# field declarations
# --------------------------------------------------------------------------------------------

def option(default: Any = REQUIRED, *, type: str, doc: str = "",
           choices: tuple | Callable[[], tuple] | None = None,
           ge: float | None = None, gt: float | None = None, le: float | None = None,
           lt: float | None = None, only_for: tuple[str, ...] | None = None,
           not_for: tuple[str, ...] | None = None, ignored_elsewhere: Any = _MISSING,
           max_len: int | None = None, section: type | None = None) -> Any:
    """Declare a config field.

    ``type`` is one of ``int``, ``float``, ``bool``, ``str``, ``float_or_inf`` (a float, TOML
    ``inf`` or the string ``"inf"``), ``str_list``, ``floats`` / ``ints`` (a number or an array of
    up to ``max_len`` numbers, each checked against the range), ``schedule`` (a positive number
    or a table ``{kind = ..., ...}``, see :func:`make_schedule`), ``table`` (a nested section of
    class ``section``) or ``any``.

    ``choices`` is a tuple or a function returning one (a registry looked up when validating).
    ``only_for`` / ``not_for`` restrict the field to some values of the section's discriminator
    (``kind``; ``dynamics.solver`` for ``[dynamics]`` and ``[grid]``): setting it for another
    value is an error and it is left out of the resolved TOML. A required field with
    ``only_for`` is required for those values only. ``ignored_elsewhere`` is a value accepted (and
    dropped) where the field does not apply, for configurations written by older versions.
    """
    meta = dict(type=type, doc=doc, choices=choices, ge=ge, gt=gt, le=le, lt=lt,
                only_for=only_for, not_for=not_for, ignored_elsewhere=ignored_elsewhere,
                max_len=max_len, section=section, required=default is REQUIRED)
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
    """Plain (unfrozen) deep copy of dicts and lists."""
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)) and not isinstance(v, Schedule):
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
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _typename(v: Any) -> str:
    for t, name in ((bool, "boolean"), (int, "integer"), (float, "float"), (str, "string"),
                    (list, "array"), (dict, "table")):
        if isinstance(v, t):
            return name
    return type(v).__name__


def _hint(word: str, candidates: Iterable[str]) -> str:
    candidates = list(candidates)
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    if not close:
        lower = {c.lower(): c for c in candidates}
        if word.lower() in lower:
            close = [lower[word.lower()]]
    return f" (did you mean '{close[0]}'?)" if close else ""


def _quoted(values: Iterable[Any]) -> str:
    return ", ".join(repr(v) for v in values)


def _range_text(meta: Mapping[str, Any]) -> str:
    parts = []
    for key, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if meta.get(key) is not None:
            parts.append(f"{op} {meta[key]:g}")
    return " and ".join(parts)


def _expected_text(meta: Mapping[str, Any]) -> str:
    t = meta["type"]
    choices = _choices(meta)
    if choices:
        return "one of " + _quoted(choices)
    n = meta.get("max_len")
    base = {
        "int": "an integer",
        "float": "a number",
        "bool": "true or false",
        "str": "a string",
        "float_or_inf": "a number or inf",
        "str_list": "an array of strings",
        "floats": f"a number or an array of up to {n} numbers" if n else "an array of numbers",
        "ints": f"an integer or an array of up to {n} integers" if n else "an array of integers",
        "schedule": "a number > 0 or a table {kind = ...} with kind in " + _quoted(SCHEDULES),
        "table": "a table",
        "any": "a value",
    }[t]
    r = _range_text(meta)
    return f"{base} {r}" if r else base


def _check_value(where: str, value: Any, meta: Mapping[str, Any]) -> Any:
    """Validate and normalise one value; raise ConfigError naming ``where``."""
    t = meta["type"]
    original = value

    def bad(extra: str = "") -> ConfigError:
        got = f"{_fmt(original)} ({_typename(original)})"
        return ConfigError(f"{where} = {got}: expected {_expected_text(meta)}{extra}")

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
    elif t in ("floats", "ints"):
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        n = meta.get("max_len")
        if not items or (n is not None and len(items) > n):
            raise bad()
        item_meta = {**meta, "type": t[:-1], "max_len": None}
        try:
            return [_check_value(where, x, item_meta) for x in items]
        except ConfigError:
            raise bad() from None
    elif t == "schedule":
        return _check_schedule(where, value)
    elif t == "table":
        raise TypeError("tables are parsed by their section")  # pragma: no cover
    elif t == "any":
        return value
    else:  # pragma: no cover - programming error
        raise TypeError(f"unknown option type {t!r}")

    choices = _choices(meta)
    if choices and value not in choices:
        raise bad(_hint(str(value), [str(c) for c in choices]))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for key, ok in (("gt", lambda b: value > b), ("ge", lambda b: value >= b),
                        ("lt", lambda b: value < b), ("le", lambda b: value <= b)):
            if meta.get(key) is not None and not ok(meta[key]):
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
        """The TOML value: a bare number for constants, else a table."""
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
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} = {_fmt(value)} ({_typename(value)}): expected a number > 0 "
                          f"or a table {{kind = ...}} with kind in " + _quoted(SCHEDULES))
    kind = value.get("kind")
    if kind not in SCHEDULES:
        raise ConfigError(f"{where}.kind = {_fmt(kind)}: expected one of " + _quoted(SCHEDULES)
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
# parsing context
# --------------------------------------------------------------------------------------------

class _Context:
    """What a section sees while it is built: the whole raw configuration, the sections built
    so far, the validation hooks, and defaults set by an enclosing section."""

    def __init__(self, raw: Mapping[str, Any], *, data_spec=None, quantities_available=None,
                 sections: dict[str, Any] | None = None, **defaults: Any):
        self.raw = raw
        self.data_spec_fn = data_spec
        self.quantities_fn = quantities_available
        self.sections = {} if sections is None else sections
        self.defaults = defaults

    def child(self, **defaults: Any) -> "_Context":
        return _Context(self.raw, data_spec=self.data_spec_fn,
                        quantities_available=self.quantities_fn, sections={}, **defaults)

    def data_spec(self, kind: str, where: str) -> dict[str, Any] | None:
        fn = self.data_spec_fn
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
            raise ConfigError(f"{where}.kind = {kind!r}: {msg}") from None
        return {k: (REQUIRED if v is required else v) for k, v in spec.items()}

    def available_quantities(self) -> list[str] | None:
        fn = self.quantities_fn
        if fn is None:
            try:
                from mfpde.observers import Observers  # type: ignore
            except ImportError:
                return None
            fn = Observers.available
        return list(fn())

    def solver(self) -> str | None:
        dyn = self.sections.get("dynamics")
        return None if dyn is None else dyn.solver


# --------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------

class _Section(_Frozen):
    """Mixin: generic parsing/serialisation for dataclass sections built with :func:`option`.

    ``_kind_key`` names the field whose value ``only_for`` / ``not_for`` refer to (``"kind"``),
    or ``("dynamics", "solver")`` for a section restricted by the driver.
    """

    _name = "section"
    _extra_keys = False  # True: unknown keys are collected into `params` (see DataConfig)
    _kind_key: str | tuple[str, str] | None = "kind"

    @classmethod
    def options(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls) if "type" in f.metadata}

    @classmethod
    def _kind_label(cls, name: str) -> str:
        k = cls._kind_key
        return f"{k[0]}.{k[1]}" if isinstance(k, tuple) else f"{name}.{k}"

    @classmethod
    def _default_kind(cls, ctx: _Context) -> Any:
        """The discriminator's value when it is not given (its declared default)."""
        f = cls.options().get(cls._kind_key) if isinstance(cls._kind_key, str) else None
        if f is None or f.default is _MISSING:
            return None
        return f.default

    @classmethod
    def applies(cls, key: str, kind: Any) -> bool:
        """Whether field ``key`` applies to the discriminator value ``kind``."""
        meta = cls.options()[key].metadata
        only, notf = meta.get("only_for"), meta.get("not_for")
        return not ((only and kind not in only) or (notf and kind in notf))

    @classmethod
    def from_dict(cls, name: str, raw: Mapping[str, Any], ctx: Any = None):
        if not isinstance(raw, Mapping):
            raise ConfigError(f"[{name}] must be a table, got {_fmt(raw)} ({_typename(raw)})")
        if not isinstance(ctx, _Context):
            ctx = _Context(ctx if isinstance(ctx, Mapping) else {})
        opts = cls.options()
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in opts:
                if cls._extra_keys:
                    extra[key] = value
                    continue
                raise ConfigError(cls._unknown_key_message(name, key, opts))
            meta = opts[key].metadata
            if meta["type"] == "table":
                values[key] = meta["section"].from_dict(f"{name}.{key}", value,
                                                        cls._table_context(key, raw, ctx))
            else:
                values[key] = _check_value(f"{name}.{key}", value, meta)
        kk = cls._kind_key
        if isinstance(kk, tuple):
            kind = ctx.solver() if kk == ("dynamics", "solver") else None
        elif kk is not None and kk in opts:
            if kk not in values:
                default = cls._default_kind(ctx)
                if default is not None:
                    values[kk] = default
            kind = values.get(kk)
        else:
            kind = None
        cls._check_kind(name, kind, ctx)
        for key, f in opts.items():
            meta = f.metadata
            applies = cls.applies(key, kind)
            if key not in values:
                if meta["required"] and applies:
                    if meta["type"] == "table":
                        values[key] = meta["section"].from_dict(
                            f"{name}.{key}", {}, cls._table_context(key, raw, ctx))
                        continue
                    raise ConfigError(f"{name}.{key} is required"
                                      + (f" for {cls._kind_label(name)} = {_fmt(kind)}"
                                         if meta.get("only_for") else "")
                                      + f": expected {_expected_text(meta)}")
                if meta["type"] == "table" and applies:
                    values[key] = meta["section"].from_dict(
                        f"{name}.{key}", {}, cls._table_context(key, raw, ctx))
                continue
            if not applies:
                ign = meta.get("ignored_elsewhere", _MISSING)
                if ign is not _MISSING and values[key] == ign:
                    del values[key]
                    continue
                raise ConfigError(cls._only_for_message(name, key, raw[key], meta, kind))
        values = cls.resolve(name, values, extra, ctx)
        if cls._extra_keys and "params" not in values:
            values["params"] = dict(extra)
        return cls(**values)

    @classmethod
    def _table_context(cls, key: str, raw: Mapping[str, Any], ctx: _Context) -> _Context:
        return ctx.child()

    @classmethod
    def _check_kind(cls, name: str, kind: Any, ctx: _Context) -> None:
        """Checks of the discriminator against other sections, before its fields are checked."""

    @classmethod
    def resolve(cls, name: str, values: dict[str, Any], extra: dict[str, Any],
                ctx: _Context) -> dict[str, Any]:
        """Fill in defaults that depend on other fields or sections; check rules. Returns the
        keyword arguments of the section (nothing is changed after construction)."""
        return values

    @classmethod
    def _only_for_message(cls, name: str, key: str, value: Any, meta: Mapping[str, Any],
                          kind: Any) -> str:
        label = cls._kind_label(name)
        if meta.get("only_for"):
            return (f"{name}.{key} = {_fmt(value)}: applies only to {label} in "
                    + _quoted(meta["only_for"]) + f", not {label} = {_fmt(kind)}")
        return f"{name}.{key} = {_fmt(value)}: does not apply to {label} = {_fmt(kind)}"

    @classmethod
    def _unknown_key_message(cls, name: str, key: str, opts: Mapping[str, Any]) -> str:
        return (f"unknown key {name}.{key}{_hint(key, opts)}; allowed keys in [{name}]: "
                + ", ".join(opts))

    def check(self, cfg: "Config") -> None:
        """Cross-section checks (validation only); override in sections that need them."""

    def __getitem__(self, key: str) -> Any:
        """Read access by name (``cfg.compare.fit["x"]``)."""
        if key not in {f.name for f in dataclasses.fields(self)}:  # type: ignore[arg-type]
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def _kind(self) -> Any:
        """The discriminator's value (a section restricted by the driver keeps it in the
        non-option field ``solver``)."""
        kk = self._kind_key
        if isinstance(kk, str):
            return getattr(self, kk, None)
        return getattr(self, "solver", None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        kind = self._kind()
        for key, f in self.options().items():
            value = getattr(self, key)
            if not self.applies(key, kind):
                continue
            if value is None:
                continue
            if isinstance(value, Schedule):
                value = value.to_value()
            elif isinstance(value, _Section):
                value = value.to_dict()
            out[key] = _copy(value)
        return out


def _sub(values: Mapping[str, Any], key: str, default: Any = None) -> Any:
    v = values.get(key, default)
    return default if v is None else v


# ------------------------------------------------------------------------------------ [model]

@dataclass(eq=True)
class ModelConfig(_Section):
    """``[model]``: the network: a read-out model (``mfpde.models.make_model``) or the
    Pham–Nguyen three-layer network (``PNThreeLayer``)."""

    kind: str = option(type="str", choices=_model_kinds,
                       doc="network family: two_layer (theta = (a, u)), nc (three-layer NC), "
                           "pham_nguyen (three-layer Pham–Nguyen)")
    activation: str = option("tanh", type="str", choices=_activations, not_for=(PN_KIND,),
                             doc="activation sigma")
    bias: bool = option(False, type="bool", not_for=(PN_KIND,),
                        doc="add a bias coordinate to u")
    output: str = option("trainable", type="str", choices=OUTPUTS,
                         only_for=("two_layer",),
                         doc="outgoing weights a trained, or fixed to 1 (q = 1)")
    q: int | None = option(None, type="int", ge=1, not_for=(PN_KIND,),
                           doc="output dimension; omitted: taken from the data")
    d: int | None = option(None, type="int", ge=1,
                           doc="input dimension; omitted: taken from the data (if given it must "
                               "equal the data's)")
    p: int = option(4, type="int", ge=1, only_for=("nc",), doc="feature width p (>= q)")
    Gamma: float = option(1.0, type="float", gt=0.0, only_for=("nc",),
                          doc="output multiplier Gamma")
    train_W: bool = option(True, type="bool", only_for=("nc",),
                           doc="train the last layer W (else frozen at init)")
    lam: float = option(0.0, type="float", ge=0.0, doc="weight decay lambda on particles")
    lam_W: float = option(0.0, type="float", ge=0.0, only_for=("nc",),
                          doc="weight decay lambda_W on W")
    readout_R: float = option(math.inf, type="float_or_inf", gt=0.0, only_for=("nc",),
                              doc="radius R of the truncated read-out tau_R of the two-stage "
                                  "algorithm (Wu & Mondelli §5; models.md §2); inf = untruncated")
    init_scale_a: float = option(1.0, type="float", ge=0.0, not_for=(PN_KIND,),
                                 doc="std of the initial outgoing weights a")
    init_scale_u: float = option(1.0, type="float", ge=0.0, not_for=(PN_KIND,),
                                 doc="std of the initial incoming weights u")
    memory: str = option("auto", type="str", choices=MEMORY_MODES, not_for=(PN_KIND,),
                         doc="passes over several sample blocks: keep block tiles and (N, D) "
                             "accumulators (fast), or recompute per particle chunk with memory "
                             "near the particle state (low); auto = low from 2^19 particles")
    phi1: str = option("tanh", type="str", choices=_activations, only_for=(PN_KIND,),
                       doc="first-layer activation")
    phi2: str = option("tanh", type="str", choices=_activations, only_for=(PN_KIND,),
                       doc="second-layer activation")
    phi3: str = option("identity", type="str", choices=_activations, only_for=(PN_KIND,),
                       doc="output activation")
    init_w1_std: float = option(1.0, type="float", ge=0.0, only_for=(PN_KIND,),
                                doc="w1 ~ N(0, std^2 I_d)")
    init_w2_mean: float = option(1.0, type="float", only_for=(PN_KIND,),
                                 doc="w2 ~ Unif[mean - halfwidth, mean + halfwidth]")
    init_w2_halfwidth: float = option(1.0, type="float", ge=0.0, only_for=(PN_KIND,),
                                      doc="half width of the w2 law")
    init_w3_mean: float = option(0.0, type="float", only_for=(PN_KIND,),
                                 doc="w3 ~ Unif[mean - halfwidth, mean + halfwidth]")
    init_w3_halfwidth: float = option(1.0, type="float", ge=0.0, only_for=(PN_KIND,),
                                      doc="half width of the w3 law")

    _name = "model"

    @property
    def is_pn(self) -> bool:
        return self.kind == PN_KIND

    @classmethod
    def resolve(cls, name, values, extra, ctx):
        p = values.get("p", cls.options()["p"].default)
        if values.get("kind") == "nc" and values.get("q") is not None and p < values["q"]:
            raise ConfigError(f"{name}.p = {p}: expected an integer >= {name}.q = "
                              f"{values['q']}")
        return values

    def make_kwargs(self, d: int, q: int) -> dict[str, Any]:
        """Keyword arguments for ``mfpde.models.make_model`` (read-out models)."""
        return dict(kind=self.kind, d=d, q=q, activation=self.activation, bias=self.bias,
                    output=self.output, p=self.p, Gamma=self.Gamma, lam=self.lam,
                    lam_W=self.lam_W, init_scale_a=self.init_scale_a,
                    init_scale_u=self.init_scale_u, memory=self.memory)

    def pn_kwargs(self, d: int) -> dict[str, Any]:
        """Keyword arguments for ``PNThreeLayer`` (the Pham–Nguyen network)."""
        return dict(d=d, phi1=self.phi1, phi2=self.phi2, phi3=self.phi3, lam=self.lam,
                    init_w1_std=self.init_w1_std, init_w2_mean=self.init_w2_mean,
                    init_w2_halfwidth=self.init_w2_halfwidth, init_w3_mean=self.init_w3_mean,
                    init_w3_halfwidth=self.init_w3_halfwidth)


# ------------------------------------------------------------------------------------- [data]

@dataclass(eq=True)
class DataConfig(_Section):
    """``[data]``: ``kind``, ``seed`` and the kind's own parameters.

    The parameters of each kind and their defaults come from ``mfpde.data.data_param_spec``;
    any other key is an error. ``seed`` defaults to ``dynamics.seed + 1`` (0 in a comparison).
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

    @classmethod
    def _table_context(cls, key, raw, ctx):  # pragma: no cover - no nested tables
        return ctx.child()

    @classmethod
    def resolve(cls, name, values, extra, ctx):
        in_compare = ctx.defaults.get("compare", False)
        if values.get("seed") is None:
            if in_compare:
                values["seed"] = 0
            else:
                dyn = ctx.sections.get("dynamics")
                values["seed"] = (dyn.seed if dyn is not None else 0) + 1
        if in_compare and values.get("test_n"):
            raise ConfigError(f"{name}.test_n = {values['test_n']}: the held-out set of a "
                              f"comparison is compare.test_n")
        kind = values["kind"]
        spec = ctx.data_spec(kind, name)
        if spec is None:
            values["params"] = dict(extra)
            return values
        spec = dict(spec)
        # `online` is chosen in one place ([dynamics] or compare.sampling); the data spec only
        # says whether it is possible
        has_sampler = "online" in spec
        spec.pop("online", None)
        online = ctx.defaults.get("online")
        if online is None:
            dyn = ctx.sections.get("dynamics")
            online = bool(dyn is not None and dyn.online)
        online_field = "compare.sampling = 'online'" if in_compare else "dynamics.online = true"
        if online and not has_sampler:
            fix = ("another sampling rule" if in_compare else "dynamics.online = false")
            raise ConfigError(f"{online_field}: {name}.kind = '{kind}' has no online sampler; "
                              f"use {fix} or a kind with one")
        if values.get("test_n") and not has_sampler:
            raise ConfigError(f"{name}.test_n = {values['test_n']}: {name}.kind = '{kind}' has "
                              f"no population sampler to draw a held-out set from; use "
                              f"test_n = 0")
        resolved: dict[str, Any] = {}
        for key, value in extra.items():
            if key == "online":
                where = "compare.sampling = 'online'" if in_compare else \
                    "dynamics.online = true"
                raise ConfigError(f"unknown key {name}.online; online sampling is set with "
                                  f"{where}")
            if key not in spec:
                allowed = ", ".join(["kind", "seed", *spec]) or "kind, seed"
                raise ConfigError(f"unknown key {name}.{key}{_hint(key, spec)}; "
                                  f"allowed keys for {name}.kind = '{kind}': {allowed}")
            resolved[key] = _check_like(f"{name}.{key}", value, spec[key])
        for key, default in spec.items():
            if key not in resolved:
                if default is REQUIRED:
                    raise ConfigError(f"{name}.{key} is required for {name}.kind = '{kind}'")
                resolved[key] = _copy(default)
        values["params"] = resolved
        values["has_sampler"] = has_sampler
        return values

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


# --------------------------------------------------------------------------------- [dynamics]

_FIXED_STEP = tuple(n for n, d in DRIVERS.items() if d.fixed_step)
_ADAPTIVE = tuple(n for n, d in DRIVERS.items() if not d.fixed_step)
_PARTICLE = tuple(n for n, d in DRIVERS.items() if d.family == "particle")
_READOUT_PARTICLE = tuple(n for n, d in DRIVERS.items()
                          if d.family == "particle" and d.models == "readout")
#: drivers with mini-batches and online samples
_BATCHED = ("langevin", "kinetic", "trainer", "pn")
#: default friction of the drivers where gamma has one
_GAMMA_DEFAULT = {"kinetic": 1.0, "pn_kinetic": 1.0, "phase_grid": 1.0}
_RAW_ONLY = ("lr", "momentum", "weight_decay", "weight_decay_W", "noise_std", "lr_W")


_STAGE_FIELDS = {"name": "a string", "steps": "an integer >= 1", "t_end": "a number > 0",
                 "train_W": "true or false", "beta": "a number > 0 or inf"}


def _check_seeds(where: str, seeds: Any) -> list[int]:
    """A count ``n`` (seeds ``0 .. n-1``) or a list of distinct integers >= 0."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ConfigError(f"{where} = {seeds}: expected a count >= 1 or a list of seeds")
        seeds = list(range(seeds))
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ConfigError(f"{where} = {_fmt(seeds)}: expected a count or a list of integers "
                          f">= 0")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: repeated seed in {_fmt(seeds)}")
    return list(seeds)


def _check_stages(stages: Any, dt: Any) -> list[dict[str, Any]]:
    """Validate ``[[dynamics.stages]]``: a non-empty array of tables with ``name``, exactly one
    of ``steps`` / ``t_end`` (a duration; steps = round(t_end / dt)), optional ``train_W`` and
    ``beta``; returns the resolved tables (``name``, ``steps``, ``train_W``, ``beta``)."""
    if not isinstance(stages, list) or not stages:
        raise ConfigError(f"dynamics.stages = {_fmt(stages)}: expected a non-empty array of "
                          f"tables ([[dynamics.stages]])")
    out = []
    for i, st in enumerate(stages):
        where = f"dynamics.stages[{i}]"
        if not isinstance(st, Mapping):
            raise ConfigError(f"{where} = {_fmt(st)}: expected a table")
        for key in st:
            if key not in _STAGE_FIELDS:
                raise ConfigError(f"unknown key {where}.{key}{_hint(key, _STAGE_FIELDS)}; "
                                  f"allowed: " + ", ".join(_STAGE_FIELDS))
        if ("steps" in st) == ("t_end" in st):
            raise ConfigError(f"{where}: give exactly one of steps and t_end")
        if "steps" in st:
            steps = _check_value(f"{where}.steps", st["steps"], dict(type="int", ge=1))
        else:
            t = _check_value(f"{where}.t_end", st["t_end"], dict(type="float", gt=0.0))
            if not isinstance(dt, (int, float)):
                raise ConfigError(f"{where}.t_end needs dynamics.dt")
            steps = int(round(t / float(dt)))
            if steps < 1:
                raise ConfigError(f"{where}.t_end = {t:g}: shorter than one step dt = {dt:g}")
        name = st.get("name", f"stage{i + 1}")
        if not isinstance(name, str):
            raise ConfigError(f"{where}.name = {_fmt(name)}: expected a string")
        res = {"name": name, "steps": int(steps),
               "train_W": _check_value(f"{where}.train_W", st.get("train_W", True),
                                       dict(type="bool"))}
        if "beta" in st:
            res["beta"] = _check_value(f"{where}.beta", st["beta"],
                                       dict(type="float_or_inf", gt=0.0))
        out.append(res)
    return out


@dataclass(eq=True)
class DynamicsConfig(_Section):
    """``[dynamics]``: the driver (``solver``, from :data:`mfpde.rules.DRIVERS`) and its step,
    duration, noise, batches and seed."""

    solver: str = option("langevin", type="str", choices=_drivers,
                         doc="the driver (mfpde.rules.DRIVERS); default langevin, pn for the "
                             "Pham–Nguyen model")
    stages: list | None = option(None, type="any", only_for=("langevin",),
                                 doc="a run in stages ([[dynamics.stages]] tables: name, steps "
                                     "or t_end, train_W, beta), e.g. the two-stage algorithm; "
                                     "dynamics.steps defaults to their sum (more: the last "
                                     "stage goes on)")
    gamma: float | None = option(None, type="float", gt=0.0,
                                 only_for=("kinetic", "pn_kinetic", "phase_grid", "trainer", "pn",
                                           "quadrature"),
                                 ignored_elsewhere=1.0,
                                 doc="friction (kinetic drivers: default 1.0; heavy-ball trainers: "
                                     "required; quadrature: omitted = first-order flow)")
    integrator: str | None = option(None, type="str", choices=_integrators,
                                    only_for=("kinetic", "pn_kinetic"), ignored_elsewhere="baoab",
                                    doc="kinetic integrator (kinetic: default baoab; splitting "
                                        "needs beta = inf; pn_kinetic: default splitting)")
    method: str | None = option(None, type="str", choices=METHODS, only_for=("trainer", "pn"),
                                doc="training method (trainer: default gd; pn: sgd, shb, "
                                    "shb_polyak, default sgd)")
    units: str = option("mean_field", type="str", choices=UNITS, only_for=("trainer",),
                        doc="hyper-parameter units of the trainer: mean_field (dt = eps, gamma, "
                            "beta) or raw framework units (lr, momentum, weight_decay, "
                            "noise_std)")
    N: int | None = option(type="int", ge=1, only_for=("langevin", "kinetic", "trainer"),
                           doc="number of particles (network width)")
    n1: int | None = option(type="int", ge=1, only_for=("pn", "pn_kinetic"),
                            doc="Pham–Nguyen first hidden width")
    n2: int | None = option(None, type="int", ge=1, only_for=("pn", "pn_kinetic"),
                            doc="Pham–Nguyen second hidden width; default n1")
    n_q: int | None = option(type="int", ge=1, only_for=("quadrature",),
                             doc="Gauss–Hermite nodes per dimension (n_q^D nodes)")
    dt: float | None = option(None, type="float", gt=0.0, only_for=_FIXED_STEP,
                              doc="time step epsilon (mean-field time t = k dt); required for "
                                  "fixed-step drivers (raw units: give lr)")
    steps: int | None = option(None, type="int", ge=0, only_for=_FIXED_STEP,
                               doc="number of steps (or give t_end)")
    t_end: float | None = option(None, type="float", ge=0.0,
                                 doc="final time; fixed step: steps = round(t_end / dt)")
    beta: float = option(math.inf, type="float_or_inf", gt=0.0,
                         doc="inverse temperature; inf = noiseless")
    batch: int = option(0, type="int", ge=0, only_for=_BATCHED, ignored_elsewhere=0,
                        doc="mini-batch size; 0 = full batch")
    online: bool = option(False, type="bool", only_for=_BATCHED, ignored_elsewhere=False,
                          doc="fresh samples every step from the data kind's sampler")
    xi: Schedule = option(1.0, type="schedule", only_for=_PARTICLE,
                          doc="time-rescaling schedule xi(t)")
    xi_W: float = option(1.0, type="float", gt=0.0,
                         only_for=("langevin", "kinetic", "trainer", "quadrature"),
                         doc="xi_W(t) / xi(t) (NC model only)")
    gamma_W: float | None = option(None, type="float", gt=0.0, only_for=("trainer",),
                                   doc="friction of the W heavy ball (mean-field units; default "
                                       "gamma)")
    lr: float | None = option(None, type="float", gt=0.0, only_for=("trainer",),
                              doc="raw units: framework learning rate (eps = lr/N; heavy ball "
                                  "eps = sqrt(lr/N))")
    momentum: float | None = option(None, type="float", ge=0.0, lt=1.0, only_for=("trainer",),
                                    doc="heavy-ball momentum mu (gamma = (1 - mu)/eps)")
    weight_decay: float | None = option(None, type="float", ge=0.0, only_for=("trainer",),
                                        doc="raw units: weight decay wd (lam = N wd); omitted: "
                                            "model.lam")
    weight_decay_W: float | None = option(None, type="float", ge=0.0, only_for=("trainer",),
                                          doc="raw units: weight decay of W; omitted: "
                                              "model.lam_W")
    noise_std: float | None = option(None, type="float", ge=0.0, only_for=("trainer",),
                                     doc="raw units: noise std per step on theta (beta = "
                                         "2 eps / s^2)")
    lr_W: float | None = option(None, type="float", gt=0.0, only_for=("trainer",),
                                doc="raw units: learning rate of W; omitted: lr")
    seed: int = option(0, type="int", ge=0, doc="seed of the run's random generator")
    # noise stream of the particle drivers (mfpde.dynamics.base; docs/hpc.md)
    noise_stream: str = option("blocks", type="str", choices=("blocks", "single"),
                               only_for=("langevin", "kinetic", "trainer"),
                               ignored_elsewhere="blocks",
                               doc="noise of the particles: blocks (one generator per particle "
                                   "chunk: the same run on any number of MPI ranks) or single "
                                   "(the run's generator, as in files of schema version 1)")
    # arithmetic of the read-out model's gradient pass (mfpde.models.readout; docs/performance.md)
    precision: str = option("float64", type="str", choices=("float64", "float32"),
                            only_for=("langevin", "kinetic", "trainer"),
                            ignored_elsewhere="float64",
                            doc="arithmetic of the gradient pass: float64, or float32 (mixed "
                                "precision: float32 products and activations, float64 sums, "
                                "state, update and noise)")

    _name = "dynamics"
    _kind_key = "solver"

    def __post_init__(self) -> None:
        if self.xi is not None and not isinstance(self.xi, Schedule):
            self.xi = _check_schedule("dynamics.xi", self.xi)

    @classmethod
    def _default_kind(cls, ctx: _Context) -> str:
        model = ctx.sections.get("model")
        if model is not None and model.kind == PN_KIND:
            return "pn"
        return "langevin"

    @classmethod
    def _only_for_message(cls, name, key, value, meta, kind):
        only = meta.get("only_for") or ()
        return (f"{name}.{key} = {_fmt(value)}: only used by solver = "
                + " / ".join(repr(k) for k in only) + f" (solver is {_fmt(kind)})")

    @classmethod
    def _unknown_key_message(cls, name, key, opts):
        msg = super()._unknown_key_message(name, key, opts)
        if key == "train_W":
            msg += " (train_W is set in [model])"
        return msg

    @classmethod
    def _check_kind(cls, name, solver, ctx):
        """The driver moves the model family of [model]."""
        spec = DRIVERS[solver]
        model = ctx.sections.get("model")
        mkind = None if model is None else model.kind
        if spec.models == "pham_nguyen" and mkind is not None and mkind != PN_KIND:
            raise ConfigError(f"dynamics.solver = {solver!r}: moves the Pham–Nguyen network; "
                              f"model.kind is {mkind!r} (use model.kind = {PN_KIND!r})")
        if spec.models in ("readout", "optional") and mkind == PN_KIND:
            pn = [n for n, d in DRIVERS.items() if d.models == "pham_nguyen"]
            raise ConfigError(f"dynamics.solver = {solver!r}: does not move the Pham–Nguyen "
                              f"network; use solver = " + " or ".join(map(repr, pn)))

    @classmethod
    def resolve(cls, name, v, extra, ctx):
        solver = v["solver"]
        spec = DRIVERS[solver]
        raw_units = solver == "trainer" and v.get("units", "mean_field") == "raw"
        # duration
        if v.get("stages") is not None:
            # the run lasts the sum of its stages unless steps / t_end say otherwise (fewer:
            # it stops inside a stage; more: the last stage goes on, e.g. on --resume)
            v["stages"] = _check_stages(v["stages"], v.get("dt"))
            if v.get("steps") is None and v.get("t_end") is None:
                v["steps"] = sum(st["steps"] for st in v["stages"])
        if spec.fixed_step:
            if (v.get("steps") is None) == (v.get("t_end") is None):
                given = "both" if v.get("steps") is not None else "neither"
                raise ConfigError(f"dynamics.steps / dynamics.t_end: give exactly one of them "
                                  f"({given} given)")
            if raw_units:
                if v.get("dt") is not None:
                    raise ConfigError(f"dynamics.dt = {v['dt']}: raw units set the step with "
                                      f"dynamics.lr (eps follows from lr and N)")
                if v.get("lr") is None:
                    raise ConfigError("dynamics.lr is required for units = 'raw': expected a "
                                      "number > 0 (the framework learning rate)")
                if v.get("t_end") is not None:
                    raise ConfigError(f"dynamics.t_end = {v['t_end']}: raw units count steps; "
                                      f"give dynamics.steps")
            elif v.get("dt") is None:
                raise ConfigError(f"dynamics.dt is required for solver = {solver!r}: expected "
                                  f"a number > 0")
        elif v.get("t_end") is None:
            raise ConfigError(f"dynamics.t_end is required for solver = {solver!r} (adaptive "
                              f"steps up to t_end): expected a number >= 0")
        if solver == "trainer" and not raw_units:
            for key in _RAW_ONLY:
                if v.get(key) is not None and key != "momentum":
                    raise ConfigError(f"dynamics.{key} = {_fmt(v[key])}: a raw-unit "
                                      f"hyper-parameter; set dynamics.units = 'raw' (mean-field "
                                      f"units use dt, gamma, beta, model.lam)")
        if raw_units:
            for key in ("gamma", "gamma_W"):
                if v.get(key) is not None:
                    raise ConfigError(f"dynamics.{key} = {_fmt(v[key])}: a mean-field "
                                      f"parameter; raw units set the heavy ball with "
                                      f"dynamics.momentum")
            if "xi_W" in v and v["xi_W"] != 1.0:
                raise ConfigError(f"dynamics.xi_W = {_fmt(v['xi_W'])}: a mean-field parameter; "
                                  f"raw units set the W step with dynamics.lr_W")
            if math.isfinite(v.get("beta", math.inf)):
                raise ConfigError(f"dynamics.beta = {_fmt(v['beta'])}: raw units set the noise "
                                  f"with dynamics.noise_std")
        # per-driver defaults
        if v.get("gamma") is None and solver in _GAMMA_DEFAULT:
            v["gamma"] = _GAMMA_DEFAULT[solver]
        if solver in ("kinetic", "pn_kinetic"):
            allowed, default = _driver_integrators()[solver]
            if v.get("integrator") is None:
                v["integrator"] = default
            if v["integrator"] not in allowed:
                raise ConfigError(f"dynamics.integrator = {v['integrator']!r}: solver = "
                                  f"{solver!r} takes " + _quoted(allowed))
        if solver in ("pn", "pn_kinetic") and v.get("n2") is None and v.get("n1") is not None:
            v["n2"] = v["n1"]
        if v.get("online") and not v.get("batch"):
            raise ConfigError("dynamics.batch = 0: expected an integer >= 1 when "
                              "dynamics.online = true (samples drawn per step)")
        # the rules of the training methods (mfpde.rules)
        if solver in ("trainer", "pn"):
            pn = solver == "pn"
            if v.get("method") is None:
                v["method"] = "sgd" if pn else "gd"
            beta = v.get("beta", math.inf)
            if raw_units and v.get("noise_std"):
                beta = 1.0  # a finite temperature, given as a noise std
            bad = method_violation(v["method"], batch=v.get("batch", 0), beta=beta,
                                   gamma=v.get("gamma"), momentum=v.get("momentum"),
                                   online=v.get("online", False), pn=pn,
                                   momentum_allowed=not pn)
            if bad is not None:
                fld = bad.field
                if raw_units and fld == "beta":
                    fld = "noise_std"
                raise ConfigError(f"dynamics.{fld}: {bad.message}")
        elif solver in ("pn_kinetic", "quadrature"):
            if math.isfinite(v.get("beta", math.inf)):
                raise ConfigError(f"dynamics.beta = {_fmt(v['beta'])}: solver = {solver!r} is "
                                  f"noiseless; use beta = inf")
        if solver == "kinetic" and v.get("integrator") == "splitting" \
                and math.isfinite(v.get("beta", math.inf)):
            raise ConfigError("dynamics.integrator = 'splitting': the noiseless scheme "
                              "(beta = inf); use 'baoab' or 'obabo' with noise")
        return v

    @property
    def spec(self):
        """The :class:`~mfpde.rules.DriverSpec` of the driver."""
        return DRIVERS[self.solver]

    @property
    def raw_units(self) -> bool:
        return self.solver == "trainer" and self.units == "raw"

    @property
    def n_steps(self) -> int | None:
        """Total number of steps of a fixed-step run (None for adaptive drivers)."""
        if self.steps is not None:
            return int(self.steps)
        if self.t_end is None or self.dt is None:
            return None
        return int(round(self.t_end / self.dt))


# ------------------------------------------------------------------------------------- [grid]

@dataclass(eq=True)
class GridConfig(_Section):
    """``[grid]``: geometry, potential, initial law and scheme of the grid drivers."""

    lo: list[float] | None = option(type="floats", max_len=2, only_for=("fv", "phase_grid"),
                                    doc="lower corner (a number in 1-D, [lo0, lo1] in 2-D)")
    hi: list[float] | None = option(None, type="floats", max_len=2,
                                    doc="upper corner (fv / phase_grid: required); radial: r_max "
                                        "(solver default 3 radial.kappa)")
    J: list[int] | None = option(None, type="ints", max_len=2, ge=3,
                                 doc="cells per axis (fv / phase_grid: required; radial: solver "
                                     "default 400)")
    r_lo: float | None = option(type="float", only_for=("phase_grid",),
                                doc="lower end of the velocity grid")
    r_hi: float | None = option(type="float", only_for=("phase_grid",),
                                doc="upper end of the velocity grid")
    J_r: int | None = option(type="int", ge=3, only_for=("phase_grid",),
                             doc="cells of the velocity grid")
    potential: str | None = option(type="str", choices=GRID_POTENTIALS,
                                   only_for=("fv", "phase_grid"),
                                   doc="ou (lam/2 |theta|^2), double_well (theta^4/4 - theta^2/2 "
                                       "+ lam/2 theta^2, 1-D) or model ([model] and [data], "
                                       "D <= 2)")
    lam: float | None = option(None, type="float", ge=0.0, only_for=("fv", "phase_grid"),
                               doc="weight decay of the ou / double_well potential (default 1.0 "
                                   "/ 0.0)")
    init_mean: list[float] = option([0.0], type="floats", max_len=2,
                                    only_for=("fv", "phase_grid"),
                                    doc="mean of the Gaussian initial law (cell averages)")
    init_var: list[float] = option([1.0], type="floats", max_len=2, gt=0.0,
                                   only_for=("fv", "phase_grid"),
                                   doc="variance(s) of the Gaussian initial law")
    init_r_var: float = option(1.0, type="float", gt=0.0, only_for=("phase_grid",),
                               doc="variance of the Maxwellian velocity law")
    scheme: str | None = option(None, type="str", choices=GRID_SCHEMES, only_for=("fv", "radial"),
                                doc="time stepping: euler, ssprk2, implicit (solver default "
                                    "euler)")
    order: int | None = option(None, type="int", ge=1, le=2,
                               doc="reconstruction: 1 (upwind) or 2 (minmod); solver default 2")
    limiter: float | None = option(None, type="float", ge=1.0, le=2.0,
                                   only_for=("fv", "phase_grid"),
                                   doc="minmod parameter kappa in [1, 2]; solver default 2")
    cfl: float | None = option(None, type="float", gt=0.0, le=1.0,
                               doc="fraction of the positivity limit; solver default 0.9")
    c_diff: float | None = option(None, type="float", gt=0.0, le=0.5,
                                  doc="diffusive limit constant; solver default (0.25 fv, 0.4 "
                                      "phase_grid)")
    dt_max: float | None = option(None, type="float_or_inf", gt=0.0,
                                  doc="upper bound on every step; solver default inf")
    boundary_tol: float | None = option(None, type="float", ge=0.0,
                                        doc="warn when this fraction of the mass reaches the "
                                            "outer cells; solver default 1e-6")
    boundary_cells: int | None = option(None, type="int", ge=0,
                                        doc="outer cells watched; 0 = off; solver default 2")
    velocity_method: str | None = option(None, type="str", choices=VELOCITY_METHODS,
                                         only_for=("phase_grid",),
                                         doc="velocity sub-step: implicit or explicit (solver "
                                             "default implicit)")
    #: the driver the grid belongs to (dynamics.solver; not written)
    solver: str | None = field(default=None, compare=False, repr=False)

    _name = "grid"
    _kind_key = ("dynamics", "solver")

    @classmethod
    def resolve(cls, name, v, extra, ctx):
        solver = ctx.solver()
        v["solver"] = solver
        if solver == "radial":
            for key in ("hi", "J"):
                if v.get(key) is not None and len(v[key]) != 1:
                    raise ConfigError(f"grid.{key} = {_fmt(v[key])}: the radial grid is 1-D "
                                      f"(one number)")
            return v
        if v.get("hi") is None:
            raise ConfigError(f"grid.hi is required for dynamics.solver = {solver!r}: expected "
                              f"{_expected_text(cls.options()['hi'].metadata)}")
        if v.get("J") is None:
            raise ConfigError(f"grid.J is required for dynamics.solver = {solver!r}: expected "
                              f"{_expected_text(cls.options()['J'].metadata)}")
        ndim = len(v["lo"])
        if solver == "phase_grid" and ndim != 1:
            raise ConfigError(f"grid.lo = {_fmt(v['lo'])}: the phase-space solver has a 1-D "
                              f"theta grid (one number)")
        for key in ("hi", "J", "init_mean", "init_var"):
            if key in v and len(v[key]) not in (1, ndim):
                raise ConfigError(f"grid.{key} = {_fmt(v[key])}: expected {ndim} value(s), like "
                                  f"grid.lo")
        for key in ("hi", "J"):
            if len(v[key]) != ndim:
                v[key] = v[key] * ndim
        for i in range(ndim):
            if not v["hi"][i] > v["lo"][i]:
                raise ConfigError(f"grid.hi = {_fmt(v['hi'])}: expected each upper end > the "
                                  f"lower end grid.lo = {_fmt(v['lo'])}")
        if solver == "phase_grid" and not v["r_hi"] > v["r_lo"]:
            raise ConfigError(f"grid.r_hi = {v['r_hi']}: expected a number > grid.r_lo = "
                              f"{v['r_lo']}")
        pot = v["potential"]
        if pot == "double_well" and ndim != 1:
            raise ConfigError("grid.potential = 'double_well': defined on a 1-D grid")
        if pot == "model":
            if v.get("lam") is not None:
                raise ConfigError(f"grid.lam = {v['lam']}: the model potential's weight decay "
                                  f"is model.lam")
        elif v.get("lam") is None:
            from inspect import signature

            from .meanfield import potentials
            fn = potentials.ou_potential if pot == "ou" else potentials.double_well_potential
            v["lam"] = float(signature(fn).parameters["lam"].default)
        return v

    @property
    def ndim(self) -> int:
        """Dimension of the grid (1 for the radial and phase-space theta grids)."""
        return 1 if self.lo is None else len(self.lo)

    def scheme_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the grid solver for the scheme fields that are set."""
        names = {"scheme": "method", "order": "order", "limiter": "kappa", "cfl": "cfl",
                 "c_diff": "c_diff", "dt_max": "dt_max", "boundary_tol": "boundary_tol",
                 "boundary_cells": "boundary_cells", "velocity_method": "velocity_method"}
        return {arg: getattr(self, key) for key, arg in names.items()
                if getattr(self, key) is not None}

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for key in ("lo", "hi", "J", "init_mean", "init_var"):
            if key in out and len(out[key]) == 1:
                out[key] = out[key][0]
        return out


# ----------------------------------------------------------------------------------- [radial]

@dataclass(eq=True)
class RadialConfig(_Section):
    """``[radial]``: the Mei–Montanari–Nguyen isotropic-Gaussian problem of the radial reduction
    (``mfpde.meanfield.radial.radial_solver``), started from ``u ~ N(0, kappa^2/d I_d)``."""

    d: int = option(type="int", ge=2, doc="input dimension")
    delta: float = option(type="float", ge=0.0, lt=1.0, doc="Delta: class scales 1 +- Delta")
    kappa: float = option(type="float", gt=0.0, doc="scale of the initial law")
    lam: float = option(0.0, type="float", ge=0.0, doc="weight decay")
    activation: str = option("mmn_pl", type="str", choices=_activations,
                             doc="activation (mmn_pl in closed form, others by quadrature)")
    kmax: int | None = option(None, type="int", ge=0,
                              doc="even truncation order of the Mehler series; solver default 24")
    large_d: bool = option(False, type="bool", doc="keep only k = 0 (large-d simplification)")

    _name = "radial"
    _kind_key = None


# ---------------------------------------------------------------------------------- [observe]

@dataclass(eq=True)
class ObserveConfig(_Section):
    """``[observe]``: scalar series, snapshots and progress logging."""

    every: int = option(10, type="int", ge=1, doc="observe every this many steps")
    quantities: list[str] | None = option(None, type="str_list",
                                          doc="names of observed scalars (mfpde.observers); "
                                              "default: the driver's (loss; grids: free_energy)")
    snapshot_every: int = option(0, type="int", ge=0,
                                 doc="store the driver's fields every this many steps; 0 = off")
    snapshot_particles: int = option(0, type="int", ge=0,
                                     doc="particles per snapshot; 0 = all, else a fixed "
                                         "random subset chosen once")
    log_every: float = option(10.0, type="float", gt=0.0,
                              doc="seconds between log lines when not on a terminal")
    steady_quantities: list[str] = option([], type="str_list",
                                          doc="stop the run (status complete) once these observed "
                                              "quantities stop changing; [] = never")
    steady_rtol: float = option(1e-6, type="float", ge=0.0,
                                doc="steady state: |change| <= steady_rtol |value| + steady_atol "
                                    "between consecutive observations")
    steady_atol: float = option(0.0, type="float", ge=0.0, doc="steady state: absolute tolerance")
    steady_patience: int = option(3, type="int", ge=1,
                                  doc="steady state: observations in a row that must pass")

    _name = "observe"
    _kind_key = None

    @classmethod
    def resolve(cls, name, v, extra, ctx):
        if v.get("quantities") is None:
            solver = ctx.solver() or "langevin"
            v["quantities"] = list(DRIVERS[solver].quantities)
        q = v["quantities"]
        if len(set(q)) != len(q):
            dup = sorted({x for x in q if q.count(x) > 1})
            raise ConfigError(f"observe.quantities = {_fmt(q)}: duplicate " + _quoted(dup))
        for x in q:
            if x in ("t", "step"):
                raise ConfigError(f"observe.quantities: {x!r} is always recorded; remove it")
        available = ctx.available_quantities()
        if available is not None:
            for x in q:
                if x not in available:
                    raise ConfigError(f"observe.quantities: unknown quantity {x!r}"
                                      f"{_hint(x, available)}; available: " + ", ".join(available))
        missing = [x for x in v.get("steady_quantities", []) if x not in q]
        if missing:
            raise ConfigError(f"observe.steady_quantities: {_quoted(missing)} not observed; add "
                              f"them to observe.quantities")
        dyn = ctx.sections.get("dynamics")
        n = None if dyn is None else dyn.N
        if n is not None and v.get("snapshot_particles", 0) > n:
            raise ConfigError(f"observe.snapshot_particles = {v['snapshot_particles']}: "
                              f"expected an integer between 0 and dynamics.N = {n}")
        return v


# ----------------------------------------------------------------------------------- [output]

@dataclass(eq=True)
class OutputConfig(_Section):
    """``[output]``: the HDF5 run file."""

    path: str = option("run.h5", type="str", doc="output HDF5 file (-o on the command line)")
    checkpoint_every: int = option(0, type="int", ge=0,
                                   doc="checkpoint every this many steps; 0 = only at the end")
    overwrite: bool = option(False, type="bool", doc="replace an existing output file")
    time_limit: float = option(0.0, type="float", ge=0.0,
                               doc="wall-clock seconds the run may take; it then stops cleanly "
                                   "with a checkpoint (status interrupted, continue with "
                                   "--resume); 0 = no limit")
    time_margin: float = option(60.0, type="float", ge=0.0,
                                doc="seconds before time_limit at which the run stops (time for "
                                    "the last checkpoint)")

    _name = "output"
    _kind_key = None

    @classmethod
    def resolve(cls, name, v, extra, ctx):
        if v.get("path", "run.h5") == "":
            raise ConfigError("output.path = '': expected a file name")
        return v


# ---------------------------------------------------------------------------------- [compare]

@dataclass(eq=True)
class CompareReferenceConfig(_Section):
    """``[compare.reference]``: the mean-field reference of a comparison."""

    N: Any = option(type="any", doc="reference size (Pham–Nguyen: n or [n1, n2]); >= every width")
    dt: float | None = option(None, type="float", gt=0.0,
                              doc="one reference per seed for all dts (each dt a multiple); "
                                  "omitted: one reference per (seed, dt) with the same step")
    batch: str = option("same", type="str", choices=_ref_batch,
                        doc="same (shared batches when dt == reference dt) | full "
                            "(population GD)")
    noise_stream: str = option("blocks", type="str", choices=("blocks", "single"),
                               doc="noise of a noisy reference, which the networks share: "
                                   "blocks (one generator per particle chunk; split over MPI "
                                   "ranks each rank draws its own chunks') | single (the "
                                   "reference's generator; split, every rank draws all of it)")

    _name = "compare.reference"
    _kind_key = None

    @classmethod
    def resolve(cls, name, v, extra, ctx):
        pn = ctx.defaults.get("pn", False)
        N = v["N"]
        if pn and isinstance(N, list):
            if len(N) != 2:
                raise ConfigError(f"{name}.N = {_fmt(N)}: the Pham–Nguyen reference is n or "
                                  f"[n1, n2]")
            v["N"] = [_check_value(f"{name}.N", x, dict(type="int", ge=1)) for x in N]
        else:
            v["N"] = _check_value(f"{name}.N", N, dict(type="int", ge=1))
        return v


@dataclass(eq=True)
class CompareFitConfig(_Section):
    """``[compare.fit]``: the rate fits of a comparison (``mfpde.metrics.rates.fit_rate``)."""

    x: str = option("N", type="str", choices=FIT_X,
                    doc="N (one fit per dt; Pham–Nguyen: n_min) | dt (one fit per width)")
    quantity: str = option("coupling_rms", type="str", choices=FIT_QUANTITIES,
                           doc="the coupling quantity fitted")
    at: str = option("final", type="str", choices=FIT_AT,
                     doc="value at T | sup over the record times")
    agg: str = option("mean", type="str", choices=_aggregates,
                      doc="aggregation over seeds before the log-log fit")
    n_boot: int = option(2000, type="int", ge=1, doc="bootstrap resamples of the seeds")
    ci: float = option(0.95, type="float", gt=0.0, lt=1.0, doc="level of the bootstrap interval")
    ref_slope: float | None = option(None, type="float",
                                     doc="predicted slope (drawn dashed); default -0.5 for "
                                         "x = N, +0.5 for x = dt")

    _name = "compare.fit"
    _kind_key = None

    @classmethod
    def resolve(cls, name, v, extra, ctx):
        if v.get("ref_slope") is None:
            v["ref_slope"] = -0.5 if v.get("x", "N") == "N" else 0.5
        return v


def _pos_int(where: str, v: Any) -> int:
    return _check_value(where, v, dict(type="int", ge=1))


@dataclass(eq=True)
class CompareConfig(_Section):
    """``[compare]``: finite-width networks (widths x seeds x step sizes) synchronously coupled
    to a mean-field reference, rate fits (docs/finite-width.md §4). A job section: the file
    holds ``[compare]`` and optionally ``[output]``."""

    name: str = option("compare", type="str", doc="label for output and figures")
    method: str | None = option(None, type="str", choices=METHODS,
                                doc="gd | sgd | noisy_sgd | shb | shb_polyak (pham_nguyen: sgd | "
                                    "shb | shb_polyak); default gd (pham_nguyen: sgd)")
    batch: int = option(0, type="int", ge=0, doc="0 = full batch")
    sampling: str = option("epochs", type="str", choices=_sampling, doc="mini-batch rule")
    widths: list = option([64, 128, 256, 512], type="any",
                          doc="N; pham_nguyen: n (= [n, n]) or [n1, n2]")
    seeds: Any = option(8, type="any", doc="count (0..seeds-1) or a list of seeds")
    dts: list[float] = option([0.05], type="floats", gt=0.0,
                              doc="network steps eps (mean-field units)")
    T: float = option(2.0, type="float", gt=0.0, doc="horizon (mean-field time)")
    beta: float = option(math.inf, type="float_or_inf", gt=0.0,
                         doc="noisy_sgd / noisy heavy ball (shared Brownian path)")
    gamma: float | None = option(None, type="float", gt=0.0,
                                 doc="heavy-ball friction (required for shb / shb_polyak)")
    n_records: int = option(4, type="int", ge=1, doc="record intervals on [0, T]")
    test_n: int = option(256, type="int", ge=1,
                         doc="held-out samples (fresh samples of the data kind's sampler; kinds "
                             "without one use the training set)")
    w2_max_points: int = option(1024, type="int", ge=1,
                                doc="exact W2 up to this many points, sliced above")
    n_projections: int = option(128, type="int", ge=1,
                                doc="directions of the sliced distances")
    figure: bool = option(True, type="bool", doc="draw one figure per fit")
    model: ModelConfig = option(type="table", section=ModelConfig,
                                doc="the network ([model] fields, d optional)")
    data: DataConfig = option(type="table", section=DataConfig,
                              doc="the data ([data] fields; seed default 0)")
    reference: CompareReferenceConfig = option(type="table", section=CompareReferenceConfig,
                                               doc="the mean-field reference")
    fit: CompareFitConfig = option({}, type="table", section=CompareFitConfig,
                                   doc="the rate fits")

    _name = "compare"
    _kind_key = None
    #: a job section: the whole file is this job; other allowed sections
    _job = True
    _job_with = ("output",)

    @classmethod
    def _table_context(cls, key, raw, ctx):
        model = raw.get("model")
        pn = isinstance(model, Mapping) and model.get("kind") == PN_KIND
        if key == "data":
            return ctx.child(compare=True, online=raw.get("sampling") == "online")
        return ctx.child(pn=pn)

    @property
    def is_pn(self) -> bool:
        return self.model.kind == PN_KIND

    @classmethod
    def resolve(cls, name, v, extra, ctx):
        for key in ("model", "data", "reference"):
            if key not in v:  # pragma: no cover - required tables are always built
                raise ConfigError(f"{name}.{key} is required: expected a table")
        pn = v["model"].kind == PN_KIND
        if v.get("method") is None:
            v["method"] = "sgd" if pn else "gd"
        # widths
        widths = v.get("widths", [64, 128, 256, 512])
        if not isinstance(widths, list) or not widths:
            raise ConfigError(f"{name}.widths = {_fmt(widths)}: expected a non-empty array of "
                              f"widths")
        wl: list = []
        for w in widths:
            if pn and isinstance(w, list):
                if len(w) != 2:
                    raise ConfigError(f"{name}.widths: Pham–Nguyen widths are n or [n1, n2], "
                                      f"got {_fmt(w)}")
                wl.append([_pos_int(f"{name}.widths", w[0]), _pos_int(f"{name}.widths", w[1])])
            else:
                n = _pos_int(f"{name}.widths", w)
                wl.append([n, n] if pn else n)
        if len({tuple(w) if isinstance(w, list) else w for w in wl}) != len(wl):
            raise ConfigError(f"{name}.widths: repeated width in {_fmt(widths)}")
        v["widths"] = wl
        # seeds
        v["seeds"] = _check_seeds(f"{name}.seeds", v.get("seeds", 8))
        dts = v.get("dts", [0.05])
        if len(set(dts)) != len(dts):
            raise ConfigError(f"{name}.dts: repeated step size in {_fmt(dts)}")
        # the rules of the training methods (mfpde.rules)
        bad = method_violation(v["method"], batch=v.get("batch", 0),
                               beta=v.get("beta", math.inf), gamma=v.get("gamma"), pn=pn)
        if bad is not None:
            raise ConfigError(f"{name}.{bad.field}: {bad.message}")
        # widths within the reference
        ref = v["reference"]
        big = ref.N if not isinstance(ref.N, list) else min(ref.N)
        for w in wl:
            wm = max(w) if isinstance(w, list) else w
            if wm > big:
                raise ConfigError(f"{name}.widths: width {_fmt(w)} exceeds the reference size "
                                  f"{name}.reference.N = {_fmt(ref.N)}")
        return v

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["seeds"] = list(self.seeds)
        return out


# ------------------------------------------------------------------------------------ [sweep]

#: fields a sweep axis may not vary: the sweep names each point's run file itself
_SWEEP_FIXED = ("output.path", "output.overwrite")


def _sweep_axes(where: str, table: Any, prefix: str = "") -> dict[str, list]:
    """``{"section.key": [values]}`` of a table of axes; nested tables (TOML dotted keys
    ``dynamics.dt = [...]``) and quoted dotted keys (``"dynamics.dt" = [...]``) both name a field."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} = {_fmt(table)} ({_typename(table)}): expected a table "
                          f"{{\"section.key\" = [values, ...]}}")
    out: dict[str, list] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_sweep_axes(where, value, path + "."))
            continue
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{where}.{path} = {_fmt(value)}: expected a non-empty array of "
                              f"values")
        out[path] = list(value)
    return out


def _sweep_key(where: str, key: str) -> None:
    """Check that ``key`` (``section.field[.sub]``) names a field of a run configuration."""
    sections = {n: c for n, (c, _) in Config.sections().items()
                if not getattr(c, "_job", False)}
    parts = key.split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"{where}: axis {key!r}: expected section.key (e.g. 'dynamics.dt')")
    sec = sections.get(parts[0])
    if sec is None:
        raise ConfigError(f"{where}: axis {key!r}: unknown section [{parts[0]}]"
                          f"{_hint(parts[0], sections)}; a sweep varies the fields of "
                          + ", ".join(f"[{n}]" for n in sections))
    if key in _SWEEP_FIXED:
        raise ConfigError(f"{where}: axis {key!r}: the sweep names each point's run file; "
                          f"this field cannot be varied")
    opts = sec.options()
    if not sec._extra_keys and parts[1] not in opts:
        raise ConfigError(f"{where}: axis {key!r}: unknown key {parts[0]}.{parts[1]}"
                          f"{_hint(parts[1], opts)}; allowed keys in [{parts[0]}]: "
                          + ", ".join(opts))


@dataclass(eq=True)
class SweepConfig(_Section):
    """``[sweep]``: many runs of one base configuration (the rest of the file), one per point
    of the product of the axes (docs/sweeps.md). A job section over a whole run configuration:
    ``mfpde sweep init | run``.

    Points are the product of the ``grid`` axes (in file order, the last varying fastest), then
    of the ``zip`` groups (the axes of a group vary together), then of the seeds."""

    name: str = option("sweep", type="str", doc="label of the sweep (manifest, job names)")
    grid: dict = option({}, type="any",
                        doc="{\"section.key\" = [values]}: every combination of the values")
    zip: Any = option([], type="any",
                      doc="a table (or array of tables) of axes of equal length varied together")
    seeds: Any = option(None, type="any",
                        doc="count (0..seeds-1) or list of values of seed_key (innermost axis)")
    seed_key: str = option("dynamics.seed", type="str", doc="the field the seeds set")

    _name = "sweep"
    _kind_key = None
    #: a job over a whole base configuration: the other sections of the file are the base run
    _job = True
    _job_over_base = True

    @classmethod
    def resolve(cls, name, v, extra, ctx):
        grid = _sweep_axes(f"{name}.grid", v.get("grid", {}))
        zraw = v.get("zip", [])
        groups = [zraw] if isinstance(zraw, Mapping) else zraw
        if not isinstance(groups, list):
            raise ConfigError(f"{name}.zip = {_fmt(zraw)}: expected a table or an array of "
                              f"tables of axes")
        zips = []
        for i, g in enumerate(groups):
            where = f"{name}.zip" + (f"[{i}]" if len(groups) > 1 else "")
            axes = _sweep_axes(where, g)
            lengths = {k: len(x) for k, x in axes.items()}
            if len(set(lengths.values())) > 1:
                raise ConfigError(f"{where}: zipped axes need arrays of one length, got "
                                  + ", ".join(f"{k} ({n})" for k, n in lengths.items()))
            if axes:
                zips.append(axes)
        seeds = v.get("seeds")
        if seeds is not None:
            seeds = _check_seeds(f"{name}.seeds", seeds)
        keys = list(grid) + [k for g in zips for k in g]
        if seeds is not None:
            keys.append(v.get("seed_key", "dynamics.seed"))
        if not keys:
            raise ConfigError(f"[{name}] has no axes: give {name}.grid, {name}.zip or "
                              f"{name}.seeds")
        for k in keys:
            _sweep_key(name, k)
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ConfigError(f"[{name}]: {_quoted(dup)} varied by more than one axis")
        v["grid"], v["zip"], v["seeds"] = grid, zips, seeds
        return v

    @property
    def axes(self) -> list[str]:
        """The varied fields, in point order (grid, zipped, seed)."""
        out = list(self.grid) + [k for g in self.zip for k in g]
        return out + ([self.seed_key] if self.seeds is not None else [])

    @property
    def n_points(self) -> int:
        n = math.prod(len(x) for x in self.grid.values())
        n *= math.prod(len(next(iter(g.values()))) for g in self.zip)
        return n * (len(self.seeds) if self.seeds is not None else 1)


# --------------------------------------------------------------------------------------------
# the whole configuration
# --------------------------------------------------------------------------------------------

#: sections built first, in this order (the others may refer to them)
_FIRST = ("model", "dynamics")


@dataclass(eq=True)
class Config(_Frozen):
    """A validated, frozen run configuration. Sections are attributes (``cfg.dynamics.dt``);
    sections a run does not use are ``None``."""

    model: ModelConfig | None = section(ModelConfig, optional=True)
    data: DataConfig | None = section(DataConfig, optional=True)
    dynamics: DynamicsConfig | None = section(DynamicsConfig, optional=True)
    grid: GridConfig | None = section(GridConfig, optional=True)
    radial: RadialConfig | None = section(RadialConfig, optional=True)
    observe: ObserveConfig | None = section(ObserveConfig)
    output: OutputConfig = section(OutputConfig)
    compare: CompareConfig | None = section(CompareConfig, optional=True)
    sweep: SweepConfig | None = section(SweepConfig, optional=True)

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

    @property
    def job(self) -> str:
        """``"run"``, or the name of the job section that is set (``"compare"``, ``"sweep"``;
        a job over a whole base configuration, such as ``[sweep]``, comes first)."""
        items = sorted(self.sections().items(),
                       key=lambda kv: not getattr(kv[1][0], "_job_over_base", False))
        for name, (scls, _) in items:
            if getattr(scls, "_job", False) and getattr(self, name) is not None:
                return name
        return "run"

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
        over = [n for n, (scls, _) in sections.items()
                if getattr(scls, "_job_over_base", False) and n in raw]
        if over:
            # a job over a whole base configuration ([sweep]): the other sections are the base run
            base = cls.from_dict({k: v for k, v in raw.items() if k not in over},
                                 data_spec=data_spec, quantities_available=quantities_available)
            if base.job != "run":
                raise ConfigError(f"section [{over[0]}] varies a run configuration; a "
                                  f"[{base.job}] job has its own axes")
            ctx = _Context(raw, data_spec=data_spec, quantities_available=quantities_available,
                           sections={n: getattr(base, n) for n in sections})
            for n in over:
                ctx.sections[n] = sections[n][0].from_dict(n, raw[n], ctx)
            cfg = cls(**ctx.sections, data_spec=data_spec,
                      quantities_available=quantities_available)
            for n in over:
                getattr(cfg, n).check(cfg)
            cfg._freeze()
            return cfg
        ctx = _Context(raw, data_spec=data_spec, quantities_available=quantities_available)
        built = ctx.sections
        jobs = [n for n, (scls, _) in sections.items()
                if getattr(scls, "_job", False) and n in raw]
        if jobs:
            job = jobs[0]
            allowed = {job, *sections[job][0]._job_with}
            for name in raw:
                if name not in allowed:
                    raise ConfigError(f"section [{name}] is not used by a [{job}] configuration "
                                      f"(it takes " + ", ".join(f"[{a}]" for a in
                                                                 [job, *sections[job][0]._job_with])
                                      + ")")
            for name in [job, *sections[job][0]._job_with]:
                built[name] = sections[name][0].from_dict(name, raw.get(name, {}), ctx)
            built.update({n: None for n in sections if n not in built})
        else:
            for name in _FIRST:
                if name in raw:
                    built[name] = sections[name][0].from_dict(name, raw[name], ctx)
            cls._check_sections(raw, built)
            for name, (scls, optional) in sections.items():
                if name in built or getattr(scls, "_job", False):
                    continue
                if name in raw:
                    built[name] = scls.from_dict(name, raw[name], ctx)
                elif not optional:
                    built[name] = scls.from_dict(name, {}, ctx)
        cfg = cls(**built, data_spec=data_spec, quantities_available=quantities_available)
        for name in sections:
            sec = getattr(cfg, name)
            if sec is not None:
                sec.check(cfg)
        cfg._freeze()
        return cfg

    @staticmethod
    def _check_sections(raw: Mapping[str, Any], built: Mapping[str, Any]) -> None:
        """Which of [model], [data], [dynamics], [grid], [radial] the driver needs or refuses."""
        dyn = built.get("dynamics")
        solver = dyn.solver if dyn is not None else "langevin"
        spec = DRIVERS[solver]
        grid = raw.get("grid") if isinstance(raw.get("grid"), Mapping) else {}
        uses_model = spec.models in ("readout", "pham_nguyen") or (
            spec.models == "optional" and grid.get("potential") == "model")
        needed = {"model": uses_model, "data": uses_model, "dynamics": True,
                  "grid": solver in ("fv", "phase_grid"), "radial": solver == "radial"}
        for name, need in needed.items():
            if need and name not in raw:
                raise ConfigError(f"missing section [{name}]"
                                  + (f" (needed by dynamics.solver = {solver!r})"
                                     if dyn is not None and name != "dynamics" else ""))
        refused = {"model": not uses_model, "data": not uses_model,
                   "grid": spec.family != "grid", "radial": solver != "radial"}
        for name, refuse in refused.items():
            if refuse and name in raw:
                why = (f"grid.potential = {grid.get('potential')!r}"
                       if spec.models == "optional" and name in ("model", "data") else "")
                raise ConfigError(f"section [{name}] is not used by dynamics.solver = {solver!r}"
                                  + (f" with {why}" if why else ""))

    # ------------------------------------------------------------------ changes
    def replace(self, **changes: Any) -> "Config":
        """A new validated configuration with some fields changed.

        ``changes`` maps section names to ``{field: value}`` (``None`` removes the field, i.e.
        restores its default), to a section object (replaces the section) or to ``None``
        (removes an optional section). ``dynamics.steps`` and ``dynamics.t_end`` exclude each
        other: setting one drops the other unless both are given::

            cfg.replace(model={"q": 3})
            cfg.replace(dynamics={"steps": 2000}, output=other.output)

        Resolved values stay as they are (``data.seed`` is not recomputed when
        ``dynamics.seed`` changes).
        """
        sections = self.sections()
        raw = self.to_dict()
        for name, change in changes.items():
            if name not in sections:
                raise ConfigError(f"unknown section [{name}]{_hint(name, sections)}; "
                                  f"allowed sections: " + ", ".join(sections))
            if change is None:
                raw.pop(name, None)
                continue
            if isinstance(change, _Section):
                raw[name] = change.to_dict()
                continue
            node = raw.setdefault(name, {})
            for key, value in change.items():
                other = EXCLUSIVE.get((name, key))
                if other is not None and other[1] not in change:
                    node.pop(other[1], None)
                if value is None:
                    node.pop(key, None)
                else:
                    node[key] = value.to_value() if isinstance(value, Schedule) else _copy(value)
        return type(self).from_dict(raw, data_spec=self.data_spec,
                                    quantities_available=self.quantities_available)

    def with_values(self, values: Mapping[str, Any] | Iterable[str]) -> "Config":
        """A new validated configuration with ``{"section.key": value}`` changed, or with
        ``--set``-style ``"section.key=value"`` strings applied."""
        if not isinstance(values, Mapping):
            raw = apply_overrides(self.to_dict(), values)
            return type(self).from_dict(raw, data_spec=self.data_spec,
                                        quantities_available=self.quantities_available)
        changes: dict[str, dict[str, Any]] = {}
        for key, value in values.items():
            sec, _, name = key.partition(".")
            if not name:
                raise ConfigError(f"{key!r}: expected section.key")
            changes.setdefault(sec, {})[name] = value
        return self.replace(**changes)

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
        return self.dynamics.seed if self.dynamics is not None else 0


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


def read_text(path: str | Path) -> str:
    """The text of a TOML configuration file; one-line :class:`ConfigError` if it cannot be
    read (missing, a directory, not UTF-8, ...)."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a TOML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None


def load_config(path: str | Path, overrides: Iterable[str] = (), **hooks) -> Config:
    """Read and validate a TOML configuration file."""
    return parse_config(read_text(path), overrides, name=str(Path(path)), **hooks)


# --------------------------------------------------------------------------------------------
# TOML output (tomli-w)
# --------------------------------------------------------------------------------------------

def _plain(v: Any) -> Any:
    """Values tomli-w writes: schedules as their TOML value, containers as dict / list, numpy
    scalars as Python numbers."""
    if isinstance(v, Schedule):
        return _plain(v.to_value())
    if isinstance(v, _Section):
        return _plain(v.to_dict())
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalars
        return v.item()
    return v


def dumps(data: Mapping[str, Any]) -> str:
    """Write a dict as TOML (tomli-w): top-level tables become ``[sections]``, nested tables
    ``[section.table]``; ``inf`` / ``nan`` as TOML's ``inf`` / ``nan``."""
    return tomli_w.dumps(_plain(data))
