"""The one orchestrator: where store, files and transports meet the pure core.

The CLI and the scheduler call these functions and nothing below them.
"""

from digest.pipeline.ingesting import IngestReport, ingest_paths
from digest.pipeline.publishing import PublishReport, format_ranked, publish, rank_stories
from digest.pipeline.sending import SendReport, preview, send_digest, subscribers_command

__all__ = [
    "IngestReport", "ingest_paths", "PublishReport", "format_ranked", "publish", "rank_stories",
    "SendReport", "preview", "send_digest", "subscribers_command",
]
