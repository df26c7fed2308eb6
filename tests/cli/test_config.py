"""config.toml: one test per kind of error (exact line and key), defaults, check and init."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from digest.config import Config, load_config
from digest.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = (REPO / "config.toml").read_text(encoding="utf-8")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text, encoding="utf-8")
    return p


def edit(old: str, new: str) -> tuple[str, int]:
    """The shipped config with one line replaced, and that line's number (1-based)."""
    lines = SHIPPED.splitlines(keepends=True)
    idx = next(i for i, line in enumerate(lines) if line.rstrip("\n") == old)
    lines[idx] = new + "\n"
    return "".join(lines), idx + 1


def error_of(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    return e.value


def test_shipped_config_is_the_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, SHIPPED))
    root = tmp_path.resolve()
    expected = Config(path=tmp_path / "config.toml")
    for section in ("site", "rank", "web", "schedule", "websub"):
        assert getattr(cfg, section) == getattr(expected, section)
    assert cfg.digests == expected.digests
    assert cfg.store.path == root / "store"
    assert cfg.ingest.paths == (root / "seeds",)
    assert cfg.feeds.output == root / "public" and cfg.feeds.items == 50
    assert cfg.smtp.transport == "maildir" and cfg.smtp.maildir == root / "maildir"
    assert (cfg.web.host, cfg.web.port) == ("127.0.0.1", 8000)
    assert cfg.site.base_url == "http://127.0.0.1:8000/"
    assert cfg.digests[0].name == "daily" and cfg.digests[0].cron == "0 7 * * *"
    assert "{date}" in cfg.digests[0].subject


def test_packaged_default_is_byte_identical_to_config_toml() -> None:
    from digest.config import default_config_text

    assert default_config_text() == SHIPPED
    assert (REPO / "digest" / "default_config.toml").read_bytes() == (REPO / "config.toml").read_bytes()


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""))
    assert cfg.digests[0].name == "daily" and cfg.schedule.grace_hours == 6.0


# --- one test per kind of error message ------------------------------------------------

@pytest.mark.parametrize("old,new,key,problem,hint", [
    # unknown key (with a suggestion)
    ('host = "127.0.0.1"', 'hots = "127.0.0.1"', "[smtp].hots", "unknown key", "did you mean 'host'"),
    # wrong types
    ("port = 8000", 'port = "8000"', "[web].port", "expected an integer, got string '8000'", "port"),
    ("items = 50", "items = 5.5", "[feeds].items", "expected an integer, got number 5.5", "stories"),
    ("port = 8000", "port = true", "[web].port", "expected an integer, got boolean True", "port"),
    ('paths = ["seeds"]', 'paths = "seeds"', "[ingest].paths", "expected a list of path strings", "ingest"),
    ("grace_hours = 6.0", 'grace_hours = "6"', "[schedule].grace_hours", "expected a number", "late"),
    # out of range
    ("port = 25", "port = 70000", "[smtp].port", "must be between 1 and 65535", "port"),
    ("items = 50", "items = 0", "[feeds].items", "must be between 1 and 1000", "stories"),
    # bad cron
    ('ingest = "*/15 * * * *"', 'ingest = "*/15 * * *"', "[schedule].ingest",
     "bad cron expression: '*/15 * * *' has 4 fields", "cron"),
    ('publish = "*/15 * * * *"', 'publish = "0 25 * * *"', "[schedule].publish",
     "bad cron expression: '25' is outside 0-23", "cron"),
    ('cron = "0 7 * * *"', 'cron = "0 7 * * 8"', "[digests.1].cron",
     "bad cron expression: '8' is outside 0-7", "time zone"),
    # bad URL
    ('base_url = "http://127.0.0.1:8000/"', 'base_url = "127.0.0.1:8000"', "[site].base_url",
     "is not an absolute http(s) URL", "URL"),
    ('base_url = "http://127.0.0.1:8000/"', 'base_url = "ftp://example.org/"', "[site].base_url",
     "is not an absolute http(s) URL", "URL"),
    # enums
    ('transport = "maildir"', 'transport = "sendmail"', "[smtp].transport",
     "'sendmail' is not one of smtp, maildir", "smtp or maildir"),
    ('security = "none"', 'security = "ssl"', "[smtp].security",
     "'ssl' is not one of none, starttls, tls", "starttls"),
    # others
    ('password_env = "DIGEST_SMTP_PASSWORD"', 'password_env = "my password"', "[smtp].password_env",
     "is not an environment variable name", "environment variable"),
    ('sender = "AI News <digest@localhost>"', 'sender = "nobody"', "[smtp].sender",
     "is not an address", "From"),
    ('subject = "AI News Daily · AI资讯日报 — {date}"', 'subject = "News {day}"', "[digests.1].subject",
     "bad placeholder", "{date}"),
    ('name = "daily"', 'name = "daily news"', "[digests.1].name", "must be letters, digits", "digest name"),
])
def test_error_names_file_line_and_key(tmp_path: Path, old: str, new: str, key: str,
                                       problem: str, hint: str) -> None:
    text, line = edit(old, new)
    err = error_of(tmp_path, text)
    assert err.message.startswith(f"{tmp_path / 'config.toml'}:{line}: {key}: "), err.message
    assert problem in err.message
    assert hint in err.hint


