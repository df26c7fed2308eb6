"""Store benchmark: median/min/max of a one-story write into a 10k store, a 10k batch insert,
open+list of a 10k store, a 100k-subscriber upsert and a journal append at two journal sizes.

usage: python bench/bench_store.py [--stories 10000] [--shards N] [--repeat 20]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digest.models import Subscriber  # noqa: E402
from digest.store import DEFAULT_SHARDS, Store  # noqa: E402
from tests.support.store import make_story  # noqa: E402


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def report(name: str, ms: list[float]) -> None:
    print(f"{name:<44} median {statistics.median(ms):9.1f} ms   min {min(ms):9.1f}   "
          f"max {max(ms):9.1f}   (n={len(ms)})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stories", type=int, default=10_000)
    ap.add_argument("--shards", type=int, default=DEFAULT_SHARDS)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--batches", type=int, default=3)
    a = ap.parse_args()
    n = a.stories
    tmp = Path(tempfile.mkdtemp(prefix="bench_store_"))
    try:
        stories = [make_story(i) for i in range(n)]
        batch = []
        for b in range(a.batches):
            root = tmp / f"batch{b}"
            store = Store(root, shards=a.shards)
            batch.append(timed(lambda s=store: s.upsert_stories(stories)))
        report(f"batch insert of {n} stories", batch)
        store = Store(tmp / "batch0")
        one = [timed(lambda k=k: store.upsert_stories([make_story(n + k)]))
               for k in range(a.repeat)]
        report(f"one story into a {n}-story store", one)
        upd = [timed(lambda k=k: store.upsert_stories([make_story(k * 7, rev=1)]))
               for k in range(a.repeat)]
        report(f"one story updated in a {n}-story store", upd)
        same = [timed(lambda: store.upsert_stories(stories)) for _ in range(3)]
        report(f"re-upsert of {n} unchanged stories", same)
        opened = [timed(lambda: Store(tmp / "batch0").list_stories()) for _ in range(5)]
        report(f"open + list_stories of {n + a.repeat}", opened)

        subs = [Subscriber(email=f"user{i}@example.com", status="active")
                for i in range(100_000)]
        sub_ms = []
        for r in range(3):
            s = Store(tmp / f"subs{r}")
            sub_ms.append(timed(lambda s=s: s.upsert_subscribers(subs)))
        report("upsert of 100k subscribers (new store)", sub_ms)
        s = Store(tmp / "subs0")
        report("get_subscriber in a 100k store (open+get)",
               [timed(lambda: Store(tmp / "subs0").get_subscriber("user5@example.com"))
                for _ in range(3)])
        for size in (1_000, 100_000):
            j = Store(tmp / f"journal{size}").journal
            j.append([{"digest": "daily", "edition": f"e{i}", "email": f"u{i % 5000}@x",
                       "state": "sent", "stories": ["a", "b"]} for i in range(size)])
            j.state("daily", "e0", "u0@x")  # build the index once
            ms = [timed(lambda k=k, j=j: (j.append([{"digest": "daily", "edition": "new",
                                                     "email": f"n{k}@x", "state": "sent",
                                                     "stories": ["c"]}]),
                                          j.state("daily", "new", f"n{k}@x")))
                  for k in range(a.repeat)]
            report(f"journal append+state, {size} records", ms)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
