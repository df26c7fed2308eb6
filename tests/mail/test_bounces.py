"""Bounces, complaints and unsubscribe-by-mail (issue 14): VERP envelope senders on a real
loopback SMTP server, reports dropped into the bounce Maildir, `digest bounces` twice."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import mailbox
import re
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from digest.cli import main
from digest.config import BouncesConfig, load_config
from digest.mail import verp
from digest.mail.bounces import NoticeError, parse_notice
from digest.mail.inbox import MaildirInbox
from digest.mail.transports import SmtpTransport
from digest.pipeline.bounces import process_bounces
from digest.pipeline.sending import send_digest
from digest.store import Store
from tests.support.send import NOW, SECRET, add_subscribers, make_project, story, sub
from tests.support.smtp_server import SMTPServer

pytestmark = pytest.mark.usefixtures("secret")

RETURN_PATH = "bounces@news.example.org"
DOMAIN = "news.example.org"


# --- report builders (what receiving servers send back) ------------------------------------------


def dsn(to: str, final: str, status: str, action: str = "failed", mid: str = "<d1@mx>",
        returned: bytes | None = None) -> bytes:
    """An RFC 3464 DSN as a receiving MTA writes it, delivered to `to` (our VERP address);
    `returned`: the returned message's headers (default: Return-Path `to`, To `final`)."""
    if returned is None:
        returned = (f"Return-Path: <{to}>\r\nFrom: AI News <digest@{DOMAIN}>\r\nTo: {final}"
                    f"\r\nSubject: AI News\r\n").encode()
    return (f"Return-Path: <>\r\nDelivered-To: {to}\r\nFrom: Mail Delivery System "
            f"<MAILER-DAEMON@mx.example.com>\r\nTo: {to}\r\nSubject: Undelivered Mail Returned "
            f"to Sender\r\nMessage-ID: {mid}\r\nMIME-Version: 1.0\r\nContent-Type: "
            f'multipart/report; report-type=delivery-status; boundary="B1"\r\n\r\n'
            f"--B1\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n"
            f"--B1\r\nContent-Type: message/delivery-status\r\n\r\n"
            f"Reporting-MTA: dns; mx.example.com\r\nArrival-Date: Sun, 22 Nov 2026 08:00:05 +0000"
            f"\r\n\r\nFinal-Recipient: rfc822; {final}\r\nOriginal-Recipient: rfc822;{final}\r\n"
            f"Action: {action}\r\nStatus: {status}\r\nRemote-MTA: dns; mx.example.com\r\n"
            f"Diagnostic-Code: smtp; {status[0]}50 {status} mailbox problem\r\n\r\n"
            f"--B1\r\nContent-Type: text/rfc822-headers\r\n\r\n").encode() + returned + \
        b"\r\n--B1--\r\n"


def arf(mail_from: str, rcpt: str, original: bytes, to: str = RETURN_PATH,
        headers_only: bool = False) -> bytes:
    """An RFC 5965 feedback report (a mailbox provider's feedback loop); `headers_only`:
    the original's headers as text/rfc822-headers instead of the whole message."""
    part = b"text/rfc822-headers" if headers_only else b"message/rfc822"
    return (f"From: fbl@isp.example\r\nTo: {to}\r\nSubject: FW: complaint\r\n"
            f"Message-ID: <arf1@isp.example>\r\nMIME-Version: 1.0\r\nContent-Type: "
            f'multipart/report; report-type=feedback-report; boundary="B2"\r\n\r\n'
            f"--B2\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
            f"--B2\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
            f"User-Agent: SomeISP/1.0\r\nVersion: 1\r\nOriginal-Mail-From: <{mail_from}>\r\n"
            f"Original-Rcpt-To: <{rcpt}>\r\nArrival-Date: Sun, 22 Nov 2026 08:00:05 +0000\r\n"
            f"\r\n--B2\r\nContent-Type: ").encode() + part + b"\r\n\r\n" + original + \
        b"\r\n--B2--\r\n"


