"""Issue 17, item 4: a story whose body cannot be read (truncated, missing, not a story) used to
stop every publish. Now that story is skipped — left out of this publish's feeds and lists,
its page left as the last publish wrote it — with a warning in the PublishReport (printed by
`digest publish`, logged by the daemon), also when forked workers render the pages; the next
publish after a repair brings it back."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from digest import cli
from digest.pipeline.publishing import publish
from digest.publish import workers
from digest.publish.site import story_path
from tests.support.publish import NOW, make_config, seed_stories, store_with, story


def _damage(st, sid: str, how: str) -> None:
    body = st.body_path(sid)
    if how == "truncated":
        body.write_bytes(body.read_bytes()[:100])
    elif how == "missing":
        body.unlink()
    else:
        body.write_bytes(json.dumps({"id": sid}).encode())


def _feed_ids(out: Path) -> set[str]:
    items = json.loads((out / "feeds" / "all" / "feed.json").read_bytes())["items"]
    return {i["id"] for i in items}


@pytest.mark.parametrize("how", ["truncated", "missing", "not-a-story"])
def test_a_damaged_body_skips_its_story_with_a_warning(tmp_path: Path, how: str) -> None:
    cfg = make_config(tmp_path)
    seeds = seed_stories()
    st = store_with(cfg, seeds)
    first = publish(cfg, now=NOW)
    assert not first.skipped
    bad, good = seeds[0].id, [s.id for s in seeds[1:]]
    page = cfg.feeds.output / story_path(bad)
    page_bytes = page.read_bytes()
    before = _feed_ids(cfg.feeds.output)
    st.upsert_stories([story("fresh1", hours_ago=0.5)])  # something to publish
    _damage(st, bad, how)
    shutil.rmtree(cfg.feeds.output / "feeds")  # (e.g. by hand): rebuilt, so bodies are read

    report = publish(cfg, now=NOW)  # used to raise StoreError

    assert report.skipped == [bad] and report.stories == len(seeds)
    assert len(report.warnings) == 1 and bad in report.warnings[0]
    assert "ingest the story file again" in report.warnings[0]
    assert "1 skipped (damaged body)" in report.summary()
    out = cfg.feeds.output
    assert (out / story_path("fresh1")).is_file()
    assert all((out / story_path(i)).is_file() for i in good)
    assert page.read_bytes() == page_bytes  # left as the last publish wrote it
    ids = _feed_ids(out)
    assert not any(bad in i for i in ids) and len(ids) == len(before)  # out; fresh1 in
    assert bad not in (out / "index.html").read_text(encoding="utf-8")

    # Not "nothing changed" while a story is skipped: the next publish warns again ...
    assert publish(cfg, now=NOW).skipped == [bad]
    # ... and once the body is rewritten the story is back, without a warning.
    st.upsert_stories([s for s in seed_stories() if s.id == bad])
    again = publish(cfg, now=NOW)
    assert not again.skipped and not again.warnings
    assert any(bad in i for i in _feed_ids(out))
    assert bad in (out / "index.html").read_text(encoding="utf-8")


def test_forked_page_workers_report_a_damaged_body(tmp_path: Path, monkeypatch) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("page workers need two CPUs")
    monkeypatch.setattr(workers, "PARALLEL_MIN_PAGES", 2)
    forked = []
    real = workers.fork_pages

    def fork_pages(*a, **kw):
        procs = real(*a, **kw)
        forked.append(procs is not None)
        return procs

    monkeypatch.setattr(workers, "fork_pages", fork_pages)
    cfg = make_config(tmp_path)
    st = store_with(cfg, [story(f"s{i:02d}", hours_ago=1 + i) for i in range(12)])
    # Old stories are in no feed: only their pages need the body, and a worker reads it.
    st.upsert_stories([story("old1", hours_ago=24 * 400)])
    _damage(st, "old1", "truncated")
    report = publish(cfg, now=NOW)
    assert forked and forked[0]
    assert report.skipped == ["old1"] and "old1" in report.warnings[0]
    assert not (cfg.feeds.output / story_path("old1")).exists()
    assert all((cfg.feeds.output / story_path(f"s{i:02d}")).is_file() for i in range(12))


def test_digest_publish_prints_the_warning(tmp_path: Path, capsys) -> None:
    (tmp_path / "config.toml").write_text('[store]\npath = "store"\n[feeds]\noutput = "public"\n',
                                          encoding="utf-8")
    cfg = make_config(tmp_path)
    st = store_with(cfg, seed_stories())
    bad = seed_stories()[0].id
    _damage(st, bad, "missing")
    code = cli.main(["--config", str(tmp_path / "config.toml"), "publish",
                     "--now", NOW.isoformat()])
    out, err = capsys.readouterr()
    assert code == 0 and "1 skipped" in out
    assert f"warning: skipped story {bad}:" in err and "hint: ingest" in err
