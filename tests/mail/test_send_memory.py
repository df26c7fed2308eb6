"""What a send holds, and when it lets go: the publish a send ends with (edition pages) runs
after the send's store, with its journal state, is gone; the two are never in memory at once."""

from __future__ import annotations

import gc
import weakref

import pytest

import digest.pipeline.sending as sending
from tests.support.send import NOW, add_subscribers, sub


@pytest.mark.usefixtures("secret")
def test_the_sends_store_is_gone_before_the_publish(config, monkeypatch) -> None:
    add_subscribers(config, sub("a@example.com"), sub("b@example.com"))
    opened: list[weakref.ref] = []
    real_open = sending.open_store

    def open_store(where):
        store = real_open(where)
        opened.append(weakref.ref(store))
        return store

    alive_at_publish: list[int] = []

    def publish(config, now, report) -> None:
        alive_at_publish.append(sum(1 for r in opened if r() is not None))
        report.published = "checked"

    monkeypatch.setattr(sending, "open_store", open_store)
    monkeypatch.setattr(sending, "_publish_editions", publish)
    gc.disable()  # only the send's own collection may free it (a publish pauses the GC)
    try:
        report = sending.send_digest(config, now=NOW)
    finally:
        gc.enable()
    assert sorted(report.sent) == ["a@example.com", "b@example.com"]
    assert len(opened) == 1 and alive_at_publish == [0]
    assert report.published == "checked"
