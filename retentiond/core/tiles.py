"""C2SP tlog-tiles maths, tile height 8 (256 hashes or entries per tile). Pure: no I/O.

Layout (PROOF-FORMAT.md, "Tiles"): hash tile ``tile/<L>/<N>`` holds up to 256 hashes of
tree level 8*L; entry bundle ``tile/entries/<N>`` holds leaves 256*N .. 256*N+255; the
rightmost tile of a level may be partial, ``<path>.p/<W>`` with 1 <= W <= 255. ``<N>`` is
written in 3-digit groups, all but the last prefixed with ``x``: 1234067 -> x001/x234/067.
Entry bundles are at level ``ENTRIES`` (-1) here, like Go's ``tlog.Tile`` "data" level.
"""

from __future__ import annotations

import re
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from retentiond.core.merkle import HASH_SIZE, root_from_hashes
from retentiond.errors import ProofError

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # 256 hashes (or entries) in a full tile
ENTRIES = -1
"""Pseudo-level of entry bundles."""
MAX_LEVEL = 63
MAX_ENTRY_SIZE = 0xFFFF  # 65,535 bytes: the bundle length prefix is a big-endian uint16

_GROUP = re.compile(r"x?[0-9]{3}")
_PATH_PART = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*")


@dataclass(frozen=True, order=True)
class TileId:
    """One hash tile (``level >= 0``) or entry bundle (``level == ENTRIES``)."""

    level: int
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if not ENTRIES <= self.level <= MAX_LEVEL:
            raise ValueError(f"tile level {self.level} out of range")
        if self.index < 0:
            raise ValueError(f"negative tile index {self.index}")
        if not 1 <= self.width <= TILE_WIDTH:
            raise ValueError(f"tile width {self.width} out of range 1..{TILE_WIDTH}")

    @property
    def is_bundle(self) -> bool:
        return self.level == ENTRIES

    @property
    def is_partial(self) -> bool:
        return self.width < TILE_WIDTH

    @property
    def start(self) -> int:
        """Position of the first hash (or entry) at its level."""
        return self.index * TILE_WIDTH

    @property
    def end(self) -> int:
        """One past the position of the last hash (or entry) at its level."""
        return self.index * TILE_WIDTH + self.width

    @property
    def path(self) -> str:
        kind = "entries" if self.is_bundle else str(self.level)
        suffix = f".p/{self.width}" if self.is_partial else ""
        return f"tile/{kind}/{format_index(self.index)}{suffix}"

    def with_width(self, width: int) -> TileId:
        return TileId(self.level, self.index, width)

    def __str__(self) -> str:
        return self.path


def format_index(n: int) -> str:
    """``1234067`` -> ``x001/x234/067``; ``5`` -> ``005``."""
    if n < 0:
        raise ValueError(f"negative tile index {n}")
    out = f"{n % 1000:03d}"
    n //= 1000
    while n:
        out = f"x{n % 1000:03d}/{out}"
        n //= 1000
    return out


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """Path of a hash tile (``level >= 0``) or entry bundle (``level == ENTRIES``)."""
    return TileId(level, index, width).path


def parse_tile_path(path: str) -> TileId:
    """Inverse of ``TileId.path``; only the canonical spelling is accepted (ProofError)."""
    bad = ProofError(f"{path}: not a tile or entry bundle path")
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise bad
    if parts[1] == "entries":
        level = ENTRIES
    elif parts[1].isdigit() and parts[1].isascii() and len(parts[1]) <= 2:
        level = int(parts[1])
    else:
        raise bad
    groups = parts[2:]
    width = TILE_WIDTH
    if groups[-1].isdigit() and groups[-1].isascii() and len(groups) >= 2 \
            and groups[-2].endswith(".p"):
        if len(groups[-1]) > 3:
            raise bad
        width = int(groups[-1])
        groups = [*groups[:-2], groups[-2][: -len(".p")]]
    index = 0
    for g in groups:
        if not _GROUP.fullmatch(g):
            raise bad
        index = index * 1000 + int(g.lstrip("x"))
    try:
        tile = TileId(level, index, width)
    except ValueError:
        raise bad from None
    if tile.path != path:
        raise bad
    return tile


def level_size(size: int, level: int) -> int:
    """How many hashes (entries for ENTRIES) a tree of ``size`` leaves has at ``level``."""
    if level == ENTRIES:
        return size
    return size >> (TILE_HEIGHT * level)


def partial_width(size: int, level: int) -> int:
    """Width of the partial tile at ``level`` for a tree of ``size``; 0 if there is none.
    That is ``floor(size / 256**level) mod 256``."""
    return level_size(size, level) % TILE_WIDTH


def levels(size: int) -> range:
    """The hash-tile levels a tree of ``size`` leaves has (0 .. L with size >> 8L > 0)."""
    top = 0
    while level_size(size, top + 1) > 0:
        top += 1
    return range(top + 1) if size else range(0)


