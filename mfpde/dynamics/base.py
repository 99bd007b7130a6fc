r"""Shared machinery of the particle drivers: data, mini-batches, randomness, state.

Every driver (overdamped Langevin, kinetic / heavy ball, finite-width training) moves particles
``theta`` (N, D) — and for the NC model a matrix ``W`` (p, q) — under the force of one model
(:mod:`mfpde.models`). :class:`ParticleDriver` holds what they share:

- the training data (finite set, epochs of mini-batches) or an online sampler (fresh samples);
- one ``numpy.random.Generator`` (PCG64 from a ``SeedSequence``) that draws everything random,
  outside the compiled kernels, so results are bitwise independent of the thread count. At every
  step it draws, in this order, the data of the step and then the Gaussian noise (noisy dynamics
  only). The data draw is: nothing for full batch; a new permutation when an epoch starts (epochs of
  mini-batches); for an online sampler, a chunk of ``K * batch`` fresh samples when the sample
  buffer is empty (``K = online_chunk_steps(batch, d, q)``, :data:`ONLINE_CHUNK` steps for small
  batches), served ``batch`` rows per step. The buffer refills every ``K`` steps counted from the
  first step, so the random stream depends only on the sequence of steps, not on how they are split
  into :meth:`step` calls;
- the noise stream (``noise_stream``): ``"single"`` (the default of the Python constructors, and
  of every run file of schema version 1) draws the Gaussian noise ``g^k`` (N, D) of a step from
  the run's generator, after the step's data; ``"blocks"`` (the default of ``mfpde run`` from
  schema version 2 on) gives every particle chunk ``c`` of
  :func:`~mfpde.kernels.readout.chunk_bounds` ``(N)`` (a function of ``N`` only) its own
  generator, PCG64 from :func:`noise_seed` ``(seed, c)``, which draws the rows of that chunk,
  step after step. Block streams let a process that holds some chunks draw only their noise
  (particles split over processes, ``part``; :mod:`mfpde.parallel`), so the result is bitwise
  the same for any split; the run's generator then draws only the initial particles, ``W``,
  batches and samples;
- the complete state for checkpoints (``state_dict`` / ``load_state_dict``: particles, ``k``, the
  generator, the epoch permutation, the block streams' states ``noise_streams`` (``"blocks"`` with
  noise) and the unused part of the sample buffer), extended by drivers through
  :meth:`ParticleDriver._extra_state`;
- particles split over processes (``part``, a :class:`mfpde.parallel.Partition`): the driver
  holds rows ``[part.lo, part.hi)`` — whole chunks — of ``theta`` and of every per-particle
  array (velocities, cached forces), replicates ``W``, the generator, batches and samples, and
  passes ``part`` to the model's gradient pass; ``N`` stays the number of all particles and
  :attr:`ParticleDriver.n_rows` is the number held. Its ``state_dict`` covers the rows held
  (keys :data:`PARTICLE_ROWS` by particle, :data:`CHUNK_ROWS` by chunk; the rest is the same on
  every process);
- the driver protocol of :mod:`mfpde.engine.protocol`: ``k``, ``t = k*dt``, the fixed step ``dt``,
  ``step(n, t_end)`` (``t_end`` ignored: the controller converts times to steps), ``state_dict``,
  ``load_state_dict``, ``fields()`` (views of ``theta`` and ``W``; drivers with velocities add
  theirs) and ``last_risk``.
"""
from __future__ import annotations

import json
import math
from typing import Callable

import numpy as np

from ..kernels.readout import chunk_bounds


#: steps of fresh samples an online driver draws with one sampler call (small batches)
ONLINE_CHUNK = 256
#: noise streams (module docstring)
NOISE_STREAMS = ("single", "blocks")
#: first word of the spawn key of the block noise streams (:func:`noise_seed`)
NOISE_SPAWN_KEY = 0x6E6F6973
#: state keys holding one row per particle (rows held by a process of a split run)
PARTICLE_ROWS = frozenset({"theta", "r", "force", "theta_prev", "buf"})
#: state keys holding one row per particle chunk
CHUNK_ROWS = frozenset({"noise_streams"})
#: bytes of one chunk of fresh samples; large batches or inputs get fewer steps per chunk
ONLINE_CHUNK_BYTES = 1 << 24


