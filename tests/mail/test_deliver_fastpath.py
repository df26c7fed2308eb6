"""The SMTP fast path (own MAIL/RCPT/DATA, no per-message regexes) sends exactly what
aiosmtplib's sendmail would, and falls back to it for addresses it does not vouch for."""

from __future__ import annotations

import dataclasses

from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.config import SmtpConfig
from digest.mail.transports import Envelope, SmtpTransport, plain_address, wire_data
from tests.support.smtp_server import SMTPServer


def _aiosmtplib_payload(data: bytes) -> bytes:
    """What aiosmtplib's execute_data_command writes after DATA (the reference)."""
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"


_PIECES = st.lists(st.sampled_from([b"a", b".", b"..", b"\r", b"\n", b"\r\n", b"x.y", b" "]),
                   max_size=30).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(_PIECES)
def test_wire_data_matches_aiosmtplib_byte_for_byte(data: bytes) -> None:
    assert wire_data(data) == _aiosmtplib_payload(data)


def test_wire_data_leaves_clean_crlf_messages_alone() -> None:
    data = b"Subject: x\r\n\r\nQUJD\r\nREVG\r\n"
    assert wire_data(data) == data + b".\r\n"
    assert wire_data(b".hidden\r\nnext\r\n.\r\n") == b"..hidden\r\nnext\r\n..\r\n.\r\n"


def test_plain_address_refuses_what_could_inject() -> None:
    assert plain_address("a.b+c@example.com") == b"<a.b+c@example.com>"
    for bad in ["a@b.com> SIZE=1", "a b@c.com", "<a@b.com>", "a@b.com\r\nRSET", "ä@b.com",
                '"q"@b.com', "no-at-sign", "a@b@c.com", ""]:
        assert plain_address(bad) is None, bad


def _cfg(srv: SMTPServer) -> SmtpConfig:
    return dataclasses.replace(SmtpConfig(), transport="smtp", host=srv.host, port=srv.port,
                               pool_size=2, timeout=5, retries=2)


def test_odd_messages_arrive_as_aiosmtplib_would_send_them() -> None:
    bodies = [b"Subject: a\r\n\r\n.starts with a dot\r\n..two\r\nend",
              b"Subject: b\n\nbare LF\nlines\r\nmixed\r.\n",
              b"Subject: c\r\n\r\nplain\r\n"]
    envs = [Envelope("digest@example.org", f"r{i}@example.com", b) for i, b in enumerate(bodies)]
    # A display-name sender is not a plain address: that envelope takes aiosmtplib's path.
    envs.append(Envelope("Digest <digest@example.org>", "r9@example.com", bodies[0]))
    with SMTPServer() as srv:
        with SmtpTransport(_cfg(srv), backoff=0.01) as t:
            out = t.send(envs)
        assert [o.state for o in out] == ["sent"] * 4
        got = {m.rcpt_tos[0]: m for m in srv.messages}
    for i, body in enumerate(bodies):
        # The server un-stuffs the dots: it must see the CRLF-normalised original.
        assert got[f"r{i}@example.com"].data == normalize_message_line_endings(body)
        assert got[f"r{i}@example.com"].mail_from == "digest@example.org"
    assert got["r9@example.com"].data == got["r0@example.com"].data
