"""WebSub publisher: hub and self links in every feed format, and pings to a real hub on
127.0.0.1 (http.server in a thread) for exactly the feeds whose bytes changed; a hub that is
down or answers 503 never fails the publish, and its pings arrive with the next one."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from digest.cli import main
from digest.config import ConfigError, WebSubConfig, parse_config
from digest.pipeline import publish, websub
from digest.publish.plan import build_files
from tests.support.publish import (
    NOW,
    jsonfeed_validator,
    make_config,
    seed_stories,
    store_with,
    story,
)
from tests.support.smtp_server import free_port

ATOM = "{http://www.w3.org/2005/Atom}"
HUBS = ("https://hub.example.org/", "https://pubsubhubbub.example.net/publish?via=digest&x=1")
FORMAT_FILES = ("rss.xml", "atom.xml", "feed.json")


class Hub:
    """A WebSub hub on 127.0.0.1 that records each publish ping and answers `status`."""

    def __init__(self, port: int | None = None) -> None:
        self.posts: list[dict[str, list[str]]] = []
        self.status = 202
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hub"
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                form = parse_qs(body.decode("ascii"), strict_parsing=True)
                assert self.headers["Content-Type"] == "application/x-www-form-urlencoded"
                with hub.lock:
                    hub.posts.append(form)
                self.send_response(hub.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Hub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def take(self) -> list[str]:
        """The hub.url of every ping since the last take, sorted (duplicates kept)."""
        with self.lock:
            posts, self.posts = self.posts, []
        assert all(p["hub.mode"] == ["publish"] and len(p["hub.url"]) == 1 for p in posts), posts
        return sorted(p["hub.url"][0] for p in posts)


def _feed_bytes(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / "feeds").rglob("*")
            if p.is_file()}


def _urls_of_changed(cfg, before: dict[str, bytes], after: dict[str, bytes]) -> list[str]:
    """Every format's URL of each feed any of whose files' bytes differ (or are new)."""
    dirs = {rel.rpartition("/")[0] for rel in after if before.get(rel) != after[rel]}
    base = cfg.site.base_url
    return sorted(f"{base}{d}/{name}" for d in dirs for name in FORMAT_FILES)


def _with_hubs(tmp_path: Path, *hubs: str):
    cfg = make_config(tmp_path)
    return replace(cfg, websub=WebSubConfig(hubs=tuple(hubs)))


# --- the feeds' links ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub_site(tmp_path_factory) -> tuple:
    cfg = _with_hubs(tmp_path_factory.mktemp("hubs"), *HUBS)
    stories = seed_stories() + [story("s1", tags=("x&y", "安全")), story("s2", langs=("zh-Hant",))]
    files, feeds = build_files(cfg, stories, NOW)
    return cfg, files, feeds


def test_rss_and_atom_carry_each_hub_and_exactly_one_self_link(hub_site) -> None:
    cfg, files, feeds = hub_site
    xml_feeds = [f for f in feeds if not f.endswith(".json")]
    assert len(xml_feeds) >= 8
    for rel in xml_feeds:
        root = ET.fromstring(files[rel])
        parent = root.find("channel") if root.tag == "rss" else root
        links = [(ln.get("rel"), ln.get("href")) for ln in parent.findall(f"{ATOM}link")]
        assert [h for r, h in links if r == "self"] == [cfg.site.base_url + rel], rel
        assert [h for r, h in links if r == "hub"] == list(HUBS), rel


def test_json_feed_carries_hubs_and_feed_url_and_validates(hub_site) -> None:
    import json

    cfg, files, feeds = hub_site
    validator = jsonfeed_validator()
    for rel in (f for f in feeds if f.endswith(".json")):
        obj = json.loads(files[rel])
        assert obj["feed_url"] == cfg.site.base_url + rel
        assert obj["hubs"] == [{"type": "WebSub", "url": h} for h in HUBS]
        errors = sorted(validator.iter_errors(obj), key=str)
        assert not errors, f"{rel}: {errors[0].message}"


def test_without_hubs_no_hub_link_and_no_hubs_key(tmp_path: Path) -> None:
    files, feeds = build_files(make_config(tmp_path), seed_stories(), NOW)
    for rel in feeds:
        assert b'rel="hub"' not in files[rel] and b'"hubs"' not in files[rel]
        assert files[rel].count(b'rel="self"') == (0 if rel.endswith(".json") else 1)


# The W3C Feed Validator (not on PyPI, not in Debian) runs by hand, not in the suite:
# `python3 scripts/validate_feeds.py --validator DIR --hubs 2` (see docs/RELIABILITY.md).


# --- config ----------------------------------------------------------------------------------


def test_config_hubs_default_none_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    assert parse_config("", path).websub.hubs == ()
    ok = parse_config('[websub]\nhubs = ["https://a.example/", "http://b.example:8080/p?x=1"]\n', path)
    assert ok.websub.hubs == ("https://a.example/", "http://b.example:8080/p?x=1")
    for bad in ('"https://a.example/"', '["ftp://a.example/"]', '["/relative"]',
                '["https://a.example/", "https://a.example/"]', '["https://a.example/<x>"]', "[1]"):
        with pytest.raises(ConfigError) as e:
            parse_config(f"\n[websub]\nhubs = {bad}\n", path)
        assert "config.toml:3: [websub].hubs:" in e.value.message, e.value.message


# --- pings to a real hub -------------------------------------------------------------------


def test_pings_exactly_the_changed_feeds_and_none_when_nothing_changed(tmp_path: Path) -> None:
    with Hub() as one, Hub() as two:
        cfg = _with_hubs(tmp_path, one.url, two.url)
        out = cfg.feeds.output
        store_with(cfg, seed_stories())
        first = publish(cfg, now=NOW)
        every = sorted(cfg.site.base_url + rel for rel in first.feeds)
        assert one.take() == every and two.take() == every  # a first publish: all of them
        assert first.websub.pending == 0 and len(first.websub.sent) == 2 * len(every)

        before = _feed_bytes(out)
        store_with(cfg, [story("fresh1", langs=("en",), tags=())])
        second = publish(cfg, now=NOW)
        expected = _urls_of_changed(cfg, before, _feed_bytes(out))
        assert f"{cfg.site.base_url}feeds/en/rss.xml" in expected
        assert f"{cfg.site.base_url}feeds/zh/rss.xml" not in expected  # an English story
        assert one.take() == expected and two.take() == expected
        assert second.websub.pending == 0
        assert "websub: " in second.summary()

        third = publish(cfg, now=NOW)  # nothing new
        assert third.written == []
        assert one.take() == [] and two.take() == []


def test_hub_down_never_fails_the_publish_and_gets_the_pings_next_time(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    port = free_port()  # nothing listens here yet: connection refused
    hub_url = f"http://127.0.0.1:{port}/hub"
    (tmp_path / "config.toml").write_text(
        '[site]\nbase_url = "http://127.0.0.1:8000/"\n[store]\npath = "store"\n'
        f'[feeds]\noutput = "public"\n[websub]\nhubs = ["{hub_url}"]\n', encoding="utf-8")
    cfg = replace(make_config(tmp_path), websub=WebSubConfig(hubs=(hub_url,)))
    store_with(cfg, seed_stories())
    argv = ["--config", str(tmp_path / "config.toml"), "publish", "--now", NOW.isoformat()]
    assert main(argv) == 0
    assert "1 failed" in capsys.readouterr().out
    queued = store_with(cfg, []).meta_get(websub.PENDING)
    feeds = sorted(f"{cfg.site.base_url}{rel}" for rel in publish(cfg, now=NOW).feeds)
    assert sorted(e["url"] for e in queued) == feeds

    with Hub(port) as hub:
        report = publish(cfg, now=NOW)  # nothing new to publish: only the missed pings
        assert report.written == []
        assert hub.take() == feeds
        assert report.websub.pending == 0
        publish(cfg, now=NOW)
        assert hub.take() == []  # taken once, not again
    assert store_with(cfg, []).meta_get(websub.PENDING) == []


def test_hub_answering_503_keeps_the_pings_until_it_takes_them(tmp_path: Path) -> None:
    with Hub() as hub:
        hub.status = 503
        cfg = _with_hubs(tmp_path, hub.url)
        store_with(cfg, seed_stories())
        report = publish(cfg, now=NOW)
        feeds = sorted(cfg.site.base_url + rel for rel in report.feeds)
        assert len(hub.take()) == 1  # one 503 and the hub is left alone for this run
        assert report.websub.pending == len(feeds) and report.websub.failed[0][2] == "HTTP 503"

        store_with(cfg, [story("fresh2", langs=("en",), tags=())])
        hub.status = 503
        publish(cfg, now=NOW)
        hub.take()
        hub.status = 204
        report = publish(cfg, now=NOW)
        assert hub.take() == feeds  # each feed once, the re-changed ones too
        assert report.websub.pending == 0


def test_pending_pings_are_bounded_in_count_and_age(tmp_path: Path, monkeypatch) -> None:
    cfg = _with_hubs(tmp_path, f"http://127.0.0.1:{free_port()}/down")
    store = store_with(cfg, [])
    urls = [f"http://127.0.0.1:8000/feeds/t{i}/rss.xml" for i in range(6)]
    monkeypatch.setattr(websub, "MAX_PENDING", 4)
    now = datetime.now(UTC)
    report = websub.ping_hubs(cfg, store, urls, now)
    assert report.dropped == 2 and any("oldest" in w for w in report.warnings)
    assert [e["url"] for e in store.meta_get(websub.PENDING)] == urls[2:]

    later = websub.ping_hubs(cfg, store, [], now + websub.GIVE_UP_AFTER + timedelta(minutes=1))
    assert len(later.given_up) == 4 and later.pending == 0
    assert any("gave up" in w for w in later.warnings)
    assert store.meta_get(websub.PENDING) == []


def test_pings_of_a_hub_removed_from_the_config_are_dropped(tmp_path: Path) -> None:
    cfg = _with_hubs(tmp_path, f"http://127.0.0.1:{free_port()}/down")
    store = store_with(cfg, [])
    websub.ping_hubs(cfg, store, ["http://127.0.0.1:8000/feeds/en/rss.xml"], datetime.now(UTC))
    report = websub.ping_hubs(replace(cfg, websub=WebSubConfig()), store, [], datetime.now(UTC))
    assert report.dropped == 1 and store.meta_get(websub.PENDING) == []


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # urllib honours *_proxy variables; the hubs here are on loopback.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    yield


class TricklingHub:
    """A hub on 127.0.0.1 that reads the ping, then answers one byte every `gap` seconds:
    each socket read succeeds well within urllib's timeout, the answer takes `total` s."""

    def __init__(self, gap: float = 0.25, total: float = 15.0) -> None:
        import socket

        self.gap, self.total = gap, total
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hub"
        self.stop = threading.Event()
        self.connections = 0

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn) -> None:
        answer = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nX-Pad: " \
            + b"x" * int(self.total / self.gap) + b"\r\n\r\n"
        with conn:
            try:
                conn.recv(65536)
                for i in range(len(answer)):
                    if self.stop.wait(self.gap):
                        return
                    conn.sendall(answer[i:i + 1])
            except OSError:
                return

    def __enter__(self) -> TricklingHub:
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.sock.close()


def test_a_trickling_hub_cannot_hold_up_publish(tmp_path: Path, monkeypatch) -> None:
    import time

    monkeypatch.setattr(websub, "TIMEOUT", 1.0)
    monkeypatch.setattr(websub, "HUB_BUDGET", 2.0)
    with TricklingHub() as slow:
        cfg = _with_hubs(tmp_path, slow.url)
        store_with(cfg, seed_stories())
        start = time.monotonic()
        report = publish(cfg, now=NOW)
        elapsed = time.monotonic() - start
    assert elapsed < websub.HUB_BUDGET + websub.TIMEOUT + 2.0, elapsed
    feeds = sorted(cfg.site.base_url + rel for rel in report.feeds)
    assert slow.connections == 1  # one ping, abandoned; the hub is left alone this run
    assert report.websub.sent == [] and report.websub.pending == len(feeds)
    assert "no answer" in report.websub.failed[0][2]
    queued = store_with(cfg, []).meta_get(websub.PENDING)
    assert sorted(e["url"] for e in queued) == feeds
