"""`pipeline.status`: what the entry points may know of the store without opening it."""

from __future__ import annotations

from pathlib import Path

from digest.models import Subscriber
from digest.pipeline import status
from digest.store import Store
from tests.support.publish import make_config, store_with, story


def test_status_counts_stories_and_active_subscribers_per_zone(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    assert status(cfg).stories == 0 and status(cfg).zones == {}
    assert not cfg.store.path.exists()  # asking does not create a store
    store_with(cfg, [story("s0001"), story("s0002")])
    Store(cfg.store.path).upsert_subscribers([
        Subscriber(email="a@example.com", timezone="Asia/Shanghai", status="active"),
        Subscriber(email="b@example.com", timezone="Asia/Shanghai", status="active"),
        Subscriber(email="c@example.com", timezone="UTC", status="active"),
        Subscriber(email="d@example.com", timezone="UTC", status="pending"),
    ])
    report = status(cfg)
    assert report.stories == 2
    assert report.zones == {"Asia/Shanghai": 2, "UTC": 1} and report.subscribers == 3
