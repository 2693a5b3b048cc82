"""Known answers from an independent implementation: Go's golang.org/x/mod/sumdb/note and
.../tlog check logs written by retentiond (tests/go/tlogcheck/main.go), and Go signs with
retentiond's private key text."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from retentiond.adapters.localfs_proofs import FileProofStore
from retentiond.core import tiles
from retentiond.core.canonical import canonical_json
from retentiond.crypto.signing import NoteSigner, NoteVerifier, generate_signing_key, open_note
from retentiond.crypto.signing import sign_note as py_sign_note
from retentiond.service.prooflog import ProofLog, verify_log

GO = shutil.which("go")
pytestmark = [
    pytest.mark.go,
    pytest.mark.skipif(GO is None, reason="the go toolchain is not installed"),
]

SOURCE = Path(__file__).resolve().parents[1] / "go" / "tlogcheck"
ORIGIN = "retentiond.test/go-check"
SKEY, VKEY = generate_signing_key(ORIGIN)
SIGNER = NoteSigner.from_text(SKEY)
VERIFIER = NoteVerifier.from_text(VKEY)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def tlogcheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the checker offline, in GOPATH mode, against Debian's golang-golang-x-mod-dev."""
    assert GO is not None
    out = tmp_path_factory.mktemp("go")
    env = {
        **os.environ, "GO111MODULE": "off", "GOPATH": "/usr/share/gocode", "GOPROXY": "off",
        "GOFLAGS": "", "GOCACHE": str(out / "cache"),
    }
    binary = out / "tlogcheck"
    p = subprocess.run([GO, "build", "-o", str(binary), "."], cwd=SOURCE, env=env,
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr
    return binary


def run(tlogcheck: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tlogcheck), *args], capture_output=True, text=True,
                          timeout=120, check=False)


def build_log(folder: Path, size: int) -> tuple[ProofLog, list[int]]:
    """A log of ``size`` small records appended in three uneven batches."""
    log = ProofLog(FileProofStore(folder), origin=ORIGIN, verifier=VERIFIER, signer=SIGNER)
    cuts = sorted({0, size // 3, (2 * size) // 3 + 1, size} & set(range(size + 1)))
    for lo, hi in itertools.pairwise(cuts):
        log.append([canonical_json({"type": "deletion", "object_id": f"o{i}"})
                    for i in range(lo, hi)])
    return log, cuts


def proofs_file(log: ProofLog, cuts: list[int], path: Path) -> tuple[int, int]:
    size = log.size()
    if size <= 300:
        indexes = list(range(size))
    else:
        indexes = sorted({0, 1, 255, 256, 257, size // 2, size - 2, size - 1,
                          *range(0, size, size // 40)} & set(range(size)))
    olds = sorted({1, 2, size // 2, size - 1, size, *cuts} & set(range(1, size + 1)))
    doc = {
        "inclusion": [log.inclusion_proof(i).to_json() for i in indexes],
        "consistency": [
            {"old_size": old, "old_root": b64(log.tree_hash(old)), "new_size": size,
             "new_root": b64(log.tree_hash(size)),
             "hashes": [b64(h) for h in log.consistency_proof(old)]}
            for old in olds
        ] + [
            {"old_size": a, "old_root": b64(log.tree_hash(a)), "new_size": b,
             "new_root": b64(log.tree_hash(b)),
             "hashes": [b64(h) for h in log.consistency_proof(a, b)]}
            for a, b in itertools.pairwise(cuts[1:])
        ],
    }
    path.write_text(json.dumps(doc))
    return len(doc["inclusion"]), len(doc["consistency"])


@pytest.mark.parametrize("size", [
    pytest.param(1, id="1"), pytest.param(2, id="2"), pytest.param(3, id="3"),
    pytest.param(255, id="255"), pytest.param(256, id="256"), pytest.param(257, id="257"),
    pytest.param(1000, id="1000"), pytest.param(70_000, id="70000"),
])
def test_go_verifies_our_log(tlogcheck: Path, tmp_path: Path, size: int) -> None:
    folder = tmp_path / "log"
    log, cuts = build_log(folder, size)
    assert verify_log(FileProofStore(folder), verifier=VERIFIER).size == size
    n_incl, n_cons = proofs_file(log, cuts, tmp_path / "proofs.json")
    p = run(tlogcheck, "-log", str(folder), "-vkey", VKEY, "-proofs", str(tmp_path / "proofs.json"))
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["origin"] == ORIGIN
    assert report["size"] == size
    assert report["root"] == b64(log.checkpoint().root)
    assert report["entries"] == size
    assert report["records_proved"] == size
    assert report["tiles_compared"] >= len(tiles.tiles_for_size(size))
    assert report["bundles_compared"] >= len(tiles.bundles_for_size(size))
    assert report["python_inclusion_checked"] == n_incl
    assert report["python_consistency_checked"] == n_cons
    assert report["verifier_key_hash"] == VERIFIER.key_id.hex()


@pytest.mark.parametrize("path", [
    pytest.param("tile/0/000", id="level0-tile"),
    pytest.param("tile/1/000.p/3", id="level1-partial"),
    pytest.param("tile/entries/001", id="bundle"),
    pytest.param("checkpoint", id="checkpoint"),
])
def test_go_rejects_a_tampered_log(tlogcheck: Path, tmp_path: Path, path: str) -> None:
    folder = tmp_path / "log"
    build_log(folder, 1000)
    target = folder / path
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    p = run(tlogcheck, "-log", str(folder), "-vkey", VKEY)
    assert p.returncode != 0
    assert p.stderr.startswith("tlogcheck:")


def test_go_signs_with_our_private_key(tlogcheck: Path, tmp_path: Path) -> None:
    text = b"retentiond.test/go-check\n42\n" + b64(bytes(range(32))).encode() + b"\n"
    (tmp_path / "text").write_bytes(text)
    p = run(tlogcheck, "-skey", SKEY, "-vkey", VKEY, "-sign", str(tmp_path / "text"),
            "-sign-out", str(tmp_path / "note"))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["signer_accepted"] is True
    go_note = (tmp_path / "note").read_bytes()
    assert open_note(go_note, VERIFIER) == text
    assert go_note == py_sign_note(text, SIGNER)  # Ed25519 is deterministic: same bytes


def test_go_rejects_a_mangled_private_key(tlogcheck: Path, tmp_path: Path) -> None:
    (tmp_path / "text").write_bytes(b"x\n")
    bad = SKEY[:-3] + ("A" if SKEY[-3] != "A" else "B") + SKEY[-2:]
    p = run(tlogcheck, "-skey", bad, "-vkey", VKEY, "-sign", str(tmp_path / "text"),
            "-sign-out", str(tmp_path / "note"))
    assert p.returncode != 0
    assert "NewSigner" in p.stderr
