"""The store interface every backend implements (a typing.Protocol), and the rules it keeps."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

from digest.errors import StoreError
from digest.models import Story, Subscriber

JOURNAL_STATES = ("sending", "sent", "failed", "bounced")
CLAIM_LEASE_SECONDS = 120.0  # embedded: a dead sender's claim is free after this
PENDING_TTL_DAYS = 7  # default [subscribers] pending_days


class DamagedBody(StoreError):
    """One story's stored body cannot be read (missing, truncated, not a story): the rest of
    the store is sound, so a reader of many stories may skip this one (publish does, with a
    warning)."""

    def __init__(self, story_id: str, message: str, hint: str = "") -> None:
        super().__init__(message, hint)
        self.story_id = story_id

    def __reduce__(self) -> tuple:  # crosses a pipe from a forked publish worker
        return (DamagedBody, (self.story_id, self.message, self.hint))


def check_records(records: Iterable[dict], where: str = "journal") -> list[dict]:
    """The records as a list, or StoreError naming the first that no backend may store."""
    from digest.errors import StoreError

    out = list(records)
    for r in out:
        if not isinstance(r, dict) or r.get("state") not in JOURNAL_STATES or \
                not all(isinstance(r.get(k), str) for k in ("digest", "edition", "email")):
            raise StoreError(f"{where}: bad journal record {r!r}",
                             "records need digest, edition, email (strings) and a state "
                             f"in {JOURNAL_STATES}")
    return out


def email_key(email: str) -> str:
    """The key a subscriber is stored and looked up under, in every backend."""
    return email.strip().lower()


@runtime_checkable
class Journal(Protocol):
    """Delivery records per (digest, edition, email); appends are durable at once, outside
    any store transaction."""

    def append(self, records: list[dict]) -> None:
        """Record a batch; each needs string digest, edition, email and a JOURNAL_STATES state."""

    def state(self, digest: str, edition: str, email: str) -> dict | None:
        """The latest record for the key, or None."""

    def sent_story_ids(self, email: str, digest: str | None = None) -> frozenset[str]:
        """Ids of every story marked `sent` to `email`: in any digest (None), or in the
        digest named `digest` (the planner dedupes per digest, so a reader of a daily and a
        weekly gets the week's best in the weekly). Records from before the journal told
        digests apart count for every digest."""

    def states(self, digest: str, keys: Sequence[tuple[str, str]]) -> list[dict | None]:
        """`state(digest, edition, email)` for each (edition, email) of `keys`, in order, read
        at once (one catch-up of the log, one query): the planner asks per batch."""

    def sent_story_ids_many(self, emails: Sequence[str], digest: str | None = None
                            ) -> list[frozenset[str]]:
        """`sent_story_ids(email, digest)` for each of `emails`, in order, read at once."""

    def records(self) -> Iterator[dict]:
        """Every record, oldest first (history included: archive segments, the log table)."""

    def claim(self, records: list[dict], lease_seconds: float = CLAIM_LEASE_SECONDS) -> list[dict]:
        """Record each `sending` record whose (digest, edition, email) is free and return the
        ones claimed, in order; the rest belong to another sender. Free: no record yet; the
        latest is `failed` and not `permanent`; or it is `sending` and its claim lapsed (the
        lease ran out; on PostgreSQL: the claiming session ended -- a live session's claim
        never lapses). Exactly once across processes and nodes rests on this call."""

    def renew(self, records: list[dict], lease_seconds: float = CLAIM_LEASE_SECONDS
              ) -> list[dict]:
        """Of `records` claimed by this journal, those whose claims it still holds, in
        order, their leases extended; a sender calls it before each part of a batch and
        sends only what it returns. Raises StoreError when it cannot tell (on PostgreSQL:
        the session dropped, and with it the claims): the caller must stop sending. Embedded:
        the records as given (the send lock makes its holder the only sender)."""

    def import_records(self, records: Iterable[dict]) -> int:
        """Add history from another store (`digest store copy`): records already present
        (same digest, edition, email, state and `at`) are skipped; returns how many were new."""


@runtime_checkable
class StoreBackend(Protocol):
    """Stories, subscribers, meta, ingest quarantine and the delivery journal.

    Emails are keyed by `email_key`. Writes outside `transaction()` commit one by one; inside
    it they commit together at the outermost exit, and an exception discards them all."""

    journal: Journal
    kind: str  # "embedded" | "postgresql": for reports and `digest status`

    def transaction(self) -> AbstractContextManager[Any]: ...

    def close(self) -> None:
        """Release connections and file handles."""

    # coordination between processes and nodes
    def send_lock(self, digest: str) -> AbstractContextManager[None]:
        """Held around one `send` of `digest`. Embedded: one sender per digest (a file lock;
        a second raises DeliveryError). PostgreSQL: no exclusion — senders share the work
        through `journal.claim`."""

    def leader(self, job: str) -> AbstractContextManager[bool]:
        """Yields True when this process should run the leader-only `job` (scheduled ingest
        and publish) now: always on the embedded store, on PostgreSQL for the one holder of an
        advisory lock, released on exit."""

    # stories
    def upsert_stories(self, stories: Iterable[Story], force: Collection[str] = (),
                       encoded: Mapping[str, tuple[str, bytes]] | None = None
                       ) -> list[tuple[str, str]]:
        """(id, "added" | "updated" | "unchanged") per story, in order; ids in `force` are
        written (and "updated") even when their content hash is unchanged. `encoded`: story
        id → (content hash, body JSON bytes) of that very story, computed elsewhere
        (`embedded.encode_story`, in ingest's workers), so the store need not."""

    def get_story(self, story_id: str) -> Story | None: ...

    def get_stories(self, ids: Iterable[str]) -> list[Story]: ...

    def list_stories(self) -> list[Story]:
        """Every story by id, bodies left empty (the index only)."""

    def story_count(self) -> int: ...

    def story_hash(self, story_id: str) -> str | None: ...

    # subscribers
    def add_subscriber(self, sub: Subscriber) -> Subscriber: ...

    def upsert_subscribers(self, subs: Iterable[Subscriber]) -> tuple[int, int]: ...

    def get_subscriber(self, email: str) -> Subscriber | None: ...

    def list_subscribers(self, status: str | None = None) -> list[Subscriber]: ...

    def iter_subscribers(self, status: str | None = None) -> Iterator[Subscriber]:
        """The same rows, streamed in email order (a server-side cursor on PostgreSQL), so a
        send to a million subscribers never holds the whole list."""

    def expire_pending(self, older_than: Any) -> int:
        """Drop `pending` subscribers created before `older_than` (a datetime); returns how many."""

    def update_subscriber(self, email: str, **changes: Any) -> Subscriber: ...

    def remove_subscriber(self, email: str) -> bool: ...

    # meta (schema version, site secret, ...) and the ingest quarantine
    def meta_get(self, key: str, default: Any = None) -> Any: ...

    def meta_set(self, key: str, value: Any) -> None: ...

    def quarantine_get(self, path: str) -> dict | None: ...

    def quarantine_put(self, path: str, fingerprint: str, reason: str) -> None: ...

    def quarantine_clear(self, path: str) -> None: ...

    def signature(self) -> str:
        """A value that changes whenever stories change (publish skips a build when it is the
        one the last build saw): the index files' identity on the embedded store, the story
        count and highest revision on PostgreSQL."""
