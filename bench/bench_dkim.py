"""DKIM benchmark: `send_digest` to N subscribers over SMTP, unsigned vs signed (RSA 2048 and
Ed25519), msg/s of each and the signed/unsigned ratio; plus the per-message cost of signing
alone (our signer vs `dkim.sign`, dkimpy's whole-message API, on the same messages).

One store is built once (the seed stories, N subscribers imported from CSV: 45 % en+zh,
30 % en, 25 % zh), then every timed run sends from a fresh copy of it, so each run sends N
messages, after one unmeasured warm-up send. Variants are interleaved run by run, in a
rotated order (a load spike on the shared machine hits all of
them alike); figures are median (min–max) over the runs. The server is Postfix's smtp-sink
(bench/postfix.py, the same sink as bench/run.py) or, with `--server aiosmtpd` or when
smtp-sink cannot be fetched, the tests' loopback aiosmtpd, which is itself slower.

usage: python bench/bench_dkim.py [--subscribers 5000] [--runs 3] [--server sink|aiosmtpd]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from digest.config import DkimConfig  # noqa: E402
from digest.mail.dkim import keygen, load_signer  # noqa: E402
from digest.pipeline import import_subscribers  # noqa: E402
from digest.pipeline.sending import send_digest  # noqa: E402
from tests.support.send import NOW, make_project  # noqa: E402

DOMAIN = "news.example.org"


def _subscribers_csv(path: Path, n: int) -> None:
    langs = ["en,zh"] * 9 + ["en"] * 6 + ["zh"] * 5
    rows = ["email,languages,tags,timezone"]
    rows += [f"reader{i:06d}@example.com,\"{langs[i % len(langs)]}\",,UTC" for i in range(n)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _server(kind: str):
    """(host, port, stop) of a sink that accepts and discards everything."""
    if kind == "sink":
        try:
            import postfix

            tools = postfix.ensure()
            port = postfix.free_port()
            proc = postfix.start_sink(tools, port)
            return "127.0.0.1", port, lambda: postfix.stop(proc), "smtp-sink"
        except Exception as e:  # noqa: BLE001 - fall back, say why
            print(f"smtp-sink unavailable ({e}); using aiosmtpd", file=sys.stderr)
    from tests.support.smtp_server import SMTPServer

    srv = SMTPServer().__enter__()
    return srv.host, srv.port, lambda: srv.__exit__(None, None, None), "aiosmtpd"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--server", choices=("sink", "aiosmtpd"), default="sink")
    args = ap.parse_args()

    host, port, stop, server = _server(args.server)
    work = Path(tempfile.mkdtemp(prefix="bench-dkim-"))
    try:
        base = work / "base"
        base.mkdir()
        config = make_project(base, transport="smtp", host=host, port=port,
                              sender=f"AI News <digest@{DOMAIN}>", timeout=30.0)
        _subscribers_csv(base / "subs.csv", args.subscribers)
        report = import_subscribers(config, base / "subs.csv")
        assert not report.bad, report.bad
        keys = {"rsa": work / "rsa.pem", "ed25519": work / "ed25519.pem"}
        for alg, path in keys.items():
            keygen(DOMAIN, "bench", path, alg)
        variants = {"unsigned": DkimConfig()}
        variants.update({f"DKIM {alg}": DkimConfig(domain=DOMAIN, selector="bench",
                                                   key_file=path)
                         for alg, path in keys.items()})
        rates: dict[str, list[float]] = {v: [] for v in variants}
        sample: list[bytes] = []
        # One unmeasured send first (imports, template compilation, page cache), then the
        # variants in a rotated order per run, so none always goes first.
        warm = work / "warm"
        shutil.copytree(config.store.path, warm)
        send_digest(dataclasses.replace(config, store=dataclasses.replace(config.store,
                                                                          path=warm)), now=NOW)
        shutil.rmtree(warm)
        names = list(variants)
        for run in range(args.runs):
            for name in names[run % len(names):] + names[:run % len(names)]:
                dk = variants[name]
                store = work / f"run{run}-{name.replace(' ', '-')}"
                shutil.copytree(config.store.path, store)
                cfg = dataclasses.replace(config, dkim=dk, store=dataclasses.replace(
                    config.store, path=store))
                t0 = time.perf_counter()
                r = send_digest(cfg, now=NOW)
                dt = time.perf_counter() - t0
                assert len(r.sent) == args.subscribers and not r.failed, r.lines()[:3]
                rates[name].append(args.subscribers / dt)
                print(f"run {run + 1} {name:<14} {args.subscribers / dt:8.0f} msg/s "
                      f"({dt:.2f} s, {r.renders} distinct bodies)", flush=True)
                shutil.rmtree(store)
        # Signing alone, on real messages: ours vs dkimpy's whole-message dkim.sign.
        from digest.mail.editions import Job
        from digest.mail.message import Composer
        from digest.store import Store

        st = Store(config.store.path)
        stories = list(st.list_stories())[:10]
        subs = list(st.iter_subscribers())[:200]
        comp = Composer(config, config.digests[0], b"x" * 32, NOW)
        sample = [comp.message(Job(s, "2026-11-22", stories))[0] for s in subs]
        sign_costs = {}
        import dkim

        for alg, path in keys.items():
            signer = load_signer(DkimConfig(domain=DOMAIN, selector="bench", key_file=path))
            t0 = time.perf_counter()
            for m in sample:
                signer.sign(m)
            ours = (time.perf_counter() - t0) / len(sample) * 1000
            pem = path.read_bytes()
            if alg == "ed25519":  # dkimpy's own format for Ed25519 keys: the base64 seed
                import base64

                from cryptography.hazmat.primitives import serialization

                raw = signer.key.private_bytes(serialization.Encoding.Raw,
                                               serialization.PrivateFormat.Raw,
                                               serialization.NoEncryption())
                pem = base64.b64encode(raw)
            n = min(len(sample), 50)
            t0 = time.perf_counter()
            for m in sample[:n]:
                dkim.sign(m, b"bench", DOMAIN.encode(), pem,
                          signature_algorithm=b"ed25519-sha256" if alg == "ed25519"
                          else b"rsa-sha256", canonicalize=(b"relaxed", b"relaxed"))
            theirs = (time.perf_counter() - t0) / n * 1000
            sign_costs[alg] = (ours, theirs)
    finally:
        stop()
        shutil.rmtree(work, ignore_errors=True)

    def fmt(xs: list[float]) -> str:
        return f"{statistics.median(xs):,.0f} ({min(xs):,.0f}–{max(xs):,.0f})"

    size = statistics.mean(len(m) for m in sample) if sample else 0
    print(f"\n{args.subscribers} digests per run to {server} on 127.0.0.1, {args.runs} runs, "
          f"mean message {size:,.0f} bytes; msg/s median (min–max):")
    base_rates = rates["unsigned"]
    for name, xs in rates.items():
        ratio = [x / b for x, b in zip(xs, base_rates, strict=True)]
        print(f"  {name:<14} {fmt(xs):>24} msg/s   ratio to unsigned "
              f"{statistics.median(ratio):.2f} ({min(ratio):.2f}–{max(ratio):.2f})")
    for alg, (ours, theirs) in sign_costs.items():
        print(f"  signing one message, {alg:<8}: ours {ours:.3f} ms, dkim.sign {theirs:.3f} ms "
              f"({theirs / ours:.0f}x)")


if __name__ == "__main__":
    main()
