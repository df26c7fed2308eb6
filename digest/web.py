"""HTTP edge: the published files with conditional GET, and subscribe/confirm/preferences/unsubscribe."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import hmac
import logging
import mimetypes
import os
import re
import secrets
import signal
import socket
import threading
import time
import zoneinfo
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from digest.config import Config
from digest.errors import DigestError
from digest.models import FEED_LANGUAGES, Subscriber
from digest.pipeline.sending import CONFIRM_TTL
from digest.resources import WEB_TEMPLATES

log = logging.getLogger("digest.web")

MAX_BODY = 16 * 1024  # a subscribe or preferences form is a few hundred bytes
CSRF_COOKIE = "digest_csrf"
CSRF_TTL = 6 * 3600
SUBSCRIBE_BURST = 5  # submissions an address may make at once…
SUBSCRIBE_REFILL = 60.0  # …then one more per this many seconds
TAG_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")  # shown escaped everywhere; just no controls

# ---------------------------------------------------------------------------------------------
# Static files: media types, strong ETags, 304s, gzip


_BY_SUFFIX = {
    ".rss": "application/rss+xml; charset=utf-8",
    ".atom": "application/atom+xml; charset=utf-8",
    ".opml": "text/x-opml; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/feed+json", "text/x-opml")


def media_type(name: str, head: bytes) -> str:
    """The Content-Type for a published file; `.xml` and `.json` are told apart by their first
    bytes, since a feed's name need not say which format it is."""
    suffix = Path(name).suffix.lower()
    if suffix in _BY_SUFFIX:
        return _BY_SUFFIX[suffix]
    if suffix == ".xml":
        if re.search(rb"<rss[\s>]", head):
            return "application/rss+xml; charset=utf-8"
        if re.search(rb"<feed[\s>]", head):
            return "application/atom+xml; charset=utf-8"
        if re.search(rb"<opml[\s>]", head):
            return "text/x-opml; charset=utf-8"
        return "application/xml; charset=utf-8"
    if suffix == ".json":
        if b"jsonfeed.org/version" in head or name.endswith(".feed.json"):
            return "application/feed+json; charset=utf-8"
        return "application/json; charset=utf-8"
    guessed = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return guessed + ("; charset=utf-8" if guessed.startswith("text/") else "")


def cache_control(ctype: str) -> str:
    if ctype.startswith(FEED_TYPES):
        return "public, max-age=300"
    if ctype.startswith("text/html"):
        return "public, max-age=60"
    return "public, max-age=3600"


def compressible(ctype: str) -> bool:
    return ctype.startswith(("text/", "application/")) and ("xml" in ctype or "json" in ctype or ctype.startswith("text/") or "javascript" in ctype)


