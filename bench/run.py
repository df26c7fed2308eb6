"""The benchmark: `python bench/run.py [--quick] [--stories N] [--subscribers M] [--runs K]`.

Every step runs through the project's real code in its own process (peak memory from wait4),
K times on fresh copies of the same state; figures are median/min/max and every ratio is taken
within one run (same machine state) before its median is reported. Data lives in bench/out/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gen  # noqa: E402
import postfix  # noqa: E402

OUT = HERE / "out"
TARGETS = {  # figure: (comparison, bound, unit); issue 7's, then issue 18's where it moved them
    "ingest_files_per_s": (">=", 500, "files/s"),
    "ingest_one_ms": ("<=", 100, "ms"),
    "republish_s": ("<=", 0.3, "s"),
    "republish_written": ("<=", 0, "files"),
    # issue 18: the full publish against the write floor (the same bytes by a bare loop) plus
    # `digest check`, both measured right after it
    "publish_full_vs_floor_check": ("<=", 1.5, "×"),
    "send_msgs_per_s": (">=", 1000, "msg/s"),
    "send_vs_smtp_source": (">=", 0.60, "×"),  # issue 18 (issue 7: 0.20)
    "send_vs_naive": (">=", 8.0, "×"),
    "peak_rss_mb": ("<=", 1000, "MB"),  # issue 18: 100k stories within 1 GB
    # issue 18: whole commands (`python -m digest ...`, interpreter start included) against
    # `digest check` on the same store, in the same run
    "cmd_ingest_files_per_s": (">=", 1000, "files/s"),
    "cmd_ingest_one_vs_check": ("<=", 1.5, "×"),
    "cmd_republish_vs_check": ("<=", 1.5, "×"),
    "cmd_publish_one_vs_check": ("<=", 2.0, "×"),
}
# Steps that are baselines, not digest: left out of the peak over all steps.
BASELINE_STEPS = frozenset({"write_floor", "naive_feeds", "naive_send", "smtp_source"})
# issue 18: peak RSS of one step's process (MB)
RSS_TARGETS = {"send_digests": 300}


# --- processes ------------------------------------------------------------------------------

def child(step: str, workdir: Path, profile: str | None = None, **args: Any) -> dict:
    """Run bench/steps.py STEP in a fresh interpreter; its result plus wall time and max RSS."""
    env = dict(os.environ)
    env.setdefault("DIGEST_SECRET", "bench-secret-not-for-production")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    if profile:
        env["BENCH_PROFILE"] = str(OUT / f"profile-{profile}.txt")
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{step}.log"
    with log.open("w") as f:
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, str(HERE / "steps.py"), step, str(workdir),
                              json.dumps(args, ensure_ascii=False)],
                             stdout=f, stderr=subprocess.STDOUT, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    out: dict[str, Any] = {"wall": wall, "maxrss_mb": ru.ru_maxrss / 1024}
    for line in reversed(text.splitlines()):
        if line.startswith("BENCH_RESULT "):
            out.update(json.loads(line[len("BENCH_RESULT "):]))
            return out
    out["error"] = f"exit {p.returncode}: " + " | ".join(text.strip().splitlines()[-4:])[-600:]
    return out


def run_exe(cmd: list[str], env: dict[str, str]) -> dict:
    """An external program (smtp-source): wall time and max RSS."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    out = {"seconds": wall, "wall": wall, "maxrss_mb": ru.ru_maxrss / 1024}
    if p.returncode:
        out["error"] = f"exit {p.returncode}: {p.stderr.read().decode(errors='replace')[-300:]}"
    p.stderr.close()
    return out


def command(wd: Path, *args: str) -> dict:
    """`python -m digest ARGS` in the work dir, as an operator runs it: wall time (interpreter
    start, imports and config included) and max RSS."""
    env = dict(os.environ)
    env.setdefault("DIGEST_SECRET", "bench-secret-not-for-production")
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "digest", *args], cwd=wd, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.stderr.close()
    out = {"seconds": wall, "maxrss_mb": ru.ru_maxrss / 1024}
    code = os.waitstatus_to_exitcode(status)
    if code:
        out["error"] = f"digest {' '.join(args)}: exit {code}: {err.decode(errors='replace')[-300:]}"
    return out


