"""SIGKILL at random moments of a `digest ingest` whose batch writes hundreds of body files
(the syncfs path: new bodies written in place, replaced ones staged and renamed) and whose
files are parsed in worker processes. After each kill the store opens, every story the index
lists has a whole body of either its old or its new text, and a rerun stores everything."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.ingest import parse_stories
from digest.store import Store
from digest.store.embedded import SYNCFS_OVER
from tests.support import kill_harness as kh
from tests.support.store import make_story

pytestmark = pytest.mark.external  # real CLI runs, each SIGKILLed and restarted

EDITS, NEW = 130, 80  # per trial: both far over SYNCFS_OVER
FILES = 260  # over PARALLEL_MIN_FILES: parsed in workers


def test_kill_ingest_with_big_batches(tmp_path: Path) -> None:
    assert EDITS + NEW > 2 * SYNCFS_OVER
    (tmp_path / "config.toml").write_text('[store]\npath = "store"\n[ingest]\npaths = ["inbox"]\n',
                                          encoding="utf-8")
    inbox, store_path = tmp_path / "inbox", tmp_path / "store"
    inbox.mkdir()
    revs: dict[int, int] = {}
    hashes: dict[tuple[int, int], tuple[str, str]] = {}

    def blob(i: int, rev: int) -> str:
        return json.dumps(make_story(i, rev=rev, prefix="b").to_dict(), ensure_ascii=False)

    def write(i: int, rev: int) -> None:
        revs[i] = rev
        (inbox / f"{i:04d}.json").write_text(blob(i, rev), encoding="utf-8")

    def parsed(i: int, rev: int) -> tuple[str, str]:
        if (i, rev) not in hashes:
            (s,) = parse_stories(blob(i, rev), "x.json", datetime.now(UTC))
            hashes[(i, rev)] = (s.id, s.content_hash())
        return hashes[(i, rev)]

    def expected() -> dict[str, str]:
        return dict(parsed(i, r) for i, r in revs.items())

    for i in range(FILES):
        write(i, 0)
    rng = random.Random(5)
    before: dict[str, str] = {}

    def prepare(t: int) -> None:
        nonlocal before
        before = expected()
        for i in rng.sample(sorted(revs), EDITS):
            write(i, revs[i] + 1)
        for k in range(NEW):
            write(1000 + (t + 1) * NEW + k, 0)

    cmd = kh.digest_cmd(tmp_path / "config.toml", "ingest")
    assert kh.run(cmd).returncode == 0
    startup, full = kh.calibrate(cmd, lambda: prepare(-1))

    def check(t: kh.Trial, f: kh.Figures) -> None:
        new = expected()
        store = Store(store_path)  # opens, whatever the moment of the kill
        listed = {s.id for s in store.list_stories()}
        assert set(before) <= listed <= set(before) | set(new), t.index
        for sid in listed:
            ok = {before.get(sid), new.get(sid)}
            body = store.get_story(sid)  # never missing, never partial
            assert body is not None and body.content_hash() in ok, (t.index, sid)
            assert store.story_hash(sid) in ok, (t.index, sid)
        r = kh.run(cmd)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
        store = Store(store_path)
        assert {s.id: store.story_hash(s.id) for s in store.list_stories()} == new, t.index
        assert all(store.get_story(sid).content_hash() == h for sid, h in new.items())
        assert not list((store_path / ".tmp").glob("*")), t.index

    figures = kh.trials(6, 21, cmd, kh.kill_window(startup, full), prepare, check)
    print(f"\nbig-batch ingest kill trials: {figures.line()}")
    assert figures.trials == 6
