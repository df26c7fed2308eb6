"""Story pages of a big publish, rendered and staged in forked worker processes.

A full publish renders thousands of pages and creates as many files. One worker per CPU is
forked; the pages are cut into chunks, and each process takes the next chunk when it is done
with one (the chunk numbers wait in a pipe, read 4 bytes at a time), so no CPU idles while
another still has a long share. The parent builds the feeds meanwhile, then takes chunks
too (`join`). Each process writes its pages as temp files into the output's staging dir; the
workers hand back their names and the parent renames everything in `Tree.commit`, after one
`syncfs` (no flush while pages are written: each `syncfs` forces a journal commit that stalls
every file creation meanwhile; a flushing thread made a 10k-page publish ~40 % slower here).
"""

from __future__ import annotations

import os
import pickle
import struct
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


# Below this many pages a fork costs more than it saves (~5 ms vs ~0.3 ms per page).
PARALLEL_MIN_PAGES = 400
CHUNK = 48  # pages a process takes at a time: small enough that all end within ~15 ms
_MAX_CHUNKS = 8192  # chunk numbers (4 bytes each) a pipe holds without blocking the writer


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


class Pages:
    """The forked workers of one publish (from `fork_pages`; `len` is their number) and the
    chunks they and the parent take."""

    def __init__(self, store: Any, plan: Any, tree: Tree, stories: Sequence[Story],
                 size: int, queue: int) -> None:
        self.store, self.plan, self.tree, self.stories = store, plan, tree, stories
        self.size = size  # pages per chunk
        self.queue = queue  # read end of the pipe of chunk numbers
        self.procs: list[tuple[int, int]] = []  # (pid, read end of its result pipe)
        self.forked = 0

    def __len__(self) -> int:
        return self.forked

    def next_chunk(self) -> Sequence[Story] | None:
        """The next chunk nobody took yet; None when all are taken."""
        blob = os.read(self.queue, 4) if self.queue >= 0 else b""
        if len(blob) < 4:
            return None
        i = struct.unpack("=I", blob)[0] * self.size
        return self.stories[i:i + self.size]

    def render(self, same: list[str]) -> list[DamagedBody]:
        """Take chunks until none are left, rendering and staging them here."""
        damaged: list[DamagedBody] = []
        while (chunk := self.next_chunk()) is not None:
            damaged += render_pages(self.store, self.plan, self.tree, chunk, same)
        return damaged

    def drain(self) -> None:
        """Take every chunk left, unrendered (after an error here: the workers stop soon)."""
        if self.queue >= 0:
            while os.read(self.queue, 65536):
                pass

    def close(self) -> None:
        if self.queue >= 0:
            os.close(self.queue)
            self.queue = -1


def _worker(pages: Pages) -> tuple[list[tuple[str, Any]], list[str], list[DamagedBody]]:
    """In a worker: render and stage chunks; (staged (relpath, Staged), unchanged relpaths,
    the errors of stories skipped for a damaged body)."""
    same: list[str] = []
    try:
        damaged = pages.render(same)
        return pages.tree.take_staged(), same, damaged
    except BaseException:
        pages.tree.close()  # remove this worker's temp files
        pages.drain()  # the others stop after their chunk: this publish fails anyway
        raise


def fork_pages(store: Any, plan: Any, tree: Tree, stories: Sequence[Story]) -> Pages | None:
    """Fork one worker per CPU on the chunks of `stories`; None to do them here (few pages,
    one CPU, no fork, or other threads running: a fork copies only this thread, and a lock
    another thread holds, in logging or a library, would stay locked in the worker; the
    daemon's scheduler threads therefore render in-process). Workers inherit the output
    lock's file descriptor, so a publisher killed meanwhile keeps the lock until they are
    done. `join` collects them (and renders what they have not taken)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = min(cpus, 8)
    if n < 2 or len(stories) < PARALLEL_MIN_PAGES or not hasattr(os, "fork") \
            or threading.active_count() > 1:
        return None
    size = max(CHUNK, -(-len(stories) // _MAX_CHUNKS))
    count = -(-len(stories) // size)
    r, w = os.pipe()
    try:
        os.write(w, struct.pack(f"={count}I", *range(count)))  # fits: _MAX_CHUNKS * 4 bytes
    finally:
        os.close(w)  # all written: a read past the last chunk number is EOF
    pages = Pages(store, plan, tree, stories, size, r)
    for _ in range(n):
        rr, ww = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            os.close(rr)
            status = 0
            try:
                result: tuple[str, Any] = ("ok", _worker(pages))
            except BaseException as e:  # noqa: BLE001 - handed to the parent to raise
                result = ("error", e)
            try:
                blob = pickle.dumps(result)
            except Exception as e:  # noqa: BLE001 - an unpicklable error still has a text
                blob = pickle.dumps(("error", RuntimeError(f"publish worker: {result[1]!r} ({e})")))
            try:
                with os.fdopen(ww, "wb") as f:
                    f.write(blob)
            except BaseException:  # noqa: BLE001 - the parent is gone; nothing to tell
                status = 1
            os._exit(status)
        os.close(ww)
        pages.procs.append((pid, rr))
        pages.forked += 1
    return pages


def reap(pages: Pages) -> None:
    """Wait for workers after an error here, dropping their temp files."""
    pages.drain()
    try:
        results = _collect(pages, [])
    except BaseException:  # noqa: BLE001, S110 - the error being raised already says it
        return  # (their temp files are gone: `_collect` drops them with an error)
    _drop(results)


def join(pages: Pages) -> list[Any]:
    """Render the chunks no worker took yet here, then every worker's result, in order (the
    pages this process staged are in its tree already: its entry lists no staged files);
    the first error is raised (after all workers have finished, so none outlives this
    publish)."""
    same: list[str] = []
    try:
        damaged = pages.render(same)
    except BaseException:
        reap(pages)
        raise
    return _collect(pages, [([], same, damaged)])


def _collect(pages: Pages, results: list[Any]) -> list[Any]:
    error = None
    try:
        for pid, r in pages.procs:
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
    finally:
        pages.procs = []
        pages.close()
    if error is not None:
        _drop(results)  # the temp files of workers that did finish
        raise error
    return results


def _drop(results: list[Any]) -> None:
    for value in results:
        for _, staged in value[0]:
            Path(staged.tmp).unlink(missing_ok=True)