def accepts_gzip(header: str) -> bool:
    """True when Accept-Encoding allows gzip (an explicit q=0 refuses it; `*` allows it)."""
    allowed: dict[str, float] = {}
    for part in header.split(","):
        bits = [b.strip() for b in part.split(";")]
        if not bits[0]:
            continue
        q = 1.0
        for b in bits[1:]:
            if b.lower().startswith("q="):
                try:
                    q = float(b[2:])
                except ValueError:
                    q = 0.0
        allowed[bits[0].lower()] = q
    if "gzip" in allowed:
        return allowed["gzip"] > 0
    return allowed.get("*", 0) > 0


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2): W/ prefixes are ignored."""
    if header.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return etag in tags


def not_modified_since(header: str, mtime: float) -> bool:
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return int(mtime) <= since.timestamp()


@dataclass
class _Entry:
    etag: str
    ctype: str
    gz: bytes | None = None


class FileCache:
    """ETag, media type and gzip bytes per file, keyed by (path, inode, mtime_ns, size) so an
    atomic replace by the publisher is noticed without hashing on every request."""

    def __init__(self, max_gzip_bytes: int = 32 * 1024 * 1024) -> None:
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._gz_bytes = 0
        self._max = max_gzip_bytes
        self._lock = threading.Lock()

    def get(self, key: tuple, name: str, data: bytes) -> _Entry:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
        entry = _Entry('"' + hashlib.sha256(data).hexdigest()[:32] + '"', media_type(name, data[:1024]))
        with self._lock:
            self._entries[key] = entry
            while len(self._entries) > 20000:
                _, old = self._entries.popitem(last=False)
                self._gz_bytes -= len(old.gz or b"")
        return entry

    def gzipped(self, entry: _Entry, data: bytes) -> bytes:
        if entry.gz is None:
            # mtime=0 keeps the gzip bytes (and so the variant's ETag) stable across builds
            gz = gzip.compress(data, compresslevel=6, mtime=0)
            with self._lock:
                if self._gz_bytes + len(gz) <= self._max:
                    entry.gz = gz
                    self._gz_bytes += len(gz)
            return gz
        return entry.gz


def resolve_static(root: Path, url_path: str) -> Path | None:
    """The file under `root` that `url_path` names, or None: no `..`, no dotfiles (the
    publisher's temp files), no NUL, nothing outside the root after resolving symlinks."""
    if "\x00" in url_path or "\\" in url_path:
        return None
    parts = [p for p in url_path.split("/") if p]
    if any(p.startswith(".") for p in parts):
        return None
    root = root.resolve()
    target = root.joinpath(*parts) if parts else root
    try:
        real = target.resolve()
    except (OSError, RuntimeError):
        return None
    if real != root and root not in real.parents:
        return None
    return real


def _read(path: Path) -> tuple[tuple, bytes, float] | None:
    """(cache key, bytes, mtime) read from one open file, so key and bytes agree even if the
    publisher renames a new version in between."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None
    return (str(path), st.st_ino, st.st_mtime_ns, st.st_size), data, st.st_mtime


# ---------------------------------------------------------------------------------------------
# Request guards: CSRF (signed double submit + Origin), rate limit, bounded bodies


class TooLarge(Exception):
    pass


class BadRequest(Exception):
    """A request we refuse with a friendly page; `status` is the HTTP status."""

    def __init__(self, message: str, status: int = 400, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.hint = hint


def csrf_token(secret: bytes, now: float) -> str:
    nonce = secrets.token_urlsafe(12)
    ts = str(int(now))
    sig = hmac.new(secret, f"csrf|{nonce}|{ts}".encode(), hashlib.sha256).digest()
    return f"{nonce}.{ts}.{base64.urlsafe_b64encode(sig[:18]).decode()}"


def csrf_valid(secret: bytes, form_token: str, cookie_token: str, now: float) -> bool:
    """Double submit: the form field equals the cookie (a cross-site page can set neither),
    and the token is ours and fresh (a cookie planted by a sibling subdomain cannot be)."""
    if not form_token or not hmac.compare_digest(form_token.encode(), cookie_token.encode()):
        return False
    try:
        nonce, ts, sig = form_token.split(".")
        age = now - int(ts)
    except ValueError:
        return False
    good = hmac.new(secret, f"csrf|{nonce}|{ts}".encode(), hashlib.sha256).digest()
    return hmac.compare_digest(sig.encode(), base64.urlsafe_b64encode(good[:18])) and -60 <= age <= CSRF_TTL


def same_origin(headers: Any, base_url: str, scheme: str) -> bool:
    """A POST from a browser must come from our own pages: Sec-Fetch-Site says so when sent,
    and Origin (when sent) must be base_url's origin or this Host."""
    site = headers.get("sec-fetch-site")
    if site and site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if not origin:
        return True  # non-browser clients; the double-submit token still guards
    if origin == "null":
        return False
    allowed = {_origin(base_url)}
    host = headers.get("host")
    if host:
        allowed.add(f"{scheme}://{host}".lower())
    return origin.lower().rstrip("/") in allowed


def _origin(url: str) -> str:
    u = urlsplit(url)
    port = f":{u.port}" if u.port and u.port not in (80, 443) else ""
    return f"{u.scheme}://{u.hostname}{port}".lower()


class RateLimiter:
    """Token bucket per client address: `burst` at once, then one per `refill` seconds."""

    def __init__(self, burst: int = SUBSCRIBE_BURST, refill: float = SUBSCRIBE_REFILL,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 50000) -> None:
        self.burst, self.refill, self.clock, self.max_keys = burst, refill, clock, max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when allowed (a token is spent), else the seconds until the next token."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) / self.refill)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                self._trim(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) * self.refill

    def _trim(self, now: float) -> None:
        # Buckets idle long enough to be full again carry no information: drop them first.
        if len(self._buckets) <= self.max_keys:
            return
        full_after = self.burst * self.refill
        for k in [k for k, (_, last) in self._buckets.items() if now - last >= full_after]:
            del self._buckets[k]
        while len(self._buckets) > self.max_keys:
            del self._buckets[next(iter(self._buckets))]


async def bounded_body(request: Request, limit: int = MAX_BODY) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise TooLarge
        except ValueError as e:
            raise BadRequest("Content-Length is not a number") from e
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request) -> dict[str, list[str]]:
    """Both encodings a form (or an RFC 8058 one-click POST) may use, with the body bounded."""
    body = await bounded_body(request)
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.request", "body": b"", "more_body": False}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise BadRequest("This address takes a form submission.", 415)
    try:
        form = await Request(request.scope, replay).form(max_files=0, max_fields=64, max_part_size=MAX_BODY)
    except HTTPException as e:
        raise BadRequest("The form could not be read.") from e
    out: dict[str, list[str]] = {}
    for k, v in form.multi_items():
        if isinstance(v, str):
            out.setdefault(k, []).append(v)
    return out


