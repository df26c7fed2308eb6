"""Settings as data: the typed, frozen settings and the table of every config.toml key with
its kind, its check and its help text (the loader validates against it; tests check every
key is documented in the default config.toml)."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
# and the help text. Defaults live in the dataclasses above; tests/cli/test_config_docs.py
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

SECTION_CLASSES = {
    "site": SiteConfig, "store": StoreConfig, "ingest": IngestConfig, "feeds": FeedsConfig,
    "rank": RankConfig, "smtp": SmtpConfig, "web": WebConfig, "schedule": ScheduleConfig,
    "digests": DigestConfig,
}
BY_SECTION: dict[str, dict[str, Setting]] = {}
for _s in SETTINGS:
    BY_SECTION.setdefault(_s.section, {})[_s.key] = _s
