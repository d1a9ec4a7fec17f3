"""The sizes a file's header declares, checked before anything is inflated or allocated.

One rule for the three headers clskern reads (NIfTI, ``.npy``, an ``.npz``
member): no negative dimension, at least one voxel, and a byte count int64
can hold. A damaged header fails here in one line naming the file, instead of
as a ``MemoryError`` or a wrapped-around size further on.
"""

from __future__ import annotations

from .errors import FileFormatError

INT64_MAX = 2**63 - 1


def declared_bytes(shape: tuple[int, ...], itemsize: int, path: str, what: str, offset: int = 0) -> int:
    """``offset + voxels * itemsize`` of a declared ``shape``, or ``FileFormatError`` naming ``what``."""
    if any(n < 0 for n in shape):
        raise FileFormatError(f"{path}: {what} declares a negative dimension (shape {shape})")
    voxels = 1
    for n in shape:
        voxels *= n
    if voxels == 0:
        raise FileFormatError(f"{path}: {what} of shape {shape} holds no voxels")
    needed = offset + voxels * itemsize
    if needed > INT64_MAX:
        raise FileFormatError(f"{path}: {what} of shape {shape} declares {needed} bytes, more than int64 can count")
    return needed
