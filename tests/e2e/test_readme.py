"""The README's first three commands are the contract with a new user: .ci/run must run
exactly its test command, and its run command must give a working embedded daemon."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import cli_env, make_wav, write_sidecar
from tests.e2e.test_daemon import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "README must open with a sh code block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_install_run_test_and_ci_runs_them():
    install, run, test = readme_commands()
    assert install == "pip install -e '.[dev]'"
    assert run == "retentiond init demo && retentiond --config demo/retentiond.yaml run"
    assert test == "python -m pytest"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ci[-1] == test and install in ci


@pytest.mark.slow
def test_readme_run_command_gives_a_working_daemon(tmp_path):
    if shutil.which("retentiond") is None:
        pytest.fail("the retentiond command is not installed: run the README install command")
    _, run, _ = readme_commands()
    env = cli_env(RETENTIOND_METRICS_ADDR=f"127.0.0.1:{free_port()}")
    log_path = tmp_path / "daemon.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(run, shell=True, cwd=tmp_path, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            demo = tmp_path / "demo"
            wait_for(lambda: "daemon.started" in log_path.read_text(), timeout=20,
                     what="daemon start", proc=proc)
            staging = tmp_path / "call-0001.wav"
            data = make_wav(staging, seconds=1)
            # an hour ago, in Paris: training keeps it 6 months, whatever day this runs
            paris = timezone(timedelta(hours=1))
            recorded = datetime.now(paris).replace(microsecond=0) - timedelta(hours=1)
            write_sidecar(staging, purpose="training", call_id="C-0001",
                          recorded_at=recorded.isoformat())
            os.rename(tmp_path / "call-0001.wav.json", demo / "inbox" / "call-0001.wav.json")
            os.rename(staging, demo / "inbox" / "call-0001.wav")
            wait_for(lambda: not any((demo / "inbox").iterdir()), timeout=30,
                     what="the inbox to be emptied", proc=proc)
            env_cfg = cli_env(RETENTIOND_CONFIG=str(demo / "retentiond.yaml"))
            rows = json.loads(subprocess.run(["retentiond", "ls", "--json"], env=env_cfg,
                                             capture_output=True, text=True, check=True).stdout)
            assert [r["call_id"] for r in rows] == ["C-0001"]
            assert len(list((demo / "vault").rglob("*.rtd"))) == 1
            out = tmp_path / "copy.wav"
            subprocess.run(["retentiond", "get", rows[0]["id"], "--out", str(out), "--actor",
                            "alice", "--reason", "ticket 1"], env=env_cfg, check=True,
                           capture_output=True)
            assert out.read_bytes() == data
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # the shell and the daemon
            proc.wait(timeout=15)
    # the shell dies of the signal; the daemon must drain and stop cleanly
    wait_for(lambda: "daemon.stopped" in log_path.read_text(), timeout=15, what="clean stop")
    assert "Traceback" not in log_path.read_text()
