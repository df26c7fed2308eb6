"""Hostile story files through the real ingest command: huge files, very long lines, NUL
bytes, other encodings, a BOM, CRLF, RTL and zero-width characters, deep or huge JSON. Each
file is stored or rejected as `FILE:LINE: reason` with a hint — never a traceback, never a
"digest bug" — and each is bounded in time (pytest-timeout: a hang fails, speed is not
asserted)."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.config import load_config
from digest.errors import ParseError
from digest.ingest import parse_stories
from digest.pipeline.ingesting import ingest_paths
from digest.store import Store

REPO = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 22, 12, tzinfo=UTC)
SEED = (REPO / "seeds" / "001_3521ac04ccd50003.txt").read_text(encoding="utf-8")
CARD_HEAD = "AI News 1h ago\n\nA title 一个标题\n\n"
STRUCT = {"id": "h1", "languages": ["en"], "title": {"en": "t"}, "tldr": {"en": ["x"]},
          "published": "2026-11-22T10:00:00Z"}


def _json(**changes: object) -> bytes:
    return json.dumps({**STRUCT, **changes}, ensure_ascii=False).encode()


HOSTILE: dict[str, bytes] = {
    "tldr-10mb.txt": (SEED.replace("  • White House", "  • " + "word " * 2_100_000
                                   + "White House", 1)).encode(),  # over the 5 MB bound
    "tldr-4mb.txt": (SEED.replace("  • White House", "  • " + "word " * 900_000
                                  + "White House", 1)).encode(),
    "one-long-line.txt": b"A" * 4_900_000,
    "long-cjk-word.txt": (CARD_HEAD + "TL;DR\n\n  \u2022 " + "长" * 1_500_000 + "\n").encode(),
    "many-bullets.txt": (CARD_HEAD + "TL;DR\n\n" + "  \u2022 x\n" * 500_000).encode(),
    "many-headings.txt": (CARD_HEAD + "TL;DR\n\n" * 300_000).encode(),
    "nul-bytes.txt": SEED.encode().replace(b"\n\n", b"\n\x00\n", 3),
    "bom-crlf.txt": ("\ufeff" + SEED.replace("\n", "\r\n")).encode(),
    "cr-only.txt": SEED.replace("\n", "\r").encode(),
    "utf16.txt": SEED.encode("utf-16"),
    "gb18030.txt": SEED.encode("gb18030"),
    "latin1.txt": SEED.encode("latin-1", errors="replace"),
    "mixed-encodings.txt": SEED.encode()[:400] + "Grüße".encode("latin-1") + SEED.encode()[400:],
    "rtl-zero-width.txt": SEED.replace("China may", "\u202e\u200b\u200d\ufeffChina\u2066 may",
                                       1).encode(),
    "line-separators.txt": SEED.replace("\n", "\u2028").encode(),
    "deep.json": b"[" * 200_000 + b"]" * 200_000,
    "deep-object.json": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "huge-int.json": _json(scores={"hot": int("9" * 4000), "quality": 1, "impact": 1}
                           ).replace(b"9" * 4000, b"9" * 100_000),
    "huge-float.json": _json().replace(b'"tldr"', b'"scores": {"hot": 1e999, "quality": 1, '
                                                  b'"impact": 1}, "tldr"'),
    "nan.json": _json().replace(b'"tldr"', b'"scores": {"hot": NaN}, "tldr"'),
    "json-bad-times.json": _json(published="9999-99-99T99:99:99Z"),
    "json-huge-array.json": json.dumps([STRUCT] * 20_000).encode(),
    "json-script-id.json": _json(id="<script>alert(1)</script>/../../x"),
}
# Files whose crash is a known product bug (kept as strict xfails, reported to the lead).
KNOWN_BUGS: dict[str, str] = {}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, str]:
    """Ingest every hostile file once, in one run; returns name → outcome line."""
    tmp = tmp_path_factory.mktemp("hostile-ingest")
    shutil.copy(REPO / "config.toml", tmp / "config.toml")
    inbox = tmp / "seeds"
    inbox.mkdir()
    for name, blob in HOSTILE.items():
        (inbox / name).write_bytes(blob)
    config = load_config(tmp / "config.toml")
    lines: list[str] = []
    report = ingest_paths(config, as_of=AS_OF, echo=lines.append)
    out = {}
    for name in HOSTILE:
        path = str(inbox / name)
        rejected = [r for r in report.rejected if r.startswith(path + ":")]
        out[name] = rejected[0] if rejected else "stored"
    out["__store_count__"] = str(Store(config.store.path).story_count())
    out["__stored__"] = ",".join(sorted(report.added + report.updated))
    return out


def _cases(names: list[str]) -> list:
    return [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[n]))
            if n in KNOWN_BUGS else n for n in names]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", _cases(list(HOSTILE)))
def test_hostile_file_is_stored_or_rejected_with_file_and_line(results, name: str) -> None:
    outcome = results[name]
    if outcome == "stored":
        return
    assert re.search(rf"/{re.escape(name)}:\d+: \S", outcome), outcome
    assert "digest bug" not in outcome and "could not parse (" not in outcome, outcome
    assert "Traceback" not in outcome


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", _cases([n for n in HOSTILE if n.endswith(".json")]))
def test_parser_raises_only_parse_error(name: str) -> None:
    try:
        parse_stories(HOSTILE[name].decode("utf-8"), name, AS_OF)
    except ParseError as e:
        assert e.source == name and e.line >= 1 and e.hint


def test_expected_outcomes(results) -> None:
    """The ones with one right answer: bounded size rejected unread, encodings named,
    a BOM/CRLF copy of a seed stored exactly like the seed."""
    assert ":1: file is" in results["tldr-10mb.txt"]
    assert "NUL" in results["utf16.txt"] or "UTF-8" in results["utf16.txt"]
    assert "UTF-8" in results["gb18030.txt"]
    assert results["bom-crlf.txt"] == "stored" or "duplicate" in results["bom-crlf.txt"]


def test_symlink_in_inbox_is_not_followed(empty_config, tmp_path: Path) -> None:
    """A symlink dropped into an inbox must not publish the file it points at."""
    secret = tmp_path / "private.txt"
    secret.write_text("root:x:0:0:secret\n", encoding="utf-8")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "006_5555666677778888.txt").symlink_to(secret)
    report = ingest_paths(empty_config, [inbox], as_of=AS_OF, echo=lambda _line: None)
    assert report.added == []
    assert any("symlink" in r for r in report.rejected)
    assert Store(empty_config.store.path).get_story("5555666677778888") is None
