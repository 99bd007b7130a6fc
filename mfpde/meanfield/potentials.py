r"""Potentials ``Psi(theta; rho)`` on a grid (theory/grid.md §1): external, explicit interaction
kernel, and the model potential of a read-out network through the model layer.

.. math::

    \Psi(\theta;\rho) = V(\theta) + \int U(\theta,\theta')\rho(d\theta') + \tfrac\lambda2\|\theta\|^2 ,

A potential returns the values ``Psi_j`` on the cell centres (shape ``grid.shape``) and the energy
``E_Delta`` of the discrete free energy without entropy (``dE_Delta/d rho_j = |C| Psi_j``).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["Potential", "ExternalPotential", "InteractionPotential", "ModelPotential",
           "ou_potential", "double_well_potential", "ou_exact_moments"]


class Potential:
    """Interface of a potential ``Psi(theta; rho)`` on a grid (grid.md §1).

    Subclasses implement :meth:`psi` (values ``Psi_j`` on the cell centres, shape
    ``grid.shape``) and :meth:`energy` (the part ``E_Delta`` of the discrete free energy without
    the entropy, with ``d E_Delta/d rho_j = |C| Psi_j``). ``local = True`` means ``Psi`` does not
    depend on ``rho`` (cached, enables the compiled fast path of :meth:`FVSolver.run`). An
    optional attribute ``local_part`` (array ``grid.shape``) is the ``rho``-independent part of
    ``Psi``; the semi-implicit step limits only the velocity of the remainder.
    """

    local = False
    grid = None

    def psi(self, rho):  # pragma: no cover - interface
        raise NotImplementedError

    def energy(self, rho):  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self):
        return {"kind": type(self).__name__}


class ExternalPotential(Potential):
    """External (confining) potential ``Psi(theta) = V(theta)`` independent of ``rho``.

    Parameters
    ----------
    grid : Grid1D or Grid2D
    V : callable or ndarray
        ``V(x)`` (1-D) / ``V(x0, x1)`` (2-D) evaluated at the cell centres, or the values
        (shape ``grid.shape``). Include the weight decay ``lam/2 |theta|^2`` in ``V``.
    const : float
        Constant added to the energy (e.g. ``1/2 E y^2``).
    label : str
    """

    local = True

    def __init__(self, grid, V, const=0.0, label="external"):
        self.grid = grid
        if callable(V):
            vals = V(grid.x) if grid.ndim == 1 else V(*np.meshgrid(*grid.axes, indexing="ij"))
        else:
            vals = V
        self.values = np.ascontiguousarray(np.broadcast_to(np.asarray(vals, dtype=float),
                                                           grid.shape))
        self.const = float(const)
        self.label = label

    def psi(self, rho=None):
        return self.values

    def energy(self, rho):
        """``E_Delta = |C| sum_j V_j rho_j + const``."""
        return self.grid.cell_volume * float(np.sum(self.values * rho)) + self.const

    def describe(self):
        return {"kind": "external", "label": self.label}


def ou_potential(grid, lam=1.0):
    """Ornstein–Uhlenbeck potential ``Psi = lam/2 |theta|^2`` (validation.md §K2)."""
    if grid.ndim == 1:
        return ExternalPotential(grid, lambda x: 0.5 * lam * x * x, label=f"ou(lam={lam})")
    return ExternalPotential(grid, lambda a, b: 0.5 * lam * (a * a + b * b),
                             label=f"ou(lam={lam})")


def double_well_potential(grid, lam=0.0):
    """Double well ``Psi = theta^4/4 - theta^2/2 (+ lam/2 theta^2)`` in 1-D (validation.md §K3)."""
    if grid.ndim != 1:
        raise ValueError("the double well is defined on a 1-D grid")
    return ExternalPotential(grid, lambda x: 0.25 * x ** 4 - 0.5 * x * x + 0.5 * lam * x * x,
                             label="double_well")


class InteractionPotential(Potential):
    """``Psi_j = V_j + |C| sum_k U_jk rho_k`` with an explicit symmetric kernel matrix (grid.md §1.1).

    For small grids and tests; models with finite data use :class:`ModelPotential`, which never
    forms ``U``.

    Parameters
    ----------
    grid : Grid1D or Grid2D
    V : ndarray, shape ``grid.shape``  (include ``lam/2 |theta|^2``)
    U : ndarray, shape ``(M, M)``, ``M = prod(grid.shape)``, symmetric
    const : float  (``1/2 E y^2``)
    """

    local = False

    def __init__(self, grid, V, U, const=0.0):
        self.grid = grid
        self.V = np.ascontiguousarray(np.broadcast_to(np.asarray(V, float), grid.shape))
        M = int(np.prod(grid.shape))
        U = np.asarray(U, float)
        if U.shape != (M, M):
            raise ValueError(f"U must have shape ({M}, {M}), got {U.shape}")
        self.U = 0.5 * (U + U.T)
        self.const = float(const)
        self.local_part = self.V

    def psi(self, rho):
        vol = self.grid.cell_volume
        return self.V + vol * (self.U @ rho.ravel()).reshape(self.grid.shape)

    def energy(self, rho):
        """``|C| sum V rho + 1/2 |C|^2 rho^T U rho + const``."""
        vol = self.grid.cell_volume
        r = rho.ravel()
        return vol * float(self.V.ravel() @ r) + 0.5 * vol * vol * float(r @ (self.U @ r)) \
            + self.const


class ModelPotential(Potential):
    """Two-layer (or any read-out) model potential on the grid, through the model layer.

    ``Psi_j = Psi(theta_j; rho)`` with ``rho = sum_k w_k delta_{theta_k}``, ``theta_k`` the cell
    centres and ``w_k = |C| rho_k`` the cell masses (normalised to 1): exactly
    ``Psi_j = (1/n) sum_i (f(x_i) - y_i)^T sigma_*(x_i; theta_j) + lam/2 |theta_j|^2`` with
    ``f(x_i) = |C| sum_k sigma_*(x_i; theta_k) rho_k`` (the predictor trick of grid.md §1.1), as
    computed by ``model.potential``. Energy (grid.md §1.1, finite data):
    ``E_Delta = R(f) + |C| sum_j lam/2 |theta_j|^2 rho_j``.

    With ``cache=True`` (default when ``n * M <= cache_limit`` and the model has no ``W``) the
    ``n x M`` matrix ``S_im = sigma(u_m^T x_i)`` of the fixed cell centres is computed once with
    the model's activation, input preparation and particle layout (``model.prepare_X``,
    ``model.split``), as grid.md §1.1 prescribes ("precompute the n x J matrix"); then
    ``f = S (A w)`` and ``Psi_m = a_m^T (G^T S)_m + lam/2 |theta_m|^2``, ``G = (f - Y)/n``, cost
    ``O(nM)`` per evaluation. The cached evaluation is checked against ``model.potential`` on
    construction (relative difference ``< 1e-10``, else ``RuntimeError``). Without the cache every
    evaluation calls ``model.potential`` / ``model.forward``.

    Parameters
    ----------
    model : mfpde model (``potential``, ``forward``, ``lam``, ``D``)
    X : ndarray (n, d); Y : ndarray (n, q)
    grid : Grid1D or Grid2D with ``grid.ndim == model.D`` (columns of the particle layout, e.g.
        ``theta = (a, w)`` for the standard neuron with ``q = d = 1``)
    W : optional read-out matrix of the NC model
    cache : bool or None (None: automatic)
    cache_limit : int
    """

    local = False

    def __init__(self, model, X, Y, grid, W=None, cache=None, cache_limit=20_000_000):
        if grid.ndim != model.D:
            raise ValueError(f"grid dimension {grid.ndim} != model particle dimension {model.D}")
        self.model, self.grid, self.W = model, grid, W
        self.X = np.ascontiguousarray(X, dtype=float)
        self.Y = np.ascontiguousarray(Y, dtype=float)
        if self.Y.ndim == 1:
            self.Y = self.Y[:, None]
        self.points = np.ascontiguousarray(grid.points)
        self.sq = np.einsum("ij,ij->i", self.points, self.points).reshape(grid.shape)
        self.local_part = 0.5 * model.lam * self.sq
        n, M = self.X.shape[0], self.points.shape[0]
        if cache is None:
            cache = (W is None) and (not getattr(model, "has_W", False)) and n * M <= cache_limit
        self.cache = bool(cache)
        if self.cache:
            from ..activations import evaluate
            if W is not None or getattr(model, "has_W", False):
                raise ValueError("the feature cache supports models without W only")
            A, U = model.split(self.points)
            Xa = model.prepare_X(self.X)
            self._A = np.ascontiguousarray(A)                       # (M, q)
            self._S = evaluate(model.activation, Xa @ U.T)          # (n, M)
            rho_test = np.ones(grid.shape)
            ref = model.potential(self.points, self.points, self.X, self.Y,
                                  weights=self.weights(rho_test))
            got = self.psi(rho_test).ravel()
            err = np.max(np.abs(got - ref)) / max(1.0, np.max(np.abs(ref)))
            if not err < 1e-10:
                raise RuntimeError(f"cached grid potential disagrees with model.potential ({err:.2e})")

    def weights(self, rho):
        w = np.maximum(rho.ravel(), 0.0) * self.grid.cell_volume
        return w / w.sum()

    def predictor(self, rho):
        """``f(x_i) = |C| sum_k sigma_*(x_i; theta_k) rho_k``, shape (n, q)."""
        w = self.weights(rho)
        if self.cache:
            return self._S @ (self._A * w[:, None])
        return self.model.forward(self.points, self.X, W=self.W, weights=w)

    def psi(self, rho):
        if self.cache:
            G = (self.predictor(rho) - self.Y) / self.X.shape[0]      # (n, q)
            data = np.einsum("mq,mq->m", (self._S.T @ G), self._A)
            return data.reshape(self.grid.shape) + 0.5 * self.model.lam * self.sq
        w = self.weights(rho)
        return self.model.potential(self.points, self.points, self.X, self.Y, W=self.W,
                                    weights=w).reshape(self.grid.shape)

    def risk(self, rho):
        """``R = 1/(2n) sum_i |f(x_i) - y_i|^2`` of the grid predictor."""
        Z = self.predictor(rho) - self.Y
        return 0.5 * float(np.sum(Z * Z)) / self.X.shape[0]

    def energy(self, rho):
        vol = self.grid.cell_volume
        return self.risk(rho) + 0.5 * self.model.lam * vol * float(np.sum(self.sq * rho))

    def describe(self):
        out = {"kind": "model", "cache": self.cache}
        try:
            out.update(self.model.describe())
        except AttributeError:
            pass
        return out


def ou_exact_moments(t, m0, v0, lam, beta):
    """Ornstein–Uhlenbeck law at time ``t`` (dynamics.md §2.4 with ``Sigma = 0``, ``b = 0``).

    ``Psi = lam/2 theta^2``: ``m(t) = m0 e^{-lam t}``,
    ``v(t) = v0 e^{-2 lam t} + (1 - e^{-2 lam t})/(beta lam)`` (``v(t) = v0 e^{-2 lam t}`` for
    ``beta = inf``). Returns ``(m, v)``.
    """
    e = math.exp(-lam * t)
    m = np.asarray(m0, dtype=float) * e
    v = np.asarray(v0, dtype=float) * e * e
    if np.isfinite(beta):
        v = v + (1.0 - e * e) / (beta * lam)
    return m, v
