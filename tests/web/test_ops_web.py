"""Issue 16, the web side of operations: /healthz, /metrics (Prometheus text format, off by
default, loopback only unless [web] metrics_allow), and one log format for uvicorn and us."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging

import httpx
from prometheus_client.parser import text_string_to_metric_families

from digest.logs import setup_logging
from digest.pipeline import publish
from digest.web import app
from digest.web.metrics import observe_job


def _get(config, *paths: str, host: str = "127.0.0.1") -> list[httpx.Response]:
    """GET each path in turn from `app(config)` as a client at `host`."""
    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app(config), client=(host, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
            return [await c.get(p) for p in paths]

    return asyncio.run(main())


def _web(config, **changes):
    return dataclasses.replace(config, web=dataclasses.replace(config.web, **changes))


def test_healthz_reports_the_store_and_the_last_publish(config) -> None:
    publish(config)
    (r,) = _get(config, "/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["store"] == "ok" and body["last_publish_age_seconds"] is not None
    assert body["last_send_age_seconds"] is None


def test_healthz_is_503_when_the_store_cannot_be_read(empty_config) -> None:
    (r,) = _get(empty_config, "/healthz")  # no store at [store] path
    assert r.status_code == 503 and r.json() == {"store": "unreachable"}


def test_metrics_are_off_by_default(config) -> None:
    assert _get(config, "/metrics")[0].status_code == 404


def test_metrics_parse_as_prometheus_text_on_loopback_only(config) -> None:
    cfg = _web(config, metrics=True)
    observe_job("publish", 0.3, True)
    _, r = _get(cfg, "/no-such-page", "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    for name in ("digest_stories_ingested", "digest_files_published", "digest_messages",
                 "digest_subscribe_requests", "digest_http_responses",
                 "digest_job_duration_seconds"):
        assert name in families, sorted(families)
    assert families["digest_job_duration_seconds"].type == "histogram"
    statuses = {s.labels.get("status") for s in families["digest_http_responses"].samples}
    assert "404" in statuses
    assert _get(cfg, "/metrics", host="203.0.113.9")[0].status_code == 404
    allowed = _web(cfg, metrics_allow=("203.0.113.0/24",))
    assert _get(allowed, "/metrics", host="203.0.113.9")[0].status_code == 200


def test_json_log_format_is_one_object_per_line_for_uvicorn_too() -> None:
    out = io.StringIO()
    try:
        setup_logging("json", stream=out)
        logging.getLogger("digest.run").info("hello %s", "there")
        logging.getLogger("uvicorn.error").info("Started server process")
    finally:
        setup_logging("text")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["logger"], x["message"]) for x in lines] == [
        ("digest.run", "hello there"), ("uvicorn.error", "Started server process")]
    assert all(x["level"] == "INFO" and x["time"].endswith("Z") for x in lines)


def _get_with(config, path: str, host: str, headers: dict[str, str],
              peer: str | None = None) -> int:
    """GET `path` as a client at `host` carrying `headers`; `peer`, when given, is the TCP
    peer that uvicorn saw before a trusted proxy's X-Forwarded-For replaced the client."""
    inner = app(config)

    async def with_peer(scope, receive, send) -> None:
        if peer is not None:
            scope["digest.peer"] = peer
        await inner(scope, receive, send)

    async def main() -> int:
        transport = httpx.ASGITransport(app=with_peer, client=(host, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
            return (await c.get(path, headers=headers)).status_code

    return asyncio.run(main())


def test_metrics_refuse_what_a_local_reverse_proxy_forwards(config) -> None:
    cfg = _web(config, metrics=True)
    assert _get_with(cfg, "/metrics", "127.0.0.1", {}) == 200
    # A proxy on the same host, not in trusted_proxies: every request comes from loopback.
    for name, value in (("X-Forwarded-For", "203.0.113.9"), ("Forwarded", "for=203.0.113.9"),
                        ("X-Real-IP", "203.0.113.9")):
        assert _get_with(cfg, "/metrics", "127.0.0.1", {name: value}) == 404, name
        assert _get_with(cfg, "/metrics", "::ffff:127.0.0.1", {name: value}) == 404, name
    # The proxy is trusted: loopback is the proxy itself, not a local client.
    proxied = _web(cfg, trusted_proxies=("127.0.0.1",))
    assert _get_with(proxied, "/metrics", "127.0.0.1", {}) == 404
    assert _get_with(proxied, "/metrics", "127.0.0.1", {"X-Real-IP": "127.0.0.1"}) == 404
    # ... and the client it forwarded is judged: outside metrics_allow, 404; inside, 200.
    xff = {"X-Forwarded-For": "203.0.113.9"}
    assert _get_with(proxied, "/metrics", "203.0.113.9", xff, peer="127.0.0.1") == 404
    allowed = _web(proxied, metrics_allow=("203.0.113.0/24",))
    assert _get_with(allowed, "/metrics", "203.0.113.9", xff, peer="127.0.0.1") == 200
    # X-Forwarded-For from an untrusted peer was not consumed: refused even if allow-listed.
    assert _get_with(allowed, "/metrics", "203.0.113.9", xff, peer="203.0.113.9") == 404


def test_metrics_allow_matches_ipv4_mapped_ipv6_peers(config) -> None:
    cfg = _web(config, metrics=True)
    assert _get_with(cfg, "/metrics", "::ffff:127.0.0.1", {}) == 200
    assert _get_with(cfg, "/metrics", "::ffff:203.0.113.9", {}) == 404
    allowed = _web(cfg, metrics_allow=("203.0.113.0/24",))
    assert _get_with(allowed, "/metrics", "::ffff:203.0.113.9", {}) == 200


def test_healthz_is_cached_and_reads_no_story_index(config, monkeypatch) -> None:
    import digest.pipeline
    from digest.store.embedded import Store

    publish(config)

    def no_index(self) -> int:
        raise AssertionError("healthz read the story index")

    monkeypatch.setattr(Store, "story_count", no_index)
    calls = []
    real = digest.pipeline.health
    monkeypatch.setattr(digest.pipeline, "health", lambda c: calls.append(1) or real(c))
    rs = _get(config, "/healthz", "/healthz", "/healthz")
    assert [r.status_code for r in rs] == [200, 200, 200]
    assert rs[0].json() == rs[2].json() and len(calls) == 1  # one store read per HEALTH_TTL
