"""The ingest command against a real store: in process and as `python -m digest` subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.config import load_config
from digest.models import iso
from digest.pipeline.ingesting import ingest_paths
from digest.store import Store

REPO = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
AS_OF_TEXT = "2026-11-22T12:00:00Z"

BAD_FILES: dict[str, bytes] = {
    "empty.txt": b"",
    "nul.txt": b"Title\n\x00\x01\x02binary",
    "latin1.txt": "Titel\nGr\u00fc\u00dfe\n".encode("latin-1"),
    "layout.txt": b"just one line and nothing else",
    "score.txt": "AI News 1h ago\n\nT 标题\n\n180\nHot 热度\n1\nQuality 质量\n1\nImpact 影响力\n\n"
                 "TL;DR\n\n  \u2022 x\n".encode(),
    "tldr.txt": "AI News 1h ago\n\nT 标题\n\nTL;DR\n\nFAQ\n".encode(),
    "broken.json": b'{"id": "abc",\n  "languages": ["en"\n',
}
EXPECTED_LINES = {"empty.txt": 1, "nul.txt": 2, "latin1.txt": 2, "layout.txt": 1, "score.txt": 5,
                  "tldr.txt": 5, "broken.json": 3}


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "seeds", tmp_path / "seeds")
    (tmp_path / "config.toml").write_text(
        '[store]\npath = "store"\n\n[ingest]\npaths = ["seeds"]\n', encoding="utf-8")
    return tmp_path


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under root with its mtime (ns) and bytes."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


def run(proj: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "digest", "--config", str(proj / "config.toml"), *args],
                          cwd=proj, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def quiet(config, paths=None, as_of=AS_OF):
    lines: list[str] = []
    report = ingest_paths(config, paths, as_of=as_of, echo=lines.append)
    return report, lines


# --- in process -----------------------------------------------------------------------


def test_seeds_must_show(proj: Path) -> None:
    config = load_config(proj / "config.toml")
    report, lines = quiet(config)  # default paths: [ingest] paths = seeds
    assert sorted(report.added) == ["3521ac04ccd50003", "45bcd535756f060a", "d00f45b54dddf6ad"]
    assert report.rejected == [] and report.files == 3
    assert lines[0] == "added 3521ac04ccd50003  China may have accessed Mythos"
    assert lines[-1].startswith("3 stories from 3 files: 3 added")
    store = Store(proj / "store")
    s1, s3, s4 = (store.get_story(i) for i in ("3521ac04ccd50003", "45bcd535756f060a", "d00f45b54dddf6ad"))
    assert s1.languages == s4.languages == ["en", "zh-Hans"]
    assert [s1.scores[k] for k in ("hot", "quality", "impact")] == [80, 70, 75]
    assert [s4.scores[k] for k in ("hot", "quality", "impact")] == [80, 75, 70]
    assert (iso(s1.published), iso(s1.updated)) == ("2026-11-22T03:00:00Z", "2026-11-22T10:00:00Z")
    assert s1.tldr["en"] and s1.tldr["zh-Hans"] and s4.tldr["en"] and s4.tldr["zh-Hans"]
    assert s3.languages == ["zh-Hant"] and s3.tldr_excerpt == ["zh-Hant"] and s3.source == "新智元"

    before = snapshot(proj / "store")
    report, lines = quiet(config)
    assert len(report.unchanged) == 3 and not report.added and not report.updated
    assert all(line.startswith("unchanged ") for line in lines[:3])
    assert snapshot(proj / "store") == before


def test_bad_files_are_rejected_quarantined_and_retried_when_changed(proj: Path) -> None:
    inbox = proj / "inbox"
    inbox.mkdir()
    for name, data in BAD_FILES.items():
        (inbox / name).write_bytes(data)
    shutil.copy(next((proj / "seeds").glob("001_*")), inbox)
    (inbox / "notes.csv").write_text("ignored,by,suffix\n")
    (inbox / ".hidden.txt").write_text("ignored: hidden\n")
    config = load_config(proj / "config.toml")

    report, lines = quiet(config, [inbox])
    assert report.added == ["3521ac04ccd50003"]  # the good file is still stored
    got = {Path(m.split(":")[0]).name: int(m.split(":")[1]) for m in report.rejected}
    assert got == EXPECTED_LINES
    store = Store(proj / "store")
    for name in BAD_FILES:
        q = store.quarantine_get(str((inbox / name).resolve()))
        assert q and len(q["fingerprint"]) == 64, name

    before = snapshot(proj / "store")
    report, lines = quiet(config, [inbox])
    assert report.rejected == [] and sorted(Path(p).name for p in report.skipped) == sorted(BAD_FILES)
    assert sum(": skipped (quarantined: line " in line for line in lines) == len(BAD_FILES)
    assert snapshot(proj / "store") == before

    # Fixed: stored, and out of quarantine. Changed but still bad: rejected again.
    (inbox / "tldr.txt").write_text("AI News 1h ago\n\nT 标题\n\nTL;DR\n\n  \u2022 ok\n")
    (inbox / "score.txt").write_bytes(BAD_FILES["score.txt"].replace(b"180", b"181"))
    report, _ = quiet(config, [inbox])
    assert len(report.added) == 1 and len(report.skipped) == len(BAD_FILES) - 2
    assert [Path(m.split(":")[0]).name for m in report.rejected] == ["score.txt"]
    assert "181" in report.rejected[0]
    assert store.quarantine_get(str((inbox / "tldr.txt").resolve())) is None


def test_oversized_file_rejected_without_reading(proj: Path) -> None:
    big = proj / "big.txt"
    with big.open("wb") as f:
        f.truncate(5 * 1024 * 1024 + 1)  # sparse: size counts, content never read
    report, _ = quiet(load_config(proj / "config.toml"), [big])
    assert len(report.rejected) == 1 and report.rejected[0].startswith(f"{big}:1: file is")
    report, _ = quiet(load_config(proj / "config.toml"), [big])
    assert report.rejected == [] and report.skipped == [str(big)]


def test_missing_path_and_duplicate_ids(proj: Path) -> None:
    config = load_config(proj / "config.toml")
    seed = next((proj / "seeds").glob("004_*"))
    copy = proj / "copy_d00f45b54dddf6ad.txt"
    shutil.copy(seed, copy)
    report, _ = quiet(config, [seed, copy, proj / "nope"])
    assert report.added == ["d00f45b54dddf6ad"]
    assert report.rejected[0] == f"{proj / 'nope'}: no such file or directory"
    assert report.rejected[1].startswith(f"{copy}:1: story id d00f45b54dddf6ad is also in")


def test_edited_card_keeps_published_and_moves_updated(proj: Path) -> None:
    config = load_config(proj / "config.toml")
    seed = next((proj / "seeds").glob("001_*"))
    quiet(config, [seed])
    text = seed.read_text(encoding="utf-8")
    # Three hours later the page says 12h ago / updated just now, with an edited title.
    seed.write_text(text.replace("9h ago Updated 2h ago 更新于 2小时前", "12h ago Updated 5m ago")
                    .replace("China may have accessed Mythos 中", "China may have accessed Mythos 5 中"),
                    encoding="utf-8")
    later = datetime(2026, 11, 22, 15, 0, 0, tzinfo=UTC)
    report, lines = quiet(config, [seed], as_of=later)
    assert report.updated == ["3521ac04ccd50003"]
    assert lines[0] == "updated 3521ac04ccd50003  China may have accessed Mythos 5"
    s = Store(proj / "store").get_story("3521ac04ccd50003")
    assert iso(s.published) == "2026-11-22T03:00:00Z"
    assert iso(s.updated) == "2026-11-22T14:55:00Z"


def test_json_with_explicit_times_wins_and_as_of_defaults_to_mtime(proj: Path) -> None:
    config = load_config(proj / "config.toml")
    seed = next((proj / "seeds").glob("001_*"))
    mtime = datetime(2026, 11, 20, 0, 0, 0, tzinfo=UTC).timestamp()
    os.utime(seed, (mtime, mtime))
    report, _ = ingest_paths(config, [seed], echo=lambda _line: None), None
    s = Store(proj / "store").get_story("3521ac04ccd50003")
    assert iso(s.published) == "2026-11-19T15:00:00Z"  # mtime − 9h
    d = s.to_dict() | {"published": "2026-11-01T00:00:00Z", "updated": "2026-11-02T00:00:00Z",
                       "title": {"en": "New title", "zh-Hans": "新标题"}}
    js = proj / "story.json"
    js.write_text(json.dumps(d, ensure_ascii=False), encoding="utf-8")
    report, _ = quiet(config, [js])
    assert report.updated == ["3521ac04ccd50003"]
    s = Store(proj / "store").get_story("3521ac04ccd50003")
    assert (iso(s.published), s.title["en"]) == ("2026-11-01T00:00:00Z", "New title")


# --- the CLI end to end ---------------------------------------------------------------


def test_cli_ingest_end_to_end(proj: Path) -> None:
    r = run(proj, "ingest", "seeds/", "--as-of", AS_OF_TEXT)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert sorted(line.split()[0] for line in out[:3]) == ["added"] * 3
    assert "3 added" in out[3] and r.stderr == ""
    rank = json.loads(run(proj, "rank", "--json", "--now", AS_OF_TEXT).stdout)
    assert {s["id"]: s["published"] for s in rank}["3521ac04ccd50003"] == "2026-11-22T03:00:00Z"

    before = snapshot(proj / "store")
    r = run(proj, "ingest", "seeds/", "--as-of", AS_OF_TEXT)
    assert r.returncode == 0, r.stderr
    assert [line.split()[0] for line in r.stdout.splitlines()[:3]] == ["unchanged"] * 3
    assert "3 unchanged" in r.stdout
    assert snapshot(proj / "store") == before

    bad = proj / "bad"
    bad.mkdir()
    (bad / "score.txt").write_bytes(BAD_FILES["score.txt"])
    (bad / "empty.txt").write_bytes(b"")
    r = run(proj, "ingest", "seeds", "bad", "--as-of", AS_OF_TEXT)
    assert r.returncode == 1
    assert "bad/empty.txt:1: file is empty" in r.stderr
    assert "bad/score.txt:5: score 'hot' must be a whole number 0-100, got '180'" in r.stderr
    assert "3 unchanged" in r.stdout and "2 rejected" in r.stdout
    r = run(proj, "ingest", "bad")
    assert r.returncode == 0 and r.stdout.count(": skipped (quarantined: line ") == 2


def test_cli_default_paths_and_usage_errors(proj: Path) -> None:
    r = run(proj, "ingest")  # [ingest] paths, as_of = each file's mtime
    assert r.returncode == 0 and "3 added" in r.stdout
    r = run(proj, "ingest", "--as-of", "not-a-time")
    assert r.returncode == 2 and "ISO 8601" in r.stderr


def test_progress_bar_only_on_a_terminal(proj: Path) -> None:
    import pty

    many = proj / "many"
    many.mkdir()
    text = next((proj / "seeds").glob("004_*")).read_bytes()
    for i in range(25):
        (many / f"{i:02d}_{i:016x}.txt").write_bytes(text)
    r = run(proj, "ingest", "many", "--as-of", AS_OF_TEXT)  # stderr is a pipe: no bar
    assert r.returncode == 0 and r.stderr == "" and "25 added" in r.stdout
    main, sub = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "digest", "--config", str(proj / "config.toml"),
                            "ingest", "many", "--as-of", AS_OF_TEXT], cwd=proj, stdout=subprocess.PIPE,
                           stderr=sub, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
        os.close(sub)
        seen = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO once the child side is closed and drained
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(main)
    assert p.returncode == 0 and "25 unchanged" in p.stdout
    assert b"25/25" in seen and b"[####" in seen


# --- a plain article's id is a hash of its title: an edited title updates that story ---


def _quiet(_line: str) -> None:
    pass


ARTICLE = """{title}

