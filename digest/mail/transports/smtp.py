"""The SMTP transport (owns aiosmtplib): a connection pool with retries, rate limit,
per-recipient outcomes and the relay's session refusals."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Sequence

import aiosmtplib

from digest.config import SmtpConfig
from digest.errors import DeliveryError
from digest.mail.refusals import (
    SAME_REFUSALS,
    Refusal,
    all_the_same,
    describe,
    looks_like_policy,
    recipient_specific,
    reply_key,
)
from digest.mail.transports.base import Envelope, OnOutcome, Outcome, Transport
from digest.mail.transports.commands import (
    Pipe,
    _Fatal,
    _rcpt_refused,
    _Refused,
    _stage_of,
    _transact,
    hello,
    plain_address,
    wire_data,
)

log = logging.getLogger("digest.mail.transports")


def _loop_factory():  # noqa: ANN202 - a loop constructor, or None for asyncio's own
    """uvloop's event loop (a dependency wherever it has a build, i.e. not Windows): about half
    the transport's CPU per pipelined message (~80 → ~45 µs to smtp-sink); else asyncio's.
    DIGEST_EVENT_LOOP=asyncio picks asyncio's own where uvloop is installed (a suspected
    uvloop problem; the tests run the pool on both)."""
    if os.environ.get("DIGEST_EVENT_LOOP", "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


class SmtpTransport(Transport):
    """A pool of `pool_size` reused aiosmtplib connections with bounded retries.

    4xx replies and dropped connections are retried with exponential backoff and jitter.
    A 5xx at connect, EHLO, STARTTLS, AUTH or MAIL FROM refuses the session: `refusal` is
    set and every message fails with `session` (retryable, nobody bounced). A 5xx at RCPT
    about the mailbox (refusals.recipient_specific) is a bounce; one that reads as the
    relay's policy (5.7.x, 530, relay, auth, sender, quota) is never a bounce but a
    retryable failure, and SAME_REFUSALS of them alike in a row, nothing accepted in between,
    refuse the session even after earlier acceptances. Other RCPT 5xx (`550 mailbox
    unavailable`) are bounces, unless every recipient of the batch, with nothing accepted,
    was refused alike. A 5xx at DATA fails that message for good (`permanent`), unless
    SAME_REFUSALS alike in a row (before the first delivery, or reading as policy after it)
    or every message of the batch with nothing delivered was refused alike (the session is
    refused); a policy-looking one with nothing delivered is retryable. Refusals whose
    verdict depends on what follows are held back until that is known.
    The EHLO name is `[smtp] helo`, else the sender's domain (SmtpConfig.ehlo_name).

    A server that offers PIPELINING gets MAIL, RCPT and DATA in one write (commands.Pipe:
    two round trips a message, the same replies mapped to the same outcomes); `pipelining=
    False` keeps one command at a time. With uvloop importable (not on Windows) the pool
    runs on its event loop.

    The loop runs on one background thread, started by the first `submit` and stopped
    (joined) by `close`: `submit` returns at once with a Future, so the caller can build the
    next batch while this one is on the wire (`on_outcome` is then called on that thread);
    `send` is `submit(...).result()`. Batches submitted together are sent one after the other.
    """

    def __init__(self, cfg: SmtpConfig, password: str | None = None, *,
                 tls_context: ssl.SSLContext | None = None, backoff: float = 0.5,
                 max_backoff: float = 30.0, pipelining: bool = True) -> None:
        if cfg.security not in ("none", "starttls", "tls"):
            raise DeliveryError(f"[smtp] security: unknown value {cfg.security!r}",
                                'use "none", "starttls" or "tls"')
        self.cfg = cfg
        self.password = password
        self.tls_context = tls_context
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.pipelining = pipelining
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._busy: asyncio.Lock | None = None  # one batch on the connections at a time
        self._clients: list[aiosmtplib.SMTP | None] = [None] * max(1, cfg.pool_size)
        # Per slot, the pipelined data phase on that client's connection, once it is known
        # that the server offers PIPELINING.
        self._pipes: list[Pipe | None] = [None] * len(self._clients)
        self._fatal: str | None = None
        self.refusal: Refusal | None = None
        self._rcpt_ok = False  # a RCPT was accepted: refusals since are the recipients'
        self._delivered = False  # a DATA was accepted
        # Acceptances so far (RCPT, DATA): a held refusal is decided once one follows it.
        self._epochs = {"RCPT": 0, "DATA": 0}
        # Alike refusals that count toward the relay's refusal, in a row since the last
        # acceptance at their stage, by (stage, reply key); kept across batches.
        self._runs: dict[tuple[str, str], int] = {}
        self._next_slot = 0.0
        self._rate_lock: asyncio.Lock | None = None

    # --- connections ----------------------------------------------------------------------

    def _new_client(self) -> aiosmtplib.SMTP:
        c = self.cfg
        return aiosmtplib.SMTP(
            hostname=c.host, port=c.port, timeout=c.timeout,
            use_tls=c.security == "tls",
            # "none" must not upgrade opportunistically: aiosmtplib would otherwise try
            # STARTTLS whenever the server offers it and fail on an unverifiable cert.
            start_tls=c.security == "starttls",
            username=c.username or None,
            password=self.password if c.username else None,
            tls_context=self.tls_context,
            local_hostname=c.ehlo_name(),
        )

    async def _client(self, slot: int) -> aiosmtplib.SMTP:
        client = self._clients[slot]
        if client is not None and client.is_connected:
            pipe = self._pipes[slot]
            if pipe is None or pipe.usable:
                return client
            await self._drop(slot)  # lost, or a stray reply would pair with our next command
        client = self._new_client()
        try:
            await client.connect()
        except aiosmtplib.SMTPAuthenticationError as e:  # any code: retrying would hammer
            raise _Refused(Refusal("AUTH", e.code, e.message)) from e
        except aiosmtplib.SMTPResponseException as e:
            if e.code >= 500:
                raise _Refused(Refusal(_stage_of(e), e.code, e.message)) from e
            raise
        self._clients[slot] = client
        return client

    async def _drop(self, slot: int) -> None:
        client, self._clients[slot] = self._clients[slot], None
        self._pipes[slot] = None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a broken socket may raise anything
                pass

    async def _throttle(self) -> None:
        if self.cfg.rate_limit <= 0:
            return
        if self._rate_lock is None:
            self._rate_lock = asyncio.Lock()
        async with self._rate_lock:
            now = time.monotonic()
            wait = self._next_slot - now
            self._next_slot = max(now, self._next_slot) + 1.0 / self.cfg.rate_limit
        if wait > 0:
            await asyncio.sleep(wait)

    # --- one message --------------------------------------------------------------------

    async def _send_one(self, slot: int, env: Envelope) -> Outcome:
        attempt, ambiguous = 0, False
        # Parsed and scanned once per message, not once per attempt and command.
        mail_from, rcpt_to = plain_address(env.sender), plain_address(env.recipient)
        payload = wire_data(env.data, env.wire_ready) if mail_from and rcpt_to else b""
        while True:
            attempt += 1
            if self._fatal:
                return Outcome(env.recipient, "failed", self._fatal, attempt - 1,
                               session=self.refusal is not None, refused=self.refusal)
            if self.cfg.rate_limit > 0:
                await self._throttle()
            sent_data = False
            try:
                client = await self._client(slot)
                sent_data = True
                pipe = self._pipes[slot]
                if payload:
                    if pipe is None and self.pipelining:
                        await hello(client)
                        if client.supports_extension("pipelining"):
                            pipe = self._pipes[slot] = Pipe(client)
                    if pipe is not None:
                        await pipe.send(env.sender, mail_from, env.recipient, rcpt_to, payload)
                    else:
                        await _transact(client, env.sender, mail_from, env.recipient,
                                        rcpt_to, payload)
                    self._accepted(delivered=True)
                    return Outcome(env.recipient, "sent", "", attempt, ambiguous)
                if pipe is not None:  # aiosmtplib's own sendmail needs its protocol back
                    self._pipes[slot] = None
                    pipe.detach()
                errors, _ = await client.sendmail(env.sender, [env.recipient], env.data)
                if env.recipient in errors:  # only with several recipients; kept for safety
                    code, msg = errors[env.recipient].code, errors[env.recipient].message
                    if code >= 500:
                        return _rcpt_refused(env.recipient, code, msg, attempt)
                    reason = f"{code} {msg}"
                else:
                    self._accepted(delivered=True)
                    return Outcome(env.recipient, "sent", "", attempt, ambiguous)
            except _Fatal as e:
                self._fatal = str(e)
                return Outcome(env.recipient, "failed", self._fatal, attempt)
            except _Refused as e:
                self._refuse(e.refusal)
                return Outcome(env.recipient, "failed", str(self._fatal), attempt,
                               session=True, refused=e.refusal)
            except aiosmtplib.SMTPRecipientsRefused as e:
                r = e.recipients[0]
                if r.code >= 500:
                    return _rcpt_refused(env.recipient, r.code, r.message, attempt)
                reason = f"{r.code} {r.message}"
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError,
                    aiosmtplib.SMTPConnectError, ConnectionError, OSError) as e:
                await self._drop(slot)
                reason = f"connection: {e}"
                if sent_data:
                    # The server may have taken DATA before the line dropped: the resend
                    # carries the same Message-ID, so the duplicate is recognisable.
                    ambiguous = True
                elif attempt > self.cfg.retries:
                    self._fatal = f"cannot reach {self.cfg.host}:{self.cfg.port}: {e}"
            except aiosmtplib.SMTPResponseException as e:
                if isinstance(e, aiosmtplib.SMTPDataError):
                    self._accepted(delivered=False)  # DATA comes after an accepted RCPT
                if e.code >= 500 and isinstance(e, aiosmtplib.SMTPSenderRefused
                                                | aiosmtplib.SMTPHeloError):
                    self._refuse(Refusal(_stage_of(e), e.code, e.message))
                    return Outcome(env.recipient, "failed", str(self._fatal), attempt,
                                   session=True, refused=self.refusal)
                if e.code >= 500:
                    stage = "DATA" if isinstance(e, aiosmtplib.SMTPDataError) else "other"
                    return Outcome(env.recipient, "failed", f"{e.code} {e.message}", attempt,
                                   permanent=True, refused=Refusal(stage, e.code, e.message))
                reason = f"{e.code} {e.message}"
                if e.code == 421:  # the server is closing this connection
                    await self._drop(slot)
            except aiosmtplib.SMTPException as e:
                return Outcome(env.recipient, "failed", f"smtp: {e}", attempt)
            if attempt > self.cfg.retries:
                return Outcome(env.recipient, "failed",
                               f"{reason} (gave up after {attempt} attempts)", attempt,
                               ambiguous)
            delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            log.info("retrying %s in %.2fs: %s", env.recipient, delay, reason)
            await asyncio.sleep(delay * (1 + random.random() / 2))

    # --- the relay's refusal or the recipients' ---------------------------------------------

    def _refuse(self, refusal: Refusal) -> None:
        """The relay refused the session: every message from now on fails at once."""
        if self.refusal is None:
            self.refusal = refusal
            self._fatal = describe(refusal, self.cfg.username)
            log.error("%s", self._fatal)

    def _accepted(self, delivered: bool) -> None:
        """A RCPT was accepted (and with `delivered`, a DATA too): runs of alike refusals
        at that stage end; refusals held before it are decided."""
        self._rcpt_ok = True
        self._epochs["RCPT"] += 1
        if delivered:
            self._delivered = True
            self._epochs["DATA"] += 1
        if self._runs:
            stages = ("RCPT", "DATA") if delivered else ("RCPT",)
            self._runs = {k: n for k, n in self._runs.items() if k[0] not in stages}

    def _holds(self, r: Refusal) -> bool:
        """A 5xx that may be the relay's rather than this recipient's or message's: its
        verdict waits for the next acceptance or the end of the batch. Policy-looking ones
        always wait (a relay may start refusing after it accepted some); the others only
        while nothing was accepted at their stage. A refusal about the mailbox never waits."""
        if self.refusal is not None:
            return False
        policy = looks_like_policy(r.code, r.message, r.stage)
        if r.stage == "RCPT":
            return not recipient_specific(r.code, r.message) and (policy or not self._rcpt_ok)
        return r.stage == "DATA" and (policy or not self._delivered)

    def _counts(self, r: Refusal) -> bool:
        """Whether a held refusal counts toward SAME_REFUSALS alike in a row: at RCPT only
        one that reads as policy (three dead mailboxes are three bounces); at DATA any
        before the first delivery, a policy-looking one after."""
        policy = looks_like_policy(r.code, r.message, r.stage)
        if r.stage == "RCPT":
            return policy and not recipient_specific(r.code, r.message)
        return policy or not self._delivered

    def _verdict(self, out: Outcome, answered: bool) -> Outcome:
        """What a held refusal is, once it is not the relay's session refusal: a policy-
        looking RCPT refusal fails, retryable (Outcome from _rcpt_refused); a DATA refusal is
        final, unless it reads as policy and nothing was delivered since (`answered`: a
        delivery followed it), in the run or after it: then a later run retries it."""
        if self.refusal is not None:
            return self._as_session(out)
        r = out.refused
        if r is not None and r.stage == "DATA" and out.permanent and not answered \
                and looks_like_policy(r.code, r.message, "DATA"):
            return Outcome(out.recipient, "failed", out.reason, out.attempts, out.ambiguous,
                           permanent=False, refused=r)
        return out

    def _as_session(self, out: Outcome) -> Outcome:
        assert self.refusal is not None
        return Outcome(out.recipient, "failed", str(self._fatal), out.attempts,
                       session=True, refused=self.refusal)

    async def _send_all(self, envelopes: Sequence[Envelope], on_outcome: OnOutcome | None
                        ) -> list[Outcome]:
        results: list[Outcome | None] = [None] * len(envelopes)
        # The next message for whichever connection is free: one iterator shared by the
        # workers (no await between taking and sending, so none is taken twice).
        todo = iter(range(len(envelopes)))
        # Refusals whose verdict waits, not yet reported: (index, outcome, acceptances at
        # its stage when it was held).
        held: list[tuple[int, Outcome, int]] = []

        def report(i: int, out: Outcome) -> None:
            results[i] = out
            if on_outcome is not None:
                on_outcome(i, out)

        def settle() -> None:
            """Report held refusals once it is known whose they are: the session was
            refused, or something was accepted at their stage since."""
            if not held:
                return
            for item in list(held):
                i, out, epoch = item
                assert out.refused is not None
                if self.refusal is not None or self._epochs[out.refused.stage] != epoch:
                    held.remove(item)
                    report(i, self._verdict(out, answered=True))

        def judge(i: int, out: Outcome) -> None:
            r = out.refused
            if self.refusal is not None and out.state != "sent" and not out.session:
                out = self._as_session(out)  # in flight when the session was refused
            if r is None or out.session or not self._holds(r):
                report(i, out)
                settle()
                return
            held.append((i, out, self._epochs[r.stage]))
            if self._counts(r):
                run = (r.stage, reply_key(r.code, r.message, out.recipient))
                self._runs[run] = self._runs.get(run, 0) + 1
                if self._runs[run] >= SAME_REFUSALS:
                    self._refuse(r)
            settle()

        async def worker(slot: int) -> None:
            for i in todo:
                judge(i, await self._send_one(slot, envelopes[i]))

        n = min(len(self._clients), len(envelopes))
        await asyncio.gather(*(worker(s) for s in range(n)))
        # The batch is over with refusals still held. Nothing accepted at all and every
        # recipient refused alike at RCPT (two or more, or one that reads as policy), or
        # nothing delivered and every held DATA refused alike: the relay's refusal. Anything
        # else is what it says (a bounce, a retryable or final failure: `_verdict`).
        if self.refusal is None:
            for stage, nothing_yet in (("RCPT", not self._rcpt_ok),
                                       ("DATA", not self._delivered)):
                alike = [(o.refused, o.recipient) for _, o, _ in held
                         if o.refused is not None and o.refused.stage == stage]
                if alike and nothing_yet and all_the_same(alike):
                    self._refuse(alike[0][0])
                    break
        for i, out, _ in held:  # nothing accepted at their stage since them
            report(i, self._verdict(out, answered=False))
        held.clear()
        return [r for r in results if r is not None]

    async def _close_all(self) -> None:
        for slot, client in enumerate(self._clients):
            pipe, self._pipes[slot] = self._pipes[slot], None
            if pipe is not None:
                pipe.detach()  # QUIT goes through aiosmtplib
            if client is not None and client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    pass
            await self._drop(slot)

    async def _send_next(self, envelopes: Sequence[Envelope], on_outcome: OnOutcome | None
                         ) -> list[Outcome]:
        if self._busy is None:  # made on the loop's thread, like everything it guards
            self._busy = asyncio.Lock()
        async with self._busy:
            return await self._send_all(envelopes, on_outcome)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The transport's event loop, running on its thread (started on first use)."""
        with self._start_lock:
            if self._thread is None:
                factory = _loop_factory()
                loop = factory() if factory is not None else asyncio.new_event_loop()
                started = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()

                # daemon: a caller that never closes must not keep the process alive
                thread = threading.Thread(target=run, name="digest-smtp", daemon=True)
                thread.start()
                started.wait()
                self._loop, self._thread = loop, thread
            assert self._loop is not None
            return self._loop

    def submit(self, envelopes: Sequence[Envelope], on_outcome: OnOutcome | None = None
               ) -> concurrent.futures.Future[list[Outcome]]:
        """Start sending `envelopes` on the transport's thread; the Future holds the
        outcomes (as `send` returns them). `on_outcome` runs on that thread."""
        if not envelopes:
            done: concurrent.futures.Future[list[Outcome]] = concurrent.futures.Future()
            done.set_result([])
            return done
        return asyncio.run_coroutine_threadsafe(self._send_next(envelopes, on_outcome),
                                                self._running_loop())

    def send(self, envelopes: Sequence[Envelope], on_outcome: OnOutcome | None = None
             ) -> list[Outcome]:
        return self.submit(envelopes, on_outcome).result()

    def close(self) -> None:
        """QUIT every connection, then stop and join the loop's thread (a fork after this,
        e.g. publish's page workers, sees no thread of ours)."""
        with self._start_lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close_after_sends(), loop).result()
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    async def _close_after_sends(self) -> None:
        busy, self._busy = self._busy, None
        if busy is not None:
            async with busy:  # a batch still on the connections finishes first
                await self._close_all()
        else:
            await self._close_all()
        await asyncio.get_running_loop().shutdown_asyncgens()
