"""The deletion-proof log: an append-only RFC 6962 tree stored as C2SP tlog-tiles over a
``ProofStore``, its head in a signed C2SP checkpoint (PROOF-FORMAT.md).

Files: ``checkpoint`` (signed note), ``tile/<L>/<N>[.p/<W>]``, ``tile/entries/<N>[.p/<W>]``,
and ``intent`` (a signed note written before an append touches any tile, see below).

Crash safety of ``append`` (single writer; the caller holds the proof-log lock):

1. read and verify the checkpoint (size s) and the right-edge tiles (one partial per
   level + the partial bundle: at most 2 + log256(s) reads), checking they give its root.
   The right edge is kept in memory after an append: when the checkpoint read is, byte
   for byte, the one this object published last, the edge it computed then is used and
   nothing else is read (another writer's append changes the checkpoint). Then every
   file the append will write is checked, before anything is written: it must be absent,
   hold the same bytes, or lie in the zone an interrupted append may have left (one read
   each, concurrently, or on a store that can list (``ListingProofStore``: S3) one listing
   per tile level and a read of those present only);
2. write ``intent`` = signed "appending from (s, root) to s', leftovers up to size u";
3. write new full bundles/tiles with ``write_once`` and partials with ``replace`` (new
   partial widths are new paths: nothing a reader of checkpoint s uses is touched), up
   to ``IO_THREADS`` at a time: they are independent, and all are durable before 4;
4. write the signed checkpoint s' with ``replace``;
5. write ``intent`` = "done at s', leftovers up to size u" (u = s' unless an earlier
   interrupted append reached further).

A crash before 4 leaves checkpoint s valid; files beyond s are unsigned leftovers, all
within a tree of size u. The next append starts again from s and may overwrite files in
(s, u] only: a full tile that ``write_once`` refuses there is replaced, stale partials it
now covers are rewritten. Anything else that conflicts means history would be rewritten,
and the append fails closed with ProofError, as it does when ``intent`` shows the log
was already longer than the checkpoint (a checkpoint restored from an old copy).
``verify_log`` reports leftovers in (s, u] as ``VerifiedLog.uncommitted`` and fails on any
other file beyond the checkpoint. Retrying the same records: call ``find(record,
start=...)`` first, since the checkpoint may have been written just before the crash.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TypeVar, cast, runtime_checkable

from retentiond.concurrency import run_all
from retentiond.core import merkle
from retentiond.core.canonical import canonical_json
from retentiond.core.tiles import (
    ENTRIES,
    MAX_ENTRY_SIZE,
    TILE_WIDTH,
    TileHashReader,
    TileId,
    bundles_for_size,
    current_tile,
    decode_bundle,
    encode_bundle,
    is_covered,
    level_size,
    parse_tile_path,
    split_hashes,
    tile_root,
    tiles_for_size,
)
from retentiond.crypto.signing import NoteSigner, NoteVerifier, open_note, sign_note
from retentiond.errors import ConfigError, NotFoundError, ProofError
from retentiond.faults import crashpoint
from retentiond.ports import ProofStore

logger = logging.getLogger(__name__)

IO_THREADS = 8  # tiles one append reads (existence checks) or writes at a time
CHECKPOINT_PATH = "checkpoint"
INTENT_PATH = "intent"
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")  # < 10**19: sizes fit in a uint64
_NUM = r"(0|[1-9][0-9]{0,18})"
_INTENT_LINE = re.compile(rf"intent {_NUM} {_NUM} {_NUM}")
T = TypeVar("T")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _parse_hash(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ProofError(f"{what}: not base64") from None
    if len(raw) != merkle.HASH_SIZE or _b64(raw) != text:
        raise ProofError(f"{what}: not a canonical base64 {merkle.HASH_SIZE}-byte hash")
    return raw


def _check_origin(origin: str) -> None:
    if not origin or "\n" in origin or origin != origin.strip():
        raise ConfigError(f"proof log origin {origin!r}: must be one non-empty line")


@dataclass(frozen=True)
class Checkpoint:
    """A tree head per C2SP tlog-checkpoint (before signing)."""

    origin: str
    size: int
    root: bytes

    def __post_init__(self) -> None:
        _check_origin(self.origin)
        if self.size < 0 or len(self.root) != merkle.HASH_SIZE:
            raise ValueError("checkpoint: bad size or root")

    def text(self) -> bytes:
        """``<origin>\\n<size>\\n<base64 root>\\n``."""
        return f"{self.origin}\n{self.size}\n{_b64(self.root)}\n".encode()

    @classmethod
    def parse(cls, text: bytes, *, origin: str) -> Checkpoint:
        """Parse a checkpoint body (the text of the note). Extension lines are allowed
        and ignored. Raises ProofError."""
        try:
            decoded = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ProofError("checkpoint: not UTF-8") from None
        if not decoded.endswith("\n"):
            raise ProofError("checkpoint: must end with a newline")
        lines = decoded[:-1].split("\n")
        if len(lines) < 3:
            raise ProofError("checkpoint: fewer than 3 lines")
        if lines[0] != origin:
            raise ProofError(f"checkpoint: origin is {lines[0]!r}, expected {origin!r}")
        if not _DECIMAL.fullmatch(lines[1]):
            raise ProofError(f"checkpoint: tree size {lines[1]!r} is not a decimal number")
        root = _parse_hash(lines[2], "checkpoint root")
        if any(not line for line in lines[3:]):
            raise ProofError("checkpoint: empty extension line")
        try:
            return cls(origin=origin, size=int(lines[1]), root=root)
        except (ConfigError, ValueError) as e:
            raise ProofError(f"checkpoint: {e}") from None


@dataclass(frozen=True)
class InclusionProof:
    """Proof that entry ``index`` is in the tree of the signed ``checkpoint``."""

    index: int
    tree_size: int
    root: bytes
    leaf_hash: bytes
    hashes: tuple[bytes, ...]
    checkpoint: bytes

    def verify(self) -> None:
        """Check the hashes lead from ``leaf_hash`` to ``root`` (not the note's signature:
        ``open_note`` does that). Raises ProofError."""
        merkle.verify_inclusion(
            index=self.index, size=self.tree_size, leaf=self.leaf_hash,
            proof=self.hashes, root=self.root,
        )

    def to_json(self) -> dict[str, object]:
        """JSON-ready dict; hashes in standard base64."""
        return {
            "index": self.index,
            "tree_size": self.tree_size,
            "root": _b64(self.root),
            "leaf_hash": _b64(self.leaf_hash),
            "hashes": [_b64(h) for h in self.hashes],
            "checkpoint": self.checkpoint.decode("utf-8"),
        }


@dataclass(frozen=True)
class VerifiedLog:
    """What ``verify_log`` established. ``uncommitted`` lists files beyond the checkpoint
    left by an interrupted append (explained by a signed intent); the next append
    overwrites them."""

    size: int
    root: bytes
    checkpoint: bytes
    entries: int
    uncommitted: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Intent:
    """``base`` -> ``target`` append in progress (or done when target == base.size);
    every file beyond the checkpoint lies within a tree of ``upto`` leaves."""

    base: Checkpoint
    target: int
    upto: int

    def text(self) -> bytes:
        # The second line is not a decimal: an intent never parses as a checkpoint.
        return (
            f"{self.base.origin}\nintent {self.base.size} {self.target} {self.upto}\n"
            f"{_b64(self.base.root)}\n"
        ).encode()

    @classmethod
    def parse(cls, text: bytes, *, origin: str) -> _Intent:
        lines = text.decode("utf-8").split("\n")
        m = _INTENT_LINE.fullmatch(lines[1]) if len(lines) == 4 else None
        if m is None or lines[0] != origin or lines[3]:
            raise ProofError("malformed intent")
        base, target, upto = (int(g) for g in m.groups())
        if not base <= target <= upto:
            raise ProofError("malformed intent (sizes out of order)")
        return cls(Checkpoint(origin, base, _parse_hash(lines[2], "intent root")), target, upto)

    def leftover_bound(self, cp: Checkpoint, *, where: str) -> int:
        """The tree size within which files beyond ``cp`` may be leftovers. Raises
        ProofError if this intent cannot have been written before ``cp`` was current
        (the checkpoint was rolled back or replaced)."""
        if self.base == cp or (self.target == cp.size and self.base.size < cp.size):
            return self.upto
        did = (
            f"says the log reached size {self.target}" if self.target == self.base.size
            else f"records an append from size {self.base.size} to {self.target}"
        )
        raise ProofError(
            f"{where}: {did}, but the checkpoint has size {cp.size}: the checkpoint was "
            "rolled back or replaced"
        )


def validate_entry(entry: bytes, *, what: str) -> None:
    """An entry is a canonical-JSON object with ``"type": "deletion"``, <= 65,535 bytes.
    Raises ProofError naming ``what`` (e.g. ``"entry 12"``)."""
    if len(entry) > MAX_ENTRY_SIZE:
        raise ProofError(f"{what}: {len(entry)} bytes, the limit is {MAX_ENTRY_SIZE}")
    try:
        value = json.loads(entry.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProofError(f"{what}: not valid UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise ProofError(f"{what}: not a JSON object")
    try:
        canonical = canonical_json(value)
    except (ValueError, RecursionError) as e:
        raise ProofError(f"{what}: not canonical JSON ({e})") from None
    if canonical != entry:
        raise ProofError(f"{what}: not canonical JSON (sorted keys, no spaces, UTF-8)")
    if value.get("type") != "deletion":
        raise ProofError(f'{what}: "type" is not "deletion"')


def _read_required(store: ProofStore, path: str) -> bytes:
    data = store.read(path)
    if data is None:
        raise ProofError(f"{store.location}/{path}: missing")
    return data


def _read_checkpoint(
    store: ProofStore, *, verifier: NoteVerifier, origin: str | None
) -> tuple[Checkpoint, bytes] | None:
    note = store.read(CHECKPOINT_PATH)
    if note is None:
        return None
    try:
        text = open_note(note, verifier)
        if origin is None:
            origin = text.split(b"\n", 1)[0].decode("utf-8")
        return Checkpoint.parse(text, origin=origin), note
    except (ProofError, UnicodeDecodeError) as e:
        raise ProofError(f"{store.location}/{CHECKPOINT_PATH}: {e}") from None


def _read_intent(
    store: ProofStore, *, verifier: NoteVerifier, origin: str
) -> _Intent | None:
    note = store.read(INTENT_PATH)
    if note is None:
        return None
    try:
        return _Intent.parse(open_note(note, verifier), origin=origin)
    except (ProofError, UnicodeDecodeError, ConfigError, ValueError) as e:
        raise ProofError(f"{store.location}/{INTENT_PATH}: {e}") from None


@runtime_checkable
class ListingProofStore(Protocol):
    """Optional capabilities of a ``ProofStore`` (``S3ProofStore``) that spare ``append``
    a request per file: which files exist, found by listing, and ``write_once`` of a
    file just found absent (the caller holds the proof-log lock)."""

    def existing(self, paths: Sequence[str]) -> set[str]: ...

    def write_new(self, path: str, data: bytes) -> None: ...


def _in_parallel(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run ``calls`` on up to IO_THREADS threads (``concurrency.run_all``)."""
    return run_all(calls, threads=IO_THREADS, name="prooflog-io")