The first paragraph of the article says what happened, in a full sentence.

A second paragraph adds some detail to it.
"""


def test_editing_a_plain_articles_title_updates_the_same_story(empty_config, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    f = inbox / "my-article.txt"  # no hex id in the name: the id is a hash of the title
    f.write_text(ARTICLE.format(title="Labs publish a safety report"), encoding="utf-8")
    first = ingest_paths(empty_config, [inbox], as_of=AS_OF, echo=_quiet)
    (sid,) = first.added
    f.write_text(ARTICLE.format(title="Labs publish a 53-page safety report"), encoding="utf-8")
    # Without an explicit --as-of (the daemon's ingest), a derived time is kept; an explicit
    # one re-resolves it (tests/cli/test_ops.py).
    second = ingest_paths(empty_config, [inbox], echo=_quiet)
    assert second.added == [] and second.updated == [sid]
    store = Store(empty_config.store.path)
    assert store.story_count() == 1
    stored = store.get_story(sid)
    assert stored.title == {"en": "Labs publish a 53-page safety report"}
    assert stored.published == AS_OF  # derived time: kept from the first ingest
    again = ingest_paths(empty_config, [inbox], echo=_quiet)
    assert again.unchanged == [sid]


def test_two_files_with_different_titles_stay_two_stories(empty_config, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.txt").write_text(ARTICLE.format(title="First story"), encoding="utf-8")
    ingest_paths(empty_config, [inbox], as_of=AS_OF, echo=_quiet)
    (inbox / "b.txt").write_text(ARTICLE.format(title="Second story"), encoding="utf-8")
    report = ingest_paths(empty_config, [inbox], as_of=AS_OF, echo=_quiet)
    assert len(report.added) == 1 and len(report.unchanged) == 1
    assert Store(empty_config.store.path).story_count() == 2
