"""C2SP tlog-tiles maths: paths, which tiles a tree has, bundles, reading nodes."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retentiond.core import merkle, tiles
from retentiond.core.tiles import ENTRIES, TileHashReader, TileId
from retentiond.errors import ProofError


@pytest.mark.parametrize(("n", "text"), [
    pytest.param(0, "000", id="0"),
    pytest.param(5, "005", id="5"),
    pytest.param(999, "999", id="999"),
    pytest.param(1000, "x001/000", id="1000"),
    pytest.param(1234067, "x001/x234/067", id="1234067"),
    pytest.param(1_000_000, "x001/x000/000", id="1e6"),
])
def test_format_index(n: int, text: str) -> None:
    assert tiles.format_index(n) == text


@pytest.mark.parametrize(("tile", "path"), [
    pytest.param(TileId(0, 1234067), "tile/0/x001/x234/067", id="level0-full"),
    pytest.param(TileId(2, 5, 1), "tile/2/005.p/1", id="level2-partial"),
    pytest.param(TileId(ENTRIES, 5), "tile/entries/005", id="bundle-full"),
    pytest.param(TileId(ENTRIES, 1000, 255), "tile/entries/x001/000.p/255", id="bundle-partial"),
])
def test_paths(tile: TileId, path: str) -> None:
    assert tile.path == path
    assert tiles.tile_path(tile.level, tile.index, tile.width) == path
    assert tiles.parse_tile_path(path) == tile


@settings(max_examples=200)
@given(st.integers(ENTRIES, 7), st.integers(0, 10**12), st.integers(1, 256))
def test_path_round_trip(level: int, index: int, width: int) -> None:
    tile = TileId(level, index, width)
    assert tiles.parse_tile_path(tile.path) == tile


@pytest.mark.parametrize("path", [
    pytest.param("tile/0/5", id="short-group"),
    pytest.param("tile/0/0005", id="long-group"),
    pytest.param("tile/0/x000/005", id="leading-zero-group"),
    pytest.param("tile/0/005/001", id="unprefixed-inner-group"),
    pytest.param("tile/0/005.p/0", id="width-0"),
    pytest.param("tile/0/005.p/256", id="width-256"),
    pytest.param("tile/0/005.p/07", id="width-leading-zero"),
    pytest.param("tile/0/005.p", id="no-width"),
    pytest.param("tile/entries", id="no-index"),
    pytest.param("tile/64/000", id="level-64"),
    pytest.param("tile/00/000", id="level-leading-zero"),
    pytest.param("tile/-1/000", id="negative-level"),
    pytest.param("tile/data/000", id="go-data-path"),
    pytest.param("tile/8/0/000", id="go-sumdb-path"),
    pytest.param("tile/0/000/", id="trailing-slash"),
    pytest.param("checkpoint", id="checkpoint"),
    pytest.param("tile/0/000.bak", id="backup-file"),
])
def test_parse_rejects_non_canonical_paths(path: str) -> None:
    with pytest.raises(ProofError, match="not a tile"):
        tiles.parse_tile_path(path)


@pytest.mark.parametrize(("size", "paths"), [
    pytest.param(0, [], id="0"),
    pytest.param(1, ["tile/0/000.p/1"], id="1"),
    pytest.param(255, ["tile/0/000.p/255"], id="255"),
    pytest.param(256, ["tile/0/000", "tile/1/000.p/1"], id="256"),
    pytest.param(257, ["tile/0/000", "tile/0/001.p/1", "tile/1/000.p/1"], id="257"),
    pytest.param(65536, ["tile/0/000", "...", "tile/1/000", "tile/2/000.p/1"], id="65536"),
])
def test_tiles_for_size(size: int, paths: list[str]) -> None:
    got = [t.path for t in tiles.tiles_for_size(size)]
    if "..." in paths:
        assert got[0] == paths[0]
        assert got[-2:] == paths[-2:]
        assert len(got) == 256 + 2
    else:
        assert got == paths


@settings(max_examples=200)
@given(st.integers(0, 2**64 - 1))
def test_partial_widths_follow_the_spec(size: int) -> None:
    for level in tiles.levels(size):
        assert tiles.partial_width(size, level) == (size // 256**level) % 256
        assert size // 256**level > 0
    assert size // 256 ** len(tiles.levels(size)) == 0


@settings(max_examples=100)
@given(st.integers(0, 300_000))
def test_tiles_at_each_level(size: int) -> None:
    listed = tiles.tiles_for_size(size)
    for level in tiles.levels(size):
        n = size // 256**level
        at_level = [t for t in listed if t.level == level]
        assert [t.index for t in at_level if not t.is_partial] == list(range(n // 256))
        assert [t.width for t in at_level if t.is_partial] == ([n % 256] if n % 256 else [])
    assert {t.level for t in listed} == set(tiles.levels(size))


@pytest.mark.parametrize(("size", "paths"), [
    pytest.param(0, [], id="0"),
    pytest.param(3, ["tile/entries/000.p/3"], id="3"),
    pytest.param(256, ["tile/entries/000"], id="256"),
    pytest.param(513, ["tile/entries/000", "tile/entries/001", "tile/entries/002.p/1"],
                 id="513"),
])
def test_bundles_for_size(size: int, paths: list[str]) -> None:
    assert [t.path for t in tiles.bundles_for_size(size)] == paths


@pytest.mark.parametrize(("tile", "size", "covered", "current"), [
    pytest.param(TileId(0, 0, 5), 5, True, TileId(0, 0, 5), id="current-partial"),
    pytest.param(TileId(0, 0, 5), 300, True, TileId(0, 0), id="stale-partial"),
    pytest.param(TileId(0, 0, 7), 5, False, TileId(0, 0, 5), id="wider-than-tree"),
    pytest.param(TileId(0, 1), 300, False, TileId(0, 1, 44), id="full-beyond"),
    pytest.param(TileId(1, 0, 1), 255, False, None, id="level-not-there-yet"),
    pytest.param(TileId(ENTRIES, 2, 1), 513, True, TileId(ENTRIES, 2, 1), id="bundle"),
])
def test_coverage(tile: TileId, size: int, covered: bool, current: TileId | None) -> None:
    assert tiles.is_covered(tile, size) is covered
    assert tiles.current_tile(tile, size) == current


@settings(max_examples=100)
@given(st.lists(st.binary(max_size=300), max_size=300))
def test_bundle_round_trip(entries: list[bytes]) -> None:
    data = tiles.encode_bundle(entries)
    assert tiles.decode_bundle(data) == entries
    assert tiles.decode_bundle(data, width=len(entries)) == entries


def test_bundle_size_limit() -> None:
    big = b"x" * tiles.MAX_ENTRY_SIZE
    assert tiles.decode_bundle(tiles.encode_bundle([big, b""]), width=2) == [big, b""]
    assert tiles.encode_bundle([big])[:2] == b"\xff\xff"
    with pytest.raises(ValueError, match="65535"):
        tiles.encode_bundle([big + b"x"])


@pytest.mark.parametrize(("data", "width", "message"), [
    pytest.param(b"\x00", None, "truncated length", id="half-prefix"),
    pytest.param(b"\x00\x05abc", None, "truncated", id="short-entry"),
    pytest.param(b"\x00\x01a\x00", None, "truncated length", id="trailing-byte"),
    pytest.param(b"\x00\x01a\x00\x01b", 1, "unexpected bytes", id="extra-entry"),
    pytest.param(b"\x00\x01a", 2, "1 entries, expected 2", id="missing-entry"),
    pytest.param(b"", 1, "0 entries", id="empty"),
])
def test_garbled_bundles_fail(data: bytes, width: int | None, message: str) -> None:
    with pytest.raises(ProofError, match=message):
        tiles.decode_bundle(data, width=width, path="tile/entries/000")


@settings(max_examples=100)
@given(st.lists(st.binary(max_size=20), min_size=1, max_size=40), st.data())
def test_truncated_bundles_fail(entries: list[bytes], data: st.DataObject) -> None:
    encoded = tiles.encode_bundle(entries)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(ProofError):
        tiles.decode_bundle(encoded[:cut], width=len(entries))


def test_split_hashes_checks_length() -> None:
    assert tiles.split_hashes(b"a" * 64, width=2, path="t") == [b"a" * 32] * 2
    with pytest.raises(ProofError, match="63 bytes, expected 64"):
        tiles.split_hashes(b"a" * 63, width=2, path="t")


def build_tiles(leaves: list[bytes]) -> dict[TileId, bytes]:
    """Reference tiling written from the spec text: hash i of tile N at level L is the
    root of leaves [(256N+i)*256^L, (256N+i+1)*256^L)."""
    size = len(leaves)
    out: dict[TileId, bytes] = {}
    for tile in tiles.tiles_for_size(size):
        span = 256**tile.level
        out[tile] = b"".join(
            merkle.root_from_hashes(leaves[(tile.start + i) * span : (tile.start + i + 1) * span])
            for i in range(tile.width)
        )
    return out


def leaves_of(size: int) -> list[bytes]:
    return [hashlib.sha256(b"\x00" + i.to_bytes(4, "big")).digest() for i in range(size)]


@pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 511, 1000, 65535, 65536, 65537, 70000])
def test_tile_reader_gives_every_root_and_node(size: int) -> None:
    leaves = leaves_of(size)
    stored = build_tiles(leaves)
    reads: list[TileId] = []

    def read(tile: TileId) -> bytes:
        reads.append(tile)
        return stored[tile]

    reader = TileHashReader(size, read)
    assert merkle.tree_hash(size, reader.node) == merkle.root_from_hashes(leaves)
    # Any complete node, at any level, comes out of the tile at level // 8.
    for level in range(size.bit_length()):
        count = size >> level
        for index in {0, count // 2, count - 1} if count else set():
            lo, hi = index << level, (index + 1) << level
            want = merkle.root_from_hashes(leaves[lo:hi]) if hi - lo < 5000 else None
            got = reader.node(level, index)
            if want is not None:
                assert got == want
            tile, _, _ = tiles.node_tile(level, index, size)
            assert tile.level == level // 8
    assert all(t in stored for t in reads)


@pytest.mark.parametrize(("level", "index", "size", "want"), [
    pytest.param(0, 5, 10, (TileId(0, 0, 10), 5, 1), id="leaf-in-partial"),
    pytest.param(8, 0, 300, (TileId(1, 0, 1), 0, 1), id="level8-node"),
    pytest.param(9, 0, 600, (TileId(1, 0, 2), 0, 2), id="level9-node"),
    pytest.param(7, 1, 300, (TileId(0, 0), 128, 128), id="level7-in-full-tile"),
    pytest.param(16, 0, 65536, (TileId(2, 0, 1), 0, 1), id="level16-node"),
])
def test_node_tile(level: int, index: int, size: int, want: tuple[TileId, int, int]) -> None:
    assert tiles.node_tile(level, index, size) == want


def test_node_tile_rejects_incomplete_nodes() -> None:
    with pytest.raises(ValueError, match="not complete"):
        tiles.node_tile(1, 2, 5)


def test_tile_reader_rejects_wrong_tile_length() -> None:
    reader = TileHashReader(3, lambda t: b"\0" * 64)
    with pytest.raises(ProofError, match=r"tile/0/000\.p/3: 64 bytes, expected 96"):
        reader.node(0, 0)


@pytest.mark.parametrize("path", [
    pytest.param("checkpoint", id="checkpoint"),
    pytest.param("tile/0/x001/234.p/5", id="partial"),
    pytest.param("tile/entries/000", id="bundle"),
])
def test_store_paths_accepted(path: str) -> None:
    assert tiles.check_store_path(path) == path


@pytest.mark.parametrize("path", [
    pytest.param("", id="empty"),
    pytest.param("/etc/passwd", id="absolute"),
    pytest.param("../x", id="dotdot"),
    pytest.param("tile/../../x", id="inner-dotdot"),
    pytest.param("tile//000", id="empty-part"),
    pytest.param("tile/./000", id="dot"),
    pytest.param(".hidden", id="hidden"),
    pytest.param("tile/", id="trailing-slash"),
    pytest.param("tile\\000", id="backslash"),
    pytest.param("tile/\x00", id="nul"),
    pytest.param("a" * 1025, id="too-long"),
])
def test_store_paths_rejected(path: str) -> None:
    with pytest.raises(ProofError, match="invalid path"):
        tiles.check_store_path(path)
