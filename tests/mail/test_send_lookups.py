"""The send planner reads the journal once per batch of subscribers (`states`,
`sent_story_ids_many`), not twice per subscriber, and plans exactly what per-subscriber reads
planned: done, resend (same Message-ID), retry of a failure, nothing for a final refusal."""

from __future__ import annotations

from pathlib import Path

from digest.pipeline import sendplan
from digest.pipeline.sending import send_digest
from digest.store import Store
from digest.store.journal import DeliveryJournal
from tests.support.send import NOW, add_subscribers, maildir_messages, make_project, sub

EDITION = "2026-11-22"


def _counting(monkeypatch) -> dict[str, list[int]]:
    calls: dict[str, list[int]] = {"states": [], "sent_many": [], "state": [], "sent": []}
    states, many = DeliveryJournal.states, DeliveryJournal.sent_story_ids_many
    one, sent = DeliveryJournal.state, DeliveryJournal.sent_story_ids

    def count(name, fn, size):
        def wrapper(self, *a, **k):
            calls[name].append(size(a))
            return fn(self, *a, **k)
        return wrapper

    monkeypatch.setattr(DeliveryJournal, "states", count("states", states, lambda a: len(a[1])))
    monkeypatch.setattr(DeliveryJournal, "sent_story_ids_many",
                        count("sent_many", many, lambda a: len(a[0])))
    monkeypatch.setattr(DeliveryJournal, "state", count("state", one, lambda a: 1))
    monkeypatch.setattr(DeliveryJournal, "sent_story_ids", count("sent", sent, lambda a: 1))
    return calls


def _rec(email: str, state: str, **extra: object) -> dict:
    return {"digest": "daily", "edition": EDITION, "email": email, "state": state,
            "message_id": f"<old-{email}>", "stories": [], "at": "2026-11-22T07:00:00Z",
            "reason": "451 try later", "attempt": 1, **extra}


def test_one_journal_read_per_batch_and_the_same_plan(tmp_path: Path, monkeypatch) -> None:
    config = make_project(tmp_path)
    emails = [f"u{i:03d}@example.com" for i in range(250)]
    add_subscribers(config, *(sub(e) for e in emails))
    store = Store(config.store.path)
    first = send_digest(config, now=NOW)  # a first edition: its ids count as sent later
    assert len(first.sent) == 250
    ids = store.journal.state("daily", EDITION, emails[0])["stories"]
    # Now a second edition a day later, with a journal that says something different for
    # some of them: sent already, a transient failure, a final refusal, an unconfirmed
    # `sending` (resent with its stories).
    later = NOW.replace(day=23)
    nxt = "2026-11-23"
    store.journal.append([
        {**_rec(emails[1], "sent"), "edition": nxt, "stories": ids},
        {**_rec(emails[2], "failed"), "edition": nxt, "stories": ids},
        {**_rec(emails[3], "failed", permanent=True), "edition": nxt, "stories": ids},
        {**_rec(emails[4], "sending"), "edition": nxt, "stories": ids},
    ])
    monkeypatch.setattr(sendplan, "LOOKUP", 100)
    calls = _counting(monkeypatch)
    report = send_digest(config, now=later)
    # One read per batch of subscribers; after the first batch, the planning pass that
    # counts each body's messages (the embedded store's only sender) reads them all once.
    assert sorted(calls["states"]) == [50, 50, 100, 100, 100, 100]
    assert calls["state"] == [] and calls["sent"] == []  # none per subscriber
    # New plans need the sent ids: everyone but the done, the refused and the two resends.
    assert sum(calls["sent_many"]) == 2 * (250 - 4) and len(calls["sent_many"]) == 6
    assert report.already_sent == 1
    assert [e for e, _ in report.given_up] == [emails[3]]
    assert set(report.sent) | set(report.nothing_new) == set(emails) - {emails[1], emails[3]}
    assert {emails[2], emails[4]} <= set(report.sent)
    assert [e for e, _ in report.ambiguous] == [emails[2], emails[4]]  # the two resends
    to = [msg["To"] for msg in maildir_messages(config)]
    assert len(to) == 250 + len(report.sent) and to.count(emails[4]) == 2
    assert to.count(emails[1]) == 1
    # The resend kept the stories its `sending` record named: the first edition's.
    rec4 = store.journal.state("daily", nxt, emails[4])
    assert rec4["state"] == "sent" and rec4["stories"] == ids
    rec2 = store.journal.state("daily", nxt, emails[2])  # the failure, retried
    assert rec2["state"] == "sent" and rec2["stories"] == ids and rec2["attempt"] == 2
    # Everyone else got only stories the first edition had not sent them, or nothing.
    for e in emails[5:]:
        rec = store.journal.state("daily", nxt, e)
        assert (e in report.nothing_new) == (rec is None)
        assert rec is None or not set(rec["stories"]) & set(ids)
    rerun = send_digest(config, now=later)
    assert not rerun.sent and rerun.already_sent == len(report.sent) + 1


def test_a_body_is_dropped_after_its_last_message_and_bytes_never_change(tmp_path: Path) -> None:
    from digest.mail.editions import Job
    from digest.mail.message import Composer, body_key
    from digest.pipeline.sendplan import _body_uses, _ranked
    from tests.support.send import SECRET

    config = make_project(tmp_path)
    add_subscribers(config, *(sub(f"u{i:02d}@example.com", langs, tags)
                              for i, (langs, tags) in enumerate(
                                  [(["en"], []), (["zh"], []), (["en", "zh"], []),
                                   (["en"], ["AI"])] * 5)))
    dcfg, store = config.digest(None), Store(config.store.path)
    ranked = _ranked(config, NOW)
    uses = _body_uses(config, dcfg, store, NOW, False, ranked)
    jobs = list(sendplan._plan_jobs(config, dcfg, store, NOW, False,
                                    sendplan.SendReport("daily"), ranked=ranked))
    assert sum(uses.values()) == len(jobs) >= 15 and len(uses) > 2
    plain = Composer(config, dcfg, SECRET.encode(), NOW)
    lean = Composer(config, dcfg, SECRET.encode(), NOW)
    lean.uses = dict(uses)
    for i, job in enumerate(jobs):
        assert lean.message(job)[0] == plain.message(job)[0]
        later = {body_key(j.sub.languages, j.stories, j.edition) for j in jobs[i + 1:]}
        assert set(lean.bodies) <= later  # nothing kept that no later message needs
    assert lean.bodies == {} and lean.uses == {}
    assert lean.rendered == plain.rendered == len(uses) == len(plain.bodies)
    # A count that is too low (the journal changed after the pass) costs a render, and the
    # bytes are the same.
    short = Composer(config, dcfg, SECRET.encode(), NOW)
    short.uses = {k: 1 for k in uses}
    again = [short.message(Job(j.sub, j.edition, j.stories))[0] for j in jobs]
    assert again == [plain.message(j)[0] for j in jobs]
    assert short.rendered > len(uses)
