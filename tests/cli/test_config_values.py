"""config.toml values checked at load: number ranges and finiteness, subject placeholders, max
age, rank weights, tag slugs, output-dir overlap, clear-text auth and control characters in
paths; each a ConfigError `config.toml:LINE: [section].key: ...` with a hint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from digest.config import ConfigError, parse_config
from digest.mail.render import subject_for

REPO = Path(__file__).resolve().parents[2]
SHIPPED = (REPO / "config.toml").read_text(encoding="utf-8")


def _config_error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        parse_config(text, tmp_path / "config.toml")
    return e.value


def _edit(old: str, new: str, text: str = SHIPPED) -> tuple[str, int]:
    """Replace one line of the shipped config; return the text and that line's number."""
    assert text.count(old) == 1, old
    line = text[: text.index(old)].count("\n") + 1
    return text.replace(old, new), line


@pytest.mark.parametrize("value,problem", [
    ("0", "must be above 0"), ("-1.0", "must be above 0"), ("inf", "finite"),
    ("nan", "finite"), ("1e300", "at most"), ('"72"', "expected a number"),
])
def test_max_age_hours_is_validated(tmp_path: Path, value: str, problem: str) -> None:
    text, line = _edit("max_age_hours = 72.0", f"max_age_hours = {value}")
    err = _config_error(tmp_path, text)
    assert err.message.startswith(f"{tmp_path / 'config.toml'}:{line}: "
                                  "[digests.1].max_age_hours: "), err.message
    assert problem in err.message


@pytest.mark.parametrize("subject", ["News {date.year}", "News {0}", "News {}", "News {date!r}",
                                     "News {date:%Y}", "News {day}", "News {", "News }",
                                     "News {date[0]}"])
def test_bad_subject_placeholders_are_config_errors(tmp_path: Path, subject: str) -> None:
    text, line = _edit('subject = "AI News Daily · AI资讯日报 — {date}"',
                       f"subject = {json.dumps(subject)}")
    err = _config_error(tmp_path, text)
    assert err.message.startswith(f"{tmp_path / 'config.toml'}:{line}: [digests.1].subject: ")
    assert "placeholder" in err.message and err.hint


def test_literal_braces_in_the_subject_are_allowed_and_rendered(tmp_path: Path) -> None:
    text, _ = _edit('subject = "AI News Daily · AI资讯日报 — {date}"',
                    'subject = "{{AI}} News — {date}"')
    cfg = parse_config(text, tmp_path / "config.toml")
    assert subject_for(cfg.digests[0].subject, ["en"], "2026-11-22") == "{AI} News — 2026-11-22"


@pytest.mark.parametrize("old,new,key,problem", [
    ("grace_hours = 6.0", "grace_hours = inf", "[schedule].grace_hours", "finite"),
    ("grace_hours = 6.0", "grace_hours = 1e300", "[schedule].grace_hours", "between 0 and 168"),
    ("grace_hours = 6.0", "grace_hours = 169", "[schedule].grace_hours", "between 0 and 168"),
    ("grace_hours = 6.0", "grace_hours = nan", "[schedule].grace_hours", "finite"),
    ("grace_hours = 6.0", "grace_hours = " + "9" * 400, "[schedule].grace_hours", "too large"),
    ("hot = 0.4", "hot = inf", "[rank].hot", "finite"),
    ("hot = 0.4", "hot = -inf", "[rank].hot", "finite"),
    ("hot = 0.4", "hot = -0.1", "[rank].hot", "between 0"),
    ("half_life_hours = 24.0", "half_life_hours = 0", "[rank].half_life_hours", "above 0"),
    ("half_life_hours = 24.0", "half_life_hours = 1e9", "[rank].half_life_hours", "at most"),
    ("default_score = 50.0", "default_score = nan", "[rank].default_score", "finite"),
    ("items = 50", "items = 1001", "[feeds].items", "between 1 and 1000"),
    ("pool_size = 4", "pool_size = 65", "[smtp].pool_size", "between 1 and 64"),
    ("timeout = 30.0", "timeout = 0", "[smtp].timeout", "between 0.1"),
    ("timeout = 30.0", "timeout = inf", "[smtp].timeout", "finite"),
    ("rate_limit = 0.0", "rate_limit = inf", "[smtp].rate_limit", "finite"),
    ("stop_wait_seconds = 120.0", "stop_wait_seconds = 1e12", "[schedule].stop_wait_seconds",
     "between"),
    ("max_stories = 10", "max_stories = 1000", "[digests.1].max_stories", "between 1 and 100"),
])
def test_out_of_range_numbers_name_file_line_and_key(tmp_path: Path, old: str, new: str,
                                                      key: str, problem: str) -> None:
    text, line = _edit(old, new)
    err = _config_error(tmp_path, text)
    assert err.message.startswith(f"{tmp_path / 'config.toml'}:{line}: {key}: "), err.message
    assert problem in err.message
    assert err.hint


