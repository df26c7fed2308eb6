"""Story pages of a big publish, rendered and staged in forked worker processes.

A full publish renders thousands of pages (Jinja2, ~0.3 ms each) and creates as many files:
one worker per CPU takes a share, writes temp files into the output's staging dir and hands
back their names; the parent renames them with everything else in `Tree.commit`.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from digest.models import Story
from digest.publish.site import story_path
from digest.publish.tree import Tree
from digest.store.base import DamagedBody


def load_body(store: Any, s: Story) -> Story:
    """The story with its body (the index record if the store no longer has it). Raises
    DamagedBody when its body cannot be read: the caller skips that story."""
    return store.get_story(s.id) or s


# Below this many pages a fork costs more than it saves (~5 ms vs ~0.4 ms per page).
PARALLEL_MIN_PAGES = 400


def render_pages(store: Any, plan: Any, tree: Tree, stories: Sequence[Story],
                 same: list[str]) -> list[DamagedBody]:
    """Render and stage the pages of `stories` (a page with the same bytes goes to `same`);
    a story whose body cannot be read is skipped and its error returned."""
    damaged: list[DamagedBody] = []
    for s in stories:
        try:
            full = load_body(store, s)
        except DamagedBody as e:
            damaged.append(e)
            continue
        rel, data = story_path(s.id), plan.story_page(full)
        if tree.differs(rel, data):
            tree.stage(rel, data)
        else:
            same.append(rel)
    return damaged


def _pages_chunk(store: Any, plan: Any, tree: Tree, stories: Sequence[Story]
                 ) -> tuple[list[tuple[str, Any]], list[str], list[DamagedBody]]:
    """In a worker: render and stage pages; (staged (relpath, Staged), unchanged relpaths,
    the errors of stories skipped for a damaged body)."""
    same: list[str] = []
    try:
        damaged = render_pages(store, plan, tree, stories, same)
        return tree.take_staged(), same, damaged
    except BaseException:
        tree.close()  # remove this worker's temp files
        raise


def fork_pages(store: Any, plan: Any, tree: Tree,
                stories: Sequence[Story]) -> list[tuple[int, int]] | None:
    """Start one forked worker per CPU on a share of `stories`; None to do them here
    (few pages, one CPU, no fork, or other threads running: a fork copies only this thread,
    and a lock another thread holds, in logging or a library, would stay locked in the
    worker; the daemon's scheduler threads therefore render in-process). Workers inherit
    the output lock's file descriptor, so a publisher killed meanwhile keeps the lock until
    they are done."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = min(cpus, 8)
    if n < 2 or len(stories) < PARALLEL_MIN_PAGES or not hasattr(os, "fork") \
            or threading.active_count() > 1:
        return None
    size = -(-len(stories) // n)
    procs = []
    for i in range(n):
        chunk = stories[i * size:(i + 1) * size]
        if not chunk:
            break
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            os.close(r)
            status = 0
            try:
                result: tuple[str, Any] = ("ok", _pages_chunk(store, plan, tree, chunk))
            except BaseException as e:  # noqa: BLE001 - handed to the parent to raise
                result = ("error", e)
            try:
                blob = pickle.dumps(result)
            except Exception as e:  # noqa: BLE001 - an unpicklable error still has a text
                blob = pickle.dumps(("error", RuntimeError(f"publish worker: {result[1]!r} ({e})")))
            try:
                with os.fdopen(w, "wb") as f:
                    f.write(blob)
            except BaseException:  # noqa: BLE001 - the parent is gone; nothing to tell
                status = 1
            os._exit(status)
        os.close(w)
        procs.append((pid, r))
    return procs


def reap(procs: list[tuple[int, int]]) -> None:
    """Wait for workers after an error here, dropping their temp files."""
    try:
        join(procs)
    except BaseException:  # noqa: BLE001, S110 - the error being raised already says it
        pass


def join(procs: list[tuple[int, int]]) -> list[Any]:
    """Every worker's result, in order; the first worker's error is raised (after all
    workers have finished, so none outlives this publish)."""
    results, error = [], None
    for pid, r in procs:
        with os.fdopen(r, "rb") as f:
            blob = f.read()
        _, status = os.waitpid(pid, 0)
        try:
            kind, value = pickle.loads(blob) if blob else ("error", None)
        except Exception:  # noqa: BLE001
            kind, value = "error", None
        if kind == "ok":
            results.append(value)
        elif error is None:
            error = value if isinstance(value, BaseException) else RuntimeError(
                f"publish worker {pid} died (status {status})")
    if error is not None:
        for value in results:  # the temp files of workers that did finish
            for _, staged in value[0]:
                Path(staged.tmp).unlink(missing_ok=True)
        raise error
    return results
