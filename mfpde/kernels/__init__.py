"""Hot Numba kernels: the element-wise work fused around the BLAS products of a particle step.

Nothing but compiled kernels lives here. Every kernel is deterministic whatever the number of
threads: parallel loops write disjoint outputs, and every reduction runs serially inside one
thread (column tiles), so ``NUMBA_NUM_THREADS`` never changes a result.
"""
from .readout import activate_block, backprop_block, em_update

__all__ = ["activate_block", "backprop_block", "em_update"]
