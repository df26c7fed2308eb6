"""Request guards: CSRF, same origin, rate limit, bounded bodies and form reading (the form's
values are checked by digest.subscribers, the rules every front end shares)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request

MAX_BODY = 16 * 1024  # a subscribe or preferences form is a few hundred bytes
CSRF_COOKIE = "digest_csrf"  # holds a random browser id, not a token (tokens are per page)
CSRF_TTL = 6 * 3600  # a form token's lifetime
CSRF_COOKIE_TTL = 400 * 24 * 3600  # the browser id's (the longest a browser keeps a cookie)
BODY_TIMEOUT = 10.0  # seconds to receive a whole form body (a slow body holds a connection)
_BROWSER_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
SUBSCRIBE_BURST = 5  # submissions an address may make at once…
SUBSCRIBE_REFILL = 60.0  # …then one more per this many seconds
CONFIRM_MAILS = 3  # confirmation mails one mailbox may get…
CONFIRM_WINDOW = 24 * 3600.0  # …in any this many seconds


class TooLarge(Exception):
    pass


class BadRequest(Exception):
    """A request we refuse with a friendly page; `status` is the HTTP status."""

    def __init__(self, message: str, status: int = 400, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.hint = hint


def new_browser_id() -> str:
    """A random id for the long-lived CSRF cookie (set once per browser, never per page)."""
    return secrets.token_urlsafe(18)


def valid_browser_id(value: str | None) -> str:
    """The cookie's browser id when it is one of ours in shape, else "" (then a new one is set)."""
    return value if value and _BROWSER_ID.fullmatch(value) else ""


def csrf_token(secret: bytes, browser_id: str, now: float) -> str:
    """A form token bound to this browser's cookie id: HMAC(secret, browser id + issue time).

    Every page load mints a fresh token for the same id, so any number of open tabs keep
    working (a token per cookie value would let the newest tab invalidate the others)."""
    ts = str(int(now))
    return f"{ts}.{_csrf_mac(secret, browser_id, ts)}"


def _csrf_mac(secret: bytes, browser_id: str, ts: str) -> str:
    sig = hmac.new(secret, f"csrf|{browser_id}|{ts}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(sig[:18]).decode()


def csrf_valid(secret: bytes, form_token: str, browser_id: str, now: float) -> bool:
    """The form token was minted by us, for this browser's cookie id (a cross-site page can
    neither read nor set the SameSite=Strict cookie), and is fresh."""
    if not form_token or not valid_browser_id(browser_id) or len(form_token) > 200:
        return False
    ts, dot, sig = form_token.partition(".")
    if not dot or not ts.isdigit():
        return False
    age = now - int(ts)
    good = _csrf_mac(secret, browser_id, ts)
    return hmac.compare_digest(sig.encode(), good.encode()) and -60 <= age <= CSRF_TTL


def same_origin(headers: Any, base_url: str, scheme: str) -> bool:
    """A POST from a browser must come from our own pages: Sec-Fetch-Site says so when sent,
    and Origin (when sent) must be base_url's origin. The Host header alone proves nothing
    (a client chooses it), so it only counts when it names base_url's own host and port."""
    site = headers.get("sec-fetch-site")
    if site and site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if not origin:
        return True  # non-browser clients; the CSRF token (or the signed link) still guards
    if origin == "null":
        # A privacy setting or extension can make browsers post `Origin: null` from our own
        # forms; Sec-Fetch-Site (which no page can forge) tells those apart from sandboxed
        # or data: documents on other sites.
        return site == "same-origin"
    base = urlsplit(base_url)
    allowed = {_origin(base_url)}
    host = (headers.get("host") or "").lower()
    if host and host == (base.netloc or "").lower():
        allowed.add(f"{scheme}://{host}")  # base_url's host reached over plain HTTP (a proxy)
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


class WindowLimiter:
    """At most `limit` takes per key in any `window` seconds (a sliding window): the
    confirmation mails one mailbox may get, however many addresses ask for it."""

    def __init__(self, limit: int = CONFIRM_MAILS, window: float = CONFIRM_WINDOW,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 50000) -> None:
        self.limit, self.window, self.clock, self.max_keys = limit, window, clock, max_keys
        self._times: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when allowed (counted), else the seconds until the oldest take leaves the window."""
        now = self.clock()
        with self._lock:
            times = [t for t in self._times.get(key, ()) if now - t < self.window]
            if len(times) >= self.limit:
                self._times[key] = times
                return times[0] + self.window - now
            times.append(now)
            self._times.pop(key, None)
            self._times[key] = times  # newest last: the oldest keys are dropped first
            while len(self._times) > self.max_keys:
                del self._times[next(iter(self._times))]
            return 0.0


def mailbox_key(email: str) -> str:
    """The mailbox an address reaches: `A+news@Example.org` and `a@example.org` are one
    (sub-addressing), so plus-variants cannot multiply the mails one inbox receives."""
    local, _, domain = email.strip().lower().rpartition("@")
    return f"{local.split('+', 1)[0] or local}@{domain}"


class ClientGone(Exception):
    """The client closed the connection before its request body arrived (nothing to answer)."""


async def bounded_body(request: Request, limit: int = MAX_BODY, timeout: float = BODY_TIMEOUT) -> bytes:
    """The request body, refused past `limit` bytes (413) or `timeout` seconds (408): a
    client trickling a body must not hold a connection and a worker for long."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise TooLarge
        except ValueError as e:
            raise BadRequest("Content-Length is not a number") from e

    async def collect() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(collect(), timeout)
    except TimeoutError as e:
        raise BadRequest("The request body arrived too slowly.", 408,
                         "Check your connection and send the form again.") from e
    except ClientDisconnect as e:
        raise ClientGone from e


async def read_form(request: Request, timeout: float = BODY_TIMEOUT) -> dict[str, list[str]]:
    """Both encodings a form (or an RFC 8058 one-click POST) may use, with the body bounded."""
    body = await bounded_body(request, timeout=timeout)
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


def first(form: dict[str, list[str]], key: str) -> str:
    return (form.get(key) or [""])[0]
