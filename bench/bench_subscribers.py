"""Subscriber store benchmark: `digest subscribers add` (a whole CLI process) at 1,000 and
100,000 subscribers, and the web's subscribe for a stored vs an unknown address.

usage: python bench/bench_subscribers.py [--small 1000] [--large 100000] [--repeat 5]
                                         [--web 5000] [--calls 200]

Stores are built in bulk through the store API (one upsert). The CLI is timed as a subprocess
(interpreter start included), the median of --repeat runs, each adding a new address; the
target is large/small <= 2. The web figure is the median over --calls calls of
`Subscriptions.subscribe` (what POST /subscribe runs), alternating stored and unknown
addresses on one warm handle.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from digest.config import Config  # noqa: E402
from digest.config.settings import StoreConfig  # noqa: E402
from digest.models import Subscriber  # noqa: E402
from digest.pipeline.subscribing import Subscriptions  # noqa: E402
from digest.store import Store  # noqa: E402


def build(root: Path, n: int, status: str = "active") -> Path:
    now = datetime.now(UTC)
    Store(root / "store").upsert_subscribers(
        Subscriber(email=f"user{i}@example.com", status=status, created=now) for i in range(n))
    cfg = root / "config.toml"
    cfg.write_text(f'[store]\npath = "{root / "store"}"\n', encoding="utf-8")
    return cfg


def cli_add(cfg: Path, repeat: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = []
    for i in range(repeat):
        cmd = [sys.executable, "-m", "digest", "--config", str(cfg), "subscribers", "add",
               f"new{i}@example.com"]
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cfg.parent)
        out.append(time.perf_counter() - t)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return out


def web_subscribe(root: Path, n: int, calls: int) -> tuple[list[float], list[float]]:
    build(root, n)
    subs = Subscriptions(Config(store=StoreConfig(path=root / "store")))
    subs.subscribe(Subscriber(email="warmup@example.com"))
    known, unknown = [], []
    for i in range(calls):
        for email, into in ((f"user{(i * 37) % n}@example.com", known),
                            (f"stranger{i}@example.com", unknown)):
            sub = Subscriber(email=email, created=datetime.now(UTC))
            t = time.perf_counter()
            subs.subscribe(sub)
            into.append((time.perf_counter() - t) * 1000)
    return known, unknown


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=1_000)
    ap.add_argument("--large", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--web", type=int, default=5_000)
    ap.add_argument("--calls", type=int, default=200)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-subs-") as tmp:
        med = {}
        for n in (a.small, a.large):
            root = Path(tmp) / f"n{n}"
            t = time.perf_counter()
            cfg = build(root, n)
            built = time.perf_counter() - t
            runs = cli_add(cfg, a.repeat)
            med[n] = statistics.median(runs)
            print(f"subscribers add at {n:>7,} subscribers: median {med[n] * 1000:7.0f} ms  "
                  f"min {min(runs) * 1000:7.0f}  max {max(runs) * 1000:7.0f}  (n={a.repeat}; "
                  f"store built in {built:.1f} s)")
        ratio = med[a.large] / med[a.small]
        print(f"ratio {a.large:,} / {a.small:,}: {ratio:.2f}x  (target <= 2x: "
              f"{'ok' if ratio <= 2 else 'MISSED'})")
        known, unknown = web_subscribe(Path(tmp) / "web", a.web, a.calls)
        print(f"web subscribe at {a.web:,}: known active median {statistics.median(known):.2f} ms, "
              f"unknown median {statistics.median(unknown):.2f} ms  (n={a.calls} each)")


if __name__ == "__main__":
    main()
