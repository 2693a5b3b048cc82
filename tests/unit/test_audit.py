import json
import os
from datetime import UTC, datetime

import pytest

from retentiond.errors import AuditError
from retentiond.service.audit import AuditLog

T = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
def log(tmp_path):
    log = AuditLog(tmp_path / "audit.log")
    for i in range(5):
        log.append(action="decrypt", actor=f"user{i}", reason="ticket 42", now=T, object_id=f"o{i}")
    return log


def test_chain_verifies_and_is_private(log):
    summary = log.verify()
    assert summary.entries == 5
    assert oct(log.path.stat().st_mode & 0o777) == "0o600"


def _lines(log):
    return log.path.read_bytes().splitlines(keepends=True)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda ls: ls[:2] + ls[3:], id="line-removed"),
        pytest.param(lambda ls: [ls[1], ls[0], *ls[2:]], id="reordered"),
        pytest.param(lambda ls: [*ls[:2], ls[2].replace(b"user2", b"userX"), *ls[3:]], id="actor-changed"),
        pytest.param(lambda ls: [*ls[:-1], ls[-1][:-10]], id="truncated"),
        pytest.param(lambda ls: [*ls, ls[-1]], id="duplicated"),
        pytest.param(lambda ls: [ls[0].replace(b'"seq":1', b'"seq":9'), *ls[1:]], id="seq-changed"),
    ],
)
def test_tampering_is_detected(log, tamper):
    log.path.write_bytes(b"".join(tamper(_lines(log))))
    with pytest.raises(AuditError) as e:
        log.verify()
    assert str(log.path) in str(e.value)
    assert e.value.exit_code == 8


def test_recomputed_hash_still_breaks_chain(log):
    lines = _lines(log)
    entry = json.loads(lines[1])
    entry["actor"] = "mallory"
    from retentiond.service.audit import _entry_hash

    entry["hash"] = _entry_hash(entry)
    from retentiond.core.canonical import canonical_json

    lines[1] = canonical_json(entry) + b"\n"
    log.path.write_bytes(b"".join(lines))
    with pytest.raises(AuditError, match="chain broken"):
        log.verify()


def test_append_refuses_truncated_tail(log):
    log.path.write_bytes(log.path.read_bytes()[:-5])
    with pytest.raises(AuditError, match="truncated"):
        log.append(action="decrypt", actor="a", reason="r", now=T)


def test_the_default_actor_is_the_login_name_even_without_user_in_the_environment(
        monkeypatch):
    """cron and containers set no USER: the audit log still names who ran the command."""
    import pwd

    from retentiond.cli.common import actor_default

    for name in ("SUDO_USER", "USER", "LOGNAME", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    assert actor_default() == pwd.getpwuid(os.getuid()).pw_name
    monkeypatch.setenv("SUDO_USER", "alice")
    assert actor_default() == "alice"
