"""Shared fixtures: a real embedded setup made by ``init``, small WAV files, the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import wave
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from retentiond.clock import ManualClock
from retentiond.service.setup import init_setup
from retentiond.service.wiring import App, build_app
from retentiond.settings import load_settings

# shared, noisy 2-core machines: no per-example deadline (timing is not what we test)
hypothesis_settings.register_profile("retentiond", deadline=None)
hypothesis_settings.load_profile("retentiond")

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

SHORT_POLICY = """\
version: 1
name: test-short
purposes:
  quality:
    legal_basis: legitimate-interests
    retention: PT30S
    media: [audio]
  training:
    legal_basis: legitimate-interests
    retention: P6M
    media: [audio, screen]
  banking-evidence:
    legal_basis: legal-obligation
    retention: P5Y
    min_retention: P5Y
classify:
  - match: {prefix: "banking/"}
    purpose: banking-evidence
quarantine:
  retention: P1D
"""


def make_wav(path: Path, *, seconds: float = 0.5, seed: int = 0) -> bytes:
    """A real (tiny) WAV file with distinct content per seed; returns its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = bytes((i * 7 + seed * 13) % 256 for i in range(int(8000 * seconds) * 2))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(frames)
    if _TEST_CLOCK:
        at = _TEST_CLOCK[-1].now().timestamp()
        os.utime(path, (at, at))
    return path.read_bytes()


def logged(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    """The messages of the captured log records with this ``event``."""
    return [r.getMessage() for r in caplog.records if getattr(r, "event", "") == event]


def write_sidecar(recording: Path, **fields: object) -> Path:
    sidecar = recording.with_name(recording.name + ".json")
    sidecar.write_text(json.dumps(fields), encoding="utf-8")
    return sidecar


def tune_config(config: Path, **values: str) -> None:
    text = config.read_text(encoding="utf-8")
    for key, value in values.items():
        text, n = re.subn(rf"(?m)^(\s*{key}:)\s*\S+", rf"\g<1> {value}", text)
        assert n == 1, key
    config.write_text(text, encoding="utf-8")


def catalog_bytes(setup: Path) -> bytes:
    """Every byte of the setup's catalog: the database file and its ``-wal`` and
    ``-shm`` files (WAL mode), where an erased key must not survive either."""
    db = setup / "state" / "catalog.db"
    return b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")))


def use_policy(setup: Path, text: str) -> None:
    for p in (setup / "policies").glob("*.yaml"):
        p.unlink()
    (setup / "policies" / "test.yaml").write_text(text, encoding="utf-8")


@pytest.fixture(autouse=True, scope="session")
def _auditor_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``proof verify --log`` keeps a witness per log origin under $XDG_STATE_HOME: the
    tests' go to a temporary folder (subprocesses inherit it), never the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))
        yield


@pytest.fixture
def setup_dir(tmp_path: Path) -> Path:
    """A fresh setup from ``init`` with fast settle times and no metrics port."""
    folder = tmp_path / "rt"
    init_setup(folder)
    tune_config(folder / "retentiond.yaml", settle_seconds="0.2", sidecar_wait_seconds="1",
                interval_seconds="1", metrics_addr="off")
    return folder


@pytest.fixture
def short_setup(setup_dir: Path) -> Path:
    use_policy(setup_dir, SHORT_POLICY)
    return setup_dir


# the test's clock while a test runs with the ``clock`` fixture: files made by make_wav
# then carry its time as their mtime (what ingest takes as recorded_at when the sidecar
# gives none), as a recorder writing them at the test's "now" would; the real date plays
# no part, so the suite passes whatever day it runs. One exception: a file's ctime is
# always the real clock's (nothing can set it), and the orphan-sidecar report ages a
# sidecar from it; ahead of the test clock it counts as "now", which holds whenever the
# machine's date is after T0 (T0 is in the past)
_TEST_CLOCK: list[ManualClock] = []


@pytest.fixture
def clock() -> Iterator[ManualClock]:
    c = ManualClock(T0)
    _TEST_CLOCK.append(c)
    try:
        yield c
    finally:
        _TEST_CLOCK.remove(c)


def open_app(setup: Path, clock: ManualClock) -> App:
    return build_app(load_settings(setup / "retentiond.yaml", environ={}), clock=clock)


@pytest.fixture
def app(short_setup: Path, clock: ManualClock) -> App:
    a = open_app(short_setup, clock)
    yield a
    a.close()


def cli_env(setup: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETENTIOND_")}
    if setup is not None:
        env["RETENTIOND_CONFIG"] = str(setup / "retentiond.yaml")
    env.update(extra)
    return env


def run_cli(*args: str, setup: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real ``retentiond`` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "retentiond", *args], capture_output=True, text=True,
        env=env if env is not None else cli_env(setup), timeout=timeout, check=False,
    )
