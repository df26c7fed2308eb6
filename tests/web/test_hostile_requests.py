"""The web front door under hostile requests on a real socket: any method, path, query, body
and header gets a bounded, friendly answer (never a 5xx, never a stack trace) and changes no
state; a concurrent burst of subscribe requests for one address sends a bounded number of
mails and leaves one pending row; replayed and forged links change nothing."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest import web
from digest.mail import tokens
from digest.models import Subscriber
from digest.store import Store
from tests.support.web import free_port, running, set_secret, write_config

SECRET = "hardening-web-secret-0123456789"
ROUTES = ["/", "/subscribe", "/confirm", "/preferences", "/unsubscribe", "/csrf", "/index.html",
          "/feeds.opml", "/.digest-manifest.json", "/store/subscribers.json", "/%2e%2e/config.toml",
          "/..%2fconfig.toml", "/a" * 300, "/%00", "/stories/../../config.toml"]
JUNK = ["<script>alert(1)</script>", "'; DROP TABLE x;--", "\x00", "%00", "%ff%fe", "\u202e",
        "A" * 5000, "t=" + "x" * 3000, "../../etc/passwd", "{{7*7}}", "a@b.c\r\nBcc: x@y.z"]


@pytest.fixture
def site(tmp_path, monkeypatch, sink):
    set_secret(monkeypatch, SECRET)
    config = write_config(tmp_path, free_port(), smtp_port=sink.port)
    config.feeds.output.mkdir(parents=True)
    (config.feeds.output / "index.html").write_text("<h1>index</h1>")
    store = Store(config.store.path)
    store.add_subscriber(Subscriber(email="keep@example.com", status="active"))
    state = web.WebState(config, per_ip=web.RateLimiter(burst=1000, refill=1))
    with running(config, state) as server:
        yield config, server, sink, store


def rows(store: Store) -> list[dict]:
    return sorted((s.to_dict() for s in store.list_subscribers()), key=lambda d: d["email"])


def assert_friendly(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:500])
    body = r.text
    assert "Traceback" not in body and 'File "/' not in body, body[:500]
    assert len(r.content) < 200_000


requests_ = st.fixed_dictionaries({
    "method": st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"]),
    "path": st.one_of(st.sampled_from(ROUTES), st.text(max_size=40).map(lambda s: "/" + s)),
    "params": st.dictionaries(st.sampled_from(["t", "email", "csrf", "x"]),
                              st.one_of(st.sampled_from(JUNK), st.text(max_size=30)), max_size=3),
    "body": st.one_of(st.none(), st.binary(max_size=300),
                      st.sampled_from(JUNK).map(str.encode),
                      st.dictionaries(st.sampled_from(["email", "languages", "tags", "timezone",
                                                       "csrf", "List-Unsubscribe"]),
                                      st.one_of(st.sampled_from(JUNK), st.text(max_size=20)),
                                      max_size=5).map(lambda d: httpx.QueryParams(d).__str__()
                                                      .encode())),
    "ctype": st.sampled_from([None, "application/x-www-form-urlencoded",
                              "multipart/form-data; boundary=zz", "multipart/form-data",
                              "application/json", "text/plain; charset=utf-7", "\x7f/\x7f"]),
    "cookie": st.one_of(st.none(), st.sampled_from(JUNK[:6])),
})


def test_any_request_is_answered_kindly_and_changes_nothing(site) -> None:
    config, server, sink, store = site
    before = rows(store)
    answered: list[int] = []
    with httpx.Client(base_url=server.url, timeout=20) as client:

        @settings(max_examples=150, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
        @given(requests_)
        def one(req: dict) -> None:
            headers = {}
            if req["ctype"]:
                headers["Content-Type"] = req["ctype"]
            if req["cookie"]:
                headers["Cookie"] = "csrf=" + req["cookie"].encode("ascii", "replace").decode()
            try:
                r = client.request(req["method"], req["path"], params=req["params"],
                                   content=req["body"], headers=headers)
            except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError):
                return  # the client itself refuses to send it: nothing reached the server
            assert_friendly(r)
            answered.append(r.status_code)

        one()
    assert len(answered) >= 100, len(answered)  # most requests really reached the server
    assert rows(store) == before  # no token, no CSRF: no state change
    assert sink.server.messages == []


def test_concurrent_burst_for_one_address_is_bounded(site) -> None:
    config, server, sink, store = site
    with httpx.Client(base_url=server.url, timeout=30) as client:
        token = client.get("/csrf").json()["token"]

        def post(_i: int) -> int:
            data = {"email": "burst@example.com", "languages": "en", "timezone": "UTC",
                    "csrf": token}
            r = client.post("/subscribe", data=data)
            assert_friendly(r)
            return r.status_code

        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            codes = list(ex.map(post, range(60)))
    assert set(codes) <= {200, 429}, codes
    subs = [s for s in store.list_subscribers() if s.email == "burst@example.com"]
    assert len(subs) == 1 and subs[0].status == "pending"
    try:
        sink.server.wait_for(4, timeout=5)  # waits for a 4th mail that must never come
        raise AssertionError("more than 3 confirmation mails for one address")
    except TimeoutError:
        pass
    assert 1 <= len(sink.server.messages) <= 3


def test_replayed_and_forged_links_change_nothing(site) -> None:
    config, server, sink, store = site
    key = SECRET.encode()
    with httpx.Client(base_url=server.url, timeout=20) as client:
        unsub = tokens.sign(key, "unsubscribe", "keep@example.com", None)
        confirm = tokens.sign(key, "confirm", "keep@example.com", None)
        forged = [unsub[:-2] + ("AA" if not unsub.endswith("AA") else "BB"),
                  tokens.sign(b"other-secret", "unsubscribe", "keep@example.com", None),
                  confirm]  # a confirm token used as an unsubscribe token
        for t in forged:
            r = client.post("/unsubscribe", params={"t": t}, data={"List-Unsubscribe": "One-Click"})
            assert r.status_code == 400 and "Traceback" not in r.text
        assert store.get_subscriber("keep@example.com").status == "active"
        for _ in range(3):  # replay one-click unsubscribe: idempotent
            r = client.post("/unsubscribe", params={"t": unsub}, data={"List-Unsubscribe": "One-Click"})
            assert r.status_code == 200
        assert store.get_subscriber("keep@example.com").status == "unsubscribed"
        for _ in range(2):  # an old confirm link never resubscribes
            r = client.get("/confirm", params={"t": confirm})
            assert_friendly(r)
        assert store.get_subscriber("keep@example.com").status == "unsubscribed"