# --- state ----------------------------------------------------------------------------------

def config_text(workdir: Path, smtp_port: int = 25, pool: int = 4) -> str:
    return f"""[site]
base_url = "https://news.example.com/"
[store]
path = "store"
[ingest]
paths = []
[feeds]
output = "public"
items = 50
[smtp]
transport = "smtp"
host = "127.0.0.1"
port = {smtp_port}
security = "none"
pool_size = {pool}
timeout = 60.0
[[digests]]
name = "daily"
cron = "0 7 * * *"
max_stories = 10
subject = "AI News Daily · AI资讯日报 — {{date}}"
"""


def fresh(name: str, *, store: Path | None = None, public: Path | None = None,
          smtp_port: int = 25, pool: int = 4) -> Path:
    """An empty work dir with a config.toml, optionally seeded with copies of a store/output."""
    wd = OUT / "work" / name
    shutil.rmtree(wd, ignore_errors=True)
    wd.mkdir(parents=True)
    (wd / "config.toml").write_text(config_text(wd, smtp_port, pool), encoding="utf-8")
    if store:
        shutil.copytree(store, wd / "store", symlinks=True)  # copy2 keeps mtimes
    if public:
        shutil.copytree(public, wd / "public", symlinks=True)
    return wd


def keep(src: Path, name: str) -> Path:
    dst = OUT / "tmpl" / name
    shutil.rmtree(dst, ignore_errors=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst, symlinks=True)
    return dst


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """relpath → (mtime_ns, inode): a file rewritten or replaced changes one of them."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_ino)
            for p in root.rglob("*") if p.is_file()}


def _hidden(rel: str) -> bool:
    """The publisher's own bookkeeping (.digest-manifest.json, locks): never served."""
    return any(part.startswith(".") for part in Path(rel).parts)


def changed_files(before: dict, after: dict, hidden: bool = False) -> int:
    """Published files (or, with `hidden`, bookkeeping files) written, replaced or removed."""
    keys = [k for k, v in after.items() if before.get(k) != v] + [k for k in before if k not in after]
    return sum(1 for k in keys if _hidden(k) == hidden)


def corpus(n: int, m: int) -> tuple[Path, list[Path], Path]:
    """N cards, two extra cards for the 'one more story' steps, and M subscribers (cached)."""
    base = OUT / "corpus" / f"n{n}"
    cards = base / "cards"
    if not cards.exists() or sum(1 for _ in cards.iterdir()) != n:
        shutil.rmtree(cards, ignore_errors=True)
        gen.write_stories(cards, n)
    extra = gen.write_stories(base / "extra", 2, start=n, fresh=True)
    csv = OUT / "corpus" / f"subscribers-{m}.csv"
    if not csv.exists():
        gen.write_subscribers(csv, m)
    return cards, extra, csv


# --- statistics and output --------------------------------------------------------------------

def summarize(values: list[float]) -> dict | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def fmt(v: float | None) -> str:
    if v is None:
        return "—"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.figures: dict[str, list[float | None]] = {}
        self.rss: dict[str, list[float]] = {}
        self.notes: list[str] = []
        self.errors: dict[str, str] = {}

    def add(self, name: str, value: float | None) -> None:
        self.figures.setdefault(name, []).append(value)

    def measure(self, label: str, step: str, wd: Path, k: int, **args: Any) -> dict | None:
        prof = label if (label in (self.a.profile or ()) and k == 0) else None
        r = child(step, wd, profile=prof, **args)
        self.rss.setdefault(label, []).append(r["maxrss_mb"])
        if "error" in r:
            self.errors[label] = r["error"]
            print(f"  {label} run {k + 1}: FAILED {r['error']}", flush=True)
            return None
        print(f"  {label} run {k + 1}: {r['seconds']:.3f} s, {r['maxrss_mb']:.0f} MB "
              f"{ {x: y for x, y in r.items() if x not in ('seconds', 'wall', 'maxrss_mb', 'lines', 'sizes')} }",
              flush=True)
        return r

    def want(self, group: str) -> bool:
        return not self.a.only or group in self.a.only


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# --- the phases -----------------------------------------------------------------------------

