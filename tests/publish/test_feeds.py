"""Feeds: every format parses (feedparser bozo 0, JSON Feed schema), rank order, languages,
stable ids, untrusted text, tag slugs."""

from __future__ import annotations

import json
from dataclasses import replace

import feedparser
import pytest
from lxml import etree

from digest.config import SiteConfig
from digest.publish.feeds import FORMATS, base_slug, tag_slugs, xml_text
from digest.publish.plan import build_files
from digest.publish.rank import rank
from tests.support.publish import HOSTILE, NOW, jsonfeed_validator, make_config, seed_stories, story


@pytest.fixture(scope="module")
def seeds():
    return seed_stories()


@pytest.fixture(scope="module")
def seed_site(seeds, tmp_path_factory):
    cfg = make_config(tmp_path_factory.mktemp("cfg"), **{"安全": "security"})
    files, feeds = build_files(cfg, seeds, NOW)
    return cfg, files, feeds


def entry_ids(blob: bytes, name: str) -> list[str]:
    """Item ids in document order. feedparser 6.0 has no JSON Feed support (it reads the
    JSON as broken XML), so JSON Feeds are read with json and checked against the schema."""
    if name.endswith(".json"):
        return [i["id"] for i in json.loads(blob)["items"]]
    parsed = feedparser.parse(blob)
    assert parsed.bozo == 0, (name, parsed.get("bozo_exception"))
    return [e.id for e in parsed.entries]


def _feed_dirs(files):
    return sorted({p.rsplit("/", 1)[0] for p in files if p.startswith("feeds/")})


# --- slugs -------------------------------------------------------------------------------


@pytest.mark.parametrize("tag,aliases,expected", [
    ("安全", {"安全": "security"}, "security"),
    ("Claude", {}, "claude"),
    ("AI Safety & Policy", {}, "ai-safety-policy"),
    ("安全", {}, "t-" + __import__("hashlib").sha1("安全".encode()).hexdigest()[:10]),
    ("大模型", {"大模型": "LLMs!"}, "llms"),
    ("!!!", {}, "t-" + __import__("hashlib").sha1(b"!!!").hexdigest()[:10]),
])
def test_base_slug(tag, aliases, expected):
    assert base_slug(tag, aliases) == expected


def test_slugs_unique_and_url_safe():
    tags = ["AI Safety", "ai-safety", "安全", "政策", "Ünïcode", "a/b", "<script>"]
    slugs = tag_slugs(tags)
    assert len(set(slugs.values())) == len(tags)  # no two tags share a feed
    assert slugs["ai-safety"] == "ai-safety"  # a tag already in slug form keeps its slug
    for s in slugs.values():
        assert all(c.isascii() and (c.isalnum() or c == "-") for c in s), s
    assert tag_slugs(reversed(tags)) == slugs  # independent of order seen


def test_xml_text_strips_only_illegal():
    assert xml_text("a\x0bb\x00c\x1fd\te\nf\u2028g]]>&<") == "abcd\te\nf\u2028g]]>&<"


# --- seeds: every feed, every format -------------------------------------------------------


def test_seed_feeds_cover_languages_and_every_tag(seeds, seed_site):
    _, files, feeds = seed_site
    tags = {t for s in seeds for t in s.tags}
    slugs = tag_slugs(tags, {"安全": "security"})
    expected = {"feeds/en", "feeds/zh", "feeds/all"} | {f"feeds/tags/{slugs[t]}" for t in tags}
    assert set(_feed_dirs(files)) == expected
    assert "feeds/tags/security" in expected
    for d in expected:
        for _, name, _, _ in FORMATS:
            assert f"{d}/{name}" in files and f"{d}/{name}" in feeds


def _expected_ids(seeds, key, items=50):
    ranked = [r.story for r in rank(seeds, NOW, make_config(__import__("pathlib").Path("/x")).rank)]
    if key == "all":
        chosen = ranked
    elif key in ("en", "zh"):
        chosen = [s for s in ranked if s.text_in(key)]
    else:
        chosen = [s for s in ranked if key in s.tags]
    # en/zh: the version in that language; all/tags: each story once, in its first language
    return [f"urn:digest:story:{s.id}:{s.text_in(key) if key in ('en', 'zh') else s.languages[0]}"
            for s in chosen[:items]]


def test_every_seed_feed_parses_in_rank_order(seeds, seed_site):
    _, files, _ = seed_site
    slug_to_tag = {v: k for k, v in tag_slugs({t for s in seeds for t in s.tags}, {"安全": "security"}).items()}
    validator = jsonfeed_validator()
    checked = 0
    for d in _feed_dirs(files):
        key = d.split("/")[-1]
        key = slug_to_tag.get(key, key) if d.startswith("feeds/tags/") else key
        want = _expected_ids(seeds, key)
        assert want, d
        for name in ("rss.xml", "atom.xml", "feed.json"):
            assert entry_ids(files[f"{d}/{name}"], name) == want, (d, name)
            checked += 1
        for name in ("rss.xml", "atom.xml"):
            for e in feedparser.parse(files[f"{d}/{name}"]).entries:
                assert e.link.startswith("http://127.0.0.1:8000/stories/")
                assert e.title and e.summary and e.content[0].value
                assert e.published_parsed and (name == "rss.xml" or e.updated_parsed)
        doc = json.loads(files[f"{d}/feed.json"])
        errors = sorted(validator.iter_errors(doc), key=str)
        assert not errors, errors[0].message if errors else None
        for i in doc["items"]:
            assert i["url"].startswith("http://127.0.0.1:8000/stories/")
            assert i["title"] and i["summary"] and i["content_html"] and i["date_modified"]
    assert checked >= 3 * 8


