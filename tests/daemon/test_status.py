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


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_status_asks_the_daemon_lock_not_the_pid_file(tmp_path: Path) -> None:
    """A SIGKILLed daemon leaves its pid in daemon.lock; the kernel may give that pid to
    another process (here: this one, alive). Only a held lock means a daemon runs."""
    import os

    from digest.fileio import locked
    from digest.pipeline.project import DAEMON_LOCK

    cfg = make_config(tmp_path)
    store_with(cfg, [story("s0001")])
    lock = cfg.store.path / DAEMON_LOCK
    lock.write_text(f"{os.getpid()}\n", encoding="ascii")  # a live, unrelated process
    assert status(cfg, full=True).daemon_pid is None
    with locked(lock, timeout=0):
        assert status(cfg, full=True).daemon_pid == os.getpid()  # held: a daemon runs
    assert status(cfg, full=True).daemon_pid is None


def test_a_second_daemon_never_suggests_killing_a_stale_pid(tmp_path: Path) -> None:
    import pytest

    from digest.errors import StoreError
    from digest.fileio import locked
    from digest.pipeline import daemon_lock
    from digest.pipeline.project import DAEMON_LOCK

    cfg = make_config(tmp_path)
    store_with(cfg, [story("s0001")])
    lock = cfg.store.path / DAEMON_LOCK
    stale = _dead_pid()
    lock.write_text(f"{stale}\n", encoding="ascii")
    with locked(lock, timeout=0), pytest.raises(StoreError) as e, daemon_lock(cfg):
        pass
    assert "another digest daemon" in e.value.message
    assert str(stale) not in e.value.message + e.value.hint and "kill" not in e.value.hint
