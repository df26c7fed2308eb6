"""A send ranks only the stories its digest may include (published within max_age_hours of
the edition time): the plans and the "nothing new" reasons are those of ranking every stored
story, while memory holds the last few days' stories, not the back catalogue."""

from __future__ import annotations

from datetime import timedelta

from digest.mail.editions import plan_stories
from digest.pipeline.explain import why_nothing
from digest.pipeline.sendplan import RankedStories, _ranked, _why
from tests.support.send import NOW


def test_a_send_ranks_only_the_stories_its_digest_may_include(config) -> None:
    dcfg = config.digests[0]
    hours = dcfg.max_age_hours
    pubs = sorted({s.published for s in _ranked(config, NOW)})
    assert len(pubs) > 2, "the seeds need stories published at different times"
    now = pubs[len(pubs) // 2] + timedelta(hours=hours)  # some stories too old, some not
    oldest = now - timedelta(hours=hours)
    every = _ranked(config, now)  # every stored story
    mine = _ranked(config, now, dcfg)
    assert isinstance(mine, RankedStories)
    assert [s.id for s in mine] == [s.id for s in every if s.published >= oldest]
    assert 0 < len(mine) < len(every)
    assert sorted(o.id for o in mine.older) == sorted(s.id for s in every if s.published < oldest)
    old_id = next(s.id for s in every if s.published < oldest)
    tag = next(t for s in every for t in s.tags)
    cases = [([], ["en"], set()), ([], ["zh"], {mine[0].id}), ([tag], ["en", "zh"], set()),
             (["no-such-tag"], ["en"], {old_id}), ([], ["fr"], {s.id for s in mine})]
    for tags, langs, sent in cases:
        args = (sent, tags, dcfg.max_stories, config.tags)
        kw = {"now": now, "max_age": timedelta(hours=hours), "languages": langs}
        assert plan_stories(mine, *args, **kw) == plan_stories(every, *args, **kw)
        assert _why(mine, sent, tags, langs, now, hours, config.tags) == \
            why_nothing(every, sent, tags, langs, now, hours, config.tags)
    # a year on every story is too old: nothing is ranked, and the reason still counts them
    later = now + timedelta(days=365)
    none = _ranked(config, later, dcfg)
    assert list(none) == [] and len(none.older) == len(every)
    why = _why(none, {old_id}, [], ["en"], later, hours, config.tags)
    assert why == why_nothing(_ranked(config, later), {old_id}, [], ["en"], later, hours,
                              config.tags)
    assert f"older than max_age_hours = {hours:g}" in why and "1 story was already sent" in why
