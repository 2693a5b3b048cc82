"""A recorder may still be writing a file that has not changed for the settle time (a
pause, a buffered writer). Where Linux read leases can be taken, a file open for writing
by another program is never ingested, and one opened for writing while it is read is
left whole in the inbox: nothing the recorder writes afterwards can land in an unlinked
file. Writers here are real other processes or real extra opens, not fakes."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from retentiond.adapters import localfs
from retentiond.service import ingest as ingest_module
from retentiond.service.access import retrieve
from retentiond.service.daemon import Daemon
from retentiond.service.ingest import LEASE_CHECK_BYTES, Ingestor
from tests.conftest import _TEST_CLOCK, cli_env, logged, make_wav, write_sidecar

# the writer: opens the file to append, writes its first half, says so, waits for a line
# on stdin, writes the second half, closes
_WRITER = """
import os, sys
path, first, rest = sys.argv[1], bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
os.write(fd, first)
print("written", flush=True)
sys.stdin.readline()
os.write(fd, rest)
os.close(fd)
"""


@contextmanager
def recorder(path: Path, first: bytes, rest: bytes, *, at: float,
             ) -> Iterator[subprocess.Popen[str]]:
    """Another process writing ``path``: ``first`` is on disk when this yields, the file
    still open; ``rest`` follows (and the file is closed) when the block ends. The file's
    mtime is then set to ``at`` (the test clock's now: it is the recording time)."""
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), first.hex(), rest.hex()],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
        yield proc
    finally:
        if proc.stdin is not None:
            proc.stdin.write("go\n")
            proc.stdin.close()
        assert proc.wait(timeout=30) == 0
        os.utime(path, (at, at))


class _LateWriter:
    """A thread that opens ``path`` for appending (its ``open`` waits while retentiond's
    lease is being broken), appends ``extra`` and closes; ``blocked_for`` is how long the
    open waited."""

    def __init__(self, path: Path, extra: bytes) -> None:
        self.path, self.extra = path, extra
        self.blocked_for: float | None = None
        self.go = threading.Event()  # it writes once this is set (set by ``join``)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        ino = os.stat(self.path).st_ino
        self.thread.start()
        wait_for_lease_break(ino)  # its open() now waits for retentiond to let go

    def _run(self) -> None:
        t0 = time.monotonic()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.blocked_for = time.monotonic() - t0
        self.go.wait(60)  # a recorder that opened the file and writes a little later
        os.write(fd, self.extra)
        if _TEST_CLOCK:  # the recording time is the mtime: keep it on the test clock
            at = _TEST_CLOCK[-1].now().timestamp()
            os.utime(fd, (at, at))
        os.close(fd)

    def join(self) -> None:
        self.go.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()


