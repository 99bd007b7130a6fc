r"""Synchronous coupling of finite-width networks with a mean-field reference.

Theory: theory/metrics.md §6.2 (coupling distance), validation.md §V1–§V3, dynamics.md §6.1
(sub-block coupling of the Pham–Nguyen network).

**Read-out models** (two-layer, NC; :func:`couple_readout`). A reference system of ``N_ref``
particles (the numerical mean-field solution) is run with step ``ref_dt``; each finite network of
width ``N`` starts from the FIRST ``N`` reference particles (and the reference's ``W_0``) and is
driven by the same randomness:

- Brownian increments: the finite network's Gaussian ``g^k`` is rows ``:N`` of the reference's
  ``g^k`` (same step), or, for a network step ``dt = m * ref_dt``, the sum of the ``m`` fine
  increments divided by ``sqrt(m)`` (the same Brownian path at the coarser step);
- mini-batches: when the network and the reference use the same step and the same batch
  rule (``ref_batch="same"``), the network uses the reference's batch of every step; otherwise it
  draws its own (independent SGD noise, e.g. SGD networks against a full-batch reference to
  measure the SGD-noise error against ``dt``).

Sampling rules for mini-batches (``sampling``): ``"epochs"`` (reshuffled epochs over the finite
set), ``"resample"`` (i.i.d. draws with replacement from the finite set: online SGD whose
population is the empirical law of the set, so that a full-batch reference is its exact
population flow), ``"online"`` (fresh samples from an :class:`~mfpde.data.OnlineSampler`; a
full-batch reference then uses the finite set as quadrature of the population).

**Pham–Nguyen** (:func:`couple_pn`). The reference is a ``(n1_ref, n2_ref)`` network; a finite
``(n1, n2)`` network starts from the first ``n1`` rows / ``n2`` columns of the reference's
initial arrays (sub-block coupling) and shares its mini-batches.

Recorded at ``n_records + 1`` equally spaced times ``t_j`` (including 0 and ``T``), per network:

- ``coupling_mean``, ``coupling_rms``, ``coupling_max``: mean, root-mean-square (the
  :math:`D_{sync}` of metrics.md §6.2) and max over neurons of :math:`\|\theta_i - \bar\theta_i\|`
  (PN: per layer on the shared sub-block, see :func:`couple_pn`); heavy ball also
  ``phase_rms``/``phase_max`` with the velocities included; NC: ``W_gap`` (Frobenius);
- ``output_gap``: :math:`(\frac1{n_{test}}\sum_x\|f_N(x) - f_{ref}(x)\|^2)^{1/2}` on a held-out set;
- ``loss_N``, ``risk_ref`` and ``loss_gap = |L_N - R|`` on the training (or quadrature) set;

and at ``t = 0`` and ``t = T``: ``w2`` = :math:`W_2` between the network's cloud and the coupled
reference particles (exact up to ``w2_max_points`` points, else the sliced fallback, named in
``w2_method``; always ``<= D_sync``), and ``sw2_ref`` = sliced :math:`SW_2` between the network's
cloud and the whole reference cloud (decays like ``N^{-1/2}`` free of the dimension; raw ``W_2``
against the reference would decay like ``N^{-1/D}``, metrics.md §6.3).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .data import Dataset, OnlineSampler
from .dynamics.sgd import make_trainer
from .engine import Controller, Tracker, every
from .rules import HEAVY_BALL, method_violation
from .metrics.ot import sliced_w2, sphere_directions, w2
from .dynamics import PNDriver

__all__ = ["CouplingResult", "CouplingRun", "CoupledDriver", "CouplingInterrupted",
           "couple_readout", "couple_pn",
           "pool_sampler", "record_times", "SAMPLING", "REF_BATCH"]

SAMPLING = ("epochs", "resample", "online")
REF_BATCH = ("same", "full")


@dataclass
class CouplingResult:
    """One coupled finite network: ``series`` (arrays over the record times ``t``), ``final``
    (W2 values and methods at ``t = 0`` and ``T``) and ``attrs`` (width, step, seconds, ...)."""

    N: int | tuple
    dt: float
    series: dict[str, np.ndarray]
    final: dict[str, float | str]
    attrs: dict = field(default_factory=dict)

    @property
    def n_min(self) -> int:
        return min(self.N) if isinstance(self.N, tuple) else int(self.N)

    def value(self, quantity: str = "coupling_rms", at: str = "final") -> float:
        """The error used by rate fits: ``quantity`` at ``T`` (``at="final"``) or its sup over the
        record times (``"sup"``); ``w2``/``sw2_ref`` are taken at ``T``."""
        if quantity in ("w2", "sw2_ref"):
            return float(self.final[f"{quantity}_T"])
        s = self.series[quantity]
        if at == "final":
            return float(s[-1])
        if at == "sup":
            return float(np.max(s))
        raise ValueError(f"at must be 'final' or 'sup', got {at!r}")


@dataclass
class CouplingRun:
    """All networks coupled with one reference: ``results[(N, dt)]`` and the reference record."""

    results: dict
    reference: dict


def pool_sampler(data: Dataset) -> OnlineSampler:
    """Online sampler drawing i.i.d. rows (with replacement) of a finite data set: its population
    is the empirical law of ``data``, whose exact population gradient is the full-batch one."""
    X = np.ascontiguousarray(data.X, dtype=np.float64)
    Y = np.ascontiguousarray(data.Y, dtype=np.float64)
    n = X.shape[0]

    def draw(B, rng):
        idx = rng.integers(n, size=B)
        return X[idx], Y[idx], None

    return OnlineSampler("resample", X.shape[1], Y.shape[1], draw, {"kind": "resample", "n": n})


def record_times(T, ref_dt, dts, n_records) -> tuple[int, int, list[int]]:
    """Check that ``T``, the record times ``j*T/n_records`` and every network step are integer
    multiples of ``ref_dt``; returns ``(K, stride, ms)``: fine steps, fine steps between records,
    and ``m = dt/ref_dt`` per network step."""
    T, ref_dt = float(T), float(ref_dt)
    if not (T > 0 and ref_dt > 0):
        raise ValueError(f"T and dt must be > 0, got T={T!r}, ref_dt={ref_dt!r}")
    if not isinstance(n_records, (int, np.integer)) or n_records < 1:
        raise ValueError(f"n_records must be an integer >= 1, got {n_records!r}")

    def ratio(a, b, what):
        r = a / b
        k = int(round(r))
        if k < 1 or abs(r - k) > 1e-9 * max(1.0, r):
            raise ValueError(f"{what} = {a:g} is not an integer multiple of {b:g}")
        return k

    K = ratio(T, ref_dt, "T")
    ms = [ratio(float(dt), ref_dt, "network step dt") for dt in dts]
    if K % n_records:
        raise ValueError(f"T/ref_dt = {K} steps is not divisible by n_records = {n_records}")
    stride = K // n_records
    for m, dt in zip(ms, dts):
        if stride % m:
            raise ValueError(f"record interval T/n_records = {T / n_records:g} is not a multiple of "
                             f"the network step dt = {dt:g}")
    return K, stride, ms


def _test_arrays(test, data, sampler):
    if test is not None:
        if isinstance(test, tuple):
            return np.asarray(test[0], dtype=np.float64), np.asarray(test[1], dtype=np.float64)
        return test.X, test.Y
    if data is not None:
        return data.X, data.Y
    raise ValueError("give a held-out set test=(X, Y) (or a Dataset)")


def _norm_stats(sq_rows: np.ndarray) -> tuple[float, float, float]:
    """``(mean, rms, max)`` of the row norms from squared row norms."""
    nr = np.sqrt(sq_rows)
    return float(nr.mean()), float(math.sqrt(sq_rows.mean())), float(nr.max())


def _rows_sq(a):
    return np.einsum("ij,ij->i", a, a)


class _SlicedToReference:
    """``SW_2`` between several small clouds and one large reference cloud with shared
    directions: the reference projections are sorted once. When ``N_ref`` is a multiple of the
    small cloud's size ``N`` the 1-D quantile formula is a block sum (each sorted small-cloud
    value faces ``N_ref/N`` consecutive sorted reference values); otherwise
    :func:`~mfpde.metrics.ot.sliced_w2` is called with the same directions. Same value as
    ``sliced_w2(X, ref, projections=proj)``."""

    def __init__(self, ref: np.ndarray, proj: np.ndarray):
        self.ref = ref
        self.proj = proj
        self.c = ref.mean(axis=0)
        self.Q = np.sort(proj.T @ (ref - self.c).T, axis=1)         # (L, N_ref)

    def __call__(self, X: np.ndarray) -> float:
        N, M = X.shape[0], self.ref.shape[0]
        if M % N:
            return sliced_w2(X, self.ref, projections=self.proj)
        P = np.sort(self.proj.T @ (X - self.c).T, axis=1)            # (L, N)
        d = self.Q.reshape(P.shape[0], N, M // N) - P[:, :, None]
        return math.sqrt(max(0.0, float(np.einsum("ijk,ijk->", d, d)) / (M * P.shape[0])))


# ==================================================================================== the coupled set
class CoupledDriver:
    """A reference driver and finite networks driven by its randomness, advanced as one driver
    (the protocol of :mod:`mfpde.engine.protocol`).

    One step is one step of the reference (step ``ref.dt``); a network with step ``m * ref.dt``
    moves every ``m``-th step. Before the networks move, the reference's Gaussian ``g^k``
    (captured in ``cap["g"]`` by the reference's noise hook) is added to the accumulator of each
    coarser step ``m`` (rows ``:N`` summed over ``m`` fine steps, zeroed once the networks of that
    step have used it). ``fields()`` shows the reference's fields; the networks are in
    :attr:`nets` (``{key: (driver, m, shared_batches)}``); :attr:`seconds` and
    :attr:`ref_seconds` hold the wall time spent in each.
    """

    def __init__(self, ref, nets: dict, cap: dict, acc: dict | None = None):
        self.ref, self.nets, self.cap = ref, nets, cap
        self.acc = acc or {}
        self.k = 0
        self.dt = float(ref.dt)
        self.last_risk = float("nan")
        self.seconds = {key: 0.0 for key in nets}
        self.ref_seconds = 0.0

    @property
    def t(self) -> float:
        return self.k * self.dt

    def step(self, n: int = 1, t_end: float = math.inf) -> None:
        for _ in range(int(n)):
            t0 = time.perf_counter()
            self.ref.step(1)
            self.ref_seconds += time.perf_counter() - t0
            for m, a in self.acc.items():
                a += self.cap["g"][:a.shape[0]]
            stepped = set()
            for key, (net, m, share) in self.nets.items():
                if (self.k + 1) % m == 0:
                    t0 = time.perf_counter()
                    net.step(1)
                    self.seconds[key] += time.perf_counter() - t0
                    stepped.add(m)
            for m in stepped:
                if m in self.acc:
                    self.acc[m][...] = 0.0
            self.k += 1
            self.last_risk = self.ref.last_risk

    def fields(self) -> dict:
        return self.ref.fields()

    def state_dict(self) -> dict:
        """``{"k", "ref": reference state, "nets": {str(key): state}, "acc": {m: array}}``."""
        return {"k": int(self.k), "ref": self.ref.state_dict(),
                "nets": {str(key): net.state_dict() for key, (net, _, _) in self.nets.items()},
                "acc": {int(m): a.copy() for m, a in self.acc.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.k = int(state["k"])
        self.ref.load_state_dict(state["ref"])
        for key, (net, _, _) in self.nets.items():
            net.load_state_dict(state["nets"][str(key)])
        for m, a in state["acc"].items():
            self.acc[int(m)][...] = a


class _CouplingRecorder(Tracker):
    """Records of a coupled set at ``n_records + 1`` equally spaced times (every ``stride``
    reference steps, including 0 and ``T``) and the W2 values at ``t = 0`` and ``T``; the
    quantities are those of the module docstring. Subclasses define :meth:`record` and
    :meth:`w2_record`."""

    def __init__(self, coupled: CoupledDriver, names, n_records: int, stride: int, seed: int,
                 progress: Callable[[str], None] | None, T: float):
        self.c = coupled
        n_rec = n_records + 1
        self.series = {key: {q: np.full(n_rec, np.nan) for q in names} for key in coupled.nets}
        self.t_rec = np.array([j * stride * coupled.dt for j in range(n_rec)])
        self.risk_ref = np.full(n_rec, np.nan)
        self.final: dict = {key: {} for key in coupled.nets}
        self.stride, self.seed, self.progress, self.T = stride, int(seed), progress, float(T)
        self.interval = every(steps=stride, at_end=False)

    def initialize(self, driver, info) -> None:
        self.record(0)
        self.w2_record("0")

    def handle(self, driver, info) -> None:
        j = driver.k // self.stride
        self.record(j)
        if self.progress is not None:
            self.progress(f"t = {driver.t:.4g}/{self.T:g}  R_ref = {self.risk_ref[j]:.4g}")

    def finalize(self, driver, info) -> None:
        if info.status == "complete":
            self.w2_record("T")

    def results(self, method: str, attrs) -> dict:
        out = {}
        for key, (net, m, share) in self.c.nets.items():
            out[key] = CouplingResult(
                N=key[0], dt=key[1], series={"t": self.t_rec, **self.series[key],
                                             "risk_ref": self.risk_ref},
                final=self.final[key],
                attrs={**attrs(key), "dt": key[1], "m": m, "shared_batches": bool(share),
                       "seconds": self.c.seconds[key], "method": method})
        return out


class _ReadoutRecorder(_CouplingRecorder):
    """Coupling records of read-out models (two-layer, NC)."""

    def __init__(self, coupled, model, heavy, Xt, Xr, Yr, proj, w2_max_points, n_projections,
                 **kw):
        names = ["coupling_mean", "coupling_rms", "coupling_max", "output_gap", "loss_N",
                 "loss_gap"]
        if heavy:
            names += ["phase_rms", "phase_max"]
        if model.has_W:
            names += ["W_gap"]
        super().__init__(coupled, names, **kw)
        self.model, self.heavy, self.proj = model, heavy, proj
        self.w2_max_points, self.n_projections = w2_max_points, n_projections
        self.Xtr = np.vstack([np.asarray(Xt, dtype=np.float64), np.asarray(Xr, dtype=np.float64)])
        self.nt = Xt.shape[0]
        self.Yr2 = np.asarray(Yr, dtype=np.float64).reshape(Xr.shape[0], -1)

    def _outputs(self, F):
        """Predictions on the held-out set and the risk on the training set, from the
        predictions ``F`` on both (one pass)."""
        r = F[self.nt:] - self.Yr2
        return F[:self.nt], 0.5 * float(np.einsum("ij,ij->", r, r)) / r.shape[0]

    def _reference(self):
        """The reference's predictions on the held-out set, its risk on the training set,
        and the first ``max(widths)`` rows of its fields (``theta``, ``r``); a reference split
        over ranks computes them split (:meth:`~mfpde.parallel.DistributedDriver.forward`,
        :meth:`~mfpde.parallel.DistributedDriver.head`) and is not gathered."""
        ref = self.c.ref
        n_head = max(key[0] for key in self.c.nets)
        if getattr(ref, "split", False):
            F, head = ref.forward(self.Xtr), ref.head(n_head)
        else:
            f = ref.fields()
            F = self.model.forward(f["theta"], self.Xtr, ref.W)
            head = {k: f[k][:n_head] for k in ("theta", "r") if k in f}
        return (*self._outputs(F), head)

    def record(self, j: int) -> None:
        ref = self.c.ref
        f_ref, self.risk_ref[j], head = self._reference()
        for key, (net, m, share) in self.c.nets.items():
            N = key[0]
            d = net.theta - head["theta"][:N]
            sq = _rows_sq(d)
            s = self.series[key]
            s["coupling_mean"][j], s["coupling_rms"][j], s["coupling_max"][j] = _norm_stats(sq)
            if self.heavy:
                dv = net.velocity - head["r"][:N]
                _, s["phase_rms"][j], s["phase_max"][j] = _norm_stats(sq + _rows_sq(dv))
            if self.model.has_W:
                s["W_gap"][j] = float(np.linalg.norm(net.W - ref.W))
            f, s["loss_N"][j] = self._outputs(self.model.forward(net.theta, self.Xtr, net.W))
            s["output_gap"][j] = float(math.sqrt(np.mean(np.sum((f - f_ref) ** 2, axis=1))))
            s["loss_gap"][j] = abs(s["loss_N"][j] - self.risk_ref[j])

    def w2_record(self, tag: str) -> None:
        ref = self.c.ref
        to_ref = _SlicedToReference(ref.theta, self.proj)
        for key, (net, m, share) in self.c.nets.items():
            N = key[0]
            r = w2(net.theta, ref.theta[:N], max_points=self.w2_max_points,
                   n_projections=self.n_projections, seed=self.seed)
            self.final[key][f"w2_{tag}"] = r.value
            self.final[key]["w2_method"] = r.method
            self.final[key][f"sw2_ref_{tag}"] = to_ref(net.theta)


class _PNRecorder(_CouplingRecorder):
    """Coupling records of Pham–Nguyen networks (sub-block differences, validation.md §V2)."""

    def __init__(self, coupled, model, heavy, Xt, Xr, Yr, proj, w2_max_points, n_projections,
                 **kw):
        names = ["coupling_mean", "coupling_rms", "coupling_max", "c1_max", "c2_max", "c3_max",
                 "output_gap", "loss_N", "loss_gap"]
        if heavy:
            names += ["phase_rms", "phase_max"]
        super().__init__(coupled, names, **kw)
        self.model, self.heavy, self.proj = model, heavy, proj
        self.w2_max_points, self.n_projections = w2_max_points, n_projections
        self.Xt, self.Xr, self.Yr = Xt, Xr, Yr

    def record(self, j: int) -> None:
        model, ref = self.model, self.c.ref
        f_ref = model.forward(ref.w, self.Xt)
        self.risk_ref[j] = model.risk(ref.w, self.Xr, self.Yr)
        vr = ref.velocity
        for key, (net, m, share) in self.c.nets.items():
            a, b = key[0]
            sub = ref.w.sub_block(a, b)
            dw = [x - y for x, y in zip(net.w.arrays(), sub.arrays())]
            d1, d2, d3 = _pn_stats(dw)
            s = self.series[key]
            s["c1_max"][j] = math.sqrt(d1.max())
            s["c2_max"][j] = math.sqrt(d2.max())
            s["c3_max"][j] = math.sqrt(d3.max())
            s["coupling_max"][j] = max(s["c1_max"][j], s["c2_max"][j], s["c3_max"][j])
            s["coupling_rms"][j] = math.sqrt(d1.mean() + d2.mean() + d3.mean())
            s["coupling_mean"][j] = float(np.mean([np.sqrt(d).mean() for d in (d1, d2, d3)]))
            if self.heavy:
                vn = net.velocity
                dv = [vn[0] - vr[0][:a], vn[1] - vr[1][:a, :b], vn[2] - vr[2][:b]]
                e1, e2, e3 = _pn_stats(dw, dv)
                s["phase_rms"][j] = math.sqrt(e1.mean() + e2.mean() + e3.mean())
                s["phase_max"][j] = math.sqrt(max(e1.max(), e2.max(), e3.max()))
            f = model.forward(net.w, self.Xt)
            s["output_gap"][j] = float(math.sqrt(np.mean((f - f_ref) ** 2)))
            s["loss_N"][j] = model.risk(net.w, self.Xr, self.Yr)
            s["loss_gap"][j] = abs(s["loss_N"][j] - self.risk_ref[j])

    def w2_record(self, tag: str) -> None:
        ref = self.c.ref
        to_ref = _SlicedToReference(ref.w.w1, self.proj)
        for key, (net, m, share) in self.c.nets.items():
            a = key[0][0]
            r = w2(net.w.w1, ref.w.w1[:a], max_points=self.w2_max_points,
                   n_projections=self.n_projections, seed=self.seed)
            self.final[key][f"w2_{tag}"] = r.value
            self.final[key]["w2_method"] = r.method
            self.final[key][f"sw2_ref_{tag}"] = to_ref(net.w.w1)


def _network_data(data, sampler, batched, sampling):
    """Data and sampler of the finite networks, and whether the data set is needed."""
    net_data, net_sampler = data, None
    if batched and sampling == "resample":
        if data is None:
            raise ValueError("sampling='resample' needs a finite data set")
        net_sampler = pool_sampler(data)
    elif batched and sampling == "online":
        if sampler is None:
            raise ValueError("sampling='online' needs an OnlineSampler (sampler=...)")
        net_sampler = sampler
    if net_sampler is not None:
        net_data = None
    return net_data, net_sampler


def _capture_batches(ref, cap: dict) -> None:
    """The reference draws its own batches and keeps the last one in ``cap["b"]``."""
    def ref_batch_src():
        cap["b"] = ref.sample_batch()
        return cap["b"]
    ref.batch_source = ref_batch_src


def _share_batches(net, cap: dict) -> None:
    net.batch_source = lambda: cap["b"]


class CouplingInterrupted(Exception):
    """A coupled run split over MPI ranks stopped on a signal (raised alike on every rank)."""

    def __init__(self, signum: int):
        super().__init__(f"the coupled run stopped on signal {signum}")
        self.signum = int(signum)


def _run_coupled(coupled: CoupledDriver, recorder: _CouplingRecorder, K: int, team=None,
                 stop=None) -> None:
    info = Controller(coupled, [recorder], n_steps=K, team=team, stop=stop).run()
    if info.status == "interrupted":
        from .parallel import mark_agreed
        raise mark_agreed(CouplingInterrupted(info.signum))


# ==================================================================================== read-out
def couple_readout(model, data=None, *, N_ref, widths, dts, T, method="gd", batch=None,
                   sampling="epochs", sampler=None, beta=math.inf, gamma=None, ref_dt=None,
                   ref_batch="same", seed=0, test=None, n_records=10, w2_max_points=1024,
                   n_projections=128, xi_W=1.0, train_W=True, noise_stream="single",
                   progress: Callable[[str], None] | None = None, team=None,
                   stop=None) -> CouplingRun | None:
    """Run one reference (``N_ref`` particles) and the coupled networks ``widths x dts``.

    Parameters
    ----------
    model : ReadoutModel (two-layer or NC)
    data : Dataset
        Finite training set (``"epochs"``, ``"resample"``; quadrature set for a full-batch
        reference with ``"online"``).
    N_ref : int
        Reference size (``>= max(widths)``; validation uses ``>= 16-32 x max(widths)``).
    widths : sequence of int
    dts : sequence of float
        Network steps (mean-field units), integer multiples of ``ref_dt``.
    T : float
        Horizon (mean-field time).
    method : {"gd", "sgd", "noisy_sgd", "shb", "shb_polyak"}
        Network trainer (:func:`~mfpde.dynamics.sgd.make_trainer`, mean-field units). The
        reference runs the same scheme (heavy ball: velocity form) with ``ref_dt`` and
        ``ref_batch``.
    batch : int or None
        Network mini-batch size (``sgd``, ``noisy_sgd``, heavy ball); None = full batch.
    sampling : {"epochs", "resample", "online"}
    sampler : OnlineSampler
        For ``sampling="online"``.
    beta, gamma : float
        Inverse temperature (noisy dynamics; shared Brownian path) and heavy-ball friction.
    ref_dt : float, optional
        Reference step (default: the single value of ``dts``).
    ref_batch : {"same", "full"}
        Reference mini-batches as the networks' (shared when ``dt == ref_dt``) or full batch.
    seed : int
        Seed of the reference (its generator draws the initial particles, then batches and noise).
    test : Dataset or (X, Y)
        Held-out set for the output gap (default: the training set).
    n_records : int
        Number of record intervals on ``[0, T]``.
    w2_max_points, n_projections : int
        Exact W2 up to this many points (else sliced); projections of the sliced distances.
    xi_W, train_W : NC model ``W`` flow.
    noise_stream : {"single", "blocks"}
        Noise stream of the reference (:class:`~mfpde.dynamics.base.ParticleDriver`); the
        networks take its increments.
    progress : callable, optional
        Receives one-line progress messages.
    team : :class:`mfpde.parallel.Team`, optional
        Split the reference over the ranks of ``team`` (every rank calls this function with
        the same arguments): each rank holds and steps its chunks of the ``N_ref`` particles
        (:mod:`mfpde.parallel`), the networks run on rank 0, which receives the first
        ``max(widths)`` rows of the reference's initial particles and, every step, of its
        Gaussian increments (:meth:`~mfpde.parallel.Partition.gather_head`: no communication
        when rank 0 holds them), and gathers the reference at the record times. The result
        is bitwise that of one process for every rank count.
    stop : :class:`~mfpde.engine.StopFlag`, optional
        Signal flag of a split run (agreed by the ranks between chunks of steps); a signal
        ends the run with :class:`CouplingInterrupted` on every rank.

    Returns
    -------
    CouplingRun
        On rank 0 (None on the other ranks of a team).
    """
    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLING)}, got {sampling!r}")
    if ref_batch not in REF_BATCH:
        raise ValueError(f"ref_batch must be one of {', '.join(REF_BATCH)}, got {ref_batch!r}")
    widths = [int(N) for N in widths]
    dts = [float(dt) for dt in dts]
    if not widths or not dts:
        raise ValueError("widths and dts must be non-empty")
    if min(widths) < 1 or max(widths) > N_ref:
        raise ValueError(f"widths must be in [1, N_ref = {N_ref}], got {widths}")
    if ref_dt is None:
        if len(set(dts)) != 1:
            raise ValueError("several network steps: give the reference step ref_dt")
        ref_dt = dts[0]
    K, stride, ms = record_times(T, ref_dt, dts, n_records)
    batched = batch not in (None, 0)
    bad = method_violation(method, batch=batch or 0, beta=float(beta),
                           gamma=gamma if method in HEAVY_BALL else None)
    if bad is not None:
        raise ValueError(bad.message)
    heavy = method in HEAVY_BALL
    noisy = math.isfinite(float(beta))

    # ---- data of the networks and of the reference
    net_data, net_sampler = _network_data(data, sampler, batched, sampling)
    ref_full = (not batched) or ref_batch == "full"
    if ref_full and data is None:
        raise ValueError("a full-batch reference needs a finite (quadrature) data set")
    ref_method = {"gd": "gd", "sgd": "gd" if ref_full else "sgd",
                  "noisy_sgd": "noisy_sgd", "shb": "shb", "shb_polyak": "shb"}[method]
    mf = dict(beta=beta if noisy else None, gamma=gamma if heavy else None,
              xi_W=xi_W, train_W=train_W)
    if team is not None and team.size == 1:
        team = None
    part = None
    if team is not None:
        from .parallel import Layout
        part = Layout(int(N_ref), team.size).partition(team.rank, team.comm)
    root = team is None or team.is_root

    def make_ref():
        return make_trainer(model, data if ref_full else net_data, N=int(N_ref),
                            method=ref_method, lr=ref_dt, batch=None if ref_full else batch,
                            sampler=None if ref_full else net_sampler,
                            seed=np.random.SeedSequence(seed), noise_stream=noise_stream,
                            part=part, fused=False, **mf)      # its batches come from a hook

    ref = make_ref() if team is None else team.collective(make_ref)
    split = ref.part is not None           # a driver that needs every particle is replicated
    n_head = max(widths)

    def head(a):
        """Rows ``:n_head`` of a per-particle array of the reference, on rank 0."""
        return ref.part.gather_head(a, n_head) if split else a[:n_head]

    Xr, Yr = (data.X, data.Y) if data is not None else _test_arrays(test, None, sampler)
    Xt, Yt = _test_arrays(test, data, sampler)

    # ---- the reference's batches and noise are captured and handed to the networks
    cap: dict = {}
    _capture_batches(ref, cap)
    if noisy:
        def ref_noise_src():
            g = ref.sample_noise()
            cap["g"] = head(g)
            return g
        ref.noise_source = ref_noise_src

    # ---- networks (rank 0 of a team)
    theta0 = head(ref.theta)
    theta0 = None if theta0 is None else theta0.copy()
    W0 = None if ref.W is None else ref.W.copy()
    nets = {}
    acc: dict[int, np.ndarray] = {}

    def make_nets():
        if not root:
            return
        for jd, (dt, m) in enumerate(zip(dts, ms)):
            for N in widths:
                net = make_trainer(model, net_data, N=N, method=method, lr=dt,
                                   batch=batch if batched else None, sampler=net_sampler,
                                   seed=np.random.SeedSequence([int(seed), 7919, N, jd]),
                                   theta0=theta0[:N], W0=W0, **mf)
                share = (m == 1) and not ref_full
                if share:
                    _share_batches(net, cap)
                if noisy:
                    if m == 1:
                        net.noise_source = (lambda N=N: cap["g"][:N])
                    else:
                        acc.setdefault(m, np.zeros((0, model.D)))
                        net.noise_source = (lambda N=N, m=m: acc[m][:N] * (1.0 / math.sqrt(m)))
                nets[(N, dt)] = (net, m, share)
        for m in acc:
            nmax = max(N for (N, dt), (_, mm, _) in nets.items() if mm == m)
            acc[m] = np.zeros((nmax, model.D))

    make_nets() if team is None else team.collective(make_nets)
    driver = ref
    if team is not None:
        from .parallel import DistributedDriver
        driver = DistributedDriver(ref, team)
    coupled = CoupledDriver(driver, nets, cap, acc)
    rec = _ReadoutRecorder(coupled, model, heavy, Xt, Xr, Yr,
                           sphere_directions(model.D, n_projections, seed=int(seed)),
                           w2_max_points, n_projections, n_records=n_records, stride=stride,
                           seed=seed, progress=progress, T=T)
    _run_coupled(coupled, rec, K, team, stop)
    if not root:
        return None
    results = rec.results(method, lambda key: {"N": key[0]})
    reference = {"t": rec.t_rec, "risk_ref": rec.risk_ref, "N_ref": int(N_ref),
                 "ref_dt": float(ref_dt), "ref_method": ref_method,
                 "ref_batch": "full" if ref_full else "same", "seconds": coupled.ref_seconds,
                 "seed": int(seed)}
    if noisy:
        reference["noise_stream"] = noise_stream
    return CouplingRun(results, reference)


# ==================================================================================== Pham–Nguyen
def _pn_stats(dw, dv=None):
    """Per-layer squared 'neuron' distances: rows of w1, entries of w2 and w3."""
    d1 = _rows_sq(dw[0])
    d2 = (dw[1] * dw[1]).ravel()
    d3 = dw[2] * dw[2]
    if dv is not None:
        d1 = d1 + _rows_sq(dv[0])
        d2 = d2 + (dv[1] * dv[1]).ravel()
        d3 = d3 + dv[2] * dv[2]
    return d1, d2, d3


def couple_pn(model, data=None, *, n_ref, widths, dts, T, method="sgd", batch=None,
              sampling="epochs", sampler=None, gamma=None, ref_dt=None, ref_batch="same", seed=0,
              test=None, n_records=10, w2_max_points=1024, n_projections=128,
              progress: Callable[[str], None] | None = None) -> CouplingRun:
    """Pham–Nguyen coupling: reference ``n_ref = (n1_ref, n2_ref)``, networks ``widths`` (ints
    ``n`` meaning ``(n, n)`` or pairs) x ``dts``, sub-block initialisation, shared mini-batches.

    Recorded per network (sub-block differences, validation.md §V2): ``coupling_max`` = max over
    layers and indices of ``|w1(j1) - w1_ref(j1)|`` (Euclidean, per first-layer neuron),
    ``|w2(j1,j2) - ...|``, ``|w3(j2) - ...|`` (Pham–Nguyen's ``D_T`` at each time);
    ``coupling_rms`` = ``sqrt`` of the sum over layers of the mean squared differences;
    ``coupling_mean`` = average over the three layers of the mean absolute differences;
    ``c1_max, c2_max, c3_max`` per layer; heavy ball: ``phase_rms``, ``phase_max`` with velocities;
    ``output_gap``, ``loss_N``, ``loss_gap``; ``w2``/``sw2_ref`` between the first-layer weight
    clouds ``w1``. Other parameters as :func:`couple_readout` (no noise: SGD / heavy ball).
    """
    if sampling not in SAMPLING or ref_batch not in REF_BATCH:
        raise ValueError(f"sampling in {SAMPLING}, ref_batch in {REF_BATCH}")
    n1r, n2r = (int(n_ref), int(n_ref)) if np.isscalar(n_ref) else (int(n_ref[0]), int(n_ref[1]))
    wl = [(int(w), int(w)) if np.isscalar(w) else (int(w[0]), int(w[1])) for w in widths]
    if any(a > n1r or b > n2r or a < 1 or b < 1 for a, b in wl):
        raise ValueError(f"widths {wl} must fit in the reference ({n1r}, {n2r})")
    dts = [float(dt) for dt in dts]
    if ref_dt is None:
        if len(set(dts)) != 1:
            raise ValueError("several network steps: give the reference step ref_dt")
        ref_dt = dts[0]
    K, stride, ms = record_times(T, ref_dt, dts, n_records)
    batched = batch not in (None, 0)
    heavy = method in ("shb", "shb_polyak")
    net_data, net_sampler = _network_data(data, sampler, batched, sampling)
    ref_full = (not batched) or ref_batch == "full"
    ref_method = "shb" if heavy else "sgd"
    ref = PNDriver(model, data if ref_full else net_data, n1=n1r, n2=n2r, dt=ref_dt,
                   method=ref_method, gamma=gamma if heavy else None,
                   batch=None if ref_full else batch, sampler=None if ref_full else net_sampler,
                   seed=np.random.SeedSequence(seed))
    Xr, Yr = (data.X, data.Y) if data is not None else _test_arrays(test, None, sampler)
    Xt, Yt = _test_arrays(test, data, sampler)
    cap: dict = {}
    _capture_batches(ref, cap)
    w0 = ref.w.copy()
    nets = {}
    for jd, (dt, m) in enumerate(zip(dts, ms)):
        for (a, b) in wl:
            net = PNDriver(model, net_data, dt=dt, method=method, gamma=gamma if heavy else None,
                           batch=batch if batched else None, sampler=net_sampler,
                           seed=np.random.SeedSequence([int(seed), 7919, a, b, jd]),
                           weights0=w0.sub_block(a, b))
            share = (m == 1) and not ref_full
            if share:
                _share_batches(net, cap)
            nets[((a, b), dt)] = (net, m, share)

    coupled = CoupledDriver(ref, nets, cap)
    rec = _PNRecorder(coupled, model, heavy, Xt, Xr, Yr,
                      sphere_directions(model.d, n_projections, seed=int(seed)),
                      w2_max_points, n_projections, n_records=n_records, stride=stride,
                      seed=seed, progress=progress, T=T)
    _run_coupled(coupled, rec, K)
    results = rec.results(method, lambda key: {"n1": key[0][0], "n2": key[0][1]})
    reference = {"t": rec.t_rec, "risk_ref": rec.risk_ref, "n1_ref": n1r, "n2_ref": n2r,
                 "ref_dt": float(ref_dt), "ref_method": ref_method,
                 "ref_batch": "full" if ref_full else "same", "seconds": coupled.ref_seconds,
                 "seed": int(seed)}
    return CouplingRun(results, reference)
