"""Read and validate config.toml into Config (the only tomllib user). tomllib keeps no line
numbers, so every error names file, line and key by finding the key in the source text."""

from __future__ import annotations

import difflib
import re
import stat
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from digest.config.settings import (
    ARRAY_SECTIONS,
    BY_SECTION,
    FREE_SECTIONS,
    SECTION_CLASSES,
    BouncesConfig,
    Config,
    DigestConfig,
    DkimConfig,
    FeedsConfig,
    IngestConfig,
    RankConfig,
    ScheduleConfig,
    SiteConfig,
    SmtpConfig,
    StoreConfig,
    WebConfig,
    WebSubConfig,
)
from digest.config.values import _convert, _hint, _type_name
from digest.errors import ConfigError

_SLUG_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def default_config_text() -> str:
    """The commented default config.toml shipped inside the package."""
    return resources.files("digest").joinpath("default_config.toml").read_text(encoding="utf-8")


# --- locating keys in the source (tomllib keeps no line numbers) -------------------------

_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY_RE = re.compile(r"""^\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*[=.]""")


class _Locator:
    """Finds the line of `[section].key` (or the Nth `[[section]]`) in the source text."""

    def __init__(self, text: str) -> None:
        self.headers: dict[tuple[str, int], int] = {}
        self.keys: dict[tuple[str, int, str], int] = {}
        section, index, counts = "", 0, {}
        for no, line in enumerate(text.splitlines(), start=1):
            m = _HEADER_RE.match(line)
            if m:
                section = m.group(2).strip().strip('"')
                if m.group(1) == "[[":
                    index = counts[section] = counts.get(section, 0) + 1
                else:
                    index = 0
                self.headers.setdefault((section, index), no)
                continue
            k = _KEY_RE.match(line)
            if k:
                key = next(g for g in k.groups() if g is not None)
                self.keys.setdefault((section, index, key), no)
                # `smtp.host = ...` at top level (dotted key) also names a section
                if not section and line.strip().startswith(f"{key}."):
                    self.headers.setdefault((key, 0), no)

    def line(self, section: str, index: int = 0, key: str | None = None) -> int:
        if key is not None and (section, index, key) in self.keys:
            return self.keys[(section, index, key)]
        if (section, index) in self.headers:
            return self.headers[(section, index)]
        if ("", 0, section) in self.keys:  # `site = {...}` inline table at top level
            return self.keys[("", 0, section)]
        return 1



# --- validation: each value by digest.config.values, then the checks across keys ----------


