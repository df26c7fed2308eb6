"""Issue 17.1: a file whose time is at the edge of what the platform or datetime allows (an
mtime of 9999-12-31 or @1e15 on tmpfs, 2446 on ext4, a card aged '99999 weeks ago', a stated
time past year 9999 in UTC, `--as-of 9999-12-31T23:00Z`) is one `FILE:LINE: reason`, never a
traceback that stops the run; and no story is dated in the future, whatever dated it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.errors import DigestError, ParseError
from digest.ingest import parse_file, parse_story
from digest.pipeline import ingest_paths
from digest.store import Store
from tests.support.send import AS_OF

REPO = Path(__file__).resolve().parents[2]
GOOD = REPO / "seeds" / "001_3521ac04ccd50003.txt"
CARD = "AI News AI资讯 {age}\n\n{title}\nTL;DR\n• A bullet that says something here.\n"


def _quiet(_line: str) -> None:
    pass


def _inbox(root: Path) -> Path:
    inbox = root / "inbox"
    inbox.mkdir()
    shutil.copy(GOOD, inbox / "001_3521ac04ccd50003.txt")
    return inbox


def _set_mtime(path: Path, seconds: int) -> None:
    ns = seconds * 1_000_000_000
    try:
        os.utime(path, ns=(ns, ns))
    except (OSError, OverflowError, ValueError) as e:
        pytest.skip(f"this file system refuses the time: {e}")
    if path.stat().st_mtime_ns != ns:
        pytest.skip(f"this file system stored {path.stat().st_mtime_ns} ns, not {ns}")


@pytest.fixture
def shm() -> Iterator[Path]:
    """A directory on tmpfs, which keeps 64-bit times that ext4 clamps to 2446."""
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm")
    d = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="digest-times-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("seconds", [
    253402214400,           # 9999-12-31T00:00:00Z: a datetime, but 8000 years ahead
    10 ** 15,               # @1e15: past datetime's year 9999 (OverflowError/ValueError)
    -(10 ** 14),            # far before year 1
], ids=["9999-12-31", "at-1e15", "before-year-1"])
def test_an_mtime_at_the_platform_edge_rejects_that_file_only(empty_config, shm: Path,
                                                              seconds: int) -> None:
    inbox = _inbox(shm)
    bad = inbox / "edge.txt"
    bad.write_text(CARD.format(age="2 hours ago", title="Edge of time card"), encoding="utf-8")
    _set_mtime(bad, seconds)
    report = ingest_paths(empty_config, [inbox], echo=_quiet)
    assert report.added == ["3521ac04ccd50003"]
    assert len(report.rejected) == 1 and report.rejected[0].startswith(f"{bad}:1: modification time")
    assert report.rejections[0].hint
    assert Store(empty_config.store.path).story_count() == 1


def test_an_ext4_mtime_in_2446_does_not_date_a_story_in_the_future(empty_config,
                                                                   tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    bad = inbox / "future.txt"
    bad.write_text(CARD.format(age="2 hours ago", title="A card from 2446"), encoding="utf-8")
    _set_mtime(bad, 15032385535)  # the largest time ext4 keeps: 2446-05-10
    report = ingest_paths(empty_config, [inbox], echo=_quiet)
    assert report.added == ["3521ac04ccd50003"]
    assert report.rejected == [f"{bad}:1: modification time 2446-05-10T22:38:55Z is in the future"]


def test_an_mtime_slightly_ahead_dates_the_story_now_at_the_latest(empty_config,
                                                                   tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    f = inbox / "skew.txt"
    f.write_text(CARD.format(age="just now", title="Clock skew card"), encoding="utf-8")
    ahead = int((datetime.now(UTC) + timedelta(hours=3)).timestamp())
    _set_mtime(f, ahead)
    report = ingest_paths(empty_config, [inbox], echo=_quiet)
    assert not report.rejected and len(report.added) == 1
    story = Store(empty_config.store.path).get_story(report.added[0])
    assert story is not None and story.published <= datetime.now(UTC)


def test_an_age_reaching_before_year_1_is_a_parse_error_at_the_header(empty_config,
                                                                      tmp_path: Path) -> None:
    text = CARD.format(age="99999 weeks ago", title="An ancient card")
    with pytest.raises(ParseError) as e:
        parse_story(text, "old.txt", datetime(1900, 1, 1, tzinfo=UTC))
    assert e.value.line == 1 and "99999 weeks ago" in e.value.reason and e.value.hint
    # Through ingest: an mtime of 1901 (ext4's earliest) and an age of 1,917 years.
    inbox = _inbox(tmp_path)
    bad = inbox / "old.txt"
    bad.write_text(text, encoding="utf-8")
    _set_mtime(bad, -(2 ** 31))
    report = ingest_paths(empty_config, [inbox], echo=_quiet)
    assert report.added == ["3521ac04ccd50003"]
    assert len(report.rejected) == 1 and report.rejected[0].startswith(f"{bad}:1: age ")


@pytest.mark.parametrize("when", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+01:00"])
def test_a_stated_time_outside_the_utc_years_is_a_parse_error(when: str) -> None:
    text = ('{"id": "edgeofutc0000001", "languages": ["en"], "title": {"en": "Edge"},\n'
            f' "published": "{when}"}}')
    with pytest.raises(ParseError) as e:
        parse_story(text, "x.json", AS_OF)
    assert e.value.line == 2 and e.value.reason.startswith("published: not an ISO 8601 time")
    card = CARD.format(age=when, title="A dated card")
    with pytest.raises(ParseError) as e:
        parse_story(card, "card.txt", AS_OF)
    assert e.value.line == 1


def test_as_of_at_the_end_of_time_is_refused_not_a_traceback(empty_config, tmp_path: Path) -> None:
    end = datetime(9999, 12, 31, 23, tzinfo=UTC)
    # The pure parser never overflows computing its "a day later" bound.
    card = CARD.format(age="2 hours ago", title="Late card")
    assert parse_file(card, "late.txt", end)[0].story.published == end - timedelta(hours=2)
    inbox = _inbox(tmp_path)
    with pytest.raises(DigestError) as e:
        ingest_paths(empty_config, [inbox], as_of=end, echo=_quiet)
    assert "--as-of 9999-12-31T23:00:00Z is in the future" in e.value.message and e.value.hint
    cfg = tmp_path / "config.toml"
    run = subprocess.run([sys.executable, "-m", "digest", "--config", str(cfg), "ingest",
                          str(inbox), "--as-of", "9999-12-31T23:00:00Z"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "in the future" in run.stderr and "hint:" in run.stderr


def test_a_symlink_in_an_inbox_is_rejected_as_file_line(empty_config, tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    (inbox / "link.txt").symlink_to(GOOD)
    report = ingest_paths(empty_config, [inbox], echo=_quiet)
    assert report.rejected == [f"{inbox / 'link.txt'}:1: is a symlink; not followed inside "
                               "an inbox directory"]
    assert report.added == ["3521ac04ccd50003"]
