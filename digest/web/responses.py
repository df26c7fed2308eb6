"""HTML responses every web module shares: page rendering with the security headers, the
CSRF cookie and the friendly error page (files.py and subscription.py both answer with them)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from digest import i18n
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


def languages_of(request: Request, known: Sequence[str] | None = None) -> tuple[str, ...]:
    """The reader's interface languages (digest.i18n.negotiate): `known` (a subscriber's
    languages) bounds them, `Accept-Language` picks among them, else both."""
    return i18n.negotiate(request.headers.get("accept-language"), known)


def render(request: Request, template: str, status: int = 200, *,
           cookie: str | None = None, langs: Sequence[str] | None = None, **ctx: Any) -> Response:
    """An HTML page from templates/web/, rendered by digest.publish.site's environment (autoescape
    on, undefined names are errors, XML-illegal characters stripped). `cookie` is a new
    browser id to set as the CSRF cookie (None: leave the browser's cookie alone). `langs`
    are the subscriber's languages when the page is theirs (a link token named them); the
    page is in those, or the browser's, or both (`languages_of`)."""
    st = state_of(request)
    nonce = secrets.token_urlsafe(12)
    ui_langs = languages_of(request, langs)
    for key, value in (("base_url", base_url(st.config)), ("site", st.config.site),
                       ("page_lang", i18n.html_lang(ui_langs)), ("ui_langs", ui_langs),
                       ("root", base_url(st.config)), ("nonce", nonce), ("hint", ""), ("problem", None),
                       ("prefs_token", None), ("email", ""), ("errors", {}),
                       ("digest_choices", [d.name for d in st.config.digests]),
                       ("default_digests", list(st.config.default_digests()))):
        ctx.setdefault(key, value)
    html = st.templates.get_template(template).render(**ctx)
    resp = Response(html, status_code=status, media_type="text/html; charset=utf-8")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Content-Language"] = ", ".join(i18n.HTML_LANG[code] for code in ui_langs)
    resp.headers["Vary"] = "Accept-Language"
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
    """The friendly error page: a title for `status` and the English `message` and `hint`,
    both in the reader's language(s) where digest.i18n knows a translation."""
    heading = f"error.{status}" if f"error.{status}" in i18n.STRINGS else "error.other"
    try:
        return render(request, "message.html", status, kind="error", heading=heading,
                      message=message, hint=hint, free=True)
    except Exception:  # the error page itself must never fail with a stack trace
        log.exception("error page failed")
        title = i18n.STRINGS[heading]["en"]
        return Response(f"{status} {title}\n", status_code=status, media_type="text/plain; charset=utf-8")
