"""Journal benchmark: `digest send --dry-run` against a 722,000-line schema-2 deliveries.jsonl.

Builds one store (the seed stories, N subscribers in UTC, all active), then times a real
`python -m digest send --dry-run --now ...` subprocess (wall time; peak RSS from wait4) on
 (a) an empty journal, (b) the first run on a store holding the legacy deliveries.jsonl
(performs the one-time upgrade), (c) runs after the upgrade. The legacy file: per subscriber
`sent` records of 10 story ids (~380 bytes a line) for `--editions` past editions of 2
digests, plus today's `sending` + `sent` for the first half of the subscribers. The
expected report counts are computed from that data alone: already sent = the first half;
would send = the other half (their history names no story of the store, so each has news).

usage: python bench/bench_journal.py [--subscribers 2000] [--editions 180] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest import codec  # noqa: E402
from digest.models import Subscriber, iso  # noqa: E402
from digest.store import Store  # noqa: E402
from tests.support.send import NOW, make_project  # noqa: E402

OUT = ROOT / "bench" / "out" / "journal"
NOW_ARG = iso(NOW)


def run_dry(workdir: Path) -> tuple[float, float, str]:
    """(wall s, peak RSS MB, report line) of one dry-run in its own process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DIGEST_SECRET": "bench-journal-secret"}
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "digest", "--config",
                             str(workdir / "config.toml"), "send", "--dry-run", "--now",
                             NOW_ARG], cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = (out + err).decode()
    if proc.returncode not in (0,):
        raise SystemExit(f"dry-run failed ({proc.returncode}):\n{text[-3000:]}")
    line = next((ln for ln in text.splitlines() if "would send" in ln), "")
    return wall, ru.ru_maxrss / 1024, line


def counts(line: str) -> tuple[int, int]:
    m = re.search(r"would send (\d+), already sent (\d+)", line)
    if not m:
        raise SystemExit(f"no report line in {line!r}")
    return int(m.group(1)), int(m.group(2))


def write_legacy(path: Path, subs: int, editions: int) -> int:
    today = NOW.date()
    lines = 0
    with open(path, "wb") as f:
        for back in range(editions, 0, -1):
            day = today - timedelta(days=back)
            at = NOW - timedelta(days=back)
            for digest in ("daily", "weekly"):
                buf = []
                for i in range(subs):
                    ids = [f"h{day:%Y%m%d}{digest[0]}{k:02d}-{i % 50:03d}x" for k in range(10)]
                    buf.append(codec.dumps({
                        "digest": digest, "edition": day.isoformat(),
                        "email": f"reader{i:05d}@example.com", "state": "sent",
                        "message_id": f"<{day:%Y%m%d}.{digest}.{i:05d}.a1b2c3d4@digest.example>",
                        "stories": ids, "at": iso(at + timedelta(seconds=i // 20)),
                        "reason": "", "attempt": 1}) + b"\n")
                f.write(b"".join(buf))
                lines += len(buf)
        for i in range(subs // 2):  # today's edition: the first half is done
            for state in ("sending", "sent"):
                f.write(codec.dumps({
                    "digest": "daily", "edition": today.isoformat(),
                    "email": f"reader{i:05d}@example.com", "state": state,
                    "message_id": f"<{today:%Y%m%d}.daily.{i:05d}@digest.example>",
                    "stories": [f"t{k}" for k in range(10)], "at": iso(NOW - timedelta(hours=1)),
                    "reason": "", "attempt": 1}) + b"\n")
                lines += 1
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscribers", type=int, default=2000)
    ap.add_argument("--editions", type=int, default=180)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    base = OUT / "base"
    base.mkdir(parents=True)
    config = make_project(base)
    store = Store(config.store.path)
    store.upsert_subscribers(Subscriber(email=f"reader{i:05d}@example.com", languages=["en"],
                                        timezone="UTC", status="active")
                             for i in range(a.subscribers))
    store.close() if hasattr(store, "close") else None
    store_rel = config.store.path.relative_to(base)

    empty = OUT / "empty"
    shutil.copytree(base, empty)
    t = time.perf_counter()
    legacy = OUT / "legacy"
    shutil.copytree(base, legacy)
    Store(legacy / store_rel).meta_set("schema_version", 2)  # as schema 2 left it
    n = write_legacy(legacy / store_rel / "deliveries.jsonl", a.subscribers, a.editions)
    size = (legacy / store_rel / "deliveries.jsonl").stat().st_size
    print(f"legacy deliveries.jsonl: {n:,} lines, {size / 1e6:.0f} MB "
          f"({size / n:.0f} B/line), written in {time.perf_counter() - t:.1f} s")
    expected = (a.subscribers - a.subscribers // 2, a.subscribers // 2)

    empty_runs = [run_dry(empty) for _ in range(a.runs)]
    first = run_dry(legacy)
    after = [run_dry(legacy) for _ in range(a.runs)]

    def show(name: str, runs: list[tuple[float, float, str]]) -> None:
        w = [r[0] for r in runs]
        m = [r[1] for r in runs]
        print(f"{name:<38} wall median {statistics.median(w):6.2f} s (min {min(w):.2f}, max "
              f"{max(w):.2f})   peak RSS max {max(m):6.0f} MB   {runs[-1][2].strip()}")

    show("(a) empty journal", empty_runs)
    show("(b) first run: upgrades the journal", [first])
    show("(c) after the upgrade", after)
    ratio = statistics.median(r[0] for r in after) / statistics.median(r[0] for r in empty_runs)
    peak = max(r[1] for r in after)
    got = {counts(r[2]) for r in [first, *after]}
    print(f"(c)/(a) wall ratio: {ratio:.2f} (target <= 2)   (c) peak RSS: {peak:.0f} MB "
          f"(target <= 250)")
    print(f"report counts (would send, already sent): expected {expected}, got "
          f"{sorted(got)} -> {'ok' if got == {expected} else 'MISMATCH'}")
    state = legacy / store_rel / "journal" / "state.json"
    print(f"checkpoint journal/state.json: {state.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
