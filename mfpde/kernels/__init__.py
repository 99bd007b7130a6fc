"""Hot Numba kernels: the element-wise work fused around the BLAS products of a particle step.

Nothing but compiled kernels lives here. Every kernel is deterministic whatever the number of
threads: chunk kernels are serial (the model runs chunks concurrently, each output owned by one
chunk), parallel update loops write disjoint outputs, and every reduction has a fixed order, so
``NUMBA_NUM_THREADS`` never changes a result.
"""
from .online import online_steps
from .readout import (assemble_chunk, backward_chunk, backward_s, chunk_bounds, em_update,
                      forward_chunk, forward_s, prepass, prepass_s, project)

__all__ = ["assemble_chunk", "backward_chunk", "backward_s", "chunk_bounds", "em_update",
           "forward_chunk", "forward_s", "online_steps", "prepass", "prepass_s", "project"]
