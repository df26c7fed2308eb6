"""Transports against a real aiosmtpd server on 127.0.0.1: retries, bounces, drops, TLS."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from pathlib import Path

import pytest

from digest.config import SmtpConfig
from digest.errors import DeliveryError
from digest.mail.transports import Envelope, MaildirTransport, SmtpTransport, open_transport
from tests.support.smtp_server import Faults, SMTPServer

# Every server here runs twice: offering PIPELINING and not (tests/mail/conftest.py).
pytestmark = pytest.mark.usefixtures("pipelining")


def _msg(rcpt: str, mid: str = "<m1@example.org>") -> bytes:
    return (f"From: digest@example.org\r\nTo: {rcpt}\r\nSubject: test\r\nMessage-ID: {mid}\r\n"
            f"\r\nhello {rcpt}\r\n").encode()


def _env(rcpt: str) -> Envelope:
    mid = f"<{rcpt.replace('@', '.')}@example.org>"
    return Envelope("digest@example.org", rcpt, _msg(rcpt, mid))


def _cfg(srv: SMTPServer, **kw: object) -> SmtpConfig:
    base = SmtpConfig(transport="smtp", host=srv.host, port=srv.port, pool_size=2, timeout=5,
                      retries=4)
    return dataclasses.replace(base, **kw)


def _send(srv: SMTPServer, rcpts: list[str], **kw: object):
    with SmtpTransport(_cfg(srv, **kw), backoff=0.01) as t:
        return t.send([_env(r) for r in rcpts])


def test_plain_delivery_parses_back() -> None:
    with SMTPServer() as srv:
        out = _send(srv, ["a@example.com", "b@example.com", "c@example.com"])
        assert [o.state for o in out] == ["sent"] * 3
        got = {m["To"]: m for m in srv.parsed()}
        assert set(got) == {"a@example.com", "b@example.com", "c@example.com"}
        assert got["a@example.com"]["Message-ID"] == "<a.example.com@example.org>"


@pytest.mark.parametrize("faults", [Faults(rcpt_4xx=2), Faults(data_4xx=2)],
                         ids=["451-at-rcpt", "451-at-data"])
def test_451_twice_then_accepted(faults: Faults) -> None:
    # a copy: the server counts the faults down, and this parameter serves both runs
    with SMTPServer(faults=dataclasses.replace(faults)) as srv:
        out = _send(srv, ["a@example.com"], pool_size=1)
        assert out[0].state == "sent" and out[0].attempts == 3
        assert len(srv.messages) == 1


def test_retries_are_bounded() -> None:
    with SMTPServer(faults=Faults(rcpt_4xx=100)) as srv:
        out = _send(srv, ["a@example.com"], pool_size=1, retries=2)
        assert out[0].state == "failed" and out[0].attempts == 3
        assert "451" in out[0].reason
        assert srv.messages == []


def test_550_for_one_recipient_bounces_it_and_the_rest_go_on() -> None:
    with SMTPServer(faults=Faults(reject={"gone@example.com"})) as srv:
        out = _send(srv, ["a@example.com", "gone@example.com", "c@example.com"])
        states = {o.recipient: o.state for o in out}
        assert states == {"a@example.com": "sent", "gone@example.com": "bounced",
                          "c@example.com": "sent"}
        assert "550" in next(o.reason for o in out if o.state == "bounced")
        assert sorted(m["To"] for m in srv.parsed()) == ["a@example.com", "c@example.com"]


def test_connection_dropped_during_data_is_retried() -> None:
    with SMTPServer(faults=Faults(drop_data=1)) as srv:
        out = _send(srv, ["a@example.com", "b@example.com"], pool_size=1)
        assert [o.state for o in out] == ["sent", "sent"]
        assert out[0].attempts == 2 and out[0].ambiguous
        assert sorted(m["To"] for m in srv.parsed()) == ["a@example.com", "b@example.com"]


def test_reply_lost_after_data_resends_with_the_same_message_id() -> None:
    # The server kept the message but the line dropped before "250": the documented
    # ambiguous case. The retry may duplicate it, but recognisably (same Message-ID).
    with SMTPServer(faults=Faults(drop_after_data=1)) as srv:
        out = _send(srv, ["a@example.com"], pool_size=1)
        assert out[0].state == "sent" and out[0].ambiguous
        ids = [m["Message-ID"] for m in srv.parsed()]
        assert ids == ["<a.example.com@example.org>"] * 2


def test_connections_are_reused() -> None:
    with SMTPServer() as srv:
        with SmtpTransport(_cfg(srv, pool_size=1), backoff=0.01) as t:
            t.send([_env(f"r{i}@example.com") for i in range(5)])
            t.send([_env("late@example.com")])
        assert len(srv.messages) == 6
        assert len({m.peer for m in srv.messages}) == 1  # one connection for all six


def test_unreachable_server_fails_fast_with_reason() -> None:
    from tests.support.smtp_server import free_port

    cfg = SmtpConfig(transport="smtp", host="127.0.0.1", port=free_port(), pool_size=1,
                     retries=1, timeout=2)
    with SmtpTransport(cfg, backoff=0.01) as t:
        out = t.send([_env("a@example.com"), _env("b@example.com"), _env("c@example.com")])
    assert [o.state for o in out] == ["failed"] * 3
    assert all("127.0.0.1" in o.reason or "connect" in o.reason.lower() for o in out)


def test_starttls_and_auth() -> None:
    with SMTPServer(tls=True, auth={"digest": "s3cret"}) as srv:
        cfg = _cfg(srv, security="starttls", username="digest", pool_size=1)
        with SmtpTransport(cfg, "s3cret", tls_context=srv.tls_client_context()) as t:
            out = t.send([_env("a@example.com")])
        assert out[0].state == "sent"
        m = srv.messages[0]
        assert m.tls and m.authenticated_as == "digest"


def test_wrong_password_fails_every_message_without_hammering() -> None:
    with SMTPServer(tls=True, auth={"digest": "s3cret"}) as srv:
        cfg = _cfg(srv, security="starttls", username="digest", pool_size=1)
        with SmtpTransport(cfg, "wrong", tls_context=srv.tls_client_context()) as t:
            out = t.send([_env("a@example.com"), _env("b@example.com")])
        assert [o.state for o in out] == ["failed", "failed"]
        assert "login refused" in out[0].reason and out[1].attempts == 0
        assert srv.messages == []


def test_plain_security_does_not_upgrade_to_an_untrusted_cert() -> None:
    # security = "none" must not try STARTTLS just because the server offers it
    with SMTPServer(tls=False) as srv:
        assert _send(srv, ["a@example.com"])[0].state == "sent"


def test_rate_limit_spaces_messages() -> None:
    with SMTPServer() as srv:
        out = _send(srv, [f"r{i}@example.com" for i in range(4)], rate_limit=1000.0)
        assert [o.state for o in out] == ["sent"] * 4


def test_maildir_transport(tmp_path: Path) -> None:
    t = open_transport(SmtpConfig(transport="maildir", maildir=tmp_path / "deep" / "md"))
    assert isinstance(t, MaildirTransport)
    out = t.send([_env("a@example.com"), _env("b@example.com")])
    assert [o.state for o in out] == ["sent", "sent"]
    files = sorted((tmp_path / "deep" / "md" / "new").iterdir())
    assert len(files) == 2
    msgs = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]
    assert sorted(m["To"] for m in msgs) == ["a@example.com", "b@example.com"]
    assert b"\r\n" not in files[0].read_bytes()


def test_unknown_transport_and_security() -> None:
    with pytest.raises(DeliveryError):
        open_transport(SmtpConfig(transport="carrier-pigeon"))
    with pytest.raises(DeliveryError):
        SmtpTransport(SmtpConfig(transport="smtp", security="ssl3"))