def test_chinese_only_story_not_in_en(seeds, seed_site):
    _, files, _ = seed_site
    zh_only = [s for s in seeds if not s.text_in("en")]
    assert zh_only, "seed 003 is Traditional Chinese only"
    for s in zh_only:
        assert f"urn:digest:story:{s.id}".encode() not in files["feeds/en/atom.xml"]
        urn = f"urn:digest:story:{s.id}:zh-Hant".encode()
        assert urn in files["feeds/zh/atom.xml"] and urn in files["feeds/all/atom.xml"]


def test_languages_declared(seed_site):
    _, files, _ = seed_site
    for key, lang in (("en", "en"), ("zh", "zh"), ("all", "mul")):
        atom = etree.fromstring(files[f"feeds/{key}/atom.xml"])
        assert atom.get("{http://www.w3.org/XML/1998/namespace}lang") == lang
        rss = etree.fromstring(files[f"feeds/{key}/rss.xml"])
        assert rss.findtext("channel/language") == lang
        assert json.loads(files[f"feeds/{key}/feed.json"])["language"] == lang
    zh = feedparser.parse(files["feeds/zh/atom.xml"])
    langs = {e.get("language") or e.title_detail.language for e in zh.entries}
    assert langs <= {"zh-Hans", "zh-Hant"} and "zh-Hant" in langs  # per-entry xml:lang
    for blob in files.values():
        assert b"zh_CN" not in blob and b"zh-CN" not in blob


def test_feed_updated_is_newest_item_not_build_time(seeds, seed_site):
    _, files, _ = seed_site
    newest = max(s.updated for s in seeds if s.text_in("en"))
    atom = feedparser.parse(files["feeds/en/atom.xml"])
    assert atom.feed.updated == newest.strftime("%Y-%m-%dT%H:%M:%SZ")
    rss = etree.fromstring(files["feeds/en/rss.xml"])
    assert rss.findtext("channel/lastBuildDate") == newest.strftime("%a, %d %b %Y %H:%M:%S +0000")
    # Building again a day later gives the very same bytes.
    files2, _ = build_files(seed_site[0], seeds, NOW.replace(day=23))
    assert {k: v for k, v in files2.items()} == files


def test_self_and_alternate_links(seed_site):
    _, files, _ = seed_site
    atom = feedparser.parse(files["feeds/zh/atom.xml"])
    rels = {(ln.rel, ln.href) for ln in atom.feed.links}
    assert ("self", "http://127.0.0.1:8000/feeds/zh/atom.xml") in rels
    assert ("alternate", "http://127.0.0.1:8000/") in rels
    rss = feedparser.parse(files["feeds/zh/rss.xml"])
    assert ("self", "http://127.0.0.1:8000/feeds/zh/rss.xml") in {(ln.rel, ln.href) for ln in rss.feed.links}
    jf = json.loads(files["feeds/zh/feed.json"])
    assert jf["feed_url"] == "http://127.0.0.1:8000/feeds/zh/feed.json"
    assert jf["home_page_url"] == "http://127.0.0.1:8000/"


def test_item_ids_independent_of_base_url(seeds, cfg):
    other = replace(cfg, site=SiteConfig(base_url="https://news.example.org/digest/"))
    a, _ = build_files(cfg, seeds, NOW)
    b, _ = build_files(other, seeds, NOW)
    for path in ("feeds/all/atom.xml", "feeds/all/rss.xml", "feeds/all/feed.json"):
        ids_a = entry_ids(a[path], path)
        ids_b = entry_ids(b[path], path)
        assert ids_a == ids_b and all(i.startswith("urn:digest:story:") for i in ids_a)
    assert b"https://news.example.org/digest/stories/" in b["feeds/all/atom.xml"]


def test_items_limit(cfg):
    cfg = replace(cfg, feeds=replace(cfg.feeds, items=3))
    stories = [story(f"s{i:02d}", hours_ago=i) for i in range(7)]
    files, _ = build_files(cfg, stories, NOW)
    for name in ("rss.xml", "atom.xml", "feed.json"):
        ids = entry_ids(files[f"feeds/all/{name}"], name)
        assert ids == [f"urn:digest:story:s{i:02d}:en" for i in range(3)]


# --- untrusted text ----------------------------------------------------------------------


def test_hostile_text_survives_as_text_everywhere(cfg):
    evil = story("evil0001", text=HOSTILE)
    files, feeds = build_files(cfg, [evil, story("calm0002")], NOW)
    clean = HOSTILE.replace("\x0b", "")
    validator = jsonfeed_validator()
    for path in feeds:
        blob = files[path]
        assert b"\x0b" not in blob
        if path.endswith(".json"):
            doc = json.loads(blob)
            assert not list(validator.iter_errors(doc))
            item = next(i for i in doc["items"] if ":evil0001:" in i["id"])
            assert clean in item["title"] and clean in item["summary"] and clean in item["tags"]
            assert "<script>" not in item["content_html"] and "&lt;script&gt;" in item["content_html"]
            continue
        parsed = feedparser.parse(blob)
        assert parsed.bozo == 0, (path, parsed.get("bozo_exception"))
        e = next(e for e in parsed.entries if ":evil0001:" in e.id)
        assert clean in e.title, (path, e.title)  # `<script>`, `&` and `]]>` as text
        content = e.content[0].value if e.get("content") else ""
        assert "<script>" not in content and "&lt;script&gt;" in content
        assert clean in [t.term for t in e.tags]
        etree.fromstring(blob)  # well-formed XML
    for path, blob in files.items():
        assert b"\x0b" not in blob, path
        if path.endswith(".html"):
            assert b"<script>alert" not in blob, path
