"""Issue 17.5 and 17.11: X-Forwarded-For is believed only from `[web] trusted_proxies`
(uvicorn alone trusts 127.0.0.1, so any local client chose its own rate-limit key);
confirmation mails are capped per mailbox (plus-address variants are one mailbox); a
request head over 16 KB is refused even when it arrives in one read."""

from __future__ import annotations

import dataclasses
import socket
import time

import httpx
import pytest

from digest import web
from digest.config import ConfigError, load_config
from digest.web.guards import WindowLimiter, mailbox_key
from tests.support.web import free_port, running, set_secret, write_config


def _serve(tmp_path, sink, trusted: tuple[str, ...] = (), per_ip_burst: int = 3):
    config = write_config(tmp_path, free_port(), smtp_port=sink.port)
    config = dataclasses.replace(config, web=dataclasses.replace(config.web,
                                                                 trusted_proxies=trusted))
    config.feeds.output.mkdir(parents=True)
    (config.feeds.output / "index.html").write_text("<h1>index</h1>")
    state = web.WebState(config, per_ip=web.RateLimiter(burst=per_ip_burst, refill=3600))
    return config, state


def _post(client: httpx.Client, email: str, headers: dict[str, str] | None = None) -> int:
    token = client.get("/csrf").json()["token"]
    return client.post("/subscribe", headers=headers or {}, data={
        "email": email, "languages": ["en"], "tags": "", "timezone": "UTC", "csrf": token,
    }).status_code


def test_forwarded_for_from_an_untrusted_peer_does_not_change_the_rate_limit_key(
        tmp_path, monkeypatch, sink) -> None:
    set_secret(monkeypatch)
    config, state = _serve(tmp_path, sink)
    with running(config, state) as server, httpx.Client(base_url=server.url, timeout=20) as c:
        codes = [_post(c, f"f{i}@example.com", {"X-Forwarded-For": f"203.0.113.{i}"})
                 for i in range(4)]
    assert codes == [200, 200, 200, 429]


def test_forwarded_for_from_a_trusted_proxy_is_the_client(tmp_path, monkeypatch, sink) -> None:
    set_secret(monkeypatch)
    config, state = _serve(tmp_path, sink, trusted=("127.0.0.0/8",))
    with running(config, state) as server, httpx.Client(base_url=server.url, timeout=20) as c:
        codes = [_post(c, f"t{i}@example.com", {"X-Forwarded-For": f"203.0.113.{i}"})
                 for i in range(4)]
    assert codes == [200, 200, 200, 200]


def test_trusted_proxies_config_is_checked(tmp_path) -> None:
    write_config(tmp_path, 8000)
    cfg = tmp_path / "config.toml"
    cfg.write_text(cfg.read_text() + 'trusted_proxies = ["10.0.0.0/8", "::1"]\n')
    assert load_config(cfg).web.trusted_proxies == ("10.0.0.0/8", "::1")
    cfg.write_text(cfg.read_text().replace('"::1"', '"proxy.example"'))
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert "[web].trusted_proxies" in e.value.message and "not an IP address" in e.value.message


def test_confirmation_mails_are_capped_per_mailbox(tmp_path, monkeypatch, sink) -> None:
    set_secret(monkeypatch)
    config, state = _serve(tmp_path, sink, per_ip_burst=50)
    variants = ["victim@example.com", "victim+1@example.com", "Victim+news@Example.com",
                "victim+2@example.com", "victim+3@example.com"]
    with running(config, state) as server, httpx.Client(base_url=server.url, timeout=20) as c:
        assert [_post(c, e) for e in variants] == [200] * 5  # the same page: no enumeration
        mails = sink.wait(3)
        time.sleep(1.0)
    assert len(mails) == 3 and len(sink.server.parsed()) == 3


def test_window_limiter_and_mailbox_key() -> None:
    now = [0.0]
    lim = WindowLimiter(limit=3, window=86400, clock=lambda: now[0])
    assert [lim.take("a@d") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert lim.take("a@d") == 86400
    now[0] = 86399.0
    assert lim.take("a@d") > 0
    now[0] = 86400.0
    assert lim.take("a@d") == 0.0
    assert mailbox_key(" A+x+y@Example.ORG") == "a@example.org"
    assert mailbox_key("+x@d.org") == "+x@d.org"


def _raw(port: int, head_bytes: int) -> bytes:
    pad = "x" * head_bytes
    req = (f"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: {pad}\r\n"
           "Connection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(req)  # one write; on loopback it arrives in one read
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_headers_over_16kb_in_one_read_are_refused(tmp_path) -> None:
    config = write_config(tmp_path, free_port())
    config.feeds.output.mkdir(parents=True)
    (config.feeds.output / "index.html").write_text("<h1>index</h1>")
    with running(config):
        assert _raw(config.web.port, 10_000).startswith(b"HTTP/1.1 200")
        assert _raw(config.web.port, 40_000).startswith(b"HTTP/1.1 431")
        assert _raw(config.web.port, 17_000).startswith(b"HTTP/1.1 431")


def test_metrics_through_a_trusted_local_proxy_judge_the_forwarded_client(
        tmp_path, monkeypatch, sink) -> None:
    set_secret(monkeypatch)
    config, _ = _serve(tmp_path, sink, trusted=("127.0.0.1",))
    config = dataclasses.replace(config, web=dataclasses.replace(
        config.web, metrics=True, metrics_allow=("203.0.113.0/24",)))
    with running(config) as server, httpx.Client(base_url=server.url, timeout=20) as c:
        assert c.get("/metrics").status_code == 404  # the proxy itself is not "loopback"
        assert c.get("/metrics", headers={"X-Forwarded-For": "198.51.100.7"}).status_code == 404
        assert c.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 200
