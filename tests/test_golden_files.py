"""The golden-file mechanism itself (tests.support.golden.Golden, the `golden` fixture):
a check fails on a missing, changed, extra or lost file; an update rewrites only what differs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.golden import Golden

FAILS = (AssertionError, pytest.fail.Exception)


def test_one_file_compares_bytes_and_updates_only_when_it_differs(tmp_path: Path) -> None:
    with pytest.raises(FAILS, match="missing"):
        Golden(tmp_path, update=False).check("a/x.txt", "one\n")
    Golden(tmp_path, update=True).check("a/x.txt", "one\n")
    assert (tmp_path / "a/x.txt").read_bytes() == b"one\n"
    os.utime(tmp_path / "a/x.txt", ns=(1, 1))
    Golden(tmp_path, update=True).check("a/x.txt", b"one\n")
    assert (tmp_path / "a/x.txt").stat().st_mtime_ns == 1  # unchanged output: not rewritten
    with pytest.raises(FAILS, match=r"(?s)differs.*-one.*\+two"):
        Golden(tmp_path, update=False).check("a/x.txt", "two\n")
    with pytest.raises(FAILS):
        Golden(tmp_path, update=False).check("a/x.txt", "one\r\n")  # bytes, not text


def test_a_tree_must_match_file_for_file(tmp_path: Path) -> None:
    files = {"index.html": b"<h1>i</h1>\n", "feeds/all/rss.xml": b"<rss/>\n"}
    Golden(tmp_path, update=True).check("site", files)
    check = Golden(tmp_path, update=False).check
    check("site", files)
    with pytest.raises(FAILS, match="feeds/new.xml"):
        check("site", {**files, "feeds/new.xml": b"x"})
    with pytest.raises(FAILS, match="index.html"):
        check("site", {"feeds/all/rss.xml": b"<rss/>\n"})
    with pytest.raises(FAILS, match=r"1 file\(s\) differ \['index.html'\]"):
        check("site", {**files, "index.html": b"<h1>j</h1>\n"})


def test_updating_a_tree_rewrites_what_differs_and_removes_what_is_gone(tmp_path: Path) -> None:
    Golden(tmp_path, update=True).check("site", {"keep.txt": b"k", "old/gone.txt": b"g"})
    os.utime(tmp_path / "site/keep.txt", ns=(1, 1))
    Golden(tmp_path, update=True).check("site", {"keep.txt": b"k", "new.txt": b"n"})
    assert sorted(p.relative_to(tmp_path / "site").as_posix()
                  for p in (tmp_path / "site").rglob("*")) == ["keep.txt", "new.txt"]
    assert (tmp_path / "site/keep.txt").stat().st_mtime_ns == 1
