"""Review findings (ingest, config, CLI, sending): one test per finding, each of which failed
before its fix. Real parts throughout: files on disk, the store, aiosmtpd on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from tests.support.send import AS_OF, NOW, SECRET, add_subscribers, make_project, story, sub
from tests.support.smtp_server import Faults, SMTPServer, free_port

from digest.cli import main
from digest.config import ConfigError, parse_config
from digest.mail.transports import SmtpTransport
from digest.errors import ParseError
from digest.ingest import parse_story
from digest.pipeline import ingest_paths
from digest.pipeline.sending import secret_fingerprint, send_digest, site_secret
from digest.mail.render import plan_stories, subject_for
from digest.store import Store

REPO = Path(__file__).resolve().parents[2]
SHIPPED = (REPO / "config.toml").read_text(encoding="utf-8")


def _quiet(_line: str) -> None:
    pass


def _config_error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        parse_config(text, tmp_path / "config.toml")
    return e.value


def _edit(old: str, new: str, text: str = SHIPPED) -> tuple[str, int]:
    """Replace one line of the shipped config; return the text and that line's number."""
    assert text.count(old) == 1, old
    line = text[: text.index(old)].count("\n") + 1
    return text.replace(old, new), line


# --- 1. digests skip stale stories -----------------------------------------------------------


def _aged(id_: str, hours: float) -> object:
    s = story(id_, ["en"], {"en": id_}, {"en": ["x"]})
    s.published = s.updated = NOW - timedelta(hours=hours)
    return s


def test_plan_stories_leaves_out_stories_older_than_max_age() -> None:
    ranked = [_aged("old", 24 * 365), _aged("edge", 71.9), _aged("late", 72.1), _aged("new", 1)]
    got = plan_stories(ranked, set(), [], 10, now=NOW, max_age=timedelta(hours=72))
    assert [s.id for s in got] == ["edge", "new"]
    # without an edition time nothing is filtered (the old call shape still works)
    assert len(plan_stories(ranked, set(), [], 10)) == 4


