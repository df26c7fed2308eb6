"""Property tests: any stored Story — titles, TL;DR, tags and sections full of markup, `]]>`,
XML control characters, RTL/zero-width characters and huge words — gives feeds that parse
cleanly (feedparser bozo == 0, JSON Feed schema-valid) and HTML pages and email in which
story text is never markup; hostile addresses and header-like text never add or break a
mail header."""

from __future__ import annotations

import email
import email.policy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import html5lib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from digest.mail.render import (
    SUBJECT_WIDTH,
    InvalidAddress,
    Renderer,
    display_width,
    message_id,
    normalize_email,
)
from digest.models import FAQ, Block, Story
from digest.publish.plan import build_files
from tests.support.publish import jsonfeed_validator, make_config, seed_stories

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
MARK = "zq"  # every hostile fragment carries this, so we can tell story text from templates
FRAGMENTS = [
    f"<script>alert('{MARK}')</script>",
    f'<img src=x onerror="alert(\'{MARK}\')">',
    f"<a href=\"javascript:alert('{MARK}')\">{MARK}</a>",
    f"javascript:alert('{MARK}')",
    f"<svg/onload=alert('{MARK}')>",
    f"<![CDATA[{MARK}]]>",
    f"]]>{MARK}",
    f"<!--{MARK}-->",
    f"&lt;{MARK}&gt; &amp; &#0; &#x1b;",
    f'"><iframe src="{MARK}">',
    f"</title></head><body onload=alert('{MARK}')>",
    f"{{{{ {MARK} }}}} {{% if {MARK} %}}",
    "%%DIGEST-UNSUBSCRIBE-URL%% %%DIGEST-PREFERENCES-URL%%",
    f"Bcc: {MARK}@evil.example\r\nX-Injected: {MARK}",
    "\r\n\r\n<html>",
    "\x00\x01\x08\x0b\x0c\x1b\x7f\x85\ufffe\uffff",
    "\u202e\u202d\u2066\u200f\u200b\u200c\u200d\u2060\ufeff",
    "\u0635\u0628\u0627\u062d \u05e9\u05dc\u05d5\u05dd",
    "W" * 3000,
    "超长的中文单词没有空格" * 300,
]

hostile = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)),
                   min_size=1, max_size=5).map(" ".join)
LANG_SETS = [["en"], ["zh-Hans"], ["zh-Hant"], ["en", "zh-Hans"], ["en", "zh-Hant"]]


@st.composite
def stories(draw: st.DrawFn, n: int) -> Story:
    langs = draw(st.sampled_from(LANG_SETS))
    t = lambda: draw(hostile)  # noqa: E731 - a short local draw
    published = NOW - timedelta(hours=draw(st.integers(0, 200)))
    return Story(
        id=f"h{n:04d}" + draw(st.from_regex(r"[a-f0-9]{6}", fullmatch=True)),
        languages=langs,
        title={c: t() for c in langs},
        published=published, updated=published + timedelta(minutes=5),
        summary={c: t() for c in langs},
        tldr={c: [t() for _ in range(draw(st.integers(1, 3)))] for c in langs},
        scores=draw(st.none() | st.fixed_dictionaries(
            {k: st.integers(0, 100) for k in ("hot", "quality", "impact")})),
        tags=draw(st.lists(hostile, max_size=3, unique=True)),
        key_data={c: [[t(), t()], [t(), t()]] for c in langs},
        analysis={c: [t()] for c in langs},
        insights={c: [t()] for c in langs},
        faq={c: [FAQ(t(), t())] for c in langs},
        body={c: [Block("h", t()), Block("p", t()), Block("li", t())] for c in langs},
        source=draw(st.none() | hostile),
    )


story_lists = st.integers(1, 3).flatmap(lambda k: st.tuples(*[stories(i) for i in range(k)]))


def assert_html_inert(html: str | bytes, where: str) -> None:
    """Story text never became markup: no element or attribute that a fragment could make."""
    doc = html5lib.parse(html, treebuilder="lxml", namespaceHTMLElements=False)
    for el in doc.iter():
        if not isinstance(el.tag, str):
            continue  # comments from the templates
        tag = el.tag.lower()
        assert tag not in ("iframe", "svg", "img") or MARK not in json.dumps(dict(el.attrib)), where
        for name, value in el.attrib.items():
            assert not name.lower().startswith("on"), (where, tag, name, value)
            if name.lower() in ("href", "src", "action", "formaction"):
                assert not value.strip().lower().startswith(("javascript:", "data:")), (where, value)
            assert MARK not in name, (where, tag, name)
        if tag in ("script", "style", "iframe", "svg", "object", "embed"):
            assert MARK not in (el.text or ""), (where, tag)
            assert tag in ("script", "style"), (where, tag)  # only the templates' own
        if tag == "title" or tag == "a":
            pass
    assert "\x00" not in (html.decode("utf-8") if isinstance(html, bytes) else html), where


