"""File key provider: key files, wrapping with tampering twins, pseudonyms, sampling."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retentiond.crypto.keys import (
    FileKeyProvider,
    create_key_files,
    discard_retiring,
    normalise_identifier,
    retire_kek,
    rotate,
)
from retentiond.errors import (
    ConfigError,
    IntegrityError,
    KeyUnavailableError,
    RetentiondError,
)
from retentiond.ports import KeyProvider, WrappedKey

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
DATA_KEY = bytes(range(100, 132))
OID = "rec-0001"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _key_bytes(path: Path) -> bytes:
    return base64.b64decode(path.read_text().split()[-1])


def _all_secrets(dir: Path) -> list[bytes]:
    paths = [*dir.glob("kek-*.key"), dir / "pseudonym.key", dir / "sampling.key"]
    return [_key_bytes(p) for p in paths]


def _assert_no_secret(text: str, dir: Path | list[bytes]) -> None:
    for secret in dir if isinstance(dir, list) else _all_secrets(dir):
        assert secret.hex() not in text.lower()
        assert base64.b64encode(secret).decode() not in text
        assert base64.b64encode(secret).decode().rstrip("=")[:20] not in text
    assert DATA_KEY.hex() not in text.lower()


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    dir = tmp_path / "keys"
    create_key_files(dir, now=NOW)
    return dir


@pytest.fixture
def provider(keydir: Path) -> FileKeyProvider:
    return FileKeyProvider(keydir)


# -- create_key_files ----------------------------------------------------------------------


def test_create_key_files_layout_and_modes(tmp_path: Path) -> None:
    dir = tmp_path / "setup" / "keys"
    created = create_key_files(dir, now=NOW)
    kek_files = sorted(dir.glob("kek-*.key"))
    assert len(kek_files) == 1
    assert set(created) == {kek_files[0], dir / "kek.current", dir / "pseudonym.key",
                            dir / "sampling.key"}
    assert _mode(dir) == 0o700
    for path in created:
        assert _mode(path) == 0o600, path
    kek_id = kek_files[0].name.removesuffix(".key")
    assert re.fullmatch(r"kek-20261123-[0-9a-f]{8}", kek_id)
    assert (dir / "kek.current").read_text() == kek_id + "\n"
    assert re.fullmatch(
        rf"retentiond-kek-v1 {kek_id} [A-Za-z0-9+/]{{43}}=\n", kek_files[0].read_text()
    )
    assert re.fullmatch(
        r"retentiond-hmac-v1 pseudonym [A-Za-z0-9+/]{43}=\n", (dir / "pseudonym.key").read_text()
    )
    assert len({_key_bytes(p) for p in (kek_files[0], dir / "pseudonym.key",
                                        dir / "sampling.key")}) == 3
    assert not list(dir.glob(".*"))  # no temporary file left behind
    assert FileKeyProvider(dir).current_kek_id() == kek_id


def test_create_key_files_uses_utc_date(tmp_path: Path) -> None:
    paris_late = datetime(2026, 11, 24, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    create_key_files(tmp_path / "k", now=paris_late)
    assert FileKeyProvider(tmp_path / "k").current_kek_id().startswith("kek-20261123-")


def test_create_key_files_never_overwrites(keydir: Path) -> None:
    before = {p.name: p.read_bytes() for p in keydir.iterdir()}
    assert create_key_files(keydir, now=NOW + timedelta(days=400)) == []
    assert {p.name: p.read_bytes() for p in keydir.iterdir()} == before


def test_create_key_files_completes_a_partial_folder(keydir: Path) -> None:
    """Only the missing files are created; existing ones are left as they are."""
    pseudonym_before = (keydir / "pseudonym.key").read_bytes()
    (keydir / "sampling.key").unlink()
    created = create_key_files(keydir, now=NOW)
    assert created == [keydir / "sampling.key"]
    assert (keydir / "pseudonym.key").read_bytes() == pseudonym_before


def test_create_key_files_keeps_a_foreign_file_in_place(tmp_path: Path) -> None:
    dir = tmp_path / "keys"
    dir.mkdir(mode=0o700)
    (dir / "pseudonym.key").write_text("not ours\n")
    created = create_key_files(dir, now=NOW)
    assert dir / "pseudonym.key" not in created
    assert (dir / "pseudonym.key").read_text() == "not ours\n"


def test_create_key_files_refuses_naive_time(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="aware"):
        create_key_files(tmp_path / "k", now=datetime(2026, 11, 23))


def test_create_key_files_refuses_world_writable_folder(tmp_path: Path) -> None:
    dir = tmp_path / "keys"
    dir.mkdir()
    dir.chmod(0o777)
    with pytest.raises(ConfigError, match="chmod 700"):
        create_key_files(dir, now=NOW)
    assert list(dir.iterdir()) == []


# -- loading refusals ----------------------------------------------------------------------

KEY_FILES = ["kek", "kek.current", "pseudonym.key", "sampling.key"]


def _path(dir: Path, name: str) -> Path:
    return next(dir.glob("kek-*.key")) if name == "kek" else dir / name


@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n in KEY_FILES])
@pytest.mark.parametrize(
    "mode",
    [
        pytest.param(0o644, id="0644"),
        pytest.param(0o640, id="0640"),
        pytest.param(0o604, id="0604"),
        pytest.param(0o620, id="group-writable"),
    ],
)
def test_loose_key_file_mode_is_refused(keydir: Path, name: str, mode: int) -> None:
    path = _path(keydir, name)
    path.chmod(mode)
    with pytest.raises(ConfigError) as info:
        FileKeyProvider(keydir)
    message = str(info.value)
    assert str(path) in message
    assert f"{mode:04o}" in message
    assert "\n" not in message
    _assert_no_secret(message, keydir)


@pytest.mark.parametrize("mode", [pytest.param(0o400, id="0400"), pytest.param(0o600, id="0600")])
def test_strict_modes_are_accepted(keydir: Path, mode: int) -> None:
    for name in KEY_FILES:
        _path(keydir, name).chmod(mode)
    FileKeyProvider(keydir)


@pytest.mark.parametrize(
    "mode", [pytest.param(0o777, id="world"), pytest.param(0o770, id="group")],
)
def test_writable_folder_is_refused(keydir: Path, mode: int) -> None:
    keydir.chmod(mode)
    try:
        with pytest.raises(ConfigError, match="writable by group or others"):
            FileKeyProvider(keydir)
    finally:
        keydir.chmod(0o700)


@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n in KEY_FILES])
def test_missing_key_file_is_refused(keydir: Path, name: str) -> None:
    path = _path(keydir, name)
    path.unlink()
    with pytest.raises(ConfigError, match=re.escape(str(path.name))):
        FileKeyProvider(keydir)


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        FileKeyProvider(tmp_path / "nope")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        pytest.param("pseudonym.key", "", id="empty"),
        pytest.param("pseudonym.key", "retentiond-hmac-v1 pseudonym\n", id="no-key"),
        pytest.param("pseudonym.key", f"retentiond-hmac-v1 pseudonym {_b64(bytes(16))}\n",
                     id="short-key"),
        pytest.param("pseudonym.key", "retentiond-hmac-v1 pseudonym ###notbase64###\n",
                     id="bad-base64"),
        pytest.param("pseudonym.key", f"retentiond-hmac-v1 sampling {_b64(bytes(32))}\n",
                     id="wrong-name"),
        pytest.param("pseudonym.key", f"retentiond-hmac-v2 pseudonym {_b64(bytes(32))}\n",
                     id="unknown-format"),
        pytest.param("pseudonym.key", f"retentiond-hmac-v1 pseudonym {_b64(bytes(32))}\nx\n",
                     id="two-lines"),
        pytest.param("sampling.key", "\xff\xfe", id="not-ascii"),
        pytest.param("sampling.key", "x" * 5000, id="too-large"),
        pytest.param("kek", f"retentiond-kek-v1 kek-20200101-00000000 {_b64(bytes(32))}\n",
                     id="kek-id-mismatch"),
        pytest.param("kek.current", "kek-../../etc\n", id="current-bad-id"),
        pytest.param("kek.current", "kek-20200101-deadbeef\n", id="current-names-absent-kek"),
    ],
)
def test_malformed_key_file_is_refused(keydir: Path, name: str, content: str) -> None:
    secrets = _all_secrets(keydir)
    path = _path(keydir, name)
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        FileKeyProvider(keydir)
    message = str(info.value)
    assert "kek.current" in message if name == "kek.current" else str(path) in message
    assert "\n" not in message
    assert "notbase64" not in message
    _assert_no_secret(message, secrets)


def test_stray_kek_file_name_is_refused(keydir: Path) -> None:
    stray = keydir / "kek-bad.name.key"
    stray.write_text("whatever\n")
    stray.chmod(0o600)
    with pytest.raises(ConfigError, match=re.escape("kek-bad.name.key")):
        FileKeyProvider(keydir)


def test_fifo_under_a_key_name_is_refused_without_blocking(keydir: Path) -> None:
    (keydir / "sampling.key").unlink()
    os.mkfifo(keydir / "sampling.key", 0o600)
    with pytest.raises(ConfigError, match="not a regular file"):
        FileKeyProvider(keydir)


def test_symlinked_key_files_are_followed(tmp_path: Path, keydir: Path) -> None:
    """Kubernetes secret volumes expose key files as symlinks: the target's mode counts."""
    linked = tmp_path / "linked"
    linked.mkdir(mode=0o700)
    for path in keydir.iterdir():
        (linked / path.name).symlink_to(path)
    assert FileKeyProvider(linked).current_kek_id() == FileKeyProvider(keydir).current_kek_id()


