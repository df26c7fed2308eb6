"""Settings: typed, frozen dataclasses and their key table (`settings`), loaded and validated
from config.toml with errors naming file, line and key (`loader`)."""

from digest.config.loader import default_config_text, load_config, parse_config
from digest.config.settings import (
    SETTINGS,
    BouncesConfig,
    Config,
    DigestConfig,
    DkimConfig,
    FeedsConfig,
    IngestConfig,
    RankConfig,
    ScheduleConfig,
    Setting,
    SiteConfig,
    SmtpConfig,
    StoreConfig,
    WebConfig,
    WebSubConfig,
)
from digest.errors import ConfigError

__all__ = [
    "SETTINGS", "BouncesConfig", "Config", "ConfigError", "DigestConfig", "DkimConfig", "FeedsConfig", "IngestConfig",
    "RankConfig", "ScheduleConfig", "Setting", "SiteConfig", "SmtpConfig", "StoreConfig",
    "WebConfig", "WebSubConfig", "default_config_text", "load_config", "parse_config",
]
