"""C2SP signed notes: Go's published note test vectors, RFC 8032, manglings, tampering."""

from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from retentiond.crypto.signing import (
    NoteSigner,
    NoteVerifier,
    generate_signing_key,
    key_id,
    open_note,
    sign_note,
)
from retentiond.errors import ConfigError, ProofError

# Known answers from golang.org/x/mod/sumdb/note (note_test.go, example_test.go).
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"  # seed = 32 zeros
TEXT = (
    b"If you think cryptography is the answer to your problem,\n"
    b"then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngo"
    "tpRZb6KE6RyyBwJnAM=\n"
).encode()
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWL"
    "ox33WWd1RvMc+QQ=\n"
).encode()
GO_NOTE = TEXT + b"\n" + PETER_SIG

# RFC 8032 section 7.1, TEST 1 (empty message).
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUB = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIG = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701"
    "cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def peter() -> NoteVerifier:
    return NoteVerifier.from_text(PETER_VKEY)


def enoch() -> NoteVerifier:
    return NoteVerifier.from_text(ENOCH_VKEY)


def test_go_verifier_key_parses() -> None:
    v = peter()
    assert v.name == "PeterNeumann"
    assert v.key_id.hex() == "c74f20a3"
    assert v.text() == PETER_VKEY
    assert key_id("PeterNeumann", v.public_key) == v.key_id


def test_go_signer_key_signs_exactly_like_go() -> None:
    signer = NoteSigner.from_text(PETER_SKEY)
    assert signer.verifier() == peter()
    assert signer.text() == PETER_SKEY
    assert sign_note(TEXT, signer) == GO_NOTE


def test_zero_seed_key_matches_go_generate_key() -> None:
    signer = NoteSigner("EnochRoot", Ed25519PrivateKey.from_private_bytes(bytes(32)))
    assert signer.verifier().text() == ENOCH_VKEY
    assert sign_note(TEXT, signer) == TEXT + b"\n" + ENOCH_SIG
    skey = signer.text()
    assert skey == "PRIVATE+KEY+EnochRoot+af0cfe78+" + base64.b64encode(b"\x01" + bytes(32)).decode()
    assert NoteSigner.from_text(skey).verifier() == enoch()


def test_rfc8032_vector() -> None:
    signer = NoteSigner("rfc8032", Ed25519PrivateKey.from_private_bytes(RFC8032_SEED))
    assert signer.verifier().public_key == RFC8032_PUB
    assert signer.sign(b"") == RFC8032_SIG
    assert signer.verifier().verify(b"", RFC8032_SIG)
    assert not signer.verifier().verify(b"", bytes([RFC8032_SIG[0] ^ 1]) + RFC8032_SIG[1:])
    assert not signer.verifier().verify(b"\0", RFC8032_SIG)
    assert not signer.verifier().verify(b"", RFC8032_SIG[:63])


def test_open_go_note() -> None:
    assert open_note(GO_NOTE, peter()) == TEXT


@pytest.mark.parametrize("known", [
    pytest.param(["peter"], id="peter-only"),
    pytest.param(["enoch"], id="enoch-only"),
    pytest.param(["peter", "enoch"], id="both"),
])
def test_signatures_of_unknown_keys_are_ignored(known: list[str]) -> None:
    keys = {"peter": peter(), "enoch": enoch()}
    assert open_note(TEXT + b"\n" + PETER_SIG + ENOCH_SIG, [keys[k] for k in known]) == TEXT


def test_no_known_signature_fails() -> None:
    _, other = generate_signing_key("PeterNeumann")  # same name, other key
    for known in ([], [NoteVerifier.from_text(other)]):
        with pytest.raises(ProofError, match="not signed by a known key"):
            open_note(TEXT + b"\n" + PETER_SIG + ENOCH_SIG, known)


def test_invalid_signature_of_a_known_key_fails() -> None:
    bad = PETER_SIG[:60] + b"ABCD" + PETER_SIG[60:]
    with pytest.raises(ProofError, match="invalid signature for key PeterNeumann"):
        open_note(TEXT + b"\n" + bad, peter())


