"""Compiled kernels: the element-wise and loop work, and the matrix products it is fused with.

Nothing but compiled kernels (and the thin wrappers that pick a serial or parallel variant or
split rows in chunks) lives here, all compiled under the one policy of :func:`mfpde._numba.jit`:

============================  ======================================================================
:mod:`.activations`           ``sigma, sigma', sigma''`` by activation code, element-wise evaluation,
                              the vectorisable ``tanh_simd`` of the fused loops
:mod:`.readout`               per-chunk forward / backward of the read-out gradient pass, the
                              Euler–Maruyama row update
:mod:`.gemm`                  the products ``X_b U^T`` and ``B^T X_b`` of that pass for a larger
                              ``d_in``: LLVM vector tiles, one fused multiply-add chain per entry
:mod:`.online`                the fused multi-step online / small-batch SGD kernel
:mod:`.kinetic`               the fused heavy-ball and splitting sub-steps
:mod:`.grid`                  finite-volume fluxes and right-hand sides, the compiled multi-step
                              Euler / SSP-RK2 loop (1-D and 2-D), tridiagonal solves
:mod:`.ot`                    the 1-D quantile merge of the Wasserstein distances
============================  ======================================================================

Every kernel is deterministic whatever the number of threads: chunk kernels are serial (the model
runs chunks concurrently, each output owned by one chunk), parallel update loops write disjoint
outputs, and every reduction has a fixed order, so ``NUMBA_NUM_THREADS`` never changes a result.
"""
from .online import online_steps
from .readout import (assemble_chunk, backward_chunk, backward_s, chunk_bounds, em_update,
                      forward_chunk, forward_s, prepass, prepass_s, sweep_s)

__all__ = ["assemble_chunk", "backward_chunk", "backward_s", "chunk_bounds", "em_update",
           "forward_chunk", "forward_s", "online_steps", "prepass", "prepass_s", "sweep_s"]
