"""Issue 16, the command line for operators: --version, --config anywhere, help for every
option, `init` that leaves a working project, no silent store, and time that explains itself."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.cli import build_parser, main
from digest.models import Subscriber
from tests.support.send import AS_OF, add_subscribers

REPO = Path(__file__).resolve().parents[2]
ENV = {k: v for k, v in os.environ.items() if k != "DIGEST_LOG_LEVEL"} | {"PYTHONPATH": str(REPO)}


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digest", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=120)


# --- the parser ------------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("digest ")


def _parsers(p: argparse.ArgumentParser, path: str = "digest"):
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_option_has_help_and_every_command_a_description() -> None:
    top = build_parser()
    assert top.description and "digest" in top.description and '"""' not in top.description
    for path, p in _parsers(top):
        assert p.description, f"{path}: no description"
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction) or a.help == argparse.SUPPRESS:
                continue  # hidden test hooks (--now) stay hidden
            assert a.help, f"{path} {a.option_strings or a.dest}: no help text"
            if a.option_strings and a.nargs != 0 and a.default is not None \
                    and a.default != argparse.SUPPRESS and not a.required:
                assert "default" in a.help, f"{path} {a.option_strings}: help names no default"


@pytest.mark.parametrize("argv", [
    ["--config", "{cfg}", "check"],
    ["check", "--config", "{cfg}"],
    ["subscribers", "list", "--config", "{cfg}"],
    ["subscribers", "--config", "{cfg}", "list"],
])
def test_config_before_or_after_the_command(config, argv: list[str],
                                            capsys: pytest.CaptureFixture) -> None:
    argv = [a.format(cfg=config.path) for a in argv]
    assert main(argv) == 0, capsys.readouterr().err


# --- init ------------------------------------------------------------------------------------


@pytest.mark.parametrize("samples", [False, True])
def test_init_then_run_once_in_an_empty_directory_has_no_warning(tmp_path: Path,
                                                                samples: bool) -> None:
    r = run(tmp_path, "init", *(["--samples"] if samples else []))
    assert r.returncode == 0, r.stderr
    assert "next steps" in r.stdout and "digest run --once" in r.stdout
    assert (tmp_path / "inbox").is_dir()
    assert len(list((tmp_path / "inbox").iterdir())) == (3 if samples else 0)
    r = run(tmp_path, "run", "--once")
    assert r.returncode == 0, r.stderr
    output = r.stdout + r.stderr
    assert "WARNING" not in output and "ERROR" not in output and "warning" not in output, output
    assert f"{3 if samples else 0} added" in output
    assert (tmp_path / "public" / "index.html").is_file()


def test_not_found_says_where_it_looked_and_does_not_send_init_to_the_root() -> None:
    r = run(Path("/"), "check")
    assert r.returncode == 1
    assert "looked for /config.toml" in r.stderr
    assert "--config PATH" in r.stderr
    assert "new project in /\n" not in r.stderr and 'run "digest init" ' not in r.stderr


def test_not_found_in_a_project_dir_suggests_init_there_and_config(tmp_path: Path) -> None:
    r = run(tmp_path, "check")
    assert r.returncode == 1
    assert "--config PATH" in r.stderr and "digest init" in r.stderr and str(tmp_path) in r.stderr


# --- no silent store -------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["rank"], ["publish"], ["status"], ["status", "--json"], ["schedule"], ["serve"],
    ["subscribers", "list"], ["subscribers", "add", "a@example.org"], ["send"],
    ["send", "--dry-run"], ["preview"],
])
def test_commands_on_a_missing_store_exit_1_naming_it(empty_config, argv: list[str],
                                                      capsys: pytest.CaptureFixture) -> None:
    assert main(["--config", str(empty_config.path), *argv]) == 1
    err = capsys.readouterr().err
    assert f"no store at {empty_config.store.path}" in err and "digest ingest" in err
    assert not empty_config.store.path.exists()


def test_check_says_whether_the_store_exists(empty_config, capsys) -> None:
    assert main(["--config", str(empty_config.path), "check"]) == 0
    assert "does not exist yet" in capsys.readouterr().out
    assert not empty_config.store.path.exists()
    assert main(["--config", str(empty_config.path), "ingest", "--as-of", AS_OF.isoformat()]) == 0
    capsys.readouterr()
    assert main(["--config", str(empty_config.path), "check"]) == 0
    assert "holds 3 stories and 0 active subscribers" in capsys.readouterr().out