def _first(form: dict[str, list[str]], key: str) -> str:
    return (form.get(key) or [""])[0]


# ---------------------------------------------------------------------------------------------
# Subscriber input: validated, never trusted


def clean_email(text: str) -> str:
    from digest.render import normalize_email

    try:
        return normalize_email(text, "email")
    except DigestError as e:
        raise BadRequest("That does not look like an email address.", hint="Check the address and try again.") from e


def clean_languages(values: list[str]) -> list[str]:
    langs = [v for v in FEED_LANGUAGES if v in values]
    if not langs:
        raise BadRequest("Choose at least one language.", hint="Tick English, 中文, or both.")
    return langs


def clean_tags(values: list[str]) -> list[str]:
    tags: list[str] = []
    for v in values:
        for t in re.split(r"[,，、\n]", v):
            t = " ".join(t.split())
            if not t:
                continue
            if not TAG_RE.match(t):
                raise BadRequest("A tag is at most 64 characters, with no control characters.",
                                 hint="Shorten or fix the tags.")
            if t not in tags:
                tags.append(t)
    if len(tags) > 30:
        raise BadRequest("At most 30 tags.")
    return tags


def clean_timezone(text: str) -> str:
    tz = text.strip() or "UTC"
    if len(tz) > 64 or ".." in tz or tz.startswith("/"):
        raise BadRequest("Unknown time zone.", hint="Use an IANA name such as Asia/Shanghai.")
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as e:
        raise BadRequest(f"Unknown time zone {tz!r}.", hint="Use an IANA name such as Asia/Shanghai or Europe/Berlin.") from e
    return tz


# ---------------------------------------------------------------------------------------------
# The application: state, pages, handlers


@dataclass
class WebState:
    config: Config
    files: FileCache = field(default_factory=FileCache)
    per_ip: RateLimiter = field(default_factory=RateLimiter)
    # One victim's mailbox must not be flooded from many addresses: a quieter bucket per email.
    per_email: RateLimiter = field(default_factory=lambda: RateLimiter(burst=3, refill=600.0))
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    _store: Any = None
    _secret: bytes | None = None
    _templates: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def store(self) -> Any:
        with self._lock:
            if self._store is None:
                from digest.store import Store

                self._store = Store(self.config.store.path)
            return self._store

    @property
    def templates(self) -> Any:
        if self._templates is None:
            from digest.site import environment

            self._templates = environment(WEB_TEMPLATES)
        return self._templates

    @property
    def secret(self) -> bytes:
        """The site secret (env var, else generated once and kept in the store); never logged."""
        if self._secret is None:
            from digest.pipeline.sending import site_secret

            value = site_secret(self.config, self.store)
            self._secret = value.encode() if isinstance(value, str) else bytes(value)
        return self._secret


def _state(request: Request) -> WebState:
    return request.app.state.web


def base_url(config: Config) -> str:
    return config.site.base_url.rstrip("/") + "/"


