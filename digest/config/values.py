"""Config value validators: one value against its `Setting` kind (types, URLs, cron, time
zones, addresses, paths, subjects), returning the converted value or the problem to report."""

from __future__ import annotations

import ipaddress
import math
import re
import string
from email.utils import parseaddr
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from digest.config.settings import Setting
from digest.scheduler import cron

_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # fullmatch: `$` lets "x\n" through

_KIND_NAMES = {
    "str": "a string", "int": "an integer", "float": "a number", "path": "a path string",
    "paths": "a list of path strings", "cron": "a cron string", "tz": "a time zone name", "url": "a URL string",
    "pgurl": "a postgresql:// URL string",
    "enum": "a string", "env": "an environment variable name", "email": "a string",
    "subject": "a string", "addresses": "a list of IP address or network strings",
    "bool": "true or false", "urls": "a list of http(s) URL strings",
}


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def _type_name(v: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "table"}.get(type(v), type(v).__name__)


def _convert(s: Setting, v: Any) -> tuple[Any, str | None]:
    """Check one value against its setting; return (converted value, problem or None)."""
    bad = (v, f"expected {_KIND_NAMES[s.kind]}, got {_type_name(v)} {v!r}")
    if s.kind == "bool":
        return v, (None if isinstance(v, bool) else bad[1])
    if s.kind == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            return bad
    elif s.kind == "float":
        if isinstance(v, bool) or not isinstance(v, int | float):
            return bad
        try:
            v = float(v)
        except OverflowError:  # a TOML integer with hundreds of digits
            return v, "is too large"
        if not math.isfinite(v):
            return v, f"must be a finite number, got {v}"
    elif s.kind == "addresses":
        if not isinstance(v, list) or not all(isinstance(p, str) for p in v):
            return bad
        for p in v:
            try:
                ipaddress.ip_network(p.strip(), strict=False)
            except ValueError:
                return v, f"{p[:60]!r} is not an IP address or network (e.g. 10.0.0.0/8)"
        return tuple(p.strip() for p in v), (s.check(v) if s.check else None)
    elif s.kind == "urls":
        if not isinstance(v, list) or not all(isinstance(p, str) for p in v):
            return bad
        for p in v:
            problem = _http_url_problem(p)
            if problem:
                return v, problem
        ascii_urls = [_ascii_url(p) for p in v]
        for _url, problem in ascii_urls:
            if problem:
                return v, problem
        v = [url for url, _ in ascii_urls]
        if len(set(v)) != len(v):
            return v, "lists a URL twice"
        return tuple(v), (s.check(v) if s.check else None)
    elif s.kind == "paths":
        if not isinstance(v, list) or not all(isinstance(p, str) and p for p in v):
            return bad
        if any(_has_control(p) for p in v):
            return v, "a path holds a control character (NUL, newline, …)"
    elif not isinstance(v, str):
        return bad
    problem: str | None = None
    if s.kind == "path" and not v.strip():
        problem = "must not be empty"
    elif s.kind == "path" and _has_control(v):
        # The OS refuses NUL in a path (ValueError deep in pathlib); say so at the key.
        problem = "holds a control character (NUL, newline, …)"
    elif s.kind == "enum" and v not in s.choices:
        problem = f"{v!r} is not one of {', '.join(s.choices)}"
    elif s.kind == "cron":
        problem = cron.validate_cron(v)
        if problem:
            problem = f"bad cron expression: {problem}"
    elif s.kind == "tz":
        try:
            cron.zone(v)
        except ValueError as e:
            problem = str(e)
    elif s.kind == "url":
        u = urlsplit(v)
        if u.scheme not in ("http", "https") or not u.netloc or any(c in v for c in " \r\n\t"):
            problem = f"{v!r} is not an absolute http(s) URL"
        elif u.query or u.fragment:
            problem = f"{v!r} must not have a query or fragment"
        else:
            v, problem = _ascii_url(v)
            if not problem and not v.endswith("/"):
                v += "/"  # feeds and pages are joined onto it: a missing slash would drop a path part
    elif s.kind == "pgurl" and v:
        problem = _pg_url_problem(v)
    elif s.kind == "env" and not _ENV_RE.fullmatch(v):
        problem = f"{v!r} is not an environment variable name"
    elif s.kind == "email":
        _name, addr = parseaddr(v)
        if "@" not in addr or any(c in v for c in "\r\n"):
            problem = f"{v!r} is not an address like 'Name <user@example.org>'"
    elif s.kind == "subject":
        if any(c in v for c in "\r\n"):
            problem = "must be one line"
        else:
            problem = _subject_problem(v)
    if problem is None and s.check is not None:
        problem = s.check(v)
    return v, problem


