"""Pages: story pages with every section and its `lang`, index autodiscovery, OPML, escaping;
and the real thing in headless Chromium (mobile width, dark mode, no script runs)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from lxml import etree

from digest.pipeline.publishing import publish
from digest.publish.plan import build_files
from digest.publish.site import story_path
from tests.support.publish import HOSTILE, NOW, make_config, seed_stories, store_with, story

BASE = "http://127.0.0.1:8000/"


class Tags(HTMLParser):
    """Collects (tag, attrs) pairs: enough to check structure without another HTML library."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cfg = make_config(tmp_path_factory.mktemp("site"), **{"安全": "security"})
    stories = seed_stories()
    files, feeds = build_files(cfg, stories, NOW)
    return stories, files, feeds


def test_story_pages_have_every_section_with_lang(built):
    stories, files, _ = built
    for s in stories:
        html = files[story_path(s.id)].decode()
        tags = Tags(html).tags
        sections = [a["lang"] for t, a in tags if t == "section" and "lang" in a]
        assert sections == s.languages, (s.id, sections)
        for code in s.languages:
            for text in (s.tldr.get(code) or [])[:1] + (s.analysis.get(code) or [])[:1]:
                assert text.replace("'", "&#39;").replace('"', "&#34;") in html
            for f in s.faq.get(code) or []:
                assert f.q.replace("'", "&#39;").replace('"', "&#34;") in html
            if len(s.key_data.get(code) or []) > 1:
                assert "<table>" in html
        assert tags[0] == ("html", {"lang": s.languages[0]})
    zh_hant = next(s for s in stories if s.languages == ["zh-Hant"])
    page = files[story_path(zh_hant.id)].decode()
    assert 'lang="zh-Hant"' in page and "新智元" in page and "摘錄" in page  # excerpt marked


def test_index_autodiscovers_every_feed(built):
    _, files, feeds = built
    html = files["index.html"].decode()
    links = [a for t, a in Tags(html).tags if t == "link" and a.get("rel") == "alternate"]
    hrefs = {a["href"] for a in links}
    assert hrefs == {BASE + p for p in feeds}
    types = {"rss.xml": "application/rss+xml", "atom.xml": "application/atom+xml",
             "feed.json": "application/feed+json"}
    for a in links:
        assert a["type"] == types[a["href"].rsplit("/", 1)[1]] and a["title"]
    assert 'id="subscribe"' in html  # the _subscribe.html include


def test_opml_lists_every_feed_file(built):
    _, files, feeds = built
    root = etree.fromstring(files["feeds.opml"])
    assert root.tag == "opml" and root.get("version") == "2.0"
    outlines = root.findall(".//outline")
    urls = [o.get("xmlUrl") for o in outlines]
    assert sorted(urls) == sorted(BASE + p for p in feeds)
    for o in outlines:
        rel = o.get("xmlUrl").removeprefix(BASE)
        assert rel in files  # the file at the same path below the output dir
        assert o.get("htmlUrl").startswith(BASE) and o.get("text") and o.get("title")
        assert o.get("language") in ("en", "zh", "mul")
        assert o.get("type") == "rss"


def test_tag_pages_link_their_feeds(built):
    _, files, _ = built
    page = files["tags/security.html"].decode()
    assert 'href="http://127.0.0.1:8000/feeds/tags/security/atom.xml"' in page
    assert "#安全" in page


def test_hostile_text_escaped_in_pages(cfg):
    files, _ = build_files(cfg, [story("evil0001", text=HOSTILE)], NOW)
    for path, blob in files.items():
        if path.endswith((".html", ".opml")):
            assert b"<script>alert" not in blob and b"\x0b" not in blob, path
    page = files[story_path("evil0001")].decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; ]]&gt;" in page
    etree.fromstring(files["feeds.opml"])  # still well-formed with a hostile tag name


@pytest.mark.browser
def test_pages_in_chromium(cfg):
    from playwright import sync_api as playwright  # tests/conftest.py checks it and Chromium
    stories = seed_stories() + [story("evil0001", text=HOSTILE)]
    store_with(cfg, stories)
    publish(cfg, now=NOW)
    out = cfg.feeds.output
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 360, "height": 740})
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            for rel in ("index.html", story_path("evil0001"), story_path(stories[0].id),
                        story_path(stories[1].id)):
                page.goto((out / rel).as_uri())
                # Mobile: nothing wider than the screen (tables scroll inside themselves).
                assert page.evaluate("document.documentElement.scrollWidth") <= 360, rel
            page.goto((out / story_path("evil0001")).as_uri())
            assert "<script>alert(1)</script>" in page.inner_text("h1")
            assert dialogs == []
            light = page.evaluate("getComputedStyle(document.body).backgroundColor")
            page.emulate_media(color_scheme="dark")
            dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert light != dark
        finally:
            browser.close()
