"""Vector primitives for the hot loops, as Numba intrinsics.

- ``lesion_mask64(labels, start, target, use_target)``: a uint64 whose bit i
  says whether ``labels[start + i]`` is lesion, from one vector compare.
- ``compress16(src, start, mask, dst, o)``: copy the elements of
  ``src[start:start + 16]`` whose bit is set in ``mask`` (low 16 bits) to
  ``dst[o:]``, packed and in order; returns how many. It stores a whole
  16-element vector, so ``dst`` needs 16 slots from ``o`` on (the caller keeps
  that slack); lanes past the count are garbage for the next store to cover.

- ``bins16_f32(src, start, dst, dst_start)``: the histogram bins of 16
  float32 scores (the grid of ``clskern._binning``), as uint16, in 32-bit lanes.

All are generic LLVM operations (a vector ``icmp``/``fcmp``,
``llvm.experimental.vector.compress``), so they compile on every CPU LLVM
targets: with AVX-512 they are a compare into a mask register and a
``vcompressps`` (the register form: the memory form is microcoded and slow on
AMD Zen 4), elsewhere LLVM expands them. They move bits only: no float
arithmetic, so float16 bit patterns (uint16) pass through unchanged.

``llvm.experimental.vector.compress`` needs LLVM 19 (llvmlite 0.45); with an
older llvmlite the plain loops below are used instead (same results).

Numba's cache keys a compiled function on its own source file, and these
primitives are inlined into their callers: after editing this file, delete
``clskern/cpu/__pycache__`` so the callers recompile.
"""

import numpy as np
from llvmlite import binding as _llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._binning import _HALF, _LOW_BITS32, _SHIFT32, _TOP
from .._jit import njit

MASK_LANES = 64
COMPRESS_LANES = 16
SLACK = COMPRESS_LANES  # slots a compress16 may write past its count

VECTOR_COMPRESS = _llvm.llvm_version_info >= (19, 0)


def _element_pointer(context, builder, array_type, array, index):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [index])


def _splat(builder, vector_type, scalar):
    vector = ir.Constant(vector_type, ir.Undefined)
    for lane in range(vector_type.count):
        vector = builder.insert_element(vector, scalar, ir.Constant(ir.IntType(32), lane))
    return vector


def _positive(builder, dtype, vector):
    zero = ir.Constant(vector.type, None)
    if isinstance(dtype, types.Float):
        return builder.fcmp_ordered(">", vector, zero)
    if dtype.signed:
        return builder.icmp_signed(">", vector, zero)
    return builder.icmp_unsigned("!=", vector, zero)


def _equal(builder, dtype, vector, target):
    if isinstance(dtype, types.Float):
        return builder.fcmp_ordered("==", vector, target)
    return builder.icmp_unsigned("==", vector, target)


def _contiguous(*arrays):
    """Whether every array is typed C-contiguous (the intrinsics ignore strides)."""
    return all(isinstance(a, types.Array) and a.layout == "C" for a in arrays)


@intrinsic
def _lesion_mask64_vector(typingctx, labels, start, target, use_target):
    if not _contiguous(labels):
        return None
    dtype = labels.dtype

    def codegen(context, builder, signature, args):
        array, index, target_value, use = args
        element = context.get_data_type(dtype)
        vector_type = ir.VectorType(element, MASK_LANES)
        pointer = _element_pointer(context, builder, signature.args[0], array, index)
        vector = builder.load(builder.bitcast(pointer, vector_type.as_pointer()), align=1)
        target_cast = context.cast(builder, target_value, signature.args[2], dtype)
        equal = _equal(builder, dtype, vector, _splat(builder, vector_type, target_cast))
        chosen = builder.select(context.cast(builder, use, signature.args[3], types.boolean), equal, _positive(builder, dtype, vector))
        return builder.bitcast(chosen, ir.IntType(MASK_LANES))

    return types.uint64(labels, start, target, use_target), codegen


