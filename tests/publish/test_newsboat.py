"""newsboat (a real feed reader) reads every served RSS/Atom feed with no error, then polls with 304s."""

from __future__ import annotations

import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.support.web import feed_paths, free_port, publish_seeds, running, write_config

pytestmark = pytest.mark.newsboat  # tests/conftest.py: external; a missing newsboat fails `make test`

# newsboat's log levels 1-4: USERERROR, CRITICAL, ERROR, WARN
BAD_LINE = re.compile(r"^\[[^\]]+\] (USERERROR|CRITICAL|ERROR|WARN(ING)?):", re.M)


def reload(home: Path, log: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["newsboat", "-x", "reload", "-u", str(home / "urls"), "-c", str(home / "cache.db"),
         "-C", str(home / "config"), "-l", "6", "-d", str(log)],
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        capture_output=True, text=True, timeout=120,
    )


def test_newsboat_reads_the_served_feeds(tmp_path):
    config = write_config(tmp_path, free_port())
    publish_seeds(config)
    # newsboat 2.21 reads RSS and Atom; JSON Feed is not among its formats
    urls = [config.site.base_url + p for p in feed_paths(config) if not p.endswith(".json")]
    home = tmp_path / "home"
    home.mkdir()
    (home / "urls").write_text("\n".join(urls) + "\n")
    (home / "config").write_text("")
    with running(config):
        # newsboat stores a feed's ETag only from its second reload on, so the third
        # reload is the first that can be answered with 304
        runs = [reload(home, tmp_path / f"newsboat-{i}.log") for i in (1, 2, 3)]
    for i, run in enumerate(runs, 1):
        log = (tmp_path / f"newsboat-{i}.log").read_text(errors="replace")
        assert run.returncode == 0, run.stderr
        assert not BAD_LINE.findall(log), BAD_LINE.findall(log)[:5]
        assert "Error" not in run.stderr and "error" not in run.stdout.lower()

    db = sqlite3.connect(home / "cache.db")
    feeds = dict(db.execute("SELECT rssurl, title FROM rss_feed").fetchall())
    assert set(feeds) == set(urls) and all(feeds.values())
    guids = {g for (g,) in db.execute("SELECT guid FROM rss_item")}
    # one item per language version of a story, however many feeds carry it
    assert guids == {f"urn:digest:story:{sid}" for sid in (
        "3521ac04ccd50003:en", "3521ac04ccd50003:zh-Hans", "45bcd535756f060a:zh-Hant",
        "d00f45b54dddf6ad:en", "d00f45b54dddf6ad:zh-Hans")}
    stored = dict(db.execute("SELECT rssurl, etag FROM rss_feed").fetchall())
    assert all(e.startswith('"') for e in stored.values())

    third = (tmp_path / "newsboat-3.log").read_text(errors="replace")
    assert third.count("lastmodified_callback: lastmodified = ") == len(urls)
    assert "handing over data to parse_buffer" not in third  # every feed answered 304


@pytest.mark.parametrize("name", ["rss.xml", "atom.xml"])
def test_newsboat_subscribed_to_en_and_zh_shows_every_item_of_each(tmp_path, name):
    """newsboat keeps one item per guid across all feeds: had the English and the Chinese
    version one id, the items of one feed would move into the other. (One format at a
    time: the RSS and the Atom file of one feed are the same items, by design.)"""
    config = write_config(tmp_path, free_port())
    publish_seeds(config)
    out = config.feeds.output
    paths = [f"feeds/{k}/{name}" for k in ("en", "zh")]
    urls = [config.site.base_url + p for p in paths]
    home = tmp_path / "home"
    home.mkdir()
    (home / "urls").write_text("\n".join(urls) + "\n")
    (home / "config").write_text("")
    with running(config):
        run = reload(home, tmp_path / "newsboat.log")
    assert run.returncode == 0, run.stderr
    db = sqlite3.connect(home / "cache.db")
    shown: dict[str, set[str]] = {}
    for feedurl, guid in db.execute("SELECT feedurl, guid FROM rss_item WHERE deleted = 0"):
        shown.setdefault(feedurl, set()).add(guid)
    for url, rel in zip(urls, paths, strict=True):
        blob = (out / rel).read_bytes()
        want = set(re.findall(rb"<(?:guid|id)[^>]*>(urn:digest:story:[^<]+)</", blob))
        assert want and shown.get(url) == {w.decode() for w in want}, (rel, shown.get(url))
    en, zh = shown[urls[0]], shown[urls[1]]
    assert len(en) == 2 and len(zh) == 3 and not en & zh
