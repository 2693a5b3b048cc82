"""Residency through the command line as a user runs it: a setup made by ``init`` is
compliant; a store or a processor outside the EU/EEA and the adequacy list without a
transfer safeguard makes every command refuse the configuration with exit code 2 and one
line naming the key; a SIGHUP reload keeps the running configuration."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from retentiond.service.daemon import Daemon
from tests.conftest import cli_env, run_cli


def _refused(p, *keys: str) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("retentiond: error: "), lines[0]
    for key in keys:
        assert key in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    p = run_cli("init", str(tmp_path / "demo"), env=cli_env())
    assert p.returncode == 0, p.stderr
    return tmp_path / "demo"


def _edit(config: Path, old: str, new: str) -> None:
    text = config.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    config.write_text(text.replace(old, new), encoding="utf-8")


def test_init_declares_france_and_is_accepted(demo: Path) -> None:
    config = demo / "retentiond.yaml"
    assert yaml.safe_load(config.read_text())["residency"] == {"local_country": "FR"}
    p = run_cli("--config", str(config), "ls", "--json", env=cli_env())
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == []


def test_vault_in_a_us_region_without_safeguard_is_refused(demo: Path) -> None:
    config = demo / "retentiond.yaml"
    _edit(config, "  local_country: FR", "  local_country: FR\n  stores:\n"
          "    vault: {region: us-east-1}")
    for args in (["ls"], ["run", "--once"], ["sweep", "--dry-run"]):
        p = run_cli("--config", str(config), *args, env=cli_env())
        line = _refused(p, f"{config}:", "residency.stores.vault.region",
                        "us-east-1 (US)", "outside the EU/EEA and the adequacy list",
                        "residency.stores.vault.transfer_safeguard",
                        "standard-contractual-clauses")
        assert str(demo / "vault") in line
    _edit(config, "{region: us-east-1}",
          "{region: us-east-1, transfer_safeguard: standard-contractual-clauses}")
    p = run_cli("--config", str(config), "ls", env=cli_env())
    assert p.returncode == 0, p.stderr


def test_vault_bucket_placed_by_s3_region_is_refused(demo: Path) -> None:
    config = demo / "retentiond.yaml"
    text = config.read_text(encoding="utf-8")
    text = text.replace("vault: vault/ ", "vault: s3://vault-us/recordings/ ")
    config.write_text(text + "s3:\n  region: us-east-1\n", encoding="utf-8")
    p = run_cli("--config", str(config), "ls", env=cli_env())
    _refused(p, "s3.region: vault s3://vault-us/recordings/ is in us-east-1 (US)",
             'residency.stores["s3://vault-us/recordings/"].transfer_safeguard')


def test_unknown_region_is_refused_with_the_key(demo: Path) -> None:
    config = demo / "retentiond.yaml"
    _edit(config, "  local_country: FR", "  local_country: FR\n  stores:\n"
          "    proofs: {region: paris-1}")
    p = run_cli("--config", str(config), "ls", env=cli_env())
    _refused(p, "residency.stores.proofs.region: unknown region 'paris-1'", "ISO 3166")


def test_processor_in_morocco_needs_a_safeguard(demo: Path) -> None:
    config = demo / "retentiond.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text + "controllers:\n  - name: Banque Exemple SA\n"
                      "    processor: {name: CallCo SARL, country: MA}\n", encoding="utf-8")
    p = run_cli("--config", str(config), "ls", env=cli_env())
    _refused(p, "controllers[0].processor.country: processor 'CallCo SARL'",
             "is in MA, outside the EU/EEA", "controllers[0].processor.transfer_safeguard")
    _edit(config, "country: MA}",
          "country: MA, transfer_safeguard: standard-contractual-clauses}")
    p = run_cli("--config", str(config), "ls", env=cli_env())
    assert p.returncode == 0, p.stderr


def test_reload_keeps_the_running_configuration_when_a_store_is_refused(
        app, short_setup: Path, caplog: pytest.LogCaptureFixture) -> None:
    daemon = Daemon(app)
    config = short_setup / "retentiond.yaml"
    good = config.read_text(encoding="utf-8")
    _edit(config, "  local_country: FR", "  local_country: FR\n  stores:\n"
          "    vault: {region: ap-south-1}")
    with caplog.at_level(logging.ERROR, logger="retentiond"):
        daemon.reload()
    assert "reload refused" in caplog.text and "residency.stores.vault.region" in caplog.text
    assert app.settings.controllers == ()
    config.write_text(good + "controllers:\n  - name: Banque Exemple SA\n    processor: "
                      "{name: Centre Lille, country: FR}\n", encoding="utf-8")
    daemon.reload()
    assert app.settings.controller_for(str(short_setup / "inbox" / "a.wav")) == (
        "Banque Exemple SA", "Centre Lille")
