"""`digest check`'s deliverability warnings (a pure function of the config, printed by the CLI
on stderr, exit 0) and the `[dkim]` / `[smtp] helo, feedback_id` validation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from digest.cli import main
from digest.config import ConfigError, parse_config
from digest.config.checks import deliverability_warnings

GOOD = """
[site]
base_url = "https://news.example.org/"
[smtp]
transport = "smtp"
sender = "AI News <digest@news.example.org>"
[dkim]
relay_signs = true
"""


def _config(tmp_path: Path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return parse_config(text, path)


def _key(tmp_path: Path, mode: int) -> Path:
    key = tmp_path / "dkim.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n", encoding="utf-8")
    os.chmod(key, mode)
    return key


def test_a_well_set_smtp_config_has_no_warnings(tmp_path: Path) -> None:
    assert deliverability_warnings(_config(tmp_path, GOOD)) == []


def test_the_shipped_defaults_with_smtp_warn_about_each_problem(tmp_path: Path) -> None:
    warnings = deliverability_warnings(_config(tmp_path, '[smtp]\ntransport = "smtp"\n'))
    text = "\n".join(warnings)
    assert len(warnings) == 3, warnings
    assert "base_url is http://" in text and "RFC 8058" in text
    assert "'localhost'" in text and "Message-ID" in text
    assert "no DKIM" in text and "relay_signs" in text


def test_maildir_has_no_deliverability_warnings(tmp_path: Path) -> None:
    assert deliverability_warnings(_config(tmp_path, "")) == []


@pytest.mark.parametrize("change,needle", [
    (('https://news.example.org/', 'http://news.example.org/'), "RFC 8058"),
    (("digest@news.example.org", "digest@localhost"), "localhost"),
    (("relay_signs = true", "relay_signs = false"), "no DKIM"),
    (('sender = "AI News <digest@news.example.org>"',
      'sender = "AI News <digest@news.example.org>"\nhelo = "localhost"'), "helo"),
])
def test_each_warning_alone(tmp_path: Path, change: tuple[str, str], needle: str) -> None:
    warnings = deliverability_warnings(_config(tmp_path, GOOD.replace(*change)))
    assert len(warnings) == 1 and needle in warnings[0], warnings


def test_dkim_signing_by_digest_silences_the_warning_and_checks_alignment(tmp_path: Path) -> None:
    _key(tmp_path, 0o600)
    text = GOOD.replace("relay_signs = true", 'domain = "example.org"\nselector = "s1"\n'
                        'key_file = "dkim.pem"')
    assert deliverability_warnings(_config(tmp_path, text)) == []  # news.example.org aligns
    other = text.replace('domain = "example.org"', 'domain = "elsewhere.net"')
    (warning,) = deliverability_warnings(_config(tmp_path, other))
    assert "does not align" in warning


@pytest.mark.parametrize("dkim,problem", [
    ('domain = "example.org"\nselector = "s1"', "key_file: is missing"),
    ('domain = "example.org"\nselector = "s1"\nkey_file = "nope.pem"', "key_file"),
    ('domain = "example.org"\nselector = "s1"\nkey_file = "dkim.pem"', "readable by group"),
    ('domain = "not a domain"', "not a host name"),
    ('relay_signs = "yes"', "expected true or false"),
])
def test_dkim_table_validation(tmp_path: Path, dkim: str, problem: str) -> None:
    _key(tmp_path, 0o644)
    with pytest.raises(ConfigError) as e:
        _config(tmp_path, f"[dkim]\n{dkim}\n")
    assert problem in e.value.message and "[dkim]" in e.value.message, e.value.message


@pytest.mark.parametrize("line,problem", [
    ('helo = "bad name"', "not a host name"),
    ('feedback_id = "has space"', "printable ASCII"),
])
def test_smtp_helo_and_feedback_id_validation(tmp_path: Path, line: str, problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        _config(tmp_path, f"[smtp]\n{line}\n")
    assert problem in e.value.message


def test_helo_accepts_an_address_literal(tmp_path: Path) -> None:
    assert _config(tmp_path, '[smtp]\nhelo = "[192.0.2.7]"\n').smtp.ehlo_name() == "[192.0.2.7]"


def test_digest_check_prints_the_warnings_on_stderr_and_exits_0(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[smtp]\ntransport = "smtp"\n', encoding="utf-8")
    assert main(["--config", str(path), "check"]) == 0
    err = capsys.readouterr().err
    assert err.count("digest: warning:") == 3, err
    assert "RFC 8058" in err and "localhost" in err and "DKIM" in err
