"""Serving the published files over a real socket: media types, ETag/Last-Modified 304s, gzip, HEAD."""

from __future__ import annotations

import gzip
import os
import socket
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest

from digest import web
from tests.support.web import (
    feed_paths,
    fixture_site,
    free_port,
    publish_seeds,
    running,
    write_config,
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("static")
    config = write_config(tmp, free_port())
    files = fixture_site(config.feeds.output)
    (tmp / "secret.txt").write_text("outside the output dir")
    os.symlink(tmp / "secret.txt", config.feeds.output / "link.txt")
    with running(config) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield server, client, files, config


PLAIN = {"Accept-Encoding": "identity"}


@pytest.mark.parametrize("path,ctype", [
    ("/feeds/en.rss", "application/rss+xml; charset=utf-8"),
    ("/feeds/en.atom", "application/atom+xml; charset=utf-8"),
    ("/feeds/en.json", "application/feed+json; charset=utf-8"),
    ("/feeds/en.xml", "application/rss+xml; charset=utf-8"),
    ("/feeds.opml", "text/x-opml; charset=utf-8"),
    ("/index.html", "text/html; charset=utf-8"),
    ("/", "text/html; charset=utf-8"),
    ("/data.json", "application/json; charset=utf-8"),
])
def test_media_types(site, path, ctype):
    _, client, files, _ = site
    r = client.get(path, headers=PLAIN)
    assert r.status_code == 200
    assert r.headers["content-type"] == ctype
    assert r.content == files["index.html" if path == "/" else path.lstrip("/")]


def test_feed_headers(site):
    _, client, files, config = site
    r = client.get("/feeds/en.rss", headers=PLAIN)
    etag = r.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    mtime = (config.feeds.output / "feeds/en.rss").stat().st_mtime
    assert r.headers["last-modified"] == formatdate(mtime, usegmt=True)
    assert r.headers["cache-control"] == "public, max-age=300"
    assert r.headers["vary"] == "Accept-Encoding"
    assert "content-encoding" not in r.headers
    assert int(r.headers["content-length"]) == len(files["feeds/en.rss"])


def test_second_conditional_get_is_304(site):
    _, client, _, _ = site
    first = client.get("/feeds/en.rss", headers=PLAIN)
    again = client.get("/feeds/en.rss", headers={**PLAIN, "If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["last-modified"] == first.headers["last-modified"]
    by_date = client.get("/feeds/en.rss", headers={**PLAIN, "If-Modified-Since": first.headers["last-modified"]})
    assert by_date.status_code == 304
    listed = client.get("/feeds/en.rss", headers={**PLAIN, "If-None-Match": f'"x", W/{first.headers["etag"]}'})
    assert listed.status_code == 304
    star = client.get("/feeds/en.rss", headers={**PLAIN, "If-None-Match": "*"})
    assert star.status_code == 304


def test_if_none_match_wins_over_if_modified_since(site):
    _, client, _, _ = site
    first = client.get("/feeds/en.atom", headers=PLAIN)
    r = client.get("/feeds/en.atom", headers={**PLAIN, "If-None-Match": '"stale"',
                                              "If-Modified-Since": first.headers["last-modified"]})
    assert r.status_code == 200 and r.content == first.content


def test_old_if_modified_since_gets_the_file(site):
    _, client, _, _ = site
    r = client.get("/feeds/en.atom", headers={**PLAIN, "If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert r.status_code == 200
    junk = client.get("/feeds/en.atom", headers={**PLAIN, "If-Modified-Since": "not a date"})
    assert junk.status_code == 200


def test_gzip_variant_has_its_own_etag(site):
    _, client, files, _ = site
    plain = client.get("/feeds/en.rss", headers=PLAIN)
    with httpx.Client(base_url=client.base_url) as raw:
        # stream=False + read raw bytes: httpx would decode gzip for us otherwise
        r = raw.send(raw.build_request("GET", "/feeds/en.rss", headers={"Accept-Encoding": "gzip"}), stream=True)
        body = b"".join(r.iter_raw())
        r.close()
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(body) == files["feeds/en.rss"]
    assert len(body) < len(files["feeds/en.rss"])
    assert r.headers["etag"] != plain.headers["etag"]
    assert int(r.headers["content-length"]) == len(body)
    again = client.get("/feeds/en.rss", headers={"Accept-Encoding": "gzip", "If-None-Match": r.headers["etag"]})
    assert again.status_code == 304
    refused = client.get("/feeds/en.rss", headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in refused.headers


def test_head_has_headers_and_no_body(site):
    server, client, files, _ = site
    r = client.head("/feeds/en.json", headers=PLAIN)
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["content-type"] == "application/feed+json; charset=utf-8"
    assert int(r.headers["content-length"]) == len(files["feeds/en.json"])
    assert r.headers["etag"] == client.get("/feeds/en.json", headers=PLAIN).headers["etag"]


def test_replaced_file_gets_new_etag(site, tmp_path):
    _, client, _, config = site
    target = config.feeds.output / "feeds" / "en.atom"
    before = client.get("/feeds/en.atom", headers=PLAIN).headers["etag"]
    tmp = target.with_name(".en.atom.tmp")
    tmp.write_bytes(target.read_bytes().replace(b"<title>t</title>", b"<title>t2</title>"))
    os.replace(tmp, target)
    r = client.get("/feeds/en.atom", headers={**PLAIN, "If-None-Match": before})
    assert r.status_code == 200 and b"t2" in r.content
    assert r.headers["etag"] != before


def _raw_get(server, path: str) -> tuple[int, bytes]:
    """A request line sent as-is: httpx would normalise `..` away before it reached us."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("path", [
    "/../config.toml", "/feeds/../../config.toml", "/%2e%2e/config.toml", "/..%2fconfig.toml",
    "/.tmp/partial.rss", "/link.txt", "/nope.rss", "/feeds/%00.rss",
])
def test_no_escape_from_the_output_dir(site, path):
    server, _, _, _ = site
    status, body = _raw_get(server, path)
    assert status in (404, 400)
    assert b"outside the output dir" not in body and b"[site]" not in body and b"half" not in body


def test_404_page_is_friendly(site):
    _, client, _, _ = site
    r = client.get("/no/such/page.html")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "no such page" in r.text and "Traceback" not in r.text


def test_directory_redirects_then_serves_its_index(site):
    _, client, _, config = site
    (config.feeds.output / "tags").mkdir(exist_ok=True)
    (config.feeds.output / "tags" / "index.html").write_text("<p>tags</p>")
    r = client.get("/tags", follow_redirects=False)
    assert r.status_code == 301 and r.headers["location"].endswith("/tags/")
    assert client.get("/tags/").text == "<p>tags</p>"


def test_post_to_a_file_is_refused(site):
    _, client, _, _ = site
    r = client.post("/feeds/en.rss", content=b"x")
    assert r.status_code == 405


@pytest.mark.parametrize("header,ok", [
    ("gzip", True), ("gzip, deflate, br", True), ("deflate", False), ("*", True), ("", False),
    ("gzip;q=0", False), ("gzip;q=0.5", True), ("*;q=0, gzip", True), ("identity, *;q=0", False),
])
def test_accepts_gzip(header, ok):
    assert web.accepts_gzip(header) is ok


def test_resolve_static_rejects_escape(tmp_path: Path):
    (tmp_path / "a").mkdir()
    assert web.resolve_static(tmp_path / "a", "/../x") is None
    assert web.resolve_static(tmp_path / "a", "/.hidden") is None
    assert web.resolve_static(tmp_path / "a", "/ok.html") == (tmp_path / "a" / "ok.html").resolve()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("published")
    config = write_config(tmp, free_port())
    publish_seeds(config)
    with running(config) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client, config


def test_every_published_feed_is_served_typed_and_conditional(published):
    import feedparser

    client, config = published
    paths = feed_paths(config)
    assert len(paths) >= 9
    kinds = set()
    for rel in paths:
        r = client.get("/" + rel)
        assert r.status_code == 200, rel
        ctype = r.headers["content-type"]
        assert ctype in ("application/rss+xml; charset=utf-8", "application/atom+xml; charset=utf-8",
                         "application/feed+json; charset=utf-8"), (rel, ctype)
        kinds.add(ctype)
        assert r.headers["cache-control"] == "public, max-age=300"
        if "json" not in ctype:
            parsed = feedparser.parse(r.content)
            assert parsed.bozo == 0 and parsed.entries, rel
        again = client.get("/" + rel, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        by_date = client.get("/" + rel, headers={"If-Modified-Since": r.headers["last-modified"]})
        assert by_date.status_code == 304
    assert len(kinds) == 3


def test_index_has_the_subscribe_form(published):
    client, _ = published
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert 'id="subscribe-form"' in r.text and 'action="subscribe"' in r.text
    assert 'rel="alternate"' in r.text
    assert client.get("/feeds.opml").headers["content-type"] == "text/x-opml; charset=utf-8"


def test_republish_keeps_the_etag(published):
    from digest.pipeline import publish
    from tests.support.web import NOW

    client, config = published
    before = client.get("/feeds/all/rss.xml")
    publish(config, now=NOW)
    after = client.get("/feeds/all/rss.xml", headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 304


def test_listening_socket_is_tcp_so_responses_are_not_nagled(tmp_path):
    # asyncio sets TCP_NODELAY on accepted sockets only when proto is IPPROTO_TCP; with
    # proto 0 every keep-alive response body waited ~40 ms for a delayed ACK (measured).
    sock = web.bind(write_config(tmp_path, free_port()))
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


# Loopback ports nothing listens on: publish_seeds' pings are refused at once (and queued).
WEBSUB_HUBS = (f"http://127.0.0.1:{free_port()}/hub", f"http://127.0.0.1:{free_port()}/hub?x=1")


@pytest.fixture(scope="module")
def websub_site(tmp_path_factory):
    from digest.config import load_config

    tmp = tmp_path_factory.mktemp("websub")
    port = free_port()
    write_config(tmp, port)
    with (tmp / "config.toml").open("a", encoding="utf-8") as fh:
        fh.write("[websub]\nhubs = [" + ", ".join(f'"{h}"' for h in WEBSUB_HUBS) + "]\n")
    config = load_config(tmp / "config.toml")
    publish_seeds(config)  # no hub listens on those names: the publish still succeeds
    with running(config) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client, config


def test_feed_responses_carry_websub_link_headers(websub_site):
    import re

    client, config = websub_site
    paths = feed_paths(config)
    assert {p.rpartition("/")[2] for p in paths} == {"rss.xml", "atom.xml", "feed.json"}
    for path in paths:
        self_url = config.site.base_url + path
        want = ", ".join([*(f'<{h}>; rel="hub"' for h in WEBSUB_HUBS), f'<{self_url}>; rel="self"'])
        r = client.get("/" + path)
        assert r.status_code == 200 and r.headers["link"] == want, path
        # the Link header's self is the one the feed names for itself
        body = r.text
        assert (f'"feed_url": "{self_url}"' in body if path.endswith(".json")
                else len(re.findall(r'rel="self"', body)) == 1 and f'href="{self_url}"' in body)
        head = client.head("/" + path)
        again = client.get("/" + path, headers={"If-None-Match": r.headers["etag"]})
        assert head.headers["link"] == want and again.status_code == 304
        assert again.headers["link"] == want
    for other in ("/", "/index.html", "/feeds.opml"):
        assert "link" not in client.get(other).headers, other


def test_feeds_name_self_in_link_header_without_hubs(published):
    client, config = published
    r = client.get("/feeds/en/atom.xml")
    assert r.headers["link"] == f'<{config.site.base_url}feeds/en/atom.xml>; rel="self"'


def test_non_ascii_base_url_and_hub_still_serve_feeds_with_an_ascii_link(tmp_path):
    """A base_url or hub with non-ASCII characters used to make every feed response a 500
    (the Link header is latin-1): config writes them in ASCII (IDNA host, %-encoded path)."""
    from digest.config import load_config

    port = free_port()
    write_config(tmp_path, port, base_url=f"http://127.0.0.1:{port}/新闻/")
    with (tmp_path / "config.toml").open("a", encoding="utf-8") as fh:
        fh.write(f'[websub]\nhubs = ["https://例え.jp/hub", "http://127.0.0.1:{free_port()}/ハブ"]\n')
    config = load_config(tmp_path / "config.toml")
    base = f"http://127.0.0.1:{port}/%E6%96%B0%E9%97%BB/"
    assert config.site.base_url == base
    assert config.websub.hubs[0] == "https://xn--r8jz45g.jp/hub"
    assert config.websub.hubs[1].endswith("/%E3%83%8F%E3%83%96")
    publish_seeds(config)
    with running(config) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        r = client.get("/feeds/en/atom.xml")
        assert r.status_code == 200, r.text
        link = r.headers["link"]
        assert link.isascii() and f'<{base}feeds/en/atom.xml>; rel="self"' in link
        assert '<https://xn--r8jz45g.jp/hub>; rel="hub"' in link


def test_websub_link_is_ascii_whatever_the_urls() -> None:
    from digest.web.files import websub_link

    link = websub_link("application/atom+xml", "https://例え.jp/新闻/", ["https://hub.example/ハブ"],
                       "/feeds/en/atom.xml")
    assert link is not None and link.isascii()
    assert link.encode("latin-1")  # what Starlette does with a header
