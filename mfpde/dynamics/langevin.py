r"""Overdamped Langevin (McKean–Vlasov) particle solver of the Wasserstein gradient flow.

Implements theory/dynamics.md §3 (N-particle Euler–Maruyama, synchronous update):

.. math::

    \varepsilon_k = \varepsilon\,\xi(k\varepsilon),\qquad
    \theta_i^{k+1} = \theta_i^k - \varepsilon_k \nabla\Psi(\theta_i^k;\hat\rho_N^k, W^k)
        + \sqrt{2\varepsilon_k/\beta}\; g_i^k,\qquad g_i^k\sim N(0, I_D),

    W^{k+1} = W^k - \varepsilon\,\xi_W(k\varepsilon)\,\nabla_W F(\hat\rho_N^k, W^k)
    \quad(\text{NC model, no noise on } W),\qquad \xi_W(t) = r_W\,\xi(t),

the time discretisation of :math:`\partial_t\rho = \xi(t)[\nabla\cdot(\rho\nabla\Psi) + \beta^{-1}\Delta\rho]`
(README convention 4; ``beta = inf`` is the noiseless flow). With ``batch`` set, the data average in
:math:`\nabla\Psi` is over a mini-batch (dynamics.md §4.1): epochs over a finite set (reshuffled each
epoch), or fresh samples from an :class:`~mfpde.data.OnlineSampler` each step (population dynamics).
Since a width-N network trained with per-neuron step ``eps`` performs exactly this update
(README convention 5), the same solver is the finite-width GD / SGD / noisy-SGD trainer.

Randomness: one ``numpy.random.Generator`` (PCG64, from a ``SeedSequence``) draws, in this order
at every step, the mini-batch (indices or fresh samples) and then the Gaussian noise, outside the
compiled kernels; the result is bitwise independent of the thread count, and
:meth:`state_dict` / :meth:`load_state_dict` capture everything needed for a bitwise resume.
"""
from __future__ import annotations

import math

from ..kernels.readout import em_update
from .base import ParticleDriver, make_rng  # noqa: F401  (make_rng re-exported)


class LangevinSolver(ParticleDriver):
    """Euler–Maruyama particle solver (see module docstring for the scheme).

    Parameters are those of :class:`~mfpde.dynamics.base.ParticleDriver`: ``model, data, N, dt,
    beta, batch, sampler, xi, xi_W, train_W, seed, theta0, W0``.
    """

    # ------------------------------------------------------------------ stepping
    def step(self, n: int = 1) -> None:
        """Advance ``n`` Euler–Maruyama steps (dynamics.md §3)."""
        model = self.model
        for _ in range(int(n)):
            xi = self.xi(self.t)
            eps = self.dt * xi
            Xb, Yb = self.next_batch()
            g = model.gradient(self.theta, Xb, Yb, self.W)
            self.last_risk = g.risk
            if math.isfinite(self.beta):
                noise = self.draw_noise()
                em_update(self.theta, g.theta, noise, eps, math.sqrt(2.0 * eps / self.beta))
            else:
                em_update(self.theta, g.theta, self._noise, eps, 0.0)
            if self.train_W:
                self.W -= (self.dt * self.xi_W * xi) * g.W
            self.k += 1
