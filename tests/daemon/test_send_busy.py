"""Issue 17.11: two daemons on one store — the one that finds a digest being sent by the
other must not log an ERROR every minute: the scheduled send reports it and moves on."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from digest.errors import DeliveryError
from digest.pipeline import send_digest
from digest.scheduler import daemon
from digest.store import Store


def test_a_digest_being_sent_elsewhere_is_not_an_error(config, caplog) -> None:
    store = Store(config.store.path)
    now = datetime(2026, 11, 22, 7, 1, tzinfo=UTC)
    with store.send_lock(config.digests[0].name), caplog.at_level(logging.DEBUG):
        summary, acted = daemon.send_job(config, now)
        with pytest.raises(DeliveryError):  # `digest send` by hand still says it, exit 1
            send_digest(config, name=config.digests[0].name, now=now)
    assert summary == f"{config.digests[0].name}: being sent by another process"
    assert not acted
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