def phase_ingest(b: Bench, n: int, cards: Path, extra: list[Path]) -> Path | None:
    tmpl = None
    for k in range(b.a.runs):
        wd = fresh(f"ingest-{k}")
        r = b.measure("ingest_full", "ingest", wd, k, paths=[str(cards)])
        b.add("ingest_s", r and r["seconds"])
        b.add("ingest_files_per_s", r and n / r["seconds"])
        if r and r["rejected"]:
            b.notes.append(f"ingest rejected {r['rejected']} generated cards: {r['rejects']}")
        if r and tmpl is None:
            tmpl = keep(wd / "store", "store")
        shutil.rmtree(wd, ignore_errors=True)
    if tmpl is None:
        return None
    for k in range(b.a.runs):
        wd = fresh(f"ingest-one-{k}", store=tmpl)
        r = b.measure("ingest_one", "ingest", wd, k, paths=[str(extra[0])])
        b.add("ingest_one_ms", r and r["seconds"] * 1000)
        shutil.rmtree(wd, ignore_errors=True)
    return tmpl


def settle(b: Bench, wd: Path, label: str) -> bool:
    """Setup, not measured: one publish in the copied work dir. A copy gives the store files
    new inodes and mtimes, which the publisher may rightly treat as a changed store; after
    this the measured run sees the state a long-running install has."""
    r = child("publish", wd)
    if "error" in r:
        b.errors[label] = "setup publish: " + r["error"]
        return False
    return True


def floor_and_check(b: Bench, wd: Path, k: int, full: float) -> None:
    """Issue 18's baseline for the full publish, right after it in the same run: the write
    floor (the very bytes it wrote, written by a bare Python loop, temp + rename per file,
    into a fresh dir) plus `digest check` on the same work dir."""
    dst = wd / "floor"
    os.sync()  # the publish's files are on disk (its syncfs); anything else too
    r = b.measure("write_floor", "write_floor", wd, k, src=str(wd / "public"), dst=str(dst))
    shutil.rmtree(dst, ignore_errors=True)
    floor = r and r["seconds"]
    b.add("write_floor_s", floor)
    b.add("write_floor_files", r and r["written"])
    c = command(wd, "check")
    b.rss.setdefault("cmd_check", []).append(c["maxrss_mb"])
    if "error" in c:
        b.errors["publish_check"] = c["error"]
    check = None if "error" in c else c["seconds"]
    print(f"  check run {k + 1}: {fmt(check)} s", flush=True)
    b.add("publish_check_s", check)
    b.add("publish_full_vs_floor_check",
          ratio(full, floor + check if floor is not None and check is not None else None))


def phase_publish(b: Bench, store: Path, extra: list[Path]) -> None:
    pub_tmpl = None
    fulls: list[float | None] = []
    for k in range(b.a.runs):
        wd = fresh(f"publish-{k}", store=store)
        # The copy just made is dirty in the page cache: written back now, not by the
        # publish's own syncfs (which flushes the whole file system, as an install's would
        # find nothing of ours to flush but its own files).
        os.sync()
        r = b.measure("publish_full", "publish", wd, k)
        fulls.append(r and r["seconds"])
        b.add("publish_full_s", r and r["seconds"])
        b.add("publish_full_files", r and r["written"])
        if r:
            floor_and_check(b, wd, k, r["seconds"])
        if r and pub_tmpl is None:
            pub_tmpl = keep(wd / "public", "public")
        shutil.rmtree(wd, ignore_errors=True)
    if pub_tmpl is None:
        return
    for k in range(b.a.runs):
        wd = fresh(f"republish-{k}", store=store, public=pub_tmpl)
        if not settle(b, wd, "republish"):
            break
        before = snapshot(wd / "public")
        r = b.measure("republish", "publish", wd, k)
        b.add("republish_s", r and r["seconds"])
        after = snapshot(wd / "public")
        b.add("republish_written", r and changed_files(before, after))
        b.add("republish_meta_written", r and changed_files(before, after, hidden=True))
        shutil.rmtree(wd, ignore_errors=True)
    for k in range(b.a.runs):
        wd = fresh(f"publish-one-{k}", store=store, public=pub_tmpl)
        if not settle(b, wd, "publish_one"):
            break
        setup = child("ingest", wd, paths=[str(extra[1])])
        if "error" in setup:
            b.errors["publish_one"] = "setup ingest: " + setup["error"]
            break
        before = snapshot(wd / "public")
        r = b.measure("publish_one", "publish", wd, k)
        b.add("publish_one_s", r and r["seconds"])
        b.add("publish_one_written", r and changed_files(before, snapshot(wd / "public")))
        b.add("publish_one_vs_full", ratio(r and r["seconds"], fulls[k] if k < len(fulls) else None))
        # The naive baseline right after, so its ratio compares like with like.
        wd2 = fresh(f"naive-feeds-{k}", store=store)
        r2 = b.measure("naive_feeds", "naive_feeds", wd2, k)
        b.add("naive_feeds_s", r2 and r2["seconds"])
        b.add("naive_feeds_vs_publish", ratio(r2 and r2["seconds"], fulls[k] if k < len(fulls) else None))
        shutil.rmtree(wd, ignore_errors=True)
        shutil.rmtree(wd2, ignore_errors=True)


