"""Story pages of a big publish in forked workers that pull chunks (digest.publish.workers):
every page is rendered exactly once, by whichever process took its chunk (the parent takes
chunks too once its feeds are built), with the bytes an in-process render gives; an error
anywhere fails the publish and leaves no temp file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from digest.errors import DigestError
from digest.pipeline.publishing import publish
from digest.publish import workers
from digest.publish.plan import Plan, build_files
from digest.publish.tree import STAGING
from digest.store import Store
from tests.support.publish import NOW, make_config, story

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                                reason="one CPU: pages are rendered in-process")


def published(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(out).parts)}


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.setattr(workers, "PARALLEL_MIN_PAGES", 1)
    monkeypatch.setattr(workers, "CHUNK", 1)  # one page a chunk: every process takes some
    cfg = make_config(tmp_path)
    st = Store(cfg.store.path)
    st.upsert_stories([story(f"p{i:03d}", hours_ago=1 + i,
                             langs=(("en", "zh-Hans"), ("zh-Hant",), ("en",))[i % 3])
                       for i in range(60)])
    return cfg, st


def test_chunks_pulled_by_workers_and_parent_give_every_page_once(site, monkeypatch):
    cfg, st = site
    by: dict[str, list[int]] = {}
    real = workers.render_pages

    def render_pages(store, plan, tree, stories, same):
        for s in stories:
            by.setdefault(s.id, []).append(os.getpid())
        return real(store, plan, tree, stories, same)

    monkeypatch.setattr(workers, "render_pages", render_pages)
    forked = []
    real_fork = workers.fork_pages
    monkeypatch.setattr(workers, "fork_pages", lambda *a: forked.append(real_fork(*a)) or forked[-1])
    report = publish(cfg, now=NOW)
    assert forked[0] is not None and len(forked[0]) >= 2
    # Only the parent's own renders are seen here (a worker's list dies with it): none twice.
    assert all(len(pids) == 1 for pids in by.values())
    assert sum(p.startswith("stories/") for p in report.written) == 60
    want = build_files(cfg, st.get_stories([s.id for s in st.list_stories()]), NOW)[0]
    assert published(cfg.feeds.output) == want
    assert not list((cfg.feeds.output / STAGING).glob("*"))


@pytest.mark.parametrize("where", ["worker", "any"])
def test_a_page_that_fails_fails_the_publish_and_leaves_no_temp_file(site, monkeypatch, where):
    cfg, st = site
    parent = os.getpid()
    real = Plan.story_page

    def story_page(self, s):
        if s.id == "p031" or (where == "worker" and os.getpid() != parent and s.id >= "p040"):
            raise DigestError(f"cannot render {s.id}", "fix it")
        return real(self, s)

    monkeypatch.setattr(Plan, "story_page", story_page)
    with pytest.raises(DigestError, match="cannot render"):
        publish(cfg, now=NOW)
    staging = cfg.feeds.output / STAGING
    assert not staging.exists() or not list(staging.iterdir())
    assert not (cfg.feeds.output / "stories").exists()  # nothing was renamed into place
    monkeypatch.setattr(Plan, "story_page", real)
    report = publish(cfg, now=NOW)  # and the next publish writes everything
    assert sum(p.startswith("stories/") for p in report.written) == 60


def test_an_error_in_the_parent_reaps_the_workers_and_their_temp_files(site, monkeypatch):
    cfg, _ = site

    def feed(self, spec, full):  # the parent builds the feeds while the workers render
        raise DigestError("feeds failed", "fix it")

    monkeypatch.setattr(Plan, "feed", feed)
    with pytest.raises(DigestError, match="feeds failed"):
        publish(cfg, now=NOW)
    staging = cfg.feeds.output / STAGING
    assert not staging.exists() or not list(staging.iterdir())
