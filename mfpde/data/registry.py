"""The data kinds: the one list of them (:data:`DATA_KINDS`, :func:`data_kinds`), their parameters
(:func:`data_param_spec`) and :func:`make_dataset` for the configuration system."""

from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np

from ._checks import _check_choice, _check_int, _suggest
from .generators import (digits_mod3, gaussian_mixture, linear_gaussian, mmn_gaussians, separable,
                         teacher_student, well_separated)
from .io import load_npz
from .samplers import (gaussian_mixture_sampler, linear_gaussian_sampler, mmn_gaussians_sampler,
                       separable_sampler, teacher_student_sampler)

__all__ = ["DATA_KINDS", "REQUIRED", "data_kinds", "online_kinds", "data_param_spec",
           "make_dataset"]


class _Required:
    def __repr__(self):
        return "<required>"


#: Marker used by :func:`data_param_spec` for parameters without a default.
REQUIRED = _Required()


def _digits_builder(n_train_per_class=400, part="train", seed=0):
    _check_choice("part", part, ("train", "test"))
    train, test = digits_mod3(n_train_per_class, seed=seed)
    return train if part == "train" else test


def _npz_builder(path):
    return load_npz(path)


# kind -> (finite builder, sampler builder or None)
_REGISTRY: dict[str, tuple[Callable, Callable | None]] = {
    "teacher_student": (teacher_student, teacher_student_sampler),
    "gaussian_mixture": (gaussian_mixture, gaussian_mixture_sampler),
    "mmn_gaussians": (mmn_gaussians, mmn_gaussians_sampler),
    "separable": (separable, separable_sampler),
    "well_separated": (well_separated, None),
    "linear_gaussian": (linear_gaussian, linear_gaussian_sampler),
    "digits_mod3": (_digits_builder, None),
    "npz": (_npz_builder, None),
}

#: Data kinds understood by :func:`make_dataset` (the one list of them; the configuration's
#: choices come from here).
DATA_KINDS: tuple[str, ...] = tuple(_REGISTRY)


def data_kinds() -> tuple[str, ...]:
    """The data kinds, in registry order (:data:`DATA_KINDS`)."""
    return DATA_KINDS


def online_kinds() -> tuple[str, ...]:
    """The data kinds with a population sampler (``online=True`` allowed)."""
    return tuple(k for k, (_, sampler) in _REGISTRY.items() if sampler is not None)

_NOT_PARAMS = ("seed", "rng")


def _check_kind(kind) -> str:
    if not isinstance(kind, str) or kind not in _REGISTRY:
        raise ValueError(
            f"unknown data kind {kind!r}"
            + (_suggest(kind, DATA_KINDS) if isinstance(kind, str) else "")
            + f" (known kinds: {', '.join(DATA_KINDS)})"
        )
    return kind


def _signature_params(fn) -> dict[str, Any]:
    out = {}
    for p in inspect.signature(fn).parameters.values():
        if p.name in _NOT_PARAMS or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        out[p.name] = REQUIRED if p.default is p.empty else p.default
    return out


def data_param_spec(kind: str) -> dict[str, Any]:
    """Parameters of a data kind and their defaults (for config validation).

    Parameters
    ----------
    kind : str
        One of :data:`DATA_KINDS`.

    Returns
    -------
    dict
        ``{name: default}`` in signature order (``seed`` excluded; it is a separate argument
        of :func:`make_dataset`). Parameters without a default map to :data:`REQUIRED`. Kinds
        with a population sampler have ``online=False``; with ``online=True`` the sample-size
        parameters (``n``, ``m``) are ignored.
    """
    gen, sampler = _REGISTRY[_check_kind(kind)]
    spec = _signature_params(gen)
    if sampler is not None:
        spec["online"] = False
    return spec


def make_dataset(kind: str, seed=0, **params):
    """Build a data set (or an online sampler) by kind name, for the config system.

    Kinds (models.md §5): ``teacher_student`` (D2), ``gaussian_mixture``, ``mmn_gaussians``
    (D3), ``separable`` (D4), ``well_separated`` (D1), ``linear_gaussian`` (D5), ``digits_mod3``
    (D6; parameter ``part="train"|"test"`` selects the half of :func:`digits_mod3`), ``npz``
    (parameter ``path``, see :func:`load_npz`).

    Parameters
    ----------
    kind : str
        One of :data:`DATA_KINDS`.
    seed : int
        Seed of the generator (``>= 0``; unused by ``npz``).
    **params
        Parameters of the kind, see :func:`data_param_spec`. ``online=True`` (kinds with a
        sampler: teacher_student, gaussian_mixture, mmn_gaussians, separable, linear_gaussian)
        returns an :class:`OnlineSampler`; the population parameters are built with the same
        seed, so the sampler has the same teacher / means as the finite data set.

    Returns
    -------
    Dataset or OnlineSampler

    Raises
    ------
    ValueError
        Unknown kind (with a "did you mean" suggestion), unknown or missing parameter (named),
        invalid parameter value (named, with the allowed range).
    """
    gen, sampler = _REGISTRY[_check_kind(kind)]
    spec = data_param_spec(kind)
    for name in params:
        if name not in spec:
            hint = ""
            if name == "online":
                hint = f" (online sampling is supported for: {', '.join(online_kinds())})"
            raise ValueError(
                f"unknown parameter {name!r} for data kind {kind!r}"
                + _suggest(name, list(spec)) + hint
                + f" (allowed: {', '.join(spec) if spec else 'none'})"
            )
    missing = [k for k, v in spec.items() if v is REQUIRED and k not in params]
    if missing:
        raise ValueError(f"data kind {kind!r} needs parameter(s): {', '.join(missing)}")
    online = params.pop("online", False)
    if not isinstance(online, (bool, np.bool_)):
        raise ValueError(f"online must be True or False, got {online!r}")
    seed = _check_int("seed", seed, 0)
    if online:
        fn = sampler
        accepted = inspect.signature(fn).parameters
        kwargs = {k: v for k, v in params.items() if k in accepted}
    else:
        fn, kwargs = gen, dict(params)
    if "seed" in inspect.signature(fn).parameters:
        kwargs["seed"] = seed
    return fn(**kwargs)
