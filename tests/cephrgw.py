"""A real S3 server for the tests: a throwaway single-node Ceph cluster with a RADOS Gateway.

``ceph_rgw`` is a session-scoped fixture. It installs the Debian packages if they are
missing (``ceph-mon ceph-osd radosgw ceph-common``, with sudo when not root), then starts,
as ordinary child processes in a temporary folder (no systemd, no containers, no manager):

- one monitor (``ceph-mon``) on a free 127.0.0.1 port, authentication ``none``;
- one OSD (``ceph-osd``) with ``osd objectstore = memstore`` (objects in RAM, nothing on
  disk but its small metadata files);
- one gateway (``radosgw``, beast frontend) on a free 127.0.0.1 port;

creates an S3 user with ``radosgw-admin`` and waits until a signed ListBuckets succeeds.
It yields an ``RgwServer`` with the same interface as ``tests.s3server.S3Server``
(``endpoint``, ``client()``, ``bucket()``) and stops every daemon by PID at the end. On a
2-core machine it is up in about 2 s; a cluster that does not come up within
``START_TIMEOUT`` fails the tests that need it, with the tail of the daemons' logs. It is
never skipped.

Settings that matter (each checked on Ceph 16.2.15):

- ``auth ... required = none`` needs ``ms mon client mode`` set explicitly (to a value
  allowing ``crc``): radosgw (only it) otherwise uses ``secure``, which needs a cephx
  session key, and loops on ``send_auth_request ... returned -13``; the other
  ``ms_*_mode`` options can keep their defaults;
- ``paxos propose interval = 0.01``: RGW creates its pools one by one at first start,
  each waiting for a paxos round (1 s by default): 13 s to start instead of 1.5-2 s;
- ``osd pool default pg num = 1``: 10 MiB less OSD memory (start time barely changes);
- ``rgw exit timeout secs = 1``: how long radosgw may drain requests after SIGTERM
  (default 120 s; idle keep-alive and half-sent requests did not delay its exit in our
  checks, it exits in < 0.5 s);
- memstore keeps the OSD's data in RAM, at most ``memstore device bytes``: no block
  file, nothing written to disk (not even on SIGTERM).

Also here: ``create_topic`` and ``notify_bucket``, RGW's SNS-style bucket notifications
with an HTTP push endpoint.

Use it from a conftest: ``from tests.cephrgw import ceph_rgw``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.apt import apt_install
from tests.s3server import REGION, ServerClients, dummy_aws_env, free_port

PACKAGES = ("ceph-mon", "ceph-osd", "radosgw", "ceph-common")
COMMANDS = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph", "rados")
START_TIMEOUT = 60.0  # seconds for the whole cluster (≈2 s on a 2-core machine)
STOP_TIMEOUT = 10.0  # seconds for radosgw and the monitor to exit on SIGTERM
INSTALL_TIMEOUT = 600.0  # seconds for apt-get (≈25 s)
MEMSTORE_BYTES = 2 * 1024**3  # the OSD's capacity: an upper bound on its data in RAM
USER = "retentiond-test"
ACCESS_KEY = SECRET_KEY = "testing"  # what tests.s3server.dummy_aws_env puts in the env
DATA_POOL = "default.rgw.buckets.data"
LOG_TAIL = 25  # lines of each daemon's log (and of a failed command) in a failure message
_SOCKET_PATH_MAX = 100  # a unix socket path is at most 107 bytes on Linux


# -- packages ------------------------------------------------------------------------------


def missing_commands() -> list[str]:
    return [c for c in COMMANDS if shutil.which(c) is None]


def ensure_packages() -> None:
    """apt-get install the Ceph packages if a command is missing; RuntimeError if that fails."""
    if not missing_commands():
        return
    try:
        apt_install(PACKAGES, timeout=INSTALL_TIMEOUT)
    except RuntimeError as e:
        raise RuntimeError(f"Ceph commands missing ({', '.join(missing_commands())}): "
                           f"{e}") from None
    if missing_commands():
        raise RuntimeError(f"still missing after apt-get install: {missing_commands()}")


# -- the cluster ---------------------------------------------------------------------------


def cluster_config(*, fsid: str, root: Path, run: Path, mon_port: int,
                   rgw_port: int) -> dict[str, dict[str, str]]:
    """ceph.conf sections for the single-node cluster (see the module docstring)."""
    return {
        "global": {
            "fsid": fsid,
            "mon host": f"v2:127.0.0.1:{mon_port}",
            "mon initial members": "a",
            "auth cluster required": "none",
            "auth service required": "none",
            "auth client required": "none",
            # radosgw defaults this to "secure" unless set, which needs a cephx session key
            "ms mon client mode": "crc secure",
            "run dir": str(run),
            "admin socket": f"{run}/$name.asok",
            "pid file": f"{run}/$name.pid",
            "log file": f"{root}/log/$name.log",
            "osd objectstore": "memstore",
            "memstore device bytes": str(MEMSTORE_BYTES),
            "osd pool default size": "1",
            "osd pool default min size": "1",
            "osd pool default pg num": "1",
            "osd pool default pgp num": "1",
            "osd pool default pg autoscale mode": "off",
            "osd crush chooseleaf type": "0",
            "mon allow pool size one": "true",
            "mon warn on pool no redundancy": "false",
            "mon data avail crit": "0",
            "paxos propose interval": "0.01",
        },
        "mon.a": {"mon data": f"{root}/mon"},
        "osd.0": {"osd data": f"{root}/osd"},
        "client.rgw": {
            "rgw frontends": f"beast endpoint=127.0.0.1:{rgw_port}",
            "rgw thread pool size": "32",
            "rgw exit timeout secs": "1",
            "rgw dynamic resharding": "false",
        },
    }


def write_config(path: Path, sections: Mapping[str, Mapping[str, str]]) -> None:
    lines: list[str] = []
    for name, options in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {v}" for k, v in options.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def admin_socket(path: Path, command: Mapping[str, Any], *, timeout: float = 2.0) -> Any:
    """One command on a daemon's admin socket (what ``ceph daemon`` does), as JSON."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(json.dumps(command).encode() + b"\0")
        head = b""
        while len(head) < 4:
            chunk = s.recv(4 - len(head))
            if not chunk:
                raise OSError(f"{path}: connection closed")
            head += chunk
        (size,) = struct.unpack(">I", head)
        body = b""
        while len(body) < size:
            chunk = s.recv(size - len(body))
            if not chunk:
                raise OSError(f"{path}: connection closed")
            body += chunk
    try:
        return json.loads(body)
    except ValueError:
        raise ValueError(f"{path}: {command}: {body[:200]!r}") from None


