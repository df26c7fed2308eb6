"""Prometheus metrics (the only prometheus_client user): one registry per process, fed by
the daemon from the pipeline's reports and by the web app from its requests; `/healthz` and
`/metrics` themselves.

The pipeline only counts (its reports); turning counts into metrics happens here, so the
library stays in one place. `/metrics` is off unless `[web] metrics = true`, and then
answered only to loopback and the addresses `[web] metrics_allow` lists (others get 404, as
if it did not exist): metric labels name digests and paths an outsider need not see.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("digest.web")

REGISTRY = CollectorRegistry(auto_describe=True)
STORIES_INGESTED = Counter("digest_stories_ingested", "Stories stored by ingest runs, by outcome",
                           ["outcome"], registry=REGISTRY)
FILES_PUBLISHED = Counter("digest_files_published", "Files written or removed by publish runs",
                          ["action"], registry=REGISTRY)
MESSAGES = Counter("digest_messages", "Digest messages by digest and outcome "
                   "(sent, failed, bounced)", ["digest", "outcome"], registry=REGISTRY)
SUBSCRIBE_REQUESTS = Counter("digest_subscribe_requests", "POST /subscribe requests by status",
                             ["status"], registry=REGISTRY)
HTTP_RESPONSES = Counter("digest_http_responses", "HTTP responses by status code",
                         ["status"], registry=REGISTRY)
JOB_SECONDS = Histogram("digest_job_duration_seconds", "Duration of daemon jobs",
                        ["job", "result"], registry=REGISTRY,
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900))
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


# --- fed by the daemon from pipeline reports ---------------------------------------------

def observe_ingest(report: Any) -> None:
    for outcome in ("added", "updated", "unchanged"):
        STORIES_INGESTED.labels(outcome).inc(len(getattr(report, outcome)))
    STORIES_INGESTED.labels("rejected").inc(len(report.rejections))


def observe_publish(report: Any) -> None:
    FILES_PUBLISHED.labels("written").inc(len(report.written))
    FILES_PUBLISHED.labels("removed").inc(len(report.removed))


def observe_send(report: Any) -> None:
    for outcome in ("sent", "failed", "bounced"):
        MESSAGES.labels(report.digest, outcome).inc(len(getattr(report, outcome)))


def observe_job(job: str, seconds: float, ok: bool) -> None:
    JOB_SECONDS.labels(job, "ok" if ok else "error").observe(seconds)


# --- the web side ------------------------------------------------------------------------

class CountResponses:
    """ASGI middleware counting every HTTP response by status (and POST /subscribe apart)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        subscribe = scope.get("method") == "POST" and scope.get("path") == "/subscribe"

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = str(message["status"])
                HTTP_RESPONSES.labels(status).inc()
                if subscribe:
                    SUBSCRIBE_REQUESTS.labels(status).inc()
            await send(message)

        await self.app(scope, receive, counted)


PEER = "digest.peer"  # ASGI scope key: the TCP peer, before a trusted proxy's X-Forwarded-For
FORWARDING = (b"x-forwarded-for", b"forwarded", b"x-real-ip")


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """`host` as an address, an IPv4-mapped IPv6 one (`::ffff:127.0.0.1`) as its IPv4."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _within(addr, networks) -> bool:
    return any(addr in net for net in networks if net.version == addr.version)


def _networks(values) -> list:
    out = []
    for n in values:
        net = ipaddress.ip_network(n, strict=False)
        out.append(net)
        if net.version == 6 and net.network_address.ipv4_mapped is not None and net.prefixlen >= 96:
            out.append(ipaddress.ip_network(
                f"{net.network_address.ipv4_mapped}/{net.prefixlen - 96}", strict=False))
    return out


def _allowed(request: Request) -> bool:
    """Loopback or `[web] metrics_allow` — but never a request a proxy forwarded unless the
    proxy is one of `[web] trusted_proxies` (then the client it names is judged), and never
    loopback meaning a trusted proxy itself: behind a reverse proxy on the same host every
    request would otherwise come from 127.0.0.1."""
    config = request.app.state.web.config
    client = request.client.host if request.client else ""
    addr = _address(client)
    if addr is None:
        return False
    peer = _address(request.scope.get(PEER, client))
    trusted = _networks(config.web.trusted_proxies)
    via_trusted = peer is not None and _within(peer, trusted)
    names = {name for name, _ in request.scope.get("headers", ())}
    consumed = via_trusted and b"x-forwarded-for" in names
    if names.intersection(FORWARDING) and not consumed:
        return False  # forwarded by a proxy we do not trust: the peer is not the client
    if _within(addr, _networks(config.web.metrics_allow)):
        return True
    return _within(addr, LOOPBACK) and not _within(addr, trusted) and not via_trusted


async def metrics_page(request: Request) -> Response:
    """GET /metrics: the registry in the Prometheus text format (404 when off or not allowed)."""
    if not request.app.state.web.config.web.metrics or not _allowed(request):
        from starlette.exceptions import HTTPException

        raise HTTPException(404)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})


HEALTH_TTL = 5.0  # seconds one /healthz answer is reused: probes cost one store read per TTL


class _HealthCache:
    """The last /healthz answer of one app, reused for HEALTH_TTL seconds; concurrent
    requests after it expires wait for one store read instead of each making one (the
    store is read on the default executor, which the scheduler uses too)."""

    def __init__(self) -> None:
        self.at = float("-inf")
        self.answer: tuple[int, dict[str, Any]] | None = None
        self.lock: asyncio.Lock | None = None

    def fresh(self) -> tuple[int, dict[str, Any]] | None:
        if self.answer is not None and time.monotonic() - self.at < HEALTH_TTL:
            return self.answer
        return None

    async def get(self, config: Any) -> tuple[int, dict[str, Any]]:
        answer = self.fresh()
        if answer is not None:
            return answer
        if self.lock is None:
            self.lock = asyncio.Lock()
        async with self.lock:
            answer = self.fresh()
            if answer is None:
                answer = await _health_answer(config)
                self.answer, self.at = answer, time.monotonic()
        return answer


async def _health_answer(config: Any) -> tuple[int, dict[str, Any]]:
    from digest.errors import DigestError
    from digest.pipeline import health

    try:
        return 200, await asyncio.to_thread(health, config)
    except (DigestError, OSError) as e:
        log.warning("healthz: store not readable: %s", getattr(e, "message", e))
        # The reason goes to the log only: it names paths an outsider need not see.
        return 503, {"store": "unreachable"}


async def healthz(request: Request) -> Response:
    """GET /healthz: 200 and JSON when the store can be read (with the age of the last
    publish and send), 503 and the reason when it cannot; the answer is reused for
    HEALTH_TTL seconds."""
    state = request.app.state
    cache = getattr(state, "health_cache", None)
    if cache is None:
        cache = state.health_cache = _HealthCache()
    code, body = await cache.get(state.web.config)
    return JSONResponse(body, status_code=code, headers={"Cache-Control": "no-store"})
