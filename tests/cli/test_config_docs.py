"""Every setting the code reads is in the settings table and documented in config.toml."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from digest import config as cfgmod

REPO = Path(__file__).resolve().parents[2]
SHIPPED = (REPO / "config.toml").read_text(encoding="utf-8")
SECTIONS = {
    "site": cfgmod.SiteConfig, "store": cfgmod.StoreConfig, "ingest": cfgmod.IngestConfig,
    "feeds": cfgmod.FeedsConfig, "rank": cfgmod.RankConfig, "smtp": cfgmod.SmtpConfig,
    "web": cfgmod.WebConfig, "schedule": cfgmod.ScheduleConfig, "digests": cfgmod.DigestConfig,
    "dkim": cfgmod.DkimConfig, "websub": cfgmod.WebSubConfig, "bounces": cfgmod.BouncesConfig,
}


def _documented() -> dict[tuple[str, str], bool]:
    """(section, key) → whether a comment line sits right above it in config.toml."""
    out: dict[tuple[str, str], bool] = {}
    section, prev = "", ""
    for line in SHIPPED.splitlines():
        m = re.match(r"^\[\[?([a-z_]+)\]\]?$", line)
        if m:
            section = m.group(1)
        else:
            k = re.match(r"^([A-Za-z0-9_]+) = ", line)
            if k:
                out[(section, k.group(1))] = prev.startswith("#")
        prev = line
    return out


def test_settings_table_matches_dataclasses() -> None:
    table = {(s.section, s.key) for s in cfgmod.SETTINGS}
    fields = {(sec, f.name) for sec, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
    assert table == fields


@pytest.mark.parametrize("setting", cfgmod.SETTINGS, ids=lambda s: f"{s.section}.{s.key}")
def test_every_setting_is_commented_in_config_toml(setting: cfgmod.Setting) -> None:
    doc = _documented()
    assert (setting.section, setting.key) in doc, f"[{setting.section}] {setting.key} missing"
    assert doc[(setting.section, setting.key)], f"[{setting.section}] {setting.key} has no comment"
    assert setting.help


def test_config_toml_has_no_undeclared_keys() -> None:
    table = {(s.section, s.key) for s in cfgmod.SETTINGS}
    assert set(_documented()) <= table


def test_every_attribute_the_code_reads_is_a_setting() -> None:
    # e.g. `config.smtp.pool_size` or `cfg.schedule.grace_hours` anywhere in digest/
    known = {(s.section, s.key) for s in cfgmod.SETTINGS}
    methods = {(sec, name) for sec, cls in SECTIONS.items() for name in dir(cls)
               if not name.startswith("_")}
    pattern = re.compile(r"\b(?:config|cfg|conf)\.(site|store|ingest|feeds|websub|rank|smtp|web|schedule)\.([a-z_]+)\b")
    unknown = []
    for path in (REPO / "digest").rglob("*.py"):
        for m in pattern.finditer(path.read_text(encoding="utf-8")):
            key = (m.group(1), m.group(2))
            if key not in known and key not in methods:
                unknown.append(f"{path.name}: {m.group(0)}")
    assert not unknown, f"read but not in config.SETTINGS / config.toml: {unknown}"
