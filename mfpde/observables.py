r"""Observables: a registry of named scalar measurements of a driver's state.

An *observable* is one function ``fn(ctx) -> float`` registered under a name with
:func:`observable`, declaring what it needs. ``ctx`` (:class:`Context`) gives the driver's
``fields()`` (``theta``, ``r``, ``W``, ``density``, ...), the run's model, evaluation data,
held-out data, ``beta``, and a per-evaluation cache (one gradient pass, one feature matrix shared
by every quantity that uses them). Observables never change the driver's state and draw no random
numbers, so observing does not change a run (bitwise).

Adding an observable is one function here (or in any module imported before the run)::

    @observable("mean_norm", needs=("theta",), doc="E|theta|, the mean particle norm")
    def mean_norm(ctx):
        return float(np.linalg.norm(ctx.theta, axis=1).mean())

*Needs* are field names of :data:`mfpde.engine.protocol.FIELDS` (the driver must show them) or
context tokens: ``model`` (a read-out model: two-layer / NC), ``data`` (evaluation data),
``labels`` (class labels in the data), ``test`` (a held-out set), ``grid`` (a grid driver's
discrete free energy), ``pn`` (a Pham–Nguyen model). A name may have several variants with
different needs (``free_energy`` of particles and of a grid density); the first variant whose
needs are met is used.

Quantities (theory/metrics.md section in brackets):

==========================  ====================================================================
``loss``                    risk :math:`R = \frac1{2n}\sum_i\|f_N(x_i)-y_i\|^2` on the evaluation
                            data (Pham–Nguyen: :math:`\frac12 E(y-\hat y)^2`)
``reg_loss``                :math:`R + \frac\lambda2 E\|\theta\|^2 + \frac{\lambda_W}2\|W\|^2` (§2)
``entropy``                 Kozachenko–Leonenko kNN estimate of :math:`-E_\rho\log\rho` (§5; an
                            ESTIMATE, biased for large D)
``free_energy``             ``reg_loss - entropy/beta`` (§5; estimate; ``reg_loss`` if beta = inf);
                            grid drivers: the discrete free energy :math:`F_\Delta` (grid.md §1)
``grad_sq``                 entropy-free stationarity :math:`\frac1N\sum_j\|\nabla\Psi(\theta_j)\|^2`
                            (§4.1)
``grad_W_sq``               :math:`\|\nabla_W F\|_F^2` (NC model)
``nc1``                     Wu–Mondelli NC1 of the features :math:`H` (§1.1)
``nc1_papyan``              Papyan–Han–Donoho :math:`\frac1q\mathrm{tr}(\Sigma_W\Sigma_B^+)` (§1.2)
``nb``                      normalised balancedness NB (§1.4)
``smin_W``, ``smax_W``      extreme singular values of ``W`` (§2)
``lemma45``                 :math:`\|\lambda E[aa^\top] - \lambda_W WW^\top - \beta^{-1}I_p\|_{op}`
                            (validation.md §V6)
``test_loss``               risk on the held-out set
``kinetic_energy``          :math:`\frac12E\|r\|^2 + \frac12\|r_W\|_F^2` (dynamics.md §5.4)
``hamiltonian``             :math:`H = R_\lambda + \frac12E\|r\|^2 + \frac12\|r_W\|^2` (§5.4)
``kinetic_free_energy``     :math:`H - \beta^{-1}\hat S` with :math:`\hat S` the kNN ESTIMATE of the
                            phase-space entropy in dimension 2D (``hamiltonian`` when beta = inf)
``dissipation``             :math:`-dH/dt = \gamma\xi E\|r\|^2 + \gamma\xi\xi_W\|r_W\|^2`
                            (:math:`+\xi\xi_W\|\nabla_WF\|^2` when W follows the first-order flow)
``mass``                    grid drivers: :math:`|C|\sum_j\rho_j`
``mass_drift``              grid drivers: :math:`|m/m_0 - 1|` (round-off for a conservative scheme)
==========================  ====================================================================

The evaluation data are the full training set (also when training uses mini-batches); for online
(population) runs they are a fixed sample drawn once from the sampler with its own seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from .metrics import collapse
from .metrics.entropy import knn_entropy

__all__ = ["observable", "Observable", "Context", "Observers", "available", "describe",
           "kinetic_energy", "hamiltonian", "kinetic_free_energy", "dissipation_rate",
           "pn_kinetic_energy", "pn_hamiltonian"]


@dataclass(frozen=True)
class Observable:
    """One registered variant of a named quantity."""

    name: str
    fn: Callable[["Context"], float]
    needs: frozenset
    doc: str
    uses_gradient: bool = False
    may_be_nan: bool = False


#: name -> variants, in registration order
_REGISTRY: dict[str, list[Observable]] = {}

#: context tokens (needs that are not driver fields), with the message shown when unmet
TOKENS = {
    "model": "a read-out model (two_layer or nc)",
    "data": "evaluation data",
    "labels": "class labels in the data",
    "test": "a held-out data set",
    "grid": "a grid driver",
    "pn": "the Pham–Nguyen model",
}


def observable(name: str, *, needs: Iterable[str] = (), doc: str = "",
               uses_gradient: bool = False, may_be_nan: bool = False):
    """Register ``fn(ctx) -> float`` as (a variant of) the quantity ``name``.

    ``needs``: driver fields and context tokens (module docstring). ``uses_gradient``: the
    function calls ``ctx.gradient()`` (then ``ctx.risk()`` takes the risk of that same pass, so
    ``loss`` and ``grad_sq`` come from one evaluation). ``may_be_nan``: NaN means "not defined
    at this state" (e.g. a bound whose condition fails), recorded as such instead of stopping
    the run as a numerical failure (an infinite value still stops it).
    """
    def deco(fn):
        _REGISTRY.setdefault(name, []).append(
            Observable(name, fn, frozenset(needs), doc or (fn.__doc__ or "").strip(),
                       bool(uses_gradient), bool(may_be_nan)))
        return fn
    return deco


def available() -> tuple[str, ...]:
    """Names of every registered quantity."""
    return tuple(_REGISTRY)


def describe() -> dict[str, str]:
    """``{name: doc}`` of the first variant of every quantity."""
    return {name: v[0].doc for name, v in _REGISTRY.items()}


# --------------------------------------------------------------------------------------------
# the evaluation context
# --------------------------------------------------------------------------------------------

@dataclass
class Context:
    """What an observable sees: the driver's fields, the run's model and data, a cache.

    Attributes
    ----------
    driver : the driver (read only)
    fields : dict of arrays from ``driver.fields()`` (``theta`` (N, D), ``W`` (p, q), ...)
    model : read-out model, Pham–Nguyen model or None
    data : evaluation Dataset (``X`` (n, d), ``Y`` (n, q), ``labels``) or None
    test : held-out Dataset or None
    beta : inverse temperature of the run
    knn_k : neighbour index of the kNN entropy estimators
    grad_needed : a requested quantity uses the gradient pass (``risk()`` then reuses it)
    """

    driver: Any
    fields: dict
    model: Any = None
    data: Any = None
    test: Any = None
    beta: float = math.inf
    knn_k: int = 3
    grad_needed: bool = False
    cache: dict = field(default_factory=dict)
    initial: dict = field(default_factory=dict)

    def __getattr__(self, name):
        # ctx.theta, ctx.W, ctx.r, ctx.density, ...: the driver's fields
        fields = self.__dict__.get("fields")
        if fields is not None and name in fields:
            return fields[name]
        raise AttributeError(name)

    def get(self, name: str, default=None):
        """A field, or ``default`` when the driver does not show it."""
        return self.fields.get(name, default)

    def _cached(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = fn()
        return self.cache[key]

    def gradient(self):
        """One gradient pass on the evaluation data (cached): ``Gradient(theta, W, risk)``."""
        return self._cached("gradient", lambda: self.model.gradient(
            self.fields["theta"], self.data.X, self.data.Y, self.fields.get("W")))

    def risk(self) -> float:
        """Risk on the evaluation data: from the gradient pass when one is made, else a
        forward pass (cached)."""
        if self.grad_needed:
            return self.gradient().risk
        return self._cached("risk", lambda: self.model.risk(
            self.fields["theta"], self.data.X, self.data.Y, self.fields.get("W")))

    def features(self) -> np.ndarray:
        """Features ``H`` (n, p) of the evaluation data (cached)."""
        return self._cached("features", lambda: self.model.features(self.fields["theta"],
                                                                     self.data.X))

    def entropy(self) -> float:
        """kNN entropy estimate of the particles (cached)."""
        return self._cached("entropy", lambda: knn_entropy(self.fields["theta"], k=self.knn_k))


# --------------------------------------------------------------------------------------------
# the observer of a run
# --------------------------------------------------------------------------------------------

def _is_readout(model) -> bool:
    return model is not None and hasattr(model, "has_W") and hasattr(model, "features")


def _is_pn(model) -> bool:
    return model is not None and hasattr(model, "gradients") and hasattr(model, "init_weights")


class Observers:
    """Evaluate a list of named quantities on a driver (see the module docstring).

    Parameters
    ----------
    quantities : list of str
        Names from :func:`available`.
    model : ReadoutModel, PNThreeLayer or None
        The run's model (None for grid drivers on an external potential).
    data : Dataset or None
        Evaluation data (``X`` (n, d), ``Y`` (n, q), ``labels`` (n,) for NC metrics).
    test : Dataset, optional
        Held-out data for ``test_loss``.
    beta : float
        Inverse temperature of the run (``free_energy``, ``lemma45``, ``kinetic_free_energy``).
    knn_k : int
        Neighbour index of the entropy estimators.

    The model / data requirements are checked here (``ValueError`` naming the quantity); the
    driver's (fields such as the velocities ``r``) when the observer is first called, or by
    :meth:`check`.
    """

    def __init__(self, quantities, model=None, data=None, *, test=None, beta=math.inf,
                 knn_k=3):
        quantities = list(quantities)
        unknown = [q for q in quantities if q not in _REGISTRY]
        if unknown:
            raise ValueError(f"unknown observed quantities {unknown}; allowed: "
                             f"{', '.join(_REGISTRY)}")
        self.quantities = quantities
        #: quantities whose NaN means "not defined here" (the series tracker records it)
        self.may_be_nan = frozenset(q for q in quantities
                                    if any(v.may_be_nan for v in _REGISTRY[q]))
        self.model, self.data, self.test = model, data, test
        self.beta, self.knn_k = float(beta), int(knn_k)
        self._tokens = self._context_tokens()
        # requirements that do not depend on the driver: the model, labels, a held-out set
        if model is not None and not _is_pn(model) and not model.has_W:
            bad = [q for q in quantities if self._all_need(q, "W")]
            if bad:
                raise ValueError(f"{bad} need the NC model (a W matrix); model is "
                                 f"{getattr(model, 'kind', type(model).__name__)!r}")
        bad = [q for q in quantities if self._all_need(q, "labels") and "labels" not in self._tokens]
        if bad:
            raise ValueError(f"{bad} need class labels; the data set "
                             f"{getattr(data, 'name', '')!r} has none")
        if "test_loss" in quantities and test is None:
            raise ValueError("test_loss needs a held-out data set")
        self._plan: list[Observable] | None = None
        self._plan_key = None

    # ------------------------------------------------------------------ requirements
    @classmethod
    def available(cls) -> tuple[str, ...]:
        """Names of every quantity an observer can record."""
        return available()

    def _context_tokens(self) -> set:
        t = set()
        if _is_readout(self.model):
            t.add("model")
        if _is_pn(self.model):
            t.add("pn")
        if self.data is not None:
            t.add("data")
            if getattr(self.data, "labels", None) is not None:
                t.add("labels")
        if self.test is not None:
            t.add("test")
        return t

    @staticmethod
    def _all_need(name: str, token: str) -> bool:
        return all(token in v.needs for v in _REGISTRY[name])

    def _choose(self, name: str, have: set) -> Observable:
        for v in _REGISTRY[name]:
            if v.needs <= have:
                return v
        missing = sorted(_REGISTRY[name][0].needs - have)
        what = ", ".join(TOKENS.get(m, f"the field {m!r}") for m in missing)
        raise ValueError(f"observe.quantities: {name!r} needs {what}; the driver "
                         f"shows {', '.join(sorted(have - set(TOKENS))) or 'nothing'}")

    def check(self, driver) -> list[Observable]:
        """The variant of each quantity for ``driver``; ``ValueError`` naming an unmet need."""
        key = frozenset(driver.fields())
        if self._plan is None or key != self._plan_key:
            have = set(key) | self._tokens
            if getattr(driver, "free_energy", None) is not None and "density" in key:
                have.add("grid")
            self._plan = [self._choose(q, have) for q in self.quantities]
            self._plan_key = key
        return self._plan

    # ------------------------------------------------------------------ evaluation
    def __call__(self, driver) -> dict[str, float]:
        plan = self.check(driver)
        ctx = Context(driver, driver.fields(), self.model, self.data, self.test, self.beta,
                      self.knn_k, grad_needed=any(v.uses_gradient for v in plan),
                      initial=self.__dict__.setdefault("_initial", {}))
        return {v.name: float(v.fn(ctx)) for v in plan}


# --------------------------------------------------------------------------------------------
# particle quantities (read-out models)
# --------------------------------------------------------------------------------------------

@observable("loss", needs=("theta", "model", "data"), doc="risk on the evaluation data")
def _loss(ctx):
    return ctx.risk()


@observable("reg_loss", needs=("theta", "model", "data"),
            doc="risk + lam/2 E|theta|^2 + lam_W/2 |W|^2")
def _reg_loss(ctx):
    return ctx.risk() + ctx.model.penalty(ctx.theta, ctx.get("W"))


@observable("entropy", needs=("theta",), doc="kNN ESTIMATE of the particle entropy")
def _entropy(ctx):
    return ctx.entropy()


@observable("free_energy", needs=("theta", "model", "data"),
            doc="reg_loss - entropy/beta (kNN estimate; reg_loss for beta = inf)")
def _free_energy(ctx):
    reg = _reg_loss(ctx)
    return reg - ctx.entropy() / ctx.beta if math.isfinite(ctx.beta) else reg


@observable("grad_sq", needs=("theta", "model", "data"), uses_gradient=True,
            doc="(1/N) sum_j |grad Psi(theta_j)|^2")
def _grad_sq(ctx):
    g = ctx.gradient().theta
    return float(np.einsum("ij,ij->", g, g) / ctx.theta.shape[0])


@observable("grad_W_sq", needs=("theta", "W", "model", "data"), uses_gradient=True,
            doc="|grad_W F|_F^2")
def _grad_W_sq(ctx):
    return float(np.sum(ctx.gradient().W ** 2))


@observable("nc1", needs=("theta", "model", "labels"), doc="Wu–Mondelli NC1 of the features")
def _nc1(ctx):
    return collapse.nc1(ctx.features(), ctx.data.labels)


@observable("nc1_papyan", needs=("theta", "model", "labels"),
            doc="Papyan–Han–Donoho NC1 tr(Sigma_W Sigma_B^+)/q")
def _nc1_papyan(ctx):
    return collapse.nc1_papyan(ctx.features(), ctx.data.labels)


def _A(ctx):
    return ctx.theta[:, :ctx.model.p]


@observable("nb", needs=("theta", "W", "model"), doc="normalised balancedness NB")
def _nb(ctx):
    return collapse.balancedness(_A(ctx), ctx.W)


def _sv(ctx):
    return ctx._cached("sv_W", lambda: collapse.singular_values(ctx.W))


@observable("smin_W", needs=("W",), doc="smallest singular value of W")
def _smin_W(ctx):
    return _sv(ctx)[0]


@observable("smax_W", needs=("W",), doc="largest singular value of W")
def _smax_W(ctx):
    return _sv(ctx)[1]


@observable("lemma45", needs=("theta", "W", "model"),
            doc="|lam E[aa^T] - lam_W W W^T - I/beta|_op")
def _lemma45(ctx):
    m = ctx.model
    return collapse.lemma45_residual(_A(ctx), ctx.W, m.lam, m.lam_W, ctx.beta)


@observable("test_loss", needs=("theta", "model", "test"), doc="risk on the held-out set")
def _test_loss(ctx):
    return ctx.model.risk(ctx.theta, ctx.test.X, ctx.test.Y, ctx.get("W"))


# --------------------------------------------------------------------------------------------
# kinetic quantities (dynamics.md §5.4)
# --------------------------------------------------------------------------------------------

def kinetic_energy(r, r_W=None) -> float:
    r""":math:`\frac12 E_\rho\|r\|^2 + \frac12\|r_W\|_F^2` for velocities ``r`` (N, D) and
    ``r_W`` (p, q) or None (dynamics.md §5.4)."""
    ke = 0.5 * float(np.einsum("ij,ij->", r, r)) / r.shape[0]
    if r_W is not None:
        ke += 0.5 * float(np.sum(r_W * r_W))
    return ke


def hamiltonian(model, theta, r, X, Y, W=None, r_W=None) -> float:
    r"""Lyapunov function of the kinetic flow (dynamics.md §5.4),
    :math:`H = R + \frac\lambda2E\|\theta\|^2 + \frac{\lambda_W}2\|W\|^2 + \frac12E\|r\|^2
    + \frac12\|r_W\|^2`; non-increasing for ``beta = inf`` and full-batch forces.
    ``theta``, ``r`` (N, D); ``X`` (n, d); ``Y`` (n, q); ``W``, ``r_W`` (p, q) or None."""
    return model.regularized_risk(theta, X, Y, W) + kinetic_energy(r, r_W)


def kinetic_free_energy(model, theta, r, X, Y, beta, W=None, r_W=None, k=3) -> float:
    r""":math:`F_{kin} = H - \beta^{-1}\hat S` with :math:`\hat S` the Kozachenko–Leonenko
    ESTIMATE of the phase-space entropy from the points ``(theta_i, r_i)`` in dimension 2D
    (metrics.md §5); equals :func:`hamiltonian` for ``beta = inf``."""
    H = hamiltonian(model, theta, r, X, Y, W, r_W)
    if not math.isfinite(beta):
        return H
    return H - knn_entropy(np.hstack([theta, r]), k=k) / beta


def dissipation_rate(driver, model=None, X=None, Y=None) -> float:
    r""":math:`-dH/dt` of the exact noiseless kinetic dynamics at the driver's state:
    :math:`\gamma\xi E\|r\|^2 + \gamma\xi\xi_W\|r_W\|^2`, plus :math:`\xi\xi_W\|\nabla_WF\|^2`
    when ``W`` follows the first-order flow (dynamics.md §5.4); ``xi`` at the driver's time."""
    xi = driver.xi(driver.t)
    r = driver.r
    out = driver.gamma * xi * float(np.einsum("ij,ij->", r, r)) / r.shape[0]
    r_W = getattr(driver, "r_W", None)
    if r_W is not None:
        out += driver.gamma * xi * driver.xi_W * float(np.sum(r_W * r_W))
    elif getattr(driver, "train_W", False):
        gW = model.gradient(driver.theta, X, Y, driver.W).W
        out += xi * driver.xi_W * float(np.sum(gW * gW))
    return out


