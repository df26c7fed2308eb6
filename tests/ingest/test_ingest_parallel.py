"""Issue 18: big ingest runs parse in worker processes and store in batches. The report (every
event, in order), the quarantine, duplicate ids across the run and the stored bytes must be
those of the in-process, one-transaction run."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.config import load_config
from digest.pipeline import ingesting
from digest.pipeline.ingesting import ingest_paths
from digest.store import Store

REPO = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def _inbox(root: Path) -> Path:
    """Seeds, copies of them under new ids, a duplicate id, bad files, a renamed card."""
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    seeds = sorted((REPO / "seeds").glob("*.txt"))
    for s in seeds:
        shutil.copy(s, inbox / s.name)
    card = next(s for s in seeds if s.name.startswith("001_"))
    text = card.read_text(encoding="utf-8")
    for i in range(12):  # cards with ids in their names: distinct stories
        (inbox / f"1{i:02d}_{i:016x}.txt").write_text(text, encoding="utf-8")
    (inbox / "150_0000000000000003.txt").write_text(text, encoding="utf-8")  # id of 103
    (inbox / "200_empty.txt").write_bytes(b"")
    (inbox / "201_nul.txt").write_bytes(b"Title\n\x00binary")
    (inbox / "202_broken.json").write_bytes(b'{"id": "abc",\n  "languages": ["en"\n')
    return inbox


def _project(root: Path) -> tuple[Path, object]:
    root.mkdir(parents=True)
    (root / "config.toml").write_text('[store]\npath = "store"\n', encoding="utf-8")
    return _inbox(root), load_config(root / "config.toml")


def _events(report, root: Path) -> list[tuple[str, str, str]]:  # noqa: ANN001
    return [(e.kind, e.text.replace(str(root), "ROOT"), e.hint) for e in report.events]


def _store_files(root: Path) -> dict[str, bytes]:
    """Index shards and body files, with the project dir (in `origin`) taken out."""
    store_dir = root / "store"
    return {str(p.relative_to(store_dir)): p.read_bytes().replace(str(root).encode(), b"ROOT")
            for p in sorted(store_dir.rglob("*"))
            if p.is_file() and p.parts[len(store_dir.parts)] in ("index", "bodies")}


@pytest.mark.parametrize("batch", [2, 1000])
def test_workers_and_batches_give_the_in_process_report(tmp_path: Path, batch: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    inbox_a, config_a = _project(tmp_path / "a")
    inbox_b, config_b = _project(tmp_path / "b")
    seq = ingest_paths(config_a, [inbox_a], as_of=AS_OF)
    assert ingesting._workers(3) == 0  # small runs stay in process

    monkeypatch.setattr(ingesting, "PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(ingesting, "CHUNK_FILES", 3)
    monkeypatch.setattr(ingesting, "BATCH_STORIES", batch)
    monkeypatch.setattr(ingesting, "_workers", lambda n: 2)
    echoed: list[str] = []
    par = ingest_paths(config_b, [inbox_b], as_of=AS_OF, echo=echoed.append)
    a, b = _events(seq, tmp_path / "a"), _events(par, tmp_path / "b")

    assert par.files == seq.files and par.summary() == seq.summary()
    assert sorted(a) == sorted(b)
    if batch >= 1000:  # one batch: the very same order as before
        assert a == b
    # Rejections keep file order, and so do the stories among themselves.
    assert [e for e in a if e[0] == "rejected"] == [e for e in b if e[0] == "rejected"]
    assert [e for e in a if e[0] != "rejected"] == [e for e in b if e[0] != "rejected"]
    assert any("is also in" in e[1] for e in b)  # the duplicate id, across chunks
    assert echoed[-1] == par.summary()
    assert _store_files(tmp_path / "a") == _store_files(tmp_path / "b")
    qa = [(q["path"].replace(str(tmp_path / "a"), ""), q["fingerprint"], q["reason"])
          for q in Store(tmp_path / "a" / "store").quarantine_items()]
    qb = [(q["path"].replace(str(tmp_path / "b"), ""), q["fingerprint"], q["reason"])
          for q in Store(tmp_path / "b" / "store").quarantine_items()]
    assert qa == qb and len(qb) == 3

    # Again, in workers: quarantined files are skipped, the stories unchanged.
    again = ingest_paths(config_b, [inbox_b], as_of=AS_OF)
    assert len(again.skipped) == 3 and not again.added and not again.updated
    assert len(again.unchanged) == len(par.added)


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids |= {int(k) for k in (task / "children").read_text().split()}
        except OSError:
            pass
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_killed_ingest_leaves_no_worker_holding_the_store(tmp_path: Path) -> None:
    """SIGKILL of a parallel `digest ingest`: its forked workers (which inherit the store
    lock's file and wait on their queue for ever) die with it, so the next ingest is not
    stuck behind an orphan (found by the kill trials: a rerun hung for 180 s)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    if (os.cpu_count() or 1) < 2 or not Path("/proc/self/task").is_dir():
        pytest.skip("needs two CPUs and Linux /proc")
    root = tmp_path / "p"
    inbox, _ = _project(root)
    text = next((REPO / "seeds").glob("001_*.txt")).read_text(encoding="utf-8")
    for i in range(3000):
        (inbox / f"9{i:04d}_{i + 4096:016x}.txt").write_text(text, encoding="utf-8")
    cmd = [sys.executable, "-m", "digest", "--config", str(root / "config.toml"), "ingest",
           str(inbox), "--as-of", "2026-11-22T12:00:00Z"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while not workers and time.monotonic() < deadline and proc.poll() is None:
        workers = _children(proc.pid)
        time.sleep(0.01)
    assert workers, "the ingest finished before its workers were seen; add files"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    end = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < end:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "workers outlived the killed ingest"
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    # finishes (the inbox holds deliberately bad files: exit 1 with their FILE:LINE reasons)
    assert rerun.returncode in (0, 1) and "lock" not in rerun.stderr, rerun.stderr
    assert "file is empty" in rerun.stderr
