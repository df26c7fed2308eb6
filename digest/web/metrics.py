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


def _allowed(request: Request) -> bool:
    config = request.app.state.web.config
    host = request.client.host if request.client else ""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    nets = list(LOOPBACK) + [ipaddress.ip_network(n, strict=False)
                             for n in config.web.metrics_allow]
    return any(addr in net for net in nets if net.version == addr.version)


async def metrics_page(request: Request) -> Response:
    """GET /metrics: the registry in the Prometheus text format (404 when off or not allowed)."""
    if not request.app.state.web.config.web.metrics or not _allowed(request):
        from starlette.exceptions import HTTPException

        raise HTTPException(404)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})


async def healthz(request: Request) -> Response:
    """GET /healthz: 200 and JSON when the store can be read (with the age of the last
    publish and send), 503 and the reason when it cannot."""
    from digest.errors import DigestError
    from digest.pipeline import health

    config = request.app.state.web.config
    try:
        body = await asyncio.to_thread(health, config)
    except (DigestError, OSError) as e:
        log.warning("healthz: store not readable: %s", getattr(e, "message", e))
        # The reason goes to the log only: it names paths an outsider need not see.
        return JSONResponse({"store": "unreachable"}, status_code=503,
                            headers={"Cache-Control": "no-store"})
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
