"""The PostgreSQL store's delivery journal: current state per key, append-only history, and
the claims that make a send exactly-once across processes and nodes."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg

from digest.errors import StoreError
from digest.store.base import CLAIM_LEASE_SECONDS, check_records, email_key
from digest.store.storage import encode

BATCH = 1000

_UPSERT = """
INSERT INTO deliveries_current AS c
    (digest, edition, email, state, permanent, at, record, claimed_until, claim_pid,
     claim_started, claim_token)
VALUES (%(digest)s, %(edition)s, %(email)s, %(state)s, %(permanent)s, %(at)s, %(record)s::json,
        CASE WHEN %(state)s = 'sending' THEN now() + %(lease)s * interval '1 second' END,
        CASE WHEN %(state)s = 'sending' THEN pg_backend_pid() END,
        CASE WHEN %(state)s = 'sending' THEN %(started)s::timestamptz END,
        CASE WHEN %(state)s = 'sending' THEN %(token)s END)
ON CONFLICT (digest, edition, email) DO UPDATE SET
    state = excluded.state, permanent = excluded.permanent, at = excluded.at,
    record = excluded.record, claimed_until = excluded.claimed_until,
    claim_pid = excluded.claim_pid, claim_started = excluded.claim_started,
    claim_token = excluded.claim_token
"""
# A `sending` row's claim has lapsed when no live session backs it: the claiming session
# (pid and backend_start: a pid is reused by later sessions) is gone from pg_stat_activity
# -- a killed sender's connection ends with it, so its rows are free at once. A live
# session's claim never lapses, however long its batch takes (SMTP retries, a rate limit):
# the sender may still be mailing those rows. Only a row no session claimed lapses with its
# lease. (The activity snapshot is cleared at the start of each transaction that asks.)
_LAPSED = """(c.state = 'sending' AND (
       (c.claim_pid IS NULL AND (c.claimed_until IS NULL OR c.claimed_until < now()))
    OR (c.claim_pid IS NOT NULL AND NOT EXISTS (
           SELECT 1 FROM pg_stat_activity a WHERE a.pid = c.claim_pid
           AND (c.claim_started IS NULL OR a.backend_start IS NULL
                OR a.backend_start = c.claim_started)))))"""
# A key is free when it has no row, its latest is a `failed` that is not permanent, or it is
# `sending` and the claim lapsed.
_CLAIM = _UPSERT + f"""
WHERE (c.state = 'failed' AND NOT c.permanent) OR {_LAPSED}
RETURNING 1
"""
# An outcome (or a `sending` record) from the holder of the key's claim replaces the row only
# while the claim is still its own; without a claim, a record replaces any row but a live
# claim of another sender (a late outcome never overwrites the claim that took over).
_APPEND_HELD = _UPSERT + " WHERE c.claim_token = %(held)s RETURNING 1"
_APPEND_FREE = _UPSERT + f" WHERE c.state <> 'sending' OR {_LAPSED} RETURNING 1"
_RENEW = """
UPDATE deliveries_current AS c
SET claimed_until = now() + %(lease)s * interval '1 second'
FROM unnest(%(digests)s::text[], %(editions)s::text[], %(emails)s::text[], %(tokens)s::text[])
     AS k(digest, edition, email, token)
WHERE c.digest = k.digest AND c.edition = k.edition AND c.email = k.email
  AND c.state = 'sending' AND c.claim_token = k.token
