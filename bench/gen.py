"""Synthetic corpora for the benchmarks: bilingual card-format stories and a subscribers CSV."""

from __future__ import annotations

import argparse
import csv
import hashlib
import random
from pathlib import Path

# ~20 tags as the site prints them (Chinese); drawn with a Zipf-like skew so a few tags are
# huge and most are small, as on a real news site.
TAGS = (
    "大模型", "安全", "政策", "芯片", "开源", "智能体", "融资", "多模态", "机器人", "编程",
    "自动驾驶", "医疗", "搜索", "视频生成", "语音", "云计算", "教育", "数据", "硬件", "伦理",
)
ZIPF_S = 1.1
TIMEZONES = (
    "UTC", "Asia/Shanghai", "Asia/Hong_Kong", "Asia/Taipei", "Asia/Tokyo", "Asia/Singapore",
    "Asia/Kolkata", "Europe/London", "Europe/Berlin", "Europe/Paris", "America/New_York",
    "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Sao_Paulo",
    "Australia/Sydney", "Pacific/Auckland", "Africa/Johannesburg",
)

EN_SUBJ = ("Anthropic", "OpenAI", "Google DeepMind", "Meta", "Mistral", "Alibaba Cloud",
           "DeepSeek", "Moonshot", "Nvidia", "the White House", "the EU Commission",
           "a Shenzhen startup", "Baidu", "Tencent", "ByteDance", "Apple", "Microsoft")
EN_VERB = ("released", "restricted", "open-sourced", "benchmarked", "priced", "delayed",
           "audited", "licensed", "acquired", "scaled", "retrained", "announced")
EN_OBJ = ("a frontier reasoning model", "its coding agent", "a 400B mixture-of-experts model",
          "new export rules", "a video generation system", "an inference chip",
          "a safety evaluation suite", "a speech model", "its robotics stack",
          "a long-context retrieval system", "a medical imaging model", "a data licensing deal")
EN_TAIL = ("after months of speculation", "citing national security concerns",
           "at a fraction of last year's cost", "with mixed early reviews",
           "ahead of a major conference", "amid a talent war", "under pressure from regulators",
           "to compete with open-weight rivals", "following a security incident",
           "with a 40% jump in throughput")
ZH_SUBJ = ("深度求索", "月之暗面", "阿里云", "百度", "腾讯", "字节跳动", "智谱", "英伟达",
           "美国白宫", "欧盟委员会", "一家深圳初创公司", "华为", "小米", "商汤")
ZH_VERB = ("发布了", "限制了", "开源了", "测试了", "下调了", "推迟了", "审查了", "收购了",
           "扩展了", "宣布了")
ZH_OBJ = ("新一代推理模型", "编程智能体", "视频生成系统", "推理芯片", "安全评测框架",
          "语音大模型", "机器人平台", "长上下文检索系统", "医疗影像模型", "数据授权协议")
ZH_TAIL = ("引发业界广泛关注", "成本仅为去年的一小部分", "早期评价褒贬不一", "监管压力持续加大",
           "以应对开源模型的竞争", "吞吐量提升了百分之四十", "人才争夺战愈演愈烈",
           "此前曾有多轮传闻")


def zipf_weights(n: int, s: float = ZIPF_S) -> list[float]:
    return [1.0 / (k**s) for k in range(1, n + 1)]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _en_sentence(r: random.Random) -> str:
    return _cap(f"{r.choice(EN_SUBJ)} {r.choice(EN_VERB)} {r.choice(EN_OBJ)} {r.choice(EN_TAIL)}.")


def _zh_sentence(r: random.Random) -> str:
    return f"{r.choice(ZH_SUBJ)}{r.choice(ZH_VERB)}{r.choice(ZH_OBJ)},{r.choice(ZH_TAIL)}。"


def _ages(r: random.Random, days: float) -> tuple[int, int]:
    """(published, updated) ages in minutes: most news is fresh, a long tail is old."""
    pub = int(min(r.expovariate(1 / (days * 1440 / 4)), days * 1440)) + 5
    upd = r.randint(1, pub) if r.random() < 0.7 else pub
    return pub, upd


def _en_age(m: int) -> str:
    return f"{m}m" if m < 60 else f"{m // 60}h" if m < 1440 else f"{m // 1440}d"


def _zh_age(m: int) -> str:
    return f"{m}分钟前" if m < 60 else f"{m // 60}小时前" if m < 1440 else f"{m // 1440}天前"


def _score(r: random.Random) -> int:
    return max(20, min(99, int(r.gauss(70, 10))))


