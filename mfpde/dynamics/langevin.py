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
at every step, the data of the step (a new epoch permutation when an epoch starts; for an online
sampler, a chunk of fresh samples for the next steps when the sample buffer is empty, see
:mod:`mfpde.dynamics.base`) and then the Gaussian noise (``noise_stream = "single"``; with
``"blocks"`` every particle chunk's noise comes from that chunk's own stream), outside the compiled
kernels; the result is bitwise independent of the thread count and of how the steps are split into
:meth:`step` calls, and :meth:`state_dict` / :meth:`load_state_dict` capture everything needed for
a bitwise resume.

Particles split over processes (``part``, :mod:`mfpde.parallel`): the generic path runs on the
rows held (the force plan exchanges the per-chunk partial features), bitwise the same for any
split with block streams. The fused path needs every particle in one process, so a driver that
would take it does not split (it holds all particles: the run is replicated on every process;
these are small problems by construction, :data:`FUSED_MAX_WORK`).

Fused path: mini-batch and online SGD with small batches (``batch <= FUSED_MAX_BATCH``) of a
two-layer read-out model (no ``W``; the model says so and gives the kernel's parameters through
``model.fused_plan()``) runs many steps per compiled call
(:func:`mfpde.kernels.online.online_steps`, two fixed parts of the particles on two threads
from 512 particles), the samples taken in blocks that never cross a refill of the sample buffer
or an epoch and, without noise, several blocks handed to one call. It draws the same random
numbers in the same order (the noise of consecutive steps within a block is one generator call,
which gives the same numbers as one call per step) and differs from the generic path (one
streamed :meth:`~mfpde.models.readout.ReadoutModel.gradient` pass per step) only by
floating-point rounding. It is used unless a ``batch_source`` / ``noise_source``
hook is set, the per-step work ``N * batch * D`` exceeds :data:`FUSED_MAX_WORK` (the generic path
is multi-threaded) or :attr:`LangevinSolver.fused` is False.

