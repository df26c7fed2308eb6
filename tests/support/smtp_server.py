"""A real loopback SMTP server for tests (aiosmtpd on 127.0.0.1) with scriptable faults.

Usage (plain import; no pytest plugin needed):

    from tests.support.smtp_server import SMTPServer, Faults

    with SMTPServer(faults=Faults(rcpt_4xx=2, reject={"bad@example.com"})) as srv:
        ...send to srv.host, srv.port...
        srv.wait_for(3)                 # block until 3 messages were accepted (or time out)
        msgs = srv.parsed()             # list[email.message.EmailMessage], policy.default
        srv.messages[0].rcpt_tos        # raw envelopes: mail_from, rcpt_tos, data (bytes),
                                        # authenticated_as, tls, peer (one per connection)

    with SMTPServer(tls=True, auth={"user": "secret"}) as srv:   # STARTTLS + AUTH required
        srv.cafile                      # PEM of the self-signed cert (SAN 127.0.0.1, localhost)
        srv.tls_client_context()        # an ssl.SSLContext that trusts it

    with SMTPServer(pipelining=True) as srv:   # EHLO offers PIPELINING (RFC 2920)
        srv.after_mail                  # per MAIL command, the bytes already received behind
                                        # it (b"RCPT TO:<a@b>\r\nDATA\r\n" when pipelined)

`pipelining` defaults to `SMTPServer.PIPELINING` (False, as aiosmtpd itself): a test module can
run every server it starts both ways with `monkeypatch.setattr(SMTPServer, "PIPELINING", on)`
(tests/mail/conftest.py `pipelining` fixture). aiosmtpd reads one command line at a time, so
pipelined commands just work; only the EHLO keyword is added.

Faults (each counts down across the whole server, not per connection):
    rcpt_4xx=n       answer `451 4.3.0` to the first n RCPT commands
    data_4xx=n       answer `451 4.3.0` to the first n DATA transactions (message not kept)
    reject={addr}    answer `550 5.1.1` at RCPT for these recipients, always
    reject_reply=r   the reply `reject` gives (default "550 5.1.1 mailbox unavailable")
    rcpt_refuse=r    answer r (e.g. "554 5.7.1 Relay access denied") to every RCPT while set:
                     a relay that refuses everyone; set srv.faults.rcpt_refuse = "" to fix it.
                     `{sender}` and `{rcpt}` in r (and in reject_reply) become the MAIL FROM
                     and RCPT TO addresses (Postfix: "<{sender}>: Sender address rejected")
    rcpt_refuse_after=n  accept n RCPTs before rcpt_refuse applies (a relay that starts
                     refusing mid-run: a sending quota used up)
    data_refuse=r    answer r to every DATA while set (message not kept); `{sender}`, `{rcpt}`
                     and `{n}` (this DATA's number, from 1) are filled in
    data_refuse_after=n  keep n messages before data_refuse applies
    drop_data=n      close the connection after receiving DATA, before keeping it, n times
    drop_after_data=n keep the message, then close without replying (the ambiguous case)
    data_delay=s      wait s seconds before answering each DATA (a slow server; not counted)
The counters left are readable as `srv.faults`; `srv.attempts` counts DATA transactions.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import email
import email.policy
import ipaddress
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Faults:
    rcpt_4xx: int = 0
    data_4xx: int = 0
    reject: set[str] = field(default_factory=set)
    drop_data: int = 0
    drop_after_data: int = 0
    reject_reply: str = "550 5.1.1 mailbox unavailable"
    rcpt_refuse: str = ""
    data_delay: float = 0.0  # seconds before answering DATA: a slow server (each message)
    rcpt_refuse_after: int = 0  # RCPTs accepted before rcpt_refuse applies (counts down)
    data_refuse: str = ""  # the reply to every DATA while set ({sender}, {rcpt}, {n})
    data_refuse_after: int = 0  # messages kept before data_refuse applies (counts down)


def _fill(reply: str, sender: str = "", rcpt: str = "", n: int = 0) -> str:
    return reply.replace("{sender}", sender).replace("{rcpt}", rcpt).replace("{n}", str(n))


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    authenticated_as: str | None = None
    tls: bool = False
    peer: tuple | None = None  # client (host, port): one per connection
    helo: str | None = None  # the name the client gave in EHLO/HELO

    def parsed(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def make_self_signed(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """Write cert.pem and key.pem (SAN: the IP, localhost) into `directory`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "digest-test")])
    now = _dt.datetime.now(_dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return certfile, keyfile


class _Handler:
    def __init__(self, server: SMTPServer) -> None:
        self.srv = server

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: ANN001
        # aiosmtpd's new-style hook: it leaves host_name to us and sends what we return
        session.host_name = hostname
        if self.srv.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: ANN001
        # what the client sent behind MAIL before hearing its reply (aiosmtpd's StreamReader)
        with self.srv.lock:
            self.srv.after_mail.append(bytes(getattr(server._reader, "_buffer", b"")))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001
        f = self.srv.faults
        with self.srv.lock:
            if f.rcpt_refuse and f.rcpt_refuse_after > 0:
                f.rcpt_refuse_after -= 1
            elif f.rcpt_refuse:
                return _fill(f.rcpt_refuse, envelope.mail_from or "", address)
            if address.lower() in {a.lower() for a in f.reject}:
                return _fill(f.reject_reply, envelope.mail_from or "", address)
            if f.rcpt_4xx > 0:
                f.rcpt_4xx -= 1
                return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        f = self.srv.faults
        if f.data_delay > 0:
            await asyncio.sleep(f.data_delay)
        auth = getattr(session, "auth_data", None)
        rec = Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content),
                       auth.login.decode() if isinstance(auth, LoginPassword) else None,
                       bool(session.ssl), tuple(session.peer) if session.peer else None,
                       session.host_name)
        with self.srv.lock:
            self.srv.attempts += 1
            if f.data_refuse and f.data_refuse_after > 0:
                f.data_refuse_after -= 1
            elif f.data_refuse:
                return _fill(f.data_refuse, envelope.mail_from or "",
                             ",".join(envelope.rcpt_tos), self.srv.attempts)
            if f.data_4xx > 0:
                f.data_4xx -= 1
                return "451 4.3.0 try again later"
            if f.drop_data > 0:
                f.drop_data -= 1
                server.transport.close()
                return "421 4.3.0 closing"  # never reaches the client
            keep_then_drop = f.drop_after_data > 0
            if keep_then_drop:
                f.drop_after_data -= 1
            self.srv.messages.append(rec)
            self.srv.arrived.notify_all()
        if keep_then_drop:
            server.transport.close()
            return "421 4.3.0 closing"
        return "250 2.0.0 queued"