def headers(data: bytes, return_path: str = "") -> bytes:
    """The header block of a sent message, as a receiving server returns it (with the
    Return-Path its final delivery adds, when given)."""
    head = data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].replace(b"\n", b"\r\n")
    rp = f"Return-Path: <{return_path}>\r\n".encode() if return_path else b""
    return rp + head + b"\r\n"


def without(head: bytes, name: str) -> bytes:
    """`head` without the (possibly folded) header `name`."""
    out, skip = [], False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and skip:
            continue
        skip = line.lower().startswith(name.lower().encode() + b":")
        if not skip:
            out.append(line)
    return b"\r\n".join(out)


def plain(to: str, frm: str, subject: str = "unsubscribe") -> bytes:
    return (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <u-{frm}>\r\n\r\n"
            f"please\r\n").encode()


def drop(box: Path, data: bytes) -> None:
    mailbox.Maildir(str(box), create=True).add(data)


# --- pure parts ------------------------------------------------------------------------------------


def test_verp_tokens_round_trip_fit_rfc5321_and_refuse_tampering() -> None:
    secret = b"k" * 32
    email_ = "a.very.long.local.part.for.testing@subdomain.example.com"
    addr = verp.bounce_address("newsletter-bounces@example.org", secret, "daily", "2026-11-22",
                               email_)
    local = addr.rpartition("@")[0]
    assert len(local) <= 64 and addr == addr.lower()
    tok = verp.parse(addr.upper(), "newsletter-bounces@example.org")  # case folded in transit
    assert tok is not None and tok.kind == "bounce" and tok.edition == "2026-11-22"
    assert verp.verify(tok, secret, email_, ["weekly", "daily"]) == "daily"
    assert verp.verify(tok, secret, "other@example.com", ["daily"]) is None
    assert verp.verify(tok, b"another secret", email_, ["daily"]) is None
    unsub = verp.unsubscribe_address(RETURN_PATH, secret, email_)
    ut = verp.parse(unsub, RETURN_PATH)
    assert ut is not None and ut.kind == "unsubscribe" and verp.verify(ut, secret, email_) == ""
    for i in range(len(unsub.partition("@")[0]) - 16, len(unsub.partition("@")[0])):
        flipped = unsub[:i] + ("a" if unsub[i] != "a" else "b") + unsub[i + 1:]
        t = verp.parse(flipped, RETURN_PATH)
        assert t is None or verp.verify(t, secret, email_) is None
    assert verp.parse("bounces@news.example.org", RETURN_PATH) is None
    assert verp.parse(unsub.replace(DOMAIN, "evil.example"), RETURN_PATH) is None


@pytest.mark.parametrize("status,action,permanent,transient", [
    ("5.1.1", "failed", True, False),
    ("5.7.1", "failed", True, False),
    ("4.2.2", "failed", False, True),
    ("4.4.7", "delayed", False, True),
    ("2.0.0", "delivered", False, False),
])
def test_dsn_status_classes(status: str, action: str, permanent: bool, transient: bool) -> None:
    n = parse_notice(dsn("bounces+x@news.example.org", "a@example.com", status, action))
    assert n.kind == "dsn" and n.recipients[0].address == "a@example.com"
    assert (n.recipients[0].permanent, n.recipients[0].transient) == (permanent, transient)
    assert n.delivered_to[0] == "bounces+x@news.example.org"


def test_unreadable_reports_raise() -> None:
    bad = (b"To: bounces@news.example.org\r\nContent-Type: multipart/report; "
           b'report-type=delivery-status; boundary="Z"\r\n\r\n--Z\r\nContent-Type: text/plain'
           b"\r\n\r\nno status part\r\n--Z--\r\n")
    with pytest.raises(NoticeError):
        parse_notice(bad)
    assert parse_notice(plain(RETURN_PATH, "x@example.com")).kind == "mail"


# --- end to end ------------------------------------------------------------------------------------


