"""StagedFolder: the files of one folder all or none (what apply writes its masks through)."""

import os

import pytest

from clskern.io import _atomic
from clskern.io._atomic import StagedFolder


def _write(staged, name, text):
    with open(staged.path(name), "w") as f:
        f.write(text)


def _files(folder, hidden=True):
    """Every entry's text; the staging folder (hidden, a folder) shows as None, and is left out with
    ``hidden=False``."""
    out = {}
    for n in sorted(os.listdir(folder)):
        path = os.path.join(folder, n)
        if os.path.isdir(path):
            if hidden:
                out[n] = None
            continue
        with open(path) as f:
            out[n] = f.read()
    return out


def test_files_appear_together_and_replace_older_ones(tmp_path):
    out = tmp_path / "masks"
    out.mkdir()
    (out / "a").write_text("old a")
    (out / "mine.txt").write_text("the user's")
    with StagedFolder(out) as staged:
        _write(staged, "a", "new a")
        _write(staged, "b", "new b")
        assert _files(out, hidden=False) == {"a": "old a", "mine.txt": "the user's"}  # nothing new before the end
    assert _files(out) == {"a": "new a", "b": "new b", "mine.txt": "the user's"}  # no hidden folder left


def test_a_failing_block_leaves_the_folder_as_it_was(tmp_path):
    out = tmp_path / "masks"
    out.mkdir()
    (out / "a").write_text("old a")
    with pytest.raises(RuntimeError):
        with StagedFolder(out) as staged:
            _write(staged, "a", "new a")
            raise RuntimeError("a case failed")
    assert _files(out) == {"a": "old a"}
    with pytest.raises(KeyboardInterrupt):
        with StagedFolder(tmp_path / "new") as staged:
            _write(staged, "a", "x")
            raise KeyboardInterrupt
    assert not (tmp_path / "new").exists()  # a folder it created goes too


def test_a_folder_in_the_way_is_named_before_anything_moves(tmp_path):
    out = tmp_path / "masks"
    out.mkdir()
    (out / "a").write_text("old a")
    (out / "b").mkdir()
    with pytest.raises(IsADirectoryError) as caught:
        with StagedFolder(out) as staged:
            _write(staged, "a", "new a")
            _write(staged, "b", "new b")
    assert caught.value.filename == os.path.join(str(out), "b")
    assert (out / "a").read_text() == "old a" and sorted(os.listdir(out)) == ["a", "b"]


def test_a_move_failing_midway_puts_everything_back(tmp_path, monkeypatch):
    out = tmp_path / "masks"
    out.mkdir()
    (out / "a").write_text("old a")
    (out / "c").write_text("old c")
    real, calls = os.replace, []

    def flaky(src, dst):
        if os.path.basename(str(src)) == "c" and ".clskern-staged-" in str(src):  # the staged c's move
            calls.append(dst)
            raise OSError(28, "No space left on device", str(src))
        return real(src, dst)

    monkeypatch.setattr(_atomic.os, "replace", flaky)
    with pytest.raises(OSError) as caught:
        with StagedFolder(out) as staged:
            for name in "abc":
                _write(staged, name, f"new {name}")
    assert caught.value.filename == os.path.join(str(out), "c")  # the output named, not the staged file
    monkeypatch.setattr(_atomic.os, "replace", real)
    assert _files(out) == {"a": "old a", "c": "old c"}


def test_only_plain_names_each_once(tmp_path):
    with StagedFolder(tmp_path / "m") as staged:
        for bad in ("../x", "sub/x", ".."):
            with pytest.raises(ValueError, match="a file name inside"):
                staged.path(bad)
        _write(staged, "a", "x")
        with pytest.raises(ValueError, match="written twice in one run"):  # it set the first one aside as "older"
            staged.path("a")
