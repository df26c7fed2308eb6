"""The bounce mailbox `digest bounces` reads (stdlib only): a Maildir, or an IMAP folder over
TLS. Each message is handed out with a key; `done(key)` moves it out of the way (Maildir:
renamed into the `.processed` Maildir++ folder; IMAP: moved to `digest-processed`), so it is
never handled twice, while one that is not `done` stays where it is. `done` answers False
when another reader (a second `digest bounces` at the same time) moved it first."""

from __future__ import annotations

import imaplib
import os
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

from digest.config import BouncesConfig
from digest.errors import DigestError

PROCESSED = "processed"  # Maildir++ folder `.processed`; IMAP folder `digest-processed`
IMAP_PROCESSED = "digest-processed"
MAX_MESSAGE_BYTES = 10_000_000  # a report over this is not read (left and reported)
IMAP_TIMEOUT = 60.0


class InboxError(DigestError):
    """The bounce mailbox cannot be opened or read."""


class Inbox:
    """One pass over a mailbox: `messages()`, `done(key)` for each handled one, `close()`."""

    where: str = ""

    def messages(self) -> Iterator[tuple[str, bytes | None]]:
        """(key, bytes) per message; bytes None when it is too big to read."""
        raise NotImplementedError

    def done(self, key: str) -> bool:
        """Move a handled message out of the way; False when someone else already did."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Inbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MaildirInbox(Inbox):
    """A Maildir: new/ and cur/ are read (a person's mail client may have moved messages to
    cur/); a handled message is renamed into `.processed/cur/` with the Seen flag — one
    rename on one file system, so it is either still in the inbox or processed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.where = f"Maildir {self.path}"
        if not (self.path / "new").is_dir() or not (self.path / "cur").is_dir():
            raise InboxError(f"[bounces] maildir {self.path} is not a Maildir (no new/ and cur/)",
                             "point it at the Maildir your mail server delivers the return "
                             "path's mail to")
        self.processed = self.path / f".{PROCESSED}"
        for sub in ("cur", "new", "tmp"):
            (self.processed / sub).mkdir(parents=True, exist_ok=True, mode=0o700)

    def messages(self) -> Iterator[tuple[str, bytes | None]]:
        for sub in ("new", "cur"):
            try:
                names = sorted(os.listdir(self.path / sub))
            except OSError as e:
                raise InboxError(f"{self.where}: cannot list {sub}/: {e.strerror or e}",
                                 "check the directory's permissions") from e
            for name in names:
                if name.startswith("."):
                    continue
                file = self.path / sub / name
                try:
                    if file.stat().st_size > MAX_MESSAGE_BYTES:
                        yield f"{sub}/{name}", None
                        continue
                    data = file.read_bytes()
                except FileNotFoundError:  # moved meanwhile (another reader, a mail client)
                    continue
                yield f"{sub}/{name}", data

    def done(self, key: str) -> bool:
        sub, _, name = key.partition("/")
        base = name.split(":2,")[0]
        flags = name.split(":2,")[1] if ":2," in name else ""
        flags = "".join(sorted(set(flags) | {"S"}))
        source = self.path / sub / name
        try:
            os.rename(source, self.processed / "cur" / f"{base}:2,{flags}")
        except FileNotFoundError as e:
            if not (self.processed / "cur").is_dir():
                raise InboxError(f"{self.where}: {self.processed / 'cur'} is gone",
                                 "restore it (digest creates it when it starts)") from e
            if source.exists():
                raise
            return False  # another run (or a mail client) moved it first
        return True


