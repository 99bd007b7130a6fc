"""Peer implementations of the mfpde particle step, for the benchmark suite and the tests.

Every peer computes exactly the streamed gradient of :class:`mfpde.models.readout.ReadoutModel`
(theory/dynamics.md §1.2 two-layer, §1.3 NC; row layout ``theta = [a (p), u (d)]``, ``theta`` of
shape ``(N, D)``, data ``X (n, d)``, ``Y (n, q)``), one block ``X_b (c, d)`` of ``c`` samples at a
time::

    P = X_b U^T (c, N),  S = sigma(P),  H_b = S A / N (c, p)
    two-layer:  Z = H_b - Y_b,            G = Z / n
    NC:         Z = Gamma H_b W - Y_b,    G = (Gamma/n) Z W^T,   grad_W += (Gamma/n) H_b^T Z
    grad_A += S^T G (N, p),   B = G A^T (c, N),   grad_U += (sigma'(P) * B)^T X_b (N, d)
    grad_A += lam A,   grad_U += lam U,  grad_W += lam_W W,   risk = sum |Z|^2 / (2 n)

and the Euler step ``theta -= eps * grad``, ``W -= eps * grad_W`` (noiseless; the noise is timed
separately). The block size ``c`` keeps the ``c x N`` buffers near 32 MB, like mfpde's own blocks.

The algorithm is written once (:class:`_Peer`) against a small array-library backend
(:class:`_Ops`); the peers differ only in the library and in how the step is compiled:

- :class:`NumpyPeer`: plain NumPy (no Numba).
- :class:`TorchPeer`: PyTorch on the CPU, float64, ``torch.set_num_threads`` equal to Numba's
  thread count; ``compile=True`` wraps the whole step in ``torch.compile`` (inductor, C++).
- :class:`JaxPeer`: JAX on the CPU in float64 (``jax_enable_x64``), the whole step under
  ``jax.jit``; :meth:`JaxPeer.scan` runs online SGD as one ``jax.lax.scan`` over pre-drawn samples.

:func:`torch_available` and :func:`jax_available` tell whether a peer can be used; the benchmark
prints "not installed" in its column and the tests skip. The peers read only the model's
*parameters* (``p, q, train_a, Gamma, lam, lam_W, bias, activation``); they never call mfpde's
kernels.
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


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except Exception:
        return False
    return True


def jax_available() -> bool:
    try:
        import jax  # noqa: F401
        import jax.numpy  # noqa: F401
    except Exception:
        return False
    return True


def peer_versions() -> dict:
    """``{"torch": version or None, "jax": version or None}``."""
    out = {}
    for name in ("torch", "jax"):
        try:
            out[name] = __import__(name).__version__
        except Exception:
            out[name] = None
    return out


# ---------------------------------------------------------------------------- backends
class _Ops:
    """The array library behind a peer: the module ``xp`` (``numpy``, ``torch`` or ``jax.numpy``,
    which share ``tanh, exp, zeros, ones, concatenate, @, .T``) plus the few functions whose names
    differ (``erf``, ``softplus``) and ``scalar`` (a float outside a traced function)."""

    def __init__(self, xp, erf, softplus, scalar=float):
        self.xp, self.erf, self.softplus, self.scalar = xp, erf, softplus, scalar

    def activation(self, name, P):
        """Return ``(sigma(P), sigma'(P))``, both of the shape of ``P``."""
        xp = self.xp
        if name == "identity":
            return P, xp.ones_like(P)
        if name == "tanh":
            S = xp.tanh(P)
            return S, 1.0 - S * S
        if name == "sigmoid":
            S = 0.5 * (1.0 + xp.tanh(0.5 * P))
            return S, S * (1.0 - S)
        if name == "erf":
            return self.erf(P), (2.0 / _SQRT_PI) * xp.exp(-P * P)
        if name == "softplus":
            return self.softplus(P), 0.5 * (1.0 + xp.tanh(0.5 * P))
        if name == "relu":
            return P * (P > 0), (P > 0) * xp.ones_like(P)
        raise ValueError(f"peer: activation {name!r} not implemented")


def _numpy_ops():
    from scipy.special import erf
    return _Ops(np, erf, lambda P: np.logaddexp(0.0, P))


def np_activation(name, P):
    """Return ``(sigma(P), sigma'(P))`` with plain NumPy."""
    return _numpy_ops().activation(name, P)


# ---------------------------------------------------------------------------- the algorithm
class _Peer:
    """The gradient pass and the Euler step, written once for every array library."""

    def __init__(self, model, ops, chunk_bytes=CHUNK_BYTES):
        self.m = _params(model)
        self.ops = ops
        self.chunk_bytes = int(chunk_bytes)

    def _prep_X(self, X):
        if self.m["bias"]:
            X = self.ops.xp.concatenate([X, self.ops.xp.ones_like(X[:, :1])], axis=1)
        return X

    def _split(self, theta):
        """``(A (N, p), U (N, d_in))``; ``A`` is ones for the fixed output."""
        pa = self.m["pa"]
        A = theta[:, :pa] if self.m["train_a"] else self.ops.xp.ones_like(theta[:, :1])
        return A, theta[:, pa:]

    def _chunk(self, n, N):
        return max(1, min(n, self.chunk_bytes // (8 * N)))

    def _gradient(self, theta, X, Y, W=None):
        """``(grad_theta (N, D), grad_W (p, q) or None, risk)`` with ``risk`` an array scalar of
        the library (this is the body traced by ``jax.jit`` and ``torch.compile``)."""
        m, xp = self.m, self.ops.xp
        X = self._prep_X(X)
        Y = Y.reshape(X.shape[0], -1)
        n, N = X.shape[0], theta.shape[0]
        A, U = self._split(theta)
        chunk = self._chunk(n, N)
        gA = xp.zeros_like(A)
        gU = xp.zeros_like(U)
        gW = xp.zeros_like(W) if m["has_W"] else None
        sq = 0.0
        for s in range(0, n, chunk):
            Xb, Yb = X[s:s + chunk], Y[s:s + chunk]
            S, Sp = self.ops.activation(m["activation"], Xb @ U.T)
            H = (S @ A) / N
            if m["has_W"]:
                Z = m["Gamma"] * (H @ W) - Yb
                G = (m["Gamma"] / n) * (Z @ W.T)
                gW += (m["Gamma"] / n) * (H.T @ Z)
            else:
                Z = H - Yb
                G = Z / n
            sq += (Z * Z).sum()
            gA += S.T @ G
            gU += (Sp * (G @ A.T)).T @ Xb
        gU = gU + m["lam"] * U
        grad = xp.concatenate([gA + m["lam"] * A, gU], axis=1) if m["train_a"] else gU
        if gW is not None:
            gW = gW + m["lam_W"] * W
        return grad, gW, sq / (2.0 * n)

    def gradient(self, theta, X, Y, W=None):
        """Return ``(grad_theta (N, D), grad_W (p, q) or None, risk)`` (arrays of the library,
        ``risk`` a float)."""
        g, gW, risk = self._gradient(theta, X, Y, W)
        return g, gW, self.ops.scalar(risk)

    def _advance(self, theta, X, Y, eps, W=None):
        """One noiseless Euler step ``theta - eps * grad``, ``W - eps * grad_W``; returns
        ``(theta, W)``. NumPy and PyTorch update ``theta`` in place (JAX arrays are immutable)."""
        g, gW, _ = self._gradient(theta, X, Y, W)
        theta -= eps * g
        if gW is not None:
            W = W - eps * gW
        return theta, W

    def advance(self, theta, X, Y, eps, W=None):
        """One noiseless step (compiled where the peer compiles); returns ``(theta, W)``."""
        return self._advance(theta, X, Y, eps, W)

    def step(self, theta, X, Y, eps, W=None):
        """One noiseless Euler step, ``theta`` in place; returns the new ``W`` (NC) or None."""
        return self.advance(theta, X, Y, eps, W)[1]

    def to_array(self, a):
        return a


class NumpyPeer(_Peer):
    """Plain NumPy implementation of the full-batch gradient and noiseless step."""

    name = "numpy"

    def __init__(self, model, chunk_bytes=CHUNK_BYTES):
        super().__init__(model, _numpy_ops(), chunk_bytes)

    def gradient(self, theta, X, Y, W=None):
        X = np.asarray(X, dtype=np.float64)
        return super().gradient(theta, X, np.asarray(Y, dtype=np.float64), W)


# ---------------------------------------------------------------------------- PyTorch
class TorchPeer(_Peer):
    """The same step in PyTorch (CPU, float64, manual gradient, chunked like the NumPy peer).

    ``threads`` defaults to Numba's thread count. Arrays are converted once with
    :meth:`to_torch`; :meth:`step` works on torch tensors in place. ``compile=True`` runs the whole
    step through ``torch.compile`` (the first call of each shape compiles; time it separately).
    """

    name = "torch"

    def __init__(self, model, threads=None, chunk_bytes=CHUNK_BYTES, compile=False):
        import torch
        if threads is None:
            import numba
            threads = numba.get_num_threads()
        torch.set_num_threads(int(threads))
        self.torch = torch
        super().__init__(model, _Ops(torch, torch.erf, torch.nn.functional.softplus,
                                     lambda r: float(r)), chunk_bytes)
        self.compiled = bool(compile)
        self._step_fn = torch.compile(self._advance, dynamic=False) if compile else self._advance
        if compile:
            self.name = "torch_compile"

    def to_torch(self, a):
        if a is None:
            return None
        return self.torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))

    to_array = to_torch

    def gradient(self, theta, X, Y, W=None):
        """Torch tensors in, ``(grad_theta, grad_W or None, risk)`` out (``risk`` a float)."""
        with self.torch.no_grad():
            return super().gradient(theta, X, Y, W)

    def advance(self, theta, X, Y, eps, W=None):
        with self.torch.no_grad():
            return self._step_fn(theta, X, Y, eps, W)

    def products(self, theta, X, Y):
        """Only the matrix products of :meth:`gradient` (same shapes and chunks, constant
        element-wise inputs): PyTorch's own BLAS floor for the step."""
        torch = self.torch
        with torch.no_grad():
            X = self._prep_X(X)
            n, N = X.shape[0], theta.shape[0]
            A, U = self._split(theta)
            chunk = self._chunk(n, N)
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


# ---------------------------------------------------------------------------- JAX
class JaxPeer(_Peer):
    """The same step in JAX (CPU, float64): :meth:`advance` is ``jax.jit`` of the whole step
    (gradient and update, the block loop unrolled at trace time), :meth:`scan` runs ``T`` online
    SGD steps as one ``jax.lax.scan``. Arrays are immutable: ``advance`` returns the new
    ``(theta, W)`` (device arrays; call ``block_until_ready`` before reading a clock)."""

    name = "jax"

    def __init__(self, model, chunk_bytes=CHUNK_BYTES):
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        from jax.scipy.special import erf
        self.jax, self.jnp = jax, jnp
        super().__init__(model, _Ops(jnp, erf, jax.nn.softplus, lambda r: float(r)),
                         chunk_bytes)
        self._jit_advance = jax.jit(self._advance)

        def scan(theta, Xs, Ys, eps, W):
            def body(state, xy):
                return self._advance(state[0], xy[0], xy[1], eps, state[1]), None
            return jax.lax.scan(body, (theta, W), (Xs, Ys))[0]
        self._jit_scan = jax.jit(scan)

    def to_array(self, a):
        return None if a is None else self.jnp.asarray(np.asarray(a, dtype=np.float64))

    def advance(self, theta, X, Y, eps, W=None):
        return self._jit_advance(theta, X, Y, eps, W)

    def step(self, theta, X, Y, eps, W=None):
        raise TypeError("JAX arrays are immutable: use JaxPeer.advance, which returns (theta, W)")

    def scan(self, theta, Xs, Ys, eps, W=None):
        """``T`` online SGD steps over pre-drawn samples ``Xs (T, b, d)``, ``Ys (T, b, q)``, as
        one ``jax.lax.scan`` of :meth:`advance`'s body; returns the final ``(theta, W)``."""
        return self._jit_scan(theta, Xs, Ys, eps, W)