def _project(tmp_path: Path, srv: SMTPServer):
    config = make_project(tmp_path, transport="smtp", host=srv.host, port=srv.port,
                          sender=f"AI News <digest@{DOMAIN}>", timeout=5.0)
    text = (tmp_path / "config.toml").read_text(encoding="utf-8")
    text = text.replace('return_path = ""', f'return_path = "{RETURN_PATH}"', 1)
    text = text.replace('maildir = ""', 'maildir = "bounce-box"', 1)
    (tmp_path / "config.toml").write_text(text, encoding="utf-8")
    box = tmp_path / "bounce-box"
    mailbox.Maildir(str(box), create=True)
    loaded = load_config(tmp_path / "config.toml")
    assert loaded.bounces.return_path == RETURN_PATH and loaded.bounces.maildir == box
    return dataclasses.replace(config, bounces=loaded.bounces), box


def _send(config, now=NOW):
    with SmtpTransport(config.smtp, backoff=0.01) as t:
        return send_digest(config, now=now, transport=t)


def _status(config) -> dict[str, str]:
    return {s.email: s.status for s in Store(config.store.path).list_subscribers()}


def _mailto(msg: email.message.EmailMessage) -> str:
    m = re.search(r"<mailto:([^?>]+)\?subject=unsubscribe>", str(msg["List-Unsubscribe"]))
    assert m, msg["List-Unsubscribe"]
    return m.group(1)


WHO = ["hard@example.com", "soft@example.com", "arf@example.com", "unsub@example.com",
       "tamper@example.com", "quiet@example.com"]


def test_dsns_complaints_and_mail_unsubscribes_change_the_right_subscribers(
        tmp_path: Path, smtp_server: SMTPServer, capsys: pytest.CaptureFixture) -> None:
    config, box = _project(tmp_path, smtp_server)
    add_subscribers(config, *(sub(e) for e in WHO))
    report = _send(config)
    assert sorted(report.sent) == sorted(WHO)
    got = {m.rcpt_tos[0]: m for m in smtp_server.messages}
    # Every envelope sender is a VERP address of ours naming that subscriber's edition.
    for addr, m in got.items():
        local = m.mail_from.rpartition("@")[0]
        assert m.mail_from.endswith("@" + DOMAIN) and local.startswith("bounces+")
        assert len(local) <= 64
        tok = verp.parse(m.mail_from, RETURN_PATH)
        assert tok is not None and tok.edition == "2026-11-22"
        assert verp.verify(tok, SECRET.encode(), addr, ["daily"]) == "daily"
        assert _mailto(m.parsed()).startswith("bounces+unsub-")
    # Reports land in the bounce mailbox, as the domain's MX would deliver them.
    drop(box, dsn(got["hard@example.com"].mail_from, "hard@example.com", "5.1.1", mid="<h@mx>"))
    drop(box, dsn(got["soft@example.com"].mail_from, "soft@example.com", "4.2.2", mid="<s@mx>"))
    drop(box, arf(got["arf@example.com"].mail_from, "redacted@isp.example",
                  got["arf@example.com"].data))
    drop(box, plain(_mailto(got["unsub@example.com"].parsed()), "unsub@example.com"))
    real = _mailto(got["tamper@example.com"].parsed())
    at = real.index("@")
    forged = real[:at - 1] + ("a" if real[at - 1] != "a" else "b") + real[at:]
    drop(box, plain(forged, "tamper@example.com"))
    drop(box, plain(RETURN_PATH, "someone@example.com", "hello there"))  # not a report

    assert main(["--config", str(tmp_path / "config.toml"), "bounces"]) == 0
    out = capsys.readouterr().out
    assert "read 6 message(s)" in out and "bounced 1" in out and "complaints 1" in out
    assert "unsubscribed 1" in out and "left unread 1" in out, out
    assert _status(config) == {
        "hard@example.com": "bounced", "soft@example.com": "active",
        "arf@example.com": "complained", "unsub@example.com": "unsubscribed",
        "tamper@example.com": "active", "quiet@example.com": "active"}
    processed = sorted((box / ".processed" / "cur").iterdir())
    assert len(processed) == 5 and all(p.name.endswith(":2,S") for p in processed)
    assert len(list((box / "new").iterdir())) == 1  # the unreadable one stays, reported

    # A second run changes nothing: handled messages are out of the way.
    before = (Store(config.store.path).meta_get("soft_bounces"), _status(config))
    assert main(["--config", str(tmp_path / "config.toml"), "bounces"]) == 0
    out = capsys.readouterr().out
    assert "read 1 message(s)" in out and "bounced 0" in out and "soft bounces 0" in out
    assert (Store(config.store.path).meta_get("soft_bounces"), _status(config)) == before
    assert len(list((box / ".processed" / "cur").iterdir())) == 5

    # The next edition goes only to those still active: no more mail after a complaint.
    smtp_server.messages.clear()
    fresh = dataclasses.replace(
        story("fresh0000000001", ["en"], {"en": "A fresh story"}, {"en": ["news"]}),
        published=NOW + timedelta(hours=12), updated=NOW + timedelta(hours=12))
    Store(config.store.path).upsert_stories([fresh])
    _send(config, now=NOW + timedelta(days=1))
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == \
        ["quiet@example.com", "soft@example.com", "tamper@example.com"]


