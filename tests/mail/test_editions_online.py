"""Choose your digests + editions on the web (issue 15), end to end through the CLI: a daily
and a weekly digest, subscribers with the default, with `--digests weekly` and with both,
a real aiosmtpd sink; every mail's `Archived-At` page linked from its body, served by the
web app with the stories and nothing personal; the editions feeds in feeds.opml."""

from __future__ import annotations

import re
import shutil
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.cli import main
from digest.config import load_config
from digest.publish.editions import EditionRecord, load_records, remember
from digest.store import Store
from tests.support.send import REPO, SEEDS, parts
from tests.support.smtp_server import SMTPServer
from tests.support.web import free_port, running

pytestmark = pytest.mark.usefixtures("secret")

NOW = "2026-11-22T08:00:00Z"
WEEKLY = """
[[digests]]
# The Monday digest.
name = "weekly"
# Mondays 07:00 local.
cron = "0 7 * * 1"
# Stories per edition.
max_stories = 5
# A week of news.
max_age_hours = 168.0
# Subject.
subject = "AI News Weekly · AI资讯周报 — {date}"
"""


def _project(tmp: Path, smtp_port: int, web_port: int) -> Path:
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    text = text.replace('base_url = "http://127.0.0.1:8000/"',
                        f'base_url = "http://127.0.0.1:{web_port}/"')
    text = text.replace('transport = "maildir"', 'transport = "smtp"')
    text = re.sub(r"(?m)^port = 25$", f"port = {smtp_port}", text)
    text = re.sub(r"(?m)^port = 8000$", f"port = {web_port}", text)
    (tmp / "config.toml").write_text(text + WEEKLY, encoding="utf-8")
    shutil.copytree(SEEDS, tmp / "seeds")
    return tmp / "config.toml"


def _cli(path: Path, *args: str) -> int:
    return main(["--config", str(path), *args])