# -- wrap / unwrap -------------------------------------------------------------------------


def test_provider_implements_the_port(provider: FileKeyProvider) -> None:
    assert isinstance(provider, KeyProvider)


def test_wrap_unwrap_round_trip(provider: FileKeyProvider) -> None:
    wrapped = provider.wrap(DATA_KEY, object_id=OID)
    assert wrapped.kek_id == provider.current_kek_id()
    assert len(wrapped.blob) == 61 and wrapped.blob[0] == 1
    assert DATA_KEY not in wrapped.blob
    assert provider.unwrap(wrapped, object_id=OID) == DATA_KEY
    assert provider.wrap(DATA_KEY, object_id=OID).blob != wrapped.blob  # random nonce


@settings(max_examples=40, deadline=None)
@given(data_key=st.binary(min_size=32, max_size=32), object_id=st.text(min_size=1, max_size=60))
def test_wrap_unwrap_property(tmp_path_factory: pytest.TempPathFactory, data_key: bytes,
                              object_id: str) -> None:
    provider = _shared_provider(tmp_path_factory)
    assert provider.unwrap(provider.wrap(data_key, object_id=object_id),
                           object_id=object_id) == data_key


_SHARED: dict[str, FileKeyProvider] = {}


def _shared_provider(factory: pytest.TempPathFactory) -> FileKeyProvider:
    if "p" not in _SHARED:
        dir = factory.mktemp("shared") / "keys"
        create_key_files(dir, now=NOW)
        _SHARED["p"] = FileKeyProvider(dir)
    return _SHARED["p"]


