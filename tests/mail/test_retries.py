"""Delivery retries against a real loopback SMTP server: a 5xx at DATA is final for the
edition (no retry, reported on every later tick); transient failures are retried 1, 2, 4 ...
minutes apart, capped at 30; a manual send retries at once."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from digest.mail.transports import SmtpTransport
from digest.pipeline.sending import send_digest
from digest.store import Store
from tests.support.send import NOW, add_subscribers, make_project, sub
from tests.support.smtp_server import Faults, SMTPServer, free_port


class _RejectData:
    """Takes every recipient, then refuses DATA for good (554), counting attempts."""

    def __init__(self) -> None:
        self.attempts = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        with self.lock:
            self.attempts += 1
        return "554 5.7.1 message refused as spam"


def _smtp_config(tmp_path: Path, port: int):
    return make_project(tmp_path, transport="smtp", host="127.0.0.1", port=port,
                        sender="AI News <digest@news.example.org>", timeout=5.0, retries=2,
                        pool_size=1)


def _send(config, now: datetime, **kw):
    with SmtpTransport(config.smtp, backoff=0.01) as t:
        return send_digest(config, now=now, transport=t, **kw)


@pytest.mark.usefixtures("secret")
def test_a_5xx_at_data_is_final_for_the_edition(tmp_path: Path) -> None:
    handler = _RejectData()
    port = free_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        config = _smtp_config(tmp_path, port)
        add_subscribers(config, sub("a@example.com"))
        first = _send(config, NOW, due_only=True)
        assert first.sent == [] and len(first.failed) == 1
        assert "554" in first.failed[0][1] and handler.attempts == 1  # no SMTP-level retry
        recs = list(Store(config.store.path).journal.records())
        assert recs[-1]["state"] == "failed" and recs[-1]["permanent"] is True
        # every later tick (and a manual send) leaves it alone but still says why
        for later in (NOW + timedelta(minutes=1), NOW + timedelta(hours=1)):
            again = _send(config, later, due_only=True)
            assert again.failed == [] and again.sent == []
            assert again.given_up == [("a@example.com", first.failed[0][1].split(" (")[0])]
        manual = _send(config, NOW + timedelta(hours=1))
        assert manual.given_up and handler.attempts == 1
        assert any("not delivered to a@example.com" in line and "permanent" in line
                   for line in manual.lines())
    finally:
        ctl.stop()


@pytest.mark.usefixtures("secret")
def test_transient_failures_are_retried_with_growing_spacing(tmp_path: Path) -> None:
    with SMTPServer(faults=Faults(data_4xx=1000)) as srv:
        config = _smtp_config(tmp_path, srv.port)
        config = dataclasses.replace(config, smtp=dataclasses.replace(config.smtp, retries=0))
        add_subscribers(config, sub("a@example.com"))
        t = NOW
        tried_at = []
        # tick every 30 s for 10 minutes, as the daemon's minute ticks would (and more)
        for _ in range(20):
            before = srv.attempts
            r = _send(config, t, due_only=True)
            if srv.attempts > before:
                tried_at.append(t)
                assert len(r.failed) == 1
            else:
                assert r.waiting and r.waiting[0][0] == "a@example.com" and not r.failed
                assert any("next try after" in line for line in r.lines())
            t += timedelta(seconds=30)
        gaps = [(b - a).total_seconds() / 60 for a, b in zip(tried_at, tried_at[1:], strict=False)]
        assert gaps == [1.0, 2.0, 4.0], gaps  # 1, 2, 4 minutes apart, not every tick
        rec = list(Store(config.store.path).journal.records())[-1]
        assert rec["state"] == "failed" and rec["attempt"] == 4 and not rec.get("permanent")
        # the operator's manual send retries at once
        before = srv.attempts
        _send(config, t)
        assert srv.attempts == before + 1


def test_retry_spacing_is_capped_at_30_minutes() -> None:
    from digest.mail.editions import retry_after

    at = "2026-11-22T08:00:00Z"
    assert retry_after({"at": at, "attempt": 1}) == datetime(2026, 11, 22, 8, 1, tzinfo=UTC)
    assert retry_after({"at": at, "attempt": 6}) == datetime(2026, 11, 22, 8, 30, tzinfo=UTC)
    assert retry_after({"at": at, "attempt": 10**9}) == datetime(2026, 11, 22, 8, 30, tzinfo=UTC)
    assert retry_after({"at": at}) == datetime(2026, 11, 22, 8, 1, tzinfo=UTC)  # old records
    assert retry_after({"at": "garbage"}) is None