def _edge_root(size: int, edge: dict[TileId, bytes]) -> bytes:
    """The root of a tree of ``size`` from its right-edge partial tiles only."""
    def read(tile: TileId) -> bytes:
        data = edge.get(tile)
        if data is None:  # pragma: no cover - every root node lies in a partial tile
            raise ProofError(f"{tile.path}: needed for the root but not a right-edge tile")
        return data

    return merkle.tree_hash(size, TileHashReader(size, read).node)


class ProofLog:
    """The log over a ``ProofStore``. Reads need only ``verifier``; ``append`` needs
    ``signer``. One writer at a time (the caller holds a lock)."""

    def __init__(
        self, store: ProofStore, *, origin: str, verifier: NoteVerifier,
        signer: NoteSigner | None = None,
    ) -> None:
        _check_origin(origin)
        if signer is not None and signer.verifier() != verifier:
            raise ConfigError(
                f"proof log: signing key {signer.name}+{signer.key_id.hex()} does not match "
                f"verifier key {verifier.name}+{verifier.key_id.hex()}"
            )
        self.store = store
        self.origin = origin
        self.verifier = verifier
        self._signer = signer
        # (checkpoint note, its right-edge partial tiles, its partial bundle's entries)
        # as this object last published them; only used while the stored checkpoint is
        # still exactly that note
        self._edge_cache: tuple[bytes, dict[TileId, bytes], list[bytes]] | None = None

    # -- reading -------------------------------------------------------------------

    def _head(self) -> tuple[Checkpoint, bytes]:
        got = _read_checkpoint(self.store, verifier=self.verifier, origin=self.origin)
        if got is None:
            return Checkpoint(self.origin, 0, merkle.EMPTY_ROOT), b""
        return got

    def checkpoint(self) -> Checkpoint:
        """The latest signed checkpoint (signature verified); size 0 if there is none."""
        return self._head()[0]

    def checkpoint_note(self) -> bytes:
        """The signed checkpoint as stored (empty if there is none yet)."""
        return self._head()[1]

    def size(self) -> int:
        return self.checkpoint().size

    def _reader(self, size: int) -> TileHashReader:
        return TileHashReader(size, lambda t: _read_required(self.store, t.path))

    def _bundle(self, index: int, size: int) -> list[bytes]:
        tile = current_tile(TileId(ENTRIES, index), size)
        if tile is None:
            raise NotFoundError(f"proof log: no entry bundle {index} at size {size}")
        data = _read_required(self.store, tile.path)
        return decode_bundle(data, width=tile.width, path=f"{self.store.location}/{tile.path}")

    def entry(self, index: int) -> bytes:
        """Entry ``index`` (its proof id). Raises NotFoundError beyond the checkpoint."""
        size = self.size()
        if not 0 <= index < size:
            raise NotFoundError(f"proof {index}: the log has {size} entries")
        return self._bundle(index // TILE_WIDTH, size)[index % TILE_WIDTH]

    def entries(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """Entries ``start .. stop-1`` (``stop`` defaults to the checkpoint size)."""
        size = self.size()
        stop = size if stop is None else stop
        if not 0 <= start <= stop <= size:
            raise NotFoundError(f"proof log: entries [{start}, {stop}) not in a log of {size}")
        i = start
        while i < stop:
            bundle = self._bundle(i // TILE_WIDTH, size)
            first = i % TILE_WIDTH
            last = min(TILE_WIDTH, first + stop - i)
            yield from bundle[first:last]
            i += last - first

    def find(self, entry: bytes, *, start: int = 0) -> int | None:
        """The index of the first entry equal to ``entry`` at or after ``start``, or None.
        Reads every bundle from ``start`` on: pass the last known index for speed."""
        first = min(max(start, 0), self.size())
        for offset, e in enumerate(self.entries(first)):
            if e == entry:
                return first + offset
        return None

    def tree_hash(self, size: int) -> bytes:
        """The root of the first ``size`` entries, from the tiles (size <= current)."""
        current = self.size()
        if not 0 <= size <= current:
            raise NotFoundError(f"proof log: no tree of size {size} (log has {current})")
        return merkle.tree_hash(size, self._reader(current).node)

    def inclusion_proof(self, index: int) -> InclusionProof:
        """Proof of entry ``index`` against the latest checkpoint, hashes read from tiles
        and checked against the signed root before returning."""
        cp, note = self._head()
        if not 0 <= index < cp.size:
            raise NotFoundError(f"proof {index}: the log has {cp.size} entries")
        reader = self._reader(cp.size)
        hashes = tuple(merkle.inclusion_proof(index, cp.size, reader.node))
        leaf = reader.node(0, index)
        if merkle.leaf_hash(self._bundle(index // TILE_WIDTH, cp.size)[index % TILE_WIDTH]) != leaf:
            raise ProofError(f"{self.store.location}: entry {index} does not match tile/0")
        proof = InclusionProof(index, cp.size, cp.root, leaf, hashes, note)
        try:
            proof.verify()
        except ProofError as e:
            raise ProofError(
                f"{self.store.location}: tiles disagree with the checkpoint: {e}"
            ) from None
        return proof

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> tuple[bytes, ...]:
        """RFC 9162 proof that the tree of ``old_size`` is a prefix of ``new_size``
        (default: the latest checkpoint)."""
        current = self.size()
        new_size = current if new_size is None else new_size
        if not 0 <= old_size <= new_size <= current:
            raise NotFoundError(
                f"proof log: no consistency proof {old_size} -> {new_size} (log has {current})"
            )
        return tuple(merkle.consistency_proof(old_size, new_size, self._reader(current).node))

    # -- writing -------------------------------------------------------------------

    def initialize(self) -> Checkpoint:
        """Publish a signed checkpoint of the empty log if there is no checkpoint yet."""
        cp, note = self._head()
        if not note:
            self._publish(cp)
        return cp

    def _publish(self, cp: Checkpoint) -> None:
        signer = self._require_signer()
        self.store.replace(CHECKPOINT_PATH, sign_note(cp.text(), signer))

    def _require_signer(self) -> NoteSigner:
        if self._signer is None:
            raise ProofError("proof log: opened without a signing key (read-only)")
        return self._signer

    def _right_edge(self, cp: Checkpoint) -> tuple[dict[TileId, bytes], list[bytes]]:
        """The partial tiles of ``cp`` (one per level) and its partial bundle's entries,
        checked against the checkpoint's root."""
        edge: dict[TileId, bytes] = {}
        for tile in tiles_for_size(cp.size):
            if tile.is_partial:
                data = _read_required(self.store, tile.path)
                split_hashes(data, width=tile.width, path=f"{self.store.location}/{tile.path}")
                edge[tile] = data
        bundle_entries: list[bytes] = []
        if cp.size % TILE_WIDTH:
            bundle_entries = self._bundle(cp.size // TILE_WIDTH, cp.size)
            level0 = TileId(0, cp.size // TILE_WIDTH, cp.size % TILE_WIDTH)
            if b"".join(merkle.leaf_hash(e) for e in bundle_entries) != edge[level0]:
                raise ProofError(
                    f"{self.store.location}/{level0.path}: does not match its entry bundle; "
                    "refusing to append"
                )
        if _edge_root(cp.size, edge) != cp.root:
            raise ProofError(
                f"{self.store.location}: right-edge tiles do not match the checkpoint root "
                f"(size {cp.size}); refusing to append"
            )
        return edge, bundle_entries

    def append(self, entries: Sequence[bytes]) -> list[int]:
        """Append one batch; returns the new entries' indexes. The checkpoint is written
        last, so a crash leaves the previous one valid (see the module docstring)."""
        signer = self._require_signer()
        batch = [bytes(e) for e in entries]
        if not batch:
            return []
        for i, e in enumerate(batch):
            validate_entry(e, what=f"new entry {i} of {len(batch)}")
        cp, note = self._head()
        old, new = cp.size, cp.size + len(batch)
        cached, self._edge_cache = self._edge_cache, None
        if cached is not None and note and cached[0] == note:
            # the right edge this process wrote with the checkpoint still in force: not
            # read back. Trade-off: stored edge tiles damaged since then are not noticed
            # here but by ``proof verify`` (and by the first append of any other
            # process); the tiles written now derive from the correct edge either way.
            edge, edge_entries = cached[1], cached[2]
        else:
            edge, edge_entries = self._right_edge(cp)
        intent = _read_intent(self.store, verifier=self.verifier, origin=self.origin)
        where = f"{self.store.location}/{INTENT_PATH}"
        upto = old if intent is None else intent.leftover_bound(cp, where=where)

        immutable: list[tuple[str, bytes]] = []
        mutable: list[tuple[str, bytes]] = []
        produced: dict[tuple[int, int], bytes] = {}  # (level, index) -> newest content

        def emit(tile: TileId, data: bytes) -> None:
            produced[(tile.level, tile.index)] = data
            (mutable if tile.is_partial else immutable).append((tile.path, data))

        pending = edge_entries + batch
        for k in range(0, len(pending), TILE_WIDTH):
            chunk = pending[k : k + TILE_WIDTH]
            emit(TileId(ENTRIES, old // TILE_WIDTH + k // TILE_WIDTH, len(chunk)),
                 encode_bundle(chunk))

        fresh = [merkle.leaf_hash(e) for e in batch]
        level = 0
        while fresh:
            first, width = divmod(level_size(old, level), TILE_WIDTH)
            hashes = split_hashes(edge[TileId(level, first, width)], width=width,
                                  path=f"tile/{level}") if width else []
            hashes += fresh
            fresh = []
            for k in range(0, len(hashes), TILE_WIDTH):
                chunk = hashes[k : k + TILE_WIDTH]
                emit(TileId(level, first + k // TILE_WIDTH, len(chunk)), b"".join(chunk))
                if len(chunk) == TILE_WIDTH:
                    fresh.append(tile_root(chunk))
            level += 1

        # Fail closed before writing anything: every path written must be new, hold the
        # same bytes, or lie in the zone an interrupted append may have left (old, upto].
        fast = self.store if isinstance(self.store, ListingProofStore) else None
        paths = [path for path, _ in immutable + mutable]
        present = sorted(fast.existing(paths)) if fast is not None else paths
        held = dict(zip(present, _in_parallel([partial(self.store.read, p) for p in present]),
                        strict=True))
        for path, data in immutable + mutable:
            existing = held.get(path)
            if existing is not None and existing != data \
                    and not is_covered(parse_tile_path(path), upto):
                raise ProofError(
                    f"{self.store.location}/{path}: already holds different data beyond the "
                    f"checkpoint (size {old}) and no interrupted append explains it; "
                    "refusing to rewrite history"
                )
        bound = max(upto, new)
        self.store.replace(INTENT_PATH, sign_note(_Intent(cp, new, bound).text(), signer))
        # independent files, none of them read through checkpoint s: written together,
        # every one durable (or the append fails) before the checkpoint below
        _in_parallel(
            [partial(self._write_new_full, path, data, old=old, upto=upto,
                     absent=fast is not None and held.get(path) is None)
             for path, data in immutable]
            + [partial(self.store.replace, path, data) for path, data in mutable])
        if upto > old:
            self._rewrite_leftovers(old, new, produced)
        new_edge = {
            t: produced.get((t.level, t.index)) or edge[t]
            for t in tiles_for_size(new) if t.is_partial
        }
        head = Checkpoint(self.origin, new, _edge_root(new, new_edge))
        crashpoint("prooflog.after_tiles")  # kill -9 tests: tiles written, checkpoint not
        published = sign_note(head.text(), signer)
        self.store.replace(CHECKPOINT_PATH, published)
        self.store.replace(INTENT_PATH, sign_note(_Intent(head, new, bound).text(), signer))
        width = new % TILE_WIDTH
        self._edge_cache = (published, new_edge, pending[len(pending) - width:] if width else [])
        logger.info("proof log: appended %d entries (size %d -> %d)", len(batch), old, new,
                    extra={"event": "prooflog.appended"})
        return list(range(old, new))

    def _write_new_full(self, path: str, data: bytes, *, old: int, upto: int,
                        absent: bool = False) -> None:
        """``write_once``; ``absent``: the store's ``existing`` just said the file is not
        there (``write_new`` then skips the read)."""
        try:
            if absent:
                cast(ListingProofStore, self.store).write_new(path, data)
            else:
                self.store.write_once(path, data)
        except ProofError:
            if not is_covered(parse_tile_path(path), upto):
                raise ProofError(
                    f"{self.store.location}/{path}: already holds different data beyond the "
                    f"checkpoint (size {old}) and no interrupted append explains it; "
                    "refusing to rewrite history"
                ) from None
            logger.warning("proof log: overwriting %s left by an interrupted append", path,
                           extra={"event": "prooflog.leftover_replaced"})
            self.store.replace(path, data)

    def _rewrite_leftovers(
        self, old: int, new: int, produced: dict[tuple[int, int], bytes]
    ) -> None:
        """Rewrite stale partials that an interrupted append left beyond ``old`` and that
        the tree of ``new`` now covers, so they are prefixes of the current tiles."""
        for (level, index), data in produced.items():
            prefix = f"{TileId(level, index).path}.p/"
            for path in self.store.list(prefix):
                try:
                    tile = parse_tile_path(path)
                except ProofError:
                    continue  # verify_log reports it
                if tile.end <= level_size(old, level) or not is_covered(tile, new):
                    continue  # committed before, or still beyond the new checkpoint
                if level == ENTRIES:
                    entries = decode_bundle(data, path=path)[: tile.width]
                    want = encode_bundle(entries)
                else:
                    want = data[: tile.width * merkle.HASH_SIZE]
                if self.store.read(path) != want:
                    logger.warning("proof log: rewriting %s left by an interrupted append",
                                   path, extra={"event": "prooflog.leftover_replaced"})
                    self.store.replace(path, want)


# -- offline verification ------------------------------------------------------------


class _Verifier:
    """Streams every bundle, recomputes every tile bottom-up and compares bytes."""

    def __init__(
        self, store: ProofStore, size: int, stale: dict[tuple[int, int], list[TileId]]
    ) -> None:
        self.store = store
        self.location = store.location
        self.size = size
        self.stale = stale
        self.pending: dict[int, list[bytes]] = {}  # level -> hashes of its unfinished tile
        self.next_index: dict[int, int] = {}
        self.edge: dict[TileId, bytes] = {}
        self.entries = 0

    def where(self, path: str) -> str:
        return f"{self.location}/{path}"

    def run(self) -> bytes:
        for bundle in bundles_for_size(self.size):
            where = self.where(bundle.path)
            data = _read_required(self.store, bundle.path)
            entries = decode_bundle(data, width=bundle.width, path=where)
            for i, e in enumerate(entries):
                validate_entry(e, what=f"{where}: entry {bundle.start + i}")
            self.entries += len(entries)
            self.push(0, bundle.index, [merkle.leaf_hash(e) for e in entries])
            for s in self.stale.get((ENTRIES, bundle.index), []):
                if self.store.read(s.path) != encode_bundle(entries[: s.width]):
                    raise ProofError(
                        f"{self.where(s.path)}: stale partial bundle does not match entries "
                        f"{bundle.start}..{bundle.start + s.width - 1}"
                    )
        for level in sorted(self.pending):
            if self.pending[level]:
                self.push(level, self.next_index.get(level, 0), self.pending.pop(level))
        return _edge_root(self.size, self.edge)

    def push(self, level: int, index: int, hashes: list[bytes]) -> None:
        tile = TileId(level, index, len(hashes))
        want = b"".join(hashes)
        got = _read_required(self.store, tile.path)
        if got != want:
            self.mismatch(tile, got, hashes)
        for s in self.stale.get((level, index), []):
            if self.store.read(s.path) != want[: s.width * merkle.HASH_SIZE]:
                raise ProofError(
                    f"{self.where(s.path)}: stale partial tile is not a prefix of {tile.path}"
                )
        if tile.is_partial:
            self.edge[tile] = want
            return
        up = self.pending.setdefault(level + 1, [])
        up.append(tile_root(hashes))
        if len(up) == TILE_WIDTH:
            self.pending[level + 1] = []
            nxt = self.next_index.get(level + 1, 0)
            self.next_index[level + 1] = nxt + 1
            self.push(level + 1, nxt, up)
        else:
            self.next_index.setdefault(level + 1, 0)

    def mismatch(self, tile: TileId, got: bytes, hashes: list[bytes]) -> None:
        if len(got) != len(hashes) * merkle.HASH_SIZE:
            raise ProofError(
                f"{self.where(tile.path)}: {len(got)} bytes, expected "
                f"{len(hashes) * merkle.HASH_SIZE}"
            )
        stored = split_hashes(got, width=tile.width, path=tile.path)
        k = next(i for i, (a, b) in enumerate(zip(stored, hashes, strict=True)) if a != b)
        if tile.level == 0:
            raise ProofError(
                f"{self.where(tile.path)}: hash {k} does not match entry {tile.start + k} "
                f"(tile/entries): an entry or the tile was changed, removed or reordered"
            )
        raise ProofError(
            f"{self.where(tile.path)}: hash {k} does not match the tiles below it"
        )


def verify_log(
    store: ProofStore, *, verifier: NoteVerifier, origin: str | None = None,
    last_checkpoint: bytes | None = None,
) -> VerifiedLog:
    """Verify the whole log offline: the checkpoint's signature, every entry (canonical
    JSON deletion record), every tile at every level byte for byte, no unexpected file,
    and consistency with ``last_checkpoint`` (a signed note seen earlier). Raises
    ProofError with a one-line message naming the file or entry."""
    got = _read_checkpoint(store, verifier=verifier, origin=origin)
    if got is None:
        raise ProofError(f"{store.location}/{CHECKPOINT_PATH}: missing")
    cp, note = got
    last: Checkpoint | None = None
    if last_checkpoint is not None:
        try:
            last = Checkpoint.parse(open_note(last_checkpoint, verifier), origin=cp.origin)
        except ProofError as e:
            raise ProofError(f"last verified checkpoint: {e}") from None
        if last.size > cp.size:
            raise ProofError(
                f"{store.location}/{CHECKPOINT_PATH}: the log shrank from {last.size} to "
                f"{cp.size} entries since the last verified checkpoint"
            )
    intent = _read_intent(store, verifier=verifier, origin=cp.origin)
    upto = cp.size if intent is None else intent.leftover_bound(
        cp, where=f"{store.location}/{INTENT_PATH}"
    )

    expected = set(bundles_for_size(cp.size)) | set(tiles_for_size(cp.size))
    present: set[TileId] = set()
    stale: dict[tuple[int, int], list[TileId]] = {}
    uncommitted: list[str] = []
    for path in store.list(""):
        if path in (CHECKPOINT_PATH, INTENT_PATH):
            continue
        try:
            tile = parse_tile_path(path)
        except ProofError:
            raise ProofError(f"{store.location}/{path}: unexpected file in the proof log") from None
        present.add(tile)
        if tile in expected:
            continue
        if is_covered(tile, cp.size):
            stale.setdefault((tile.level, tile.index), []).append(tile)
        elif is_covered(tile, upto):
            uncommitted.append(path)
        else:
            raise ProofError(
                f"{store.location}/{path}: unexpected file beyond the checkpoint (size "
                f"{cp.size}), not left by an interrupted append"
            )
    missing = sorted(expected - present)
    if missing:
        raise ProofError(f"{store.location}/{missing[0].path}: missing")

    v = _Verifier(store, cp.size, stale)
    root = v.run()
    if root != cp.root:
        raise ProofError(
            f"{store.location}/{CHECKPOINT_PATH}: root does not match the tree recomputed "
            f"from the entries (size {cp.size})"
        )
    reader = TileHashReader(cp.size, lambda t: _read_required(store, t.path))
    if intent is not None and intent.base != cp and \
            merkle.tree_hash(intent.base.size, reader.node) != intent.base.root:
        raise ProofError(f"{store.location}/{INTENT_PATH}: its base is not a prefix of the log")
    if last is not None:
        proof = merkle.consistency_proof(last.size, cp.size, reader.node)
        try:
            merkle.verify_consistency(
                old_size=last.size, new_size=cp.size, old_root=last.root, new_root=cp.root,
                proof=proof,
            )
        except ProofError as e:
            raise ProofError(
                f"{store.location}/{CHECKPOINT_PATH}: not consistent with the last verified "
                f"checkpoint (size {last.size}): the log was forked or rewritten ({e})"
            ) from None
    return VerifiedLog(cp.size, cp.root, note, v.entries, tuple(uncommitted))
