"""Logging setup shared by the long-running commands (`digest serve`, `digest run`): one
format for our lines and uvicorn's (its loggers propagate to ours), text or JSON lines."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import IO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")
LEVEL_ENV = "DIGEST_LOG_LEVEL"
# uvicorn's loggers: by default uvicorn installs handlers and formats of its own on them; we
# strip those so every line goes through the one root handler below, in one format.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message (+ exc)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class _OurHandler(logging.StreamHandler):
    """Marks the handler setup_logging installed, so a second call replaces it."""


def level_from_env() -> str:
    level = os.environ.get(LEVEL_ENV, "INFO").upper()
    # A typo in an env var must not stop the server from starting.
    return level if level in logging.getLevelNamesMapping() else "INFO"


def setup_logging(log_format: str = "text", *, stream: IO[str] | None = None) -> None:
    """Log to stderr (or `stream`) at $DIGEST_LOG_LEVEL (default INFO) in `log_format`
    ("text" or "json"); uvicorn's lines join ours (its access log: `[web] access_log`, set
    per server in digest.web)."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(h)
    handler = _OurHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if log_format == "json" else logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(level_from_env())
    for name in UVICORN_LOGGERS:
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True
    # APScheduler logs "Running job"/"executed successfully" per run; our job line says it all.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