def test_a_new_subscriber_does_not_get_the_back_catalogue(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    config = make_project(tmp_path)  # seeds ingested at AS_OF (published hours before)
    assert config.digests[0].max_age_hours == 72.0
    add_subscribers(config, sub("late@example.com"))
    year_later = AS_OF + timedelta(days=365)
    report = send_digest(config, now=year_later)
    assert report.sent == [] and report.nothing_new == ["late@example.com"]
    assert send_digest(config, now=NOW).sent == ["late@example.com"]


@pytest.mark.parametrize("value,problem", [
    ("0", "must be above 0"), ("-1.0", "must be above 0"), ("inf", "finite"),
    ("nan", "finite"), ("1e300", "at most"), ('"72"', "expected a number"),
])
def test_max_age_hours_is_validated(tmp_path: Path, value: str, problem: str) -> None:
    text, line = _edit("max_age_hours = 72.0", f"max_age_hours = {value}")
    err = _config_error(tmp_path, text)
    assert err.message.startswith(f"{tmp_path / 'config.toml'}:{line}: "
                                  "[digests.1].max_age_hours: "), err.message
    assert problem in err.message


# --- 2. future-dated stories are refused -----------------------------------------------------

JSON_STORY = """{
  "id": "future0000000001",
  "languages": ["en"],
  "title": {"en": "From the future"},
  "tldr": {"en": ["It has not happened yet."]},
  "published": "%s"
}
"""


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59Z", "2026-11-23T06:00:01Z"])
def test_json_published_in_the_future_is_a_parse_error_at_its_line(when: str) -> None:
    with pytest.raises(ParseError) as e:
        parse_story(JSON_STORY % when, "x.json", AS_OF)
    assert e.value.line == 6 and "published" in e.value.reason and "future" in e.value.reason
    assert e.value.hint


def test_json_published_within_a_day_of_as_of_is_accepted() -> None:
    s = parse_story(JSON_STORY % "2026-11-23T05:59:59Z", "x.json", AS_OF)
    assert s.published == datetime(2026, 11, 23, 5, 59, 59, tzinfo=UTC)


def test_json_updated_in_the_future_is_refused_too() -> None:
    text = JSON_STORY % "2026-11-22T05:00:00Z"
    text = text.replace('"published"', '"updated": "9999-01-01T00:00:00Z",\n  "published"')
    with pytest.raises(ParseError) as e:
        parse_story(text, "x.json", AS_OF)
    assert e.value.line == 6 and e.value.reason.startswith("updated:")


CARD = """AI News AI资讯 {date}

Card from the future
TL;DR
• A bullet that says something.
"""


def test_card_header_date_in_the_future_is_a_parse_error_at_the_header() -> None:
    with pytest.raises(ParseError) as e:
        parse_story(CARD.format(date="9999-12-31"), "card.txt", AS_OF)
    assert e.value.line == 1 and "future" in e.value.reason
    ok = parse_story(CARD.format(date="2026-11-21"), "card.txt", AS_OF)
    assert ok.published == datetime(2026, 11, 21, tzinfo=UTC)


def test_ingest_rejects_and_quarantines_a_future_story(tmp_path: Path) -> None:
    config = make_project(tmp_path, ingest=False)
    f = tmp_path / "inbox" / "future.json"
    f.parent.mkdir()
    f.write_text(JSON_STORY % "9999-12-31T23:59:59Z", encoding="utf-8")
    report = ingest_paths(config, [f.parent], echo=_quiet)  # as_of: the file's mtime
    assert report.rejected == [f"{f}:6: published: '9999-12-31T23:59:59Z' is in the future "
                               f"(more than a day after {report.rejected[0].split('after ')[1]}"]
    assert Store(config.store.path).story_count() == 0


# --- 3. editing an article's title updates the story ----------------------------------------

ARTICLE = """{title}

The first paragraph of the article says what happened, in a full sentence.

A second paragraph adds some detail to it.
"""


def test_editing_a_plain_articles_title_updates_the_same_story(tmp_path: Path) -> None:
    config = make_project(tmp_path, ingest=False)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    f = inbox / "my-article.txt"  # no hex id in the name: the id is a hash of the title
    f.write_text(ARTICLE.format(title="Labs publish a safety report"), encoding="utf-8")
    first = ingest_paths(config, [inbox], as_of=AS_OF, echo=_quiet)
    (sid,) = first.added
    f.write_text(ARTICLE.format(title="Labs publish a 53-page safety report"), encoding="utf-8")
    second = ingest_paths(config, [inbox], as_of=AS_OF + timedelta(hours=1), echo=_quiet)
    assert second.added == [] and second.updated == [sid]
    store = Store(config.store.path)
    assert store.story_count() == 1
    stored = store.get_story(sid)
    assert stored.title == {"en": "Labs publish a 53-page safety report"}
    assert stored.published == AS_OF  # derived time: kept from the first ingest
    again = ingest_paths(config, [inbox], as_of=AS_OF + timedelta(hours=2), echo=_quiet)
    assert again.unchanged == [sid]


def test_two_files_with_different_titles_stay_two_stories(tmp_path: Path) -> None:
    config = make_project(tmp_path, ingest=False)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.txt").write_text(ARTICLE.format(title="First story"), encoding="utf-8")
    ingest_paths(config, [inbox], as_of=AS_OF, echo=_quiet)
    (inbox / "b.txt").write_text(ARTICLE.format(title="Second story"), encoding="utf-8")
    report = ingest_paths(config, [inbox], as_of=AS_OF, echo=_quiet)
    assert len(report.added) == 1 and len(report.unchanged) == 1
    assert Store(config.store.path).story_count() == 2


# --- 4. permanent failures are final; transient ones are spaced ------------------------------


class _RejectData:
    """Takes every recipient, then refuses DATA for good (554), counting attempts."""

    def __init__(self) -> None:
        self.attempts = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        with self.lock:
            self.attempts += 1
        return "554 5.7.1 message refused as spam"


def _smtp_config(tmp_path: Path, port: int):
    return make_project(tmp_path, transport="smtp", host="127.0.0.1", port=port,
                        sender="AI News <digest@news.example.org>", timeout=5.0, retries=2,
                        pool_size=1)


def _send(config, now: datetime, **kw):
    with SmtpTransport(config.smtp, backoff=0.01) as t:
        return send_digest(config, now=now, transport=t, **kw)


@pytest.fixture
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)


