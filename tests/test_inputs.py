"""Bad input gives clear errors; good input of every layout is read without copies."""

import tracemalloc

import numpy as np
import pytest

import clskern


def lesion_volume(shape=(64, 64, 64), order="C", dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    scores = np.asarray(rng.random(shape), dtype=dtype, order=order)
    labels = np.zeros(shape, np.uint8, order=order)
    labels[10:20, 10:20, 10:20] = 1
    return scores, labels


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(clskern.InputError, match=r"\(4, 5\).*\(5, 4\)"):
        clskern.volume_stats(np.zeros((4, 5), np.float32), np.zeros((5, 4), np.uint8))


@pytest.mark.parametrize("function", ["volume_stats", "critical_threshold"])
def test_nan_scores_are_counted(function):
    scores, labels = lesion_volume((8, 8, 8))
    scores[1, 0, 0] = np.nan
    scores[1, 2, 3] = np.nan
    labels[1, 2, 3] = 1
    labels[1, 0, 0] = 1
    args = (0.1,) if function == "critical_threshold" else ()
    with pytest.raises(clskern.NaNScoresError, match=r"case_3.*2 NaN scores"):
        getattr(clskern, function)(scores, labels, *args, name="case_3")


def test_nan_in_background_is_caught_by_volume_stats():
    scores, labels = lesion_volume((8, 8, 8))
    scores[0, 0, 0] = np.nan
    with pytest.raises(clskern.NaNScoresError, match="1 NaN"):
        clskern.volume_stats(scores, labels)


@pytest.mark.parametrize("scores", [np.zeros(4, np.int32), np.zeros(4, np.complex64), np.array(["a"] * 4), np.zeros(4, object)])
def test_unreadable_score_dtypes(scores):
    with pytest.raises(clskern.ScoreDtypeError, match="dtype"):
        clskern.volume_stats(scores, np.ones(4, np.uint8))


def test_score_dtype_error_is_also_type_error():
    assert issubclass(clskern.ScoreDtypeError, TypeError)
    assert issubclass(clskern.ScoreDtypeError, ValueError)


def test_nan_labels_refused():
    labels = np.array([0.0, 1.0, np.nan, np.nan], np.float32)
    with pytest.raises(clskern.InputError, match="2 NaN labels"):
        clskern.volume_stats(np.zeros(4, np.float32), labels)


def test_unreadable_label_dtype():
    with pytest.raises(clskern.ScoreDtypeError, match="labels have dtype"):
        clskern.volume_stats(np.zeros(4, np.float32), np.array(["a"] * 4))


@pytest.mark.parametrize("label", [300, 1.5, float("nan"), "1", True])
def test_bad_label_value(label):
    with pytest.raises(clskern.InputError, match="label"):
        clskern.volume_stats(np.zeros(4, np.float32), np.ones(4, np.uint8), label=label)


def test_multilabel_mask_picks_one_label():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5], np.float32)
    labels = np.array([0, 1, 2, 2, 1], np.int16)
    stats = clskern.volume_stats(scores, labels, label=2)
    np.testing.assert_array_equal(stats.lesion_scores, np.float32([0.3, 0.4]))
    assert clskern.critical_threshold(scores, labels, 0.0) == np.float32(0.2)


def test_big_endian_equals_native():
    scores, labels = lesion_volume((16, 16, 16), order="F")
    swapped = scores.astype(">f4", order="K")
    assert clskern.volume_stats(swapped, labels.astype(">u2")) == clskern.volume_stats(scores, labels)
    assert clskern.critical_threshold(swapped, labels, 0.2) == clskern.critical_threshold(scores, labels, 0.2)


def peak_bytes(function, *args, **kwargs):
    tracemalloc.start()
    try:
        function(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("function", ["volume_stats", "critical_threshold", "apply_threshold"])
def test_contiguous_volumes_are_not_copied(order, function):
    scores, labels = lesion_volume((256, 256, 128), order=order)
    if function == "apply_threshold":
        args = (scores, 0.5)
        budget = scores.size + scores.nbytes * 0.1  # the uint8 mask itself is the output
    else:
        args = (scores, labels, 0.2) if function == "critical_threshold" else (scores, labels)
        budget = scores.nbytes * 0.25  # histogram rows and lesion scores; a copy would be 100 %
    getattr(clskern, function)(*args)  # compile (or load the cache) outside the measurement
    peak = peak_bytes(getattr(clskern, function), *args)
    assert peak < budget, f"{function} on {order}-order volume peaked at {peak} bytes"


def test_labels_in_other_order_are_copied_not_scores():
    scores, labels = lesion_volume((128, 128, 96), order="F")
    labels_c = np.ascontiguousarray(labels)
    clskern.critical_threshold(scores[:2], labels_c[:2], 0.2, empty="pass")
    peak = peak_bytes(clskern.critical_threshold, scores, labels_c, 0.2)
    assert labels.nbytes <= peak < labels.nbytes + scores.nbytes * 0.2
    assert clskern.critical_threshold(scores, labels_c, 0.2) == clskern.critical_threshold(scores, labels, 0.2)


def test_nibabel_volume_read_in_place(tmp_path):
    nib = pytest.importorskip("nibabel")
    scores, labels = lesion_volume((32, 32, 16))
    nib.save(nib.Nifti1Image(scores, np.eye(4)), tmp_path / "s.nii")
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "l.nii")
    s = np.asanyarray(nib.load(tmp_path / "s.nii").dataobj)
    y = np.asanyarray(nib.load(tmp_path / "l.nii").dataobj)
    assert s.flags.f_contiguous and not s.flags.c_contiguous
    assert clskern.volume_stats(s, y) == clskern.volume_stats(scores, labels)


def test_big_endian_float16_labels():
    scores, labels = lesion_volume((16, 16, 16), order="F")
    swapped = labels.astype(">f2")
    assert clskern.critical_threshold(scores, swapped, 0.2) == clskern.critical_threshold(scores, labels, 0.2)
    assert clskern.volume_stats(scores, swapped) == clskern.volume_stats(scores, labels)
