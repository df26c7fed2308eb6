"""Sender nodes on one PostgreSQL database: 1, 2 and 3 concurrent `digest send` processes
over the same subscribers (throughput total and per node, peak RSS per node), and one big
send (default 1,000,000 subscribers, bulk-loaded with COPY) for the peak RSS of a node.

    python bench/bench_nodes.py [--subscribers 20000] [--nodes 1 2 3] [--big 1000000]
                                [--big-mode dry|send] [--skip-nodes] [--out FILE]

A throwaway cluster (tests/support/postgres.py), Postfix's smtp-sink on 127.0.0.1
(bench/postfix.py) as the receiving server. Each configuration gets its own database,
copied from one template (stories ingested from seeds/, subscribers loaded), so every run
starts from the same state. A node is a `python -m digest send` process; its time runs from
its start to its exit (interpreter start-up included) and its peak RSS comes from wait4().
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import postfix  # noqa: E402
from tests.support.postgres import Cluster  # noqa: E402

OUT = REPO / "bench" / "out" / "nodes"
AS_OF = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
_SENT = re.compile(r"^\w+: (?:sent|would send) (\d+), already sent (\d+),.*?"
                   r"(?:claimed by another sender (\d+))?$", re.MULTILINE)


def project(where: Path, url: str, port: int) -> Path:
    """config.toml + seeds in `where`, [store] url and [smtp] to the sink."""
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    shutil.copytree(REPO / "seeds", where / "seeds")
    text = (REPO / "config.toml").read_text()
    for old, new in (('url = ""', f'url = "{url}"'), ('transport = "maildir"', 'transport = "smtp"'),
                     ("port = 25\n", f"port = {port}\n")):
        assert old in text, old
        text = text.replace(old, new, 1)
    (where / "config.toml").write_text(text)
    return where / "config.toml"


def digest(cfg: Path, *args: str, stderr=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "digest", "--config", str(cfg), *args],
                            cwd=cfg.parent, stdout=subprocess.PIPE, stderr=stderr,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def load_subscribers(url: str, n: int) -> float:
    """COPY n active subscribers (the mix of bench/gen.py, simplified: 45 % en+zh, 30 % en,
    25 % zh, UTC) straight into the subscribers table; returns seconds."""
    import psycopg

    from digest import codec
    from digest.models import Subscriber

    t0 = time.monotonic()
    created = AS_OF.isoformat()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY subscribers (email, data, status, created) FROM STDIN") as copy:
            for i in range(n):
                langs = ["en", "zh"] if i % 20 < 9 else ["en"] if i % 20 < 15 else ["zh"]
                email = f"reader{i:07d}@example.com"
                s = Subscriber(email=email, languages=langs, tags=[], timezone="UTC",
                               status="active", created=AS_OF)
                copy.write_row((email, codec.dumps(s.to_dict()).decode(), "active", created))
        conn.execute("ANALYZE subscribers")
    return time.monotonic() - t0


def template(pg: Cluster, name: str, port: int, subscribers: int) -> tuple[str, Path]:
    url = pg.create_db(name)
    cfg = project(OUT / name, url, port)
    p = digest(cfg, "ingest", "--as-of", AS_OF.isoformat())
    out, err = p.communicate()
    assert p.returncode == 0, err
    secs = load_subscribers(url, subscribers)
    print(f"# {name}: seeds ingested, {subscribers:,} subscribers loaded by COPY in {secs:.1f} s",
          flush=True)
    return url, cfg


def copy_db(pg: Cluster, tmpl: str, name: str) -> str:
    import psycopg

    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{tmpl}"')
    return pg.url(name)


def run_nodes(cfg: Path, k: int, *extra: str) -> dict:
    """k concurrent `digest send` processes; each node's sent count, seconds, peak RSS."""
    import threading

    logs = [open(cfg.parent / f"send-{i}.log", "w") for i in range(k)]  # noqa: SIM115
    t0 = time.monotonic()
    procs = [digest(cfg, "send", "--now", NOW.isoformat(), *extra, stderr=logs[i])
             for i in range(k)]
    nodes: list[dict] = [{} for _ in procs]

    def reap(i: int, p: subprocess.Popen) -> None:
        out = p.stdout.read()
        _pid, status, usage = os.wait4(p.pid, 0)  # reaped here: Popen would drop the rusage
        p.returncode = os.waitstatus_to_exitcode(status)
        nodes[i] = {"out": out, "rc": p.returncode, "seconds": time.monotonic() - t0,
                    "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}

    threads = [threading.Thread(target=reap, args=(i, p)) for i, p in enumerate(procs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for f in logs:
        f.close()
    result: dict = {"nodes": []}
    for i, n in enumerate(nodes):
        if n["rc"] != 0:
            raise SystemExit(f"digest send failed ({n['rc']}): see {logs[i].name}")
        m = _SENT.search(n["out"])
        assert m, n["out"]
        result["nodes"].append({"sent": int(m[1]), "already_sent": int(m[2]),
                                "claimed_elsewhere": int(m[3] or 0),
                                "seconds": round(n["seconds"], 2),
                                "peak_rss_mb": n["peak_rss_mb"]})
    result["seconds"] = round(max(n["seconds"] for n in result["nodes"]), 2)
    result["sent"] = sum(n["sent"] for n in result["nodes"])
    result["msg_per_s"] = round(result["sent"] / result["seconds"], 1)
    return result


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def run_sampled(cfg: Path, limit: float, every: float, *extra: str) -> dict:
    """One node for at most `limit` seconds (then SIGTERM... SIGKILL), sampling its RSS and
    peak RSS (VmRSS, VmHWM) and the journal's `sent` count every `every` seconds: for a send
    too long to finish here, the RSS curve shows whether memory grows with the list."""
    import psycopg

    url = re.search(r'^url = "([^"]+)"', cfg.read_text(), re.MULTILINE)[1]
    log = open(cfg.parent / "big-send.log", "w")  # noqa: SIM115
    t0 = time.monotonic()
    p = digest(cfg, "send", "--now", NOW.isoformat(), *extra, stderr=log)
    samples = []
    with psycopg.connect(url, autocommit=True) as conn:
        while p.poll() is None and time.monotonic() - t0 < limit:
            time.sleep(every)
            if p.poll() is not None:
                break
            sent = conn.execute("SELECT count(*) FROM deliveries_current WHERE state = 'sent'"
                                ).fetchone()[0]
            samples.append({"seconds": round(time.monotonic() - t0, 1), "sent": sent,
                            "rss_mb": round(_status_kb(p.pid, "VmRSS") / 1024, 1),
                            "peak_rss_mb": round(_status_kb(p.pid, "VmHWM") / 1024, 1)})
            print(f"  big send: {samples[-1]}", flush=True)
    finished = p.poll() is not None
    if not finished:
        p.kill()
    p.wait()
    log.close()
    return {"finished": finished, "returncode": p.returncode, "samples": samples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=20_000)
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--big", type=int, default=1_000_000, help="0 skips the big send")
    ap.add_argument("--big-mode", choices=("dry", "send"), default="send")
    ap.add_argument("--skip-nodes", action="store_true")
    ap.add_argument("--big-seconds", type=float, default=0,
                    help="stop the big send after this long, sampling RSS (0: run it to the end)")
    ap.add_argument("--out", type=Path, default=OUT / "results.json")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    tools = postfix.ensure()
    port = postfix.free_port()
    sink = postfix.start_sink(tools, port)
    results: dict = {"subscribers": args.subscribers, "runs": {}}
    try:
        with Cluster() as pg:
            if not args.skip_nodes:
                template(pg, "nodes_tmpl", port, args.subscribers)
                for k in args.nodes:
                    cfg = project(OUT / f"nodes_{k}", copy_db(pg, "nodes_tmpl", f"nodes_{k}"), port)
                    r = results["runs"][str(k)] = run_nodes(cfg, k)
                    per = ", ".join(f"{n['sent']:,} in {n['seconds']:.1f} s "
                                    f"({n['sent'] / n['seconds']:.0f}/s, RSS {n['peak_rss_mb']} MB"
                                    f", {n['claimed_elsewhere']} claimed elsewhere)"
                                    for n in r["nodes"])
                    print(f"{k} node(s): {r['sent']:,} messages in {r['seconds']:.1f} s = "
                          f"{r['msg_per_s']:.0f} msg/s total; per node: {per}", flush=True)
            if args.big:
                _url, cfg = template(pg, "big", port, args.big)
                extra = ("--dry-run",) if args.big_mode == "dry" else ()
                if args.big_seconds:
                    results["big"] = run_sampled(cfg, args.big_seconds, 15, *extra)
                    return
                r = results["big"] = run_nodes(cfg, 1, *extra)
                r["mode"] = args.big_mode
                n = r["nodes"][0]
                print(f"big ({args.big:,} subscribers, {args.big_mode}): {n['sent']:,} in "
                      f"{n['seconds']:.0f} s ({n['sent'] / n['seconds']:.0f}/s), "
                      f"peak RSS {n['peak_rss_mb']} MB", flush=True)
    finally:
        postfix.stop(sink)
        args.out.write_text(json.dumps(results, indent=2))
    print(f"# results in {args.out}")


if __name__ == "__main__":
    main()
