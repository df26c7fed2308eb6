"""The PostgreSQL store's schema: versioned steps, applied on open under an advisory lock."""

from __future__ import annotations

from typing import Any

from digest import codec
from digest.errors import StoreError

# Advisory lock keys (two-int form): class MIGRATE_LOCK is held for the length of a
# migration transaction, so two nodes starting at once never migrate together; class
# LEADER_LOCK with hashtext(job) is the leader election of `StoreBackend.leader`.
MIGRATE_LOCK = 0x64677374  # "dgst"
LEADER_LOCK = 0x64676C64  # "dgld"

# JSON columns are `json`, not `jsonb`: json keeps the text as written, so key order
# survives (jsonb reorders object keys, and a story's title/summary dicts are ordered by
# language: reordering them would change feed bytes).
STEPS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE IF NOT EXISTS stories (
        id text PRIMARY KEY,
        record json NOT NULL,          -- the index record: summary_dict + summary, origin, hash
        body json NOT NULL,            -- Story.to_dict()
        hash text NOT NULL,
        rev bigint NOT NULL            -- from story_rev: bumps on every change (signature)
    );
    CREATE SEQUENCE IF NOT EXISTS story_rev;
    CREATE TABLE IF NOT EXISTS subscribers (
        email text COLLATE "C" PRIMARY KEY,  -- email_key(email); "C": code point order,
                                             -- the order iter_subscribers pages through
        data json NOT NULL,            -- Subscriber.to_dict()
        status text NOT NULL,
        created timestamptz NOT NULL
    );
    CREATE INDEX IF NOT EXISTS subscribers_status ON subscribers (status, created);
    CREATE TABLE IF NOT EXISTS quarantine (
        path text PRIMARY KEY,
        fingerprint text NOT NULL,
        reason text NOT NULL
    );
    -- the journal: current state per key apart from the append-only history
    CREATE TABLE IF NOT EXISTS deliveries_current (
        digest text NOT NULL,
        edition text NOT NULL,
        email text NOT NULL,
        state text NOT NULL,
        permanent boolean NOT NULL DEFAULT false,
        at text NOT NULL DEFAULT '',
        record json NOT NULL,
        claimed_until timestamptz,
        claim_pid int,
        PRIMARY KEY (digest, edition, email)
    );
    CREATE TABLE IF NOT EXISTS deliveries_log (
        id bigserial PRIMARY KEY,
        digest text NOT NULL,
        edition text NOT NULL,
        email text NOT NULL,
        state text NOT NULL,
        at text NOT NULL DEFAULT '',
        record json NOT NULL,
        UNIQUE (digest, edition, email, state, at)
    );
    CREATE TABLE IF NOT EXISTS sent_stories (
        email text NOT NULL,
        story_id text NOT NULL,
        PRIMARY KEY (email, story_id)
    );
    """,
    # 2: sent story ids per digest (the planner dedupes per digest); rows from before count
    # for every digest (digest = '')
    """
    ALTER TABLE sent_stories ADD COLUMN IF NOT EXISTS digest text NOT NULL DEFAULT '';
    ALTER TABLE sent_stories DROP CONSTRAINT IF EXISTS sent_stories_pkey;
    ALTER TABLE sent_stories ADD PRIMARY KEY (email, digest, story_id);
    """,
    # 3: claims name their session by (pid, backend_start) -- a pid is reused by a later
    # session -- and carry a token per claim: only the claim's holder records its outcome
    """
    ALTER TABLE deliveries_current ADD COLUMN IF NOT EXISTS claim_started timestamptz;
    ALTER TABLE deliveries_current ADD COLUMN IF NOT EXISTS claim_token text;
    """,
)
SCHEMA_VERSION = len(STEPS)


def migrate(conn: Any, where: str) -> int:
    """Bring the database to SCHEMA_VERSION in one transaction holding the migration lock;
    returns the version found. Refuses a newer schema."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (MIGRATE_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value json NOT NULL)")
        row = conn.execute("SELECT value::text FROM meta WHERE key = 'schema_version'").fetchone()
        found = codec.loads(row[0]) if row else 0
        if not isinstance(found, int) or found > SCHEMA_VERSION:
            raise StoreError(f"{where}: schema version {found!r} is newer than this digest "
                             f"understands ({SCHEMA_VERSION})",
                             "upgrade digest, or point [store] url at another database")
        for step in STEPS[found:]:
            conn.execute(step)
        if found != SCHEMA_VERSION:
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', %s::json) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                         (str(SCHEMA_VERSION),))
    return found