_PRCTL = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, not in the child
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process dies (PR_SET_PDEATHSIG), so
    a killed pytest leaves no daemons behind."""
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class RgwServer(ServerClients):
    """A running single-node Ceph cluster with a RADOS Gateway."""

    endpoint: str
    root: Path
    conf: Path
    run: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started_in: float = 0.0  # seconds from nothing to a signed ListBuckets answered

    @property
    def log(self) -> Path:
        return self.root / "log" / "client.rgw.log"

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.processes["rgw"]

    def sns(self) -> Any:
        """A boto3 SNS client on the gateway (topics for bucket notifications)."""
        with dummy_aws_env():
            return boto3.session.Session().client("sns", endpoint_url=self.endpoint,
                                                   region_name=REGION)

    def ceph(self, *args: str, timeout: float = 30.0) -> str:
        """Run a ``ceph`` command against this cluster; its stdout."""
        return _run(["ceph", "-c", str(self.conf), *args], timeout=timeout)

    def stored_bytes(self, bucket: str, key: str) -> bytes:
        """The bytes of a small object (one RADOS object, < 4 MiB) of an unversioned bucket
        as the OSD stores them: what the gateway really wrote, below S3."""
        c = ["-c", str(self.conf)]
        stats = json.loads(_run(["radosgw-admin", *c, "bucket", "stats", f"--bucket={bucket}"]))
        p = subprocess.run(["rados", *c, "-p", DATA_POOL, "get", f"{stats['marker']}_{key}",
                            "-"], capture_output=True, timeout=30, check=False)
        if p.returncode != 0:
            raise RuntimeError(f"rados get {bucket}/{key}: {p.stderr.decode(errors='replace')}")
        return p.stdout

    def daemon(self, name: str, command: Mapping[str, Any]) -> Any:
        """An admin socket command to ``mon.a``, ``osd.0`` or ``client.rgw``."""
        return admin_socket(self.run / f"{name}.asok", command)

    def set_option(self, name: str, option: str, value: str) -> None:
        """Change a running daemon's option (``config set`` on its admin socket)."""
        reply = self.daemon(name, {"prefix": "config set", "var": option, "val": [value]})
        if "success" not in reply:
            raise RuntimeError(f"{name}: config set {option} {value}: {reply}")

    def rss_kib(self) -> dict[str, int]:
        """Resident memory of each daemon (VmRSS), KiB."""
        out = {}
        for name, proc in self.processes.items():
            status = Path(f"/proc/{proc.pid}/status").read_text(encoding="ascii")
            line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
            out[name] = int(line.split()[1])
        return out

    def logs_tail(self) -> str:
        parts = []
        for f in sorted((self.root / "log").iterdir()):
            text = _tail(f.read_text(errors="replace"))
            if text:
                parts.append(f"--- {f} (last lines) ---\n{text}")
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGTERM to radosgw, the OSD, then the monitor (SIGKILL after STOP_TIMEOUT)."""
        for name in ("rgw", "osd", "mon"):
            proc = self.processes.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        if not self.run.is_relative_to(self.root):  # a short folder for the sockets
            shutil.rmtree(self.run, ignore_errors=True)


def _tail(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-LOG_TAIL:])


def _run(cmd: list[str], *, timeout: float = 30.0) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n"
                           f"{_tail(p.stdout + p.stderr)}")
    return p.stdout


def _spawn(server: RgwServer, name: str, cmd: list[str]) -> None:
    with open(server.root / "log" / f"{name}.out", "ab") as out:
        server.processes[name] = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent)  # noqa: PLW1509


def _wait(server: RgwServer, what: str, ready: Any, deadline: float) -> None:
    """Poll ``ready()`` every 50 ms until true; RuntimeError if a daemon exits or at the
    deadline."""
    while True:
        for name, proc in server.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} while waiting "
                                   f"for {what}")
        with contextlib.suppress(OSError, ValueError, KeyError):
            if ready():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {START_TIMEOUT:.0f} s waiting for {what}")
        time.sleep(0.05)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _signed_list_works(server: RgwServer) -> bool:
    try:
        server.client(max_attempts=1).list_buckets()
    except Exception:
        return False
    return True


def _run_dir(root: Path) -> Path:
    """Where the admin sockets go: in ``root`` unless its path is too long for a socket."""
    run = root / "run"
    if len(str(run / "client.rgw.asok")) <= _SOCKET_PATH_MAX:
        run.mkdir()
        return run
    return Path(tempfile.mkdtemp(prefix="rt-ceph-"))


def start_rgw(root: Path, *, options: Mapping[str, Mapping[str, str]] | None = None
              ) -> RgwServer:
    """Bootstrap the cluster in the folder ``root`` (created) and start radosgw.

    ``options`` overrides ceph.conf settings per section. Raises RuntimeError with the
    tail of every daemon's log if anything fails; the daemons started are stopped then.
    A free port taken by someone else between probe and bind is retried (3 attempts).
    """
    ensure_packages()
    for attempt in range(1, 4):
        try:
            return _start(root, options=options)
        except RuntimeError as e:
            port_taken = f"exited with {errno.EADDRINUSE} " in str(e) \
                or "Address already in use" in str(e)
            if attempt == 3 or not port_taken:
                raise
            root.rename(root.with_name(f"{root.name}-port-taken-{attempt}"))
    raise AssertionError("unreachable")


def _start(root: Path, *, options: Mapping[str, Mapping[str, str]] | None) -> RgwServer:
    t0 = time.monotonic()
    deadline = t0 + START_TIMEOUT
    (root / "log").mkdir(parents=True)
    (root / "mon").mkdir()
    (root / "osd").mkdir()
    run = _run_dir(root)
    conf = root / "ceph.conf"
    fsid = str(uuid.uuid4())
    mon_port, rgw_port = free_port(), free_port()
    sections = cluster_config(fsid=fsid, root=root, run=run, mon_port=mon_port,
                              rgw_port=rgw_port)
    for name, extra in (options or {}).items():
        sections.setdefault(name, {}).update(extra)
    write_config(conf, sections)
    server = RgwServer(endpoint=f"http://127.0.0.1:{rgw_port}", root=root, conf=conf,
                       run=run)
    c = ["-c", str(conf)]
    try:
        _run(["monmaptool", "--create", "--addv", "a", f"[v2:127.0.0.1:{mon_port}]",
              "--fsid", fsid, str(root / "monmap")])
        _run(["ceph-mon", *c, "--mkfs", "-i", "a", "--monmap", str(root / "monmap")])
        _spawn(server, "mon", ["ceph-mon", *c, "-i", "a", "-f"])
        _wait(server, "the monitor to form a quorum", lambda: server.daemon(
            "mon.a", {"prefix": "mon_status"})["state"] == "leader", deadline)

        osd_uuid = str(uuid.uuid4())
        osd_id = server.ceph("osd", "new", osd_uuid).strip()
        if osd_id != "0":
            raise RuntimeError(f"ceph osd new: expected id 0, got {osd_id!r}")
        _run(["ceph-osd", *c, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid])
        _spawn(server, "osd", ["ceph-osd", *c, "-i", "0", "-f"])
        _wait(server, "the OSD to be active", lambda: server.daemon(
            "osd.0", {"prefix": "status"})["state"] == "active", deadline)

        _spawn(server, "rgw", ["radosgw", *c, "-n", "client.rgw", "-f"])
        _wait(server, f"radosgw to answer on {server.endpoint}",
              lambda: _http_ok(server.endpoint), deadline)
        _run(["radosgw-admin", *c, "-n", "client.admin", "user", "create", f"--uid={USER}",
              f"--display-name={USER}", f"--access-key={ACCESS_KEY}",
              f"--secret-key={SECRET_KEY}"])
        _wait(server, "a signed ListBuckets to succeed", lambda: _signed_list_works(server),
              deadline)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        server.stop()
        raise RuntimeError(f"Ceph RGW did not start in {root}: {e}\n"
                           f"{server.logs_tail()}") from e
    server.started_in = time.monotonic() - t0
    return server


@pytest.fixture(scope="session")
def ceph_rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RgwServer]:
    """A live Ceph RGW for the whole session (fails, never skips, if it cannot start)."""
    root = tmp_path_factory.mktemp("ceph")
    try:
        server = start_rgw(root)
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


# -- bucket notifications ------------------------------------------------------------------


def create_topic(server: RgwServer, name: str, push_endpoint: str) -> str:
    """An SNS-style topic pushing to ``push_endpoint`` (HTTP POST of the JSON event, sent
    synchronously with the request that caused it); its ARN."""
    resp = server.sns().create_topic(Name=name, Attributes={"push-endpoint": push_endpoint})
    return str(resp["TopicArn"])


def notify_bucket(client: Any, bucket: str, topic_arn: str, *,
                  events: tuple[str, ...] = ("s3:ObjectCreated:*",)) -> None:
    """Send the bucket's ``events`` to the topic (PutBucketNotificationConfiguration).

    Beware ``s3:ObjectRemoved:*``/``:Delete`` on RGW 16.2.15: a DeleteObjects request
    deleting a version that matches aborts radosgw (SIGABRT in RGWDeleteMultiObj, with
    persistent topics too); a single DeleteObject is fine."""
    client.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"TopicConfigurations": [
            {"Id": f"{bucket}-events", "TopicArn": topic_arn, "Events": list(events)}]})
