"""Shared state of the web app and its HTML pages: rendering, CSRF cookie, error pages."""

from __future__ import annotations

import logging
import secrets
import threading
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
from digest.pipeline.sending import site_secret
from digest.resources import WEB_TEMPLATES
from digest.publish.site import environment
from digest.store import Store
from digest.web.guards import (
    BODY_TIMEOUT,
    CSRF_COOKIE,
    CSRF_COOKIE_TTL,
    MAX_BODY,
    BadRequest,
    ClientGone,
    RateLimiter,
)

log = logging.getLogger("digest.web")

MAX_CONNECTIONS = 500  # below uvicorn's limit_concurrency (512), which counts connections too
HEADER_TIMEOUT = 10.0  # seconds from connect (or the last response) to a request's full headers


@dataclass
class WebState:
    config: Config
    files: Any = field(default_factory=lambda: _file_cache())
    per_ip: RateLimiter = field(default_factory=RateLimiter)
    # One victim's mailbox must not be flooded from many addresses: a quieter bucket per email.
    per_email: RateLimiter = field(default_factory=lambda: RateLimiter(burst=3, refill=600.0))
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Slow-client bounds (see web/__init__.py): open connections at once (the oldest idle one
    # is closed for a newcomer), seconds to send a request's headers, and its form body.
    max_connections: int = MAX_CONNECTIONS
    header_timeout: float = HEADER_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    _store: Any = None
    _secret: bytes | None = None
    _templates: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = Store(self.config.store.path)
            return self._store

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
        if self._secret is None:
            value = site_secret(self.config, self.store)
            self._secret = value.encode() if isinstance(value, str) else bytes(value)
        return self._secret


def _file_cache() -> Any:
    from digest.web.files import FileCache  # files.py renders its 404 page from here

    return FileCache()


def state_of(request: Request) -> WebState:
    return request.app.state.web


def base_url(config: Config) -> str:
    return config.site.base_url.rstrip("/") + "/"


def security_headers(script_src: str) -> dict[str, str]:
    """Headers for every HTML page: what may run (`script_src`), no framing, no Referer."""
    return {
        "Content-Security-Policy": (
            f"default-src 'self'; script-src {script_src}; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        # Link tokens live in query strings: no page hands its URL to another site as a
        # Referer. `same-origin` rather than `no-referrer`, because under `no-referrer`
        # browsers post `Origin: null` from our own forms, and browsers without
        # Sec-Fetch-Site (older Safari/Firefox) could then not tell them from a forgery.
        "Referrer-Policy": "same-origin",
    }


def render(request: Request, template: str, status: int = 200, *,
           cookie: str | None = None, **ctx: Any) -> Response:
    """An HTML page from templates/web/, rendered by digest.publish.site's environment (autoescape
    on, undefined names are errors, XML-illegal characters stripped). `cookie` is a new
    browser id to set as the CSRF cookie (None: leave the browser's cookie alone)."""
    st = state_of(request)
    nonce = secrets.token_urlsafe(12)
    for key, value in (("base_url", base_url(st.config)), ("site", st.config.site), ("page_lang", "en"),
                       ("root", base_url(st.config)), ("nonce", nonce), ("hint", ""), ("problem", None),
                       ("prefs_token", None), ("email", "")):
        ctx.setdefault(key, value)
    html = st.templates.get_template(template).render(**ctx)
    resp = Response(html, status_code=status, media_type="text/html; charset=utf-8")
    resp.headers["Cache-Control"] = "no-store"
    # base.html carries its styles inline; scripts run only with this response's nonce.
    resp.headers.update(security_headers(f"'nonce-{nonce}'"))
    if cookie:
        set_csrf_cookie(resp, st.config, cookie)
    return resp


def set_csrf_cookie(resp: Response, config: Config, browser_id: str) -> None:
    secure = "; Secure" if base_url(config).startswith("https:") else ""
    resp.headers["Set-Cookie"] = (f"{CSRF_COOKIE}={browser_id}; Path=/; Max-Age={CSRF_COOKIE_TTL}; "
                                  f"HttpOnly; SameSite=Strict{secure}")


def error_page(request: Request, status: int, message: str, hint: str = "") -> Response:
    titles = {400: "This link or form is not valid", 403: "Request refused", 404: "Not found",
              405: "Method not allowed", 413: "Too much data", 415: "Unsupported form",
              429: "Too many requests", 500: "Something went wrong"}
    try:
        return render(request, "message.html", status, kind="error",
                      heading=titles.get(status, "Error"), message=message, hint=hint)
    except Exception:  # the error page itself must never fail with a stack trace
        log.exception("error page failed")
        return Response(f"{status} {titles.get(status, 'Error')}\n", status_code=status,
                        media_type="text/plain; charset=utf-8")


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
