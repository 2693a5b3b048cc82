"""Canonical JSON: the fast check of plain values must accept and refuse exactly what the
path-naming check does, and the bytes must not change (deletion records are signed)."""

from __future__ import annotations

import json
from collections import OrderedDict
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retentiond.core.canonical import _check, canonical_json


def reference(value: Any) -> bytes:
    """canonical_json as it was: every value checked with its path, then serialised."""
    _check(value, "$")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def outcome(f: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", f(value)
    except (ValueError, TypeError) as e:
        return type(e).__name__, str(e)


class Colour(StrEnum):
    RED = "red"


scalars = st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@given(values)
def test_same_result_as_the_path_naming_check(value: Any) -> None:
    assert outcome(canonical_json, value) == outcome(reference, value)


@pytest.mark.parametrize("value", [
    pytest.param({"a": 1.5}, id="float"),
    pytest.param({"a": [1, {"b": float("nan")}]}, id="nested-nan"),
    pytest.param({1: "x"}, id="int-key"),
    pytest.param({"a": {1, 2}}, id="set"),
    pytest.param({"a": b"bytes"}, id="bytes"),
    pytest.param(OrderedDict(b=1, a=Colour.RED), id="mapping-and-str-enum"),
    pytest.param({Colour.RED: [True, None, -1]}, id="str-enum-key"),
    pytest.param({"é": "☎", "a": []}, id="non-ascii"),
])
def test_same_result_on_edge_values(value: Any) -> None:
    assert outcome(canonical_json, value) == outcome(reference, value)


def test_a_deletion_record_is_unchanged() -> None:
    record = {"type": "deletion", "version_ids": ["v1", "null"], "size": 16384,
              "key_destroyed": True, "evidence": {"store": "s", "key": "k"}}
    assert canonical_json(record) == (
        b'{"evidence":{"key":"k","store":"s"},"key_destroyed":true,"size":16384,'
        b'"type":"deletion","version_ids":["v1","null"]}')
