"""nnU-Net ``CASE.npz`` checked against its label through ``CASE.pkl``; the ``.pkl`` read without running code."""

import io
import os
import pickle
import re
from collections import OrderedDict

import nibabel as nib
import numpy as np
import pytest
from nnunet_files import LPS_AFFINE, PERMUTED_AFFINE, READERS, nnunet_properties, write_nnunet_case

import clskern
from clskern.adapters.nnunet import apply_folder, calibrate_folder
from clskern.io import FileFormatError, MismatchError, load_case, pair_cases, read_pkl_affine, read_scores
from clskern.io.cases import read_case_scores
from clskern.io.masks import Geometry, check_input, resolve_geometry, save_mask
from clskern.io.nnunet_pkl import load_properties, read_pkl_geometry

SHAPE = (9, 7, 5)  # not a cube: a wrong transpose cannot pass the shape check by chance
AFFINES = {"ras": np.diag([0.7, 0.8, 2.0, 1.0]), "lps": LPS_AFFINE, "permuted": PERMUTED_AFFINE}


def _perfect_case(seed):
    """Labels and a perfect model: 0.95 on the lesion, 0.05 elsewhere."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(SHAPE, np.uint8)
    x, y, z = rng.integers(0, 4), rng.integers(0, 3), rng.integers(0, 2)
    labels[x : x + 4, y : y + 3, z : z + 3] = 1
    labels[0, SHAPE[1] - 1, 0] = 1  # an asymmetric voxel: a flip moves it
    scores = np.where(labels > 0, 0.95, 0.05).astype(np.float32)
    return scores, labels


def _dirs(tmp_path):
    s, l = tmp_path / "pred", tmp_path / "labelsTr"
    s.mkdir()
    l.mkdir()
    return s, l


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("orientation", sorted(AFFINES))
def test_every_reader_and_orientation_loads_in_the_label_axes(tmp_path, reader, orientation):
    s, l = _dirs(tmp_path)
    affine = AFFINES[orientation]
    scores, labels = _perfect_case(1)
    scores = scores + np.linspace(0, 0.01, scores.size, dtype=np.float32).reshape(SHAPE)  # every voxel distinct
    write_nnunet_case(s, "c", scores, affine, reader=reader)
    nib.save(nib.Nifti1Image(labels, affine), l / "c.nii.gz")
    case = load_case(pair_cases(s, l)[0][0])
    assert case.geometry == "pkl" and case.geometry_checked
    np.testing.assert_array_equal(case.scores, scores)
    assert clskern.volume_stats(case.scores, case.labels) == clskern.volume_stats(scores, labels)
    if reader == "reorient" and orientation != "ras":  # what clskern did before: shape-only pairing of the raw axes
        assert not np.array_equal(read_scores(s / "c.npz").array, scores)


@pytest.mark.parametrize("affine", [LPS_AFFINE, PERMUTED_AFFINE], ids=["lps", "permuted"])
def test_perfect_model_saved_in_reoriented_axes_calibrates_to_its_lesion_scores(tmp_path, affine):
    s, l = _dirs(tmp_path)
    truth = {}
    for i in range(12):
        scores, labels = _perfect_case(i)
        write_nnunet_case(s, f"CASE_{i:03d}", scores, affine, reader="reorient", segmentation=True)
        nib.save(nib.Nifti1Image(labels, affine), l / f"CASE_{i:03d}.nii.gz")
        truth[f"CASE_{i:03d}"] = clskern.volume_stats(scores, labels)
    calibration = calibrate_folder(s, l, epsilon=0.1, alpha=0.2)
    expected = clskern.calibrate(truth, epsilon=0.1, alpha=0.2)
    assert calibration.threshold == expected.threshold == np.float32(0.95)
    # apply writes masks as nnU-Net writes its segmentation: source axes, source affine
    written = apply_folder(calibration, s, output=tmp_path / "masks")
    for case_id, path in written.items():
        img = nib.load(path)
        np.testing.assert_allclose(img.affine, affine, atol=1e-5)
        nnunet_seg = np.asarray(nib.load(s / f"{case_id}.nii.gz").dataobj)
        np.testing.assert_array_equal(np.asarray(img.dataobj), nnunet_seg)


def test_mismatched_missing_or_empty_pkl_is_refused_naming_case_and_files(tmp_path):
    s, l = _dirs(tmp_path)
    scores, labels = _perfect_case(2)
    shifted = LPS_AFFINE.copy()
    shifted[0, 3] += 1.0
    write_nnunet_case(s, "shifted", scores, LPS_AFFINE, reader="reorient",
                      properties=nnunet_properties(shifted, SHAPE, "reorient"))
    write_nnunet_case(s, "sitk_off", scores, LPS_AFFINE, reader="sitk",
                      properties=nnunet_properties(PERMUTED_AFFINE, SHAPE, "sitk"))
    write_nnunet_case(s, "missing", scores, LPS_AFFINE)
    os.remove(s / "missing.pkl")
    write_nnunet_case(s, "empty", scores, LPS_AFFINE, properties={"spacing": [2.5, 0.9, 0.8]})
    # the .pkl matches the label but not this array: a flipped axis of another length
    wrong = nnunet_properties(LPS_AFFINE, (10, 7, 5), "reorient")
    write_nnunet_case(s, "wrongshape", scores, LPS_AFFINE, reader="reorient", properties=wrong)
    write_nnunet_case(s, "smaller", scores[:, :, :4], LPS_AFFINE, reader="reorient")
    for case in ("shifted", "sitk_off", "missing", "empty", "wrongshape", "smaller"):
        nib.save(nib.Nifti1Image(labels, LPS_AFFINE), l / f"{case}.nii.gz")
    pairs = {p.case_id: p for p in pair_cases(s, l)[0]}
    with pytest.raises(MismatchError, match=r"'shifted'.*affine mismatch.*shifted\.pkl.*shifted\.nii\.gz") as e:
        load_case(pairs["shifted"])
    assert "\n" not in str(e.value)
    with pytest.raises(MismatchError, match=r"'sitk_off'.*affine mismatch.*sitk_off\.pkl.*labelsTr/sitk_off"):
        load_case(pairs["sitk_off"])
    with pytest.raises(FileFormatError, match=r"'missing'.*missing\.pkl not found.*missing\.npz.*missing\.nii\.gz"):
        load_case(pairs["missing"])
    with pytest.raises(FileFormatError, match=r"'empty'.*empty\.pkl: no geometry.*empty\.npz"):
        load_case(pairs["empty"])
    with pytest.raises(MismatchError, match=r"'wrongshape'.*wrongshape\.npz.*wrongshape\.pkl"):
        load_case(pairs["wrongshape"])
    with pytest.raises(MismatchError, match=r"'smaller'.*smaller\.npz.*\(9, 7, 4\).*smaller\.nii\.gz.*\(9, 7, 5\)"):
        load_case(pairs["smaller"])


def test_npy_scores_are_paired_by_shape_only_and_say_so(tmp_path):
    s, l = _dirs(tmp_path)
    scores, labels = _perfect_case(3)
    np.save(s / "a.npy", scores)
    nib.save(nib.Nifti1Image(scores, LPS_AFFINE), s / "b.nii.gz")
    for case in "ab":
        nib.save(nib.Nifti1Image(labels, LPS_AFFINE), l / f"{case}.nii.gz")
    a, b = (load_case(p) for p in pair_cases(s, l)[0])
    assert (a.geometry, a.geometry_checked) == ("shape", False)
    assert (b.geometry, b.geometry_checked) == ("affine", True)


def test_apply_reads_scores_in_source_axes_and_save_mask_reorients_raw_ones(tmp_path):
    s, _ = _dirs(tmp_path)
    scores, _ = _perfect_case(4)
    write_nnunet_case(s, "c", scores, PERMUTED_AFFINE, reader="reorient")
    geometry = resolve_geometry(str(s / "c.npz"), "c")
    assert geometry.kind == "pkl" and geometry.pkl == str(s / "c.pkl")
    volume = read_case_scores(s / "c.npz", 1, geometry)
    np.testing.assert_array_equal(volume.array, scores)
    np.testing.assert_array_equal(volume.affine, PERMUTED_AFFINE)
    save_mask(clskern.apply_threshold(volume.array, 0.5), tmp_path / "m1.nii.gz", geometry, volume)
    raw = read_scores(s / "c.npz")  # the .npz axes, as `clskern apply` read them before
    save_mask(clskern.apply_threshold(raw.array, 0.5), tmp_path / "m2.nii.gz", geometry, raw)
    by_hand = Geometry("pkl", str(s / "c.pkl"))  # without resolve_geometry
    save_mask(clskern.apply_threshold(raw.array, 0.5), tmp_path / "m3.nii.gz", by_hand, raw)
    volume = read_case_scores(s / "c.npz", 1, by_hand)
    save_mask(clskern.apply_threshold(volume.array, 0.5), tmp_path / "m4.nii.gz", by_hand, volume)
    for name in ("m1", "m2", "m3", "m4"):
        img = nib.load(tmp_path / f"{name}.nii.gz")
        np.testing.assert_allclose(img.affine, PERMUTED_AFFINE, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(img.dataobj), scores >= 0.5)


def test_apply_with_a_reference_checks_it_against_the_pkl(tmp_path):
    s, ref = _dirs(tmp_path)
    scores, _ = _perfect_case(5)
    write_nnunet_case(s, "c", scores, LPS_AFFINE, reader="reorient")
    nib.save(nib.Nifti1Image(scores, LPS_AFFINE), ref / "c_0000.nii.gz")
    geometry = resolve_geometry(str(s / "c.npz"), "c", {"c": str(ref / "c_0000.nii.gz")})
    assert geometry.kind == "reference" and geometry.pkl == str(s / "c.pkl")
    volume = read_case_scores(s / "c.npz", None, geometry)
    save_mask(clskern.apply_threshold(volume.array, 0.5), tmp_path / "m.nii.gz", geometry, volume)
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "m.nii.gz").dataobj), scores >= 0.5)
    other = LPS_AFFINE.copy()
    other[2, 3] += 3
    nib.save(nib.Nifti1Image(scores, other), ref / "c_0000.nii.gz")
    with pytest.raises(MismatchError, match=r"c\.pkl and .*c_0000\.nii\.gz"):
        save_mask(clskern.apply_threshold(volume.array, 0.5), tmp_path / "m3.nii.gz", geometry, volume)


# --- the restricted unpickler ---


class _System:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _Open:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


class _Eval:
    def __reduce__(self):
        return eval, ("__import__('os').getpid()",)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_a_pkl_that_would_run_code_is_refused_and_runs_nothing(tmp_path, protocol):
    target = tmp_path / "PWNED"
    payloads = {
        "system": ({"nibabel_stuff": {"original_affine": np.eye(4)}, "x": _System(f"touch {target}")}, "system"),
        "open": ([_Open(str(target))], r"\.open"),  # io.open
        "eval": (_Eval(), r"builtins\.eval"),
    }
    for name, (payload, refused) in payloads.items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(pickle.dumps(payload, protocol=protocol))
        for read in (load_properties, read_pkl_affine, read_pkl_geometry):
            with pytest.raises(FileFormatError, match=rf"{name}\.pkl: refused to load \S*{refused} from a \.pkl") as e:
                read(path)
            assert "\n" not in str(e.value)
    assert not target.exists()


def test_a_malicious_pkl_beside_an_npz_refuses_the_case(tmp_path):
    s, l = _dirs(tmp_path)
    scores, labels = _perfect_case(6)
    target = tmp_path / "PWNED"
    write_nnunet_case(s, "c", scores, LPS_AFFINE, properties={"x": _System(f"touch {target}")})
    nib.save(nib.Nifti1Image(labels, LPS_AFFINE), l / "c.nii.gz")
    with pytest.raises(FileFormatError, match=r"case 'c': .*c\.pkl: refused to load .*system"):
        load_case(pair_cases(s, l)[0][0])
    with pytest.raises(FileFormatError, match=r"c\.pkl: refused"):  # before anything is written
        apply_folder(0.5, s, output=tmp_path / "masks")
    with pytest.raises(FileFormatError, match=r"c\.pkl: refused"):
        resolve_geometry(str(s / "c.npz"), "c", {"c": str(l / "c.nii.gz")})
    assert not target.exists() and not (tmp_path / "masks").exists()


def test_only_latin1_is_decoded_for_protocol_2_bytes(tmp_path):
    # _codecs.encode is admitted for protocols 0-2 bytes, with the latin-1 codec only
    evil = b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00xX\x09\x00\x00\x00rot13-xyzq\x01\x86q\x02Rq\x03."
    (tmp_path / "codec.pkl").write_bytes(evil)
    with pytest.raises(FileFormatError, match=r"codec\.pkl: refused a call of _codecs\.encode\(str of length 1, str of length 9\)"):
        load_properties(tmp_path / "codec.pkl")
    (tmp_path / "b.pkl").write_bytes(pickle.dumps({"b": b"\x00\xffab"}, protocol=2))
    assert load_properties(tmp_path / "b.pkl") == {"b": b"\x00\xffab"}


def _nnunet_like_properties():
    return {
        "nibabel_stuff": {"original_affine": LPS_AFFINE, "reoriented_affine": np.diag([0.8, 0.9, 2.5, 1.0])},
        "sitk_stuff": {"spacing": (0.8, 0.9, 2.5), "origin": (-40.0, -30.0, -12.0), "direction": (1.0,) * 9},
        "spacing": [2.5, 0.9, 0.8],
        "shape_before_cropping": (np.int64(5), np.int64(7), np.int64(9)),
        "bbox_used_for_cropping": [[0, 5], [np.int64(1), 7], [0, 9]],
        "shape_after_cropping_and_before_resampling": (5, 6, 9),
        "floats": [np.float64(0.25), np.float32(1.5), np.float16(2.0), 1.5, 2 + 1j, True, None],
        "arrays": [np.arange(6, dtype=np.int16).reshape(2, 3), np.asfortranarray(np.ones((2, 3))),
                   np.ones((4, 4))[::2], np.zeros(3, np.bool_), np.array(["ab", "c"])],
        "ordered": OrderedDict(a=1, b=(2, 3)),
        "sets": ({1, 2}, frozenset({"x"})),
        "bytes": (b"ab", bytearray(b"cd")),
        "dtype": np.dtype("<f4"),
        "more": [b"", bytearray(), set(), frozenset(), 10**30, np.bool_(True), np.str_("ab"), np.int8(-3),
                 np.datetime64("2020-01-02"), np.array(2.5), np.zeros((0, 3)), np.arange(4)[::-1],
                 np.zeros(2, dtype=[("a", "<f4"), ("b", ">i2")]), np.ones((2, 2), np.dtype(("<f4", (3,)))),
                 np.dtype("<U3"), np.array([1 + 2j]), np.array([True])],
    }


def _same(a, b):
    if isinstance(a, dict):
        return type(a) is type(b) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, np.generic):
        return type(a) is type(b) and a == b
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_nnunet_like_properties_load_under_every_protocol(tmp_path, protocol):
    props = _nnunet_like_properties()
    (tmp_path / "p.pkl").write_bytes(pickle.dumps(props, protocol=protocol))
    assert _same(props, load_properties(tmp_path / "p.pkl"))
    np.testing.assert_array_equal(read_pkl_affine(tmp_path / "p.pkl"), LPS_AFFINE)


def _unframed(obj, protocol):
    """A pickle without protocol-4 frames, so a global's name can be edited in place."""
    buf = io.BytesIO()
    p = pickle._Pickler(buf, protocol=protocol)
    p.framer.start_framing = lambda: None
    p.framer.end_framing = lambda: None
    p.dump(obj)
    return buf.getvalue()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickles_naming_numpy_1_modules_load(tmp_path, protocol):
    """numpy 1.x pickles name numpy.core.*; numpy 2.x names numpy._core.* (either loads under either)."""
    props = {"a": LPS_AFFINE, "s": np.float64(0.5), "t": (np.int64(3),)}
    data = _unframed(props, protocol)
    if protocol == 2:
        old = data.replace(b"numpy._core.", b"numpy.core.")
    else:
        old = data
        for sub in (b"multiarray", b"numeric"):
            new_name, old_name = b"numpy._core." + sub, b"numpy.core." + sub
            old = old.replace(b"\x8c" + bytes([len(new_name)]) + new_name, b"\x8c" + bytes([len(old_name)]) + old_name)
    if b"numpy._core" in data:
        assert b"numpy._core" not in old and b"numpy.core." in old
    (tmp_path / "old.pkl").write_bytes(old)
    assert _same(props, load_properties(tmp_path / "old.pkl"))


