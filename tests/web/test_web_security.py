"""Review and security findings in the web server, each pinned on a real socket: private files
under an output dir of ".", slow and vanishing clients, confirm links, redirects, CSRF with
many tabs, and the security headers of every HTML page."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import re
import socket
import time
from datetime import timedelta

import httpx
import pytest

from digest import web
from digest.config import load_config
from digest.mail import tokens
from digest.models import Subscriber
from digest.pipeline.secrets import site_secret
from digest.store import Store
from tests.support.web import NOW, free_port, link_in, running, set_secret, write_config

SECRET = b"test-secret-0123456789abcdef"


def raw(port: int, target: bytes, *, timeout: float = 20) -> bytes:
    """GET `target` exactly as given (httpx would normalize `//x`), return the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def wait_closed(sock: socket.socket, timeout: float = 20) -> bool:
    """True when the server closes `sock` (recv gives EOF or a reset) within `timeout`."""
    sock.settimeout(timeout)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


# --- 1. secrets under an output dir of "." ----------------------------------------------------


@pytest.fixture
def dot_output(tmp_path, monkeypatch):
    """`[feeds] output = "."`: the store, the Maildir and config.toml all sit in the served dir.

    config.toml validation refuses that overlap; the server must deny the private paths
    anyway (defence in depth), so the config is bent past validation here."""
    monkeypatch.delenv("DIGEST_SECRET", raising=False)
    port = free_port()
    (tmp_path / "config.toml").write_text(
        f'[site]\nbase_url = "http://127.0.0.1:{port}/"\n[store]\npath = "store"\n'
        '[feeds]\noutput = "public"\n[smtp]\ntransport = "maildir"\nmaildir = "maildir"\n'
        f'[web]\nhost = "127.0.0.1"\nport = {port}\n', encoding="utf-8")
    config = load_config(tmp_path / "config.toml")
    config = dataclasses.replace(config, feeds=dataclasses.replace(config.feeds, output=tmp_path))
    store = Store(config.store.path)
    secret = site_secret(config, store).hex()
    store.add_subscriber(Subscriber(email="private@example.com", status="active"))
    store.journal.append([{"digest": "daily", "edition": "2026-11-22", "email": "private@example.com",
                           "state": "sent"}])
    (tmp_path / "maildir" / "new").mkdir(parents=True)
    (tmp_path / "maildir" / "new" / "1.eml").write_text("To: private@example.com\n\nhello\n")
    (tmp_path / "index.html").write_text("<h1>index</h1>")
    (tmp_path / "link-to-store").symlink_to(tmp_path / "store")
    with running(config):
        yield config.web.port, secret


@pytest.mark.parametrize("path", [
    "/store/stories.json", "/store/subscribers.json", "/store/deliveries.jsonl", "/store/",
    "/store", "/config.toml", "/maildir/new/1.eml", "/maildir/new", "/maildir/",
    "/link-to-store/stories.json", "//store/stories.json", "/./store/stories.json",
    "/store/../store/subscribers.json", "/%73tore/stories.json",
])
def test_private_files_are_never_served(dot_output, path):
    port, secret = dot_output
    assert status_of(raw(port, b"/index.html")) == 200  # the root itself is served
    answer = raw(port, path.encode())
    assert status_of(answer) == 404, (path, answer[:300])
    assert secret.encode() not in answer and b"private@example.com" not in answer


def test_resolve_static_denies_private_paths(tmp_path):
    root = tmp_path
    private = [(tmp_path / "store").resolve(), (tmp_path / "config.toml").resolve()]
    assert web.resolve_static(root, "/store/stories.json", private) is None
    assert web.resolve_static(root, "/store", private) is None
    assert web.resolve_static(root, "/config.toml", private) is None
    assert web.resolve_static(root, "/storefront.html", private) == (tmp_path / "storefront.html").resolve()
    assert web.resolve_static(root, "/index.html", private) == (tmp_path / "index.html").resolve()


# --- 2. slow and vanishing clients -----------------------------------------------------------


@pytest.fixture
def site(tmp_path, monkeypatch):
    set_secret(monkeypatch, SECRET.decode())
    config = write_config(tmp_path, free_port())
    config.feeds.output.mkdir(parents=True)
    (config.feeds.output / "index.html").write_text("<!doctype html><h1>index</h1>")
    (config.feeds.output / "feeds").mkdir()
    (config.feeds.output / "feeds" / "index.html").write_text("<h1>feeds</h1>")
    return config


