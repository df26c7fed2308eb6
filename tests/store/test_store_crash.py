"""Store under real processes: SIGKILL at random moments, and two writers at once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from digest.models import Subscriber
from digest.store import Store
from tests.support.store import make_story

WRITER = Path(__file__).resolve().parents[1] / "support" / "store_writer.py"
REPO = WRITER.parent.parent


def start_writer(store: Path, prefix: str, count: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, str(WRITER), str(store), prefix, str(count)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def committed(out: bytes) -> list[int]:
    return [int(line.split()[1]) for line in out.decode().splitlines() if line.startswith("C ")]


def check_commits(store: Store, prefix: str, done: list[int], attempted_next: int) -> int:
    """Every iteration the writer reported is fully present; returns the number lost."""
    lost = 0
    for i in done:
        s = store.get_story(make_story(i, prefix=prefix).id)
        sub = store.get_subscriber(f"{prefix}-{i}@example.com")
        j = store.journal.state("daily", f"{prefix}-{i}", f"{prefix}@example.com")
        if s != make_story(i, prefix=prefix) or sub is None or j is None or j["state"] != "sent":
            lost += 1
    if done or attempted_next:
        # The hot story holds the last reported revision, or the next one (killed after the
        # commit, before the print).
        last = done[-1] + 1 if done else 0
        hot = store.get_story(make_story(0, prefix=prefix + "hot").id)
        ok = {make_story(0, rev=r, prefix=prefix + "hot").title["en"] for r in (last, last + 1)}
        if done and (hot is None or hot.title["en"] not in ok):
            lost += 1
    return lost


def kill_trials(tmp_path: Path, trials: int, seed: int) -> dict:
    rng = random.Random(seed)
    root = tmp_path / "store"
    figures = {"trials": trials, "reopened_ok": 0, "lost": 0, "commits": 0,
               "killed_before_open": 0}
    for t in range(trials):
        proc = start_writer(root, f"t{t}x", 10_000)
        time.sleep(rng.uniform(0.0, 0.9))  # anywhere: imports, open, mid-commit, mid-append
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
        if b"OPEN" not in out:
            figures["killed_before_open"] += 1
        done = committed(out)
        store = Store(root)  # must open every time, whatever the moment of the kill
        store.story_count()
        list(store.journal.records())
        figures["reopened_ok"] += 1
        figures["commits"] += len(done)
        figures["lost"] += check_commits(store, f"t{t}x", done, len(done))
    # The store is still writable and clean afterwards.
    store = Store(root)
    store.upsert_stories([make_story(1, prefix="after")])
    assert list((root / ".tmp").iterdir()) == []
    print(f"\nkill trials: {figures}")
    return figures


def test_kill_trials_quick(tmp_path):
    f = kill_trials(tmp_path, 10, seed=1)
    assert f["reopened_ok"] == 10 and f["lost"] == 0
    assert f["commits"] > 0  # the kills did land among commits


@pytest.mark.slow
def test_kill_trials_50(tmp_path):
    f = kill_trials(tmp_path, 60, seed=2)
    assert f["reopened_ok"] == 60 and f["lost"] == 0


def test_two_processes_writing_at_once(tmp_path):
    root = tmp_path / "store"
    Store(root)
    n = 60
    procs = [start_writer(root, p, n) for p in ("pa", "pb")]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
        assert committed(out) == list(range(n))
    store = Store(root)
    for prefix in ("pa", "pb"):
        assert check_commits(store, prefix, list(range(n)), n) == 0
    extra = 40 * (n // 10)  # writer adds 40 more stories every 10th iteration
    assert store.story_count() == 2 * (n + 1 + extra)
    assert len(store.list_subscribers()) == 2 * n
    assert len(list(store.journal.records())) == 2 * n


def test_threads_sharing_one_store(tmp_path):
    store = Store(tmp_path / "store")
    errors = []

    def work(k: int) -> None:
        try:
            for i in range(30):
                store.upsert_stories([make_story(k * 1000 + i)])
                store.upsert_subscribers([Subscriber(email=f"t{k}-{i}@example.com")])
                store.journal.append([{"digest": "d", "edition": f"{k}-{i}", "email": "x@y",
                                       "state": "sent", "stories": [str(i)]}])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    fresh = Store(tmp_path / "store")
    assert fresh.story_count() == 120 and len(fresh.list_subscribers()) == 120
    assert len(list(fresh.journal.records())) == 120
