r"""Three-layer "NC" network of Wu & Mondelli, ICML 2025 (theory/models.md §2; dynamics.md §1.3).

.. math::

    h_\rho(x) = E_{(a,u)\sim\rho}[a\,\sigma(u^\top x)]\in\mathbb R^p,\qquad
    f(x;\rho,W) = \Gamma W^\top h_\rho(x)\in\mathbb R^q,

    F(\rho, W) = \frac1{2n}\|\Gamma W^\top H_\rho - Y\|_F^2 + \frac{\lambda_W}2\|W\|_F^2
    + \frac\lambda2 E_\rho\|\theta\|^2 + \beta^{-1}E_\rho\log\rho .

Particle layout ``theta`` (N, D = p + d): columns ``[a (p), u (d)]``. ``W`` (p, q) follows its own
noiseless gradient flow :math:`\dot W = -\xi_W\nabla_W F` (dynamics.md §2.1) or is frozen.
Initialisation (A1): ``rho_0 = N(0, I_{p+d})`` and ``W_0`` the Q factor of a Gaussian ``p x q``
matrix (``W_0^T W_0 = I_q``).
"""
from __future__ import annotations

import numpy as np

from .readout import ReadoutModel


class NCThreeLayer(ReadoutModel):
    """Wu–Mondelli three-layer network (models.md §2).

    Parameters
    ----------
    d, q, p : int
        Input dimension, number of classes, second-layer width (``p >= q``).
    activation : str
        Default ``"tanh"``; (A3) excludes relu.
    Gamma : float
        Output multiplier :math:`\\Gamma` (``gamma`` in the paper).
    lam, lam_W : float
        :math:`\\lambda_\\rho` and :math:`\\lambda_W`.
    """

    kind = "nc"
    has_W = True

    def __init__(self, d, q, p=4, activation="tanh", Gamma=1.0, lam=0.0, lam_W=0.0, bias=False,
                 init_scale_a=1.0, init_scale_u=1.0, **kw):
        if not isinstance(p, (int, np.integer)) or not isinstance(q, (int, np.integer)) or p < q:
            raise ValueError(f"the NC model needs integers p >= q, got p={p!r}, q={q!r}")
        super().__init__(d=d, p=p, q=q, activation=activation, bias=bias, train_a=True,
                         Gamma=Gamma, lam=lam, lam_W=lam_W, init_scale_a=init_scale_a,
                         init_scale_u=init_scale_u, **kw)

    def init_W(self, rng):
        """``W_0`` with orthonormal columns: Q factor of a Gaussian (p, q) matrix (A1)."""
        Q, R = np.linalg.qr(rng.standard_normal((self.p, self.q)))
        return np.ascontiguousarray(Q * np.sign(np.diag(R)))
