"""Lesions as connected components (clskern.cpu._components, SPEC 1b) against SciPy and brute force.

The reference labels the lesion mask with ``scipy.ndimage.label`` and a
``generate_binary_structure(3, 1/2/3)`` (6/18/26-connectivity), orders the
components by the C-order index of their first voxel and sorts each one's
scores; detection scores take the ``r``-th largest of each sorted lesion with
``r`` from ``fractions.Fraction``; critical thresholds sort ``d`` and find
``k`` by trying every ``j``.
"""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

import clskern
from clskern import _lesions
from clskern.cpu import _components as components
from clskern.errors import ArgumentError, EmptyGroundTruthError, InputError, NaNScoresError

STRUCTURE_RANK = {6: 1, 18: 2, 26: 3}
SCORE_DTYPES = ["<f2", ">f2", "<f4", ">f4", "<f8", ">f8"]
LABEL_DTYPES = ["|b1", "|u1", ">i2", "<i4", "<f4", ">f8"]
OVERLAPS = [0.0, 0.3, 0.5, 1.0, 1 / 3, 5e-324, 0.1, 0.7]
SIDES = [1, 1, 2, 3, 4, 5, 6, 7, 9, 63, 64, 65, 130]  # rows of 64 and more take the vector path


# -- references --------------------------------------------------------------------


def lesion_mask(labels, label):
    labels = np.asarray(labels)
    return labels == label if label is not None else labels > 0


def reference_lesions(scores, labels, label, connectivity):
    """``(offsets, scores as float64)`` by SciPy: components by first C-order voxel, each sorted."""
    mask = lesion_mask(labels, label)
    structure = ndimage.generate_binary_structure(3, STRUCTURE_RANK[connectivity])
    component, n = ndimage.label(mask, structure)
    flat = component.ravel(order="C")
    values = np.asarray(scores).astype(np.float64).ravel(order="C") + 0.0
    ids, first = np.unique(flat, return_index=True)
    keep = ids > 0
    ids = ids[keep][np.argsort(first[keep])]
    assert ids.size == n
    offsets = [0]
    parts = []
    for c in ids:
        part = np.sort(values[flat == c])
        parts.append(part)
        offsets.append(offsets[-1] + part.size)
    return np.array(offsets, np.int64), (np.concatenate(parts) if parts else np.empty(0))


def reference_detection(offsets, values, overlap):
    d = []
    for j in range(offsets.size - 1):
        lesion = values[offsets[j] : offsets[j + 1]]
        r = max(1, math.ceil(Fraction(overlap) * lesion.size))
        d.append(sorted(lesion.tolist(), reverse=True)[r - 1])
    return np.array(d, np.float64)


def reference_threshold(d, epsilon):
    d = np.sort(np.asarray(d, np.float64))
    n = d.size
    k = max(j for j in range(n) if j / n <= epsilon)
    return float(d[k])


def lesion_threshold(scores, labels, epsilon, **options):
    """The public lesion-level critical threshold (``clskern.critical_threshold(level="lesion")``)."""
    return clskern.critical_threshold(scores, labels, epsilon, level="lesion", **options)


def lesion_dtype(scores):
    return np.float64 if np.asarray(scores).dtype.itemsize == 8 else np.float32


# -- volumes -----------------------------------------------------------------------


def _chain_mask(shape, rng, step):
    """Voxels along a chain with the given step, from a random start: joins or splits by connectivity."""
    mask = np.zeros(shape, bool)
    for _ in range(rng.integers(1, 4)):
        position = np.array([rng.integers(0, s) for s in shape])
        for _ in range(max(shape)):
            if np.any(position < 0) or np.any(position >= shape):
                break
            mask[tuple(position)] = True
            position = position + step
    return mask