def phase_commands(b: Bench, n: int, cards: Path, store: Path, extra: list[Path]) -> None:
    """Issue 18: what an operator waits for. Each run: `digest ingest` of the N cards into an
    empty store; then, on a copy of the N-story store published and settled, `digest check`
    (the baseline), `digest publish` with nothing new, `digest check`, `digest ingest` of one
    card, `digest publish`, `digest check`. Ratios are to the median of that run's 3 checks."""
    pub: Path | None = None
    for k in range(b.a.runs):
        wd = fresh(f"cmd-ingest-{k}")
        r = command(wd, "ingest", str(cards))
        b.rss.setdefault("cmd_ingest", []).append(r["maxrss_mb"])
        b.add("cmd_ingest_files_per_s", None if "error" in r else n / r["seconds"])
        if "error" in r:
            b.errors["cmd_ingest"] = r["error"]
        shutil.rmtree(wd, ignore_errors=True)
        wd = fresh(f"cmd-{k}", store=store, public=pub)
        if not settle(b, wd, "cmd"):  # the first run's is a full publish
            break
        if pub is None:
            pub = keep(wd / "public", "cmd-public")
            if not settle(b, wd, "cmd"):
                break
        got: dict[str, float | None] = {}
        for name, args in (("check_a", ("check",)), ("republish", ("publish",)),
                           ("check_b", ("check",)), ("ingest_one", ("ingest", str(extra[0]))),
                           ("publish_one", ("publish",)), ("check_c", ("check",))):
            r = command(wd, *args)
            b.rss.setdefault(f"cmd_{name[:5] if name.startswith('check') else name}",
                             []).append(r["maxrss_mb"])
            if "error" in r:
                b.errors[f"cmd_{name}"] = r["error"]
            got[name] = None if "error" in r else r["seconds"]
            print(f"  cmd {name} run {k + 1}: {fmt(got[name])} s", flush=True)
        checks = [v for key, v in got.items() if key.startswith("check") and v is not None]
        check = statistics.median(checks) if checks else None
        b.add("cmd_check_s", check)
        for name in ("republish", "ingest_one", "publish_one"):
            b.add(f"cmd_{name}_s", got[name])
            b.add(f"cmd_{name}_vs_check", ratio(got[name], check))
        shutil.rmtree(wd, ignore_errors=True)


def phase_subscribers(b: Bench, store: Path, csv: Path) -> Path | None:
    tmpl = None
    for k in range(b.a.runs):
        wd = fresh(f"import-{k}", store=store)
        r = b.measure("import_subscribers", "import", wd, k, csv=str(csv))
        b.add("import_s", r and r["seconds"])
        if r and tmpl is None:
            if set(r["statuses"]) != {"active"}:
                act = child("activate", wd)
                b.notes.append(f"import left statuses {r['statuses']}; set active for the bench "
                               f"({act.get('active', act.get('error'))})")
            tmpl = keep(wd / "store", "store-subs")
        shutil.rmtree(wd, ignore_errors=True)
    return tmpl


