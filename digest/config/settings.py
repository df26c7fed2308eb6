"""Settings as data: the typed, frozen settings and the table of every config.toml key with
its kind, its check and its help text (the loader validates against it; tests check every
key is documented in the default config.toml)."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr
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
    url: str = ""  # postgresql://user@host:port/db; empty = the embedded store at `path`


@dataclass(frozen=True)
class IngestConfig:
    paths: tuple[Path, ...] = (Path("seeds"),)


@dataclass(frozen=True)
class FeedsConfig:
    output: Path = Path("public")
    items: int = 50


@dataclass(frozen=True)
class WebSubConfig:
    """WebSub publishing: the hubs every feed names and every publish pings."""

    hubs: tuple[str, ...] = ()  # absolute http(s) URLs; empty = no WebSub


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
    helo: str = ""  # the EHLO name; empty = the sender's domain
    feedback_id: str = ""  # Feedback-ID header on digests (Gmail's feedback loop); empty = none

    def password(self) -> str:
        """The SMTP password, read from the environment variable named by password_env."""
        return os.environ.get(self.password_env, "")

    def sender_domain(self) -> str:
        """The domain of the sender's address (the Message-ID and envelope domain)."""
        return parseaddr(self.sender)[1].rpartition("@")[2].lower()

    def ehlo_name(self) -> str:
        """What the SMTP client says in EHLO: `helo`, else the sender's domain."""
        return self.helo or self.sender_domain() or "localhost"


@dataclass(frozen=True)
class DkimConfig:
    """DKIM signing (mail/dkim.py signs; these are its settings): digest signs when domain,
    selector and key_file are set; `relay_signs` says the relay signs instead."""

    domain: str = ""
    selector: str = ""
    key_file: Path | None = None
    relay_signs: bool = False

    @property
    def signs(self) -> bool:
        return bool(self.domain and self.selector and self.key_file)


