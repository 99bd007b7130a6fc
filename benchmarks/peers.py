"""Peer implementations of the mfpde particle step, for the benchmark suite and the tests.

Both peers compute exactly the streamed gradient of :class:`mfpde.models.readout.ReadoutModel`
(theory/dynamics.md §1.2 two-layer, §1.3 NC; row layout ``theta = [a (p), u (d)]``)::

    P = X_b U^T,  S = sigma(P),  H_b = S A / N
    two-layer:  Z = H_b - Y_b,            G = Z / n
    NC:         Z = Gamma H_b W - Y_b,    G = (Gamma/n) Z W^T,   grad_W += (Gamma/n) H_b^T Z
    grad_A += S^T G,   B = G A^T,   grad_U += (sigma'(P) * B)^T X_b
    grad_A += lam A,   grad_U += lam U,  grad_W += lam_W W

and the Euler step ``theta -= eps * grad`` (noiseless; the noise is timed separately).

- :class:`NumpyPeer`: plain NumPy (no Numba), chunked over samples so the ``chunk x N`` buffers stay
  ~32 MB, like mfpde's own blocks.
- :class:`TorchPeer`: the same in PyTorch on the CPU, float64, ``torch.set_num_threads`` equal to
  Numba's thread count.  :func:`torch_available` tells whether it can be used; the benchmark skips
  it with a message when torch is not installed.

The peers read only the model's *parameters* (``p, q, train_a, Gamma, lam, lam_W, bias,
activation``); they never call mfpde's kernels.
"""
from __future__ import annotations

import math

import numpy as np

CHUNK_BYTES = 1 << 25
_SQRT_PI = math.sqrt(math.pi)


def _params(model):
    return dict(p=model.p, q=model.q, train_a=model.train_a, Gamma=model.Gamma, lam=model.lam,
                lam_W=model.lam_W, bias=model.bias, activation=model.activation,
                has_W=model.has_W, pa=model.pa)


# ---------------------------------------------------------------------------- NumPy
def np_activation(name, P):
    """Return ``(sigma(P), sigma'(P))`` with plain NumPy."""
    if name == "identity":
        return P.copy(), np.ones_like(P)
    if name == "tanh":
        S = np.tanh(P)
        return S, 1.0 - S * S
    if name == "sigmoid":
        S = 0.5 * (1.0 + np.tanh(0.5 * P))
        return S, S * (1.0 - S)
    if name == "erf":
        from scipy.special import erf
        return erf(P), (2.0 / _SQRT_PI) * np.exp(-P * P)
    if name == "softplus":
        return np.logaddexp(0.0, P), 0.5 * (1.0 + np.tanh(0.5 * P))
    if name == "relu":
        return np.maximum(P, 0.0), (P > 0).astype(np.float64)
    raise ValueError(f"NumPy peer: activation {name!r} not implemented")


class _Peer:
    """A peer implementation of the gradient pass; ``step`` is the same for every array library."""

    def step(self, theta, X, Y, eps, W=None):
        """One noiseless Euler step in place (numpy arrays or torch tensors); returns the new
        ``W`` (NC) or None."""
        g, gW, _ = self.gradient(theta, X, Y, W)
        theta -= eps * g
        if gW is not None:
            W = W - eps * gW
        return W