@observable("kinetic_energy", needs=("r",), doc="1/2 E|r|^2 + 1/2 |r_W|^2")
def _kinetic_energy(ctx):
    return kinetic_energy(ctx.r, ctx.get("r_W"))


@observable("hamiltonian", needs=("theta", "r", "model", "data"),
            doc="H = reg_loss + kinetic_energy")
def _hamiltonian(ctx):
    return hamiltonian(ctx.model, ctx.theta, ctx.r, ctx.data.X, ctx.data.Y, ctx.get("W"),
                       ctx.get("r_W"))


@observable("kinetic_free_energy", needs=("theta", "r", "model", "data"),
            doc="H - S_kNN(theta, r)/beta (ESTIMATE)")
def _kinetic_free_energy(ctx):
    return kinetic_free_energy(ctx.model, ctx.theta, ctx.r, ctx.data.X, ctx.data.Y, ctx.beta,
                               ctx.get("W"), ctx.get("r_W"), k=ctx.knn_k)


@observable("dissipation", needs=("theta", "r", "model", "data"),
            doc="-dH/dt of the noiseless kinetic flow")
def _dissipation(ctx):
    return dissipation_rate(ctx.driver, ctx.model, ctx.data.X, ctx.data.Y)


# --------------------------------------------------------------------------------------------
# Pham–Nguyen network (models.md §3)
# --------------------------------------------------------------------------------------------

