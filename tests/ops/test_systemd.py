"""The systemd unit: ``systemd-analyze verify`` accepts it, ``systemd-analyze security``
rates its exposure 2.0 or lower, the sandbox directives the issue asks for are there,
sysusers/tmpfiles build the layout in a scratch root, the shipped configuration loads,
and the daemon really works under the unit's MemoryDenyWriteExecute/NoNewPrivileges."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retentiond.settings import load_settings
from tests.conftest import cli_env, make_wav, write_sidecar
from tests.ops.conftest import SYSTEMD, run_tool

UNIT = SYSTEMD / "retentiond.service"
MAX_EXPOSURE = 2.0


def unit_directives() -> dict[str, list[str]]:
    """Every ``Key=value`` of the [Service] section (repeated keys keep every value)."""
    out: dict[str, list[str]] = {}
    section = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def installed_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this installation's retentiond (verify checks
    that the command exists); nothing else changes."""
    exe = shutil.which("retentiond") or pytest.fail("the retentiond command is not installed")
    text = UNIT.read_text()
    assert text.count("ExecStart=/usr/bin/retentiond ") == 1
    copy = tmp_path / "retentiond.service"
    copy.write_text(text.replace("ExecStart=/usr/bin/retentiond ", f"ExecStart={exe} "))
    return copy


def test_unit_parses_as_ini_with_the_expected_sections():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    assert parser.sections() == ["Unit", "Service", "Install"]


def test_systemd_analyze_verify(systemd_analyze, tmp_path):
    p = run_tool(systemd_analyze, "verify", str(installed_copy(tmp_path)))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "retentiond.service" not in p.stderr, p.stderr  # no warning about our unit


def test_systemd_analyze_security_exposure(systemd_analyze, tmp_path):
    p = run_tool(systemd_analyze, "security", "--offline=true", str(UNIT))
    out = p.stdout + p.stderr
    m = re.search(r"Overall exposure level for retentiond\.service: (\d+\.\d+) (\S+)", out)
    assert m, out
    score, verdict = float(m.group(1)), m.group(2)
    print(f"systemd-analyze security exposure: {score} {verdict}")
    assert score <= MAX_EXPOSURE, out
    assert verdict in ("OK", "SAFE"), out


def test_sandbox_directives():
    d = unit_directives()
    single = {k: v[-1] for k, v in d.items()}
    expected = {
        "Type": "notify", "NotifyAccess": "main", "Restart": "on-failure",
        "User": "retentiond", "ProtectSystem": "strict", "NoNewPrivileges": "true",
        "PrivateTmp": "true", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
        "ProtectHome": "true", "PrivateDevices": "true", "MemoryDenyWriteExecute": "true",
        "RestrictSUIDSGID": "true", "LockPersonality": "true", "UMask": "0077",
        "StateDirectory": "retentiond", "StateDirectoryMode": "0700", "KillSignal": "SIGTERM",
        "WatchdogSec": "30min", "LimitCORE": "0",
    }
    for key, value in expected.items():
        assert single.get(key) == value, (key, single.get(key))
    # writable: its state (StateDirectory) and the inbox, nothing else
    assert d["ReadWritePaths"] == ["/srv/retentiond/inbox"]
    assert "DynamicUser" not in d and "ReadOnlyPaths" not in d
    assert single["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert re.fullmatch(r"\d+s", single["TimeoutStopSec"])
    assert single["RestartPreventExitStatus"] == "2"  # configuration errors do not loop
    assert "--config /etc/retentiond/retentiond.yaml run" in single["ExecStart"]


def test_sysusers_and_tmpfiles_build_the_layout(tmp_path):
    sysusers = shutil.which("systemd-sysusers") or pytest.fail("systemd-sysusers is missing")
    tmpfiles = shutil.which("systemd-tmpfiles") or pytest.fail("systemd-tmpfiles is missing")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):
        (root / "etc" / name).touch()
    p = run_tool(sysusers, f"--root={root}", str(SYSTEMD / "retentiond.sysusers"))
    assert p.returncode == 0, p.stdout + p.stderr
    passwd = (root / "etc" / "passwd").read_text().splitlines()
    user = next(line.split(":") for line in passwd if line.startswith("retentiond:"))
    assert user[5] == "/var/lib/retentiond" and user[6].endswith("nologin")
    assert int(user[2]) < 1000  # a system user
    p = run_tool(tmpfiles, f"--root={root}", "--create", str(SYSTEMD / "retentiond.tmpfiles"))
    inbox = (root / "srv" / "retentiond" / "inbox").stat()
    if os.geteuid() == 0:
        assert p.returncode == 0, p.stdout + p.stderr
        assert stat.S_IMODE(inbox.st_mode) == 0o2770
        assert inbox.st_uid == int(user[2]) and inbox.st_gid == int(user[3])
    else:  # the file parsed and the folders exist; only root may give them away
        problems = [line for line in p.stderr.splitlines()
                    if "Operation not permitted" not in line]
        assert not problems, p.stderr
        assert stat.S_ISDIR(inbox.st_mode)
    # the unit may write there, and only there besides its state
    assert unit_directives()["ReadWritePaths"] == ["/srv/retentiond/inbox"]


