"""The site secret that signs subscription links: the env var named by [web] secret_env, else
one generated once and kept in the store; a fingerprint notices processes that disagree."""

from __future__ import annotations

import hashlib
import logging
import os

from digest.config import Config
from digest.store import Store

log = logging.getLogger("digest.send")  # the daemon log has always shown these under "send"

SECRET_FINGERPRINT_KEY = "secret_fingerprint"  # store meta: {"env": NAME, "fingerprint": hex}
SITE_SECRET_KEY = "site_secret"  # store meta: the generated secret, hex


def secret_fingerprint(secret: bytes) -> str:
    """First 8 bytes of sha256, hex: enough to tell two secrets apart, useless to forge."""
    return hashlib.sha256(secret).hexdigest()[:16]


def _check_fingerprint(config: Config, store: Store, env: str, persist: bool) -> None:
    """Warn when this process signs with another secret than the last one that used the env
    var (e.g. the daemon has DIGEST_SECRET and the operator's shell has not).

    A warning, not an error: the same mismatch is also what a deliberate rotation (or a
    deliberate switch back to the store's own secret) looks like, and there is no command
    to acknowledge one; raising would lock the web server out of its own subscribe page
    until someone edits the store by hand. The warning names the variable, never a value,
    and goes to the daemon log or, in the CLI, to stderr (logging's last-resort handler)."""
    name = config.web.secret_env
    found = store.meta_get(SECRET_FINGERPRINT_KEY)
    stored = found if isinstance(found, dict) else {}
    if not env:
        if stored.get("fingerprint"):
            was = stored.get("env") or name
            log.warning("$%s is not set in this process, but links were signed with $%s "
                        "before: links signed now use the store's own secret, which a server "
                        "that has $%s rejects; export %s here too", name, was, was, was)
        return
    fp = secret_fingerprint(env.encode("utf-8"))
    if stored.get("fingerprint") == fp and stored.get("env") == name:
        return
    if stored.get("fingerprint"):
        log.warning("$%s is not the secret links were last signed with (its fingerprint "
                    "changed): links signed by the other process, or before a rotation, no "
                    "longer verify; give every digest process the same $%s", name, name)
    if persist:
        with store.transaction():
            store.meta_set(SECRET_FINGERPRINT_KEY, {"env": name, "fingerprint": fp})


def site_secret(config: Config, store: Store, *, persist: bool = True) -> bytes:
    """The key that signs subscription links: the env var named by [web] secret_env, else
    one generated once and kept in the store meta. Never logged or printed; a fingerprint
    of an env secret is kept in the store meta so a process with another secret is noticed.
    With `persist` false (dry runs) nothing is written: a store without a secret yet gives
    a throwaway one."""
    env = os.environ.get(config.web.secret_env, "")
    _check_fingerprint(config, store, env, persist)
    if env:
        return env.encode("utf-8")
    found = store.meta_get(SITE_SECRET_KEY)
    if found:
        return bytes.fromhex(found)
    if not persist:
        return os.urandom(32)
    with store.transaction():
        found = store.meta_get(SITE_SECRET_KEY)  # another process may have won the race
        if not found:
            found = os.urandom(32).hex()
            store.meta_set(SITE_SECRET_KEY, found)
    return bytes.fromhex(found)