def phase_send(b: Bench, store: Path, m: int) -> None:
    try:
        tools = postfix.ensure()
    except postfix.PostfixUnavailable as e:
        b.errors["smtp_source"] = str(e)
        tools = None
    port = postfix.free_port()
    sink = postfix.start_sink(tools, port) if tools else None
    if sink is None:
        b.notes.append("smtp-sink unavailable: digests not measured against it")
        return
    try:
        pool = b.a.pool
        wd = fresh("probe", store=store, smtp_port=port, pool=pool)
        pr = child("probe", wd, sample=40)
        sizes = pr.get("sizes") or []
        size = int(statistics.mean(sizes)) if sizes else 30_000
        b.add("message_bytes", size)
        if "error" in pr:
            b.notes.append(f"message size probe failed ({pr['error'][:200]}); smtp-source uses 30000 B")
        shutil.rmtree(wd, ignore_errors=True)
        for k in range(b.a.runs):
            wd = fresh(f"send-{k}", store=store, smtp_port=port, pool=pool)
            # A real install has published its site: the publish a send ends with (edition
            # pages) is then incremental. Without this the timed send includes a full
            # publish of every story page (~6 s at 10k stories), which is not sending.
            if not settle(b, wd, "send_digests"):
                break
            r = b.measure("send_digests", "send", wd, k)
            sent = r.get("sent") if r else None
            rate = sent / r["seconds"] if r and sent else None
            b.add("send_s", r and r["seconds"])
            b.add("send_sent", sent)
            b.add("send_failed", r and r.get("failed", 0) + r.get("bounced", 0))
            b.add("send_nothing_new", r and r.get("nothing_new"))
            b.add("send_renders", r and r.get("renders"))
            b.add("send_msgs_per_s", rate)
            shutil.rmtree(wd, ignore_errors=True)
            count = sent or m
            cmd = postfix.source_command(tools, port, count, size, pool, reuse=True)
            s = run_exe(cmd, tools.env)
            b.rss.setdefault("smtp_source", []).append(s["maxrss_mb"])
            src_rate = None if "error" in s else count / s["seconds"]
            if "error" in s:
                b.errors["smtp_source"] = s["error"]
            print(f"  smtp_source run {k + 1}: {count} msgs in {s['seconds']:.3f} s "
                  f"({fmt(src_rate)} msg/s)", flush=True)
            b.add("smtp_source_msgs_per_s", src_rate)
            b.add("send_vs_smtp_source", ratio(rate, src_rate))
            wd = fresh(f"naive-send-{k}", store=store, smtp_port=port, pool=pool)
            n = min(b.a.naive_sample, m)
            r = b.measure("naive_send", "naive_send", wd, k, sample=n)
            nrate = r["sent"] / r["seconds"] if r and r["sent"] else None
            b.add("naive_msgs_per_s", nrate)
            b.add("naive_message_bytes", r and r["bytes"] / max(1, r["sent"]))
            b.add("send_vs_naive", ratio(rate, nrate))
            shutil.rmtree(wd, ignore_errors=True)
    finally:
        postfix.stop(sink)


# --- report -----------------------------------------------------------------------------------