def test_unknown_time_zone(tmp_path: Path) -> None:
    text, line = edit('timezone = "UTC"', 'timezone = "Europe/Narnia"')
    err = error_of(tmp_path, text)
    assert err.message == (f"{tmp_path / 'config.toml'}:{line}: [schedule].timezone: "
                           "unknown IANA time zone 'Europe/Narnia'")
    assert "Asia/Shanghai" in err.hint
    text, _ = edit('timezone = "UTC"', 'timezone = "Asia/Shanghai"')
    assert load_config(write(tmp_path, text)).schedule.timezone == "Asia/Shanghai"


def test_unknown_section(tmp_path: Path) -> None:
    text, line = edit("[smtp]", "[smpt]")
    err = error_of(tmp_path, text)
    assert err.message == f"{tmp_path / 'config.toml'}:{line}: [smpt]: unknown section"
    assert "did you mean [smtp]?" in err.hint


def test_relative_path_message_is_exactly_config_toml_line_key(tmp_path: Path, monkeypatch) -> None:
    text, line = edit("port = 8000", "port = -1")
    write(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        load_config(Path("config.toml"))
    assert e.value.message == f"config.toml:{line}: [web].port: must be between 0 and 65535, got -1"


def test_same_key_in_two_tables_points_at_the_right_one(tmp_path: Path) -> None:
    # `host` and `port` appear in both [smtp] and [web]; the line must be the [web] one
    text, line = edit("port = 8000", 'port = "x"')
    assert error_of(tmp_path, text).message.split(":")[1] == str(line)
    text, line = edit("port = 25", 'port = "x"')
    assert error_of(tmp_path, text).message.split(":")[1] == str(line)


def test_second_digest_table(tmp_path: Path) -> None:
    text = SHIPPED + '\n[[digests]]\nname = "weekly"\ncron = "0 8 * * mon"\nmax_stories = 0\n'
    line = len(text.splitlines())
    err = error_of(tmp_path, text)
    assert err.message == (f"{tmp_path / 'config.toml'}:{line}: [digests.2].max_stories: "
                           "must be between 1 and 100, got 0")


def test_duplicate_digest_name(tmp_path: Path) -> None:
    text = SHIPPED + '\n[[digests]]\nname = "daily"\n'
    line = len(text.splitlines())
    err = error_of(tmp_path, text)
    assert err.message.endswith(f":{line}: [digests.2].name: duplicate digest name 'daily'")


def test_two_digests_load(tmp_path: Path) -> None:
    text = SHIPPED + '\n[[digests]]\nname = "weekly"\ncron = "0 8 * * mon"\n'
    cfg = load_config(write(tmp_path, text))
    assert [d.name for d in cfg.digests] == ["daily", "weekly"]
    assert cfg.digest("weekly").max_stories == 10
    with pytest.raises(ConfigError, match="no digest named 'monthly'"):
        cfg.digest("monthly")


def test_tags_table(tmp_path: Path) -> None:
    text, _ = edit('"政策" = "policy"', '"政策" = "policy-news"')
    cfg = load_config(write(tmp_path, text))
    assert cfg.tags == {"安全": "security", "政策": "policy-news", "大模型": "llm"}
    text, line = edit('"安全" = "security"', '"安全" = "安全"')
    err = error_of(tmp_path, text)
    assert err.message.endswith(f":{line}: [tags].安全: '安全' is not an ASCII slug")


def test_missing_secret(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("DIGEST_SMTP_PASSWORD", raising=False)
    text, _ = edit('transport = "maildir"', 'transport = "smtp"')
    text = text.replace('username = ""', 'username = "mailer"')
    line = text.splitlines().index('password_env = "DIGEST_SMTP_PASSWORD"') + 1
    err = error_of(tmp_path, text)
    assert err.message == (f"{tmp_path / 'config.toml'}:{line}: [smtp].password_env: environment "
                           "variable DIGEST_SMTP_PASSWORD is not set (needed for username)")
    assert "export DIGEST_SMTP_PASSWORD" in err.hint
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "hunter2")
    cfg = load_config(write(tmp_path, text))
    assert cfg.smtp.password() == "hunter2"
    assert "hunter2" not in json.dumps(cfg.redacted())
    assert "mailer" not in json.dumps(cfg.redacted())


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    text, line = edit("items = 50", "items = = 50")
    err = error_of(tmp_path, text)
    assert err.message.startswith(f"{tmp_path / 'config.toml'}:{line}: TOML syntax: ")


def test_not_found_says_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "config.toml")
    assert "not found" in e.value.message and "digest init" in e.value.hint