XML_ILLEGAL = {chr(c) for c in range(32) if chr(c) not in "\t\n\r"} | {"\ufffe", "\uffff"}


def check_feeds_and_pages(tmp: Path, hostile_stories: tuple[Story, ...]) -> None:
    cfg = make_config(tmp)
    files, feeds = build_files(cfg, list(hostile_stories) + seed_stories()[:1], NOW)
    validator = jsonfeed_validator()
    for path, blob in files.items():
        text = blob.decode("utf-8")
        assert not XML_ILLEGAL & set(text), path
        if path in feeds and path.endswith(".json"):
            doc = json.loads(blob)
            errors = [e.message for e in validator.iter_errors(doc)]
            assert not errors, (path, errors[:3])
            for item in doc["items"]:
                assert_html_inert(item.get("content_html", ""), path)
        elif path.endswith(".xml") or path.endswith(".opml"):
            etree.fromstring(blob)  # well-formed
            if path in feeds:
                parsed = feedparser.parse(blob)
                assert parsed.bozo == 0, (path, parsed.get("bozo_exception"))
                ids = [e.id for e in parsed.entries]
                assert len(ids) == len(set(ids)) and all(i.startswith("urn:digest:story:")
                                                         for i in ids), path
                for e in parsed.entries:
                    for c in e.get("content", []):
                        assert_html_inert(c.value, path)
        elif path.endswith(".html"):
            assert_html_inert(blob, path)


FEED_SETTINGS = dict(deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])


@settings(max_examples=15, **FEED_SETTINGS)
@given(story_lists)
def test_any_story_gives_clean_feeds_and_inert_pages(tmp_path, hostile_stories) -> None:
    check_feeds_and_pages(tmp_path, hostile_stories)


@pytest.mark.slow
@settings(max_examples=300, **FEED_SETTINGS)
@given(story_lists)
def test_any_story_gives_clean_feeds_and_inert_pages_many(tmp_path, hostile_stories) -> None:
    check_feeds_and_pages(tmp_path, hostile_stories)


SENDER = "AI News <digest@news.example.org>"
HEADERS = {"from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe",
           "list-unsubscribe-post", "precedence", "auto-submitted", "mime-version",
           "content-type"}


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer("https://news.example.org/", "AI News Daily · AI资讯日报 — {date}", SENDER)


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(story_lists, st.sampled_from([["en"], ["zh"], ["en", "zh"]]))
def test_any_story_gives_one_well_formed_mail_with_inert_html(renderer, hostile_stories, langs):
    body = renderer.render_digest(list(hostile_stories), langs, "2026-11-22", "daily")
    to = "reader@example.com"
    unsub = "https://news.example.org/unsubscribe?t=TOKEN-U"
    prefs = "https://news.example.org/preferences?t=TOKEN-P"
    data = renderer.build_message(body, to, message_id("daily", "2026-11-22", to,
                                                       "news.example.org"), NOW, unsub, prefs)
    head = data.split(b"\r\n\r\n", 1)[0]
    assert all(line.isascii() for line in head.split(b"\r\n")), "8-bit header"
    msg = email.message_from_bytes(data, policy=email.policy.default)
    names = [k.lower() for k in msg.keys()]
    assert sorted(names) == sorted(HEADERS), names  # nothing added, nothing lost
    assert not msg.defects, msg.defects
    assert msg["To"] == to and msg["From"].addresses[0].addr_spec == "digest@news.example.org"
    # The subject names the lead story (issue 13): story text, but one cleaned line, cut.
    assert "\n" not in str(msg["Subject"]) and display_width(msg["Subject"]) <= SUBJECT_WIDTH
    parts = {p.get_content_type(): p for p in msg.walk() if not p.is_multipart()}
    assert set(parts) == {"text/plain", "text/html"}
    text, html = parts["text/plain"].get_content(), parts["text/html"].get_content()
    for p in parts.values():
        assert not p.defects, p.defects
    assert_html_inert(html, "mail")
    # forged link markers in story text never turn into the reader's own links
    benign = renderer.render_digest(list(hostile_stories)[:0] or seed_stories()[:1], langs,
                                    "2026-11-22", "daily")
    assert "%%DIGEST-" not in text + html
    assert html.count("TOKEN-U") <= max(2, benign.html.count("%%DIGEST-UNSUBSCRIBE-URL%%"))
    assert text.count("TOKEN-U") <= max(1, benign.text.count("%%DIGEST-UNSUBSCRIBE-URL%%"))
    assert len(data) < 2_000_000


