"""Shared state of the web app and its HTML pages: rendering, CSRF cookie, error pages."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from digest.config import Config
from digest.errors import DigestError
from digest.pipeline.sending import site_secret
from digest.resources import WEB_TEMPLATES
from digest.site import environment
from digest.store import Store
from digest.web.guards import CSRF_COOKIE, CSRF_TTL, MAX_BODY, BadRequest, RateLimiter

log = logging.getLogger("digest.web")


@dataclass
class WebState:
    config: Config
    files: Any = field(default_factory=lambda: _file_cache())
    per_ip: RateLimiter = field(default_factory=RateLimiter)
    # One victim's mailbox must not be flooded from many addresses: a quieter bucket per email.
    per_email: RateLimiter = field(default_factory=lambda: RateLimiter(burst=3, refill=600.0))
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
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


def render(request: Request, template: str, status: int = 200, *,
           cookie: str | None = None, **ctx: Any) -> Response:
    """An HTML page from templates/web/, rendered by digest.site's environment (autoescape
    on, undefined names are errors, XML-illegal characters stripped)."""
    st = state_of(request)
    nonce = secrets.token_urlsafe(12)
    for key, value in (("base_url", base_url(st.config)), ("site", st.config.site), ("page_lang", "en"),
                       ("root", base_url(st.config)), ("nonce", nonce), ("hint", ""), ("problem", None),
                       ("prefs_token", None), ("email", "")):
        ctx.setdefault(key, value)
    html = st.templates.get_template(template).render(**ctx)
    resp = Response(html, status_code=status, media_type="text/html; charset=utf-8")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    # base.html carries its styles inline; scripts run only with this response's nonce.
    resp.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
    # Pages reached by signed links must not hand the token to other sites via Referer.
    # Not "no-referrer": with it Chromium sends `Origin: null` on our own form posts.
    resp.headers["Referrer-Policy"] = "same-origin"
    if cookie:
        set_csrf_cookie(resp, st.config, cookie)
    return resp


def set_csrf_cookie(resp: Response, config: Config, token: str) -> None:
    secure = "; Secure" if base_url(config).startswith("https:") else ""
    resp.headers["Set-Cookie"] = f"{CSRF_COOKIE}={token}; Path=/; Max-Age={CSRF_TTL}; HttpOnly; SameSite=Strict{secure}"


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
    return error_page(request, exc.status, exc.message, exc.hint)


async def too_large(request: Request, exc: Exception) -> Response:
    return error_page(request, 413, f"The request body is larger than {MAX_BODY // 1024} KB.",
                      "Forms here are small; send less data.")


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
