"""One benchmark step in a fresh process: `python bench/steps.py STEP WORKDIR JSON-ARGS`.

Each step times only its own operation and prints `BENCH_RESULT {json}` as its last line; the
parent (run.py) reads the process's peak memory from wait4(). BENCH_PROFILE=FILE wraps the
timed operation in cProfile and writes the top functions to FILE.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

AS_OF = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _noop(*_a: Any, **_k: Any) -> None:
    pass


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Run fn once; (result, seconds). Profiles it instead when BENCH_PROFILE is set."""
    prof_path = os.environ.get("BENCH_PROFILE")
    prof = cProfile.Profile() if prof_path else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    result = fn()
    if prof:
        prof.disable()
    dt = time.perf_counter() - t0
    if prof:
        buf = io.StringIO()
        st = pstats.Stats(prof, stream=buf)
        st.sort_stats("cumulative").print_stats(35)
        st.sort_stats("tottime").print_stats(25)
        Path(prof_path).write_text(buf.getvalue(), encoding="utf-8")
    return result, dt


def _n(v: Any) -> int:
    """Report fields may be counts or lists of items; the bench wants counts."""
    return v if isinstance(v, int) else len(v)


# Which pipeline submodule defines each function (docs/ARCHITECTURE.md).
_HOME = {"ingest_paths": "ingesting", "publish": "publishing", "send_digest": "sending",
         "preview": "sending", "import_subscribers": "subscribing"}


def pipeline(name: str) -> Callable:
    """`digest.pipeline.<name>`; while a sibling submodule is still being written (the package
    __init__ then fails to import), load just the submodule that defines it."""
    try:
        import digest.pipeline as p

        return getattr(p, name)
    except ImportError:
        import importlib
        import types

        import digest

        for mod in [m for m in sys.modules if m.startswith("digest.pipeline")]:
            del sys.modules[mod]
        pkg = types.ModuleType("digest.pipeline")
        pkg.__path__ = [str(Path(digest.__file__).parent / "pipeline")]
        sys.modules["digest.pipeline"] = pkg
        return getattr(importlib.import_module(f"digest.pipeline.{_HOME[name]}"), name)


def _config(workdir: Path):
    from digest.config import load_config

    return load_config(workdir / "config.toml")


def step_ingest(workdir: Path, a: dict) -> dict:
    ingest_paths = pipeline("ingest_paths")
    cfg = _config(workdir)
    paths = [Path(p) for p in a["paths"]]
    rep, dt = timed(lambda: ingest_paths(cfg, paths, as_of=AS_OF, echo=_noop))
    return {"seconds": dt, "added": _n(rep.added), "updated": _n(rep.updated),
            "unchanged": _n(rep.unchanged), "rejected": _n(rep.rejected),
            "rejects": [str(r) for r in rep.rejected[:3]]}


def step_publish(workdir: Path, a: dict) -> dict:
    publish = pipeline("publish")
    cfg = _config(workdir)
    rep, dt = timed(lambda: publish(cfg, now=NOW))
    return {"seconds": dt, "written": _n(rep.written), "unchanged": _n(rep.unchanged),
            "removed": _n(rep.removed)}


def step_write_floor(workdir: Path, a: dict) -> dict:
    """The write floor of a full publish: the very bytes it wrote (read first, not timed),
    written again by a bare Python loop into a fresh dir with its layout, a temp file +
    `os.replace` per file (no fsync: what a naive script does)."""
    from naive import read_tree, write_tree

    files = read_tree(Path(a["src"]))
    dst = Path(a["dst"])
    n, dt = timed(lambda: write_tree(files, dst))
    return {"seconds": dt, "written": n, "bytes": sum(len(b) for _, b in files)}


def step_naive_feeds(workdir: Path, a: dict) -> dict:
    from naive import naive_feeds

    from digest.store import Store

    cfg = _config(workdir)

    def run() -> int:
        store = Store(cfg.store.path)
        stories = store.get_stories([s.id for s in store.list_stories()])
        return naive_feeds(cfg, stories, NOW, workdir / "naive")

    n, dt = timed(run)
    return {"seconds": dt, "written": n}


def step_import(workdir: Path, a: dict) -> dict:
    from digest.store import Store

    import_subscribers = pipeline("import_subscribers")
    cfg = _config(workdir)
    _, dt = timed(lambda: import_subscribers(cfg, Path(a["csv"])))
    statuses = Counter(s.status for s in Store(cfg.store.path).list_subscribers())
    return {"seconds": dt, "statuses": dict(statuses)}


def step_activate(workdir: Path, a: dict) -> dict:
    """Setup, not measured: make every imported subscriber active (import may add them pending)."""
    from digest.store import Store

    store = Store(_config(workdir).store.path)
    subs = store.list_subscribers()
    for s in subs:
        s.status = "active"
    with store.transaction():
        store.upsert_subscribers(subs)
    return {"seconds": 0.0, "active": len(store.list_subscribers(status="active"))}


def step_send(workdir: Path, a: dict) -> dict:
    send_digest = pipeline("send_digest")
    cfg = _config(workdir)
    rep, dt = timed(lambda: send_digest(cfg, name=a.get("digest"), now=NOW))
    counts = {}
    for key in ("sent", "failed", "bounced", "ambiguous", "nothing_new", "already_sent", "renders"):
        v = getattr(rep, key, None)
        if v is not None:
            counts[key] = _n(v)
    return {"seconds": dt, **counts, "lines": list(rep.lines())[-3:]}


def step_probe(workdir: Path, a: dict) -> dict:
    """Setup: sizes of real digest messages for a sample of subscribers (via preview .eml)."""
    from digest.store import Store

    preview = pipeline("preview")
    cfg = _config(workdir)
    subs = Store(cfg.store.path).list_subscribers(status="active")
    step = max(1, len(subs) // a.get("sample", 40))
    sizes = []
    for i, s in enumerate(subs[::step]):
        out = workdir / f"probe-{i}.eml"
        p = preview(cfg, name=a.get("digest"), email=s.email, out=out, now=NOW)
        sizes.append(Path(p).stat().st_size)
    return {"seconds": 0.0, "sizes": sizes}


def step_naive_send(workdir: Path, a: dict) -> dict:
    from naive import naive_send

    from digest.store import Store

    cfg = _config(workdir)
    store = Store(cfg.store.path)
    stories = store.list_stories()  # index records, as the real send ranks them
    subs = store.list_subscribers(status="active")
    step = max(1, len(subs) // a["sample"])
    sample = subs[::step][: a["sample"]]
    (sent, size), dt = timed(lambda: naive_send(cfg, sample, stories, NOW))
    return {"seconds": dt, "sent": sent, "bytes": size}


STEPS = {name[5:]: fn for name, fn in globals().items() if name.startswith("step_")}


def main() -> None:
    step, workdir, args = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    result = STEPS[step](workdir, args)
    print("BENCH_RESULT " + json.dumps(result, ensure_ascii=False, default=str), flush=True)


if __name__ == "__main__":
    main()
