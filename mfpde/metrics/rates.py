r"""Convergence-rate fits: ``err = C x^s`` on log-log axes with a bootstrap interval over seeds.

Theory: theory/metrics.md §6 (coupling distances and their rates), validation.md §V1–§V3
(predicted slopes ``-1/2`` in the width, ``+1/2`` in the step of online SGD).

Given errors ``err[s, j]`` of seed ``s`` at abscissa ``x_j`` (widths or step sizes), the seeds
are first aggregated at each ``x_j`` (:data:`AGGREGATES`: mean, geometric mean or median), then

.. math::

    \log \mathrm{agg}_j = \log C + s \log x_j

is fitted by least squares. The confidence interval of ``s`` is the percentile bootstrap over
seeds: rows of ``err`` are resampled with replacement, aggregated and fitted again.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["RateFit", "fit_rate", "aggregate", "AGGREGATES"]


def _geomean(err: np.ndarray) -> np.ndarray:
    return np.exp(np.log(err).mean(axis=0))


#: aggregations over seeds (axis 0 of ``err`` (n_seeds, n_x)) before the log-log fit
AGGREGATES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean": lambda err: err.mean(axis=0),
    "geomean": _geomean,
    "median": lambda err: np.median(err, axis=0),
}


def aggregate(err: np.ndarray, kind: str) -> np.ndarray:
    """Aggregate ``err`` (n_seeds, n_x) over seeds: one of :data:`AGGREGATES`; returns (n_x,)."""
    try:
        fn = AGGREGATES[kind]
    except KeyError:
        raise ValueError(f"agg must be one of {', '.join(map(repr, AGGREGATES))}, "
                         f"got {kind!r}") from None
    return fn(err)


@dataclass
class RateFit:
    """Least-squares fit ``err = C x^slope`` on log-log axes with a bootstrap interval over seeds.

    Attributes
    ----------
    x : ndarray (n_x,)  abscissae
    err : ndarray (n_seeds, n_x)  errors, one row per seed
    agg : ndarray (n_x,)  the seed aggregate that was fitted
    slope, C : float  the fit
    ci_low, ci_high : float  percentile bootstrap interval of the slope (nan for one seed)
    ci_level : float; n_boot : int; boot : ndarray (n_boot,) bootstrap slopes
    ref_slope : float  the predicted slope (drawn dashed)
    x_name, quantity, at, agg_kind, fixed : str  labels
    """

    x: np.ndarray
    err: np.ndarray
    agg: np.ndarray
    slope: float
    C: float
    ci_low: float
    ci_high: float
    ci_level: float
    n_boot: int
    boot: np.ndarray
    ref_slope: float = -0.5
    x_name: str = "N"
    quantity: str = "coupling_rms"
    at: str = "final"
    agg_kind: str = "mean"
    fixed: str = ""

    def contains(self, value: float) -> bool:
        return bool(self.ci_low <= value <= self.ci_high)

    def summary(self) -> str:
        return (f"{self.quantity} ~ {self.C:.3g} {self.x_name}^s: s = {self.slope:.3f} "
                f"[{100 * self.ci_level:.0f}% bootstrap CI {self.ci_low:.3f}, {self.ci_high:.3f}] "
                f"(reference {self.ref_slope:+g}; {self.err.shape[0]} seeds, "
                f"{self.x_name} = {', '.join(f'{v:g}' for v in self.x)}"
                + (f"; {self.fixed}" if self.fixed else "") + ")")


def _loglog(x, y):
    lx, ly = np.log(x), np.log(y)
    A = np.vstack([lx, np.ones_like(lx)]).T
    (s, c), *_ = np.linalg.lstsq(A, ly, rcond=None)
    return float(s), float(math.exp(c))


def fit_rate(x, err, *, n_boot=2000, ci=0.95, seed=0, agg="mean", ref_slope=-0.5, x_name="N",
             quantity="coupling_rms", at="final", fixed="") -> RateFit:
    """Fit ``err = C x^s`` (least squares on log-log axes) with a bootstrap CI over seeds.

    Parameters
    ----------
    x : array (n_x,)
        Positive abscissae (widths or step sizes), at least 2 distinct values.
    err : array (n_seeds, n_x)
        Positive errors, one row per seed.
    n_boot : int
        Bootstrap resamples of the seeds (with replacement).
    ci : float
        Level of the percentile interval (0.95).
    seed : int
        Seed of the bootstrap generator.
    agg : {"mean", "geomean", "median"}
        Aggregation over seeds at each ``x`` before the fit (:data:`AGGREGATES`).
    ref_slope, x_name, quantity, at, fixed
        Labels stored in the result.

    Returns
    -------
    RateFit
    """
    x = np.asarray(x, dtype=np.float64)
    err = np.atleast_2d(np.asarray(err, dtype=np.float64))
    if x.ndim != 1 or err.shape[1] != x.size or np.unique(x).size < 2:
        raise ValueError(f"need >= 2 distinct x and err of shape (n_seeds, {x.size}), got {err.shape}")
    if np.any(x <= 0) or not np.all(np.isfinite(err)) or np.any(err <= 0):
        raise ValueError("x and err must be positive and finite for a log-log fit")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    a = aggregate(err, agg)
    slope, C = _loglog(x, a)
    S = err.shape[0]
    n_boot = int(n_boot)
    boot = np.full(n_boot, np.nan)
    if S >= 2 and n_boot > 0:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2718]))
        idx = rng.integers(S, size=(n_boot, S))
        lx = np.log(x)
        lxc = lx - lx.mean()
        den = float(lxc @ lxc)
        for b in range(n_boot):
            ab = aggregate(err[idx[b]], agg)
            boot[b] = float(lxc @ np.log(ab)) / den
        lo, hi = np.quantile(boot, [(1 - ci) / 2, (1 + ci) / 2])
    else:
        lo = hi = math.nan
    return RateFit(x, err, a, slope, C, float(lo), float(hi), float(ci), n_boot, boot,
                   float(ref_slope), x_name, quantity, at, agg, fixed)
