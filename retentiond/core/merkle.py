"""RFC 6962 / RFC 9162 Merkle tree maths: hashes, tree heads, inclusion and consistency
proofs. Pure: hashlib only, no I/O.

Nodes are named ``(level, index)``: the node at level ``k`` and index ``i`` is the root of
the complete subtree over leaves ``[i * 2**k, (i + 1) * 2**k)``; level 0 holds leaf hashes.
Stored logs only ever keep such complete subtrees, so every function that needs stored
hashes takes a ``NodeReader`` returning them (the "stored hashes" abstraction of Go's
``tlog.HashReader``). Proof hashes are ordered leaf-to-root, as in RFC 9162.

Verification functions return None or raise ``ProofError``; generation functions raise
``ValueError`` on impossible arguments (a programming error, not bad data).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from retentiond.errors import ProofError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""RFC 9162 root of the empty tree (Go's ``tlog.TreeHash(0)`` returns zeros instead)."""

NodeReader = Callable[[int, int], bytes]
"""``read(level, index)`` -> the 32-byte hash of a complete subtree (see module doc)."""


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 || entry)``."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2): RFC 6962's k."""
    if n < 2:
        raise ValueError(f"split_point needs n >= 2, got {n}")
    return 1 << ((n - 1).bit_length() - 1)


def root_from_hashes(hashes: Sequence[bytes]) -> bytes:
    """RFC 6962 MTH over already-hashed leaves (``leaf_hash`` values); empty -> EMPTY_ROOT.

    Iterative, O(n) hashes, O(log n) memory besides the input.
    """
    if not hashes:
        return EMPTY_ROOT
    # Keep a stack of (level, hash) of complete subtrees, merging equal levels: the
    # remaining stack, folded right to left, is the RFC 6962 root.
    stack: list[tuple[int, bytes]] = []
    for h in hashes:
        level, cur = 0, h
        while stack and stack[-1][0] == level:
            cur = node_hash(stack.pop()[1], cur)
            level += 1
        stack.append((level, cur))
    root = stack[-1][1]
    for _, h in reversed(stack[:-1]):
        root = node_hash(h, root)
    return root


def subtree_nodes(lo: int, hi: int) -> list[tuple[int, int]]:
    """The complete subtrees, left to right, whose hashes fold into MTH(leaves[lo:hi]).

    ``lo`` must be a multiple of the largest power of two <= ``hi - lo`` (true for every
    range the RFC 6962 recursion produces, and for ``lo == 0``).
    """
    if not 0 <= lo <= hi:
        raise ValueError(f"bad range [{lo}, {hi})")
    out: list[tuple[int, int]] = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        if lo % (1 << level):
            raise ValueError(f"range [{lo}, {hi}) is not aligned")
        out.append((level, lo >> level))
        lo += 1 << level
    return out


def _range_hash(lo: int, hi: int, read: NodeReader) -> bytes:
    nodes = subtree_nodes(lo, hi)
    h = read(*nodes[-1])
    for node in reversed(nodes[:-1]):
        h = node_hash(read(*node), h)
    return h


def tree_hash(size: int, read: NodeReader) -> bytes:
    """The root of the tree of ``size`` leaves; reads at most 1 + log2(size) nodes."""
    if size < 0:
        raise ValueError(f"negative tree size {size}")
    if size == 0:
        return EMPTY_ROOT
    return _range_hash(0, size, read)


def inclusion_proof(index: int, size: int, read: NodeReader) -> list[bytes]:
    """RFC 9162 2.1.3.1 audit path of leaf ``index`` in the tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    # Walk down from the root; the sibling hashes come out root-first, so reverse at the end.
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            path.append(_range_hash(lo + k, hi, read))
            hi = lo + k
        else:
            path.append(_range_hash(lo, lo + k, read))
            lo += k
    path.reverse()
    return path


def consistency_proof(old_size: int, new_size: int, read: NodeReader) -> list[bytes]:
    """RFC 9162 2.1.4.1 proof that the tree of ``old_size`` is a prefix of ``new_size``.

    Empty when ``old_size`` is 0 or equals ``new_size``.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    path: list[bytes] = []
    lo, hi, known = 0, new_size, True
    # SUBPROOF(m, D[lo:hi], known), unrolled; hashes collected root-first.
    while True:
        m = old_size - lo
        if m == hi - lo:
            if not known:
                path.append(_range_hash(lo, hi, read))
            break
        k = split_point(hi - lo)
        if m <= k:
            path.append(_range_hash(lo + k, hi, read))
            hi = lo + k
        else:
            path.append(_range_hash(lo, lo + k, read))
            lo += k
            known = False
    path.reverse()
    return path


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        raise ProofError(f"{what}: not a {HASH_SIZE}-byte hash")


def verify_inclusion(
    *, index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 2.1.3.2: raise ProofError unless ``proof`` puts ``leaf`` (a leaf hash) at
    ``index`` in the tree of ``size`` leaves with head ``root``."""
    _check_hash(leaf, "leaf hash")
    _check_hash(root, "root hash")
    for i, p in enumerate(proof):
        _check_hash(p, f"inclusion proof hash {i}")
    if not 0 <= index < size:
        raise ProofError(f"inclusion proof: leaf {index} is not in a tree of size {size}")
    fn, sn, r = index, size - 1, bytes(leaf)
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof: too many hashes")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof: too few hashes")
    if r != root:
        raise ProofError(f"inclusion proof: leaf {index} does not lead to the root of size {size}")


def verify_consistency(
    *, old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 2.1.4.2: raise ProofError unless the tree ``(old_size, old_root)`` is a
    prefix of ``(new_size, new_root)``. Size 0 (root EMPTY_ROOT) is a prefix of anything."""
    _check_hash(old_root, "old root hash")
    _check_hash(new_root, "new root hash")
    for i, p in enumerate(proof):
        _check_hash(p, f"consistency proof hash {i}")
    if not 0 <= old_size <= new_size:
        raise ProofError(f"consistency proof: size went from {old_size} to {new_size}")
    if old_size == 0:
        if proof:
            raise ProofError("consistency proof from the empty tree must be empty")
        if old_root != EMPTY_ROOT:
            raise ProofError("consistency proof: a tree of size 0 must have the empty root")
        return
    if old_size == new_size:
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"consistency proof: two different roots for size {old_size}")
        return
    if not proof:
        raise ProofError("consistency proof: empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # exact power of two: the old root is a node
        path.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof: too many hashes")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof: too few hashes")
    if fr != old_root:
        raise ProofError(f"consistency proof: does not lead to the old root (size {old_size})")
    if sr != new_root:
        raise ProofError(f"consistency proof: does not lead to the new root (size {new_size})")
