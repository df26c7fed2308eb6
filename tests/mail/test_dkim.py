"""DKIM (issue 14): `digest dkim keygen` writes a 0600 key and prints the TXT record; every
digest and confirmation mail sent over a real loopback SMTP server verifies with dkimpy
against that printed record; a key others can read is refused with a hint."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import dkim
import pytest

from digest.cli import main
from digest.config import DkimConfig
from digest.errors import DigestError
from digest.mail.dkim import SIGNED_HEADERS, load_signer, record_value
from digest.mail.transports import SmtpTransport
from digest.pipeline.sending import send_digest
from digest.pipeline.subscribing import send_confirmation
from digest.store import Store
from tests.support.send import NOW, add_subscribers, make_project, sub, three_subscribers
from tests.support.smtp_server import SMTPServer

pytestmark = pytest.mark.usefixtures("secret")

DOMAIN = "news.example.org"


def keygen(tmp_path: Path, capsys: pytest.CaptureFixture, algorithm: str,
           selector: str = "s2026") -> tuple[Path, str]:
    key = tmp_path / "keys" / f"{algorithm}.pem"
    assert main(["dkim", "keygen", "--domain", DOMAIN, "--selector", selector,
                 "--key-file", str(key), "--algorithm", algorithm]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f'{selector}._domainkey.{DOMAIN} IN TXT "v=DKIM1; k=')
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    return key, out


def dns_for(record: str, selector: str = "s2026"):
    """A dnsfunc answering the printed TXT record (and nothing else)."""
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        assert name == f"{selector}._domainkey.{DOMAIN}.".encode()
        return record_value(record)
    return lookup


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_every_digest_and_confirmation_verifies_against_the_printed_record(
        tmp_path: Path, smtp_server: SMTPServer, capsys: pytest.CaptureFixture,
        algorithm: str) -> None:
    key, record = keygen(tmp_path, capsys, algorithm)
    assert (f"k={algorithm}") in record
    config = make_project(tmp_path, transport="smtp", host=smtp_server.host,
                          port=smtp_server.port, sender=f"AI News <digest@{DOMAIN}>",
                          timeout=5.0)
    config = dataclasses.replace(config, dkim=DkimConfig(domain=DOMAIN, selector="s2026",
                                                         key_file=key))
    add_subscribers(config, *three_subscribers())
    with SmtpTransport(config.smtp, backoff=0.01) as t:
        report = send_digest(config, now=NOW, transport=t)
        assert len(report.sent) == 3
        send_confirmation(config, Store(config.store.path), sub("new@example.com"), NOW,
                          transport=t)
    assert len(smtp_server.messages) == 4
    for m in smtp_server.messages:
        assert m.data.startswith(b"DKIM-Signature: v=1; a=" + (b"ed25519-sha256" if
                                 algorithm == "ed25519" else b"rsa-sha256"))
        assert dkim.verify(m.data, dnsfunc=dns_for(record)), m.rcpt_tos
        tags = dkim.util.parse_tag_value(m.data.split(b"\r\n\r\n")[0].split(
            b"DKIM-Signature:")[1].split(b"\r\nFrom:")[0])
        signed = tags[b"h"].split(b":")
        present = {h.lower() for h in SIGNED_HEADERS
                   if h.decode() + ":" in m.data.decode("ascii", "replace").lower()}
        assert set(signed) >= present and signed.count(b"from") == 2
        assert {b"from", b"to", b"subject", b"date", b"message-id", b"mime-version",
                b"content-type"} <= set(signed)
        if m.rcpt_tos[0] != "new@example.com":  # digests carry the list headers
            assert {b"list-unsubscribe", b"list-unsubscribe-post"} <= set(signed)
        # A changed body or a changed header breaks it.
        tampered = m.data.replace(b"Subject: ", b"Subject: Re: ", 1)
        assert not dkim.verify(tampered, dnsfunc=dns_for(record))
        assert not dkim.verify(m.data[:-40] + b"A" * 38 + b"\r\n", dnsfunc=dns_for(record))


def test_a_key_others_can_read_is_refused_with_a_hint(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    key, _record = keygen(tmp_path, capsys, "rsa")
    os.chmod(key, 0o644)
    with pytest.raises(DigestError) as e:
        load_signer(DkimConfig(domain=DOMAIN, selector="s2026", key_file=key))
    assert "readable by group or others" in e.value.message and "chmod 600" in e.value.hint
    os.chmod(key, 0o600)
    assert load_signer(DkimConfig(domain=DOMAIN, selector="s2026", key_file=key)) is not None


def test_keygen_never_overwrites_and_checks_names(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    key, _record = keygen(tmp_path, capsys, "rsa")
    before = key.read_bytes()
    assert main(["dkim", "keygen", "--domain", DOMAIN, "--selector", "s2026",
                 "--key-file", str(key)]) == 1
    assert "already exists" in capsys.readouterr().err and key.read_bytes() == before
    assert main(["dkim", "keygen", "--domain", "not a domain", "--selector", "s",
                 "--key-file", str(tmp_path / "x.pem")]) == 1
    assert not (tmp_path / "x.pem").exists()


def test_unsigned_without_dkim_settings(tmp_path: Path, smtp_server: SMTPServer) -> None:
    config = make_project(tmp_path, transport="smtp", host=smtp_server.host,
                          port=smtp_server.port, sender=f"AI News <digest@{DOMAIN}>",
                          timeout=5.0)
    add_subscribers(config, sub("a@example.com"))
    with SmtpTransport(config.smtp, backoff=0.01) as t:
        send_digest(config, now=NOW, transport=t)
    assert b"DKIM-Signature" not in smtp_server.messages[0].data
