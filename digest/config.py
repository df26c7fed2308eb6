"""Load and validate config.toml into typed, frozen settings (the only tomllib user)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass(frozen=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    secret_env: str = "DIGEST_SECRET"


@dataclass(frozen=True)
class ScheduleConfig:
    ingest: str = "*/15 * * * *"
    publish: str = "*/15 * * * *"
    grace_hours: float = 6.0


@dataclass(frozen=True)
class DigestConfig:
    name: str = "daily"
    cron: str = "0 7 * * *"
    max_stories: int = 10
    subject: str = "AI News Daily · AI资讯日报 — {date}"


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


def _resolve(root: Path, p: str | Path) -> Path:
    p = Path(p).expanduser()
    return p if p.is_absolute() else root / p


def load_config(path: Path) -> Config:
    """Read config.toml; raise ConfigError naming file, line and key on any problem."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} not found", 'run "digest init" to write the commented default')
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}", "fix the TOML syntax at that line") from e
    root = path.resolve().parent
    t = data.get
    site = SiteConfig(**t("site", {}))
    store = StoreConfig(path=_resolve(root, t("store", {}).get("path", "store")))
    ing = t("ingest", {})
    ingest = IngestConfig(paths=tuple(_resolve(root, p) for p in ing.get("paths", ["seeds"])))
    fd = dict(t("feeds", {}))
    feeds = FeedsConfig(output=_resolve(root, fd.pop("output", "public")), **fd)
    rank = RankConfig(**t("rank", {}))
    sm = dict(t("smtp", {}))
    smtp = SmtpConfig(maildir=_resolve(root, sm.pop("maildir", "maildir")), **sm)
    web = WebConfig(**t("web", {}))
    schedule = ScheduleConfig(**t("schedule", {}))
    digests = tuple(DigestConfig(**d) for d in t("digests", [{}]))
    return Config(
        path=path, site=site, store=store, ingest=ingest, feeds=feeds, rank=rank,
        tags=dict(t("tags", {})), smtp=smtp, web=web, schedule=schedule, digests=digests,
    )