@st.composite
def masks(draw, shape):
    """A lesion mask of a given style (as an int array of classes 0..3 when multi-label)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    style = draw(st.sampled_from(["sparse", "dense", "full", "empty", "diagonal", "edge", "checker", "blobs", "isolated"]))
    size = int(np.prod(shape))
    if style == "sparse":
        mask = rng.random(shape) < 0.05
    elif style == "dense":
        mask = rng.random(shape) < draw(st.sampled_from([0.3, 0.5, 0.7, 0.9]))
    elif style == "full":
        mask = np.ones(shape, bool)
    elif style == "empty":
        mask = np.zeros(shape, bool)
    elif style == "diagonal":  # corner neighbours: one lesion under 26, split under 18 and 6
        mask = _chain_mask(shape, rng, np.array([1, 1, 1]) * rng.choice([-1, 1], 3))
    elif style == "edge":  # edge neighbours: one lesion under 18 and 26, split under 6
        step = np.array([1, 1, 0])
        rng.shuffle(step)
        mask = _chain_mask(shape, rng, step * rng.choice([-1, 1], 3))
    elif style == "checker":  # every voxel touches others by edges only
        i, j, k = np.indices(shape)
        mask = (i + j + k) % 2 == 0
    elif style == "blobs":  # boxes that may touch, overlap or stand apart
        mask = np.zeros(shape, bool)
        for _ in range(rng.integers(1, 6)):
            lo = [rng.integers(0, s) for s in shape]
            hi = [min(s, a + rng.integers(1, 5)) for a, s in zip(lo, shape)]
            mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    else:  # isolated voxels two apart: separate under every connectivity
        mask = np.zeros(shape, bool)
        mask[::2, ::2, ::2] = rng.random(mask[::2, ::2, ::2].shape) < 0.5
    if draw(st.booleans()) and size:  # multi-label: lesion voxels get classes 1..3
        classes = np.where(mask, rng.integers(1, 4, shape), 0)
        return classes, int(draw(st.integers(1, 3)))
    return mask.astype(np.int64), None


@st.composite
def shapes(draw, max_voxels=20_000):
    shape = tuple(draw(st.sampled_from(SIDES)) for _ in range(3))
    while np.prod(shape) > max_voxels:
        shape = tuple(max(1, s // 2) for s in shape)
    return shape


@st.composite
def volumes(draw):
    """``(scores, labels, label)``: any score/label dtype, byte order and memory layout."""
    shape = draw(shapes())
    classes, label = draw(masks(shape))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    size = int(np.prod(shape))
    style = draw(st.sampled_from(["probability", "logit", "ties", "few"]))
    if style == "probability":
        values = rng.random(size)
    elif style == "logit":
        values = rng.normal(0, 8, size) * 10.0 ** rng.integers(-6, 4, size)
    elif style == "ties":
        values = np.round(rng.random(size) * 4) / 4
    else:
        values = rng.choice([-0.0, 0.0, 0.25, 1.0, 1e-40, -3.5, np.inf, -np.inf], size)
    scores = values.astype(np.dtype(draw(st.sampled_from(SCORE_DTYPES)))).reshape(shape)
    label_dtype = np.dtype(draw(st.sampled_from(LABEL_DTYPES)))
    if label is not None and label_dtype.kind not in "iuf":
        classes, label = classes > 0, None
    labels = classes.astype(label_dtype)
    layout = draw(st.sampled_from(["C", "F", "strided"]))
    if layout == "F":
        scores, labels = np.asfortranarray(scores), np.asfortranarray(labels)
    elif layout == "strided":
        scores = np.repeat(scores, 2, axis=-1)[..., ::2]
    if draw(st.booleans()):  # labels in the other memory order (prepare copies them)
        labels = np.asfortranarray(labels) if layout != "F" else np.ascontiguousarray(labels)
    return scores, labels, label


connectivities = st.sampled_from([6, 18, 26])
epsilons = st.one_of(st.floats(0, 1, exclude_max=True), st.sampled_from([0.0, 0.1, 0.2, 0.29, 0.5, 0.9, 0.99]))


# -- labelling ---------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(volumes(), connectivities)
def test_lesions_equal_scipy_components(volume, connectivity):
    scores, labels, label = volume
    offsets, values = clskern.lesions(scores, labels, label=label, connectivity=connectivity)
    expected_offsets, expected_values = reference_lesions(scores, labels, label, connectivity)
    assert offsets.dtype == np.int64 and values.dtype == lesion_dtype(scores)
    np.testing.assert_array_equal(offsets, expected_offsets)
    np.testing.assert_array_equal(values.astype(np.float64), expected_values)
    assert not np.signbit(values[values == 0]).any()


@settings(max_examples=60, deadline=None)
@given(volumes(), connectivities)
def test_memory_order_never_changes_the_result(volume, connectivity):
    scores, labels, label = volume
    results = [
        clskern.lesions(convert(scores), convert(labels), label=label, connectivity=connectivity)
        for convert in (np.ascontiguousarray, np.asfortranarray)
    ]
    for got, want in zip(results[0], results[1]):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@settings(max_examples=60, deadline=None)
@given(volumes(), connectivities, st.sampled_from([0, 1, 2, 5]))
def test_rescan_of_overflowing_tasks(volume, connectivity, capacity):
    scores, labels, label = volume
    flat_s, flat_l, target, use_target, shape, order = components.prepare_volume(scores, labels, label, None)
    got = components.ragged_lesions(flat_s, flat_l, target, use_target, shape, order, connectivity, capacity=capacity)
    want = components.ragged_lesions(flat_s, flat_l, target, use_target, shape, order, connectivity)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    for overlap in (0.0, 0.5):
        flat = (flat_s, flat_l, target, use_target, shape, order, connectivity, overlap)
        got = components.detection_scores_flat(*flat, capacity=capacity)
        want = components.detection_scores_flat(*flat)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("capacity", [0, 1, None])
def test_nan_count_survives_the_rescan(capacity):
    labels = np.ones((3, 4, 70), np.uint8)
    labels[:, :, ::3] = 0  # many runs
    scores = np.full(labels.shape, 0.5, np.float32)
    scores[1, 2, 1] = scores[2, 3, 68] = scores[0, 0, 2] = np.nan
    scores[0, 0, 0] = np.nan  # background
    flat = components.prepare_volume(scores, labels, None, None)
    assert components.ragged_lesions(*flat, 26, capacity=capacity)[2] == 3
    for overlap in (0.0, 0.5):
        assert components.detection_scores_flat(*flat, 26, overlap, capacity=capacity)[2] == 3


@pytest.mark.parametrize("connectivity, expected", [(6, 10), (18, 10), (26, 1)])
def test_corner_chain_joins_under_26_only(connectivity, expected):
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[np.arange(10), np.arange(10), np.arange(10)] = 1
    offsets, _ = clskern.lesions(np.ones(labels.shape, np.float32), labels, connectivity=connectivity)
    assert offsets.size - 1 == expected


@pytest.mark.parametrize("connectivity, expected", [(6, 70), (18, 1), (26, 1)])
def test_edge_chain_splits_under_6(connectivity, expected):
    labels = np.zeros((3, 70, 70), np.uint8, order="F")
    labels[1, np.arange(70), np.arange(70)] = 1
    offsets, _ = clskern.lesions(np.ones(labels.shape, np.float16, order="F"), labels, connectivity=connectivity)
    assert offsets.size - 1 == expected


def test_long_rows_runs_across_words():
    rng = np.random.default_rng(3)
    labels = np.zeros((3, 4, 300), np.uint8)
    labels[1, 2, 60:200] = 1  # one run over three 64-voxel words (one all ones)
    labels[0, 1, 199:260] = 2  # touches it by a corner only
    labels[2, 3, 0:64] = 1  # one full word
    labels[2, 3, 290:300] = 1  # the row's tail
    scores = rng.random(labels.shape)
    for connectivity in (6, 18, 26):
        for convert in (np.ascontiguousarray, np.asfortranarray):
            got = clskern.lesions(convert(scores), convert(labels), connectivity=connectivity)
            want = reference_lesions(scores, labels, None, connectivity)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])


def test_larger_volumes_equal_scipy():
    rng = np.random.default_rng(4)
    for shape, density in [((40, 50, 70), 0.02), ((33, 65, 129), 0.4), ((1, 200, 150), 0.5), ((300, 1, 1), 0.6)]:
        labels = (rng.random(shape) < density).astype(np.uint8)
        labels = ndimage.binary_dilation(labels) if density < 0.1 else labels  # blobs
        scores = rng.random(shape).astype(np.float32)
        for connectivity in (6, 18, 26):
            want = reference_lesions(scores, labels, None, connectivity)
            for convert in (np.ascontiguousarray, np.asfortranarray):
                got = clskern.lesions(convert(scores), convert(labels), connectivity=connectivity)
                np.testing.assert_array_equal(got[0], want[0])
                np.testing.assert_array_equal(got[1].astype(np.float64), want[1])


@pytest.mark.parametrize("shape", [(1, 50, 70), (50, 70, 1), (50, 1, 70), (300, 1, 1), (1, 1, 300), (1, 1, 1)])
def test_unit_axes_in_either_order(shape):
    rng = np.random.default_rng(6)
    labels = (rng.random(shape) < 0.45).astype(np.uint8)
    scores = rng.random(shape)
    for connectivity in (6, 18, 26):
        want = reference_lesions(scores, labels, None, connectivity)
        for convert in (np.ascontiguousarray, np.asfortranarray):
            got = clskern.lesions(convert(scores), convert(labels), connectivity=connectivity)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])


def test_agrees_with_cc3d_when_installed():
    """cc3d is a comparison only, never a dependency: this test skips without it."""
    cc3d = pytest.importorskip("cc3d")
    rng = np.random.default_rng(7)
    labels = ndimage.binary_dilation(rng.random((60, 70, 80)) < 0.01).astype(np.uint8)
    scores = rng.random(labels.shape).astype(np.float32)
    for connectivity in (6, 18, 26):
        components_cc3d = cc3d.connected_components(labels, connectivity=connectivity)
        flat = components_cc3d.ravel()
        ids, first = np.unique(flat, return_index=True)
        ids = ids[ids > 0][np.argsort(first[ids > 0])]
        sizes = [np.count_nonzero(flat == c) for c in ids]
        for convert in (np.ascontiguousarray, np.asfortranarray):
            offsets, _ = clskern.lesions(convert(scores), convert(labels), connectivity=connectivity)
            assert np.diff(offsets).tolist() == sizes


def test_labels_choose_one_class_and_touching_classes_stay_apart():
    labels = np.zeros((4, 6, 8), np.int16)
    labels[1:3, 1:3, 1:4] = 2
    labels[1:3, 1:3, 4:7] = 3  # touches class 2 face to face
    scores = np.arange(labels.size, dtype=np.float64).reshape(labels.shape)
    for label, size in [(2, 12), (3, 12), (None, 24)]:
        offsets, values = clskern.lesions(scores, labels, label=label)
        assert offsets.tolist() == [0, size]
        np.testing.assert_array_equal(values, np.sort(scores[lesion_mask(labels, label)]))
    offsets, _ = clskern.lesions(scores, labels, label=1)
    assert offsets.tolist() == [0]


def test_no_lesions_and_empty_volumes():
    for shape in [(3, 4, 5), (0, 4, 5), (3, 0, 0)]:
        offsets, values = clskern.lesions(np.zeros(shape, np.float32), np.zeros(shape, np.uint8))
        assert offsets.tolist() == [0] and values.size == 0 and values.dtype == np.float32
        d = _lesions.detection_scores(offsets, values, 0.5)
        assert d.size == 0
        assert _lesions.lesion_critical_threshold(d, 0.2, "pass") == np.inf
        assert _lesions.lesion_critical_threshold(d, 0.2, "skip") is None
        with pytest.raises(EmptyGroundTruthError):
            _lesions.lesion_critical_threshold(d, 0.2, "error")
    np.testing.assert_array_equal(_lesions.lesion_critical_threshold([], [0.1, 0.2], "pass"), [np.inf, np.inf])


# -- detection scores and thresholds ----------------------------------------------


@settings(max_examples=300, deadline=None)
@given(volumes(), connectivities, st.sampled_from(OVERLAPS), epsilons)
def test_detection_scores_and_thresholds_equal_brute_force(volume, connectivity, overlap, epsilon):
    scores, labels, label = volume
    offsets, values = clskern.lesions(scores, labels, label=label, connectivity=connectivity)
    d = _lesions.detection_scores(offsets, values, overlap)
    want = reference_detection(offsets, values.astype(np.float64), overlap)
    assert d.dtype == values.dtype
    np.testing.assert_array_equal(d.astype(np.float64), want)
    flat = components.prepare_volume(scores, labels, label, None)
    fast, sizes, n_nan = components.detection_scores_flat(*flat, connectivity, overlap)
    assert n_nan == 0 and fast.dtype == d.dtype
    np.testing.assert_array_equal(fast, d)
    np.testing.assert_array_equal(sizes, np.diff(offsets))
    threshold = lesion_threshold(
        scores, labels, epsilon, label=label, connectivity=connectivity, overlap=overlap, empty="skip"
    )
    if d.size == 0:
        assert threshold is None
    else:
        assert threshold == reference_threshold(want, epsilon)
        assert isinstance(threshold, float)
        assert _lesions.lesion_critical_threshold(d, epsilon) == threshold
        missed = np.count_nonzero(want < threshold) / want.size  # L-FNR at the threshold
        assert missed <= epsilon


def test_required_voxels_is_exact():
    sizes = np.array([1, 2, 3, 7, 10, 100, 10**15 + 1])
    for overlap in OVERLAPS + [0.29, 0.9999999999999999]:
        want = [max(1, math.ceil(Fraction(overlap) * int(m))) for m in sizes]
        assert _lesions.required_voxels(sizes, overlap).tolist() == want
    # 0.1 is a hair above 1/10 as a float64 (0.1 * 10 rounds to 1.0): 10 voxels need 2;
    # 0.3 and 0.29 are a hair below 3/10 and 29/100.
    assert _lesions.required_voxels([10], 0.1).tolist() == [2]
    assert _lesions.required_voxels([10], 0.3).tolist() == [3]
    assert _lesions.required_voxels([100], 0.29).tolist() == [29]


def test_detection_with_selection_on_big_lesions_with_ties():
    rng = np.random.default_rng(5)
    labels = np.zeros((30, 40, 50), np.uint8)
    labels[2:28, 3:37, 4:46] = 1  # one lesion of 37128 voxels
    labels[29, 0, 0] = 1
    scores = rng.integers(0, 5, labels.shape).astype(np.float32)  # heavy ties
    for overlap in (1e-9, 0.25, 0.5, 0.999, 1.0):
        flat = components.prepare_volume(scores, labels, None, None)
        fast, _, _ = components.detection_scores_flat(*flat, 26, overlap)
        offsets, values = clskern.lesions(scores, labels)
        np.testing.assert_array_equal(fast, reference_detection(offsets, values.astype(np.float64), overlap))


def test_threshold_with_array_epsilon():
    d = np.array([0.9, 0.1, 0.5, 0.5, 0.7], np.float32)
    got = _lesions.lesion_critical_threshold(d, np.array([[0.0, 0.2], [0.39, 0.99]]))
    assert got.shape == (2, 2) and got.dtype == np.float64
    ordered = np.sort(d).astype(np.float64)  # k = 0, 1 (2/5 > 0.39), 1, 4
    np.testing.assert_array_equal(got, [[ordered[0], ordered[1]], [ordered[1], ordered[4]]])


# -- errors ------------------------------------------------------------------------


def test_nan_lesion_scores_raise_with_the_count_but_background_nan_is_not_read():
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    scores = np.zeros(labels.shape, np.float16)
    scores[0, 0, 0] = np.nan  # background: never read
    assert clskern.lesions(scores, labels)[0].tolist() == [0, 8]
    scores[1, 1, 1] = scores[2, 2, 2] = np.nan
    for overlap in (0.0, 0.5):
        with pytest.raises(NaNScoresError, match="'case': 2 NaN scores among its 8 lesion voxels"):
            lesion_threshold(scores, labels, 0.2, overlap=overlap, name="case")
    with pytest.raises(NaNScoresError, match="2 NaN"):
        clskern.lesions(scores, labels)


@pytest.mark.parametrize("connectivity", [4, 8, 0, 27, -26, 26.0, True, "26", None])
def test_bad_connectivity_is_named(connectivity):
    scores = np.zeros((2, 2, 2), np.float32)
    with pytest.raises(ArgumentError, match="connectivity"):
        clskern.lesions(scores, scores > 0, connectivity=connectivity)
    with pytest.raises(ArgumentError, match="connectivity"):
        lesion_threshold(scores, scores > 0, 0.1, connectivity=connectivity)


@pytest.mark.parametrize("overlap", [-0.1, 1.0000000000000002, np.nan, np.inf, "0.5", True, None, 1j])
def test_bad_overlap_is_named(overlap):
    scores = np.zeros((2, 2, 2), np.float32)
    with pytest.raises(ArgumentError, match="overlap"):
        lesion_threshold(scores, scores > 0, 0.1, overlap=overlap)
    with pytest.raises(ArgumentError, match="overlap"):
        _lesions.detection_scores(np.array([0, 1]), np.zeros(1, np.float32), overlap)


def test_numpy_integer_connectivity_and_overlap_bounds_are_accepted():
    scores = np.ones((2, 3, 4), np.float32)
    for connectivity in (np.int64(6), np.uint8(18), 26):
        assert lesion_threshold(scores, scores > 0, 0.0, connectivity=connectivity, overlap=1) == 1.0


@pytest.mark.parametrize("shape", [(), (5,), (4, 5), (7, 9)])
@pytest.mark.parametrize("order", ["C", "F"])
def test_fewer_axes_are_a_volume_with_unit_axes(shape, order):
    rng = np.random.default_rng(len(shape))
    labels = np.asarray(rng.random(shape) < 0.4, order=order).astype(np.uint8, order=order)
    scores = np.asarray(rng.random(shape), np.float32, order=order)
    for connectivity in (6, 18, 26):
        got = clskern.lesions(scores, labels, connectivity=connectivity)
        want = reference_lesions(scores.reshape((1,) * (3 - len(shape)) + shape), labels.reshape((1,) * (3 - len(shape)) + shape), None, connectivity)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_more_than_three_axes_are_refused():
    shape = (2, 3, 4, 5)
    with pytest.raises(InputError, match="at most 3 axes"):
        clskern.lesions(np.zeros(shape, np.float32), np.ones(shape, np.uint8))


def test_mismatched_shapes_and_bad_label():
    with pytest.raises(InputError, match="shape"):
        clskern.lesions(np.zeros((2, 3, 4), np.float32), np.ones((2, 3, 5), np.uint8))
    with pytest.raises(ArgumentError, match="label"):
        clskern.lesions(np.zeros((2, 3, 4), np.float32), np.ones((2, 3, 4), np.uint8), label=300)


@settings(max_examples=80, deadline=None)
@given(volumes(), connectivities, st.sampled_from([2, 3, 7, 64]))
def test_parallel_linking_equals_one_part(volume, connectivity, n_parts):
    scores, labels, label = volume
    _, flat_l, target, use_target, shape, order = components.prepare_volume(scores, labels, label, None)
    n0, n1, n2 = components._memory_layout(shape, order)
    runs = components.find_runs(flat_l, target, use_target, n0 * n1, n2)[:3]
    one, n_one = components._link(*runs, n1, connectivity, 1)
    many, n_many = components._link(*runs, n1, connectivity, n_parts, 1)
    assert n_one == n_many
    np.testing.assert_array_equal(one, many)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.5, 1.0, -np.inf, np.inf, 2.5, -1e-30]) | st.floats(-1e6, 1e6), min_size=1, max_size=300), st.data())
def test_selection_equals_sorting(values, data):
    """The per-lesion selection (three-way quickselect) on small, tied and sorted inputs."""
    for array in (np.array(values), np.sort(values), np.sort(values)[::-1].copy()):
        array = array + 0.0
        k = data.draw(st.integers(0, array.size - 1))
        assert components._select(array.copy(), k) == np.sort(array)[k]


@settings(max_examples=300, deadline=None)
@given(
    st.floats(0, 1) | st.sampled_from([0.1, 0.3, 0.29, 1 / 3, 2 / 3, 0.7, 5e-324, 1 - 2**-53]),
    st.lists(st.integers(1, 10**6) | st.integers(1, 2**62) | st.sampled_from([10, 100, 3, 2**53 + 1]), min_size=1, max_size=20),
)
def test_required_voxels_equal_rationals(overlap, sizes):
    want = [max(1, math.ceil(Fraction(overlap) * m)) for m in sizes]
    assert _lesions.required_voxels(np.array(sizes, np.int64), overlap).tolist() == want
