"""`digest subscribers add|list|remove|import` through the CLI, with validation and CSV."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.support.send import make_project

from digest.cli import main
from digest.pipeline.sending import import_csv
from digest.store import Store


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    make_project(tmp_path, ingest=False)
    return tmp_path / "config.toml"


def run(cfg: Path, *args: str) -> int:
    return main(["--config", str(cfg), "subscribers", *args])


def listed(cfg: Path, capsys) -> list[dict]:
    capsys.readouterr()
    assert run(cfg, "list", "--json") == 0
    return json.loads(capsys.readouterr().out)


def test_add_list_remove(cfg: Path, capsys) -> None:
    assert run(cfg, "add", "Reader@Example.com", "--lang", "zh", "--tags", "政策,Agent",
               "--tz", "Asia/Shanghai") == 0
    assert run(cfg, "add", "en@example.com", "--lang", "en") == 0
    assert run(cfg, "add", "both@example.com") == 0
    subs = {s["email"]: s for s in listed(cfg, capsys)}
    assert subs["reader@example.com"] == {**subs["reader@example.com"], "languages": ["zh"],
                                          "tags": ["政策", "Agent"], "timezone": "Asia/Shanghai",
                                          "status": "active"}
    assert subs["both@example.com"]["languages"] == ["en", "zh"]
    assert subs["both@example.com"]["tags"] == [] and subs["both@example.com"]["timezone"] == "UTC"
    assert all("secret" not in s for s in subs.values())
    assert run(cfg, "list") == 0
    assert "3 subscriber(s)" in capsys.readouterr().out
    assert run(cfg, "remove", "REader@example.com") == 0
    assert [s["email"] for s in listed(cfg, capsys)] == ["en@example.com", "both@example.com"]


@pytest.mark.parametrize("args,needle", [
    (["add", "not-an-email"], "not a valid email"),
    (["add", "a@example.com", "--lang", "fr"], "unknown language"),
    (["add", "a@example.com", "--tz", "Mars/Olympus"], "unknown time zone"),
    (["add", "a@example.com\r\nBcc: x@y.com"], "line breaks"),
    (["remove", "nobody@example.com"], "no subscriber"),
])
def test_bad_input_is_a_user_error_with_a_hint(cfg: Path, capsys, args, needle) -> None:
    assert run(cfg, *args) == 1
    err = capsys.readouterr().err
    assert needle in err and "hint:" in err


def test_duplicate_add_is_refused(cfg: Path, capsys) -> None:
    assert run(cfg, "add", "a@example.com") == 0
    assert run(cfg, "add", "A@example.com") == 1
    assert "already exists" in capsys.readouterr().err


def test_import_reports_bad_rows_with_line_numbers_and_keeps_good_ones(
        cfg: Path, tmp_path: Path, capsys) -> None:
    csv_file = tmp_path / "subs.csv"
    csv_file.write_text(
        "email,languages,tags,timezone\n"
        'a@example.com,"en,zh","政策,Agent",Asia/Shanghai\n'
        "not-an-email,en,,UTC\n"
        "b@example.com,zh,,\n"
        "c@example.com,fr,,UTC\n"
        '"multi\nline@example.com",en,,UTC\n'
        "d@example.com,en,,Nowhere/Town\n"
        "\n"
        "e@example.com,,,\n", encoding="utf-8")
    assert run(cfg, "import", str(csv_file)) == 1  # partial: bad rows reported
    out = capsys.readouterr().out
    assert f"{csv_file}:3: email: 'not-an-email' is not a valid email address" in out
    assert f"{csv_file}:5: languages: unknown language 'fr'" in out
    assert f"{csv_file}:7:" in out  # the quoted two-line field ends on line 7
    assert f"{csv_file}:8: timezone: unknown time zone 'Nowhere/Town'" in out
    assert "3 added, 0 updated" in out and "4 bad row(s)" in out
    subs = {s["email"]: s for s in listed(cfg, capsys)}
    assert set(subs) == {"a@example.com", "b@example.com", "e@example.com"}
    assert subs["a@example.com"]["languages"] == ["en", "zh"]
    assert subs["a@example.com"]["tags"] == ["政策", "Agent"]
    assert subs["b@example.com"]["timezone"] == "UTC"
    assert subs["e@example.com"]["languages"] == ["en", "zh"]
    assert all(s["status"] == "active" for s in subs.values())


def test_import_never_resubscribes_the_unsubscribed(cfg: Path, tmp_path: Path, capsys) -> None:
    assert run(cfg, "add", "gone@example.com") == 0
    from digest.config import load_config

    store = Store(load_config(cfg).store.path)
    secret = store.get_subscriber("gone@example.com").secret
    store.update_subscriber("gone@example.com", status="unsubscribed")
    f = tmp_path / "s.csv"
    f.write_text("email,languages,tags,timezone\ngone@example.com,en,,UTC\n", encoding="utf-8")
    assert run(cfg, "import", str(f)) == 0
    got = Store(load_config(cfg).store.path).get_subscriber("gone@example.com")
    assert got.status == "unsubscribed" and got.languages == ["en"] and got.secret == secret


def test_import_needs_a_header(cfg: Path, tmp_path: Path, capsys) -> None:
    f = tmp_path / "s.csv"
    f.write_text("a@example.com,en,,UTC\n", encoding="utf-8")
    assert run(cfg, "import", str(f)) == 1
    assert ":1: the header" in capsys.readouterr().err


def _big_csv(path: Path, n: int) -> None:
    rows = ["email,languages,tags,timezone"]
    zones = ["UTC", "Asia/Shanghai", "Europe/Berlin", "America/New_York"]
    for i in range(n):
        rows.append(f'user{i}@example.com,"en,zh","政策",{zones[i % 4]}')
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_import_many_rows_in_one_transaction(tmp_path: Path) -> None:
    config = make_project(tmp_path, ingest=False)
    _big_csv(tmp_path / "big.csv", 5000)
    store = Store(config.store.path)
    added, updated, kept, bad = import_csv(store, tmp_path / "big.csv", datetime.now(UTC))
    assert (added, updated, kept, bad) == (5000, 0, 0, [])
    assert len(Store(config.store.path).list_subscribers(status="active")) == 5000


@pytest.mark.slow
def test_import_100k_rows(tmp_path: Path) -> None:
    config = make_project(tmp_path, ingest=False)
    _big_csv(tmp_path / "big.csv", 100_000)
    added, *_ = import_csv(Store(config.store.path), tmp_path / "big.csv", datetime.now(UTC))
    assert added == 100_000
