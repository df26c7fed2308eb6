"""`digest dkim keygen`: a new DKIM key for [dkim] key_file and the DNS TXT record to publish
(the key itself is made by digest.mail.dkim; this checks the names the record is built from)."""

from __future__ import annotations

from pathlib import Path

from digest.config.settings import SETTINGS
from digest.errors import DigestError
from digest.mail.dkim import keygen


def _check(key: str, value: str, flag: str) -> str:
    setting = next(s for s in SETTINGS if s.section == "dkim" and s.key == key)
    problem = "must not be empty" if not value else (setting.check(value) if setting.check
                                                       else None)
    if problem:
        raise DigestError(f"{flag} {value[:80]!r}: {problem}", f"{flag}: {setting.help}")
    return value


def dkim_keygen(domain: str, selector: str, key_file: Path, algorithm: str = "rsa") -> str:
    """Write a private key (mode 0600, never over an existing file) and return the TXT
    record line `SELECTOR._domainkey.DOMAIN IN TXT "v=DKIM1; k=...; p=..."`."""
    domain = _check("domain", domain.strip().lower().rstrip("."), "--domain")
    selector = _check("selector", selector.strip(), "--selector")
    return keygen(domain, selector, Path(key_file), algorithm)