def story_text(i: int, seed: int = 7, days: float = 60.0, fresh: bool = False) -> tuple[str, str]:
    """Card `i` as (file name, text) in the layout of seeds/001_*.txt; deterministic.
    `fresh`: published minutes ago, as breaking news is (it lands at the top of the feeds)."""
    r = random.Random(f"{seed}:{i}")
    sid = hashlib.sha256(f"bench:{seed}:{i}".encode()).hexdigest()[:16]
    pub, upd = _ages(r, days)
    if fresh:
        pub = upd = r.randint(5, 50)
    en_title = f"{_cap(r.choice(EN_SUBJ))} {r.choice(EN_VERB)} {r.choice(EN_OBJ)} #{i}"
    zh_title = f"{r.choice(ZH_SUBJ)}{r.choice(ZH_VERB)}{r.choice(ZH_OBJ)}(第{i}号)"
    en_tldr = [_en_sentence(r) for _ in range(r.randint(3, 5))]
    zh_tldr = [_zh_sentence(r) for _ in range(r.randint(3, 4))]
    tags = sorted(set(r.choices(TAGS, weights=zipf_weights(len(TAGS)), k=r.randint(1, 3))),
                  key=TAGS.index)
    lines = [
        f"AI News AI资讯 {_en_age(pub)} ago Updated {_en_age(upd)} ago 更新于 {_zh_age(upd)} "
        f"{r.randint(10, 999)}",
        "", f"{en_title} {zh_title}", "", " ".join(en_tldr) + " " + " ".join(zh_tldr), "",
    ]
    for label in ("Hot 热度", "Quality 质量", "Impact 影响力"):
        lines += [str(_score(r)), label]
    lines += ["", "Analysis 深度分析", "", "TL;DR", ""]
    lines += [f"  • {s}" for s in en_tldr]
    lines += ["", "Key Data", "", "Deep Analysis", ""]
    for _ in range(r.randint(3, 5)):
        lines += [" ".join(_en_sentence(r) for _ in range(r.randint(4, 7))), ""]
    lines += ["Industry Insights", ""]
    lines += [f"  {n}. Insight {n}: {_en_sentence(r)} {_en_sentence(r)}" for n in (1, 2, 3)]
    lines += ["", "FAQ", ""]
    for _ in range(r.randint(2, 3)):
        lines += [f"Q: What does it mean that {_en_sentence(r)[:-1].lower()}?",
                  f"A: {_en_sentence(r)} {_en_sentence(r)}", ""]
    lines += ["TL;DR", ""]
    lines += [f"  • {s}" for s in zh_tldr]
    lines += ["", "核心数据", "", "实体 关键信息 数据/指标"]
    for _ in range(r.randint(1, 3)):
        lines.append(f"{r.choice(ZH_SUBJ)} {r.choice(ZH_VERB)}{r.choice(ZH_OBJ)} "
                     f"{r.randint(1, 900)}亿参数")
    lines += ["", "深度解读", ""]
    for _ in range(r.randint(3, 5)):
        lines += ["".join(_zh_sentence(r) for _ in range(r.randint(4, 7))), ""]
    lines += ["行业启示", ""]
    lines += [f"  {n}. 启示{n}:{_zh_sentence(r)}{_zh_sentence(r)}" for n in (1, 2, 3)]
    lines += ["", "FAQ", ""]
    for _ in range(r.randint(2, 3)):
        lines += [f"Q: {_zh_sentence(r)[:-1]}意味着什么?", f"A: {_zh_sentence(r)}{_zh_sentence(r)}", ""]
    lines += ["Disclaimer: The above content is generated by AI and is for reference only. "
              "免责声明:以上内容由 AI 生成,仅供参考。", ""]
    lines.append(" ".join(f"{t} {t}" for t in tags))
    lines.append("Share: 分享到:")
    return f"{i:05d}_{sid}.txt", "\n".join(lines)


def write_stories(outdir: Path, n: int, start: int = 0, seed: int = 7,
                  fresh: bool = False) -> list[Path]:
    """Write cards start..start+n-1 into `outdir` (skipping files already there)."""
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        name, text = story_text(i, seed, fresh=fresh)
        p = outdir / name
        if not p.exists():
            p.write_text(text, encoding="utf-8")
        paths.append(p)
    return paths


def subscriber_rows(m: int, seed: int = 7) -> list[tuple[str, str, str, str]]:
    """(email, languages, tags, timezone) rows: ~45% both languages, 0-3 Zipf-skewed tags."""
    r = random.Random(f"subs:{seed}")
    weights = zipf_weights(len(TAGS))
    rows = []
    for k in range(m):
        langs = r.choices(("en,zh", "en", "zh"), weights=(45, 30, 25))[0]
        ntags = r.choices((0, 1, 2, 3), weights=(40, 30, 20, 10))[0]
        tags = sorted(set(r.choices(TAGS, weights=weights, k=ntags)), key=TAGS.index)
        rows.append((f"reader{k:06d}@example.{r.choice(('com', 'org', 'net', 'cn'))}",
                     langs, ",".join(tags), r.choice(TIMEZONES)))
    return rows


def write_subscribers(path: Path, m: int, seed: int = 7) -> Path:
    """The `digest subscribers import` CSV: header email,languages,tags,timezone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(("email", "languages", "tags", "timezone"))
        w.writerows(subscriber_rows(m, seed))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stories", type=int, default=100)
    ap.add_argument("--subscribers", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "corpus")
    a = ap.parse_args()
    write_stories(a.out / "cards", a.stories)
    write_subscribers(a.out / "subscribers.csv", a.subscribers)
    print(f"wrote {a.stories} cards and {a.subscribers} subscribers under {a.out}")


if __name__ == "__main__":
    main()