def test_soft_bounces_count_within_the_window_and_never_twice(tmp_path: Path,
                                                              smtp_server: SMTPServer) -> None:
    config, box = _project(tmp_path, smtp_server)
    config = dataclasses.replace(config, bounces=dataclasses.replace(
        config.bounces, soft_limit=3, soft_days=7.0))
    add_subscribers(config, sub("soft@example.com"))
    _send(config)
    sender = smtp_server.messages[0].mail_from
    drop(box, dsn(sender, "soft@example.com", "4.2.2", mid="<s1@mx>"))
    drop(box, dsn(sender, "soft@example.com", "4.2.2", mid="<s1@mx>"))  # the same notice twice
    r = process_bounces(config, now=NOW)
    assert len(r.soft) == 2 and r.soft[-1][2] == 1  # counted once
    assert _status(config)["soft@example.com"] == "active"
    # A failure more than soft_days old is forgotten: 2 within the window, still active.
    drop(box, dsn(sender, "soft@example.com", "4.2.2", mid="<s2@mx>"))
    r = process_bounces(config, now=NOW + timedelta(days=8))
    assert r.soft[-1][2] == 1 and _status(config)["soft@example.com"] == "active"
    drop(box, dsn(sender, "soft@example.com", "4.4.7", "delayed", mid="<s3@mx>"))
    r = process_bounces(config, now=NOW + timedelta(days=9))
    assert r.soft[-1][2] == 2 and _status(config)["soft@example.com"] == "active"
    drop(box, dsn(sender, "soft@example.com", "4.2.2", mid="<s4@mx>"))
    r = process_bounces(config, now=NOW + timedelta(days=10))
    assert [e for e, _ in r.bounced] == ["soft@example.com"]
    assert _status(config)["soft@example.com"] == "bounced"