def tiles_at_level(size: int, level: int) -> list[TileId]:
    """Every tile (full, then the partial if any) at ``level`` for a tree of ``size``."""
    n = level_size(size, level)
    out = [TileId(level, i) for i in range(n // TILE_WIDTH)]
    if n % TILE_WIDTH:
        out.append(TileId(level, n // TILE_WIDTH, n % TILE_WIDTH))
    return out


def tiles_for_size(size: int) -> list[TileId]:
    """Every hash tile of a tree of ``size`` leaves, level by level, full then partial."""
    return [t for level in levels(size) for t in tiles_at_level(size, level)]


def bundles_for_size(size: int) -> list[TileId]:
    """Every entry bundle of a log of ``size`` entries, full then partial."""
    return tiles_at_level(size, ENTRIES)


def current_tile(tile: TileId, size: int) -> TileId | None:
    """The version of ``tile``'s position (same level and index) that a tree of ``size``
    publishes, or None if that tree has nothing at that position."""
    n = level_size(size, tile.level)
    if tile.start >= n:
        return None
    return tile.with_width(min(TILE_WIDTH, n - tile.start))


def is_covered(tile: TileId, size: int) -> bool:
    """True if every hash or entry of ``tile`` is fixed by a tree of ``size`` leaves (a
    current tile, or a stale partial that must be a prefix of the current one)."""
    return tile.end <= level_size(size, tile.level)


def split_hashes(data: bytes, *, width: int, path: str) -> list[bytes]:
    """The ``width`` hashes of a tile's bytes; ProofError if the length is wrong."""
    if len(data) != width * HASH_SIZE:
        raise ProofError(f"{path}: {len(data)} bytes, expected {width * HASH_SIZE}")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def encode_bundle(entries: Iterable[bytes]) -> bytes:
    """Each entry as a big-endian uint16 length then its bytes (<= 65,535 bytes each)."""
    out = bytearray()
    for i, e in enumerate(entries):
        if len(e) > MAX_ENTRY_SIZE:
            raise ValueError(f"entry {i}: {len(e)} bytes, the limit is {MAX_ENTRY_SIZE}")
        out += struct.pack(">H", len(e))
        out += e
    return bytes(out)


def decode_bundle(data: bytes, *, width: int | None = None, path: str = "bundle") -> list[bytes]:
    """Split an entry bundle. ``width`` (if given) is the exact entry count expected.
    A truncated, over-long or garbled bundle raises ProofError naming ``path``."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        if width is not None and len(out) == width:
            raise ProofError(f"{path}: {len(data) - pos} unexpected bytes after entry {width - 1}")
        if pos + 2 > len(data):
            raise ProofError(f"{path}: truncated length prefix of entry {len(out)}")
        (n,) = struct.unpack_from(">H", data, pos)
        pos += 2
        if pos + n > len(data):
            raise ProofError(f"{path}: entry {len(out)} truncated ({len(data) - pos} of {n} bytes)")
        out.append(data[pos : pos + n])
        pos += n
    if width is not None and len(out) != width:
        raise ProofError(f"{path}: {len(out)} entries, expected {width}")
    return out


def node_tile(level: int, index: int, size: int) -> tuple[TileId, int, int]:
    """Where tree node ``(level, index)`` of a tree of ``size`` leaves is computed from:
    ``(tile, start, count)``: the root of hashes ``start .. start+count-1`` of ``tile``.

    A node at level k lives in tile level k // 8 and is the root of 2**(k % 8) hashes.
    """
    if level < 0 or index < 0:
        raise ValueError(f"bad node ({level}, {index})")
    if (index + 1) << level > size:
        raise ValueError(f"node ({level}, {index}) is not complete in a tree of size {size}")
    tile_level, j = divmod(level, TILE_HEIGHT)
    first = index << j
    count = 1 << j
    tile = current_tile(TileId(tile_level, first // TILE_WIDTH), size)
    if tile is None or tile.end < first + count:  # pragma: no cover - excluded by the check
        raise ValueError(f"node ({level}, {index}) has no tile at size {size}")
    return tile, first % TILE_WIDTH, count


class TileHashReader:
    """Reads tree nodes of a tree of ``size`` leaves from its tiles, like Go's
    ``tlog.TileHashReader`` minus authentication (callers compare the root they get with
    a signed checkpoint). ``read_tile(tile)`` returns the tile's bytes; the last 64 tiles
    read are cached (64 * 8 KiB = 512 KiB)."""

    CACHE_TILES = 64

    def __init__(self, size: int, read_tile: Callable[[TileId], bytes]) -> None:
        self.size = size
        self._read_tile = read_tile
        self._cache: OrderedDict[TileId, list[bytes]] = OrderedDict()

    def hashes(self, tile: TileId) -> list[bytes]:
        """The hashes of ``tile`` (length-checked)."""
        got = self._cache.get(tile)
        if got is not None:
            self._cache.move_to_end(tile)
            return got
        got = split_hashes(self._read_tile(tile), width=tile.width, path=tile.path)
        self._cache[tile] = got
        if len(self._cache) > self.CACHE_TILES:
            self._cache.popitem(last=False)
        return got

    def node(self, level: int, index: int) -> bytes:
        """The hash of complete subtree ``(level, index)``: a ``merkle.NodeReader``."""
        tile, start, count = node_tile(level, index, self.size)
        return root_from_hashes(self.hashes(tile)[start : start + count])


def tile_root(hashes: Sequence[bytes]) -> bytes:
    """The hash a full tile contributes to the tile level above (its 256 hashes' root)."""
    if len(hashes) != TILE_WIDTH:
        raise ValueError(f"a full tile has {TILE_WIDTH} hashes, got {len(hashes)}")
    return root_from_hashes(hashes)


def check_store_path(path: str) -> str:
    """Validate a proof-store path: relative, ``/``-separated, no empty, ``.`` or ``..``
    part, no part starting with ``.`` (reserved for temporary files), at most 1024
    characters of ``[A-Za-z0-9_.-]``. Returns it; raises ProofError."""
    if not isinstance(path, str) or not path or len(path) > 1024:
        raise ProofError(f"proof store: invalid path {path!r}")
    for part in path.split("/"):
        if not _PATH_PART.fullmatch(part) or part.startswith("."):
            raise ProofError(f"proof store: invalid path {path!r}")
    return path
