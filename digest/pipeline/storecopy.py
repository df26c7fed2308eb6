"""`digest store copy --to URL_OR_PATH`: the configured store, history included, into another."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from digest.config import Config
from digest.errors import DigestError
from digest.store import PG_SCHEMES, open_store
from digest.store.copy import CopyReport
from digest.store.copy import copy_store as copy_between


def copy_store(config: Config, to: str) -> CopyReport:
    """Copy the store `[store]` names into `to` (a postgresql:// url or a store directory);
    idempotent and resumable: run it again after a failure, or to catch up."""
    to = to.strip()
    if to.startswith(PG_SCHEMES):
        parts = urlsplit(to)
        if parts.password is not None or "password=" in parts.query:
            raise DigestError("--to: the url holds a password",
                              "remove it and set PGPASSWORD, or put it in ~/.pgpass "
                              "(or a PGSERVICE entry)")
        target, same = to, to == config.store.url
        dst_where: str | Path = to
    else:
        dst_where = Path(to).expanduser().resolve()
        target = str(dst_where)
        same = not config.store.url and dst_where == Path(config.store.path).resolve()
    source = config.store.url or str(config.store.path)
    if same:
        raise DigestError(f"--to {target} is the configured store itself",
                          "give another database or directory")
    src = open_store(config.store)
    dst = open_store(dst_where)
    try:
        return copy_between(src, dst, source, target)  # no password in either url
    finally:
        dst.close()
        src.close()