def _flip(blob: bytes, at: int) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 0x01]) + blob[at + 1:]


@pytest.mark.parametrize(
    ("mutate", "object_id"),
    [
        pytest.param(lambda b: _flip(b, 0), OID, id="flip-version"),
        pytest.param(lambda b: _flip(b, 1), OID, id="flip-nonce-first"),
        pytest.param(lambda b: _flip(b, 12), OID, id="flip-nonce-last"),
        pytest.param(lambda b: _flip(b, 13), OID, id="flip-ciphertext-first"),
        pytest.param(lambda b: _flip(b, 44), OID, id="flip-ciphertext-last"),
        pytest.param(lambda b: _flip(b, 45), OID, id="flip-tag-first"),
        pytest.param(lambda b: _flip(b, 60), OID, id="flip-tag-last"),
        pytest.param(lambda b: b[:-1], OID, id="truncated"),
        pytest.param(lambda b: b[:13], OID, id="truncated-to-nonce"),
        pytest.param(lambda b: b"", OID, id="empty"),
        pytest.param(lambda b: b + b"\x00", OID, id="extended"),
        pytest.param(lambda b: b, "rec-0002", id="other-object-id"),
        pytest.param(lambda b: b, OID + "\x00", id="object-id-with-suffix"),
    ],
)
def test_tampered_wrapped_key_is_refused(provider: FileKeyProvider, keydir: Path,
                                         mutate: Callable[[bytes], bytes], object_id: str) -> None:
    wrapped = provider.wrap(DATA_KEY, object_id=OID)
    assert provider.unwrap(wrapped, object_id=OID) == DATA_KEY  # the untampered twin
    tampered = WrappedKey(kek_id=wrapped.kek_id, blob=mutate(wrapped.blob))
    with pytest.raises(IntegrityError) as info:
        provider.unwrap(tampered, object_id=object_id)
    assert not isinstance(info.value, KeyUnavailableError)
    message = str(info.value)
    assert "\n" not in message and info.value.__cause__ is None
    _assert_no_secret(message, keydir)


