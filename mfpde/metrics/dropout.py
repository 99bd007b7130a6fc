r"""Dropout stability of mean-field networks (theory/metrics.md §7, validation.md §V10).

**Sub-network.** Keeping the neurons ``S`` (``|S| = M``) of a width-``N`` network gives the
width-``M`` network of the same kind, with the mean-field normalisation ``1/M`` (the rescaling by
``N/M`` is automatic in the mean-field parameterisation):

.. math::

    f_M(x;\theta_S) = \frac1M\sum_{i\in S}\sigma_*(x;\theta_i).

Two-layer: :math:`\sigma_*(x;\theta) = a\,\sigma(u^\top\tilde x)`. NC model: the kept first-layer
neurons give :math:`h_M`, ``W`` is unchanged, :math:`\sigma_*(x;\theta) = \Gamma W^\top a\,
\sigma(u^\top x)`. Pham–Nguyen: keep ``M_1 <= n_1`` first-layer and ``M_2 <= n_2`` second-layer
units, normalisations ``1/M_1`` and ``1/M_2`` (:meth:`Network.sub`).

**Exact expected gap** (metrics.md §7). For ``S`` uniform without replacement and the loss
:math:`L = \frac1{2n}\sum_x\|y - f(x)\|^2` of the project convention,

.. math::

    E_S L_M(\theta_S) - L_N(\theta) = \tfrac12\Big(\frac1M - \frac1N\Big) E_x s_x^2,\qquad
    s_x^2 = \frac1{N-1}\sum_i\|\sigma_*(x;\theta_i) - f_N(x)\|^2 ,

because :math:`f_S - f_N` has mean 0 and covariance :math:`(1/M - 1/N)\,\mathrm{Cov}_i` (sampling
without replacement). Writing the gap of one subset as

.. math::

    L_M(\theta_S) - L_N = \underbrace{-\tfrac1n\textstyle\sum_x r_x^\top(f_S - f_N)(x)}_{\text{linear}}
    + \underbrace{\tfrac1{2n}\textstyle\sum_x\|f_S(x) - f_N(x)\|^2}_{\text{quadratic}},
    \qquad r_x = y_x - f_N(x),

the linear term has mean 0 and the exact standard deviation
:math:`\sqrt{1/M - 1/N}\,\mathrm{sd}_i(\ell_i)`, :math:`\ell_i = \frac1n\sum_x r_x^\top
\sigma_*(x;\theta_i)` (sample s.d. with ``N - 1``), reported as ``linear_sd``: single subsets
deviate by :math:`O(M^{-1/2})` when it dominates and by :math:`O(1/M)` (the quadratic term) when
the network is close to a stationary point (for the two-layer network :math:`\ell_i =
-a_i^\top\nabla_a\Psi(\theta_i)` at ``lam = 0``, so the linear term vanishes at stationarity).

Pham–Nguyen: with all first-layer units kept (``M_1 = n_1``) and ``phi3 = identity`` the output
is the average of the per-unit outputs :math:`w_3(j_2)\varphi_2(H_2(x,j_2))` and the identity holds
with these in place of :math:`\sigma_*`; otherwise there is no closed form and ``exact`` is NaN.

**Vectorised Monte Carlo** (:func:`dropout_gaps`). The per-neuron outputs are computed once as a
matrix ``C`` of shape ``(n q, N)`` (:func:`neuron_outputs`); ``K`` random subsets of size ``M`` are
a ``(N, K)`` matrix with entries ``1/M`` on the kept neurons, and all sub-network outputs are one
BLAS product ``C @ mask`` (``O(n q N K)`` flops, no forward pass per subset). 200 subsets at each
of 10 values of ``M`` on a width-4096 two-layer network on 1000 inputs take 1.6–1.8 s on two
shared cores (docs/dropout-connectivity.md). Pham–Nguyen sub-networks with ``M_1 < n_1`` are evaluated
one subset at a time on the kept sub-block (``O(n M_1 M_2)`` each).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..activations import evaluate
from ..models.three_layer_pn import PNThreeLayer, PNWeights

__all__ = ["Network", "DropoutResult", "neuron_outputs", "expected_gap", "gap_of_subset",
           "dropout_gaps", "random_subsets", "default_Ms", "DEFAULT_QUANTILES"]

#: quantile levels reported by :func:`dropout_gaps`
DEFAULT_QUANTILES = (0.1, 0.5, 0.9)

#: bytes of one block of sub-network outputs ``(n q, K_block)`` in :func:`dropout_gaps`
_BLOCK_BYTES = 1 << 26


# ============================================================================ the network
@dataclass
class Network:
    """A network of any kind: its model and parameters.

    Parameters
    ----------
    model : ReadoutModel (``TwoLayer``, ``NCThreeLayer``) or PNThreeLayer
    params : ndarray (N, D) or PNWeights
        Particles ``theta`` (read-out models) or the Pham–Nguyen weights.
    W : ndarray (p, q) or None
        Last layer of the NC model (kept unchanged by sub-networks and paths).
    """

    model: Any
    params: Any
    W: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.is_pn:
            if not isinstance(self.params, PNWeights):
                raise ValueError("a Pham–Nguyen network needs PNWeights(w1, w2, w3) as params")
            self.params = self.model.check_weights(self.params)
            if self.W is not None:
                raise ValueError("the Pham–Nguyen network has no W")
        else:
            self.params = np.ascontiguousarray(self.model.check_theta(self.params))
            self.W = self.model.check_W(self.W)

    @property
    def is_pn(self) -> bool:
        return isinstance(self.model, PNThreeLayer)

    @property
    def kind(self) -> str:
        """``"two_layer"``, ``"nc"`` or ``"pham_nguyen"``."""
        return str(self.model.kind)

    @property
    def width(self):
        """``N`` (read-out models) or ``(n1, n2)`` (Pham–Nguyen)."""
        if self.is_pn:
            return (self.params.n1, self.params.n2)
        return int(self.params.shape[0])

    @property
    def q(self) -> int:
        return 1 if self.is_pn else int(self.model.q)

    def forward(self, X) -> np.ndarray:
        """Predictions, shape (n, q)."""
        if self.is_pn:
            return self.model.forward(self.params, X)[:, None]
        return self.model.forward(self.params, X, self.W)

    def risk(self, X, Y) -> float:
        """:math:`\\frac1{2n}\\sum_i\\|y_i - f(x_i)\\|^2` (README convention 1)."""
        if self.is_pn:
            return float(self.model.risk(self.params, X, Y))
        return float(self.model.risk(self.params, X, Y, self.W))

    def sub(self, keep) -> "Network":
        """The sub-network of the kept neurons (mean-field normalisation ``1/M``).

        ``keep`` is an index array (read-out models: the kept particles; Pham–Nguyen: the kept
        second-layer units, all first-layer units kept) or, for Pham–Nguyen, a pair
        ``(keep1, keep2)`` of first- and second-layer indices.
        """
        if self.is_pn:
            w = self.params
            if isinstance(keep, tuple) and len(keep) == 2:
                k1, k2 = (_index(k, n, "keep") for k, n in zip(keep, (w.n1, w.n2)))
            else:
                k1, k2 = np.arange(w.n1), _index(keep, w.n2, "keep")
            return Network(self.model, PNWeights(w.w1[k1].copy(), w.w2[np.ix_(k1, k2)].copy(),
                                                 w.w3[k2].copy()))
        k = _index(keep, self.width, "keep")
        return Network(self.model, self.params[k].copy(), None if self.W is None else self.W.copy())


def _index(keep, N, name) -> np.ndarray:
    k = np.asarray(keep)
    if k.dtype == bool:
        if k.shape != (N,):
            raise ValueError(f"{name}: a boolean mask must have shape ({N},), got {k.shape}")
        k = np.flatnonzero(k)
    k = k.astype(np.int64, copy=False).ravel()
    if k.size < 1 or k.min() < 0 or k.max() >= N or np.unique(k).size != k.size:
        raise ValueError(f"{name}: expected 1 to {N} distinct indices in [0, {N}), got "
                         f"{k.size} indices")
    return k


def _phi3_identity(model) -> bool:
    return getattr(model, "phi3", "identity") == "identity"


# ============================================================================ per-neuron outputs
def neuron_outputs(net: Network, X) -> np.ndarray:
    r"""Per-neuron outputs as a matrix ``C`` of shape ``(n q, N)``: row ``x q + k``, column ``i``
    is the ``k``-th output coordinate of :math:`\sigma_*(x;\theta_i)`, so that
    :math:`f_N(x)_k = \frac1N\sum_i C_{xq+k,i}` and a sub-network's output is the mean over its
    columns.

    Two-layer: :math:`a_i\sigma(u_i^\top\tilde x)`; NC: :math:`\Gamma W^\top a_i\sigma(u_i^\top x)`;
    Pham–Nguyen (``q = 1``, the second-layer units, all first-layer units kept):
    :math:`w_3(j_2)\varphi_2(H_2(x, j_2))`, whose mean is :math:`H_3(x)` (the prediction when
    ``phi3`` is the identity).
    """
    if net.is_pn:
        m, w = net.model, net.params
        X = m.prepare_X(X)
        P1 = evaluate(m.phi1, X @ w.w1.T)
        H2 = P1 @ w.w2 / w.n1
        return evaluate(m.phi2, H2) * w.w3[None, :]
    model = net.model
    A, U = model.split(net.params)
    Xa = model.prepare_X(X)
    S = evaluate(model.activation, Xa @ U.T)                     # (n, N)
    B = A if net.W is None else model.Gamma * (A @ net.W)         # (N, q)
    if B.shape[1] == 1:
        return S * B[:, 0][None, :]
    n, N = S.shape
    return np.ascontiguousarray((S[:, None, :] * B.T[None, :, :]).reshape(n * B.shape[1], N))


def _targets(net: Network, X, Y) -> np.ndarray:
    """Targets flattened in the row order of :func:`neuron_outputs`, shape (n q,)."""
    if net.is_pn:
        Xp = net.model.prepare_X(X)
        return net.model.prepare_Y(Y, Xp.shape[0]).astype(np.float64)
    n = np.asarray(X).shape[0]
    return net.model.prepare_Y(Y, n).reshape(-1)


# ============================================================================ exact identity
def expected_gap(net: Network, X, Y, M) -> float:
    r"""Exact :math:`E_S L_M(\theta_S) - L_N = \frac12(\frac1M - \frac1N)E_x s_x^2` over uniform
    subsets of size ``M`` without replacement (module docstring).

    Pham–Nguyen: ``M`` is the number of kept second-layer units (all first-layer units kept) or a
    pair ``(M1, M2)``; the identity needs ``M1 = n1`` and ``phi3 = identity``, else NaN.
    """
    C = neuron_outputs(net, X)
    return _exact(net, _s2(C), M)


def _s2(C: np.ndarray) -> float:
    """:math:`E_x s_x^2` from ``C`` (n q, N) (sum over output coordinates, mean over x)."""
    N = C.shape[1]
    if N < 2:
        return 0.0
    v = C.var(axis=1, ddof=1)
    n_rows = C.shape[0]
    return float(v.sum()) / n_rows


def _exact(net: Network, s2_rows: float, M) -> float:
    """``s2_rows`` is the mean over rows (x, k) of the column variance: ``q`` times it is
    ``E_x s_x^2``."""
    q = net.q
    Es2 = q * s2_rows
    if net.is_pn:
        n1, n2 = net.width
        M1, M2 = (M if isinstance(M, tuple) else (n1, M))
        if M1 != n1 or not _phi3_identity(net.model):
            return math.nan
        return 0.5 * (1.0 / M2 - 1.0 / n2) * Es2
    N = net.width
    return 0.5 * (1.0 / M - 1.0 / N) * Es2


def gap_of_subset(net: Network, X, Y, keep) -> float:
    """:math:`L_M(\\theta_S) - L_N(\\theta)` for one subset (forward pass of the sub-network)."""
    return net.sub(keep).risk(X, Y) - net.risk(X, Y)


# ============================================================================ Monte Carlo
def random_subsets(N: int, M: int, K: int, rng: np.random.Generator) -> np.ndarray:
    """``K`` independent uniform subsets of size ``M`` of ``range(N)`` (without replacement
    within a subset), sorted, shape ``(K, M)``."""
    if not (1 <= M <= N):
        raise ValueError(f"subset size M must be in [1, N = {N}], got {M}")
    if M == N:
        return np.tile(np.arange(N, dtype=np.int64), (K, 1))
    keys = rng.random((K, N))
    idx = np.argpartition(keys, M - 1, axis=1)[:, :M]
    return np.sort(idx, axis=1).astype(np.int64)


@dataclass
class DropoutResult:
    """Output of :func:`dropout_gaps`.

    Attributes
    ----------
    M : ndarray (n_M,) int, or (n_M, 2) for Pham–Nguyen (``M1, M2``)
    width : int or (n1, n2)
    kind : str
    loss_N : float
        :math:`L_N` of the whole network.
    gaps : ndarray (n_M, K)
        :math:`L_M(\\theta_S) - L_N` of every sampled subset.
    mean, se : ndarray (n_M,)
        Monte Carlo mean over subsets and its standard error (sample s.d. / sqrt(K)).
    exact : ndarray (n_M,)
        The identity :math:`\\frac12(1/M - 1/N)E_x s_x^2` (NaN where it does not apply).
    linear_sd : ndarray (n_M,)
        Exact s.d. over subsets of the linear term of the gap (module docstring; NaN where the
        identity does not apply).
    quantile_levels : tuple; quantiles : ndarray (n_M, n_q)
    worst : ndarray (n_M,)
        Largest sampled gap; ``worst_subsets[j]`` the subset realising it (index array, or a
        pair of arrays for Pham–Nguyen).
    s2 : float
        :math:`E_x s_x^2` (NaN where not applicable).
    n_subsets, seed, seconds
    """

    M: np.ndarray
    width: Any
    kind: str
    loss_N: float
    gaps: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    exact: np.ndarray
    linear_sd: np.ndarray
    quantile_levels: tuple
    quantiles: np.ndarray
    worst: np.ndarray
    worst_subsets: list
    s2: float
    n_subsets: int
    seed: int
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)

    @property
    def z(self) -> np.ndarray:
        """``(mean - exact)/se`` per ``M`` (NaN where not applicable or ``se = 0``)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.se > 0, (self.mean - self.exact) / self.se, np.nan)

    def spread(self, lo: float = 0.1, hi: float = 0.9) -> np.ndarray:
        """Quantile spread ``q_hi - q_lo`` of the gap per ``M`` (levels must be reported)."""
        levels = list(self.quantile_levels)
        return self.quantiles[:, levels.index(hi)] - self.quantiles[:, levels.index(lo)]


