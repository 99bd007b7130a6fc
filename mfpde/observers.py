r"""Observers: named scalar measurements of a solver's state, sampled on a schedule.

An :class:`Observers` object is called with a solver and returns ``{name: float}``; it never changes
the solver's state (it reads ``solver.theta``, ``solver.W`` and the evaluation data only, and draws
no random numbers from the run's generator). The runner samples it every ``observe.every`` steps and
the store appends the values to ``/series``.

Quantities (theory/metrics.md section in brackets):

==================  ==========================================================================
``loss``            risk :math:`R = \frac1{2n}\sum_i\|f_N(x_i)-y_i\|^2` on the evaluation data
``reg_loss``        :math:`R + \frac\lambda2 E\|\theta\|^2 + \frac{\lambda_W}2\|W\|^2` (§2)
``entropy``         Kozachenko–Leonenko kNN estimate of :math:`-E_\rho\log\rho` (§5; an ESTIMATE,
                    biased for large D)
``free_energy``     ``reg_loss - entropy/beta`` (§5; estimate; equals ``reg_loss`` if beta = inf)
``grad_sq``         entropy-free stationarity :math:`\frac1N\sum_j\|\nabla\Psi(\theta_j)\|^2` (§4.1)
``grad_W_sq``       :math:`\|\nabla_W F\|_F^2` (NC model)
``nc1``             Wu–Mondelli NC1 of the features :math:`H` (§1.1)
``nc1_papyan``      Papyan–Han–Donoho :math:`\frac1q\mathrm{tr}(\Sigma_W\Sigma_B^+)` (§1.2)
``nb``              normalised balancedness NB (§1.4)
``smin_W, smax_W``  extreme singular values of ``W`` (§2)
``lemma45``         :math:`\|\lambda E[aa^\top] - \lambda_W WW^\top - \beta^{-1}I_p\|_{op}` (validation.md §V6)
``test_loss``       risk on the held-out set, when one is given
``hamiltonian``     kinetic solver: :math:`H = R_\lambda + \frac12E\|r\|^2` (dynamics.md §5.4)
``kinetic_energy``  kinetic solver: :math:`\frac12E\|r\|^2` (+ ``W`` velocity)
``kinetic_free_energy``  kinetic solver: :math:`H - \beta^{-1}\hat S` (kNN ESTIMATE of the
                    phase-space entropy; equals ``hamiltonian`` when beta = inf)
==================  ==========================================================================

The evaluation data are the full training set (also when training uses mini-batches); for online
(population) runs they are a fixed sample drawn once from the sampler with its own seed.
"""
from __future__ import annotations

import math

import numpy as np

from .metrics import collapse
from .metrics.entropy import knn_entropy

_NEEDS_LABELS = {"nc1", "nc1_papyan"}
_NEEDS_W = {"grad_W_sq", "nb", "smin_W", "smax_W", "lemma45"}


class Observers:
    """Evaluate a list of named quantities on a solver (see module docstring).

    Parameters
    ----------
    quantities : list of str
        Names from :meth:`available`.
    model : ReadoutModel
    data : Dataset
        Evaluation data (``X`` (n, d), ``Y`` (n, q), ``labels`` (n,) for NC metrics).
    test : Dataset, optional
        Held-out data for ``test_loss``.
    beta : float
        Inverse temperature of the run (for ``free_energy`` and ``lemma45``).
    knn_k : int
        Neighbour index of the entropy estimator.
    """

    QUANTITIES = ("loss", "reg_loss", "entropy", "free_energy", "grad_sq", "grad_W_sq", "nc1",
                  "nc1_papyan", "nb", "smin_W", "smax_W", "lemma45", "test_loss",
                  "hamiltonian", "kinetic_energy", "kinetic_free_energy")
    #: quantities that need a kinetic solver (velocities)
    KINETIC = ("hamiltonian", "kinetic_energy", "kinetic_free_energy")

    @classmethod
    def available(cls) -> tuple[str, ...]:
        """Names of every quantity an observer can record."""
        return cls.QUANTITIES

    def __init__(self, quantities, model, data, *, test=None, beta=math.inf, knn_k=3):
        unknown = [q for q in quantities if q not in self.QUANTITIES]
        if unknown:
            raise ValueError(f"unknown observed quantities {unknown}; allowed: {', '.join(self.QUANTITIES)}")
        if not model.has_W and (bad := [q for q in quantities if q in _NEEDS_W]):
            raise ValueError(f"{bad} need the NC model (a W matrix); model is {model.kind!r}")
        labels = getattr(data, "labels", None)
        if labels is None and (bad := [q for q in quantities if q in _NEEDS_LABELS]):
            raise ValueError(f"{bad} need class labels; the data set {getattr(data, 'name', '')!r} has none")
        if "test_loss" in quantities and test is None:
            raise ValueError("test_loss needs a held-out data set")
        self.quantities = list(quantities)
        self.model, self.data, self.test = model, data, test
        self.beta, self.knn_k = float(beta), int(knn_k)

    def __call__(self, solver) -> dict[str, float]:
        m, X, Y = self.model, self.data.X, self.data.Y
        theta, W = solver.theta, solver.W
        want = set(self.quantities)
        out: dict[str, float] = {}
        grad = None
        if want & {"grad_sq", "grad_W_sq"}:
            grad = m.gradient(theta, X, Y, W)
            out["grad_sq"] = float(np.einsum("ij,ij->", grad.theta, grad.theta) / theta.shape[0])
            if grad.W is not None:
                out["grad_W_sq"] = float(np.sum(grad.W ** 2))
        if want & {"loss", "reg_loss", "free_energy"}:
            risk = grad.risk if grad is not None else m.risk(theta, X, Y, W)
            out["loss"] = risk
            out["reg_loss"] = risk + m.penalty(theta, W)
        if want & {"entropy", "free_energy"}:
            out["entropy"] = knn_entropy(theta, k=self.knn_k)
            out["free_energy"] = (out["reg_loss"] - out["entropy"] / self.beta
                                  if math.isfinite(self.beta) else out["reg_loss"])
        if want & {"nc1", "nc1_papyan"}:
            H = m.features(theta, X)
            out["nc1"] = collapse.nc1(H, self.data.labels)
            if "nc1_papyan" in want:
                out["nc1_papyan"] = collapse.nc1_papyan(H, self.data.labels)
        if W is not None:
            A = theta[:, :m.p]
            if "nb" in want:
                out["nb"] = collapse.balancedness(A, W)
            if want & {"smin_W", "smax_W"}:
                out["smin_W"], out["smax_W"] = collapse.singular_values(W)
            if "lemma45" in want:
                out["lemma45"] = collapse.lemma45_residual(A, W, m.lam, m.lam_W, self.beta)
        if "test_loss" in want:
            out["test_loss"] = m.risk(theta, self.test.X, self.test.Y, W)
        if want & set(self.KINETIC):
            if not hasattr(solver, "hamiltonian"):
                raise ValueError(f"{sorted(want & set(self.KINETIC))} need the kinetic solver")
            if "kinetic_energy" in want:
                out["kinetic_energy"] = solver.kinetic_energy()
            if "hamiltonian" in want:
                out["hamiltonian"] = solver.hamiltonian(X, Y)
            if "kinetic_free_energy" in want:
                out["kinetic_free_energy"] = solver.kinetic_free_energy(X, Y, k=self.knn_k)
        return {k: float(out[k]) for k in self.quantities}