def test_wrong_kek_is_refused(tmp_path: Path, provider: FileKeyProvider) -> None:
    """Same KEK id, different key (e.g. a key folder restored from elsewhere)."""
    other_dir = tmp_path / "other"
    create_key_files(other_dir, now=NOW)
    other = FileKeyProvider(other_dir)
    wrapped = provider.wrap(DATA_KEY, object_id=OID)
    kek_id = wrapped.kek_id
    (other_dir / f"{other.current_kek_id()}.key").rename(other_dir / f"{kek_id}.key")
    text = (other_dir / f"{kek_id}.key").read_text().split()
    (other_dir / f"{kek_id}.key").write_text(f"{text[0]} {kek_id} {text[2]}\n")
    (other_dir / "kek.current").write_text(kek_id + "\n")
    impostor = FileKeyProvider(other_dir)
    assert impostor.current_kek_id() == kek_id
    with pytest.raises(IntegrityError, match="does not authenticate"):
        impostor.unwrap(wrapped, object_id=OID)


def test_blob_moved_to_another_kek_id_is_refused(keydir: Path) -> None:
    provider = FileKeyProvider(keydir)
    old = provider.wrap(DATA_KEY, object_id=OID)
    rotate(keydir, now=NOW)
    provider.reload()
    moved = WrappedKey(kek_id=provider.current_kek_id(), blob=old.blob)
    with pytest.raises(IntegrityError, match="does not authenticate"):
        provider.unwrap(moved, object_id=OID)


@pytest.mark.parametrize(
    "kek_id",
    [
        pytest.param("kek-20990101-00000000", id="absent"),
        pytest.param("kek-../../../etc/passwd", id="path-traversal"),
        pytest.param("pseudonym", id="not-a-kek-id"),
        pytest.param("kek-x\nforged log line", id="newline"),
    ],
)
def test_unknown_kek_id_is_unavailable(provider: FileKeyProvider, kek_id: str) -> None:
    wrapped = provider.wrap(DATA_KEY, object_id=OID)
    with pytest.raises(KeyUnavailableError) as info:
        provider.unwrap(WrappedKey(kek_id=kek_id, blob=wrapped.blob), object_id=OID)
    assert "\n" not in str(info.value)