@pytest.mark.parametrize("note", [
    pytest.param(TEXT, id="no-signatures"),
    pytest.param(TEXT + b"\n", id="blank-line-only"),
    pytest.param(TEXT + b"\n" + PETER_SIG[:-1], id="no-final-newline"),
    pytest.param(b"\x01" + TEXT + b"\n" + PETER_SIG, id="control-char"),
    pytest.param(b"\xff" + TEXT + b"\n" + PETER_SIG, id="not-utf8"),
    pytest.param(TEXT + b"\n" + PETER_SIG.replace(b"PeterNeumann", b"Bad Name"), id="space-in-name"),
    pytest.param(TEXT + b"\n" + PETER_SIG + b"Unexpected line.\n", id="unexpected-line"),
    pytest.param(TEXT + b"\n" + PETER_SIG * 101, id="101-signatures"),
    pytest.param(TEXT + b"\n" + PETER_SIG.replace("—".encode(), b"-"), id="hyphen-not-em-dash"),
    pytest.param(TEXT + b"\n" + b"\xe2\x80\x94 PeterNeumann\n", id="no-signature-field"),
    pytest.param(TEXT + b"\n" + "— PeterNeumann AAAA\n".encode(), id="too-short"),
    pytest.param(TEXT + b"\n" + "— PeterNeumann @@@@\n".encode(), id="not-base64"),
    pytest.param(TEXT.replace(b"\n", b"\r\n") + b"\n" + PETER_SIG, id="crlf"),
])
def test_malformed_notes_fail(note: bytes) -> None:
    with pytest.raises(ProofError, match="note"):
        open_note(note, peter())


def test_flipping_any_byte_breaks_the_note() -> None:
    for i in range(len(GO_NOTE)):
        bad = bytearray(GO_NOTE)
        bad[i] ^= 0x01
        with pytest.raises(ProofError):
            open_note(bytes(bad), peter())


def test_go_manglings_of_the_verifier_key_are_rejected() -> None:
    b = PETER_VKEY
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                with pytest.raises(ConfigError):
                    NoteVerifier.from_text(b[i:j])
    for i in range(len(b)):
        with pytest.raises(ConfigError):
            NoteVerifier.from_text(b[:i] + chr(ord(b[i]) + 1) + b[i + 1 :])


@pytest.mark.parametrize("vkey", [
    pytest.param("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
                 id="wrong-length-adjusted-id"),
    pytest.param("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                 id="unknown-algorithm-adjusted-id"),
    pytest.param("", id="empty"),
    pytest.param("PeterNeumann", id="name-only"),
])
def test_bad_verifier_keys(vkey: str) -> None:
    with pytest.raises(ConfigError, match="verifier key"):
        NoteVerifier.from_text(vkey)


def test_go_manglings_of_the_signer_key_are_rejected_without_echoing_it() -> None:
    b = PETER_SKEY
    secret = b.rsplit("+", 1)[1]

    def check(text: str) -> None:
        with pytest.raises(ConfigError) as info:
            NoteSigner.from_text(text)
        assert secret[4:20] not in str(info.value)

    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                check(b[i:j])
    for i in range(len(b)):
        check(b[:i] + chr(ord(b[i]) + 1) + b[i + 1 :])


def test_signer_never_shows_its_key() -> None:
    signer = NoteSigner.from_text(PETER_SKEY)
    secret = PETER_SKEY.rsplit("+", 1)[1]
    assert secret not in repr(signer)
    assert "c74f20a3" in repr(signer)


def test_generated_keys_work_and_have_go_format() -> None:
    skey, vkey = generate_signing_key("retentiond.example/acme/deletions")
    assert re.fullmatch(r"PRIVATE\+KEY\+retentiond\.example/acme/deletions\+[0-9a-f]{8}\+\S{44}",
                        skey)
    assert re.fullmatch(r"retentiond\.example/acme/deletions\+[0-9a-f]{8}\+\S{44}", vkey)
    signer, verifier = NoteSigner.from_text(skey), NoteVerifier.from_text(vkey)
    assert signer.verifier() == verifier
    note = sign_note(b"hello\n\nworld\n", signer)
    assert open_note(note, verifier) == b"hello\n\nworld\n"
    with pytest.raises(ProofError):
        open_note(note, peter())
    skey2, _ = generate_signing_key("retentiond.example/acme/deletions")
    assert skey2 != skey


@pytest.mark.parametrize("name", [
    pytest.param("", id="empty"),
    pytest.param("a b", id="space"),
    pytest.param("a+b", id="plus"),
    pytest.param("a\tb", id="tab"),
    pytest.param("a\nb", id="newline"),
    pytest.param("a\u00a0b", id="nbsp"),
    pytest.param("a\u2028b", id="line-separator"),
    pytest.param("a\x01b", id="control"),
])
def test_bad_key_names(name: str) -> None:
    with pytest.raises(ConfigError, match="key name"):
        generate_signing_key(name)


@pytest.mark.parametrize("text", [
    pytest.param(b"no newline", id="no-final-newline"),
    pytest.param(b"", id="empty"),
    pytest.param(b"bell\x07\n", id="control-char"),
    pytest.param(b"\xff\n", id="not-utf8"),
])
def test_sign_note_rejects_bad_text(text: bytes) -> None:
    with pytest.raises(ProofError, match="note: text"):
        sign_note(text, NoteSigner.from_text(PETER_SKEY))