@pytest.mark.usefixtures("_secret")
def test_a_5xx_at_data_is_final_for_the_edition(tmp_path: Path) -> None:
    handler = _RejectData()
    port = free_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        config = _smtp_config(tmp_path, port)
        add_subscribers(config, sub("a@example.com"))
        first = _send(config, NOW, due_only=True)
        assert first.sent == [] and len(first.failed) == 1
        assert "554" in first.failed[0][1] and handler.attempts == 1  # no SMTP-level retry
        recs = list(Store(config.store.path).journal.records())
        assert recs[-1]["state"] == "failed" and recs[-1]["permanent"] is True
        # every later tick (and a manual send) leaves it alone but still says why
        for later in (NOW + timedelta(minutes=1), NOW + timedelta(hours=1)):
            again = _send(config, later, due_only=True)
            assert again.failed == [] and again.sent == []
            assert again.given_up == [("a@example.com", first.failed[0][1].split(" (")[0])]
        manual = _send(config, NOW + timedelta(hours=1))
        assert manual.given_up and handler.attempts == 1
        assert any("not delivered to a@example.com" in line and "permanent" in line
                   for line in manual.lines())
    finally:
        ctl.stop()


@pytest.mark.usefixtures("_secret")
def test_transient_failures_are_retried_with_growing_spacing(tmp_path: Path) -> None:
    with SMTPServer(faults=Faults(data_4xx=1000)) as srv:
        config = _smtp_config(tmp_path, srv.port)
        config = dataclasses.replace(config, smtp=dataclasses.replace(config.smtp, retries=0))
        add_subscribers(config, sub("a@example.com"))
        t = NOW
        tried_at = []
        # tick every 30 s for 10 minutes, as the daemon's minute ticks would (and more)
        for _ in range(20):
            before = srv.attempts
            r = _send(config, t, due_only=True)
            if srv.attempts > before:
                tried_at.append(t)
                assert len(r.failed) == 1
            else:
                assert r.waiting and r.waiting[0][0] == "a@example.com" and not r.failed
                assert any("next try after" in line for line in r.lines())
            t += timedelta(seconds=30)
        gaps = [(b - a).total_seconds() / 60 for a, b in zip(tried_at, tried_at[1:], strict=False)]
        assert gaps == [1.0, 2.0, 4.0], gaps  # 1, 2, 4 minutes apart, not every tick
        rec = list(Store(config.store.path).journal.records())[-1]
        assert rec["state"] == "failed" and rec["attempt"] == 4 and not rec.get("permanent")
        # the operator's manual send retries at once
        before = srv.attempts
        _send(config, t)
        assert srv.attempts == before + 1


def test_retry_spacing_is_capped_at_30_minutes() -> None:
    from digest.pipeline.sending import retry_after

    at = "2026-11-22T08:00:00Z"
    assert retry_after({"at": at, "attempt": 1}) == datetime(2026, 11, 22, 8, 1, tzinfo=UTC)
    assert retry_after({"at": at, "attempt": 6}) == datetime(2026, 11, 22, 8, 30, tzinfo=UTC)
    assert retry_after({"at": at, "attempt": 10**9}) == datetime(2026, 11, 22, 8, 30, tzinfo=UTC)
    assert retry_after({"at": at}) == datetime(2026, 11, 22, 8, 1, tzinfo=UTC)  # old records
    assert retry_after({"at": "garbage"}) is None


# --- 5. subject placeholders -----------------------------------------------------------------


@pytest.mark.parametrize("subject", ["News {date.year}", "News {0}", "News {}", "News {date!r}",
                                     "News {date:%Y}", "News {day}", "News {", "News }",
                                     "News {date[0]}"])
def test_bad_subject_placeholders_are_config_errors(tmp_path: Path, subject: str) -> None:
    text, line = _edit('subject = "AI News Daily · AI资讯日报 — {date}"',
                       f"subject = {json.dumps(subject)}")
    err = _config_error(tmp_path, text)
    assert err.message.startswith(f"{tmp_path / 'config.toml'}:{line}: [digests.1].subject: ")
    assert "placeholder" in err.message and err.hint