def test_wrap_rejects_bad_arguments(provider: FileKeyProvider) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        provider.wrap(bytes(16), object_id=OID)
    with pytest.raises(ValueError, match="object_id"):
        provider.wrap(DATA_KEY, object_id="")


# -- rotation ------------------------------------------------------------------------------


def test_rotate_switches_current_and_keeps_old_keks(keydir: Path) -> None:
    provider = FileKeyProvider(keydir)
    old_id = provider.current_kek_id()
    old = provider.wrap(DATA_KEY, object_id=OID)
    new_id = rotate(keydir, now=NOW + timedelta(days=1))
    assert new_id != old_id and new_id.startswith("kek-20261124-")
    assert (keydir / "kek.current").read_text() == new_id + "\n"
    assert _mode(keydir / "kek.current") == 0o600
    assert _mode(keydir / f"{new_id}.key") == 0o600
    assert (keydir / f"{old_id}.key").exists()
    assert not list(keydir.glob(".*"))

    fresh = FileKeyProvider(keydir)
    assert fresh.current_kek_id() == new_id
    assert fresh.kek_ids() == tuple(sorted((old_id, new_id)))
    assert fresh.unwrap(old, object_id=OID) == DATA_KEY
    rewrapped = fresh.wrap(fresh.unwrap(old, object_id=OID), object_id=OID)
    assert rewrapped.kek_id == new_id
    assert fresh.unwrap(rewrapped, object_id=OID) == DATA_KEY


def test_running_provider_wraps_under_the_kek_made_current_elsewhere(keydir: Path) -> None:
    running = FileKeyProvider(keydir)  # a daemon, loaded before `retentiond keys rotate`
    old_id = running.current_kek_id()
    new_id = rotate(keydir, now=NOW)
    wrapped = running.wrap(DATA_KEY, object_id=OID)  # no restart, no SIGHUP
    assert wrapped.kek_id == new_id and running.current_kek_id() == new_id
    assert running.unwrap(wrapped, object_id=OID) == DATA_KEY
    assert retire_kek(keydir, old_id)
    assert running.wrap(DATA_KEY, object_id=OID).kek_id == new_id


def test_running_provider_stops_wrapping_when_the_changed_folder_does_not_load(
        keydir: Path) -> None:
    running = FileKeyProvider(keydir)
    (keydir / "kek.current").unlink()
    (keydir / "kek.current").write_text("kek-20261123-00000000\n")  # names no KEK file
    os.chmod(keydir / "kek.current", 0o600)
    with pytest.raises(KeyUnavailableError, match=r"no longer loads.*is missing"):
        running.wrap(DATA_KEY, object_id=OID)


def test_retire_kek_zeroes_then_removes_only_an_old_kek(keydir: Path, tmp_path: Path) -> None:
    old_id = FileKeyProvider(keydir).current_kek_id()
    with pytest.raises(ValueError, match="is the current"):
        retire_kek(keydir, old_id)
    new_id = rotate(keydir, now=NOW)
    old_file = keydir / f"{old_id}.key"
    size = old_file.stat().st_size
    twin = tmp_path / "same-inode"  # sees the very blocks the file had
    os.link(old_file, twin)
    assert retire_kek(keydir, old_id)
    assert not old_file.exists()
    assert twin.read_bytes() == bytes(size)  # overwritten before removal
    assert not retire_kek(keydir, old_id)  # already gone
    with pytest.raises(ValueError, match="not a key-encryption key id"):
        retire_kek(keydir, "../kek.current")
    assert FileKeyProvider(keydir).kek_ids() == (new_id,)


