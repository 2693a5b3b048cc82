"""Configuration: one frozen settings object.

Precedence: command-line flag > ``RETENTIOND_*`` environment > config file > default.
Relative paths are resolved against the config file's folder, so a setup made by
``retentiond init`` can be moved. Every key is documented in README ("Configuration").
Nothing is read from the environment at import time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import yaml

from retentiond.core.residency import (
    ROLES,
    Controller,
    Placement,
    Processor,
    ResidencyConfig,
    StoreDeclaration,
    check_processor,
    controller_for,
    country_code,
    country_of,
    key_path,
    parse_safeguard,
    place_stores,
)
from retentiond.errors import ConfigError

CONFIG_ENV = "RETENTIOND_CONFIG"
DEFAULT_CONFIG = "retentiond.yaml"


@dataclass(frozen=True)
class Settings:
    """Validated configuration. Locations are absolute paths or ``s3://`` URLs."""

    config_file: Path
    inbox: tuple[str, ...]
    vault: str
    proofs: str
    catalog: str
    policies: Path
    keys_provider: str
    keys_dir: Path
    state_dir: Path
    proof_origin: str | None  # None: the name of keys/proof-log.vkey (set by build_app)
    settle_seconds: float = 2.0
    sidecar_wait_seconds: float = 30.0
    ingest_workers: int = 8
    sweep_interval_seconds: float = 60.0
    reconcile_interval_seconds: float = 300.0
    metrics_addr: str | None = "127.0.0.1:9464"
    log_level: str = "info"
    s3: Mapping[str, str] = field(default_factory=dict)
    s3_object_lock_mode: str = "GOVERNANCE"
    s3_max_attempts: int = 5
    s3_batch_delete: bool = True
    webhook_addr: str | None = None
    webhook_token_file: Path | None = None
    sqs_queue_url: str | None = None
    minio_listen: bool = False
    residency: ResidencyConfig = field(default_factory=ResidencyConfig)
    controllers: tuple[Controller, ...] = ()

    def placements(self) -> tuple[Placement, ...]:
        """Where every inbox, the vault and the proof log are (roles ``inbox``, ``vault``,
        ``proofs``), checked against the transfer rules (see ``core.residency``)."""
        return place_stores(inbox=self.inbox, vault=self.vault, proofs=self.proofs,
                            res=self.residency, s3_region=self.s3.get("region"),
                            s3_endpoint=self.s3.get("endpoint_url"))

    @property
    def processors(self) -> tuple[Processor, ...]:
        """The processors (outsourced contact centres) named under ``controllers``."""
        return tuple(c.processor for c in self.controllers if c.processor is not None)

    def controller_for(self, source_url: str) -> tuple[str | None, str | None]:
        """(controller, processor) names for a recording from ``source_url`` (the catalog's
        ``source``: a path or an s3:// URL); (None, None) when the config names none."""
        return controller_for(self.controllers, source_url)

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "audit.log"

    @property
    def catalog_path(self) -> Path:
        """Path of the SQLite catalog file."""
        return sqlite_path(self.catalog)


# key -> (section, name, type); type is used for both the file and the environment
_SCALARS: dict[str, tuple[str, type]] = {
    "vault": ("vault", str),
    "proofs": ("proofs", str),
    "catalog": ("catalog", str),
    "policies": ("policies", str),
    "state": ("state", str),
    "metrics_addr": ("metrics_addr", str),
    "log_level": ("log_level", str),
    "ingest.settle_seconds": ("settle_seconds", float),
    "ingest.sidecar_wait_seconds": ("sidecar_wait_seconds", float),
    "ingest.workers": ("ingest_workers", float),
    "sweep.interval_seconds": ("sweep_interval_seconds", float),
    "reconcile.interval_seconds": ("reconcile_interval_seconds", float),
    "proof_log.origin": ("proof_origin", str),
    "keys.provider": ("keys_provider", str),
    "keys.dir": ("keys_dir", str),
    "s3.endpoint_url": ("s3_endpoint_url", str),
    "s3.region": ("s3_region", str),
    "s3.addressing_style": ("s3_addressing_style", str),
    "s3.profile": ("s3_profile", str),
    "s3.object_lock_mode": ("s3_object_lock_mode", str),
    "s3.max_attempts": ("s3_max_attempts", float),
    "s3.batch_delete": ("s3_batch_delete", str),
    "events.webhook_addr": ("webhook_addr", str),
    "events.webhook_token_file": ("webhook_token_file", str),
    "events.sqs_queue_url": ("sqs_queue_url", str),
    "events.minio_listen": ("minio_listen", str),
}
# s3 settings handed to make_s3_client / the stores (Settings.s3)
_S3_CLIENT_KEYS = ("endpoint_url", "region", "addressing_style", "profile")
LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
MAX_INGEST_WORKERS = 32
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_SECTIONS = {
    "ingest": {"settle_seconds", "sidecar_wait_seconds", "workers"},
    "sweep": {"interval_seconds"},
    "reconcile": {"interval_seconds"},
    "proof_log": {"origin"},
    "keys": {"provider", "dir"},
    "s3": {"endpoint_url", "region", "addressing_style", "profile", "object_lock_mode",
           "max_attempts", "batch_delete"},
    "events": {"webhook_addr", "webhook_token_file", "sqs_queue_url", "minio_listen"},
}
# nested sections validated by their own parsers (_parse_residency, _parse_controllers)
_RESIDENCY_KEYS = ("local_country", "stores")
_STORE_KEYS = ("region", "transfer_safeguard")
_CONTROLLER_KEYS = ("name", "processor", "inboxes")
_PROCESSOR_KEYS = ("name", "country", "transfer_safeguard")
_TOP = {"inbox", "vault", "proofs", "catalog", "policies", "state", "metrics_addr", "log_level",
        "residency", "controllers", *_SECTIONS}