class ImapInbox(Inbox):
    """An IMAP folder over TLS (certificate checked); handled messages are moved to the
    `digest-processed` folder: MOVE where the server has it (RFC 6851), else COPY, \\Deleted
    and at once UID EXPUNGE of that message (UIDPLUS, RFC 4315) or EXPUNGE, so a run that
    dies after the copy leaves no flagged message behind. Messages flagged \\Deleted (by a
    run that died before its expunge, or a mail client) are never read."""

    def __init__(self, cfg: BouncesConfig, password: str,
                 context: ssl.SSLContext | None = None) -> None:
        self.where = f"imaps://{cfg.imap_host}:{cfg.imap_port}/{cfg.imap_folder}"
        hint = ("check [bounces] imap_host, imap_port, imap_user and the password in "
                f"${cfg.password_env}")
        try:
            self.conn = imaplib.IMAP4_SSL(cfg.imap_host, cfg.imap_port,
                                          ssl_context=context or ssl.create_default_context(),
                                          timeout=IMAP_TIMEOUT)
        except (OSError, imaplib.IMAP4.error) as e:
            raise InboxError(f"{self.where}: cannot connect: {e}", hint) from e
        try:
            self.conn.login(cfg.imap_user, password)
            typ, _ = self.conn.select(_quote(cfg.imap_folder))
            if typ != "OK":
                raise InboxError(f"{self.where}: no folder {cfg.imap_folder!r}",
                                 "set [bounces] imap_folder to the folder bounces arrive in")
            self.conn.create(IMAP_PROCESSED)  # NO when it exists: fine
        except (OSError, imaplib.IMAP4.error) as e:
            self.close()
            raise InboxError(f"{self.where}: {e}", hint) from e
        caps = {(c if isinstance(c, bytes) else str(c).encode()).upper()
                for c in self.conn.capabilities}
        self.move = b"MOVE" in caps
        self.uidplus = b"UIDPLUS" in caps

    def messages(self) -> Iterator[tuple[str, bytes | None]]:
        try:
            typ, data = self.conn.uid("SEARCH", None, "UNDELETED")
            uids = data[0].split() if typ == "OK" and data and data[0] else []
            for uid in uids:
                typ, sized = self.conn.uid("FETCH", uid, "(RFC822.SIZE)")
                m = re.search(rb"RFC822\.SIZE (\d+)", sized[0] if sized and
                              isinstance(sized[0], bytes) else b"")
                if m and int(m.group(1)) > MAX_MESSAGE_BYTES:
                    yield uid.decode(), None
                    continue
                typ, parts = self.conn.uid("FETCH", uid, "(BODY.PEEK[])")
                body = next((p[1] for p in parts or [] if isinstance(p, tuple)), None)
                if typ == "OK" and body is not None:
                    yield uid.decode(), body
        except (OSError, imaplib.IMAP4.error) as e:
            raise InboxError(f"{self.where}: reading failed: {e}",
                             "run `digest bounces` again; handled messages are not redone") from e

    def done(self, key: str) -> bool:
        if self.move:
            typ, _ = self.conn.uid("MOVE", key, IMAP_PROCESSED)
            if typ == "OK":
                return True
        typ, _ = self.conn.uid("COPY", key, IMAP_PROCESSED)
        if typ != "OK":
            raise InboxError(f"{self.where}: cannot copy message {key} to {IMAP_PROCESSED}",
                             f"create the folder {IMAP_PROCESSED} on the server")
        self.conn.uid("STORE", key, "+FLAGS.SILENT", r"(\Deleted)")
        # At once, not at close(): a run that dies in between must not leave it to be read
        # (and copied) again. UID EXPUNGE removes only this message; plain EXPUNGE removes
        # every \Deleted one in the folder, which is what close() used to do anyway.
        typ, _ = self.conn.uid("EXPUNGE", key) if self.uidplus else ("NO", None)
        if typ != "OK":
            self.conn.expunge()
        return True

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is None:
            return
        try:
            conn.logout()
        except (OSError, imaplib.IMAP4.error):
            pass
        self.conn = None


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def open_inbox(cfg: BouncesConfig) -> Inbox:
    """The mailbox [bounces] names (a Maildir wins over IMAP); InboxError when none is set."""
    if cfg.maildir:
        return MaildirInbox(cfg.maildir)
    if cfg.imap_host:
        password = cfg.password()
        if not password:
            raise InboxError(f"[bounces] imap_host is set but ${cfg.password_env} is empty",
                             f"export {cfg.password_env}=... (never in config.toml)")
        return ImapInbox(cfg, password)
    raise InboxError("no bounce mailbox: [bounces] maildir and imap_host are both empty",
                     "set [bounces] maildir (or imap_host, imap_user) in config.toml")
