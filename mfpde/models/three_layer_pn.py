r"""Three-layer Pham–Nguyen network with two wide layers (theory/models.md §3, dynamics.md §6).

Widths ``n1``, ``n2``; weights ``w1`` (n1, d), ``w2`` (n1, n2), ``w3`` (n2,):

.. math::

    H_2(x, j_2) = \frac1{n_1}\sum_{j_1} w_2(j_1, j_2)\,\varphi_1(\langle w_1(j_1), x\rangle),\qquad
    H_3(x) = \frac1{n_2}\sum_{j_2} w_3(j_2)\,\varphi_2(H_2(x, j_2)),\qquad
    \hat y(x) = \varphi_3(H_3(x)),

loss :math:`\frac12(y-\hat y)^2` (scalar output, ``q = 1``). Defaults ``phi1 = phi2 = tanh``,
``phi3 = identity``.

Rescaled gradients, minibatch matrix form of dynamics.md §6.1 in row layout (batch ``X_b`` (B, d)):

.. math::

    P_1 = \varphi_1(X_b w_1^\top)\ (B\times n_1),\quad H_2 = P_1 w_2/n_1,\quad
    P_2 = \varphi_2(H_2),\quad H_3 = P_2 w_3/n_2,

    e = (\varphi_3(H_3) - y)\odot\varphi_3'(H_3),\quad \Delta = (e\,w_3^\top)\odot\varphi_2'(H_2),

    \mathrm{Grad}_3 = P_2^\top e/B,\quad \mathrm{Grad}_2 = P_1^\top\Delta/B,\quad
    \mathrm{Grad}_1 = \big[(\Delta w_2^\top/n_2)\odot\varphi_1'(X_b w_1^\top)\big]^\top X_b/B .

They are :math:`(n_2, n_1 n_2, n_1)` times the raw gradients :math:`\partial L/\partial w_\ell`
(dynamics.md §6.1), so raw learning rates are :math:`\eta_3 = n_2\varepsilon\xi_3`,
:math:`\eta_2 = n_1 n_2\varepsilon\xi_2`, :math:`\eta_1 = n_1\varepsilon\xi_1`
(:func:`pn_raw_lrs`). Cost ``O(B n1 n2 + B n1 d)`` per step, memory ``O(n1 n2)``.

Initialisation [choice] (bounded ``w2(0)``, ``w3(0)`` and ``supp rho^1 = R^d`` as Pham–Nguyen's
assumptions require): ``w1 ~ N(0, s1^2 I_d)``, ``w2 ~ Unif[m2 - r2, m2 + r2]``,
``w3 ~ Unif[m3 - r3, m3 + r3]``, defaults ``s1 = 1``, ``m2 = 1, r2 = 1``, ``m3 = 0, r3 = 1``
(``m2 != 0`` so that ``H_2`` is not identically 0 at initialisation in the limit). All entries are
i.i.d., so the first ``n1`` rows / ``n2`` columns of a large initialisation are a valid
initialisation of the smaller network (sub-block coupling, :meth:`PNWeights.sub_block`).

The drivers that train the network (SGD, stochastic heavy ball) and the velocity-augmented
mean-field ODEs are :class:`mfpde.dynamics.PNDriver` and :class:`mfpde.dynamics.PNKineticSolver`
(:mod:`mfpde.dynamics.pham_nguyen`); the model knows nothing of them. Optional weight decay
[choice] adds ``lam * w_l`` to each rescaled force.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..activations import activation_info, evaluate

__all__ = ["PNThreeLayer", "PNWeights", "PNGradient", "pn_raw_lrs", "pn_eps_from_raw"]


@dataclass
class PNWeights:
    """Weights of a Pham–Nguyen network: ``w1`` (n1, d), ``w2`` (n1, n2), ``w3`` (n2,)."""

    w1: np.ndarray
    w2: np.ndarray
    w3: np.ndarray

    @property
    def n1(self) -> int:
        return self.w2.shape[0]

    @property
    def n2(self) -> int:
        return self.w2.shape[1]

    def copy(self) -> "PNWeights":
        return PNWeights(self.w1.copy(), self.w2.copy(), self.w3.copy())

    def sub_block(self, n1: int, n2: int) -> "PNWeights":
        """Copy of the first ``n1`` first-layer and ``n2`` second-layer neurons (sub-block coupling)."""
        if not (1 <= n1 <= self.n1 and 1 <= n2 <= self.n2):
            raise ValueError(f"sub-block ({n1}, {n2}) exceeds the widths ({self.n1}, {self.n2})")
        return PNWeights(self.w1[:n1].copy(), self.w2[:n1, :n2].copy(), self.w3[:n2].copy())

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.w1, self.w2, self.w3


@dataclass
class PNGradient:
    """Rescaled gradients ``Grad_1`` (n1, d), ``Grad_2`` (n1, n2), ``Grad_3`` (n2,) and the risk
    ``mean ½(y - yhat)^2`` on the data passed in (weight decay included when ``lam > 0``)."""

    g1: np.ndarray
    g2: np.ndarray
    g3: np.ndarray
    risk: float


def pn_raw_lrs(eps, n1, n2, xi=(1.0, 1.0, 1.0)) -> tuple[float, float, float]:
    """Raw learning rates ``(eta_1, eta_2, eta_3) = (n1 eps xi_1, n1 n2 eps xi_2, n2 eps xi_3)``."""
    return (n1 * eps * xi[0], n1 * n2 * eps * xi[1], n2 * eps * xi[2])


def pn_eps_from_raw(eta, n1, n2) -> tuple[float, tuple[float, float, float]]:
    """Inverse of :func:`pn_raw_lrs` with ``eps = eta_1/n1``: returns ``(eps, (1, xi_2, xi_3))``."""
    e1, e2, e3 = (float(v) for v in eta)
    eps = e1 / n1
    return eps, (1.0, e2 / (n1 * n2 * eps), e3 / (n2 * eps))


class PNThreeLayer:
    """Pham–Nguyen three-layer network (module docstring).

    Parameters
    ----------
    d : int
        Input dimension.
    phi1, phi2, phi3 : str
        Activations (:mod:`mfpde.activations`); default tanh, tanh, identity.
    lam : float
        Optional weight decay on all three layers (rescaled units) [choice].
    init_w1_std, init_w2_mean, init_w2_halfwidth, init_w3_mean, init_w3_halfwidth : float
        Initialisation (module docstring).
    """

    kind = "pham_nguyen"
    has_W = False
    q = 1

    def __init__(self, d, phi1="tanh", phi2="tanh", phi3="identity", lam=0.0, init_w1_std=1.0,
                 init_w2_mean=1.0, init_w2_halfwidth=1.0, init_w3_mean=0.0, init_w3_halfwidth=1.0):
        if not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d < 1:
            raise ValueError(f"d must be an integer >= 1, got {d!r}")
        for name in (phi1, phi2, phi3):
            activation_info(name)
        for name, v in (("lam", lam), ("init_w2_halfwidth", init_w2_halfwidth),
                        ("init_w3_halfwidth", init_w3_halfwidth), ("init_w1_std", init_w1_std)):
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        self.d = int(d)
        self.phi1, self.phi2, self.phi3 = phi1, phi2, phi3
        self.lam = float(lam)
        self.init_w1_std = float(init_w1_std)
        self.init_w2_mean, self.init_w2_halfwidth = float(init_w2_mean), float(init_w2_halfwidth)
        self.init_w3_mean, self.init_w3_halfwidth = float(init_w3_mean), float(init_w3_halfwidth)

    # ------------------------------------------------------------------ data
    def prepare_X(self, X):
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.d:
            raise ValueError(f"X must have shape (n, {self.d}), got {X.shape}")
        return X

    def prepare_Y(self, Y, n):
        Y = np.asarray(Y, dtype=np.float64)
        if Y.ndim == 2 and Y.shape[1] == 1:
            Y = Y[:, 0]
        if Y.shape != (n,):
            raise ValueError(f"Y must have shape ({n},) or ({n}, 1) (scalar output), got {Y.shape}")
        return np.ascontiguousarray(Y)

    # ------------------------------------------------------------------ init
    def init_weights(self, n1, n2, rng) -> PNWeights:
        """I.i.d. initialisation (module docstring), drawn in the order w1, w2, w3."""
        for name, v in (("n1", n1), ("n2", n2)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        w1 = self.init_w1_std * rng.standard_normal((int(n1), self.d))
        w2 = self.init_w2_mean + self.init_w2_halfwidth * rng.uniform(-1.0, 1.0, (int(n1), int(n2)))
        w3 = self.init_w3_mean + self.init_w3_halfwidth * rng.uniform(-1.0, 1.0, int(n2))
        return PNWeights(w1, w2, w3)

    def check_weights(self, w: PNWeights) -> PNWeights:
        w1, w2, w3 = (np.asarray(a, dtype=np.float64) for a in w.arrays())
        if w1.ndim != 2 or w1.shape[1] != self.d or w2.ndim != 2 or w2.shape[0] != w1.shape[0] \
                or w3.shape != (w2.shape[1],):
            raise ValueError(f"inconsistent PN weights: w1 {w1.shape}, w2 {w2.shape}, w3 {w3.shape}")
        return PNWeights(np.ascontiguousarray(w1), np.ascontiguousarray(w2), np.ascontiguousarray(w3))

    # ------------------------------------------------------------------ forward / backward
    def _forward(self, w: PNWeights, X):
        Z1 = X @ w.w1.T                                   # (B, n1)
        P1 = evaluate(self.phi1, Z1)
        H2 = P1 @ w.w2 / w.n1                             # (B, n2)
        P2 = evaluate(self.phi2, H2)
        H3 = P2 @ w.w3 / w.n2                             # (B,)
        return Z1, P1, H2, P2, H3

    def forward(self, w: PNWeights, X) -> np.ndarray:
        """Predictions ``yhat(x_i)``, shape (n,)."""
        X = self.prepare_X(X)
        return evaluate(self.phi3, self._forward(w, X)[4])

    def risk(self, w: PNWeights, X, Y) -> float:
        """``(1/n) sum_i ½ (y_i - yhat(x_i))^2``."""
        X = self.prepare_X(X)
        Y = self.prepare_Y(Y, X.shape[0])
        r = self.forward(w, X) - Y
        return 0.5 * float(r @ r) / X.shape[0]

    def gradients(self, w: PNWeights, X, Y) -> PNGradient:
        """Rescaled gradients of dynamics.md §6.1 (minibatch matrix form, module docstring)."""
        X = self.prepare_X(X)
        B = X.shape[0]
        Y = self.prepare_Y(Y, B)
        Z1, P1, H2, P2, H3 = self._forward(w, X)
        yhat = evaluate(self.phi3, H3)
        e = (yhat - Y) * evaluate(self.phi3, H3, 1)       # (B,)
        Delta = np.multiply.outer(e, w.w3)
        Delta *= evaluate(self.phi2, H2, 1)               # (B, n2)
        g3 = P2.T @ e / B
        g2 = P1.T @ Delta / B
        M = Delta @ w.w2.T                                # (B, n1)
        M *= evaluate(self.phi1, Z1, 1) / (w.n2 * B)
        g1 = M.T @ X
        if self.lam:
            g1 += self.lam * w.w1
            g2 += self.lam * w.w2
            g3 += self.lam * w.w3
        r = yhat - Y
        return PNGradient(g1, g2, g3, 0.5 * float(r @ r) / B)

    def gradients_loop(self, w: PNWeights, X, Y) -> PNGradient:
        """The per-sample formulas of dynamics.md §6.1 averaged over the rows (slow; tests)."""
        X = self.prepare_X(X)
        Y = self.prepare_Y(Y, X.shape[0])
        n1, n2 = w.n1, w.n2
        g1 = np.zeros_like(w.w1)
        g2 = np.zeros_like(w.w2)
        g3 = np.zeros_like(w.w3)
        risk = 0.0
        for x, y in zip(X, Y):
            p1 = evaluate(self.phi1, w.w1 @ x)
            h2 = np.array([sum(w.w2[j1, j2] * p1[j1] for j1 in range(n1)) / n1 for j2 in range(n2)])
            p2 = evaluate(self.phi2, h2)
            h3 = float(sum(w.w3[j2] * p2[j2] for j2 in range(n2)) / n2)
            yhat = float(evaluate(self.phi3, np.array([h3]))[0])
            d2L = yhat - y
            dphi3 = float(evaluate(self.phi3, np.array([h3]), 1)[0])
            risk += 0.5 * d2L * d2L
            dphi2 = evaluate(self.phi2, h2, 1)
            dphi1 = evaluate(self.phi1, w.w1 @ x, 1)
            D2H = np.array([d2L * dphi3 * w.w3[j2] * dphi2[j2] for j2 in range(n2)])
            for j2 in range(n2):
                g3[j2] += d2L * dphi3 * p2[j2]
                for j1 in range(n1):
                    g2[j1, j2] += D2H[j2] * p1[j1]
            for j1 in range(n1):
                s = sum(D2H[j2] * w.w2[j1, j2] for j2 in range(n2)) / n2
                g1[j1] += s * dphi1[j1] * x
        B = X.shape[0]
        g1 /= B
        g2 /= B
        g3 /= B
        if self.lam:
            g1 += self.lam * w.w1
            g2 += self.lam * w.w2
            g3 += self.lam * w.w3
        return PNGradient(g1, g2, g3, risk / B)

    def describe(self) -> dict:
        return {"kind": self.kind, "d": self.d, "phi1": self.phi1, "phi2": self.phi2,
                "phi3": self.phi3, "lam": self.lam, "init_w1_std": self.init_w1_std,
                "init_w2_mean": self.init_w2_mean, "init_w2_halfwidth": self.init_w2_halfwidth,
                "init_w3_mean": self.init_w3_mean, "init_w3_halfwidth": self.init_w3_halfwidth}