_ORIGIN_RE = re.compile(r"^[^\s+]+$")
LOG_LEVELS = ("debug", "info", "warning", "error")


def env_name(key: str) -> str:
    """``ingest.settle_seconds`` -> ``RETENTIOND_INGEST_SETTLE_SECONDS``."""
    return "RETENTIOND_" + key.replace(".", "_").upper()


def find_config(flag: str | None, environ: Mapping[str, str]) -> Path:
    """``--config FILE``, else ``$RETENTIOND_CONFIG``, else ``./retentiond.yaml``."""
    return Path(flag or environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def _key_lines(node: yaml.Node, prefix: str = "") -> dict[str, int]:
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            name = f"{prefix}{k.value}"
            lines[name] = k.start_mark.line + 1
            lines.update(_key_lines(v, name + "."))
    return lines


def sqlite_path(url: str) -> Path:
    """The file of a resolved catalog URL (``sqlite:///ABSOLUTE/PATH``)."""
    if url.startswith("sqlite:///"):
        return Path("/" + url[len("sqlite:///"):].lstrip("/"))
    raise ConfigError(f"catalog: {url!r} is not a sqlite:/// URL")


def _resolve_catalog(value: str, base: Path, key: str) -> str:
    """The catalog URL, resolved to ``sqlite:///ABSOLUTE/PATH``.

    As in SPEC section 3 (``sqlite:///srv/retentiond/state/catalog.db``) and like
    ``file:///``, ``sqlite:///PATH`` names the absolute path ``/PATH`` (``sqlite:////PATH``,
    SQLAlchemy's absolute form, too). A path relative to the config file's folder is
    ``sqlite:PATH`` or a plain path. A ``sqlite:///PATH`` that does not exist while
    ``PATH`` does under the config file's folder is refused: configs written by earlier
    ``retentiond init`` (and SQLAlchemy's convention) meant that relative path, and
    silently opening a new, empty catalog elsewhere would lose track of every recording
    (and of the wrapped keys in the old one)."""
    if value.startswith(("postgresql:", "postgres:")):
        raise ConfigError(f"{key}: {value!r}: the PostgreSQL catalog (SPEC: several replicas "
                          "sharing the work) is not available in this version; use "
                          "sqlite:///PATH")
    if value.startswith("sqlite:") and ("?" in value or "#" in value):
        raise ConfigError(f"{key}: {value!r}: no query or fragment in a catalog URL (a '?' "
                          "or '#' in the file's path is written %3F, %23)")
    if value.startswith("sqlite://"):
        host, slash, rest = value[len("sqlite://"):].partition("/")
        if host not in ("", "localhost") or not slash:
            raise ConfigError(f"{key}: {value!r}: sqlite URLs take no host "
                              "(sqlite:///absolute/path, or sqlite:relative/path)")
        rest = unquote(rest).lstrip("/")
        path = Path("/" + rest)
        legacy = base / rest
        if not path.exists() and legacy.is_file():
            raise ConfigError(
                f"{key}: {value!r} names {path}, which does not exist (sqlite:///PATH is "
                f"absolute, as in SPEC), but this setup's catalog is {legacy}: write "
                f"'catalog: sqlite:{rest}' (relative to {base})")
    elif value.startswith("sqlite:"):
        path = _resolve_path(unquote(value[len("sqlite:"):]), base)
    elif "://" in value:
        raise ConfigError(f"{key}: {value!r}: expected sqlite:///ABSOLUTE/PATH, "
                          "sqlite:RELATIVE/PATH or a path")
    else:
        path = _resolve_path(value, base)
    if not str(path).strip("/") or path.is_dir():
        raise ConfigError(f"{key}: {value!r}: names a folder, not the catalog file")
    return "sqlite:///" + str(path).lstrip("/")


def check_s3_url(value: str, key: str) -> str:
    """``s3://bucket[/prefix]``, normalised to end the prefix with ``/`` when there is one."""
    bucket, _, prefix = value[len("s3://"):].partition("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise ConfigError(f"{key}: {value!r}: {bucket!r} is not a valid bucket name "
                          "(3-63 characters: lowercase letters, digits, dots and hyphens)")
    prefix = prefix.strip("/")
    return f"s3://{bucket}/" + (prefix + "/" if prefix else "")


def _resolve_location(value: str, base: Path, key: str) -> str:
    """Plain paths and file:// URLs -> absolute paths; s3:// checked and normalised."""
    if value.startswith("s3://"):
        return check_s3_url(value, key)
    if value.startswith("file://"):
        parsed = urlparse(value)
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"{key}: {value!r}: file URLs take no host (use file:///abs/path)")
        value = unquote(parsed.path)
    elif "://" in value:
        raise ConfigError(f"{key}: {value!r}: only folders, file:// and s3:// are supported")
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path))


