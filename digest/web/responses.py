"""HTML responses every web module shares: page rendering with the security headers, the
CSRF cookie and the friendly error page (files.py and subscription.py both answer with them)."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from digest.config import Config
from digest.web.guards import CSRF_COOKIE, CSRF_COOKIE_TTL

log = logging.getLogger("digest.web")


def state_of(request: Request) -> Any:
    """The app's digest.web.pages.WebState (typed loosely: that module imports this one)."""
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
