"""C2SP signed notes with Ed25519, compatible with Go's ``golang.org/x/mod/sumdb/note``.

- key id: first 4 bytes of ``SHA-256(name || 0x0A || 0x01 || pubkey32)``;
- verifier key text: ``<name>+<8 hex key id>+<base64(0x01 || pubkey32)>``;
- signer key text: ``PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 || seed32)>`` (Go's
  ``note.NewSigner`` format);
- note: ``text`` (ends with ``\\n``), a blank line, then one line per signature
  ``— <name> <base64(keyid4 || sig64)>\\n`` (U+2014 EM DASH). The signature covers ``text``.

Errors: malformed key text -> ConfigError (never echoing private key material); a note
that is malformed or not signed by a known key -> ProofError.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from retentiond.errors import ConfigError, ProofError

ALG_ED25519 = 0x01
KEY_ID_SIZE = 4
SIGNATURE_SIZE = 64
MAX_SIGNATURES = 100  # per note, as Go's note.Open
MAX_NAME_LENGTH = 256  # characters; Go has no limit, ours keeps messages short
SIG_PREFIX = "— ".encode()  # U+2014 EM DASH, space


def check_key_name(name: str) -> None:
    """A key name is non-empty, has no whitespace, no ``+`` and no control character."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        raise ConfigError(f"key name must be 1..{MAX_NAME_LENGTH} characters")
    for ch in name:
        if ch == "+" or ch.isspace() or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            raise ConfigError(f"key name {name!r}: no spaces, '+' or control characters allowed")


def _valid_name(name: str) -> bool:
    try:
        check_key_name(name)
    except ConfigError:
        return False
    return True


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id of an Ed25519 public key (32 raw bytes) under ``name``."""
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()
    return digest[:KEY_ID_SIZE]


def _b64decode(text: str) -> bytes:
    """Strict standard base64 (alphabet and padding checked)."""
    return base64.b64decode(text.encode("ascii"), validate=True)


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class NoteVerifier:
    """An Ed25519 verifier key of a named signer."""

    name: str
    key_id: bytes
    public_key: bytes = field(repr=False)

    @classmethod
    def from_text(cls, text: str) -> NoteVerifier:
        """Parse ``<name>+<8 hex>+<base64(0x01 || pubkey32)>``. Raises ConfigError."""
        text = text.strip()
        parts = text.split("+", 2)  # the base64 part may itself contain '+'
        usage = "verifier key: expected <name>+<8 hex digits>+<base64 key>"
        if len(parts) != 3:
            raise ConfigError(usage)
        name, hex_id, b64 = parts
        if not _valid_name(name):
            raise ConfigError(f"{usage}; the name is empty or has spaces or control characters")
        kid = _parse_hex_id(hex_id, what="verifier key")
        try:
            raw = _b64decode(b64)
        except (binascii.Error, UnicodeEncodeError):
            raise ConfigError(f"verifier key {name}: the key is not valid base64") from None
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise ConfigError(f"verifier key {name}: not an Ed25519 key (0x01 + 32 bytes)")
        if key_id(name, raw[1:]) != kid:
            raise ConfigError(f"verifier key {name}: key id {hex_id} does not match the key")
        return cls(name=name, key_id=kid, public_key=raw[1:])

    def text(self) -> str:
        """The verifier key text (public)."""
        b64 = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{b64}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True if ``signature`` (64 bytes) is this key's Ed25519 signature of ``message``."""
        if len(signature) != SIGNATURE_SIZE:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def _parse_hex_id(hex_id: str, *, what: str) -> bytes:
    if len(hex_id) != 8 or not all(c in "0123456789abcdefABCDEF" for c in hex_id):
        raise ConfigError(f"{what}: the key id must be 8 hex digits")
    return bytes.fromhex(hex_id)