def online_chunk_steps(batch: int, d: int, q: int) -> int:
    """Steps ``K`` of fresh samples drawn at once by an online driver: :data:`ONLINE_CHUNK`,
    reduced so that one chunk (``K * batch`` samples of ``d + q`` floats) stays within
    :data:`ONLINE_CHUNK_BYTES`; at least 1. Depends only on the configuration."""
    per_step = 8 * int(batch) * max(1, int(d) + int(q))
    return int(max(1, min(ONLINE_CHUNK, ONLINE_CHUNK_BYTES // per_step)))


class ConstantSchedule:
    """The schedule ``t -> value`` (a constant ``xi``); drivers may read :attr:`value` directly."""

    __slots__ = ("value",)

    def __init__(self, value: float):
        self.value = float(value)

    def __call__(self, t: float) -> float:
        return self.value

    def __repr__(self) -> str:
        return f"ConstantSchedule({self.value!r})"


def make_rng(seed) -> np.random.Generator:
    """The run's generator: PCG64 seeded through a ``SeedSequence`` (int, sequence or SeedSequence)."""
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return np.random.Generator(np.random.PCG64(ss))


def noise_seed(seed, chunk: int) -> np.random.SeedSequence:
    """Seed of the noise stream of particle chunk ``chunk`` (``noise_stream = "blocks"``): the
    run's ``SeedSequence`` with the spawn key extended by ``(NOISE_SPAWN_KEY, chunk)`` —
    independent of the run's generator, of the other chunks and of ``SeedSequence.spawn``
    children (whose keys have one word less)."""
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return np.random.SeedSequence(ss.entropy, spawn_key=tuple(ss.spawn_key)
                                  + (NOISE_SPAWN_KEY, int(chunk)), pool_size=ss.pool_size)


_MASK64 = (1 << 64) - 1


def pcg64_words(gen: np.random.Generator) -> np.ndarray:
    """The state of a PCG64 generator as 6 uint64 words (state, increment, 32-bit cache)."""
    st = gen.bit_generator.state
    s, inc = int(st["state"]["state"]), int(st["state"]["inc"])
    return np.array([s >> 64, s & _MASK64, inc >> 64, inc & _MASK64, int(st["has_uint32"]),
                     int(st["uinteger"])], dtype=np.uint64)


def set_pcg64_words(gen: np.random.Generator, words) -> None:
    """Restore a state written by :func:`pcg64_words`."""
    w = [int(x) for x in np.asarray(words, dtype=np.uint64)]
    gen.bit_generator.state = {"bit_generator": "PCG64",
                               "state": {"state": (w[0] << 64) | w[1], "inc": (w[2] << 64) | w[3]},
                               "has_uint32": w[4], "uinteger": w[5]}


def _as_schedule(xi) -> Callable[[float], float]:
    if xi is None:
        return ConstantSchedule(1.0)
    if callable(xi):
        return xi
    val = float(xi)
    if not (math.isfinite(val) and val > 0):
        raise ValueError(f"xi must be a positive number or a callable t -> xi(t) > 0, got {xi!r}")
    return ConstantSchedule(val)


class ParticleDriver:
    """Base of the particle drivers (see module docstring). Subclasses implement :meth:`step`.

    Parameters
    ----------
    model : ReadoutModel
        The model layer (:mod:`mfpde.models`).
    data : Dataset or None
        Finite training set with ``X`` (n, d) and ``Y`` (n, q). None when ``sampler`` is given.
    N : int
        Number of particles (10 .. 10^6 and beyond; memory ``O(N*D + block*N)``).
    dt : float
        Per-neuron step :math:`\\varepsilon` (mean-field time ``t = k*dt``).
    beta : float
        Inverse temperature; ``np.inf`` (default) is the noiseless flow.
    batch : int or None
        Mini-batch size ``B``; None or 0 means full batch. Required with ``sampler``.
    sampler : OnlineSampler or None
        Source of fresh samples ``sampler.sample(n, rng) -> (X, Y)`` (online SGD); drawn in
        chunks of ``K * batch`` samples (see the module docstring), ``batch`` rows per step.
    xi : float or callable or None
        Time-rescaling schedule :math:`\\xi(t) > 0` (default 1).
    xi_W : float
        Ratio :math:`\\xi_W/\\xi` for the ``W`` flow (default 1).
    train_W : bool
        NC model: move ``W`` (True) or keep it frozen at ``W0``.
    seed : int or SeedSequence
    theta0 : ndarray (N, D), optional
        Initial particles (default: ``model.init_particles(N, rng)``).
    W0 : ndarray (p, q), optional
        Initial ``W`` (default: ``model.init_W(rng)``).
    noise_stream : {"single", "blocks"}
        Where the Gaussian noise comes from (module docstring); default ``"single"``.
    part : Partition, optional
        The particles held by this process of a split run (module docstring). A driver that
        would not split (:meth:`_splits`: e.g. the fused small-batch path) ignores it and
        holds every particle (the run is then replicated on every process).
    """

    def __init__(self, model, data=None, *, N, dt, beta=np.inf, batch=None, sampler=None,
                 xi=None, xi_W=1.0, train_W=True, seed=0, theta0=None, W0=None,
                 noise_stream="single", part=None):
        self.model = model
        if not isinstance(N, (int, np.integer)) or isinstance(N, bool) or N < 1:
            raise ValueError(f"N must be an integer >= 1, got {N!r}")
        if not (isinstance(dt, (int, float, np.floating)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a finite number > 0, got {dt!r}")
        beta = float(beta)
        if not beta > 0 or math.isnan(beta):
            raise ValueError(f"beta must be > 0 (or inf for the noiseless flow), got {beta!r}")
        self.N, self.dt, self.beta = int(N), float(dt), beta
        self.xi = _as_schedule(xi)
        if not (math.isfinite(xi_W) and xi_W >= 0):
            raise ValueError(f"xi_W must be a finite number >= 0, got {xi_W!r}")
        self.xi_W = float(xi_W)
        self.train_W = bool(train_W) and model.has_W
        self._init_data(model, data, batch, sampler)
        if noise_stream not in NOISE_STREAMS:
            raise ValueError(f"noise_stream must be one of {', '.join(NOISE_STREAMS)}, got "
                             f"{noise_stream!r}")
        self.noise_stream = noise_stream
        self.part = None
        if part is not None:
            if int(part.N) != self.N:
                raise ValueError(f"the partition is of N = {part.N} particles, the driver has "
                                 f"N = {self.N}")
            if self._splits():
                self.part = part
        lo, hi = (int(self.part.lo), int(self.part.hi)) if self.part is not None else (0, self.N)
        self._rows = (lo, hi)
        self.rng = make_rng(seed)
        if theta0 is None:
            self.theta = model.init_particles(self.N, self.rng, rows=(lo, hi)) \
                if self.part is not None else model.init_particles(self.N, self.rng)
        else:
            theta0 = np.asarray(model.check_theta(theta0), dtype=np.float64)
            if theta0.shape[0] != self.N:
                raise ValueError(f"theta0 has {theta0.shape[0]} rows, expected N = {self.N}")
            self.theta = np.array(theta0[lo:hi], dtype=np.float64, order="C")
        if model.has_W:
            W = model.init_W(self.rng) if W0 is None else W0
            self.W = np.array(model.check_W(W), dtype=np.float64, order="C")
        else:
            if W0 is not None:
                raise ValueError("W0 given but the model has no W")
            self.W = None
        self.k = 0
        self._perm = np.zeros(0, dtype=np.int64)
        self._cursor = 0
        self._noise = np.empty((0, 0))        # (n_rows, D) noise buffer, allocated on first use
        # block noise streams of the chunks held (noise_stream = "blocks", finite beta)
        self._streams: list[np.random.Generator] | None = None
        self._stream_rows: list[tuple[int, int]] = []
        self._stream_at: dict[int, int] = {}
        if noise_stream == "blocks" and math.isfinite(beta):
            bounds = chunk_bounds(self.N)
            c0, c1 = (int(self.part.c0), int(self.part.c1)) if self.part is not None \
                else (0, bounds.size - 1)
            self._streams = [np.random.Generator(np.random.PCG64(noise_seed(seed, c)))
                             for c in range(c0, c1)]
            self._stream_rows = [(int(bounds[c] - lo), int(bounds[c + 1] - lo))
                                 for c in range(c0, c1)]
            self._stream_at = {r[0]: i for i, r in enumerate(self._stream_rows)}
        #: risk on the data of the last step (batch risk for SGD), before the update
        self.last_risk = float("nan")

    def _init_data(self, model, data, batch, sampler) -> None:
        """Set ``sampler``, ``X`` (n, d), ``Y`` (n, q) and ``batch`` (None = full batch), validating
        them against the model; shared by every driver."""
        self.sampler = sampler
        if sampler is None:
            if data is None:
                raise ValueError("give either a data set (data=...) or an online sampler")
            self.X = np.ascontiguousarray(data.X, dtype=np.float64)
            model.prepare_X(self.X)                       # validates the shape against the model
            self.Y = model.prepare_Y(data.Y, self.X.shape[0])
            n = self.X.shape[0]
        else:
            self.X = self.Y = None
            n = None
        if batch in (None, 0):
            if sampler is not None:
                raise ValueError("an online sampler needs batch >= 1 (fresh samples per step)")
            self.batch = None
        else:
            if not isinstance(batch, (int, np.integer)) or batch < 1:
                raise ValueError(f"batch must be an integer >= 1 (or 0 for full batch), got {batch!r}")
            if n is not None and batch > n:
                raise ValueError(f"batch = {batch} exceeds the number of samples n = {n}")
            self.batch = None if (n is not None and batch == n) else int(batch)
        # fresh samples of an online sampler, drawn in chunks; rows [_scursor:] are unused
        self._sX = self._sY = None
        self._scursor = 0
        self._schunk = 0
        if sampler is not None:
            self._schunk = online_chunk_steps(self.batch, getattr(sampler, "d", 0),
                                              getattr(sampler, "q", 0))

    # ------------------------------------------------------------------ time
    @property
    def t(self) -> float:
        """Mean-field time ``t = k * dt``."""
        return self.k * self.dt

    # ------------------------------------------------------------------ split runs
    @property
    def n_rows(self) -> int:
        """Particles held by this driver: ``N``, or ``part.hi - part.lo`` on a split run."""
        rows = getattr(self, "_rows", None)
        return self.N if rows is None else rows[1] - rows[0]

    def _splits(self) -> bool:
        """Whether the driver holds only the rows of a partition it is given (default True);
        a driver whose step needs every particle in one process returns False."""
        return True

    def _gradient(self, X, Y):
        """``model.gradient`` at the current state on ``X, Y`` (the rows held on a split run)."""
        if self.part is None:
            return self.model.gradient(self.theta, X, Y, self.W)
        return self.model.gradient(self.theta, X, Y, self.W, part=self.part)

    # ------------------------------------------------------------------ data
    #: Optional hooks for synchronous coupling (:mod:`mfpde.coupling`); None keeps the driver's
    #: own draws. ``batch_source() -> (X, Y)`` replaces the data of a step (e.g. the mini-batch the
    #: coupled reference drew) and ``noise_source() -> ndarray (N, D)`` the Gaussian ``g^k``
    #: (e.g. rows ``:N`` of the reference's noise). Set them on an instance.
    batch_source = None
    noise_source = None

    #: defaults for drivers that do not run this class's ``__init__`` (e.g. Pham–Nguyen)
    part = None
    noise_stream = "single"
    _streams = None

    def next_batch(self):
        """The data of the next step: full set, next epoch slice, or fresh samples ``(X, Y)``
        (or whatever :attr:`batch_source` returns when that hook is set)."""
        if self.batch_source is not None:
            return self.batch_source()
        return self.sample_batch()

    def sample_batch(self):
        """The driver's own draw of the next step's data (the body of :meth:`next_batch`).

        Online sampler: the next ``batch`` rows of the sample buffer (views), after drawing a chunk
        of ``K * batch`` fresh samples if the buffer is empty (module docstring)."""
        if self.sampler is not None:
            return self._online_rows(1)
        if self.batch is None:
            return self.X, self.Y
        return self._epoch_rows(1)

    def _epoch_rows(self, max_steps: int):
        """Rows of up to ``max_steps`` consecutive mini-batches of the current epoch, drawing a new
        permutation first if the epoch is over; never crosses an epoch. Returns copies ``(X, Y)``
        with ``m * batch`` rows, ``1 <= m <= max_steps``."""
        B = self.batch
        if self._cursor + B > self._perm.size:
            self._perm = self.rng.permutation(self.X.shape[0])
            self._cursor = 0
        c = self._cursor
        m = max(1, min(int(max_steps), (self._perm.size - c) // B))
        idx = self._perm[c:c + m * B]
        self._cursor = c + m * B
        return self.X[idx], self.Y[idx]

    def _online_rows(self, max_steps: int):
        """Take the rows of up to ``max_steps`` consecutive steps from the sample buffer, refilling
        it first if it is empty; never crosses a refill. Returns ``(X, Y)`` views with
        ``m * batch`` rows, ``1 <= m <= max_steps`` (``m = rows // batch``)."""
        B = self.batch
        if self._sX is None or self._scursor >= self._sX.shape[0]:
            X, Y = self.sampler.sample(self._schunk * B, self.rng)
            self._sX = np.ascontiguousarray(X, dtype=np.float64)
            self._sY = np.ascontiguousarray(Y, dtype=np.float64)
            self._scursor = 0
        c = self._scursor
        m = max(1, min(int(max_steps), (self._sX.shape[0] - c) // B))
        e = c + m * B
        self._scursor = e
        return self._sX[c:e], self._sY[c:e]

    def _sample_state(self) -> dict:
        """Unused part of the online sample buffer (None when empty), for checkpoints."""
        if self._sX is None or self._scursor >= self._sX.shape[0]:
            return {"sample_X": None, "sample_Y": None}
        c = self._scursor
        return {"sample_X": self._sX[c:].copy(), "sample_Y": self._sY[c:].copy()}

    def _load_sample_state(self, state: dict) -> None:
        """Restore the sample buffer of :meth:`_sample_state` (absent in older checkpoints: the
        buffer starts empty and the next step draws a new chunk)."""
        X, Y = state.get("sample_X"), state.get("sample_Y")
        if X is None or Y is None or self.sampler is None:
            self._sX = self._sY = None
        else:
            self._sX = np.array(X, dtype=np.float64, order="C")
            self._sY = np.array(Y, dtype=np.float64, order="C")
        self._scursor = 0

    def draw_noise(self) -> np.ndarray:
        """Standard Gaussian ``g^k`` of shape (N, D) (the rows held, (n_rows, D), on a split
        run) drawn from the noise stream (or from :attr:`noise_source` when that hook is set)."""
        if self.noise_source is not None:
            g = self.noise_source()
            if g.shape != (self.n_rows, self.model.D):
                raise ValueError(f"noise_source returned shape {g.shape}, expected "
                                 f"({self.n_rows}, {self.model.D})")
            return g
        return self.sample_noise()

    def sample_noise(self) -> np.ndarray:
        """The driver's own draw of ``g^k`` (n_rows, D) (a reused buffer): from the run's
        generator (``"single"``; on a split run all ``N * D`` numbers are drawn and the rows
        held kept), or every chunk's rows from its block stream (``"blocks"``)."""
        D = self.model.D
        if self._noise.shape != (self.n_rows, D):
            self._noise = np.empty((self.n_rows, D))
        if self._streams is not None:
            for (lo, hi), gen in zip(self._stream_rows, self._streams):
                gen.standard_normal(out=self._noise[lo:hi])
            return self._noise
        if self.part is None:
            return self.rng.standard_normal(out=self._noise)
        lo, hi = self._rows
        piece = 1 << 16
        for s in range(0, self.N, piece):
            e = min(self.N, s + piece)
            g = self.rng.standard_normal((e - s, D))
            a, b = max(s, lo), min(e, hi)
            if a < b:
                self._noise[a - lo:b - lo] = g[a - s:b - s]
        return self._noise

    def chunk_noise(self, lo: int, hi: int) -> np.ndarray:
        """The noise of the step for the chunk of rows ``[lo, hi)`` (held rows) from its block
        stream (``"blocks"`` only), shape (hi - lo, D)."""
        return self._streams[self._stream_at[lo]].standard_normal((hi - lo, self.model.D))

    def block_noise(self, m: int) -> np.ndarray:
        """The noise of ``m`` consecutive steps, (m, n_rows, D), from the block streams
        (``"blocks"`` only): the numbers of ``m`` calls of :meth:`sample_noise`."""
        out = np.empty((m, self.n_rows, self.model.D))
        for (lo, hi), gen in zip(self._stream_rows, self._streams):
            out[:, lo:hi] = gen.standard_normal((m, hi - lo, self.model.D))
        return out

    # ------------------------------------------------------------------ state
    def step(self, n: int = 1, t_end: float = math.inf) -> None:  # pragma: no cover - abstract
        """Advance ``n`` steps (``t_end`` is accepted and ignored: the step ``dt`` is fixed)."""
        raise NotImplementedError

    def fields(self) -> dict[str, np.ndarray]:
        """What the driver shows (views, no copies; names of :data:`mfpde.engine.protocol.FIELDS`):
        ``theta`` (N, D) and, for the NC model, ``W`` (p, q)."""
        out = {"theta": self.theta}
        if self.W is not None:
            out["W"] = self.W
        return out

    def _extra_state(self) -> dict:
        """Arrays a subclass adds to the checkpoint (e.g. velocities); restored by
        :meth:`_load_extra_state`."""
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass

    def state_dict(self) -> dict:
        """Complete state (copies): ``theta``, ``W``, ``k``, ``rng`` (JSON text), ``perm``,
        ``cursor``, ``noise_streams`` (block streams with noise: (chunks, 6) uint64 PCG64 states,
        :func:`pcg64_words`), the unused online samples ``sample_X``, ``sample_Y`` (None when
        the buffer is empty) and the subclass's extra arrays."""
        out = {
            "theta": self.theta.copy(),
            "W": None if self.W is None else self.W.copy(),
            "k": int(self.k),
            "rng": json.dumps(self.rng.bit_generator.state),
            "perm": self._perm.copy(),
            "cursor": int(self._cursor),
        }
        if self._streams is not None:
            out["noise_streams"] = (np.stack([pcg64_words(g) for g in self._streams])
                                    if self._streams else np.zeros((0, 6), dtype=np.uint64))
        out.update(self._sample_state())
        out.update(self._extra_state())
        return out

    def load_state_dict(self, state: dict) -> None:
        """Restore a state written by :meth:`state_dict` (bitwise resume)."""
        theta = np.asarray(state["theta"], dtype=np.float64)
        if theta.shape != self.theta.shape:
            raise ValueError(f"checkpoint theta has shape {theta.shape}, solver has {self.theta.shape}")
        self.theta[...] = theta
        if self.W is not None:
            self.W[...] = np.asarray(state["W"], dtype=np.float64)
        self.k = int(state["k"])
        rng_state = state["rng"]
        self.rng.bit_generator.state = json.loads(rng_state) if isinstance(rng_state, (str, bytes)) else rng_state
        self._perm = np.asarray(state.get("perm", np.zeros(0)), dtype=np.int64).copy()
        self._cursor = int(state.get("cursor", 0))
        streams = state.get("noise_streams")
        if self._streams is not None:
            if streams is None:
                raise ValueError("the checkpoint has no block noise streams (noise_stream = "
                                 "'single'); the driver uses noise_stream = 'blocks'")
            streams = np.asarray(streams, dtype=np.uint64)
            if streams.shape != (len(self._streams), 6):
                raise ValueError(f"checkpoint noise_streams has shape {streams.shape}, the "
                                 f"driver has {len(self._streams)} block streams")
            for gen, words in zip(self._streams, streams):
                set_pcg64_words(gen, words)
        elif streams is not None and math.isfinite(self.beta):
            raise ValueError("the checkpoint has block noise streams (noise_stream = 'blocks'); "
                             "the driver uses noise_stream = 'single'")
        self._load_sample_state(state)
        self._load_extra_state(state)