def render(request: Request, template: str, status: int = 200, *, token_page: bool = False,
           cookie: str | None = None, **ctx: Any) -> Response:
    """An HTML page from templates/web/, rendered by digest.site's environment (autoescape
    on, undefined names are errors, XML-illegal characters stripped)."""
    st = _state(request)
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
        return render(request, "message.html", status, token_page=True, kind="error",
                      heading=titles.get(status, "Error"), message=message, hint=hint)
    except Exception:  # the error page itself must never fail with a stack trace
        log.exception("error page failed")
        return Response(f"{status} {titles.get(status, 'Error')}\n", status_code=status,
                        media_type="text/plain; charset=utf-8")


# --- static files ----------------------------------------------------------------------------


async def static(request: Request) -> Response:
    st = _state(request)
    root = st.config.feeds.output
    path = resolve_static(root, request.url.path)
    if path is None:
        return error_page(request, 404, "There is no such page here.", "Start from the front page.")
    if path.is_dir():
        if not request.url.path.endswith("/"):
            return RedirectResponse(request.url.path + "/", status_code=301)
        path = path / "index.html"
    got = await run_in_threadpool(_read, path)
    if got is None:
        return error_page(request, 404, "There is no such page here.", "Start from the front page.")
    key, data, mtime = got
    entry = await run_in_threadpool(st.files.get, key, path.name, data)
    headers = {
        "Last-Modified": formatdate(mtime, usegmt=True),
        "Cache-Control": cache_control(entry.ctype),
        "X-Content-Type-Options": "nosniff",
    }
    etag, body = entry.etag, data
    if compressible(entry.ctype):
        headers["Vary"] = "Accept-Encoding"
        if accepts_gzip(request.headers.get("accept-encoding", "")) and len(data) > 256:
            body = await run_in_threadpool(st.files.gzipped, entry, data)
            etag = entry.etag[:-1] + '-gzip"'  # a distinct strong ETag for the distinct bytes
            headers["Content-Encoding"] = "gzip"
    headers["ETag"] = etag
    inm = request.headers.get("if-none-match")
    ims = request.headers.get("if-modified-since")
    # If-None-Match wins over If-Modified-Since when both are sent (RFC 9110 13.2.2).
    fresh = etag_matches(inm, etag) if inm is not None else (ims is not None and not_modified_since(ims, mtime))
    if fresh:
        headers.pop("Content-Encoding", None)
        return Response(status_code=304, headers=headers)
    headers["Content-Length"] = str(len(body))
    if request.method == "HEAD":
        return Response(b"", headers=headers, media_type=entry.ctype)
    return Response(body, headers=headers, media_type=entry.ctype)


# --- subscribing ------------------------------------------------------------------------------


def _new_csrf(request: Request) -> str:
    return csrf_token(_state(request).secret, time.time())


def _check_post(request: Request, form: dict[str, list[str]] | None = None) -> None:
    st = _state(request)
    if not same_origin(request.headers, st.config.site.base_url, request.url.scheme):
        raise BadRequest("This form was sent from another site.", 403,
                         "Open the page on this site and submit the form from there.")
    if form is not None and not csrf_valid(st.secret, _first(form, "csrf"),
                                           request.cookies.get(CSRF_COOKIE, ""), time.time()):
        raise BadRequest("The form has expired or was not sent from this site.", 403,
                         "Reload the page (cookies must be allowed for this site) and submit it again.")


async def csrf(request: Request) -> Response:
    """The static index.html cannot carry a per-visitor token, so its script fetches one here;
    the same token goes into a SameSite=Strict cookie (the double submit). Without script,
    the form still works from GET /subscribe, which is rendered with a token."""
    token = await run_in_threadpool(_new_csrf, request)
    resp = JSONResponse({"token": token}, headers={"Cache-Control": "no-store"})
    set_csrf_cookie(resp, _state(request).config, token)
    return resp


async def subscribe_form(request: Request) -> Response:
    token = await run_in_threadpool(_new_csrf, request)
    return render(request, "subscribe.html", csrf=token, cookie=token, form={}, languages=FEED_LANGUAGES)


