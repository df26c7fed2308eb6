"""Load and validate config.toml into typed, frozen settings (the only tomllib user)."""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import string
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parseaddr
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from digest.scheduler import cron
from digest.errors import ConfigError


@dataclass(frozen=True)
class SiteConfig:
    base_url: str = "http://127.0.0.1:8000/"
    title: str = "AI News · AI资讯"
    description: str = "Curated AI news in English and Chinese"
    author: str = "digest"


@dataclass(frozen=True)
class StoreConfig:
    path: Path = Path("store")


@dataclass(frozen=True)
class IngestConfig:
    paths: tuple[Path, ...] = (Path("seeds"),)


@dataclass(frozen=True)
class FeedsConfig:
    output: Path = Path("public")
    items: int = 50


@dataclass(frozen=True)
class RankConfig:
    hot: float = 0.4
    quality: float = 0.35
    impact: float = 0.25
    half_life_hours: float = 24.0
    default_score: float = 50.0


@dataclass(frozen=True)
class SmtpConfig:
    transport: str = "maildir"  # "smtp" | "maildir"
    maildir: Path = Path("maildir")
    host: str = "127.0.0.1"
    port: int = 25
    security: str = "none"  # "none" | "starttls" | "tls"
    username: str = ""
    password_env: str = "DIGEST_SMTP_PASSWORD"
    sender: str = "AI News <digest@localhost>"
    timeout: float = 30.0
    pool_size: int = 4
    rate_limit: float = 0.0  # messages per second, 0 = unlimited
    retries: int = 4

    def password(self) -> str:
        """The SMTP password, read from the environment variable named by password_env."""
        return os.environ.get(self.password_env, "")