def test_all_rank_weights_zero_is_refused(tmp_path: Path) -> None:
    text = SHIPPED
    for k, v in (("hot", "0.4"), ("quality", "0.35"), ("impact", "0.25")):
        text, _ = _edit(f"{k} = {v}", f"{k} = 0", text)
    line = text[: text.index("hot = 0")].count("\n") + 1
    err = _config_error(tmp_path, text)
    assert err.message.startswith(f"{tmp_path / 'config.toml'}:{line}: [rank].hot: ")
    assert "sum to 0" in err.message


def test_shipped_config_is_valid_and_both_copies_match(tmp_path: Path) -> None:
    assert SHIPPED == (REPO / "digest" / "default_config.toml").read_text(encoding="utf-8")
    parse_config(SHIPPED, tmp_path / "config.toml")


def test_two_tags_mapped_to_one_slug_name_the_second_line(tmp_path: Path) -> None:
    text, line = _edit('"政策" = "policy"', '"政策" = "security"')
    err = _config_error(tmp_path, text)
    assert err.message.startswith(f"{tmp_path / 'config.toml'}:{line}: [tags].政策: ")
    assert "'security'" in err.message and "安全" in err.message


@pytest.mark.parametrize("output", [".", "store", "maildir", "store/public"])
def test_output_dir_may_not_overlap_private_dirs(tmp_path: Path, output: str) -> None:
    key = "[feeds].output"
    text = SHIPPED.replace('output = "public"', f'output = "{output}"')
    line = text.splitlines().index(f'output = "{output}"') + 1
    with pytest.raises(ConfigError) as e:
        parse_config(text, tmp_path / "config.toml")
    assert e.value.message.startswith(f"{tmp_path / 'config.toml'}:{line}: {key}: ")
    assert "separate" in e.value.hint or "subdirectory" in e.value.hint


def test_cleartext_auth_refused_off_loopback(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "pw")
    text = (SHIPPED.replace('transport = "maildir"', 'transport = "smtp"')
            .replace('username = ""', 'username = "mailer"'))
    far = text.replace('host = "127.0.0.1"\n# SMTP port', 'host = "mail.example.com"\n# SMTP port')
    assert far != text
    with pytest.raises(ConfigError) as e:
        parse_config(far, tmp_path / "config.toml")
    assert "[smtp].security" in e.value.message and "clear text" in e.value.message
    parse_config(far.replace('security = "none"', 'security = "starttls"'), tmp_path / "config.toml")
    parse_config(text, tmp_path / "config.toml")  # loopback relay: allowed


@pytest.mark.parametrize("key,value", [("path", '"st\\u0000ore"'), ("output", '"pub\\nlic"'),
                                       ("maildir", '"\\u0000"'), ("paths", '["seeds", "\\u0000"]')])
def test_control_characters_in_paths_are_config_errors(tmp_path: Path, key: str, value: str) -> None:
    """Found by the config fuzz in CI: a NUL in a path reached pathlib as a ValueError."""
    old = {"path": 'path = "store"', "output": 'output = "public"', "maildir": 'maildir = "maildir"',
           "paths": 'paths = ["seeds"]'}[key]
    text = SHIPPED.replace(old, f"{key} = {value}")
    line = text.splitlines().index(f"{key} = {value}") + 1
    with pytest.raises(ConfigError) as e:
        parse_config(text, tmp_path / "config.toml")
    assert f"config.toml:{line}: [" in e.value.message and f"].{key}: " in e.value.message
    assert "control character" in e.value.message


def test_non_ascii_urls_are_written_in_ascii_or_refused_at_their_key(tmp_path: Path) -> None:
    old = 'base_url = "http://127.0.0.1:8000/"'
    text, _ = _edit(old, 'base_url = "https://例え.jp/新闻"')
    cfg = parse_config(text, tmp_path / "config.toml")
    assert cfg.site.base_url == "https://xn--r8jz45g.jp/%E6%96%B0%E9%97%BB/"
    bad, line = _edit(old, 'base_url = "https://' + "例" * 70 + '.jp/"')
    err = _config_error(tmp_path, bad)
    assert f":{line}: [site].base_url: " in err.message and "internationalised" in err.message
