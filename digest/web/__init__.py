"""HTTP edge: the published files with conditional GET, and subscribe/confirm/preferences/unsubscribe.

Owns starlette and uvicorn. `app(config)` is the ASGI app (routes in one list below),
`serve(config)` blocks (`digest serve`), `serve_async(config, stop)` runs beside the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route

from digest.config import Config
from digest.errors import DigestError
from digest.web.files import accepts_gzip, etag_matches, media_type, resolve_static, static
from digest.web.guards import (
    CSRF_TTL,
    MAX_BODY,
    BadRequest,
    RateLimiter,
    TooLarge,
    csrf_token,
    csrf_valid,
)
from digest.web.pages import (
    WebState,
    bad_request,
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

ROUTES = [
    Route("/csrf", csrf, methods=["GET"]),
    Route("/subscribe", subscribe_form, methods=["GET", "HEAD"]),
    Route("/subscribe", subscribe, methods=["POST"]),
    Route("/confirm", confirm, methods=["GET", "HEAD"]),
    Route("/preferences", preferences, methods=["GET", "HEAD", "POST"]),
    Route("/unsubscribe", unsubscribe, methods=["GET", "HEAD", "POST"]),
    Route("/{path:path}", static, methods=["GET", "HEAD"]),
]


def app(config: Config, *, state: WebState | None = None) -> Starlette:
    """The ASGI application for `config` (pass `state` to set rate limits or a clock)."""
    application = Starlette(
        routes=ROUTES,
        exception_handlers={
            BadRequest: bad_request, TooLarge: too_large, HTTPException: http_error,
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


def _uvicorn_config(config: Config, application: Starlette, **kw: Any) -> uvicorn.Config:
    return uvicorn.Config(application, host=config.web.host, port=config.web.port, lifespan="off",
                          log_level="info", server_header=False, access_log=False, **kw)


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
    server = _QuietServer(_uvicorn_config(config, app(config, state=state)))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopper.cancel()
        await task

