"""Files of the embedded delivery journal: dated append-only segments, their archive and the
legacy `deliveries.jsonl`; line parsing, torn tails. See digest/store/journal.py for the design."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from digest import codec
from digest.errors import StoreError
from digest.store.base import JOURNAL_STATES

SEGMENT = re.compile(r"log-\d{4}-\d{2}-\d{2}\.jsonl")
LEGACY_NAME = "deliveries.jsonl"  # schema 1: the whole journal in one file at the store root
LEGACY_ARCHIVED = "deliveries-legacy.jsonl"  # where the upgrade moves it, under archive/
READ_CHUNK = 1 << 20


def segment_name(day: str) -> str:
    return f"log-{day}.jsonl"


def live_segments(root: Path) -> list[str]:
    """Names of the live segments in `root` (journal/), oldest first."""
    try:
        return sorted(n for n in os.listdir(root) if SEGMENT.fullmatch(n))
    except FileNotFoundError:
        return []


def parse(line: bytes, where: Path, lineno: int) -> dict:
    try:
        rec = codec.loads(line)
        if not isinstance(rec, dict):
            raise ValueError("not an object")
        return rec
    except ValueError as e:
        raise StoreError(f"{where}:{lineno}: corrupt journal line ({e})",
                         "fix or delete that line by hand; the other lines are intact") from e


def complete_record(line: bytes) -> dict | None:
    """`line` (without a newline) as a record if it is a whole one: a JSON object with the
    keys every record has. A prefix of a JSON object line never parses as an object (its
    closing brace is the line's last byte), so such a line is complete, not torn: it only
    lacks its newline (a hand edit, a copy). None for a torn line."""
    try:
        rec = codec.loads(line)
    except ValueError:
        return None
    if isinstance(rec, dict) and rec.get("state") in JOURNAL_STATES and \
            all(isinstance(rec.get(k), str) for k in ("digest", "edition", "email")):
        return rec
    return None


def read_lines(path: Path, offset: int = 0, lineno: int = 0,
               end: int | None = None) -> Iterator[tuple[dict, int, int]]:
    """Complete records of `path` from byte `offset` (a torn final line is left unread), in
    chunks so a big file is never held whole. Yields (record, offset after it, line number).

    A final line without its newline that is a whole record (`complete_record`) is read: its
    offset is the end of the file (before the missing newline, which the next append writes
    first) and its line number one less, so a read resumed there counts that newline as the
    end of this same line."""
    with open(path, "rb") as f:
        f.seek(offset)
        rest = b""
        pos = offset
        while True:
            want = READ_CHUNK if end is None else min(READ_CHUNK, end - pos - len(rest))
            chunk = f.read(want) if want > 0 else b""
            if not chunk:
                if rest.strip() and end is None:
                    rec = complete_record(rest)
                    if rec is not None:
                        yield rec, pos + len(rest), lineno
                return
            data = rest + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            start = 0
            while start <= cut:
                nl = data.index(b"\n", start)
                lineno += 1
                line = data[start:nl]
                start = nl + 1
                if line.strip():
                    yield parse(line, path, lineno), pos + start, lineno
            pos += start
            rest = data[cut + 1:]


def drop_torn_tail(fd: int, size: int) -> int:
    """Cut a torn final line (a writer killed mid-append) so the next record starts clean;
    a final line that is a whole record missing only its newline (`complete_record`) gets
    the newline instead. Returns the new size."""
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        chunk = os.pread(fd, pos - start, start)
        nl = chunk.rfind(b"\n")
        if nl >= 0:
            good = start + nl + 1
            break
        pos = start
    else:
        good = 0
    if complete_record(os.pread(fd, size - good, good)) is not None:
        if os.pwrite(fd, b"\n", size) != 1:  # at the end, with or without O_APPEND
            raise OSError("short write")
        return size + 1
    os.ftruncate(fd, good)
    return good
