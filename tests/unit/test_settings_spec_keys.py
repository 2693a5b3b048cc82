"""SPEC section 3's configuration, read as SPEC writes it. ``catalog``: ``sqlite:///PATH``
is absolute; a relative path is ``sqlite:PATH`` or a plain path; the old relative reading
of ``sqlite:///PATH`` is refused when it would open a new, empty catalog elsewhere.
``proof_log.origin``, not among SPEC's keys, defaults to the log key's name."""

import re
from pathlib import Path

import pytest

from retentiond.adapters.sqlite_catalog import SQLiteCatalog
from retentiond.errors import ConfigError
from retentiond.service.setup import init_setup
from retentiond.service.wiring import build_app
from retentiond.settings import load_settings


@pytest.fixture
def config(tmp_path: Path) -> Path:
    init_setup(tmp_path / "rt")
    return tmp_path / "rt" / "retentiond.yaml"


def _catalog(config: Path, value: str) -> int:
    lines = config.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("catalog:"))
    lines[at] = f"catalog: {value}\n"
    config.write_text("".join(lines))
    return at + 1


def test_init_writes_a_relative_catalog_that_moves_with_the_setup(config: Path) -> None:
    assert load_settings(config, environ={}).catalog_path == config.parent / "state/catalog.db"


@pytest.mark.parametrize("form", ["sqlite:///{abs}", "sqlite:////{abs}", "{abs_path}",
                                  "sqlite:///{abs_quoted}",
                                  "sqlite:{abs_path}", "sqlite://localhost/{abs}"])
def test_absolute_forms(config: Path, tmp_path: Path, form: str) -> None:
    target = tmp_path / "elsewhere" / "catalog.db"
    _catalog(config, form.format(abs=str(target).lstrip("/"), abs_path=target,
                                 abs_quoted=str(target).lstrip("/").replace("/", "%2F", 1)))
    settings = load_settings(config, environ={})
    assert settings.catalog_path == target
    assert settings.catalog == f"sqlite://{target}"


@pytest.mark.parametrize("form", ["sqlite:db/c.db", "db/c.db", "./db/c.db"])
def test_relative_forms_follow_the_config_file(config: Path, form: str) -> None:
    _catalog(config, form)
    assert load_settings(config, environ={}).catalog_path == config.parent / "db/c.db"


def test_the_spec_example_is_absolute(config: Path) -> None:
    _catalog(config, "sqlite:///srv/retentiond/state/catalog.db")
    path = load_settings(config, environ={}).catalog_path
    assert path == Path("/srv/retentiond/state/catalog.db")


def test_the_old_relative_reading_is_refused_not_replaced_by_an_empty_catalog(
        config: Path) -> None:
    SQLiteCatalog(config.parent / "state" / "catalog.db").close()  # this setup's catalog
    line = _catalog(config, "sqlite:///state/catalog.db")
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    msg = str(info.value)
    assert info.value.exit_code == 2
    assert re.search(rf"retentiond\.yaml:{line}: catalog", msg), msg
    assert "/state/catalog.db, which does not exist" in msg
    assert f"this setup's catalog is {config.parent}/state/catalog.db" in msg
    assert "'catalog: sqlite:state/catalog.db'" in msg
    # the same through the environment
    with pytest.raises(ConfigError, match="RETENTIOND_CATALOG"):
        load_settings(config, environ={"RETENTIOND_CATALOG": "sqlite:///state/catalog.db"})


@pytest.mark.parametrize(("value", "says"), [
    ("postgresql://rt@db/retentiond", "PostgreSQL catalog .* is not available"),
    ("sqlite://host/x.db", "sqlite URLs take no host"),
    ("mysql://h/db", "expected sqlite:///ABSOLUTE/PATH"),
    ("sqlite:state", "names a folder"),
    ("sqlite:///srv/rt#1/catalog.db", "no query or fragment"),
    ("sqlite:///x.db?mode=ro", "no query or fragment"),
])
def test_bad_catalogs_name_the_key(config: Path, value: str, says: str) -> None:
    line = _catalog(config, value)
    with pytest.raises(ConfigError, match=says) as info:
        load_settings(config, environ={})
    assert f"retentiond.yaml:{line}: catalog" in str(info.value)


def test_the_proof_origin_defaults_to_the_log_key_name(config: Path) -> None:
    """SPEC's stable keys do not include ``proof_log.origin``: without it, the origin is
    the name of ``keys/proof-log.vkey`` (which it must equal anyway)."""
    origin = load_settings(config, environ={}).proof_origin
    assert origin is not None
    config.write_text(re.sub(r"(?m)^proof_log:\n  origin: .*\n", "", config.read_text()))
    assert "origin:" not in config.read_text()
    settings = load_settings(config, environ={})
    assert settings.proof_origin is None
    app = build_app(settings)
    try:
        assert app.settings.proof_origin == origin == app.proof_log.origin
    finally:
        app.close()
    (config.parent / "keys" / "proof-log.vkey").unlink()
    with pytest.raises(ConfigError, match=r"proof-log\.vkey"):
        build_app(load_settings(config, environ={}))
