"""HTTP edge: the published files with conditional GET, and subscribe/confirm/preferences/unsubscribe.

Owns starlette and uvicorn. `app(config)` is the ASGI app (routes in one list below),
`serve(config)` blocks (`digest serve`), `serve_async(config, stop)` runs beside the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.h11_impl import H11Protocol

from digest.config import Config
from digest.errors import DigestError
from digest.web.files import accepts_gzip, etag_matches, media_type, resolve_static, static
from digest.web.guards import (
    CSRF_TTL,
    MAX_BODY,
    BadRequest,
    ClientGone,
    RateLimiter,
    TooLarge,
    csrf_token,
    csrf_valid,
)
from digest.web.metrics import PEER, CountResponses, healthz, metrics_page
from digest.web.pages import (
    HEADER_TIMEOUT,
    MAX_CONNECTIONS,
    WebState,
    bad_request,
    client_gone,
    digest_error,
    http_error,
    server_error,
    too_large,
)
from digest.web.subscription import (
    confirm,
    csrf,
    preferences,
    subscribe,
    subscribe_form,
    unsubscribe,
)

__all__ = [
    "CSRF_TTL", "MAX_BODY", "ROUTES", "RateLimiter", "WebState", "accepts_gzip", "app", "bind",
    "csrf_token", "csrf_valid", "etag_matches", "media_type", "resolve_static", "serve", "serve_async",
]

log = logging.getLogger("digest.web")

LIMIT_CONCURRENCY = 512  # above MAX_CONNECTIONS: uvicorn counts open connections against it too
KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open
MAX_HEADER_BYTES = 16 * 1024  # request line + headers; larger gets a 400 from h11

_HEAD_END = re.compile(rb"\n\r?\n")  # h11 accepts bare LF line ends too
_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; "
              b"charset=utf-8\r\nconnection: close\r\ncontent-length: 32\r\n\r\n"
              b"Request headers are too large.\r\n")

ROUTES = [
    Route("/healthz", healthz, methods=["GET", "HEAD"]),
    Route("/metrics", metrics_page, methods=["GET"]),
    Route("/csrf", csrf, methods=["GET"]),
    Route("/subscribe", subscribe_form, methods=["GET", "HEAD"]),
    Route("/subscribe", subscribe, methods=["POST"]),
    Route("/confirm", confirm, methods=["GET", "HEAD", "POST"]),
    Route("/preferences", preferences, methods=["GET", "HEAD", "POST"]),
    Route("/unsubscribe", unsubscribe, methods=["GET", "HEAD", "POST"]),
    Route("/{path:path}", static, methods=["GET", "HEAD"]),
]


def app(config: Config, *, state: WebState | None = None) -> Starlette:
    """The ASGI application for `config` (pass `state` to set rate limits or a clock)."""
    application = Starlette(
        routes=ROUTES,
        middleware=[Middleware(CountResponses)],  # /metrics: responses by status
        exception_handlers={
            BadRequest: bad_request, TooLarge: too_large, ClientGone: client_gone, HTTPException: http_error,
            DigestError: digest_error, Exception: server_error,
        },
    )
    application.state.web = state or WebState(config)
    return application


class _QuietServer(uvicorn.Server):
    """Leaves signal handling to the daemon that runs it beside the scheduler."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _GuardedH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with two bounds it lacks: a client must send a request's
    headers within `header_timeout` seconds of connecting (or of the previous response; a
    trickle of bytes does not reset it), and at most `max_connections` are open at once —
    a newcomer past that closes the oldest connection that is not mid-request. Without
    them, idle or half-sent connections pile up until the process runs out of descriptors."""

    header_timeout = HEADER_TIMEOUT
    max_connections = MAX_CONNECTIONS
    _last_shed_log = -1e9

    max_header_bytes = MAX_HEADER_BYTES

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[arg-type]
        self._opened = self.loop.time()
        self._head: bytes | None = b""  # the request head read so far; None once complete
        self._arm_header_deadline()
        if len(self.connections) > self.max_connections:
            self._shed()

    def data_received(self, data: bytes) -> None:
        # h11's max_incomplete_event_size bounds only a head that arrives in pieces: one that
        # comes in a single read (up to ~64 KB) passed whole. Count the head ourselves.
        head = getattr(self, "_head", None)
        if head is not None:
            head += data
            end = _HEAD_END.search(head)
            size = end.end() if end else len(head)
            if size > self.max_header_bytes:
                self._head = None
                self.transport.write(_TOO_LARGE)
                self._close()
                return
            self._head = None if end else head
        super().data_received(data)

    def _busy(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _shed(self) -> None:
        idle = [c for c in self.connections if isinstance(c, _GuardedH11) and c is not self and not c._busy()]
        victim = min(idle, key=lambda c: c._opened) if idle else self
        now = self.loop.time()
        if now - _GuardedH11._last_shed_log >= 60:  # one line a minute, not one per connection
            _GuardedH11._last_shed_log = now
            log.warning("%d connections open (the limit): closing the oldest idle ones", self.max_connections)
        victim._close()

    def _arm_header_deadline(self) -> None:
        old = getattr(self, "_header_deadline", None)
        if old is not None:
            old.cancel()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._header_timeout)

    def _header_timeout(self) -> None:
        self._header_deadline = None
        if not self._busy():  # no request under way: headers never completed, or idle
            self._close()

    def _close(self) -> None:
        deadline = getattr(self, "_header_deadline", None)
        if deadline is not None:
            deadline.cancel()
        self.connections.discard(self)  # counted out now, even before the loop reports it
        if not self.transport.is_closing():
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._head = b""  # the next request's head is counted afresh
        if not self.transport.is_closing():
            self._arm_header_deadline()  # the next request's headers get the same bound

    def connection_lost(self, exc: Exception | None) -> None:
        deadline = getattr(self, "_header_deadline", None)
        if deadline is not None:
            deadline.cancel()
        super().connection_lost(exc)


class _RecordPeer:
    """Keep the TCP peer's address in `scope[PEER]` before X-Forwarded-For (from a
    `[web] trusted_proxies` peer) replaces `scope["client"]`."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            scope[PEER] = client[0] if client else ""
        await self.app(scope, receive, send)


