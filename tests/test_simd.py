"""The vector primitives of clskern.cpu._simd against their plain-loop forms."""

import numpy as np
import pytest
from numba import njit

from clskern.cpu import _simd

LABEL_DTYPES = [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64, np.float32, np.float64]


def mask_words(primitive):
    """A compiled loop applying one mask primitive to each 64 labels."""

    @njit
    def words(labels, target, use_target):
        out = np.empty(labels.size // 64, np.uint64)
        for j in range(out.size):
            out[j] = primitive(labels, 64 * j, target, use_target)
        return out

    return words


VECTOR_MASKS, LOOP_MASKS = mask_words(_simd.lesion_mask64), mask_words(_simd._lesion_mask64_loop)


@pytest.mark.parametrize("dtype", LABEL_DTYPES)
@pytest.mark.parametrize("use_target", [False, True])
def test_lesion_mask64_matches_the_loop(dtype, use_target):
    rng = np.random.default_rng(0)
    values = rng.integers(-2 if np.dtype(dtype).kind != "u" else 0, 4, 64 * 40)
    labels = values.astype(dtype)
    labels[64 * 3 : 64 * 4] = 0  # an empty mask
    labels[64 * 5 : 64 * 6] = 2  # a full one (> 0 and == 2)
    target = dtype(2)
    got = VECTOR_MASKS(labels, target, use_target)
    want = LOOP_MASKS(labels, target, use_target)  # the lesion rule, one label at a time
    np.testing.assert_array_equal(got, want)
    bits = np.unpackbits(want.view(np.uint8), bitorder="little").astype(bool)
    np.testing.assert_array_equal(bits, labels == 2 if use_target else labels > 0)
    assert got[3] == 0 and got[5] == np.uint64(2**64 - 1)


def compressor(primitive):
    """A compiled loop applying one compress primitive to each 16 elements."""

    @njit
    def compress_all(src, words, out):
        o = 0
        for j in range(words.size):
            o += primitive(src, 16 * j, words[j], out, o)
        return o

    return compress_all


VECTOR_COMPRESS, LOOP_COMPRESS = compressor(_simd.compress16), compressor(_simd._compress16_loop)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
def test_compress16_packs_the_selected_elements_in_order(dtype):
    rng = np.random.default_rng(1)
    n_words = 50
    src = (rng.random(16 * n_words) * 1000).astype(dtype)
    words = rng.integers(0, 1 << 16, n_words).astype(np.uint64)
    words[[0, 7]] = 0
    words[[3, 9]] = 0xFFFF
    selected = np.unpackbits(words.astype("<u2").view(np.uint8), bitorder="little").astype(bool)
    expected = src[selected]
    for compress_all in (VECTOR_COMPRESS, LOOP_COMPRESS):
        out = np.full(expected.size + _simd.SLACK, 7, dtype)
        assert compress_all(src, words, out) == expected.size
        np.testing.assert_array_equal(out[: expected.size], expected)


def test_compress16_keeps_bit_patterns():
    src = np.array([-0.0, np.nan, np.inf, -np.inf, 1e-45, -1e-45] + [0.5] * 10, np.float32)
    src[1] = np.frombuffer(np.uint32(0x7FC00123).tobytes(), np.float32)[0]  # a NaN payload
    out = np.zeros(32, np.float32)
    assert VECTOR_COMPRESS(src, np.array([0x3F], np.uint64), out) == 6
    np.testing.assert_array_equal(out[:6].view(np.uint32), src[:6].view(np.uint32))


@njit
def popcounts(words):
    out = np.empty(words.size, np.int64)
    for i in range(words.size):
        out[i] = _simd.popcount64(words[i])
    return out


def test_popcount64():
    words = np.array([0, 1, 2**63, 2**64 - 1, 0xF0F0], np.uint64)
    np.testing.assert_array_equal(popcounts(words), [0, 1, 1, 64, 8])
