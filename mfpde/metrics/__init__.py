"""Metrics of mean-field particle systems (theory/metrics.md).

* :mod:`mfpde.metrics.collapse` -- neural collapse (NC1 in the Wu--Mondelli and the Papyan
  conventions, NC2--NC4), balancedness, the Lemma 4.5 residual, singular values, the synthetic
  NC oracle (metrics.md §1, §2).
* :mod:`mfpde.metrics.ot` -- Wasserstein distances (exact, Sinkhorn, sliced, 1-D, Gaussian);
  every function returns a distance, not its square, unless named ``*_squared``
  (metrics.md §6).
* :mod:`mfpde.metrics.entropy` -- kNN entropy estimate, Gaussian entropy, KDE Fisher
  information (metrics.md §4, §5).

Row layout everywhere: features ``H`` ``(n, p)``, labels ``(n,)``, particles ``theta`` ``(N, D)``.
"""

from .collapse import (
    balancedness,
    class_means,
    lemma45_residual,
    nc1,
    nc1_loop,
    nc1_papyan,
    nc1_papyan_population,
    nc1_population,
    nc2,
    nc3,
    nc4,
    nc_oracle,
    singular_values,
)
from .entropy import fisher_information_kde, gaussian_entropy, knn_entropy, silverman_bandwidth
# ``ot`` imports POT (and through it possibly torch or scikit-learn): seconds of import time that
# the particle drivers, which only need collapse and entropy, should not pay. Its names are
# loaded on first use.
_OT_NAMES = ("W2Result", "bures_w2", "empirical_gaussian", "sinkhorn_divergence", "sinkhorn_divergence_squared", "sinkhorn_w2", "sliced_w2", "sphere_directions", "w1_exact", "w2", "w2_1d", "w2_cloud_gaussian", "w2_exact")


def __getattr__(name):
    if name in _OT_NAMES or name == "ot":
        import importlib
        ot = importlib.import_module(f"{__name__}.ot")
        return ot if name == "ot" else getattr(ot, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    # collapse
    "nc1",
    "nc1_loop",
    "nc1_papyan",
    "nc2",
    "nc3",
    "nc4",
    "class_means",
    "balancedness",
    "lemma45_residual",
    "singular_values",
    "nc_oracle",
    "nc1_population",
    "nc1_papyan_population",
    # ot
    "W2Result",
    "w2",
    "w2_exact",
    "w1_exact",
    "sinkhorn_w2",
    "sinkhorn_divergence",
    "sinkhorn_divergence_squared",
    "sliced_w2",
    "sphere_directions",
    "w2_1d",
    "bures_w2",
    "w2_cloud_gaussian",
    "empirical_gaussian",
    # entropy
    "knn_entropy",
    "gaussian_entropy",
    "fisher_information_kde",
    "silverman_bandwidth",
]
