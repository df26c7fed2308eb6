"""One SMTP transaction on the wire: address and DATA encoding, MAIL/RCPT/DATA (one command at
a time on aiosmtplib's protocol, or pipelined on our own: `Pipe`), refusal stages."""

from __future__ import annotations

import asyncio
import re

import aiosmtplib
from aiosmtplib.response import SMTPResponse

from digest.mail.refusals import Refusal, looks_like_policy
from digest.mail.transports.base import Outcome

# An address we may put between <> on MAIL/RCPT as it is: printable ASCII, one @, none of
# the characters that need quoting or could smuggle ESMTP parameters. Anything else takes
# aiosmtplib's own sendmail (parseaddr + its injection check), as before.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+\Z")


def plain_address(address: str) -> bytes | None:
    """`a@b.org` → b"<a@b.org>" for the fast path, or None when it needs full parsing."""
    return f"<{address}>".encode("ascii") if _PLAIN_ADDRESS.match(address) else None


def wire_data(data: bytes, ready: bool = False) -> bytes:
    """Message bytes → the DATA payload: CRLF line ends, a final CRLF, leading dots doubled,
    then the `.` line; byte for byte what aiosmtplib sends, minus its two regex passes.

    `ready` (Envelope.wire_ready) skips the scans; other input is counted (fast C scans,
    no copy when already clean) and fixed by the same rules as aiosmtplib's."""
    if ready:
        return data + b".\r\n"
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        data = re.sub(rb"(?:\r\n|\n|\r(?!\n))", b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b".") or b"\r\n." in data:
        data = (b"\r\n" + data).replace(b"\r\n.", b"\r\n..")[2:]
    return data + b".\r\n"


async def hello(client: aiosmtplib.SMTP) -> None:
    """EHLO (HELO if refused) unless this session already said it, as `sendmail` does."""
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            if not client.is_connected:
                raise
            await client.helo()


async def _transact(client: aiosmtplib.SMTP, sender: str, mail_from: bytes, recipient: str,
                    rcpt_to: bytes, payload: bytes) -> None:
    """MAIL, RCPT, DATA on a connected client, raising aiosmtplib's own exceptions the way
    its `sendmail` does (so `_send_one` classifies them alike), but without re-parsing the
    addresses and re-scanning the ~44 KB message (28 % of send time in the profile).

    `payload` comes from `wire_data`; the slot owns this client, so no command interleaves
    between writing the payload and reading its reply. Servers without PIPELINING only."""
    await hello(client)
    opts = [b"SIZE=%d" % (len(payload) - 3)] if client.supports_extension("size") else []
    try:
        r = await client.execute_command(b"MAIL", b"FROM:" + mail_from, *opts)
        if r.code != 250:
            raise aiosmtplib.SMTPSenderRefused(r.code, r.message, sender)
        r = await client.execute_command(b"RCPT", b"TO:" + rcpt_to)
        if r.code not in (250, 251):
            raise aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(r.code, r.message, recipient)])
        r = await client.execute_command(b"DATA")
        if r.code != 354:
            raise aiosmtplib.SMTPDataError(r.code, r.message)
        protocol = client.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        try:
            protocol.write(payload)
            r = await protocol.read_response(timeout=client.timeout)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            client.close()  # a half-read reply would pair with the next command
            raise
        if r.code != 250:
            raise aiosmtplib.SMTPDataError(r.code, r.message)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        try:  # reset the envelope for the next attempt, as sendmail does
            await client.rset()
        except (ConnectionError, aiosmtplib.SMTPResponseException):
            pass
        raise


# A whole reply (continuation lines included) may not be longer: aiosmtplib's own bound.
_MAX_REPLY = 8192 * 4


