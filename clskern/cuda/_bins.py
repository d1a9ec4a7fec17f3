"""Device twin of ``clskern.cpu._bins.bin_index``.

The same arithmetic on the float64 bit pattern (float16/32 scores convert to
float64 exactly on the device too), so a score lands in the same histogram bin
on the GPU as on the CPU. The constants come from ``clskern._binning``, the
grid both backends share; the tests compare both functions on edges, signed
zeros, subnormals and infinities.
"""

import numpy as np
from numba import cuda

from .._binning import _HALF, _HIGH_BITS, _LOW_BITS, _MAG_MASK, _SHIFT, _TOP

_U_MAG_MASK = np.uint64(_MAG_MASK)
_U_LOW = np.uint64(_LOW_BITS)
_U_HIGH = np.uint64(_HIGH_BITS)
_U_SHIFT = np.uint64(_SHIFT)
_U_ONE = np.uint64(1)
_U_SIGN_SHIFT = np.uint64(63)
_U_ZERO = np.uint64(0)


@cuda.jit(device=True, inline="always")
def float_bits(x):
    """The float64 bit pattern of ``x`` as uint64."""
    return np.float64(x).view(np.uint64)


@cuda.jit(device=True, inline="always")
def bin_index(x):
    """Histogram bin of the score ``x`` (not NaN), equal to the CPU ``bin_index``."""
    u = float_bits(x)
    mag = u & _U_MAG_MASK
    negative = (u >> _U_SIGN_SHIFT) != _U_ZERO and mag != _U_ZERO  # -0.0 counts as +0.0
    if negative:
        mag -= _U_ONE  # |x| in (lo, hi]  <=>  x in [-hi, -lo)
    if mag < _U_LOW:
        m = 0
    elif mag >= _U_HIGH:
        m = _TOP
    else:
        m = np.int64((mag - _U_LOW) >> _U_SHIFT) + 1
    if negative:
        return _HALF - 1 - m
    return _HALF + m


@cuda.jit(device=True, inline="always")
def order_key(x):
    """An unsigned key of ``x`` whose integer order is the float order (-0.0 < +0.0)."""
    u = float_bits(x)
    if (u >> _U_SIGN_SHIFT) != _U_ZERO:
        return ~u
    return u | (_U_ONE << _U_SIGN_SHIFT)
