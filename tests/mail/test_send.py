"""`send_digest` end to end against a real SMTP server (and Maildir): content per
subscriber, exactly once across reruns and crashes, bounces, dry runs, preview, CLI."""

from __future__ import annotations

import email
import email.policy
import json
from datetime import timedelta
from pathlib import Path

import pytest

from digest.cli import main
from digest.mail import tokens
from digest.mail.transports import SmtpTransport, Transport
from digest.pipeline import sending
from digest.pipeline.secrets import site_secret
from digest.pipeline.sending import preview, send_digest
from digest.pipeline.subscribing import send_confirmation
from digest.store import Store
from tests.support.send import (
    NOW,
    SECRET,
    add_subscribers,
    maildir_messages,
    make_project,
    parts,
    story,
    sub,
    three_subscribers,
    with_digest,
)
from tests.support.smtp_server import Faults, SMTPServer

EN_TITLE = "China may have accessed Mythos"
ZH_TITLE = "中国可能已访问Mythos"
EN_TITLE_2 = "Welcome to the AGI era of AI governance"
ZH_ONLY = "45bcd535756f060a"  # the zh-Hant article: excerpt TL;DR, no tags


pytestmark = pytest.mark.usefixtures("secret")  # DIGEST_SECRET = SECRET in every test


def _smtp(tmp_path: Path, srv: SMTPServer, **kw):
    return make_project(tmp_path, transport="smtp", host=srv.host, port=srv.port,
                        sender="AI News <digest@news.example.org>", timeout=5.0, **kw)


def _transport(config) -> SmtpTransport:
    return SmtpTransport(config.smtp, backoff=0.01)


def _send(config, **kw):
    with _transport(config) as t:
        return send_digest(config, now=kw.pop("now", NOW), transport=t, **kw)


def test_three_subscribers_each_get_one_correct_digest_then_nothing(smtp_server, smtp_config) -> None:
    add_subscribers(smtp_config, *three_subscribers())
    report = _send(smtp_config)
    assert sorted(report.sent) == ["both@example.com", "en@example.com", "zh@example.com"]
    assert not report.failed and not report.bounced
    got = smtp_server.by_recipient()
    assert {k: len(v) for k, v in got.items()} == {
        "en@example.com": 1, "zh@example.com": 1, "both@example.com": 1}

    en = got["en@example.com"][0]
    text, html = parts(en)
    assert en["Subject"] == f"{EN_TITLE} | AI News Daily — 2026-11-22"  # lead story first
    assert EN_TITLE in html and EN_TITLE_2 in html and ZH_TITLE not in html
    assert 'lang="en"' in html and 'lang="zh-Hans"' not in html
    assert "stories/" + ZH_ONLY not in html  # the Chinese-only article: left out (issue 13)
    assert EN_TITLE in text and ZH_TITLE not in text

    zh = got["zh@example.com"][0]
    text, html = parts(zh)
    assert zh["Subject"] == f"{ZH_TITLE} | AI资讯日报 — 2026-11-22"
    assert ZH_TITLE in html and EN_TITLE not in html and 'lang="zh-Hans"' in html
    assert 'lang="zh-Hant"' in html and "退订" in html and "Unsubscribe" not in html

    both = got["both@example.com"][0]
    text, html = parts(both)
    assert both["Subject"] == f"{EN_TITLE} | AI News Daily · AI资讯日报 — 2026-11-22"
    assert EN_TITLE in html and ZH_TITLE in html and EN_TITLE_2 in html
    assert html.index(EN_TITLE) < html.index(ZH_TITLE)  # English block, then Chinese
    assert "stories/" + ZH_ONLY not in html  # tag filter 政策: the untagged one is out

    for m in (en, zh, both):
        assert m.get_content_type() == "multipart/alternative"
        assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = m["List-Unsubscribe"].split(">")[0].lstrip("<")
        assert link.startswith(smtp_config.site.base_url + "unsubscribe?t=")
        token = link.split("t=", 1)[1]
        assert tokens.verify(SECRET.encode(), "unsubscribe", token, NOW) == m["To"]
        assert link in parts(m)[1]
        assert len(m.as_bytes()) < 100_000

    again = _send(smtp_config)
    assert again.sent == [] and again.already_sent == 3
    assert len(smtp_server.messages) == 3