RETURNING c.digest, c.edition, c.email
"""
_CLEAR_SNAPSHOT = "SELECT pg_stat_clear_snapshot()"
# The current records of a batch of keys: editions x emails on the primary key, the pairs
# not asked for are dropped by the caller.
_STATES = """
SELECT edition, email, record FROM deliveries_current
WHERE edition = ANY(%s) AND email = ANY(%s) AND digest = %s
"""
_LOG = """
INSERT INTO deliveries_log (digest, edition, email, state, at, record)
VALUES (%(digest)s, %(edition)s, %(email)s, %(state)s, %(at)s, %(record)s::json)
ON CONFLICT (digest, edition, email, state, at) DO NOTHING
RETURNING 1
"""
# An imported record becomes the current state unless a later one is already there.
_IMPORT_CURRENT = _UPSERT + " WHERE c.at <= excluded.at"
_SENT = ("INSERT INTO sent_stories (email, digest, story_id) VALUES (%s, %s, %s) "
         "ON CONFLICT DO NOTHING")


def _params(rec: dict, lease: float = CLAIM_LEASE_SECONDS, started: Any = None,
            token: str | None = None) -> dict[str, Any]:
    return {"digest": rec["digest"], "edition": rec["edition"], "email": email_key(rec["email"]),
            "state": rec["state"], "permanent": bool(rec.get("permanent")),
            "at": str(rec.get("at") or ""), "record": encode(rec, "journal record").decode(),
            "lease": float(lease), "started": started, "token": token}


def _key(p: dict[str, Any]) -> tuple[str, str, str]:
    return (p["digest"], p["edition"], p["email"])


class PgJournal:
    """`Journal` on PostgreSQL. It has a connection of its own (autocommit): appends are
    durable at once whatever the store's transaction does, and `claim_pid`/`claim_started`
    name this session, so its claims lapse the moment the process (or its connection) dies.
    Each claim also gets a token, kept here per key until its outcome is recorded: an
    outcome only replaces the row while it still holds that token."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._mutex = threading.Lock()
        self._held: dict[tuple[str, str, str], str] = {}  # key -> token of our claim
        self._started: Any = None  # this session's backend_start

    def _session_start(self) -> Any:
        if self._started is None:
            row = self._conn.execute("SELECT backend_start FROM pg_stat_activity "
                                     "WHERE pid = pg_backend_pid()").fetchone()
            self._started = row[0] if row else None
        return self._started

    def _sent_rows(self, cur: Any, rec: dict) -> None:
        if rec["state"] == "sent" and rec.get("stories"):
            cur.executemany(_SENT, [(email_key(rec["email"]), rec["digest"], str(s))
                                    for s in rec["stories"]])

    def append(self, records: list[dict]) -> None:
        """Log every record; each becomes the key's current state unless the key is held by
        a live claim that is not ours (see _APPEND_HELD, _APPEND_FREE). Ids of a `sent` are
        kept either way: the mail went."""
        records = check_records(records, "PostgreSQL journal")
        if not records:
            return
        with self._mutex, self._conn.transaction(), self._conn.cursor() as cur:
            started = self._session_start()
            cur.execute(_CLEAR_SNAPSHOT)
            for rec in records:
                p = _params(rec, started=started)
                key = _key(p)
                held = self._held.get(key)
                if rec["state"] == "sending":
                    p["token"] = held or uuid.uuid4().hex
                cur.execute(_LOG, p)
                self._sent_rows(cur, rec)
                if held is not None:
                    cur.execute(_APPEND_HELD, {**p, "held": held})
                else:
                    cur.execute(_APPEND_FREE, p)
                if cur.fetchone() is None:
                    continue  # another sender's live claim, or ours lost: history only
                if rec["state"] == "sending":
                    self._held[key] = p["token"]
                else:
                    self._held.pop(key, None)  # the claim's outcome is recorded

    def claim(self, records: list[dict], lease_seconds: float = CLAIM_LEASE_SECONDS) -> list[dict]:
        records = check_records(records, "PostgreSQL journal")
        claimed: list[dict] = []
        seen: set[tuple[str, str, str]] = set()
        token = uuid.uuid4().hex
        with self._mutex, self._conn.transaction(), self._conn.cursor() as cur:
            started = self._session_start()
            cur.execute(_CLEAR_SNAPSHOT)  # see sessions that ended since the last look
            for rec in records:
                if rec["state"] != "sending":
                    raise StoreError(f"claim of a {rec['state']!r} record",
                                     "only `sending` records are claimed")
                p = _params(rec, lease_seconds, started, token)
                key = _key(p)
                if key in seen:
                    continue  # the same key twice in one batch: the first one has it
                seen.add(key)
                cur.execute(_CLAIM, p)
                if cur.fetchone() is not None:
                    cur.execute(_LOG, p)
                    claimed.append(rec)
                    self._held[key] = token
        return claimed

    def renew(self, records: list[dict], lease_seconds: float = CLAIM_LEASE_SECONDS
              ) -> list[dict]:
        """The records (claimed here) whose claims are still ours, in order, their leases
        extended. StoreError when the database cannot answer (this session dropped: its
        claims are free for others now, so the caller must not send them)."""
        if not records:
            return []
        keys = [(r["digest"], r["edition"], email_key(r["email"])) for r in records]
        ask = [(k, self._held[k]) for k in dict.fromkeys(keys) if k in self._held]
        if not ask:
            return []
        try:
            with self._mutex, self._conn.transaction(), self._conn.cursor() as cur:
                cur.execute(_RENEW, {"lease": float(lease_seconds),
                                     "digests": [k[0] for k, _ in ask],
                                     "editions": [k[1] for k, _ in ask],
                                     "emails": [k[2] for k, _ in ask],
                                     "tokens": [t for _, t in ask]})
                still = {tuple(row) for row in cur.fetchall()}
        except psycopg.Error as e:
            raise StoreError(f"PostgreSQL journal: cannot confirm this sender's claims "
                             f"({str(e).strip()})",
                             "the database session dropped, so its claims are free for "
                             "other senders: the rest of the batch was not sent; a rerun "
                             "(or another node) sends it") from e
        # A lost claim's token stays in _held: a late outcome of it is never applied.
        return [r for r, k in zip(records, keys, strict=True) if k in still]

    def state(self, digest: str, edition: str, email: str) -> dict | None:
        return self.states(digest, [(edition, email)])[0]

    def states(self, digest: str, keys: Sequence[tuple[str, str]]) -> list[dict | None]:
        """`state` of each (edition, email), in order: one query for the lot."""
        wanted = [(edition, email_key(email)) for edition, email in keys]
        if not wanted:
            return []
        with self._mutex:
            rows = self._conn.execute(_STATES, (list(dict.fromkeys(e for e, _ in wanted)),
                                                list(dict.fromkeys(m for _, m in wanted)),
                                                digest)).fetchall()
        found = {(edition, email): rec for edition, email, rec in rows}
        return [dict(found[k]) if k in found else None for k in wanted]

    def sent_story_ids(self, email: str, digest: str | None = None) -> frozenset[str]:
        return self.sent_story_ids_many([email], digest)[0]

    def sent_story_ids_many(self, emails: Sequence[str], digest: str | None = None
                            ) -> list[frozenset[str]]:
        """`sent_story_ids` of each email, in order: one query for the lot."""
        keys = [email_key(e) for e in emails]
        if not keys:
            return []
        distinct = list(dict.fromkeys(keys))
        with self._mutex:
            if digest is None:
                rows = self._conn.execute(
                    "SELECT email, story_id FROM sent_stories WHERE email = ANY(%s)",
                    (distinct,)).fetchall()
            else:  # '' = sent before digests were told apart: counts for every digest
                rows = self._conn.execute(
                    "SELECT email, story_id FROM sent_stories WHERE email = ANY(%s) "
                    "AND digest IN (%s, '')", (distinct, digest)).fetchall()
        ids: dict[str, set[str]] = {}
        for email, story in rows:
            ids.setdefault(email, set()).add(story)
        frozen = {e: frozenset(ids.get(e, ())) for e in distinct}
        return [frozen[k] for k in keys]

    def records(self) -> Iterator[dict]:
        """Every record in the order it was logged, fetched in pages (keyset on the log id:
        no transaction stays open between pages)."""
        last = 0
        while True:
            with self._mutex:
                rows = self._conn.execute(
                    "SELECT id, record FROM deliveries_log WHERE id > %s ORDER BY id LIMIT %s",
                    (last, BATCH)).fetchall()
            if not rows:
                return
            for _, rec in rows:
                yield rec
            last = rows[-1][0]

    def import_records(self, records: Iterable[dict]) -> int:
        new = 0
        batch: list[dict] = []

        def flush() -> int:
            added = 0
            with self._mutex, self._conn.transaction(), self._conn.cursor() as cur:
                started = self._session_start()
                for rec in check_records(batch, "PostgreSQL journal"):
                    p = _params(rec, started=started)
                    cur.execute(_LOG, p)
                    if cur.fetchone() is None:
                        continue  # already here (a second or resumed copy)
                    added += 1
                    cur.execute(_IMPORT_CURRENT, p)
                    self._sent_rows(cur, rec)
            batch.clear()
            return added

        for rec in records:
            batch.append(rec)
            if len(batch) >= BATCH:
                new += flush()  # one transaction per batch: a killed copy resumes from here
        if batch:
            new += flush()
        return new

    def count(self) -> int:
        with self._mutex:
            return self._conn.execute("SELECT count(*) FROM deliveries_log").fetchone()[0]
