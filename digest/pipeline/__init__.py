"""The one orchestrator: where store, files and transports meet the pure core.

The CLI and the scheduler call these functions and nothing below them.

The names below are loaded on first use (PEP 562 `__getattr__`): `digest check` needs
none of feedgen, lxml, aiosmtplib or css_inline, and does not pay for importing them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Light, and needed by nearly every command (`status` is also a submodule name: importing
# the function here keeps `pipeline.status` the function).
from digest.pipeline.project import (
    InitReport,
    daemon_lock,
    init_project,
    require_store,
    store_exists,
    store_where,
)
from digest.pipeline.status import (
    EditionProgress,
    StatusReport,
    health,
    manual_send_notes,
    status,
    today_editions,
    unknown_tags,
)

if TYPE_CHECKING:
    from digest.pipeline.bounces import BounceReport, process_bounces
    from digest.pipeline.coordination import leader
    from digest.pipeline.dkimkeys import dkim_keygen
    from digest.pipeline.ingesting import IngestEvent, IngestReport, ingest_paths
    from digest.pipeline.publishing import PublishReport, publish, rank_stories
    from digest.pipeline.sending import SendReport, preview, send_digest
    from digest.pipeline.subscribing import (
        ImportReport,
        Subscriptions,
        add_subscriber,
        import_subscribers,
        list_subscribers,
        open_subscriptions,
        reactivate_subscribers,
        remove_subscriber,
    )
    from digest.publish.plan import format_ranked

# name → the module that defines it
_HOME: dict[str, str] = {
    "BounceReport": "digest.pipeline.bounces",
    "process_bounces": "digest.pipeline.bounces",
    "dkim_keygen": "digest.pipeline.dkimkeys",
    "IngestEvent": "digest.pipeline.ingesting",
    "IngestReport": "digest.pipeline.ingesting",
    "ingest_paths": "digest.pipeline.ingesting",
    "PublishReport": "digest.pipeline.publishing",
    "format_ranked": "digest.publish.plan",
    "publish": "digest.pipeline.publishing",
    "rank_stories": "digest.pipeline.publishing",
    "leader": "digest.pipeline.coordination",
    "SendReport": "digest.pipeline.sending",
    "preview": "digest.pipeline.sending",
    "send_digest": "digest.pipeline.sending",
    "ImportReport": "digest.pipeline.subscribing",
    "Subscriptions": "digest.pipeline.subscribing",
    "add_subscriber": "digest.pipeline.subscribing",
    "import_subscribers": "digest.pipeline.subscribing",
    "list_subscribers": "digest.pipeline.subscribing",
    "open_subscriptions": "digest.pipeline.subscribing",
    "remove_subscriber": "digest.pipeline.subscribing",
    "reactivate_subscribers": "digest.pipeline.subscribing",
}


def __getattr__(name: str) -> Any:
    """Import the defining module on first use; not cached here, so a test that patches the
    defining module (or this package) sees its patch and its undo."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])


__all__ = [
    "BounceReport", "process_bounces", "dkim_keygen",
    "IngestEvent", "IngestReport", "ingest_paths", "PublishReport", "format_ranked", "publish",
    "rank_stories", "StatusReport", "status", "leader", "EditionProgress", "health",
    "manual_send_notes", "today_editions", "unknown_tags",
    "InitReport", "daemon_lock", "init_project", "require_store", "store_exists", "store_where",
    "SendReport", "preview", "send_digest",
    "ImportReport", "Subscriptions", "add_subscriber", "import_subscribers", "list_subscribers",
    "open_subscriptions", "remove_subscriber", "reactivate_subscribers",
]
