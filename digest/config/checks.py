"""Deliverability warnings for `digest check` (pure: config in, sentences out). Settings that
load fine but make Gmail and Yahoo junk or refuse the digests (their bulk-sender rules: see
docs/OPERATIONS.md, Deliverability); only for transport = "smtp"."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from digest.config.settings import Config


def _local(domain: str) -> bool:
    """A name the Internet cannot resolve back to us: localhost, a dotless name, an IP."""
    d = domain.strip("[]").rstrip(".").lower()
    if not d or d == "localhost" or d.endswith((".localhost", ".localdomain", ".local")):
        return True
    try:
        ipaddress.ip_address(d.removeprefix("ipv6:"))
        return True
    except ValueError:
        return "." not in d


def _aligned(domain: str, signer: str) -> bool:
    """Relaxed DMARC alignment: the From domain is the signing domain or below it."""
    domain, signer = domain.lower().rstrip("."), signer.lower().rstrip(".")
    return domain == signer or domain.endswith("." + signer)


def deliverability_warnings(config: Config) -> list[str]:
    """One sentence per problem, each with what to change."""
    smtp = config.smtp
    if smtp.transport != "smtp":
        return []
    out: list[str] = []
    url = urlsplit(config.site.base_url)
    if url.scheme != "https":
        out.append(
            f"[site] base_url is {url.scheme}:// ({config.site.base_url}): the one-click "
            "unsubscribe link (List-Unsubscribe, RFC 8058) must be HTTPS for Gmail and Yahoo; "
            'serve the site over HTTPS and set base_url = "https://…/"')
    domain = smtp.sender_domain()
    if _local(domain):
        out.append(
            f"[smtp] sender is at {domain or 'no domain'!r}: the Message-ID, the envelope "
            "sender (bounces) and the default EHLO name all use the sender's domain; set "
            "sender to an address at a domain you own, e.g. 'AI News <digest@example.org>'")
    if smtp.helo and _local(smtp.helo):
        out.append(f"[smtp] helo is {smtp.helo!r}: servers expect this host's public DNS name "
                   "(with a matching PTR record); set it, or leave it empty for the sender's "
                   "domain")
    dkim = config.dkim
    if not dkim.signs and not dkim.relay_signs:
        out.append(
            "no DKIM signature: Gmail and Yahoo require DKIM aligned with the From domain; set "
            "[dkim] domain, selector and key_file (digest signs), or [dkim] relay_signs = true "
            "when the relay signs for the sender's domain")
    elif dkim.signs and domain and not _local(domain) and not _aligned(domain, dkim.domain):
        out.append(
            f"[dkim] domain {dkim.domain!r} does not align with the sender's domain {domain!r}: "
            "DMARC needs the From domain to equal the signing domain or sit below it")
    return out
