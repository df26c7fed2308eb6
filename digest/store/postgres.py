"""The PostgreSQL backend, `PgStore`: the whole store in one database (`[store] url`)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.types.json import set_json_loads

from digest import codec
from digest.errors import StoreError
from digest.models import Story, Subscriber
from digest.store.base import DamagedBody, email_key
from digest.store.pg_journal import BATCH, PgJournal
from digest.store.pg_schema import LEADER_LOCK, migrate
from digest.store.storage import encode

CONNECT_TIMEOUT = 10  # seconds


def _index_record(story: Story, content_hash: str) -> dict[str, Any]:
    rec = story.summary_dict()  # the same index record as the embedded store keeps
    rec["summary"] = dict(story.summary)
    rec["origin"] = story.origin
    rec["hash"] = content_hash
    return rec


def redact(url: str) -> str:
    """The url without a password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def connect(url: str) -> Any:
    """An autocommit connection whose json columns load through digest.codec."""
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                               application_name="digest")
    except psycopg.Error as e:
        raise StoreError(f"{redact(url)}: cannot connect to PostgreSQL ({str(e).strip()})",
                         "check [store] url and that the server runs; the password comes from "
                         "PGPASSWORD, ~/.pgpass or PGSERVICE") from e
    set_json_loads(codec.loads, conn)
    return conn


def _json(obj: Any, what: str) -> str:
    return encode(obj, what).decode()


