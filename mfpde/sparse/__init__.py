r"""Sparse recovery with second-order information: k-IHT and the iterative optimal brain surgeon.

Theory: theory/sparse.md (Wu, Modoranu, Safaryan, Kuznedelev, Alistarh, NeurIPS 2024). User guide:
docs/sparse.md.

Problems (:mod:`~mfpde.sparse.problems`)
    :class:`QuadraticProblem` (sparse linear regression, compressed sensing),
    :class:`SmoothProblem` (loss, gradient and Hessian or Hessian-vector callables),
    :class:`LogisticRegression` (the bundled non-quadratic example), instance generators.
Algorithms (:mod:`~mfpde.sparse.driver`, :mod:`~mfpde.sparse.linalg`)
    :class:`SparseDriver` runs ``iht``, ``topk_iobs``, ``iobs_exact``, ``topk_obs``,
    ``greedy_obs``, ``obd`` with Hessian or empirical-Fisher (WoodFisher) curvature; it implements
    the driver protocol of :mod:`mfpde.engine.protocol`. The OBS formulas (projection, saliency,
    greedy OBC, OBD, Woodbury inverse, exact support enumeration) are functions of
    :mod:`~mfpde.sparse.linalg`.
Experiments (:mod:`~mfpde.sparse.experiment`, :mod:`~mfpde.sparse.results`)
    :func:`parse_spec` / :func:`load_spec` (``[sparse]`` TOML table), :func:`run_experiment`,
    :func:`write_results` / :func:`read_results` (HDF5), :func:`plot_results`. Command line:
    ``mfpde sparse CONFIG.toml -o OUT.h5``.
Pruning of mean-field networks (:mod:`~mfpde.sparse.prune`, sparse.md §5)
    neuron pruning as group-sparse regression on the output weights, first-layer unstructured
    pruning with layer-wise curvature, the prune → mean-field SGD → re-prune iteration, dropout
    losses, all on a model + particles or on a stored run file.

Example (Setup A of sparse.md §4)::

    from mfpde.sparse import parse_spec, run_experiment
    res = run_experiment(parse_spec({"sparse": {"loss": "mse"}}))
    res.summary()["topk_iobs"]["dist_mean"]        # ~0.05 (paper: 0.050 ± 0.007)
"""
from __future__ import annotations

from .driver import METHODS, SECOND_ORDER, SparseDivergence, SparseDriver, resolve_eta
from .experiment import (PAPER_SETUP_A, SparseSpec, load_spec, make_instance, parse_spec,
                         run_experiment, spec_to_toml)
from .linalg import (best_subset, factor, greedy_obs, obd, obs_project, obs_saliency,
                     restricted_newton, single_weight_saliency, topk, woodfisher_inverse)
from .problems import (LogisticRegression, QuadraticProblem, SmoothProblem, digits_target,
                       gaussian_design, gaussian_target, relative_error, uniform_init)
from .results import MethodResult, SparseResult, plot_results, read_results, write_results

__all__ = [
    "SparseDriver", "METHODS", "SECOND_ORDER", "SparseDivergence", "resolve_eta",
    "QuadraticProblem", "SmoothProblem", "LogisticRegression", "gaussian_design",
    "gaussian_target", "digits_target", "uniform_init", "relative_error",
    "topk", "obs_project", "restricted_newton", "obs_saliency", "single_weight_saliency",
    "greedy_obs", "obd", "woodfisher_inverse", "best_subset", "factor",
    "SparseSpec", "parse_spec", "load_spec", "spec_to_toml", "make_instance", "run_experiment",
    "PAPER_SETUP_A", "SparseResult", "MethodResult", "write_results", "read_results",
    "plot_results",
]
