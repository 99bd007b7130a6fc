"""NumPy versions of the activations (theory/models.md §4) used by the data generators (the
teacher of the teacher-student model). The compiled ones of the model layer are
:mod:`mfpde.kernels.activations`; the names are those of :data:`mfpde.activations.ACTIVATIONS`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.special import erf as _erf
from scipy.special import expit as _expit

from ._checks import _check_choice


# MMN piecewise linear constants (models.md §4) [recalled — verify]
_MMN_T1, _MMN_T2, _MMN_S1, _MMN_S2 = 0.5, 1.5, -2.5, 7.5


def _mmn_pl(z):
    slope = (_MMN_S2 - _MMN_S1) / (_MMN_T2 - _MMN_T1)
    return _MMN_S1 + slope * np.clip(z - _MMN_T1, 0.0, _MMN_T2 - _MMN_T1)


_NP_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "sigmoid": _expit,
    "erf": _erf,
    "softplus": lambda z: np.logaddexp(0.0, z),
    "relu": lambda z: np.maximum(z, 0.0),
    "identity": lambda z: np.asarray(z, dtype=np.float64) * 1.0,
    "mmn_pl": _mmn_pl,
}


def _np_activation(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """Vectorised numpy activation ``sigma`` by name (models.md §4)."""
    _check_choice("activation", name, tuple(_NP_ACTIVATIONS))
    return _NP_ACTIVATIONS[name]
