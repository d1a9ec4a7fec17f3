"""Element access shared by the CPU kernels.

Numba's CPU target has no float16, so float16 volumes reach the kernels as
their uint16 bit patterns (a view, no copy) and ``score_value`` decodes them
exactly to float32. For float32/float64 it is the identity.

Inlined into the kernels, and Numba's cache keys a compiled function on its
own source file: after editing this file, delete ``clskern/cpu/__pycache__``
so the callers recompile.
"""

import numpy as np
from numba import types
from numba.extending import overload

from .._jit import njit


def score_value(x):
    """A score element as a float (Python reference of the overload below)."""
    if isinstance(x, np.uint16):
        return np.uint16(x).view(np.float16).astype(np.float32)
    return x


@njit(cache=True, inline="always")
def half_bits_to_float32(h):
    """Decode IEEE binary16 bits exactly (subnormals, infinities and NaN included)."""
    sign = (h >> 15) & 1
    exponent = (h >> 10) & 0x1F
    mantissa = h & 0x3FF
    if exponent == 0:
        value = np.float32(mantissa) * np.float32(2.0**-24)
    elif exponent == 31:
        value = np.float32(np.inf) if mantissa == 0 else np.float32(np.nan)
    else:
        value = np.float32(1024 + mantissa) * np.float32(2.0 ** (exponent - 25))
    return -value if sign else value


@overload(score_value)
def _score_value_overload(x):
    if isinstance(x, types.Integer) and x.bitwidth == 16 and not x.signed:
        return lambda x: half_bits_to_float32(x)
    if isinstance(x, types.Float):
        return lambda x: x
    return None