def _check_Ms(net: Network, Ms):
    if net.is_pn:
        n1, n2 = net.width
        out = []
        for m in Ms:
            m1, m2 = (int(m[0]), int(m[1])) if np.ndim(m) == 1 else (n1, int(m))
            if not (1 <= m1 <= n1 and 1 <= m2 <= n2):
                raise ValueError(f"sub-network size ({m1}, {m2}) must fit in the widths "
                                 f"({n1}, {n2})")
            out.append((m1, m2))
        return np.array(out, dtype=np.int64).reshape(-1, 2)
    N = net.width
    out = np.array([int(m) for m in Ms], dtype=np.int64)
    if out.size == 0 or out.min() < 1 or out.max() > N:
        raise ValueError(f"sub-network sizes M must be integers in [1, N = {N}], got {list(Ms)}")
    return out


def default_Ms(width, n_values: int = 10) -> list:
    """Default sub-network sizes: about geometric from ``min(16, N/8)`` (at least 2) up to
    ``N/2``, at most ``n_values`` of them (powers of two from 16 when ``N`` is a power of two).
    Pham–Nguyen ``(n1, n2)``: the same sizes for the second layer with all first-layer units
    kept, ``(n1, M2)`` (where the exact identity applies)."""
    if isinstance(width, tuple):
        n1, n2 = width
        return [(int(n1), m) for m in default_Ms(int(n2), n_values)]
    N = int(width)
    top = max(1, N // 2)
    lo = max(2, min(16, N // 8))
    if top <= lo:
        return [top]
    k = min(n_values, int(math.floor(math.log2(top / lo) + 1e-9)) + 1)
    Ms = np.unique(np.round(np.geomspace(lo, top, max(k, 2))).astype(int))
    return [int(m) for m in Ms]


def dropout_gaps(net: Network, X, Y, Ms: Sequence | None = None, *, n_subsets: int = 200,
                 seed: int = 0, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> DropoutResult:
    """Monte Carlo dropout gaps over ``n_subsets`` uniform random subsets per size ``M``, with the
    exact identity next to them (module docstring).

    Parameters
    ----------
    net : Network
    X : ndarray (n, d); Y : ndarray (n, q)
        The data the loss is evaluated on.
    Ms : sequence of int (Pham–Nguyen: int ``M2`` or pairs ``(M1, M2)``), optional
        Sub-network sizes; default :func:`default_Ms`.
    n_subsets : int
        Subsets per ``M`` (``K``).
    seed : int
        Seed of the subset draws (``numpy`` PCG64 via ``SeedSequence([seed, 13])``).
    quantiles : sequence of float in [0, 1]

    Returns
    -------
    DropoutResult
    """
    t0 = time.perf_counter()
    if Ms is None:
        Ms = default_Ms(net.width)
    Ms = _check_Ms(net, Ms)
    K = int(n_subsets)
    if K < 2:
        raise ValueError(f"n_subsets must be an integer >= 2, got {n_subsets!r}")
    qs = tuple(float(v) for v in quantiles)
    if not all(0.0 <= v <= 1.0 for v in qs):
        raise ValueError(f"quantiles must be in [0, 1], got {quantiles!r}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), 13])))
    y = _targets(net, X, Y)
    C = neuron_outputs(net, X)                       # (n q, N) read-out; (n, n2) PN
    n_rows, Ncols = C.shape
    fN = C.mean(axis=1)
    pn_id = net.is_pn and _phi3_identity(net.model)
    loss_N = net.risk(X, Y)
    s2_rows = _s2(C)
    R = y - (fN if (not net.is_pn or pn_id) else net.forward(X)[:, 0])
    n_x = n_rows // net.q
    ell = (R @ C) / n_x                              # (N,) linear coefficients
    var_ell = float(ell.var(ddof=1)) if Ncols > 1 else 0.0
    nM = Ms.shape[0]
    gaps = np.empty((nM, K))
    worst_sub = []
    exact = np.full(nM, np.nan)
    lin_sd = np.full(nM, np.nan)
    for j, m in enumerate(Ms):
        if net.is_pn:
            m1, m2 = int(m[0]), int(m[1])
            n1, n2 = net.width
            if m1 == n1 and pn_id:
                sub2 = random_subsets(n2, m2, K, rng)
                gaps[j] = _mask_gaps(C, fN, R, sub2, m2, n_x)
                subs = [(np.arange(n1), s) for s in sub2]
            else:
                sub1 = random_subsets(n1, m1, K, rng)
                sub2 = random_subsets(n2, m2, K, rng)
                subs = list(zip(sub1, sub2))
                gaps[j] = [net.sub(s).risk(X, Y) - loss_N for s in subs]
            exact[j] = _exact(net, s2_rows, (m1, m2))
            if np.isfinite(exact[j]):
                lin_sd[j] = math.sqrt(max(0.0, (1.0 / m2 - 1.0 / n2) * var_ell))
        else:
            m = int(m)
            sub = random_subsets(Ncols, m, K, rng)
            gaps[j] = _mask_gaps(C, fN, R, sub, m, n_x)
            subs = list(sub)
            exact[j] = _exact(net, s2_rows, m)
            lin_sd[j] = math.sqrt(max(0.0, (1.0 / m - 1.0 / Ncols) * var_ell))
        worst_sub.append(subs[int(np.argmax(gaps[j]))])
    mean = gaps.mean(axis=1)
    se = gaps.std(axis=1, ddof=1) / math.sqrt(K)
    quant = np.quantile(gaps, qs, axis=1).T if qs else np.zeros((nM, 0))
    s2 = net.q * s2_rows if (not net.is_pn or pn_id) else math.nan
    return DropoutResult(M=Ms if net.is_pn else Ms.astype(np.int64), width=net.width,
                         kind=net.kind, loss_N=float(loss_N), gaps=gaps, mean=mean, se=se,
                         exact=exact, linear_sd=lin_sd, quantile_levels=qs, quantiles=quant,
                         worst=gaps.max(axis=1), worst_subsets=worst_sub, s2=float(s2),
                         n_subsets=K, seed=int(seed), seconds=time.perf_counter() - t0)


def _mask_gaps(C, fN, R, subsets, M, n_x) -> np.ndarray:
    """Gaps of all ``subsets`` (K, M) from the per-neuron outputs ``C`` (rows, N): the
    sub-network outputs are ``C @ mask`` with ``mask`` (N, K) holding ``1/M`` on the kept
    neurons; ``gap = (1/(2 n_x)) sum_rows (D^2 - 2 R D)`` with ``D = f_S - f_N`` and
    ``R = y - f_N``."""
    rows, N = C.shape
    K = subsets.shape[0]
    out = np.empty(K)
    blk = max(1, min(K, _BLOCK_BYTES // (8 * max(rows, N))))
    for s in range(0, K, blk):
        e = min(K, s + blk)
        mask = np.zeros((N, e - s))
        mask[subsets[s:e], np.arange(e - s)[:, None]] = 1.0 / M
        D = C @ mask
        D -= fN[:, None]
        out[s:e] = np.einsum("rk,rk->k", D, D - 2.0 * R[:, None]) / (2.0 * n_x)
    return out