def wait_for_lease_break(ino: int, timeout: float = 20.0) -> None:
    """Until /proc/locks shows the lease on inode ``ino`` being broken (a writer's open()
    waiting for it), however loaded the machine is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/locks", encoding="ascii") as f:
            if any(" BREAKING " in line and line.split()[5].endswith(f":{ino}")
                   for line in f if "LEASE" in line and "->" not in line):
                return
        time.sleep(0.005)
    raise AssertionError(f"no lease break on inode {ino} within {timeout} s")


def _inbox(app) -> Path:
    return Path(app.settings.inbox[0])


def _vault_objects(app) -> list[Path]:
    vault = Path(app.settings.vault)
    return [p for p in vault.rglob("*") if p.is_file() and ".tmp" not in p.parts]


def _nothing_kept(app) -> None:
    assert app.catalog.query() == [] and app.catalog.key_ids() == set()
    assert _vault_objects(app) == []


def test_file_still_open_for_writing_is_not_ingested_until_closed(app, clock, tmp_path):
    inbox = _inbox(app)
    whole = make_wav(tmp_path / "whole.wav")
    path = inbox / "call.wav"
    write_sidecar(path, purpose="training")
    with recorder(path, whole[:1000], whole[1000:], at=clock.now().timestamp()):
        o = Ingestor(app).ingest(inbox, "call.wav", now=clock.now())
        assert o.outcome == "changed" and "still open for writing" in o.message
        assert path.read_bytes() == whole[:1000]
        _nothing_kept(app)
    o = Ingestor(app).ingest(inbox, "call.wav", now=clock.now())
    assert o.outcome == "stored", o.message
    out = tmp_path / "out.wav"
    retrieve(app, o.object_id, out=out, actor="t", reason="test", now=clock.now())
    assert out.read_bytes() == whole and not path.exists()


def test_daemon_waits_the_settle_time_again_for_a_file_still_open(app, clock, tmp_path):
    """Unchanged for the settle time but open: tried, found open, waits the settle time
    again (no retry at every turn), and goes in whole once the recorder closes it."""
    app.settings = replace(app.settings, ingest_workers=1)
    inbox = _inbox(app)
    whole = make_wav(tmp_path / "whole.wav")
    path = inbox / "call.wav"
    write_sidecar(path, purpose="training")
    daemon = Daemon(app)
    with recorder(path, whole[:2000], whole[2000:], at=clock.now().timestamp()):
        assert daemon.ingest_ready(now=clock.now())[0] == []  # first sight
        clock.advance(timedelta(seconds=5))
        outcomes, next_in, pending = daemon.ingest_ready(now=clock.now())
        assert [o.outcome for o in outcomes] == ["changed"] and pending == 1
        assert next_in == pytest.approx(app.settings.settle_seconds)
        assert daemon.ingest_ready(now=clock.now())[0] == []  # not retried at once
    clock.advance(timedelta(seconds=5))  # the recorder wrote the rest: a new signature
    assert daemon.ingest_ready(now=clock.now())[0] == []
    clock.advance(timedelta(seconds=5))
    outcomes, _, pending = daemon.ingest_ready(now=clock.now())
    assert [o.outcome for o in outcomes] == ["stored"] and pending == 0
    out = tmp_path / "out.wav"
    retrieve(app, outcomes[0].object_id, out=out, actor="t", reason="test", now=clock.now())
    assert out.read_bytes() == whole


def test_writer_opening_the_file_while_it_is_stored_keeps_it(app, clock, tmp_path):
    """A program opens the file for writing after it was sealed: the ingest is undone, the
    file stays whole in the inbox with what the program appended, and that program's open
    waited only until retentiond let go (not the kernel's 45 s)."""
    inbox = _inbox(app)
    data = make_wav(inbox / "call.wav")
    write_sidecar(inbox / "call.wav", purpose="training")
    ing = Ingestor(app)
    real = ing._verify_vault_copy
    writer = _LateWriter(inbox / "call.wav", b"more")

    def open_for_writing_then_verify(*a, **kw):
        writer.start()
        return real(*a, **kw)

    ing._verify_vault_copy = open_for_writing_then_verify
    o = ing.ingest(inbox, "call.wav", now=clock.now())
    writer.join()
    assert o.outcome == "changed" and "changed while being ingested" in o.message
    assert (inbox / "call.wav").read_bytes() == data + b"more"
    assert (inbox / "call.wav.json").exists()
    _nothing_kept(app)
    # its open() waited on the lease (start() saw the break) until retentiond let go, not
    # for the kernel's lease-break time (45 s)
    assert writer.blocked_for is not None and writer.blocked_for < 10


def test_writer_appearing_mid_read_stops_the_ingest_early(app, clock, monkeypatch):
    """The sealer looks at the lease every LEASE_CHECK_BYTES: a large file opened for
    writing near its start is not sealed to the end before the ingest gives up."""
    inbox = _inbox(app)
    path = inbox / "big.wav"
    data = os.urandom(3 * LEASE_CHECK_BYTES)
    path.write_bytes(data)
    write_sidecar(path, purpose="training")
    writers: list[_LateWriter] = []

    class LeaseThenWriter(localfs.ReadLease):
        def __init__(self, fd: int) -> None:
            super().__init__(fd)
            writers.append(_LateWriter(path, b"x"))
            writers[-1].start()

    monkeypatch.setattr(ingest_module, "ReadLease", LeaseThenWriter)
    ing = Ingestor(app)
    verified = []
    real = ing._verify_vault_copy
    ing._verify_vault_copy = lambda *a, **kw: verified.append(1) or real(*a, **kw)
    o = ing.ingest(inbox, "big.wav", now=clock.now())
    writers[0].join()
    assert o.outcome == "changed" and "opened for writing" in o.message
    assert verified == []  # stopped while sealing
    assert path.read_bytes() == data + b"x"
    _nothing_kept(app)


def test_writer_between_the_last_check_and_the_unlink_keeps_the_file(app, clock, caplog,
                                                                     tmp_path):
    """A program opens the file for writing just after the recording is stored: the
    stored copy is what was read, the file is not unlinked (what the program writes next
    would be lost), and the next ingest stores it whole."""
    inbox = _inbox(app)
    data = make_wav(inbox / "call.wav")
    write_sidecar(inbox / "call.wav", purpose="training")
    ing = Ingestor(app)
    real = app.catalog.mark_stored
    writer = _LateWriter(inbox / "call.wav", b"tail")

    def stored_then_writer(*a, **kw):
        got = real(*a, **kw)
        writer.start()
        return got

    app.catalog.mark_stored = stored_then_writer
    o = ing.ingest(inbox, "call.wav", now=clock.now())
    writer.join()
    app.catalog.mark_stored = real
    assert o.outcome == "stored"
    assert logged(caplog, "ingest.source_reopened")
    assert (inbox / "call.wav").read_bytes() == data + b"tail"
    assert (inbox / "call.wav.json").exists()
    first = tmp_path / "first.wav"
    retrieve(app, o.object_id, out=first, actor="t", reason="test", now=clock.now())
    assert first.read_bytes() == data
    again = Ingestor(app).ingest(inbox, "call.wav", now=clock.now())
    assert again.outcome == "stored" and not (inbox / "call.wav").exists()
    second = tmp_path / "second.wav"
    retrieve(app, again.object_id, out=second, actor="t", reason="test", now=clock.now())
    assert second.read_bytes() == data + b"tail"


@pytest.mark.parametrize("err, says", [
    pytest.param(errno.EACCES, "CAP_LEASE", id="not-owner"),
    pytest.param(errno.EINVAL, "does not support leases", id="no-lease-support"),
])
def test_without_leases_the_settle_time_applies_and_it_is_said_once(
        app, clock, caplog, monkeypatch, err, says):
    """Where no lease can be taken (another owner without CAP_LEASE, NFS...), files are
    ingested on the settle time alone, and a warning says why, once."""
    real = localfs.fcntl.fcntl

    def refuse(fd, cmd, arg=0):
        if cmd == localfs.fcntl.F_SETLEASE:
            raise OSError(err, os.strerror(err))
        return real(fd, cmd, arg)

    monkeypatch.setattr(localfs.fcntl, "fcntl", refuse)
    inbox = _inbox(app)
    ing = Ingestor(app)
    for i in range(2):
        make_wav(inbox / f"c{i}.wav", seed=i)
        write_sidecar(inbox / f"c{i}.wav", purpose="training")
        assert ing.ingest(inbox, f"c{i}.wav", now=clock.now()).outcome == "stored"
    warnings = logged(caplog, "ingest.no_lease")
    assert len(warnings) == 1 and says in warnings[0] and "settle_seconds" in warnings[0]


def _without_cap_lease() -> None:
    """In the child, before exec: drop CAP_LEASE from the bounding set, so the program it
    runs (as root) lacks it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_LEASE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_LEASE)")


PR_CAPBSET_DROP, CAP_LEASE = 24, 28  # <linux/prctl.h>, <linux/capability.h>


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop a capability and chown")
def test_another_users_file_without_cap_lease_is_ingested_on_settle_time(short_setup):
    """The real refusal: ``retentiond run --once`` without CAP_LEASE, on a file owned by
    another user, cannot take a lease; it says so and ingests on the settle time."""
    try:
        subprocess.run(["true"], preexec_fn=_without_cap_lease, check=True)
    except (subprocess.SubprocessError, OSError):
        pytest.skip("this machine does not let root drop a capability (no CAP_SETPCAP)")
    inbox = short_setup / "inbox"
    make_wav(inbox / "call.wav")
    write_sidecar(inbox / "call.wav", purpose="training")
    for name in ("call.wav", "call.wav.json"):
        os.chown(inbox / name, 65534, 65534)  # nobody's
    r = subprocess.run([sys.executable, "-m", "retentiond", "run", "--once"],
                       env=cli_env(short_setup), preexec_fn=_without_cap_lease,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert "CAP_LEASE" in r.stderr and "Traceback" not in r.stderr
    assert not (inbox / "call.wav").exists()


class _Crash(Exception):
    pass


def test_recovery_leaves_a_stored_plaintext_that_is_open_for_writing(app, clock, caplog,
                                                                     monkeypatch):
    """A crash between the catalog commit and the unlink leaves the plaintext for recovery,
    which removes it only once no program has it open for writing (said once)."""
    inbox = _inbox(app)
    make_wav(inbox / "call.wav")
    write_sidecar(inbox / "call.wav", purpose="training")

    def crash_after_commit(name: str) -> None:
        if name == "ingest.after_mark_stored":
            raise _Crash

    monkeypatch.setattr(ingest_module, "crashpoint", crash_after_commit)
    with pytest.raises(_Crash):
        Ingestor(app).ingest(inbox, "call.wav", now=clock.now())
    monkeypatch.undo()
    assert [r.inbox_pending for r in app.catalog.query()] == [True]
    writer = os.open(inbox / "call.wav", os.O_WRONLY | os.O_APPEND)  # a recorder's fd
    try:
        ing = Ingestor(app)
        ing.recover()
        ing.recover()
        assert (inbox / "call.wav").exists() and (inbox / "call.wav.json").exists()
        assert [r.inbox_pending for r in app.catalog.query()] == [True]
        assert len(logged(caplog, "ingest.source_reopened")) == 1
    finally:
        os.close(writer)
    ing.recover()
    assert not (inbox / "call.wav").exists() and not (inbox / "call.wav.json").exists()
    assert [r.inbox_pending for r in app.catalog.query()] == [False]


def test_writer_in_the_instant_of_the_unlink_is_reported(app, clock, caplog, monkeypatch):
    """A program whose open() lands between the last look at the lease and the unlink
    writes to a file no name leads to: that cannot be undone, so it is an error in the log
    and in retentiond_errors_total{stage="ingest"}, never silent."""
    inbox = _inbox(app)
    data = make_wav(inbox / "call.wav")
    write_sidecar(inbox / "call.wav", purpose="training")
    real = ingest_module.unlink_if_same
    writers: list[_LateWriter] = []

    def writer_then_unlink(name, identity, *, dir_fd):
        if name == "call.wav":
            writers.append(_LateWriter(inbox / "call.wav", b"lost"))
            writers[-1].start()
        return real(name, identity, dir_fd=dir_fd)

    monkeypatch.setattr(ingest_module, "unlink_if_same", writer_then_unlink)
    errors = app.metrics.errors.labels(stage="ingest")
    before = errors._value.get()
    o = Ingestor(app).ingest(inbox, "call.wav", now=clock.now())
    writers[0].join()
    assert o.outcome == "stored" and not (inbox / "call.wav").exists()
    assert logged(caplog, "ingest.source_lost") and errors._value.get() == before + 1
    out = inbox.parent / "out.wav"
    retrieve(app, o.object_id, out=out, actor="t", reason="test", now=clock.now())
    assert out.read_bytes() == data


def test_inbox_on_a_network_file_system_relies_on_the_settle_time(app, clock, caplog,
                                                                   monkeypatch):
    """On NFS or SMB a lease cannot see writers on other machines, and a client may refuse
    one although nobody writes: leases are not used there, and the log says why."""
    monkeypatch.setattr(localfs, "network_file_system", lambda fd: "NFS")
    inbox = _inbox(app)
    make_wav(inbox / "call.wav")
    write_sidecar(inbox / "call.wav", purpose="training")
    assert Ingestor(app).ingest(inbox, "call.wav", now=clock.now()).outcome == "stored"
    (warning,) = logged(caplog, "ingest.no_lease")
    assert "the inbox is on NFS" in warning and "settle_seconds" in warning


def test_local_file_systems_are_not_taken_for_network_ones(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        assert localfs.network_file_system(fd) is None
    finally:
        os.close(fd)