def test_base_url_gets_trailing_slash(tmp_path: Path) -> None:
    text, _ = edit('base_url = "http://127.0.0.1:8000/"', 'base_url = "https://example.org/news"')
    assert load_config(write(tmp_path, text)).site.base_url == "https://example.org/news/"


# --- the CLI: check and init -----------------------------------------------------------

def run_cli(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digest", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_init_writes_default_then_refuses(tmp_path: Path) -> None:
    r = run_cli(tmp_path, "init")
    assert r.returncode == 0, r.stderr
    # The default, with the inbox it creates as [ingest] paths (tests/cli/test_ops.py)
    assert (tmp_path / "config.toml").read_text(encoding="utf-8") == \
        SHIPPED.replace('paths = ["seeds"]', 'paths = ["inbox"]', 1)
    assert (tmp_path / "inbox").is_dir() and (tmp_path / "store" / "stories.json").is_file()
    (tmp_path / "config.toml").write_text(SHIPPED + "# mine\n", encoding="utf-8")
    r = run_cli(tmp_path, "init")
    assert r.returncode == 1
    assert "already exists" in r.stderr and "hint:" in r.stderr
    assert (tmp_path / "config.toml").read_text(encoding="utf-8").endswith("# mine\n")


def test_check_prints_redacted_settings(tmp_path: Path) -> None:
    text = SHIPPED.replace('transport = "maildir"', 'transport = "smtp"').replace(
        'username = ""', 'username = "mailer@example.org"')
    write(tmp_path, text)
    r = run_cli(tmp_path, "check", env={"DIGEST_SMTP_PASSWORD": "s3cret-value", "DIGEST_SECRET": "k3y"})
    assert r.returncode == 0, r.stderr
    assert "s3cret-value" not in r.stdout and "k3y" not in r.stdout
    assert "mailer@example.org" not in r.stdout
    body = r.stdout[: r.stdout.rindex("}") + 1]
    data = json.loads(body)
    assert data["smtp"]["password"] == "<set, redacted>"
    assert data["web"]["secret"] == "<set, redacted>"
    assert data["digests"][0]["cron"] == "0 7 * * *"
    assert r.stdout.rstrip().endswith("config.toml: OK")


def test_check_reports_bad_key_and_exits_1(tmp_path: Path) -> None:
    text, line = edit("port = 8000", "prot = 8000")
    write(tmp_path, text)
    r = run_cli(tmp_path, "check")
    assert r.returncode == 1
    assert f"digest: error: config.toml:{line}: [web].prot: unknown key" in r.stderr
    assert "hint: did you mean 'port'?" in r.stderr
