"""Publish benchmark: full publish, no-op republish and one-new-story publish from a synthetic store.

    python bench/bench_publish.py [--stories 10000] [--runs 5] [--workdir DIR] [--json FILE]

Builds an N-story store with `digest.store.Store` from hand-built `Story` objects (bilingual
mostly, ~20 tags with a Zipf-like skew, TL;DR/analysis/FAQ sizes like the seeds), then times
`digest.pipeline.publishing.publish` in a fresh Python process per run (imports excluded,
opening and reading the store included), so no in-process cache flatters a run:

- full: into an empty output dir;
- republish: the same store again (asserts 0 files written);
- one new story: one story added to the store (not timed), then publish.

Prints median/min/max of each and the ratio one-new / full. BENCH_PROFILE=FILE profiles the
timed call of every child run (the last run's profile stays in FILE).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TAGS = (
    "大模型", "安全", "政策", "芯片", "开源", "智能体", "融资", "多模态", "机器人", "编程",
    "自动驾驶", "医疗", "搜索", "视频生成", "语音", "云计算", "教育", "数据", "硬件", "伦理",
)
ALIASES = {"大模型": "llm", "安全": "security", "政策": "policy", "芯片": "chips", "开源": "open-source"}
EN_WORDS = ("model", "agent", "benchmark", "release", "policy", "chip", "inference", "training",
            "safety", "open-weight", "regulator", "startup", "funding", "latency", "context",
            "reasoning", "robotics", "dataset", "license", "evaluation", "cluster", "token")
ZH_WORDS = ("模型", "智能体", "评测", "发布", "政策", "芯片", "推理", "训练", "安全", "开源",
            "监管", "初创", "融资", "延迟", "上下文", "机器人", "数据集", "授权", "算力", "参数")


def _en(r: random.Random, words: int) -> str:
    s = " ".join(r.choice(EN_WORDS) for _ in range(words))
    return s[:1].upper() + s[1:] + "."


def _zh(r: random.Random, chars: int) -> str:
    out = []
    while sum(map(len, out)) < chars:
        out.append(r.choice(ZH_WORDS))
    return "".join(out) + "。"


def make_story(i: int, seed: int = 11, fresh: bool = False):  # -> digest.models.Story
    """Story `i`, deterministic; ~8 KB of text like the seeds. `fresh`: published minutes ago
    with high scores (it enters en/zh/all, its tags' feeds and the index)."""
    from digest.models import FAQ, Story

    r = random.Random(f"{seed}:{i}")
    sid = hashlib.sha256(f"pub:{seed}:{i}".encode()).hexdigest()[:16]
    roll = r.random()
    langs = ["en", "zh-Hans"] if roll < 0.7 else ["en"] if roll < 0.85 else \
        ["zh-Hans"] if roll < 0.95 else ["zh-Hant"]
    age_min = r.randint(5, 50) if fresh else int(min(r.expovariate(1 / (60 * 1440 / 4)), 60 * 1440)) + 5
    published = NOW - timedelta(minutes=age_min)
    updated = published + timedelta(minutes=r.choice((0, 0, 0, 30, 90)))
    weights = [1.0 / (k ** 1.1) for k in range(1, len(TAGS) + 1)]
    tags = sorted(set(r.choices(TAGS, weights=weights, k=r.randint(1, 3))), key=TAGS.index)

    def text(code: str, words: int) -> str:
        return _en(r, words) if code == "en" else _zh(r, words * 2)

    return Story(
        id=sid, languages=langs,
        title={c: text(c, 10)[:-1] + f" #{i}" for c in langs},
        published=published, updated=updated,
        summary={c: text(c, 40) for c in langs},
        tldr={c: [text(c, 18) for _ in range(r.randint(3, 5))] for c in langs},
        # Breaking news scores high: the new story lands at the top of its feeds.
        scores={k: (r.randint(85, 99) if fresh else max(20, min(99, int(r.gauss(70, 10)))))
                for k in ("hot", "quality", "impact")},
        tags=tags,
        key_data={c: [["Entity", "Figure", "Note"]] + [[text(c, 2), str(r.randint(1, 900)), text(c, 5)]
                                                     for _ in range(r.randint(1, 4))] for c in langs},
        analysis={c: [text(c, 110) for _ in range(r.randint(3, 5))] for c in langs},
        insights={c: [text(c, 25) for _ in range(3)] for c in langs},
        faq={c: [FAQ(text(c, 12)[:-1] + "?", text(c, 30)) for _ in range(r.randint(2, 3))]
             for c in langs},
        source=r.choice((None, "新智元", "机器之心", "The Verge")),
        origin=f"bench/{i:05d}.txt",
    )


def make_config(work: Path):  # -> digest.config.Config
    from digest.config import Config, FeedsConfig, StoreConfig

    return Config(path=work / "config.toml", store=StoreConfig(path=work / "store"),
                  feeds=FeedsConfig(output=work / "public", items=50), tags=dict(ALIASES))


def build_store(work: Path, n: int) -> float:
    """Fill `work/store` with n stories (skipped when it already holds them); seconds taken."""
    from digest.store import Store

    store = Store(work / "store")
    if store.story_count() >= n:
        return 0.0
    t0 = time.perf_counter()
    with store.transaction():
        store.upsert_stories(make_story(i) for i in range(n))
    return time.perf_counter() - t0


# --- child: one timed publish in a fresh process -----------------------------------------------


def child(work: Path, add: int | None) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from digest.pipeline.publishing import publish

    if add is not None:
        from digest.store import Store

        Store(work / "store").upsert_stories([make_story(add, seed=99, fresh=True)])
    cfg = make_config(work)
    prof = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
    c0 = os.times()
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    report = publish(cfg, now=NOW)
    if prof:
        prof.disable()
    dt = time.perf_counter() - t0
    c1 = os.times()
    # CPU of this process and of its page workers (reaped): what an idle machine would need.
    cpu = sum(getattr(c1, f) - getattr(c0, f) for f in ("user", "system", "children_user",
                                                          "children_system"))
    if prof:
        buf = io.StringIO()
        st = pstats.Stats(prof, stream=buf)
        st.sort_stats("cumulative").print_stats(40)
        st.sort_stats("tottime").print_stats(25)
        Path(os.environ["BENCH_PROFILE"]).write_text(buf.getvalue(), encoding="utf-8")
    print("BENCH_RESULT " + json.dumps({"seconds": dt, "cpu": cpu, "written": len(report.written),
                                        "unchanged": len(report.unchanged),
                                        "removed": len(report.removed), "stories": report.stories}))


def run_child(work: Path, add: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", str(work)] + ([] if add is None else ["--add", str(add)])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("BENCH_RESULT ")][-1]
    return json.loads(line.split(" ", 1)[1])


def stats(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "runs": len(xs)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stories", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=None,
                    help="reuse this dir (its store is kept between invocations)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--add", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child is not None:
        child(a.child, a.add)
        return {}
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

    tmp = None
    if a.workdir is None:
        tmp = tempfile.mkdtemp(prefix="bench-publish-")
        work = Path(tmp)
    else:
        work = a.workdir
        work.mkdir(parents=True, exist_ok=True)
    try:
        # A reused workdir may hold stories added by earlier one-new runs: start from n again.
        if a.workdir is not None and (work / "store").exists():
            from digest.store import Store

            if Store(work / "store").story_count() != a.stories:
                shutil.rmtree(work / "store")
        built = build_store(work, a.stories)
        if built:
            print(f"built a {a.stories}-story store in {built:.1f} s")
        runs: dict[str, list[dict]] = {"full": [], "republish": [], "one_new": []}
        load0 = os.getloadavg()[0]
        trash = work / "trash"
        for i in range(a.runs):
            # Move the last tree aside rather than delete it now: ext4 without a journal (as
            # here) skips inodes freed in the last minute when allocating, and each skip reads
            # the inode table, so creating 10k files just after deleting 10k costs ~0.35 ms
            # each (perf: recently_deleted); a first publish has no such deletion before it.
            if (work / "public").exists():
                trash.mkdir(exist_ok=True)
                os.replace(work / "public", trash / f"public-{i}-{os.getpid()}")
            runs["full"].append(run_child(work))
            r = run_child(work)
            assert r["written"] == 0, f"republish wrote {r['written']} files"
            runs["republish"].append(r)
            runs["one_new"].append(run_child(work, add=a.stories + i))
        shutil.rmtree(trash, ignore_errors=True)
        res: dict = {"stories": a.stories, "files": r["written"] + r["unchanged"],
                     "loadavg_1min": [load0, os.getloadavg()[0]]}
        for key in runs:
            res[key] = stats([x["seconds"] for x in runs[key]])
            res[key]["cpu"] = stats([x["cpu"] for x in runs[key]])
            res[key]["each"] = runs[key]
        res["one_new_written"] = statistics.median(x["written"] for x in runs["one_new"])
        res["ratio_one_new_to_full"] = res["one_new"]["median"] / res["full"]["median"]
        res["ratio_one_new_to_full_cpu"] = res["one_new"]["cpu"]["median"] / res["full"]["cpu"]["median"]
        for key, label in (("full", "full publish (empty output)"),
                           ("republish", "republish, nothing new (0 written)"),
                           ("one_new", f"one new story (~{res['one_new_written']:.0f} written)")):
            s = res[key]
            print(f"{label:<38} median {s['median']:.3f} s  min {s['min']:.3f}  max {s['max']:.3f}"
                  f"  | cpu median {s['cpu']['median']:.3f} s  ({s['runs']} runs)")
        print(f"{res['stories']} stories, {res['files']} files; one-new / full = "
              f"{res['ratio_one_new_to_full']:.1%} wall, {res['ratio_one_new_to_full_cpu']:.1%} cpu; "
              f"load average {res['loadavg_1min'][0]:.1f} → {res['loadavg_1min'][1]:.1f} "
              f"on {os.cpu_count()} CPUs")
        if a.json:
            a.json.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
        return res
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
