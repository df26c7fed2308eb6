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
    # one item per story, however many feeds carry it: the ids are stable across feeds
    assert len(guids) == 3 and all(g.endswith(("3521ac04ccd50003", "45bcd535756f060a", "d00f45b54dddf6ad")) for g in guids)
    stored = dict(db.execute("SELECT rssurl, etag FROM rss_feed").fetchall())
    assert all(e.startswith('"') for e in stored.values())

    third = (tmp_path / "newsboat-3.log").read_text(errors="replace")
    assert third.count("lastmodified_callback: lastmodified = ") == len(urls)
    assert "handing over data to parse_buffer" not in third  # every feed answered 304
