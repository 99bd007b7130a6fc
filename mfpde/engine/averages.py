r"""Time averages over a window of a run: the statements about a fluctuating stationary state.

A noisy stationary state fluctuates; Lemma 4.5 of Wu & Mondelli, the balancedness bound and the
Stage-1 Gibbs comparison are statements about its law, i.e. about averages over time (and, in
the mean-field limit, over particles). :class:`TimeAverage` is a tracker
(:mod:`mfpde.engine.trackers`) that accumulates, at every due event inside a window
``[start, stop]`` of the driver's time, the NC matrices of the current state (theory:
validation.md §V5–§V7, §K6; row layout, see :mod:`mfpde.metrics.stationarity`):

==========  ==========  =============================================================
name        shape       snapshot accumulated
==========  ==========  =============================================================
``EaaT``    (p, p)      :math:`A^\top A/N` (:math:`E_\rho[aa^\top]`)
``WWT``     (p, p)      :math:`WW^\top`
``W``       (p, q)      :math:`W`
``GHt``     (p, p)      :math:`GH_\rho^\top` (data part of :math:`E[\nabla_a\Psi\,a^\top]`)
``H``       (n, p)      features
``G``       (n, p)      back-propagated residual :math:`\frac\Gamma n ZW^\top`
``risk``    scalar      :math:`R`
``K``       (n, n)      kernel (``kernel=True``; cost ``O(n^2 N)`` per sample)
``KG``      (n, p)      ``K @ G`` (``kernel=True``)
``E12``     (n, p)      identity (12) residual :math:`H + KG/\lambda` (``kernel=True``)
==========  ==========  =============================================================

plus the mean of the scalar ``r12`` of the snapshots (``kernel=True``): the time average of a
fluctuation's size, not the size of the averaged fluctuation. Usable with
``mfpde.engine.Controller(driver, [TimeAverage(model, data, every(steps=10), start=t0)], ...)``;
the driver must show ``theta`` and ``W`` through ``fields()``.
"""
from __future__ import annotations

import math

import numpy as np

from ..metrics import stationarity as st
from ..metrics.collapse import balancedness_moments
from .trackers import Interval, Tracker

__all__ = ["TimeAverage"]


class TimeAverage(Tracker):
    """Accumulate NC second moments between two times (module docstring).

    Parameters
    ----------
    model : the NC model of the run (:class:`~mfpde.models.NCThreeLayer` or its truncated variant)
    data : Dataset with ``X`` (n, d), ``Y`` (n, q): the data of the identities (training set)
    interval : :class:`~mfpde.engine.trackers.Interval` of the samples (e.g. ``every(steps=10)``)
    start, stop : the window in the driver's time, inclusive (``stop`` default: the end)
    kernel : also accumulate ``K``, ``K G`` and the identity (12) residual

    After the run, :meth:`averages` gives the means; :meth:`lemma45_trained`,
    :meth:`lemma45_frozen`, :meth:`nb`, :meth:`nb_bound` evaluate the statements on them.
    """

    def __init__(self, model, data, interval: Interval, *, start: float = 0.0,
                 stop: float = math.inf, kernel: bool = False):
        if not isinstance(interval, Interval):
            raise ValueError("interval must be an mfpde.engine.Interval (e.g. every(steps=10))")
        if not (start <= stop):
            raise ValueError(f"the window needs start <= stop, got [{start}, {stop}]")
        self.model, self.data, self.interval = model, data, interval
        self.start, self.stop = float(start), float(stop)
        self.kernel = bool(kernel)
        self.reset()

    def reset(self) -> None:
        """Forget the accumulated samples."""
        self._sum: dict[str, np.ndarray | float] = {}
        self.count = 0
        self.t_first = math.nan
        self.t_last = math.nan
        self._r12: list[float] = []
        self.times: list[float] = []

    # ------------------------------------------------------------------ hooks
    def _inside(self, t: float) -> bool:
        eps = 1e-9 * max(1.0, abs(t))
        return self.start - eps <= t <= self.stop + eps

    def initialize(self, driver, info) -> None:
        if self._inside(driver.t):
            self._sample(driver)

    def measure(self, driver, info) -> None:
        if self._inside(driver.t) and (not self.times or driver.t > self.times[-1]):
            self._sample(driver)

    def _sample(self, driver) -> None:
        f = driver.fields()
        theta, W = f["theta"], f.get("W")
        if W is None:
            raise ValueError("TimeAverage needs a driver that shows W (the NC model)")
        snap = st.nc_snapshot(self.model, theta, self.data.X, self.data.Y, W, kernel=self.kernel)
        vals = {"EaaT": snap.EaaT, "WWT": snap.WWT, "W": np.array(W, dtype=float),
                "GHt": snap.GHt, "H": snap.H, "G": snap.G, "risk": snap.risk}
        if self.kernel:
            E12 = snap.H + snap.KG / self.model.lam
            vals.update(K=snap.K, KG=snap.KG, E12=E12)
            nH = float(np.linalg.norm(snap.H))
            self._r12.append(float(np.linalg.norm(E12)) / nH if nH > 0 else math.nan)
        for k, v in vals.items():
            if k in self._sum:
                self._sum[k] = self._sum[k] + v
            else:
                self._sum[k] = np.array(v, dtype=float) if not np.isscalar(v) else float(v)
        self.count += 1
        if self.count == 1:
            self.t_first = float(driver.t)
        self.t_last = float(driver.t)
        self.times.append(float(driver.t))

    # ------------------------------------------------------------------ results
    def averages(self) -> dict:
        """Time averages ``{name: mean}`` (module table), plus ``count``, ``t_first``,
        ``t_last`` and ``r12_mean`` (mean of the snapshot ``r12``; ``kernel=True``)."""
        if self.count == 0:
            raise ValueError(f"no sample inside the window [{self.start}, {self.stop}]")
        out = {k: v / self.count for k, v in self._sum.items()}
        out.update(count=self.count, t_first=self.t_first, t_last=self.t_last)
        if self._r12:
            out["r12_mean"] = float(np.mean(self._r12))
        return out

    def lemma45_trained(self, beta, relative: bool = True) -> float:
        """Lemma 4.5 residual, ``W`` trained, on the averages
        (:func:`mfpde.metrics.stationarity.lemma45_trained`)."""
        a = self.averages()
        return st.lemma45_trained(a["EaaT"], a["WWT"], self.model.lam, self.model.lam_W, beta,
                                  relative=relative)

    def lemma45_frozen(self, beta, relative: bool = True) -> float:
        """Lemma 4.5 residual, ``W`` frozen, on the averages
        (:func:`mfpde.metrics.stationarity.lemma45_frozen`)."""
        a = self.averages()
        return st.lemma45_frozen(a["EaaT"], a["GHt"], self.model.lam, beta, relative=relative)

    def nb(self) -> float:
        """Normalised balancedness of the averaged moments
        (:func:`mfpde.metrics.collapse.balancedness_moments`)."""
        a = self.averages()
        return balancedness_moments(a["EaaT"], a["WWT"])

    def nb_bound(self, beta) -> float:
        """The V7 lower bound :math:`1/(1 + \\beta\\lambda_W s_{max}(W)^2)` on the averaged
        :math:`WW^\\top` (:func:`mfpde.metrics.stationarity.nb_lower_bound`)."""
        a = self.averages()
        return st.nb_lower_bound(a["WWT"], beta, self.model.lam_W, q=a["W"].shape[1])
