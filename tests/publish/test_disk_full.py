"""A full disk (a real, small tmpfs) under the store and the output dir while `digest ingest`,
`subscribers add`, `send` and `publish` run: exit 1 with a message that says so and a hint,
no traceback, the old data and files intact; once space is freed a rerun completes the work.
Needs root for `mount -t tmpfs`; without it the injected-ENOSPC tests in test_store.py and
test_publish.py cover the same promise in process."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from digest.models import Subscriber
from digest.store import Store
from tests.support import kill_harness as kh
from tests.support.faults import FaultServer
from tests.support.store import make_story

# root and `mount -t tmpfs`: more than Python
pytestmark = pytest.mark.external

REPO = Path(__file__).resolve().parents[2]
NOW = "2026-11-22T12:00:00Z"
SECRET = {"DIGEST_SECRET": "disk-test-secret"}


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 16 MB tmpfs at tmp_path/disk, unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({r.stderr.strip()}); the injected-ENOSPC tests "
                    "in test_store.py / test_publish.py cover this in process")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(disk: Path, leave: int) -> Path:
    """Fill the disk, then free `leave` bytes: the next writes fail part-way through."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:  # unbuffered: close() has nothing to flush
        for chunk in (65536, 512):  # then the last partial blocks
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC
    if leave:
        size = filler.stat().st_size
        os.truncate(filler, max(0, size - leave))
    return filler


def project(tmp: Path, disk: Path, **replace: str) -> Path:
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    repl = {'path = "store"': f'path = "{disk / "store"}"',
            'output = "public"': f'output = "{disk / "public"}"',
            'paths = ["seeds"]': 'paths = ["inbox"]', **replace}
    for old, new in repl.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    cfg = tmp / "config.toml"
    cfg.write_text(text, encoding="utf-8")
    (tmp / "inbox").mkdir(exist_ok=True)
    return cfg


def write_inbox(tmp: Path, numbers: range, rev: int = 0) -> None:
    for i in numbers:
        blob = json.dumps(make_story(i, rev=rev, prefix="d").to_dict(), ensure_ascii=False)
        (tmp / "inbox" / f"{i:04d}.json").write_text(blob, encoding="utf-8")


def snapshot(store: Store) -> dict:
    return {"stories": {s.id: store.story_hash(s.id) for s in store.list_stories()},
            "bodies": {s.id: store.get_story(s.id).content_hash() for s in store.list_stories()},
            "subscribers": sorted(s.email for s in store.list_subscribers()),
            "journal": list(store.journal.records())}


def served(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
            if p.is_file() and not any(x.startswith(".") for x in p.relative_to(out).parts)}


def assert_clean_failure(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 1, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr + r.stdout, r.stderr[-3000:]
    err = r.stderr.lower()
    assert "digest: error:" in err and "hint:" in err, r.stderr
    assert "no space" in err or "disk" in err or "full" in err, r.stderr


@pytest.mark.parametrize("leave", [0, 20_000, 300_000], ids=["full", "20k-left", "300k-left"])
def test_full_disk_under_the_store(tmp_path: Path, small_disk: Path, leave: int) -> None:
    cfg = project(tmp_path, small_disk)
    write_inbox(tmp_path, range(40))
    assert kh.run(kh.digest_cmd(cfg, "ingest")).returncode == 0
    store = Store(small_disk / "store")
    store.add_subscriber(Subscriber(email="old@example.com", status="active"))
    before = snapshot(store)
    filler = fill(small_disk, leave)

    write_inbox(tmp_path, range(40, 400))  # ~3 MB of new stories: cannot fit
    write_inbox(tmp_path, range(0, 40, 3), rev=1)  # and edits of stored ones
    r = kh.run(kh.digest_cmd(cfg, "ingest"))
    assert_clean_failure(r)
    assert snapshot(Store(small_disk / "store")) == before  # old data intact, nothing half-done

    r = kh.run(kh.digest_cmd(cfg, "subscribers", "add", "new@example.com"))
    if r.returncode != 0:  # a tiny row may still fit in the space left
        assert_clean_failure(r)
        assert snapshot(Store(small_disk / "store")) == before

    filler.unlink()  # the operator frees space; the rerun completes
    r = kh.run(kh.digest_cmd(cfg, "ingest"))
    assert r.returncode == 0, r.stderr[-3000:]
    after = Store(small_disk / "store")
    assert after.story_count() == 400
    assert not list((small_disk / "store" / ".tmp").glob("*"))


def test_full_disk_while_sending_sends_nothing_unjournalled(tmp_path: Path, small_disk: Path
                                                            ) -> None:
    with FaultServer() as srv:
        cfg = project(tmp_path, small_disk, **{'transport = "maildir"': 'transport = "smtp"',
                                                "port = 25": f"port = {srv.port}"})
        write_inbox(tmp_path, range(20))
        assert kh.run(kh.digest_cmd(cfg, "ingest")).returncode == 0
        people = [f"p{i}@example.com" for i in range(30)]
        Store(small_disk / "store").upsert_subscribers(
            [Subscriber(email=e, status="active") for e in people])
        filler = fill(small_disk, 0)
        r = kh.run(kh.digest_cmd(cfg, "send", "--now", NOW), SECRET)
        assert_clean_failure(r)
        # The journal could not record `sending`, so nothing may have left.
        assert srv.messages == []
        filler.unlink()
        r = kh.run(kh.digest_cmd(cfg, "send", "--now", NOW), SECRET)
        assert r.returncode == 0, (r.stdout, r.stderr[-3000:])
        assert sorted(srv.message_ids()) == sorted(people)
        assert all(len(v) == 1 for v in srv.message_ids().values())


@pytest.mark.parametrize("leave", [0, 50_000, 400_000], ids=["full", "50k-left", "400k-left"])
def test_full_disk_under_the_output_dir(tmp_path: Path, small_disk: Path, leave: int) -> None:
    cfg = project(tmp_path, small_disk, **{'path = "store"': 'path = "store"'})
    write_inbox(tmp_path, range(30))
    assert kh.run(kh.digest_cmd(cfg, "ingest")).returncode == 0
    assert kh.run(kh.digest_cmd(cfg, "publish", "--now", NOW)).returncode == 0
    out = small_disk / "public"
    v1 = served(out)
    filler = fill(small_disk, leave)
    write_inbox(tmp_path, range(30, 200))
    write_inbox(tmp_path, range(0, 30, 2), rev=1)
    assert kh.run(kh.digest_cmd(cfg, "ingest")).returncode == 0  # the store is not on the tmpfs
    r = kh.run(kh.digest_cmd(cfg, "publish", "--now", NOW))
    assert_clean_failure(r)
    assert served(out) == v1  # every served file is the old one, whole
    filler.unlink()
    r = kh.run(kh.digest_cmd(cfg, "publish", "--now", NOW))
    assert r.returncode == 0, r.stderr[-3000:]
    v2 = served(out)
    newest = make_story(199, prefix="d").id
    assert v2 != v1 and any(newest in rel for rel in v2)
    assert not [p for p in (out / ".digest-tmp").glob("*")]