Generic path: one streamed pass per step. The model hands its force plan to the integrator
(:meth:`~mfpde.models.readout.ReadoutModel.force_chunks`): the force of each particle chunk, as soon
as it is complete, goes to :func:`euler_maruyama_step`'s per-chunk update (the noise of the chunk
drawn in chunk order), bitwise equal to the force followed by
:func:`~mfpde.kernels.readout.em_update`, without an (N, D) force array. A model without a force
plan gives its (N, D) force through ``model.gradient``.
"""
from __future__ import annotations

import math

import numpy as np

from ..kernels.online import online_steps
from ..kernels.readout import EMChunks, em_update
from .base import ONLINE_CHUNK, ConstantSchedule, ParticleDriver, make_rng  # noqa: F401
from .heavy_ball import descent_step

#: largest mini-batch run by the fused kernel (larger batches: one BLAS pass per step)
FUSED_MAX_BATCH = 16
#: largest per-step work ``N * batch * D`` of the fused kernel (two threads at most); larger
#: problems use the generic path, where the fixed cost per step no longer matters
FUSED_MAX_WORK = 1 << 21
#: bytes of Gaussian noise drawn by one generator call on the fused path (finite ``beta``)
FUSED_NOISE_BYTES = 1 << 24

#: steps of one call of the fused kernel at most (several blocks of samples; each call has a
#: fixed cost, e.g. handing part 1 to its thread)
FUSED_CALL_STEPS = 4096

#: bytes of the samples of one call of the fused kernel at most
FUSED_CALL_BYTES = 1 << 24


def euler_maruyama_step(model, theta, X, Y, W, dt, noise=None, noise_scale=0.0, rng=None,
                        draw=None, part=None, chain=None, more=False):
    """One Euler–Maruyama step of the particles, in place, fused with the model's gradient pass
    (dynamics.md §3): :math:`\\theta_j \\leftarrow \\theta_j - \\varepsilon\\nabla\\Psi(\\theta_j)
    + s\\,g_j` with ``dt`` :math:`= \\varepsilon`, ``noise_scale`` :math:`s` and ``noise``
    :math:`g` (N, D) (may be None when ``noise_scale == 0``).

    The model's force plan (``model.force_chunks``) hands over the force of each particle chunk
    ``[lo, hi)``; this function applies the update to those rows
    (:func:`~mfpde.kernels.readout.em_rows`) — equal to ``model.gradient`` followed by
    :func:`~mfpde.kernels.readout.em_update`, bit for bit, without forming the (N, D) force.
    With ``rng`` (a ``numpy.random.Generator``) instead of ``noise``, the noise is drawn chunk by
    chunk of particles in order: the same numbers as ``rng.standard_normal((N, D))``, without an
    (N, D) buffer. With ``draw`` (a callable ``(lo, hi) -> (hi - lo, D)`` array, e.g. a chunk's
    block stream) each chunk's noise is ``draw(lo, hi)``. ``part``: the particles held by this
    process of a split run (``theta`` holds rows ``[part.lo, part.hi)``; the force plan's
    ``part``). ``chain``: a token shared by consecutive steps between which nothing else writes
    ``theta`` (:class:`~mfpde.kernels.readout.EMChunks`): a float32 pass then reads the float32
    copy of ``U`` that the previous step's update wrote, the same numbers as a fresh copy;
    ``more``: another step of the chain follows (this step's update then writes that copy).

    ``theta`` must be a writeable C-contiguous float64 (N, D) array. Returns ``(risk, grad_W)``
    (``grad_W`` (p, q) or None without ``W``), both evaluated before the update.
    """
    if not (isinstance(theta, np.ndarray) and theta.dtype == np.float64
            and theta.flags.c_contiguous and theta.flags.writeable):
        raise ValueError("the Euler–Maruyama step updates theta in place: it must be a writeable "
                         "C-contiguous float64 array")
    step, ns = float(dt), float(noise_scale)
    produce = None
    if ns != 0.0 and (rng is not None or draw is not None):
        if sum(x is not None for x in (noise, rng, draw)) > 1:
            raise ValueError("give one of noise, rng and draw")
        D = theta.shape[1]
        if draw is not None:
            produce = draw
        else:
            def produce(lo, hi):
                return rng.standard_normal((hi - lo, D))
    elif ns != 0.0:
        noise = np.asarray(noise, dtype=np.float64)
        if noise.shape != theta.shape:
            raise ValueError(f"noise must have shape {theta.shape}, got {noise.shape}")

    on_chunk = EMChunks(theta, step, ns, noise, chain, more)
    if part is not None:
        return model.force_chunks(theta, X, Y, W, on_chunk, produce, part=part)
    return model.force_chunks(theta, X, Y, W, on_chunk, produce)


class LangevinSolver(ParticleDriver):
    """Euler–Maruyama particle solver (see module docstring for the scheme).

    Parameters are those of :class:`~mfpde.dynamics.base.ParticleDriver`: ``model, data, N, dt,
    beta, batch, sampler, xi, xi_W, train_W, seed, theta0, W0, noise_stream, part``.
    """

    #: use the fused multi-step kernel when the configuration allows it (module docstring); set
    #: False on an instance (or pass ``fused=False``) to force the generic path
    fused = True

    def __init__(self, *args, fused: bool | None = None, **kwargs):
        if fused is not None:                   # before the split decision of the base class
            self.fused = bool(fused)
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ stepping
    def step(self, n: int = 1, t_end: float = math.inf) -> None:
        """Advance ``n`` Euler–Maruyama steps (dynamics.md §3); ``t_end`` is ignored (fixed ``dt``)."""
        n = int(n)
        if n > 0 and self._fused_ok():
            self._step_fused(n)
            return
        model = self.model
        fuse_update = callable(getattr(model, "force_chunks", None))
        chain = object()                # the steps of this call: nothing else writes theta
        for i in range(n):
            xi = self.xi(self.t)
            eps = self.dt * xi
            Xb, Yb = self.next_batch()
            noisy = math.isfinite(self.beta)
            scale = math.sqrt(2.0 * eps / self.beta) if noisy else 0.0
            if fuse_update:
                # the update is applied per chunk inside the pass; the driver's own noise is drawn
                # chunk by chunk there (the same numbers as one (N, D) draw, no (N, D) buffer;
                # block streams: each chunk's from its stream)
                own = noisy and self.noise_source is None
                blocks = own and self._streams is not None
                by_rng = own and not blocks and self.part is None
                noise = self.draw_noise() if (noisy and not (blocks or by_rng)) else None
                self.last_risk, gW = euler_maruyama_step(
                    model, self.theta, Xb, Yb, self.W, eps, noise, scale,
                    rng=self.rng if by_rng else None, draw=self.chunk_noise if blocks else None,
                    part=self.part, chain=chain, more=i < n - 1)
            else:
                noise = self.draw_noise() if noisy else None
                g = self._gradient(Xb, Yb)
                self.last_risk, gW = g.risk, g.W
                em_update(self.theta, g.theta, self._noise if noise is None else noise, eps,
                          scale)
            if self.train_W:
                descent_step(self.W, gW, self.dt * self.xi_W * xi)
            self.k += 1

    # ------------------------------------------------------------------ fused path
    def _splits(self) -> bool:
        """The fused path needs every particle in one process: no split when it is taken."""
        return not self._fused_ok()

    def _fused_plan(self):
        """The model's plan for the fused kernel (``model.fused_plan()``), or None."""
        plan = getattr(self.model, "fused_plan", None)
        return plan() if callable(plan) else None

    def _fused_ok(self) -> bool:
        """Whether :meth:`step` runs the fused kernel (module docstring)."""
        B = self.batch
        if not (self.fused and B is not None and B <= FUSED_MAX_BATCH
                and self.batch_source is None and self.noise_source is None):
            return False
        plan = self._fused_plan()
        return plan is not None and self.N * B * plan.D <= FUSED_MAX_WORK

    def _step_fused(self, n: int) -> None:
        """``n`` steps through :func:`~mfpde.kernels.online.online_steps`. The samples are taken
        in blocks of at most :data:`~mfpde.dynamics.base.ONLINE_CHUNK` steps that end at every
        refill of the sample buffer or end of epoch, each block's noise drawn right after its
        rows (the generator draws exactly what the generic path draws, in the same order). Up to
        :data:`FUSED_CALL_STEPS` steps of consecutive blocks (at most :data:`FUSED_CALL_BYTES`
        of samples) go to one call of the kernel, whose results do not depend on how the steps
        are split into calls; with noise, one block per call (at most
        :data:`FUSED_NOISE_BYTES` of it)."""
        plan = self._fused_plan()
        B, N, D = self.batch, self.N, plan.D
        noisy = math.isfinite(self.beta)
        room_cap = max(1, min(FUSED_CALL_STEPS, FUSED_CALL_BYTES // (8 * B * (plan.d + plan.q))))
        if noisy:       # one block per call: drawing the noise costs far more than a call
            room_cap = max(1, min(room_cap, ONLINE_CHUNK, FUSED_NOISE_BYTES // (8 * N * D)))
        no_noise = np.empty((0, 0, 0))
        done = 0
        while done < n:
            room = min(n - done, room_cap)
            Xs, Ys, noises = [], [], []
            got = 0
            while got < room:
                want = min(room - got, ONLINE_CHUNK)
                if self.sampler is not None:
                    X, Y = self._online_rows(want)
                else:
                    X, Y = self._epoch_rows(want)
                m = X.shape[0] // B
                X = np.ascontiguousarray(X, dtype=np.float64)
                if X.ndim != 2 or X.shape[1] != plan.d:
                    raise ValueError(f"samples must have d = {plan.d} columns, got shape {X.shape}")
                Y = np.ascontiguousarray(Y, dtype=np.float64).reshape(m, B, -1)
                if Y.shape[2] != plan.q:
                    raise ValueError(f"targets must have q = {plan.q} columns, got {Y.shape[2]}")
                if got + m < room:      # a refill may follow: keep a copy, not a view
                    X, Y = X.copy(), Y.copy()
                Xs.append(X.reshape(m, B, plan.d))
                Ys.append(Y)
                if noisy:
                    noises.append(self.block_noise(m) if self._streams is not None else
                                  self.rng.standard_normal((m, N, D)))
                got += m
            X = Xs[0] if len(Xs) == 1 else np.concatenate(Xs)
            Y = Ys[0] if len(Ys) == 1 else np.concatenate(Ys)
            if isinstance(self.xi, ConstantSchedule):
                eps = np.full(got, self.dt * self.xi.value)
            else:
                eps = np.array([self.dt * self.xi(k * self.dt)
                                for k in range(self.k, self.k + got)], dtype=np.float64)
            if noisy:
                noise = noises[0] if len(noises) == 1 else np.concatenate(noises)
                scale = np.sqrt(2.0 * eps / self.beta)
            else:
                noise, scale = no_noise, eps
            self.last_risk = float(online_steps(plan.code, self.theta, plan.pa, plan.bias,
                                                X, Y, eps, plan.lam, noise, scale))
            self.k += got
            done += got