def test_each_subscriber_gets_the_digests_they_chose_and_every_mail_links_its_public_page(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    web_port = free_port()
    with SMTPServer() as sink:
        path = _project(tmp_path, sink.port, web_port)
        config = load_config(path)
        assert config.smtp.port == sink.port and config.web.port == web_port
        assert config.default_digests() == ("daily",)  # config.toml marks the daily default
        assert _cli(path, "ingest", "--as-of", "2026-11-22T06:00:00Z") == 0
        assert _cli(path, "subscribers", "add", "default@example.com") == 0
        assert _cli(path, "subscribers", "add", "weekly@example.com", "--digests", "weekly") == 0
        assert _cli(path, "subscribers", "add", "both@example.com", "--digests",
                    "daily,weekly") == 0
        capsys.readouterr()
        assert _cli(path, "subscribers", "add", "x@example.com", "--digests", "monthly") == 1
        err = capsys.readouterr().err
        assert "unknown digest 'monthly'" in err and "daily, weekly" in err

        assert _cli(path, "send", "--now", NOW) == 0
        assert _cli(path, "send", "--digest", "weekly", "--now", NOW) == 0
        msgs = sink.wait_for(4)
        assert len(msgs) == 4
        got: dict[str, list[str]] = defaultdict(list)
        mails = [m.parsed() for m in msgs]
        for m in mails:
            got[str(m["To"])].append("weekly" if "Weekly" in str(m["Subject"]) else "daily")
        assert {k: sorted(v) for k, v in got.items()} == {
            "default@example.com": ["daily"], "weekly@example.com": ["weekly"],
            "both@example.com": ["daily", "weekly"]}

        # Dedupe per digest: the reader of both gets the week's best in the weekly, the very
        # stories the weekly-only reader gets, although the daily already carried them.
        def stories(m) -> list[str]:
            return re.findall(r"/stories/([0-9a-f]+)\.html#en\b", parts(m)[0])

        weekly = {str(m["To"]): stories(m) for m in mails if "Weekly" in str(m["Subject"])}
        daily_both = next(stories(m) for m in mails
                          if "Daily" in str(m["Subject"]) and m["To"] == "both@example.com")
        assert weekly["both@example.com"] == weekly["weekly@example.com"]
        assert set(daily_both) & set(weekly["both@example.com"])

        base = config.site.base_url
        pages = {}
        for m in mails:
            url = str(m["Archived-At"]).strip()
            assert url.startswith("<") and url.endswith(">"), url
            url = url[1:-1]
            assert re.fullmatch(re.escape(base) + r"editions/(daily|weekly)/2026-11-22/en-zh\.html",
                                url), url
            text, html = parts(m)
            assert url in text and f'href="{url}"' in html  # "View online" in both parts
            pages[url] = stories(m)

        with running(config):
            for url, ids in pages.items():
                with urllib.request.urlopen(url, timeout=10) as r:
                    assert r.status == 200
                    page = r.read().decode("utf-8")
                for sid in ids:  # the stories the mails carried
                    assert f"/stories/{sid}.html" in page
                assert not re.search(r"[\w.+-]+@[\w-]+\.\w", page)  # no address
                assert not re.search(r"[?&]t=", page) and "example.com" not in page  # no token
                assert "unsubscribe" not in page.lower() and "preferences" not in page.lower()
            with urllib.request.urlopen(base + "editions/weekly/index.html", timeout=10) as r:
                archive = r.read().decode("utf-8")
            assert 'href="2026-11-22/en-zh.html"' in archive

        # A feed listed in feeds.opml carries the edition, linking its page, with a stable id.
        out = config.feeds.output
        opml = (out / "feeds.opml").read_text(encoding="utf-8")
        listed = re.findall(r'xmlUrl="([^"]+)"', opml)
        atom_url = base + "feeds/editions/weekly/en-zh/atom.xml"
        assert atom_url in listed
        atom = (out / atom_url.removeprefix(base)).read_text(encoding="utf-8")
        assert "<id>urn:digest:edition:weekly:2026-11-22:en-zh</id>" in atom
        assert f'href="{base}editions/weekly/2026-11-22/en-zh.html"' in atom
        index = (out / "index.html").read_text(encoding="utf-8")
        assert 'rel="alternate" type="application/atom+xml" title="AI News Weekly' in index
        assert f'href="{atom_url}"' in index

        # Nothing new: a rerun sends nothing and a publish rewrites nothing.
        assert _cli(path, "send", "--now", NOW) == 0
        capsys.readouterr()
        assert _cli(path, "publish") == 0
        assert ": 0 written" in capsys.readouterr().out
        assert len(sink.messages) == 4


def test_editions_feeds_validate(tmp_path: Path) -> None:
    """Every editions feed parses cleanly in feedparser with one `updated` per entry, and the
    JSON Feeds are schema-valid. (The W3C validator, not installable here, runs by hand:
    scripts/validate_feeds.py.)"""
    import json

    import feedparser

    from digest.pipeline import publish
    from tests.support.publish import jsonfeed_validator
    from tests.support.send import make_project

    config = make_project(tmp_path)
    store = Store(config.store.path)
    ids = [s.id for s in store.list_stories()]
    at = datetime(2026, 11, 22, 8, tzinfo=UTC)
    value = None
    for day, langs in (("2026-11-21", "en"), ("2026-11-22", "en"), ("2026-11-22", "en-zh"),
                       ("2026-11-22", "zh")):  # two dates first sent in one run: one `at`
        value = remember(value, EditionRecord("daily", day, langs, tuple(ids), at))
    store.meta_set("editions:daily", value)
    report = publish(config, now=at)
    feeds = [f for f in report.feeds if f.startswith("feeds/editions/")]
    assert len(feeds) == 9
    problems = []
    schema = jsonfeed_validator()
    for rel in feeds:
        data = (config.feeds.output / rel).read_bytes()
        if rel.endswith(".json"):
            problems += [f"{rel}: {e.message}" for e in schema.iter_errors(json.loads(data))]
            continue
        parsed = feedparser.parse(data)
        if parsed.bozo:
            problems.append(f"{rel}: {parsed.bozo_exception}")
        stamps = [e.get("updated") for e in parsed.entries]
        if len(set(stamps)) != len(stamps):
            problems.append(f"{rel}: two entries share an updated time: {stamps}")
        if not parsed.entries:
            problems.append(f"{rel}: no entries")
    assert not problems, problems


def test_remember_keeps_the_first_selection_and_the_newest_dates() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    value = remember(None, EditionRecord("daily", "2026-01-01", "en", ("a",), at))
    assert remember(value, EditionRecord("daily", "2026-01-01", "en", ("b",), at)) is None
    for day in range(2, 8):
        value = remember(value, EditionRecord("daily", f"2026-01-0{day}", "en", ("a",), at),
                         keep=3) or value
    assert [r.edition for r in load_records("daily", value)] == [
        "2026-01-05", "2026-01-06", "2026-01-07"]
    # hand edits never become paths
    assert load_records("daily", [{"edition": "../x", "langs": "en", "stories": [], "at": "z"},
                                  {"edition": "2026-01-01", "langs": "fr", "stories": []}]) == []


def test_sent_ids_are_told_apart_per_digest_and_survive_a_checkpoint(tmp_path: Path) -> None:
    from digest.store.journal_state import JournalState

    store = Store(tmp_path / "store")
    rec = {"edition": "2026-11-22", "email": "a@example.com", "state": "sent",
           "at": "2026-11-22T08:00:00Z", "message_id": "<x@y>"}
    store.journal.append([{**rec, "digest": "daily", "stories": ["s1", "s2"]},
                          {**rec, "digest": "weekly", "stories": ["s3"]}])
    j = store.journal
    assert j.sent_story_ids("a@example.com") == {"s1", "s2", "s3"}
    assert j.sent_story_ids("a@example.com", "daily") == {"s1", "s2"}
    assert j.sent_story_ids("A@example.com", "weekly") == {"s3"}
    assert j.sent_story_ids("a@example.com", "monthly") == frozenset()
    # a checkpoint written before digests were told apart: its ids count for every digest
    old = JournalState.load({"sent": {"a@example.com": {"2026-11-20T08:00:00Z": [0]}},
                             "lists": [["old"]], "latest": []})
    old.apply({**rec, "digest": "daily", "stories": ["new"]})
    assert old.sent_ids("a@example.com", "weekly") == {"old"}
    assert old.sent_ids("a@example.com", "daily") == {"old", "new"}
    again = JournalState.load(old.dump({}))
    assert again.sent_ids("a@example.com", "weekly") == {"old"}
    assert again.sent_ids("a@example.com", "daily") == {"old", "new"}


def test_csv_digests_column_and_the_default(tmp_path: Path) -> None:
    import dataclasses

    from digest.config import DigestConfig
    from digest.pipeline.subscribing import import_csv

    csv = tmp_path / "subs.csv"
    csv.write_text("email,languages,digests\na@example.com,en,weekly\nb@example.com,zh,\n"
                   "c@example.com,en,\"daily,weekly\"\nd@example.com,en,monthly\n",
                   encoding="utf-8")
    store = Store(tmp_path / "store")
    report = import_csv(store, csv, datetime(2026, 11, 22, tzinfo=UTC), ("daily", "weekly"))
    assert report.added == 3 and len(report.bad) == 1
    assert "unknown digest 'monthly'" in report.bad[0] and "subs.csv:5" in report.bad[0]
    got = {s.email: s.digests for s in store.list_subscribers()}
    assert got == {"a@example.com": ("weekly",), "b@example.com": (),
                   "c@example.com": ("daily", "weekly")}
    assert "digests" not in store.get_subscriber("b@example.com").to_dict()  # old rows' shape
    config = load_config(REPO / "config.toml")
    two = dataclasses.replace(config, digests=(DigestConfig("daily"), DigestConfig("weekly")))
    assert two.default_digests() == ("daily", "weekly")  # none marked: all of them
    marked = dataclasses.replace(two, digests=(DigestConfig("daily"),
                                               DigestConfig("weekly", default=True)))
    assert marked.digests_of(()) == ("weekly",)
    assert marked.digests_of(("gone",)) == ("weekly",)  # a removed digest: the defaults
    assert marked.digests_of(("daily", "gone")) == ("daily",)