def _pn_weights(ctx):
    from .models.three_layer_pn import PNWeights
    return PNWeights(ctx.w1, ctx.w2, ctx.w3)


@observable("loss", needs=("w1", "w2", "w3", "pn", "data"), doc="risk of the Pham–Nguyen network")
def _pn_loss(ctx):
    return ctx.model.risk(_pn_weights(ctx), ctx.data.X, ctx.data.Y)


@observable("test_loss", needs=("w1", "w2", "w3", "pn", "test"),
            doc="held-out risk of the Pham–Nguyen network")
def _pn_test_loss(ctx):
    return ctx.model.risk(_pn_weights(ctx), ctx.test.X, ctx.test.Y)


def _layer_means(a1, a2, a3) -> tuple[float, float, float]:
    """``(E|a_1|^2, E a_2^2, E a_3^2)`` over the neuron indices of the three layers."""
    return (float(np.sum(a1 * a1)) / a1.shape[0], float(np.mean(a2 * a2)),
            float(np.mean(a3 * a3)))


def pn_kinetic_energy(r, xis) -> float:
    r""":math:`\frac12\sum_\ell E\|r_\ell\|^2/\xi_\ell` of the Pham–Nguyen kinetic ODEs
    (dynamics.md §6.3) for velocities ``r = (r1 (n1, d), r2 (n1, n2), r3 (n2,))`` and the layer
    rates ``xis`` at the current time."""
    return 0.5 * sum(m / x for m, x in zip(_layer_means(*r), xis))