def _uvicorn_config(config: Config, application: Starlette, state: WebState | None = None,
                    **kw: Any) -> uvicorn.Config:
    state = state or application.state.web
    protocol = type("GuardedH11", (_GuardedH11,), {"header_timeout": state.header_timeout,
                                                  "max_connections": state.max_connections})
    # Our log setup (digest.logs) formats uvicorn's lines like ours: no log_config of its
    # own; its access log only with [web] access_log (uvicorn turns propagation off for none).
    logging.getLogger("uvicorn.access").propagate = config.web.access_log
    trusted = list(config.web.trusted_proxies)
    wrapped = _RecordPeer(ProxyHeadersMiddleware(application, trusted_hosts=trusted)
                          if trusted else application)
    return uvicorn.Config(wrapped, host=config.web.host, port=config.web.port, lifespan="off",
                          log_level="info", server_header=False, http=protocol, log_config=None,
                          access_log=config.web.access_log,
                          # Requests in flight at once; past it uvicorn answers 503 at once.
                          limit_concurrency=LIMIT_CONCURRENCY,
                          timeout_keep_alive=KEEP_ALIVE,
                          h11_max_incomplete_event_size=MAX_HEADER_BYTES,
                          # X-Forwarded-For only from the proxies config names: uvicorn's
                          # default trusts 127.0.0.1, so any local client could choose the
                          # address its rate limit is counted under. We apply uvicorn's
                          # middleware ourselves (inside _RecordPeer), so /metrics can tell
                          # the TCP peer from the address a proxy forwarded.
                          proxy_headers=False, **kw)


def bind(config: Config) -> socket.socket:
    """Our own listening socket, so a port in use is a DigestError rather than uvicorn's exit."""
    host, port = config.web.host, config.web.port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, addr = infos[0]
        # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then,
        # and without it every keep-alive response waits 40 ms (Nagle + delayed ACK).
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        raise DigestError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                          "set [web] host/port in config.toml to a free address, or stop the other server") from e
    sock.setblocking(False)
    return sock


def serve(config: Config) -> None:
    """Serve until SIGINT/SIGTERM (`digest serve`), then return normally (exit status 0)."""
    sock = bind(config)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info("serving %s on http://%s:%s/", config.feeds.output, *sock.getsockname()[:2])
        await serve_async(config, stop, sock=sock)

    asyncio.run(main())


async def serve_async(config: Config, stop: asyncio.Event, *, state: WebState | None = None,
                      sock: socket.socket | None = None) -> None:
    """Serve inside a running event loop until `stop` is set (the daemon's web half)."""
    sock = sock or bind(config)
    application = app(config, state=state)
    server = _QuietServer(_uvicorn_config(config, application))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopper.cancel()
        await task

