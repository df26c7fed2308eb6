"""What the store holds right now, for entry points that must not open it themselves."""

from __future__ import annotations

from dataclasses import dataclass, field

from digest.config import Config
from digest.store import Store


@dataclass
class StatusReport:
    """Stored stories, and active subscribers per time zone (empty when there is no store)."""

    stories: int = 0
    zones: dict[str, int] = field(default_factory=dict)  # IANA zone → active subscribers

    @property
    def subscribers(self) -> int:
        return sum(self.zones.values())


def status(config: Config) -> StatusReport:
    """Count the store's stories and active subscribers per time zone. A store that does not
    exist yet is reported empty, not created (`digest schedule` on a fresh install)."""
    if not config.store.path.exists():
        return StatusReport()
    store = Store(config.store.path)
    zones: dict[str, int] = {}
    for sub in store.list_subscribers("active"):
        zones[sub.timezone] = zones.get(sub.timezone, 0) + 1
    return StatusReport(stories=store.story_count(), zones=zones)