ROWS = [  # (figure, label)
    ("ingest_files_per_s", "ingest N cards into an empty store (files/s)"),
    ("ingest_s", "  … seconds"),
    ("ingest_one_ms", "one more story into the N-story store (ms)"),
    ("publish_full_s", "full publish from the N-story store (s)"),
    ("publish_full_files", "  … files written"),
    ("write_floor_s", "  write floor: same bytes, bare loop, temp+rename (s)"),
    ("write_floor_files", "  … files written"),
    ("publish_check_s", "  `digest check` on the published store (s)"),
    ("publish_full_vs_floor_check", "  full publish / (floor + check)"),
    ("republish_s", "republish, nothing new (s)"),
    ("republish_written", "  … published files written (must be 0)"),
    ("republish_meta_written", "  … bookkeeping dot-files rewritten"),
    ("publish_one_s", "publish after one new story (s)"),
    ("publish_one_written", "  … files written"),
    ("publish_one_vs_full", "  … / full publish"),
    ("naive_feeds_s", "naive feeds: feedgen per feed, no pages (s)"),
    ("naive_feeds_vs_publish", "  … / full publish"),
    ("cmd_ingest_files_per_s", "`digest ingest` N cards, whole command (files/s)"),
    ("cmd_check_s", "`digest check` on the N-story store (s; baseline)"),
    ("cmd_ingest_one_s", "`digest ingest` one more card (s)"),
    ("cmd_ingest_one_vs_check", "  … / digest check"),
    ("cmd_republish_s", "`digest publish`, nothing new (s)"),
    ("cmd_republish_vs_check", "  … / digest check"),
    ("cmd_publish_one_s", "`digest publish` after one new story (s)"),
    ("cmd_publish_one_vs_check", "  … / digest check"),
    ("import_s", "import M subscribers CSV (s)"),
    ("message_bytes", "digest message size (bytes, sample mean)"),
    ("send_msgs_per_s", "digests to smtp-sink, end to end (msg/s)"),
    ("send_s", "  … seconds"),
    ("send_sent", "  … messages sent"),
    ("send_failed", "  … failed or bounced"),
    ("send_nothing_new", "  … subscribers with nothing new"),
    ("send_renders", "  … distinct bodies rendered"),
    ("smtp_source_msgs_per_s", "smtp-source, same size and concurrency (msg/s)"),
    ("send_vs_smtp_source", "  digests / smtp-source"),
    ("naive_msgs_per_s", "naive pipeline, 1 connection per message (msg/s)"),
    ("naive_message_bytes", "  … naive message size (bytes)"),
    ("send_vs_naive", "  digests / naive"),
]


def verdict(name: str, s: dict | None) -> str:
    if name not in TARGETS or s is None:
        return ""
    op, bound, unit = TARGETS[name]
    ok = s["median"] >= bound if op == ">=" else s["median"] <= bound
    return f"{'ok  ' if ok else 'MISS'} {op} {bound:g} {unit}"


