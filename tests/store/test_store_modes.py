"""The store holds the site secret and subscribers' addresses: owner-only, whatever the umask."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime

import pytest

from digest.models import Story, Subscriber
from digest.store import Store


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    old = os.umask(0o000)  # the worst case: nothing masked
    try:
        yield
    finally:
        os.umask(old)


def fill(store: Store) -> None:
    store.meta_set("site_secret", "00" * 32)
    store.add_subscriber(Subscriber(email="reader@example.com", status="active"))
    when = datetime(2026, 1, 1, tzinfo=UTC)
    store.upsert_stories([Story(id="s1", languages=["en"], title={"en": "t"}, published=when, updated=when)])
    store.journal.append([{"digest": "daily", "edition": "2026-01-01", "email": "reader@example.com",
                           "state": "sent"}])


def test_new_store_is_owner_only(tmp_path, open_umask):
    store = Store(tmp_path / "store")
    fill(store)
    files = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    dirs = [tmp_path / "store", *(p for p in (tmp_path / "store").rglob("*") if p.is_dir())]
    names = {p.name for p in files}
    assert {"stories.json", ".lock"} <= names
    assert any(n.startswith("log-") and n.endswith(".jsonl") for n in names)  # journal/
    assert any(p.parent.name == "subscribers" for p in files)
    assert any(p.parent.parent.name == "bodies" for p in files)
    assert {p.relative_to(tmp_path): oct(mode(p)) for p in files if mode(p) != 0o600} == {}
    assert {p.relative_to(tmp_path): oct(mode(p)) for p in dirs if mode(p) != 0o700} == {}


def test_existing_open_store_dir_is_closed_on_open(tmp_path):
    Store(tmp_path / "store")
    os.chmod(tmp_path / "store", 0o755)  # as an older digest (or a loose umask) left it
    store = Store(tmp_path / "store")
    assert mode(tmp_path / "store") == 0o700
    fill(store)
    assert {mode(p) for p in (tmp_path / "store" / "subscribers").glob("*.json")} == {0o600}
