r"""Two-layer mean-field network (theory/models.md §1; gradients dynamics.md §1.2).

.. math::

    f(x;\rho) = \int \sigma_*(x;\theta)\,\rho(d\theta),\qquad
    \sigma_*(x;\theta) = a\,\sigma(u^\top \tilde x),\ a\in\mathbb R^q,

with ``x~ = (x, 1)`` when ``bias=True``. With ``output="fixed"`` the neuron is
:math:`\sigma(u^\top x)` (Mei–Montanari–Nguyen setting, ``q = 1``); with ``activation="identity"``
and a fixed output it is the linear neuron :math:`\theta^\top x` of dynamics.md §1.4.

Particle layout ``theta`` (N, D): columns ``[a (q), u (d [+1])]``, or ``[u]`` for a fixed output.
"""
from __future__ import annotations

from ..rules import OUTPUTS
from .readout import ReadoutModel


class TwoLayer(ReadoutModel):
    """Two-layer network ``f_N(x) = (1/N) sum_j a_j sigma(u_j^T x~)`` (models.md §1).

    Parameters
    ----------
    d, q : int
        Input and output dimension.
    activation : str
    bias : bool
    output : {"trainable", "fixed"}
        ``"fixed"`` sets ``a = 1`` (requires ``q = 1``).
    lam : float
        Weight decay :math:`\\lambda` on the particles.
    init_scale_a, init_scale_u : float
        Initialisation ``a ~ N(0, s_a^2)``, ``u ~ N(0, s_u^2 I)``.
    """

    kind = "two_layer"
    has_W = False

    def __init__(self, d, q=1, activation="tanh", bias=False, output="trainable", lam=0.0,
                 init_scale_a=1.0, init_scale_u=1.0, **kw):
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(map(repr, OUTPUTS))}, "
                             f"got {output!r}")
        if output == "fixed" and q != 1:
            raise ValueError(f"output='fixed' needs q = 1 (scalar neuron sigma(u^T x)), got q={q}")
        super().__init__(d=d, p=q, q=q, activation=activation, bias=bias,
                         train_a=(output == "trainable"), lam=lam, lam_W=0.0,
                         init_scale_a=init_scale_a, init_scale_u=init_scale_u, **kw)
        self.output = output

    def describe(self):
        out = super().describe()
        out["output"] = self.output
        return out