def test_rerun_with_the_cli_sends_nothing(config, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # config: the shipped config.toml, Maildir transport
    add_subscribers(config, *three_subscribers())
    args = ["--config", str(tmp_path / "config.toml"), "send", "--now", "2026-11-22T08:00:00Z"]
    assert main(args) == 0
    assert "sent 3" in capsys.readouterr().out
    assert len(maildir_messages(config)) == 3
    assert main(args) == 0
    assert "sent 0, already sent 3" in capsys.readouterr().out
    assert len(maildir_messages(config)) == 3


def test_dry_run_sends_and_records_nothing(config, monkeypatch) -> None:
    monkeypatch.delenv("DIGEST_SECRET")
    add_subscribers(config, *three_subscribers())
    report = send_digest(config, now=NOW, dry_run=True)
    assert len(report.would_send) == 3 and report.sent == []
    assert any("would send en@example.com" in line for line in report.lines())
    assert maildir_messages(config) == []
    assert list(Store(config.store.path).journal.records()) == []
    assert Store(config.store.path).meta_get("site_secret") is None


def test_no_repeats_across_editions(config) -> None:
    add_subscribers(config, sub("a@example.com"))
    assert send_digest(config, now=NOW).sent == ["a@example.com"]
    tomorrow = NOW + timedelta(days=1)
    report = send_digest(config, now=tomorrow)
    assert report.sent == [] and report.nothing_new == ["a@example.com"]
    assert any("nothing new for a@example.com" in line for line in report.lines())
    store = Store(config.store.path)
    with store.transaction():
        store.upsert_stories([story("fresh1", ["en"], {"en": "A fresh story"}, {"en": ["new"]},
                                    scores={"hot": 90, "quality": 90, "impact": 90})])
    assert send_digest(config, now=tomorrow + timedelta(hours=1)).sent == ["a@example.com"]
    msgs = maildir_messages(config)
    assert len(msgs) == 2
    second = next(m for m in msgs if "2026-11-23" in m["Subject"])
    _, html = parts(second)
    assert "A fresh story" in html and EN_TITLE not in html


def test_max_stories_is_respected(tmp_path: Path) -> None:
    config = with_digest(make_project(tmp_path), max_stories=1)
    add_subscribers(config, sub("a@example.com"))
    send_digest(config, now=NOW)
    ids = [r["stories"] for r in Store(config.store.path).journal.records()
           if r["state"] == "sent"]
    assert [len(x) for x in ids] == [1]


def test_550_marks_bounced_and_others_delivered(tmp_path: Path) -> None:
    with SMTPServer(faults=Faults(reject={"zh@example.com"})) as srv:
        config = _smtp(tmp_path, srv)
        add_subscribers(config, *three_subscribers())
        report = _send(config)
        assert sorted(report.sent) == ["both@example.com", "en@example.com"]
        assert [e for e, _ in report.bounced] == ["zh@example.com"]
        assert not report.failed
        assert any("bounced zh@example.com: 550" in line for line in report.lines())
        assert Store(config.store.path).get_subscriber("zh@example.com").status == "bounced"
        assert _send(config).sent == []  # bounced subscribers are not active any more
        assert sorted(srv.by_recipient()) == ["both@example.com", "en@example.com"]


def test_temporary_failure_is_reported_and_a_rerun_sends_only_the_rest(tmp_path: Path) -> None:
    with SMTPServer(faults=Faults(rcpt_4xx=1)) as srv:
        config = _smtp(tmp_path, srv, retries=0, pool_size=1)
        add_subscribers(config, *three_subscribers())
        report = _send(config)
        assert len(report.sent) == 2 and len(report.failed) == 1
        missing = report.failed[0][0]
        assert "451" in report.failed[0][1]
        assert any(f"not delivered to {missing}" in line for line in report.lines())
        rerun = _send(config)
        assert rerun.sent == [missing] and rerun.already_sent == 2
        assert {k: len(v) for k, v in srv.by_recipient().items()} == {
            "en@example.com": 1, "zh@example.com": 1, "both@example.com": 1}


class _Crash(Exception):
    pass


class _CrashAfter(Transport):
    """Delivers `n` envelopes through a real transport, then dies like a killed process."""

    def __init__(self, inner: Transport, n: int) -> None:
        self.inner, self.left = inner, n

    def send(self, envelopes, on_outcome=None):
        if self.left <= 0:
            raise _Crash("killed")
        take = list(envelopes)[: self.left]
        self.left -= len(take)
        out = self.inner.send(take, on_outcome)
        if len(take) < len(envelopes):
            raise _Crash("killed mid-batch")
        return out


def test_crash_between_batches_rerun_sends_only_the_rest(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sending, "BATCH", 1)
    with SMTPServer() as srv:
        config = _smtp(tmp_path, srv)
        add_subscribers(config, *three_subscribers())
        with _transport(config) as inner, pytest.raises(_Crash):
            send_digest(config, now=NOW, transport=_CrashAfter(inner, 1))
        assert len(srv.messages) == 1
        first = srv.messages[0].rcpt_tos[0]
        journal = Store(config.store.path).journal
        states = {e: journal.state("daily", "2026-11-22", e)["state"]
                  for e in ("en@example.com", "zh@example.com", "both@example.com") if
                  journal.state("daily", "2026-11-22", e)}
        assert states[first] == "sent" and "sending" in states.values()
        rerun = _send(config)
        assert first not in rerun.sent and len(rerun.sent) == 2
        assert len(rerun.ambiguous) == 1  # the one journalled `sending` without an outcome
        assert {k: len(v) for k, v in srv.by_recipient().items()} == {
            "en@example.com": 1, "zh@example.com": 1, "both@example.com": 1}


def test_crash_mid_batch_resends_with_the_same_message_id(smtp_server, smtp_config) -> None:
    add_subscribers(smtp_config, *three_subscribers())
    with _transport(smtp_config) as inner, pytest.raises(_Crash):
        send_digest(smtp_config, now=NOW, transport=_CrashAfter(inner, 1))
    delivered = smtp_server.parsed()[0]
    rerun = _send(smtp_config, now=NOW + timedelta(minutes=5))
    assert len(rerun.sent) == 3 and len(rerun.ambiguous) == 3
    copies = smtp_server.by_recipient()[delivered["To"]]
    assert len(copies) == 2  # the documented ambiguity: a recognisable duplicate
    assert copies[0]["Message-ID"] == copies[1]["Message-ID"]
    assert parts(copies[0])[1] == parts(copies[1])[1]  # same content too
    assert _send(smtp_config).sent == []


def test_due_only_reads_cron_in_each_subscribers_zone(config) -> None:
    # config: cron "0 7 * * *", grace 6 h
    add_subscribers(config, *three_subscribers())
    report = send_digest(config, now=NOW, due_only=True)
    # 08:00Z: 07:00 UTC fired 1 h ago, 07:00 Berlin 2 h ago, 07:00 Shanghai 9 h ago (> grace)
    assert sorted(report.sent) == ["both@example.com", "en@example.com"]
    assert report.not_due == 1


def test_hostile_address_in_the_store_never_reaches_a_header(smtp_server, smtp_config) -> None:
    add_subscribers(smtp_config, sub("ok@example.com"),
                    sub("evil@example.com\r\nbcc: victim@example.com"))
    report = _send(smtp_config)
    assert report.sent == ["ok@example.com"]
    assert len(report.failed) == 1 and "unsafe" in report.failed[0][1]
    assert all("\n" not in line and "\r" not in line for line in report.lines())
    raw = b"".join(m.data for m in smtp_server.messages)
    assert b"victim" not in raw


def test_distinct_bodies_rendered_once(config) -> None:
    add_subscribers(config, *[sub(f"r{i}@example.com", ["en"]) for i in range(20)],
                    sub("z@example.com", ["zh"]))
    report = send_digest(config, now=NOW)
    assert len(report.sent) == 21 and report.renders == 2


def test_preview_html_and_eml(config, tmp_path: Path) -> None:
    add_subscribers(config, sub("both@example.com", ["en", "zh"], ["政策"]))
    out = preview(config, email="both@example.com", out=tmp_path / "p.html", now=NOW)
    html = out.read_text(encoding="utf-8")
    assert EN_TITLE in html and ZH_TITLE in html and "unsubscribe?t=" in html
    assert "%%DIGEST" not in html
    eml = preview(config, langs=["zh"], out=tmp_path / "p.eml", now=NOW)
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == f"{ZH_TITLE} | AI资讯日报 — 2026-11-22"
    assert maildir_messages(config) == []
    assert list(Store(config.store.path).journal.records()) == []


def test_site_secret_from_env_else_generated_once(tmp_path: Path, monkeypatch) -> None:
    config = make_project(tmp_path, ingest=False)
    store = Store(config.store.path)
    assert site_secret(config, store) == SECRET.encode()
    monkeypatch.delenv("DIGEST_SECRET")
    first = site_secret(config, store)
    assert len(first) == 32 and site_secret(config, Store(config.store.path)) == first


def test_confirmation_mail_carries_a_valid_confirm_token(tmp_path: Path) -> None:
    with SMTPServer() as srv:
        config = _smtp(tmp_path, srv, ingest=False)
        pending = sub("new@example.com", ["zh"])
        pending.status = "pending"
        with _transport(config) as t:
            mid = send_confirmation(config, Store(config.store.path), pending, NOW, transport=t)
        (msg,) = srv.parsed()
        assert msg["Message-ID"] == mid and msg["To"] == "new@example.com"
        text, html = parts(msg)
        token = text.split("confirm?t=", 1)[1].split()[0]
        assert tokens.verify(SECRET.encode(), "confirm", token, NOW + timedelta(days=6)) \
            == "new@example.com"
        assert "确认订阅" in html and "List-Unsubscribe" not in msg


def test_starttls_auth_via_config_and_password_env(tmp_path: Path, monkeypatch) -> None:
    with SMTPServer(tls=True, auth={"digest": "pw-from-env"}) as srv:
        monkeypatch.setenv("SSL_CERT_FILE", str(srv.cafile))  # trust the test CA
        monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "pw-from-env")
        config = _smtp(tmp_path, srv, security="starttls", username="digest")
        add_subscribers(config, sub("a@example.com"))
        report = send_digest(config, now=NOW)
        assert report.sent == ["a@example.com"]
        assert srv.messages[0].tls and srv.messages[0].authenticated_as == "digest"