class NoteSigner:
    """An Ed25519 signing key of a named signer. Never printed (repr hides the key)."""

    __slots__ = ("_private", "key_id", "name")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        check_key_name(name)
        self.name = name
        self._private = private_key
        self.key_id = key_id(name, _raw_public(private_key.public_key()))

    def __repr__(self) -> str:
        return f"NoteSigner(name={self.name!r}, key_id={self.key_id.hex()})"

    @classmethod
    def from_text(cls, text: str) -> NoteSigner:
        """Parse ``PRIVATE+KEY+<name>+<8 hex>+<base64(0x01 || seed32)>``. Raises ConfigError
        whose message never contains key material."""
        usage = "signing key: expected PRIVATE+KEY+<name>+<8 hex digits>+<base64 key>"
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise ConfigError(usage)
        _, _, name, hex_id, b64 = parts
        if not _valid_name(name):
            raise ConfigError(f"{usage}; the name is empty or has spaces or control characters")
        kid = _parse_hex_id(hex_id, what=f"signing key {name}")
        try:
            raw = _b64decode(b64)
        except (binascii.Error, UnicodeEncodeError):
            raise ConfigError(f"signing key {name}: the key is not valid base64") from None
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise ConfigError(f"signing key {name}: not an Ed25519 key (0x01 + 32-byte seed)")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.key_id != kid:
            raise ConfigError(f"signing key {name}: key id {hex_id} does not match the key")
        return signer

    def text(self) -> str:
        """The private key text (secret: write it to a 0600 file, never log it)."""
        seed = self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        b64 = base64.b64encode(bytes([ALG_ED25519]) + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{b64}"

    def verifier(self) -> NoteVerifier:
        """The matching verifier key."""
        return NoteVerifier(self.name, self.key_id, _raw_public(self._private.public_key()))

    def sign(self, message: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature of ``message``."""
        return self._private.sign(message)


def generate_signing_key(name: str) -> tuple[str, str]:
    """A fresh key pair for ``name``: ``(signer key text, verifier key text)``."""
    signer = NoteSigner(name, Ed25519PrivateKey.generate())
    return signer.text(), signer.verifier().text()


def _check_text(text: bytes) -> None:
    """Note text rules (Go's note.Open): UTF-8, ends with ``\\n``, no control character
    other than ``\\n``."""
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise ProofError("note: text is not valid UTF-8") from None
    if not decoded.endswith("\n"):
        raise ProofError("note: text must end with a newline")
    if any(ch < " " and ch != "\n" for ch in decoded):
        raise ProofError("note: text contains a control character")


def sign_note(text: bytes, signer: NoteSigner) -> bytes:
    """``text``, a blank line, and ``signer``'s signature line."""
    _check_text(text)
    sig = signer.key_id + signer.sign(text)
    line = SIG_PREFIX + signer.name.encode() + b" " + base64.b64encode(sig) + b"\n"
    return text + b"\n" + line


def open_note(note: bytes, verifier: NoteVerifier | Sequence[NoteVerifier]) -> bytes:
    """Check ``note`` and return its text. Signatures by unknown keys are ignored; a bad
    signature by a known key, a malformed note, or no signature by any known key raise
    ProofError."""
    known = [verifier] if isinstance(verifier, NoteVerifier) else list(verifier)
    by_id = {(v.name, v.key_id): v for v in known}
    _check_text(note)  # whole message: UTF-8, no control characters, ends with \n
    split = note.rfind(b"\n\n")
    if split < 0:
        raise ProofError("note: no blank line before the signatures")
    text, sigs = note[: split + 1], note[split + 2 :]
    if not sigs:
        raise ProofError("note: no signature lines")
    lines = sigs[:-1].split(b"\n")
    if len(lines) > MAX_SIGNATURES:
        raise ProofError(f"note: more than {MAX_SIGNATURES} signatures")
    verified = 0
    for n, line in enumerate(lines, start=1):
        if not line.startswith(SIG_PREFIX):
            raise ProofError(f"note: signature line {n} does not start with an em dash")
        name_b, sep, b64 = line[len(SIG_PREFIX) :].partition(b" ")
        name = name_b.decode()
        try:
            raw = _b64decode(b64.decode())
        except (binascii.Error, UnicodeError):
            raw = b""
        if not sep or not _valid_name(name) or len(raw) <= KEY_ID_SIZE:
            raise ProofError(f"note: signature line {n} is malformed")
        v = by_id.get((name, raw[:KEY_ID_SIZE]))
        if v is None:
            continue  # a key we do not know: ignored
        if not v.verify(text, raw[KEY_ID_SIZE:]):
            raise ProofError(f"note: invalid signature for key {name}+{raw[:4].hex()}")
        verified += 1
    if not verified:
        names = ", ".join(f"{v.name}+{v.key_id.hex()}" for v in known) or "none"
        raise ProofError(f"note: not signed by a known key (known: {names})")
    return text
