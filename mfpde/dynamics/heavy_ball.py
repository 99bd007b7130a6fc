r"""The heavy-ball update, written once (theory/dynamics.md §5.1–§5.2, §6.3).

Per array ``w`` (particles ``theta`` (N, D), the NC read-out ``W`` (p, q), each Pham–Nguyen layer
``w1`` (n1, d), ``w2`` (n1, n2), ``w3`` (n2,)), in place, with the force ``f`` computed outside
and the Gaussian ``g`` drawn outside (the run's generator):

.. math::

    \text{velocity form (§5.1):}\quad r \leftarrow a\,r - h_f f + s\,g,\qquad
        w \leftarrow w + h\,r,\qquad a = 1 - \gamma h,\ h_f = h\ (\text{PN: } h\xi_\ell),

    \text{Polyak form (§5.2):}\quad w^{k+1} = w^k + \mu_k (w^k - w^{k-1}) - \alpha_k f + c\,g,
        \qquad \alpha_k = h_k^2,\ \mu_k = \tfrac{h_k}{h_{k-1}}(1 - \gamma h_k),

    \text{first order:}\quad w \leftarrow w - h f .

Floating-point order: every function performs exactly the operations written above, left to
right, one rounding each (``a r``, ``h_f f``, their difference, ``+ s g``; ``h r``, ``w + h r``;
``w + mu (w - w_prev)``, ``- alpha f``, ``+ c g``), and nothing else. The velocity form of a 2-D
C-contiguous float64 array with ``h_f = h`` runs in one fused pass
(:func:`mfpde.kernels.kinetic.shb_update`, strict IEEE arithmetic), bitwise equal to the NumPy
sequence used for the other arrays.

:class:`HeavyBall` is the stochastic heavy ball of a particle driver (particles and ``W``, both
forms), shared by :class:`~mfpde.dynamics.kinetic.KineticSolver` (``integrator="shb"``) and
:class:`~mfpde.dynamics.sgd.SHBTrainer`; :mod:`mfpde.dynamics.pham_nguyen` applies the functions
layer by layer.
"""
from __future__ import annotations

import math

import numpy as np

from ..kernels.kinetic import shb_update
from ..kernels.readout import NO_NOISE

__all__ = ["velocity_step", "polyak_step", "descent_step", "HeavyBall"]


def _fusable(*arrays) -> bool:
    return all(isinstance(x, np.ndarray) and x.ndim == 2 and x.dtype == np.float64
               and x.flags.c_contiguous for x in arrays)


def velocity_step(w, r, force, a, h, *, force_step=None, noise=None, noise_scale=0.0) -> None:
    """Heavy ball, velocity form, in place: ``r <- a r - h_f force + s noise``, then
    ``w <- w + h r`` (the new ``r``), with ``h_f = force_step`` (default ``h``) and
    ``s = noise_scale`` (the noise is not read when it is 0 or ``noise`` is None).

    ``w``, ``r``, ``force`` (and ``noise``) have one shape (any); ``w`` and ``r`` are updated in
    place (they must be writeable arrays).
    """
    hf = h if force_step is None else force_step
    s = float(noise_scale) if noise is not None else 0.0
    if hf == h and _fusable(w, r, force) and (s == 0.0 or _fusable(noise)):
        shb_update(w, r, force, noise if s != 0.0 else NO_NOISE, a, h, s)
        return
    r *= a
    r -= hf * force
    if s != 0.0:
        r += s * noise
    w += h * r


def polyak_step(w, w_prev, force, mu, alpha, *, noise=None, noise_scale=0.0) -> None:
    """Heavy ball, Polyak form, in place: ``w_new = w + mu (w - w_prev) - alpha force
    (+ c noise)`` with ``c = noise_scale``; then ``w_prev <- w`` and ``w <- w_new``.

    ``w``, ``w_prev``, ``force`` (and ``noise``) have one shape (any).
    """
    new = w + mu * (w - w_prev)
    new -= alpha * force
    if noise is not None and noise_scale != 0.0:
        new += noise_scale * noise
    w_prev[...] = w
    w[...] = new


def descent_step(w, force, h) -> None:
    """First-order (gradient-flow / SGD) step in place: ``w <- w - h force``."""
    w -= h * force


class HeavyBall:
    """The stochastic heavy ball of a particle driver, velocity or Polyak form (dynamics.md
    §5.1–§5.2); a mixin of :class:`~mfpde.dynamics.base.ParticleDriver` subclasses.

    :meth:`_heavy_ball_update` applies one step to ``theta`` (N, D) and ``W`` (p, q) given the
    forces at the current state, drawing the noise of the step (after the batch, as every driver
    does). It reads ``form`` ("velocity" or "polyak"), ``gamma``, ``gamma_W`` (friction of ``W``),
    ``beta``, ``xi_W``, ``train_W``, ``W_momentum`` (velocity form: ``W`` has the velocity
    ``r_W``, else first-order steps), the state ``r``, ``r_W`` (velocity form) or
    ``theta_prev``, ``W_prev``, ``_h_prev`` (Polyak form), and ``draw_noise()``.

    Noise: the velocity form adds ``sqrt(2 gamma h/beta) g`` to ``r``, the Polyak form
    ``h sqrt(2 gamma h/beta) g`` to ``theta`` (the same iterates, dynamics.md §5.2). ``W`` has no
    noise; its step is ``h_W = h xi_W`` with ``a_W = 1 - gamma_W h_W``.
    """

    def _shb_step(self, t: float) -> tuple[float, float]:
        """``(h, a) = (dt xi(t), 1 - gamma h)``; ``ValueError`` unless ``a > 0``."""
        h = self.dt * self.xi(t)
        a = 1.0 - self.gamma * h
        if not a > 0:
            raise ValueError(f"heavy ball (SHB) needs gamma*dt*xi(t) < 1; got "
                             f"{self.gamma * h:.4g} at t = {t:.4g}")
        return h, a

    def _heavy_ball_update(self, h: float, a: float, force, force_W) -> None:
        """One heavy-ball step with step ``h`` and ``a = 1 - gamma h`` from the forces
        ``force`` (N, D) and ``force_W`` (p, q) or None (class docstring)."""
        noisy = math.isfinite(self.beta)
        noise = self.draw_noise() if noisy else None
        s = math.sqrt(2.0 * self.gamma * h / self.beta) if noisy else 0.0
        hW = h * self.xi_W
        aW = 1.0 - self.gamma_W * hW
        if self.form == "velocity":
            velocity_step(self.theta, self.r, force, a, h, noise=noise, noise_scale=s)
            if self.train_W:
                if self.W_momentum:
                    velocity_step(self.W, self.r_W, force_W, aW, hW)
                else:
                    descent_step(self.W, force_W, hW)
        else:
            ratio = h / self._h_prev
            polyak_step(self.theta, self.theta_prev, force, ratio * a, h * h, noise=noise,
                        noise_scale=h * s)
            if self.train_W:
                polyak_step(self.W, self.W_prev, force_W, ratio * aW, hW * hW)
