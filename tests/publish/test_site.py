"""Pages: story pages with every section and its `lang`, index autodiscovery, OPML, escaping;
and the real thing in headless Chromium (mobile width, dark mode, no script runs)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from lxml import etree

from digest.pipeline.publishing import publish
from digest.publish.plan import build_files
from digest.publish.site import story_path, typeset
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
                assert typeset(text, code).replace("'", "&#39;").replace('"', "&#34;") in html
            for f in s.faq.get(code) or []:
                assert typeset(f.q, code).replace("'", "&#39;").replace('"', "&#34;") in html
            if len(s.key_data.get(code) or []) > 1:
                assert "<table>" in html
        assert tags[0] == ("html", {"lang": s.languages[0]})
    zh_hant = next(s for s in stories if s.languages == ["zh-Hant"])
    page = files[story_path(zh_hant.id)].decode()
    assert 'lang="zh-Hant"' in page and "新智元" in page
    # The TL;DR is an excerpt of the body: the page says it once (the body), not three times.
    main = page.split("<main>", 1)[1]
    first = typeset(zh_hant.tldr["zh-Hant"][0], "zh-Hant")
    assert main.count(first) == 1 and "摘錄" not in main


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


def test_opml_lists_every_feed_once_in_one_format(built):
    _, files, feeds = built
    root = etree.fromstring(files["feeds.opml"])
    assert root.tag == "opml" and root.get("version") == "2.0"
    outlines = root.findall(".//outline")
    urls = [o.get("xmlUrl") for o in outlines]
    # one outline per feed, as Atom: a reader importing it subscribes once to each feed
    assert sorted(urls) == sorted(BASE + p for p in feeds if p.endswith("/atom.xml"))
    assert len(urls) == len({p.rsplit("/", 1)[0] for p in feeds})
    for o in outlines:
        rel = o.get("xmlUrl").removeprefix(BASE)
        assert rel in files  # the file at the same path below the output dir
        assert o.get("htmlUrl").startswith(BASE) and o.get("text") and o.get("title")
        assert "(Atom)" not in o.get("text")
        assert o.get("language") in ("en", "zh", "mul")
        assert o.get("type") == "rss" and o.get("version") == "ATOM"
    index = files["index.html"].decode()
    for p in feeds:  # the index offers every format of every feed
        assert f'href="{BASE}{p}"' in index


def test_tag_pages_link_their_feeds(built):
    _, files, _ = built
    page = files["tags/security.html"].decode()
    assert 'href="http://127.0.0.1:8000/feeds/tags/security/atom.xml"' in page
    assert "<h1>security</h1>" in page and "安全" in page  # the alias as the heading
    assert "<h1>#" not in files["tags/claude.html"].decode()
    assert '<p class="feed-links">' in page


def _headings(html: str) -> list[int]:
    return [int(t[1]) for t, _ in Tags(html).tags if len(t) == 2 and t[0] == "h" and t[1].isdigit()]


def test_story_pages_switch_language_by_anchor_and_never_skip_a_heading_level(built):
    stories, files, _ = built
    for s in stories:
        html = files[story_path(s.id)].decode()
        tags = Tags(html).tags
        levels = _headings(html)
        assert levels[0] == 1 and levels.count(1) == 1, (s.id, levels)
        assert all(b - a <= 1 for a, b in zip(levels, levels[1:], strict=False)), (s.id, levels)
        ids = {a.get("id") for _, a in tags}
        # the anchors mail links use: stories/<id>.html#en / #zh
        want = {"en" if c == "en" else "zh" for c in s.languages}
        assert want <= ids, (s.id, ids)
        if len(s.languages) > 1:
            switch = [a["href"] for t, a in tags if t == "a" and a.get("href", "").startswith("#")]
            assert switch[:2] == ["#en", "#zh"] and "English" in html and ">中文<" in html
        metas = {a.get("property") or a.get("name"): a.get("content") for t, a in tags if t == "meta"}
        for key in ("og:title", "og:type", "og:url", "og:site_name", "twitter:card", "twitter:title"):
            assert metas.get(key), (s.id, key)
        assert metas["og:url"] == BASE + story_path(s.id)
        assert any(t == "a" and a.get("href", "").endswith("#subscribe") for t, a in tags)  # header
        assert "★" not in html and "<em" not in html


def test_story_pages_say_each_text_once(built):
    stories, files, _ = built
    for s in stories:
        main = files[story_path(s.id)].decode().split("<main>", 1)[1]
        for code in s.languages:
            for point in s.tldr.get(code) or []:
                assert main.count(typeset(point, code).replace("'", "&#39;").replace('"', "&#34;")) == 1, \
                    (s.id, code, point)


def test_index_shows_a_headline_and_one_line_per_story(built):
    stories, files, _ = built
    index = files["index.html"].decode()
    top = index.split('<section id="top">', 1)[1].split("</section>", 1)[0]
    assert top.count('<article class="card"') == len(stories)
    assert "<li>" not in top and "★" not in top  # no bullet lists, no star ratings
    assert top.count('class="lead"') == len(stories)
    # scores: one notation, explained once, with text for screen readers
    scored = sum(1 for s in stories if s.scores)
    assert scored and "Hot 80" in top and top.count("/100</span>") == 3 * scored
    assert top.count("out of 100</span>") == 3 * scored
    assert index.count('id="scores"') == 1


def test_chinese_text_is_typeset_for_display_only(built):
    stories, files, _ = built
    zh = next(s for s in stories if "zh-Hans" in s.languages)
    assert "," in zh.tldr["zh-Hans"][0]  # stored as it came
    page = files[story_path(zh.id)].decode()
    assert typeset(zh.tldr["zh-Hans"][0], "zh-Hans") in page and zh.tldr["zh-Hans"][0] not in page
    assert "text-autospace" in page and ":lang(zh) em" in page


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