# --- time ------------------------------------------------------------------------------------


def test_explicit_as_of_resolves_derived_times_again(empty_config, capsys) -> None:
    cfg = str(empty_config.path)
    assert main(["--config", cfg, "ingest", "--as-of", "2026-11-20T00:00:00Z"]) == 0
    capsys.readouterr()
    assert main(["--config", cfg, "ingest", "--as-of", "2026-11-21T00:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert "3 updated" in out, out
    assert main(["--config", cfg, "rank", "--json"]) == 0
    published = {s["published"][:10] for s in json.loads(capsys.readouterr().out)}
    assert "2026-11-21" in published  # derived from the new --as-of (exact times stay)


def test_send_and_preview_with_nothing_to_send_say_why(config, capsys) -> None:
    add_subscribers(config, Subscriber(email="a@example.org", status="active"))
    late = "2026-12-30T08:00:00Z"  # weeks after the seeds' AS_OF
    assert main(["--config", str(config.path), "send", "--now", late]) == 0
    out = capsys.readouterr().out
    assert "3 stories are older than max_age_hours = 72" in out, out
    assert main(["--config", str(config.path), "preview", "--email", "a@example.org",
                 "--now", late]) == 1
    assert "3 stories are older than max_age_hours = 72" in capsys.readouterr().err


def test_manual_send_names_the_edition_then_preview_and_schedule_show_it(config, tmp_path,
                                                                          capsys) -> None:
    add_subscribers(config, Subscriber(email="a@example.org", status="active"))
    cfg = str(config.path)
    early = "2026-11-22T06:30:00Z"  # before the 07:00 UTC edition
    assert main(["--config", cfg, "schedule", "--now", early]) == 0
    assert "edition 2026-11-22 in UTC (at 2026-11-22T07:00:00Z): later today" in \
        capsys.readouterr().out
    assert main(["--config", cfg, "send", "--now", early]) == 0
    out = capsys.readouterr().out
    assert "sending edition 2026-11-22 (UTC) now, before its scheduled time" in out
    assert "the scheduled run will skip" in out and "sent 1" in out
    assert main(["--config", cfg, "schedule", "--now", early]) == 0
    assert ": done — sent 1" in capsys.readouterr().out
    page = tmp_path / "sent.html"
    assert main(["--config", cfg, "preview", "--edition", "2026-11-22", "--email",
                 "a@example.org", "--out", str(page), "--now", "2026-12-30T08:00:00Z"]) == 0
    assert page.is_file() and "Claude" in page.read_text(encoding="utf-8")
    assert main(["--config", cfg, "preview", "--edition", "2026-11-21", "--email",
                 "a@example.org"]) == 1
    assert "no edition 2026-11-21" in capsys.readouterr().err


def test_subscribers_add_warns_about_a_tag_no_story_has(config, capsys) -> None:
    assert main(["--config", str(config.path), "subscribers", "add", "a@example.org",
                 "--tags", "no-such-tag,安全"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "'no-such-tag'" in err and "安全" not in err


def test_status_json_and_text(config, capsys) -> None:
    add_subscribers(config, Subscriber(email="a@example.org", status="active"),
                    Subscriber(email="p@example.org", status="pending"))
    cfg = str(config.path)
    assert main(["--config", cfg, "publish"]) == 0
    assert main(["--config", cfg, "send", "--now", "2026-11-22T08:00:00Z"]) == 0
    capsys.readouterr()
    assert main(["--config", cfg, "status", "--json", "--now", "2026-11-22T09:00:00Z"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["stories"]["count"] == 3 and data["stories"]["newest"]["id"]
    assert data["subscribers"] == {"active": 1, "pending": 1}
    assert data["last_ingest"]["added"] == 3 and data["last_publish"]["written"] > 0
    assert data["last_send"]["daily"]["sent"] == 1
    (edition,) = data["digests"]
    assert edition["edition"] == "2026-11-22" and edition["counts"]["sent"] == 1
    assert set(data["next_runs"]) >= {"ingest", "publish"}
    assert data["quarantined"] == [] and data["store"]["exists"] is True
    assert main(["--config", cfg, "status"]) == 0
    text = capsys.readouterr().out
    assert "stories: 3" in text and "last publish:" in text and "quarantined files: none" in text
    assert datetime.now(UTC).year >= 2026