def test_uvicorn_gets_connection_and_header_limits(site):
    cfg = web._uvicorn_config(site, web.app(site))
    assert cfg.limit_concurrency == 512 and cfg.timeout_keep_alive <= 5
    assert cfg.h11_max_incomplete_event_size == 16 * 1024
    assert issubclass(cfg.http, web._GuardedH11)
    assert cfg.http.max_connections < cfg.limit_concurrency  # else idle sockets cause 503s


def test_idle_connections_beyond_the_limit_do_not_lock_others_out(site):
    state = web.WebState(site, max_connections=20, header_timeout=600)
    with running(site, state) as server:
        port = site.web.port
        idle = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(60)]
        try:
            # each idle socket past the limit closed an older one, so a real client gets in
            r = httpx.get(server.url + "/index.html", timeout=20)
            assert r.status_code == 200
            closed = sum(wait_closed(s, timeout=5) for s in idle[:30])
            assert closed >= 25, closed  # the oldest were closed by the newcomers
        finally:
            for s in idle:
                s.close()


def test_half_sent_headers_are_cut_off(site):
    state = web.WebState(site, header_timeout=0.5)
    with running(site, state) as server:
        port = site.web.port
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n")
            assert wait_closed(s)
        # a trickle on a kept-alive connection does not reset the deadline either
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
            first = s.recv(65536)
            assert first.startswith(b"HTTP/1.1 200")
            s.sendall(b"GET /index.html HTTP/1.1\r\n")
            closed = False
            for _ in range(400):  # a byte every 50 ms, far past the 0.5 s bound
                try:
                    s.sendall(b"X")
                    s.settimeout(0.05)
                    if s.recv(65536) == b"":
                        closed = True
                        break
                except TimeoutError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
            assert closed
        assert httpx.get(server.url + "/index.html", timeout=20).status_code == 200


def test_slow_body_gets_408(site):
    state = web.WebState(site, body_timeout=0.5)
    with running(site, state):
        with socket.create_connection(("127.0.0.1", site.web.port), timeout=20) as s:
            s.sendall(b"POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
                      b"email=a")
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = s.recv(65536)
                assert chunk, answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408")
            assert b"connection: close" in answer.lower()
            assert wait_closed(s)


