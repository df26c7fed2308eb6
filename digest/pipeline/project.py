"""A project on disk: `digest init` (config, inbox, samples, store), whether the store exists
(only init, ingest, run and store copy create one), and the one-daemon-per-store lock."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from digest.config import Config, default_config_text, load_config
from digest.errors import DigestError, StoreError
from digest.fileio import held_by_another, locked
from digest.store import open_store

INBOX = "inbox"  # the directory `digest init` creates and names in [ingest] paths
DAEMON_LOCK = "daemon.lock"  # in the embedded store directory: holds the daemon's pid
# The embedded store's marker: created by the first open, with the schema version in it.
STORE_MARKER = "stories.json"
_PATHS_LINE = re.compile(r'^paths = \["seeds"\]$', re.M)


@dataclass
class InitReport:
    config: Path
    inbox: Path
    store: str
    samples: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"wrote {self.config}", f"created {self.inbox}/ (the inbox: [ingest] paths)"]
        if self.samples:
            out.append(f"copied {len(self.samples)} sample stories into {self.inbox}/")
        out.append(f"created the store in {self.store}")
        flag = "" if self.config.name == "config.toml" and \
            self.config.absolute().parent == Path.cwd() else f" --config {self.config}"
        out += [
            "next steps:",
            f"  1. edit {self.config}: [site] base_url, [smtp] (transport, host, sender)",
            f"  2. drop story files into {self.inbox}/ (or run `digest init --samples` in a "
            "new directory for examples)" if not self.samples
            else f"  2. add your own story files to {self.inbox}/",
            f"  3. digest run --once{flag}   # ingest, publish, send what is due; then",
            f"     digest run{flag}          # the daemon: schedules + web server on "
            "[web] host:port",
            f"  see `digest check{flag}` for the effective settings and `digest status{flag}` "
            "for what the store holds",
        ]
        return out


def sample_files() -> list[Path]:
    """The sample stories shipped with the package (the repository's seeds/)."""
    root = resources.files("digest").joinpath("seeds")
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        return sorted(Path(str(p)) for p in root.iterdir()
                      if p.name.endswith((".txt", ".json", ".md")))
    return []


def init_project(config_path: Path, samples: bool = False) -> InitReport:
    """Write the commented default config at `config_path` with `[ingest] paths = ["inbox"]`,
    create that inbox (with the sample stories when asked) and the store, so that
    `digest run --once` right after works without a warning."""
    config_path = Path(config_path)
    if config_path.exists():
        raise DigestError(f"{config_path} already exists; not overwriting it",
                          "edit it, or move it away and run `digest init` again")
    text, n = _PATHS_LINE.subn(f'paths = ["{INBOX}"]', default_config_text(), count=1)
    assert n == 1, "default_config.toml lost its [ingest] paths line"
    try:
        config_path.write_text(text, encoding="utf-8")
    except OSError as e:
        parent = config_path.parent
        hint = (f"create the directory first (mkdir -p {parent}), or give another --config path"
                if not parent.exists() else
                f"check that {parent} is a writable directory, or give another path")
        raise DigestError(f"{config_path}: cannot write ({e.strerror or e})", hint) from e
    config = load_config(config_path)
    inbox = config.root / INBOX
    inbox.mkdir(parents=True, exist_ok=True)
    copied = []
    if samples:
        found = sample_files()
        if not found:
            raise DigestError("no sample stories found in this installation",
                              "reinstall digest, or copy story files into the inbox yourself")
        for src in found:
            dst = inbox / src.name
            if not dst.exists():
                shutil.copyfile(src, dst)
                copied.append(dst)
    store = open_store(config.store)
    store.close()
    return InitReport(config=config_path, inbox=_shown(inbox), store=store_where(config),
                      samples=copied)


def _shown(path: Path) -> Path:
    with contextlib.suppress(ValueError):
        return path.relative_to(Path.cwd())
    return path


# --- does the store exist? ---------------------------------------------------------------------


def store_where(config: Config) -> str:
    """Where the store is, for messages (a url carries no password: the loader refuses one)."""
    return config.store.url or str(config.store.path)


def store_exists(config: Config) -> bool:
    """Whether the configured store exists, without creating it. A PostgreSQL store counts as
    existing when it can be reached (opening it creates its tables, as `init` would)."""
    if config.store.url:
        open_store(config.store).close()  # a StoreError names the url when it is unreachable
        return True
    return (Path(config.store.path) / STORE_MARKER).is_file()


def require_store(config: Config) -> None:
    """Raise a DigestError naming the store and the fix when it does not exist: commands that
    only read or change what is stored never create an empty store by accident (a wrong
    --config or [store] path would otherwise look like an install with no data)."""
    if store_exists(config):
        return
    flag = "" if config.path.name == "config.toml" and config.path.absolute().parent == \
        Path.cwd() else f" --config {config.path}"
    raise StoreError(
        f"no store at {config.store.path} (the [store] path of {config.path})",
        f"run `digest ingest{flag}` (or `digest run --once{flag}`) to create it with your "
        "stories, or fix [store] path if the store lives elsewhere")


# --- one daemon per embedded store ---------------------------------------------------------


@contextlib.contextmanager
def daemon_lock(config: Config) -> Iterator[None]:
    """Held for the life of `digest run` on an embedded store: a second daemon on the same
    store is refused with the pid of the first (a kernel lock, gone with a killed holder).
    On PostgreSQL several daemons are fine (leader election and journal claims)."""
    if config.store.url:
        yield
        return
    open_store(config.store).close()  # creates the store directory (run may)
    path = Path(config.store.path) / DAEMON_LOCK
    try:
        # A moment's wait: `digest status` may be asking the lock (a shared flock) now.
        held = locked(path, timeout=1.0, what="store", error=StoreError)
        held.__enter__()
    except StoreError as e:
        # The pid file may be stale (a killed daemon's, not yet rewritten by the holder),
        # and a stale pid may name an unrelated process now: never suggest killing it.
        pid = _read_pid(path)
        if pid is not None and not _alive(pid):
            pid = None
        who = f"process {pid}" if pid else "another process"
        raise StoreError(
            f"another digest daemon ({who}) is running on the store {config.store.path}",
            f"stop that `digest run` first (its pid file says {pid}; check with `ps -p {pid}`)"
            if pid else "stop the other `digest run` first") from e
    try:
        with contextlib.suppress(OSError):
            path.write_text(f"{os.getpid()}\n", encoding="ascii")
        yield
    finally:
        with contextlib.suppress(OSError):
            path.write_text("", encoding="ascii")
        held.__exit__(None, None, None)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").strip() or 0) or None
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def store_locked_by(config: Config) -> int | None:
    """The pid of the daemon holding the daemon lock, None when none does (for `digest
    status`). The lock is asked, not the pid file: a SIGKILLed daemon leaves its pid there,
    and the kernel may have given that pid to another process since."""
    if config.store.url:
        return None
    path = Path(config.store.path) / DAEMON_LOCK
    if not path.is_file():
        return None
    pid = _read_pid(path)
    try:
        held = held_by_another(path)
    except OSError:  # cannot ask the lock: believe a pid that names a live process
        return pid if pid is not None and _alive(pid) else None
    # Held: a daemon runs (its pid is None in the instant before it writes it). Free: no
    # daemon runs, and the pid is a killed one's.
    return pid if held else None


__all__ = ["DAEMON_LOCK", "INBOX", "InitReport", "daemon_lock", "init_project", "require_store",
           "sample_files", "store_exists", "store_where"]
