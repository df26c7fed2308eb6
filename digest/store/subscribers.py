"""The embedded store's subscribers.json: a TinyDB table keyed by `email_key`, indexed in memory."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

from digest.errors import StoreError
from digest.models import Subscriber
from digest.store.base import email_key
from digest.store.storage import AtomicJSONStorage, tinydb


class SubscriberTable:
    """Subscribers of one store; writes go through the store's `transaction`. The email →
    document id index is rebuilt whenever the file was reloaded (another process wrote it)."""

    def __init__(self, storage: AtomicJSONStorage,
                 transaction: Callable[[], AbstractContextManager[Any]],
                 mutex: threading.RLock) -> None:
        self.storage = storage
        self.transaction = transaction
        self._mutex = mutex
        self._idx: tuple[int, dict[str, int]] | None = None

    def _index(self) -> dict[str, int]:
        table = self.storage.read().get("subscribers", {})
        if self._idx is None or self._idx[0] != self.storage.generation:
            idx = {email_key(d["email"]): int(i) for i, d in table.items()}
            self._idx = (self.storage.generation, idx)
        return self._idx[1]

    def _raw(self, email: str) -> tuple[int, dict] | None:
        doc_id = self._index().get(email_key(email))
        if doc_id is None:
            return None
        return doc_id, self.storage.read()["subscribers"][str(doc_id)]

    def get(self, email: str) -> Subscriber | None:
        with self._mutex:
            found = self._raw(email)
            return Subscriber.from_dict(found[1]) if found else None

    def select(self, status: str | None = None) -> list[Subscriber]:
        """Subscribers in the order they were added, optionally of one status."""
        with self._mutex:
            docs = list(self.storage.read().get("subscribers", {}).values())
        return [Subscriber.from_dict(d) for d in docs if status is None or d.get("status") == status]

    def add(self, sub: Subscriber) -> Subscriber:
        """Store a new subscriber (email lowercased); StoreError if it already exists."""
        sub = dataclasses.replace(sub, email=email_key(sub.email))
        with self.transaction():
            if self._raw(sub.email):
                raise StoreError(f"subscriber {sub.email} already exists",
                                 "use `digest subscribers remove` first, or import to update")
            doc_id = tinydb(self.storage).table("subscribers").insert(sub.to_dict())
            self._index()[sub.email] = doc_id
        return sub

    def upsert(self, subs: Iterable[Subscriber]) -> tuple[int, int]:
        """Add or replace many subscribers in one write; returns (added, updated).

        An existing row keeps its `created` time."""
        new: dict[str, dict] = {}
        changed: dict[int, dict] = {}
        with self.transaction():
            idx = self._index()
            table = self.storage.read().get("subscribers", {})
            for sub in subs:
                rec = sub.to_dict()
                key = rec["email"] = email_key(sub.email)
                doc_id = idx.get(key)
                if doc_id is None:
                    new[key] = rec  # a repeated email in the batch: the last one wins
                    continue
                old = changed.get(doc_id) or table[str(doc_id)]
                rec["created"] = old.get("created") or rec["created"]
                if rec != old:
                    changed[doc_id] = rec
            t = tinydb(self.storage).table("subscribers")
            if new:
                for doc_id, key in zip(t.insert_multiple(new.values()), new, strict=True):
                    idx[key] = doc_id
            if changed:
                def replace(doc: dict) -> None:
                    rec = by_key[email_key(doc["email"])]
                    doc.clear()
                    doc.update(rec)
                by_key = {r["email"]: r for r in changed.values()}
                t.update(replace, doc_ids=list(changed))
        return len(new), len(changed)

    def update(self, email: str, **changes: Any) -> Subscriber:
        """Change fields of a subscriber (Subscriber field names); StoreError if unknown."""
        with self.transaction():
            found = self._raw(email)
            if found is None:
                raise StoreError(f"no subscriber {email_key(email)}",
                                 "list them with `digest subscribers list`")
            doc_id, doc = found
            try:
                sub = dataclasses.replace(Subscriber.from_dict(doc), **changes)
            except TypeError as e:
                raise StoreError(f"cannot update subscriber {email}: {e}",
                                 "use fields of digest.models.Subscriber") from e
            sub.email = email_key(sub.email)
            if sub.email != email_key(email) and self._raw(sub.email):
                raise StoreError(f"subscriber {sub.email} already exists",
                                 "remove one of the two addresses first")
            rec = sub.to_dict()
            if rec != doc:
                tinydb(self.storage).table("subscribers").update(
                    lambda d: (d.clear(), d.update(rec)), doc_ids=[doc_id])
                idx = self._index()
                idx.pop(email_key(email), None)
                idx[sub.email] = doc_id
        return sub

    def remove(self, email: str) -> bool:
        with self.transaction():
            found = self._raw(email)
            if found is None:
                return False
            tinydb(self.storage).table("subscribers").remove(doc_ids=[found[0]])
            self._index().pop(email_key(email), None)
        return True