def test_a_retirement_cut_short_leaves_a_loadable_folder_and_is_finished(
        keydir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old_id = FileKeyProvider(keydir).current_kek_id()
    new_id = rotate(keydir, now=NOW)
    monkeypatch.setattr("retentiond.crypto.keys._zero_and_remove", lambda path: None)
    assert retire_kek(keydir, old_id)  # "crashed" after the rename
    monkeypatch.undo()
    left = keydir / f".{old_id}.retiring"
    assert left.exists() and FileKeyProvider(keydir).kek_ids() == (new_id,)
    assert discard_retiring(keydir) == 1
    assert not left.exists() and discard_retiring(keydir) == 0


def test_a_kek_retired_while_the_folder_is_read_is_skipped(
        keydir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import retentiond.crypto.keys as keys_module

    old_id = FileKeyProvider(keydir).current_kek_id()
    new_id = rotate(keydir, now=NOW)
    real = keys_module._load_kek

    def racing(path: Path):  # retired between the listing and the read
        if path.name == f"{old_id}.key":
            retire_kek(keydir, old_id)
        return real(path)

    monkeypatch.setattr(keys_module, "_load_kek", racing)
    assert FileKeyProvider(keydir).kek_ids() == (new_id,)


def test_a_running_provider_forgets_a_retired_kek(keydir: Path) -> None:
    running = FileKeyProvider(keydir)
    old_id = running.current_kek_id()
    old = running.wrap(DATA_KEY, object_id=OID)
    new_id = rotate(keydir, now=NOW)
    running.wrap(DATA_KEY, object_id=OID)  # sees the rotation; the old KEK still exists
    assert running.kek_ids() == tuple(sorted((old_id, new_id)))
    retire_kek(keydir, old_id)
    running.wrap(DATA_KEY, object_id=OID)  # the folder changed: read again
    assert running.kek_ids() == (new_id,)
    with pytest.raises(KeyUnavailableError, match="does not exist"):
        running.unwrap(old, object_id=OID)


def test_running_provider_picks_up_a_kek_added_by_rotation(keydir: Path) -> None:
    running = FileKeyProvider(keydir)  # loaded before `retentiond keys rotate`
    rotate(keydir, now=NOW)
    other_process = FileKeyProvider(keydir)
    wrapped = other_process.wrap(DATA_KEY, object_id=OID)
    assert running.unwrap(wrapped, object_id=OID) == DATA_KEY
    assert running.current_kek_id() == wrapped.kek_id  # kek.current changed: read again


def test_rotate_refuses_an_unsafe_folder(keydir: Path) -> None:
    (keydir / "pseudonym.key").chmod(0o644)
    before = sorted(p.name for p in keydir.iterdir())
    with pytest.raises(ConfigError, match="0644"):
        rotate(keydir, now=NOW)
    assert sorted(p.name for p in keydir.iterdir()) == before


# -- pseudonyms and sampling ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_id", "normalised"),
    [
        pytest.param("+33123456789", "+33123456789", id="e164"),
        pytest.param(" +33 1 23 45 67 89 ", "+33123456789", id="spaces"),
        pytest.param("+33-1.23.45.67.89", "+33123456789", id="dashes-dots"),
        pytest.param("+33 (1) 23 45 67 89", "+33123456789", id="parentheses"),
        pytest.param("+33\u00a01\u00a023456789", "+33123456789", id="no-break-spaces"),
        pytest.param("\uff0b\uff13\uff13123456789", "+33123456789", id="fullwidth"),
        pytest.param("01 23 45 67 89", "0123456789", id="national"),
        pytest.param("Jean.Dupont@Example.FR", "jean.dupont@example.fr", id="email-casefold"),
        pytest.param("  Straße-42 ", "strasse-42", id="text-keeps-dash"),
    ],
)
def test_normalise_identifier(given_id: str, normalised: str) -> None:
    assert normalise_identifier(given_id) == normalised


@pytest.mark.parametrize("blank", [pytest.param("", id="empty"), pytest.param(" \t ", id="blank")])
def test_normalise_identifier_refuses_blank(blank: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        normalise_identifier(blank)


def test_pseudonym_matches_independent_hmac(provider: FileKeyProvider, keydir: Path) -> None:
    key = _key_bytes(keydir / "pseudonym.key")
    expected = "hmac-sha256:" + hmac.new(key, b"+33123456789", hashlib.sha256).hexdigest()
    assert provider.pseudonym("+33 1 23 45 67 89") == expected
    assert provider.pseudonym("+33123456789") == expected
    assert provider.pseudonym("+33123456780") != expected
    assert re.fullmatch(r"hmac-sha256:[0-9a-f]{64}", expected)


def test_pseudonym_is_stable_per_key_set(tmp_path: Path, keydir: Path) -> None:
    other = tmp_path / "other"
    create_key_files(other, now=NOW)
    first = FileKeyProvider(keydir).pseudonym("+33123456789")
    assert FileKeyProvider(keydir).pseudonym("+33123456789") == first
    assert FileKeyProvider(other).pseudonym("+33123456789") != first


def test_sample_score_matches_independent_hmac(provider: FileKeyProvider, keydir: Path) -> None:
    key = _key_bytes(keydir / "sampling.key")
    x = int.from_bytes(hmac.new(key, b"call-42", hashlib.sha256).digest()[:8], "big")
    assert provider.sample_score("call-42") == (x >> 11) / 2**53
    assert abs(provider.sample_score("call-42") - x / 2**64) < 2**-52


@settings(max_examples=200, deadline=None)
@given(call_id=st.text(min_size=1, max_size=80))
def test_sample_score_in_unit_interval(tmp_path_factory: pytest.TempPathFactory,
                                       call_id: str) -> None:
    provider = _shared_provider(tmp_path_factory)
    score = provider.sample_score(call_id)
    assert 0.0 <= score < 1.0
    assert provider.sample_score(call_id) == score


def test_sample_score_is_roughly_uniform(provider: FileKeyProvider) -> None:
    scores = [provider.sample_score(f"call-{i}") for i in range(4000)]
    assert abs(sum(scores) / len(scores) - 0.5) < 0.03
    assert 0.27 < sum(s < 0.3 for s in scores) / len(scores) < 0.33


def test_sample_score_refuses_empty_call_id(provider: FileKeyProvider) -> None:
    with pytest.raises(ValueError, match="empty"):
        provider.sample_score("")


# -- secrets stay out of repr, str and errors ----------------------------------------------


def test_repr_and_str_hold_no_key_material(provider: FileKeyProvider, keydir: Path) -> None:
    wrapped = provider.wrap(DATA_KEY, object_id=OID)
    for text in (repr(provider), str(provider), repr(wrapped), str(wrapped),
                 repr(provider._keys), repr(provider._keys.keks)):
        _assert_no_secret(text, keydir)
        assert wrapped.blob.hex() not in text
    assert provider.current_kek_id() in repr(provider)
    assert "blob" not in repr(wrapped)


def test_errors_hold_no_key_material(provider: FileKeyProvider, keydir: Path) -> None:
    wrapped = provider.wrap(DATA_KEY, object_id=OID)
    failures: list[RetentiondError] = []
    attempts: list[Callable[[], object]] = [
        lambda: provider.unwrap(WrappedKey(wrapped.kek_id, _flip(wrapped.blob, 30)),
                                object_id=OID),
        lambda: provider.unwrap(wrapped, object_id="other"),
        lambda: provider.unwrap(WrappedKey("kek-20990101-00000000", wrapped.blob),
                                object_id=OID),
    ]
    for attempt in attempts:
        with pytest.raises(RetentiondError) as info:
            attempt()
        failures.append(info.value)
    for err in failures:
        for text in (str(err), repr(err), repr(err.args)):
            _assert_no_secret(text, keydir)
            assert wrapped.blob.hex() not in text


def test_key_files_are_not_left_readable_by_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        create_key_files(tmp_path / "keys", now=NOW)
    finally:
        os.umask(old)
    for path in (tmp_path / "keys").iterdir():
        assert _mode(path) == 0o600
    assert _mode(tmp_path / "keys") == 0o700
