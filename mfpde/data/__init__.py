"""Data sets and online samplers (theory: models.md §5 "Data models").

Conventions (docs/architecture.md): row layout, inputs ``X`` of shape ``(n, d)``, targets ``Y``
of shape ``(n, q)``, both C-contiguous float64.  Every random draw comes from a
``numpy.random.Generator``; functions take either ``seed`` (turned into
``np.random.default_rng(np.random.SeedSequence(seed))``) or an explicit ``rng`` (which then
takes precedence over ``seed``).

Contents (every public name is importable from ``mfpde.data``)
--------------------------------------------------------------
- :mod:`.dataset`: :class:`Dataset`, a finite data set ``(X, Y, labels, name, meta)`` with class
  utilities, and :func:`one_hot`.
- :mod:`.io`: :func:`save_npz`, :func:`load_npz`.
- :mod:`.samplers`: :class:`OnlineSampler` (fresh samples from a population distribution, online
  SGD) and :func:`teacher_student_sampler`, :func:`gaussian_mixture_sampler`,
  :func:`mmn_gaussians_sampler`, :func:`separable_sampler`, :func:`linear_gaussian_sampler`,
  :func:`linear_gaussian_population`.
- :mod:`.generators`: :func:`teacher_student` (D2), :func:`gaussian_mixture`,
  :func:`mmn_gaussians` (D3), :func:`separable` (D4), :func:`well_separated` (D1),
  :func:`linear_gaussian` (D5), :func:`digits_mod3` (D6 / validation.md §V14). Every finite
  generator draws its samples through the corresponding sampler's ``draw`` functions, so each
  distribution is written once.
- :mod:`.registry`: :data:`DATA_KINDS` (the one list of data kinds), :func:`data_kinds`,
  :func:`online_kinds`, :func:`make_dataset`, :func:`data_param_spec`, :data:`REQUIRED`.
"""

from __future__ import annotations

from ._activations import _np_activation  # noqa: F401  (used by the tests)
from .dataset import EXTRA_HIGH, EXTRA_LOW, Dataset, one_hot
from .generators import (digits_mod3, gaussian_mixture, linear_gaussian, mmn_gaussians, separable,
                         teacher_student, well_separated)
from .io import load_npz, save_npz
from .registry import DATA_KINDS, REQUIRED, data_kinds, data_param_spec, make_dataset, online_kinds
from .samplers import (OnlineSampler, _simplex_etf, gaussian_mixture_sampler,  # noqa: F401
                       linear_gaussian_population, linear_gaussian_sampler, mmn_gaussians_sampler,
                       separable_sampler, teacher_student_sampler)

__all__ = [
    "Dataset",
    "OnlineSampler",
    "one_hot",
    "teacher_student",
    "teacher_student_sampler",
    "gaussian_mixture",
    "gaussian_mixture_sampler",
    "mmn_gaussians",
    "mmn_gaussians_sampler",
    "separable",
    "separable_sampler",
    "well_separated",
    "linear_gaussian",
    "linear_gaussian_sampler",
    "linear_gaussian_population",
    "digits_mod3",
    "load_npz",
    "save_npz",
    "DATA_KINDS",
    "REQUIRED",
    "data_kinds",
    "online_kinds",
    "make_dataset",
    "data_param_spec",
    "EXTRA_LOW",
    "EXTRA_HIGH",
]