class PgStore:
    """`StoreBackend` on PostgreSQL (schema in pg_schema.py). One connection for the store
    and one for the journal; writes outside `transaction()` commit one by one."""

    kind = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn = connect(url)
        self._mutex = threading.RLock()
        self._depth = 0
        self._epoch = 0
        self._hashes: tuple[int, dict[str, str]] | None = None  # list_stories, per transaction
        try:
            migrate(self._conn, redact(url))
            self.journal = PgJournal(connect(url))
        except BaseException:
            self._conn.close()
            raise

    def __repr__(self) -> str:
        return f"PgStore({redact(self.url)!r})"

    def close(self) -> None:
        self._conn.close()
        self.journal._conn.close()

    # --- transactions and coordination ---------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @contextmanager
    def transaction(self) -> Iterator[PgStore]:
        """One database transaction; nested calls join the outer one."""
        with self._mutex:
            outer = self._depth == 0
            self._depth += 1
            try:
                with self._conn.transaction() if outer else nullcontext():
                    if outer:
                        self._epoch += 1
                    yield self
            finally:
                self._depth -= 1
                if outer:
                    self._hashes = None

    def _execute(self, sql: str, params: Any = None) -> Any:
        with self._mutex:
            return self._conn.execute(sql, params)

    @contextmanager
    def send_lock(self, digest: str) -> Iterator[None]:
        """No exclusion on PostgreSQL: senders share an edition through `journal.claim`."""
        yield

    @contextmanager
    def leader(self, job: str) -> Iterator[bool]:
        """Leader for `job` while this holds the advisory lock on a connection of its own
        (a dead leader's session, and so its lock, ends with it)."""
        conn = connect(self.url)
        try:
            got = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                               (LEADER_LOCK, job)).fetchone()[0]
            try:
                yield bool(got)
            finally:
                if got and not conn.closed:
                    conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (LEADER_LOCK, job))
        finally:
            conn.close()

    def signature(self) -> str:
        row = self._execute("SELECT count(*), coalesce(max(rev), 0) FROM stories").fetchone()
        return f"pg:{redact(self.url)}:{row[0]}:{row[1]}"

    # --- meta and quarantine --------------------------------------------------------------

    def meta_get(self, key: str, default: Any = None) -> Any:
        row = self._execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
        return row[0] if row else default

    def meta_set(self, key: str, value: Any) -> None:
        self._execute("INSERT INTO meta (key, value) VALUES (%s, %s::json) ON CONFLICT (key) "
                      "DO UPDATE SET value = excluded.value", (key, _json(value, f"meta {key}")))

    def meta_items(self) -> dict[str, Any]:
        """Every meta key and value (for `store copy`)."""
        return dict(self._execute("SELECT key, value FROM meta ORDER BY key").fetchall())

    def quarantine_get(self, path: str) -> dict | None:
        row = self._execute("SELECT path, fingerprint, reason FROM quarantine WHERE path = %s",
                            (str(path),)).fetchone()
        return {"path": row[0], "fingerprint": row[1], "reason": row[2]} if row else None

    def quarantine_put(self, path: str, fingerprint: str, reason: str) -> None:
        self._execute("INSERT INTO quarantine (path, fingerprint, reason) VALUES (%s, %s, %s) "
                      "ON CONFLICT (path) DO UPDATE SET fingerprint = excluded.fingerprint, "
                      "reason = excluded.reason", (str(path), fingerprint, reason))

    def quarantine_clear(self, path: str) -> None:
        self._execute("DELETE FROM quarantine WHERE path = %s", (str(path),))

    def quarantine_items(self) -> list[dict]:
        """Every quarantine entry by path (for `store copy`)."""
        rows = self._execute("SELECT path, fingerprint, reason FROM quarantine ORDER BY path")
        return [{"path": p, "fingerprint": f, "reason": r} for p, f, r in rows.fetchall()]

    # --- stories ---------------------------------------------------------------------------

    def upsert_stories(self, stories: Iterable[Story], force: Collection[str] = (),
                       encoded: Mapping[str, tuple[str, bytes]] | None = None
                       ) -> list[tuple[str, str]]:
        """Add or update stories; unchanged ones (same content hash) are not written, except
        the ids in `force` (new times for the same text: `ingest --as-of`). `encoded`: story
        id → (content hash, body bytes) of that very story, computed elsewhere."""
        results: list[tuple[str, str]] = []
        encoded = encoded or {}
        with self.transaction():
            todo: dict[str, tuple[Story, str]] = {}
            stories = list(stories)
            known = dict(self._execute("SELECT id, hash FROM stories WHERE id = ANY(%s)",
                                       ([s.id for s in stories],)).fetchall())
            for story in stories:
                pre = encoded.get(story.id)
                try:
                    h = pre[0] if pre is not None else story.content_hash()
                except UnicodeError as e:
                    raise StoreError(f"story {story.id} ({story.origin}): text is not valid "
                                     f"Unicode ({e.reason})", "fix the input file") from e
                cur = todo[story.id][1] if story.id in todo else known.get(story.id)
                if cur == h and story.id not in force:
                    results.append((story.id, "unchanged"))
                    continue
                results.append((story.id, "added" if cur is None else "updated"))
                todo[story.id] = (story, h)
            if todo:
                rows = [(s.id, _json(_index_record(s, h), f"story {s.id}"),
                         encoded[s.id][1].decode() if s.id in encoded
                         else _json(s.to_dict(), f"story {s.id}"), h)
                        for s, h in todo.values()]
                with self._mutex, self._conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO stories (id, record, body, hash, rev) "
                        "VALUES (%s, %s::json, %s::json, %s, nextval('story_rev')) "
                        "ON CONFLICT (id) DO UPDATE SET record = excluded.record, "
                        "body = excluded.body, hash = excluded.hash, rev = excluded.rev", rows)
                self._hashes = None
        return results

    def story_hash(self, story_id: str) -> str | None:
        cached = self._hashes
        if cached is not None and self.in_transaction and cached[0] == self._epoch:
            return cached[1].get(story_id)
        row = self._execute("SELECT hash FROM stories WHERE id = %s", (story_id,)).fetchone()
        return row[0] if row else None

    def _story(self, story_id: str, body: dict) -> Story:
        try:
            return Story.from_dict(body)
        except (KeyError, ValueError, TypeError) as e:
            raise DamagedBody(story_id, f"{redact(self.url)}: corrupt story {story_id} ({e})",
                              "ingest the story file again to rewrite it") from e

    def get_story(self, story_id: str) -> Story | None:
        row = self._execute("SELECT body FROM stories WHERE id = %s", (story_id,)).fetchone()
        return self._story(story_id, row[0]) if row else None

    def get_stories(self, ids: Iterable[str]) -> list[Story]:
        ids = list(ids)
        rows = dict(self._execute("SELECT id, body FROM stories WHERE id = ANY(%s)",
                                  (ids,)).fetchall())
        return [self._story(i, rows[i]) for i in ids if i in rows]

    def list_stories(self) -> list[Story]:
        """Every story from the index records (bodies empty), ordered by id."""
        rows = self._execute("SELECT id, record FROM stories").fetchall()
        if self.in_transaction:  # publish reads every hash next: answer from here
            self._hashes = (self._epoch, {i: r.get("hash") for i, r in rows})
        # Sorted in Python, like the embedded store: the database collation may differ.
        return sorted((self._story(i, r) for i, r in rows), key=lambda s: s.id)

    def story_count(self) -> int:
        return self._execute("SELECT count(*) FROM stories").fetchone()[0]

    # --- subscribers -----------------------------------------------------------------------

    def _sub_params(self, sub: Subscriber) -> tuple[str, str, str, datetime]:
        rec = sub.to_dict()
        return (rec["email"], _json(rec, f"subscriber {rec['email']}"), sub.status, sub.created)

    def get_subscriber(self, email: str) -> Subscriber | None:
        row = self._execute("SELECT data FROM subscribers WHERE email = %s",
                            (email_key(email),)).fetchone()
        return Subscriber.from_dict(row[0]) if row else None

    def list_subscribers(self, status: str | None = None) -> list[Subscriber]:
        """Subscribers in email order (like the embedded store), optionally of one status."""
        return list(self.iter_subscribers(status))

    def iter_subscribers(self, status: str | None = None) -> Iterator[Subscriber]:
        """Streamed in email order, a page at a time (keyset on email: no transaction or
        cursor stays open while the caller sends)."""
        last = ""
        while True:
            rows = self._execute(
                "SELECT email, data FROM subscribers WHERE email > %s "
                "AND (%s::text IS NULL OR status = %s) ORDER BY email LIMIT %s",
                (last, status, status, BATCH)).fetchall()
            if not rows:
                return
            for _, data in rows:
                yield Subscriber.from_dict(data)
            last = rows[-1][0]

    def add_subscriber(self, sub: Subscriber) -> Subscriber:
        sub = dataclasses.replace(sub, email=email_key(sub.email))
        row = self._execute("INSERT INTO subscribers (email, data, status, created) "
                            "VALUES (%s, %s::json, %s, %s) ON CONFLICT (email) DO NOTHING "
                            "RETURNING 1", self._sub_params(sub)).fetchone()
        if row is None:
            raise StoreError(f"subscriber {sub.email} already exists",
                             "use `digest subscribers remove` first, or import to update")
        return sub

    def upsert_subscribers(self, subs: Iterable[Subscriber]) -> tuple[int, int]:
        """Add or replace many subscribers; returns (added, updated). An existing row keeps
        its `created` time."""
        batch: dict[str, Subscriber] = {}
        for sub in subs:
            key = email_key(sub.email)
            batch[key] = dataclasses.replace(sub, email=key)  # a repeat: the last one wins
        added = updated = 0
        with self.transaction():
            old = dict(self._execute("SELECT email, data FROM subscribers WHERE email = ANY(%s) "
                                     "FOR UPDATE", (list(batch),)).fetchall())
            new_rows, changed = [], []
            for key, sub in batch.items():
                prev = old.get(key)
                if prev is None:
                    new_rows.append(self._sub_params(sub))
                    continue
                if prev.get("created"):
                    sub = dataclasses.replace(sub, created=Subscriber.from_dict(prev).created)
                if sub.to_dict() != prev:
                    changed.append(self._sub_params(sub))
            with self._mutex, self._conn.cursor() as cur:
                if new_rows:
                    cur.executemany("INSERT INTO subscribers (email, data, status, created) "
                                    "VALUES (%s, %s::json, %s, %s)", new_rows)
                if changed:
                    cur.executemany("UPDATE subscribers SET data = %s::json, status = %s, "
                                    "created = %s WHERE email = %s",
                                    [(d, st, c, e) for e, d, st, c in changed])
            added, updated = len(new_rows), len(changed)
        return added, updated

    def update_subscriber(self, email: str, **changes: Any) -> Subscriber:
        key = email_key(email)
        with self.transaction():
            row = self._execute("SELECT data FROM subscribers WHERE email = %s FOR UPDATE",
                                (key,)).fetchone()
            if row is None:
                raise StoreError(f"no subscriber {key}", "list them with `digest subscribers list`")
            try:
                sub = dataclasses.replace(Subscriber.from_dict(row[0]), **changes)
            except TypeError as e:
                raise StoreError(f"cannot update subscriber {email}: {e}",
                                 "use fields of digest.models.Subscriber") from e
            sub.email = email_key(sub.email)
            if sub.email != key and self.get_subscriber(sub.email):
                raise StoreError(f"subscriber {sub.email} already exists",
                                 "remove one of the two addresses first")
            if sub.to_dict() != row[0]:
                e, data, status, created = self._sub_params(sub)
                self._execute("UPDATE subscribers SET email = %s, data = %s::json, status = %s, "
                              "created = %s WHERE email = %s", (e, data, status, created, key))
        return sub

    def remove_subscriber(self, email: str) -> bool:
        row = self._execute("DELETE FROM subscribers WHERE email = %s RETURNING 1",
                            (email_key(email),)).fetchone()
        return row is not None

    def expire_pending(self, older_than: datetime, email: str | None = None) -> int:
        """Expire `pending` subscribers created before `older_than` (only `email` when given);
        returns how many. A re-subscribe that suppressed a gone status gets that status back
        (its `suppressed` field, set by `subscribers.subscribed`); the others are dropped."""
        where = ("status = 'pending' AND created < %s AND (%s::text IS NULL OR email = %s)")
        args = (older_than, *(2 * [email_key(email) if email else None]))
        with self.transaction():
            rows = self._execute(f"SELECT email, data FROM subscribers WHERE {where} "
                                 "AND coalesce(data->>'suppressed', '') <> '' FOR UPDATE",
                                 args).fetchall()
            for key, data in rows:
                sub = Subscriber.from_dict(data)
                sub = dataclasses.replace(sub, status=sub.suppressed, suppressed="")
                _, doc, status, _ = self._sub_params(sub)
                self._execute("UPDATE subscribers SET data = %s::json, status = %s "
                              "WHERE email = %s", (doc, status, key))
            cur = self._execute(f"DELETE FROM subscribers WHERE {where}", args)
            return len(rows) + cur.rowcount
