r"""The shared read-out model: particles ``theta_j = (a_j, u_j)`` and features ``h = E_rho[a sigma(u^T x)]``.

Both network families of the library are instances of this one computation (theory/models.md §1–§2,
dynamics.md §1.2–§1.3, row layout):

.. math::

    P = X U^\top,\; S = \sigma(P)\ (n\times N),\qquad
    H = \tfrac1N S A\ (n\times p),\qquad
    \hat Y = \Gamma H W\ (n\times q),\qquad Z = \hat Y - Y,

    G = \tfrac{\Gamma}{n} Z W^\top,\qquad
    \nabla_A\Psi = S^\top G + \lambda A,\qquad
    \nabla_U\Psi = (S'\odot G A^\top)^\top X + \lambda U,\qquad
    \nabla_W F = \tfrac{\Gamma}{n} H^\top Z + \lambda_W W .

The two-layer network is the case ``W = I_q``, ``Gamma = 1``, ``p = q`` (``W`` is then not a
parameter). With the output weight fixed to 1 the particle is ``u`` alone and ``A = 1``.

The data are streamed in blocks of samples so memory stays ``O(N*D + block*N)``: the ``n x N``
matrices are never formed. Every product is a BLAS call; the element-wise work is fused in
:mod:`mfpde.kernels.readout`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..activations import activation_info, evaluate
from .._blas import blas_threads
from ..kernels.readout import activate_block, backprop_block

#: bytes of one ``block x N`` work buffer (two or three are live during a gradient pass)
BLOCK_BYTES = 1 << 25


@dataclass
class Gradient:
    """Result of :meth:`ReadoutModel.gradient`.

    Attributes
    ----------
    theta : ndarray (N, D)
        :math:`\\nabla_\\theta\\Psi(\\theta_j;\\rho_N, W)` for every particle, weight decay included
        (the N-rescaled gradient of the width-N objective, theory README convention 5).
    W : ndarray (p, q) or None
        :math:`\\nabla_W F = (\\Gamma/n) H^\\top Z + \\lambda_W W` (NC model), else None.
    risk : float
        :math:`R = \\|Z\\|_F^2/(2n)` on the data passed in.
    lap : ndarray (N,) or None
        :math:`\\Delta_\\theta\\Psi(\\theta_j)` (dynamics.md §1.2/§1.3) when requested.
    """

    theta: np.ndarray
    W: np.ndarray | None
    risk: float
    lap: np.ndarray | None = None


def _as_matrix(name, arr, ncols=None):
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 1 and ncols == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {arr.shape}")
    if ncols is not None and arr.shape[1] != ncols:
        raise ValueError(f"{name} must have {ncols} columns, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


class ReadoutModel:
    """Mean-field read-out model (see module docstring for the equations).

    Parameters
    ----------
    d : int
        Input dimension (before the bias coordinate).
    p : int
        Feature dimension: rows of ``a`` (two-layer: ``p = q``; fixed output weight: ``p = 1``).
    q : int
        Output dimension.
    activation : str
        Activation name (:mod:`mfpde.activations`).
    bias : bool
        Append a constant 1 to every input (``x~ = (x, 1)``, models.md §1).
    train_a : bool
        Output weights ``a`` are particle coordinates (False: fixed to 1).
    Gamma : float
        Output multiplier (NC model).
    lam, lam_W : float
        Weight decay on particles and on ``W``.
    init_scale_a, init_scale_u : float
        Standard deviations of the Gaussian initialisation of ``a`` and ``u``.
    block_bytes : int
        Size of one work buffer; sets how many samples are processed per block.
    """

    kind = "readout"
    has_W = False

    def __init__(self, d, p, q, activation="tanh", bias=False, train_a=True, Gamma=1.0,
                 lam=0.0, lam_W=0.0, init_scale_a=1.0, init_scale_u=1.0,
                 block_bytes=BLOCK_BYTES):
        for name, val in (("d", d), ("p", p), ("q", q)):
            if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {val!r}")
        for name, val in (("lam", lam), ("lam_W", lam_W)):
            if not np.isfinite(val) or val < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {val!r}")
        for name, val in (("Gamma", Gamma), ("init_scale_a", init_scale_a),
                          ("init_scale_u", init_scale_u)):
            if not np.isfinite(val) or val <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {val!r}")
        self.activation = activation
        self.info = activation_info(activation)
        self.code = self.info.code
        self.d, self.p, self.q = int(d), int(p), int(q)
        self.bias = bool(bias)
        self.train_a = bool(train_a)
        self.d_in = self.d + int(self.bias)
        self.Gamma = float(Gamma)
        self.lam, self.lam_W = float(lam), float(lam_W)
        self.init_scale_a, self.init_scale_u = float(init_scale_a), float(init_scale_u)
        self.block_bytes = int(block_bytes)
        self.pa = self.p if self.train_a else 0
        #: particle dimension D
        self.D = self.pa + self.d_in

    # ------------------------------------------------------------------ layout
    def split(self, theta):
        """Return ``(A, U)`` views of ``theta`` (N, D): ``A`` (N, p) (ones if fixed), ``U`` (N, d_in)."""
        theta = self.check_theta(theta)
        U = theta[:, self.pa:]
        A = theta[:, :self.pa] if self.train_a else np.ones((theta.shape[0], 1))
        return A, U

    def check_theta(self, theta):
        theta = np.asarray(theta, dtype=np.float64)
        if theta.ndim != 2 or theta.shape[1] != self.D or theta.shape[0] < 1:
            raise ValueError(f"theta must have shape (N, {self.D}) with N >= 1, got {theta.shape}")
        return theta

    def check_W(self, W):
        if not self.has_W:
            if W is not None:
                raise ValueError(f"{self.kind} model has no W; got W of shape {np.shape(W)}")
            return None
        if W is None:
            raise ValueError("the NC model needs W of shape (p, q)")
        W = np.ascontiguousarray(W, dtype=np.float64)
        if W.shape != (self.p, self.q):
            raise ValueError(f"W must have shape ({self.p}, {self.q}), got {W.shape}")
        return W

    def prepare_X(self, X):
        """Validate ``X`` (n, d) and append the bias coordinate if the model has one."""
        X = _as_matrix("X", X)
        if X.shape[1] != self.d:
            raise ValueError(f"X must have d = {self.d} columns, got shape {X.shape}")
        if self.bias:
            X = np.hstack([X, np.ones((X.shape[0], 1))])
        return X

    def prepare_Y(self, Y, n):
        Y = _as_matrix("Y", Y, ncols=self.q)
        if Y.shape[0] != n:
            raise ValueError(f"Y must have {n} rows to match X, got shape {Y.shape}")
        return Y

    def _weights(self, weights, N):
        if weights is None:
            return None
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (N,) or np.any(w < 0) or not np.isclose(w.sum(), 1.0, rtol=1e-10, atol=0):
            raise ValueError(f"weights must be a non-negative (N,) = ({N},) vector summing to 1")
        return w

    def block_size(self, n, N):
        return int(max(1, min(n, self.block_bytes // (8 * N))))

    # ------------------------------------------------------------------ init
    def init_particles(self, N, rng):
        """Draw ``theta`` (N, D): i.i.d. ``N(0, diag(s_a^2 I_p, s_u^2 I_d))`` (models.md §1)."""
        if not isinstance(N, (int, np.integer)) or N < 1:
            raise ValueError(f"N must be an integer >= 1, got {N!r}")
        theta = rng.standard_normal((int(N), self.D))
        theta[:, :self.pa] *= self.init_scale_a
        theta[:, self.pa:] *= self.init_scale_u
        return theta

    def init_W(self, rng):
        return None

    # ------------------------------------------------------------------ the pass
    def _pass(self, theta, X, Y, W, weights, grad=True, lap=False, features=False):
        theta = self.check_theta(theta)
        W = self.check_W(W) if Y is not None else None
        Xa = self.prepare_X(X)
        n = Xa.shape[0]
        Y = self.prepare_Y(Y, n) if Y is not None else None
        N = theta.shape[0]
        w = self._weights(weights, N)
        A, U = self.split(theta)
        Ac = np.ascontiguousarray(A)
        Uc = np.ascontiguousarray(U)
        Aw = Ac * (w[:, None] if w is not None else 1.0 / N)
        blk = self.block_size(n, N)
        Pbuf = np.empty((blk, N))
        Sbuf = np.empty((blk, N))
        Sppbuf = np.empty((blk, N)) if lap else np.empty((0, 0))
        gA = np.zeros((N, self.pa)) if grad else None
        gU = np.zeros((N, self.d_in)) if grad else None
        gW = np.zeros((self.p, self.q)) if (grad and W is not None) else None
        lapv = np.zeros(N) if lap else np.zeros(0)
        H = np.empty((n, self.p)) if features else None
        xn2 = np.einsum("ij,ij->i", Xa, Xa) if lap else np.zeros(blk)
        sq = 0.0
        g_scale = self.Gamma / n
        with blas_threads(blk * N * max(self.d_in, self.p)):
            for s in range(0, n, blk):
                e = min(n, s + blk)
                nb = e - s
                Xb = Xa[s:e]
                P = Pbuf[:nb]
                S = Sbuf[:nb]
                np.dot(Xb, Uc.T, out=P)
                Spp = Sppbuf[:nb] if lap else Sppbuf
                activate_block(self.code, P, S, lap, Spp)       # S = sigma, P = sigma'
                Hb = S @ Aw                                       # (nb, p)
                if features:
                    H[s:e] = Hb
                if Y is None:
                    continue
                if W is None:
                    Zb = Hb - Y[s:e]
                    Gb = Zb * (1.0 / n)
                else:
                    Zb = self.Gamma * (Hb @ W) - Y[s:e]
                    Gb = g_scale * (Zb @ W.T)                    # (nb, p)
                    if gW is not None:
                        gW += g_scale * (Hb.T @ Zb)
                sq += float(np.einsum("ij,ij->", Zb, Zb))
                if not grad:
                    continue
                if self.train_a:
                    gA += S.T @ Gb
                    B = S
                    np.dot(Gb, Ac.T, out=B)                       # B = G A^T, reuses S
                    g_row = Gb[:, 0]
                else:
                    B = S
                    g_row = np.ascontiguousarray(Gb[:, 0])
                backprop_block(P, B, g_row, not self.train_a, lap, Spp,
                               xn2[s:e] if lap else xn2, lapv)
                gU += B.T @ Xb
        risk = sq / (2.0 * n) if Y is not None else float("nan")
        out = {"risk": risk, "H": H}
        if grad and Y is not None:
            g = np.empty((N, self.D))
            if self.train_a:
                g[:, :self.pa] = gA + self.lam * Ac
            g[:, self.pa:] = gU + self.lam * Uc
            out["grad"] = g
            if gW is not None:
                out["gW"] = gW + self.lam_W * W
            if lap:
                out["lap"] = lapv + self.lam * self.D
        return out

    # ------------------------------------------------------------------ public API
    def features(self, theta, X, weights=None):
        """Features :math:`h_N(x_i) = \\frac1N\\sum_j a_j\\sigma(u_j^\\top x_i)`, shape (n, p).

        With ``weights`` (N,) the measure is :math:`\\sum_j w_j\\delta_{\\theta_j}`.
        """
        return self._pass(theta, X, None, None, weights, grad=False, features=True)["H"]

    def forward(self, theta, X, W=None, weights=None):
        """Predictions :math:`f_N(x_i)`, shape (n, q) (models.md §1, §2)."""
        H = self.features(theta, X, weights)
        W = self.check_W(W)
        return H if W is None else self.Gamma * (H @ W)

    def risk(self, theta, X, Y, W=None, weights=None):
        """Risk :math:`R = \\frac{1}{2n}\\sum_i\\|f_N(x_i) - y_i\\|^2` (README convention 1)."""
        return self._pass(theta, X, Y, W, weights, grad=False)["risk"]

    def penalty(self, theta, W=None, weights=None):
        """:math:`\\frac\\lambda2 E_\\rho\\|\\theta\\|^2 + \\frac{\\lambda_W}2\\|W\\|_F^2`."""
        theta = self.check_theta(theta)
        sq = np.einsum("ij,ij->i", theta, theta)
        w = self._weights(weights, theta.shape[0])
        m2 = float(sq.mean() if w is None else w @ sq)
        out = 0.5 * self.lam * m2
        W = self.check_W(W)
        if W is not None:
            out += 0.5 * self.lam_W * float(np.sum(W * W))
        return out

    def regularized_risk(self, theta, X, Y, W=None, weights=None):
        """:math:`R + \\frac\\lambda2 E\\|\\theta\\|^2 + \\frac{\\lambda_W}2\\|W\\|^2` (Wu–Mondelli's
        :math:`L_{\\lambda,n}`; the free energy without entropy)."""
        return self.risk(theta, X, Y, W, weights) + self.penalty(theta, W, weights)

    def gradient(self, theta, X, Y, W=None, weights=None, laplacian=False):
        """Per-particle force and the ``W`` gradient in one streamed pass.

        Parameters
        ----------
        theta : ndarray (N, D)
        X : ndarray (n, d); Y : ndarray (n, q)
            Data (full set, mini-batch or fresh samples: averages are over the rows given).
        W : ndarray (p, q) or None
        weights : ndarray (N,) or None
            Weights of a weighted empirical measure (sum 1); None is uniform ``1/N``.
        laplacian : bool
            Also return :math:`\\Delta\\Psi(\\theta_j)` (metrics.md §4).

        Returns
        -------
        Gradient
            ``theta`` (N, D) = :math:`\\nabla\\Psi(\\theta_j)` (dynamics.md §1.2 / §1.3),
            ``W`` (p, q) or None, ``risk``, ``lap`` (N,) or None.
        """
        out = self._pass(theta, X, Y, W, weights, grad=True, lap=laplacian)
        return Gradient(out["grad"], out.get("gW"), out["risk"], out.get("lap"))

    def potential(self, points, theta, X, Y, W=None, weights=None):
        """Potential :math:`\\Psi(\\vartheta_m;\\rho) = a_m^\\top\\sum_i G_i\\,\\sigma(u_m^\\top x_i)
        + \\frac\\lambda2\\|\\vartheta_m\\|^2` at ``points`` (M, D) for the measure given by ``theta``
        (N, D) and ``weights`` (README convention 3; dynamics.md §1.3). The constant of the first
        variation is fixed so that :math:`\\Psi = \\delta R/\\delta\\rho + \\frac\\lambda2\\|\\theta\\|^2`
        with :math:`\\delta R/\\delta\\rho(\\theta) = E[(f - y)^\\top\\sigma_*(x;\\theta)]`.

        Returns ndarray (M,).
        """
        H = self.features(theta, X, weights)
        W = self.check_W(W)
        Xa = self.prepare_X(X)
        Y = self.prepare_Y(Y, Xa.shape[0])
        n = Xa.shape[0]
        if W is None:
            G = (H - Y) / n
        else:
            G = (self.Gamma / n) * ((self.Gamma * (H @ W) - Y) @ W.T)
        pts = self.check_theta(points)
        A, U = self.split(pts)
        out = np.empty(pts.shape[0])
        blk = max(1, self.block_bytes // (8 * n))
        for s in range(0, pts.shape[0], blk):
            e = min(pts.shape[0], s + blk)
            S = evaluate(self.activation, Xa @ U[s:e].T)           # (n, m)
            out[s:e] = np.einsum("im,im->m", G @ A[s:e].T, S)
        return out + 0.5 * self.lam * np.einsum("ij,ij->i", pts, pts)

    def describe(self) -> dict:
        """Model parameters as a plain dict (stored with runs)."""
        return {"kind": self.kind, "d": self.d, "p": self.p, "q": self.q,
                "activation": self.activation, "bias": self.bias, "train_a": self.train_a,
                "Gamma": self.Gamma, "lam": self.lam, "lam_W": self.lam_W, "D": self.D}
