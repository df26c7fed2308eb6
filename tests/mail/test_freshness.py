"""Digests carry only fresh stories: anything older than the digest's max_age_hours at the
edition time is left out, so a new subscriber does not get the back catalogue."""

from __future__ import annotations

from datetime import timedelta

import pytest

from digest.mail.editions import plan_stories
from digest.pipeline.sending import send_digest
from tests.support.send import AS_OF, NOW, add_subscribers, story, sub


def _aged(id_: str, hours: float) -> object:
    s = story(id_, ["en"], {"en": id_}, {"en": ["x"]})
    s.published = s.updated = NOW - timedelta(hours=hours)
    return s


def test_plan_stories_leaves_out_stories_older_than_max_age() -> None:
    ranked = [_aged("old", 24 * 365), _aged("edge", 71.9), _aged("late", 72.1), _aged("new", 1)]
    got = plan_stories(ranked, set(), [], 10, now=NOW, max_age=timedelta(hours=72))
    assert [s.id for s in got] == ["edge", "new"]
    # without an edition time nothing is filtered (the old call shape still works)
    assert len(plan_stories(ranked, set(), [], 10)) == 4


@pytest.mark.usefixtures("secret")
def test_a_new_subscriber_does_not_get_the_back_catalogue(config) -> None:
    # config: seeds ingested at AS_OF (published hours before)
    assert config.digests[0].max_age_hours == 72.0
    add_subscribers(config, sub("late@example.com"))
    year_later = AS_OF + timedelta(days=365)
    report = send_digest(config, now=year_later)
    assert report.sent == [] and report.nothing_new == ["late@example.com"]
    assert send_digest(config, now=NOW).sent == ["late@example.com"]
