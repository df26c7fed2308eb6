"""The PostgreSQL backend against a real server: the StoreBackend contract, the journal's
claims across sessions, leader election, migrations, and `[store] url` in config.toml."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.config import StoreConfig
from digest.config.loader import parse_config
from digest.errors import ConfigError, StoreError
from digest.models import Subscriber
from digest.store import StoreBackend, open_store
from digest.store.pg_schema import SCHEMA_VERSION
from tests.support.store import make_story

# A real PostgreSQL server (Debian's `postgresql` package): more than Python.
pytestmark = pytest.mark.external

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _rec(edition: str, email: str, state: str, at: str = "2026-11-22T08:00:00Z", **kw) -> dict:
    return {"digest": "daily", "edition": edition, "email": email, "state": state, "at": at, **kw}


@pytest.fixture
def pg(pg_url: str):
    store = open_store(pg_url)
    yield store
    store.close()


def test_url_opens_postgres_and_writes_nothing_under_path(pg_url: str, tmp_path: Path) -> None:
    store = open_store(StoreConfig(path=tmp_path / "store", url=pg_url))
    store.upsert_stories([make_story(1)])
    store.meta_set("k", {"a": [1, 2]})
    assert store.kind == "postgresql" and isinstance(store, StoreBackend)
    assert isinstance(store.journal, type(store.journal))
    assert not (tmp_path / "store").exists()
    assert store.meta_get("schema_version") == SCHEMA_VERSION
    store.close()


def test_stories_round_trip_and_report_changes(pg) -> None:
    a, b = make_story(1), make_story(2)
    sig0 = pg.signature()
    assert pg.upsert_stories([a, b]) == [(a.id, "added"), (b.id, "added")]
    sig1 = pg.signature()
    assert sig1 != sig0
    assert pg.upsert_stories([a, b]) == [(a.id, "unchanged"), (b.id, "unchanged")]
    assert pg.signature() == sig1  # unchanged stories write nothing
    b2 = make_story(2, rev=1)
    assert pg.upsert_stories([b2]) == [(b.id, "updated")]
    assert pg.signature() != sig1
    assert pg.get_story(a.id) == a and pg.get_story(b.id) == b2
    assert pg.get_story("nope") is None
    assert pg.get_stories([b.id, "nope", a.id]) == [b2, a]
    assert pg.story_count() == 2
    assert pg.story_hash(a.id) == a.content_hash() and pg.story_hash("nope") is None
    listed = pg.list_stories()
    assert [s.id for s in listed] == sorted([a.id, b.id])
    assert all(not s.body and not s.faq for s in listed)  # index records only
    assert listed[0].summary_dict() == a.summary_dict()


def test_index_records_equal_the_embedded_stores(pg, tmp_path: Path) -> None:
    stories = [make_story(i) for i in range(5)]
    emb = open_store(tmp_path / "emb")
    emb.upsert_stories(stories)
    pg.upsert_stories(stories)
    assert pg.list_stories() == emb.list_stories()
    assert pg.get_stories([s.id for s in stories]) == emb.get_stories([s.id for s in stories])


def test_transaction_commits_at_the_outer_exit_and_rolls_back_on_error(pg, pg_url) -> None:
    other = open_store(pg_url)
    with pg.transaction():
        pg.upsert_stories([make_story(1)])
        with pg.transaction():  # joins the outer one
            pg.meta_set("x", 1)
        assert other.story_count() == 0 and other.meta_get("x") is None
    assert other.story_count() == 1 and other.meta_get("x") == 1
    with pytest.raises(RuntimeError), pg.transaction():
        pg.upsert_stories([make_story(2)])
        pg.quarantine_put("f.txt", "fp", "bad")
        raise RuntimeError("boom")
    assert pg.story_count() == 1 and pg.quarantine_get("f.txt") is None
    other.close()


def test_subscribers(pg) -> None:
    pg.add_subscriber(Subscriber("B@Example.com", status="active", created=T0))
    with pytest.raises(StoreError, match="already exists"):
        pg.add_subscriber(Subscriber("b@example.com"))
    added, updated = pg.upsert_subscribers([
        Subscriber("a@example.com", created=T0),
        Subscriber("b@example.com", status="active", timezone="Asia/Shanghai",
                   created=T0 + timedelta(days=3)),
        Subscriber("c@example.com", status="active", created=T0)])
    assert (added, updated) == (2, 1)
    b = pg.get_subscriber("B@EXAMPLE.com")
    assert b.timezone == "Asia/Shanghai" and b.created == T0  # created kept
    assert pg.upsert_subscribers([b]) == (0, 0)
    assert [s.email for s in pg.iter_subscribers()] == ["a@example.com", "b@example.com",
                                                        "c@example.com"]
    assert [s.email for s in pg.list_subscribers("active")] == ["b@example.com", "c@example.com"]
    changed = pg.update_subscriber("C@example.com", tags=["ai"], status="unsubscribed")
    assert changed.email == "c@example.com"
    assert pg.get_subscriber("c@example.com").tags == ["ai"]
    assert pg.list_subscribers("active") == [pg.get_subscriber("b@example.com")]
    with pytest.raises(StoreError, match="no subscriber"):
        pg.update_subscriber("zz@example.com", status="active")
    assert pg.expire_pending(T0 + timedelta(days=1)) == 1  # a@ is pending since T0
    assert pg.remove_subscriber("b@example.com") and not pg.remove_subscriber("b@example.com")
    assert [s.email for s in pg.list_subscribers()] == ["c@example.com"]


def test_expire_pending_restores_a_suppressed_status(pg) -> None:
    """Like the embedded store: an unconfirmed re-subscribe gets its gone status back."""
    pg.upsert_subscribers([
        Subscriber("u@example.com", created=T0, suppressed="unsubscribed"),
        Subscriber("c@example.com", created=T0, suppressed="complained"),
        Subscriber("p@example.com", created=T0),
        Subscriber("f@example.com", created=T0 + timedelta(days=8), suppressed="complained")])
    cutoff = T0 + timedelta(days=1)
    assert pg.expire_pending(cutoff, email="c@example.com") == 1
    assert pg.expire_pending(cutoff) == 2
    assert [(s.email, s.status, s.suppressed) for s in pg.list_subscribers()] == [
        ("c@example.com", "complained", ""), ("f@example.com", "pending", "complained"),
        ("u@example.com", "unsubscribed", "")]
    assert [s.email for s in pg.list_subscribers("complained")] == ["c@example.com"]
    assert pg.expire_pending(cutoff) == 0


def test_iter_subscribers_pages_through_many(pg) -> None:
    subs = [Subscriber(f"u{i:05d}@example.com", status="active", created=T0) for i in range(2500)]
    assert pg.upsert_subscribers(subs) == (2500, 0)
    got = [s.email for s in pg.iter_subscribers("active")]
    assert got == sorted(s.email for s in subs)


def test_meta_and_quarantine(pg) -> None:
    assert pg.meta_get("missing", 7) == 7
    pg.meta_set("site_secret", "ab" * 32)
    pg.meta_set("ids", {"z": "1", "a": "2"})
    assert pg.meta_get("ids") == {"z": "1", "a": "2"}
    assert list(pg.meta_get("ids")) == ["z", "a"]  # json, not jsonb: order kept
    pg.quarantine_put("in/a.txt", "fp1", "line 3: bad")
    pg.quarantine_put("in/a.txt", "fp2", "line 4: bad")
    assert pg.quarantine_get("in/a.txt") == {"path": "in/a.txt", "fingerprint": "fp2",
                                             "reason": "line 4: bad"}
    assert pg.quarantine_items() == [pg.quarantine_get("in/a.txt")]
    pg.quarantine_clear("in/a.txt")
    assert pg.quarantine_get("in/a.txt") is None


def test_journal_state_history_and_sent_ids(pg) -> None:
    j = pg.journal
    j.append([_rec("e1", "A@x.org", "sending"), _rec("e1", "b@x.org", "sending")])
    j.append([_rec("e1", "a@x.org", "sent", "2026-11-22T08:00:01Z", stories=["s1", "s2"]),
              _rec("e1", "b@x.org", "failed", "2026-11-22T08:00:01Z", permanent=True)])
    assert j.state("daily", "e1", "a@X.org")["state"] == "sent"
    assert j.state("daily", "e1", "b@x.org")["permanent"] is True
    assert j.state("daily", "e2", "a@x.org") is None
    assert j.sent_story_ids("A@x.org") == {"s1", "s2"} and j.sent_story_ids("b@x.org") == set()
    assert [r["state"] for r in j.records()] == ["sending", "sending", "sent", "failed"]
    with pytest.raises(StoreError, match="bad journal record"):
        j.append([{"digest": "daily", "state": "sent"}])


def test_claims_are_exclusive_across_sessions_and_free_when_the_holder_dies(pg, pg_url) -> None:
    other = open_store(pg_url)
    recs = [_rec("e1", f"u{i}@x.org", "sending") for i in range(4)]
    assert pg.journal.claim(recs[:2]) == recs[:2]
    assert other.journal.claim(recs) == recs[2:]  # the first two belong to `pg`
    assert other.journal.claim(recs) == []  # its own live claims too
    # outcomes: a temporary failure is free again, a permanent one and a sent one are not
    pg.journal.append([_rec("e1", "u0@x.org", "failed", "2026-11-22T08:01:00Z"),
                       _rec("e1", "u1@x.org", "failed", "2026-11-22T08:01:00Z", permanent=True)])
    other.journal.append([_rec("e1", "u2@x.org", "sent", "2026-11-22T08:01:00Z")])
    assert other.journal.claim(recs[:3]) == [recs[0]]
    # the session holding u3's claim ends (a killed sender): free at once, no lease wait
    pg_pid_holder = open_store(pg_url)
    r5 = _rec("e2", "u5@x.org", "sending")
    assert pg_pid_holder.journal.claim([r5]) == [r5]
    assert other.journal.claim([r5]) == []
    pg_pid_holder.close()  # the server process exits a moment after the client hangs up
    deadline = time.monotonic() + 10
    while not (got := other.journal.claim([r5])) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert got == [r5]
    assert time.monotonic() < deadline  # well before the 120 s lease
    other.close()


def _admin(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True)


def _pid(store) -> int:
    return store.journal._conn.info.backend_pid


def _wait_gone(admin, pid: int) -> None:
    deadline = time.monotonic() + 10
    while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
        assert time.monotonic() < deadline, f"backend {pid} still there"
        time.sleep(0.05)


def test_a_live_senders_claim_outlasts_its_lease(pg, pg_url) -> None:
    """Finding 3a: a batch that takes longer than the lease (SMTP retries, a rate limit)
    keeps its claims while its session lives: another sender mailing them is a duplicate."""
    other = open_store(pg_url)
    r = _rec("e3", "u6@x.org", "sending")
    assert pg.journal.claim([r], lease_seconds=0) == [r]  # the lease has run out at once
    time.sleep(0.05)
    assert other.journal.claim([r]) == []  # ...but its sender is alive: still its claim
    assert pg.journal.renew([r]) == [r]
    other.close()


def test_a_late_outcome_never_overwrites_another_senders_claim(pg, pg_url) -> None:
    """Finding 3b: outcomes are applied only under the claim's own token."""
    a, b, c = open_store(pg_url), open_store(pg_url), open_store(pg_url)
    admin = _admin(pg_url)
    r = _rec("e1", "u1@x.org", "sending")
    assert a.journal.claim([r]) == [r]
    # a's claim lapses without a's knowing (say its session was replaced): b takes over
    admin.execute("UPDATE deliveries_current SET claim_pid = NULL, claimed_until = now() "
                  "- interval '1 second'")
    rb = _rec("e1", "u1@x.org", "sending", "2026-11-22T08:00:30Z")
    assert b.journal.claim([rb]) == [rb]
    a.journal.append([_rec("e1", "u1@x.org", "failed", "2026-11-22T08:05:00Z")])  # a, late
    assert pg.journal.state("daily", "e1", "u1@x.org")["state"] == "sending"  # b's, intact
    assert a.journal.renew([r]) == [] and b.journal.renew([rb]) == [rb]
    # nor does a record from a sender that holds no claim on it
    c.journal.append([_rec("e1", "u1@x.org", "failed", "2026-11-22T08:06:00Z")])
    assert pg.journal.state("daily", "e1", "u1@x.org")["state"] == "sending"
    b.journal.append([_rec("e1", "u1@x.org", "sent", "2026-11-22T08:01:00Z", stories=["s1"])])
    assert pg.journal.state("daily", "e1", "u1@x.org")["state"] == "sent"
    a.journal.append([_rec("e1", "u1@x.org", "failed", "2026-11-22T08:07:00Z")])
    assert pg.journal.state("daily", "e1", "u1@x.org")["state"] == "sent"  # final stays
    assert [x["state"] for x in pg.journal.records()] == [
        "sending", "sending", "failed", "failed", "sent", "failed"]  # history has them all
    # with no live claim in the way, an unclaimed record applies as before (bounces)
    c.journal.append([_rec("e1", "u1@x.org", "bounced", "2026-11-22T09:00:00Z")])
    assert pg.journal.state("daily", "e1", "u1@x.org")["state"] == "bounced"
    for s in (a, b, c):
        s.close()
    admin.close()


