"""A fault-injecting SMTP server for the hardening tests: tests/smtp_server.py's real aiosmtpd
on 127.0.0.1, wrapped (not edited) with faults at every stage of a transaction.

    from tests.support.faults import FaultServer, More
    from tests.support.smtp_server import Faults

    with FaultServer(more=More(greet_421=2, drop_at="rcpt", drops=1)) as srv:
        ...                                     # everything SMTPServer offers, plus:
        srv.events                              # list of (stage, action) faults that fired

More (each counter counts down across the whole server, like Faults):
    greet_421=n        answer `421 4.3.2` instead of the 220 greeting, then close (n connections)
    drop_at=STAGE, drops=n   close the connection without a reply when STAGE arrives:
                       "ehlo" (just after the greeting), "mail", "rcpt", "data" (the DATA
                       command, before 354); for "during DATA, message not kept" and
                       "after DATA, before the reply, message kept" use Faults(drop_data=n)
                       and Faults(drop_after_data=n) of smtp_server
    stall_at=STAGE, stalls=n, stall_seconds=s   wait s seconds before answering STAGE:
                       "greeting", "rcpt" (message not kept: the client gave up first) or
                       "data" (kept, then the reply comes too late: the ambiguous case)
    starttls_454=n     answer `454 4.7.0` to STARTTLS n times (needs tls=True)
    data_delay=s       every accepted message waits s seconds before `250` (a slow server,
                       well inside the client timeout; widens kill windows)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from tests.support.smtp_server import Faults, SMTPServer, _Handler

STAGES = ("greeting", "ehlo", "mail", "rcpt", "data")


@dataclass
class More:
    greet_421: int = 0
    drop_at: str = ""
    drops: int = 0
    stall_at: str = ""
    stalls: int = 0
    stall_seconds: float = 0.0
    starttls_454: int = 0
    data_delay: float = 0.0

    def __post_init__(self) -> None:
        assert self.drop_at in ("",) + STAGES[1:], self.drop_at
        assert self.stall_at in ("", "greeting", "rcpt", "data"), self.stall_at


class _FaultSMTP(SMTP):
    """aiosmtpd's protocol with the greeting, EHLO, DATA command and STARTTLS hookable."""

    def __init__(self, srv: FaultServer, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fault_srv = srv

    async def _handle_client(self) -> None:
        if self.fault_srv.take("greeting", "421"):
            await self.push("421 4.3.2 service not available, closing")
            self.transport.close()
            return
        if self.fault_srv.take("greeting", "stall"):
            await asyncio.sleep(self.fault_srv.more.stall_seconds)
        await super()._handle_client()

    async def smtp_EHLO(self, hostname: str) -> None:
        if self.fault_srv.take("ehlo", "drop"):
            self.transport.close()
            return
        await super().smtp_EHLO(hostname)

    async def smtp_DATA(self, arg: str) -> None:
        if self.fault_srv.take("data", "drop"):
            self.transport.close()
            return
        await super().smtp_DATA(arg)

    async def smtp_STARTTLS(self, arg: str) -> None:
        if self.fault_srv.take("starttls", "454"):
            await self.push("454 4.7.0 TLS not available due to temporary reason")
            return
        await super().smtp_STARTTLS(arg)


class _FaultHandler(_Handler):
    """smtp_server's handler (Faults: 451s, 550s, drops around DATA) plus MAIL/RCPT faults,
    a stall before the DATA reply and a steady per-message delay."""

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: ANN001
        if self.srv.take("mail", "drop"):
            server.transport.close()
            return "421 4.3.0 closing"  # never reaches the client
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001
        if self.srv.take("rcpt", "drop"):
            server.transport.close()
            return "421 4.3.0 closing"
        if self.srv.take("rcpt", "stall"):
            await asyncio.sleep(self.srv.more.stall_seconds)
            return "451 4.3.0 too late"  # the client has given up by now
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        reply = await super().handle_DATA(server, session, envelope)
        if reply.startswith("250"):
            if self.srv.take("data", "stall"):
                await asyncio.sleep(self.srv.more.stall_seconds)  # kept, but answered too late
            elif self.srv.more.data_delay:
                await asyncio.sleep(self.srv.more.data_delay)
        return reply


class FaultServer(SMTPServer):
    """SMTPServer with `More` faults; the Controller is rebuilt with the same settings."""

    def __init__(self, *, faults: Faults | None = None, more: More | None = None,
                 tls: bool = False, auth: dict[str, str] | None = None,
                 host: str = "127.0.0.1") -> None:
        super().__init__(faults=faults, tls=tls, auth=auth, host=host)
        self.more = more or More()
        self.events: list[tuple[str, str]] = []
        plain = self.controller
        srv = self

        class _Controller(Controller):
            def factory(self) -> SMTP:
                return _FaultSMTP(srv, self.handler, **self.SMTP_kwargs)

        self.controller = _Controller(_FaultHandler(self), hostname=plain.hostname,
                                      port=plain.port, **plain.SMTP_kwargs)

    def take(self, stage: str, action: str) -> bool:
        """Consume one fault of `action` at `stage` if any is left; record it."""
        m = self.more
        with self.lock:
            if action == "421" and stage == "greeting" and m.greet_421 > 0:
                m.greet_421 -= 1
            elif action == "drop" and m.drop_at == stage and m.drops > 0:
                m.drops -= 1
            elif action == "stall" and m.stall_at == stage and m.stalls > 0:
                m.stalls -= 1
            elif action == "454" and stage == "starttls" and m.starttls_454 > 0:
                m.starttls_454 -= 1
            else:
                return False
            self.events.append((stage, action))
            return True

    def message_ids(self) -> dict[str, list[str]]:
        """Recipient → the Message-IDs of every copy it was given (in arrival order)."""
        out: dict[str, list[str]] = {}
        with self.lock:
            for rec in self.messages:
                mid = rec.parsed()["Message-ID"]
                for r in rec.rcpt_tos:
                    out.setdefault(r.lower(), []).append(mid)
        return out
