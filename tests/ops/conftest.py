"""Fixtures for the operations tests: the real tools (promtool, systemd-analyze), the
chart and the files under test. A missing tool fails the test (CI installs them, see
.ci/run); promtool is installed on the fly when apt-get can (Debian package prometheus)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "retentiond"
ALERTS = CHART / "files" / "retentiond-alerts.yaml"
DASHBOARD = CHART / "files" / "grafana-dashboard.json"
ALERT_TESTS = Path(__file__).resolve().parent / "alerts_test.yaml"
SYSTEMD = ROOT / "systemd"


def _apt_install(package: str) -> None:
    if shutil.which("apt-get") is None:
        return
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]):
        subprocess.run([*sudo, *cmd], env=env, capture_output=True, check=False, timeout=600)


def require_tool(name: str, *, package: str | None = None) -> str:
    path = shutil.which(name)
    if path is None and package is not None:
        _apt_install(package)
        path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required by this test and is missing "
                    f"(Debian package {package or name}; .ci/run installs it)")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool", package="prometheus")


@pytest.fixture(scope="session")
def systemd_analyze() -> str:
    return require_tool("systemd-analyze", package="systemd")


def run_tool(*args: str, cwd: Path | None = None, timeout: float = 120,
             stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, input=stdin, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture
def exposition(app, clock) -> str:
    """``/metrics`` of an instrumented daemon (in-process, manual clock) that ingested three
    recordings (one quarantined), deleted one with its proof, reloaded its configuration
    and has one file waiting in the inbox: every metric family is present."""
    from datetime import timedelta

    from prometheus_client.exposition import generate_latest

    from retentiond.cli.daemon_cmd import ServiceDaemon, instrument
    from retentiond.service.sdnotify import Notifier
    from tests.conftest import make_wav, write_sidecar

    daemon = ServiceDaemon(app, notifier=Notifier({}))
    instrument(app, daemon)
    inbox = Path(app.settings.inbox[0])
    recorded = (clock.now() - timedelta(minutes=1)).isoformat()
    for name, purpose in (("keep.wav", "training"), ("soon.wav", "quality"),
                          ("odd.wav", "no-such-purpose")):
        make_wav(inbox / name, seed=len(name) + len(purpose))
        write_sidecar(inbox / name, purpose=purpose, recorded_at=recorded)
    daemon.ingest_ready(now=clock.now())
    clock.advance(timedelta(seconds=5))
    outcomes, _, _ = daemon.ingest_ready(now=clock.now())
    assert sorted(o.outcome for o in outcomes) == ["quarantined", "stored", "stored"]
    clock.advance(timedelta(minutes=2))
    report = daemon.sweeper.sweep(now=clock.now())
    assert [(i.purpose, i.outcome) for i in report.items] == [("quality", "deleted")]
    daemon.reload()
    make_wav(inbox / "waiting.wav", seed=9)  # no sidecar yet: waits in the inbox
    return generate_latest(app.metrics.registry).decode()


def family_names(exposition_text: str) -> set[str]:
    """Every sample name an exposition has or declares (``foo_total``, ``foo_bucket``...):
    a labelled counter with no child yet has its ``# TYPE`` line but no sample."""
    names = set()
    for line in exposition_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        elif line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names