def test_missing_password_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("DIGEST_SMTP_PASSWORD", raising=False)
    config = make_project(tmp_path, transport="smtp", username="digest")
    add_subscribers(config, sub("a@example.com"))
    from digest.errors import DeliveryError

    with pytest.raises(DeliveryError) as e:
        send_digest(config, now=NOW)
    assert "DIGEST_SMTP_PASSWORD" in str(e.value)
    assert list(Store(config.store.path).journal.records()) == []


def test_journal_records_have_the_documented_shape(config) -> None:
    add_subscribers(config, sub("a@example.com"))
    send_digest(config, now=NOW)
    recs = list(Store(config.store.path).journal.records())
    assert [r["state"] for r in recs] == ["sending", "sent"]
    for r in recs:
        assert set(r) >= {"digest", "edition", "email", "state", "message_id", "stories", "at"}
        json.dumps(r)
    assert recs[0]["message_id"] == recs[1]["message_id"]


def test_a_second_concurrent_sender_is_refused(config) -> None:
    add_subscribers(config, sub("a@example.com"))
    store = Store(config.store.path)
    from digest.errors import DeliveryError

    with store.send_lock("daily"):
        with pytest.raises(DeliveryError, match="another process") as e:
            send_digest(config, now=NOW)
        assert e.value.hint
        assert send_digest(config, now=NOW, dry_run=True).would_send  # dry runs never block
    assert send_digest(config, now=NOW).sent == ["a@example.com"]


def test_outcomes_are_journalled_as_they_arrive(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sending, "FLUSH_SECONDS", 0.0)  # every outcome is its own commit
    with SMTPServer() as srv:
        config = _smtp(tmp_path, srv)
        add_subscribers(config, *three_subscribers())
        with _transport(config) as inner, pytest.raises(_Crash):
            send_digest(config, now=NOW, transport=_CrashAfter(inner, 1))
        first = srv.messages[0].rcpt_tos[0]
        rerun = _send(config)
        assert first not in rerun.sent and len(rerun.sent) == 2  # no duplicate for `first`
        assert all(len(v) == 1 for v in srv.by_recipient().values())


def test_outcomes_are_journalled_even_if_the_transport_never_reports(config) -> None:
    from digest.mail.transports import Outcome

    class Quiet(Transport):
        def send(self, envelopes, on_outcome=None):
            return [Outcome(e.recipient, "sent") for e in envelopes]

    add_subscribers(config, *three_subscribers())
    assert len(send_digest(config, now=NOW, transport=Quiet()).sent) == 3
    again = send_digest(config, now=NOW, transport=Quiet())
    assert again.sent == [] and again.already_sent == 3