def test_forged_reports_without_a_token_of_ours_change_nothing(
        tmp_path: Path, smtp_server: SMTPServer) -> None:
    """Finding 2: the bounce address is public, so a report naming a subscriber only in
    Final-Recipient / Original-Rcpt-To (or carrying a token that does not verify, or tokens
    of two subscribers) changes nothing — no complaint, no bounce, not even a soft count."""
    config, box = _project(tmp_path, smtp_server)
    people = ["victim@example.com", "soft@example.com", "b@example.com", "mix@example.com",
              "other@example.com"]
    add_subscribers(config, *(sub(e) for e in people))
    _send(config)
    got = {m.rcpt_tos[0]: m for m in smtp_server.messages}
    victim = "victim@example.com"
    fake = (f"From: attacker@evil.example\r\nTo: {victim}\r\nSubject: hi\r\n"
            f"Message-ID: <x@evil.example>\r\n\r\nhello\r\n").encode()
    # The demonstrated attack: an ARF from anyone, Original-Rcpt-To the victim, no token.
    drop(box, arf("attacker@evil.example", victim, fake))
    # The same delivered to the victim's VERP address (every copy's Return-Path holds it):
    # the envelope proves nothing for a complaint; the returned original must.
    drop(box, arf(got[victim].mail_from, victim, fake, to=got[victim].mail_from)
         .replace(b"<arf1@", b"<arf2@"))
    # A returned original whose List-Unsubscribe mailto was tampered with.
    mailto = _mailto(got[victim].parsed())
    at = mailto.index("@")
    bad_mailto = mailto[:at - 1] + ("a" if mailto[at - 1] != "a" else "b") + mailto[at:]
    tampered = without(headers(got[victim].data), "List-Unsubscribe") + \
        f"List-Unsubscribe: <mailto:{bad_mailto}?subject=unsubscribe>\r\n".encode()
    drop(box, arf("attacker@evil.example", victim, tampered, headers_only=True)
         .replace(b"<arf1@", b"<arf3@"))
    # A hard DSN naming the victim in Final-Recipient only.
    drop(box, dsn(RETURN_PATH, victim, "5.1.1", mid="<f1@mx>"))
    # Three soft DSNs (soft_limit) naming soft@ only: no count at all.
    for i in range(3):
        drop(box, dsn(RETURN_PATH, "soft@example.com", "4.2.2", mid=f"<s{i}@mx>"))
    # A token that does not verify is not overridden by the Final-Recipient it names.
    bad = verp.bounce_address(RETURN_PATH, b"not our secret", "daily", "2026-11-22",
                              "b@example.com")
    drop(box, dsn(bad, "b@example.com", "5.1.1", mid="<f2@mx>"))
    # Tokens of two subscribers: mix@'s VERP envelope, other@'s returned headers.
    drop(box, dsn(got["mix@example.com"].mail_from, "mix@example.com", "5.1.1", mid="<f3@mx>",
                  returned=headers(got["other@example.com"].data)))
    r = process_bounces(config, now=NOW)
    assert (r.bounced, r.soft, r.complained) == ([], [], [])
    assert len(r.ignored) == 9 and not r.left
    assert _status(config) == dict.fromkeys(people, "active")
    assert not Store(config.store.path).meta_get("soft_bounces")
    why = [w for _, w in r.ignored]
    assert sum("unverified complaint" in w and victim in w for w in why) == 2, why
    assert sum("unverified delivery report" in w for w in why) == 4, why
    assert sum("does not verify" in w for w in why) == 2, why
    assert sum("different subscribers" in w for w in why) == 1, why


def test_genuine_reports_are_proved_by_the_returned_message(
        tmp_path: Path, smtp_server: SMTPServer) -> None:
    """A DSN whose returned message carries our VERP Return-Path or List-Unsubscribe token
    bounces that subscriber, wherever it was delivered; an ARF whose original headers carry
    our List-Unsubscribe token (or VERP Return-Path) marks its subscriber complained."""
    config, box = _project(tmp_path, smtp_server)
    people = ["rp@example.com", "lu@example.com", "arf@example.com", "arf2@example.com",
              "quiet@example.com"]
    add_subscribers(config, *(sub(e) for e in people))
    _send(config)
    got = {m.rcpt_tos[0]: m for m in smtp_server.messages}
    # Delivered to the bare return path (a relay that drops the +extension) …
    drop(box, dsn(RETURN_PATH, "rp@example.com", "5.1.1", mid="<g1@mx>",
                  returned=without(headers(got["rp@example.com"].data,
                                           got["rp@example.com"].mail_from),
                                   "List-Unsubscribe")))
    drop(box, dsn(RETURN_PATH, "redacted@example.net", "5.1.1", mid="<g2@mx>",
                  returned=headers(got["lu@example.com"].data)))
    # Feedback loops: the original's headers with the List-Unsubscribe token, redacted
    # recipient; or the original's VERP Return-Path only.
    drop(box, arf("", "redacted@isp.example", headers(got["arf@example.com"].data),
                  headers_only=True))
    drop(box, arf("", "redacted@isp.example",
                  without(headers(got["arf2@example.com"].data,
                                  got["arf2@example.com"].mail_from), "List-Unsubscribe"),
                  headers_only=True).replace(b"<arf1@", b"<arf2@"))
    r = process_bounces(config, now=NOW)
    assert sorted(e for e, _ in r.bounced) == ["lu@example.com", "rp@example.com"], r.ignored
    assert sorted(e for e, _ in r.complained) == ["arf2@example.com", "arf@example.com"]
    assert _status(config) == {"rp@example.com": "bounced", "lu@example.com": "bounced",
                               "arf@example.com": "complained",
                               "arf2@example.com": "complained", "quiet@example.com": "active"}


