"""`ingest_paths` prints nothing: every line is in its report, for the CLI to print and the
daemon to log; progress goes to a callback."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from digest.config import load_config
from digest.pipeline import IngestEvent, ingest_paths

REPO = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def test_the_report_holds_every_line_and_nothing_is_printed(tmp_path: Path, capfd) -> None:
    shutil.copytree(REPO / "seeds", tmp_path / "seeds")
    (tmp_path / "seeds" / "empty.txt").write_bytes(b"")
    (tmp_path / "config.toml").write_text('[store]\npath = "store"\n\n[ingest]\npaths = ["seeds"]\n',
                                          encoding="utf-8")
    config = load_config(tmp_path / "config.toml")
    seen: list[tuple[int, int]] = []
    echoed: list[str] = []
    report = ingest_paths(config, as_of=AS_OF, progress=lambda n, total: seen.append((n, total)),
                          echo=echoed.append)
    assert capfd.readouterr() == ("", "")
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    empty = str(tmp_path / "seeds" / "empty.txt")
    assert report.rejections == [IngestEvent("rejected", f"{empty}:1: file is empty",
                                             "write the story text, or delete the file")]
    assert report.rejected == [f"{empty}:1: file is empty"]
    assert [e.kind for e in report.events] == ["rejected", "added", "added", "added"]
    assert report.lines() == echoed  # the same lines a live listener got, summary last
    assert echoed[-1] == "3 stories from 4 files: 3 added, 0 updated, 0 unchanged, 1 rejected"

    again = ingest_paths(config, as_of=AS_OF)  # quarantined now: skipped, not rejected
    assert [e.kind for e in again.events] == ["skipped", "unchanged", "unchanged", "unchanged"]
    assert again.lines()[0] == f"{empty}: skipped (quarantined: line 1: file is empty; edit the file to retry)"
    assert capfd.readouterr() == ("", "")
