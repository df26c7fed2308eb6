"""PIPELINING (RFC 2920) against a real aiosmtpd on loopback that offers it: MAIL, RCPT and
DATA go in one write (the server holds RCPT and DATA behind MAIL before answering it), the
server receives the same bytes as one command at a time, and every refusal means what it
meant before: a 550 at RCPT bounces that one recipient and the connection carries the next
message; 4xx is retried; 530 at MAIL refuses the session; a connection that closes mid-group
is retried with nothing lost or doubled. The fault matrices (test_smtp_faults, test_deliver,
test_relay_refusals) also run both ways through the `pipelining` fixture."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from digest.config import SmtpConfig
from digest.mail.transports import Envelope, SmtpTransport
from digest.pipeline.sending import send_digest
from tests.support.faults import FaultServer, More
from tests.support.send import NOW, add_subscribers, make_project, sub
from tests.support.smtp_server import Faults, SMTPServer, _Handler

pytestmark = pytest.mark.usefixtures("secret")  # the same link tokens in every project

SENDER = "digest@news.example.org"


def _cfg(srv: SMTPServer, **kw: object) -> SmtpConfig:
    base = SmtpConfig(transport="smtp", host=srv.host, port=srv.port, pool_size=1, timeout=5,
                      retries=2, sender=SENDER)
    return dataclasses.replace(base, **kw)


def _env(rcpt: str, sender: str = SENDER, body: bytes | None = None) -> Envelope:
    data = body or f"Subject: t\r\nTo: {rcpt}\r\n\r\nhello {rcpt}\r\n".encode()
    return Envelope(sender, rcpt, data)


def _send(srv: SMTPServer, envs: list[Envelope], pipelining: bool = True, **kw: object):
    with SmtpTransport(_cfg(srv, **kw), backoff=0.01, pipelining=pipelining) as t:
        return t.send(envs), t.refusal


def _group(rcpt: str) -> bytes:
    return f"RCPT TO:<{rcpt}>\r\nDATA\r\n".encode()


def _seen(srv: SMTPServer) -> list[tuple[str, list[str], bytes]]:
    return sorted((m.mail_from, m.rcpt_tos, m.data) for m in srv.messages)


ODD_BODIES = [b"Subject: a\r\n\r\n.starts with a dot\r\n..two\r\nend",
              b"Subject: b\n\nbare LF\nlines\r\nmixed\r.\n",
              b"Subject: c\r\n\r\n" + b"QUJD" * 19 + b"\r\n" * 3000]


def test_one_write_per_group_and_the_same_bytes_as_one_command_at_a_time() -> None:
    envs = [_env(f"r{i}@example.com", body=b) for i, b in enumerate(ODD_BODIES)]
    envs.append(_env("v@example.com", sender="bounces+v=example.com@news.example.org"))
    # a display-name sender is not a plain address: aiosmtplib's sendmail takes that one on
    # the same connection, which then goes back to pipelining
    envs.insert(1, _env("n@example.com", sender=f"Digest <{SENDER}>"))
    with SMTPServer(pipelining=True) as srv:
        out, _ = _send(srv, envs)
        assert [o.state for o in out] == ["sent"] * len(envs)
        pipelined, groups = _seen(srv), list(srv.after_mail)
        assert len({m.peer for m in srv.messages}) == 1  # one connection throughout
    with SMTPServer(pipelining=True) as srv:
        out, _ = _send(srv, envs, pipelining=False)
        assert [o.state for o in out] == ["sent"] * len(envs)
        one_by_one, singles = _seen(srv), list(srv.after_mail)
    with SMTPServer(pipelining=False) as srv:  # a server without it: one command at a time
        out, _ = _send(srv, envs)
        assert [o.state for o in out] == ["sent"] * len(envs)
        plain, unasked = _seen(srv), list(srv.after_mail)
    assert pipelined == one_by_one == plain
    # behind each MAIL the server already held its RCPT and DATA, except for the one
    # aiosmtplib sent itself (n@) and wherever nothing was pipelined
    assert groups == [_group(e.recipient) if e.recipient != "n@example.com" else b""
                      for e in envs]
    assert singles == unasked == [b""] * len(envs)


def test_a_digest_run_delivers_the_same_messages_pipelined(tmp_path: Path) -> None:
    people = [sub(f"r{i}@example.com", ["en"] if i % 2 else ["zh"]) for i in range(6)]
    got = []
    for on in (True, False):
        with SMTPServer(pipelining=on) as srv:
            (tmp_path / str(on)).mkdir()
            config = make_project(tmp_path / str(on), transport="smtp", host=srv.host,
                                  port=srv.port, sender=f"AI News <{SENDER}>", timeout=5.0,
                                  pool_size=2)
            add_subscribers(config, *people)
            report = send_digest(config, now=NOW)
            assert sorted(report.sent) == sorted(p.email for p in people), report.lines()
            got.append(_seen(srv))
            behind = sorted(srv.after_mail)
            assert behind == (sorted(_group(p.email) for p in people) if on else [b""] * 6)
    assert got[0] == got[1]


def test_550_at_rcpt_bounces_that_one_and_the_connection_carries_the_next() -> None:
    rcpts = ["a@example.com", "gone@example.com", "c@example.com"]
    with SMTPServer(faults=Faults(reject={"gone@example.com"}), pipelining=True) as srv:
        out, refusal = _send(srv, [_env(r) for r in rcpts])
        assert refusal is None
        assert [o.state for o in out] == ["sent", "bounced", "sent"]
        assert out[1].reason.startswith("550 5.1.1") and out[1].attempts == 1
        assert [m.rcpt_tos for m in srv.messages] == [["a@example.com"], ["c@example.com"]]
        assert len({m.peer for m in srv.messages}) == 1  # RSET, not a new connection
        # the refused RCPT was followed by its DATA in the same group (answered 503)
        assert srv.after_mail[1] == _group("gone@example.com")


def test_4xx_at_rcpt_in_a_group_is_retried() -> None:
    with SMTPServer(faults=Faults(rcpt_4xx=1), pipelining=True) as srv:
        out, _ = _send(srv, [_env("a@example.com"), _env("b@example.com")])
        assert [(o.state, o.attempts) for o in out] == [("sent", 2), ("sent", 1)]
        assert sorted(r for m in srv.messages for r in m.rcpt_tos) == ["a@example.com",
                                                                       "b@example.com"]
        assert srv.faults.rcpt_4xx == 0 and len(srv.after_mail) == 3


def test_4xx_at_data_after_the_payload_is_retried_once_kept() -> None:
    with SMTPServer(faults=Faults(data_4xx=1), pipelining=True) as srv:
        out, _ = _send(srv, [_env("a@example.com")])
        assert (out[0].state, out[0].attempts) == ("sent", 2) and srv.attempts == 2
        assert len(srv.messages) == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_530_at_mail_from_refuses_the_session_and_bounces_nobody() -> None:
    with SMTPServer(auth={"digest": "pw"}, pipelining=True) as srv:
        out, refusal = _send(srv, [_env(f"r{i}@example.com") for i in range(3)])
        assert refusal is not None and (refusal.stage, refusal.code) == ("MAIL", 530)
        assert all(o.state == "failed" and o.session for o in out), out
        assert srv.messages == []


class _RefuseButListen(_Handler):
    """A non-conforming server: refuses a RCPT yet takes the envelope on, so DATA says 354
    (RFC 2920 section 3.1: the client then ends the data at once with a lone dot)."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001
        envelope.rcpt_tos.append(address)
        return "550 5.1.1 no such user" if address.startswith("gone") else "250 OK"


