"""``ingest.workers``: how many recordings are ingested at a time."""

import re

import pytest

from retentiond.errors import ConfigError
from retentiond.service.setup import init_setup
from retentiond.settings import load_settings


@pytest.fixture
def config(tmp_path):
    init_setup(tmp_path / "rt")
    return tmp_path / "rt" / "retentiond.yaml"


def _with_workers(config, value: str) -> int:
    lines = config.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("  workers: 8 "))
    lines[at] = f"  workers: {value}\n"
    config.write_text("".join(lines))
    return at + 1


def test_default_and_configured(config):
    assert load_settings(config, environ={}).ingest_workers == 8
    _with_workers(config, "12")
    assert load_settings(config, environ={}).ingest_workers == 12
    env = {"RETENTIOND_INGEST_WORKERS": "1"}
    assert load_settings(config, environ=env).ingest_workers == 1


@pytest.mark.parametrize("value", ["0", "33", "2.5", "-1", "many", ".nan", ".inf"])
def test_out_of_range_names_file_line_and_key(config, value):
    line = _with_workers(config, value)
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    assert info.value.exit_code == 2
    assert re.search(rf"retentiond\.yaml:{line}: ingest\.workers", str(info.value)), info.value


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_environment_values_are_refused(config, value):
    with pytest.raises(ConfigError, match="RETENTIOND_INGEST_WORKERS"):
        load_settings(config, environ={"RETENTIOND_INGEST_WORKERS": value})