class NumpyPeer(_Peer):
    """Plain NumPy implementation of the full-batch gradient and noiseless step."""

    name = "numpy"

    def __init__(self, model, chunk_bytes=CHUNK_BYTES):
        self.m = _params(model)
        self.chunk_bytes = int(chunk_bytes)

    def _prep_X(self, X):
        X = np.asarray(X, dtype=np.float64)
        if self.m["bias"]:
            X = np.hstack([X, np.ones((X.shape[0], 1))])
        return X

    def gradient(self, theta, X, Y, W=None):
        """Return ``(grad_theta (N, D), grad_W or None, risk)``."""
        m = self.m
        X = self._prep_X(X)
        Y = np.asarray(Y, dtype=np.float64).reshape(X.shape[0], -1)
        n, N = X.shape[0], theta.shape[0]
        pa = m["pa"]
        U = theta[:, pa:]
        A = theta[:, :pa] if m["train_a"] else np.ones((N, 1))
        chunk = max(1, min(n, self.chunk_bytes // (8 * N)))
        gA = np.zeros((N, A.shape[1]))
        gU = np.zeros_like(U)
        gW = np.zeros((m["p"], m["q"])) if m["has_W"] else None
        sq = 0.0
        for s in range(0, n, chunk):
            Xb, Yb = X[s:s + chunk], Y[s:s + chunk]
            S, Sp = np_activation(m["activation"], Xb @ U.T)
            H = (S @ A) / N
            if m["has_W"]:
                Z = m["Gamma"] * (H @ W) - Yb
                G = (m["Gamma"] / n) * (Z @ W.T)
                gW += (m["Gamma"] / n) * (H.T @ Z)
            else:
                Z = H - Yb
                G = Z / n
            sq += float(np.sum(Z * Z))
            gA += S.T @ G
            gU += (Sp * (G @ A.T)).T @ Xb
        grad = np.empty_like(theta)
        if m["train_a"]:
            grad[:, :pa] = gA + m["lam"] * A
        grad[:, pa:] = gU + m["lam"] * U
        if gW is not None:
            gW += m["lam_W"] * W
        return grad, gW, sq / (2.0 * n)



# ---------------------------------------------------------------------------- PyTorch
def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except Exception:
        return False
    return True


def _torch_act(torch, name, P):
    if name == "identity":
        return P.clone(), torch.ones_like(P)
    if name == "tanh":
        S = torch.tanh(P)
        return S, 1.0 - S * S
    if name == "sigmoid":
        S = torch.sigmoid(P)
        return S, S * (1.0 - S)
    if name == "erf":
        return torch.erf(P), (2.0 / _SQRT_PI) * torch.exp(-P * P)
    if name == "softplus":
        return torch.nn.functional.softplus(P), torch.sigmoid(P)
    if name == "relu":
        return torch.relu(P), (P > 0).to(P.dtype)
    raise ValueError(f"torch peer: activation {name!r} not implemented")


class TorchPeer(_Peer):
    """The same step in PyTorch (CPU, float64, manual gradient, chunked like the NumPy peer).

    ``threads`` defaults to Numba's thread count. Arrays are converted once with
    :meth:`to_torch`; :meth:`step` works on torch tensors in place.
    """

    name = "torch"

    def __init__(self, model, threads=None, chunk_bytes=CHUNK_BYTES):
        import torch
        if threads is None:
            import numba
            threads = numba.get_num_threads()
        torch.set_num_threads(int(threads))
        self.torch = torch
        self.m = _params(model)
        self.chunk_bytes = int(chunk_bytes)

    def to_torch(self, a):
        if a is None:
            return None
        return self.torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))

    def _prep_X(self, X):
        if self.m["bias"]:
            X = self.torch.cat([X, self.torch.ones((X.shape[0], 1), dtype=X.dtype)], dim=1)
        return X

    def products(self, theta, X, Y):
        """Only the matrix products of :meth:`gradient` (same shapes and chunks, constant
        element-wise inputs): PyTorch's own BLAS floor for the step."""
        torch, m = self.torch, self.m
        with torch.no_grad():
            X = self._prep_X(X)
            n, N = X.shape[0], theta.shape[0]
            U = theta[:, m["pa"]:]
            A = theta[:, :m["pa"]] if m["train_a"] else torch.ones((N, 1), dtype=theta.dtype)
            chunk = max(1, min(n, self.chunk_bytes // (8 * N)))
            gU = torch.zeros_like(U)
            for s in range(0, n, chunk):
                Xb = X[s:s + chunk]
                S = Xb @ U.T
                G = S[:, :A.shape[1]] * 1e-3
                _ = S @ A
                _ = S.T @ G
                B = G @ A.T
                gU += B.T @ Xb
        return gU

    def gradient(self, theta, X, Y, W=None):
        """Torch tensors in, ``(grad_theta, grad_W or None, risk)`` torch tensors out."""
        torch, m = self.torch, self.m
        with torch.no_grad():
            X = self._prep_X(X)
            Y = Y.reshape(X.shape[0], -1)
            n, N = X.shape[0], theta.shape[0]
            pa = m["pa"]
            U = theta[:, pa:]
            A = theta[:, :pa] if m["train_a"] else torch.ones((N, 1), dtype=theta.dtype)
            chunk = max(1, min(n, self.chunk_bytes // (8 * N)))
            gA = torch.zeros((N, A.shape[1]), dtype=theta.dtype)
            gU = torch.zeros_like(U)
            gW = torch.zeros((m["p"], m["q"]), dtype=theta.dtype) if m["has_W"] else None
            sq = 0.0
            for s in range(0, n, chunk):
                Xb, Yb = X[s:s + chunk], Y[s:s + chunk]
                S, Sp = _torch_act(torch, m["activation"], Xb @ U.T)
                H = (S @ A) / N
                if m["has_W"]:
                    Z = m["Gamma"] * (H @ W) - Yb
                    G = (m["Gamma"] / n) * (Z @ W.T)
                    gW += (m["Gamma"] / n) * (H.T @ Z)
                else:
                    Z = H - Yb
                    G = Z / n
                sq += float((Z * Z).sum())
                gA += S.T @ G
                gU += (Sp * (G @ A.T)).T @ Xb
            grad = torch.empty_like(theta)
            if m["train_a"]:
                grad[:, :pa] = gA + m["lam"] * A
            grad[:, pa:] = gU + m["lam"] * U
            if gW is not None:
                gW += m["lam_W"] * W
        return grad, gW, sq / (2.0 * n)

