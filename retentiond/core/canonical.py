"""Canonical JSON: sorted keys, no insignificant whitespace, UTF-8, integers only.

Used for deletion records (PROOF-FORMAT.md, "Entries") and for the canonical form of a
policy whose SHA-256 is recorded with every object.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

JSONValue = None | bool | int | str | Sequence["JSONValue"] | Mapping[str, "JSONValue"]


def _check(value: object, path: str) -> None:
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        raise ValueError(f"{path}: floats are not allowed in canonical JSON")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{path}: keys must be strings")
            _check(v, f"{path}.{k}")
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check(v, f"{path}[{i}]")
        return
    raise ValueError(f"{path}: {type(value).__name__} is not a JSON value")


def canonical_json(value: JSONValue) -> bytes:
    """Serialise ``value`` canonically. Raises ValueError on floats or non-JSON types."""
    _check(value, "$")
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rfc3339(dt: datetime) -> str:
    """RFC 3339 UTC with ``Z``, whole seconds unless the time has microseconds."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime")
    dt = dt.astimezone(UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
