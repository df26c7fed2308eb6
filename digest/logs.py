"""Logging setup shared by the long-running commands (`digest serve`, `digest run`)."""

from __future__ import annotations

import logging
import os

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging() -> None:
    """Log to stderr at $DIGEST_LOG_LEVEL (default INFO), in the daemon's format."""
    level = os.environ.get("DIGEST_LOG_LEVEL", "INFO").upper()
    if level not in logging.getLevelNamesMapping():
        level = "INFO"  # a typo in an env var must not stop the server from starting
    logging.basicConfig(level=level, format=FORMAT)
    # APScheduler logs "Running job"/"executed successfully" per run; our job line says it all.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