def pn_hamiltonian(model, w, r, xis, X, Y) -> float:
    r"""Lyapunov function of the Pham–Nguyen kinetic ODEs (dynamics.md §6.3):
    :math:`H = E_zL + \frac\lambda2(E\|w_1\|^2 + Ew_2^2 + Ew_3^2)
    + \frac12\sum_\ell E\|r_\ell\|^2/\xi_\ell` (``w`` a :class:`PNWeights`)."""
    H = model.risk(w, X, Y) + pn_kinetic_energy(r, xis)
    if model.lam:
        H += 0.5 * model.lam * sum(_layer_means(*w.arrays()))
    return H


def _pn_r(ctx):
    return ctx.r1, ctx.r2, ctx.r3


def _pn_xis(ctx):
    return [f(ctx.driver.t) for f in ctx.driver.xi_l]


@observable("kinetic_energy", needs=("r1", "r2", "r3", "pn"),
            doc="1/2 sum_l E|r_l|^2 / xi_l (Pham–Nguyen kinetic ODEs)")
def _pn_kinetic_energy(ctx):
    return pn_kinetic_energy(_pn_r(ctx), _pn_xis(ctx))


@observable("hamiltonian", needs=("w1", "w2", "w3", "r1", "r2", "r3", "pn", "data"),
            doc="H of the Pham–Nguyen kinetic ODEs")
