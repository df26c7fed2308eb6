"""DKIM (owns dkimpy): sign outgoing messages with the [dkim] key, RSA or Ed25519, and make
keys for `digest dkim keygen` with the DNS TXT record to publish.

The signature header is built with dkimpy's own pieces (`rfc822_parse` of the header block,
its relaxed canonicalization, `hash_headers`), so dkimpy's verifier reads what it would have
written. Two costs of `dkim.sign` are avoided, which made a send 5-40 times slower:
- The body hash. dkimpy canonicalizes the whole ~45-110 KB body with several regex passes
  per message. The bodies we build (base64 parts, CRLF, no trailing white space, no runs of
  it) are already in relaxed canonical form, which a few C-speed scans confirm; then `bh=`
  is SHA-256 of the bytes as they are. Anything else takes dkimpy's canonicalization.
  Identical bodies (a confirmation resent, a test) reuse the last `bh=`.
- The private-key operation. dkimpy's RSA is pure Python (~6 ms per 2048-bit signature);
  the key is used through `cryptography` (OpenSSL, ~0.3 ms) instead, PKCS#1 v1.5 over the
  same SHA-256 input, and Ed25519 (RFC 8463) signs the SHA-256 digest of it, as dkimpy does.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from dkim.canonicalization import CanonicalizationPolicy

from digest.config import DkimConfig
from digest.errors import DigestError

# Signed when present, in this order; From is signed once more (over-signed) so no second
# From can be added without breaking the signature.
SIGNED_HEADERS = (b"from", b"to", b"subject", b"date", b"message-id", b"list-id",
                  b"list-unsubscribe", b"list-unsubscribe-post", b"feedback-id",
                  b"mime-version", b"content-type")
OVERSIGNED = (b"from",)
ALGORITHMS = ("rsa", "ed25519")
RSA_BITS = 2048
_POLICY = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
_B64_LINE = 70  # characters of b= per folded line


class DkimError(DigestError):
    """The DKIM key cannot be used (missing, unreadable, readable by others, not a key)."""


def _canonical_body_hash(body: bytes) -> bytes:
    """base64 SHA-256 of the relaxed-canonical body (RFC 6376 3.4.4)."""
    # C-speed scans, no copy: CRLF line ends only, no tab, no trailing or doubled space,
    # exactly one line end at the end.
    crlf = body.count(b"\r\n")
    if (body.endswith(b"\r\n") and not body.endswith(b"\r\n\r\n") and b"\t" not in body
            and b"  " not in body and b" \r\n" not in body
            and body.count(b"\n") == crlf and body.count(b"\r") == crlf):
        canon = body  # already canonical: the common case for our own messages
    else:
        canon = _POLICY.canonicalize_body(re.sub(rb"\r?\n", b"\r\n", body))
    return base64.b64encode(hashlib.sha256(canon).digest())


class _Collect:
    """A `hasher` for dkimpy's hash_headers that keeps the bytes (cryptography signs them)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def update(self, data: bytes) -> None:
        self.parts.append(data)

    def data(self) -> bytes:
        return b"".join(self.parts)


@dataclass
class Signer:
    """Signs messages for one (domain, selector, key)."""

    domain: str
    selector: str
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    _last_body: tuple[bytes, bytes] = field(default=(b"", b""), repr=False)

    @property
    def algorithm(self) -> bytes:
        return b"ed25519-sha256" if isinstance(self.key, ed25519.Ed25519PrivateKey) \
            else b"rsa-sha256"

    def body_hash(self, body: bytes) -> bytes:
        last_body, last_hash = self._last_body
        if last_hash and body == last_body:
            return last_hash
        bh = _canonical_body_hash(body)
        self._last_body = (body, bh)
        return bh

    def sign(self, message: bytes, timestamp: int | None = None) -> bytes:
        """`message` (CRLF line ends) with a DKIM-Signature header in front."""
        return self.signature(message, timestamp) + message

    def signature(self, message: bytes, timestamp: int | None = None) -> bytes:
        """The `DKIM-Signature: ...\\r\\n` header line for `message`."""
        end = message.find(b"\r\n\r\n")
        if end < 0:
            raise ValueError("a message without a header/body separator")
        headers, _ = dkim.rfc822_parse(message[:end + 2] + b"\r\n")
        present = {name.lower() for name, _value in headers}
        include = [h for h in SIGNED_HEADERS if h in present]
        include += [h for h in OVERSIGNED if h in present]
        t = int(time.time()) if timestamp is None else timestamp
        head = (f"v=1; a={self.algorithm.decode()}; c=relaxed/relaxed; d={self.domain}; "
                f"s={self.selector}; t={t};\r\n h=").encode("ascii") + b":".join(include) \
            + b";\r\n bh=" + self.body_hash(message[end + 4:]) + b";\r\n b="
        sig_header = (b"DKIM-Signature", b" " + head)
        collected = _Collect()
        dkim.hash_headers(collected, _POLICY, _POLICY.canonicalize_headers(headers),
                          include, sig_header, None)
        data = collected.data()
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            raw = self.key.sign(hashlib.sha256(data).digest())
        else:
            raw = self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        b = base64.b64encode(raw)
        folded = b"\r\n  ".join(b[i:i + _B64_LINE] for i in range(0, len(b), _B64_LINE))
        return b"DKIM-Signature: " + head + folded + b"\r\n"