class _Lockstep(MaildirInbox):
    """A Maildir reader that takes the messages in `order` and, with a second reader, one
    step at a time: both have read message i before either handles it (a barrier)."""

    def __init__(self, path: Path, order: list[str], barrier: threading.Barrier) -> None:
        super().__init__(path)
        self.order, self.barrier = order, barrier

    def messages(self):  # noqa: ANN201
        for name in self.order:
            self.barrier.wait()
            try:
                data = (self.path / "new" / name).read_bytes()
            except FileNotFoundError:  # the other run moved it already
                data = None
            self.barrier.wait()
            if data is not None:
                yield f"new/{name}", data


def test_two_runs_at_once_handle_each_message_once_and_keep_soft_counts(
        tmp_path: Path, smtp_server: SMTPServer) -> None:
    """Finding 12: the daemon's job and a manual `digest bounces` over one Maildir. Each run
    first counts a different soft bounce (both read `soft_bounces` before either writes),
    then both handle the same last message: one moves it, the other leaves it alone."""
    config, box = _project(tmp_path, smtp_server)
    config = dataclasses.replace(config, bounces=dataclasses.replace(
        config.bounces, soft_limit=5, soft_days=7.0))
    add_subscribers(config, sub("soft@example.com"), sub("other@example.com"))
    _send(config)
    got = {m.rcpt_tos[0]: m for m in smtp_server.messages}
    md = mailbox.Maildir(str(box), create=False)
    k1 = md.add(dsn(got["soft@example.com"].mail_from, "soft@example.com", "4.2.2",
                    mid="<c1@mx>"))
    k2 = md.add(dsn(got["soft@example.com"].mail_from, "soft@example.com", "4.2.2",
                    mid="<c2@mx>"))
    k3 = md.add(dsn(got["other@example.com"].mail_from, "other@example.com", "4.2.2",
                    mid="<c3@mx>"))
    barrier = threading.Barrier(2, timeout=20)
    reports: dict[str, object] = {}

    def run(name: str, order: list[str]) -> None:
        try:
            reports[name] = process_bounces(config, now=NOW,
                                            inbox=_Lockstep(box, order, barrier))
        except BaseException as e:  # noqa: BLE001 - reported below
            reports[name] = e
            barrier.abort()

    threads = [threading.Thread(target=run, args=("daemon", [k1, k2, k3])),
               threading.Thread(target=run, args=("manual", [k2, k1, k3]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    a, b = reports["daemon"], reports["manual"]
    assert not isinstance(a, BaseException) and not isinstance(b, BaseException), reports
    assert a.read + b.read == 3 and not a.left and not b.left  # each message once
    assert sorted(x[0] for x in a.soft + b.soft) == \
        ["other@example.com", "soft@example.com", "soft@example.com"]
    soft = Store(config.store.path).meta_get("soft_bounces")
    assert sorted(len(v) for v in soft.values()) == [1, 2] and len(soft["soft@example.com"]) == 2
    assert len(list((box / ".processed" / "cur").iterdir())) == 3
    assert not list((box / "new").iterdir())


def test_without_return_path_nothing_changes(tmp_path: Path, smtp_server: SMTPServer) -> None:
    config = make_project(tmp_path, transport="smtp", host=smtp_server.host,
                          port=smtp_server.port, sender=f"AI News <digest@{DOMAIN}>",
                          timeout=5.0)
    assert config.bounces == BouncesConfig()
    add_subscribers(config, sub("a@example.com"))
    _send(config)
    m = smtp_server.messages[0]
    assert m.mail_from == f"digest@{DOMAIN}"
    assert f"<mailto:digest@{DOMAIN}?subject=unsubscribe>" in \
        str(m.parsed()["List-Unsubscribe"]).replace("\r\n", "").replace("\n", "")


def test_bounces_without_a_mailbox_is_an_error_with_a_hint(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    make_project(tmp_path, ingest=True)
    assert main(["--config", str(tmp_path / "config.toml"), "bounces"]) == 1
    err = capsys.readouterr().err
    assert "no bounce mailbox" in err and "hint:" in err


class _FakeImap:
    """The few IMAP4_SSL calls ImapInbox makes, over a dict of uid → message (no network:
    no IMAP server runs here); `moved` records what went to the processed folder."""

    def __init__(self, host: str, port: int, ssl_context=None, timeout=None) -> None:  # noqa: ANN001
        self.box = dict(_FakeImap.seed)
        self.moved: list[bytes] = []
        self.capabilities = ("IMAP4REV1", "MOVE")
        _FakeImap.last = self

    def login(self, user: str, password: str):
        assert (user, password) == ("bounce-user", "pw")
        return "OK", [b""]

    def select(self, folder: str):
        return ("OK", [b"1"]) if folder == '"INBOX"' else ("NO", [b""])

    def create(self, folder: str):
        return "NO", [b"exists"]

    def uid(self, cmd: str, *args):  # noqa: ANN002
        if cmd == "SEARCH":
            return "OK", [b" ".join(self.box)]
        uid = args[0] if isinstance(args[0], bytes) else args[0].encode()
        if cmd == "FETCH" and "SIZE" in args[1]:
            return "OK", [b"1 (UID %s RFC822.SIZE %d)" % (uid, len(self.box[uid]))]
        if cmd == "FETCH":
            return "OK", [(b"1 (UID %s BODY[] {%d}" % (uid, len(self.box[uid])), self.box[uid]),
                          b")"]
        if cmd == "MOVE":
            self.moved.append(uid)
            del self.box[uid]
            return "OK", [b""]
        raise AssertionError(cmd)

    def logout(self):
        return "BYE", [b""]


def test_imap_mailbox_moves_handled_reports(tmp_path: Path, smtp_server: SMTPServer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import imaplib

    config, _box = _project(tmp_path, smtp_server)
    config = dataclasses.replace(config, bounces=dataclasses.replace(
        config.bounces, maildir=None, imap_host="imap.example.org", imap_user="bounce-user"))
    add_subscribers(config, sub("a@example.com"))
    _send(config)
    sender = smtp_server.messages[0].mail_from
    _FakeImap.seed = {b"7": dsn(sender, "a@example.com", "5.1.1"),
                      b"8": plain(RETURN_PATH, "x@example.com", "hello")}
    monkeypatch.setattr(imaplib, "IMAP4_SSL", _FakeImap)
    monkeypatch.setenv(config.bounces.password_env, "pw")
    r = process_bounces(config, now=NOW)
    assert [e for e, _ in r.bounced] == ["a@example.com"] and len(r.left) == 1
    assert _FakeImap.last.moved == [b"7"] and list(_FakeImap.last.box) == [b"8"]
    assert r.where == "imaps://imap.example.org:993/INBOX"


class _ImapServer:
    """One IMAP folder that outlives connections (uid → message, the \\Deleted flags, the
    processed folder, the commands seen); `_FakeImapNoMove` connects to it."""

    def __init__(self, box: dict[bytes, bytes], caps: tuple[str, ...]) -> None:
        self.box, self.caps = dict(box), caps
        self.deleted: set[bytes] = set()
        self.processed: list[bytes] = []
        self.log: list[str] = []


class _FakeImapNoMove:
    server: _ImapServer

    def __init__(self, host: str, port: int, ssl_context=None, timeout=None) -> None:  # noqa: ANN001
        self.srv = _FakeImapNoMove.server
        self.capabilities = self.srv.caps

    def login(self, user: str, password: str):
        return "OK", [b""]

    def select(self, folder: str):
        return "OK", [b"1"]

    def create(self, folder: str):
        return "NO", [b"exists"]

    def _expunge(self, uids) -> None:  # noqa: ANN001
        for uid in [u for u in uids if u in self.srv.deleted]:
            self.srv.deleted.discard(uid)
            del self.srv.box[uid]

    def expunge(self):
        self.srv.log.append("EXPUNGE")
        self._expunge(list(self.srv.box))
        return "OK", [b""]

    def uid(self, cmd: str, *args):  # noqa: ANN002
        self.srv.log.append(" ".join(["UID", cmd, *(a if isinstance(a, str) else a.decode()
                                                    for a in args if a is not None)]))
        if cmd == "SEARCH":
            undeleted = "UNDELETED" in args or "NOT DELETED" in args
            return "OK", [b" ".join(u for u in self.srv.box
                                    if not (undeleted and u in self.srv.deleted))]
        uid = args[0] if isinstance(args[0], bytes) else args[0].encode()
        if cmd == "FETCH" and "SIZE" in args[1]:
            return "OK", [b"1 (UID %s RFC822.SIZE %d)" % (uid, len(self.srv.box[uid]))]
        if cmd == "FETCH":
            return "OK", [(b"1 (UID %s BODY[] {%d}" % (uid, len(self.srv.box[uid])),
                           self.srv.box[uid]), b")"]
        if cmd == "COPY":
            self.srv.processed.append(uid)
            return "OK", [b""]
        if cmd == "STORE":
            self.srv.deleted.add(uid)
            return "OK", [b""]
        if cmd == "EXPUNGE":
            assert "UIDPLUS" in self.srv.caps
            self._expunge([uid])
            return "OK", [b""]
        raise AssertionError(cmd)

    def logout(self):
        return "BYE", [b""]


@pytest.mark.parametrize("caps", [("IMAP4REV1", "UIDPLUS"), ("IMAP4REV1",)])
def test_imap_without_move_expunges_each_message_at_once(
        tmp_path: Path, smtp_server: SMTPServer, monkeypatch: pytest.MonkeyPatch,
        caps: tuple[str, ...]) -> None:
    """Finding 11: without MOVE, a handled message is copied, flagged \\Deleted and expunged
    at once (UID EXPUNGE with UIDPLUS, else EXPUNGE), and flagged ones are never read: a run
    that dies before close() leaves nothing to read and copy again."""
    import imaplib

    from digest.mail.inbox import ImapInbox

    config, _box = _project(tmp_path, smtp_server)
    config = dataclasses.replace(config, bounces=dataclasses.replace(
        config.bounces, maildir=None, imap_host="imap.example.org", imap_user="bounce-user"))
    add_subscribers(config, sub("a@example.com"), sub("b@example.com"))
    _send(config)
    got = {m.rcpt_tos[0]: m for m in smtp_server.messages}
    srv = _ImapServer({b"7": dsn(got["a@example.com"].mail_from, "a@example.com", "5.1.1"),
                       b"8": plain(RETURN_PATH, "x@example.com", "hello"),
                       b"9": b"X-Old: copied by a run that died\r\n\r\nx\r\n"}, caps)
    srv.deleted.add(b"9")  # flagged \Deleted, never expunged
    _FakeImapNoMove.server = srv
    monkeypatch.setattr(imaplib, "IMAP4_SSL", _FakeImapNoMove)
    monkeypatch.setenv(config.bounces.password_env, "pw")
    monkeypatch.setattr(ImapInbox, "close", lambda self: None)  # the run dies: no close()
    r = process_bounces(config, now=NOW)
    assert [e for e, _ in r.bounced] == ["a@example.com"] and r.read == 2 and len(r.left) == 1
    assert srv.processed == [b"7"] and b"7" not in srv.box
    assert ("UID EXPUNGE 7" if "UIDPLUS" in caps else "EXPUNGE") in srv.log
    # The next run reads only what is still there and unflagged: 8 (left unread again).
    srv.box[b"10"] = dsn(got["b@example.com"].mail_from, "b@example.com", "5.1.1",
                         mid="<d10@mx>")
    r = process_bounces(config, now=NOW)
    assert r.read == 2 and [e for e, _ in r.bounced] == ["b@example.com"]
    assert srv.processed == [b"7", b"10"]
