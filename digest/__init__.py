"""digest: ingest curated stories, publish feeds and pages, email bilingual digests."""

__version__ = "0.1.0"
