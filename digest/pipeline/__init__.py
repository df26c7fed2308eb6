"""The one orchestrator: where store, files and transports meet the pure core.

The CLI and the scheduler call these functions and nothing below them.
"""

from digest.pipeline.ingesting import IngestEvent, IngestReport, ingest_paths
from digest.pipeline.publishing import PublishReport, publish, rank_stories
from digest.pipeline.sending import SendReport, preview, send_digest
from digest.pipeline.status import StatusReport, status
from digest.pipeline.subscribing import (
    ImportReport,
    Subscriptions,
    add_subscriber,
    import_subscribers,
    list_subscribers,
    open_subscriptions,
    remove_subscriber,
)
from digest.publish.plan import format_ranked  # pure; the CLI prints it

__all__ = [
    "IngestEvent", "IngestReport", "ingest_paths", "PublishReport", "format_ranked", "publish",
    "rank_stories", "StatusReport", "status",
    "SendReport", "preview", "send_digest",
    "ImportReport", "Subscriptions", "add_subscriber", "import_subscribers", "list_subscribers",
    "open_subscriptions", "remove_subscriber",
]