@intrinsic
def _compress16_vector(typingctx, src, start, mask, dst, o):
    if not _contiguous(src, dst) or src.dtype != dst.dtype:
        return None

    def codegen(context, builder, signature, args):
        source, index, bits, destination, offset = args
        element = context.get_data_type(signature.args[0].dtype)
        # One 512-bit register at a time: LLVM 22 miscompiles the split of a
        # wider compress (16 doubles crashed), so 64-bit lanes go 8 by 8.
        lanes = min(COMPRESS_LANES, 512 // _bit_width(element))
        vector_type = ir.VectorType(element, lanes)
        lane_mask_type = ir.VectorType(ir.IntType(1), lanes)
        compress = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(vector_type, [vector_type, lane_mask_type, vector_type]),
            f"llvm.experimental.vector.compress.v{lanes}{_llvm_suffix(element)}",
        )
        popcount = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(lanes), [ir.IntType(lanes)]), f"llvm.ctpop.i{lanes}"
        )
        written = ir.Constant(ir.IntType(64), 0)
        for part in range(COMPRESS_LANES // lanes):
            first = builder.add(index, ir.Constant(index.type, part * lanes))
            pointer = _element_pointer(context, builder, signature.args[0], source, first)
            vector = builder.load(builder.bitcast(pointer, vector_type.as_pointer()), align=1)
            part_bits = builder.trunc(builder.lshr(bits, ir.Constant(bits.type, part * lanes)), ir.IntType(lanes))
            packed = builder.call(compress, [vector, builder.bitcast(part_bits, lane_mask_type), ir.Constant(vector_type, ir.Undefined)])
            target = _element_pointer(context, builder, signature.args[3], destination, builder.add(offset, written))
            builder.store(packed, builder.bitcast(target, vector_type.as_pointer()), align=1)
            written = builder.add(written, builder.zext(builder.call(popcount, [part_bits]), ir.IntType(64)))
        return written

    return types.int64(src, start, mask, dst, o), codegen


def _bit_width(element):
    if isinstance(element, ir.FloatType):
        return 32
    if isinstance(element, ir.DoubleType):
        return 64
    return element.width


def _llvm_suffix(element):
    if isinstance(element, ir.FloatType):
        return "f32"
    if isinstance(element, ir.DoubleType):
        return "f64"
    return f"i{element.width}"


@njit(cache=True, inline="always")
def is_lesion(x, target, use_target):
    """The lesion rule for one label (the scalar form of ``lesion_mask64``)."""
    if use_target:
        return x == target
    return x > 0


@njit(cache=True)
def _lesion_mask64_loop(labels, start, target, use_target):
    m = np.uint64(0)
    for i in range(MASK_LANES):
        if is_lesion(labels[start + i], target, use_target):
            m |= np.uint64(1) << np.uint64(i)
    return m


@njit(cache=True)
def _compress16_loop(src, start, mask, dst, o):
    k = 0
    for i in range(COMPRESS_LANES):
        if (mask >> np.uint64(i)) & np.uint64(1):
            dst[o + k] = src[start + i]
            k += 1
    return k


if VECTOR_COMPRESS:
    lesion_mask64, compress16 = _lesion_mask64_vector, _compress16_vector
else:  # pragma: no cover - llvmlite older than 0.45
    lesion_mask64, compress16 = _lesion_mask64_loop, _compress16_loop


@intrinsic
def popcount64(typingctx, bits):
    """Set bits of a uint64 (``llvm.ctpop``: one instruction where the CPU has one)."""

    def codegen(context, builder, signature, args):
        word = context.cast(builder, args[0], signature.args[0], types.uint64)
        ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(word.type, [word.type]), "llvm.ctpop.i64")
        return builder.call(ctpop, [word])

    return types.int64(bits), codegen


@intrinsic
def bins16_f32(typingctx, src, start, dst, dst_start):
    """Histogram bins of ``src[start:start + 16]`` (float32) into uint16 ``dst``.

    ``bin_index_f32`` on 16 lanes of int32: Numba widens every integer
    operation to int64 (8 lanes a vector, then a narrowing), which made the
    bin arithmetic cost more than the scatter it feeds; this is 1.7 x faster
    for the whole histogram.
    """
    if not _contiguous(src, dst) or src.dtype != types.float32 or dst.dtype != types.uint16:
        return None

    def codegen(context, builder, signature, args):
        source, index, destination, offset = args
        lanes = ir.VectorType(ir.IntType(32), COMPRESS_LANES)

        def splat(value):
            return ir.Constant(lanes, [ir.Constant(ir.IntType(32), value)] * COMPRESS_LANES)

        pointer = _element_pointer(context, builder, signature.args[0], source, index)
        bits = builder.load(builder.bitcast(pointer, lanes.as_pointer()), align=1)
        magnitude = builder.and_(bits, splat(0x7FFFFFFF))
        negative = builder.and_(builder.icmp_signed("<", bits, splat(0)), builder.icmp_signed("!=", magnitude, splat(0)))
        lowered = builder.sub(builder.sub(magnitude, builder.zext(negative, lanes)), splat(_LOW_BITS32))
        shifted = builder.add(builder.ashr(lowered, splat(_SHIFT32)), splat(1))
        clamped = builder.select(builder.icmp_signed("<", shifted, splat(0)), splat(0), shifted)
        clamped = builder.select(builder.icmp_signed(">", clamped, splat(_TOP)), splat(_TOP), clamped)
        above = builder.add(splat(_HALF), clamped)
        below = builder.sub(builder.sub(splat(_HALF), clamped), splat(1))
        bins = builder.trunc(builder.select(negative, below, above), ir.VectorType(ir.IntType(16), COMPRESS_LANES))
        target = _element_pointer(context, builder, signature.args[2], destination, offset)
        builder.store(bins, builder.bitcast(target, bins.type.as_pointer()), align=1)
        return context.get_dummy_value()

    return types.void(src, start, dst, dst_start), codegen