def test_shipped_configuration_loads_and_matches_the_unit():
    settings = load_settings(SYSTEMD / "retentiond.yaml", environ={})
    state = Path("/var/lib/retentiond")
    assert settings.inbox == ("/srv/retentiond/inbox",)
    for location in (Path(settings.vault), Path(settings.proofs), settings.keys_dir,
                     settings.state_dir, settings.catalog_path):
        assert location.is_relative_to(state), location  # all in StateDirectory=
    assert settings.policies == Path("/etc/retentiond/policies")  # read-only, beside the config
    assert settings.metrics_addr == "127.0.0.1:9464"
    # residency declared, as `retentiond init` does: the three folders are in France
    assert settings.residency.declared and settings.residency.local_country == "FR"
    assert {p.name for p in settings.placements()} == {"inbox", "vault", "proofs"}
    env = unit_directives()["Environment"]
    assert "RETENTIOND_CONFIG=/etc/retentiond/retentiond.yaml" in env


# Applies NoNewPrivileges and the kernel's MemoryDenyWriteExecute (PR_SET_MDWE, Linux
# 6.3+, kept across execve), then execs the rest of its command line.
SANDBOX = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
    sys.exit(f"PR_SET_NO_NEW_PRIVS: errno {ctypes.get_errno()}")
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(f"PR_SET_MDWE: errno {ctypes.get_errno()} (needs Linux 6.3+)")
os.execv(sys.argv[1], sys.argv[1:])
"""


def sandboxed(*argv: str) -> list[str]:
    return [sys.executable, "-c", SANDBOX, sys.executable, *argv]


def test_the_sandbox_helper_really_sets_mdwe():
    p = subprocess.run(
        sandboxed("-c", "import ctypes; print(ctypes.CDLL(None).prctl(66, 0, 0, 0, 0))"),
        capture_output=True, text=True, check=False, timeout=30,  # 66: PR_GET_MDWE
    )
    assert p.returncode == 0 and p.stdout.strip() == "1", p.stdout + p.stderr


@pytest.mark.slow
def test_daemon_works_under_memory_deny_write_execute(short_setup, tmp_path):
    """MemoryDenyWriteExecute=true would kill a daemon that maps writable+executable
    memory (JITs, some FFI callbacks): run the real daemon under the kernel's own
    equivalent (PR_SET_MDWE) and NoNewPrivileges, ingest a recording, stop it."""
    inbox = short_setup / "inbox"
    make_wav(tmp_path / "a.wav")
    write_sidecar(tmp_path / "a.wav", purpose="training")
    os.rename(tmp_path / "a.wav.json", inbox / "a.wav.json")
    os.rename(tmp_path / "a.wav", inbox / "a.wav")
    log = tmp_path / "daemon.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            sandboxed("-m", "retentiond", "run", "--metrics-addr", "off"),
            env=cli_env(short_setup), stdout=out, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 20
            while "ingest.stored" not in log.read_text() and time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=15)
    text = log.read_text()
    assert "ingest.stored" in text and code == 0, text
    assert not any(inbox.iterdir())


def lease_drop_in() -> list[str]:
    """The ``[Service]`` lines of the drop-in docs/operations.md gives for leases."""
    doc = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    section = doc.split("## Files still being written", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```ini\n(.*?)```", section, re.S)
    assert block, "no ini block in 'Files still being written'"
    lines = block.group(1).strip().splitlines()
    assert lines[0] == "[Service]"
    return lines[1:]


def test_documented_lease_drop_in_verifies_and_keeps_the_sandbox(systemd_analyze, tmp_path):
    """The drop-in that lets retentiond take leases on recorders' files: systemd accepts
    the unit with it, and the exposure stays within what the issue allows."""
    lines = lease_drop_in()
    assert "AmbientCapabilities=CAP_LEASE" in lines and "PrivateUsers=false" in lines
    unit = installed_copy(tmp_path)
    text = unit.read_text()
    merged = text.replace("\n[Install]", "\n" + "\n".join(lines) + "\n\n[Install]")
    assert merged != text
    unit.write_text(merged)
    p = run_tool(systemd_analyze, "verify", str(unit))
    assert p.returncode == 0 and "retentiond.service" not in p.stderr, p.stdout + p.stderr
    p = run_tool(systemd_analyze, "security", "--offline=true", str(unit))
    m = re.search(r"Overall exposure level for retentiond\.service: (\d+\.\d+)", p.stdout)
    assert m, p.stdout + p.stderr
    print(f"exposure with the lease drop-in: {m.group(1)}")
    assert float(m.group(1)) <= MAX_EXPOSURE, p.stdout
