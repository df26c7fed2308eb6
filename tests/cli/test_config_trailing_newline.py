"""Issue 17.8: config values validated by a pattern (digest names, environment variable
names, tag slugs) must not pass with a trailing newline (`$` matches before one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("old", "new", "key"), [
    ('name = "daily"', 'name = "daily\\n"', "].name: 'daily\\n' must be"),
    ('secret_env = "DIGEST_SECRET"', 'secret_env = "DIGEST_SECRET\\n"', "[web].secret_env"),
])
def test_a_trailing_newline_is_refused(tmp_path: Path, old: str, new: str, key: str) -> None:
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    assert old in text
    cfg = tmp_path / "config.toml"
    cfg.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert key in e.value.message


def test_a_tag_slug_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    cfg = tmp_path / "config.toml"
    cfg.write_text(text.replace('"安全" = "security"', '"安全" = "security\\n"'), encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert "not an ASCII slug" in e.value.message
