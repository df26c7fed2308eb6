"""Issue 17, item 7: `[store] path` naming a shared directory got locked down: any command that
opened the store chmodded it to 0700 when the user owned it (as root, `path = "/tmp"` broke /tmp
for everyone). Only a directory digest created, or one that holds nothing but a store, has its
mode changed; a directory with other files, or one every user may write in, is refused with
a hint; an empty one is adopted and keeps its mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from digest.errors import StoreError
from digest.models import Subscriber
from digest.store import open_store
from digest.store.embedded import Store


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_directory_with_other_files_is_refused_and_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    for name in ("notes.txt", "photos", "a.sock", "z.bak"):
        (shared / name).write_text("x")
    with pytest.raises(StoreError) as e:
        open_store(shared)
    assert str(shared) in e.value.message and "not digest's" in e.value.message
    assert "a.sock, notes.txt, photos and 1 more" in e.value.message
    assert "[store] path" in e.value.hint and "empty" in e.value.hint
    assert mode(shared) == 0o755  # not locked down
    assert sorted(os.listdir(shared)) == ["a.sock", "notes.txt", "photos", "z.bak"]  # nothing made


def test_a_directory_every_user_may_write_in_is_refused_even_empty(tmp_path: Path) -> None:
    tmp_like = tmp_path / "tmp"
    tmp_like.mkdir()
    os.chmod(tmp_like, 0o1777)  # /tmp, empty as at boot
    with pytest.raises(StoreError) as e:
        Store(tmp_like)
    assert "every user may write" in e.value.message and "1777" in e.value.message
    assert mode(tmp_like) == 0o1777 and os.listdir(tmp_like) == []


def test_an_empty_directory_is_adopted_and_keeps_its_mode(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    os.chmod(empty, 0o755)
    store = Store(empty)
    store.add_subscriber(Subscriber(email="reader@example.com", status="active"))
    assert mode(empty) == 0o755  # digest did not create it
    assert {mode(p) for p in empty.rglob("*") if p.is_file()} == {0o600}
    assert {mode(p) for p in empty.iterdir() if p.is_dir()} == {0o700}


def test_a_new_directory_and_a_store_of_only_digests_files_are_made_private(tmp_path):
    new = tmp_path / "a" / "store"
    Store(new).journal.append([{"digest": "d", "edition": "e", "email": "x@example.com",
                                "state": "sent"}])
    assert mode(new) == 0o700
    os.chmod(new, 0o755)  # as an older digest left it
    for name in ("daemon.lock", "send-6461696c79.lock", "deliveries.jsonl", "lost+found",
                 ".gitkeep"):
        (new / name).touch()
    Store(new)  # all digest's: still a store, and closed again
    assert mode(new) == 0o700
