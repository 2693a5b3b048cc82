"""Sidecar metadata (SPEC section 3, "Sidecar metadata"): parse and validate at the edge.

A sidecar is a JSON object. Unknown fields are refused (a typo such as ``"objecton"`` must
not silently keep a recording the caller objected to); fields starting with ``x-`` are
extensions and are ignored. Errors name the file, the line and the field.

For buckets, the same fields may come as user metadata instead
(``x-amz-meta-retentiond-call-id: 1234``: the field name with ``-`` for ``_``), parsed by
``sidecar_from_metadata`` with the same validation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header

from retentiond.core.model import LEGAL_BASES, MEDIA
from retentiond.errors import InputError

MAX_SIDECAR_BYTES = 64 * 1024
_STR_FIELDS = ("purpose", "legal_basis", "call_id", "subject", "agent", "media", "notes",
               "case_id")
FIELDS = frozenset((*_STR_FIELDS, "recorded_at", "objection"))
MAX_FIELD_CHARS = {"notes": 16 * 1024}
DEFAULT_MAX_FIELD_CHARS = 256


@dataclass(frozen=True)
class Sidecar:
    """Validated sidecar fields; every field optional."""

    purpose: str | None = None
    legal_basis: str | None = None
    recorded_at: datetime | None = None
    call_id: str | None = None
    subject: str | None = None
    agent: str | None = None
    media: str | None = None
    objection: bool = False
    notes: str | None = None
    # the case (dispute, complaint, litigation) the call belongs to: a hold by case keeps
    # every recording of the case; stored only as a keyed pseudonym, like the subject
    case_id: str | None = None
    # where ``purpose`` was given ("sidecar:3: purpose", or the metadata key), for the
    # quarantine reason when the policy does not know it
    purpose_at: str | None = field(default=None, compare=False)

    def __repr__(self) -> str:  # subject and notes are personal data: never in logs
        return (
            f"Sidecar(purpose={self.purpose!r}, legal_basis={self.legal_basis!r}, "
            f"media={self.media!r}, objection={self.objection!r})"
        )


def parse_datetime(text: str, *, what: str) -> datetime:
    """ISO 8601 with an explicit offset (``Z`` accepted) -> aware UTC datetime."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not an ISO 8601 date-time") from None
    if dt.tzinfo is None:
        raise ValueError(f"{what}: {text!r} has no UTC offset (add Z or +01:00)")
    return dt.astimezone(UTC)


def _line_of(raw: str, field: str) -> int:
    needle = json.dumps(field)
    for number, line in enumerate(raw.splitlines(), start=1):
        if needle in line:
            return number
    return 1


def parse_sidecar(data: bytes, *, filename: str) -> Sidecar:
    """Parse sidecar bytes. Raises InputError naming ``filename``, line and field."""
    if len(data) > MAX_SIDECAR_BYTES:
        raise InputError(f"{filename}: sidecar is {len(data)} bytes (limit {MAX_SIDECAR_BYTES})")
    try:
        raw = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{filename}: sidecar is not UTF-8 (byte {e.start})") from None
    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        seen: dict[str, object] = {}
        for key, value in pairs:
            if key in seen:
                raise InputError(f"{filename}:{_line_of(raw, key)}: {key}: given twice")
            seen[key] = value
        return seen

    try:
        obj = json.loads(raw, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        raise InputError(f"{filename}:{e.lineno}: malformed JSON: {e.msg}") from None
    if not isinstance(obj, dict):
        raise InputError(f"{filename}:1: sidecar must be a JSON object")

    return _validated(obj, lambda key: f"{filename}:{_line_of(raw, key)}")


METADATA_PREFIX = "retentiond-"


def sidecar_from_metadata(metadata: Mapping[str, str]) -> Sidecar | None:
    """The sidecar carried as ``x-amz-meta-retentiond-*`` object metadata (keys as boto3
    returns them, lowercase, without ``x-amz-meta-``), or None if there is none.
    Raises InputError naming the metadata key."""
    obj: dict[str, object] = {}
    for key, value in metadata.items():
        if not key.lower().startswith(METADATA_PREFIX):
            continue
        name = key.lower()[len(METADATA_PREFIX):].replace("-", "_")
        if name == "objection":
            flag = value.strip().lower()
            if flag not in ("true", "false"):
                raise InputError(f"metadata: x-amz-meta-{key.lower()}: must be true or false")
            obj[name] = flag == "true"
        else:
            obj[name] = _mime_decoded(value)
    if not obj:
        return None

    def where(name: str) -> str:
        return "metadata: x-amz-meta-" + METADATA_PREFIX + name.replace("_", "-")

    return _validated(obj, where, name_fields=False)


def _mime_decoded(value: str) -> str:
    """S3 metadata is ASCII: clients send other text RFC 2047-encoded (``=?UTF-8?B?...?=``)."""
    if not value.startswith("=?"):
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeDecodeError):
        return value


def _validated(obj: Mapping[str, object], place: Callable[[str], str], *,
               name_fields: bool = True) -> Sidecar:
    values: dict[str, object] = {}
    for key, value in obj.items():
        line = place(key)
        where = f"{line}: {key}" if name_fields else line
        if key.startswith("x-"):
            continue
        if key not in FIELDS:
            raise InputError(f"{where}: unknown field (known: {', '.join(sorted(FIELDS))})")
        if value is None:
            continue
        if key == "objection":
            if not isinstance(value, bool):
                raise InputError(f"{where}: must be true or false")
            values[key] = value
            continue
        if not isinstance(value, str):
            raise InputError(f"{where}: must be a string")
        limit = MAX_FIELD_CHARS.get(key, DEFAULT_MAX_FIELD_CHARS)
        if len(value) > limit:
            raise InputError(f"{where}: longer than {limit} characters")
        if key != "notes" and not value.strip():
            raise InputError(f"{where}: must not be empty")
        if key == "recorded_at":
            try:
                values[key] = parse_datetime(value, what="recorded_at")
            except ValueError as e:
                raise InputError(f"{line}: {e}") from None
            continue
        if key == "legal_basis" and value not in LEGAL_BASES:
            raise InputError(
                f"{where}: unknown legal basis {value!r} (one of {', '.join(sorted(LEGAL_BASES))})"
            )
        if key == "media" and value not in MEDIA:
            raise InputError(
                f"{where}: unknown media {value!r} (one of {', '.join(sorted(MEDIA))})"
            )
        values[key] = value.strip() if key != "notes" else value
        if key == "purpose":
            values["purpose_at"] = where
    return Sidecar(**values)  # type: ignore[arg-type]
