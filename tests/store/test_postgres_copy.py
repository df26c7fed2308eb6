"""`store copy` between the embedded store and PostgreSQL (a real server): everything,
history included, both ways, idempotent; a copied store does not send an edition again; and
the same stories publish byte-identical sites from either backend."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.models import Subscriber
from digest.store import open_store
from digest.store.copy import copy_store
from tests.support.store import make_story

# A real PostgreSQL server (Debian's `postgresql` package): more than Python.
pytestmark = pytest.mark.external

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _filled(path: Path):
    store = open_store(path)
    store.upsert_stories([make_story(i) for i in range(30)])
    store.upsert_subscribers([Subscriber(f"u{i:02d}@example.com", languages=["en"],
                                         tags=["ai"] if i % 2 else [], timezone="Asia/Shanghai",
                                         status="active" if i % 3 else "pending", created=T0)
                              for i in range(25)])
    store.meta_set("site_secret", "ab" * 32)
    store.meta_set("origin_ids", {"/in/b.txt": "x2", "/in/a.txt": "x1"})
    store.quarantine_put("/in/bad.txt", "fp", "bad.txt:3: no title")
    recs = []
    for i in range(25):
        base = {"digest": "daily", "edition": "2026-11-21", "email": f"u{i:02d}@example.com",
                "message_id": f"<m{i}@x>", "attempt": 1}
        recs.append({**base, "state": "sending", "at": "2026-11-21T07:00:00Z",
                     "stories": [make_story(1).id]})
        recs.append({**base, "state": "sent", "at": "2026-11-21T07:00:01Z",
                     "stories": [make_story(1).id, make_story(2).id]})
    store.journal.append(recs)
    store.journal.append([{"digest": "daily", "edition": "2026-11-22", "email": "u01@example.com",
                           "state": "failed", "at": "2026-11-22T07:00:00Z", "permanent": True,
                           "reason": "550 no such user"}])
    return store


def _content(store) -> dict:
    ids = [s.id for s in store.list_stories()]
    return {
        "index": store.list_stories(),
        "stories": store.get_stories(ids),
        "hashes": {i: store.story_hash(i) for i in ids},
        "subscribers": list(store.iter_subscribers()),
        "meta": {k: v for k, v in store.meta_items().items()
                 if k not in ("schema_version", "index_shards", "subscriber_shards")},
        "quarantine": store.quarantine_items(),
        "journal": list(store.journal.records()),
        "states": {(r["digest"], r["edition"], r["email"]):
                   store.journal.state(r["digest"], r["edition"], r["email"])
                   for r in store.journal.records()},
        "sent": {s.email: store.journal.sent_story_ids(s.email) for s in store.iter_subscribers()},
    }


def test_copy_to_postgres_and_back_is_complete_and_idempotent(tmp_path: Path, pg_url: str) -> None:
    src = _filled(tmp_path / "a")
    pg = open_store(pg_url)
    first = copy_store(src, pg)
    assert first.counts["stories"]["new"] == 30
    assert first.counts["subscribers"]["new"] == 25
    assert first.counts["journal"]["new"] == 51
    assert first.counts["meta"]["new"] == 2 and first.counts["quarantine"]["new"] == 1
    assert "stories: 30 new" in first.summary()
    assert _content(pg) == _content(src)

    again = copy_store(src, pg)
    assert again.new == 0, again.summary()
    assert again.counts["journal"] == {"new": 0, "unchanged": 51}
    assert again.counts["stories"]["unchanged"] == 30

    back = open_store(tmp_path / "b")
    copy_store(pg, back)
    assert _content(back) == _content(src)
    assert copy_store(pg, back).new == 0
    pg.close()


def test_a_copy_killed_half_way_finishes_when_run_again(tmp_path: Path, pg_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    src = _filled(tmp_path / "a")
    pg = open_store(pg_url)
    real = type(pg).upsert_subscribers
    calls = 0

    def dying(self, subs):  # the process "dies" on the second chunk of subscribers
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        return real(self, subs)

    monkeypatch.setattr("digest.store.copy.CHUNK", 10)
    monkeypatch.setattr(type(pg), "upsert_subscribers", dying)
    with pytest.raises(KeyboardInterrupt):
        copy_store(src, pg)
    monkeypatch.setattr(type(pg), "upsert_subscribers", real)
    report = copy_store(src, pg)
    assert report.counts["subscribers"]["new"] == 15  # the first chunk of 10 was kept
    assert report.counts["journal"]["new"] == 0  # the journal went first and is complete
    assert _content(pg) == _content(src)
    pg.close()


@pytest.mark.usefixtures("secret")
def test_an_edition_sent_before_the_copy_is_not_sent_again(tmp_path: Path, pg_url: str,
                                                           smtp_server) -> None:
    from digest.mail.transports import SmtpTransport
    from digest.pipeline.sending import send_digest
    from tests.support.send import NOW, add_subscribers, make_project, three_subscribers

    config = make_project(tmp_path, transport="smtp", host=smtp_server.host,
                          port=smtp_server.port, sender="AI News <digest@news.example.org>",
                          timeout=5.0)
    add_subscribers(config, *three_subscribers())

    def send(cfg):
        with SmtpTransport(cfg.smtp, backoff=0.01) as t:
            return send_digest(cfg, now=NOW, transport=t)

    send(config)
    assert len(smtp_server.messages) == 3
    copy_store(open_store(config.store), open_store(pg_url))
    on_pg = dataclasses.replace(config, store=dataclasses.replace(config.store, url=pg_url))
    report = send(on_pg)
    assert len(smtp_server.messages) == 3, report
    assert not report.sent


def test_publish_is_byte_identical_from_either_backend(tmp_path: Path, pg_url: str) -> None:
    from digest.pipeline.publishing import publish
    from tests.support.publish import HOSTILE, NOW, make_config, seed_stories, story

    stories = [*seed_stories(), story("hostile1", text=HOSTILE),
               story("zh-only", langs=("zh-Hant",), tags=("政策",), hours_ago=5)]
    emb = make_config(tmp_path / "emb", 政策="policy-zh")
    on_pg = make_config(tmp_path / "pg", 政策="policy-zh")
    on_pg = dataclasses.replace(on_pg, store=dataclasses.replace(on_pg.store, url=pg_url))
    open_store(emb.store).upsert_stories(stories)
    open_store(on_pg.store).upsert_stories(stories)
    publish(emb, now=NOW)
    publish(on_pg, now=NOW)
    assert not (tmp_path / "pg" / "store").exists()

    def files(root: Path) -> dict[str, bytes]:
        # The manifest (and its shards) records the store's signature (which backend built
        # it), the plan state the embedded store's index shards: the writer's bookkeeping
        # (dot-named), never served.
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and not any(x.startswith(".") for x in p.relative_to(root).parts)}

    a, b = files(tmp_path / "emb" / "public"), files(tmp_path / "pg" / "public")
    assert sorted(a) == sorted(b) and len(a) > 10
    assert [k for k in a if a[k] != b[k]] == []


def test_cli_store_copy_prints_counts_and_refuses_a_password(config, pg_url: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    from digest.cli import main

    cfg = str(config.path)
    assert main(["--config", cfg, "store", "copy", "--to", pg_url]) == 0
    out = capsys.readouterr().out
    assert f"→ {pg_url}" in out and "stories: 3 new" in out
    assert main(["--config", cfg, "store", "copy", "--to", pg_url]) == 0
    assert "stories: 0 new, 0 updated, 3 unchanged" in capsys.readouterr().out
    assert main(["--config", cfg, "store", "copy", "--to", str(tmp_path / "back")]) == 0
    assert open_store(tmp_path / "back").story_count() == 3
    capsys.readouterr()
    secret_url = pg_url.replace("@", ":s3cret@", 1)
    assert main(["--config", cfg, "store", "copy", "--to", secret_url]) == 1
    err = capsys.readouterr().err
    assert "password" in err and "PGPASSWORD" in err and "s3cret" not in err
    assert main(["--config", cfg, "store", "copy", "--to", str(config.store.path)]) == 1
