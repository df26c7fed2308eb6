"""The output manifest in shards (digest/publish/tree.py): a publish after one new story
reads and rewrites only the shards it touches; an older single-file manifest is read and
upgraded; damaged or orphaned shard files are repaired or removed."""

from __future__ import annotations

import json

from digest.publish import tree as output
from digest.publish.tree import MANIFEST, SHARDS, manifest_entries, shard_of
from tests.publish.test_publish_incremental import check
from tests.support.publish import NOW, mtimes, story


def shard_files(out) -> set[str]:
    return {p.name for p in (out / SHARDS).iterdir()}


def test_one_new_story_reads_and_writes_only_its_shards(site, monkeypatch):  # noqa: F811
    cfg, st = site
    out = cfg.feeds.output
    check(cfg, st, NOW)
    before = shard_files(out)
    listed = manifest_entries(out)
    read: list[set[str]] = []
    real = output._read_shard

    def counting(outdir, fname):
        got = real(outdir, fname)
        read.append({shard_of(r) for r in got})
        return got

    monkeypatch.setattr(output, "_read_shard", counting)
    st.upsert_stories([story("zzfresh00000001", langs=("en",), tags=("policy",), hours_ago=0.5)])
    r = check(cfg, st, NOW)
    new = "stories/zzfresh00000001.html"
    assert new in r.written
    # Of the story pages' shards only the new page's was read.
    story_shards = {n for names in read for n in names if n.startswith("stories/")}
    assert story_shards <= {shard_of(new)}
    # Only shards listing a written file were replaced; every file is still listed.
    replaced = before - shard_files(out)
    assert 0 < len(replaced) <= len({shard_of(p) for p in r.written})
    monkeypatch.setattr(output, "_read_shard", real)
    assert manifest_entries(out).keys() == listed.keys() | {new}
    assert len(r.written) + len(r.unchanged) == len(listed) + 1


def test_an_old_single_file_manifest_is_read_and_upgraded(site):  # noqa: F811
    cfg, st = site
    out = cfg.feeds.output
    check(cfg, st, NOW)
    top = json.loads((out / MANIFEST).read_bytes())
    entries = manifest_entries(out)
    old = {"files": sorted(entries), "build": top["build"], "meta": top["meta"],
           "entries": {r: list(e) for r, e in entries.items()}}
    (out / MANIFEST).write_text(json.dumps(old))
    for p in (out / SHARDS).iterdir():
        p.unlink()
    before = mtimes(out)
    r = check(cfg, st, NOW)  # nothing new: the old entries say every file is current
    assert r.written == [] and mtimes(out) == before
    st.upsert_stories([story("zzfresh00000002", hours_ago=0.5)])
    r = check(cfg, st, NOW)
    assert r.written and "files" not in json.loads((out / MANIFEST).read_bytes())
    assert manifest_entries(out).keys() == entries.keys() | {"stories/zzfresh00000002.html"}
    assert all(e is not None and e.key for e in manifest_entries(out).values())


def test_damaged_and_orphaned_shards(site):  # noqa: F811
    cfg, st = site
    out = cfg.feeds.output
    check(cfg, st, NOW)
    entries = manifest_entries(out)
    fnames = json.loads((out / MANIFEST).read_bytes())["shards"]
    victim = fnames[shard_of("index.html")]
    (out / SHARDS / victim).write_bytes(b"{not json")
    (out / SHARDS / "0123456789abcdef.json").write_bytes(b"{}")  # a killed commit's
    r = check(cfg, st, NOW)  # the damaged shard's files are compared by bytes, kept
    assert r.written == [] and "0123456789abcdef.json" not in shard_files(out)
    got = manifest_entries(out)
    assert sorted(set(got) ^ set(entries)) == []
    assert all(e is not None and e.key for e in manifest_entries(out).values())
    assert shard_files(out) == set(json.loads((out / MANIFEST).read_bytes())["shards"].values())
