"""The web app's shared state (WebState) and the exception handlers that turn errors into
friendly pages."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from digest.config import Config
from digest.errors import DigestError
from digest.pipeline.subscribing import Subscriptions, open_subscriptions
from digest.publish.site import environment
from digest.resources import WEB_TEMPLATES
from digest.web.files import FileCache
from digest.web.guards import (
    BODY_TIMEOUT,
    MAX_BODY,
    BadRequest,
    ClientGone,
    RateLimiter,
    WindowLimiter,
)
from digest.web.responses import error_page

log = logging.getLogger("digest.web")

MAX_CONNECTIONS = 500  # below uvicorn's limit_concurrency (512), which counts connections too
HEADER_TIMEOUT = 10.0  # seconds from connect (or the last response) to a request's full headers
TAG_CACHE_SECONDS = 60.0  # how stale the forms' tag list may be


@dataclass
class WebState:
    config: Config
    files: FileCache = field(default_factory=FileCache)
    per_ip: RateLimiter = field(default_factory=RateLimiter)
    # One victim's mailbox must not be flooded from many addresses: at most 3 confirmation
    # mails a day per mailbox (`guards.mailbox_key`: plus-variants count as one).
    per_email: WindowLimiter = field(default_factory=WindowLimiter)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Slow-client bounds (see web/__init__.py): open connections at once (the oldest idle one
    # is closed for a newcomer), seconds to send a request's headers, and its form body.
    max_connections: int = MAX_CONNECTIONS
    header_timeout: float = HEADER_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    _subscriptions: Subscriptions | None = None
    _templates: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _tag_cache: tuple[float, list[Any]] | None = None

    @property
    def subscriptions(self) -> Subscriptions:
        """Subscriber state, through the pipeline (the web never opens the store itself)."""
        with self._lock:
            if self._subscriptions is None:
                self._subscriptions = open_subscriptions(self.config)
            return self._subscriptions

    @property
    def private_paths(self) -> tuple[Path, ...]:
        """Places never served even when the output dir holds them: the store (site secret,
        addresses), the Maildir (mail) and the config file."""
        c = self.config
        return tuple(Path(p).resolve() for p in (c.store.path, c.smtp.maildir, c.path) if p)

    @property
    def templates(self) -> Any:
        if self._templates is None:
            self._templates = environment(WEB_TEMPLATES)
        return self._templates

    @property
    def secret(self) -> bytes:
        """The site secret (env var, else generated once and kept in the store); never logged."""
        return self.subscriptions.secret

    def tag_choices(self) -> list[Any]:
        """The forms' tag checkboxes (Subscriptions.tag_choices), read again at most once a
        minute: listing every story per form view would cost a store scan each time."""
        now = time.monotonic()
        cached = self._tag_cache
        if cached is None or now - cached[0] > TAG_CACHE_SECONDS:
            cached = self._tag_cache = (now, self.subscriptions.tag_choices())
        return cached[1]


async def bad_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    resp = error_page(request, exc.status, exc.message, exc.hint)
    if exc.status == 408:
        resp.headers["Connection"] = "close"  # the rest of a slow body is not worth waiting for
    return resp


async def too_large(request: Request, exc: Exception) -> Response:
    resp = error_page(request, 413, f"The request body is larger than {MAX_BODY // 1024} KB.",
                      "Forms here are small; send less data.")
    resp.headers["Connection"] = "close"  # do not read the rest of an oversized body
    return resp


async def client_gone(request: Request, exc: Exception) -> Response:
    """A client that hung up mid-body is routine, not a server error: one quiet log line."""
    assert isinstance(exc, ClientGone)
    log.info("client %s disconnected before sending its %s %s body",
             request.client.host if request.client else "?", request.method, request.url.path)
    return Response(b"", status_code=400, headers={"Connection": "close"})


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_page(request, 404, "There is no such page here.", "Start from the front page.")
    resp = error_page(request, exc.status_code, str(exc.detail), "")
    if exc.headers:
        resp.headers.update(exc.headers)
    return resp


async def digest_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DigestError)
    log.error("request %s failed: %s", request.url.path, exc.message)
    return error_page(request, 500, "The server could not finish this request.", "Try again in a minute.")


async def server_error(request: Request, exc: Exception) -> Response:
    log.error("request %s failed", request.url.path, exc_info=exc)
    return error_page(request, 500, "The server could not finish this request.", "Try again in a minute.")
