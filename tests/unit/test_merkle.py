"""RFC 6962 / 9162 Merkle maths: published known answers, properties, and tampering."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retentiond.core import merkle
from retentiond.errors import ProofError

# Certificate Transparency / RFC 6962 reference vectors (transparency-dev/merkle testonly).
CT_LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]
CT_ROOTS = [bytes.fromhex(h) for h in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]
CT_INCLUSION = [
    pytest.param(0, 8, (
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ), id="leaf0-of-8"),
    pytest.param(5, 8, (
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ), id="leaf5-of-8"),
]
CT_CONSISTENCY = [
    pytest.param(2, 8, (
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ), id="2-to-8"),
    pytest.param(6, 8, (
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ), id="6-to-8"),
]


def ref_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def ref_mth(hashes: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written the textbook way (recursive, over leaf hashes)."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(hashes[:k]) + ref_mth(hashes[k:])).digest()


def reader_for(leaves: list[bytes]) -> Callable[[int, int], bytes]:
    @cache
    def read(level: int, index: int) -> bytes:
        lo, hi = index << level, (index + 1) << level
        assert hi <= len(leaves), "asked for a node outside the tree"
        return ref_mth(leaves[lo:hi])

    return read


CT_HASHES = [ref_leaf(d) for d in CT_LEAVES]
MANY = [ref_leaf(i.to_bytes(2, "big")) for i in range(70)]
MANY_READ = reader_for(MANY)


def test_empty_root_is_sha256_of_nothing() -> None:
    assert CT_ROOTS[0] == merkle.EMPTY_ROOT
    assert merkle.root_from_hashes([]) == CT_ROOTS[0]
    assert merkle.tree_hash(0, reader_for([])) == CT_ROOTS[0]


@pytest.mark.parametrize("size", range(9))
def test_reference_roots(size: int) -> None:
    leaves = [merkle.leaf_hash(d) for d in CT_LEAVES[:size]]
    assert merkle.root_from_hashes(leaves) == CT_ROOTS[size]
    assert merkle.tree_hash(size, reader_for(leaves)) == CT_ROOTS[size]


def test_leaf_and_node_prefixes() -> None:
    assert merkle.leaf_hash(b"") == CT_ROOTS[1]
    assert merkle.node_hash(CT_HASHES[0], CT_HASHES[1]) == CT_ROOTS[2]


@pytest.mark.parametrize(("index", "size", "proof"), CT_INCLUSION)
def test_reference_inclusion_proofs(index: int, size: int, proof: tuple[str, ...]) -> None:
    want = [bytes.fromhex(h) for h in proof]
    assert merkle.inclusion_proof(index, size, reader_for(CT_HASHES)) == want
    merkle.verify_inclusion(index=index, size=size, leaf=CT_HASHES[index], proof=want,
                            root=CT_ROOTS[size])


@pytest.mark.parametrize(("old", "new", "proof"), CT_CONSISTENCY)
def test_reference_consistency_proofs(old: int, new: int, proof: tuple[str, ...]) -> None:
    want = [bytes.fromhex(h) for h in proof]
    assert merkle.consistency_proof(old, new, reader_for(CT_HASHES)) == want
    merkle.verify_consistency(old_size=old, new_size=new, old_root=CT_ROOTS[old],
                              new_root=CT_ROOTS[new], proof=want)


@pytest.mark.parametrize(("n", "k"), [
    pytest.param(2, 1, id="2"), pytest.param(3, 2, id="3"), pytest.param(4, 2, id="4"),
    pytest.param(5, 4, id="5"), pytest.param(8, 4, id="8"), pytest.param(9, 8, id="9"),
    pytest.param(1000, 512, id="1000"), pytest.param((1 << 40) + 1, 1 << 40, id="2^40+1"),
])
def test_split_point_is_rfc6962s(n: int, k: int) -> None:
    assert merkle.split_point(n) == k


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=8), max_size=300))
def test_root_matches_textbook_definition(entries: list[bytes]) -> None:
    leaves = [merkle.leaf_hash(e) for e in entries]
    assert merkle.root_from_hashes(leaves) == ref_mth(leaves)
    assert merkle.tree_hash(len(leaves), reader_for(leaves)) == ref_mth(leaves)


def test_every_inclusion_proof_verifies_and_tampering_fails() -> None:
    for size in range(1, len(MANY) + 1):
        root = ref_mth(MANY[:size])
        for index in range(size):
            proof = merkle.inclusion_proof(index, size, MANY_READ)
            merkle.verify_inclusion(index=index, size=size, leaf=MANY[index], proof=proof,
                                    root=root)
            if not proof:
                continue
            bad = [*proof[:-1], bytes([proof[-1][0] ^ 1]) + proof[-1][1:]]
            for args in (
                {"proof": bad},
                {"proof": proof[:-1]},
                {"proof": [*proof, b"\xab" * 32]},
                {"leaf": MANY[(index + 1) % size]},
                {"index": (index + 1) % size},
                {"root": ref_mth(MANY[: size - 1]) if size > 1 else b"\0" * 32},
            ):
                kw: dict[str, object] = {"index": index, "size": size, "leaf": MANY[index],
                                         "proof": proof, "root": root, **args}
                with pytest.raises(ProofError):
                    merkle.verify_inclusion(**kw)  # type: ignore[arg-type]


def test_every_consistency_proof_verifies_and_tampering_fails() -> None:
    roots = [ref_mth(MANY[:n]) for n in range(len(MANY) + 1)]
    for new in range(len(MANY) + 1):
        for old in range(new + 1):
            proof = merkle.consistency_proof(old, new, MANY_READ)
            merkle.verify_consistency(old_size=old, new_size=new, old_root=roots[old],
                                      new_root=roots[new], proof=proof)
            if old in (0, new):
                assert proof == []
                continue
            bad = [bytes([proof[0][0] ^ 0x80]) + proof[0][1:], *proof[1:]]
            tampered: tuple[dict[str, object], ...] = (
                {"proof": bad},
                {"proof": proof[:-1]},
                {"proof": [*proof, b"\xcd" * 32]},
                {"old_root": roots[old - 1]},
                {"new_root": roots[new - 1]},
                {"old_size": old - 1} if old > 1 else {"proof": []},
            )
            for args in tampered:
                kw: dict[str, object] = {"old_size": old, "new_size": new,
                                         "old_root": roots[old], "new_root": roots[new],
                                         "proof": proof, **args}
                with pytest.raises(ProofError):
                    merkle.verify_consistency(**kw)  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 5000), st.data())
def test_proofs_in_big_trees(size: int, data: st.DataObject) -> None:
    leaves = [ref_leaf(i.to_bytes(4, "big")) for i in range(size)]
    read = reader_for(leaves)
    root = merkle.tree_hash(size, read)
    index = data.draw(st.integers(0, size - 1))
    merkle.verify_inclusion(index=index, size=size, leaf=leaves[index],
                            proof=merkle.inclusion_proof(index, size, read), root=root)
    old = data.draw(st.integers(0, size))
    merkle.verify_consistency(old_size=old, new_size=size, old_root=merkle.tree_hash(old, read),
                              new_root=root, proof=merkle.consistency_proof(old, size, read))


@pytest.mark.parametrize("kwargs", [
    pytest.param({"old_size": 4, "new_size": 4, "old_root": CT_ROOTS[4],
                  "new_root": CT_ROOTS[5], "proof": []}, id="equal-sizes-different-roots"),
    pytest.param({"old_size": 4, "new_size": 4, "old_root": CT_ROOTS[4],
                  "new_root": CT_ROOTS[4], "proof": [b"\0" * 32]}, id="equal-sizes-proof"),
    pytest.param({"old_size": 0, "new_size": 8, "old_root": CT_ROOTS[1],
                  "new_root": CT_ROOTS[8], "proof": []}, id="empty-old-wrong-root"),
    pytest.param({"old_size": 0, "new_size": 8, "old_root": CT_ROOTS[0],
                  "new_root": CT_ROOTS[8], "proof": [b"\0" * 32]}, id="empty-old-proof"),
    pytest.param({"old_size": 8, "new_size": 6, "old_root": CT_ROOTS[8],
                  "new_root": CT_ROOTS[6], "proof": []}, id="shrinking"),
    pytest.param({"old_size": 6, "new_size": 8, "old_root": CT_ROOTS[6],
                  "new_root": CT_ROOTS[8], "proof": []}, id="missing-proof"),
    pytest.param({"old_size": 6, "new_size": 8, "old_root": b"\0" * 31,
                  "new_root": CT_ROOTS[8], "proof": []}, id="short-root"),
])
def test_consistency_degenerate_cases_fail(kwargs: dict[str, object]) -> None:
    with pytest.raises(ProofError):
        merkle.verify_consistency(**kwargs)  # type: ignore[arg-type]


def test_consistency_degenerate_cases_pass() -> None:
    merkle.verify_consistency(old_size=4, new_size=4, old_root=CT_ROOTS[4],
                              new_root=CT_ROOTS[4], proof=[])
    merkle.verify_consistency(old_size=0, new_size=8, old_root=CT_ROOTS[0],
                              new_root=CT_ROOTS[8], proof=[])


@pytest.mark.parametrize("kwargs", [
    pytest.param({"leaf": b"\0" * 31}, id="short-leaf"),
    pytest.param({"root": b"\0" * 33}, id="long-root"),
    pytest.param({"proof": [b"\0" * 31]}, id="short-proof-hash"),
    pytest.param({"index": 8}, id="index-past-end"),
    pytest.param({"index": -1}, id="negative-index"),
    pytest.param({"size": 0, "index": 0}, id="empty-tree"),
])
def test_inclusion_bad_inputs_fail(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "index": 5, "size": 8, "leaf": CT_HASHES[5], "root": CT_ROOTS[8],
        "proof": merkle.inclusion_proof(5, 8, reader_for(CT_HASHES)), **kwargs,
    }
    with pytest.raises(ProofError):
        merkle.verify_inclusion(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("call", [
    pytest.param(lambda r: merkle.inclusion_proof(8, 8, r), id="inclusion-index-eq-size"),
    pytest.param(lambda r: merkle.inclusion_proof(-1, 8, r), id="inclusion-negative"),
    pytest.param(lambda r: merkle.consistency_proof(5, 3, r), id="consistency-shrinking"),
    pytest.param(lambda r: merkle.tree_hash(-1, r), id="negative-size"),
    pytest.param(lambda r: merkle.subtree_nodes(3, 7), id="unaligned-range"),
    pytest.param(lambda r: merkle.split_point(1), id="split-of-1"),
])
def test_generation_rejects_impossible_arguments(call: Callable[[object], object]) -> None:
    with pytest.raises(ValueError):
        call(reader_for(CT_HASHES))


def test_single_leaf_tree_has_empty_proof() -> None:
    leaf = merkle.leaf_hash(b"x")
    assert merkle.inclusion_proof(0, 1, reader_for([leaf])) == []
    merkle.verify_inclusion(index=0, size=1, leaf=leaf, proof=[], root=leaf)
