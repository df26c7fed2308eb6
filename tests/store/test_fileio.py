"""The shared file helpers: the one lock (digest.fileio.locked), the one atomic writer, and
digest.codec's bytes."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

from digest import codec
from digest.errors import DeliveryError, StoreError
from digest.fileio import atomic_write, locked, write_file


def test_a_held_lock_times_out_with_the_file_and_a_hint(tmp_path):
    path = tmp_path / ".lock"
    with locked(path, timeout=5):
        start = time.monotonic()
        with pytest.raises(StoreError) as e:
            with locked(path, timeout=0.05, what="store", hint="wait for it"):
                pass
        assert 0.05 <= time.monotonic() - start < 2
    assert str(path) in e.value.message and "store is locked by another process" in e.value.message
    assert e.value.hint == "wait for it"
    with locked(path, timeout=0):  # released on exit
        pass


def test_timeout_zero_tries_once_and_raises_the_callers_error(tmp_path):
    path = tmp_path / "send.lock"
    with locked(path, timeout=0):
        with pytest.raises(DeliveryError, match="another process"):
            with locked(path, timeout=0, what="digest 'daily'", error=DeliveryError):
                pass


def test_lock_files_are_owner_only_by_default(tmp_path):
    old = os.umask(0)
    try:
        with locked(tmp_path / "a.lock"):
            pass
        with locked(tmp_path / "b.lock", mode=0o644):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.lock").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "b.lock").st_mode) == 0o644


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    tmpdir = tmp_path / ".tmp"
    tmpdir.mkdir()
    target = tmp_path / "f.json"
    target.write_bytes(b"old")
    atomic_write(target, b"new", tmpdir)
    assert target.read_bytes() == b"new" and list(tmpdir.iterdir()) == []


def test_write_file_removes_a_partial_file(tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError):
        write_file(tmp_path / "x", b"data")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("obj", [{"b": [1, 2.5, None], "a": "中文 \u2028"}, [], {"k": {}}])
def test_codec_bytes_match_the_json_module(obj):
    assert codec.dumps(obj) == json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    assert codec.dumps(obj, indent=True) == json.dumps(obj, ensure_ascii=False, indent=2).encode()
    assert codec.dumps(obj, indent=True, sort_keys=True) == \
        json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True).encode()
    assert codec.loads(codec.dumps(obj)) == obj


def test_codec_errors_are_the_builtin_kinds():
    with pytest.raises(TypeError):
        codec.dumps({"x": "\ud800"})
    with pytest.raises(ValueError):
        codec.loads(b'{"half')
    assert issubclass(codec.EncodeError, TypeError) and issubclass(codec.DecodeError, ValueError)