address_like = st.one_of(
    st.emails().map(str),
    st.builds(lambda a, b: a + b, st.emails().map(str), st.sampled_from(FRAGMENTS[12:17])),
    st.builds(lambda a, b: a + b, st.sampled_from(FRAGMENTS), st.emails().map(str)),
    st.text(max_size=80),
)


@settings(max_examples=400, deadline=None)
@given(address_like)
def test_any_address_is_refused_or_safe_in_every_header(renderer, addr: str) -> None:
    try:
        norm = normalize_email(addr)
    except InvalidAddress as e:
        assert e.hint and "\n" not in e.message and "\r" not in e.message
        return
    assert not set("\r\n\x00<>,;\" \t") & set(norm), norm
    body = renderer.render_digest(seed_stories()[:1], ["en"], "2026-11-22", "daily")
    data = renderer.build_message(body, norm, "<x@news.example.org>", NOW,
                                  "https://news.example.org/unsubscribe?t=T", "")
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert sorted(k.lower() for k in msg.keys()) == sorted(HEADERS)
    assert [a.addr_spec for a in msg["To"].addresses] == [norm]


def test_hostile_story_end_to_end_through_ingest_publish_and_maildir(tmp_path: Path,
                                                                     monkeypatch) -> None:
    """One fixed hostile story as a structured file: ingest → publish → send (Maildir)."""
    import shutil

    from digest.config import load_config
    from digest.models import Subscriber
    from digest.pipeline import ingest_paths, publish
    from digest.pipeline.sending import send_digest
    from digest.store import Store
    from tests.support.send import REPO

    monkeypatch.setenv("DIGEST_SECRET", "s")
    shutil.copy(REPO / "config.toml", tmp_path / "config.toml")
    (tmp_path / "seeds").mkdir()
    evil = " ".join(FRAGMENTS[:14])
    doc = {"id": "evil00000001", "languages": ["en", "zh-Hans"],
           "title": {"en": "Evil " + evil, "zh-Hans": "恶意 " + evil},
           "tldr": {"en": [evil, evil], "zh-Hans": [evil]}, "tags": ["policy", evil[:60]],
           "published": "2026-11-22T10:00:00Z", "summary": {"en": evil},
           "scores": {"hot": 99, "quality": 99, "impact": 99}}
    (tmp_path / "seeds" / "evil.json").write_text(json.dumps(doc), encoding="utf-8")
    config = load_config(tmp_path / "config.toml")
    report = ingest_paths(config, as_of=NOW, echo=lambda _l: None)
    assert report.added == ["evil00000001"] or len(report.added) == 1, report.rejected
    publish(config, now=NOW)
    out = config.feeds.output
    for p in out.rglob("*"):
        if p.is_file() and p.suffix == ".html":
            assert_html_inert(p.read_bytes(), str(p))
        elif p.is_file() and p.suffix == ".xml":
            assert feedparser.parse(p.read_bytes()).bozo == 0, p
    Store(config.store.path).add_subscriber(Subscriber(email="a@example.com", status="active"))
    assert send_digest(config, now=NOW).sent == ["a@example.com"]
    (msg_file,) = (config.smtp.maildir / "new").iterdir()
    msg = email.message_from_bytes(msg_file.read_bytes(), policy=email.policy.default)
    # a sent digest also names its public page (RFC 5064), which send publishes: inert too
    assert sorted(k.lower() for k in msg.keys()) == sorted(HEADERS | {"archived-at"})
    pages = list((out / "editions").rglob("*.html"))
    assert len(pages) == 2  # the edition and the digest's archive
    for p in pages:
        assert_html_inert(p.read_bytes(), str(p))
    assert_html_inert(msg.get_body(("html",)).get_content(), "maildir")