class SMTPServer:
    """aiosmtpd Controller on 127.0.0.1 with a free port; see the module docstring."""

    PIPELINING = False  # what `pipelining=None` means; tests may patch it

    def __init__(self, *, faults: Faults | None = None, tls: bool = False,
                 auth: dict[str, str] | None = None, host: str = "127.0.0.1",
                 pipelining: bool | None = None) -> None:
        self.host, self.port = host, free_port(host)
        self.pipelining = self.PIPELINING if pipelining is None else pipelining
        self.faults = faults or Faults()
        self.messages: list[Received] = []
        self.after_mail: list[bytes] = []
        self.attempts = 0
        self.lock = threading.RLock()
        self.arrived = threading.Condition(self.lock)
        self.auth = auth
        self.tls = tls
        self.cafile: Path | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        kwargs: dict = {}
        if tls:
            self._tmp = tempfile.TemporaryDirectory(prefix="smtp-tls-")
            certfile, keyfile = make_self_signed(Path(self._tmp.name), host)
            self.cafile = certfile
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(certfile, keyfile)
            kwargs.update(tls_context=ctx, require_starttls=True)
        if auth is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          auth_require_tls=tls)
        self.controller = Controller(_Handler(self), hostname=host, port=self.port, **kwargs)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):  # noqa: ANN001
        ok = (isinstance(auth_data, LoginPassword) and self.auth is not None
              and self.auth.get(auth_data.login.decode()) == auth_data.password.decode())
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def tls_client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile))

    def start(self) -> SMTPServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> SMTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Received]:
        """Block until at least `n` messages were kept; returns them (raises on timeout)."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"expected {n} messages, got {len(self.messages)}")
                self.arrived.wait(left)
            return list(self.messages)

    def parsed(self) -> list[email.message.EmailMessage]:
        with self.lock:
            return [m.parsed() for m in self.messages]

    def by_recipient(self) -> dict[str, list[email.message.EmailMessage]]:
        out: dict[str, list[email.message.EmailMessage]] = {}
        with self.lock:
            for m in self.messages:
                for r in m.rcpt_tos:
                    out.setdefault(r.lower(), []).append(m.parsed())
        return out