def _pn_hamiltonian(ctx):
    return pn_hamiltonian(ctx.model, _pn_weights(ctx), _pn_r(ctx), _pn_xis(ctx), ctx.data.X,
                          ctx.data.Y)


@observable("dissipation", needs=("r1", "r2", "r3", "pn"),
            doc="-dH/dt = gamma sum_l E|r_l|^2 / xi_l (Pham–Nguyen kinetic ODEs)")
def _pn_dissipation(ctx):
    return ctx.driver.gamma * sum(m / x for m, x in zip(_layer_means(*_pn_r(ctx)), _pn_xis(ctx)))


# --------------------------------------------------------------------------------------------
# grid drivers (grid.md §1)
# --------------------------------------------------------------------------------------------

@observable("free_energy", needs=("density", "grid"),
            doc="discrete free energy F_Delta of the grid scheme")
def _grid_free_energy(ctx):
    return ctx.driver.free_energy()


@observable("mass", needs=("density", "grid"), doc="|C| sum_j rho_j")
def _grid_mass(ctx):
    return ctx.driver.mass()


@observable("mass_drift", needs=("density", "grid"), doc="|mass/mass_0 - 1|")
def _grid_mass_drift(ctx):
    m = ctx.driver.mass()
    m0 = ctx.initial.setdefault("mass", m)
    return abs(m / m0 - 1.0)


#: quantities that need a kinetic driver (velocities)
Observers.KINETIC = tuple(n for n, vs in _REGISTRY.items()
                          if all(v.needs & {"r", "r1", "r2", "r3"} for v in vs))
#: quantities that need a grid driver (a density)
Observers.GRID = tuple(n for n in _REGISTRY if Observers._all_need(n, "density"))
Observers.QUANTITIES = available()

# quantities registered by other modules (imported here so that every name is available)
from . import observables_nc  # noqa: E402,F401
