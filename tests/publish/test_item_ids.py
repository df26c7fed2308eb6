"""Every language version of a story is its own feed item: read every file under feeds/
after publishing the seeds plus generated stories, and fail when an id carries two titles
(or two texts, or two times) anywhere across all feeds."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

from lxml import etree

from digest.pipeline.publishing import publish
from tests.support.publish import HOSTILE, NOW, store_with, story

ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}encoded"


def generated():
    """Stories in every language mix, sharing tags, several of them tied on `updated`."""
    out = [
        story("bi000001", langs=("en", "zh-Hans"), hours_ago=1, tags=("policy", "安全")),
        story("bi000002", langs=("zh-Hans", "en"), hours_ago=2, tags=("policy",)),
        story("hant0003", langs=("zh-Hant",), hours_ago=3, tags=("安全",)),
        story("both0004", langs=("en", "zh-Hans", "zh-Hant"), hours_ago=4, tags=("policy",)),
        story("enonly05", langs=("en",), hours_ago=5, tags=("agents",)),
        story("evil0006", langs=("en", "zh-Hans"), hours_ago=6, text=HOSTILE),
    ]
    tie = NOW - timedelta(minutes=30)
    for s in out[:4]:
        s.updated = tie  # "Updated 30m ago" in one batch
    return out


def read_feed(path: Path) -> list[dict]:
    """Items of one feed file as dicts: id, title, lang, updated, text."""
    data = path.read_bytes()
    if path.suffix == ".json":
        return [{"id": i["id"], "title": i["title"], "lang": i["language"],
                 "updated": i["date_modified"], "text": i["content_html"]}
                for i in json.loads(data)["items"]]
    root = etree.fromstring(data)
    if root.tag == "rss":
        return [{"id": i.findtext("guid"), "title": i.findtext("title"), "lang": None,
                 "updated": None, "text": i.findtext(CONTENT)} for i in root.iter("item")]
    return [{"id": e.findtext(f"{ATOM}id"), "title": e.findtext(f"{ATOM}title"),
             "lang": e.get("{http://www.w3.org/XML/1998/namespace}lang"),
             "updated": e.findtext(f"{ATOM}updated"), "text": e.findtext(f"{ATOM}content")}
            for e in root.iter(f"{ATOM}entry")]


def test_no_id_carries_two_titles_across_all_feeds(cfg):
    from tests.support.publish import seed_stories

    store_with(cfg, seed_stories() + generated())
    publish(cfg, now=NOW)
    feeds = sorted(p for p in (cfg.feeds.output / "feeds").rglob("*") if p.is_file())
    assert len(feeds) >= 3 * 6
    seen: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    where: dict[str, set[str]] = defaultdict(set)
    for path in feeds:
        items = read_feed(path)
        rel = path.relative_to(cfg.feeds.output).as_posix()
        ids = [i["id"] for i in items]
        assert len(ids) == len(set(ids)), rel
        updated = [i["updated"] for i in items if i["updated"]]
        assert len(updated) == len(set(updated)), (rel, "two entries with one updated")
        for item in items:
            for key in ("title", "text", "lang", "updated"):
                if item[key] is not None:
                    seen[item["id"]][key].add(item[key])
            where[item["id"]].add(rel)
    twice = {i: sorted(v["title"]) for i, v in seen.items() if len(v["title"]) != 1}
    assert not twice, twice
    for key in ("text", "lang", "updated"):
        assert all(len(v[key]) == 1 for v in seen.values()), key
    # each language version is its own item: bilingual stories have one id per language
    assert {"urn:digest:story:bi000001:en", "urn:digest:story:bi000001:zh-Hans"} <= set(seen)
    assert {i for i in seen if i.startswith("urn:digest:story:both0004:")} == {
        "urn:digest:story:both0004:en", "urn:digest:story:both0004:zh-Hans"}
    assert "feeds/zh/atom.xml" in where["urn:digest:story:hant0003:zh-Hant"]
    # the all feed holds each story once, as the item of its first language
    all_ids = [i["id"] for i in read_feed(cfg.feeds.output / "feeds/all/atom.xml")]
    assert len(all_ids) == len({i.rsplit(":", 1)[0] for i in all_ids}) == 3 + 6
    assert "urn:digest:story:bi000002:zh-Hans" in all_ids
    assert not set(read_feed_ids(cfg, "en")) & set(read_feed_ids(cfg, "zh"))


def read_feed_ids(cfg, key: str) -> list[str]:
    return [i["id"] for i in read_feed(cfg.feeds.output / f"feeds/{key}/rss.xml")]


def test_rss_plain_text_uses_hexadecimal_references(cfg):
    from digest.publish.plan import build_files

    files, _ = build_files(cfg, [story("evil0001", langs=("en",), text="a & b < c")], NOW)
    rss = files["feeds/en/rss.xml"]
    assert b"<title>Title evil0001 en a &#x26; b &#x3C; c</title>" in rss
    assert b"<category>a &#x26; b &#x3C; c</category>" in rss
    title = etree.fromstring(rss).find("channel/item/title").text
    assert title == "Title evil0001 en a & b < c"  # the same text, spelled another way
