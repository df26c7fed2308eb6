"""Refusals by the relay are not bounces (issue 14), against a real aiosmtpd on loopback: a
relay refusing every RCPT (`554 5.7.1 Relay access denied`) or MAIL FROM (`530`, a missing
login) stops `digest send` with exit 1, the server's reply and the fix; nobody is bounced,
nothing is final, and after the fix each subscriber gets exactly one digest. One 550 among
accepted recipients bounces only that one. Also: the EHLO name, Feedback-ID, reactivation."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from digest.cli import main
from digest.config import SmtpConfig
from digest.mail.refusals import (
    Refusal,
    looks_like_policy,
    recipient_specific,
    reply_key,
    session_hint,
)
from digest.mail.transports import Envelope, SmtpTransport
from digest.pipeline.sending import send_digest
from digest.store import Store
from tests.support.send import add_subscribers, maildir_messages, make_project, sub
from tests.support.smtp_server import Faults, SMTPServer, free_port

pytestmark = pytest.mark.usefixtures("secret", "pipelining")

NOW = "2026-11-22T08:00:00Z"
EDITION = "2026-11-22"
PEOPLE = [sub(f"r{i}@example.com", ["en"] if i % 2 else ["zh"]) for i in range(5)]
EMAILS = sorted(p.email for p in PEOPLE)
RELAY_DENIED = "554 5.7.1 Relay access denied"


def _smtp_project(tmp_path: Path, port: int, **extra: str) -> Path:
    """The shipped config.toml switched to SMTP on `port`, seeds ingested, PEOPLE added;
    `extra` sets more [smtp] keys (TOML source values)."""
    config = make_project(tmp_path)
    add_subscribers(config, *PEOPLE)
    text = config.path.read_text(encoding="utf-8")
    text = (text.replace('transport = "maildir"', 'transport = "smtp"')
            .replace("port = 25", f"port = {port}")
            .replace('sender = "AI News <digest@localhost>"',
                     'sender = "AI News <digest@news.example.org>"')
            .replace("timeout = 30.0", "timeout = 5.0").replace("retries = 4", "retries = 1"))
    for key, value in extra.items():
        text = text.replace("[smtp]\n", f"[smtp]\n{key} = {value}\n", 1)
    config.path.write_text(text, encoding="utf-8")
    return config.path


def _send(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["--config", str(path), "send", "--now", NOW])
    out, err = capsys.readouterr()
    return rc, out, err


def _statuses(path: Path) -> set[str]:
    store = Store(path.parent / "store")
    return {s.status for s in store.list_subscribers()}


def _journal_states(path: Path) -> dict[str, dict]:
    journal = Store(path.parent / "store").journal
    return {e: journal.state("daily", EDITION, e) or {} for e in EMAILS}


def _once_each(srv: SMTPServer) -> None:
    got = srv.by_recipient()
    assert sorted(got) == EMAILS, sorted(got)
    assert all(len(msgs) == 1 for msgs in got.values()), {k: len(v) for k, v in got.items()}


# --- the must-show cases, through the real CLI ----------------------------------------------------


def test_554_at_every_rcpt_stops_the_run_bounces_nobody_and_the_fix_sends_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SMTPServer(faults=Faults(rcpt_refuse=RELAY_DENIED)) as srv:
        path = _smtp_project(tmp_path, srv.port)
        rc, out, err = _send(path, capsys)
        assert rc == 1, (out, err)
        assert "554 5.7.1 Relay access denied at RCPT TO" in err, err
        assert "[smtp] username" in err and "DIGEST_SMTP_PASSWORD" in err, err
        assert "STOPPED" in out and "bounced 0" in out, out
        assert _statuses(path) == {"active"}  # nobody bounced
        states = _journal_states(path)
        assert all(r.get("state") in (None, "failed") and not r.get("permanent")
                   for r in states.values()), states
        assert srv.messages == []
        # the relay is fixed (the login configured): the rerun sends each edition once
        srv.faults.rcpt_refuse = ""
        rc, out, err = _send(path, capsys)
        assert rc == 0, (out, err)
        _once_each(srv)
        rc, out, _ = _send(path, capsys)
        assert rc == 0 and f"already sent {len(EMAILS)}" in out, out
        _once_each(srv)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_530_at_mail_from_stops_the_run_and_a_login_fixes_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    with SMTPServer(auth={"digest": "pw"}) as srv:  # AUTH required, no login configured
        path = _smtp_project(tmp_path, srv.port)
        rc, out, err = _send(path, capsys)
        assert rc == 1, (out, err)
        assert "530" in err and "MAIL FROM" in err, err
        assert "the relay wants a login: set [smtp] username" in err, err
        assert _statuses(path) == {"active"}
        states = _journal_states(path)
        assert not any(r.get("permanent") for r in states.values()), states
        assert not any(r.get("state") in ("sent", "bounced") for r in states.values()), states
        # the fix: a login (the password from the environment, never config.toml)
        monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "pw")
        text = path.read_text(encoding="utf-8").replace('username = ""', 'username = "digest"')
        path.write_text(text, encoding="utf-8")
        rc, out, err = _send(path, capsys)
        assert rc == 0, (out, err)
        _once_each(srv)
        assert {m.authenticated_as for m in srv.messages} == {"digest"}


def test_one_550_among_accepted_recipients_bounces_only_that_one(tmp_path: Path) -> None:
    # No enhanced status code, and the refused address comes first: its verdict is held
    # until the next recipient is accepted, then it is a bounce like any other.
    bad = EMAILS[0]
    faults = Faults(reject={bad}, reject_reply="550 mailbox unavailable")
    with SMTPServer(faults=faults) as srv:
        config = make_project(tmp_path, transport="smtp", host=srv.host, port=srv.port,
                              sender="AI News <digest@news.example.org>", timeout=5.0,
                              pool_size=1, retries=1)
        add_subscribers(config, *PEOPLE)
        with SmtpTransport(config.smtp, backoff=0.01) as t:
            report = send_digest(config, now=_now(), transport=t)
        assert [e for e, _ in report.bounced] == [bad], report.lines()
        assert sorted(report.sent) == EMAILS[1:] and not report.failed and not report.stopped
        store = Store(config.store.path)
        assert store.get_subscriber(bad).status == "bounced"
        assert {s.status for s in store.list_subscribers() if s.email != bad} == {"active"}


def _now():
    from digest.models import parse_iso

    return parse_iso(NOW)


# --- the transport's rule, case by case -------------------------------------------------------------


def _transport_send(srv: SMTPServer, rcpts: list[str], **kw: object):
    cfg = SmtpConfig(transport="smtp", host=srv.host, port=srv.port, timeout=5, retries=1,
                     sender="digest@news.example.org", **kw)  # type: ignore[arg-type]
    with SmtpTransport(cfg, backoff=0.01) as t:
        env = [Envelope("digest@news.example.org", r,
                        f"Subject: t\r\nTo: {r}\r\n\r\nhi\r\n".encode()) for r in rcpts]
        return t.send(env), t.refusal


@pytest.mark.parametrize("pool", [1, 3])
def test_two_recipients_both_refused_alike_is_the_relays_refusal(pool: int) -> None:
    with SMTPServer(faults=Faults(rcpt_refuse="550 not allowed")) as srv:
        out, refusal = _transport_send(srv, ["a@example.com", "b@example.com"], pool_size=pool)
        assert refusal is not None and refusal.stage == "RCPT"
        assert [o.state for o in out] == ["failed", "failed"] and all(o.session for o in out)


def test_a_lone_recipient_refused_for_its_mailbox_is_a_bounce() -> None:
    with SMTPServer(faults=Faults(reject={"gone@example.com"})) as srv:
        out, refusal = _transport_send(srv, ["gone@example.com"])
        assert refusal is None and out[0].state == "bounced"


def test_a_lone_recipient_refused_by_relay_policy_is_the_relays_refusal() -> None:
    with SMTPServer(faults=Faults(rcpt_refuse=RELAY_DENIED)) as srv:
        out, refusal = _transport_send(srv, ["a@example.com"])
        assert refusal is not None and out[0].session and out[0].state == "failed"


class _RefuseAllData:
    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        return "554 5.7.1 message refused by policy"


def test_every_message_refused_alike_at_data_stops_instead_of_giving_up_for_good() -> None:
    port = free_port()
    ctl = Controller(_RefuseAllData(), hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        cfg = SmtpConfig(transport="smtp", host="127.0.0.1", port=port, timeout=5, retries=1,
                         pool_size=1, sender="digest@news.example.org")
        with SmtpTransport(cfg, backoff=0.01) as t:
            out = t.send([Envelope("digest@news.example.org", f"r{i}@example.com",
                                   b"Subject: t\r\n\r\nhi\r\n") for i in range(5)])
            assert t.refusal is not None and t.refusal.stage == "DATA"
        assert all(o.session and not o.permanent for o in out), out
    finally:
        ctl.stop()


def test_refusal_rules_are_pure() -> None:
    assert recipient_specific(550, "5.1.1 no such user")
    assert recipient_specific(552, "5.2.2 mailbox full")
    assert not recipient_specific(554, "5.7.1 Relay access denied")
    assert not recipient_specific(550, "no such user")
    assert reply_key(554, "5.7.1 <a@x.org>: Relay access denied", "a@x.org") == \
        reply_key(554, "5.7.1 <b@x.org>: Relay access denied", "b@x.org")
    hint = session_hint(Refusal("MAIL", 530, "5.7.0 Authentication required"))
    assert hint.startswith("530 at MAIL FROM: the relay wants a login: set [smtp] username")


# --- EHLO name, Feedback-ID ---------------------------------------------------------------------------


@pytest.mark.parametrize("helo,seen", [("", "news.example.org"),
                                       ("mx1.news.example.org", "mx1.news.example.org")])
def test_the_ehlo_name_is_helo_or_the_senders_domain(helo: str, seen: str) -> None:
    with SMTPServer() as srv:
        out, _ = _transport_send(srv, ["a@example.com"], helo=helo)
        assert out[0].state == "sent"
        assert srv.messages[0].helo == seen


def test_feedback_id_header_when_set(tmp_path: Path) -> None:
    config = make_project(tmp_path, feedback_id="daily:news:digest")
    add_subscribers(config, sub("a@example.com"))
    send_digest(config, now=_now())
    (msg,) = maildir_messages(config)
    assert msg["Feedback-ID"] == "daily:news:digest"
    (tmp_path / "b").mkdir()
    plain = make_project(tmp_path / "b")
    add_subscribers(plain, sub("a@example.com"))
    send_digest(plain, now=_now())
    assert maildir_messages(plain)[0]["Feedback-ID"] is None


# --- reactivation ----------------------------------------------------------------------------------------


def test_reactivate_after_a_real_mistake(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    bad = EMAILS[1]
    with SMTPServer(faults=Faults(reject={bad})) as srv:
        path = _smtp_project(tmp_path, srv.port)
        rc, out, _ = _send(path, capsys)
        assert rc == 0 and f"bounced {bad}" in out, out
        store = Store(path.parent / "store")
        assert store.get_subscriber(bad).status == "bounced"
        store.update_subscriber(EMAILS[2], status="unsubscribed")
        # the mailbox is back: reactivate it; an unsubscribed address is refused
        srv.faults.reject = set()
        rc = main(["--config", str(path), "subscribers", "reactivate", bad, EMAILS[2],
                   "--now", NOW])
        out, _ = capsys.readouterr()
        assert rc == 1 and f"reactivated {bad}" in out and "1 bounced edition" in out, out
        assert f"not reactivated {EMAILS[2]}: they unsubscribed" in out, out
        assert Store(path.parent / "store").get_subscriber(bad).status == "active"
        assert Store(path.parent / "store").get_subscriber(EMAILS[2]).status == "unsubscribed"
        # the bounced edition goes out once, to it alone
        rc, out, _ = _send(path, capsys)
        assert rc == 0 and "sent 1," in out, out
        got = srv.by_recipient()
        assert len(got[bad]) == 1 and all(len(v) == 1 for v in got.values()), got
        rc = main(["--config", str(path), "subscribers", "reactivate", "--bounced"])
        out, _ = capsys.readouterr()
        assert rc == 0 and "0 reactivated" in out, out


def test_reactivate_needs_addresses_or_bounced(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    config = make_project(tmp_path)
    assert main(["--config", str(config.path), "subscribers", "reactivate"]) == 1
    assert "--bounced" in capsys.readouterr().err



# --- review: the relay's refusal vs. the recipients', beyond "alike before any acceptance" --------

SENDER_REJECTED = "554 5.7.1 <{sender}>: Sender address rejected: Access denied"  # Postfix
DMARC = ("550 5.7.1 Unauthenticated email from news.example.org is not accepted due to "
         "domain's DMARC policy")


def _verp(rcpt: str) -> str:
    return f"bounces+{rcpt.replace('@', '=')}@news.example.org"


def _send_envelopes(srv: SMTPServer, rcpts: list[str], verp: bool = False, **kw: object):
    """Like _transport_send, each message with its own VERP envelope sender if `verp`."""
    cfg = SmtpConfig(transport="smtp", host=srv.host, port=srv.port, timeout=5, retries=1,
                     sender="digest@news.example.org", **kw)  # type: ignore[arg-type]
    with SmtpTransport(cfg, backoff=0.01) as t:
        env = [Envelope(_verp(r) if verp else "digest@news.example.org", r,
                        f"Subject: t\r\nTo: {r}\r\n\r\nhi\r\n".encode()) for r in rcpts]
        return t.send(env), t.refusal


def _states(out) -> list[str]:  # noqa: ANN001
    return [o.state + ("/session" if o.session else "") + ("/permanent" if o.permanent else "")
            for o in out]


@pytest.mark.parametrize("n,pool", [(2, 1), (6, 1), (6, 3)])
def test_verp_sender_refused_at_rcpt_is_the_relays_refusal_not_bounces(n: int, pool: int
                                                                        ) -> None:
    # Finding 1: Postfix (smtpd_delay_reject) refuses our sender at RCPT, quoting it; with
    # VERP every reply names a different sender, yet they are the same refusal.
    rcpts = [f"r{i}@example.com" for i in range(n)]
    with SMTPServer(faults=Faults(rcpt_refuse=SENDER_REJECTED)) as srv:
        out, refusal = _send_envelopes(srv, rcpts, verp=True, pool_size=pool)
    assert refusal is not None and refusal.stage == "RCPT", _states(out)
    assert _states(out) == ["failed/session"] * n
    assert "envelope sender" in session_hint(refusal)


def test_verp_sender_refused_at_rcpt_stops_send_and_bounces_nobody(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SMTPServer(faults=Faults(rcpt_refuse=SENDER_REJECTED)) as srv:
        path = _smtp_project(tmp_path, srv.port)
        text = path.read_text(encoding="utf-8").replace(
            'return_path = ""', 'return_path = "bounces@news.example.org"', 1)
        path.write_text(text, encoding="utf-8")
        rc, out, err = _send(path, capsys)
        assert rc == 1 and "STOPPED" in out and "bounced 0" in out, (out, err)
        assert "Sender address rejected" in err and "envelope sender" in err, err
        assert all(m.mail_from.startswith("bounces+") for m in srv.messages)
        assert _statuses(path) == {"active"}
        assert not any(r.get("permanent") or r.get("state") == "bounced"
                       for r in _journal_states(path).values())


def test_sender_statuses_and_policy_are_never_the_recipients() -> None:
    # Finding 1: X.1.0 "Sender address rejected", X.1.7, X.1.8 are about our sender.
    for reply in ("5.1.0 <bounces+a=x.org@n.org>: Sender address rejected: User unknown",
                  "5.1.7 Bad sender's mailbox address syntax",
                  "5.1.8 <bounces@n.org>: Sender address rejected: Domain not found",
                  "5.1.1 <bounces@n.org>: Sender address rejected: User unknown",
                  "5.2.3 Message length exceeds administrative limit",
                  "5.7.1 <a@x.org>: Recipient address rejected: Access denied"):
        assert not recipient_specific(550, reply), reply
    for reply in ("5.1.1 <a@x.org>: Recipient address rejected: User unknown",
                  "5.1.2 bad destination system", "5.1.6 mailbox has moved",
                  "5.1.10 recipient address has null MX", "5.2.1 mailbox disabled",
                  "5.2.2 The email account that you tried to reach is over quota"):
        assert recipient_specific(550, reply), reply
    assert looks_like_policy(550, "5.1.8 bad sender's system address")
    assert looks_like_policy(550, "5.1.8 bad system address")
    assert looks_like_policy(550, "5.4.5 Daily user sending quota exceeded")
    assert looks_like_policy(554, "quota exceeded for this account")
    assert not looks_like_policy(552, "5.2.2 mailbox over quota")
    assert not looks_like_policy(550, "mailbox unavailable")
    # every address goes, not only the recipient's: VERP senders, bare addresses
    assert reply_key(554, "5.7.1 <bounces+a=x.org@n.org>: Sender address rejected", "a@x.org") \
        == reply_key(554, "5.7.1 <bounces+b=y.org@n.org>: Sender address rejected", "b@y.org") \
        == "554 5.7.1 sender address rejected"
    assert reply_key(550, "5.7.1 from=bounces+a=x.org@n.org to=a@x.org: denied") == \
        reply_key(550, "5.7.1 from=bounces+b=y.org@n.org to=b@y.org: denied")


def test_a_relay_that_starts_refusing_by_policy_after_acceptances_bounces_nobody() -> None:
    # Finding 1: two accepted, then the account's quota is used up: three alike in a row with
    # nothing accepted in between is the relay's refusal, even after acceptances.
    faults = Faults(rcpt_refuse="550 5.7.1 Daily sending quota exceeded", rcpt_refuse_after=2)
    with SMTPServer(faults=faults) as srv:
        out, refusal = _send_envelopes(srv, [f"r{i}@example.com" for i in range(6)],
                                       pool_size=1)
        assert len(srv.messages) == 2
    assert refusal is not None and refusal.stage == "RCPT"
    assert _states(out) == ["sent"] * 2 + ["failed/session"] * 4


def test_fewer_policy_refusals_after_acceptances_are_retryable_not_bounces() -> None:
    faults = Faults(rcpt_refuse="554 5.7.1 <{rcpt}>: Relay access denied", rcpt_refuse_after=3)
    with SMTPServer(faults=faults) as srv:
        out, refusal = _send_envelopes(srv, [f"r{i}@example.com" for i in range(5)],
                                       pool_size=1)
    assert refusal is None
    assert _states(out) == ["sent"] * 3 + ["failed"] * 2


def test_data_refused_by_policy_after_the_first_delivery_stops_instead_of_giving_up() -> None:
    # Finding 1: one delivered, then every DATA refused by policy: not permanent failures.
    with SMTPServer(faults=Faults(data_refuse=DMARC, data_refuse_after=1)) as srv:
        out, refusal = _send_envelopes(srv, [f"r{i}@example.com" for i in range(5)],
                                       pool_size=1)
    assert refusal is not None and refusal.stage == "DATA"
    assert _states(out) == ["sent"] + ["failed/session"] * 4


@pytest.mark.parametrize("pool", [1, 3])
@pytest.mark.parametrize("reply", ["550 mailbox unavailable", "550 5.1.1 user unknown"])
def test_three_dead_mailboxes_first_bounce_and_the_rest_are_delivered(
        tmp_path: Path, reply: str, pool: int) -> None:
    # Finding 6: by email order the same three dead mailboxes come first on every run;
    # alike without an enhanced code, they are still three bounces, not the relay's refusal.
    dead = set(EMAILS[:3])
    with SMTPServer(faults=Faults(reject=dead, reject_reply=reply)) as srv:
        config = make_project(tmp_path, transport="smtp", host=srv.host, port=srv.port,
                              sender="AI News <digest@news.example.org>", timeout=5.0,
                              pool_size=pool, retries=1)
        add_subscribers(config, *PEOPLE)
        with SmtpTransport(config.smtp, backoff=0.01) as t:
            report = send_digest(config, now=_now(), transport=t)
        assert not report.stopped, report.lines()
        assert sorted(e for e, _ in report.bounced) == EMAILS[:3], report.lines()
        assert sorted(report.sent) == EMAILS[3:] and not report.failed, report.lines()
        store = Store(config.store.path)
        assert {s.email for s in store.list_subscribers() if s.status == "bounced"} == dead
        with SmtpTransport(config.smtp, backoff=0.01) as t:  # the rerun does not stop either
            again = send_digest(config, now=_now(), transport=t)
        assert not again.stopped and again.already_sent == 2, again.lines()


@pytest.mark.parametrize("n", [1, 2])
def test_one_or_two_messages_refused_alike_at_data_by_policy_stop_the_run(n: int) -> None:
    # Finding 7: fewer than SAME_REFUSALS held DATA refusals that apply to every message.
    with SMTPServer(faults=Faults(data_refuse=DMARC)) as srv:
        out, refusal = _send_envelopes(srv, [f"r{i}@example.com" for i in range(n)],
                                       pool_size=1)
    assert refusal is not None and refusal.stage == "DATA"
    assert _states(out) == ["failed/session"] * n


def test_a_policy_data_refusal_with_nothing_delivered_is_retryable_not_final() -> None:
    # Finding 7: not alike (each names its message), but policy, and nothing was delivered.
    faults = Faults(data_refuse="554 5.7.1 message {n} rejected: SPF policy violation")
    with SMTPServer(faults=faults) as srv:
        out, refusal = _send_envelopes(srv, ["a@example.com", "b@example.com"], pool_size=1)
    assert refusal is None
    assert _states(out) == ["failed", "failed"]


def test_every_edition_refused_at_data_by_dmarc_stops_send_and_nothing_is_final(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SMTPServer(faults=Faults(data_refuse=DMARC)) as srv:
        path = _smtp_project(tmp_path, srv.port)
        text = path.read_text(encoding="utf-8").replace("pool_size = 4", "pool_size = 1", 1)
        path.write_text(text, encoding="utf-8")
        rc, out, err = _send(path, capsys)
        assert rc == 1 and "STOPPED" in out and "DATA" in err, (out, err)
        assert not any(r.get("permanent") for r in _journal_states(path).values())
        srv.faults.data_refuse = ""  # DMARC fixed: the rerun sends each edition once
        rc, out, err = _send(path, capsys)
        assert rc == 0, (out, err)
        _once_each(srv)