def test_354_after_a_refused_rcpt_gets_a_lone_dot_never_the_message() -> None:
    srv = SMTPServer(pipelining=True)
    srv.controller.handler = _RefuseButListen(srv)
    with srv:
        out, _ = _send(srv, [_env("gone@example.com"), _env("b@example.com")])
        assert [o.state for o in out] == ["bounced", "sent"]
        assert [(m.rcpt_tos, m.data) for m in srv.messages] == [
            (["gone@example.com"], b""),  # the lone dot: an empty message, not ours
            (["b@example.com"], _env("b@example.com").data)]
        assert len({m.peer for m in srv.messages}) == 1


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
def test_a_server_that_closes_mid_group_is_retried_nothing_lost_or_doubled(stage: str) -> None:
    rcpts = [f"r{i}@example.com" for i in range(4)]
    with FaultServer(more=More(drop_at=stage, drops=2)) as srv:
        srv.pipelining = True
        out, _ = _send(srv, [_env(r) for r in rcpts], retries=3, pool_size=2)
        assert [o.state for o in out] == ["sent"] * 4, out
        assert srv.events == [(stage, "drop")] * 2
        assert sorted(r for m in srv.messages for r in m.rcpt_tos) == rcpts  # once each


def test_a_server_silent_mid_group_times_out_and_is_retried() -> None:
    # the RCPT's reply comes 1.5 s late: past the 0.5 s timeout, the connection is dropped
    more = More(stall_at="rcpt", stalls=1, stall_seconds=1.5)
    with FaultServer(more=more) as srv:
        srv.pipelining = True
        out, _ = _send(srv, [_env("a@example.com"), _env("b@example.com")], timeout=0.5)
        assert [o.state for o in out] == ["sent", "sent"] and out[0].attempts == 2, out
        assert sorted(r for m in srv.messages for r in m.rcpt_tos) == ["a@example.com",
                                                                       "b@example.com"]


