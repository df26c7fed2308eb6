"""Subscribe / confirm / preferences / unsubscribe over a real socket, with mail to a real aiosmtpd."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from digest import web
from digest.mail import tokens
from digest.models import Subscriber
from digest.store import Store
from tests.support.web import NOW, free_port, link_in, running, set_secret, write_config

SECRET = b"test-secret-0123456789abcdef"


@pytest.fixture
def env(tmp_path, monkeypatch, sink):
    """A running server with its own store and mail sink; fresh per test (subscriber state)."""
    set_secret(monkeypatch, SECRET.decode())
    config = write_config(tmp_path, free_port(), smtp_port=sink.port)
    config.feeds.output.mkdir(parents=True)
    (config.feeds.output / "index.html").write_text("<h1>index</h1>")
    state = web.WebState(config, per_ip=web.RateLimiter(burst=3, refill=3600))
    with running(config, state) as server, httpx.Client(base_url=server.url, timeout=20) as client:
        yield config, client, sink, Store(config.store.path), state


def post_subscribe(client: httpx.Client, email: str, *, langs=("en", "zh"), tags="", tz="Asia/Shanghai",
                   token: str | None = None, headers=None) -> httpx.Response:
    if token is None:
        token = client.get("/csrf").json()["token"]
    data = {"email": email, "languages": list(langs), "tags": tags, "timezone": tz, "csrf": token}
    return client.post("/subscribe", data=data, headers=headers or {})


def test_subscribe_confirm_preferences_unsubscribe(env):
    config, client, sink, store = env[:4]
    r = post_subscribe(client, "Reader@Example.com", langs=["zh"], tags="安全, 政策", tz="Asia/Shanghai")
    assert r.status_code == 200, r.text
    assert "Check your inbox" in r.text
    sub = store.get_subscriber("reader@example.com")
    assert sub is not None and sub.status == "pending"
    assert (sub.languages, sub.tags, sub.timezone) == (["zh"], ["安全", "政策"], "Asia/Shanghai")

    [mail] = sink.wait(1)
    assert mail["To"] == "reader@example.com"
    confirm = link_in(mail, "confirm")
    assert confirm.startswith(config.site.base_url + "confirm?t=")
    path = confirm.removeprefix(config.site.base_url.rstrip("/"))
    # following the link (a mail scanner does) only shows the button
    for method in ("GET", "HEAD"):
        r = client.request(method, path)
        assert r.status_code == 200 and store.get_subscriber("reader@example.com").status == "pending"
    r = client.get(path)
    assert 'id="confirm-form" class="stack" method="post"' in r.text
    assert r.headers["referrer-policy"] == "same-origin"
    r = client.post(path)
    # the pages of a mail link speak the subscriber's language (zh only here)
    assert r.status_code == 200 and "订阅成功" in r.text and '<html lang="zh-Hans">' in r.text
    assert store.get_subscriber("reader@example.com").status == "active"
    # a replayed link is harmless and friendly
    again = client.post(path)
    assert again.status_code == 200 and "您已订阅" in again.text
    assert store.get_subscriber("reader@example.com").status == "active"

    prefs = tokens.sign(SECRET, "prefs", "reader@example.com", None)
    page = client.get("/preferences", params={"t": prefs})
    assert page.status_code == 200 and "reader@example.com" in page.text
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    r = client.post("/preferences", params={"t": prefs},
                    data={"csrf": token, "languages": ["en", "zh"], "tags": "", "timezone": "Europe/Berlin"})
    assert r.status_code == 200 and "Saved" in r.text
    sub = store.get_subscriber("reader@example.com")
    assert (sub.languages, sub.tags, sub.timezone) == (["en", "zh"], [], "Europe/Berlin")

    unsub = tokens.sign(SECRET, "unsubscribe", "reader@example.com", None)
    assert client.get("/unsubscribe", params={"t": unsub}).status_code == 200
    assert store.get_subscriber("reader@example.com").status == "active"  # GET never unsubscribes
    r = client.post("/unsubscribe", params={"t": unsub}, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    assert store.get_subscriber("reader@example.com").status == "unsubscribed"
    # an old confirm link must not undo the unsubscribe
    late = client.post(path)
    assert late.status_code == 200 and "already used" in late.text
    assert store.get_subscriber("reader@example.com").status == "unsubscribed"


def test_rfc8058_one_click_post(env):
    config, client, _, store = env[:4]
    store.add_subscriber(Subscriber(email="one@example.com", status="active"))
    unsub = tokens.sign(SECRET, "unsubscribe", "one@example.com", None)
    # the RFC 8058 example body: multipart/form-data, no cookie, no Origin
    boundary = "---FormBoundaryjWmhtjORrn"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n"
            f"One-Click\r\n--{boundary}--\r\n").encode()
    with httpx.Client(base_url=str(client.base_url), timeout=20) as bare:
        for _ in range(2):  # idempotent
            r = bare.post("/unsubscribe", params={"t": unsub}, content=body,
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            assert r.status_code == 200
            assert "location" not in r.headers and "set-cookie" not in r.headers
            assert store.get_subscriber("one@example.com").status == "unsubscribed"
        r = bare.post("/unsubscribe", params={"t": unsub}, data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200 and "set-cookie" not in r.headers
        # without the RFC 8058 field nothing happens
        store.update_subscriber("one@example.com", status="active")
        r = bare.post("/unsubscribe", params={"t": unsub}, data={"other": "x"})
        assert r.status_code == 400
        assert store.get_subscriber("one@example.com").status == "active"


@pytest.mark.parametrize("route", ["/confirm", "/preferences", "/unsubscribe"])
def test_tampered_and_expired_tokens_get_a_friendly_400(env, route):
    _, client, _, store = env[:4]
    store.add_subscriber(Subscriber(email="t@example.com", status="active"))
    purpose = {"/confirm": "confirm", "/preferences": "prefs", "/unsubscribe": "unsubscribe"}[route]
    good = tokens.sign(SECRET, purpose, "t@example.com", None)
    body, _, mac = good.partition(".")
    other = tokens.sign(SECRET, purpose, "other@example.com", None)
    bad = [
        "", "garbage", good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        other.partition(".")[0] + "." + mac,  # someone else's address under this MAC
        tokens.sign(b"another-secret", purpose, "t@example.com", None),
        tokens.sign(SECRET, "confirm" if purpose != "confirm" else "prefs", "t@example.com", None),
        tokens.sign(SECRET, purpose, "t@example.com", NOW - timedelta(days=1)),
        "%%%<script>", "a." * 3000,
    ]
    for t in bad:
        for method in ("GET", "POST"):
            r = client.request(method, route, params={"t": t}, data={"List-Unsubscribe": "One-Click"})
            assert r.status_code == 400, (t, method, r.status_code)
            assert r.headers["content-type"].startswith("text/html")
            assert "not valid" in r.text and "Traceback" not in r.text and "<script>" not in r.text
    assert store.get_subscriber("t@example.com").status == "active"


def test_no_enumeration(env):
    _, client, sink, store = env[:4]
    store.add_subscriber(Subscriber(email="known@example.com", status="active"))
    known = post_subscribe(client, "known@example.com")
    new = post_subscribe(client, "new@example.com")
    assert known.status_code == new.status_code == 200

    def main(r):
        return r.text.split("<main>")[1].split("</main>")[0].replace("known@", "X@").replace("new@", "X@")

    assert main(known) == main(new)
    # the active subscriber's choices are not changed by an unauthenticated form
    assert store.get_subscriber("known@example.com").timezone == "UTC"
    assert {m["To"] for m in sink.wait(2)} == {"known@example.com", "new@example.com"}


def test_rate_limit_per_address(env):
    _, client, _, _ = env[:4]
    token = client.get("/csrf").json()["token"]
    codes = [post_subscribe(client, f"r{i}@example.com", token=token).status_code for i in range(4)]
    assert codes == [200, 200, 200, 429]
    r = post_subscribe(client, "r9@example.com", token=token)
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


def test_csrf_rejections(env):
    _, client, _, store = env[:4]
    token = client.get("/csrf").json()["token"]
    # no token at all: the form comes back with a fresh one, nothing stored
    r = client.post("/subscribe", data={"email": "c1@example.com", "languages": "en"})
    assert r.status_code == 403 and 'name="csrf" value="' in r.text
    # a token without the matching cookie (a cross-site page cannot read or set ours)
    with httpx.Client(base_url=str(client.base_url)) as stranger:
        r = stranger.post("/subscribe", data={"email": "c2@example.com", "languages": "en", "csrf": token})
        assert r.status_code == 403
    # a forged token in both places
    client.cookies.set("digest_csrf", "a.1.b")
    r = client.post("/subscribe", data={"email": "c3@example.com", "languages": "en", "csrf": "a.1.b"})
    assert r.status_code == 403
    client.cookies.clear()
    # cross-site browser requests
    token = client.get("/csrf").json()["token"]
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        r = post_subscribe(client, "c4@example.com", token=token, headers=headers)
        assert r.status_code == 403, headers
    for i in (1, 2, 3, 4):
        assert store.get_subscriber(f"c{i}@example.com") is None
    env[4].per_ip = web.RateLimiter(burst=3, refill=3600)  # the refusals above spent the burst
    same = post_subscribe(client, "c5@example.com", token=token,
                          headers={"Origin": str(client.base_url).rstrip("/"), "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200
    assert store.get_subscriber("c5@example.com") is not None


def test_preferences_post_needs_csrf(env):
    _, client, _, store = env[:4]
    store.add_subscriber(Subscriber(email="p@example.com", status="active"))
    prefs = tokens.sign(SECRET, "prefs", "p@example.com", None)
    r = client.post("/preferences", params={"t": prefs}, data={"languages": "en", "timezone": "UTC"})
    assert r.status_code == 403
    assert store.get_subscriber("p@example.com").languages == ["en", "zh"]


@pytest.mark.parametrize("fields,problem", [
    ({"email": "not-an-address"}, "email address"),
    ({"email": "a@example.com\r\nBcc: x@example.com"}, "email address"),
    ({"languages": []}, "at least one language"),
    ({"languages": ["en", "fr"]}, "unknown language"),
    # the same words as `digest subscribers add` (digest.subscribers), not the web's own
    ({"tz": "Mars/Olympus"}, "unknown time zone"),
    ({"tz": "../../etc/passwd"}, "unknown time zone"),
    ({"tz": "America"}, "unknown time zone"),
    ({"tags": "x" * 65}, "longer than 64"),
    ({"tags": ",".join(f"t{i}" for i in range(31))}, "at most 30"),
])
def test_bad_input_re_shows_the_form(env, fields, problem):
    _, client, sink, store = env[:4]
    args = {"email": "ok@example.com", **fields}
    email = args.pop("email")
    r = post_subscribe(client, email, **{k: v for k, v in (("langs", args.get("languages", ("en",))),
                                                            ("tz", args.get("tz", "UTC")),
                                                            ("tags", args.get("tags", "")))})
    assert r.status_code == 400
    assert problem in r.text and 'id="subscribe-form"' in r.text
    assert store.list_subscribers() == []


def test_oversized_body_is_refused(env):
    _, client, _, store = env[:4]
    token = client.get("/csrf").json()["token"]
    r = client.post("/subscribe", data={"email": "big@example.com", "languages": "en", "csrf": token,
                                        "tags": "x" * 100_000})
    assert r.status_code == 413
    assert store.get_subscriber("big@example.com") is None

    def chunks():
        for _ in range(40):
            yield b"tags=" + b"y" * 1000 + b"&"

    r = client.post("/subscribe", content=chunks(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413


def test_pages_escape_subscriber_data(env):
    _, client, _, store = env[:4]
    store.add_subscriber(Subscriber(email="x@example.com", status="active",
                                    tags=["<script>alert(1)</script>", 'a"b&c'], timezone="UTC"))
    prefs = tokens.sign(SECRET, "prefs", "x@example.com", None)
    r = client.get("/preferences", params={"t": prefs})
    assert r.status_code == 200
    assert "<script>alert(1)</script>" not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text and "a&#34;b&amp;c" in r.text


def test_subscribe_page_without_script_has_a_token(env):
    _, client, _, store = env[:4]
    page = client.get("/subscribe")
    assert page.status_code == 200 and "set-cookie" in page.headers
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    r = post_subscribe(client, "noscript@example.com", token=token)
    assert r.status_code == 200
    assert store.get_subscriber("noscript@example.com").status == "pending"


def test_resubscribe_after_unsubscribe_needs_confirming_again(env):
    config, client, sink, store = env[:4]
    store.add_subscriber(Subscriber(email="back@example.com", status="unsubscribed"))
    assert post_subscribe(client, "back@example.com", langs=["en"]).status_code == 200
    assert store.get_subscriber("back@example.com").status == "pending"
    [mail] = sink.wait(1)
    link = link_in(mail, "confirm")
    assert client.post(link.removeprefix(config.site.base_url.rstrip("/"))).status_code == 200
    assert store.get_subscriber("back@example.com").status == "active"


def test_rate_limiter_refills():
    now = [0.0]
    rl = web.RateLimiter(burst=2, refill=10, clock=lambda: now[0])
    assert [rl.take("a"), rl.take("a")] == [0, 0]
    assert rl.take("a") == pytest.approx(10)
    assert rl.take("b") == 0
    now[0] = 10
    assert rl.take("a") == 0 and rl.take("a") > 0


def test_csrf_token_checks():
    secret, browser = b"k", "b" * 24
    t = web.csrf_token(secret, browser, 1000)
    assert web.csrf_valid(secret, t, browser, 1000)
    assert web.csrf_valid(secret, web.csrf_token(secret, browser, 1200), browser, 1300)  # any fresh one
    assert not web.csrf_valid(secret, t, "c" * 24, 1000)  # another browser's cookie
    assert not web.csrf_valid(secret, t, "", 1000)
    assert not web.csrf_valid(b"other", t, browser, 1000)
    assert not web.csrf_valid(secret, t, browser, 1000 + web.CSRF_TTL + 1)
    assert not web.csrf_valid(secret, "", browser, 1000)
    assert not web.csrf_valid(secret, t + "x", browser, 1000)


def test_unsubscribed_address_gets_no_further_digest(env):
    from digest.pipeline import ingest_paths, send_digest
    from tests.support.web import NOW, SEEDS

    config, client, sink, store = env[:4]
    ingest_paths(config, [SEEDS], as_of=NOW, echo=lambda *a, **k: None)
    for email in ("stay@example.com", "leave@example.com"):
        store.add_subscriber(Subscriber(email=email, status="active"))
    unsub = tokens.sign(SECRET, "unsubscribe", "leave@example.com", None)
    with httpx.Client(base_url=str(client.base_url), timeout=20) as mail_provider:
        r = mail_provider.post("/unsubscribe", params={"t": unsub}, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    send_digest(config, now=NOW)
    got = sink.wait(1)
    assert [m["To"] for m in got] == ["stay@example.com"]


def test_store_failure_is_a_friendly_500(tmp_path, monkeypatch):
    set_secret(monkeypatch, SECRET.decode())
    config = write_config(tmp_path, free_port())
    config.store.path.parent.mkdir(parents=True, exist_ok=True)
    config.store.path.write_text("not a directory")  # the store cannot open
    with running(config) as server, httpx.Client(base_url=server.url, timeout=20) as client:
        for r in (client.get("/csrf"), client.get("/subscribe"),
                  client.post("/subscribe", data={"email": "s@example.com", "languages": "en"})):
            assert r.status_code == 500
            assert "could not finish" in r.text and "Traceback" not in r.text and "not a directory" not in r.text
        r = client.get("/confirm", params={"t": tokens.sign(SECRET, "confirm", "s@example.com", None)})
        assert r.status_code == 500 and "Traceback" not in r.text


def test_one_mailbox_is_not_flooded(env):
    _, client, sink, _, state = env
    state.per_ip = web.RateLimiter(burst=50, refill=1)
    token = client.get("/csrf").json()["token"]
    codes = [post_subscribe(client, "victim@example.com", token=token).status_code for _ in range(5)]
    assert codes == [200] * 5  # the page never tells
    sink.wait(3)
    post_subscribe(client, "other@example.com", token=token)  # a later mail proves the queue drained
    got = [m["To"] for m in sink.wait(4)]
    assert got.count("victim@example.com") == 3 and got[-1] == "other@example.com"


@pytest.mark.parametrize("status", ["complained", "bounced", "unsubscribed"])
def test_unsubscribe_link_keeps_a_complained_or_bounced_status(env, status):
    _, client, _, store = env[:4]
    email = f"{status}@example.com"
    store.add_subscriber(Subscriber(email=email, status=status))
    unsub = tokens.sign(SECRET, "unsubscribe", email, None)
    r = client.post("/unsubscribe", params={"t": unsub}, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    assert store.get_subscriber(email).status == status  # a complaint is never undone


@pytest.mark.parametrize("status", ["complained", "bounced", "unsubscribed"])
def test_preferences_of_a_gone_address_show_the_gone_page_not_a_form(env, status):
    _, client, _, store = env[:4]
    email = f"gone-{status}@example.com"
    store.add_subscriber(Subscriber(email=email, status=status))
    prefs = tokens.sign(SECRET, "prefs", email, None)
    page = client.get("/preferences", params={"t": prefs})
    assert page.status_code == 200
    assert 'name="csrf"' not in page.text and 'name="timezone"' not in page.text