def report(b: Bench, meta: dict) -> dict:
    stats = {k: summarize(v) for k, v in b.figures.items()}
    rss = {k: max(v) for k, v in b.rss.items()}
    # digest's own steps: the baselines (write floor, naive, smtp-source) are not digest
    ours = [v for k, v in rss.items() if k not in BASELINE_STEPS]
    peak = max(ours) if ours else None
    stats["peak_rss_mb"] = {"median": peak, "min": peak, "max": peak, "n": 1} if peak else None
    lines = [f"digest bench — {meta['stories']} stories, {meta['subscribers']} subscribers, "
             f"{meta['runs']} runs, {meta['machine']}, load {meta['loadavg_start'][0]:.1f}→"
             f"{meta['loadavg_end'][0]:.1f}",
             f"{'figure':52} {'median':>10} {'min':>10} {'max':>10}  target"]
    for name, label in ROWS:
        s = stats.get(name)
        if s is None and name not in b.figures:
            continue
        lines.append(f"{label:52} {fmt(s and s['median']):>10} {fmt(s and s['min']):>10} "
                     f"{fmt(s and s['max']):>10}  {verdict(name, s)}")
    lines.append("peak memory (max RSS of each step's process, MB):")
    for k, v in rss.items():
        bound = RSS_TARGETS.get(k)
        mark = "" if bound is None else f"{'':22}{'ok  ' if v <= bound else 'MISS'} <= {bound} MB"
        lines.append(f"  {k:50} {v:10.0f}{mark}")
    lines.append(f"{'  peak over digest steps (not the baselines)':52} {fmt(peak):>10}{'':22}{verdict('peak_rss_mb', stats['peak_rss_mb'])}")
    for k, e in b.errors.items():
        lines.append(f"ERROR {k}: {e}")
    for n in b.notes:
        lines.append(f"note: {n}")
    text = "\n".join(lines)
    print("\n" + text)
    return {"meta": meta, "figures": stats, "raw": b.figures, "max_rss_mb": rss,
            "errors": b.errors, "notes": b.notes, "table": text}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a few minutes")
    ap.add_argument("--stories", type=int, help="N stories (default 10000; --quick 1000)")
    ap.add_argument("--subscribers", type=int, help="M subscribers (default 100000; --quick 5000)")
    ap.add_argument("--runs", type=int, help="K runs of every step (default 3)")
    ap.add_argument("--naive-sample", type=int, default=None,
                    help="subscribers sent by the naive pipeline (default 1000; rate extrapolated)")
    ap.add_argument("--pool", type=int, default=4, help="SMTP concurrency for digests and smtp-source")
    ap.add_argument("--only", nargs="*", choices=["ingest", "publish", "commands", "send"],
                    help="phases to run (ingest always runs when a later phase needs its store)")
    ap.add_argument("--profile", nargs="*", metavar="STEP",
                    help="cProfile the first run of these steps (e.g. publish_full send_digests) "
                         "into DATA/profile-STEP.txt")
    ap.add_argument("--with-store-bench", action="store_true",
                    help="also run the store engineer's bench/bench_store.py and fold in its lines")
    ap.add_argument("--out", type=Path, help="results JSON (default DATA/results.json)")
    ap.add_argument("--data", type=Path, help="corpus, work dirs and results (default bench/out)")
    a = ap.parse_args(argv)
    global OUT
    OUT = (a.data or OUT).resolve()
    a.stories = a.stories or (1000 if a.quick else 10_000)
    a.subscribers = a.subscribers or (5000 if a.quick else 100_000)
    a.runs = a.runs or 3
    a.naive_sample = a.naive_sample or (500 if a.quick else 1000)
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"stories": a.stories, "subscribers": a.subscribers, "runs": a.runs,
            "naive_sample": a.naive_sample, "pool": a.pool,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}"}
    meta["loadavg_start"] = os.getloadavg()
    t0 = time.perf_counter()
    print(f"generating corpus: {a.stories} cards, {a.subscribers} subscribers", flush=True)
    cards, extra, csv = corpus(a.stories, a.subscribers)
    b = Bench(a)
    phases: list[tuple[str, Callable[[], None]]] = []
    state: dict[str, Path | None] = {}

    def ingest() -> None:
        state["store"] = phase_ingest(b, a.stories, cards, extra)

    phases.append(("ingest", ingest))
    if b.want("publish"):
        phases.append(("publish", lambda: state["store"] and phase_publish(b, state["store"], extra)))
    if b.want("commands"):
        phases.append(("commands", lambda: state["store"]
                       and phase_commands(b, a.stories, cards, state["store"], extra)))
    if b.want("send"):
        def send() -> None:
            subs = state["store"] and phase_subscribers(b, state["store"], csv)
            if subs:
                phase_send(b, subs, a.subscribers)
        phases.append(("send", send))
    for name, fn in phases:
        print(f"== {name}", flush=True)
        fn()
    if a.with_store_bench:
        print("== store (bench/bench_store.py)", flush=True)
        r = subprocess.run([sys.executable, str(HERE / "bench_store.py"), "--stories",
                            str(a.stories), "--repeat", "10", "--batches", "2"],
                           capture_output=True, text=True)
        lines = r.stdout.strip().splitlines() or [f"failed: {r.stderr.strip()[-300:]}"]
        b.notes += [f"bench_store: {x}" for x in lines]
    # The copies of stores and outputs are hundreds of MB at 10k; the corpus stays cached.
    shutil.rmtree(OUT / "tmpl", ignore_errors=True)
    shutil.rmtree(OUT / "work", ignore_errors=True)
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    meta["loadavg_end"] = os.getloadavg()
    res = report(b, meta)
    out = a.out or OUT / "results.json"
    out.write_text(json.dumps(res, indent=1, ensure_ascii=False), encoding="utf-8")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    shutil.copy(out, OUT / f"results-{a.stories}x{a.subscribers}-{stamp}.json")
    print(f"results: {out} ({meta['seconds']} s)")
    return 1 if b.errors else 0


if __name__ == "__main__":
    sys.exit(main())
