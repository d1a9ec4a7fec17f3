"""Flat device views of score and label volumes, without copies.

Accepted on the device: numba-cuda device arrays, CuPy arrays, PyTorch CUDA
tensors, anything exposing ``__cuda_array_interface__``, and DLPack producers
on a CUDA device (through CuPy or PyTorch, whichever is installed; DLPack
import is zero-copy). Host arrays go through the CPU path's checks (byte
order, strides, float16 bits) and are copied over once.

As on the CPU, kernels read 1-D views in the scores' memory order (C or F).
A device volume that is neither C- nor F-contiguous, or labels in the other
order, need one device copy, made with CuPy (an ``InputError`` says so when
CuPy is missing).
"""

import numpy as np
from numba import cuda

from .._device import on_device
from .._validate import flat_labels, flat_scores, label_target
from ..errors import InputError, ScoreDtypeError, volume_name
from . import _kernels as K
from ._launch import blocks_for, launch


def _cuda_interface(obj):
    try:
        return getattr(obj, "__cuda_array_interface__", None)
    except Exception:  # torch raises RuntimeError for tensors that require grad
        return None


def _from_dlpack(obj, name):
    try:
        import cupy
    except ImportError:
        cupy = None
    if cupy is not None:
        return cuda.as_cuda_array(cupy.from_dlpack(obj))
    try:
        import torch
    except ImportError:
        raise InputError(
            f"{volume_name(name)}: a DLPack array on the GPU needs CuPy or PyTorch to be read "
            "(or pass an object with __cuda_array_interface__)"
        ) from None
    return cuda.as_cuda_array(torch.from_dlpack(obj))


def device_array(obj, name=None):
    """A numba device array viewing ``obj`` (a device array already), or None for host arrays."""
    if getattr(obj, "__cuda_ndarray__", False):
        return obj
    if _cuda_interface(obj) is None and hasattr(obj, "detach") and hasattr(obj, "is_cuda"):
        if obj.is_cuda:  # a torch tensor that requires grad: read its data, never its graph
            obj = obj.detach()
    if _cuda_interface(obj) is not None:
        return cuda.as_cuda_array(obj)
    if on_device(obj):
        return _from_dlpack(obj, name)
    return None


def _order(array):
    if array.is_c_contiguous():
        return "C"
    if array.is_f_contiguous():
        return "F"
    return None


def _device_copy(array, order, name, what):
    try:
        import cupy
    except ImportError:
        raise InputError(
            f"{volume_name(name)}: {what} on the GPU are not contiguous in {order} order; "
            "make them contiguous first (or install CuPy, which copies them on the device)"
        ) from None
    copy = cupy.asarray(array)
    copy = cupy.ascontiguousarray(copy) if order == "C" else cupy.asfortranarray(copy)
    return cuda.as_cuda_array(copy)


class DeviceVolume:
    """Flat device views of one volume's scores (and labels), in one memory order.

    Attributes
    ----------
    scores, labels : numba device arrays (1-D), labels may be None
    shape : tuple
    order : "C" or "F"
    host : bool
        Whether the scores came from host memory (results go back to the host).
    source : object
        The caller's score array (its library decides the type of masks).
    target, use_target : the lesion rule, as on the CPU.
    """

    __slots__ = ("scores", "labels", "shape", "order", "host", "source", "target", "use_target")


def _check_score_dtype(dtype, name):
    if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
        raise ScoreDtypeError(
            f"{volume_name(name)}: scores have dtype {dtype}; clskern reads float16, float32 "
            "or float64 scores (cast integer or quantised scores to float32 first)"
        )


def device_scores(scores, name=None):
    """A ``DeviceVolume`` holding the scores (labels unset)."""
    vol = DeviceVolume()
    vol.source = scores
    vol.labels = None
    array = device_array(scores, name)
    if array is None:
        flat, order, host_array = flat_scores(scores, name)
        if flat.dtype == np.uint16:
            flat = flat.view(np.float16)
        vol.scores = cuda.to_device(flat)
        vol.shape, vol.order, vol.host = host_array.shape, order, True
        return vol
    _check_score_dtype(np.dtype(array.dtype), name)
    order = _order(array)
    if order is None:
        array, order = _device_copy(array, "C", name, "scores"), "C"
    vol.scores = array.ravel(order=order)
    vol.shape, vol.order, vol.host = tuple(array.shape), order, False
    return vol


def device_volume(scores, labels, label=None, name=None):
    """A ``DeviceVolume`` with scores, labels and the lesion rule."""
    vol = device_scores(scores, name)
    array = device_array(labels, name)
    if array is None:
        flat = flat_labels(labels, vol.shape, vol.order, name)
    else:
        dtype = np.dtype(array.dtype)
        if dtype.kind not in "biuf":
            raise ScoreDtypeError(
                f"{volume_name(name)}: labels have dtype {dtype}; clskern reads bool, integer or float labels"
            )
        if tuple(array.shape) != vol.shape:
            raise InputError(
                f"{volume_name(name)}: scores have shape {vol.shape} but labels have shape {tuple(array.shape)}"
            )
        both = array.is_c_contiguous() and array.is_f_contiguous()
        if not both and _order(array) != vol.order:
            array = _device_copy(array, vol.order, name, "labels")
        flat = array.ravel(order=vol.order)
        if dtype == np.bool_:
            flat = flat.view(np.uint8)
    if np.dtype(flat.dtype) == np.float16:  # compared as float32: float16 arithmetic needs C++ shims
        if isinstance(flat, np.ndarray):
            flat = flat.astype(np.float32)
        else:
            wide = cuda.device_array(flat.size, np.float32)
            launch(K.widen_kernel, blocks_for(flat.size, K.TPB, 8, 2), K.TPB, flat, wide)
            flat = wide
    vol.target, vol.use_target = label_target(label, np.dtype(flat.dtype), name)
    vol.labels = cuda.to_device(flat) if isinstance(flat, np.ndarray) else flat
    return vol