class _Validator:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.loc = _Locator(text)

    def fail(self, section: str, index: int, key: str | None, problem: str, hint: str) -> ConfigError:
        where = f"[{section}.{index}]" if index else f"[{section}]"
        name = f"{where}.{key}" if key is not None else where
        line = self.loc.line(section, index, key)
        return ConfigError(f"{self.path}:{line}: {name}: {problem}", hint)

    def table(self, section: str, index: int, data: Any) -> dict[str, Any]:
        settings = BY_SECTION[section]
        if not isinstance(data, dict):
            raise self.fail(section, index, None, f"expected a table, got {_type_name(data)}",
                            f"write it as a [{section}] table")
        out: dict[str, Any] = {}
        for key, value in data.items():
            s = settings.get(key)
            if s is None:
                close = difflib.get_close_matches(key, settings, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self.fail(section, index, key, "unknown key",
                                f"{hint}known keys: {', '.join(settings)}")
            conv, problem = _convert(s, value)
            if problem:
                raise self.fail(section, index, key, problem, _hint(s))
            out[key] = conv
        return out


def _resolve(root: Path, p: str | Path) -> Path:
    p = Path(p).expanduser()
    return p if p.is_absolute() else root / p


def _not_found_hint(path: Path) -> str:
    """Point at --config first; suggest `digest init` in that directory only where a project
    could sensibly live (not /, not a directory we cannot write)."""
    import os

    where = path.absolute().parent
    use = "pass --config PATH to read an existing config file (or cd to your project)"
    if where.is_dir() and where != Path(where.anchor) and os.access(where, os.W_OK):
        flag = "" if path == Path("config.toml") else f" --config {path}"
        return f'{use}, or run "digest init{flag}" to start a new project in {where}'
    if not where.is_dir():
        return (f"{use}; {where} does not exist (mkdir -p {where} first to start a new "
                f'project there with "digest init --config {path}")')
    return (f"{use}; {where} is no place for a new project: run "
            f'"digest init --config DIR/config.toml" to start one in DIR')


def load_config(path: Path) -> Config:
    """Read config.toml; raise ConfigError naming file, line and key on any problem."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} not found (looked for {path.absolute()})", _not_found_hint(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}", "check the file's permissions and encoding") from e
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> Config:
    """Validate config text (pure apart from reading secrets' presence from the environment)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column \d+\)", str(e))
        line = m.group(1) if m else "1"
        reason = re.sub(r"\s*\(at line.*\)$", "", str(e))
        raise ConfigError(f"{path}:{line}: TOML syntax: {reason}", "fix the TOML syntax at that line") from e
    v = _Validator(path, text)
    known = set(SECTION_CLASSES) | set(FREE_SECTIONS)
    for section in data:
        if section not in known:
            close = difflib.get_close_matches(section, known, n=1)
            hint = f"did you mean [{close[0]}]? " if close else ""
            raise v.fail(section, 0, None, "unknown section",
                         f"{hint}known sections: {', '.join(sorted(known))}")
    root = path.resolve().parent
    sec: dict[str, dict[str, Any]] = {}
    for section in SECTION_CLASSES:
        if section not in ARRAY_SECTIONS:
            sec[section] = v.table(section, 0, data.get(section, {}))

    def paths_of(section: str, key: str, default: Any) -> Any:
        return sec[section].pop(key, default)

    store = StoreConfig(path=_resolve(root, paths_of("store", "path", "store")), **sec["store"])
    ingest = IngestConfig(paths=tuple(_resolve(root, p) for p in paths_of("ingest", "paths", ["seeds"])))
    feeds = FeedsConfig(output=_resolve(root, paths_of("feeds", "output", "public")), **sec["feeds"])
    smtp = SmtpConfig(maildir=_resolve(root, paths_of("smtp", "maildir", "maildir")), **sec["smtp"])
    _check_secrets(v, smtp, data.get("smtp", {}))
    key_file = sec["dkim"].pop("key_file", None)
    dkim = DkimConfig(key_file=_resolve(root, key_file) if key_file else None, **sec["dkim"])
    _check_dkim(v, dkim)
    bounce_box = sec["bounces"].pop("maildir", "")
    bounces = BouncesConfig(maildir=_resolve(root, bounce_box) if bounce_box else None,
                            **sec["bounces"])
    if bounces.maildir is not None and (_inside(bounces.maildir, feeds.output)
                                        or _inside(feeds.output, bounces.maildir)):
        raise v.fail("bounces", 0, "maildir",
                     f"{bounces.maildir} overlaps [feeds].output ({feeds.output}); everything "
                     "under it is served", "keep the bounce Maildir outside the published site")
    if bounces.imap_host and not bounces.imap_user:
        raise v.fail("bounces", 0, "imap_host", "imap_host is set but imap_user is empty",
                     "set [bounces] imap_user (the password comes from "
                     f"${bounces.password_env}), or clear imap_host")
    _check_overlap(v, path, store.path, feeds.output, smtp.maildir)

    tags = data.get("tags", {})
    if not isinstance(tags, dict):
        raise v.fail("tags", 0, None, f"expected a table, got {_type_name(tags)}",
                     'write it as [tags] with lines like "安全" = "security"')
    slug_of: dict[str, str] = {}
    for tag, slug in tags.items():
        if not isinstance(slug, str) or not _SLUG_RE.fullmatch(slug):
            raise v.fail("tags", 0, tag, f"{slug!r} is not an ASCII slug",
                         "use lowercase ASCII letters, digits and single hyphens, e.g. \"security\"")
        if slug in slug_of:
            # Two tags on one slug would write two feeds to one path, the second silently
            # replacing the first.
            raise v.fail("tags", 0, tag, f"slug {slug!r} is already used by {slug_of[slug]!r}",
                         "give every tag its own slug (or drop one of the two lines)")
        slug_of[slug] = tag

    raw_digests = data.get("digests")
    if raw_digests is None:
        digests: tuple[DigestConfig, ...] = (DigestConfig(),)
    else:
        if not isinstance(raw_digests, list) or not raw_digests:
            raise v.fail("digests", 0, None, "expected one or more [[digests]] tables",
                         "write each digest as a [[digests]] table with name, cron, max_stories, subject")
        items, seen = [], set()
        for i, raw in enumerate(raw_digests, start=1):
            d = DigestConfig(**v.table("digests", i, raw))
            if d.name in seen:
                raise v.fail("digests", i, "name", f"duplicate digest name {d.name!r}",
                             "give every [[digests]] table its own name")
            seen.add(d.name)
            items.append(d)
        digests = tuple(items)

    rank = RankConfig(**sec["rank"])
    if rank.hot + rank.quality + rank.impact <= 0:
        key = next((k for k in ("hot", "quality", "impact") if k in data.get("rank", {})), None)
        raise v.fail("rank", 0, key, "the weights hot, quality and impact sum to 0",
                     "give at least one weight a positive value, e.g. hot = 0.4")
    return Config(
        path=path, site=SiteConfig(**sec["site"]), store=store, ingest=ingest, feeds=feeds,
        websub=WebSubConfig(**sec["websub"]),
        rank=rank, tags=dict(tags), smtp=smtp, web=WebConfig(**sec["web"]),
        schedule=ScheduleConfig(**sec["schedule"]), digests=digests, dkim=dkim,
        bounces=bounces,
    )


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def _check_overlap(v: _Validator, config_path: Path, store: Path, output: Path, maildir: Path) -> None:
    """The output dir is served to the world: it must not hold the store (the link-signing
    secret, subscriber addresses), the Maildir (mail with live links) or config.toml."""
    for name, private in (("[store].path", store), ("[smtp].maildir", maildir)):
        if _inside(private, output) or _inside(output, private):
            raise v.fail("feeds", 0, "output",
                         f"{output} overlaps {name} ({private}); everything under it is served",
                         f"give [feeds].output and {name} separate directories, e.g. output = \"public\"")
    if _inside(config_path, output):
        raise v.fail("feeds", 0, "output", f"{output} holds {config_path.name}, which would be served",
                     'publish into a subdirectory, e.g. output = "public"')


def _check_secrets(v: _Validator, smtp: SmtpConfig, raw: dict[str, Any]) -> None:
    """A login without its password fails now, not at the first send hours later."""
    if (smtp.transport == "smtp" and smtp.username and smtp.security == "none"
            and smtp.host not in ("127.0.0.1", "::1", "localhost")):
        raise v.fail("smtp", 0, "security",
                     f'"none" would send the password for {smtp.username!r} in clear text to {smtp.host}',
                     'use security = "starttls" (port 587) or "tls" (port 465); plain AUTH is allowed only on loopback')
    if smtp.transport == "smtp" and smtp.username and not smtp.password():
        key = "password_env" if "password_env" in raw else "username"
        raise v.fail("smtp", 0, key,
                     f"environment variable {smtp.password_env} is not set (needed for username)",
                     f"export {smtp.password_env}=... before starting digest, or clear [smtp].username")


def _check_dkim(v: _Validator, dkim: DkimConfig) -> None:
    """Signing needs all three of domain, selector and key_file, and a private key only its
    owner can read (anyone who reads it can sign mail as the domain)."""
    given = {k: bool(getattr(dkim, k)) for k in ("domain", "selector", "key_file")}
    if any(given.values()) and not all(given.values()):
        missing = [k for k, ok in given.items() if not ok]
        raise v.fail("dkim", 0, missing[0], "is missing: signing needs domain, selector and "
                     "key_file together", f"set [dkim] {', '.join(missing)}, or clear the others")
    if dkim.key_file is None:
        return
    try:
        st = dkim.key_file.stat()
    except OSError as e:
        raise v.fail("dkim", 0, "key_file", f"{dkim.key_file}: {e.strerror or e}",
                     "give the path of the PEM private key (digest dkim keygen writes one)") from e
    if not stat.S_ISREG(st.st_mode):
        raise v.fail("dkim", 0, "key_file", f"{dkim.key_file} is not a file",
                     "give the path of the PEM private key")
    if st.st_mode & 0o044:
        raise v.fail("dkim", 0, "key_file",
                     f"{dkim.key_file} is readable by group or others "
                     f"(mode {stat.S_IMODE(st.st_mode):03o})",
                     f"chmod 600 {dkim.key_file}: only its owner may read the private key")
