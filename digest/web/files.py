"""Published files over HTTP: media types, strong ETags, 304s, gzip variants, no escapes."""

from __future__ import annotations

import base64
import gzip
import hashlib
import mimetypes
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from digest.web.responses import error_page, security_headers, state_of

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
WEBSUB_TYPES = FEED_TYPES[:3]  # the feeds proper (not OPML): WebSub topics


def websub_link(ctype: str, base_url: str, hubs: Iterable[str], url_path: str) -> str | None:
    """The `Link` header of a feed response: each `[websub] hubs` hub as rel="hub" and the
    feed's own absolute URL (base_url + the request path, as the feed's rel=self says it)
    as rel="self" (W3C WebSub discovery); None for anything but a feed."""
    if not ctype.startswith(WEBSUB_TYPES):
        return None
    rel = "/".join(quote(p) for p in url_path.split("/") if p)
    links = [f'<{_header_url(hub)}>; rel="hub"' for hub in hubs]
    links.append(f'<{_header_url(base_url.rstrip("/"))}/{rel}>; rel="self"')
    return ", ".join(links)


# RFC 3986 reserved and unreserved characters, and '%' (an escape already there stays).
_URL_KEEP = "/:@!$&'()*+,;=-._~%?#[]"


def _header_url(url: str) -> str:
    """`url` as header-safe ASCII: config normalises URLs at load (IDNA host, percent-
    encoded path), so this only guards against one that reached us otherwise; a header
    Starlette cannot encode as latin-1 would turn every feed response into a 500."""
    return url if url.isascii() and "<" not in url and ">" not in url else quote(url, safe=_URL_KEEP)


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
    csp: dict[str, str] | None = None  # security headers of an HTML page (hashes of its scripts)


class FileCache:
    """ETag, media type and gzip bytes per file, keyed by (path, inode, mtime_ns, size) so an
    atomic replace by the publisher is noticed without hashing on every request."""

    def __init__(self, max_gzip_bytes: int = 32 * 1024 * 1024) -> None:
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._gz_bytes = 0
        self._max = max_gzip_bytes
        self._lock = threading.Lock()

    def peek(self, key: tuple) -> _Entry | None:
        with self._lock:
            return self._entries.get(key)

    def get(self, key: tuple, name: str, data: bytes) -> _Entry:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
        entry = _Entry('"' + hashlib.sha256(data).hexdigest()[:32] + '"', media_type(name, data[:1024]))
        if entry.ctype.startswith("text/html"):
            entry.csp = security_headers(" ".join(["'self'", *script_hashes(data)]))
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


def resolve_static(root: Path, url_path: str, private: Iterable[Path] = ()) -> Path | None:
    """The file under `root` that `url_path` names, or None: no `..`, no dotfiles (the
    publisher's temp files), no NUL, nothing outside the root after resolving symlinks, and
    nothing inside a `private` path (the store, the Maildir, the config file), which an
    output dir of "." would otherwise publish."""
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
    for secret in private:
        if real == secret or secret in real.parents:
            return None
    return real


_INLINE_SCRIPT = re.compile(rb"<script\b([^>]*)>(.*?)</script\s*>", re.I | re.S)


def script_hashes(html: bytes) -> list[str]:
    """CSP sources ('sha256-…') for each inline script of a published page, so the static
    index.html's own subscribe script runs under a policy that allows no other script."""
    out = []
    for attrs, body in _INLINE_SCRIPT.findall(html):
        if re.search(rb"\bsrc\s*=", attrs):
            continue
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        if f"'sha256-{digest}'" not in out:
            out.append(f"'sha256-{digest}'")
    return out


def _stat_key(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (str(path), st.st_ino, st.st_mtime_ns, st.st_size)


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


async def static(request: Request) -> Response:
    st = state_of(request)
    root = st.config.feeds.output
    path = resolve_static(root, request.url.path, st.private_paths)
    if path is None:
        return error_page(request, 404, "There is no such page here.", "Start from the front page.")
    if path.is_dir():
        if not request.url.path.endswith("/"):
            # From the cleaned parts, never the raw path: `//host` would be another site.
            parts = [p for p in request.url.path.split("/") if p]
            clean = "/" + "".join(p + "/" for p in parts)
            return RedirectResponse(quote(clean), status_code=301)
        path = path / "index.html"
    elif request.url.path.endswith("/"):
        # `/index.html/` names a directory that is not there; serving the file would make
        # its relative links resolve against a wrong base.
        return error_page(request, 404, "There is no such page here.", "Start from the front page.")
    # A poll of an unchanged file is answered from the cache without reading the file.
    key = await run_in_threadpool(_stat_key, path)
    entry = st.files.peek(key) if key else None
    data = None
    if entry is None:
        got = await run_in_threadpool(_read, path)
        if got is None:
            return error_page(request, 404, "There is no such page here.", "Start from the front page.")
        key, data, _ = got
        entry = await run_in_threadpool(st.files.get, key, path.name, data)
    mtime = key[2] / 1e9
    headers = {
        "Last-Modified": formatdate(mtime, usegmt=True),
        "Cache-Control": cache_control(entry.ctype),
        "X-Content-Type-Options": "nosniff",
        **(entry.csp or {}),
    }
    link = websub_link(entry.ctype, st.config.site.base_url, st.config.websub.hubs, request.url.path)
    if link is not None:
        headers["Link"] = link
    etag, gz = entry.etag, False
    if compressible(entry.ctype):
        headers["Vary"] = "Accept-Encoding"
        if accepts_gzip(request.headers.get("accept-encoding", "")) and key[3] > 256:
            etag, gz = entry.etag[:-1] + '-gzip"', True  # a distinct strong ETag for distinct bytes
    headers["ETag"] = etag
    inm = request.headers.get("if-none-match")
    ims = request.headers.get("if-modified-since")
    # If-None-Match wins over If-Modified-Since when both are sent (RFC 9110 13.2.2).
    fresh = etag_matches(inm, etag) if inm is not None else (ims is not None and not_modified_since(ims, mtime))
    if fresh:
        return Response(status_code=304, headers=headers)
    if data is None:
        got = await run_in_threadpool(_read, path)
        if got is None or got[0] != key:  # replaced since the stat: serve the new one afresh
            return await static(request)
        data = got[1]
    body = data
    if gz:
        body = await run_in_threadpool(st.files.gzipped, entry, data)
        headers["Content-Encoding"] = "gzip"
    headers["Content-Length"] = str(len(body))
    if request.method == "HEAD":
        return Response(b"", headers=headers, media_type=entry.ctype)
    return Response(body, headers=headers, media_type=entry.ctype)