def test_literal_braces_in_the_subject_are_allowed_and_rendered(tmp_path: Path) -> None:
    text, _ = _edit('subject = "AI News Daily · AI资讯日报 — {date}"',
                    'subject = "{{AI}} News — {date}"')
    cfg = parse_config(text, tmp_path / "config.toml")
    assert subject_for(cfg.digests[0].subject, ["en"], "2026-11-22") == "{AI} News — 2026-11-22"


def test_digest_check_with_a_bad_subject_prints_no_traceback(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    text, line = _edit('subject = "AI News Daily · AI资讯日报 — {date}"',
                       'subject = "News {date.year}"')
    (tmp_path / "config.toml").write_text(text, encoding="utf-8")
    assert main(["--config", str(tmp_path / "config.toml"), "check"]) == 1
    err = capsys.readouterr().err
    assert f"config.toml:{line}: [digests.1].subject: bad placeholder {{date.year}}" in err
    assert "Traceback" not in err


# --- 6. non-finite and huge numbers ----------------------------------------------------------


@pytest.mark.parametrize("old,new,key,problem", [
    ("grace_hours = 6.0", "grace_hours = inf", "[schedule].grace_hours", "finite"),
    ("grace_hours = 6.0", "grace_hours = 1e300", "[schedule].grace_hours", "between 0 and 168"),
    ("grace_hours = 6.0", "grace_hours = 169", "[schedule].grace_hours", "between 0 and 168"),
    ("grace_hours = 6.0", "grace_hours = nan", "[schedule].grace_hours", "finite"),
    ("grace_hours = 6.0", "grace_hours = " + "9" * 400, "[schedule].grace_hours", "too large"),
    ("hot = 0.4", "hot = inf", "[rank].hot", "finite"),
    ("hot = 0.4", "hot = -inf", "[rank].hot", "finite"),
    ("hot = 0.4", "hot = -0.1", "[rank].hot", "between 0"),
    ("half_life_hours = 24.0", "half_life_hours = 0", "[rank].half_life_hours", "above 0"),
    ("half_life_hours = 24.0", "half_life_hours = 1e9", "[rank].half_life_hours", "at most"),
    ("default_score = 50.0", "default_score = nan", "[rank].default_score", "finite"),
    ("items = 50", "items = 1001", "[feeds].items", "between 1 and 1000"),
    ("pool_size = 4", "pool_size = 65", "[smtp].pool_size", "between 1 and 64"),
    ("timeout = 30.0", "timeout = 0", "[smtp].timeout", "between 0.1"),
    ("timeout = 30.0", "timeout = inf", "[smtp].timeout", "finite"),
    ("rate_limit = 0.0", "rate_limit = inf", "[smtp].rate_limit", "finite"),
    ("stop_wait_seconds = 120.0", "stop_wait_seconds = 1e12", "[schedule].stop_wait_seconds",
     "between"),
    ("max_stories = 10", "max_stories = 1000", "[digests.1].max_stories", "between 1 and 100"),
])
def test_out_of_range_numbers_name_file_line_and_key(tmp_path: Path, old: str, new: str,
                                                      key: str, problem: str) -> None:
    text, line = _edit(old, new)
    err = _config_error(tmp_path, text)
    assert err.message.startswith(f"{tmp_path / 'config.toml'}:{line}: {key}: "), err.message
    assert problem in err.message
    assert err.hint


def test_all_rank_weights_zero_is_refused(tmp_path: Path) -> None:
    text = SHIPPED
    for k, v in (("hot", "0.4"), ("quality", "0.35"), ("impact", "0.25")):
        text, _ = _edit(f"{k} = {v}", f"{k} = 0", text)
    line = text[: text.index("hot = 0")].count("\n") + 1
    err = _config_error(tmp_path, text)
    assert err.message.startswith(f"{tmp_path / 'config.toml'}:{line}: [rank].hot: ")
    assert "sum to 0" in err.message


def test_shipped_config_is_valid_and_both_copies_match(tmp_path: Path) -> None:
    assert SHIPPED == (REPO / "digest" / "default_config.toml").read_text(encoding="utf-8")
    parse_config(SHIPPED, tmp_path / "config.toml")


# --- 7. two tags on one slug -----------------------------------------------------------------


def test_two_tags_mapped_to_one_slug_name_the_second_line(tmp_path: Path) -> None:
    text, line = _edit('"政策" = "policy"', '"政策" = "security"')
    err = _config_error(tmp_path, text)
    assert err.message.startswith(f"{tmp_path / 'config.toml'}:{line}: [tags].政策: ")
    assert "'security'" in err.message and "安全" in err.message


# --- 8. file-writing commands fail with a hint, not a traceback ------------------------------


def test_init_into_a_missing_directory_is_a_digest_error(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "nodir" / "config.toml"
    assert main(["--config", str(target), "init"]) == 1
    err = capsys.readouterr().err
    assert "cannot write" in err and "mkdir -p" in err and "Traceback" not in err
    assert not target.exists()


def test_preview_out_to_an_unwritable_place_is_a_digest_error(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    make_project(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code = main(["--config", str(tmp_path / "config.toml"), "preview", "--lang", "en",
                 "--out", str(blocker / "sub" / "p.html"), "--now", NOW.isoformat()])
    err = capsys.readouterr().err
    assert code == 1 and "cannot write" in err and "hint:" in err


# --- 9. rank --lang is validated; an empty filter result says so ----------------------------


def test_rank_unknown_language_is_a_usage_error(tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--config", str(tmp_path / "config.toml"), "rank", "--lang", "fr"])
    assert e.value.code == 2
    assert "invalid choice: 'fr'" in capsys.readouterr().err


def test_rank_filter_matching_nothing_says_so(tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    make_project(tmp_path)
    cfg = str(tmp_path / "config.toml")
    assert main(["--config", cfg, "rank", "--tag", "no-such-tag"]) == 0
    assert capsys.readouterr().out.strip() == "no stories match"
    assert main(["--config", cfg, "rank", "--lang", "all"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


def test_rank_on_an_empty_store_still_says_ingest_first(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    make_project(tmp_path, ingest=False)
    assert main(["--config", str(tmp_path / "config.toml"), "rank", "--lang", "en"]) == 0
    assert "run `digest ingest` first" in capsys.readouterr().out


# --- 10. serve logs where it listens ---------------------------------------------------------


def test_serve_logs_its_address(tmp_path: Path) -> None:
    config = make_project(tmp_path, ingest=False)
    port = free_port()
    text = (tmp_path / "config.toml").read_text(encoding="utf-8").replace(
        "port = 8000", f"port = {port}")
    (tmp_path / "config.toml").write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "DIGEST_LOG_LEVEL"}
    proc = subprocess.Popen([sys.executable, "-m", "digest", "--config", str(config.path),
                             "serve"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        # Wait until it accepts connections (a liveness bound, not a speed check), stop it,
        # then read everything it logged.
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    lines = err.splitlines()
    assert any(f"http://127.0.0.1:{port}/" in line and " INFO digest.web: " in line
               for line in lines), lines
    assert proc.returncode == 0


# --- 11. a different secret between processes is noticed -------------------------------------


def test_secret_fingerprint_is_stored_and_a_mismatch_is_logged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    config = make_project(tmp_path, ingest=False)
    store = Store(config.store.path)
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    with caplog.at_level(logging.WARNING, logger="digest.send"):
        assert site_secret(config, store) == SECRET.encode()
    assert caplog.records == []
    meta = store.meta_get("secret_fingerprint")
    assert meta == {"env": "DIGEST_SECRET", "fingerprint": secret_fingerprint(SECRET.encode())}
    assert len(meta["fingerprint"]) == 16 and SECRET not in json.dumps(meta)

    monkeypatch.delenv("DIGEST_SECRET")  # the operator's shell without the daemon's secret
    with caplog.at_level(logging.WARNING, logger="digest.send"):
        site_secret(config, store)
    (warn,) = caplog.records
    assert "DIGEST_SECRET is not set" in warn.getMessage()
    assert SECRET not in warn.getMessage()

    caplog.clear()
    monkeypatch.setenv("DIGEST_SECRET", "another-secret-value")
    with caplog.at_level(logging.WARNING, logger="digest.send"):
        site_secret(config, store)
        site_secret(config, store)  # recorded now: the second call is quiet
    (warn,) = caplog.records
    assert "DIGEST_SECRET" in warn.getMessage() and "another-secret-value" not in warn.getMessage()
    assert store.meta_get("secret_fingerprint")["fingerprint"] == secret_fingerprint(
        b"another-secret-value")


def test_no_env_secret_ever_means_no_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    config = make_project(tmp_path, ingest=False)
    monkeypatch.delenv("DIGEST_SECRET", raising=False)
    with caplog.at_level(logging.WARNING, logger="digest.send"):
        a = site_secret(config, Store(config.store.path))
        b = site_secret(config, Store(config.store.path))
    assert a == b and caplog.records == []


# --- security review follow-ups (lead) ------------------------------------------------------


def test_symlink_in_inbox_is_not_followed(tmp_path: Path) -> None:
    """A symlink dropped into an inbox must not publish the file it points at."""
    config = make_project(tmp_path, ingest=False)
    secret = tmp_path / "private.txt"
    secret.write_text("root:x:0:0:secret\n", encoding="utf-8")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "006_5555666677778888.txt").symlink_to(secret)
    report = ingest_paths(config, [inbox], as_of=AS_OF, echo=_quiet)
    assert report.added == []
    assert any("symlink" in r for r in report.rejected)
    assert Store(config.store.path).get_story("5555666677778888") is None


@pytest.mark.parametrize("output", [".", "store", "maildir", "store/public"])
def test_output_dir_may_not_overlap_private_dirs(tmp_path: Path, output: str) -> None:
    key = "[feeds].output"
    text = SHIPPED.replace('output = "public"', f'output = "{output}"')
    line = text.splitlines().index(f'output = "{output}"') + 1
    with pytest.raises(ConfigError) as e:
        parse_config(text, tmp_path / "config.toml")
    assert e.value.message.startswith(f"{tmp_path / 'config.toml'}:{line}: {key}: ")
    assert "separate" in e.value.hint or "subdirectory" in e.value.hint


def test_cleartext_auth_refused_off_loopback(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "pw")
    text = (SHIPPED.replace('transport = "maildir"', 'transport = "smtp"')
            .replace('username = ""', 'username = "mailer"'))
    far = text.replace('host = "127.0.0.1"\n# SMTP port', 'host = "mail.example.com"\n# SMTP port')
    assert far != text
    with pytest.raises(ConfigError) as e:
        parse_config(far, tmp_path / "config.toml")
    assert "[smtp].security" in e.value.message and "clear text" in e.value.message
    parse_config(far.replace('security = "none"', 'security = "starttls"'), tmp_path / "config.toml")
    parse_config(text, tmp_path / "config.toml")  # loopback relay: allowed


@pytest.mark.parametrize("text", ["%%DIGEST-UNSUBSCRIBE-URL%%", "%%%DIGEST-UNSUBSCRIBE-URL%%",
                                  "%%%%%%DIGEST-PREFERENCES-URL%%"])
def test_story_text_cannot_forge_link_markers(text: str) -> None:
    from digest.mail.render import PREFS_MARK, UNSUB_MARK, clean

    out = clean(text)
    assert UNSUB_MARK not in out and PREFS_MARK not in out


@pytest.mark.parametrize("key,value", [("path", '"st\\u0000ore"'), ("output", '"pub\\nlic"'),
                                       ("maildir", '"\\u0000"'), ("paths", '["seeds", "\\u0000"]')])
def test_control_characters_in_paths_are_config_errors(tmp_path: Path, key: str, value: str) -> None:
    """Found by the config fuzz in CI: a NUL in a path reached pathlib as a ValueError."""
    old = {"path": 'path = "store"', "output": 'output = "public"', "maildir": 'maildir = "maildir"',
           "paths": 'paths = ["seeds"]'}[key]
    text = SHIPPED.replace(old, f"{key} = {value}")
    line = text.splitlines().index(f"{key} = {value}") + 1
    with pytest.raises(ConfigError) as e:
        parse_config(text, tmp_path / "config.toml")
    assert f"config.toml:{line}: [" in e.value.message and f"].{key}: " in e.value.message
    assert "control character" in e.value.message
