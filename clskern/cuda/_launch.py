"""Kernel launches: grid sizes, zeroed buffers, and numba-cuda's small-grid warning."""

import warnings

import numpy as np
from numba import config, cuda

from . import _kernels as K


def multiprocessors():
    return int(cuda.get_current_device().MULTIPROCESSOR_COUNT)


def blocks_for(n_work, per_block, blocks_per_sm, simulated=1):
    """Blocks for ``n_work`` items of ``per_block``: enough to fill the GPU, no more.

    The simulator runs ``simulated`` blocks at most (each costs a Python
    thread per GPU thread); the tile kernels ask for two, so that their
    loops over tiles and the merging of blocks are exercised.
    """
    need = max(1, -(-n_work // per_block))
    if config.ENABLE_CUDASIM:
        return min(need, simulated)
    return min(need, blocks_per_sm * multiprocessors())


try:  # numba-cuda's own class, not numba.NumbaPerformanceWarning
    from numba.cuda.core.errors import NumbaPerformanceWarning as PerformanceWarning
except ImportError:  # pragma: no cover - older numba-cuda
    from numba.core.errors import NumbaPerformanceWarning as PerformanceWarning


def launch(kernel, grid, block, *args):
    """``kernel[grid, block](*args)`` without numba-cuda's small-grid warning.

    Grids here are as large as the work needs (one block for a scan, a few
    for a small lesion set); numba-cuda warns below 128 blocks on every call.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PerformanceWarning)
        configured = kernel[grid, block]
    configured(*args)


def zeros(n, dtype=np.int64):
    """A zeroed device array: small ones copied over, large ones cleared by a kernel."""
    if n <= 4096 or config.ENABLE_CUDASIM:  # the simulator would clear 1 MB in Python
        return cuda.to_device(np.zeros(n, dtype))
    out = cuda.device_array(n, dtype)
    launch(K.zero_kernel, blocks_for(n, K.TPB, 8), K.TPB, out)
    return out