def _subscribe(st: WebState, email: str, langs: list[str], tags: list[str], tz: str) -> Subscriber | None:
    """Create or refresh a pending subscriber; the subscriber to mail, or None to mail nobody."""
    store, now = st.store, st.clock()
    with store.transaction():
        sub = store.get_subscriber(email)
        if sub is None:
            sub = Subscriber(email=email, languages=langs, tags=tags, timezone=tz, status="pending",
                             created=now, secret=secrets.token_hex(16))
            store.add_subscriber(sub)
        elif sub.status in ("pending", "unsubscribed", "bounced"):
            # Unconfirmed choices may change freely: nothing is sent until the owner confirms.
            sub = store.update_subscriber(email, languages=langs, tags=tags, timezone=tz, status="pending")
        # An active subscriber's choices change only through their signed preferences link;
        # they get a confirmation mail whose page leads there.
    return sub


async def _send_confirmation(st: WebState, sub: Subscriber) -> None:
    from digest.pipeline.sending import send_confirmation

    try:
        result = await run_in_threadpool(send_confirmation, st.config, st.store, sub, st.clock())
        if asyncio.iscoroutine(result):
            await result
    except Exception:
        # The visitor already has their page; the operator gets the reason in the log.
        log.exception("confirmation mail to a subscriber failed")


async def subscribe(request: Request) -> Response:
    st = _state(request)
    _check_post(request)
    ip = request.client.host if request.client else "?"
    wait = st.per_ip.take(ip)
    if wait:
        resp = error_page(request, 429, "You have sent this form many times in a short while.",
                          f"Wait {int(wait) + 1} seconds and try again.")
        resp.headers["Retry-After"] = str(int(wait) + 1)
        return resp
    form = await read_form(request)
    try:
        _check_post(request, form)
        email = clean_email(_first(form, "email"))
        langs = clean_languages(form.get("languages", []))
        tags = clean_tags(form.get("tags", []))
        tz = clean_timezone(_first(form, "timezone"))
    except BadRequest as e:
        # Show the form again with what was typed and a fresh token: a visitor without
        # script (no token yet) or with an expired page just submits once more.
        token = await run_in_threadpool(_new_csrf, request)
        values = {"email": _first(form, "email"), "tags": ", ".join(form.get("tags", [])),
                  "timezone": _first(form, "timezone"), "languages": form.get("languages", [])}
        return render(request, "subscribe.html", e.status, csrf=token, cookie=token, form=values,
                      languages=FEED_LANGUAGES, problem=e.message, hint=e.hint)
    sub = await run_in_threadpool(_subscribe, st, email, langs, tags, tz)
    task = None
    if sub is not None and not st.per_email.take(email.lower()):
        task = BackgroundTask(_send_confirmation, st, sub)
    # The same words whether the address is new, pending, active or throttled: no enumeration.
    resp = render(request, "message.html", token_page=True, kind="subscribed",
                  heading="Check your inbox", email=email,
                  message="If the address can receive mail, a confirmation link is on its way.",
                  hint=f"Open the link in that email to start receiving the digest. It works for {CONFIRM_TTL.days} days.")
    resp.background = task
    return resp


def _token_email(st: WebState, purpose: str, token: str) -> str:
    from digest import tokens

    try:
        return tokens.verify(st.secret, purpose, token, st.clock())
    except tokens.TokenError as e:
        raise BadRequest(f"This link is not valid: {e.message}.", 400,
                         "Use the newest link you received, or subscribe again from the front page.") from e


def _links(st: WebState, email: str) -> dict[str, str]:
    from digest import tokens

    return {
        "prefs_token": tokens.sign(st.secret, "prefs", email, None),
        "unsubscribe_token": tokens.sign(st.secret, "unsubscribe", email, None),
    }


def _confirm(st: WebState, email: str) -> str:
    store = st.store
    with store.transaction():
        sub = store.get_subscriber(email)
        if sub is None or sub.status in ("unsubscribed", "bounced"):
            # An old link must not undo a later unsubscribe.
            return "gone"
        if sub.status == "active":
            return "already"
        store.update_subscriber(email, status="active", confirmed=st.clock())
        return "confirmed"


async def confirm(request: Request) -> Response:
    st = _state(request)
    email = await run_in_threadpool(_token_email, st, "confirm", request.query_params.get("t", ""))
    outcome = await run_in_threadpool(_confirm, st, email)
    if outcome == "gone":
        return render(request, "message.html", token_page=True, kind="gone", heading="This link was already used",
                      message="This address is not subscribed any more.",
                      hint="To subscribe again, use the form on the front page.")
    links = await run_in_threadpool(_links, st, email)
    heading = "You are subscribed" if outcome == "confirmed" else "You were already subscribed"
    return render(request, "message.html", token_page=True, kind="confirmed", heading=heading, email=email,
                  message="The digest will arrive at the time set for your time zone.", **links)