def test_renew_raises_once_the_senders_session_is_gone(pg, pg_url) -> None:
    """Finding 3c: a sender whose session dropped cannot prove its claims: renew raises,
    and another sender has the rows at once."""
    other = open_store(pg_url)
    admin = _admin(pg_url)
    recs = [_rec("e1", f"u{i}@x.org", "sending") for i in range(3)]
    assert pg.journal.claim(recs) == recs
    assert pg.journal.renew(recs) == recs
    pid = _pid(pg)
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    _wait_gone(admin, pid)
    with pytest.raises(StoreError, match="cannot confirm"):
        pg.journal.renew(recs)
    assert other.journal.claim(recs) == recs
    other.close()
    admin.close()


def test_claims_see_sessions_that_ended_within_the_transaction(pg, pg_url) -> None:
    """Finding 8: pg_stat_activity is a snapshot taken at its first use in a transaction;
    a claim clears it, so a sender that died since is seen dead."""
    holder = open_store(pg_url)
    admin = _admin(pg_url)
    r = _rec("e1", "u1@x.org", "sending")
    assert holder.journal.claim([r]) == [r]
    pid = _pid(holder)
    conn = pg.journal._conn
    with conn.transaction():
        conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()  # snapshot taken
        holder.close()
        _wait_gone(admin, pid)
        assert pg.journal.claim([r]) == [r]
    admin.close()