def _resolve_path(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _path_lines(node: yaml.Node, parts: tuple[str | int, ...] = ()) -> dict[str, int]:
    """Line of every key and list item, by key path as ``core.residency.key_path`` shows
    it (``residency.stores["s3://b/"].region``, ``controllers[0].name``)."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            sub = (*parts, str(k.value))
            lines[key_path(*sub)] = k.start_mark.line + 1
            lines.update(_path_lines(v, sub))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = (*parts, i)
            lines[key_path(*sub)] = item.start_mark.line + 1
            lines.update(_path_lines(item, sub))
    return lines


_LAST_PART = re.compile(r"(\.[^.\[\]]+|\[[^\]]*\])$")


def _text(value: object, ref: str, *, what: str = "a non-empty string") -> str:
    if value is False:  # YAML 1.1 reads a bare NO (Norway) as false
        raise ConfigError(f'{ref}: got false: write Norway as "NO" in quotes (YAML reads a '
                          "bare NO as false)")
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{ref}: must be {what}, got {value!r}")
    return value.strip()


def _mapping(value: object, ref: str, known: tuple[str, ...],
             where: Callable[[str], str], parts: tuple[str | int, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{ref}: must be a mapping (keys: {', '.join(known)})")
    for sub in value:
        if sub not in known:
            raise ConfigError(f"{where(key_path(*parts, str(sub)))}: unknown key "
                              f"(known: {', '.join(known)})")
    return value


def _parse_residency(
    data: Mapping[str, Any], *, where: Callable[[str], str], base: Path,
    locations: tuple[str, ...],
) -> ResidencyConfig:
    """The ``residency`` section; absent: stores are checked only where ``s3.region``
    places them (configs older than this check keep working)."""
    if "residency" not in data:
        return ResidencyConfig(declared=False, where=where)
    raw = data["residency"] if data["residency"] is not None else {}
    section = _mapping(raw, where("residency"), _RESIDENCY_KEYS, where, ("residency",))
    local: str | None = None
    if section.get("local_country") is not None:
        ref = where("residency.local_country")
        local = _text(section["local_country"], ref, what="an ISO 3166 country code")
        if country_of(local) is None:
            raise ConfigError(f"{ref}: unknown country or region {local!r}: give the ISO "
                              "3166 alpha-2 code of the country where the local folders "
                              "are (e.g. FR)")
    stores_raw = section.get("stores") or {}
    if not isinstance(stores_raw, dict):
        raise ConfigError(f"{where('residency.stores')}: must be a mapping from a store "
                          "(inbox, vault, proofs or its location as written) to "
                          "{region: ..., transfer_safeguard: ...}")
    stores: list[StoreDeclaration] = []
    seen: dict[str, str] = {}
    for written, entry_raw in stores_raw.items():
        parts = ("residency", "stores", str(written))
        ref = where(key_path(*parts))
        name = _text(written, ref, what="a store: inbox, vault, proofs or a location")
        entry = _mapping(entry_raw, ref, _STORE_KEYS, where, parts)
        if name in ROLES:
            key = name
        else:
            key = _resolve_location(name, base, key_path(*parts))
            if key not in locations:
                raise ConfigError(
                    f"{ref}: not a configured store: use inbox, vault, proofs or one of "
                    f"the locations as written in inbox, vault or proofs"
                )
        if key in seen:
            raise ConfigError(f"{ref}: the same store as residency.stores[\"{seen[key]}\"]")
        seen[key] = name
        region = None
        if entry.get("region") is not None:
            region_ref = where(key_path(*parts, "region"))
            region = _text(entry["region"], region_ref, what="a cloud region or ISO code")
            if country_of(region) is None:
                raise ConfigError(
                    f"{region_ref}: unknown region {region!r}: give the ISO 3166 country "
                    "code where the data is stored (e.g. FR, DE, US)"
                )
        safeguard = parse_safeguard(entry.get("transfer_safeguard"),
                                    ref=where(key_path(*parts, "transfer_safeguard")))
        stores.append(StoreDeclaration(key=key, written=name, region=region,
                                       safeguard=safeguard))
    return ResidencyConfig(declared=True, local_country=local, stores=tuple(stores),
                           where=where)


def _parse_controllers(
    data: Mapping[str, Any], *, where: Callable[[str], str], base: Path,
    inbox: tuple[str, ...],
) -> tuple[Controller, ...]:
    """``controllers``: who the recordings are kept for, the processor acting for each,
    and the inboxes their recordings arrive in."""
    raw = data.get("controllers")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{where('controllers')}: must be a list of "
                          "{name: ..., processor: {...}, inboxes: [...]}")
    controllers: list[Controller] = []
    claimed: dict[str, int] = {}
    default: int | None = None
    for i, item in enumerate(raw):
        parts: tuple[str | int, ...] = ("controllers", i)
        entry = _mapping(item, where(key_path(*parts)), _CONTROLLER_KEYS, where, parts)
        name = _text(entry.get("name"), where(key_path(*parts, "name")))
        processor = None
        if entry.get("processor") is not None:
            pparts = (*parts, "processor")
            pentry = _mapping(entry["processor"], where(key_path(*pparts)), _PROCESSOR_KEYS,
                              where, pparts)
            pname = _text(pentry.get("name"), where(key_path(*pparts, "name")))
            country_ref = where(key_path(*pparts, "country"))
            country = _text(pentry.get("country"), country_ref,
                            what="an ISO 3166 alpha-2 country code")
            if country_code(country) is None:
                raise ConfigError(f"{country_ref}: {country!r} is not an ISO 3166 alpha-2 "
                                  "country code (e.g. FR, MA, TN)")
            sg_key = key_path(*pparts, "transfer_safeguard")
            processor = check_processor(
                name=pname, country=country, controller=name, ref=country_ref,
                safeguard=parse_safeguard(pentry.get("transfer_safeguard"),
                                          ref=where(sg_key)),
                safeguard_ref=where(sg_key), fix=sg_key,
            )
        inboxes_raw = entry.get("inboxes")
        if isinstance(inboxes_raw, str):
            inboxes_raw = [inboxes_raw]
        if inboxes_raw is not None and (
                not isinstance(inboxes_raw, list)
                or not all(isinstance(v, str) for v in inboxes_raw)):
            raise ConfigError(f"{where(key_path(*parts, 'inboxes'))}: must be a list of "
                              "inbox locations as written in inbox")
        resolved: list[str] = []
        for j, value in enumerate(inboxes_raw or []):
            ref = where(key_path(*parts, "inboxes", j))
            loc = _resolve_location(value, base, key_path(*parts, "inboxes", j))
            if loc not in inbox:
                raise ConfigError(f"{ref}: {value!r} is not one of the inboxes "
                                  f"({', '.join(inbox)})")
            if loc in claimed:
                raise ConfigError(f"{ref}: {value!r} already belongs to controllers"
                                  f"[{claimed[loc]}]: an inbox has one controller")
            claimed[loc] = i
            resolved.append(loc)
        if not resolved:
            if default is not None:
                raise ConfigError(
                    f"{where(key_path(*parts))}: controllers[{default}] already has no "
                    "inboxes (it takes every inbox): list the inboxes of each controller"
                )
            default = i
        controllers.append(Controller(name=name, processor=processor,
                                      inboxes=tuple(resolved)))
    return tuple(controllers)


def load_settings(
    config_file: Path, *, environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read, validate and resolve the configuration. Raises ConfigError naming file:line:key."""
    environ = os.environ if environ is None else environ
    try:
        text = config_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{config_file}: configuration file not found (use --config FILE, "
            f"${CONFIG_ENV}, or run 'retentiond init DIR')"
        ) from None
    except OSError as e:
        raise ConfigError(f"{config_file}: cannot read: {e.strerror}") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text) if node is not None else {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", e)
        raise ConfigError(f"{config_file}{line}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{config_file}:1: the configuration must be a mapping")
    lines = _key_lines(node) if node is not None else {}

    def where(key: str) -> str:
        return f"{config_file}:{lines.get(key, 1)}: {key}"

    for key, value in data.items():
        if key not in _TOP:
            raise ConfigError(f"{where(str(key))}: unknown key (known: {', '.join(sorted(_TOP))})")
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{where(key)}: must be a mapping")
            for sub in value:
                if sub not in _SECTIONS[key]:
                    raise ConfigError(
                        f"{where(f'{key}.{sub}')}: unknown key "
                        f"(known: {', '.join(sorted(_SECTIONS[key]))})"
                    )

    base = config_file.resolve().parent
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, (attr, typ) in _SCALARS.items():
        section, _, name = key.partition(".")
        raw: Any = data.get(section, {}).get(name) if name else data.get(section)
        src = where(key)
        env = environ.get(env_name(key))
        if env is not None:
            raw, src = env, f"${env_name(key)}"
        if overrides and key in overrides and overrides[key] is not None:
            raw, src = overrides[key], f"--{key.replace('_', '-')}"
        if raw is None:
            continue
        if key in ("metrics_addr", "events.webhook_addr") and raw is False:  # YAML `off`
            raw = "off"
        if key in ("events.minio_listen", "s3.batch_delete") and isinstance(raw, bool):
            raw = "true" if raw else "false"
        try:
            if typ is float:
                if isinstance(raw, bool):
                    raise ValueError
                num = float(raw)
                if not 0 <= num < float("inf"):  # also refuses nan
                    raise ValueError
                values[attr] = num
            else:
                if not isinstance(raw, str) or not raw.strip():
                    raise ValueError
                values[attr] = raw.strip()
        except (TypeError, ValueError):
            kind = "a non-negative number" if typ is float else "a non-empty string"
            raise ConfigError(f"{src}: must be {kind}, got {raw!r}") from None
        sources[attr] = src

    inbox_raw = environ.get(env_name("inbox"))
    inbox: list[str]
    if inbox_raw is not None:
        inbox = [p for p in inbox_raw.split(",") if p.strip()]
    else:
        value = data.get("inbox")
        if isinstance(value, str):
            inbox = [value]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            inbox = list(value)
        else:
            raise ConfigError(f"{where('inbox')}: must be a list of folders or s3:// URLs")
    for required in ("vault", "proofs", "catalog", "policies", "keys_dir"):
        if required not in values:
            key = next(k for k, (a, _) in _SCALARS.items() if a == required)
            raise ConfigError(f"{config_file}: {key}: required key is missing")

    # not among SPEC's stable keys: when absent, the log key's name (``build_app``)
    origin = values.get("proof_origin")
    if origin is not None and not _ORIGIN_RE.match(origin):
        raise ConfigError(f"{sources['proof_origin']}: must contain no spaces and no '+'")
    if values.get("keys_provider", "file") != "file":
        raise ConfigError(f"{sources['keys_provider']}: only the 'file' provider exists so far")
    level = values.get("log_level", "info").lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"{sources['log_level']}: one of {', '.join(LOG_LEVELS)}")
    metrics_addr = values.get("metrics_addr", "127.0.0.1:9464")
    if metrics_addr in ("off", "none", ""):
        metrics_addr = None
    elif metrics_addr.rpartition(":")[2].isdigit() is False:
        raise ConfigError(f"{sources.get('metrics_addr', 'metrics_addr')}: must be HOST:PORT")

    catalog = _resolve_catalog(values["catalog"], base, sources["catalog"])
    state_dir = _resolve_path(values.get("state", "state"), base)
    s3 = {k: values[f"s3_{k}"] for k in _S3_CLIENT_KEYS if f"s3_{k}" in values}
    if s3.get("addressing_style", "auto") not in ("auto", "path", "virtual"):
        raise ConfigError(f"{sources['s3_addressing_style']}: one of auto, path, virtual")
    lock_mode = values.get("s3_object_lock_mode", "GOVERNANCE").upper()
    if lock_mode not in LOCK_MODES:
        raise ConfigError(f"{sources['s3_object_lock_mode']}: one of {', '.join(LOCK_MODES)}")
    attempts = values.get("s3_max_attempts", 5)
    if attempts != int(attempts) or not 1 <= attempts <= 20:
        raise ConfigError(f"{sources['s3_max_attempts']}: a whole number from 1 to 20")
    workers = values.get("ingest_workers", 8)
    if workers != int(workers) or not 1 <= workers <= MAX_INGEST_WORKERS:
        raise ConfigError(f"{sources['ingest_workers']}: a whole number from 1 to "
                          f"{MAX_INGEST_WORKERS}")
    webhook_addr = values.get("webhook_addr")
    if webhook_addr in ("off", "none", ""):
        webhook_addr = None
    if webhook_addr is not None and not webhook_addr.rpartition(":")[2].isdigit():
        raise ConfigError(f"{sources['webhook_addr']}: must be HOST:PORT")
    sqs_url = values.get("sqs_queue_url")
    if sqs_url is not None and not sqs_url.startswith(("https://", "http://")):
        raise ConfigError(f"{sources['sqs_queue_url']}: must be an http(s):// queue URL")
    token_file = values.get("webhook_token_file")
    batch_delete = values.get("s3_batch_delete", "true").lower()
    if batch_delete not in ("true", "false"):
        raise ConfigError(f"{sources['s3_batch_delete']}: true or false")
    minio_listen = values.get("minio_listen", "false").lower()
    if minio_listen not in ("true", "false"):
        raise ConfigError(f"{sources['minio_listen']}: true or false")
    if minio_listen == "true" and not s3.get("endpoint_url"):
        raise ConfigError(f"{sources['minio_listen']}: needs s3.endpoint_url (the MinIO "
                          "server)")
    inboxes = tuple(_resolve_location(u, base, "inbox") for u in inbox)
    vault = _resolve_location(values["vault"], base, "vault")
    proofs = _resolve_location(values["proofs"], base, "proofs")
    path_lines = _path_lines(node) if node is not None else {}

    def where_key(key: str) -> str:
        """``FILE:LINE: key`` (the line of the nearest key written); values that came from
        the environment or a flag are named by it."""
        attr = _SCALARS.get(key, ("",))[0]
        if attr in sources and not sources[attr].startswith(str(config_file)):
            return f"{sources[attr]} ({key})"
        probe = key
        while probe and probe not in path_lines:
            shorter = _LAST_PART.sub("", probe)
            probe = shorter if shorter != probe else ""
        return f"{config_file}:{path_lines[probe]}: {key}" if probe else f"{config_file}: {key}"

    residency = _parse_residency(data, where=where_key, base=base,
                                 locations=(*inboxes, vault, proofs))
    controllers = _parse_controllers(data, where=where_key, base=base, inbox=inboxes)
    place_stores(inbox=inboxes, vault=vault, proofs=proofs, res=residency,
                 s3_region=s3.get("region"), s3_endpoint=s3.get("endpoint_url"))
    return Settings(
        config_file=config_file.resolve(),
        inbox=inboxes,
        vault=vault,
        proofs=proofs,
        catalog=catalog,
        policies=_resolve_path(values["policies"], base),
        keys_provider="file",
        keys_dir=_resolve_path(values["keys_dir"], base),
        state_dir=state_dir,
        proof_origin=origin,
        settle_seconds=values.get("settle_seconds", 2.0),
        sidecar_wait_seconds=values.get("sidecar_wait_seconds", 30.0),
        ingest_workers=int(workers),
        sweep_interval_seconds=values.get("sweep_interval_seconds", 60.0),
        reconcile_interval_seconds=values.get("reconcile_interval_seconds", 300.0),
        metrics_addr=metrics_addr,
        log_level=level,
        s3=s3,
        s3_object_lock_mode=lock_mode,
        s3_max_attempts=int(attempts),
        s3_batch_delete=batch_delete == "true",
        webhook_addr=webhook_addr,
        webhook_token_file=_resolve_path(token_file, base) if token_file else None,
        sqs_queue_url=sqs_url,
        minio_listen=minio_listen == "true",
        residency=residency,
        controllers=controllers,
    )


def with_overrides(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, **changes)
