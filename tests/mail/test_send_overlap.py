"""The sender composes batch k+1 while batch k is on the wire, against a real aiosmtpd on
loopback, without timing: the server holds batch k's first message until the composer has
built batch k+1's first message (seen through the Composer's `sign` hook, the one DKIM signs
through), so a sender that composed only between sends would never get there. And batch k+1
is only composed, not claimed: a relay that refuses the session in batch k stops the run
with nothing of batch k+1 in the journal and nothing of it on the wire. The loop's thread
is gone once send_digest returns (it publishes after the send, and publish may fork)."""

from __future__ import annotations

import asyncio
import email
import email.utils
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from digest.pipeline import sending
from digest.pipeline.sending import send_digest
from digest.store import Store
from tests.support.send import NOW, add_subscribers, make_project, sub
from tests.support.smtp_server import free_port

pytestmark = pytest.mark.usefixtures("secret")

EDITION = "2026-11-22"  # NOW's date for subscribers in UTC
HOLD = 30.0  # seconds the server waits for the next batch's first message before it gives up


class _Composed:
    """Recipients in the order the Composer finished their messages (its `sign` hook is
    called with each finished message); `third` is set once the first message of the second
    batch (BATCH = 2) was built."""

    def __init__(self) -> None:
        self.to: list[str] = []
        self.third = threading.Event()

    def signer(self, _config: object) -> Callable[[bytes], bytes]:
        def sign(data: bytes) -> bytes:
            msg = email.message_from_bytes(data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
            self.to.append(email.utils.parseaddr(msg["To"])[1])
            if len(self.to) >= 3:
                self.third.set()
            return data
        return sign


class _Holding:
    """aiosmtpd handler: the first message's MAIL (`refuse`: answered 530, the relay's
    refusal of the session) or DATA waits until the second batch's first message is built."""

    def __init__(self, composed: _Composed, refuse: bool) -> None:
        self.composed, self.refuse = composed, refuse
        self.first = True
        self.overlapped: bool | None = None
        self.rcpts: list[str] = []
        self.delivered: list[str] = []

    async def _hold(self) -> None:
        if self.first:
            self.first = False
            loop = asyncio.get_running_loop()
            self.overlapped = await loop.run_in_executor(None, self.composed.third.wait, HOLD)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: ANN001, ANN201, N802
        if self.refuse:
            await self._hold()
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001, ANN201, N802
        self.rcpts.append(address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
        await self._hold()
        self.delivered.extend(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture
def composed(monkeypatch: pytest.MonkeyPatch) -> _Composed:
    seen = _Composed()
    monkeypatch.setattr(sending, "BATCH", 2)
    monkeypatch.setattr(sending, "dkim_sign", seen.signer)
    return seen


def _server(handler: _Holding) -> Iterator[Controller]:
    port = free_port("127.0.0.1")
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


def _project(tmp_path: Path, controller: Controller):  # noqa: ANN202
    config = make_project(tmp_path, transport="smtp", host="127.0.0.1", port=controller.port,
                          sender="AI News <digest@news.example.org>", timeout=HOLD + 10,
                          pool_size=1, retries=0)
    add_subscribers(config, *(sub(f"r{i}@example.com", ["en"]) for i in range(4)))
    return config


def test_the_next_batch_is_composed_while_this_one_is_on_the_wire(
        tmp_path: Path, composed: _Composed) -> None:
    handler = _Holding(composed, refuse=False)
    for controller in _server(handler):
        report = send_digest(_project(tmp_path, controller), now=NOW)
    assert handler.overlapped is True  # batch 2's first message was built during batch 1
    assert sorted(report.sent) == sorted(composed.to) == [f"r{i}@example.com" for i in range(4)]
    assert sorted(handler.delivered) == sorted(composed.to)  # each once
    # the transport's loop thread was joined before send_digest's publish (which may fork)
    assert [t for t in threading.enumerate() if t.name == "digest-smtp"] == []


def test_a_session_refused_in_this_batch_leaves_the_composed_next_one_unclaimed_and_unsent(
        tmp_path: Path, composed: _Composed) -> None:
    handler = _Holding(composed, refuse=True)
    for controller in _server(handler):
        config = _project(tmp_path, controller)
        report = send_digest(config, now=NOW)
    assert handler.overlapped is True  # refused only once batch 2 was composed
    assert report.stopped and "530" in report.stopped
    first, second = composed.to[:2], composed.to[2:]
    assert len(second) >= 1 and not set(first) & set(second)
    journal = Store(config.store.path).journal
    assert [journal.state("daily", EDITION, e)["state"] for e in first] == ["failed"] * 2
    assert [journal.state("daily", EDITION, e) for e in second] == [None] * len(second)
    assert not set(handler.rcpts) & set(second) and handler.delivered == []
    assert report.sent == [] and sorted(e for e, _ in report.failed) == sorted(first)