def test_a_reused_pid_does_not_keep_a_dead_claim_alive(pg, pg_url) -> None:
    """Finding 8: a claim names its session by pid and backend_start; a later session that
    got the same pid does not hold the dead sender's rows."""
    other = open_store(pg_url)
    admin = _admin(pg_url)
    r = _rec("e1", "u1@x.org", "sending")
    assert other.journal.claim([r]) == [r]
    live = _pid(pg)  # a live session, standing in for the one that reused the pid
    admin.execute("UPDATE deliveries_current SET claim_pid = %s, "
                  "claim_started = now() - interval '1 hour'", (live,))
    assert pg.journal.claim([r]) == [r]
    other.close()
    admin.close()


def test_concurrent_claimers_split_the_work_exactly_once(pg_url) -> None:
    stores = [open_store(pg_url) for _ in range(4)]
    recs = [_rec("e1", f"u{i:03d}@x.org", "sending") for i in range(200)]
    won: list[list[dict]] = [[] for _ in stores]
    barrier = threading.Barrier(len(stores))

    def run(n: int) -> None:
        barrier.wait()
        for i in range(0, len(recs), 10):
            won[n].extend(stores[n].journal.claim(recs[i:i + 10]))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    emails = [r["email"] for w in won for r in w]
    assert sorted(emails) == sorted(r["email"] for r in recs)  # each exactly once
    for s in stores:
        s.close()