# RFC 3986 reserved and unreserved characters, and '%' (an escape already there stays).
_URL_KEEP = "/:@!$&'()*+,;=-._~%?"


def _ascii_url(v: str) -> tuple[str, str | None]:
    """`v` with an internationalised host in IDNA (`xn--…`) and any other non-ASCII
    character percent-encoded as UTF-8, so it can go into an HTTP header (a Link header is
    latin-1) and every feed the same way; (v, problem) when the host is no valid IDN."""
    if v.isascii():
        return v, None
    u = urlsplit(v)
    userinfo, _, hostport = u.netloc.rpartition("@")
    host, port = hostport, ""
    if not hostport.startswith("["):
        host, colon, port = hostport.partition(":")
        port = colon + port
    try:
        ascii_host = host if host.isascii() else host.encode("idna").decode("ascii")
    except UnicodeError as e:
        return v, f"{v[:80]!r}: {host!r} is not a valid internationalised host name ({e})"
    netloc = (quote(userinfo, safe=_URL_KEEP) + "@" if userinfo else "") + ascii_host + port
    out = urlunsplit((u.scheme, netloc, quote(u.path, safe=_URL_KEEP),
                      quote(u.query, safe=_URL_KEEP), quote(u.fragment, safe=_URL_KEEP)))
    if not out.isascii():
        return v, f"{v[:80]!r} cannot be written in ASCII; write it percent-encoded"
    return out, None


def _http_url_problem(v: str) -> str | None:
    """An absolute http(s) URL without spaces, control characters or a fragment."""
    try:
        u = urlsplit(v)
        u.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        return f"{v[:80]!r} is not a valid URL ({e})"
    if u.scheme not in ("http", "https") or not u.hostname or u.fragment \
            or _has_control(v) or any(c in v for c in ' <>"') or len(v) > 2000:
        return f"{v[:80]!r} is not an absolute http(s) URL like https://hub.example.org/"
    return None


def _pg_url_problem(v: str) -> str | None:
    """A libpq URL without a password (the value itself is never echoed: it may hold one)."""
    try:
        u = urlsplit(v)
        u.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        return f"is not a valid URL ({e})"
    if u.scheme not in ("postgresql", "postgres"):
        return f"must start with postgresql:// (got scheme {u.scheme!r})"
    if _has_control(v) or " " in v:
        return "holds a space or a control character"
    if u.password is not None or re.search(r"(^|&)password=", u.query):
        return ("holds a password; digest never reads one from config.toml: remove it and "
                "set PGPASSWORD, or put it in ~/.pgpass (or a PGSERVICE entry)")
    return None


def _subject_problem(v: str) -> str | None:
    """Only a bare `{date}` (and literal `{{`/`}}`): `{date.year}` or `{0}` would raise at
    send time, hours later, so they are refused here."""
    try:
        fields = [(f, spec, conv) for _lit, f, spec, conv in string.Formatter().parse(v)
                  if f is not None]
    except ValueError as e:
        return f"bad placeholder ({e}); write {{{{ or }}}} for a literal brace"
    for f, spec, conv in fields:
        if f != "date" or spec or conv:
            shown = "{" + f + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
            return f"bad placeholder {shown}; only {{date}} is available"
    return None


def _hint(s: Setting) -> str:
    extra = {
        "cron": ' — a cron expression, 5 fields: minute hour day-of-month month day-of-week, e.g. "0 7 * * 1-5"',
        "enum": f" — one of: {', '.join(s.choices)}",
        "url": ' — e.g. "https://news.example.org/"',
        "urls": ' — e.g. ["https://pubsubhubbub.appspot.com/"]',
        "pgurl": ' — e.g. "postgresql://digest@db.example.org:5432/digest"; the password comes '
                 "from PGPASSWORD, ~/.pgpass or PGSERVICE, never from the url",
        "tz": ' — an IANA name such as "UTC", "Europe/Berlin" or "Asia/Shanghai"',
    }.get(s.kind, "")
    return f"{s.key}: {s.help}{extra}"