def test_client_gone_mid_body_is_one_quiet_line(site, caplog):
    caplog.set_level(logging.INFO)
    with running(site):
        with socket.create_connection(("127.0.0.1", site.web.port), timeout=20) as s:
            s.sendall(b"POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 500\r\n\r\n"
                      b"email=a%40example.com&lang")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("disconnected" in r.getMessage() for r in caplog.records):
            time.sleep(0.05)
    gone = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(gone) == 1 and gone[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], \
        [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# --- 4. confirm links ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self):
        return self.now


@pytest.fixture
def mail_site(tmp_path, monkeypatch, sink):
    set_secret(monkeypatch, SECRET.decode())
    config = write_config(tmp_path, free_port(), smtp_port=sink.port)
    config.feeds.output.mkdir(parents=True)
    clock = Clock()
    state = web.WebState(config, per_ip=web.RateLimiter(burst=100, refill=1), clock=clock)
    with running(config, state) as server, httpx.Client(base_url=server.url, timeout=20) as client:
        yield config, client, sink, Store(config.store.path), clock


def subscribe(client: httpx.Client, email: str, langs=("en",), tags="", tz="UTC") -> httpx.Response:
    token = client.get("/csrf").json()["token"]
    r = client.post("/subscribe", data={"email": email, "languages": list(langs), "tags": tags,
                                        "timezone": tz, "csrf": token})
    assert r.status_code == 200, r.text
    return r


def test_confirm_get_and_head_change_nothing(mail_site):
    config, client, sink, store, _ = mail_site
    subscribe(client, "scan@example.com")
    link = link_in(sink.wait(1)[0], "confirm").removeprefix(config.site.base_url.rstrip("/"))
    for method in ("HEAD", "GET", "HEAD", "GET"):
        assert client.request(method, link).status_code == 200
    assert store.get_subscriber("scan@example.com").status == "pending"
    # a cross-site page cannot post it for the owner's browser either
    r = client.post(link, headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403 and store.get_subscriber("scan@example.com").status == "pending"
    r = client.post(link, headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"})  # a browser sending Origin: null
    assert r.status_code == 200 and store.get_subscriber("scan@example.com").status == "active"


def test_old_confirm_link_cannot_activate_a_later_request(mail_site):
    config, client, sink, store, clock = mail_site
    base = config.site.base_url.rstrip("/")
    subscribe(client, "owner@example.com", langs=["en"], tz="Europe/Berlin")
    old = link_in(sink.wait(1)[0], "confirm").removeprefix(base)
    unsub = tokens.sign(SECRET, "unsubscribe", "owner@example.com", None)
    client.post("/unsubscribe", params={"t": unsub}, data={"List-Unsubscribe": "One-Click"})
    # an hour later someone else asks for this address with their own choices
    clock.now = NOW + timedelta(hours=1)
    subscribe(client, "owner@example.com", langs=["zh"], tags="attacker", tz="Pacific/Apia")
    new = link_in(sink.wait(2)[1], "confirm").removeprefix(base)
    r = client.post(old)
    # (the page speaks the pending record's language: zh only)
    assert r.status_code == 400 and "更新的确认链接" in r.text
    assert client.get(old).status_code == 400
    assert store.get_subscriber("owner@example.com").status == "pending"
    # the newest link, which went to the owner's mailbox, still works
    assert client.post(new).status_code == 200
    assert store.get_subscriber("owner@example.com").status == "active"


def test_pending_request_voids_earlier_links_too(mail_site):
    config, client, sink, store, clock = mail_site
    base = config.site.base_url.rstrip("/")
    subscribe(client, "p@example.com")
    first = link_in(sink.wait(1)[0], "confirm").removeprefix(base)
    clock.now = NOW + timedelta(minutes=5)
    subscribe(client, "p@example.com", langs=["zh"])
    second = link_in(sink.wait(2)[1], "confirm").removeprefix(base)
    assert client.post(first).status_code == 400
    assert client.post(second).status_code == 200
    assert store.get_subscriber("p@example.com").languages == ["zh"]


def test_anonymous_subscribe_leaves_an_active_subscription_alone(mail_site):
    _, client, sink, store, clock = mail_site
    store.add_subscriber(Subscriber(email="a@example.com", status="active", languages=["en"],
                                    tags=["ai"], timezone="Asia/Tokyo", created=NOW - timedelta(days=30)))
    before = store.get_subscriber("a@example.com").to_dict()
    clock.now = NOW + timedelta(hours=1)
    subscribe(client, "a@example.com", langs=["zh"], tags="other", tz="UTC")
    sink.wait(1)
    assert store.get_subscriber("a@example.com").to_dict() == before


def test_throttled_address_changes_nothing(mail_site):
    config, client, sink, store, clock = mail_site
    for i in range(3):
        clock.now = NOW + timedelta(minutes=i)
        subscribe(client, "t@example.com", langs=["en"])
    links = [link_in(m, "confirm") for m in sink.wait(3)]
    clock.now = NOW + timedelta(minutes=5)
    subscribe(client, "t@example.com", langs=["zh"])  # over the per-address budget: no mail
    sub = store.get_subscriber("t@example.com")
    assert sub.languages == ["en"]  # the throttled request changed nothing …
    r = client.post(links[-1].removeprefix(config.site.base_url.rstrip("/")))
    assert r.status_code == 200 and "You are subscribed" in r.text  # … nor voided the newest link


def test_confirm_lifetime_matches_the_sender():
    # The confirm mail's token (subscribers.confirm_token) lasts tokens.CONFIRM_LIFETIME, the
    # lifetime the web subtracts to find when a link was issued.
    from digest.subscribers import confirm_token

    _, expires = tokens.decode(b"k", "confirm", confirm_token(b"k", "a@example.com", NOW), NOW)
    assert expires == NOW + tokens.CONFIRM_LIFETIME and tokens.confirm_issued(expires) == NOW


# --- 5. redirects ----------------------------------------------------------------------------


@pytest.mark.parametrize("target,location", [
    (b"//feeds", b"/feeds/"), (b"/feeds", b"/feeds/"), (b"///feeds//", None), (b"//feeds?x=1", b"/feeds/"),
])
def test_directory_redirect_stays_on_this_site(site, target, location):
    with running(site):
        answer = raw(site.web.port, target)
    if location is None:
        assert status_of(answer) == 200
        return
    assert status_of(answer) == 301, answer[:200]
    found = re.search(rb"(?im)^location: (\S+)", answer)
    assert found and found.group(1) == location


def test_trailing_slash_on_a_file_is_404(site):
    with running(site) as server:
        assert httpx.get(server.url + "/index.html/", timeout=20).status_code == 404
        assert httpx.get(server.url + "/index.html", timeout=20).status_code == 200


# --- 6. CSRF with two tabs, and Origin vs Host ------------------------------------------------


def test_two_tabs_both_submit(mail_site):
    _, client, _, store, _ = mail_site
    tab1 = client.get("/subscribe")
    cookie = client.cookies.get("digest_csrf")
    assert cookie and "set-cookie" in tab1.headers
    tab2 = client.get("/subscribe")
    assert "set-cookie" not in tab2.headers and client.cookies.get("digest_csrf") == cookie
    assert client.get("/csrf").headers.get("set-cookie") is None
    tokens_ = [t.text.split('name="csrf" value="')[1].split('"')[0] for t in (tab1, tab2)]
    assert cookie not in tokens_[0] and cookie not in tokens_[1]  # the cookie is no token
    for i, token in enumerate(tokens_):  # the older tab first
        r = client.post("/subscribe", data={"email": f"tab{i}@example.com", "languages": "en", "csrf": token})
        assert r.status_code == 200, r.text
        assert store.get_subscriber(f"tab{i}@example.com") is not None
    # a token minted for another browser's cookie is refused
    with httpx.Client(base_url=str(client.base_url), timeout=20) as other:
        other.get("/subscribe")
        r = other.post("/subscribe", data={"email": "x@example.com", "languages": "en", "csrf": tokens_[0]})
        assert r.status_code == 403


def test_cookie_is_strict_http_only_and_long_lived(mail_site):
    _, client, _, _, _ = mail_site
    cookie = client.get("/csrf").headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    max_age = int(re.search(r"Max-Age=(\d+)", cookie).group(1))
    assert max_age > 30 * 24 * 3600


@pytest.mark.parametrize("headers,ok", [
    ({"Origin": "http://evil.example", "Host": "evil.example"}, False),  # Host alone proves nothing
    ({"Origin": "http://evil.example:80"}, False),
    ({"Origin": "null"}, False),
    ({"Origin": "null", "Sec-Fetch-Site": "cross-site"}, False),
    ({"Origin": "null", "Sec-Fetch-Site": "same-origin"}, True),  # our page, Origin: null (privacy setting)
    ({"Sec-Fetch-Site": "same-site"}, False),
])
def test_origin_is_checked_against_base_url(headers, ok):
    base = "http://127.0.0.1:8000/"
    got = web.guards.same_origin({k.lower(): v for k, v in headers.items()}, base, "http")
    assert got is ok
    assert web.guards.same_origin({"origin": "http://127.0.0.1:8000", "host": "127.0.0.1:8000"}, base, "http")


def test_spoofed_host_cannot_post_from_another_site(mail_site):
    _, client, _, store, _ = mail_site
    token = client.get("/csrf").json()["token"]
    r = client.post("/subscribe", data={"email": "h@example.com", "languages": "en", "csrf": token},
                    headers={"Origin": "http://evil.example", "Host": "evil.example"})
    assert r.status_code == 403 and store.get_subscriber("h@example.com") is None


# --- 7. security headers ---------------------------------------------------------------------


def test_rendered_pages_have_security_headers(mail_site):
    _, client, _, _, _ = mail_site
    for r in (client.get("/subscribe"), client.get("/confirm", params={"t": "bad"}), client.get("/nope")):
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert re.search(r"script-src 'nonce-[A-Za-z0-9_-]+'", csp)
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "same-origin"
        nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
        for script_nonce in re.findall(r'<script nonce="([^"]*)"', r.text):
            assert script_nonce == nonce


def test_static_html_allows_exactly_its_own_inline_scripts(site):
    script = "document.title = 'ok';"
    page = f"<!doctype html><title>t</title><script nonce=\"\">{script}</script><script src=\"a.js\"></script>"
    (site.feeds.output / "index.html").write_text(page)
    with running(site) as server:
        r = httpx.get(server.url + "/", timeout=20)
        assert r.status_code == 200
        csp = r.headers["content-security-policy"]
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"script-src 'self' 'sha256-{digest}'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "same-origin"
        again = httpx.get(server.url + "/", headers={"If-None-Match": r.headers["etag"]}, timeout=20)
        assert again.status_code == 304
        # feeds are not pages: no page policy on them
        (site.feeds.output / "feed.xml").write_text('<?xml version="1.0"?><rss version="2.0"></rss>')
        assert "content-security-policy" not in httpx.get(server.url + "/feed.xml", timeout=20).headers


def test_script_hashes():
    from digest.web.files import script_hashes

    html = b'<script>a()</script><SCRIPT type="module">b()</SCRIPT><script src="x.js"></script><script>a()</script>'
    want = [base64.b64encode(hashlib.sha256(s).digest()).decode() for s in (b"a()", b"b()")]
    assert script_hashes(html) == [f"'sha256-{w}'" for w in want]
