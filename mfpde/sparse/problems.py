r"""Sparse-recovery problems (theory/sparse.md §1, §4).

:class:`QuadraticProblem`
    Sparse linear regression / compressed sensing (``n < d``), project convention
    ``f(θ) = (1/(2n))||Xθ - y||²``, ``∇f = (1/n)Xᵀ(Xθ - y) = Hθ - b``, ``H = XᵀX/n``,
    ``b = Xᵀy/n``. ``H`` is formed once; Cholesky factors of ``H + δI`` and the Newton point
    ``θ_N = (H + δI)^{-1} b`` are computed once per damping and cached.
:class:`SmoothProblem`
    A general smooth loss from callables: ``loss``, ``grad`` and ``hess`` (or a Hessian-vector
    product ``hvp``, from which the Hessian is assembled column by column).
:class:`LogisticRegression`
    The bundled non-quadratic example: ``f(θ) = (1/n) Σ_i [log(1 + e^{x_iᵀθ}) - y_i x_iᵀθ]
    + (λ/2)||θ||²`` with labels ``y_i ∈ [0, 1]``; with soft labels ``y_i = s(x_iᵀθ*)``
    (``s`` the logistic function) the target is realisable: ``∇f(θ*) = 0`` when ``λ = 0``.

Instance generators: :func:`gaussian_design` (``X_ij ~ N(0, 1/n)``), :func:`gaussian_target`
(support uniform, non-zeros ``N(0, 1)``), :func:`digits_target` (scikit-learn 8×8 digit, pixels
below a threshold set to 0), :func:`image_target` (a row of a user-provided image array, e.g.
MNIST), :func:`uniform_init` (PyTorch linear-layer default ``U(-1/√d, 1/√d)``).

Arrays: ``X`` (n, d) with one sample per row, ``y`` (n,), ``θ`` (d,); all float64.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import scipy.linalg as sla

from .linalg import Factor, factor, symmetrize

__all__ = ["QuadraticProblem", "SmoothProblem", "LogisticRegression", "gaussian_design",
           "gaussian_target", "digits_target", "image_target", "uniform_init", "load_images",
           "relative_error"]


def _vec(name, v, d=None):
    v = np.ascontiguousarray(v, dtype=np.float64)
    if v.ndim != 1 or (d is not None and v.size != d):
        raise ValueError(f"{name} must have shape ({d if d is not None else 'd'},), got {v.shape}")
    return v


def relative_error(theta, theta_star) -> float:
    """``||θ - θ*|| / ||θ*||`` (``||θ - θ*||`` when ``θ* = 0``)."""
    nr = float(np.linalg.norm(theta_star))
    e = float(np.linalg.norm(np.asarray(theta) - theta_star))
    return e / nr if nr > 0 else e


class QuadraticProblem:
    """Least squares ``f(θ) = (1/(2n))||Xθ - y||²`` (sparse.md §1).

    Parameters
    ----------
    X : ndarray (n, d)
    y : ndarray (n,)
    theta_star : ndarray (d,), optional
        The target, for distances and support precision / recall.
    name : str
    """

    quadratic = True

    def __init__(self, X, y, theta_star=None, name="regression"):
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must have shape (n, d), got {X.shape}")
        n, d = X.shape
        self.X = X
        self.XT = np.ascontiguousarray(X.T)
        self.y = _vec("y", y, n)
        self.theta_star = None if theta_star is None else _vec("theta_star", theta_star, d)
        self.name = name
        #: ``H = XᵀX/n`` (d, d), exactly symmetric
        self.H = symmetrize(X.T @ X / n)
        #: ``b = Xᵀy/n`` (d,)
        self.b = self.XT @ self.y / n
        self._L = None
        self._factors: dict = {}
        self._newton: dict = {}
        self._inverse: dict = {}

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]

    def loss(self, theta) -> float:
        """``f(θ) = (1/(2n))||Xθ - y||²``."""
        r = self.X @ theta - self.y
        return 0.5 * float(r @ r) / self.n

    def grad(self, theta) -> np.ndarray:
        """``∇f(θ) = Hθ - b`` (d,)."""
        return self.H @ theta - self.b

    def hess(self, theta=None) -> np.ndarray:
        """``H = XᵀX/n`` (d, d) (independent of ``θ``)."""
        return self.H

    def hvp(self, theta, v) -> np.ndarray:
        return self.H @ v

    def sample_grads(self, theta) -> np.ndarray:
        """Per-sample gradients ``g_i = x_i (x_iᵀθ - y_i)`` (n, d) of ``f_i = ½(x_iᵀθ - y_i)²``
        (``f = mean_i f_i``), for the empirical Fisher."""
        r = self.X @ theta - self.y
        return self.X * r[:, None]

    def smoothness(self, theta=None) -> float:
        """``L = λ_max(H)``, an upper bound of every restricted smoothness constant ``L_s``."""
        if self._L is None:
            d = self.d
            self._L = float(sla.eigvalsh(self.H, subset_by_index=[d - 1, d - 1])[0])
        return self._L

    # ------------------------------------------------------------------ cached factors
    def factor(self, damping="auto") -> Factor:
        """Cholesky factor of ``H + δI`` (see :func:`mfpde.sparse.linalg.factor`), computed once."""
        key = str(damping)
        if key not in self._factors:
            self._factors[key] = factor(self.H, damping)
        return self._factors[key]

    def newton_point(self, damping="auto") -> np.ndarray:
        """``θ_N = (H + δI)^{-1} b`` (d,): with ``δ = 0`` the minimiser of ``f``."""
        key = str(damping)
        if key not in self._newton:
            self._newton[key] = self.factor(damping).solve(self.b)
        return self._newton[key]

    def inverse(self, damping="auto") -> np.ndarray:
        """``(H + δI)^{-1}`` (d, d) from the cached factor (greedy OBS needs it explicitly)."""
        key = str(damping)
        if key not in self._inverse:
            self._inverse[key] = self.factor(damping).inverse()
        return self._inverse[key]

    def oracle(self, support=None) -> np.ndarray:
        """Least squares on ``support`` (default: the support of ``θ*``), zero elsewhere (d,)."""
        if support is None:
            if self.theta_star is None:
                raise ValueError("no target: give the support")
            support = np.flatnonzero(self.theta_star)
        S = np.sort(np.asarray(support, dtype=np.int64))
        out = np.zeros(self.d)
        out[S] = np.linalg.lstsq(self.X[:, S], self.y, rcond=None)[0]
        return out


class SmoothProblem:
    """A smooth loss given by callables (sparse.md §1, non-quadratic ``f``).

    Parameters
    ----------
    d : int
    loss : callable ``θ (d,) -> float``
    grad : callable ``θ (d,) -> (d,)``
    hess : callable ``θ -> (d, d)``, optional
    hvp : callable ``(θ, v) -> (d,)``, optional
        Hessian-vector product; used to assemble the Hessian (``d`` products) when ``hess`` is
        not given. One of ``hess``, ``hvp`` is required.
    theta_star : ndarray (d,), optional
    sample_grads : callable ``θ -> (m, d)``, optional
        Per-sample gradients for the empirical Fisher (``curvature = "fisher"``).
    smoothness : float or callable ``θ -> float``, optional
        ``L`` for the IHT steps ``1/L``, ``2/(3L)``; default ``λ_max(∇²f(θ))`` at the point asked.
    n : int, optional
        Number of samples (for the ``2/n`` step scalings).
    """

    quadratic = False

    def __init__(self, d: int, loss: Callable, grad: Callable, hess: Callable | None = None,
                 hvp: Callable | None = None, theta_star=None, sample_grads: Callable | None = None,
                 smoothness=None, n: int | None = None, name: str = "smooth"):
        if hess is None and hvp is None:
            raise ValueError("give the Hessian (hess=...) or a Hessian-vector product (hvp=...)")
        self._d = int(d)
        self._loss, self._grad, self._hess, self._hvp = loss, grad, hess, hvp
        self._sample_grads = sample_grads
        self._smooth = smoothness
        self.theta_star = None if theta_star is None else _vec("theta_star", theta_star, self._d)
        self._n = n
        self.name = name

    @property
    def d(self) -> int:
        return self._d

    @property
    def n(self) -> int:
        if self._n is None:
            raise ValueError(f"problem {self.name!r} has no sample count n (needed by the 2/n steps)")
        return int(self._n)

    def loss(self, theta) -> float:
        return float(self._loss(theta))

    def grad(self, theta) -> np.ndarray:
        return np.asarray(self._grad(theta), dtype=np.float64)

    def hess(self, theta) -> np.ndarray:
        """``∇²f(θ)`` (d, d), symmetrised; assembled from ``d`` Hessian-vector products when only
        ``hvp`` is given."""
        if self._hess is not None:
            return symmetrize(self._hess(theta))
        d = self._d
        H = np.empty((d, d))
        e = np.zeros(d)
        for j in range(d):
            e[j] = 1.0
            H[:, j] = self._hvp(theta, e)
            e[j] = 0.0
        return symmetrize(H)

    def hvp(self, theta, v) -> np.ndarray:
        if self._hvp is not None:
            return np.asarray(self._hvp(theta, v), dtype=np.float64)
        return self.hess(theta) @ v

    def sample_grads(self, theta) -> np.ndarray:
        if self._sample_grads is None:
            raise ValueError(f"problem {self.name!r} has no per-sample gradients (needed by the "
                             f"empirical Fisher)")
        return np.asarray(self._sample_grads(theta), dtype=np.float64)

    def smoothness(self, theta) -> float:
        if self._smooth is None:
            return float(np.linalg.eigvalsh(self.hess(theta))[-1])
        return float(self._smooth(theta) if callable(self._smooth) else self._smooth)


def _sigmoid(z):
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


class LogisticRegression(SmoothProblem):
    r"""Logistic loss ``f(θ) = (1/n) Σ_i [log(1 + e^{z_i}) - y_i z_i] + (λ/2)||θ||²``, ``z = Xθ``.

    ``∇f = Xᵀ(s(z) - y)/n + λθ``, ``∇²f = Xᵀ diag(s(z)(1 - s(z))) X / n + λI`` (``s`` the
    logistic function). The Hessian is Lipschitz with constant
    ``M = max|s''| · max_i ||x_i|| · λ_max(XᵀX/n)``, ``max|s''| = 1/(6√3)``.

    Parameters
    ----------
    X : ndarray (n, d)
    y : ndarray (n,) in [0, 1] (hard 0/1 labels or probabilities)
    theta_star : ndarray (d,), optional
    lam : float, ridge ``λ >= 0``
    """

    #: ``max_z |s''(z)|`` of the logistic function ``s``
    S2_MAX = 1.0 / (6.0 * math.sqrt(3.0))

    def __init__(self, X, y, theta_star=None, lam: float = 0.0, name="logistic"):
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must have shape (n, d), got {X.shape}")
        n, d = X.shape
        y = _vec("y", y, n)
        if np.any(y < 0) or np.any(y > 1):
            raise ValueError("logistic labels must lie in [0, 1]")
        if not (math.isfinite(lam) and lam >= 0):
            raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
        self.X, self.y, self.lam = X, y, float(lam)
        self._G = symmetrize(X.T @ X / n)
        super().__init__(d, self._f, self._g, hess=self._h, theta_star=theta_star,
                         sample_grads=self._sg, n=n, name=name)
        self._L = None

    @classmethod
    def realizable(cls, X, theta_star, lam: float = 0.0):
        """Soft labels ``y_i = s(x_iᵀθ*)``: ``∇f(θ*) = 0`` for ``λ = 0``."""
        X = np.asarray(X, dtype=np.float64)
        return cls(X, _sigmoid(X @ np.asarray(theta_star, dtype=np.float64)), theta_star, lam)

    def _f(self, theta):
        z = self.X @ theta
        return float(np.mean(np.logaddexp(0.0, z) - self.y * z)) + 0.5 * self.lam * float(theta @ theta)

    def _g(self, theta):
        r = _sigmoid(self.X @ theta) - self.y
        return self.X.T @ r / self.X.shape[0] + self.lam * theta

    def _h(self, theta):
        s = _sigmoid(self.X @ theta)
        w = s * (1.0 - s)
        H = (self.X.T * w) @ self.X / self.X.shape[0]
        if self.lam:
            H[np.diag_indices_from(H)] += self.lam
        return H

    def _sg(self, theta):
        r = _sigmoid(self.X @ theta) - self.y
        G = self.X * r[:, None]
        return G + self.lam * theta[None, :] if self.lam else G

    def smoothness(self, theta=None) -> float:
        """Global bound ``L = λ_max(XᵀX/n)/4 + λ``."""
        if self._L is None:
            self._L = float(np.linalg.eigvalsh(self._G)[-1]) / 4.0 + self.lam
        return self._L

    def hessian_lipschitz(self) -> float:
        """``M = (1/(6√3)) · max_i ||x_i|| · λ_max(XᵀX/n)``: ``||∇²f(θ) - ∇²f(θ')|| <= M||θ - θ'||``."""
        return (self.S2_MAX * float(np.max(np.linalg.norm(self.X, axis=1)))
                * float(np.linalg.eigvalsh(self._G)[-1]))


# -------------------------------------------------------------------------------- instances
def gaussian_design(n: int, d: int, rng: np.random.Generator, variance: str = "1/n") -> np.ndarray:
    """``X`` (n, d) with i.i.d. ``N(0, v)`` entries, ``v`` = ``1/n`` (sparse.md §4), ``1/d`` or ``1``."""
    scale = {"1/n": 1.0 / math.sqrt(n), "1/d": 1.0 / math.sqrt(d), "1": 1.0}[variance]
    return rng.standard_normal((n, d)) * scale


def gaussian_target(d: int, k_star: int, rng: np.random.Generator) -> np.ndarray:
    """``θ*`` (d,): support of size ``k*`` uniform at random, non-zeros i.i.d. ``N(0, 1)``
    (drawn in this order)."""
    theta = np.zeros(d)
    S = rng.choice(d, size=k_star, replace=False)
    theta[S] = rng.standard_normal(k_star)
    return theta


_DIGITS = None


def digits_target(rng: np.random.Generator, threshold: float = 12.0) -> np.ndarray:
    """``θ*`` (64,): one scikit-learn 8×8 digit (values 0–16) drawn uniformly, pixels below
    ``threshold`` set to 0 (sparse.md §4, offline analogue of Setup B)."""
    global _DIGITS
    if _DIGITS is None:
        try:
            from sklearn.datasets import load_digits
        except ImportError as exc:  # pragma: no cover - the data extra is installed in tests
            raise ImportError("the digits prior needs scikit-learn: pip install mfpde[data]") from exc
        _DIGITS = np.asarray(load_digits().data, dtype=np.float64)
    img = _DIGITS[int(rng.integers(_DIGITS.shape[0]))].copy()
    img[img < threshold] = 0.0
    return img


def load_images(path) -> np.ndarray:
    """Images for :func:`image_target`: a ``.npy`` file or the first array of a ``.npz`` file,
    reshaped to (m, d) float64 (e.g. MNIST training images, raw 0–255, ``d = 784``)."""
    arr = np.load(path, allow_pickle=False)
    if isinstance(arr, np.lib.npyio.NpzFile):
        with arr:
            arr = arr[arr.files[0]]
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim < 2:
        raise ValueError(f"{path}: expected an array of images (m, ...), got shape {arr.shape}")
    return arr.reshape(arr.shape[0], -1)


def image_target(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``θ*`` = one row of ``images`` (m, d) drawn uniformly (Setup B: raw pixel values)."""
    return np.array(images[int(rng.integers(images.shape[0]))], dtype=np.float64)


def uniform_init(d: int, rng: np.random.Generator) -> np.ndarray:
    """``θ_0`` (d,) with i.i.d. ``U(-1/√d, 1/√d)`` entries (PyTorch linear-layer default)."""
    a = 1.0 / math.sqrt(d)
    return rng.uniform(-a, a, size=d)