def test_leader_is_one_holder_until_released(pg, pg_url) -> None:
    other = open_store(pg_url)
    with pg.leader("publish") as first:
        with other.leader("publish") as second, other.leader("ingest") as third:
            assert (first, second, third) == (True, False, True)
    with other.leader("publish") as again:
        assert again
    other.close()


def test_send_lock_excludes_nobody(pg, pg_url) -> None:
    other = open_store(pg_url)
    with pg.send_lock("daily"), other.send_lock("daily"):
        pass
    other.close()


def test_two_nodes_migrate_a_fresh_database_once(pg_url) -> None:
    errors: list[BaseException] = []
    stores = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        try:
            stores.append(open_store(pg_url))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(stores) == 4
    assert all(s.meta_get("schema_version") == SCHEMA_VERSION for s in stores)
    for s in stores:
        s.close()


def test_newer_schema_is_refused(pg) -> None:
    pg.meta_set("schema_version", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="newer than this digest"):
        open_store(pg.url)


def test_unreachable_server_is_a_store_error_without_the_password(monkeypatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "hunter2")
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "2")
    with pytest.raises(StoreError, match="cannot connect") as e:
        open_store("postgresql://nobody@127.0.0.1:1/none")
    assert "hunter2" not in str(e.value) and "PGPASSWORD" in e.value.hint


# --- [store] url in config.toml --------------------------------------------------------------


def _config(tmp_path: Path, url: str):
    text = f'[store]\npath = "store"\nurl = "{url}"\n'
    return parse_config(text, tmp_path / "config.toml")


def test_config_url_selects_postgres(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "postgresql://digest@db.example.org:5432/digest")
    assert cfg.store.url == "postgresql://digest@db.example.org:5432/digest"
    assert _config(tmp_path, "").store.url == ""


@pytest.mark.parametrize("url", [
    "postgresql://digest:s3cret@db.example.org/digest",
    "postgres://digest:s3cret@db.example.org:5432/digest",
    "postgresql://db.example.org/digest?user=digest&password=s3cret",
])
def test_config_url_with_a_password_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError) as e:
        _config(tmp_path, url)
    msg = str(e.value)
    assert "[store].url" in msg and "password" in msg
    assert "PGPASSWORD" in msg and "~/.pgpass" in msg
    assert "s3cret" not in msg


@pytest.mark.parametrize("url", ["mysql://digest@db/digest", "db.example.org/digest",
                                 "postgresql://digest@db:notaport/digest"])
def test_config_url_must_be_postgresql(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match=r"\[store\]\.url"):
        _config(tmp_path, url)
