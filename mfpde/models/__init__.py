"""Model layer: what a neuron is, what the network outputs, the force on each neuron.

``make_model(kind, **params)`` builds a model from configuration values. Models know nothing of
drivers, runners or stores: a model hands its force plan to the integrator
(:meth:`ReadoutModel.force_chunks`, :meth:`ReadoutModel.fused_plan`) and never steps itself.
"""
from __future__ import annotations

import difflib

from .readout import FusedPlan, Gradient, ReadoutModel
from .three_layer_nc import NCThreeLayer
from .two_layer import TwoLayer

MODEL_KINDS = {"two_layer": TwoLayer, "nc": NCThreeLayer}


def make_model(kind="two_layer", *, d, q=1, activation="tanh", bias=False, output="trainable",
               p=4, Gamma=1.0, lam=0.0, lam_W=0.0, init_scale_a=1.0, init_scale_u=1.0,
               memory="auto", precision="float64"):
    """Build a model by name.

    ``kind="two_layer"`` uses ``d, q, activation, bias, output, lam, init_scale_*``;
    ``kind="nc"`` uses ``d, q, p, activation, bias, Gamma, lam, lam_W, init_scale_*``.
    ``memory`` ("auto", "fast", "low") chooses how passes over many sample blocks use memory
    (:class:`~mfpde.models.readout.ReadoutModel`); ``precision`` ("float64", "float32") the
    arithmetic of the gradient pass (the mixed-precision pass of :mod:`mfpde.models.readout`).
    """
    if kind not in MODEL_KINDS:
        hint = difflib.get_close_matches(str(kind), MODEL_KINDS, n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ValueError(f"unknown model kind {kind!r}; allowed: {', '.join(MODEL_KINDS)}{extra}")
    common = dict(d=d, q=q, activation=activation, bias=bias, lam=lam,
                  init_scale_a=init_scale_a, init_scale_u=init_scale_u, memory=memory, precision=precision)
    if kind == "two_layer":
        return TwoLayer(output=output, **common)
    return NCThreeLayer(p=p, Gamma=Gamma, lam_W=lam_W, **common)


__all__ = ["FusedPlan", "Gradient", "ReadoutModel", "TwoLayer", "NCThreeLayer", "make_model", "MODEL_KINDS"]
