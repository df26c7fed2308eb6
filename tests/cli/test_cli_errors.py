"""CLI commands fail as the operator expects: a one-line error with a hint and exit 1 (or a
usage error, exit 2), never a traceback; `rank` says when nothing matches."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.cli import main
from tests.support.send import NOW

REPO = Path(__file__).resolve().parents[2]
SHIPPED = (REPO / "config.toml").read_text(encoding="utf-8")


def _edit(old: str, new: str, text: str = SHIPPED) -> tuple[str, int]:
    """Replace one line of the shipped config; return the text and that line's number."""
    assert text.count(old) == 1, old
    line = text[: text.index(old)].count("\n") + 1
    return text.replace(old, new), line


def test_digest_check_with_a_bad_subject_prints_no_traceback(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    text, line = _edit('subject = "AI News Daily · AI资讯日报 — {date}"',
                       'subject = "News {date.year}"')
    (tmp_path / "config.toml").write_text(text, encoding="utf-8")
    assert main(["--config", str(tmp_path / "config.toml"), "check"]) == 1
    err = capsys.readouterr().err
    assert f"config.toml:{line}: [digests.1].subject: bad placeholder {{date.year}}" in err
    assert "Traceback" not in err


def test_init_into_a_missing_directory_is_a_digest_error(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "nodir" / "config.toml"
    assert main(["--config", str(target), "init"]) == 1
    err = capsys.readouterr().err
    assert "cannot write" in err and "mkdir -p" in err and "Traceback" not in err
    assert not target.exists()


@pytest.mark.usefixtures("secret", "config")
def test_preview_out_to_an_unwritable_place_is_a_digest_error(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code = main(["--config", str(tmp_path / "config.toml"), "preview", "--lang", "en",
                 "--out", str(blocker / "sub" / "p.html"), "--now", NOW.isoformat()])
    err = capsys.readouterr().err
    assert code == 1 and "cannot write" in err and "hint:" in err


def test_rank_unknown_language_is_a_usage_error(tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--config", str(tmp_path / "config.toml"), "rank", "--lang", "fr"])
    assert e.value.code == 2
    assert "invalid choice: 'fr'" in capsys.readouterr().err


@pytest.mark.usefixtures("config")
def test_rank_filter_matching_nothing_says_so(tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    cfg = str(tmp_path / "config.toml")
    assert main(["--config", cfg, "rank", "--tag", "no-such-tag"]) == 0
    assert capsys.readouterr().out.strip() == "no stories match"
    assert main(["--config", cfg, "rank", "--lang", "all"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


def test_rank_on_an_empty_store_still_says_ingest_first(tmp_path: Path, empty_config,
                                                        capsys: pytest.CaptureFixture) -> None:
    from digest.store import Store

    Store(empty_config.store.path)  # an empty store (a missing one is an error: tests/cli/test_ops.py)
    assert main(["--config", str(tmp_path / "config.toml"), "rank", "--lang", "en"]) == 0
    assert "run `digest ingest` first" in capsys.readouterr().out