def test_unreadable_pkl_is_one_line_naming_the_file(tmp_path, monkeypatch):
    good = pickle.dumps(_nnunet_like_properties(), protocol=4)
    cases = {"cut": good[: len(good) // 2], "junk": b"not a pickle at all", "empty": b"", "list": pickle.dumps([1])}
    for name, data in cases.items():
        (tmp_path / f"{name}.pkl").write_bytes(data)
        with pytest.raises(FileFormatError, match=rf"{name}\.pkl: (unreadable|not an nnU-Net)") as e:
            read_pkl_affine(tmp_path / f"{name}.pkl")
        assert "\n" not in str(e.value)
    from clskern.io import nnunet_pkl

    for error, words in ((MemoryError, "out of memory"), (RecursionError, "nested too deeply")):
        def load(self, error=error):
            raise error()

        monkeypatch.setattr(nnunet_pkl._PropertiesUnpickler, "load", load)
        with pytest.raises(FileFormatError, match=rf"list\.pkl: unreadable nnU-Net \.pkl \({words}"):
            load_properties(tmp_path / "list.pkl")
    with pytest.raises(FileNotFoundError):
        load_properties(tmp_path / "nowhere.pkl")


class _Calls:
    """Pickles as ``func(*args)``, with an optional ``state`` (pickle's BUILD)."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


_core = np._core if hasattr(np, "_core") else np.core
_BIG = 1 << 28  # 256 MiB: what each of these would allocate from a few bytes of file

_FORBIDDEN_CALLS = {
    "bytearray": (_Calls(bytearray, (_BIG,)), r"builtins\.bytearray\(268435456\)"),
    "bytes": (_Calls(bytes, (_BIG,)), r"builtins\.bytes\(268435456\)"),
    "set": (_Calls(set, (_BIG,)), r"builtins\.set\(268435456\)"),
    "frozenset": (_Calls(frozenset, (_BIG,)), r"builtins\.frozenset\(268435456\)"),
    "complex": (_Calls(complex, ("1+2j",)), r"builtins\.complex\(str of length 4\)"),
    "reconstruct": (_Calls(_core.multiarray._reconstruct, (np.ndarray, (_BIG,), b"b")),
                    r"_reconstruct\(ndarray, \(268435456,\), bytes of length 1\)"),
    "ndarray": (_Calls(np.ndarray, ((_BIG,),)), r"a call of numpy\.ndarray"),
    "scalar": (_Calls(_core.multiarray.scalar, (np.dtype(f"V{_BIG}"), b"")), r"multiarray\.scalar\(dtype \|V268435456, bytes of length 0\)"),
    "frombuffer": (_Calls(_core.numeric._frombuffer, (b"", np.dtype("u1"), (_BIG,), "C")),
                   r"_frombuffer\(bytes of length 0, dtype \|u1, \(268435456,\), str of length 1\)"),
    "object_dtype": (np.array([1, None], dtype=object), r"numpy\.dtype\(str of length 2, False, True\)"),
    "state": (_Calls(_core.multiarray._reconstruct, (np.ndarray, (0,), b"b"), (1, (_BIG,), np.dtype("u1"), False, b"")),
              r"an ndarray state \(1, \(268435456,\), dtype \|u1, False, bytes of length 0\)"),
    "dtype_flags": (_Calls(np.dtype, ("V8", False, True), (3, "|", None, None, None, 8, 1, 63)), r"a dtype state"),
    "ordered_dict": (_Calls(OrderedDict, ([("a", 1)],)), r"collections\.OrderedDict\(list\)"),
}


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("name", sorted(_FORBIDDEN_CALLS))
def test_admitted_callables_refuse_other_arguments_without_allocating(tmp_path, protocol, name):
    import tracemalloc

    payload, words = _FORBIDDEN_CALLS[name]
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(pickle.dumps({"x": payload}, protocol=protocol))
    tracemalloc.start()
    try:
        with pytest.raises(FileFormatError) as e:
            load_properties(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert re.match(rf"{re.escape(str(path))}: refused .*{words}.* in a \.pkl \(clskern reads only ", str(e.value)), str(e.value)
    assert "\n" not in str(e.value)
    assert peak < 16 << 20, f"{peak} bytes allocated"


def test_a_34_byte_pkl_does_not_allocate_2_gb(tmp_path):
    path = tmp_path / "bomb.pkl"
    path.write_bytes(b"\x80\x04\x8c\x08builtins\x8c\tbytearray\x93\x8a\x05" + (2_000_000_000).to_bytes(5, "little") + b"\x85R.")
    assert path.stat().st_size == 34
    with pytest.raises(FileFormatError) as e:
        load_properties(path)
    assert str(e.value).startswith(f"{path}: refused a call of builtins.bytearray(2000000000) in a .pkl")


@pytest.mark.parametrize("name", ["int", "str", "float", "dict", "list", "tuple", "bool", "getattr"])
def test_builtins_no_nnunet_pickle_calls_are_refused_by_name(tmp_path, name):
    path = tmp_path / "g.pkl"
    path.write_bytes(b"\x80\x02c__builtin__\n" + name.encode() + b"\nq\x00K\x01\x85q\x01Rq\x02.")
    with pytest.raises(FileFormatError, match=rf"g\.pkl: refused to load builtins\.{name} from a \.pkl"):
        load_properties(path)


@pytest.mark.parametrize("stuff", [
    {"nibabel_stuff": {"original_affine": np.eye(4), "seoriented_affine": np.eye(4)}},  # one flipped bit in a key
    {"nibabel_stuff": {"reoriented_affine": np.eye(4)}},
    {"sitk_stuff": {"spacing": (1.0, 1.0, 1.0), "origin": (0.0, 0.0, 0.0), "direction": tuple(np.eye(3).ravel()),
                    "extra": 1}},
])
def test_a_pkl_with_keys_nnunet_never_writes_is_refused(tmp_path, stuff):
    """A renamed 'reoriented_affine' would make the probabilities be taken in the wrong axes, silently."""
    path = tmp_path / "c.pkl"
    path.write_bytes(pickle.dumps(stuff))
    with pytest.raises(FileFormatError, match="c.pkl: "):
        read_pkl_geometry(path)


@pytest.mark.parametrize("reader", READERS)
def test_apply_on_a_transposing_plan_as_nnunet_records_it(tmp_path, reader):
    """nnU-Net records shape_before_cropping after transpose_forward; the .npz stays in the reader's axes."""
    s, _ = _dirs(tmp_path)
    scores, _ = _perfect_case(7)
    (s / "plans.json").write_text('{"transpose_forward": [2, 0, 1], "transpose_backward": [1, 2, 0]}')
    # the thick axis (2.5) is the reader's last array axis when the file's x is thick: move it first
    affine = np.diag([2.5, 0.8, 0.9, 1.0])
    write_nnunet_case(s, "c", scores, affine, reader=reader, transpose_forward=(2, 0, 1))
    written = apply_folder(0.5, s, output=tmp_path / "m")
    np.testing.assert_array_equal(np.asarray(nib.load(written["c"]).dataobj), scores >= 0.5)
    os.remove(s / "plans.json")  # nnU-Net's planner's order, and the .pkl's spacing agrees with it
    apply_folder(0.5, s, output=tmp_path / "m", overwrite=True)
    (s / "plans.json").write_text('{"transpose_forward": [1, 0, 2], "transpose_backward": [1, 0, 2]}')
    with pytest.raises(MismatchError, match=r"c\.npz: declares spatial shape .*c\.pkl records .*plans\.json"):
        apply_folder(0.5, s, output=tmp_path / "m", overwrite=True)


def test_a_reference_is_compared_in_the_source_axes_not_up_to_order(tmp_path):
    s, ref = _dirs(tmp_path)
    scores, _ = _perfect_case(8)
    write_nnunet_case(s, "c", scores, PERMUTED_AFFINE, reader="reorient")
    nib.save(nib.Nifti1Image(scores.transpose(1, 0, 2), PERMUTED_AFFINE), ref / "c.nii.gz")  # (7, 9, 5): same sizes
    geometry = resolve_geometry(str(s / "c.npz"), "c", {"c": str(ref / "c.nii.gz")})
    with pytest.raises(MismatchError, match=r"scores .*c\.npz have shape \(9, 7, 5\) \(in the source image's axes; "
                                            r".* as saved\) but reference .*c\.nii\.gz has shape \(7, 9, 5\)"):
        check_input(s / "c.npz", geometry)
    nib.save(nib.Nifti1Image(scores, PERMUTED_AFFINE), ref / "c.nii.gz")
    assert check_input(s / "c.npz", geometry) != (9, 7, 5)  # the file's own axes, reoriented
