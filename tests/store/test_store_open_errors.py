"""Issue 17.11: a store directory that exists but belongs to another user was reported as
"cannot create the store directory", which sends the operator after the wrong problem.

Tests run as root here (permissions never refuse root), so the refusal is simulated: mkdir
raises EACCES as it does for an unprivileged user, and the process's uid is another one."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from digest.errors import StoreError
from digest.store import embedded
from digest.store.embedded import Store


def _refuse_mkdir(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Path.mkdir

    def mkdir(self: Path, *a: object, **kw: object) -> None:
        if self.exists():
            return real(self, *a, **kw)
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", mkdir)


def test_a_store_owned_by_another_user_says_so(tmp_path: Path, monkeypatch) -> None:
    store = tmp_path / "store"
    store.mkdir()
    _refuse_mkdir(monkeypatch)
    monkeypatch.setattr(embedded.os, "getuid", lambda: store.stat().st_uid + 4242)
    with pytest.raises(StoreError) as e:
        Store(store)
    assert "belongs to another user" in e.value.message
    assert "cannot create" not in e.value.message and "owns the store" in e.value.hint


def test_a_missing_store_that_cannot_be_created_still_says_create(tmp_path: Path,
                                                                   monkeypatch) -> None:
    _refuse_mkdir(monkeypatch)
    with pytest.raises(StoreError) as e:
        Store(tmp_path / "nope" / "store")
    assert "cannot create the store directory (Permission denied)" in e.value.message