@dataclass(frozen=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    secret_env: str = "DIGEST_SECRET"


@dataclass(frozen=True)
class ScheduleConfig:
    ingest: str = "*/15 * * * *"
    publish: str = "*/15 * * * *"
    timezone: str = "UTC"  # zone the ingest and publish crons are read in
    grace_hours: float = 6.0
    stop_wait_seconds: float = 120.0  # SIGTERM: how long in-flight jobs may finish

    @property
    def grace(self) -> timedelta:
        """How late a missed digest may still be sent (the anacron window)."""
        return timedelta(hours=self.grace_hours)


@dataclass(frozen=True)
class DigestConfig:
    name: str = "daily"
    cron: str = "0 7 * * *"
    max_stories: int = 10
    subject: str = "AI News Daily · AI资讯日报 — {date}"
    max_age_hours: float = 72.0  # older stories are back-catalogue, not news


@dataclass(frozen=True)
class Config:
    path: Path = Path("config.toml")
    site: SiteConfig = field(default_factory=SiteConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    feeds: FeedsConfig = field(default_factory=FeedsConfig)
    rank: RankConfig = field(default_factory=RankConfig)
    tags: dict[str, str] = field(default_factory=dict)  # tag → ASCII slug alias
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    web: WebConfig = field(default_factory=WebConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    digests: tuple[DigestConfig, ...] = (DigestConfig(),)

    @property
    def root(self) -> Path:
        """Relative paths in config.toml are read against the file's directory."""
        return self.path.resolve().parent

    def digest(self, name: str | None) -> DigestConfig:
        if name is None:
            return self.digests[0]
        for d in self.digests:
            if d.name == name:
                return d
        names = ", ".join(d.name for d in self.digests)
        raise ConfigError(f"no digest named {name!r}", f"config.toml defines: {names}")

    def redacted(self) -> dict[str, Any]:
        """The effective settings as JSON-able data, secrets replaced (for `digest check`)."""
        out: dict[str, Any] = {"path": str(self.path)}
        for f in dataclasses.fields(self):
            if f.name == "path":
                continue
            value = getattr(self, f.name)
            if f.name == "digests":
                out["digests"] = [_plain(dataclasses.asdict(d)) for d in value]
            elif f.name == "tags":
                out["tags"] = dict(value)
            else:
                out[f.name] = _plain(dataclasses.asdict(value))
        # Only whether a secret is set is shown, never its value.
        out["smtp"]["password"] = "<set, redacted>" if self.smtp.password() else "<unset>"
        out["web"]["secret"] = "<set, redacted>" if os.environ.get(self.web.secret_env) else "<unset>"
        out["smtp"]["username"] = "<redacted>" if self.smtp.username else ""
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# --- settings as data ------------------------------------------------------------------
# One row per key: its kind (drives type checks and conversion), an optional extra check
# and the help text. Defaults live in the dataclasses above; tests/test_config_docs.py
# checks that every row matches a dataclass field and is documented in config.toml.

Check = Callable[[Any], str | None]  # returns a problem sentence, or None when fine


@dataclass(frozen=True)
class Setting:
    section: str
    key: str
    kind: str  # str | int | float | path | paths | cron | tz | url | enum | env | email | subject
    help: str
    choices: tuple[str, ...] = ()
    check: Check | None = None


def _at_least(n: float) -> Check:
    return lambda v: None if v >= n else f"must be at least {n}, got {v}"


def _between(a: float, b: float) -> Check:
    return lambda v: None if a <= v <= b else f"must be between {a} and {b}, got {v}"


def _above(a: float, b: float) -> Check:
    """a < v <= b: for durations where zero makes no sense (a half-life, a timeout)."""
    return lambda v: None if a < v <= b else f"must be above {a} and at most {b}, got {v}"


def _nonempty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


# Upper bounds keep every derived number finite: timedelta(hours=1e300) overflows and an
# infinite weight turns every score into nan.
_TEN_YEARS_HOURS = 87_660.0
_MAX_WEIGHT = 1_000_000.0
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")

SETTINGS: tuple[Setting, ...] = (
    Setting("site", "base_url", "url", "absolute http(s) URL the site and feeds are served under"),
    Setting("site", "title", "str", "site and feed title", check=_nonempty),
    Setting("site", "description", "str", "site and feed description"),
    Setting("site", "author", "str", "feed author name"),
    Setting("store", "path", "path", "directory holding the store (stories, subscribers, journal)"),
    Setting("ingest", "paths", "paths", "files or directories `digest ingest` reads by default"),
    Setting("feeds", "output", "path", "directory the published site and feeds are written to"),
    Setting("feeds", "items", "int", "stories per feed", check=_between(1, 1000)),
    Setting("rank", "hot", "float", "weight of the hot score", check=_between(0, _MAX_WEIGHT)),
    Setting("rank", "quality", "float", "weight of the quality score",
            check=_between(0, _MAX_WEIGHT)),
    Setting("rank", "impact", "float", "weight of the impact score",
            check=_between(0, _MAX_WEIGHT)),
    Setting("rank", "half_life_hours", "float", "recency half-life in hours",
            check=_above(0, _TEN_YEARS_HOURS)),
    Setting("rank", "default_score", "float", "score for stories without scores", check=_between(0, 100)),
    Setting("smtp", "transport", "enum", "how mail leaves: smtp or maildir", ("smtp", "maildir")),
    Setting("smtp", "maildir", "path", "Maildir directory for transport = maildir"),
    Setting("smtp", "host", "str", "SMTP server host", check=_nonempty),
    Setting("smtp", "port", "int", "SMTP server port", check=_between(1, 65535)),
    Setting("smtp", "security", "enum", "none, starttls or tls", ("none", "starttls", "tls")),
    Setting("smtp", "username", "str", "SMTP login; empty = no login"),
    Setting("smtp", "password_env", "env", "environment variable holding the SMTP password"),
    Setting("smtp", "sender", "email", "From: header, e.g. 'AI News <digest@example.org>'"),
    Setting("smtp", "timeout", "float", "seconds per SMTP command", check=_between(0.1, 3600)),
    Setting("smtp", "pool_size", "int", "parallel SMTP connections", check=_between(1, 64)),
    Setting("smtp", "rate_limit", "float", "messages per second, 0 = unlimited",
            check=_between(0, 100_000)),
    Setting("smtp", "retries", "int", "retries for a temporary failure", check=_between(0, 20)),
    Setting("web", "host", "str", "address `digest serve`/`run` listen on", check=_nonempty),
    Setting("web", "port", "int", "port to listen on (0 = any free port)", check=_between(0, 65535)),
    Setting("web", "secret_env", "env", "environment variable holding the link-signing secret"),
    Setting("schedule", "ingest", "cron", "when the daemon ingests [ingest] paths"),
    Setting("schedule", "publish", "cron", "when the daemon publishes feeds and pages"),
    Setting("schedule", "timezone", "tz", "IANA time zone the ingest and publish crons are read in"),
    Setting("schedule", "grace_hours", "float", "how late a missed digest is still sent",
            check=_between(0, 168)),
    Setting("schedule", "stop_wait_seconds", "float",
            "on SIGTERM, how long running jobs may finish before the daemon exits",
            check=_between(0, 86_400)),
    Setting("digests", "name", "str", "digest name (letters, digits, - and _)",
            check=lambda v: None if _NAME_RE.match(v) else f"{v!r} must be letters, digits, - or _"),
    Setting("digests", "cron", "cron", "when it is sent, in each subscriber's time zone"),
    Setting("digests", "max_stories", "int", "stories per edition", check=_between(1, 100)),
    Setting("digests", "subject", "subject", "Subject: line; {date} is the edition date"),
    Setting("digests", "max_age_hours", "float",
            "only stories published this many hours before the edition go out",
            check=_above(0, _TEN_YEARS_HOURS)),
)
# `[tags]` is free-form: tag → ASCII slug used in feed paths.
FREE_SECTIONS = {"tags": "tag → ASCII slug alias used in feed and page paths"}
ARRAY_SECTIONS = {"digests"}

_SECTION_CLASSES = {
    "site": SiteConfig, "store": StoreConfig, "ingest": IngestConfig, "feeds": FeedsConfig,
    "rank": RankConfig, "smtp": SmtpConfig, "web": WebConfig, "schedule": ScheduleConfig,
    "digests": DigestConfig,
}
_BY_SECTION: dict[str, dict[str, Setting]] = {}
for _s in SETTINGS:
    _BY_SECTION.setdefault(_s.section, {})[_s.key] = _s


def default_config_text() -> str:
    """The commented default config.toml shipped inside the package."""
    return resources.files("digest").joinpath("default_config.toml").read_text(encoding="utf-8")


# --- locating keys in the source (tomllib keeps no line numbers) -------------------------

_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY_RE = re.compile(r"""^\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*[=.]""")


class _Locator:
    """Finds the line of `[section].key` (or the Nth `[[section]]`) in the source text."""

    def __init__(self, text: str) -> None:
        self.headers: dict[tuple[str, int], int] = {}
        self.keys: dict[tuple[str, int, str], int] = {}
        section, index, counts = "", 0, {}
        for no, line in enumerate(text.splitlines(), start=1):
            m = _HEADER_RE.match(line)
            if m:
                section = m.group(2).strip().strip('"')
                if m.group(1) == "[[":
                    index = counts[section] = counts.get(section, 0) + 1
                else:
                    index = 0
                self.headers.setdefault((section, index), no)
                continue
            k = _KEY_RE.match(line)
            if k:
                key = next(g for g in k.groups() if g is not None)
                self.keys.setdefault((section, index, key), no)
                # `smtp.host = ...` at top level (dotted key) also names a section
                if not section and line.strip().startswith(f"{key}."):
                    self.headers.setdefault((key, 0), no)

    def line(self, section: str, index: int = 0, key: str | None = None) -> int:
        if key is not None and (section, index, key) in self.keys:
            return self.keys[(section, index, key)]
        if (section, index) in self.headers:
            return self.headers[(section, index)]
        if ("", 0, section) in self.keys:  # `site = {...}` inline table at top level
            return self.keys[("", 0, section)]
        return 1


# --- validation ------------------------------------------------------------------------

_KIND_NAMES = {
    "str": "a string", "int": "an integer", "float": "a number", "path": "a path string",
    "paths": "a list of path strings", "cron": "a cron string", "tz": "a time zone name", "url": "a URL string",
    "enum": "a string", "env": "an environment variable name", "email": "a string",
    "subject": "a string",
}


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def _type_name(v: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "table"}.get(type(v), type(v).__name__)


def _convert(s: Setting, v: Any) -> tuple[Any, str | None]:
    """Check one value against its setting; return (converted value, problem or None)."""
    bad = (v, f"expected {_KIND_NAMES[s.kind]}, got {_type_name(v)} {v!r}")
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
        elif not v.endswith("/"):
            v += "/"  # feeds and pages are joined onto it: a missing slash would drop a path part
    elif s.kind == "env" and not _ENV_RE.match(v):
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
        "tz": ' — an IANA name such as "UTC", "Europe/Berlin" or "Asia/Shanghai"',
    }.get(s.kind, "")
    return f"{s.key}: {s.help}{extra}"


class _Validator:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.loc = _Locator(text)

    def fail(self, section: str, index: int, key: str | None, problem: str, hint: str) -> ConfigError:
        where = f"[{section}.{index}]" if index else f"[{section}]"
        name = f"{where}.{key}" if key is not None else where
        line = self.loc.line(section, index, key)
        return ConfigError(f"{self.path}:{line}: {name}: {problem}", hint)

    def table(self, section: str, index: int, data: Any) -> dict[str, Any]:
        settings = _BY_SECTION[section]
        if not isinstance(data, dict):
            raise self.fail(section, index, None, f"expected a table, got {_type_name(data)}",
                            f"write it as a [{section}] table")
        out: dict[str, Any] = {}
        for key, value in data.items():
            s = settings.get(key)
            if s is None:
                close = difflib.get_close_matches(key, settings, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self.fail(section, index, key, "unknown key",
                                f"{hint}known keys: {', '.join(settings)}")
            conv, problem = _convert(s, value)
            if problem:
                raise self.fail(section, index, key, problem, _hint(s))
            out[key] = conv
        return out


def _resolve(root: Path, p: str | Path) -> Path:
    p = Path(p).expanduser()
    return p if p.is_absolute() else root / p


def load_config(path: Path) -> Config:
    """Read config.toml; raise ConfigError naming file, line and key on any problem."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} not found", 'run "digest init" to write the commented default')
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}", "check the file's permissions and encoding") from e
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> Config:
    """Validate config text (pure apart from reading secrets' presence from the environment)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column \d+\)", str(e))
        line = m.group(1) if m else "1"
        reason = re.sub(r"\s*\(at line.*\)$", "", str(e))
        raise ConfigError(f"{path}:{line}: TOML syntax: {reason}", "fix the TOML syntax at that line") from e
    v = _Validator(path, text)
    known = set(_SECTION_CLASSES) | set(FREE_SECTIONS)
    for section in data:
        if section not in known:
            close = difflib.get_close_matches(section, known, n=1)
            hint = f"did you mean [{close[0]}]? " if close else ""
            raise v.fail(section, 0, None, "unknown section",
                         f"{hint}known sections: {', '.join(sorted(known))}")
    root = path.resolve().parent
    sec: dict[str, dict[str, Any]] = {}
    for section in _SECTION_CLASSES:
        if section not in ARRAY_SECTIONS:
            sec[section] = v.table(section, 0, data.get(section, {}))

    def paths_of(section: str, key: str, default: Any) -> Any:
        return sec[section].pop(key, default)

    store = StoreConfig(path=_resolve(root, paths_of("store", "path", "store")))
    ingest = IngestConfig(paths=tuple(_resolve(root, p) for p in paths_of("ingest", "paths", ["seeds"])))
    feeds = FeedsConfig(output=_resolve(root, paths_of("feeds", "output", "public")), **sec["feeds"])
    smtp = SmtpConfig(maildir=_resolve(root, paths_of("smtp", "maildir", "maildir")), **sec["smtp"])
    _check_secrets(v, smtp, data.get("smtp", {}))
    _check_overlap(v, path, store.path, feeds.output, smtp.maildir)

    tags = data.get("tags", {})
    if not isinstance(tags, dict):
        raise v.fail("tags", 0, None, f"expected a table, got {_type_name(tags)}",
                     'write it as [tags] with lines like "安全" = "security"')
    slug_of: dict[str, str] = {}
    for tag, slug in tags.items():
        if not isinstance(slug, str) or not _SLUG_RE.match(slug):
            raise v.fail("tags", 0, tag, f"{slug!r} is not an ASCII slug",
                         "use lowercase ASCII letters, digits and single hyphens, e.g. \"security\"")
        if slug in slug_of:
            # Two tags on one slug would write two feeds to one path, the second silently
            # replacing the first.
            raise v.fail("tags", 0, tag, f"slug {slug!r} is already used by {slug_of[slug]!r}",
                         "give every tag its own slug (or drop one of the two lines)")
        slug_of[slug] = tag

    raw_digests = data.get("digests")
    if raw_digests is None:
        digests: tuple[DigestConfig, ...] = (DigestConfig(),)
    else:
        if not isinstance(raw_digests, list) or not raw_digests:
            raise v.fail("digests", 0, None, "expected one or more [[digests]] tables",
                         "write each digest as a [[digests]] table with name, cron, max_stories, subject")
        items, seen = [], set()
        for i, raw in enumerate(raw_digests, start=1):
            d = DigestConfig(**v.table("digests", i, raw))
            if d.name in seen:
                raise v.fail("digests", i, "name", f"duplicate digest name {d.name!r}",
                             "give every [[digests]] table its own name")
            seen.add(d.name)
            items.append(d)
        digests = tuple(items)

    rank = RankConfig(**sec["rank"])
    if rank.hot + rank.quality + rank.impact <= 0:
        key = next((k for k in ("hot", "quality", "impact") if k in data.get("rank", {})), None)
        raise v.fail("rank", 0, key, "the weights hot, quality and impact sum to 0",
                     "give at least one weight a positive value, e.g. hot = 0.4")
    return Config(
        path=path, site=SiteConfig(**sec["site"]), store=store, ingest=ingest, feeds=feeds,
        rank=rank, tags=dict(tags), smtp=smtp, web=WebConfig(**sec["web"]),
        schedule=ScheduleConfig(**sec["schedule"]), digests=digests,
    )


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def _check_overlap(v: _Validator, config_path: Path, store: Path, output: Path, maildir: Path) -> None:
    """The output dir is served to the world: it must not hold the store (the link-signing
    secret, subscriber addresses), the Maildir (mail with live links) or config.toml."""
    for name, private in (("[store].path", store), ("[smtp].maildir", maildir)):
        if _inside(private, output) or _inside(output, private):
            raise v.fail("feeds", 0, "output",
                         f"{output} overlaps {name} ({private}); everything under it is served",
                         f"give [feeds].output and {name} separate directories, e.g. output = \"public\"")
    if _inside(config_path, output):
        raise v.fail("feeds", 0, "output", f"{output} holds {config_path.name}, which would be served",
                     'publish into a subdirectory, e.g. output = "public"')


def _check_secrets(v: _Validator, smtp: SmtpConfig, raw: dict[str, Any]) -> None:
    """A login without its password fails now, not at the first send hours later."""
    if (smtp.transport == "smtp" and smtp.username and smtp.security == "none"
            and smtp.host not in ("127.0.0.1", "::1", "localhost")):
        raise v.fail("smtp", 0, "security",
                     f'"none" would send the password for {smtp.username!r} in clear text to {smtp.host}',
                     'use security = "starttls" (port 587) or "tls" (port 465); plain AUTH is allowed only on loopback')
    if smtp.transport == "smtp" and smtp.username and not smtp.password():
        key = "password_env" if "password_env" in raw else "username"
        raise v.fail("smtp", 0, key,
                     f"environment variable {smtp.password_env} is not set (needed for username)",
                     f"export {smtp.password_env}=... before starting digest, or clear [smtp].username")