# --- keys ----------------------------------------------------------------------------------------


def _parse_key(data: bytes, where: str) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    hint = ("give a PEM private key (RSA 2048 or Ed25519): `digest dkim keygen` writes one "
            "and prints the DNS record to publish")
    text = data.strip()
    if not text.startswith(b"-----BEGIN"):
        try:  # dkimpy's own Ed25519 format: the base64 32-byte seed
            seed = base64.b64decode(text, validate=True)
        except ValueError:
            seed = b""
        if len(seed) == 32:
            return ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        raise DkimError(f"{where}: not a PEM private key", hint)
    try:
        key = serialization.load_pem_private_key(text, password=None)
    except (ValueError, TypeError) as e:
        raise DkimError(f"{where}: cannot read the private key ({e})", hint) from e
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 1024:
            raise DkimError(f"{where}: a {key.key_size}-bit RSA key is too short "
                            "(receivers ignore signatures under 1024 bits)", hint)
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise DkimError(f"{where}: a {type(key).__name__} key; DKIM signs with RSA or Ed25519",
                    hint)


_CACHE: dict[tuple, Signer] = {}


def load_signer(cfg: DkimConfig) -> Signer | None:
    """The signer [dkim] asks for, or None when digest does not sign (domain, selector or
    key_file unset). Refuses a key file that group or others can read."""
    if not cfg.signs:
        return None
    path = Path(cfg.key_file)  # type: ignore[arg-type]  # `signs` checked it is set
    where = f"[dkim] key_file {path}"
    try:
        st = path.stat()
    except OSError as e:
        raise DkimError(f"{where}: {e.strerror or e}",
                        "create one with `digest dkim keygen --domain D --selector S "
                        f"--key-file {path}`") from e
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise DkimError(f"{where} is readable by group or others "
                        f"(mode {stat.S_IMODE(st.st_mode):04o})",
                        f"chmod 600 {path}: only its owner may read the private key")
    key = (str(path), st.st_mtime_ns, st.st_size, cfg.domain, cfg.selector)
    signer = _CACHE.get(key)
    if signer is None:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DkimError(f"{where}: {e.strerror or e}", "check the file's permissions") from e
        signer = Signer(cfg.domain.lower(), cfg.selector, _parse_key(data, where))
        _CACHE.clear()
        _CACHE[key] = signer
    return signer


def public_value(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    """The TXT record's value for `key`'s public half (`v=DKIM1; k=...; p=...`)."""
    pub = key.public_key()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    der = pub.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def txt_record(domain: str, selector: str, value: str) -> str:
    """One zone-file line; the value in quoted strings of at most 255 characters (DNS)."""
    chunks = [value[i:i + 255] for i in range(0, len(value), 255)]
    return f"{selector}._domainkey.{domain} IN TXT " + " ".join(f'"{c}"' for c in chunks)


def record_value(line: str) -> bytes:
    """The TXT value of a `txt_record` line (its quoted strings joined): what DNS returns."""
    return "".join(re.findall(r'"([^"]*)"', line)).encode("ascii")


def keygen(domain: str, selector: str, key_file: Path, algorithm: str = "rsa") -> str:
    """Write a new private key to `key_file` (mode 0600, never over an existing file) and
    return the TXT record line to publish."""
    if algorithm not in ALGORITHMS:
        raise DkimError(f"--algorithm {algorithm!r}: not one of {', '.join(ALGORITHMS)}",
                        "use rsa (RSA 2048, read by every receiver) or ed25519")
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = (
        ed25519.Ed25519PrivateKey.generate() if algorithm == "ed25519"
        else rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    key_file = Path(key_file)
    try:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as e:
        raise DkimError(f"--key-file {key_file} already exists; not overwritten",
                        "choose another path (and a new --selector: rotate keys by "
                        "publishing the new selector first)") from e
    except OSError as e:
        raise DkimError(f"--key-file {key_file}: {e.strerror or e}",
                        "choose a writable path") from e
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # whatever the umask
        f.write(pem)
    return txt_record(domain, selector, public_value(key))
