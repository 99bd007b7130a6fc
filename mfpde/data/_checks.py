"""Argument checks shared by the data modules: every bad value raises a ``ValueError`` naming
the argument and the allowed range (or choices, with a "did you mean" suggestion)."""

from __future__ import annotations

import difflib
import math
import numbers

import numpy as np


def _suggest(value: str, choices) -> str:
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_int(name: str, value, lo: int | None = None, hi: int | None = None,
               why: str = "") -> int:
    """Return ``value`` as int; ValueError naming ``name`` if not an integer in ``[lo, hi]``."""
    rng_txt = (
        f"an integer in [{lo}, {hi}]" if lo is not None and hi is not None
        else f"an integer >= {lo}" if lo is not None
        else f"an integer <= {hi}" if hi is not None
        else "an integer"
    ) + why
    ok = False
    if isinstance(value, (bool, np.bool_)):
        ok = False
    elif isinstance(value, numbers.Integral):
        ok = True
    elif isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        ok = True
    if not ok:
        raise ValueError(f"{name} must be {rng_txt}, got {value!r}")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} must be {rng_txt}, got {v}")
    return v


def _check_float(
    name: str,
    value,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """Return ``value`` as float; ValueError naming ``name`` if not finite and in range."""
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    if lo is None and hi is None:
        rng_txt = "a finite number"
    else:
        a = "-inf" if lo is None else repr(lo)
        b = "inf" if hi is None else repr(hi)
        rng_txt = f"a finite number in {'(' if lo is None else left}{a}, {b}{')' if hi is None else right}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be {rng_txt}, got {value!r}")
    v = float(value)
    bad = not math.isfinite(v)
    if lo is not None:
        bad = bad or (v <= lo if lo_open else v < lo)
    if hi is not None:
        bad = bad or (v >= hi if hi_open else v > hi)
    if bad:
        raise ValueError(f"{name} must be {rng_txt}, got {value!r}")
    return v


def _check_choice(name: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}"
            + (_suggest(value, choices) if isinstance(value, str) else "")
        )
    return value


def _check_rng(rng, name: str = "rng") -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"{name} must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def _resolve_rng(seed, rng) -> np.random.Generator:
    """``rng`` if given, else ``default_rng(SeedSequence(seed))``."""
    if rng is not None:
        return _check_rng(rng)
    if isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    seed = _check_int("seed", seed, 0)
    return np.random.default_rng(np.random.SeedSequence(seed))


def _as_matrix(name: str, a, ndim: int = 2) -> np.ndarray:
    try:
        arr = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real {ndim}-D array, got {type(a).__name__}") from exc
    return arr