async def preferences(request: Request) -> Response:
    st = _state(request)
    token = request.query_params.get("t", "")
    email = await run_in_threadpool(_token_email, st, "prefs", token)
    saved, problem, hint = False, None, ""
    if request.method == "POST":
        _check_post(request)
        form = await read_form(request)
        _check_post(request, form)
        try:
            langs = clean_languages(form.get("languages", []))
            tags = clean_tags(form.get("tags", []))
            tz = clean_timezone(_first(form, "timezone"))
        except BadRequest as e:
            problem, hint = e.message, e.hint
        else:
            saved = await run_in_threadpool(_update_prefs, st, email, langs, tags, tz)
    sub = await run_in_threadpool(st.store.get_subscriber, email)
    if sub is None or sub.status in ("unsubscribed", "bounced"):
        return render(request, "message.html", token_page=True, kind="gone", heading="Not subscribed",
                      message="This address does not receive the digest.",
                      hint="To subscribe again, use the form on the front page.")
    csrf_tok = await run_in_threadpool(_new_csrf, request)
    links = await run_in_threadpool(_links, st, email)
    return render(request, "preferences.html", 400 if problem else 200, token_page=True, cookie=csrf_tok,
                  csrf=csrf_tok, token=token, sub=sub, saved=saved, problem=problem, hint=hint,
                  languages=FEED_LANGUAGES, **links)


def _update_prefs(st: WebState, email: str, langs: list[str], tags: list[str], tz: str) -> bool:
    store = st.store
    with store.transaction():
        sub = store.get_subscriber(email)
        if sub is None or sub.status in ("unsubscribed", "bounced"):
            return False
        store.update_subscriber(email, languages=langs, tags=tags, timezone=tz)
        return True


def _unsubscribe(st: WebState, email: str) -> None:
    store = st.store
    with store.transaction():
        sub = store.get_subscriber(email)
        if sub is not None and sub.status != "unsubscribed":
            store.update_subscriber(email, status="unsubscribed")


async def unsubscribe(request: Request) -> Response:
    """GET only shows the button (mail scanners prefetch links); POST unsubscribes at once.

    The RFC 8058 POST comes from the mailbox provider's servers, with no cookie and no
    Origin: the signed token in the URL is the whole authority, so no CSRF token is asked.
    The answer is 200 with no redirect and no cookie, and repeating it changes nothing."""
    st = _state(request)
    token = request.query_params.get("t", "")
    email = await run_in_threadpool(_token_email, st, "unsubscribe", token)
    if request.method == "GET":
        return render(request, "unsubscribe.html", token_page=True, token=token, email=email, done=False)
    form = await read_form(request)
    if _first(form, "List-Unsubscribe") != "One-Click":
        raise BadRequest("The unsubscribe request is missing List-Unsubscribe=One-Click.", 400,
                         "Use the button on the unsubscribe page.")
    await run_in_threadpool(_unsubscribe, st, email)
    return render(request, "unsubscribe.html", token_page=True, token=token, email=email, done=True)


# --- errors -----------------------------------------------------------------------------------


async def _bad_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    return error_page(request, exc.status, exc.message, exc.hint)


async def _too_large(request: Request, exc: Exception) -> Response:
    return error_page(request, 413, f"The request body is larger than {MAX_BODY // 1024} KB.",
                      "Forms here are small; send less data.")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_page(request, 404, "There is no such page here.", "Start from the front page.")
    resp = error_page(request, exc.status_code, str(exc.detail), "")
    if exc.headers:
        resp.headers.update(exc.headers)
    return resp


async def _digest_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DigestError)
    log.error("request %s failed: %s", request.url.path, exc.message)
    return error_page(request, 500, "The server could not finish this request.", "Try again in a minute.")


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("request %s failed", request.url.path, exc_info=exc)
    return error_page(request, 500, "The server could not finish this request.", "Try again in a minute.")


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
            BadRequest: _bad_request, TooLarge: _too_large, HTTPException: _http_error,
            DigestError: _digest_error, Exception: _server_error,
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
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
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