@dataclass(frozen=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    secret_env: str = "DIGEST_SECRET"
    pending_days: int = 7  # unconfirmed subscriptions are dropped after this (store.base)
    # Proxies whose X-Forwarded-For/-Proto are believed (IPs or networks); none by default:
    # uvicorn alone would trust 127.0.0.1, letting any local client pick its rate-limit key.
    trusted_proxies: tuple[str, ...] = ()
    metrics: bool = False  # /metrics (Prometheus text format)
    metrics_allow: tuple[str, ...] = ()  # besides loopback, who may read /metrics
    access_log: bool = False  # one log line per HTTP request


@dataclass(frozen=True)
class ScheduleConfig:
    ingest: str = "*/15 * * * *"
    publish: str = "*/15 * * * *"
    timezone: str = "UTC"  # zone the ingest and publish crons are read in
    grace_hours: float = 6.0
    stop_wait_seconds: float = 120.0  # SIGTERM: how long in-flight jobs may finish
    bounces: str = "*/10 * * * *"  # when the daemon reads the bounce mailbox (if one is set)


@dataclass(frozen=True)
class BouncesConfig:
    """VERP return path and the mailbox `digest bounces` reads (pipeline/bounces.py): a
    Maildir, or IMAP over TLS with the password from the env var `password_env` names."""

    return_path: str = ""  # bounces@example.org; empty = envelope sender is [smtp] sender
    maildir: Path | None = None
    imap_host: str = ""
    imap_port: int = 993
    imap_user: str = ""
    imap_folder: str = "INBOX"
    password_env: str = "DIGEST_BOUNCES_PASSWORD"
    soft_limit: int = 3  # transient failures (4.x.x) within soft_days that count as a bounce
    soft_days: float = 7.0

    def password(self) -> str:
        """The IMAP password, read from the environment variable named by password_env."""
        return os.environ.get(self.password_env, "")

    @property
    def mailbox(self) -> bool:
        """Is there a mailbox to read?"""
        return bool(self.maildir or self.imap_host)


@dataclass(frozen=True)
class DigestConfig:
    name: str = "daily"
    cron: str = "0 7 * * *"
    max_stories: int = 10
    subject: str = "AI News Daily · AI资讯日报 — {date}"
    max_age_hours: float = 72.0  # older stories are back-catalogue, not news
    default: bool = False  # given to subscribers who chose no digests (none marked: all)


@dataclass(frozen=True)
class Config:
    path: Path = Path("config.toml")
    site: SiteConfig = field(default_factory=SiteConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    feeds: FeedsConfig = field(default_factory=FeedsConfig)
    websub: WebSubConfig = field(default_factory=WebSubConfig)
    rank: RankConfig = field(default_factory=RankConfig)
    tags: dict[str, str] = field(default_factory=dict)  # tag → ASCII slug alias
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    web: WebConfig = field(default_factory=WebConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    dkim: DkimConfig = field(default_factory=DkimConfig)
    bounces: BouncesConfig = field(default_factory=BouncesConfig)
    # the built-in digest is the default one, as in the shipped config.toml
    digests: tuple[DigestConfig, ...] = (DigestConfig(default=True),)

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

    def default_digests(self) -> tuple[str, ...]:
        """The digests of a subscriber who chose none: those marked `default = true`, else
        every digest."""
        marked = tuple(d.name for d in self.digests if d.default)
        return marked or tuple(d.name for d in self.digests)

    def digests_of(self, chosen: Sequence[str]) -> tuple[str, ...]:
        """The configured digests a subscriber receives: their choice (names no longer in
        config.toml are ignored), or `default_digests()` when they chose none (rows written
        before the choice existed) or none of their choice is still configured."""
        names = {d.name for d in self.digests}
        kept = tuple(n for n in chosen if n in names)
        return kept or self.default_digests()

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
        out["bounces"]["password"] = "<set, redacted>" if self.bounces.password() else "<unset>"
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
    kind: str  # str | int | float | path | paths | cron | tz | url | pgurl | enum | env | email
    #             | subject | addresses | urls
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
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # fullmatch: `$` passes "x\n"
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_LITERAL_RE = re.compile(r"\[(?:IPv6:[0-9A-Fa-f:.]+|[0-9.]+)\]")  # EHLO [192.0.2.1]
_FEEDBACK_RE = re.compile(r"[\x21-\x7e]{1,200}")
_SELECTOR_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})")


def _hostname_problem(v: str, literal_ok: bool = False) -> str | None:
    """None for an empty value or a DNS name (or an address literal when `literal_ok`)."""
    if not v or (literal_ok and _LITERAL_RE.fullmatch(v)):
        return None
    labels = v.rstrip(".").split(".")
    if len(v) > 253 or not all(_LABEL_RE.fullmatch(x) for x in labels):
        return f"{v[:80]!r} is not a host name like mail.example.org"
    return None

# VERP: the return path's local part + "+" + the longest token (mail/verp.py, 35 chars)
# must stay within RFC 5321's 64 characters.
_RETURN_PATH_LOCAL_MAX = 28
_RETURN_PATH_RE = re.compile(r"[A-Za-z0-9!#$%&'*/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")


def _return_path_problem(v: str) -> str | None:
    if not v:
        return None
    if not _RETURN_PATH_RE.fullmatch(v) or ".." in v or v.startswith("."):
        return f"{v[:80]!r} is not a bare address like bounces@example.org (no '+', no name)"
    local, _, domain = v.partition("@")
    if len(local) > _RETURN_PATH_LOCAL_MAX:
        return (f"the local part {local!r} is longer than {_RETURN_PATH_LOCAL_MAX} characters: "
                "with the VERP token it would exceed RFC 5321's 64")
    return _hostname_problem(domain)


def _path_text_problem(v: str) -> str | None:
    return "holds a control character" if any(ord(c) < 32 or ord(c) == 127 for c in v) else None


SETTINGS: tuple[Setting, ...] = (
    Setting("site", "base_url", "url", "absolute http(s) URL the site and feeds are served under"),
    Setting("site", "title", "str", "site and feed title", check=_nonempty),
    Setting("site", "description", "str", "site and feed description"),
    Setting("site", "author", "str", "feed author name"),
    Setting("store", "path", "path", "directory holding the store (stories, subscribers, journal)"),
    Setting("store", "url", "pgurl",
            "PostgreSQL database holding the whole store instead of `path`; empty = use `path`"),
    Setting("ingest", "paths", "paths", "files or directories `digest ingest` reads by default"),
    Setting("feeds", "output", "path", "directory the published site and feeds are written to"),
    Setting("feeds", "items", "int", "stories per feed", check=_between(1, 1000)),
    Setting("websub", "hubs", "urls",
            "WebSub hubs (absolute http(s) URLs): every feed links them, and each publish "
            "pings them for every feed that changed; empty = none",
            check=lambda v: None if len(v) <= 10 else f"at most 10 hubs, got {len(v)}"),
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
    Setting("smtp", "helo", "str",
            "name given in EHLO, this host's public DNS name (its PTR); empty = the sender's "
            "domain", check=lambda v: _hostname_problem(v, literal_ok=True)),
    Setting("smtp", "feedback_id", "str",
            "Feedback-ID header on digests (Gmail feedback loop), e.g. 'daily:news:digest'; "
            "empty = none", check=lambda v: None if not v or _FEEDBACK_RE.fullmatch(v) else
            "must be printable ASCII without spaces, at most 200 characters"),
    Setting("web", "host", "str", "address `digest serve`/`run` listen on", check=_nonempty),
    Setting("web", "port", "int", "port to listen on (0 = any free port)", check=_between(0, 65535)),
    Setting("web", "secret_env", "env", "environment variable holding the link-signing secret"),
    Setting("web", "pending_days", "int", "days an unconfirmed subscription is kept",
            check=_between(1, 3650)),
    Setting("web", "trusted_proxies", "addresses",
            "reverse proxies (IP addresses or networks) whose X-Forwarded-For is believed; "
            "empty = none, the client address is the connection's"),
    Setting("web", "metrics", "bool",
            "serve /metrics in the Prometheus text format (default false)"),
    Setting("web", "metrics_allow", "addresses",
            "IP addresses or networks besides loopback that may read /metrics; empty = "
            "loopback only"),
    Setting("web", "access_log", "bool",
            "log one line per HTTP request, in the daemon's log format (default false)"),
    Setting("schedule", "ingest", "cron", "when the daemon ingests [ingest] paths"),
    Setting("schedule", "publish", "cron", "when the daemon publishes feeds and pages"),
    Setting("schedule", "timezone", "tz", "IANA time zone the ingest and publish crons are read in"),
    Setting("schedule", "grace_hours", "float", "how late a missed digest is still sent",
            check=_between(0, 168)),
    Setting("schedule", "stop_wait_seconds", "float",
            "on SIGTERM, how long running jobs may finish before the daemon exits",
            check=_between(0, 86_400)),
    Setting("schedule", "bounces", "cron",
            "when the daemon reads the [bounces] mailbox (nothing happens without one)"),
    Setting("digests", "name", "str", "digest name (letters, digits, - and _)",
            check=lambda v: None if _NAME_RE.fullmatch(v) else f"{v!r} must be letters, digits, - or _"),
    Setting("digests", "cron", "cron", "when it is sent, in each subscriber's time zone"),
    Setting("digests", "max_stories", "int", "stories per edition", check=_between(1, 100)),
    Setting("digests", "subject", "subject", "Subject: line; {date} is the edition date"),
    Setting("digests", "max_age_hours", "float",
            "only stories published this many hours before the edition go out",
            check=_above(0, _TEN_YEARS_HOURS)),
    Setting("digests", "default", "bool",
            "new subscribers who choose no digest get the digests marked default = true "
            "(none marked: every digest)"),
    Setting("dkim", "domain", "str",
            "DKIM signing domain (d=), the From domain or its parent for DMARC alignment; "
            "empty = digest does not sign", check=_hostname_problem),
    Setting("dkim", "selector", "str",
            "DKIM selector (s=): the key is published at <selector>._domainkey.<domain>",
            check=lambda v: None if not v or _SELECTOR_RE.fullmatch(v) else
            f"{v[:80]!r} is not a selector (letters, digits, '.', '-', '_')"),
    Setting("dkim", "key_file", "str",
            "PEM private key used to sign; must exist and be readable by its owner only "
            "(chmod 600); empty = none",
            check=lambda v: "holds a control character" if any(ord(c) < 32 for c in v) else None),
    Setting("dkim", "relay_signs", "bool",
            "true when the SMTP relay adds its own DKIM signature for the From domain "
            "(silences `digest check`'s DKIM warning)"),
    Setting("bounces", "return_path", "str",
            "envelope sender (VERP base) of every message, e.g. 'bounces@example.org': mail "
            "goes out from bounces+TOKEN@example.org and the List-Unsubscribe mailto points "
            "there; empty = the [smtp] sender's address, no VERP",
            check=_return_path_problem),
    Setting("bounces", "maildir", "str",
            "Maildir that receives mail for return_path (`digest bounces` reads it); "
            "empty = none", check=_path_text_problem),
    Setting("bounces", "imap_host", "str",
            "IMAP server (TLS, port imap_port) holding the bounce mailbox instead of a Maildir; "
            "empty = none", check=_hostname_problem),
    Setting("bounces", "imap_port", "int", "IMAP over TLS port", check=_between(1, 65535)),
    Setting("bounces", "imap_user", "str", "IMAP login name"),
    Setting("bounces", "imap_folder", "str", "IMAP folder holding the bounces",
            check=_nonempty),
    Setting("bounces", "password_env", "env",
            "environment variable holding the IMAP password (never the password itself)"),
    Setting("bounces", "soft_limit", "int",
            "temporary failures (4.x.x DSNs) within soft_days that mark a subscriber bounced",
            check=_between(1, 1000)),
    Setting("bounces", "soft_days", "float", "window in days for counting soft bounces",
            check=_above(0, 3650)),
)
# `[tags]` is free-form: tag → ASCII slug used in feed paths.
FREE_SECTIONS = {"tags": "tag → ASCII slug alias used in feed and page paths"}
ARRAY_SECTIONS = {"digests"}

SECTION_CLASSES = {
    "site": SiteConfig, "store": StoreConfig, "ingest": IngestConfig, "feeds": FeedsConfig,
    "websub": WebSubConfig, "rank": RankConfig, "smtp": SmtpConfig, "web": WebConfig, "schedule": ScheduleConfig,
    "digests": DigestConfig, "dkim": DkimConfig, "bounces": BouncesConfig,
}
BY_SECTION: dict[str, dict[str, Setting]] = {}
for _s in SETTINGS:
    BY_SECTION.setdefault(_s.section, {})[_s.key] = _s
