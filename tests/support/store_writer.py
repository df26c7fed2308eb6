"""Store writer subprocess for kill and concurrency tests: prints `C <i>` after each commit.

usage: python tests/support/store_writer.py STORE PREFIX COUNT
Iteration i, in one transaction: adds story i (every 10th iteration also 40 more, so kills
land inside multi-file commits), updates the hot story `<PREFIX>hot` to revision i and
upserts subscriber `<PREFIX>-i@example.com`; then appends a journal record; then prints.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from digest.models import Subscriber  # noqa: E402
from digest.store import Store  # noqa: E402
from tests.support.store import make_story  # noqa: E402


def batch(prefix: str, i: int) -> list:
    extra = [make_story(100_000 + i * 100 + k, prefix=prefix) for k in range(40)] if i % 10 == 9 else []
    return [make_story(i, prefix=prefix), make_story(0, rev=i + 1, prefix=prefix + "hot"), *extra]


def main() -> None:
    store_path, prefix, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    store = Store(store_path)
    print("OPEN", flush=True)
    for i in range(count):
        with store.transaction():
            store.upsert_stories(batch(prefix, i))
            store.upsert_subscribers([Subscriber(email=f"{prefix}-{i}@Example.com")])
        store.journal.append([{"digest": "daily", "edition": f"{prefix}-{i}",
                               "email": f"{prefix}@example.com", "state": "sent",
                               "message_id": f"<{prefix}.{i}@x>", "stories": [f"{prefix}{i:015x}"],
                               "at": "2026-11-22T12:00:00Z", "reason": ""}])
        print(f"C {i}", flush=True)
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
