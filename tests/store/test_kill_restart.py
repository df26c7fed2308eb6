"""SIGKILL at random moments during `digest ingest`, `digest publish` and `digest send` (real CLI
subprocesses), then a restart: the store opens, no served file is ever half-written, nothing
stored is lost, no subscriber misses the edition and duplicates are exactly the messages the
server took whose outcome was not yet journalled (resent with the same Message-ID).

Quick form (default run): a few trials each. Long form: `pytest -m slow tests/store/test_kill_restart.py`.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.ingest import parse_stories
from digest.models import Story, Subscriber
from digest.store import Store
from tests.support import kill_harness as kh
from tests.support.faults import FaultServer, More
from tests.support.store import make_story

# Dozens of `python -m digest` CLI runs per test, each SIGKILLed and restarted (about 15 s in
# all): out of the hermetic run, in `make test`.
pytestmark = pytest.mark.external

REPO = Path(__file__).resolve().parents[2]
NOW = "2026-11-22T12:00:00Z"
SECRET = "kill-test-secret"


def project(tmp: Path, **replace: str) -> Path:
    """The shipped config.toml in `tmp`, ingest paths = inbox/, with line replacements."""
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    for old, new in {'paths = ["seeds"]': 'paths = ["inbox"]', **replace}.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    cfg = tmp / "config.toml"
    cfg.write_text(text, encoding="utf-8")
    (tmp / "inbox").mkdir()
    return cfg


def served(out: Path) -> dict[str, bytes]:
    """Every file a reader could fetch (dotfiles and dot-directories are never served)."""
    files = {}
    for p in out.rglob("*"):
        rel = p.relative_to(out).as_posix()
        if p.is_file() and not any(part.startswith(".") for part in rel.split("/")):
            files[rel] = p.read_bytes()
    return files


# --- ingest ---------------------------------------------------------------------------------


def _ingest_series(tmp_path: Path, n: int, seed: int) -> kh.Figures:
    cfg = project(tmp_path)
    inbox, store_path = tmp_path / "inbox", tmp_path / "store"
    revs: dict[int, int] = {}  # story number → revision currently in the inbox

    def write(i: int, rev: int) -> None:
        revs[i] = rev
        blob = json.dumps(make_story(i, rev=rev, prefix="k").to_dict(), ensure_ascii=False)
        (inbox / f"{i:04d}.json").write_text(blob, encoding="utf-8")

    hashes: dict[tuple[int, int], tuple[str, str]] = {}

    def parsed(i: int, rev: int) -> tuple[str, str]:
        """(id, content hash) as the ingest parser reads that file (it normalises text)."""
        if (i, rev) not in hashes:
            blob = json.dumps(make_story(i, rev=rev, prefix="k").to_dict(), ensure_ascii=False)
            (s,) = parse_stories(blob, "x.json", datetime(2026, 11, 22, tzinfo=UTC))
            hashes[(i, rev)] = (s.id, s.content_hash())
        return hashes[(i, rev)]

    def expected() -> dict[str, str]:
        return dict(parsed(i, r) for i, r in revs.items())

    for i in range(120):
        write(i, 0)
    before: dict[str, str] = {}
    import random

    rng = random.Random(seed)

    def prepare(t: int) -> None:
        nonlocal before
        before = expected()
        for i in rng.sample(sorted(revs), 25):  # edits: `updated` inside the kill window
            write(i, revs[i] + 1)
        for k in range(3):  # and new files: `added`
            write(1003 + t * 3 + k, 0)

    cmd = kh.digest_cmd(cfg, "ingest")
    assert kh.run(cmd).returncode == 0
    startup, full = kh.calibrate(cmd, lambda: prepare(-1))  # aim at a typical trial's run

    def check(t: kh.Trial, f: kh.Figures) -> None:
        new = expected()
        store = Store(store_path)  # must open whatever the moment of the kill
        listed = {s.id for s in store.list_stories()}
        assert listed <= set(before) | set(new), t.index
        for sid in listed:
            body = store.get_story(sid)
            ok = {before.get(sid), new.get(sid)}
            assert body is not None and body.content_hash() in ok, (t.index, sid)
            assert store.story_hash(sid) in ok, (t.index, sid)
        if set(before) - listed:
            f.lost += len(set(before) - listed)  # committed before this trial: must survive
        r = kh.run(cmd)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
        store = Store(store_path)
        have = {s.id: store.story_hash(s.id) for s in store.list_stories()}
        f.lost += sum(1 for sid, h in new.items() if have.get(sid) != h)
        f.lost += sum(1 for sid in new if store.get_story(sid).content_hash() != new[sid])
        assert set(have) == set(new), t.index
        quarantined = [p.name for p in inbox.iterdir() if store.quarantine_get(str(p.resolve()))]
        assert quarantined == [], t.index  # a kill never quarantines a good file
        assert not list((store_path / ".tmp").glob("*")), t.index

    figures = kh.trials(n, seed, cmd, kh.kill_window(startup, full), prepare, check)
    print(f"\ningest kill trials: {figures.line()}")
    assert figures.lost == 0 and figures.doubled == 0
    return figures


def test_kill_ingest_quick(tmp_path: Path) -> None:
    _ingest_series(tmp_path, 5, seed=11)


@pytest.mark.slow
def test_kill_ingest_many(tmp_path: Path) -> None:
    f = _ingest_series(tmp_path, 60, seed=12)
    assert f.killed > 0


# --- publish --------------------------------------------------------------------------------


def _publish_series(tmp_path: Path, n: int, seed: int) -> kh.Figures:
    cfg = project(tmp_path)
    store = Store(tmp_path / "store")
    base = datetime(2026, 11, 22, 3, tzinfo=UTC)
    store.upsert_stories([make_story(i, prefix="p") for i in range(150)])
    cmd = kh.digest_cmd(cfg, "publish", "--now", NOW)
    assert kh.run(cmd).returncode == 0
    out = tmp_path / "public"
    snapshot_v1 = tmp_path / "public-v1"
    shutil.copytree(out, snapshot_v1, symlinks=True)
    v1 = served(out)
    # v2: edits, a new story, one story gone from the top (the feeds all change)
    store.upsert_stories([make_story(i, rev=1, prefix="p") for i in range(0, 150, 7)]
                         + [Story(id="pnew", languages=["en"], title={"en": "Brand new"},
                                  published=base, updated=base, tldr={"en": ["x"]},
                                  tags=["newtag"], scores={"hot": 99, "quality": 99,
                                                           "impact": 99})])

    def restore() -> None:
        shutil.rmtree(out)
        shutil.copytree(snapshot_v1, out, symlinks=True)

    startup, full = kh.calibrate(cmd, restore)
    v2 = served(out)
    assert v1 != v2 and set(v2) - set(v1)

    def check(t: kh.Trial, f: kh.Figures) -> None:
        now = served(out)
        for rel, blob in now.items():
            if blob not in (v1.get(rel), v2.get(rel)):
                f.add("torn_files")
                raise AssertionError(f"trial {t.index}: {rel} is neither the old nor the new file")
        missing = [rel for rel in set(v1) & set(v2) if rel not in now]
        assert not missing, (t.index, missing[:5])  # a wanted file never disappears
        r = kh.run(cmd)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
        assert served(out) == v2, t.index  # the restart repairs the tree exactly
        assert not [p for p in (out / ".digest-tmp").glob("*")], t.index

    figures = kh.trials(n, seed, cmd, kh.kill_window(startup, full), lambda _i: restore(), check)
    print(f"\npublish kill trials: {figures.line()}")
    return figures


def test_kill_publish_quick(tmp_path: Path) -> None:
    _publish_series(tmp_path, 5, seed=21)


@pytest.mark.slow
def test_kill_publish_many(tmp_path: Path) -> None:
    f = _publish_series(tmp_path, 60, seed=22)
    assert f.killed > 0


# --- send -----------------------------------------------------------------------------------

READERS = [f"reader{i:02d}@example.org" for i in range(16)]
POOL = 2


def _send_series(tmp_path: Path, n: int, seed: int) -> kh.Figures:
    with FaultServer(more=More(data_delay=0.05)) as srv:
        cfg = project(tmp_path, **{
            'transport = "maildir"': 'transport = "smtp"', "port = 25": f"port = {srv.port}",
            "pool_size = 4": f"pool_size = {POOL}", "timeout = 30.0": "timeout = 10.0"})
        store = Store(tmp_path / "store")
        store.upsert_subscribers([Subscriber(email=e, languages=["en", "zh"], status="active")
                                  for e in READERS])
        day0 = datetime(2026, 11, 22, 8, tzinfo=UTC)
        secret = {"DIGEST_SECRET": SECRET}
        start = 0
        state: dict = {}

        def when(i: int) -> datetime:
            return day0 + timedelta(days=i + 1)

        def prepare(i: int) -> None:
            nonlocal start
            # fresh stories for edition i, so every reader has something new
            stamp = when(i) - timedelta(hours=1)
            store.upsert_stories([Story(id=f"e{i:03d}x{k}", languages=["en", "zh-Hans"],
                                        title={"en": f"Edition {i} story {k}",
                                               "zh-Hans": f"第{i}期 第{k}条"},
                                        published=stamp, updated=stamp,
                                        tldr={"en": ["point"], "zh-Hans": ["要点"]},
                                        scores={"hot": 90, "quality": 90, "impact": 90})
                                  for k in range(3)])
            with srv.lock:
                start = len(srv.messages)
            state["cmd"] = kh.digest_cmd(cfg, "send", "--now", when(i).isoformat())

        # calibrate on day -1 (its own edition)
        prepare(-1)
        startup, full = kh.calibrate(state["cmd"], lambda: None, secret)

        def check(t: kh.Trial, f: kh.Figures) -> None:
            edition = when(t.index).date().isoformat()
            with srv.lock:
                got_at_kill = [r.rcpt_tos[0].lower() for r in srv.messages[start:]]
            journal = Store(tmp_path / "store").journal
            unconfirmed = {e for e in READERS
                           if (journal.state("daily", edition, e) or {}).get("state") == "sending"}
            in_flight = set(got_at_kill) & unconfirmed  # the server has it, the journal not
            r = kh.run(state["cmd"], secret)
            assert r.returncode == 0 and "Traceback" not in r.stderr, (r.stdout, r.stderr[-3000:])
            with srv.lock:
                trial = srv.messages[start:]
            mids: dict[str, list[str]] = {}
            for rec in trial:
                mids.setdefault(rec.rcpt_tos[0].lower(), []).append(rec.parsed()["Message-ID"])
            missed = set(READERS) - set(mids)
            f.lost += len(missed)
            assert not missed, (t.index, sorted(missed))
            assert all(len(set(v)) == 1 for v in mids.values()), mids  # one edition each
            doubled = {e for e, v in mids.items() if len(v) > 1}
            f.doubled += sum(len(v) - 1 for v in mids.values())
            f.add("in_flight_at_kill", len(in_flight))
            assert all(len(v) <= 2 for v in mids.values()), mids
            # duplicates are exactly the messages in flight at the kill, nothing else
            assert doubled == in_flight, (t.index, sorted(doubled), sorted(in_flight))
            again = kh.run(state["cmd"], secret)
            assert f"sent 0, already sent {len(READERS)}" in again.stdout, again.stdout

        # a first send also generates the site secret etc.: aim a little short of its length
        figures = kh.trials(n, seed, lambda _i: state["cmd"], kh.kill_window(startup, full, 0.8),
                            prepare, check, secret)
        print(f"\nsend kill trials: {figures.line()}")
        return figures


def test_kill_send_quick(tmp_path: Path) -> None:
    f = _send_series(tmp_path, 5, seed=31)
    assert f.lost == 0


@pytest.mark.slow
def test_kill_send_many(tmp_path: Path) -> None:
    f = _send_series(tmp_path, 60, seed=32)
    assert f.lost == 0 and f.killed > 0