def test_rerun_after_a_drop_sends_each_edition_once(tmp_path: Path) -> None:
    people = [sub(f"r{i}@example.com") for i in range(5)]
    with FaultServer(more=More(drop_at="rcpt", drops=10_000)) as srv:
        srv.pipelining = True
        config = make_project(tmp_path, transport="smtp", host=srv.host, port=srv.port,
                              sender=f"AI News <{SENDER}>", timeout=5.0, retries=1,
                              pool_size=2)
        add_subscribers(config, *people)
        with SmtpTransport(config.smtp, backoff=0.01) as t:
            first = send_digest(config, now=NOW, transport=t)
        assert first.sent == [] and len(first.failed) == 5 and srv.messages == []
        srv.more.drops = 0
        with SmtpTransport(config.smtp, backoff=0.01) as t:
            second = send_digest(config, now=NOW + timedelta(minutes=1), transport=t)
        assert sorted(second.sent) == sorted(p.email for p in people), second.lines()
        ids = srv.message_ids()
        assert all(len(v) == 1 for v in ids.values()) and len(ids) == 5


class _MultiLineRefusal(_Handler):
    """A RCPT refusal over two reply lines (continuation `550-`)."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001
        if address.startswith("gone"):
            return "550-5.1.1 The mailbox does not exist\r\n550 5.1.1 see https://x.example/"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_replies_read_alike_pipelined_or_not_multi_line_ones_too() -> None:
    envs = [_env("a@example.com"), _env("gone@example.com"), _env("c@example.com")]
    outcomes = []
    for on in (True, False):
        srv = SMTPServer(pipelining=on)
        srv.controller.handler = _MultiLineRefusal(srv)
        with srv:
            out, refusal = _send(srv, envs)
            assert refusal is None and len(srv.messages) == 2
        outcomes.append([(o.state, o.reason, o.attempts, o.refused) for o in out])
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][1][:2] == (
        "bounced", "550 5.1.1 The mailbox does not exist\n5.1.1 see https://x.example/")


@pytest.mark.slow
def test_kill_trials_pipelined_lose_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    # tests/store/test_kill_restart.py's send kill trials against a server offering
    # PIPELINING: `digest send` killed at random moments, then rerun; duplicates only for
    # the messages in flight at the kill (checked inside), nobody missed
    from tests.store.test_kill_restart import _send_series

    monkeypatch.setattr(SMTPServer, "PIPELINING", True)
    f = _send_series(tmp_path, 20, seed=33)
    assert f.lost == 0 and f.killed > 0


@pytest.mark.parametrize("loop", ["asyncio", "default"])
def test_the_pool_delivers_alike_on_either_event_loop(loop: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # uvloop where installed, asyncio's own loop on Windows or with DIGEST_EVENT_LOOP=asyncio:
    # both run the same pipelined groups, refusals included
    monkeypatch.setenv("DIGEST_EVENT_LOOP", loop)
    envs = [_env(f"r{i}@example.com", body=b) for i, b in enumerate(ODD_BODIES)]
    envs.append(_env("gone@example.com"))
    faults = Faults(reject={"gone@example.com"})
    with SMTPServer(pipelining=True, faults=faults) as srv:
        with SmtpTransport(_cfg(srv), backoff=0.01) as t:
            out = t.send(envs)
            kind = type(t._running_loop()).__module__.split(".")[0]
        assert [o.state for o in out] == ["sent"] * len(ODD_BODIES) + ["bounced"]
        assert sorted(m.rcpt_tos[0] for m in srv.messages) == [e.recipient for e in envs[:-1]]
        assert list(srv.after_mail)[:len(ODD_BODIES)] == [_group(e.recipient) for e in envs[:-1]]
    assert kind == ("asyncio" if loop == "asyncio" else "uvloop")