class Pipe(asyncio.Protocol):
    """MAIL, RCPT and DATA in one write (RFC 2920 PIPELINING), then the payload: two round
    trips a message instead of four, on a connection aiosmtplib opened and greeted (connect,
    EHLO, STARTTLS, AUTH stay its own). It takes the transport over (`set_protocol`) because
    aiosmtplib's protocol drops replies that arrive before `read_response` is awaited.

    Replies map to aiosmtplib's exceptions exactly as `_transact` raises them, in command
    order: 5xx/4xx at MAIL → SMTPSenderRefused, at RCPT → SMTPRecipientsRefused, at DATA or
    after the payload → SMTPDataError; a connection lost (or the server silent for `timeout`
    seconds: one watchdog per connection, not a timer per command) → SMTPServerDisconnected /
    SMTPReadTimeoutError after the replies that did arrive were judged. After a refusal the
    server answered DATA with 503/554 and the payload is never sent (a server that says 354
    anyway gets an empty message's `.`, RFC 2920 section 3.1); RSET then clears the envelope
    so the connection carries the next message. A 421 closes the connection, as aiosmtplib
    does."""

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        transport = client.transport
        if transport is None or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self.client = client
        self.transport = transport
        self.timeout = client.timeout
        self.size = client.supports_extension("size")
        self._loop = asyncio.get_running_loop()
        self._buf = bytearray()
        self._replies: list[SMTPResponse] = []
        self._want = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: Exception | None = None
        self._busy = False  # a transaction waits for replies: the watchdog counts
        self._heard = 0.0  # loop time of the transaction's start or of the last bytes
        self._watchdog: asyncio.TimerHandle | None = None
        transport.set_protocol(self)

    # --- asyncio.Protocol -------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._heard = self._loop.time()
        buf = self._buf
        buf += data
        if b"\n" in data:
            self._parse()
        if len(buf) > _MAX_REPLY:
            self._fail(aiosmtplib.SMTPResponseException(-1, "Response too long"))
            return
        w = self._waiter
        if w is not None and len(self._replies) >= self._want and not w.done():
            w.set_result(None)

    def eof_received(self) -> bool:
        self._fail(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        err = aiosmtplib.SMTPServerDisconnected("Connection lost")
        err.__cause__ = exc
        self._fail(err)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    # --- replies ------------------------------------------------------------------------------

    def _parse(self) -> None:
        """Every complete reply in the buffer onto `_replies`, as aiosmtplib parses one."""
        buf, pos, start, lines = self._buf, 0, 0, []
        while (nl := buf.find(b"\n", pos)) >= 0:
            line = bytes(buf[pos:nl + 1])
            pos = nl + 1
            try:
                code = int(line[:3])
            except ValueError:
                text = line.decode("utf-8", errors="ignore")
                self._fail(aiosmtplib.SMTPResponseException(
                    -1, f"Malformed SMTP response line: {text}"))
                return
            lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":
                self._replies.append(SMTPResponse(
                    code, b"\n".join(lines).decode("utf-8", "surrogateescape")))
                lines, start = [], pos
        if start:
            del buf[:start]

    def _fail(self, err: Exception) -> None:
        """The connection is unusable from here on: wake the reader; close it."""
        if self._error is None:
            self._error = err
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
        if not self.transport.is_closing():
            self.transport.close()

    def _watch(self) -> None:
        self._watchdog = None
        if not self._busy or self._error is not None:
            return  # idle: the next transaction arms it again
        idle = self._loop.time() - self._heard
        if idle < self.timeout:
            self._watchdog = self._loop.call_later(self.timeout - idle, self._watch)
            return
        self._fail(aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"))

    async def _read(self, n: int) -> list[SMTPResponse]:
        """The next `n` replies, or fewer when the connection failed first (`_error`)."""
        if len(self._replies) < n and self._error is None:
            self._want = n
            self._waiter = w = self._loop.create_future()
            try:
                await w
            finally:
                self._waiter = None
        got = self._replies[:n]
        del self._replies[:n]
        return got

    @property
    def usable(self) -> bool:
        """Nothing failed and the server said nothing out of turn (a stray reply would pair
        with the next command)."""
        return self._error is None and not self._replies and not self.transport.is_closing()

    def detach(self) -> None:
        """Give the connection back to aiosmtplib (for `sendmail`), or close it if unusable."""
        if self.usable:
            self.transport.set_protocol(self.client.protocol)  # type: ignore[arg-type]
        else:
            self.transport.close()

    # --- one message --------------------------------------------------------------------------

    async def send(self, sender: str, mail_from: bytes, recipient: str, rcpt_to: bytes,
                   payload: bytes) -> None:
        """One message (`payload` from `wire_data`); raises what `_transact` raises."""
        if not self.usable:
            raise self._error or aiosmtplib.SMTPServerDisconnected("Connection lost")
        size = b" SIZE=%d" % (len(payload) - 3) if self.size else b""
        self._busy = True
        if self.timeout:
            self._heard = self._loop.time()
            if self._watchdog is None:
                self._watchdog = self._loop.call_later(self.timeout, self._watch)
        try:
            self.transport.write(b"MAIL FROM:%s%s\r\nRCPT TO:%s\r\nDATA\r\n"
                                 % (mail_from, size, rcpt_to))
            got = await self._read(3)
            n = len(got)
            if n and got[0].code != 250:
                await self._reset(got, group=True)
                raise aiosmtplib.SMTPSenderRefused(got[0].code, got[0].message, sender)
            if n > 1 and got[1].code not in (250, 251):
                await self._reset(got, group=True)
                raise aiosmtplib.SMTPRecipientsRefused(
                    [aiosmtplib.SMTPRecipientRefused(got[1].code, got[1].message, recipient)])
            if n > 2 and got[2].code != 354:
                await self._reset(got, group=True)
                raise aiosmtplib.SMTPDataError(got[2].code, got[2].message)
            if n < 3:
                raise self._error or aiosmtplib.SMTPServerDisconnected("Connection lost")
            self.transport.write(payload)
            got = await self._read(1)
            if not got:
                raise self._error or aiosmtplib.SMTPServerDisconnected("Connection lost")
            if got[0].code != 250:
                await self._reset(got, group=False)
                raise aiosmtplib.SMTPDataError(got[0].code, got[0].message)
        finally:
            self._busy = False

    async def _reset(self, got: list[SMTPResponse], group: bool) -> None:
        """After a refusal: RSET (its reply ignored, as `sendmail` ignores it), ending an
        accepted DATA with `.` first; a 421 closes the connection instead."""
        if self._error is not None:
            return
        if any(r.code == 421 for r in got):
            self.transport.close()
            return
        dot = group and len(got) == 3 and got[2].code == 354
        self.transport.write(b".\r\nRSET\r\n" if dot else b"RSET\r\n")
        await self._read(2 if dot else 1)


def _rcpt_refused(recipient: str, code: int, message: str, attempt: int) -> Outcome:
    """A 5xx at RCPT: a bounce, unless it reads as the relay's policy (X.7.x, 530, relay,
    auth, our sender, the account's quota): then a failure a later run retries, never a
    bounce (the transport may still find it the relay's session refusal)."""
    state = "failed" if looks_like_policy(code, message, "RCPT") else "bounced"
    return Outcome(recipient, state, f"{code} {message}", attempt,
                   refused=Refusal("RCPT", code, message))


class _Fatal(Exception):
    """Every remaining message would fail the same way (bad password, no server)."""


class _Refused(Exception):
    """The relay refused the session (5xx at connect, EHLO, STARTTLS, AUTH or MAIL FROM)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reply)
        self.refusal = refusal


def _stage_of(e: aiosmtplib.SMTPResponseException) -> str:
    if isinstance(e, aiosmtplib.SMTPConnectResponseError):
        return "connect"
    if isinstance(e, aiosmtplib.SMTPHeloError):
        return "EHLO"
    if isinstance(e, aiosmtplib.SMTPAuthenticationError):
        return "AUTH"
    if isinstance(e, aiosmtplib.SMTPSenderRefused):
        return "MAIL"
    return "STARTTLS"  # the one other command connect() sends

